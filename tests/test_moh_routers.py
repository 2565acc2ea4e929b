"""Router diagnostics of the SmolLM2 conversion (issue 16) on a tiny random HF Llama, and their rules on hand-made
frames."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from headlab import data, heads
from headlab.models import encode
from headlab.papers import moh
from headlab.papers.moh import rules, rules_routers
from headlab.papers.moh.convert import _output_gram


@pytest.fixture
def llama(tiny_llama):  # conftest: a random 2-layer HF Llama, 4 query heads of 16, 2 KV heads
    return tiny_llama


def test_calibration_matches_a_direct_computation(llama):
    ids = torch.randint(0, 97, (3, 10))
    cal = moh.calibrate(llama, ids, batch=2)
    seen = {}
    hook = llama.model.layers[1].self_attn.q_proj.register_forward_hook(lambda m, i, o: seen.__setitem__("q", o))
    with torch.no_grad(), heads.capture(llama, z=True) as cache:
        llama(ids)
    hook.remove()
    norms = seen["q"].view(3, 10, 4, 16).norm(dim=-1).flatten(0, 1)  # [tokens, head]
    assert torch.allclose(cal.norm_mean[1], norms.mean(0), atol=1e-5)
    assert torch.allclose(cal.norm_sd[1], norms.std(0, unbiased=False), atol=1e-4)
    assert torch.allclose(cal.z_mean[1], cache.z[1].flatten(0, 1).mean(0), atol=1e-5)
    assert cal.tokens == 30


def test_every_router_keeps_k_heads_and_oracle_picks_the_largest_outputs(llama):
    ids = torch.randint(0, 97, (2, 12))
    cal = moh.calibrate(llama, ids)
    for router in moh.CONVERSION_ROUTERS:
        with torch.no_grad(), moh.query_norm_routing(llama, 1, 2, router, calib=cal, record=True) as st:
            llama(ids)
        for l, masks in st["masks"].items():
            assert (masks[0].sum(-1) == 3).all() and masks[0][..., 0].all(), (router, l)
    with torch.no_grad(), heads.capture(llama, z=True) as cache:
        llama(ids)  # layer 0's z does not depend on the routing of layer 0 itself
    with torch.no_grad(), moh.query_norm_routing(llama, 1, 2, "oracle", record=True) as st:
        llama(ids)
    hd = heads.Heads(llama)
    w = hd.o_proj(0).weight.view(64, 4, 16)  # [d_model, head, d_head]
    out = torch.einsum("bthd,mhd->bthm", cache.z[0], w).norm(dim=-1)[..., 1:]  # ||z_h W_O^h||, routed heads
    want = torch.zeros_like(out, dtype=torch.bool).scatter_(-1, out.topk(2, -1).indices, True)
    assert torch.equal(st["masks"][0][0][..., 1:], want)
    gram = _output_gram(hd, 0)
    assert torch.allclose(torch.einsum("hde,hef->hdf", gram, torch.eye(16).expand(4, 16, 16)), gram)
    # static: the same heads for every token, those with the largest calibration mean norm
    with torch.no_grad(), moh.query_norm_routing(llama, 1, 2, "static", calib=cal, record=True) as st:
        llama(ids)
    top = set((cal.norm_mean[1, 1:].topk(2).indices + 1).tolist())
    m = st["masks"][1][0]
    assert {j for j in range(1, 4) if m[..., j].all()} == top


def test_mean_ablation_and_single_layer_conversion(llama):
    ids = torch.randint(0, 97, (2, 8))
    cal = moh.calibrate(llama, ids)
    with torch.no_grad():
        ref = llama(ids).logits
        with heads.capture(llama, z=True) as c0:
            llama(ids)
        with moh.query_norm_routing(llama, 1, 1, calib=cal, ablation="mean", record=True, layers=[1]) as st:
            with heads.capture(llama, z=True) as c1:
                out = llama(ids).logits
    assert list(st["masks"]) == [1]
    assert torch.equal(c1.z[0], c0.z[0])  # layer 0 untouched
    off = ~st["masks"][1][0]  # [B, T, h]
    got = c1.z[1][off]
    want = cal.z_mean[1].expand(2, 8, 4, 16)[off]
    assert torch.allclose(got, want, atol=1e-6)
    assert not torch.allclose(out, ref)
    with pytest.raises(ValueError, match="needs a Calibration"):
        with moh.query_norm_routing(llama, 1, 1, "static"):
            pass
    with pytest.raises(ValueError, match="ablation"):
        with moh.query_norm_routing(llama, 1, 1, ablation="half"):
            pass


def test_diagnostics_frames_on_a_tiny_model(llama):
    ids = torch.randint(0, 97, (4, 10))
    cal = moh.calibrate(llama, ids[:2])
    w = moh.router_windows(llama, ids, {"3/4": (1, 2)}, cal, random_seeds=(0, 1), mean_random_seeds=1, progress=False)
    assert len(w) == 4 * (1 + 2 * 5 + 2 + 1)
    orig = w[w.router == "original"].nll.mean()
    assert orig == pytest.approx(moh.window_nll(llama, ids), abs=1e-5)
    t4 = moh.table4_summary(w, hf_nll=moh.window_nll(llama, ids))
    assert set(t4.unit) == {"windows", "seeds"} and (t4.ppl == np.exp(t4.nll)).all()
    ld = moh.layer_damage(llama, ids, (1, 2), cal, routers=("query_norm", "oracle"), progress=False)
    assert set(ld.layer) == {-1, 0, 1} and len(ld) == 4 * (1 + 2 * 2)
    s = moh.layer_damage_summary(ld)
    assert len(s) == 4 and s.lo.le(s.damage).all()
    agree = moh.selection_agreement(llama, ids, (1, 2), cal)
    st = agree[agree.router == "static"]
    assert (st.static_overlap == 1).all() and (agree.chance == 2 / 3).all()
    assert agree.oracle_overlap.between(0, 1).all()
    fb = moh.head_loads(llama, ids, ["a", "a", "b", "b"], (1, 2))
    loads = moh.loads_table(fb)
    assert np.allclose(loads[loads["head"] == 0].load, 1)
    routed = loads[loads["head"] > 0].groupby(["layer", "label"]).load.sum()
    assert np.allclose(routed, 2)  # K heads per token
    tr = moh.tuning_runs(llama, ids[:2], ids[2:], (1, 2), ["query_norm", "none"], [1e-3], 1, 1, progress=False)
    f2 = moh.tuning_summary(tr)
    assert len(f2) == 4 and set(f2.step) == {0, 1}
    p0 = llama.model.layers[0].self_attn.q_proj.weight.clone()
    assert torch.equal(p0, llama.model.layers[0].self_attn.q_proj.weight)  # weights restored after tuning


def test_token_windows_cut_whole_documents():
    class Tok:  # a character "tokenizer"
        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": [ord(c) % 100 for c in text]}

        def encode(self, text, add_special_tokens=False):
            return [ord(c) % 100 for c in text]

    tok = Tok()
    ids, labels = data.token_windows(tok, ["speeches", "verse"], 3, 50)
    assert ids.shape == (6, 50) and labels == ["speeches"] * 3 + ["verse"] * 3
    first = data.load_corpus("speeches")
    assert any(encode(tok, d["text"], False)[:50] == ids[0].tolist() for d in first)
    with pytest.raises(data.DataError, match="windows of"):
        data.token_windows(tok, ["verse"], 10**6, 50)


def _frame(nll: dict) -> pd.DataFrame:
    rows = []
    for (router, ab), vals in nll.items():
        for seed, v in enumerate(vals if router == "random" else [vals]):
            rows += [
                {"budget": "7/9", "router": router, "ablation": ab, "seed": seed if router == "random" else -1}
                | {"window": i, "nll": x}
                for i, x in enumerate(v)
            ]
    return pd.DataFrame(rows)


def test_mechanism_rules_on_hand_made_frames():
    n = 20
    rng = np.random.default_rng(0)
    base = 4 + 0.1 * rng.standard_normal(n)
    w = _frame(
        {
            ("oracle", "zero"): base - 0.5,
            ("random", "zero"): [base, base + 0.02],
            ("query_norm", "zero"): base + 0.6,
            ("query_norm", "mean"): base + 0.1,
            ("calibrated", "zero"): base + 0.3,
        }
    )
    agree = pd.DataFrame(
        [
            {"window": i, "layer": l, "router": r, "oracle_overlap": o, "static_overlap": s, "chance": 0.6}
            for i in range(n)
            for l in range(3)
            for r, o, s in (("query_norm", 0.58 + 0.01 * (i % 3), 0.9), ("random", 0.6, 0.6))
        ]
    )
    ev = rules_routers.mechanism_evidence(w, agree, "7/9")
    v = {k: e.verdict for k, e in ev.items()}
    assert v == {
        "M1": "reproduced",
        "M2": "reproduced",
        "M3": "reproduced",
        "M4": "reproduced",
        "M5": "not reproduced",
    }
    assert ev["M4"].estimate == pytest.approx(-0.5)
    s = rules_routers.mechanism_sentence(ev)
    assert "M1" in s and "Not supported: M5" in s
    with pytest.raises(ValueError, match="no rows"):
        rules_routers.per_window(w, "7/9", "static")


def test_seed_rules_on_hand_made_images():
    rows = []
    for seed in range(5):
        for i in range(50):
            rows.append({"variant": "MHA", "seed": seed, "image": i, "correct": int(i % 10 != 0)})
            rows.append(
                {"variant": "MoH-75", "seed": seed, "image": i, "correct": int(i % 10 != 0 and not 1 <= i < seed)}
            )
    img = pd.DataFrame(rows)  # MoH-75 accuracy per seed: 0.90 0.90 0.88 0.86 0.84; MHA 0.90 always
    diffs = np.array([0, 0, -0.02, -0.04, -0.06])
    e = rules.c1_seed_evidence(img, {"MoH-75": 0.03})
    assert e.unit == "seeds" and e.n == 5 and e.estimate == pytest.approx(diffs.mean())
    half = 2.776445 * diffs.std(ddof=1) / math.sqrt(5)
    assert e.ci_low == pytest.approx(diffs.mean() - half, abs=1e-6) and e.verdict == "inconclusive"
    sd = math.sqrt(np.var([0.9, 0.9, 0.88, 0.86, 0.84], ddof=1) / 2)
    assert rules.pooled_seed_sd(img, ["MHA", "MoH-75"]) == pytest.approx(sd)
    e7 = rules.c7_seed_evidence(img, ["MHA", "MoH-75"])
    assert e7.estimate == pytest.approx(0.024) and e7.ci_low < 0.01 < e7.ci_high and e7.verdict == "inconclusive"
    red = pd.DataFrame(
        [
            {"model": "ViT", "variant": v, "seed": s, "unit": u, "pattern_similarity": p, "output_abs_cosine": p}
            for s in range(5)
            for u in range(4)
            for v, p in (("MHA", 0.5), ("MoH-75", 0.4 + 0.01 * s))
        ]
    )
    parts = rules.c9_seed_parts(red)
    assert parts["ViT pattern"].unit == "seeds" and parts["ViT pattern"].estimate == pytest.approx(-0.08)
    assert parts["ViT pattern"].verdict == "reproduced"

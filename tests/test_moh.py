"""Exact properties of headlab.papers.moh (MoH: mixture-of-head attention) on tiny inputs.

References are hand-computed (balance loss), the plain MHA layer of headlab.nn (equivalence), the
masked implementation (compute skipping) and the released configurations' head budgets.
"""

import pandas as pd
import pytest
import torch

from headlab import heads
from headlab.data import ByteTokenizer
from headlab.nn import Attention, Config, HeadlabLM, rope_cache
from headlab.papers import moh

torch.manual_seed(0)
D, H, DH, T, B = 32, 8, 8, 20, 3
CFG = Config(vocab_size=50, d_model=D, n_layers=2, n_heads=H, d_head=DH, max_seq_len=T)
GQA = Config(vocab_size=50, d_model=D, n_layers=2, n_heads=H, n_kv_heads=2, d_head=DH, max_seq_len=T)
COS, SIN = rope_cache(T, DH, CFG.rope_theta)
X = torch.randn(B, T, D)
DOCS = (torch.arange(T) >= 7).long()[None].repeat(B, 1)

ROUTED = [
    ("two_stage", 2, 4),
    ("two_stage", 2, 2),
    ("two_stage", 1, 5),
    ("no_two_stage", 3, 3),
    ("no_shared", 0, 6),
    ("query_norm", 3, 2),
    ("query_norm_inverse", 2, 3),
    ("random", 2, 4),
]


def layer(router, hs, k, cfg=CFG, **kw):
    return moh.MoHAttention(cfg, 0, moh.MoHSpec(n_shared=hs, top_k=k, router=router, **kw))


@pytest.mark.parametrize("router,hs,k", ROUTED)
def test_activation_count_and_gates(router, hs, k):
    a = layer(router, hs, k)
    with torch.no_grad():
        a(X, COS, SIN)
    r = a.last
    assert (r.mask.sum(-1) == hs + k).all()  # exactly h_s + K heads per token
    assert r.mask[..., :hs].all()  # shared heads always on
    assert ((r.gates != 0) == r.mask).all()  # a head has weight iff it is on
    if router in ("query_norm", "query_norm_inverse", "random"):
        assert set(r.gates.unique().tolist()) <= {0.0, 1.0}  # binary gates


def test_code_gate_sums():
    a = layer("two_stage", 3, 3)
    with torch.no_grad():
        a(X, COS, SIN)
    g, al = a.last.gates.double(), a.last.alpha.double()
    assert torch.allclose(al.sum(-1), torch.full_like(al[..., 0], 2.0))
    assert torch.allclose(g[..., 3:].sum(-1), 3 * al[..., 1], atol=1e-6)  # routed: K * a1
    assert torch.allclose(g[..., :3].sum(-1), 3 * al[..., 0], atol=1e-6)  # shared: h_s * a0
    errs = moh.gate_sum_errors({"gates": a.last.gates, "alpha": a.last.alpha}, 3, 3)
    assert max(errs.values()) < 1e-5


def test_paper_gate_has_no_factors():
    a = layer("two_stage", 3, 3, gate="paper")
    with torch.no_grad():
        a(X, COS, SIN)
    g, al = a.last.gates.double(), a.last.alpha.double()
    assert torch.allclose(al.sum(-1), torch.ones_like(al[..., 0]))
    assert (g[..., 3:].sum(-1) < al[..., 1]).all()  # softmax over all routed heads, kept for the top-K
    p = a.last.probs.double()
    kept = (p * a.last.mask[..., 3:]).sum(-1)
    assert torch.allclose(g[..., 3:].sum(-1), al[..., 1] * kept, atol=1e-6)


def test_dense_and_full_routing_equal_mha():
    mha = Attention(CFG, 0)
    ref = mha(X, COS, SIN)[0]
    dense = moh.MoHAttention(CFG, 0, moh.MoHSpec(router="dense"))
    dense.load_state_dict(mha.state_dict(), strict=False)
    assert torch.allclose(dense(X, COS, SIN)[0], ref, atol=1e-6)
    full = layer("two_stage", 2, H - 2)
    full.load_state_dict(mha.state_dict(), strict=False)
    for lin in (full.wg, full.wg_0, full.wg_1):
        torch.nn.init.zeros_(lin.weight)
    assert torch.allclose(full(X, COS, SIN)[0], ref, atol=1e-6)


def test_dense_lm_equals_mha_lm():
    torch.manual_seed(1)
    m0 = HeadlabLM(CFG)
    m1 = HeadlabLM(CFG, moh.moh(router="dense"))
    m1.load_state_dict(m0.state_dict())
    ids = torch.randint(0, 50, (2, T))
    assert torch.allclose(m0(ids).logits, m1(ids).logits, atol=1e-5)


@pytest.mark.parametrize("cfg", [CFG, GQA], ids=["mha", "gqa"])
@pytest.mark.parametrize("router,hs,k", ROUTED)
def test_masked_equals_skip(router, hs, k, cfg):
    for causal, docs in ((True, None), (True, DOCS), (False, None), (False, DOCS)):
        a = layer(router, hs, k, cfg=cfg, causal=causal)
        b = layer(router, hs, k, cfg=cfg, causal=causal, mode="skip")
        b.load_state_dict(a.state_dict())
        torch.manual_seed(3)
        oa = a(X, COS, SIN, docs)[0]
        torch.manual_seed(3)
        ob = b(X, COS, SIN, docs)[0]
        assert torch.allclose(oa, ob, atol=1e-5), (causal, docs is not None, (oa - ob).abs().max())


def test_skip_gradients_match_masked():
    a = layer("two_stage", 2, 3)
    b = layer("two_stage", 2, 3, mode="skip")
    b.load_state_dict(a.state_dict())
    a(X, COS, SIN)[0].pow(2).sum().backward()
    b(X, COS, SIN)[0].pow(2).sum().backward()
    for (n, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        assert torch.allclose(pa.grad, pb.grad, atol=1e-4), n


def test_balance_loss_hand_examples():
    p, m = moh.balanced_example(6, 4)
    assert (m.sum(0) == 4).all() and (m.sum(1) == 4).all()
    assert moh.balance_value(p, m, "code").item() == pytest.approx(4.0)  # code scale: K
    assert moh.balance_value(p, m, "paper").item() == pytest.approx(4 / 6)  # paper scale: K/E
    # E = 2, K = 1, every token picks head 0 with scores (0.75, 0.25): P = (0.75, 0.25), f = (1, 0)
    p = torch.tensor([[0.75, 0.25]] * 5)
    m = torch.tensor([[True, False]] * 5)
    assert moh.balance_value(p, m, "paper").item() == pytest.approx(0.75)
    assert moh.balance_value(p, m, "code").item() == pytest.approx(1.5)


def test_module_balance_loss_matches_formula():
    a = layer("two_stage", 2, 3)
    with torch.no_grad():
        a(X, COS, SIN)
    r = a.last
    P = r.probs.reshape(-1, 6).mean(0)
    f = r.mask[..., 2:].reshape(-1, 6).float().mean(0)
    assert a.aux_loss.item() == pytest.approx(6 * (P * f).sum().item(), rel=1e-5)
    m = HeadlabLM(CFG, moh.moh(n_shared=2, top_k=3))
    m(torch.randint(0, 50, (2, T)))
    vals = [l.aux_loss for l in moh.moh_layers(m)]
    assert moh.balance_loss(m).item() == pytest.approx(torch.stack(vals).mean().item())


def test_k1_gives_router_no_task_gradient():
    a = layer("two_stage", 2, 1)
    a(X, COS, SIN)[0].pow(2).sum().backward()
    assert a.wg.weight.grad.abs().max() < 1e-5
    b = layer("two_stage", 2, 2)
    b(X, COS, SIN)[0].pow(2).sum().backward()
    assert b.wg.weight.grad.abs().max() > 1e-3


def test_query_norm_ste_and_rope_invariance():
    a = layer("query_norm", 2, 3).train()
    out = a(X, COS, SIN)[0]
    assert set(a.last.gates.unique().tolist()) <= {0.0, 1.0}
    out.pow(2).sum().backward()
    assert a.q_proj.weight.grad.abs().sum() > 0
    q = torch.randn(B, H, T, DH)
    from headlab.nn import apply_rope

    pre = moh.topk_mask(q.norm(dim=-1), 3)
    post = moh.topk_mask(apply_rope(q, COS, SIN).norm(dim=-1), 3)
    assert torch.equal(pre, post)


def test_heads_capture_sees_gated_z():
    m = HeadlabLM(CFG, moh.moh(n_shared=2, top_k=3)).eval()
    ids = torch.randint(0, 50, (2, T))
    with torch.no_grad(), heads.capture(m, z=True) as cache:
        m(ids)
    recs = moh.routing_records(m)
    for l, r in recs.items():
        off = ~r.mask  # [B, T, h]
        assert (cache.z[l][off] == 0).all()
        assert (cache.z[l][r.mask].abs().sum(-1) > 0).all()
    vit = moh.TinyViT(moh.MoHSpec(n_shared=2, top_k=2), depth=2)
    assert vit(torch.rand(4, 8, 8)).shape == (4, 10)
    assert heads.Heads(vit).n_heads == 8


def test_activated_fraction_of_released_configs():
    want = {
        "MoH-ViT-B-75": 0.75,
        "MoH-ViT-B-50": 0.5,
        "MoH-ViT-S-80": 0.7995,
        "MoH-ViT-S-75": 0.7529,
        "MoH-DiT-XL/2-90": 0.8996,
        "MoH-DiT-XL/2-75": 0.75,
    }
    for k, v in want.items():
        assert moh.activated_fraction(moh.RELEASED_CONFIGS[k]) == pytest.approx(v, abs=5e-5), k
    m = HeadlabLM(CFG, moh.moh([moh.MoHSpec(router="dense"), moh.MoHSpec(n_shared=2, top_k=2)]))
    assert moh.model_activated_fraction(m) == pytest.approx((8 + 4) / 16)


def test_query_norm_hooks_on_hf_llama(tiny_llama):
    model = tiny_llama
    ids = torch.randint(0, 97, (2, 12))
    seen = {}
    hook = model.model.layers[0].self_attn.q_proj.register_forward_hook(lambda m, i, o: seen.__setitem__("q", o))
    with torch.no_grad():
        ref = model(ids).logits
        with moh.query_norm_routing(model, 1, 3):  # top-3 of 3 routed: nothing is dropped
            same = model(ids).logits
        with moh.query_norm_routing(model, 1, 1, record=True) as st, heads.capture(model, z=True) as cache:
            model(ids)
        with moh.query_norm_routing(model, 1, 1, "inverse", record=True) as st2:
            model(ids)
    hook.remove()
    assert torch.allclose(ref, same, atol=1e-6)
    for l, masks in st["masks"].items():
        mask = masks[0]
        assert (mask.sum(-1) == 2).all() and mask[..., 0].all()
        assert (cache.z[l][~mask] == 0).all()
    norms = seen["q"].view(2, 12, 4, 16)[:, :, 1:].norm(dim=-1)  # layer 0, routed heads 1..3
    assert torch.equal(st["masks"][0][0][..., 1:].float().argmax(-1), norms.argmax(-1))
    assert torch.equal(st2["masks"][0][0][..., 1:].float().argmax(-1), norms.argmin(-1))


def test_instrumentation_on_a_hand_example():
    # 4 sequences x 5 tokens x E = 3 routed heads, K = 1: label "a" always picks head 1, "b" head 3
    m = torch.zeros(4, 5, 3, dtype=torch.bool)
    m[:2, :, 0] = True
    m[2:, :, 2] = True
    labels = ["a", "a", "b", "b"]
    load = moh.head_load(m, labels).pivot(index="label", columns="head", values="load")
    assert load.loc["a"].tolist() == [1.0, 0.0, 0.0] and load.loc["b"].tolist() == [0.0, 0.0, 1.0]
    dep = moh.load_dependence(m, labels, n_perm=50)
    assert dep["tv"] == pytest.approx(1.0) and dep["p_chi2"] < 1e-3
    # identical patterns: attention-pattern similarity 1, output cosine 1
    pat = torch.softmax(torch.randn(2, 1, 4, 4), -1).repeat(1, 3, 1, 1)
    z = torch.randn(2, 4, 1, 5).repeat(1, 1, 3, 1)
    red = moh.head_redundancy(pat, z)
    assert red["pattern_similarity"] == pytest.approx(1.0) and red["output_cosine"] == pytest.approx(1.0)
    # with a routing mask both measures skip the tokens where a head of the pair is off: two heads with
    # equal rows at queries 0-1 and disjoint one-hot rows at queries 2-3, head 1 off at queries 2-3
    pat = torch.zeros(1, 2, 4, 4)
    pat[0, :, :2, 0] = 1.0
    pat[0, 0, 2:, 1], pat[0, 1, 2:, 2] = 1.0, 1.0
    z = torch.randn(1, 4, 1, 5).repeat(1, 1, 2, 1)
    z[0, 2:, 1] = -z[0, 2:, 0]
    assert moh.head_redundancy(pat, z)["pattern_similarity"] == pytest.approx(0.5)
    on = torch.ones(1, 4, 2, dtype=torch.bool)
    on[0, 2:, 1] = False
    red = moh.head_redundancy(pat, z, on)
    assert red["pattern_similarity"] == pytest.approx(1.0) and red["output_cosine"] == pytest.approx(1.0)


def test_profiles_share_vit_runs_and_gpu_skips_smollm():
    """Every table's variants are known; Tables 5 and 6 reuse Table 1's MoH-75 run (one cache key, not
    retrained: run_vit would fail on data=None if it trained); the gpu profile needs no SmolLM2 weights."""
    from headlab.profiles import NOTEBOOKS

    for prof in ("smoke", "gpu"):
        p = NOTEBOOKS["05_moh"].params[prof]
        names = p["vit_table1"] + p["vit_table5"] + p["vit_table6"] + p["vit_extra"]
        assert set(names) <= set(moh.VIT_VARIANTS)
        assert all("MoH-75" in p[t] for t in ("vit_table1", "vit_table5", "vit_table6"))
        for name in p["vit_table6"]:  # Table 6 keeps 6/8 heads active
            spec = moh.VIT_VARIANTS[name][0]
            assert spec.n_shared + spec.top_k == 6
    assert NOTEBOOKS["05_moh"].params["gpu"]["smollm"] is False
    cache = {("MoH-75", 0): "trained once"}
    moh.run_vit(["MoH-75"], None, [0], cache)
    assert cache == {("MoH-75", 0): "trained once"}


# --- the notebook's steps (analysis, claims data, speed, conversion windows) -------------------------


def test_last_layer_loads_and_dependence_use_the_last_layer_routed_heads():
    g = torch.Generator().manual_seed(0)
    rec = {l: {"mask": torch.rand(12, 5, 6, generator=g) > 0.5} for l in (0, 3)}  # [image, token, head]
    labels = torch.arange(12).numpy() % 3
    loads = moh.last_layer_loads(rec, labels, 2, rec, labels, 1)
    assert set(loads.layer) == {3} and set(loads.model) == {"ViT MoH-75 (digits)", "LM MoH-75 (text types)"}
    vit = loads[loads.model.str.startswith("ViT")]
    assert vit["head"].max() == 4  # 6 heads, 2 shared
    want = moh.head_load(rec[3]["mask"][..., 2:], labels)
    assert vit.load.to_numpy() == pytest.approx(want.load.to_numpy())
    dep = moh.last_layer_dependence(rec, labels, 2, rec, labels, 1, n_perm=20, seed=0)
    assert list(dep.model) == ["ViT MoH-75, classes", "LM MoH-75, text types"] and dep.p_perm.between(0, 1).all()


def test_claims_data_run_params():
    from types import SimpleNamespace

    from headlab.papers.moh import claims_data as cd

    dd = SimpleNamespace(val={"a": torch.tensor([[0, 1], [2, 3]]), "b": torch.tensor([[0, 1, 2, 3]])})
    P = SimpleNamespace(lm_steps=5, vit_seeds=[0], lm_seeds=[0, 1], n_perm=9)
    row = cd.run_params(dd, 7, P).iloc[0]
    assert row.unigram_entropy == pytest.approx(torch.log(torch.tensor(4.0)).item())  # 4 bytes, uniform
    assert (row.test_images, row.vit_seeds, row.lm_seeds, row.n_perm) == (7, 1, 2, 9)


def test_speed_report_and_conversion_windows():
    t7 = pd.DataFrame(
        [
            {"variant": v, "mode": m, "seq": s, "time_vs_mha": r, "tokens_per_s": 1000.0 / r}
            for v, m, r in (("MHA", "dense", 1.0), ("MoH-50", "skip", 0.5))
            for s in (8, 16)
        ]
    )
    rep = moh.speed_report(t7).split("\n\ntokens/s:\n")
    assert len(rep) == 2 and "0.5" in rep[0] and "2000.0" in rep[1]

    eval_ids, tune_ids = moh.eval_and_tune_windows(ByteTokenizer(), ["abcdef", "ab", "ghijkl", "mnopqr"], 4, 2, 1)
    assert eval_ids.tolist() == [list(b"abcd"), list(b"ghij")] and tune_ids.tolist() == [list(b"mnop")]

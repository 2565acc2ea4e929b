"""headlab.papers.dormant_heads: statistics on hand-made curves, score functions against hand
computation on a tiny random headlab model (with right padding), thresholds, per-input in-pass
zeroing, the batched multiple-choice scorer, and the generated data."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from headlab import eval as ev
from headlab import heads
from headlab.data import ByteTokenizer, MCItem
from headlab.nn import Config, HeadlabLM
from headlab.papers import dormant_heads as D

# ---------------------------------------------------------------- statistics -------------------


def test_largest_within_single_crossing():
    # baseline 50, line at 49: crosses between x=5 (y=50) and x=10 (y=48) at 7.5
    assert D.largest_within([0, 5, 10, 15], [50, 50, 48, 40], 50.0) == pytest.approx(7.5)


def test_largest_within_takes_last_crossing():
    # down at 2.5, up at 7.5, down again between 10 and 15 at 10 + 5/3
    x = D.largest_within([0, 5, 10, 15], [50, 48, 50, 47], 50.0)
    assert x == pytest.approx(10 + 5 / 3)


def test_largest_within_point_on_line_and_never_crossing():
    assert D.largest_within([0, 5, 10], [50, 49, 45], 50.0) == 5.0
    # never leaves the band: 0 by the official definition, flagged by stays_within
    assert D.largest_within([0, 5, 10], [50, 50.5, 49.5], 50.0) == 0.0
    assert D.stays_within([50, 50.5, 49.5], 50.0)
    assert not D.stays_within([50, 48.9], 50.0)
    # tolerance is absolute points
    assert D.largest_within([0, 10], [50, 40], 50.0, tol=2.0) == pytest.approx(2.0)


def test_normalised_auc():
    assert D.normalised_auc([0, 10, 20], [50, 40, 30]) == pytest.approx(40.0)
    # points in threshold order, not re-sorted (a backward step subtracts area)
    assert D.normalised_auc([0, 10, 5], [1, 1, 1]) == pytest.approx((10 - 5) / 10)
    # a function that zeroes nothing has no curve to integrate: NaN, not its baseline (which would rank first)
    assert np.isnan(D.normalised_auc([0, 0, 0], [60, 60, 60]))
    stats = pd.DataFrame(
        {"model": "m", "task": "t", "score": ["ahon_ln", "ftvvn_ln"], "auc": [59.5, D.normalised_auc([0, 0], [60, 60])]}
    )
    r = D.rank_scores(stats).set_index("score")["rank"]
    assert r["ahon_ln"] == 1 and np.isnan(r["ftvvn_ln"])


def test_curve_stats_nll_uses_relative_tolerance():
    import pandas as pd

    rows = [
        {
            "model": "m",
            "task": "text_nll",
            "score": "s",
            "label": "S",
            "quantile": q,
            "achieved_pct": x,
            "metric": y,
            "baseline": 2.0,
        }
        for q, x, y in [(0, 0, 2.0), (0.1, 10, 2.02), (0.2, 20, 2.06)]
    ]
    st = D.curve_stats(pd.DataFrame(rows))
    # the loss may rise by 1% of 2.0 = 0.02: reached exactly at x=10 (a point on the line)
    assert st.within_tol_pct.iloc[0] == pytest.approx(10.0)


def test_threshold_tails_and_flag_fraction():
    s = np.arange(1000, dtype=float)
    lo = D.threshold(s, 0.1, flag_high=False)
    hi = D.threshold(s, 0.1, flag_high=True)
    assert D.flagged(s, lo, False).mean() == pytest.approx(0.1, abs=0.002)
    assert D.flagged(s, hi, True).mean() == pytest.approx(0.1, abs=0.002)
    assert not D.flagged(s, D.threshold(s, 0.0, False), False).any()  # 0%: nothing flagged
    assert not D.flagged(s, D.threshold(s, 0.0, True), True).any()


def test_permutation_and_overlap():
    v = np.r_[np.zeros(20), np.ones(20)]
    assert D.permutation_test(v, ["a"] * 20 + ["b"] * 20, n_perm=200) < 0.05
    rng = np.random.default_rng(0)
    a = rng.random((10, 3, 4))
    ov = D.selection_overlap({"ahon": a, "ahon_ln": a.copy()}, ["ahon", "ahon_ln"], 0.2)
    assert (ov.iou == 1.0).all()


# ---------------------------------------------------------------- scores on a tiny model -------


def tiny(attn="eager"):
    torch.manual_seed(0)
    return HeadlabLM(
        Config(vocab_size=50, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=32, attn_impl=attn)
    ).eval()


SEQS = [[1, 5, 7, 9, 11, 3, 4], [1, 8, 2, 6], [1, 4, 4, 4, 4]]


def padded():
    T = max(map(len, SEQS))
    ids = torch.zeros(len(SEQS), T, dtype=torch.long)
    valid = torch.zeros(len(SEQS), T, dtype=torch.bool)
    for i, s in enumerate(SEQS):
        ids[i, : len(s)] = torch.tensor(s)
        valid[i, : len(s)] = True
    return ids, valid


def record(model, ids, valid, names):
    with heads.token_mask(valid):
        s, _ = D.record_scores(model, lambda: model(ids), names)
    return s


def test_scores_match_hand_computation_with_padding():
    m = tiny()
    ids, valid = padded()
    names = [
        "ahon",
        "ahon_ln",
        "awft",
        "awft_ln",
        "entropy",
        "ftvvn",
        "avvn",
        "lthon",
        "lthon_ln",
        "lthon_hn",
        "ahon_wo",
    ]
    got = record(m, ids, valid, names)
    for b, seq in enumerate(SEQS):  # each input alone, no padding: the reference
        with heads.capture(m, z=True, pattern=True, v=True) as c:
            m(torch.tensor([seq]))
        S = len(seq)
        for l in range(2):
            z, A, v = c.z[l][0], c.pattern[l][0], c.v[l][0]  # [pos, head, d], [head, q, k], [pos, head, d]
            for h in range(4):
                norms = [float(z[i, h].norm()) for i in range(S)]
                ref_ahon = sum(norms) / S
                ref_awft = sum(float(A[h, i, 0]) for i in range(S)) / S
                ref_ent = (
                    sum(-sum(float(a) * math.log(float(a)) for a in A[h, i, : i + 1] if a > 0) for i in range(S)) / S
                )
                W = m.layers[l].self_attn.o_proj.weight.detach()[:, h * 8 : (h + 1) * 8]
                ref_wo = sum(float((W @ z[i, h]).norm()) for i in range(S)) / S
                assert got["ahon"][b, l, h] == pytest.approx(ref_ahon, rel=1e-5)
                assert got["awft"][b, l, h] == pytest.approx(ref_awft, rel=1e-5)
                assert got["entropy"][b, l, h] == pytest.approx(ref_ent, rel=1e-4, abs=1e-6)
                assert got["ftvvn"][b, l, h] == pytest.approx(float(v[0, h].norm()), rel=1e-5)
                assert got["avvn"][b, l, h] == pytest.approx(sum(float(v[i, h].norm()) for i in range(S)) / S, rel=1e-5)
                assert got["lthon"][b, l, h] == pytest.approx(norms[-1], rel=1e-5)
                assert got["lthon_hn"][b, l, h] == pytest.approx(norms[-1] / ref_ahon, rel=1e-5)
                assert got["ahon_wo"][b, l, h] == pytest.approx(ref_wo, rel=1e-5)
    # (LN): divided by the mean over the same layer's heads, for the same input
    np.testing.assert_allclose(got["ahon_ln"], got["ahon"] / got["ahon"].mean(-1, keepdims=True), rtol=1e-5)
    np.testing.assert_allclose(got["awft_ln"], got["awft"] / got["awft"].mean(-1, keepdims=True), rtol=1e-5)
    np.testing.assert_allclose(got["lthon_ln"], got["lthon"] / got["ahon"].mean(-1, keepdims=True), rtol=1e-5)


def test_value_scores_equal_within_gqa_group():
    m = tiny()
    ids, valid = padded()
    s = record(m, ids, valid, ["ftvvn", "avvn"])
    for name in ("ftvvn", "avvn"):  # 4 query heads, 2 KV heads: groups {0,1}, {2,3}
        np.testing.assert_allclose(s[name][..., 0], s[name][..., 1], rtol=1e-6)
        np.testing.assert_allclose(s[name][..., 2], s[name][..., 3], rtol=1e-6)


def test_zero_all_and_nothing():
    m = tiny()
    ids, valid = padded()
    with torch.no_grad():
        base = m(ids).logits
        with heads.token_mask(valid), heads.intervene(m, heads.zero_where(sel := D.Selector("ahon", -1.0))):
            same = m(ids).logits
        assert sel.achieved_pct() == 0.0
        assert torch.equal(same, base)
        with heads.token_mask(valid), heads.intervene(m, heads.zero_where(sel := D.Selector("ahon", float("inf")))):
            dead = m(ids).logits
        with heads.intervene(m, heads.zero(torch.ones(2, 4, dtype=torch.bool))):
            ref = m(ids).logits
    assert sel.achieved_pct() == 100.0
    torch.testing.assert_close(dead, ref)


def test_in_pass_choices_cascade_and_replay_statically():
    """The per-input, per-layer choices made inside the forward, replayed as a fixed
    [batch, layer, head] mask, give the same forward: the scores at layer 1 were computed on
    the stream already changed by layer 0's zeroing."""
    m = tiny()
    ids, valid = padded()
    with torch.no_grad(), heads.token_mask(valid):
        edit = heads.zero_where(sel := D.Selector("ahon_ln", 1.0))
        with heads.intervene(m, edit):
            out = m(ids).logits
        mask = torch.stack([edit.zeroed[l] for l in range(2)], dim=1)  # [batch, layer, head]
        with heads.intervene(m, heads.zero(mask)):
            replay = m(ids).logits
        # flags differ per input (the per-input protocol), and some heads are zeroed
        assert 0 < mask.float().mean() < 1
        clean = record(m, ids, valid, ["ahon_ln"])["ahon_ln"]
    torch.testing.assert_close(out, replay)
    assert sel.achieved_pct() == pytest.approx(100 * mask.float().mean().item())
    # layer 0 sees the clean stream, so its choices equal the clean-pass flags
    np.testing.assert_array_equal(mask[:, 0].numpy(), clean[:, 0] < 1.0)


def test_random_selection_rate_and_seed():
    m = tiny()
    ids = torch.randint(0, 50, (64, 6), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        with heads.intervene(m, heads.zero_where(a := D.Selector("random", 0.3, seed=1))):
            m(ids)
        with heads.intervene(m, heads.zero_where(b := D.Selector("random", 0.3, seed=1))):
            m(ids)
    assert 20 < a.achieved_pct() < 40
    assert a.achieved_pct() == b.achieved_pct()


def _tiny_lm() -> HeadlabLM:
    """A 2-layer, 4-head byte model with eager attention, seeded (torch seed 0)."""
    torch.manual_seed(0)
    return HeadlabLM(
        Config(vocab_size=258, d_model=32, n_layers=2, n_heads=4, max_seq_len=64, attn_impl="eager")
    ).eval()


def test_batched_mc_equals_headlab_multiple_choice():
    tok = ByteTokenizer()
    m = _tiny_lm()
    items = [
        MCItem("abc", (" d", " xy", " q"), 0),
        MCItem("hello wor", ("ld", "m"), 1),
        MCItem("1, 2, 3,", (" 4", " 5", " 44", " 6"), 2),
    ]
    ref = ev.multiple_choice(m, tok, items, bos=True, batch_size=4, progress=False)
    got = D.mc_accuracy(m, tok, items, bos=True, batch_size=4)
    np.testing.assert_allclose(got["logprobs"], ref["logprobs"], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(got["correct"], ref["correct"])


def test_sweep_on_tiny_model():
    m = _tiny_lm()
    tok = ByteTokenizer()
    task = D.Task("toy_nll", "nll", ["the cat sat on the mat", "a b c d e f g", "hello hello"], bos=True, max_len=32)
    cal = D.calibrate(m, tok, task, ["ahon_ln", "awft"])
    assert cal.scores["ahon_ln"].shape == (3, 2, 4)
    curves, extra = D.sweep(m, tok, task, ["random", "ahon_ln", "awft"], [0.0, 0.25, 0.5], cal, model_name="tiny")
    assert len(curves) == 9
    z = curves[curves["quantile"] == 0.0]
    assert (z.achieved_pct == 0).all() and (z.metric == cal.baseline).all()
    assert (curves[curves["quantile"] > 0].achieved_pct > 0).all()


def test_random_curve_averages_independent_draws():
    """random_seeds=3: the random point is the mean of 3 draws (the first the single run's), per item too."""
    m = _tiny_lm()
    tok = ByteTokenizer()
    items = [MCItem("ab" * k, (" x", " yy", " z", "q"), k % 4) for k in range(1, 7)]
    task = D.Task("toy_mc", "mc", items, bos=True, batch_size=8)
    cal = D.calibrate(m, tok, task, ["ahon_ln"])
    one, e1 = D.sweep(m, tok, task, ["random"], [0.0, 0.5], cal, seed=4)
    three, e3 = D.sweep(m, tok, task, ["random"], [0.0, 0.5], cal, seed=4, random_seeds=3)
    draws = [D.ablate(m, tok, task, "random", 0.5, seed=4 + 500 + D.zeroing.RANDOM_SEED_STRIDE * k) for k in range(3)]
    np.testing.assert_array_equal(e1["per_item"]["random", 0.5], draws[0][0]["per_item"])
    want = np.mean([d[0]["per_item"].astype(float) for d in draws], axis=0)
    np.testing.assert_allclose(e3["per_item"]["random", 0.5], want)
    pt = three[three["quantile"] == 0.5].iloc[0]
    assert pt.metric == pytest.approx(np.mean([d[0]["metric"] for d in draws]))
    assert pt.achieved_pct == pytest.approx(np.mean([d[1].achieved_pct() for d in draws]))
    assert len({tuple(d[0]["per_item"]) for d in draws} | {d[1].achieved_pct() for d in draws}) > 1  # draws differ
    frame = D.per_item_frame({("tiny", "toy_mc"): e3})
    np.testing.assert_allclose(frame["random@0.5"].to_numpy(), want.round(4))
    with pytest.raises(ValueError, match="random_seeds"):
        D.sweep(m, tok, task, ["random"], [0.0, 0.5], cal, random_seeds=0)


def test_point_intervals_bracket_each_point():
    """Fig. 4's bands: each point's item-bootstrap interval holds its metric, for accuracy and for loss."""
    rng = np.random.default_rng(0)
    mc = {("random", 0.0): rng.random(40) < 0.8, ("random", 0.2): rng.random(40) < 0.5}
    nll = {
        ("random", 0.0): [rng.random(5) + 2 for _ in range(12)],
        ("random", 0.2): [rng.random(5) + 3 for _ in range(12)],
    }
    rows = []
    for task, pi in (("generated_mc", mc), ("text_nll", nll)):
        for p in (0.0, 0.2):
            v = pi["random", p]
            m = 100 * np.mean(v) if task == "generated_mc" else float(np.concatenate(v).mean())
            rows.append({"model": "m", "task": task, "score": "random", "quantile": p, "metric": m})
    curves = pd.DataFrame(rows)
    got = D.point_intervals(
        curves, {("m", "generated_mc"): {"per_item": mc}, ("m", "text_nll"): {"per_item": nll}}, 500
    )
    assert list(got.index) == list(curves.index)
    assert (got.metric_lo <= got.metric).all() and (got.metric <= got.metric_hi).all()
    assert (got.metric_hi - got.metric_lo > 0).all()
    mc_w = got[got.task == "generated_mc"].eval("metric_hi - metric_lo")
    assert (mc_w > 10).all() and (mc_w < 40).all()  # 40 Bernoulli items: about +-13 points


# ---------------------------------------------------------------- data -------------------------


def test_generated_mc_is_deterministic_and_well_formed():
    a, b = D.generated_mc(5, seed=3), D.generated_mc(5, seed=3)
    assert a == b and len(a) == 5 * len(D.MC_KINDS)
    for it in a:
        assert len(it.choices) == 4 and len(set(it.choices)) == 4 and 0 <= it.answer < 4
        assert all(c.startswith(" ") for c in it.choices)
    days = [it for it in a if it.subject == "days"][0]
    shown = days.prompt.rstrip(",").split(", ")
    assert days.choices[days.answer].strip() == D.DAYS[(D.DAYS.index(shown[-1]) + 1) % 7]


def test_extra_item_kinds_are_opt_in_correct_and_mostly_distinct():
    assert D.generated_mc(5, seed=3) == D.generated_mc(5, seed=3, kinds=D.MC_KINDS)  # the default set is unchanged
    extra = D.generated_mc(400, seed=0, kinds=D.EXTRA_KINDS)
    for it in extra:
        assert len(set(it.choices)) == 4 and all(c.startswith(" ") for c in it.choices)
        ans = it.choices[it.answer].strip()
        if it.subject == "arith":
            a, b = it.prompt.rstrip(" =").split(" + ")
            assert int(ans) == int(a) + int(b)
        elif it.subject == "countdown":
            seq = [int(v) for v in it.prompt.rstrip(",").split(", ")]
            assert int(ans) == seq[-1] - (seq[0] - seq[1]) and len(set(np.diff(seq))) == 1
        else:
            w = it.prompt.rstrip(",").split(", ")
            assert ans == w[-2] and w[-1] != w[-2]
    for kind in D.EXTRA_KINDS:  # 400 items of a kind: most prompts appear once (the six default kinds repeat)
        prompts = [it.prompt for it in extra if it.subject == kind]
        assert len(set(prompts)) >= 250, kind
    with pytest.raises(ValueError, match="arith"):
        D.generated_mc(1, kinds=("nope",))


def test_bigram_backcopy_rule():
    bb = D.BigramBackcopy(vocab=20, n_triggers=3, seed=0)
    x = bb.sample(50, 30, seed=1)
    assert (x[:, 0] == 0).all() and (x[:, 1:] > 0).all()
    pos = np.argwhere(bb.copy_positions(x))
    assert len(pos) > 0
    for i, t in pos:
        assert x[i, t + 1] == x[i, t - 1]
    free = bb.sample(50, 30, seed=1, trigger_free=True)
    assert not bb.is_trigger[free].any()


def test_plateau_and_flip_rate():
    steps = [0, 100, 200, 300, 400, 500]
    f = [0, 0, 0.1, 0.2, 0.19, 0.21]  # final level (last 20%) 0.21; 80% of it = 0.168
    assert D.plateau_step(steps, f, window=1) == 300
    assert D.plateau_step(steps, f) == 500  # trailing 3-point mean reaches 0.168 only at 500
    assert D.plateau_step(steps, [0, 0, 0, 0, 0, 0]) is None
    a, b = np.zeros((2, 2, 2), bool), np.zeros((2, 2, 2), bool)
    b[0, 0, 0] = True
    assert D.flip_rate([a, b, b]) == [1 / 8, 0.0]


def test_selection_overlap_is_undefined_for_a_function_that_flags_nothing():
    rng = np.random.default_rng(0)
    a = rng.random((6, 2, 4))
    flat = np.ones_like(a)  # a score that is the same everywhere (value norms under one shared KV head, LN form)
    ov = D.selection_overlap({"ahon": a, "avvn_ln": flat}, ["ahon", "avvn_ln"], 0.2).set_index(["a", "b"])
    assert ov.loc[("ahon", "ahon"), "iou"] == 1.0
    assert np.isnan(ov.loc[("avvn_ln", "avvn_ln"), "iou"]) and np.isnan(ov.loc[("avvn_ln", "ahon"), "precision"])
    assert np.isnan(ov.loc[("ahon", "avvn_ln"), "iou"]) and np.isnan(ov.loc[("ahon", "avvn_ln"), "precision"])


def test_app_fig10_matrices_compare_each_pair_on_its_own_common_functions():
    # sweeps x and y have 6 functions, z only the first 3: x-y is compared on all 6, x-z and y-z on 3
    fs = ["random", "awft", "ahon", "ahon_ln", "lthon_ln", "entropy_ln"]
    auc = {"x": [1, 2, 3, 4, 5, 6], "y": [1, 2, 3, 6, 5, 4], "z": [3, 2, 1]}
    rows = [{"key": k, "score": f, "auc": a} for k, v in auc.items() for f, a in zip(fs, v, strict=False)]  # z: first 3
    stats = pd.DataFrame(rows)
    keys = ["x", "y", "z"]
    rho = D.spearman_matrix(stats, keys)
    assert rho.loc["x", "y"] == pytest.approx(1 - 6 * 8 / (6 * 35))  # rank differences 0,0,0,2,0,-2
    assert rho.loc["x", "z"] == pytest.approx(-1.0)  # on random/awft/ahon only
    iou = D.topk_iou_matrix(stats, keys, k=2)
    assert iou.loc["x", "y"] == pytest.approx(1 / 3)  # {entropy_ln, lthon_ln} vs {ahon_ln, lthon_ln}
    assert iou.loc["x", "z"] == pytest.approx(1 / 3)  # among the 3 common: {ahon, awft} vs {random, awft}
    assert np.isnan(D.topk_iou_matrix(stats, keys, k=3).loc["x", "z"])  # 3 common, top-3: IoU 1 by construction


def test_restrict_models_keeps_per_model_lists_aligned():
    from headlab.profiles import ProfileError, resolve

    P = resolve("01_dormant_heads", "smoke")
    assert P.models == ["smollm2-135m", "gemma3-270m"]
    Q = D.restrict_models(P, ["gemma3-270m"])
    assert Q.models == ["gemma3-270m"] and Q.mc_scores == [P.mc_scores[1]] and Q.nll_models == 1
    assert Q.profile == "smoke" and P.models == ["smollm2-135m", "gemma3-270m"]  # P itself untouched
    for bad in ([], ["llama-9000"]):
        with pytest.raises(ProfileError, match="non-empty subset"):
            D.restrict_models(P, bad)


def test_overhead_reports_median_ratio_with_interval_per_score(monkeypatch):
    """The speed cell goes through the benchmark harness: one row per score, ratio to the plain forward
    with its IQR and 95 % interval; every timed call runs a real (plain or zeroing) forward."""
    from headlab import bench

    calls = []
    real = bench._time

    def counted(fn):
        calls.append(fn)
        return real(fn)

    monkeypatch.setattr(bench, "_time", counted)
    m = tiny()
    ids = torch.randint(3, 50, (2, 12), generator=torch.Generator().manual_seed(0))
    t = D.overhead(m, ids, {"ahon_ln": 0.5, "awft": 0.5}, pairs=2)
    assert list(t.score) == ["ahon_ln", "awft"] and (t.pairs == 2).all() and len(calls) == 2 * 2 * 4
    assert ((t.q25 <= t.ratio) & (t.ratio <= t.q75) & (t.ci_low <= t.ratio) & (t.ratio <= t.ci_high)).all()
    assert (t.plain_seconds > 0).all()


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_ahon_wo_is_the_norm_of_each_heads_contribution_after_w_o(family):
    """AHON-WO on GPT-2's Conv1D (W_O stored [in, out]) and on nn.Linear: the mean over positions of
    |o_proj(z with only head h kept) - o_proj(0)|."""
    from test_heads import tiny as tiny_hf

    model = tiny_hf(family)
    hv = heads.Heads(model)
    ids = torch.randint(0, 97, (2, 6), generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), heads.capture(model, z=True) as cache:
        model(ids)
    z = cache.z[1]  # [b, p, head, d_head]
    view = heads.HeadView(1, z, heads=hv)
    got = D.ahon_wo(view)  # [b, head]
    o = hv.o_proj(1)
    with torch.no_grad():
        zero = o(torch.zeros_like(z.flatten(-2)))
        for h in range(hv.n_heads):
            keep = torch.zeros_like(z)
            keep[:, :, h] = z[:, :, h]
            want = (o(keep.flatten(-2)) - zero).norm(dim=-1).mean(1)
            torch.testing.assert_close(got[:, h], want, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------ the unit of replication of generated items
def test_generated_items_share_prompts_and_units_say_so():
    from headlab.papers.dormant_heads.items import generated_mc
    from headlab.papers.dormant_heads.tasks import Task

    items = generated_mc(40, seed=0, kinds=("days", "copy"))
    u = Task("generated_mc", "mc", items).units()
    days, copy = u[:40], u[40:]
    assert len(set(days)) <= 7  # seven weekdays to start from: 40 items, at most 7 prompts
    assert len(set(copy)) == 40  # six random words of 30: every prompt distinct here
    assert all(items[i].prompt == items[j].prompt for i in range(40) for j in range(40) if u[i] == u[j])
    assert list(Task("text_nll", "nll", ["a", "b", "c"]).units()) == [0, 1, 2]


def test_clusters_resample_whole_prompts_and_reduce_to_the_row_bootstrap():
    from headlab import intervals as KI

    labels = np.array([0, 0, 0, 1, 2, 2])
    cl = KI.Clusters(labels)
    assert cl.n == 3 and not cl.singletons
    idx = cl.draw(np.random.default_rng(0), factor=4)
    for lab in range(3):  # each drawn unit brings all its rows: the count of every label is a multiple of its size
        assert np.sum(labels[idx] == lab) % np.sum(labels == lab) == 0
    # singleton labels: the same replicates as the plain row bootstrap with this seed
    x = np.arange(7.0)
    a = KI.Clusters(np.arange(7)).draw(np.random.default_rng(3))
    assert np.array_equal(a, np.random.default_rng(3).integers(0, 7, 7))
    # a statistic of clustered rows: the interval over 3 units is wider than over 6 rows treated as independent
    y = np.array([1.0, 1.0, 1.0, 0.0, 0.5, 0.5])
    _, lo_c, hi_c, n_c = KI.bootstrap(y, clusters=labels, seed=1)
    _, lo_r, hi_r, n_r = KI.bootstrap(y, seed=1)
    assert (n_c, n_r) == (3, 6) and hi_c - lo_c > hi_r - lo_r
    with pytest.raises(ValueError, match="labels for"):
        KI.bootstrap(x, clusters=labels)


def test_calibration_labels_each_recorded_forward_with_its_prompt():
    """An mc calibration records one row per (item, choice) in the length order it runs; ``Task.input_units``
    labels each row with its item's prompt (items of one prompt share it), checked against the rows' own scores:
    a row's recorded score equals the score of a lone forward of the (prompt, choice) it was labelled with."""
    tok = ByteTokenizer()
    m = _tiny_lm()
    items = [
        MCItem("abc", (" d", " xy", " qqq"), 0),
        MCItem("hello wor", ("ld", "m"), 1),
        MCItem("abc", (" xy", " d", " q"), 1),  # the first item's prompt with other choices
    ]
    task = D.Task("toy_mc", "mc", items, bos=True, batch_size=3)
    cal = D.calibrate(m, tok, task, ["ahon", "ahon_ln"])
    u = task.input_units(tok)
    assert len(u) == task.n_inputs() == cal.scores["ahon_ln"].shape[0] and list(cal.units) == list(u)
    assert list(task.units()) == [0, 1, 0] and sorted(u) == [0] * 6 + [1] * 2
    _, owner, order = D.tasks.mc_forwards(tok, items, True)
    choice = [c for it in items for c in it.choices]  # the pairs' choices, in the pairs' order
    for row, i in enumerate(order):  # every row's scores are those of its own (prompt, choice) run alone
        lone = D.Task("one", "mc", [MCItem(items[owner[i]].prompt, (choice[i],), 0)], bos=True)
        got = D.calibrate(m, tok, lone, ["ahon_ln"]).scores["ahon_ln"][0]
        np.testing.assert_allclose(cal.scores["ahon_ln"][row], got, rtol=1e-4, atol=1e-5)
        assert u[row] == task.units()[owner[i]]
    assert D.Task("t", "nll", ["a", "b"]).input_units(tok).tolist() == [0, 1]
    assert D.Task("t", "mc", items, evaluator="lmeval").input_units(tok) is None
    assert D.calibration_table({("tiny", "toy_mc"): cal}).iloc[0][["inputs", "units"]].tolist() == [8, 2]

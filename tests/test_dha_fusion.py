"""headlab.papers.dha_fusion on tiny random models: CKA, grouping, budgets, fusion, collapse, decoding."""

import copy
import itertools

import numpy as np
import pytest
import torch

from headlab.nn import Config, HeadlabLM, LayerHeads
from headlab.papers import dha_fusion as dha

torch.manual_seed(0)
IDS = torch.randint(0, 50, (2, 24), generator=torch.Generator().manual_seed(1))


def _model(**kw):
    torch.manual_seed(0)
    base = dict(vocab_size=50, d_model=32, n_layers=2, n_heads=4, max_seq_len=32)
    return HeadlabLM(Config(**{**base, **kw})).eval()


# --- CKA ---------------------------------------------------------------------------------------


def test_cka_matrix_matches_pairwise_definition_and_invariances():
    g = torch.Generator().manual_seed(0)
    acts = torch.randn(3, 40, 5, generator=g)
    acts[2] = acts[0] @ torch.linalg.qr(torch.randn(5, 5, generator=g))[0] * 3.0 + 7.0  # rotated, scaled, shifted copy
    m = dha.cka_matrix(acts)
    for i, j in itertools.product(range(3), repeat=2):
        assert m[i, j] == pytest.approx(dha.linear_cka(acts[i], acts[j]), abs=1e-10)
    np.testing.assert_allclose(np.diag(m), 1.0, atol=1e-12)
    assert m[0, 2] == pytest.approx(1.0, abs=1e-10)  # CKA ignores rotation, isotropic scale and offset
    assert 0 < m[0, 1] < 0.5
    np.testing.assert_allclose(m, m.T, atol=1e-12)


def test_linear_cka_hand_computed():
    # 1-d features: CKA = squared Pearson correlation
    x = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    y = torch.tensor([[1.0], [3.0], [2.0], [5.0]])
    r = np.corrcoef(x[:, 0], y[:, 0])[0, 1]
    assert dha.linear_cka(x, y) == pytest.approx(r**2, abs=1e-12)


# --- grouping and budgets ----------------------------------------------------------------------

SIM = np.array([[1.0, 0.9, 0.1, 0.2], [0.9, 1.0, 0.2, 0.1], [0.1, 0.2, 1.0, 0.8], [0.2, 0.1, 0.8, 1.0]])


def test_agglomerate_and_hierarchy():
    assert dha.agglomerate(SIM, 2) == [[0, 1], [2, 3]]
    assert dha.agglomerate(SIM, 3) == [[0, 1], [2], [3]]
    h = dha.hierarchy(SIM)
    assert h[4] == [[0], [1], [2], [3]] and h[3] == [[0, 1], [2], [3]] and h[1] == [[0, 1, 2, 3]]


def test_global_agglomerate_spends_budget_where_heads_are_similar():
    other = np.eye(4) * 0.9 + 0.05  # a layer of dissimilar heads
    g = dha.global_agglomerate([SIM, other], total=6)
    assert g == [[[0, 1], [2, 3]], [[0], [1], [2], [3]]]  # both merges go to the redundant layer
    assert dha.counts(dha.global_agglomerate([SIM, other], 5)) == [1, 4]  # linkage 0.15 > 0.05
    assert dha.counts(dha.global_agglomerate([SIM, other], 2)) == [1, 1]


def test_contiguous_and_budget_arithmetic():
    assert dha.contiguous_groups([8], 2) == [[[0, 1, 2, 3], [4, 5, 6, 7]]]
    assert dha.contiguous_groups([3], 2) == [[[0, 1], [2]]]
    assert dha.budget_total([8] * 4, 0.25) == 8
    assert dha.budget_total([3] * 30, 2 / 3) == 60
    with pytest.raises(ValueError):
        dha.budget_total([3] * 5, 0.25)


def test_layer_heads_compose_with_a_gqa_source():
    m = _model(n_kv_heads=2)  # query h reads source head h // 2
    lh = dha.layer_heads_of(m, [[[0, 1]], [[0], [1]]], [[[0], [1]], [[0, 1]]])
    assert lh[0] == LayerHeads([0, 0, 0, 0], [0, 0, 1, 1])
    assert lh[1] == LayerHeads([0, 0, 1, 1], [0, 0, 0, 0])


# --- fusion and collapse -------------------------------------------------------------------------

KG = [[[0, 2], [1], [3]], [[0, 1, 2, 3]]]
VG = [[[0], [1, 2, 3]], [[0, 3], [1, 2]]]


def test_identity_fusion_is_the_source_and_fusion_loss_is_normalised():
    m = _model()
    f = copy.deepcopy(m)
    dha.attach_fusion(f, KG, VG)
    assert dha.max_logit_diff(m, f, IDS) == 0.0
    # hand-computed fusion loss of one group of two heads at the identity: ||W0 - W2||^2 / 2 / sum ||W||^2
    W = m.layers[0].self_attn.k_proj.weight.detach().view(4, 8, 32)
    want = ((W[0] - W[2]).pow(2).sum() / 2) / W.pow(2).sum()
    with torch.no_grad():
        got = dict(((id(lin)), fm.loss(lin.weight)) for lin, fm, _ in dha.fusion_modules(f))[
            id(f.layers[0].self_attn.k_proj)
        ]
    assert got.item() == pytest.approx(float(want), rel=1e-5)
    scaled = copy.deepcopy(f)
    with torch.no_grad():  # shrinking every head does not lower the normalised loss
        for blk in scaled.layers:
            for lin in (blk.self_attn.k_proj, blk.self_attn.v_proj):
                lin.parametrizations.weight.original.mul_(0.1)
    with torch.no_grad():
        assert dha.fusion_loss(scaled).item() == pytest.approx(dha.fusion_loss(f).item(), rel=1e-5)


def test_fusion_operators_follow_the_weights_dtype_and_device():
    m = _model().double()
    dha.attach_fusion(m, KG, VG)
    for lin, fm, _ in dha.fusion_modules(m):
        assert fm.omega.dtype == fm.mask.dtype == lin.parametrizations.weight.original.dtype == torch.float64
        assert fm.omega.device == lin.parametrizations.weight.original.device
    assert m(IDS).logits.dtype == torch.float64


def test_collapse_is_exact_when_members_are_identical():
    f = _model()
    dha.attach_fusion(f, KG, VG)
    dha.set_members_identical(f)
    assert dha.fusion_loss(f).item() < 1e-12
    c = dha.collapse(f, KG, VG)
    assert [b.self_attn.n_k for b in c.layers] == [3, 1] and [b.self_attn.n_v for b in c.layers] == [2, 2]
    assert dha.max_logit_diff(f, c, IDS) < 1e-5
    assert dha.max_logit_diff(c, dha.expand(c), IDS) < 1e-5  # the MHA model with copied heads


def test_collapse_with_gqa_blocks_is_mean_pool_and_equals_headlab_gqa():
    m = _model()
    g = dha.contiguous_groups([4, 4], 2)
    c = dha.collapse(m, g, g)
    gqa = _model(n_kv_heads=2)
    sd = m.state_dict()
    for l in range(2):
        for k in ("k_proj", "v_proj"):
            W = sd[f"layers.{l}.self_attn.{k}.weight"].view(2, 2, 8, 32).mean(1)
            sd[f"layers.{l}.self_attn.{k}.weight"] = W.reshape(16, 32)
    gqa.load_state_dict(sd)
    assert dha.max_logit_diff(c, gqa, IDS) < 1e-6
    # collapsing does not touch the source
    assert dha.max_logit_diff(m, _model(), IDS) == 0.0


def test_scales_fold_exactly_into_q_and_o():
    """A group of heads that are scalar multiples of one head collapses exactly with rank-1 fusion."""
    m = _model()
    with torch.no_grad():
        for blk in m.layers:
            for lin, s in ((blk.self_attn.k_proj, [1.0, 2.0, -0.5, 1.5]), (blk.self_attn.v_proj, [0.3, 1.0, 1.0, 2.0])):
                W = lin.weight.view(4, 8, 32)
                W.copy_(W[0:1] * torch.tensor(s)[:, None, None])
    acts = dha.head_activations(m, IDS, kinds=("k", "v"))
    g = [[[0, 1, 2, 3]]] * 2
    kf = [dha.rank1_fusion(acts["k"][l], g[l]) for l in range(2)]
    vf = [dha.rank1_fusion(acts["v"][l], g[l]) for l in range(2)]
    c = dha.collapse(
        m,
        g,
        g,
        k_coef=[a for a, _ in kf],
        v_coef=[a for a, _ in vf],
        k_scale=[b for _, b in kf],
        v_scale=[b for _, b in vf],
    )
    assert dha.max_logit_diff(m, c, IDS) < 1e-4
    assert dha.max_logit_diff(m, dha.collapse(m, g, g), IDS) > 1e-3  # mean-pool is not exact here


def test_rank1_fusion_reconstructs_at_least_as_well_as_the_mean():
    acts = torch.randn(3, 50, 4, generator=torch.Generator().manual_seed(3))
    coef, scale = dha.rank1_fusion(acts, [[0, 1, 2]])
    fused = torch.einsum("j,jnd->nd", torch.tensor(coef), acts)
    err_r1 = sum((acts[i] - scale[i] * fused).pow(2).sum() for i in range(3))
    err_mean = sum((acts[i] - acts.mean(0)).pow(2).sum() for i in range(3))
    assert err_r1 <= err_mean + 1e-6


def test_rope_commutation():
    r = dha.rope_commutation(d_head=16, T=20)
    assert r["scalar_fusion"] < 1e-12 and r["within_head_mixing"] > 1e-2


def test_decode_cache_matches_full_forward_and_holds_unique_heads():
    m = _model(layer_heads=[LayerHeads([0, 0, 1, 2], [0, 1, 1, 1]), LayerHeads([0, 0, 0, 0], [0, 1, 0, 1])])
    out = dha.decode(m, IDS[:, :6], 5)
    full = m(out["ids"][:, :-1]).logits
    assert (full - out["logits"]).abs().max() < 1e-5
    T = out["cache_tokens"]
    assert T == 10
    assert out["cache_bytes"] == 2 * T * 8 * 4 * (3 + 2 + 1 + 2)  # batch x tokens x d_head x fp32 x unique heads
    assert dha.kv_cache_bytes(m) == 8 * 2 * (3 + 2 + 1 + 2)


def test_run_fusion_pulls_groups_together_and_probe_allocation_spends_the_budget():
    m = _model()
    tokens = np.random.default_rng(0).integers(0, 50, 4000)
    from headlab.data import Batches

    batches = Batches(tokens, 4, 16, seed=0)
    c, log = dha.run_fusion(m, KG, VG, batches, steps=12, lr=1e-3, omega_lr=5e-2, lam_max=200.0, progress=False)
    assert log[-1]["final_fusion_loss"] < 0.25 * log[0]["fusion_loss"]
    assert [b.self_attn.n_k for b in c.layers] == [3, 1]
    sims = {k: [np.eye(4) * 0.5 + 0.5] * 2 for k in "kv"}
    groups, rows, used = dha.probe_allocation(m, sims, 0.5, [batches(99)])
    assert sum(dha.counts(groups["k"])) == 4 and sum(dha.counts(groups["v"])) == 4
    assert used == 64 * (1 + len(rows))


def test_gap_closure_and_acceleration():
    assert dha.gap_closure(1.0, 3.0, 2.0) == pytest.approx(0.5)
    curve = [{"tokens": 0, "loss": 3.0}, {"tokens": 100, "loss": 2.0}, {"tokens": 200, "loss": 1.0}]
    assert dha.tokens_to_reach([r["tokens"] for r in curve], [r["loss"] for r in curve], 1.5) == pytest.approx(150)
    assert dha.acceleration(curve, 50, 1.5) == pytest.approx(3.0)
    assert dha.acceleration(curve, 50, 0.5) == float("inf")


# --- the notebook's steps: checks, sweeps, plans and tables ----------------------------------


def _sims_acts(m):
    acts = dha.head_activations(m, IDS)
    return dha.head_cka(acts), acts


def test_budget_checks_and_exact_checks_on_a_tiny_model():
    m = _model()
    g = {("gqa", 0.5): (dha.contiguous_groups([4, 4], 2), dha.contiguous_groups([4, 4], 2))}
    c1 = dha.budget_checks([("src", m, g, True), ("lm", m, g, False)], IDS)
    assert list(c1.model) == ["src", "lm"] and (c1.k_heads == c1.target).all() and (c1.target == 4).all()
    assert (c1.kv_bytes_per_token == c1.budget_x_source_bytes).all()
    assert c1.decode_cache_bytes_ok.iloc[0] and c1.decode_max_abs_diff.iloc[0] < 1e-5
    assert c1.decode_max_abs_diff.isna().iloc[1] and dha.budget_checks_ok(c1)
    assert not dha.budget_checks_ok(c1.assign(k_heads=[4, 3]))
    ex = dha.exact_checks(m, (KG, VG), g["gqa", 0.5], IDS, d_head=8, T=20)
    assert list(ex) == ["c2_identity_fusion", "c3_collapse_dha", "c3_collapse_gqa", "c4_rope_scalar", "c4_rope_control"]
    assert max(ex[k] for k in list(ex)[:4]) < 1e-4 and ex["c4_rope_control"] > 1e-2


def test_allocations_head_counts_and_decode_table():
    m = _model()
    sims, _ = _sims_acts(m)
    lm_alloc = dha.lm_allocations(sims, n_kv=4, n_layers=2, budgets=[0.5, 0.25])
    for b, d in lm_alloc.items():
        assert dha.counts(d["uniform"][0]) == [round(4 * b)] * 2
        assert sum(dha.counts(d["cka"][0])) == sum(dha.counts(d["cka"][1])) == dha.budget_total([4, 4], b)
    alloc = {(a, 0.5): (*lm_alloc[0.5]["uniform"], 0) for a in dha.SOURCE_ALLOCS}
    f5 = dha.head_counts(alloc, lm_alloc, 0.5, 0.25, "lm")
    assert len(f5) == 5 * 2 * 2 and (f5[f5.model == "lm"].groupby(["allocation", "kind"]).heads.sum() == 2).all()
    lines = dha.allocation_lines(alloc, lm_alloc, "lm", 4)
    assert len(lines) == 4 + 2 and "K heads per layer [2, 2]" in lines[0]
    models = dha.decode_models(m, alloc, [0.5])
    assert [n for n, _ in models] == ["MHA", "GQA 50%", "DHA 50%"]
    kv = dha.decode_table(m, models, IDS[:, :4], 3, pairs=1, batch=2)
    assert list(kv.kv_bytes_per_token_fp16) == [256, 128, 128] and (kv.cache_tokens == 6).all()


def test_pull_to_mean_sweep_and_redundancy_tables():
    m = _model()
    sims, acts = _sims_acts(m)
    batches = [(IDS[:, :-1], IDS[:, 1:])]
    f3a = dha.pull_to_mean_sweep(m, sims, [0.0, 1.0], base_loss=9.0, batches=batches)
    assert len(f3a) == 2 * 2 * 2 and (f3a[f3a.alpha == 0].loss == 9.0).all()
    assert (f3a[f3a.alpha == 1].loss != 9.0).all() and set(f3a.kind) == {"K", "V"}
    f3b = dha.redundancy_table([("a", sims, acts), ("b", sims, acts)])
    assert len(f3b) == 2 * 3 * 2 and f3b[f3b.layer == 1].adjacent_layer_cka.isna().all()
    assert f3b.redundancy.iloc[0] == pytest.approx(dha.redundancy(sims["q"][0]))
    spread = dha.redundancy_spread(f3b)
    assert list(spread.columns) == ["min", "max", "CV over layers"] and len(spread) == 6


def test_arm_plan_arms_frame_and_tables():
    from types import SimpleNamespace

    P = SimpleNamespace(
        fusion_steps=4, budgets=[0.5, 0.25], gqa_extra_steps=2, lite_arm=True, split_fusion_steps=[2, 4]
    )
    names = [(a.name, a.budget) for a in dha.arm_plan(P, ablations=True)]
    assert names[:4] == [("GQA", 0.5), ("DHA", 0.5), ("GQA", 0.25), ("DHA", 0.25)]
    assert names[4:] == [
        (n, 0.5) for n in ("DHA w/o fusion", "DHA w/o adaptive", "GQA + CKA grouping", "DHA-lite", "DHA fusion 2")
    ]
    assert len(dha.arm_plan(P, ablations=False)) == 4
    base = dict(budget=0.5, alloc="a", init="i", k_counts=[2], v_counts=[2], search_steps=1, fusion_steps=2)
    base |= dict(ct_steps=3, init_acc=0.5, final_acc=0.6, tokens=10, final_fusion_loss=0.0, seconds=1.0)
    arms = {
        (s, a, 0.5): {**base, "arm": a, "init_loss": il, "final_loss": il - 0.5, "curve": [], "model": None}
        for s in (0, 1)
        for a, il in (("GQA", 3.0), ("DHA", 2.0), ("DHA w/o fusion", 2.5), ("DHA w/o adaptive", 2.2))
    }
    res = dha.arms_frame(arms)
    assert len(res) == 8 and "curve" not in res and "model" not in res and set(dha.ARM_COLUMNS) <= set(res.columns)
    m = _model()
    alloc = {
        (a, 0.5): (dha.contiguous_groups([4, 4], 2), dha.contiguous_groups([4, 4], 2), 0) for a in ("gqa", "probe")
    }
    lm_rows = [
        {"arm": a, "budget": 0.5, "alloc": "x", "init": "pool", "k_counts": [2], "v_counts": [2], "loss": l, "acc": 0.1}
        | {"kv_bytes_per_token": 1}
        for a, l in (("GQA (mean-pool)", 3.0), ("other", 2.0))
    ]
    mha = {"loss": 1.0, "acc": 0.9}
    t1 = dha.table1(m, mha, alloc, res, 2, "lm", "source (MHA)", m, {"loss": 1.0, "acc": 0.9}, lm_rows)
    assert list(t1.method) == ["MHA", "GQA", "DHA", "source (MHA)", "GQA (mean-pool)", "other"]
    assert list(t1.seeds) == [2, 2, 2, 1, 1, 1] and list(t1.kv_bytes_per_token) == [256, 128, 128, 256, 1, 1]
    lines = dha.gap_lines(t1, 1.0, [0.5], "lm", 1.0, [0.5])
    assert lines == [
        "MHA source, budget 50%: r = 0.50; final loss GQA 2.500 vs DHA 1.500",
        "lm, budget 50%: GQA mean-pool 3.000, best other 2.000 (r = 0.50); source 1.000",
    ]
    t2 = dha.table2(res, lm_rows, 0, 0.5, 0.5, "lm", lite_arm=False)
    assert list(t2.arm) == ["DHA", "DHA w/o fusion", "DHA w/o adaptive", "GQA (mean-pool)", "other"]
    assert str(t2.ct_steps.dtype) == "Int64" and t2.ct_steps.isna().sum() == 2
    assert list(dha.run_params("cpu", [0, 1]).value) == ["cpu", 2]


# --- design options (issue 24) ---------------------------------------------------------------------


def test_group_normalised_fusion_loss_ignores_singletons_and_hand_value():
    m = _model()
    f = copy.deepcopy(m)
    dha.attach_fusion(f, KG, VG, norm="group")
    fm = {id(lin): mod for lin, mod, _ in dha.fusion_modules(f)}
    lin = f.layers[0].self_attn.k_proj
    W = m.layers[0].self_attn.k_proj.weight.detach().view(4, 8, 32)
    with torch.no_grad():
        got = fm[id(lin)].loss(lin.weight).item()
        # KG layer 0 = [[0, 2], [1], [3]]: one multi-member group, normalised by its own members' norms
        want = float(((W[0] - W[2]).pow(2).sum() / 2) / (W[0].pow(2).sum() + W[2].pow(2).sum()))
        assert got == pytest.approx(want, rel=1e-5)
        # inflating a singleton head changes the layer-normalised loss but not the group-normalised one
        fm[id(lin)].omega[1, 1] = 10.0
        assert fm[id(lin)].loss(lin.weight).item() == pytest.approx(want, rel=1e-5)
        one = dha.HeadFusion([[0], [1], [2], [3]], 4, norm="group")
        assert one.loss(W.reshape(32, 32)).item() == 0.0
    with pytest.raises(ValueError, match="fusion_norm"):
        dha.HeadFusion([[0, 1]], 2, norm="whole")


def test_target_objective_holds_lambda_at_zero_below_eps_and_cosine_lr():
    m = _model()
    tokens = np.random.default_rng(0).integers(0, 50, 4000)
    from headlab.data import Batches

    batches = Batches(tokens, 4, 16, seed=0)
    kw = dict(steps=10, lr=1e-3, omega_lr=5e-2, lam_max=200.0, progress=False, objective="target")
    _, log = dha.run_fusion(m, KG, VG, batches, eps=1e-3, dual_lr=10.0, **kw)
    lams = [r["lambda"] for r in log]
    assert lams[0] == 0.0 and lams[1] > 0.0  # the multiplier starts at 0 and rises while L_fuse > eps
    # each step's ascent is dual_lr * (L_fuse - eps), clipped at 0 and lam_max
    for k in range(len(log) - 1):
        want = min(200.0, max(0.0, lams[k] + 10.0 * (log[k]["fusion_loss"] - 1e-3)))
        assert lams[k + 1] == pytest.approx(want, rel=1e-6, abs=1e-9)
    _, log = dha.run_fusion(m, KG, VG, batches, eps=10.0, dual_lr=10.0, **kw)  # target already met: no penalty
    assert all(r["lambda"] == 0.0 for r in log)
    with pytest.raises(ValueError, match="objective"):
        dha.run_fusion(m, KG, VG, batches, steps=1, lr=1e-3, omega_lr=1e-2, lam_max=1.0, objective="x")
    from headlab.train import TrainConfig, lr_at

    tc = TrainConfig(steps=20, lr=1.0, warmup=2, min_lr_ratio=0.1, schedule_steps=10)
    assert lr_at(0, tc) == 0.5 and lr_at(10, tc) == pytest.approx(0.1) and lr_at(19, tc) == pytest.approx(0.1)
    assert lr_at(6, tc) == pytest.approx(0.1 + 0.9 * 0.5)  # half-way through the cosine


def test_fusability_is_scalar_fit_and_ignores_centring_invariance_of_cka():
    rng = torch.Generator().manual_seed(0)
    Y = torch.randn(3, 50, 4, generator=rng)
    Y[1] = -2.0 * Y[0]  # a scalar multiple: fusable exactly
    Q = torch.linalg.qr(torch.randn(4, 4, generator=rng))[0]
    Y[2] = Y[0] @ Q  # a rotation: CKA 1, but no scalar maps one onto the other
    F = dha.fusability_matrix(Y)
    C = dha.cka_matrix(Y)
    assert F[0, 1] == pytest.approx(1.0) and C[0, 2] == pytest.approx(1.0)
    assert F[0, 2] < 0.9 and np.allclose(F, F.T) and np.allclose(np.diag(F), 1.0)
    a = (Y[2] * Y[0]).sum() / Y[0].pow(2).sum()  # residual of the best scalar fit, by hand
    res = (Y[2] - a * Y[0]).pow(2).sum() / Y[2].pow(2).sum()
    assert F[0, 2] == pytest.approx(1.0 - float(res), rel=1e-6)
    sims = dha.head_similarity({"k": [Y]}, "fusability")
    assert np.allclose(sims["k"][0], F)
    with pytest.raises(ValueError, match="search_score"):
        dha.head_similarity({"k": [Y]}, "wasserstein")


def test_joint_allocation_spends_the_budget_and_charges_its_forwards():
    m = _model()
    tokens = np.random.default_rng(0).integers(0, 50, 4000)
    from headlab.data import Batches

    b = [Batches(tokens, 4, 16, seed=0)(99)]
    sims = {k: [np.eye(4) * 0.5 + 0.5] * 2 for k in "kv"}
    groups, rows, used = dha.probe_allocation(m, sims, 0.5, b, allocation="joint")
    assert sum(dha.counts(groups["k"])) == 4 and sum(dha.counts(groups["v"])) == 4
    assert all(c >= 1 for c in dha.counts(groups["k"]))
    # 4 merges per kind; each merge evaluates every layer that still has > 1 head
    assert len(rows) == 8 and used > 64 * (1 + 8)
    with pytest.raises(ValueError, match="allocation"):
        dha.probe_allocation(m, sims, 0.5, b, allocation="best")


def test_the_search_stops_before_spending_more_than_its_budget(monkeypatch):
    m = _model()
    tokens = np.random.default_rng(0).integers(0, 50, 4000)
    from headlab.data import Batches
    from headlab.papers.dha_fusion import fusion

    b = [Batches(tokens, 4, 16, seed=0)(99)]
    ntok = 64
    sims = {k: [np.eye(4) * 0.5 + 0.5] * 2 for k in "kv"}
    # 2 layers x 4 heads, 4 kept: greedy probes counts 1..3 of each layer (6 per kind), joint >= 4 merges per kind
    assert dha.search_forwards([4, 4], 4, "greedy") == 6 and dha.search_forwards([4, 4], 4, "joint") == 4
    _, _, used = dha.probe_allocation(m, sims, 0.5, b)
    assert used == ntok * (1 + 2 * 6)  # the count is exact for the greedy search
    calls = []
    real = fusion.lm_eval
    monkeypatch.setattr(fusion, "lm_eval", lambda *a, **k: calls.append(1) or real(*a, **k))
    with pytest.raises(dha.SearchOverBudget, match="needs 832 forward tokens"):
        dha.probe_allocation(m, sims, 0.5, b, max_tokens=ntok * 12)
    assert not calls  # refused before any forward
    # the joint search's lower bound fits, its real cost does not: it stops mid-way, never past the limit
    limit = ntok * (1 + 2 * 4 + 3)
    with pytest.raises(dha.SearchOverBudget, match=r"joint search \(v\)"):
        dha.probe_allocation(m, sims, 0.5, b, allocation="joint", max_tokens=limit)
    assert len(calls) == limit // ntok  # K's merges cost 7-8 forwards, V's stop at the 12th (the base forward included)


def test_the_search_allowance_and_the_steps_it_is_charged_agree():
    # arm_groups gives a probe search search_allowance(); run_arm charges search_steps(calibration + search): spending
    # the whole allowance must never push continued training below zero steps, for any rounding
    from types import SimpleNamespace

    from headlab.papers.dha_fusion import arms as A

    for total, fsteps, tps, fc, calib in [(14, 4, 64, 1 / 3, 64), (10, 3, 96, 0.3, 200), (7, 0, 50, 1 / 3, 17)]:
        ctx = SimpleNamespace(total_steps=total, tokens_per_step=tps, forward_cost=fc, calib_tokens=calib)
        arm = A.Arm("a", 0.5, "probe", "fusion" if fsteps else "pool", fsteps)
        allow = A.search_allowance(ctx, arm)
        assert A.search_steps(ctx, calib + allow) == total - fsteps  # exactly what is left, not one step more
        assert A.search_steps(ctx, calib + allow + tps / fc) == total - fsteps + 1  # one more step's worth: over


def test_source_arm_keeps_every_head_and_reports_test_loss():
    m = _model()
    tokens = np.random.default_rng(0).integers(0, 50, 4000)
    from headlab.data import Batches

    stream = Batches(tokens, 4, 16, seed=0)
    ev, te = [stream(900)], [stream(901)]
    ctx = dha.Context(m, stream, 64, ev, [stream(902)], total_steps=4, warmup=1, progress=False, test_batches=te)
    r = dha.run_arm(ctx, dha.Arm("source + CT", 1.0, "source"))
    assert r["k_counts"] == [4, 4] and r["search_steps"] == 0 and r["ct_steps"] == 4
    assert r["init_test_loss"] == pytest.approx(dha.lm_eval(m, te)["loss"])
    assert np.isfinite(r["final_test_loss"]) and r["init_loss"] == pytest.approx(dha.lm_eval(m, ev)["loss"])


def test_design_ablation_reuses_unchanged_arms_and_reports_what_does_not_fit():
    from headlab.data import Batches
    from headlab.papers.dha_fusion import design as DD

    m = _model(n_heads=8)
    stream = Batches(np.random.default_rng(0).integers(0, 50, 4000), 4, 16, seed=0)
    ctx = dha.Context(
        m,
        stream,
        64,
        [stream(900)],
        [stream(902)],
        total_steps=14,
        warmup=1,
        progress=False,
        test_batches=[stream(901)],
    )
    variants = {k: DD.VARIANTS[k] for k in ("first design", "search: fusability, joint", "all fixes")}
    d = DD.design_ablation({0: ctx}, 0.25, 2, 1e-4, variants)
    assert len(d) == 3 * 3 and list(d.arm[:3]) == ["source + CT", "GQA", "DHA"]
    first = d[d.variant == "first design"].set_index("arm")
    joint = d[d.variant == "search: fusability, joint"].set_index("arm")
    allf = d[d.variant == "all fixes"].set_index("arm")
    # GQA and the control do not depend on DHA's search: reused; the LR change retrains them
    assert joint.loc["GQA", "final_test_loss"] == first.loc["GQA", "final_test_loss"]
    assert allf.loc["GQA", "lr"] == 1e-4 and allf.loc["GQA", "final_test_loss"] != first.loc["GQA", "final_test_loss"]
    assert d[d.variant != "search: fusability, joint"].fits.all()
    # greedy probes: 1 + 2 kinds x 2 layers x 3 counts forwards of 64 tokens (+ the similarity forward) at 1/3 -> 5 steps
    # + 2 fusion <= 14; the joint search's lower bound (25 forwards) fits, its ~45 forwards do not: stopped mid-way
    assert not joint.loc["DHA", "fits"] and np.isnan(joint.loc["DHA", "final_test_loss"])
    dm = DD.dha_minus_gqa(d)
    assert list(dm.variant.unique()) == list(variants) and np.isnan(dm[dm.variant.str.contains("joint")]["diff"]).all()
    from headlab.papers.dha_fusion.figures import design_ablation

    design_ablation(d.assign(budget=0.25))


def test_fusion_cosine_decays_the_weights_lr_but_not_omegas():
    from headlab.data import Batches

    m = _model()
    seen = []
    orig = torch.optim.AdamW.step

    def spy(self, *a, **k):
        seen.append([(g.get("omega", False), g["lr"]) for g in self.param_groups])
        return orig(self, *a, **k)

    torch.optim.AdamW.step = spy
    try:
        stream = Batches(np.random.default_rng(0).integers(0, 50, 4000), 4, 16, seed=0)
        dha.run_fusion(
            m, KG, VG, stream, steps=6, lr=1e-3, omega_lr=1e-2, lam_max=1.0, warmup=2, min_lr_ratio=0.1, progress=False
        )
    finally:
        torch.optim.AdamW.step = orig
    om = [next(lr for o, lr in s if o) for s in seen]
    w = [next(lr for o, lr in s if not o) for s in seen]
    assert om == pytest.approx([5e-3, 1e-2, 1e-2, 1e-2, 1e-2, 1e-2])
    assert w[1] == pytest.approx(1e-3) and w[-1] < 0.3e-3 and all(a >= b for a, b in itertools.pairwise(w[1:]))

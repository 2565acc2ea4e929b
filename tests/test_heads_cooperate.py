"""Count01 (notebook 03): generator, exact per-head decomposition, metrics, attention interventions.

The intervention tests use a hand-built one-head model whose answer is known in closed form:
uniform attention, values that read +1 for a ``1`` and -1 for a ``0``, and a small negative offset,
so it predicts ``#1 > #0`` exactly and, under ``scale(f0, f1)``, exactly ``f1*n1 > f0*n0``.
"""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from headlab.nn import Config, HeadlabLM
from headlab.papers import heads_cooperate as c

torch.set_num_threads(1)


def recount(b):
    ids = b.ids
    return [(ids == t).sum(1) for t in (c.ZERO, c.ONE, c.TWO)]


@pytest.mark.parametrize("variant", c.VARIANTS)
def test_generator_format_and_labels(variant):
    spec = c.TaskSpec(variant=variant, l_max=10)
    b = c.sample_strings(np.random.default_rng(0), 500, spec)
    n0, n1, n2 = recount(b)
    assert torch.equal(n0, b.n0) and torch.equal(n1, b.n1) and torch.equal(n2, b.n2)
    assert torch.equal(b.y, (n1 > n0).long())  # ties are negatives
    L = n0 + n1 + n2
    assert L.min() >= 1 and L.max() <= 10
    assert (b.ids[:, 0] == c.BOS).all()
    ar = torch.arange(len(b))
    if variant == "B":
        assert torch.equal(b.pos, L) and not (b.ids == c.EOS).any()
    else:
        assert torch.equal(b.pos, L + 1) and (b.ids[ar, b.pos] == c.EOS).all()
        assert torch.equal(b.targets[ar, b.pos], b.y)
    after = torch.arange(b.ids.shape[1])[None] > b.pos[:, None]
    assert (b.ids[after] == c.PAD).all()
    # noise rate and 0/1 symmetry
    frac2 = n2.sum().item() / L.sum().item()
    assert abs(frac2 - 0.3) < 0.03
    if variant == "A_LM":  # next-token targets on BOS and digits, the answer at EOS
        t = b.targets[0]
        k = int(b.pos[0])
        assert torch.equal(t[:k], b.ids[0, 1 : k + 1]) and (t[k + 1 :] == -100).all()


def test_generator_deterministic_and_splits_differ():
    spec = c.TaskSpec()
    a, b = c.test_set(spec, 200, 7), c.test_set(spec, 200, 7)
    assert torch.equal(a.ids, b.ids)
    assert not torch.equal(a.ids, c.test_set(spec, 200, 8).ids)
    d = c.describe(c.test_set(spec, 4000, 1))
    assert 0.35 < d["positive_rate"] < 0.47 and 0.1 < d["tie_rate"] < 0.25
    nt = a.subset(a.near_tie)
    assert ((nt.n1 - nt.n0).abs() <= 1).all()


def test_language_B_sentences_and_exact_distribution():
    spec = c.TaskSpec(variant="B", l_max=12, end_prob=0.6)
    b = c.sample_sentences_B(np.random.default_rng(3), 400, spec)
    ended = (b.ids == c.EOS).any(1)
    assert ended.float().mean() > 0.5
    assert (b.y[ended] == 1).all()  # a sentence only ends inside L
    dist, mask = c.next_token_dist_B(b, spec)
    assert torch.allclose(dist.sum(-1), torch.ones(dist.shape[:2]))
    diff = torch.cumsum((b.ids == c.ONE).long() - (b.ids == c.ZERO).long(), 1)
    assert torch.equal(dist[..., c.EOS] > 0, diff > 0)
    assert (dist[..., c.EOS][diff > 0] == 0.6).all()


def test_count_grid_set():
    spec = c.TaskSpec(l_max=6)
    g = c.count_grid_set(spec, 2, 0)
    assert len(g) == 2 * (7 * 8 // 2 - 1)
    n0, n1, n2 = recount(g)
    assert torch.equal(n0, g.n0) and torch.equal(n1, g.n1) and (n0 + n1 + n2 <= 6).all()


def test_roc_auc_and_separation_accuracy():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    y = rng.random(300) < 0.4
    s = rng.normal(size=300) + y * 1.0
    s[:40] = np.round(s[:40])  # some ties
    assert c.roc_auc(s, y) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert c.roc_auc(-s, y) == pytest.approx(1 - roc_auc_score(y, s), abs=1e-12)
    # brute-force separation accuracy over every threshold, both signs
    best = 0.0
    for t in np.concatenate([[-np.inf], np.unique(s)]):
        acc = ((s > t) == y).mean()
        best = max(best, acc, 1 - acc)
    assert c.best_threshold_acc(s, y) == pytest.approx(best)
    assert c.best_threshold_acc([1, 2, 3, 4], [1, 1, 0, 0]) == 1.0  # sign-agnostic
    assert c.best_threshold_acc([0, 0, 0, 0], [1, 0, 1, 1]) == 0.75  # no cut inside ties


def hand_counter(l_max=8):
    """One head, d_model 8: uniform attention (Q = K = 0), V = I, W_O writes z[1] - z[0] into dim 6,
    the EOS embedding carries -eps in dim 7, W_U[1] = -W_U[0] = (e6 + e7) / 2."""
    spec = c.TaskSpec(l_max=l_max)
    cfg = Config(
        vocab_size=c.VOCAB,
        d_model=8,
        n_layers=1,
        n_heads=1,
        pos_emb="none",
        attn_only=True,
        final_norm=False,
        tie_embeddings=False,
        max_seq_len=spec.seq_len,
    )
    m = HeadlabLM(cfg)
    s = math.sqrt(8)  # RMSNorm scale of a one-hot embedding
    eps = 0.1 * s / (l_max + 2)
    with torch.no_grad():
        E = torch.zeros(c.VOCAB, 8)
        E[torch.arange(c.VOCAB), torch.arange(c.VOCAB)] = 1.0
        E[c.EOS, 7] = -eps
        m.embed_tokens.weight.copy_(E)
        a = m.layers[0].self_attn
        a.q_proj.weight.zero_()
        a.k_proj.weight.zero_()
        a.v_proj.weight.copy_(torch.eye(8))
        a.o_proj.weight.zero_()
        a.o_proj.weight[6, c.ONE], a.o_proj.weight[6, c.ZERO] = 1.0, -1.0
        m.lm_head.weight.zero_()
        m.lm_head.weight[c.ONE, 6:8] = 0.5
        m.lm_head.weight[c.ZERO, 6:8] = -0.5
    return m.eval(), spec


def test_hand_counter_rules_under_attention_edits():
    m, spec = hand_counter()
    b = c.test_set(spec, 600, 0)
    base = c.decision_logits(m, b).detach()
    assert torch.equal(c.predict(base, spec)["label"], b.y)
    # "none" through the intervention path equals the plain forward
    assert torch.allclose(c.intervene_logits(m, b, "none"), base, atol=1e-5)
    rows = {r["edit"]: r for r in c.interventions(m, b, spec, scales=((1, 2), (2, 1), (1, 3), (3, 2)))}
    assert rows["none"]["acc"] == 1.0 and rows["zero2"]["acc"] == 1.0 and rows["balance01"]["acc"] == 1.0
    for name in ("scale f0=1 f1=2", "scale f0=2 f1=1", "scale f0=1 f1=3", "scale f0=3 f1=2"):
        assert rows[name]["rule_agreement"] == 1.0
        assert rows[name]["acc"] < 1.0
    dec = c.decompose(m, b, spec)
    h = c.head_metrics(dec, m, b, spec)[0]
    assert h["auc"] == 1.0 and h["s_acc"] == 1.0 and h["l_acc"] == 1.0
    assert h["w01"] == pytest.approx(1.0, abs=1e-5) and h["w02"] == pytest.approx(1.0, abs=1e-5)  # uniform
    rm = c.rule_map(m, c.count_grid_set(spec, 1, 0), spec)
    for r in rm:
        assert r["p_positive"] == float(r["f1"] * r["n1"] > r["f0"] * r["n0"])


def test_edit_row_properties():
    torch.manual_seed(0)
    ids = torch.tensor([[c.BOS, 0, 1, 2, 1, 0, 2, c.EOS, c.PAD]])
    T = ids.shape[1]
    logits = torch.randn(1, 3, T)
    logits[..., -1] = -float("inf")  # the padding is invisible
    row = logits.softmax(-1)
    for kind in ("zero2", "balance01", "uniform", "scale"):
        w = c.edit_row(row, ids, kind, 2.0, 3.0)
        assert torch.allclose(w.sum(-1), torch.ones(1, 3)) and (w[..., -1] == 0).all()
    assert (c.edit_row(row, ids, "zero2")[..., ids[0] == 2] == 0).all()
    bal = c.edit_row(row, ids, "balance01")
    k = bal[..., (ids[0] == 0) | (ids[0] == 1)]
    assert torch.allclose(k, k[..., :1].expand_as(k))
    # renormalised scaling == adding log f to the pre-softmax scores
    f = torch.where(ids == 0, 2.0, 1.0) * torch.where(ids == 1, 3.0, 1.0)
    ref = (logits + f.log()[:, None]).softmax(-1)
    assert torch.allclose(c.edit_row(row, ids, "scale", 2.0, 3.0), ref, atol=1e-6)
    assert torch.allclose(c.edit_row(row, ids, "scale", 1.0, 1.0), row)


@pytest.mark.parametrize("variant", ["A", "B"])
@pytest.mark.parametrize("H", [1, 4])
def test_decomposition_is_exact(variant, H):
    spec = c.TaskSpec(variant=variant, l_max=12)
    m = c.make_model(H, spec, seed=1)
    with torch.no_grad():  # make the heads non-trivial
        for p in m.parameters():
            p.normal_(0, 0.5)
    b = c.test_set(spec, 300, 0)
    dec = c.decompose(m, b, spec)
    assert dec.max_err < 1e-4 and dec.max_logit_err < 1e-4
    dec32 = c.decompose(m, b, spec, dtype=torch.float32)
    assert dec32.max_err < 1e-4
    assert torch.allclose(dec.logits, c.decision_logits(m, b).detach(), atol=1e-4)
    # the heads' scores sum to the model's decision logit difference
    ld = c.decision_direction(m, spec) @ (dec.r + dec.o.sum(1)).T
    assert torch.allclose(ld, dec.base + dec.d.sum(1), atol=1e-3)


@pytest.mark.slow
def test_training_is_deterministic_and_learns():
    spec = c.TaskSpec(l_max=8)
    run = c.RunSpec(n_heads=2, seed=0, steps=120, batch=64, eval_every=60, n_eval=300)
    r1, r2 = c.train_run(spec, run), c.train_run(spec, run)
    for k in r1["state_dict"]:
        assert torch.equal(r1["state_dict"][k], r2["state_dict"][k])
    assert r1["log"][-1]["test_acc"] > 0.9
    assert [r["step"] for r in r1["log"]] == [0, 60, 120]


def test_plateau_and_solve_times():
    log = [
        {"step": s, "test_loss": l, "test_acc": a}
        for s, l, a in [(0, 1.8, 0.0), (50, 0.68, 0.6), (100, 0.66, 0.6), (150, 0.65, 0.62), (200, 0.2, 0.97)]
    ]
    assert c.plateau_steps(log, level=0.677) == 150
    assert c.steps_to_solve(log) == 200
    assert math.isnan(c.steps_to_solve(log[:3]))
    assert c.prior_entropy(0.5) == pytest.approx(math.log(2))


@pytest.mark.slow
def test_train_many_workers_and_analysis():
    spec = c.TaskSpec(l_max=6)
    jobs = [
        (
            spec,
            c.RunSpec(n_heads=2, seed=s, steps=30, batch=32, eval_every=30, n_eval=100),
            dict(n_test=100, n_fit=100, grid_per_cell=1),
        )
        for s in (0, 1)
    ]
    one, two = c.train_many(jobs, workers=1, progress=False), c.train_many(jobs, workers=2, progress=False)
    for a, b in zip(one, two, strict=True):
        for k in a["state_dict"]:
            assert torch.equal(a["state_dict"][k], b["state_dict"][k])
        assert a["analysis"]["summary"] == b["analysis"]["summary"]
    an = one[0]["analysis"]
    assert len(an["heads"]) == 2 and an["summary"]["decomp_err"] < 1e-4
    assert {r["edit"] for r in an["interventions"]} >= {"none", "zero2", "balance01", "uniform"}


def test_uniform_aggregation_ignores_a_zero_output_head():
    """Adding a head that writes nothing leaves the active-head uniform aggregation unchanged (the old
    all-heads version changes: the zero head lowers the common std every head is rescaled to)."""
    spec = c.TaskSpec(l_max=10)
    m = c.make_model(3, spec, seed=2)
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.5)
    b, fit = c.test_set(spec, 400, 0), c.test_set(spec, 400, 1)
    dec, dec_fit = c.decompose(m, b, spec), c.decompose(m, fit, spec)

    def plus_zero(d):
        z = torch.zeros_like(d.o[:, :1])
        return c.Decomp(
            d.logits,
            d.r,
            torch.cat([d.o, z], 1),
            torch.cat([d.d, z[..., 0]], 1),
            d.base,
            torch.cat([d.row, d.row[:, :1]], 1),
            d.max_err,
            d.max_logit_err,
        )

    a = c.aggregation(dec, m, b, spec, dec_fit, fit)
    z = c.aggregation(plus_zero(dec), m, b, spec, plus_zero(dec_fit), fit)
    assert a["n_inert"] == 0 and z["n_inert"] == 1
    assert z["uniform_active_acc"] == a["uniform_active_acc"]
    assert z["uniform_active_syntax"] == a["uniform_active_syntax"]
    assert a["uniform_active_acc"] == a["uniform_vocab_acc"]  # no inert head: the two agree


def test_inert_mask():
    d = torch.tensor([[0.0, 1.0, 5.0], [0.001, -1.0, -5.0], [0.0, 1.0, 5.0]])
    assert c.inert_mask(d).tolist() == [True, False, False]


@pytest.mark.parametrize("init,norm", [("normal", True), ("torch", True), ("normal", False), ("torch", False)])
def test_init_and_norm_variants_stay_exact(init, norm):
    spec = c.TaskSpec(l_max=10)
    m = c.make_model(2, spec, seed=0, init=init, attn_norm=norm)
    assert isinstance(m.layers[0].input_layernorm, torch.nn.Identity) != norm
    w = m.embed_tokens.weight.std().item()
    assert (w < 0.05) == (init == "normal")  # N(0, 0.02²) against PyTorch's N(0, 1) embedding
    dec = c.decompose(m, c.test_set(spec, 100, 0), spec)
    assert dec.max_err < 1e-6
    with pytest.raises(ValueError, match="init must be"):
        c.make_model(2, spec, init="xavier")


def test_checkpoints_and_weights_roundtrip(tmp_path):
    spec = c.TaskSpec(l_max=6)
    run = c.RunSpec(
        n_heads=2,
        seed=0,
        steps=20,
        batch=16,
        eval_every=10,
        n_eval=50,
        ckpt_steps=[10, 20],
        init="torch",
        attn_norm=False,
    )
    r = c.train_run(spec, run)
    assert sorted(r["checkpoints"]) == [10, 20]
    for k, v in r["state_dict"].items():  # the last checkpoint is the final model
        assert torch.equal(r["checkpoints"][20][k], v)
    assert any(not torch.equal(r["checkpoints"][10][k], v) for k, v in r["state_dict"].items())
    b = c.test_set(spec, 50, 3)
    rows = c.checkpoint_heads(r, b)
    assert sorted({x["step"] for x in rows}) == [10, 20] and len(rows) == 4
    c.save_weights({("A", 2, 0): r}, tmp_path / "w.pt")
    w = c.load_weights(tmp_path / "w.pt")
    assert list(w) == ["A_H2_s0"]
    m1, m2 = c.load_run(r), c.load_run(w["A_H2_s0"])
    assert torch.equal(c.decision_logits(m1, b), c.decision_logits(m2, b))
    with pytest.raises(ValueError, match="ckpt_steps"):
        c.RunSpec(n_heads=1, seed=0, steps=10, ckpt_steps=[20])


def test_ratio_sweep_at_unit_ratio_is_the_unedited_head():
    spec = c.TaskSpec(l_max=10)
    m = c.make_model(3, spec, seed=4)
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.5)
    b = c.test_set(spec, 300, 0)
    dec = c.decompose(m, b, spec)
    hm = {r["head"]: r for r in c.head_metrics(dec, m, b, spec)}
    rs = c.ratio_sweep(m, b, spec, fs=(1 / 8, 1, 8), f2s=(0, 1))
    assert len(rs) == 3 * 2 * 3
    for r in rs:
        if r["f"] == 1 and r["f2"] == 1:
            assert r["s_acc"] == hm[r["head"]]["s_acc"] and r["auc"] == pytest.approx(hm[r["head"]]["auc"], abs=1e-9)
    # the edit is the one the interventions use: scale(1, f) on 1s and f2 on 2s
    row = torch.softmax(torch.randn(2, 3, 5), -1)
    ids = torch.tensor([[c.BOS, c.ZERO, c.ONE, c.TWO, c.EOS]] * 2)
    e = c.edit_row(row, ids, "scale", 1.0, 2.0, 0.0)
    assert torch.all(e[..., 3] == 0) and torch.allclose(e.sum(-1), torch.ones(2, 3))


def test_grid_jobs_keys_and_arms():
    from headlab.profiles import resolve

    P = resolve("03_heads_cooperate", "smoke")
    spec = {v: c.TaskSpec(variant=v, l_max=P.l_max) for v in c.VARIANTS}
    jobs = c.grid_jobs(P, spec, None)
    abl = [k for k in jobs if len(k) == 5]
    assert len(abl) == len(P.init_arms) * len(P.abl_heads) * len(P.abl_seeds)
    assert all((P.variant, H, s) in jobs for H in P.abl_heads for s in P.abl_seeds)  # the default arm
    main = jobs[(P.variant, P.heads[0], P.seeds[0])][1]
    assert main.ckpt_steps == tuple(P.ckpt_steps) and main.init == "normal" and main.attn_norm
    steps = [j[1].steps * k[1] for k, j in jobs.items()]
    assert steps == sorted(steps, reverse=True)


# --- the notebook's tables -------------------------------------------------------------------------------


def test_task_examples_are_the_same_strings_in_both_formats():
    spec = {v: c.TaskSpec(variant=v, l_max=8) for v in c.VARIANTS}
    ex = c.task_examples(spec, 4, 5)
    assert list(ex.variant) == ["A"] * 4 + ["B"] * 4 and list(ex.example) == [0, 1, 2, 3] * 2
    a, b = ex[ex.variant == "A"].reset_index(), ex[ex.variant == "B"].reset_index()
    assert (a[["n0", "n1", "n2", "label_more_ones"]] == b[["n0", "n1", "n2", "label_more_ones"]]).all().all()
    assert a.tokens.str.startswith("BOS").all() and a.tokens.str.endswith("EOS").all()
    assert set(a.target) <= {"0", "1"} and set(b.target) <= {"EOS", "a digit"}
    assert ((a.target == "1") == (a.n1 > a.n0)).all() and ((b.target == "EOS") == (b.n1 > b.n0)).all()


def _heads(aucs, H=2, variant="A", seed=0):
    return [
        {"variant": variant, "H": H, "seed": seed, "head": h, "auc": a, "l_acc": 0.6, "s_acc": 0.8}
        for h, a in enumerate(aucs)
    ]


def test_analysis_frames_and_counting_classes():
    def analysis(aucs, seed):
        return {
            "summary": {"variant": "A", "H": 2, "seed": seed},
            "heads": _heads(aucs, seed=seed),
            **{k: [{"seed": seed}] for k in ("interventions", "rule_map", "ckpt_heads", "ratio_sweep")},
        }

    runs = {("A", 2, 0): {"analysis": analysis([0.99, 0.5], 0)}, ("A", 2, 1): {"log": []}}
    runs[("A", 2, 2)] = {"analysis": analysis([0.92, 0.95], 2)}
    f = c.analysis_frames(runs)
    assert list(f) == list(c.FRAMES) and list(f["summary"].seed) == [0, 2] and len(f["ratio_sweep"]) == 2
    assert list(f["heads"].counting) == [
        "counting (AUC ≥ 0.95)",
        "non-counting (AUC < 0.9)",
        "weak (0.9 ≤ AUC < 0.95)",
        "counting (AUC ≥ 0.95)",
    ]
    by_h = c.heads_by_h(f["heads"])
    assert by_h.loc[2, "heads"] == 4 and by_h.loc[2, "AUC>=0.95"] == 0.5
    assert by_h.loc[2, "mean s-acc - l-acc (counting heads)"] == pytest.approx(0.2)
    assert list(c.counting_heads(f["heads"]).counting_heads) == [1, 1]


def test_dynamics_frames_and_summary_table():
    def log(plateau):  # at the prior for `plateau` evaluations, then solved
        flat = [{"step": 50 * (i + 1), "test_loss": 0.69, "test_acc": 0.6} for i in range(plateau)]
        return [
            {"step": 0, "test_loss": 1.5, "test_acc": 0.5},
            *flat,
            {"step": 50 * (plateau + 1), "test_loss": 0.1, "test_acc": 0.99},
        ]

    runs = {("A", 1, s): {"log": log(p)} for s, p in ((0, 4), (1, 0))} | {("A", 2, 0): {"log": log(0)}}
    runs[("B", 1, 0)] = {"log": log(4)}  # not in the dynamics study
    logs = pd.DataFrame([{"variant": k[0], "H": k[1], "seed": k[2], **r} for k, x in runs.items() for r in x["log"]])
    dyn, plat = c.dynamics_frames(logs, runs, {"A": [1, 2]}, [0, 1], {"A": 0.69}, min_plateau_steps=100)
    assert set(dyn.variant) == {"A"} and len(plat) == 3
    assert list(plat.plateaus) == [True, False, False] and list(plat.steps_to_95) == [250, 50, 50]
    s = c.plateau_summary(plat)
    assert s.loc[("A", 1), "plateaus"] == 1 and s.loc[("A", 1), "seeds"] == 2
    summ = pd.DataFrame(
        [{"variant": "A", "H": H, "seed": 0, "acc": 0.9, "near_tie_acc": 0.8, "logreg_acc": 0.9} for H in (1, 2)]
    ).assign(uniform_std_best_acc=0.7, uniform_vocab_acc=0.6)
    hA = pd.DataFrame(_heads([0.99], H=1) + _heads([0.99, 0.5], H=2))
    ivA = pd.DataFrame(
        [
            {"H": H, "kind": k, "acc": a, "rule_agreement": 1.0}
            for H in (1, 2)
            for k, a in (("zero2", 0.9), ("scale", 0.8))
        ]
    )
    t = c.summary_table(summ, hA, ivA, plat, "A", [1, 2]).set_index("H")
    assert t.loc[2, "counting_heads_frac"] == 0.5 and t.loc[1, "gap_s_minus_l"] == pytest.approx(0.2)
    assert t.loc[1, "plateau_seeds"] == "1/2" and t.loc[2, "plateau_seeds"] == "0/1" and t.loc[1, "zero2_acc"] == 0.9
    assert np.isnan(t.loc[1, "balance01_acc"])


def test_run_params_row():
    from types import SimpleNamespace

    P = SimpleNamespace(variant="A", seeds=[0, 1], steps=10, batch=4, l_max=8, plateau_min_steps=5, dyn_seeds=[2])
    P.__dict__.update(b_seeds=[], b_steps=3, b_heads=[1, 2], ckpt_steps=[5, 10], abl_seeds=[0], workers=2)
    r = c.run_params(P, "box").iloc[0]
    assert r.seeds == "0 1" and r.b_seeds == "" and r.ckpt_steps == "5 10" and r.machine == "box, 2 worker processes"

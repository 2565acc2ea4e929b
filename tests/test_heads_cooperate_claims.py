"""Rules of notebook 03's claims (headlab.papers.heads_cooperate.claims) on small hand-made frames; no model, no torch."""

import pandas as pd
import pytest

from headlab.claims import greater
from headlab.papers.heads_cooperate import claims as cc
from headlab.papers.heads_cooperate import published as cc_pub
from headlab.papers.heads_cooperate import rules as cc_rules


def heads(rows):
    """rows: (H, seed, head, auc, s_acc, l_acc, w01, w02, self_mass, d_std)."""
    cols = ["H", "seed", "head", "auc", "s_acc", "l_acc", "w01", "w02", "self_mass", "d_std"]
    d = pd.DataFrame(rows, columns=cols)
    d["variant"], d["mass_0"] = "A", 0.5
    return d


def counting_model(H, seed, gap=0.1, inert=0, d_std=20.0):
    """H heads; the last ``inert`` of them inert (AUC 0.6, tiny d_std, w01 ~ 0.1), the others counting."""
    out = []
    for h in range(H):
        if h >= H - inert:
            out.append((H, seed, h, 0.6, 0.6, 0.58, 0.1, 1e-4, 0.01, 0.01))
        else:
            out.append((H, seed, h, 1.0, 1.0, 1.0 - gap - 0.001 * seed, 1.0, 0.1, 0.02, d_std + seed))
    return out


def models(rows):
    """rows: (H, seed, model_acc, uniform_vocab_acc)."""
    d = pd.DataFrame(rows, columns=["H", "seed", "model_acc", "uniform_vocab_acc"])
    d["variant"], d["acc"], d["logreg_acc"], d["uniform_std_best_acc"] = "A", d.model_acc, d.model_acc, d.model_acc
    return d


# ------------------------------------------------------------------------------------------------ helpers
def test_all_of_outcomes():
    yes = greater("x", (1.0, 0.9, 1.1, 10), "seeds", 0.5)
    no = greater("x", (0.1, 0.0, 0.2, 10), "seeds", 0.5)
    maybe = greater("x", (0.5, 0.3, 0.7, 10), "seeds", 0.5)
    assert cc_rules.all_of({"a": yes, "b": yes}, "r").verdict == "reproduced"
    assert cc_rules.all_of({"a": yes, "b": no}, "r").verdict == "not reproduced"
    assert cc_rules.all_of({"a": yes, "b": maybe}, "r").verdict == "inconclusive"
    assert "[b]" in cc_rules.all_of({"a": yes, "b": no}, "r").statistic


def test_inert_heads_rule():
    h = heads(counting_model(4, 0, inert=1))
    assert cc_rules.inert_heads(h).tolist() == [False, False, False, True]
    m = cc_rules.models_with_inert(h)
    assert m.n_inert.tolist() == [1]


def test_diff_interval():
    est, lo, hi, n = cc_rules.diff_interval([0, 0, 0], [0.1, 0.1, 0.1])
    assert est == pytest.approx(0.1) and lo == pytest.approx(0.1) and hi == pytest.approx(0.1) and n == 6
    est, lo, hi, _ = cc_rules.diff_interval([0.0, 0.1, 0.2], [0.1, 0.2, 0.3])
    assert lo < est < hi


# -------------------------------------------------------------------------------------------------- claims
def test_k1_verdicts():
    good = models([(H, s, 1.0 - 0.001 * s, 1.0) for H in (1, 4) for s in range(5)])
    assert cc_rules.k1(good)[0].verdict == "reproduced"
    bad = models([(H, s, 0.6 + 0.01 * s, 0.6) for H in (1, 4) for s in range(5)])
    assert cc_rules.k1(bad)[0].verdict == "not reproduced"
    mixed = models([(1, s, a, 1.0) for s, a in enumerate([1.0, 0.97, 0.995, 0.99])])
    assert cc_rules.k1(mixed)[0].verdict == "inconclusive"


def test_k3_share_of_counting_heads():
    h = heads([r for s in range(4) for r in counting_model(4, s)])
    assert cc_rules.k3(h)[0].verdict == "reproduced"
    h = heads([r for s in range(4) for r in counting_model(4, s, inert=3)])
    assert cc_rules.k3(h)[0].verdict == "not reproduced"


def test_k4_gap_and_growth():
    grow = [r for s in range(4) for H, g in ((1, 0.0), (4, 0.1), (8, 0.2)) for r in counting_model(H, s, gap=g)]
    ev, ours, split = cc_rules.k4(heads(grow))
    assert ev.verdict == "reproduced" and "H=8: 0.2" in ours
    flat = [r for s in range(4) for H in (1, 4, 8) for r in counting_model(H, s, gap=0.0, inert=1 if H >= 4 else 0)]
    ev, _, split = cc_rules.k4(heads(flat))
    assert ev.verdict == "not reproduced" and "with an inert head" in split


def test_k5_signature():
    h = heads([r for s in range(10) for r in counting_model(8, s)])
    assert cc_rules.k5(h)[0].verdict == "reproduced"
    h.loc[h.auc >= 0.95, "w01"] = 2.0
    assert cc_rules.k5(h)[0].verdict == "not reproduced"


def test_k6_literal_vs_symmetric():
    # inert heads with w01 = 0.1: symmetric reading says "different", literal (w01 >= 1.5) does not
    h = heads([r for s in range(10) for r in counting_model(8, s, inert=2)])
    ev, ours, note, _ = cc_rules.k6(h)
    assert ev.verdict == "not reproduced" and "symmetric" in note and "reproduced" in note.split(";")[0]
    h.loc[h.auc < 0.9, "w01"] = 3.0
    assert cc_rules.k6(h)[0].verdict == "reproduced"
    assert cc_rules.k6(heads(counting_model(4, 0)))[0] is None  # premise: no non-counting head


def test_k8_judged_without_inert_heads():
    # every model with an inert head drops (the artefact), the inert-free ones do not
    h = heads([r for s in range(10) for r in counting_model(4, s, inert=1 if s < 5 else 0)])
    m = models([(4, s, 1.0, 0.5 if s < 5 else 1.0) for s in range(10)])
    ev, ours, note = cc_rules.k8(m, h)
    assert ev.verdict == "not reproduced" and ev.n == 5 and "0/5" in ours and "5/10 drop" in ours
    # all inert-free models drop
    h = heads([r for s in range(10) for r in counting_model(4, s)])
    m = models([(4, s, 1.0, 0.7) for s in range(10)])
    assert cc_rules.k8(m, h)[0].verdict == "reproduced"
    # one inert-free model: undecided
    h = heads([r for s in range(3) for r in counting_model(4, s, inert=1 if s else 0)])
    m = models([(4, s, 1.0, 0.5) for s in range(3)])
    assert cc_rules.k8(m, h)[0].verdict == "inconclusive"


def test_k8b_needs_format_b_heads():
    m = models([(4, s, 0.95, 0.6) for s in range(3)])
    assert cc_rules.k8b(m, None)[0] is None
    h = heads([r for s in range(3) for r in counting_model(4, s, inert=1)])
    assert cc_rules.k8b(m, h)[0] is None  # every model has an inert head


def plat(n1, n_multi_plateau=0, n=10):
    rows = [{"variant": "A", "H": 1, "seed": s, "plateau_steps": 500 if s < n1 else 0} for s in range(n)]
    rows += [
        {"variant": "A", "H": 2, "seed": s, "plateau_steps": 500 if s < n_multi_plateau else 0} for s in range(4 * n)
    ]
    return pd.DataFrame(rows)


def test_k12_plateau_rate():
    assert cc_rules.k12(plat(3), "A", 300)[0].verdict == "reproduced"
    assert cc_rules.k12(plat(0), "A", 300)[0].verdict == "not reproduced"
    assert cc_rules.k12(plat(0, n=6), "A", 300)[0].verdict == "inconclusive"
    assert cc_rules.k12(plat(3, n_multi_plateau=30), "A", 300)[0].verdict == "not reproduced"


# ----------------------------------------------------------------------------------------- the whole build
def write_run(folder, n_seeds=4):
    hm = heads(
        [
            r
            for s in range(n_seeds)
            for H in (1, 4)
            for r in counting_model(H, s, gap=0.1 if H > 1 else 0, inert=1 if (H == 4 and s == 0) else 0)
        ]
    )
    hb = hm.assign(variant="B")
    pd.concat([hm, hb]).to_csv(folder / "head_metrics.csv", index=False)
    m = models([(H, s, 1.0, 0.5 if (H == 4 and s == 0) else 1.0) for s in range(n_seeds) for H in (1, 4)])
    m["near_tie_acc"], m["decomp_err"], m["decomp_err32"] = 1.0, 1e-13, 1e-5
    pd.concat([m, m.assign(variant="B")]).to_csv(folder / "model_summary.csv", index=False)
    iv = []
    for H in (1, 4):
        for s in range(n_seeds):
            base = dict(variant="A", H=H, seed=s, f0=1, f1=1, rule_agreement=1.0)
            iv += [
                {**base, "edit": "none", "kind": "none", "acc": 1.0},
                {**base, "edit": "zero2", "kind": "zero2", "acc": 1.0},
                {**base, "edit": "balance01", "kind": "balance01", "acc": 0.99},
            ]
            iv += [
                {**base, "edit": e, "kind": "scale", "acc": a}
                for e, a in zip(cc_pub.SCALE_EDITS, (0.62, 0.7, 0.53), strict=True)
            ]
    pd.DataFrame(iv).to_csv(folder / "fig5_interventions.csv", index=False)
    dyn = [
        {"variant": "A", "H": H, "seed": s, "step": st, "plateau_steps": 0, "steps_to_95": 100, "final_acc": 1.0}
        for H in (1, 2)
        for s in range(n_seeds)
        for st in (0, 50)
    ]
    pd.DataFrame(dyn).to_csv(folder / "fig8_dynamics.csv", index=False)
    pd.DataFrame(
        [
            dict(
                variant="A",
                seeds=" ".join(map(str, range(n_seeds))),
                steps=100,
                batch=8,
                l_max=8,
                plateau_min_steps=50,
                dyn_seeds=" ".join(map(str, range(n_seeds))),
                b_seeds="0",
                b_steps=50,
            )
        ]
    ).to_csv(folder / "run_params.csv", index=False)


def test_build_from_csvs(tmp_path):
    write_run(tmp_path)
    C = cc.build(tmp_path, "smoke")
    t = C.table().set_index("claim_id")
    assert set(t.index) == {"K1", "K3", "K4", "K5", "K6", "K7", "K8", "K8b", "K9", "K10", "K11", "K12", "K14"}
    assert set(t[t.kind == "paper"].index) == {"K1", "K3", "K5", "K7", "K8", "K8b", "K14"}
    assert (t.tolerance != "").all()
    assert C.checks().set_index("claim_id").loc["K2", "verdict"] == "passed"
    assert t.loc["K1", "verdict"] == "reproduced" and t.loc["K9", "verdict"] == "reproduced"
    assert t.loc["K11", "verdict"] == "reproduced" and "0.53" in t.loc["K11", "note"]
    assert t.loc["K8", "verdict"] == "inconclusive"  # 0/3 inert-free H=4 models drop: Wilson [0, 0.56] admits both
    assert "1/4 drop" in t.loc["K8", "our_value"]  # the inert one does
    assert t.loc["K12", "verdict"] == "inconclusive"  # 0/4 cannot rule out a 1-in-3 rate
    for _, r in t.iterrows():  # decided rows carry their interval
        if r.verdict in ("reproduced", "not reproduced"):
            assert r.ci_low != "" and r.ci_high != "" and r.n != "" and r.unit and r.rule
    C.save(tmp_path)
    assert (tmp_path / "claims.csv").exists() and (tmp_path / "checks.csv").exists()


def test_build_older_run_without_new_csvs(tmp_path):
    """A committed run that predates model_summary/head_metrics: K2 absent, K8b inconclusive."""
    write_run(tmp_path)
    hm = pd.read_csv(tmp_path / "head_metrics.csv")
    hm[hm.variant == "A"].to_csv(tmp_path / "fig3_head_metrics.csv", index=False)
    ms = pd.read_csv(tmp_path / "model_summary.csv").drop(columns=["acc", "near_tie_acc", "decomp_err", "decomp_err32"])
    ms.to_csv(tmp_path / "fig6_aggregation.csv", index=False)
    for f in ("head_metrics", "model_summary"):
        (tmp_path / f"{f}.csv").unlink()
    C = cc.build(tmp_path, "smoke")
    t = C.table().set_index("claim_id")
    assert len(C.checks()) == 0
    assert t.loc["K8b", "verdict"] == "inconclusive" and "no per-head CSV" in t.loc["K8b", "note"]
    assert t.loc["K1", "verdict"] == "reproduced"


def test_k8_on_active_heads_when_the_run_saved_them():
    """Runs since the inert-head fix carry uniform_active_acc: K8 is judged on every H ≥ 4 model with it."""
    m = models([(4, s, 1.0, 0.5) for s in range(10)])  # the old measure drops everywhere (inert artefact)
    m["uniform_active_acc"], m["n_inert"] = 1.0, 1  # over the active heads nothing drops
    ev, ours, rule = cc_rules.k8_active(m, "models")
    assert ev.verdict == "not reproduced" and ev.n == 10 and "0/10 drop" in ours and "10 have an inert head" in ours
    m["uniform_active_acc"] = 0.9
    assert cc_rules.k8_active(m, "models")[0].verdict == "reproduced"
    assert cc_rules.k8_active(m[m.H < 4], "models")[0] is None


def ratio_rows(drop, n_models=6, H=2):
    """A ratio sweep where every counting head's s-acc is 1.0 at f=1 and 1 - drop at the extremes; head 1 of
    each model does not count (AUC 0.6) and must be left out."""
    rows = []
    for s in range(n_models):
        for head in range(H):
            auc = 1.0 if head == 0 else 0.6
            for f in (1 / 8, 1 / 2, 1, 2, 8):
                for f2 in (0, 1, 4):
                    sa = 1.0 if f == 1 else (1.0 - drop - 0.01 * s if f in (1 / 8, 8) else 0.99)
                    rows.append(
                        dict(variant="A", H=H, seed=s, head=head, f=f, f2=f2, s_acc=sa if head == 0 else 0.5, auc=auc)
                    )
    return pd.DataFrame(rows)


def test_k13_ratio_sweep_drop():
    d = cc_rules.ratio_drop(ratio_rows(0.2))
    assert len(d) == 6 and d["drop"].min() == pytest.approx(0.2)
    assert cc_rules.k13(ratio_rows(0.2))[0].verdict == "reproduced"
    assert cc_rules.k13(ratio_rows(0.0))[0].verdict == "not reproduced"


def test_k14_minimal_solution():
    many = heads([r for s in range(5) for r in counting_model(8, s, inert=2)])  # 6 counting heads each
    ev, ours, note = cc_rules.k14(many)
    assert ev.verdict == "reproduced" and "6.0 counting heads" in ours and "inside" in note
    one = heads([r for s in range(5) for r in counting_model(8, s, inert=7)])  # the minimal solution
    assert cc_rules.k14(one)[0].verdict == "not reproduced"


def test_between_and_newcombe():
    assert cc_rules.between("x", (0.5, 0.2, 0.8, 10), "seeds", 0.0, 0.3, "r").verdict == "reproduced"
    assert cc_rules.between("x", (0.0, -0.1, 0.2, 10), "seeds", 0.0, 0.3, "r").verdict == "not reproduced"
    assert cc_rules.between("x", (0.2, -0.1, 0.5, 10), "seeds", 0.0, 0.3, "r").verdict == "inconclusive"
    d, lo, hi, n = cc_rules.newcombe(5, 10, 0, 10)
    assert d == 0.5 and 0 < lo < 0.5 < hi < 1 and n == 20
    d, lo, hi, _ = cc_rules.newcombe(0, 10, 0, 10)
    assert d == 0 and lo < 0 < hi


def ablation(n_torch, n_ours, n=10):
    rows = []
    for init, norm, k in (
        ("torch", False, n_torch),
        ("normal", True, n_ours),
        ("torch", True, 0),
        ("normal", False, 0),
    ):
        for H in (1, 2):
            for s in range(n):
                rows.append(
                    dict(
                        init=init,
                        attn_norm=norm,
                        H=H,
                        seed=s,
                        plateau_steps=0,
                        steps_to_95=200,
                        final_acc=1.0,
                        plateaus=H == 1 and s < k,
                        gap=0.01,
                        n_inert=0,
                    )
                )
    return pd.DataFrame(rows)


def test_k15_init_hypothesis():
    assert cc_rules.k15(ablation(8, 0))[0].verdict == "reproduced"
    ev, ours, note = cc_rules.k15(ablation(0, 0))
    assert ev.verdict == "not reproduced" and ours == "0/10 vs 0/10" and "torch H=1: 0/10 plateau" in note
    assert cc_rules.k15(ablation(2, 0))[0].verdict == "inconclusive"


def test_build_with_sweep_and_ablation(tmp_path):
    write_run(tmp_path)
    ratio_rows(0.2).to_csv(tmp_path / "fig11_ratio_sweep.csv", index=False)
    ablation(0, 0).to_csv(tmp_path / "fig12_init_ablation.csv", index=False)
    t = cc.build(tmp_path, "smoke").table().set_index("claim_id")
    assert t.loc["K13", "verdict"] == "reproduced" and t.loc["K13", "kind"] == "paper"
    assert t.loc["K15", "kind"] == "hypothesis" and t.loc["K15", "verdict"] == "not reproduced"

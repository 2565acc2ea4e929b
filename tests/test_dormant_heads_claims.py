"""headlab.papers.dormant_heads.claims: the verdict rules on hand-made frames (no model, no kernel)."""

import numpy as np
import pandas as pd
import pytest

from headlab.claims import Claims
from headlab.papers import dormant_heads as D
from headlab.papers.dormant_heads import claims as DC
from headlab.papers.dormant_heads import rules as DC_rules
from headlab.papers.dormant_heads import rules_scores as DC_scores


# ------------------------------------------------------------------------------------------------ helpers
def test_censored_within_uses_max_achieved_for_curves_inside_the_band():
    assert DC_rules.censored_within([0, 5, 12], [50, 50.5, 49.5], 50.0, 1.0) == 12.0  # authors' rule would give 0
    assert DC_rules.censored_within([0, 5, 10], [50, 50, 48], 50.0, 1.0) == pytest.approx(
        D.largest_within([0, 5, 10], [50, 50, 48], 50.0)
    )


def test_plateau_of_a_flat_zero_curve_is_undefined():
    assert D.plateau_step(list(range(0, 1000, 50)), np.zeros(20)) is None


# ----------------------------------------------------------------------------------------- sweep fixtures
def sweep_frames(model, drops_rand, drops_ln=None, n=40, base_acc=0.9, task="generated_mc", seed=0):
    """Curves (random and AHON-LN at quantiles 0, .1, .2 achieving 0, 10, 20 %) and per-item correctness.
    ``drops_*``: accuracy lost (fraction) at each ablated point."""
    rng = np.random.default_rng(seed)
    base = (rng.random(n) < base_acc).astype(int)
    rows, items = [], {"model": model, "task": task, "item": np.arange(n), "n_tok": 1, "base": base}
    for score, drops in (("random", drops_rand), ("ahon_ln", drops_ln or [0.0, 0.0])):
        rows.append(
            dict(
                model=model,
                task=task,
                score=score,
                label=score,
                quantile=0.0,
                achieved_pct=0.0,
                metric=100 * base.mean(),
                baseline=100 * base.mean(),
            )
        )
        for q, x, d in zip((0.1, 0.2), (10.0, 20.0), drops, strict=True):
            c = base.copy()
            k = int(round(d * n))
            c[np.flatnonzero(c)[:k]] = 0  # lose k correct items
            items[f"{score}@{q:g}"] = c
            rows.append(
                dict(
                    model=model,
                    task=task,
                    score=score,
                    label=score,
                    quantile=q,
                    achieved_pct=x,
                    metric=100 * c.mean(),
                    baseline=100 * base.mean(),
                )
            )
    return pd.DataFrame(rows), pd.DataFrame(items)


def make_sweeps(specs):
    cs, its = zip(*[sweep_frames(**s) for s in specs], strict=True)
    curves, items = pd.concat(cs, ignore_index=True), pd.concat(its, ignore_index=True)
    return {k: DC.Sweep(curves, items, *k) for k in dict.fromkeys(zip(items.model, items.task, strict=True))}


def verdict(C, cid):
    return next(r for r in C.rows if r.claim_id == cid).verdict


# ------------------------------------------------------------------------------------------------------ C2
@pytest.mark.parametrize(
    "drops,expected",
    [
        ({"a": 0.30, "b": 0.40}, "reproduced"),  # 30 / 40 pt drops on 40 items: interval well above 5
        ({"a": 0.0, "b": 0.0}, "not reproduced"),  # no drop: interval [0, 0]
        ({"a": 0.30, "b": 0.0}, "partly"),  # one model each way
        ({"a": 0.05, "b": 0.06}, "inconclusive"),  # ~5 pt: the interval straddles the rule
    ],
)
def test_c2_verdicts(drops, expected):
    sw = make_sweeps([dict(model=m, drops_rand=[d, d + 0.1]) for m, d in drops.items()])
    C = Claims("dormant_heads", "test")
    DC_rules.c2(C, None, sw)
    assert verdict(C, "C2") == expected
    r = C.rows[0]
    if expected != "inconclusive":
        assert r.ci_low and r.ci_high and r.n == "40" and r.unit == "items"


def test_c2_premise_near_chance_is_inconclusive():
    sw = make_sweeps([dict(model="a", drops_rand=[0.1, 0.2], base_acc=0.3)])
    C = Claims("dormant_heads", "test")
    DC_rules.c2(C, None, sw)
    assert verdict(C, "C2") == "inconclusive" and "premise" in C.rows[0].note


def test_interpolated_items_reproduce_the_curve():
    sw = make_sweeps([dict(model="a", drops_rand=[0.2, 0.4])])
    s = sw["a", "generated_mc"]
    at = s.interp_items("random", 15.0)
    c = s.curves[s.curves.score == "random"].sort_values("achieved_pct")
    assert 100 * at.mean() == pytest.approx(np.interp(15.0, c.achieved_pct, c.metric))
    assert s.interp_items("random", 25.0) is None


# ------------------------------------------------------------------------------------------------- S1 / C6
def test_s1_reproduced_and_not():
    good = make_sweeps([dict(model="a", drops_rand=[0.4, 0.6], drops_ln=[0.0, 0.05])])
    C = Claims("dormant_heads", "test")
    DC_rules.s1(C, good)
    assert verdict(C, "S1") == "reproduced" and C.rows[0].kind == "hypothesis"
    bad = make_sweeps([dict(model="a", drops_rand=[0.0, 0.0], drops_ln=[0.4, 0.6])])
    C = Claims("dormant_heads", "test")
    DC_rules.s1(C, bad)
    assert verdict(C, "S1") == "not reproduced"


# ------------------------------------------------------------------------------------------------------ C9
def test_c9_verdicts():
    # AWFT's within-1-pt % varies across sweeps (never leaves the band on one, falls at once on the other),
    # AHON-LN's does not: reproduced; the reverse: not reproduced
    def frames(model, rand, ln, seed):
        c, i = sweep_frames(model, rand, ln, n=200, seed=seed)
        c = c.replace({"score": {"random": "awft"}})
        i = i.rename(columns=lambda k: k.replace("random@", "awft@"))
        return c, i

    def run(specs):
        cs, its = zip(*[frames(*s) for s in specs], strict=True)
        curves, items = pd.concat(cs, ignore_index=True), pd.concat(its, ignore_index=True)
        sw = {k: DC.Sweep(curves, items, *k) for k in dict.fromkeys(zip(items.model, items.task, strict=True))}
        C = Claims("dormant_heads", "test")
        DC_rules.c9(C, sw, {"tol": 1.0})
        return C

    C = run([("a", [0.0, 0.0], [0.2, 0.4], 0), ("b", [0.3, 0.5], [0.2, 0.4], 1)])
    assert verdict(C, "C9") == "reproduced"
    assert "censored" in C.rows[0].note and "a/generated_mc awft at 20.0%" in C.rows[0].note
    C = run([("a", [0.2, 0.4], [0.0, 0.0], 0), ("b", [0.2, 0.4], [0.3, 0.5], 1)])
    assert verdict(C, "C9") == "not reproduced"


def test_c9_single_sweep_untestable():
    sw = make_sweeps([dict(model="a", drops_rand=[0.1, 0.2])])
    C = Claims("dormant_heads", "test")
    DC_rules.c9(C, sw, {"tol": 1.0})
    assert verdict(C, "C9") == "not testable here"


# ----------------------------------------------------------------------------------- C11 (text type effect)
def test_type_effect():
    lab = np.repeat(["x", "y", "z"], 10)
    strong = np.repeat([5.0, 20.0, 40.0], 10) + np.tile(np.linspace(-1, 1, 10), 3)
    _, lo, _, n = DC_scores.type_effect(strong, lab, n_perm=500)
    assert lo > 0 and n == 30
    flat = np.tile(np.linspace(0, 10, 10), 3)  # the same values in every type: less spread than chance
    est, lo, hi, _ = DC_scores.type_effect(flat, lab, n_perm=500)
    assert hi <= 0
    noisy = np.random.default_rng(0).normal(size=30)  # no effect: the interval straddles 0
    est, lo, hi, _ = DC_scores.type_effect(noisy, lab, n_perm=500)
    assert lo < 0 < hi


# ----------------------------------------------------------------------------- C4 / C5, C10 / S3, C7, checks
def write_folder(tmp_path, emerge=True, awft_ds=(0.90, 0.91, 0.92)):
    P = dict(seed=0, tol=1.0, threshold_p=0.15, awft_p=0.05, dyn_steps=1000, tau_ahon_ln=0.5, tau_awft=0.5)
    pd.DataFrame([P]).to_csv(tmp_path / "run_params.csv", index=False)
    rng = np.random.default_rng(0)
    th, tb, cal = [], [], []
    for m, shift in (("m1", 0.0), ("m2", 0.3)):
        for d, aw in zip(("generated_mc", "mmlu", "text_nll"), awft_ds, strict=True):
            cal.append(dict(model=m, dataset=d, inputs=50))
            for p in (0.05, 0.15):
                if p == 0.05 and d != "generated_mc":
                    continue
                for s, v in (("ahon_ln", 0.5 + shift), ("awft", aw - shift)):
                    th.append(dict(model=m, dataset=d, score=s, p=p, threshold=v))
                    tb += [
                        dict(model=m, dataset=d, score=s, p=p, rep=r, threshold=v + rng.normal(0, 0.002))
                        for r in range(100)
                    ]
    pd.DataFrame(th).to_csv(tmp_path / "thresholds.csv", index=False)
    pd.DataFrame(tb).to_csv(tmp_path / "threshold_boot.csv", index=False)
    pd.DataFrame(cal).to_csv(tmp_path / "calibration.csv", index=False)
    steps = list(range(0, 1001, 50))
    rows = []
    for s in ("ahon_ln", "awft"):
        for i in range(20):
            f = np.minimum(1, np.arange(len(steps)) / 2) * (0.3 if emerge else 0.0)
            f = np.clip(f + (rng.normal(0, 0.05, len(steps)) if emerge else 0) * (np.arange(len(steps)) > 0), 0, 1)
            rows.append(
                {
                    "score": s,
                    "input": i,
                    "label": "t",
                    **{f"step_{x}": v for x, v in zip(steps, f, strict=True)},
                    "flip_rate": 0.05 if emerge else 0.0,
                }
            )
    pd.DataFrame(rows).to_csv(tmp_path / "v1_dynamics_inputs.csv", index=False)
    return P


def test_c4_partly_when_direction_holds_but_magnitude_does_not(tmp_path):
    P = write_folder(tmp_path, awft_ds=(0.90, 0.95, 1.0))  # AWFT spread ~0.1 (> AHON-LN's 0, << 1.25)
    C = Claims("dormant_heads", "test")
    DC_scores.c4(C, tmp_path, P)
    assert verdict(C, "C4") == "partly"
    P = write_folder(tmp_path, awft_ds=(0.90, 0.2, 0.1))  # spread ~1.9: both parts hold
    C = Claims("dormant_heads", "test")
    DC_scores.c4(C, tmp_path, P)
    assert verdict(C, "C4") == "reproduced"


def test_c5_not_reproduced_when_ahon_ln_varies_more(tmp_path):
    P = write_folder(tmp_path)  # AHON-LN 0.5 vs 0.8 across models, AWFT 0.9 vs 0.6 -> AWFT spread 0.4 < 0.46
    C = Claims("dormant_heads", "test")
    DC_scores.c5(C, tmp_path, P)
    assert verdict(C, "C5") == "not reproduced"


def test_c10_s3(tmp_path):
    P = write_folder(tmp_path)
    C = Claims("dormant_heads", "test")
    DC_scores.c10_s3(C, tmp_path, P)
    assert verdict(C, "C10") == "reproduced" and verdict(C, "S3") == "reproduced"
    assert [r.kind for r in C.rows if r.claim_id == "S3"] == ["hypothesis"]
    assert verdict(C, "S3a") == "passed" and C.checks().claim_id.tolist() == ["S3a"]
    P = write_folder(tmp_path, emerge=False)
    C = Claims("dormant_heads", "test")
    DC_scores.c10_s3(C, tmp_path, P)
    assert verdict(C, "C10") == "inconclusive" and "premise" in next(r for r in C.rows if r.claim_id == "C10").note


def test_c7_untestable_and_says_why(tmp_path):
    pd.DataFrame({"pair": ["base vs finetuned", "base vs other seed", "m1 vs m2"], "W": [0.06, 0.15, 0.08]}).to_csv(
        tmp_path / "wasserstein.csv", index=False
    )
    C = Claims("dormant_heads", "test")
    DC_scores.c7(C, tmp_path)
    r = C.rows[0]
    assert r.verdict == "not testable here" and "does not discriminate" in r.note


# ------------------------------------------------------------------------- the notebook's per-unit CSV builders
def test_per_item_frame_and_sweep_roundtrip():
    base = np.array([True, True, False, True])
    extra = {
        ("m", "generated_mc"): {
            "per_item": {("random", 0.0): base, ("random", 0.1): np.array([1, 0, 0, 1], bool), ("entropy", 0.1): base},
            "units": np.array([0, 1, 0, 2]),  # items 0 and 2 share a prompt
        },
        ("m", "text_nll"): {
            "per_item": {("awft", 0.0): [np.ones(3), np.ones(2) * 2], ("awft", 0.1): [np.ones(3) * 2, np.ones(2) * 2]}
        },
    }
    assert "entropy@0.1" not in D.per_item_frame(extra, D.CLAIM_SCORES).columns  # only the named functions
    f = D.per_item_frame(extra)
    assert "entropy@0.1" in f.columns  # by default every swept function, so every interval can be redrawn
    mc = f[f.task == "generated_mc"]
    assert mc.base.tolist() == [1, 1, 0, 1] and mc["random@0.1"].tolist() == [1, 0, 0, 1]
    assert mc.unit.tolist() == [0, 1, 0, 2] and f[f.task == "text_nll"].unit.tolist() == [0, 1]  # texts: themselves
    curves_mc = pd.DataFrame(
        [
            dict(model="m", task="generated_mc", score="random", quantile=q, achieved_pct=x, metric=v, baseline=75.0)
            for q, x, v in ((0.0, 0.0, 75.0), (0.1, 10.0, 50.0))
        ]
    )
    smc = DC.Sweep(curves_mc, f, "m", "generated_mc")
    assert smc.clusters.n == 3 and smc.unit_name == "prompts"
    nll = f[f.task == "text_nll"]
    assert nll.n_tok.tolist() == [3, 2] and nll.base.tolist() == [3.0, 4.0] and nll["awft@0.1"].tolist() == [6.0, 4.0]
    curves = pd.DataFrame(
        [
            dict(model="m", task="text_nll", score="awft", quantile=q, achieved_pct=x, metric=v, baseline=1.4)
            for q, x, v in ((0.0, 0.0, 7 / 5), (0.1, 10.0, 2.0))
        ]
    )
    s = DC.Sweep(curves, f, "m", "text_nll")
    xs, V = s.points("awft")
    assert s.metric(V, s.n_tok) == pytest.approx([1.4, 2.0])


def test_threshold_bootstrap_and_dynamics_frames():
    class Cal:
        scores = {
            "ahon_ln": np.random.default_rng(0).random((10, 2, 3)),
            "awft": np.random.default_rng(1).random((10, 2, 3)),
        }

    tb = D.threshold_bootstrap(
        {("m", "generated_mc"): Cal()}, [("generated_mc", "awft", 0.05), ("mmlu", "awft", 0.05)], n_boot=5
    )
    assert len(tb) == 5 and set(tb.dataset) == {"generated_mc"} and tb.threshold.between(0, 1).all()
    # with units: rows of one unit come and go together; with singleton units, the draws of units=None
    cal = Cal()
    cal.units = np.arange(10)
    same = D.threshold_bootstrap({("m", "generated_mc"): cal}, [("generated_mc", "awft", 0.05)], n_boot=5)
    np.testing.assert_array_equal(same.threshold, tb.threshold)
    one = Cal()
    one.scores = {"awft": np.repeat(np.arange(5.0), 2)[:, None, None] * np.ones((10, 2, 3))}
    one.units = np.repeat(np.arange(5), 2)  # unit k: two forwards, every score k
    tb1 = D.threshold_bootstrap({("m", "generated_mc"): one}, [("generated_mc", "awft", 0.5)], n_boot=50)
    assert set(tb1.threshold) <= set(np.arange(5.0)) | set(np.arange(0.5, 4.5))  # quantiles of whole units
    st = {"ahon_ln": [np.zeros((2, 1, 2), bool), np.array([[[1, 0]], [[0, 0]]], bool)]}
    d = D.dynamics_per_input(st, [0, 50], ["a", "b"])
    assert d.step_50.tolist() == [0.5, 0.0] and d.flip_rate.tolist() == [0.5, 0.0]

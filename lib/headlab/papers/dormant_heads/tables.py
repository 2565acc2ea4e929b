"""The notebook's tidy tables, built from the calibration passes (``cal[(model, dataset)]``), the sweeps
(``curves`` and ``extra[(model, dataset)]``) and the from-scratch states; each returns the frame a section saves,
draws or prints."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ...intervals import Clusters
from .dynamics import flip_rate
from .scores import SCORES
from .stats import bootstrap_within, dormant_fraction_by, permutation_test, selection_overlap, wasserstein
from .zeroing import threshold

# --------------------------------------------------------------------------------------------
# calibration and sweeps (§2-§4)
# --------------------------------------------------------------------------------------------


def calibration_table(cal: dict) -> pd.DataFrame:
    """One row per calibration pass: model, dataset, inputs (forwards), units (the units of replication those
    forwards come from: ``Calibration.units``, prompts for multiple choice; = inputs where the pass has none),
    baseline (accuracy % or nats/token, rounded), metric, seconds."""
    return pd.DataFrame(
        [
            {
                "model": n,
                "dataset": t,
                "inputs": c.scores["ahon"].shape[0],
                "units": c.scores["ahon"].shape[0] if c.units is None else len(np.unique(c.units)),
                "baseline": round(c.baseline, 3),
                "metric": "acc %" if "nll" not in t else "nats/token",
                "seconds": round(c.seconds, 1),
            }
            for (n, t), c in cal.items()
        ]
    )


def achieved_table(curves: pd.DataFrame) -> pd.DataFrame:
    """Achieved % of heads zeroed per (model, task, score label) at each nominal quantile, rounded."""
    return (
        curves.pivot_table(index=["model", "task", "label"], columns="quantile", values="achieved_pct")
        .round(1)
        .rename(columns=lambda q: f"achieved % @ nominal {q:.0%}")
    )


def within_tol_intervals(curves: pd.DataFrame, extra: dict, tasks: dict, n_boot: int, seed: int = 0) -> pd.DataFrame:
    """95 % bootstrap interval (over prompts / texts) of each sweep's largest % zeroed within tolerance (``bootstrap_within``),
    one row per (model, task, score): ci_lo, ci_hi."""
    rows = []
    for (name, tname), ex in extra.items():
        g = curves[(curves.model == name) & (curves.task == tname)]
        for s in dict.fromkeys(g.score):
            lo, hi = bootstrap_within(tasks[name][tname], g, ex["per_item"], s, n_boot=n_boot, seed=seed)
            rows.append({"model": name, "task": tname, "score": s, "ci_lo": lo, "ci_hi": hi})
    return pd.DataFrame(rows)


def point_intervals(curves: pd.DataFrame, extra: dict, n_boot: int, seed: int = 0) -> pd.DataFrame:
    """``curves`` with ``metric_lo`` / ``metric_hi``: each swept point's 95 % percentile interval over the units of
    replication (``extra[...]["units"]``: prompts of generated items, each with all its items; texts) resampled
    with replacement (one resample per (model, task) and replicate, shared by its points: the bands of Fig. 4 and
    the appendix grid). MC: accuracy in %; next-token loss: total loss / total tokens of the resampled texts."""
    out = []
    for (name, tname), g in curves.groupby(["model", "task"], sort=False):
        ex = extra[name, tname]
        pi = ex["per_item"]
        n = len(pi[g.score.iloc[0], g["quantile"].iloc[0]])
        cl = Clusters(ex.get("units", np.arange(n)))
        if cl.n_rows != n:
            raise ValueError(f"{name}/{tname}: {cl.n_rows} units for {n} per-item results")
        rng = np.random.default_rng([seed, len(out)])
        idx = [cl.draw(rng) for _ in range(n_boot)]  # replicate -> item indices
        lo, hi = [], []
        for r in g.itertuples():
            v = pi[r.score, r.quantile]
            if isinstance(v, np.ndarray):  # MC: 1/0 (or random's mean over draws) per item
                x = np.asarray(v, float)
                b = np.array([100.0 * x[i].mean() for i in idx])
            else:  # next-token loss: per-text token losses
                sums, lens = np.array([np.sum(a) for a in v]), np.array([len(a) for a in v], float)
                b = np.array([sums[i].sum() / lens[i].sum() for i in idx])
            q = np.percentile(b, [2.5, 97.5])
            lo.append(float(q[0]))
            hi.append(float(q[1]))
        out.append(g.assign(metric_lo=lo, metric_hi=hi))
    return pd.concat(out).loc[curves.index]


def table2_summary(table2_long: pd.DataFrame) -> pd.DataFrame:
    """Table 2: per (model, task), AWFT's largest % within tolerance (NaN when not swept) beside the best
    other function's (random excluded) and their difference. ``table2_long``: ``curve_stats`` rows."""
    t2 = []
    for (name, tname), g in table2_long.groupby(["model", "task"], sort=False):
        other = g[~g.score.isin(["awft", "random"])].sort_values("within_tol_pct", ascending=False).iloc[0]
        aw = g[g.score == "awft"].within_tol_pct
        t2.append(
            {
                "model": name,
                "task": tname,
                "AWFT": float(aw.iloc[0]) if len(aw) else np.nan,
                "best other": other.within_tol_pct,
                "best function": other.label,
                "difference": other.within_tol_pct - (float(aw.iloc[0]) if len(aw) else np.nan),
            }
        )
    return pd.DataFrame(t2)


# --------------------------------------------------------------------------------------------
# thresholds and flagged sets (§7, §8)
# --------------------------------------------------------------------------------------------


def threshold_table(cal: dict, names: Sequence[str], ps: Sequence[float]) -> pd.DataFrame:
    """The threshold that flags a share p of each pass's pooled scores, per (model, dataset, score, p).
    Rows: model, dataset, score, label, p, threshold."""
    th = []
    for (name, tname), c in cal.items():
        for s in names:
            for p in ps:
                th.append(
                    {
                        "model": name,
                        "dataset": tname,
                        "score": s,
                        "label": SCORES[s].abbr,
                        "p": p,
                        "threshold": threshold(c.scores[s], p, SCORES[s].flag_high),
                    }
                )
    return pd.DataFrame(th)


def threshold_boot_combos(
    datasets: Sequence[str], threshold_p: float, awft_p: float, scores: Sequence[str] = ("ahon_ln", "awft")
) -> list[tuple[str, str, float]]:
    """(dataset, score, p) whose thresholds the claims resample: every dataset at ``threshold_p`` (C4), and
    generated MC at ``awft_p`` too when it differs (C5)."""
    return [(d, s, threshold_p) for d in datasets for s in scores] + [
        ("generated_mc", s, awft_p) for s in scores if awft_p != threshold_p
    ]


def overlap_table(scores: dict[str, dict[str, np.ndarray]], names: Sequence[str], p: float) -> pd.DataFrame:
    """``selection_overlap`` of each model's unablated scores (model -> name -> ``[input, layer, head]``),
    with a model column."""
    return pd.concat([selection_overlap(s, names, p).assign(model=n) for n, s in scores.items()])


def zero_freq_frame(freq: dict[str, np.ndarray]) -> pd.DataFrame:
    """One row per (model, head): the fraction of inputs on which it was zeroed. ``freq``: model ->
    ``[layer * head]`` (a sweep's ``head_frequency``, flattened)."""
    return pd.concat(
        [pd.DataFrame({"model": n, "head_index": np.arange(len(f)), "zero_freq": f}) for n, f in freq.items()]
    )


def overlap_summary(ovs: pd.DataFrame, freq: dict[str, np.ndarray]) -> str:
    """One line per model: the largest IoU and precision between two functions' flagged sets, and the
    share of heads zeroed on some but not all inputs (always, never)."""
    off = ovs[ovs.a != ovs.b]
    lines = []
    for name, f in freq.items():
        o = off[off.model == name]
        lines.append(
            f"{name}: max IoU {o.iou.max():.2f}, max precision {o.precision.max():.2f}; heads zeroed on some but not "
            f"all inputs: {np.mean((f > 0) & (f < 1)):.0%} (always {np.mean(f == 1):.0%}, never {np.mean(f == 0):.0%})"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# v1: dynamics, text type; score distributions (§9-§11)
# --------------------------------------------------------------------------------------------


def flip_frame(states: dict[str, list[np.ndarray]], steps: Sequence[int]) -> pd.DataFrame:
    """Share of (input, layer, head) states that switch between consecutive checkpoints, per score; rows:
    score, step (the later checkpoint), flip_rate. ``states[score]``: one ``[input, layer, head]`` per step."""
    return pd.DataFrame(
        [
            {"score": s, "step": b, "flip_rate": r}
            for s in states
            for b, r in zip(steps[1:], flip_rate(states[s]), strict=True)
        ]
    )


def text_type_table(
    cal: dict,
    tasks: dict,
    models: Sequence[str],
    states: dict[str, list[np.ndarray]],
    eval_labels: Sequence[str],
    p: float,
    seed: int = 0,
) -> tuple[pd.DataFrame, dict]:
    """Dormant share of each input's heads by label, and a permutation test of "the label does not matter".

    Pretrained models: every corpus paragraph of the text-loss pass, AHON-LN and AWFT flagged past their
    pooled p-quantile (upper tail for AWFT), labelled by text type. The from-scratch model: each eval input
    at the last checkpoint (``states``), labelled trigger / no_trigger. Returns the rows (label, dormant_frac,
    model, score, pct) and (model, score) -> permutation p."""
    tt, perm = [], {}
    for name in models:
        c = cal[name, "text_nll"]
        for s in ["ahon_ln", "awft"]:
            tau = threshold(c.scores[s], p, SCORES[s].flag_high)
            d = dormant_fraction_by(c.scores[s], tau, SCORES[s].flag_high, tasks[name]["text_nll"].labels)
            perm[name, s] = permutation_test(d.dormant_frac.values, d.label.values, seed=seed)
            tt.append(d.assign(model=name, score=s))
    for s in states:
        st = states[s][-1]  # [input, layer, head]
        tt.append(
            pd.DataFrame(
                {"label": eval_labels, "dormant_frac": st.mean(axis=(1, 2)), "model": "from-scratch BB", "score": s}
            )
        )
        perm["from-scratch BB", s] = permutation_test(st.mean(axis=(1, 2)), eval_labels, seed=seed)
    tt = pd.concat(tt, ignore_index=True)
    tt["pct"] = 100 * tt.dormant_frac
    return tt, perm


def pairwise_wasserstein(*groups: dict[str, np.ndarray]) -> dict[str, float]:
    """Wasserstein distance between the score samples of every pair within each group (name -> flat
    scores), keyed "a vs b"; pairs in insertion order."""
    return {f"{a} vs {b}": wasserstein(x[a], x[b]) for x in groups for i, a in enumerate(x) for b in list(x)[i + 1 :]}


def cdf_frame(groups: dict[str, dict[str, np.ndarray]], score: str = "ahon_ln") -> pd.DataFrame:
    """Each sample's 101 percentiles, for its empirical CDF; rows: group, model, cum_fraction, <score>.
    ``groups``: group -> model -> flat scores."""
    return pd.DataFrame(
        [
            {"group": g, "model": k, "cum_fraction": round(float(q), 2), score: float(v)}
            for g, x in groups.items()
            for k, arr in x.items()
            for q, v in zip(np.linspace(0, 1, 101), np.quantile(arr, np.linspace(0, 1, 101)), strict=True)
        ]
    )

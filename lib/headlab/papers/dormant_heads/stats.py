"""Statistics of ablation curves and score agreement (the ICLR notebook's definitions)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ...intervals import Clusters
from .scores import SCORES
from .tasks import Task, metric_from_items
from .zeroing import flagged, threshold

# --------------------------------------------------------------------------------------------
# statistics (the ICLR notebook's definitions)
# --------------------------------------------------------------------------------------------


def largest_within(xs: Sequence[float], ys: Sequence[float], baseline: float, tol: float = 1.0) -> float:
    """Largest % zeroed within ``tol`` of ``baseline``: the x of the **last** crossing of the
    polyline (xs, ys) (points in threshold order, not re-sorted) with the line ``baseline - tol``,
    by linear interpolation. A point exactly on the line counts. 0 when it never crosses
    (also when the curve never leaves the band: the official definition)."""
    xs, ys = np.asarray(xs, float), np.asarray(ys, float)
    if len(xs) < 2 or len(xs) != len(ys):
        return 0.0
    c = baseline - tol
    last = xs[0] if ys[0] == c else None
    for i in range(len(xs) - 1):
        (x1, x2), (y1, y2) = xs[i : i + 2], ys[i : i + 2]
        if (y1 - c) * (y2 - c) < 0:
            last = x1 + (c - y1) * (x2 - x1) / (y2 - y1)
        if y2 == c:
            last = x2
    return 0.0 if last is None else float(last)


def stays_within(ys: Sequence[float], baseline: float, tol: float = 1.0) -> bool:
    """True when no point of the curve falls below ``baseline - tol`` (where largest_within gives 0
    although no loss was seen)."""
    return bool(np.all(np.asarray(ys, float) >= baseline - tol))


def normalised_auc(xs: Sequence[float], ys: Sequence[float]) -> float:
    """trapz(ys, xs) / (max(xs) - min(xs)), points in threshold order (the notebook's definition).
    NaN for a curve that never zeroes anything (span 0): it would otherwise score the unablated
    baseline and outrank every function that does zero heads."""
    xs, ys = np.asarray(xs, float), np.asarray(ys, float)
    span = xs.max() - xs.min()
    if span <= 0:
        return float("nan")
    return float(np.sum((xs[1:] - xs[:-1]) * (ys[1:] + ys[:-1]) / 2.0) / span)


def curve_stats(curves: pd.DataFrame, tol_mc: float = 1.0, tol_nll_rel: float = 0.01) -> pd.DataFrame:
    """Per (model, task, score): largest % within tolerance and normalised AUC.

    MC: tolerance ``tol_mc`` accuracy points. NLL: the loss may rise by at most ``tol_nll_rel`` x
    baseline (handled as the negative loss with an absolute tolerance).
    """
    rows = []
    for (m, t, s), g in curves.groupby(["model", "task", "score"], sort=False):
        g = g.sort_values("quantile")
        xs, ys, base = g.achieved_pct.values, g.metric.values, float(g.baseline.iloc[0])
        nll = "nll" in t
        if nll:
            ys_, base_, tol = -ys, -base, tol_nll_rel * base
        else:
            ys_, base_, tol = ys, base, tol_mc
        rows.append(
            {
                "model": m,
                "task": t,
                "score": s,
                "label": g.label.iloc[0],
                "within_tol_pct": largest_within(xs, ys_, base_, tol),
                "stays_within": stays_within(ys_, base_, tol),
                "auc": normalised_auc(xs, ys_),
                "max_achieved_pct": float(xs.max()),
            }
        )
    return pd.DataFrame(rows)


def bootstrap_within(
    task: Task,
    curves: pd.DataFrame,
    per_item: dict,
    score: str,
    n_boot: int = 200,
    seed: int = 0,
    tol: float | None = None,
) -> tuple[float, float]:
    """95% bootstrap interval of ``largest_within`` for one score's curve, over the task's units of replication
    (``Task.units``: the prompts of generated items, each resampled with all its items; texts)."""
    g = curves[curves.score == score].sort_values("quantile")
    xs = g.achieved_pct.values
    items = [per_item[score, p] for p in g["quantile"]]
    clusters = Clusters(task.units())
    if clusters.n_rows != len(items[0]):
        raise ValueError(f"{task.name}: {clusters.n_rows} units for {len(items[0])} per-item results")
    rng = np.random.default_rng(seed)
    sign = 1.0 if task.higher_is_better else -1.0
    vals = []
    for _ in range(n_boot):
        idx = clusters.draw(rng)
        ys = np.array([sign * metric_from_items(task, it, idx) for it in items])
        base = ys[0]  # the 0% point is the baseline
        t = tol if tol is not None else (1.0 if task.higher_is_better else 0.01 * abs(base))
        vals.append(largest_within(xs, ys, base, t))
    lo, hi = np.percentile(vals, [2.5, 97.5])
    return float(lo), float(hi)


def interpolate_at(curves: pd.DataFrame, score: str, x: float) -> float:
    """The metric of ``score``'s curve at achieved % ``x`` (linear; NaN outside its range)."""
    g = curves[curves.score == score].sort_values("achieved_pct")
    xs, ys = g.achieved_pct.values, g.metric.values
    if len(xs) == 0 or x < xs.min() or x > xs.max():
        return float("nan")
    return float(np.interp(x, xs, ys))


def matched_comparison(curves: pd.DataFrame, a: str, b: str, grid: Sequence[float]) -> pd.DataFrame:
    """Metrics of scores ``a`` and ``b`` at the achieved %s of ``grid`` that both curves reach."""
    rows = []
    for x in grid:
        ya, yb = interpolate_at(curves, a, x), interpolate_at(curves, b, x)
        if np.isfinite(ya) and np.isfinite(yb):
            rows.append({"pct": x, a: ya, b: yb})
    return pd.DataFrame(rows)


def rank_scores(stats: pd.DataFrame, by: str = "auc") -> pd.DataFrame:
    """Rank (1 = best, higher AUC) of each score within each (model, task); wide table."""
    r = stats.copy()
    r["rank"] = r.groupby(["model", "task"])[by].rank(ascending=False, method="min")
    return r


def _common(w: pd.DataFrame, a: str, b: str) -> pd.DataFrame:
    """The score functions with an AUC in both rows ``a`` and ``b`` of the wide table ``w``."""
    return w.loc[[a, b]].dropna(axis=1)


def spearman_matrix(stats: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Spearman correlation of score-function AUCs between rows ``keys`` (e.g. model/task pairs), each
    pair over the functions both rows have (NaN where fewer than 3)."""
    from scipy.stats import spearmanr

    w = stats.pivot_table(index="key", columns="score", values="auc").reindex(keys)
    M = np.eye(len(keys))
    for i, a in enumerate(keys):
        for j in range(i + 1, len(keys)):
            c = _common(w, a, keys[j])
            M[i, j] = M[j, i] = spearmanr(c.iloc[0].values, c.iloc[1].values).statistic if c.shape[1] >= 3 else np.nan
    return pd.DataFrame(M, index=keys, columns=keys)


def topk_iou_matrix(stats: pd.DataFrame, keys: list[str], k: int = 5) -> pd.DataFrame:
    """IoU of the sets of top-``k`` score functions (by AUC) between rows ``keys``, each pair ranked
    over the functions both rows have; NaN where they share no more than ``k`` (IoU 1 by construction)."""
    w = stats.pivot_table(index="key", columns="score", values="auc").reindex(keys)
    M = np.eye(len(keys))
    for i, a in enumerate(keys):
        for j in range(i + 1, len(keys)):
            c = _common(w, a, keys[j])
            if c.shape[1] <= k:
                M[i, j] = M[j, i] = np.nan
                continue
            ta, tb = (set(c.loc[r].sort_values(ascending=False).index[:k]) for r in (a, keys[j]))
            M[i, j] = M[j, i] = len(ta & tb) / len(ta | tb)
    return pd.DataFrame(M, index=keys, columns=keys)


def selection_overlap(scores: dict[str, np.ndarray], names: Sequence[str], p: float) -> pd.DataFrame:
    """On the unablated pass, flag a nominal fraction ``p`` with each score and compare the sets
    of (input, layer, head) triples: IoU and precision(a -> b) = |A & B| / |A|; NaN for any pair with a
    function that flags nothing (e.g. value-norm scores when all query heads share one KV head): an
    IoU of 0 there would read as "different heads" when no heads were picked at all."""
    sets = {n: flagged(scores[n], threshold(scores[n], p, SCORES[n].flag_high), SCORES[n].flag_high) for n in names}
    rows = []
    for a in names:
        for b in names:
            A, B = sets[a], sets[b]
            inter, defined = float((A & B).sum()), bool(A.any() and B.any())
            rows.append(
                {
                    "a": a,
                    "b": b,
                    "iou": inter / float((A | B).sum()) if defined else float("nan"),
                    "precision": inter / float(A.sum()) if defined else float("nan"),
                    "frac_a": float(A.mean()),
                }
            )
    return pd.DataFrame(rows)


def wasserstein(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import wasserstein_distance

    a, b = np.asarray(a, float).ravel(), np.asarray(b, float).ravel()
    return float(wasserstein_distance(a[np.isfinite(a)], b[np.isfinite(b)]))


def dormant_fraction_by(scores: np.ndarray, tau: float, flag_high: bool, labels: Sequence) -> pd.DataFrame:
    """Per-input fraction of (layer, head) flagged, with the input's label."""
    f = flagged(scores, tau, flag_high).mean(axis=(1, 2))
    return pd.DataFrame({"label": list(labels), "dormant_frac": f})


def permutation_test(values: np.ndarray, labels: Sequence, n_perm: int = 2000, seed: int = 0) -> float:
    """p-value of the between-group variance of means under label permutation."""
    values, labels = np.asarray(values, float), np.asarray(labels)
    groups = np.unique(labels)

    def stat(lab):
        return np.var([values[lab == g].mean() for g in groups])

    obs = stat(labels)
    rng = np.random.default_rng(seed)
    hits = sum(stat(rng.permutation(labels)) >= obs for _ in range(n_perm))
    return (hits + 1) / (n_perm + 1)

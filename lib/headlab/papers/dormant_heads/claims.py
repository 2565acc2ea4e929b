"""Claims of the dormant / inactive heads paper (Sandoval-Segura et al. 2025, arXiv 2504.03889), judged
from the tidy CSVs notebook 01 saves (no model is loaded).

The paper's numbers are the module-level ``Published`` constants (quoted from the replication notes:
[C] from the authors' notebook outputs / ``thresholds.json`` / the arXiv abstracts). Every decided row
carries a 95 % interval over its unit of replication:

* generated multiple-choice items (C1a, C2, C6, C9, S1): paired percentile bootstrap over the **prompts** of
  ``per_item.csv`` (its ``unit`` column): generated items repeat prompts with other distractors and answer
  orders, so each prompt is resampled with all its items (``intervals.Clusters``); a run saved before the
  column existed resamples items, and says so. Each sweep point's per-item result is resampled; a curve's value
  at an achieved % is the linear interpolation between its swept points, which is linear in the items, so it
  is resampled exactly;
* calibration units (C4, C5): thresholds recomputed on resampled calibration passes (``threshold_boot.csv``); a
  multiple-choice pass runs every (item, choice) as its own forward, and the unit resampled is the prompt with all
  its items' forwards (``Task.input_units``; ``calibration.csv``'s ``units`` counts them), a text its own unit. Runs
  saved before that (no ``units`` column; the committed ``cpu_powered*`` runs) resampled forwards one by one, which
  is too narrow, and their rows say so;
* evaluation inputs of the from-scratch model (C10, S3): ``v1_dynamics_inputs.csv``;
* paragraphs (C11): the permutation test over paragraphs of ``v1_text_type.csv``, inverted into an interval.

CSVs read: appfig_grid (every swept curve), per_item, table2, thresholds, threshold_boot, calibration,
wasserstein, overlap, v1_dynamics_inputs, v1_text_type, run_params.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ... import claims as K
from ... import intervals as KI
from ...claims import Claims, committed
from .published import PAPER
from .rules import c1, c1a, c2, c3, c6, c8, c9, censored_within, s1
from .rules_scores import c4, c5, c7, c10_s3, c10n, c11

NATURAL_DIR = "cpu_pilot"  # figures/dormant_heads/<NATURAL_DIR>/: the sink pilot's checkpoints, scored (natural.py)


# ---------------------------------------------------------------------------------------- sweep data
class Sweep:
    """One (model, task) sweep: each score's swept points (threshold order, achieved %) and the items."""

    def __init__(self, curves: pd.DataFrame, items: pd.DataFrame, model: str, task: str):
        self.model, self.task = model, task
        self.nll = "nll" in task
        self.curves = curves[(curves.model == model) & (curves.task == task)]
        self.items = items[(items.model == model) & (items.task == task)].sort_values("item")
        self.n_tok = self.items.n_tok.to_numpy(float)
        self.baseline = float(self.curves.baseline.iloc[0])
        has_units = "unit" in self.items.columns
        self.units = self.items.unit.to_numpy(int) if has_units else np.arange(len(self.items))
        self.clusters = KI.Clusters(self.units)
        # what a bootstrap resamples: prompts where items share them, else items / paragraphs
        self.unit_name = "paragraphs" if self.nll else "items" if self.clusters.singletons else "prompts"
        self._points: dict = {}

    def has(self, score: str) -> bool:
        g = self.curves[self.curves.score == score]
        return len(g) > 0 and all(p == 0 or f"{score}@{p:g}" in self.items.columns for p in g["quantile"])

    def points(self, score: str):
        """(achieved % in threshold order, per-item matrix [item, point]); cached."""
        if score not in self._points:
            g = self.curves[self.curves.score == score].sort_values("quantile")
            cols = ["base" if p == 0 else f"{score}@{p:g}" for p in g["quantile"]]
            self._points[score] = g.achieved_pct.to_numpy(float), self.items[cols].to_numpy(float)
        return self._points[score]

    def metric(self, V: np.ndarray, n_tok: np.ndarray) -> np.ndarray:
        """The task metric of each column of per-item values: accuracy % or nats/token."""
        return V.sum(0) / n_tok.sum() * (1.0 if self.nll else 100.0)

    def interp_items(self, score: str, x: float):
        """Per-item values of ``score``'s curve at achieved ``x`` (linear between points sorted by achieved %,
        as ``interpolate_at``); None outside the curve's range."""
        xs, V = self.points(score)
        o = np.argsort(xs, kind="stable")
        xs, V = xs[o], V[:, o]
        if x < xs.min() or x > xs.max():
            return None
        w = np.array([np.interp(x, xs, np.eye(len(xs))[k]) for k in range(len(xs))])
        return V @ w

    def curve(self, score: str, idx=None, tol_mc: float = 1.0, tol_nll_rel: float = 0.01):
        """(achieved %, metric with higher = better, baseline, tolerance) on the (resampled) items."""
        xs, V = self.points(score)
        nt = self.n_tok
        if idx is not None:
            V, nt = V[idx], nt[idx]
        ys = self.metric(V, nt)
        if self.nll:
            ys = -ys
            return xs, ys, ys[0], tol_nll_rel * abs(ys[0])
        return xs, ys, ys[0], tol_mc

    def within(self, score: str, idx=None, tol_mc: float = 1.0) -> float:
        """Censored largest % within tolerance (1 pt MC, 1% relative loss) on the (resampled) items."""
        return censored_within(*self.curve(score, idx, tol_mc))

    def stays(self, score: str, tol_mc: float = 1.0) -> bool:
        xs, ys, base, tol = self.curve(score, None, tol_mc)
        return bool(np.all(ys >= base - tol))


def sweeps(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    curves, items = K.read(folder, "appfig_grid"), K.read(folder, "per_item")
    keys = list(dict.fromkeys(zip(items.model, items.task, strict=True)))
    return curves, items, {k: Sweep(curves, items, *k) for k in keys}


def params(folder: Path) -> dict:
    return K.read(folder, "run_params").iloc[0].to_dict()


def checks(C: Claims, folder: Path, sw: dict, P: dict):
    # the per-item CSV reproduces every swept point of the curves (so the bootstraps resample the right data)
    worst, npts = 0.0, 0
    for s in sw.values():
        for sc in dict.fromkeys(s.curves.score):
            if not s.has(sc):
                continue
            xs, V = s.points(sc)
            g = s.curves[s.curves.score == sc].sort_values("quantile")
            worst = max(
                worst,
                float(
                    np.max(
                        np.abs(s.metric(V, s.n_tok) - g.metric.to_numpy(float))
                        / np.maximum(1.0, np.abs(g.metric.to_numpy(float)))
                    )
                ),
            )
            npts += len(xs)
    C.check(
        "K1",
        "per_item.csv reproduces every swept point of the curves it covers",
        worst < 1e-4,
        f"{npts} points, max relative difference {worst:.1e}",
        expected="< 1e-4",
    )
    xc = K.read_optional(folder, "lmeval_crosscheck")
    if xc is not None:  # lm-eval in headlab's cloze format scores the same strings: it must agree item by item
        cz = xc[xc.method == "lm-eval cloze"]
        fp32 = bool((cz.get("dtype", pd.Series(["float32"])) == "float32").all())
        agree, tol = (100.0, 1e-3) if fp32 else (95.0, 0.1)  # bf16: batch layout moves sums by ~1e-2
        C.check(
            "K2",
            "lm-evaluation-harness (local MMLU task files, HeadlabHFLM) scores headlab's cloze MMLU items as "
            "headlab's own scorer does: the same outcome on every item, log-likelihoods within 1e-3 (float32; "
            "bfloat16 weights: on >= 95% of items, within 0.1)",
            len(cz) > 0 and bool((cz.agree_pct >= agree).all() and (cz.max_abs_dlogprob < tol).all()),
            "; ".join(
                f"{r.model}: {r.n} items, {r.agree_pct:.0f}% same outcome, max |Δ log p| {r.max_abs_dlogprob:.1e}"
                for r in cz.itertuples()
            ),
            expected="100%, < 1e-3" if fp32 else ">= 95%, < 0.1",
            note="unablated; lmeval_crosscheck.csv also has lm-eval's letter format, 0-shot and few-shot",
        )
    ov = K.read(folder, "overlap")
    fr = ov[ov.panel == "AHON-LN zeroing frequency"]
    s2 = {m: float(np.mean((g.zero_freq > 0) & (g.zero_freq < 1))) for m, g in fr.groupby("model", sort=False)}
    C.check(
        "S2",
        "The per-input dormant set varies: per-head zeroing frequency is not all 0 or 1 (true by "
        "construction for any per-input threshold on a continuous score)",
        bool(s2) and all(v > 0 for v in s2.values()),
        "; ".join(f"{m}: {100 * v:.0f}% of heads in (0, 1)" for m, v in s2.items()),
        expected="> 0%",
        note="AHON-LN at nominal 20%, generated MC",
    )


def build(folder: Path, profile: str) -> Claims:
    folder = Path(folder)
    C = Claims(PAPER, profile)
    P = params(folder)
    _, _, sw = sweeps(folder)
    c1(C, folder)
    c1a(C, folder, sw, P)
    c2(C, folder, sw)
    c3(C, sw)
    c4(C, folder, P)
    c5(C, folder, P)
    c6(C, sw)
    c7(C, folder)
    c8(C)
    c9(C, sw, P)
    c10_s3(C, folder, P)
    c10n(C, committed(folder, NATURAL_DIR), seed=int(P["seed"]))
    c11(C, folder, P)
    s1(C, sw)
    checks(C, folder, sw, P)
    return C

"""Per-unit tidy data for the claims (dormant_heads.claims reads these CSVs)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ...intervals import Clusters
from .scores import SCORES
from .zeroing import threshold

# --------------------------------------------------------------------------------------------
# per-unit tidy data for the claims (dormant_heads.claims reads these CSVs)
# --------------------------------------------------------------------------------------------

CLAIM_SCORES = ("random", "ahon", "ahon_ln", "awft")  # the functions whose per-item results the claims use


def per_item_frame(extra: dict, scores: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per (model, task, item) from ``sweep``'s per-item results (``extra[(model, task)]``), for the
    functions ``scores`` (all swept ones when None, so every interval can be redrawn from the CSV).

    ``unit`` is the item's unit of replication (``Task.units``: its prompt's label for generated multiple choice,
    the item itself otherwise); ``n_tok`` is 1 for multiple choice and the text's scored tokens for next-token loss; ``base`` is the
    unablated pass; ``<score>@<p>`` is the item's result at nominal quantile p: 1/0 correct (MC; random's mean over
    its draws when there are several) or the
    summed loss in nats over the text (so a sweep point's metric is ``100 * sum / n`` or ``sum / sum(n_tok)``).
    """
    frames = []
    for (model, task), ex in extra.items():
        pi = ex["per_item"]
        keys = [(s, p) for (s, p) in pi if scores is None or s in scores]
        if not keys:
            continue
        nll = "nll" in task

        def vals(v, nll=nll):  # called within this iteration only
            if nll:
                return [float(np.sum(a)) for a in v], [len(a) for a in v]
            v = np.asarray(v, float)  # 1/0, or the fraction correct over random's draws
            v = v.astype(int) if np.all(v == np.round(v)) else v.round(4)
            return list(v), [1] * len(v)

        base, n_tok = vals(pi[keys[0][0], min(p for s, p in keys)])
        units = np.asarray(ex.get("units", np.arange(len(base))), int)
        d = {"model": model, "task": task, "item": np.arange(len(base)), "unit": units, "n_tok": n_tok, "base": base}
        for s, p in keys:
            if p > 0:
                d[f"{s}@{p:g}"] = vals(pi[s, p])[0]
        frames.append(pd.DataFrame(d))
    return pd.concat(frames, ignore_index=True)


def threshold_bootstrap(
    cal: dict, combos: Sequence[tuple[str, str, float]], n_boot: int = 200, seed: int = 0
) -> pd.DataFrame:
    """Quantile thresholds recomputed on calibration passes resampled with replacement: the unit is the pass's
    ``Calibration.units`` (a multiple-choice prompt with all its items' (item, choice) forwards, a text), each
    forward its own unit where the pass has none (the draws are then those of a plain row bootstrap).
    ``combos`` = (dataset, score, p); one resample per (model, dataset) and replicate, shared by every score and p
    of that pass. Rows: model, dataset, score, p, rep, threshold."""
    rows = []
    for k, ((model, dataset), c) in enumerate(cal.items()):
        mine = [(s, p) for d, s, p in combos if d == dataset]
        if not mine:
            continue
        n = c.scores[mine[0][0]].shape[0]
        units = getattr(c, "units", None)
        if units is not None and len(units) != n:
            raise ValueError(f"{model}/{dataset}: {len(units)} input units for {n} scored inputs")
        cl = Clusters(np.arange(n) if units is None else units)
        rng = np.random.default_rng([seed, k])  # an independent stream per calibration pass
        for r in range(n_boot):
            idx = cl.draw(rng)
            for s, p in mine:
                rows.append(
                    {
                        "model": model,
                        "dataset": dataset,
                        "score": s,
                        "p": p,
                        "rep": r,
                        "threshold": threshold(c.scores[s][idx], p, SCORES[s].flag_high),
                    }
                )
    return pd.DataFrame(rows)


def dynamics_per_input(states: dict, steps: Sequence[int], labels: Sequence[str]) -> pd.DataFrame:
    """One row per (score, eval input): its dormant fraction of heads at every checkpoint (columns
    ``step_<s>``) and its mean rate of state switches between consecutive checkpoints (``flip_rate``)."""
    frames = []
    for s, st in states.items():
        A = np.stack(st)  # [checkpoint, input, layer, head]
        frac = A.mean(axis=(2, 3)).T  # [input, checkpoint]
        d = pd.DataFrame(frac, columns=[f"step_{x}" for x in steps])
        d.insert(0, "label", list(labels))
        d.insert(0, "input", np.arange(frac.shape[0]))
        d.insert(0, "score", s)
        d["flip_rate"] = (A[1:] != A[:-1]).mean(axis=(0, 2, 3)) if len(A) > 1 else np.nan
        frames.append(d)
    return pd.concat(frames, ignore_index=True)

"""The notebook's tables from the analysed runs: the per-model, per-head and per-edit frames the workers
return (``analyse``), the run parameters the claims read, and the summaries per number of heads H."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .scaling import COUNTING_AUC, NONCOUNTING_AUC

FRAMES = ("summary", "heads", "interventions", "rule_map", "ckpt_heads", "ratio_sweep")


def counting_class(auc) -> np.ndarray:
    """A head's class by its ROC AUC: counting (>= ``COUNTING_AUC``), non-counting (< ``NONCOUNTING_AUC``) or
    weak (between); the labels of Fig. 4."""
    return np.where(
        auc >= COUNTING_AUC,
        "counting (AUC ≥ 0.95)",
        np.where(auc < NONCOUNTING_AUC, "non-counting (AUC < 0.9)", "weak (0.9 ≤ AUC < 0.95)"),
    )


def analysis_frames(runs: dict) -> dict[str, pd.DataFrame]:
    """``analyse``'s results of every analysed run (``runs``: ``{key: train_run result}``, ``"analysis"`` set in
    the workers) as frames: ``summary`` (one row per model), ``heads`` (per head, with its ``counting`` class),
    ``interventions`` (per model and edit), ``rule_map`` (per grid cell and edit), ``ckpt_heads`` (per checkpoint
    and head of the main grid) and ``ratio_sweep`` (per head, f and f2)."""
    analysed = [r["analysis"] for r in runs.values() if "analysis" in r]
    out = {"summary": pd.DataFrame([a["summary"] for a in analysed])}
    for key in FRAMES[1:]:
        out[key] = pd.DataFrame([x for a in analysed for x in a[key]])
    out["heads"]["counting"] = counting_class(out["heads"].auc)
    return out


def run_params(P, machine: str) -> pd.DataFrame:
    """The run's parameters the claims module reads (``run_params.csv``), from profile ``P``: one row; lists
    as space-separated values."""

    def joined(xs):
        return " ".join(map(str, xs))

    return pd.DataFrame(
        [
            {
                "variant": P.variant,
                "seeds": joined(P.seeds),
                "steps": P.steps,
                "batch": P.batch,
                "l_max": P.l_max,
                "plateau_min_steps": P.plateau_min_steps,
                "dyn_seeds": joined(P.dyn_seeds),
                "b_seeds": joined(P.b_seeds),
                "b_steps": P.b_steps,
                "b_heads": joined(P.b_heads),
                "ckpt_steps": joined(P.ckpt_steps),
                "abl_seeds": joined(P.abl_seeds),
                "machine": f"{machine}, {P.workers} worker processes",
            }
        ]
    )


def heads_by_h(heads: pd.DataFrame) -> pd.DataFrame:
    """Per H (``heads``: one row per head of one format): heads, share counting, mean l-acc and s-acc, and the
    mean calibration gap s-acc - l-acc of the counting heads."""
    return heads.groupby("H").apply(
        lambda d: pd.Series(
            {
                "heads": len(d),
                "AUC>=0.95": (d.auc >= 0.95).mean(),
                "mean l-acc": d.l_acc.mean(),
                "mean s-acc": d.s_acc.mean(),
                "mean s-acc - l-acc (counting heads)": (d.s_acc - d.l_acc)[d.auc >= 0.95].mean(),
            }
        ),
        include_groups=False,
    )


def summary_table(
    summ: pd.DataFrame, hA: pd.DataFrame, ivA: pd.DataFrame, plat: pd.DataFrame, variant: str, heads
) -> pd.DataFrame:
    """Table 1, one row per H in ``heads`` (main grid, format ``variant``): accuracy, near-tie accuracy, the
    share of counting heads and their calibration gap, the aggregation tests (``summ``), the interventions
    (``ivA``) and the dynamics (``plat``, from ``dynamics_frames``)."""

    def per_h(H):
        s, h, i = summ[(summ.variant == variant) & (summ.H == H)], hA[hA.H == H], ivA[ivA.H == H]
        cnt_h = h[h.auc >= COUNTING_AUC]
        p = plat[(plat.variant == variant) & (plat.H == H)]
        sc = i[i.kind == "scale"]
        return {
            "H": H,
            "seeds": len(s),
            "acc_mean": s.acc.mean(),
            "acc_min": s.acc.min(),
            "near_tie_acc_min": s.near_tie_acc.min(),
            "counting_heads_frac": (h.auc >= COUNTING_AUC).mean(),
            "gap_s_minus_l": (cnt_h.s_acc - cnt_h.l_acc).mean(),
            "logreg_acc": s.logreg_acc.mean(),
            "uniform_score_acc": s.uniform_std_best_acc.mean(),
            "uniform_vocab_acc": s.uniform_vocab_acc.mean(),
            "zero2_acc": i[i.kind == "zero2"].acc.min(),
            "balance01_acc": i[i.kind == "balance01"].acc.min(),
            "uniform_attn_acc": i[i.kind == "uniform"].acc.mean(),
            "scale_rule_agreement_min": sc.rule_agreement.min(),
            "plateau_seeds": f"{int(p.plateaus.sum())}/{len(p)}" if len(p) else "",
            "median_steps_to_95": p.steps_to_95.median() if len(p) else np.nan,
        }

    return pd.DataFrame([per_h(H) for H in heads])

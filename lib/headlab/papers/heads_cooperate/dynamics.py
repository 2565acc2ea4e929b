"""Training dynamics: plateaus and steps to solve."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .scaling import COUNTING_AUC
from .training import RunSpec


# -- training dynamics ------------------------------------------------------------------------------
def prior_entropy(p: float) -> float:
    return -(p * math.log(p) + (1 - p) * math.log(1 - p))


def plateau_steps(log: list[dict], level: float, band: float = 0.08) -> int:
    """Steps the held-out decision loss spends within ``band`` of ``level`` (the entropy of the label
    prior: what a model that ignores the counts achieves), counted over the eval grid after the
    first eval (step 0 is the untrained model)."""
    steps = [r["step"] for r in log]
    out = 0
    for i in range(1, len(log)):
        if abs(log[i]["test_loss"] - level) <= band:
            out += steps[i] - steps[i - 1]
    return out


def steps_to_solve(log: list[dict], acc: float = 0.95) -> float:
    for r in log:
        if r.get("test_acc", 0) >= acc:
            return r["step"]
    return float("nan")


def dynamics_row(res: dict, prior: float, min_plateau_steps: int) -> dict:
    """One run's dynamics (plateau, steps to 95 %, final accuracy) and, when it was analysed, its final
    calibration gap (mean s-acc - l-acc over counting heads) and inert-head count: a row of the
    initialisation ablation."""
    run, log = RunSpec(**res["run"]), res["log"]
    row = {
        "init": run.init,
        "attn_norm": run.attn_norm,
        "H": run.n_heads,
        "seed": run.seed,
        "plateau_steps": plateau_steps(log, prior),
        "steps_to_95": steps_to_solve(log),
        "final_acc": log[-1]["test_acc"],
    }
    row["plateaus"] = row["plateau_steps"] >= min_plateau_steps
    if "analysis" in res:
        g = [h["s_acc"] - h["l_acc"] for h in res["analysis"]["heads"] if h["auc"] >= COUNTING_AUC]
        row["gap"] = float(np.mean(g)) if g else math.nan
        row["n_inert"] = res["analysis"]["summary"]["n_inert"]
    return row


# -- the notebook's dynamics tables (Fig. 8) ---------------------------------------------------------
def dynamics_frames(
    logs: pd.DataFrame, runs: dict, dyn: dict, dyn_seeds, prior: dict, min_plateau_steps: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The dynamics study's runs (format ``v``, H in ``dyn[v]``, seed in ``dyn_seeds``): their training
    ``logs`` rows, and one row per run (``runs``: ``{(variant, H, seed): train_run result}``) with its plateau
    at ``prior[variant]`` (``plateau_steps``), steps to 95 % accuracy, final accuracy and whether it plateaus
    (at least ``min_plateau_steps``)."""

    def in_dyn(v, H, s):
        return v in dyn and H in dyn[v] and s in dyn_seeds

    d = logs[[in_dyn(*k) for k in zip(logs.variant, logs.H, logs.seed, strict=True)]]
    plat = pd.DataFrame(
        [
            {
                "variant": k[0],
                "H": k[1],
                "seed": k[2],
                "plateau_steps": plateau_steps(r["log"], prior[k[0]]),
                "steps_to_95": steps_to_solve(r["log"]),
                "final_acc": r["log"][-1]["test_acc"],
            }
            for k, r in runs.items()
            if in_dyn(*k)
        ]
    )
    plat["plateaus"] = plat.plateau_steps >= min_plateau_steps
    return d, plat


def plateau_summary(plat: pd.DataFrame) -> pd.DataFrame:
    """Per format and H of ``dynamics_frames``: seeds, seeds that plateau, longest plateau, median steps to
    95 % and the lowest final accuracy."""
    return plat.groupby(["variant", "H"]).agg(
        seeds=("seed", "size"),
        plateaus=("plateaus", "sum"),
        max_plateau_steps=("plateau_steps", "max"),
        median_steps_to_95=("steps_to_95", "median"),
        min_final_acc=("final_acc", "min"),
    )


def counting_heads(heads: pd.DataFrame) -> pd.DataFrame:
    """Counting heads (AUC >= ``COUNTING_AUC``) per model of ``heads`` (one row per head)."""
    return (
        heads.groupby(["variant", "H", "seed"])
        .apply(lambda d: (d.auc >= COUNTING_AUC).sum(), include_groups=False)
        .rename("counting_heads")
        .reset_index()
    )

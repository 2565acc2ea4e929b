"""Training dynamics: plateaus and steps to solve."""

from __future__ import annotations

import math

import numpy as np

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

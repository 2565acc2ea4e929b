"""Which design choice decides DHA vs GQA on the byte-model source? (issue 24's ablation of the first design)

The first design ran fusion and continued training at a constant ``lr`` equal to the source's *peak* (a restart),
ramped the fusion penalty linearly to ``lam_max`` with the loss normalised by the whole layer, and grouped heads by
activation CKA with an additive (greedy) allocation. Each variant below changes one of these, then all of them
together; every variant trains the same arms (source + CT, GQA, DHA) on the same streams at the first budget, and
reports test loss on held-out windows disjoint from the validation windows.

* ``lr``: the source's final learning rate (its pretraining cosine's floor), warm-up, then a cosine to a tenth;
  and each half alone (the final rate held constant; the peak rate with the warm-up and cosine), since the
  combined variant changes two things at once;
* ``objective``: the epsilon-target Lagrangian with the per-group normalised fusion loss;
* ``search``: the fusability score (uncentred scalar-fit residual), with the greedy or the joint allocation (the
  joint search's extra forwards are charged; a variant whose search and fusion do not fit the budget is reported
  as such, not run). "all fixes" takes the greedy allocation, which fits every profile's budget.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from ...train import TrainConfig
from .arms import Arm, Context, run_arm
from .fusion import SearchOverBudget

SOURCE_FINAL = TrainConfig().min_lr_ratio  # data.pretrain_source's cosine ends at this share of its peak lr

# name -> Context fields it changes (``"lr": "final"`` stands for the source's final learning rate)
VARIANTS = {
    "first design": {},
    "LR: source's final, cosine": {"lr": "final", "min_lr_ratio": 0.1},
    "LR only: source's final, constant": {"lr": "final"},
    "schedule only: peak, warm-up + cosine": {"min_lr_ratio": 0.1},
    "objective: eps-target, per group": {"fusion_objective": "target", "fusion_norm": "group"},
    "search: fusability, joint": {"search_score": "fusability", "allocation": "joint"},
    "search: fusability, greedy": {"search_score": "fusability"},
    "all fixes": {
        "lr": "final",
        "min_lr_ratio": 0.1,
        "fusion_objective": "target",
        "fusion_norm": "group",
        "search_score": "fusability",
    },
}
ARMS = (("source + CT", "source", "pool"), ("GQA", "gqa", "pool"), ("DHA", "probe", "fusion"))


def variant_context(ctx: Context, changes: dict, final_lr: float) -> Context:
    """A copy of ``ctx`` with ``changes`` (similarities recomputed when the search score changes; caches dropped)."""
    ch = {k: (final_lr if v == "final" else v) for k, v in changes.items()}
    keep_sims = ch.get("search_score", ctx.search_score) == ctx.search_score
    return dataclasses.replace(ctx, **ch, sims=ctx.sims if keep_sims else None, cache={})


def design_ablation(
    ctxs: dict[int, Context], budget: float, fusion_steps: int, final_lr: float, variants: dict = VARIANTS
) -> pd.DataFrame:
    """One row per (variant, seed, arm): init and final validation / test loss, the arm's search, fusion and CT
    steps, and ``fits`` (False when search + fusion exceed the budget: no loss). Arms that a variant does not change
    (GQA and the source control keep their learning rate unless the variant changes it) are run once per learning
    rate and reused."""
    rows, done = [], {}
    for name, changes in variants.items():
        for seed, ctx in ctxs.items():
            vc = variant_context(ctx, changes, final_lr)
            for arm_name, alloc, init in ARMS:
                arm = Arm(
                    arm_name, 1.0 if alloc == "source" else budget, alloc, init, fusion_steps if init == "fusion" else 0
                )
                key = (seed, arm_name, vc.lr, vc.min_lr_ratio) if init == "pool" and alloc != "probe" else None
                if key is not None and key in done:
                    r = done[key]
                else:
                    try:
                        r = run_arm(vc, arm)
                    except SearchOverBudget as e:  # search + fusion exceed the budget (other errors propagate)
                        r = {"error": str(e)}
                    if key is not None:
                        done[key] = r
                ok = "error" not in r
                rows.append(
                    {
                        "variant": name,
                        "seed": seed,
                        "arm": arm_name,
                        "lr": vc.lr,
                        "fits": ok,
                        "search_steps": r.get("search_steps", np.nan),
                        "fusion_steps": r.get("fusion_steps", np.nan),
                        "ct_steps": r.get("ct_steps", np.nan),
                        "init_loss": r.get("init_loss", np.nan),
                        "final_loss": r.get("final_loss", np.nan),
                        "init_test_loss": r.get("init_test_loss", np.nan),
                        "final_test_loss": r.get("final_test_loss", np.nan),
                        "final_fusion_loss": r.get("final_fusion_loss", np.nan),
                    }
                )
    return pd.DataFrame(rows)


def dha_minus_gqa(d: pd.DataFrame, col: str = "final_test_loss") -> pd.DataFrame:
    """Per (variant, seed): DHA minus GQA of ``col`` (negative: DHA better), with both arms' values."""
    w = d.pivot_table(index=["variant", "seed"], columns="arm", values=col, sort=False)
    out = pd.DataFrame({"GQA": w["GQA"], "DHA": w["DHA"], "diff": w["DHA"] - w["GQA"]}).reset_index()
    order = {v: i for i, v in enumerate(dict.fromkeys(d.variant))}
    return out.sort_values(["variant", "seed"], key=lambda s: s.map(order) if s.name == "variant" else s)

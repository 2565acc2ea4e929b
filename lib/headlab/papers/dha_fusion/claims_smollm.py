"""The equal-budget claims of DHA judged on a pretrained source (issue 24): SmolLM2-135M converted by GQA mean-pooling
or by head fusion and trained on the same tokens (``pretrained.run``; CSVs ``smollm_*.csv``).

Rules, fixed before the first run (2026-12-03), the unit being the seed (data order and calibration batch, paired
across arms), with Student-t intervals over seeds:

* C9s: fusion minus GQA test loss at the smallest token budget N0, per KV budget: reproduced if the interval lies
  below 0, not if at or above;
* C12s (hypothesis, our margin): GQA minus fusion at N0 >= 0.03 nats;
* C13s: the advantage narrows: (fusion - GQA at the largest N) - (at N0) > 0. Its premise is an advantage at N0
  (mean difference < 0); without it the row says so and is not judged;
* C14s: tokens GQA needs to reach the fusion arm's N0 test loss, over N0, >= 2. A seed whose GQA never reaches it
  within the run counts at the run's largest N over N0 (a lower bound, so the verdict is conservative).

"Fusion" is full DHA when the run has it, else DHA-lite, else uniform groups + fusion: at one KV head per layer
(1/3 of SmolLM2's) every allocation is the same and the arms differ only by their initialisation.

Premise: the comparison is DHA's only if every seed's fusion finished before the collapse. It was added after the
first CPU run (``cpu_smollm_unfused``: omega's Adam steps of 1e-2 left L_fuse at 0.58 after 8 steps), as L_fuse <=
``FUSED`` from the notes' calibration (collapsing the byte model at ~0.1 cost 0.6-0.8 nats, at ~0.001 nothing). Two
fusion-only probes on SmolLM2 (omega lr 0.1, 16 steps) then ended at L_fuse 0.011 and 0.023 with the collapse
costing nothing, so the premise was revised, before the second run, to what it is meant to ensure: the collapse
costs at most ``COLLAPSE_TOL`` nats on the validation windows (``collapse_cost``: the collapsed model's loss minus
the fused model's just before), with L_fuse <= ``FUSED`` standing in where a run did not measure it. Where the
premise fails, the four rows are not judged and say so with the numbers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ...claims import Claims, committed, compound, greater, less
from ...intervals import seed_interval
from .published import P_ACCEL, P_EQUAL, P_LOW_BUDGET, P_NARROW_V2
from .rules import tokens_to_reach

SMOLLM_DIR = "cpu_smollm"  # figures/dha_fusion/<SMOLLM_DIR>/: the committed CPU run (python -m ...pretrained)
FUSION_ARMS = ("DHA", "DHA-lite", "uniform + fusion")
MARGIN = 0.03  # C12s, ours (as C12)
ACCEL = 2.0  # C14s, ours (as C14): weaker than the paper's 5x / 12x
FUSED = 0.01  # premise fallback: the fusion stage ended near its target (notes: ~1e-3 costs nothing)
COLLAPSE_TOL = 0.05  # premise: the collapse costs at most this (nats/token, validation windows)


def folder_of(folder: Path) -> Path | None:
    """The run's own SmolLM2 CSVs, else the committed CPU run's; None when neither exists."""
    for f in (Path(folder), committed(folder, SMOLLM_DIR)):
        if (f / "smollm_at_budget.csv").exists():
            return f
    return None


def fusion_arm(arms) -> str:
    return next(a for a in FUSION_ARMS if a in set(arms))


def _b(b: float) -> str:
    return f"{b:.0%}"


def gqa_tokens_to(curves: pd.DataFrame, seed: int, budget: float, target: float) -> float:
    """Tokens GQA's test curve (seed, budget) needs to reach ``target``: linear between evaluations; inf if never."""
    g = curves[(curves.arm == "GQA") & (curves.seed == seed) & np.isclose(curves.budget, budget)]
    g = g[g.phase != "fusion"].sort_values("tokens")
    return tokens_to_reach(g.tokens.to_numpy(float), g.test_loss.to_numpy(float), target) if len(g) else float("inf")


def add(C: Claims, folder: Path) -> None:
    """Rows C9s, C12s, C13s, C14s from the SmolLM2-source run (or ``untestable`` rows naming the command)."""
    f = folder_of(folder)
    stmt = {
        "C9s": "SmolLM2 source: at an equal small token budget, fusion's test loss is <= GQA's",
        "C12s": "SmolLM2 source: at the smallest budget fusion's loss is lower than GQA's by >= 0.03 (our margin)",
        "C13s": "SmolLM2 source: fusion's advantage over GQA narrows as tokens grow",
        "C14s": "SmolLM2 source: GQA needs >= 2x the tokens to reach fusion's loss",
    }
    pubs = {"C9s": P_EQUAL, "C12s": P_LOW_BUDGET, "C13s": P_NARROW_V2, "C14s": P_ACCEL}
    if f is None:
        for cid, s in stmt.items():
            C.untestable(
                cid,
                s,
                pubs[cid],
                "no SmolLM2-source run: python -m headlab.papers.dha_fusion.pretrained (CPU, figures/dha_fusion/"
                f"{SMOLLM_DIR}/) or the gpu profile",
                kind="hypothesis" if cid == "C12s" else "paper",
            )
        return
    at = pd.read_csv(f / "smollm_at_budget.csv")
    curves = pd.read_csv(f / "smollm_curves.csv")
    arms = pd.read_csv(f / "smollm_arms.csv")
    fa = fusion_arm(at.arm)
    n0, n1 = int(at.tokens.min()), int(at.tokens.max())
    budgets = sorted(b for b in at.budget.unique() if b < 1.0)

    def diffs(b, n):
        w = at[np.isclose(at.budget, b) & (at.tokens == n)].pivot_table(index="seed", columns="arm", values="test_loss")
        return (w[fa] - w["GQA"]).to_numpy(float)

    d0 = {b: diffs(b, n0) for b in budgets}
    d1 = {b: diffs(b, n1) for b in budgets}
    fl = arms[arms.arm == fa].final_fusion_loss
    seeds = at.seed.nunique()
    where = (
        f"{f.parent.name}/{f.name}; {seeds} seeds; fusion arm '{fa}' (final fusion loss {fl.min():.1e}-{fl.max():.1e}); "
        f"lr {_lr(f)} constant after warm-up; test windows held out per text type"
    )
    ours = "; ".join(
        f"{_b(b)}: {fa} - GQA at {n0 / 1e3:.0f}k {np.mean(d0[b]):+.4f}, at {n1 / 1e3:.0f}k {np.mean(d1[b]):+.4f}"
        for b in budgets
    )
    fa_rows = arms[arms.arm == fa]
    cost = fa_rows["collapse_cost"] if "collapse_cost" in fa_rows else pd.Series(np.nan, index=fa_rows.index)
    fused = np.where(cost.notna(), cost <= COLLAPSE_TOL, fa_rows.final_fusion_loss <= FUSED)
    cost_s = (
        f"collapse cost {cost.min():+.3f} to {cost.max():+.3f} nats"
        if cost.notna().any()
        else "collapse cost not measured"
    )
    where += f"; {cost_s}"
    if not fused.all():
        init = arms.groupby("arm").init_test_loss.mean()
        why = (
            f"premise fails: the fusion stage ended at L_fuse {fl.min():.2g}-{fl.max():.2g} ({cost_s}; premise: cost <= "
            f"{COLLAPSE_TOL} or, unmeasured, L_fuse <= {FUSED}), so this compares an unfinished fusion, not DHA, with GQA; init test loss {fa} "
            f"{init.get(fa, np.nan):.2f} vs GQA {init.get('GQA', np.nan):.2f} (source + CT "
            f"{init.get('source + CT', np.nan):.2f}); {where}"
        )
        for cid, s in stmt.items():
            C.untestable(cid, s, pubs[cid], why, ours=ours, kind="hypothesis" if cid == "C12s" else "paper")
        return
    C.add(
        "C9s",
        stmt["C9s"],
        P_EQUAL,
        ours,
        compound(
            {
                _b(b): less(
                    f"{fa} minus GQA test loss at {n0 / 1e3:.0f}k tokens, {_b(b)}", seed_interval(d0[b]), "seeds"
                )
                for b in budgets
            }
        ),
        note=where,
    )
    C.add(
        "C12s",
        stmt["C12s"],
        P_LOW_BUDGET,
        ours,
        compound(
            {
                _b(b): greater(
                    f"GQA minus {fa} test loss at {n0 / 1e3:.0f}k tokens, {_b(b)}",
                    seed_interval(-d0[b]),
                    "seeds",
                    MARGIN,
                )
                for b in budgets
            }
        ),
        kind="hypothesis",
        note=where,
    )
    ahead = [b for b in budgets if np.mean(d0[b]) < 0]
    if not ahead:
        C.untestable(
            "C13s",
            stmt["C13s"],
            P_NARROW_V2,
            f"premise fails: {fa} is not ahead of GQA at {n0 / 1e3:.0f}k tokens at any budget ({ours})",
            ours=ours,
        )
    else:
        C.add(
            "C13s",
            stmt["C13s"],
            P_NARROW_V2,
            ours,
            compound(
                {
                    _b(b): greater(
                        f"({fa} - GQA at {n1 / 1e3:.0f}k) - (at {n0 / 1e3:.0f}k), {_b(b)}",
                        seed_interval(d1[b] - d0[b]),
                        "seeds",
                    )
                    for b in ahead
                }
            ),
            note=where
            + (f"; judged at {', '.join(map(_b, ahead))} only (premise)" if len(ahead) < len(budgets) else ""),
        )
    acc, never = {}, 0
    for b in budgets:
        v = []
        for s, g in at[np.isclose(at.budget, b) & (at.tokens == n0) & (at.arm == fa)].groupby("seed"):
            need = gqa_tokens_to(curves, s, b, float(g.test_loss.iloc[0]))
            never += np.isinf(need)
            v.append(min(need, float(n1)) / n0)
        acc[b] = np.array(v)
    C.add(
        "C14s",
        stmt["C14s"],
        P_ACCEL,
        "; ".join(f"{_b(b)}: {np.mean(acc[b]):.2f}x" for b in budgets),
        compound(
            {
                _b(b): greater(
                    f"tokens GQA needs to reach {fa}'s {n0 / 1e3:.0f}k test loss / {n0 / 1e3:.0f}k, {_b(b)}",
                    seed_interval(acc[b]),
                    "seeds",
                    ACCEL,
                )
                for b in budgets
            }
        ),
        note=where
        + (
            f"; {never} seed(s): GQA never reached it within {n1 / 1e3:.0f}k tokens (counted as {n1 / n0:.1f}x)"
            if never
            else ""
        ),
    )


def _lr(f: Path) -> str:
    import json

    p = f / "smollm_params.json"
    return f"{json.loads(p.read_text())['lr']:g}" if p.exists() else "?"

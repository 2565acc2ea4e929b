"""Stage 1 of the notebook: the arms' shared contexts, and every allocation the search produces, for the MHA
source (all arms, per budget) and for the analysis model (uniform and DHA-lite, per budget)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ... import data
from ...nn import HeadlabLM
from .arms import Arm, Context, arm_groups
from .data import fixed_batches
from .grouping import budget_total, counts, global_agglomerate, uniform_groups

SOURCE_ALLOCS = ("gqa", "uniform", "cka", "probe")


def contexts(
    P, source: HeadlabLM, train_toks: np.ndarray, eval_batches: list, seeds: Sequence[int] | None = None
) -> dict[int, Context]:
    """One ``Context`` per arm seed of profile ``P`` (or of ``seeds``): training stream ``[P.batch, P.seq]`` seeded
    ``1000 + seed``, one calibration batch ``[P.calib_rows, P.seq]`` seeded ``2000 + seed``, and the optimiser and
    design settings of the profile."""
    seeds = P.arm_seeds if seeds is None else seeds
    return {
        s: Context(
            source,
            data.Batches(train_toks, P.batch, P.seq, seed=1000 + s, device=P.device),
            P.batch * P.seq,
            eval_batches,
            fixed_batches(train_toks, 1, P.calib_rows, P.seq, seed=2000 + s, device=P.device),
            P.total_steps,
            lr=P.lr,
            omega_lr=P.omega_lr,
            lam_max=P.lam_max,
            ramp=P.ramp,
            warmup=P.warmup,
            eval_every=P.eval_every,
            min_lr_ratio=P.min_lr_ratio,
            fusion_objective=P.fusion_objective,
            fusion_eps=P.fusion_eps,
            dual_lr=P.dual_lr,
            fusion_norm=P.fusion_norm,
            search_score=P.search_score,
            allocation=P.allocation,
        )
        for s in seeds
    }


def source_allocations(ctx: Context, budgets: Sequence[float]) -> dict[tuple[str, float], tuple]:
    """``{(alloc, budget): (k_groups, v_groups, search forward tokens)}`` for every allocation in
    ``SOURCE_ALLOCS`` and budget, searched on ``ctx`` (budget-major order)."""
    return {(a, b): arm_groups(ctx, Arm(a, b, a)) for b in budgets for a in SOURCE_ALLOCS}


def lm_allocations(sims: dict, n_kv: int, n_layers: int, budgets: Sequence[float]) -> dict[float, dict]:
    """Per budget, ``{"uniform": (k_groups, v_groups), "cka": (k_groups, v_groups)}`` of a model with
    ``n_kv`` K (and V) heads in each of ``n_layers`` layers: uniform CKA groups (``round(b * n_kv)`` per
    layer) and DHA-lite's global CKA merges (``budget_total`` heads in all). ``sims``: ``head_cka``."""
    return {
        b: {
            "uniform": (uniform_groups(sims["k"], round(b * n_kv)), uniform_groups(sims["v"], round(b * n_kv))),
            "cka": (
                global_agglomerate(sims["k"], budget_total([n_kv] * n_layers, b)),
                global_agglomerate(sims["v"], budget_total([n_kv] * n_layers, b)),
            ),
        }
        for b in budgets
    }


def allocation_lines(alloc: dict, lm_alloc: dict, lm_name: str, n_kv: int) -> list[str]:
    """One line per source allocation (heads per layer, search cost) and per DHA-lite allocation of the
    analysis model."""
    lines = [
        f"MHA source, budget {b:.0%}, {a:>7}: K heads per layer {counts(kg)}, V heads {counts(vg)}, "
        f"search forwards {fwd / 1e3:.0f}k tokens"
        for (a, b), (kg, vg, fwd) in alloc.items()
    ]
    return lines + [
        f"{lm_name}, budget {b:.0%} of {n_kv} KV heads, DHA-lite: K {counts(d['cka'][0])}, V {counts(d['cka'][1])}"
        for b, d in lm_alloc.items()
    ]

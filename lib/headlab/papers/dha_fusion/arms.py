"""Experiment arms: search + fusion + collapse + continued pretraining, and the token-efficiency measures."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd
import torch

from ...nn import HeadlabLM
from ...train import TrainConfig, train
from .checks import kv_cache_bytes
from .cka import head_activations, head_similarity
from .data import lm_eval
from .fusion import SearchOverBudget, probe_allocation, run_fusion
from .grouping import (
    Grouping,
    budget_total,
    contiguous_groups,
    counts,
    global_agglomerate,
    identity_groups,
    n_source,
    tied_uniform_groups,
    uniform_groups,
)
from .merge import collapse, rank1_fusion
from .rules import tokens_to_reach

# --- arms: search + fusion + collapse + continued pre-training -------------------------------


@dataclass
class Arm:
    """One way of turning the source into a model with fewer K/V heads.

    alloc: "gqa" (contiguous blocks, K = V), "cka_gqa" (uniform, CKA groups shared by K and V),
           "uniform" (CKA groups per layer, K and V decoupled), "cka" (DHA-lite global CKA
           merges), "probe" (loss-driven search), "source" (every head kept: the source + continued
           training control, the paper's MHA-dagger rows; its ``budget`` is ignored).
    (CKA above: the context's ``search_score``, CKA or fusability.)
    init:  "pool" (mean of the members) or "fusion" (``fusion_steps`` of learned fusion).
    """

    name: str
    budget: float
    alloc: str
    init: str = "pool"
    fusion_steps: int = 0
    curve: bool = False  # evaluate along the way (loss-vs-tokens figure)
    extra_steps: int = 0  # keep training past the budget, for the curve only (constant lr: the
    #                      trajectory up to the budget is the same as without the extra steps)


@dataclass
class Context:
    """Everything the arms share: the source, data streams, evaluation batches, optimiser
    settings and the search results (computed once per source and budget)."""

    source: HeadlabLM
    get_batch: Callable  # step -> (x, y); the same stream for every arm
    tokens_per_step: int
    eval_batches: list
    calib_batches: list
    total_steps: int
    lr: float = 1e-3
    omega_lr: float = 1e-2
    lam_max: float = 500.0
    ramp: float = 0.8
    warmup: int = 5
    eval_every: int = 10
    forward_cost: float = 1 / 3  # a forward-only token costs ~1/3 of a training token (2N vs 6N FLOPs)
    progress: bool = True
    sims: dict | None = None
    cache: dict = field(default_factory=dict)
    # design options (issue 24); the defaults are the first design, so its results stay measurable
    min_lr_ratio: float = 1.0  # fusion and CT: warm-up then cosine to this share of ``lr`` (1.0: constant)
    fusion_objective: str = "ramp"  # or "target": the epsilon-target Lagrangian (fusion.run_fusion)
    fusion_eps: float = 1e-3
    dual_lr: float = 10.0
    fusion_norm: str = "layer"  # or "group" (HeadFusion.loss)
    search_score: str = "cka"  # or "fusability" (cka.head_similarity)
    allocation: str = "greedy"  # full DHA's search: or "joint" (fusion.joint_allocation)
    test_batches: list | None = None  # held-out batches reported beside eval_batches (tune on one, report the other)

    def __post_init__(self):
        if self.sims is None:
            ids = torch.cat([x for x, _ in self.calib_batches])
            self.sims = head_similarity(head_activations(self.source, ids, kinds=("k", "v")), self.search_score)
        self.calib_tokens = sum(x.numel() for x, _ in self.calib_batches)


def _evaluator(ctx: Context) -> Callable:
    """model -> {loss, acc} on the evaluation batches, plus test_loss / test_acc on ``ctx.test_batches`` if any."""

    def evaluate(m):
        r = lm_eval(m, ctx.eval_batches)
        if ctx.test_batches:
            t = lm_eval(m, ctx.test_batches)
            r.update(test_loss=t["loss"], test_acc=t["acc"])
        return r

    return evaluate


def _test(r: dict) -> dict:
    return {"test_loss": r["test_loss"]} if "test_loss" in r else {}


# ------------------------------------------------------------------ the budget: search, fusion and CT in one count
def fusion_steps_of(arm: Arm) -> int:
    return arm.fusion_steps if arm.init == "fusion" else 0


def search_steps(ctx: Context, forward_tokens: float) -> int:
    """Training steps charged for ``forward_tokens`` of search forwards (each ``forward_cost`` of a training token),
    rounded up to whole steps."""
    return math.ceil(forward_tokens * ctx.forward_cost / ctx.tokens_per_step - 1e-9)


def search_allowance(ctx: Context, arm: Arm) -> float:
    """Forward tokens an allocation search may spend beyond the calibration forward (``calib_tokens``): what the
    budget leaves after the arm's fusion, so that ``search_steps(calib_tokens + allowance) <= total - fusion``."""
    left_steps = ctx.total_steps - fusion_steps_of(arm)
    return left_steps * ctx.tokens_per_step / ctx.forward_cost - ctx.calib_tokens


def arm_groups(ctx: Context, arm: Arm) -> tuple[Grouping, Grouping, float]:
    """``(k_groups, v_groups, forward tokens the search used)``."""
    src = ctx.source
    nk, nv = n_source(src, "k"), n_source(src, "v")
    L = len(nk)
    key = (arm.alloc, arm.budget)
    cka_cost = ctx.calib_tokens  # one forward over the calibration batch
    left = search_allowance(ctx, arm)  # a probe search may spend what fusion leaves
    if key in ctx.cache:  # a search run for an arm with other fusion steps: this arm's budget still applies
        res = ctx.cache[key]
        if arm.alloc == "probe" and res[2] - cka_cost > left:
            raise SearchOverBudget(
                f"{arm.name}: its search used {res[2] - cka_cost:.0f} forward tokens, {left:.0f} left"
            )
        return res
    sk, sv = ctx.sims["k"], ctx.sims["v"]
    if arm.alloc == "source":
        res = (identity_groups(nk), identity_groups(nv), 0.0)
    elif arm.alloc in ("gqa", "uniform", "cka_gqa"):
        per = budget_total(nk, arm.budget) / L
        if per != int(per) or budget_total(nv, arm.budget) / L != per:
            raise ValueError(f"budget {arm.budget} gives {per} heads per layer: not uniform")
        per = int(per)
        if arm.alloc == "gqa":
            res = (contiguous_groups(nk, per), contiguous_groups(nv, per), 0.0)
        elif arm.alloc == "uniform":
            res = (uniform_groups(sk, per), uniform_groups(sv, per), cka_cost)
        else:
            g = tied_uniform_groups(sk, sv, per)
            res = (g, copy.deepcopy(g), cka_cost)
    elif arm.alloc == "cka":
        res = (
            global_agglomerate(sk, budget_total(nk, arm.budget)),
            global_agglomerate(sv, budget_total(nv, arm.budget)),
            cka_cost,
        )
    elif arm.alloc == "probe":
        g, rows, used = probe_allocation(
            src, ctx.sims, arm.budget, ctx.calib_batches, allocation=ctx.allocation, max_tokens=left
        )
        ctx.cache[("probe_rows", arm.budget)] = rows
        res = (g["k"], g["v"], cka_cost + used)
    else:
        raise ValueError(f"unknown allocation {arm.alloc!r}")
    ctx.cache[key] = res
    return res


def run_arm(ctx: Context, arm: Arm) -> dict:
    """Run one arm at ``ctx.total_steps`` training steps of budget, search and fusion included:
    continued pre-training gets ``total - fusion - search`` steps (search forwards charged at
    ``forward_cost`` of a training token, rounded up to whole steps)."""
    kg, vg, search_fwd = arm_groups(ctx, arm)
    s_steps = search_steps(ctx, search_fwd)
    fsteps = fusion_steps_of(arm)
    ct_steps = ctx.total_steps - s_steps - fsteps
    if ct_steps < 0:
        raise SearchOverBudget(f"{arm.name}: search ({s_steps}) + fusion ({fsteps}) exceed the budget")
    t0 = time.time()
    tps = ctx.tokens_per_step
    curve = []
    flog = []
    if fsteps:
        model, flog = run_fusion(
            ctx.source,
            kg,
            vg,
            ctx.get_batch,
            fsteps,
            ctx.lr,
            ctx.omega_lr,
            ctx.lam_max,
            ctx.ramp,
            ctx.warmup,
            eval_batches=ctx.eval_batches if arm.curve else None,
            eval_every=ctx.eval_every,
            progress=ctx.progress,
            desc=f"{arm.name} fusion",
            min_lr_ratio=ctx.min_lr_ratio,
            objective=ctx.fusion_objective,
            eps=ctx.fusion_eps,
            dual_lr=ctx.dual_lr,
            norm=ctx.fusion_norm,
        )
        for r in flog:
            if "collapsed_loss" in r:
                curve.append({"tokens": (s_steps + r["step"]) * tps, "loss": r["collapsed_loss"], "phase": "fusion"})
    else:
        model = collapse(ctx.source, kg, vg)
    evaluate = _evaluator(ctx)
    init = evaluate(model)
    curve.append({"tokens": (s_steps + fsteps) * tps, "loss": init["loss"], "phase": "init", **_test(init)})
    offset = s_steps + fsteps
    final = init
    if ct_steps + arm.extra_steps:
        every = ctx.eval_every if arm.curve else ct_steps
        if arm.extra_steps and ct_steps % every:
            raise ValueError(f"{arm.name}: with extra_steps, eval_every must divide the {ct_steps} CT steps")
        tc = TrainConfig(  # the cosine ends at the budget; extra steps (GQA's curve) hold its final lr
            steps=ct_steps + arm.extra_steps,
            lr=ctx.lr,
            warmup=ctx.warmup,
            min_lr_ratio=ctx.min_lr_ratio,
            eval_every=every,
            schedule_steps=ct_steps,
        )
        log = train(
            model,
            lambda s: ctx.get_batch(offset + s),
            tc,
            eval_fn=evaluate,
            progress=ctx.progress,
            desc=f"{arm.name} CT",
        )
        for r in log[1:]:
            curve.append(
                {
                    "tokens": (offset + r["step"]) * tps,
                    "loss": r["loss"],
                    "phase": "CT" if r["step"] <= ct_steps else "past budget",
                    **_test(r),
                }
            )
        final = next((r for r in log if r["step"] == ct_steps), None)
        if final is None:
            raise RuntimeError(f"{arm.name}: no evaluation at the budget")
    return {
        "arm": arm.name,
        "budget": arm.budget,
        "alloc": arm.alloc,
        "init": arm.init,
        "k_counts": counts(kg),
        "v_counts": counts(vg),
        "k_groups": kg,
        "v_groups": vg,
        "search_steps": s_steps,
        "fusion_steps": fsteps,
        "ct_steps": ct_steps,
        "tokens": ctx.total_steps * tps,
        "init_loss": init["loss"],
        "init_acc": init["acc"],
        "final_loss": final["loss"],
        "final_acc": final["acc"],
        "init_test_loss": init.get("test_loss", float("nan")),
        "final_test_loss": final.get("test_loss", float("nan")),
        "final_fusion_loss": flog[-1]["final_fusion_loss"] if flog else float("nan"),
        "collapse_cost": init["loss"] - flog[-1]["uncollapsed_loss"]
        if flog and "uncollapsed_loss" in flog[-1]
        else float("nan"),
        "fusion_log": flog,
        "curve": curve,
        "model": model if not arm.extra_steps else None,
        "seconds": time.time() - t0,
    }


def arm_plan(P, ablations: bool) -> list[Arm]:
    """The arms one seed trains under profile ``P``: GQA (with ``P.gqa_extra_steps`` for its curve) and DHA
    at every budget; with ``ablations`` (the first seed), at the first budget also DHA without fusion, without
    adaptive allocation, GQA with CKA grouping, DHA-lite (``P.lite_arm``) and DHA with each other
    ``P.split_fusion_steps`` (Tables 2, 3 and A7)."""
    F, b0 = P.fusion_steps, P.budgets[0]
    plan = []
    for b in P.budgets:
        plan += [
            Arm("GQA", b, "gqa", curve=True, extra_steps=P.gqa_extra_steps),
            Arm("DHA", b, "probe", "fusion", F, curve=True),
        ]
    if ablations:
        plan += [
            Arm("DHA w/o fusion", b0, "probe", "pool"),
            Arm("DHA w/o adaptive", b0, "uniform", "fusion", F),
            Arm("GQA + CKA grouping", b0, "cka_gqa"),
        ] + ([Arm("DHA-lite", b0, "cka", "fusion", F)] if P.lite_arm else [])
        plan += [Arm(f"DHA fusion {f}", b0, "probe", "fusion", f) for f in P.split_fusion_steps if f != F]
    return plan


ARM_COLUMNS = [
    "seed",
    "arm",
    "budget",
    "k_counts",
    "v_counts",
    "search_steps",
    "fusion_steps",
    "ct_steps",
    "init_loss",
    "final_loss",
    "final_fusion_loss",
    "seconds",
]  # the columns the notebook prints of ``arms_frame``


def arms_frame(arms: dict) -> pd.DataFrame:
    """One row per ``{(seed, name, budget): run_arm(...)}`` entry: the seed and the arm's scalar results (the
    fusion log, curve, model and groups left out)."""
    drop = ("fusion_log", "curve", "model", "k_groups", "v_groups")
    return pd.DataFrame([{"seed": s, **{k: v for k, v in r.items() if k not in drop}} for (s, _, _), r in arms.items()])


def init_only_arms(model: HeadlabLM, sims: dict, acts: dict, budget: float, batches) -> list[dict]:
    """Training-free conversions of a pretrained model at ``budget`` of its K/V heads (the
    analysis model, too big to train here): GQA mean-pool, CKA-allocated groups with mean-pool,
    uniform CKA groups with rank-1 fusion, and DHA-lite (CKA allocation + rank-1 fusion). At one
    head per layer every allocation is the same, so only the initialisation differs."""
    nk, nv = n_source(model, "k"), n_source(model, "v")
    L = len(nk)
    per = budget_total(nk, budget) / L
    uniform = per == int(per) and budget_total(nv, budget) / L == per
    specs = []
    if uniform:
        per = int(per)
        specs.append(("GQA (mean-pool)", "gqa", "pool", contiguous_groups(nk, per), contiguous_groups(nv, per)))
        specs.append(
            (
                "uniform CKA groups + fusion" if per > 1 else "one head per layer + fusion",
                "uniform",
                "fusion",
                uniform_groups(sims["k"], per),
                uniform_groups(sims["v"], per),
            )
        )
    if not (uniform and per == 1):  # at one head per layer there is nothing to allocate
        lite = (
            global_agglomerate(sims["k"], budget_total(nk, budget)),
            global_agglomerate(sims["v"], budget_total(nv, budget)),
        )
        specs.append(("CKA allocation + mean-pool", "cka", "pool", *lite))
        specs.append(("DHA-lite (CKA allocation + fusion)", "cka", "fusion", *lite))
    rows = []
    for name, alloc, init, kg, vg in specs:
        if init == "fusion":
            kf = [rank1_fusion(acts["k"][l], kg[l]) for l in range(L)]
            vf = [rank1_fusion(acts["v"][l], vg[l]) for l in range(L)]
            m = collapse(
                model,
                kg,
                vg,
                k_coef=[c for c, _ in kf],
                v_coef=[c for c, _ in vf],
                k_scale=[a for _, a in kf],
                v_scale=[a for _, a in vf],
                share=True,
            )
        else:
            m = collapse(model, kg, vg, share=True)
        r = lm_eval(m, batches)
        rows.append(
            {
                "arm": name,
                "budget": budget,
                "alloc": alloc,
                "init": init,
                "k_counts": counts(kg),
                "v_counts": counts(vg),
                "k_groups": kg,
                "v_groups": vg,
                "loss": r["loss"],
                "acc": r["acc"],
                "kv_bytes_per_token": kv_cache_bytes(m),
            }
        )
        del m
    return rows


def gap_closure(l_mha: float, l_gqa: float, l_dha: float) -> float:
    """r = (L_GQA - L_DHA) / (L_GQA - L_MHA): the share of GQA's conversion loss DHA avoids."""
    return (l_gqa - l_dha) / (l_gqa - l_mha)


def acceleration(gqa_curve, dha_tokens: float, dha_loss: float) -> float:
    """Tokens GQA needs to reach DHA's loss, divided by the tokens DHA used (> 1: DHA is faster)."""
    need = tokens_to_reach([r["tokens"] for r in gqa_curve], [r["loss"] for r in gqa_curve], dha_loss)
    return need / dha_tokens

"""Adaptive head fusion: learned per-group mixing, its loss, the fusion run, and the loss-driven search."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
from torch import nn
from torch.nn.utils import parametrize

from ...nn import HeadlabLM
from ...train import TrainConfig, lr_at
from .data import lm_eval
from .grouping import Grouping, budget_total, hierarchy, identity_groups, n_source
from .merge import collapse

# --- fusion ----------------------------------------------------------------------------------

FUSION_NORMS = ("layer", "group")
FUSION_OBJECTIVES = ("ramp", "target")
ALLOCATIONS = ("greedy", "joint")


class HeadFusion(nn.Module):
    """Parametrization of a K or V projection weight ``[n * d_head, d_model]``: head i becomes
    ``sum_j (omega * mask)[i, j] W_j`` with ``mask`` the within-group indicator."""

    def __init__(self, groups: list[list[int]], n: int, norm: str = "layer"):
        super().__init__()
        if norm not in FUSION_NORMS:
            raise ValueError(f"fusion_norm must be one of {FUSION_NORMS}, not {norm!r}")
        mask = torch.zeros(n, n)
        avg = torch.zeros(n, n)
        member = torch.zeros(n, len(groups))  # [head, group] indicator
        for k, g in enumerate(groups):
            for i in g:
                member[i, k] = 1.0
                for j in g:
                    mask[i, j] = 1.0
                    avg[i, j] = 1.0 / len(g)
        self.register_buffer("mask", mask)
        self.register_buffer("avg", avg)  # group-mean operator
        self.register_buffer("member", member[:, [len(g) > 1 for g in groups]])  # multi-member groups only
        self.omega = nn.Parameter(torch.eye(n))
        self.n = n
        self.norm = norm

    def forward(self, W):
        Wh = W.view(self.n, -1, W.shape[-1])
        return torch.einsum("ij,jdm->idm", self.omega * self.mask, Wh).reshape(W.shape)

    def loss(self, W_fused) -> torch.Tensor:
        """Squared distance of the fused heads to their group mean, over a squared norm: the whole layer's
        (``norm="layer"``, the first design: omega can shrink it by inflating singleton heads) or each group's own,
        averaged over the groups with more than one member (``norm="group"``; 0 when there is none)."""
        Wh = W_fused.view(self.n, -1, W_fused.shape[-1])
        dev = Wh - torch.einsum("ij,jdm->idm", self.avg, Wh)
        if self.norm == "layer":
            return dev.pow(2).sum() / Wh.pow(2).sum().clamp_min(1e-12)
        if self.member.shape[1] == 0:
            return W_fused.new_zeros(())
        d2, w2 = dev.pow(2).sum((1, 2)), Wh.pow(2).sum((1, 2))  # [head]
        return ((d2 @ self.member) / (w2 @ self.member).clamp_min(1e-12)).mean()


def attach_fusion(
    model: HeadlabLM, k_groups: Grouping, v_groups: Grouping, norm: str = "layer"
) -> list[tuple[nn.Module, str]]:
    """Put ``HeadFusion`` (identity) on every layer's k_proj and v_proj, in place. Returns the
    parametrized ``(module, kind)`` pairs."""
    out = []
    for l, block in enumerate(model.layers):
        for kind, groups in (("k", k_groups), ("v", v_groups)):
            lin = getattr(block.self_attn, f"{kind}_proj")
            n = sum(len(g) for g in groups[l])
            fusion = HeadFusion(groups[l], n, norm).to(device=lin.weight.device, dtype=lin.weight.dtype)
            parametrize.register_parametrization(lin, "weight", fusion)
            out.append((lin, kind))
    return out


def fusion_modules(model: HeadlabLM):
    for block in model.layers:
        for kind in ("k", "v"):
            lin = getattr(block.self_attn, f"{kind}_proj")
            if parametrize.is_parametrized(lin, "weight"):
                yield lin, lin.parametrizations.weight[0], kind


def fusion_loss(model: HeadlabLM, kind: str | None = None) -> torch.Tensor:
    """Mean over layers (and over K and V unless ``kind``) of ``HeadFusion.loss``. Layers whose
    groups are all singletons contribute 0."""
    terms = [f.loss(lin.weight) for lin, f, k in fusion_modules(model) if kind in (None, k)]
    return torch.stack(terms).mean()


@torch.no_grad()
def set_members_identical(model: HeadlabLM):
    """Make every group's fused heads identical (omega = group-mean operator): the state in
    which collapsing is exact (check C3)."""
    for _lin, f, _k in fusion_modules(model):
        f.omega.copy_(f.avg)


def run_fusion(
    model: HeadlabLM,
    k_groups: Grouping,
    v_groups: Grouping,
    get_batch: Callable,
    steps: int,
    lr: float,
    omega_lr: float,
    lam_max: float,
    ramp: float = 0.8,
    warmup: int = 5,
    weight_decay: float = 0.1,
    grad_clip: float = 1.0,
    eval_batches=None,
    eval_every: int = 0,
    progress: bool = True,
    desc: str = "fusion",
    min_lr_ratio: float = 1.0,
    objective: str = "ramp",
    eps: float = 1e-3,
    dual_lr: float = 10.0,
    norm: str = "layer",
) -> tuple[HeadlabLM, list[dict]]:
    """Fusion stage on a copy of ``model``: LM loss + lambda(t) * fusion loss. Every ``eval_every`` steps the
    *collapsed* model is evaluated (what one would deploy if fusion stopped there). Returns the collapsed model and
    the log (one row per step).

    ``objective="ramp"`` (the first design): lambda ramped linearly from 0 to ``lam_max`` over the first ``ramp`` of
    the steps, then held. ``objective="target"``: an epsilon-target Lagrangian (Sheared-LLaMA's multipliers, which
    the paper's code base used), LM + lambda * (L_fuse - eps) with the dual ascent
    ``lambda <- clip(lambda + dual_lr * (L_fuse - eps), 0, lam_max)`` after every step, so the multiplier grows
    while the fusion loss is above its target ``eps`` and shrinks below it. The learning rate warms up over
    ``warmup`` steps, then follows a cosine down to ``min_lr_ratio`` of ``lr`` (1.0: constant, the first design); the
    fusion operators' ``omega_lr`` only warms up (a decaying omega lr leaves the fusion unfinished);
    ``norm``: ``HeadFusion``'s normalisation."""
    from ...train import progress_bar

    if objective not in FUSION_OBJECTIVES:
        raise ValueError(f"fusion objective must be one of {FUSION_OBJECTIVES}, not {objective!r}")
    m = copy.deepcopy(model).train()
    attach_fusion(m, k_groups, v_groups, norm)
    omegas = [f.omega for _l, f, _k in fusion_modules(m)]
    ids = {id(p) for p in omegas}
    decay, no_decay = [], []
    for n_, p in m.named_parameters():
        if id(p) in ids:
            continue
        (decay if p.dim() >= 2 and "embed" not in n_ else no_decay).append(p)
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": weight_decay, "base": lr},
            {"params": no_decay, "weight_decay": 0.0, "base": lr},
            {"params": omegas, "weight_decay": 0.0, "base": omega_lr, "omega": True},
        ],
        lr=lr,
        betas=(0.9, 0.95),
    )
    model_params = decay + no_decay
    tc = TrainConfig(steps=steps, lr=1.0, warmup=warmup, min_lr_ratio=min_lr_ratio)
    log = []
    lam = 0.0

    def collapsed_eval(step):
        m.eval()
        c = collapse(m, k_groups, v_groups)
        r = lm_eval(c, eval_batches)
        m.train()
        return {"collapsed_loss": r["loss"], "collapsed_acc": r["acc"]}

    for step in progress_bar(range(steps), desc, progress):
        mult = lr_at(step, tc)  # the model weights: warm-up, then the cosine to min_lr_ratio
        warm = min(1.0, (step + 1) / warmup) if warmup else 1.0  # omega: warm-up only (its job ends with the stage)
        for g in opt.param_groups:
            g["lr"] = g["base"] * (warm if g.get("omega") else mult)
        if objective == "ramp":
            lam = lam_max * min(1.0, step / max(1.0, ramp * steps))
        x, y = get_batch(step)
        lm = m(x, labels=y).loss
        fl = fusion_loss(m)
        loss = lm + lam * (fl - eps if objective == "target" else fl)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip:
            torch.nn.utils.clip_grad_norm_(model_params, grad_clip)
        opt.step()
        row = {"step": step + 1, "lm_loss": lm.item(), "fusion_loss": fl.item(), "lambda": lam}
        if objective == "target":  # dual ascent on the constraint L_fuse <= eps
            lam = min(lam_max, max(0.0, lam + dual_lr * (fl.item() - eps)))
        if eval_batches is not None and eval_every and (step + 1) % eval_every == 0 and step + 1 < steps:
            row.update(collapsed_eval(step + 1))
        log.append(row)
    m.eval()
    with torch.no_grad():
        log[-1]["fusion_loss_k"] = fusion_loss(m, "k").item()
        log[-1]["fusion_loss_v"] = fusion_loss(m, "v").item()
        log[-1]["final_fusion_loss"] = fusion_loss(m).item()
    if eval_batches is not None:  # the fused model before the collapse: the collapse's cost is init - this
        log[-1]["uncollapsed_loss"] = lm_eval(m, eval_batches)["loss"]
    return collapse(m, k_groups, v_groups), log


# --- the loss-driven search ------------------------------------------------------------------


def _with_kind(source: HeadlabLM, kind: str, g: Grouping) -> tuple[Grouping, Grouping]:
    """(k_groups, v_groups) with ``g`` for ``kind`` and every head of the other kind kept."""
    other = identity_groups(n_source(source, "v" if kind == "k" else "k"))
    return (g, other) if kind == "k" else (other, g)


class SearchOverBudget(ValueError):
    """The loss-driven search needs more forward tokens than the arm's token budget leaves it."""


def search_forwards(n: list[int], total: int, allocation: str) -> int:
    """Probe forwards the search runs for one kind (``n`` heads per layer, ``total`` kept): exact for the greedy
    allocation; for the joint one a lower bound (one forward per merge; each merge compares every layer still
    holding more than one head)."""
    if allocation == "joint":
        return sum(n) - total
    return sum(max(0, min(nl, total - (len(n) - 1) + 1) - 1) for nl in n)


def _charge(used: float, ntok: int, limit: float | None, what: str) -> float:
    """``used + ntok``, or ``SearchOverBudget`` before the forward when that passes ``limit``."""
    if limit is not None and used + ntok > limit:
        raise SearchOverBudget(f"{what}: the search needs more than the {limit:.0f} forward tokens its budget leaves")
    return used + ntok


@torch.no_grad()
def joint_allocation(
    source: HeadlabLM,
    hier: list[dict],
    kind: str,
    total: int,
    probe_batches,
    base: float,
    used: float = 0.0,
    max_tokens: float | None = None,
):
    """The joint search: from every head kept, repeatedly take the one merge (one layer, one step down its
    similarity hierarchy) whose model, *with every merge taken so far in place*, has the lowest loss, until
    ``total`` heads of ``kind`` remain. Interactions between layers count, unlike the additive probes.
    ``used`` forward tokens are already spent; past ``max_tokens`` it stops with ``SearchOverBudget``.
    Returns (grouping, probe rows, forwards run)."""
    n = n_source(source, kind)
    ntok = sum(x.numel() for x, _ in probe_batches)
    cnt = list(n)
    rows, evals = [], 0
    while sum(cnt) > total:
        best = None
        for l in range(len(n)):
            if cnt[l] <= 1:
                continue
            used = _charge(used, ntok, max_tokens, f"joint search ({kind})")
            g = [hier[k][cnt[k] - (k == l)] for k in range(len(n))]
            loss = lm_eval(collapse(source, *_with_kind(source, kind, g), share=True), probe_batches)["loss"]
            evals += 1
            if best is None or loss < best[0]:
                best = (loss, l)
        cnt[best[1]] -= 1
        rows.append({"kind": kind, "layer": best[1], "heads": cnt[best[1]], "delta_loss": best[0] - base})
    return [hier[l][cnt[l]] for l in range(len(n))], rows, evals


@torch.no_grad()
def probe_allocation(
    source: HeadlabLM,
    sims: dict,
    budget: float,
    probe_batches,
    kinds=("k", "v"),
    allocation: str = "greedy",
    max_tokens: float | None = None,
):
    """Full DHA's search [R]. ``allocation="greedy"`` (the first design): for each layer and kind, pool that
    layer's heads (average-linkage hierarchy of ``sims``, mean-pool) to every count c < n with everything else
    untouched and record the loss increase ``delta[l][c]``; then, starting from one head per layer, repeatedly give
    one more head to the layer whose next head removes the most loss, until the kind's budget is spent (the
    per-layer losses are assumed to add up). ``allocation="joint"``: ``joint_allocation``. With ``max_tokens``
    (the forward tokens the arm's budget leaves the search) it checks before any forward that the search's
    forwards (``search_forwards``) fit, and stops with ``SearchOverBudget`` as soon as they would not. Returns
    ``({kind: grouping}, table of probes, forward tokens used)``."""
    if allocation not in ALLOCATIONS:
        raise ValueError(f"allocation must be one of {ALLOCATIONS}, not {allocation!r}")
    ntok = sum(x.numel() for x, _ in probe_batches)
    if max_tokens is not None:
        need = ntok * (
            1
            + sum(
                search_forwards(n_source(source, k), budget_total(n_source(source, k), budget), allocation)
                for k in kinds
            )
        )
        if need > max_tokens:
            raise SearchOverBudget(
                f"{allocation} search: needs {'at least ' if allocation == 'joint' else ''}{need} forward tokens, "
                f"its budget leaves {max_tokens:.0f}"
            )
    base = lm_eval(source, probe_batches)["loss"]
    used = ntok
    out, rows = {}, []
    for kind in kinds:
        n = n_source(source, kind)
        hier = [hierarchy(s) for s in sims[kind]]
        if allocation == "joint":
            out[kind], r, evals = joint_allocation(
                source, hier, kind, budget_total(n, budget), probe_batches, base, used, max_tokens
            )
            rows += r
            used += evals * ntok
            continue
        delta = []
        total = budget_total(n, budget)
        for l in range(len(n)):
            dl = {n[l]: 0.0}
            for c in range(1, min(n[l], total - (len(n) - 1) + 1)):  # no layer can get more
                g = identity_groups(n)
                g[l] = hier[l][c]
                kg, vg = (
                    (g, identity_groups(n_source(source, "v")))
                    if kind == "k"
                    else (identity_groups(n_source(source, "k")), g)
                )
                used = _charge(used, ntok, max_tokens, f"greedy search ({kind})")
                dl[c] = lm_eval(collapse(source, kg, vg, share=True), probe_batches)["loss"] - base
                rows.append({"kind": kind, "layer": l, "heads": c, "delta_loss": dl[c]})
            delta.append(dl)
        cnt = [1] * len(n)
        while sum(cnt) < total:
            gains = [
                (delta[l][cnt[l]] - delta[l][cnt[l] + 1], -l) if cnt[l] < n[l] else (-math.inf, -l)
                for l in range(len(n))
            ]
            l = -max(gains)[1]
            cnt[l] += 1
        out[kind] = [hier[l][cnt[l]] for l in range(len(n))]
    return out, rows, used

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


class HeadFusion(nn.Module):
    """Parametrization of a K or V projection weight ``[n * d_head, d_model]``: head i becomes
    ``sum_j (omega * mask)[i, j] W_j`` with ``mask`` the within-group indicator."""

    def __init__(self, groups: list[list[int]], n: int):
        super().__init__()
        mask = torch.zeros(n, n)
        avg = torch.zeros(n, n)
        for g in groups:
            for i in g:
                for j in g:
                    mask[i, j] = 1.0
                    avg[i, j] = 1.0 / len(g)
        self.register_buffer("mask", mask)
        self.register_buffer("avg", avg)  # group-mean operator
        self.omega = nn.Parameter(torch.eye(n))
        self.n = n

    def forward(self, W):
        Wh = W.view(self.n, -1, W.shape[-1])
        return torch.einsum("ij,jdm->idm", self.omega * self.mask, Wh).reshape(W.shape)

    def loss(self, W_fused) -> torch.Tensor:
        """Squared distance of the fused heads to their group mean, over their squared norm."""
        Wh = W_fused.view(self.n, -1, W_fused.shape[-1])
        dev = Wh - torch.einsum("ij,jdm->idm", self.avg, Wh)
        return dev.pow(2).sum() / Wh.pow(2).sum().clamp_min(1e-12)


def attach_fusion(model: HeadlabLM, k_groups: Grouping, v_groups: Grouping) -> list[tuple[nn.Module, str]]:
    """Put ``HeadFusion`` (identity) on every layer's k_proj and v_proj, in place. Returns the
    parametrized ``(module, kind)`` pairs."""
    out = []
    for l, block in enumerate(model.layers):
        for kind, groups in (("k", k_groups), ("v", v_groups)):
            lin = getattr(block.self_attn, f"{kind}_proj")
            n = sum(len(g) for g in groups[l])
            fusion = HeadFusion(groups[l], n).to(device=lin.weight.device, dtype=lin.weight.dtype)
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
) -> tuple[HeadlabLM, list[dict]]:
    """Fusion stage on a copy of ``model``: LM loss + lambda(t) * fusion loss, lambda ramped
    linearly from 0 to ``lam_max`` over the first ``ramp`` of the steps, then held. Every
    ``eval_every`` steps the *collapsed* model is evaluated (what one would deploy if fusion
    stopped there). Returns the collapsed model and the log (one row per step)."""
    from ...train import progress_bar

    m = copy.deepcopy(model).train()
    attach_fusion(m, k_groups, v_groups)
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
            {"params": omegas, "weight_decay": 0.0, "base": omega_lr},
        ],
        lr=lr,
        betas=(0.9, 0.95),
    )
    model_params = decay + no_decay
    tc = TrainConfig(steps=steps, lr=1.0, warmup=warmup, min_lr_ratio=1.0)
    log = []

    def collapsed_eval(step):
        m.eval()
        c = collapse(m, k_groups, v_groups)
        r = lm_eval(c, eval_batches)
        m.train()
        return {"collapsed_loss": r["loss"], "collapsed_acc": r["acc"]}

    for step in progress_bar(range(steps), desc, progress):
        mult = lr_at(step, tc)
        for g in opt.param_groups:
            g["lr"] = g["base"] * mult
        lam = lam_max * min(1.0, step / max(1.0, ramp * steps))
        x, y = get_batch(step)
        lm = m(x, labels=y).loss
        fl = fusion_loss(m)
        loss = lm + lam * fl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip:
            torch.nn.utils.clip_grad_norm_(model_params, grad_clip)
        opt.step()
        row = {"step": step + 1, "lm_loss": lm.item(), "fusion_loss": fl.item(), "lambda": lam}
        if eval_batches is not None and eval_every and (step + 1) % eval_every == 0 and step + 1 < steps:
            row.update(collapsed_eval(step + 1))
        log.append(row)
    m.eval()
    with torch.no_grad():
        log[-1]["fusion_loss_k"] = fusion_loss(m, "k").item()
        log[-1]["fusion_loss_v"] = fusion_loss(m, "v").item()
        log[-1]["final_fusion_loss"] = fusion_loss(m).item()
    return collapse(m, k_groups, v_groups), log


# --- the loss-driven search ------------------------------------------------------------------


@torch.no_grad()
def probe_allocation(source: HeadlabLM, sims: dict, budget: float, probe_batches, kinds=("k", "v")):
    """Full DHA's search [R]. For each layer and kind, pool that layer's heads (average-linkage
    CKA hierarchy, mean-pool) to every count c < n with everything else untouched and record the
    loss increase ``delta[l][c]``; then, starting from one head per layer, repeatedly give one
    more head to the layer whose next head removes the most loss, until the kind's budget is
    spent. Returns ``({kind: grouping}, table of probes, forward tokens used)``."""
    base = lm_eval(source, probe_batches)["loss"]
    ntok = sum(x.numel() for x, _ in probe_batches)
    used = ntok
    out, rows = {}, []
    for kind in kinds:
        n = n_source(source, kind)
        hier = [hierarchy(s) for s in sims[kind]]
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
                dl[c] = lm_eval(collapse(source, kg, vg, share=True), probe_batches)["loss"] - base
                used += ntok
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

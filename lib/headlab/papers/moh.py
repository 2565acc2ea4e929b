"""MoH: multi-head attention as mixture-of-head attention (Jin, Zhu, Yuan, Yan; ICML 2025).

MHA's output is a sum over heads, ``sum_i H^i W_O^i``. MoH weights that sum per token with a router,
``sum_i g_i H^i W_O^i``: ``h_s`` *shared* heads are always on, and each token picks ``K`` of the
``E = h - h_s`` *routed* heads. Everything the notebook needs lives here as plain functions:

* ``MoHSpec`` + ``MoHAttention``: one attention module usable as ``attention_cls`` of
  ``headlab.nn.HeadlabLM`` (and of ``TinyViT``), with the routers

  - ``two_stage``  learned linear routers on the layer input: softmax over the shared heads, softmax over
    the routed heads kept for the top-K, and a learned 2-way balance between the groups (default);
  - ``no_two_stage``  the same without the learned balance; ``no_shared``  every head routed;
  - ``query_norm`` / ``query_norm_inverse``  parameter-free router for converting a pretrained model:
    score = L2 norm of each routed head's query, binary gates (straight-through gradient in training);
    the inverse picks the *lowest* norms (a control);
  - ``random``  K routed heads drawn uniformly per token (binary gates); ``dense``  every head on, gate 1
    (exactly MHA).

  ``gate="code"`` (default) follows the released code: renormalise the routed gate over the selected K
  and multiply by K, shared softmax times h_s, balance softmax times 2, so every gate is 1 when the
  routers are uniform. ``gate="paper"`` is the paper's Eq. 5 (no renormalisation, no factors).
* Two execution modes that agree numerically: ``masked`` (compute every head, multiply by its gate: the
  released code) and ``skip`` (compute queries and attention only for the (token, head) pairs that
  are on; K and V are computed for every head because any later query may select a head).
* The load-balance loss ``sum_i P_i f_i`` (``balance="paper"``) or ``(h-h_s)`` times it
  (``balance="code"``, the released code's scale, equal to K at perfect balance); each module keeps
  its own value of the latest forward in ``aux_loss`` (no global list), ``balance_loss(model)``
  averages it over MoH layers.
* Instrumentation: routing records per forward, head load per class/domain with a chi-square and a
  label-permutation test, routing-score tables, the activated-heads fraction of a config (the paper's
  released configs included), analytic FLOPs under perfect skipping, head-redundancy metrics (Table B).
* Experiments: a tiny ViT on scikit-learn's digits, a byte-level LM on the shipped multi-domain
  corpus, a SmolLM2 conversion with the query-norm router by hooks, and an attention speed benchmark.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from headlab import data as hdata
from headlab import heads
from headlab.nn import Attention, Block, Config, HeadlabLM, RMSNorm, apply_rope, causal_mask, rope_cache
from headlab.train import TrainConfig, train

ROUTERS = ("two_stage", "no_two_stage", "no_shared", "query_norm", "query_norm_inverse", "random", "dense")
LEARNED = ("two_stage", "no_two_stage", "no_shared")
EPS = torch.finfo(torch.float32).eps


# ----------------------------------------------------------------------------------------------
# The module
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MoHSpec:
    """Head budget and router of one MoH layer (``n_heads`` comes from the model Config)."""

    n_shared: int = 2  # h_s, heads 0..h_s-1 (ignored by "no_shared" and "dense")
    top_k: int = 4  # K routed heads per token, of E = h - h_s
    router: str = "two_stage"
    gate: str = "code"  # "code" (renormalise over top-K, x K, x h_s, x 2) | "paper" (Eq. 5)
    balance: str = "code"  # "code": (h - h_s) * sum P f  |  "paper": sum P f
    mode: str = "masked"  # "masked" | "skip"
    causal: bool = True  # False for the ViT
    ste: bool = True  # binary routers: straight-through gradient into the score in training
    skip_chunks: int = 4  # skip mode, causal: block-causal chunks of the gathered queries

    def __post_init__(self):
        if self.router not in ROUTERS:
            raise ValueError(f"router must be one of {ROUTERS}, not {self.router!r}")
        if self.gate not in ("code", "paper"):
            raise ValueError(f"gate must be 'code' or 'paper', not {self.gate!r}")
        if self.balance not in ("code", "paper"):
            raise ValueError(f"balance must be 'code' or 'paper', not {self.balance!r}")
        if self.mode not in ("masked", "skip"):
            raise ValueError(f"mode must be 'masked' or 'skip', not {self.mode!r}")

    def shared(self, n_heads: int) -> int:
        if self.router == "dense":
            return n_heads
        return 0 if self.router == "no_shared" else self.n_shared

    def active(self, n_heads: int) -> int:
        """Heads on per token: h_s + K (all heads for ``dense``)."""
        return n_heads if self.router == "dense" else self.shared(n_heads) + self.top_k


def moh(spec: MoHSpec | Sequence[MoHSpec] | None = None, **kw):
    """``attention_cls`` for ``HeadlabLM``/``TinyViT``: ``moh(MoHSpec(...))`` or ``moh(n_shared=2, top_k=4)``
    (a list of specs gives one per layer)."""
    if spec is None:
        spec = MoHSpec(**kw)
    elif kw:
        spec = replace(spec, **kw)
    return partial(MoHAttention, spec=spec)


@dataclass
class Routing:
    gates: torch.Tensor  # [B, T, h] weight of each head (0 where off)
    mask: torch.Tensor  # [B, T, h] bool, head on
    probs: torch.Tensor | None = None  # [B, T, E] routed-head scores before top-K (softmax)
    shared: torch.Tensor | None = None  # [B, T, h_s] shared-head scores before alpha
    alpha: torch.Tensor | None = None  # [B, T, 2] group balance (after the code's x2)
    aux: torch.Tensor | None = None  # balance loss of this forward (scalar)


def balance_value(probs: torch.Tensor, mask: torch.Tensor, norm: str = "code") -> torch.Tensor:
    """Load-balance loss from routed scores ``probs`` [..., E] and 0/1 selections ``mask`` [..., E]:
    ``sum_i P_i f_i`` with P the mean score and f the fraction of tokens selecting head i
    (``norm="paper"``), times E for the released code's scale (``norm="code"``)."""
    E = probs.shape[-1]
    P = probs.reshape(-1, E).float().mean(0)
    f = mask.reshape(-1, E).float().mean(0)
    lb = (P * f).sum()
    return lb * E if norm == "code" else lb


def topk_mask(scores: torch.Tensor, k: int, largest: bool = True) -> torch.Tensor:
    idx = scores.topk(k, dim=-1, largest=largest).indices
    return torch.zeros_like(scores, dtype=torch.bool).scatter(-1, idx, True)


class MoHAttention(nn.Module):
    """Mixture-of-head attention with ``o_proj`` fed by the gated per-head outputs ``z`` (so
    ``headlab.heads`` captures and edits it like any attention). ``forward(x, cos, sin, doc_ids)``
    returns ``(out, weights_or_None)``; weights only in masked mode with ``cfg.attn_impl == "eager"``."""

    def __init__(self, cfg: Config, layer: int, spec: MoHSpec | Sequence[MoHSpec] | None = None):
        super().__init__()
        spec = spec or MoHSpec()
        if isinstance(spec, (list, tuple)):
            spec = spec[layer]
        self.spec, self.cfg, self.layer = spec, cfg, layer
        lh = cfg.heads_of(layer)
        h, dh, d = cfg.n_heads, cfg.d_head, cfg.d_model
        self.n_heads, self.d_head = h, dh
        self.n_k, self.n_v = lh.n_k, lh.n_v
        self.h_s = spec.shared(h)
        self.E = h - self.h_s
        self.K = self.E if spec.router == "dense" else spec.top_k
        if not 0 <= self.h_s <= h:
            raise ValueError(f"n_shared={self.h_s} outside 0..{h}")
        if spec.router != "dense" and not 1 <= self.K <= self.E:
            raise ValueError(f"top_k={self.K} must be in 1..{self.E} (h={h}, h_s={self.h_s})")
        self.q_proj = nn.Linear(d, h * dh, bias=False)
        self.k_proj = nn.Linear(d, self.n_k * dh, bias=False)
        self.v_proj = nn.Linear(d, self.n_v * dh, bias=False)
        self.o_proj = nn.Linear(h * dh, d, bias=False)
        self.register_buffer("k_map", torch.tensor(lh.k_map), persistent=False)
        self.register_buffer("v_map", torch.tensor(lh.v_map), persistent=False)
        self._kv_identity = lh.k_map == list(range(h)) and lh.v_map == list(range(h))  # MHA: no per-head copy
        if spec.router in LEARNED:
            self.wg = nn.Linear(d, self.E, bias=False)  # routed logits (paper W_r)
            self.wg_1 = nn.Linear(d, self.h_s, bias=False) if self.h_s > 1 else None  # shared (W_s)
            self.wg_0 = nn.Linear(d, 2, bias=False) if spec.router == "two_stage" and self.h_s > 0 else None  # (W_h)
        self.aux_loss: torch.Tensor | None = None
        self.last: Routing | None = None  # detached routing of the latest forward
        self.record = True

    # -- routing --------------------------------------------------------------------------------
    def route(self, x: torch.Tensor, q_routed: torch.Tensor | None = None) -> Routing:
        """Gates for x [B, T, d]; query-norm routers need the routed heads' queries [B, T, E, dh]."""
        B, T, _ = x.shape
        sp, h, hs, E, K = self.spec, self.n_heads, self.h_s, self.E, self.K
        if sp.router == "dense":
            g = x.new_ones(B, T, h)
            return Routing(g, torch.ones(B, T, h, dtype=torch.bool, device=x.device))
        probs = shared = alpha = aux = None
        if sp.router in LEARNED:
            probs = self.wg(x).float().softmax(-1)  # [B, T, E]
            sel = topk_mask(probs, K)
            r = probs * sel
            if sp.gate == "code":
                r = r / r.sum(-1, keepdim=True).clamp_min(EPS) * K
            if hs == 0:
                s = x.new_zeros(B, T, 0, dtype=torch.float32)
            elif hs == 1:
                s = x.new_ones(B, T, 1, dtype=torch.float32)
            else:
                s = self.wg_1(x).float().softmax(-1) * (hs if sp.gate == "code" else 1)
            shared = s
            if self.wg_0 is not None:
                alpha = self.wg_0(x).float().softmax(-1) * (2 if sp.gate == "code" else 1)
                g = torch.cat([alpha[..., :1] * s, alpha[..., 1:] * r], -1)
            else:
                g = torch.cat([s, r], -1)
            aux = balance_value(probs, sel, sp.balance)
        elif sp.router in ("query_norm", "query_norm_inverse"):
            norms = q_routed.float().norm(dim=-1)  # [B, T, E]; RoPE is a rotation: pre/post equal
            z = norms / norms.std(-1, keepdim=True).clamp_min(EPS)
            probs = z.softmax(-1)
            sel = topk_mask(probs, K, largest=sp.router == "query_norm")
            r = sel.float()
            if self.training and sp.ste and torch.is_grad_enabled():
                r = r + (probs - probs.detach()) * sel  # forward 0/1, backward d score
            g = torch.cat([x.new_ones(B, T, hs, dtype=torch.float32), r], -1)
            aux = balance_value(probs, sel, sp.balance)
        else:  # random
            sel = topk_mask(torch.rand(B, T, E, device=x.device), K)
            g = torch.cat([x.new_ones(B, T, hs, dtype=torch.float32), sel.float()], -1)
        mask = torch.cat([torch.ones(B, T, hs, dtype=torch.bool, device=x.device), sel], -1)
        return Routing(g, mask, probs, shared, alpha, aux)

    # -- attention pieces -----------------------------------------------------------------------
    def _kv(self, x, cos, sin):
        B, T, _ = x.shape
        k = self.k_proj(x).view(B, T, self.n_k, self.d_head).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.n_v, self.d_head).transpose(1, 2)
        if cos is not None:
            k = apply_rope(k, cos, sin)
        if self._kv_identity:
            return k, v
        return k.index_select(1, self.k_map), v.index_select(1, self.v_map)  # [B, h, T, dh]

    def _mask(self, T, doc_ids, device):
        if self.spec.causal:
            return causal_mask(T, doc_ids, device)
        if doc_ids is None:
            return None
        return doc_ids[:, None, :, None] == doc_ids[:, None, None, :]

    def forward(self, x, cos=None, sin=None, doc_ids=None, need_weights: bool = False):
        B, T, _ = x.shape
        h, dh = self.n_heads, self.d_head
        needs_q = self.spec.router in ("query_norm", "query_norm_inverse")
        if self.spec.mode == "masked" or needs_q or self.spec.router == "dense":
            q_raw = self.q_proj(x).view(B, T, h, dh)
            rt = self.route(x, q_raw[:, :, self.h_s :] if needs_q else None)
        else:
            q_raw = None
            rt = self.route(x)
        self.aux_loss = rt.aux
        if self.record:
            self.last = Routing(
                rt.gates.detach(),
                rt.mask,
                None if rt.probs is None else rt.probs.detach(),
                None if rt.shared is None else rt.shared.detach(),
                None if rt.alpha is None else rt.alpha.detach(),
                None if rt.aux is None else rt.aux.detach(),
            )
        if self.spec.mode == "skip" and self.spec.router != "dense":
            z = self._skip(x, cos, sin, doc_ids, rt, q_raw)
            return self.o_proj(z.reshape(B, T, h * dh)), None
        k, v = self._kv(x, cos, sin)
        q = q_raw.transpose(1, 2)
        if cos is not None:
            q = apply_rope(q, cos, sin)
        weights = None
        m = self._mask(T, doc_ids, x.device)
        if self.cfg.attn_impl == "eager" or need_weights:
            sc = (q @ k.transpose(-1, -2)) / math.sqrt(dh)
            if m is not None:
                sc = sc.masked_fill(~m, float("-inf"))
            weights = sc.softmax(-1)
            z = weights @ v
        elif self.spec.causal and doc_ids is None:
            z = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            z = F.scaled_dot_product_attention(q, k, v, attn_mask=m)
        z = z.transpose(1, 2)  # [B, T, h, dh], o_proj input
        if self.spec.router != "dense":  # dense: every gate is 1, this is exactly MHA
            z = z * rt.gates[..., None].to(z.dtype)
        return self.o_proj(z.reshape(B, T, h * dh)), weights

    def _skip(self, x, cos, sin, doc_ids, rt: Routing, q_raw):
        """Shared heads: dense attention. Routed head j: gather the tokens that selected it, project
        and attend only those queries (over all keys of head j, causal by original position), scale
        by the gate and scatter back. Padding to the busiest (batch row, head) is the only waste."""
        B, T, d = x.shape
        hs, E, dh = self.h_s, self.E, self.d_head
        k, v = self._kv(x, cos, sin)
        W = self.q_proj.weight  # [h*dh, d]
        parts = []
        if hs:
            qs = (q_raw[:, :, :hs] if q_raw is not None else F.linear(x, W[: hs * dh]).view(B, T, hs, dh)).transpose(
                1, 2
            )
            if cos is not None:
                qs = apply_rope(qs, cos, sin)
            ks, vs = k[:, :hs], v[:, :hs]
            if self.spec.causal and doc_ids is None:
                zs = F.scaled_dot_product_attention(qs, ks, vs, is_causal=True)
            else:
                zs = F.scaled_dot_product_attention(qs, ks, vs, attn_mask=self._mask(T, doc_ids, x.device))
            parts.append(zs.transpose(1, 2) * rt.gates[..., :hs, None].to(zs.dtype))
        sel = rt.mask[..., hs:]  # [B, T, E]
        counts = sel.sum(1)  # [B, E]
        n = int(counts.max())
        zr = x.new_zeros(B, T, E, dh)
        if n > 0:
            order = torch.argsort((~sel).to(torch.int8), dim=1, stable=True)[:, :n]  # [B, n, E], selected first
            valid = torch.arange(n, device=x.device)[None, :, None] < counts[:, None, :]
            pos = order.masked_fill(~valid, 0)  # padding points at token 0 (any valid row; output dropped)
            if q_raw is not None:
                qr = q_raw[:, :, hs:].gather(1, pos[..., None].expand(B, n, E, dh))  # [B, n, E, dh]
            else:
                flat = (pos + torch.arange(B, device=x.device)[:, None, None] * T).reshape(-1)
                xs = x.reshape(B * T, d).index_select(0, flat).view(B, n, E, d)
                qr = torch.einsum("bned,ekd->bnek", xs, W[hs * dh :].view(E, dh, d))
            qr = qr.permute(0, 2, 1, 3)  # [B, E, n, dh]
            pe = pos.permute(0, 2, 1)  # [B, E, n]
            if cos is not None:
                qr = apply_rope(qr, cos[pe], sin[pe])
            kr, vr = k[:, hs:], v[:, hs:]
            dq = None if doc_ids is None else doc_ids.gather(1, pe.reshape(B, E * n)).view(B, E, n)
            # Causal: slots are in time order, so split them into chunks that attend only to the keys up
            # to the chunk's last position (block-causal; one chunk for non-causal attention).
            n_chunks = max(1, min(self.spec.skip_chunks, n)) if self.spec.causal else 1
            bounds = [round(i * n / n_chunks) for i in range(n_chunks + 1)]
            outs = []
            for s0, s1 in itertools.pairwise(bounds):
                pc = pe[..., s0:s1]
                kmax = int(pc.max()) + 1 if self.spec.causal else T
                am = None
                if self.spec.causal:
                    am = torch.arange(kmax, device=x.device)[None, None, None, :] <= pc[..., None]  # [B, E, nc, kmax]
                if dq is not None:
                    dm = dq[..., s0:s1, None] == doc_ids[:, None, None, :kmax]
                    am = dm if am is None else am & dm
                outs.append(
                    F.scaled_dot_product_attention(qr[:, :, s0:s1], kr[:, :, :kmax], vr[:, :, :kmax], attn_mask=am)
                )
            o = torch.cat(outs, 2) if len(outs) > 1 else outs[0]  # [B, E, n, dh]
            g = rt.gates[..., hs:].gather(1, pos) * valid  # [B, n, E]
            o = o.permute(0, 2, 1, 3) * g[..., None].to(o.dtype)  # [B, n, E, dh]
            zr = zr.scatter_add(1, pos[..., None].expand(B, n, E, dh), o)
        parts.append(zr)
        return torch.cat(parts, 2)  # [B, T, h, dh]


def moh_layers(model: nn.Module) -> list[MoHAttention]:
    return [m for m in model.modules() if isinstance(m, MoHAttention)]


def set_mode(model: nn.Module, mode: str) -> nn.Module:
    """Switch every MoH layer between ``masked`` and ``skip`` (same weights, same routing)."""
    for m in moh_layers(model):
        m.spec = replace(m.spec, mode=mode)
    return model


def balance_loss(model: nn.Module) -> torch.Tensor:
    """Mean over MoH layers of the latest forward's balance loss (0 when no layer has one)."""
    vals = [m.aux_loss for m in moh_layers(model) if m.aux_loss is not None]
    if not vals:
        return torch.zeros((), device=next(model.parameters()).device)
    return torch.stack(vals).mean()


def routing_records(model: nn.Module) -> dict[int, Routing]:
    return {m.layer: m.last for m in moh_layers(model) if m.last is not None}


# ----------------------------------------------------------------------------------------------
# Activated heads and FLOPs
# ----------------------------------------------------------------------------------------------


def activated_fraction(layers: Iterable[tuple[int, int, int]]) -> float:
    """Head-count-weighted activated fraction of ``(h, h_s, K)`` per layer; K = 0 means every head on."""
    on = tot = 0
    for h, hs, k in layers:
        on += h if k == 0 else hs + k
        tot += h
    return on / tot


def _stages(depths, widths, budgets):
    return [(h, hs, k) for dep, h, (hs, k) in zip(depths, widths, budgets, strict=True) for _ in range(dep)]


# Head budgets of the released MoH configurations (depths, heads per stage/layer, (h_s, K) per group),
# read from the official repository's config files as summarised in the replication notes.
RELEASED_CONFIGS: dict[str, list[tuple[int, int, int]]] = {
    "MoH-ViT-B-75": _stages([5, 5, 23, 5], [4, 8, 16, 32], [(4, 0), (8, 0), (4, 8), (5, 16)]),
    "MoH-ViT-B-50": _stages([5, 5, 23, 5], [4, 8, 16, 32], [(2, 2), (2, 4), (2, 6), (4, 8)]),
    "MoH-ViT-S-80": _stages([5, 5, 22, 5], [3, 6, 12, 24], [(3, 0), (6, 0), (3, 6), (8, 12)]),
    "MoH-ViT-S-75": _stages([5, 5, 22, 5], [3, 6, 12, 24], [(3, 0), (6, 0), (3, 6), (4, 12)]),
    "MoH-DiT-XL/2-90": _stages([9, 10, 9], [8, 16, 24], [(8, 0), (16, 0), (16, 3)]),
    "MoH-DiT-XL/2-75": _stages([9, 10, 9], [8, 16, 24], [(8, 0), (10, 2), (14, 2)]),
}


def model_activated_fraction(model: nn.Module) -> float:
    return activated_fraction((m.n_heads, m.h_s, 0 if m.spec.router == "dense" else m.K) for m in moh_layers(model))


def layer_flops(
    d: int, h: int, d_head: int, T: int, active: float, n_kv: int | None = None, causal: bool = True
) -> dict:
    """FLOPs per token of one attention layer under a perfect skipping kernel with ``active`` heads
    on per token (fractional = mean). K/V projections are never skippable; router ``2 d (h + 2)``."""
    n_kv = n_kv or h
    keys = (T + 1) / 2 if causal else T  # mean keys a query sees
    return {
        "router": 2 * d * (h + 2) if active < h else 0,
        "q_proj": 2 * d * d_head * active,
        "kv_proj": 2 * 2 * d * d_head * n_kv,
        "attn_core": 4 * keys * d_head * active,
        "o_proj": 2 * d_head * d * active,
    }


# ----------------------------------------------------------------------------------------------
# Structural checks (exact properties of the formulation)
# ----------------------------------------------------------------------------------------------


def activation_counts(records: dict[int, dict] | dict[int, Routing]) -> dict[int, list[int]]:
    """Distinct numbers of active heads per token, per layer (should be exactly one: h_s + K)."""
    out = {}
    for l, r in records.items():
        m = r["mask"] if isinstance(r, dict) else r.mask
        out[l] = sorted(set(m.sum(-1).flatten().tolist()))
    return out


def gate_sum_errors(rec: dict, n_shared: int, top_k: int) -> dict:
    """Code convention: routed gates of a token sum to K * a1, shared gates to h_s * a0, a0 + a1 = 2."""
    g, a = rec["gates"].double(), rec["alpha"].double()
    return {
        "routed": float((g[..., n_shared:].sum(-1) - top_k * a[..., 1]).abs().max()),
        "shared": float((g[..., :n_shared].sum(-1) - n_shared * a[..., 0]).abs().max()),
        "alpha": float((a.sum(-1) - 2).abs().max()),
    }


def balanced_example(E: int, K: int) -> tuple[torch.Tensor, torch.Tensor]:
    """E tokens with uniform routed scores, token t selecting heads t, t+1, .., t+K-1 (mod E):
    every head is chosen by exactly K of the E tokens."""
    probs = torch.full((E, E), 1.0 / E)
    mask = torch.zeros(E, E, dtype=torch.bool)
    for t in range(E):
        mask[t, [(t + j) % E for j in range(K)]] = True
    return probs, mask


def structural_checks(seed: int = 0, d: int = 32, h: int = 8, d_head: int = 8, T: int = 24, B: int = 3) -> pd.DataFrame:
    """Exact checks on small random layers: MHA equivalence (dense router; two-stage with K = E and
    zero routers), masked == skip for every router (causal with documents, and non-causal), the
    balance loss on a hand example, the K = 1 task gradient into W_r, and query-norm top-K before
    versus after RoPE. Returns one row per check with the measured value."""
    torch.manual_seed(seed)
    cfg = Config(vocab_size=8, d_model=d, n_layers=1, n_heads=h, d_head=d_head, max_seq_len=T)
    x = torch.randn(B, T, d)
    cos, sin = rope_cache(T, d_head, cfg.rope_theta)
    docs = (torch.arange(T) >= T // 3).long()[None].repeat(B, 1)
    rows = []
    mha = Attention(cfg, 0)
    ref = mha(x, cos, sin)[0].detach()
    dense = MoHAttention(cfg, 0, MoHSpec(router="dense"))
    dense.load_state_dict(mha.state_dict(), strict=False)
    rows.append(
        {
            "id": "dense",
            "check": "dense router == MHA (max |diff|)",
            "value": float((dense(x, cos, sin)[0].detach() - ref).abs().max()),
        }
    )
    full = MoHAttention(cfg, 0, MoHSpec(n_shared=2, top_k=h - 2))
    full.load_state_dict(mha.state_dict(), strict=False)
    for lin in (full.wg, full.wg_0, full.wg_1):
        nn.init.zeros_(lin.weight)
    rows.append(
        {
            "id": "two_stage",
            "check": "two-stage, K = E, zero routers == MHA (max |diff|)",
            "value": float((full(x, cos, sin)[0].detach() - ref).abs().max()),
        }
    )
    worst = 0.0
    for router in ROUTERS:
        for causal, doc in ((True, None), (True, docs), (False, None)):
            spec = MoHSpec(n_shared=0 if router == "no_shared" else 2, top_k=3, router=router, causal=causal)
            a = MoHAttention(cfg, 0, spec)
            b = MoHAttention(cfg, 0, replace(spec, mode="skip"))
            b.load_state_dict(a.state_dict())
            torch.manual_seed(seed + 1)
            oa = a(x, cos, sin, doc)[0]
            torch.manual_seed(seed + 1)
            ob = b(x, cos, sin, doc)[0]
            worst = max(worst, float((oa - ob).detach().abs().max()))
    rows.append(
        {
            "id": "masked_skip",
            "check": "masked == skip, every router, causal/documents/non-causal (max |diff|)",
            "value": worst,
        }
    )
    E, K = 6, 4
    p, m = balanced_example(E, K)
    rows.append(
        {
            "id": "balance_code",
            "check": f"balance loss, uniform and balanced, code scale (= K = {K})",
            "value": float(balance_value(p, m, "code")),
        }
    )
    rows.append(
        {
            "id": "balance_paper",
            "check": f"balance loss, uniform and balanced, paper scale (= K/E = {K / E:.4f})",
            "value": float(balance_value(p, m, "paper")),
        }
    )
    grads = {}
    for k in (1, 2):
        torch.manual_seed(seed)
        a = MoHAttention(cfg, 0, MoHSpec(n_shared=2, top_k=k))
        a(x, cos, sin)[0].pow(2).sum().backward()
        grads[k] = float(a.wg.weight.grad.abs().max())
    rows.append(
        {
            "id": "k1_grad",
            "check": f"K = 1: max |task-loss grad of W_r| (K = 2 for scale: {grads[2]:.3g})",
            "value": grads[1],
        }
    )
    q = torch.randn(B, h, T, d_head)
    pre = topk_mask(q.norm(dim=-1).transpose(1, 2), 3)
    post = topk_mask(apply_rope(q, cos, sin).norm(dim=-1).transpose(1, 2), 3)
    rows.append(
        {
            "id": "qnorm_rope",
            "check": "query-norm top-K, pre- vs post-RoPE: tokens that differ",
            "value": float((pre != post).any(-1).sum()),
        }
    )
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------
# Instrumentation
# ----------------------------------------------------------------------------------------------


@torch.no_grad()
def collect_routing(model: nn.Module, batches: Iterable, forward: Callable | None = None) -> dict[int, dict]:
    """Run ``forward(model, batch)`` over batches and concatenate every MoH layer's routing:
    ``{layer: {"mask": [N, T, h] bool, "gates": [N, T, h], "probs": [N, T, E] | None, "alpha": ...}}``."""
    forward = forward or (lambda m, b: m(b))
    out: dict[int, dict[str, list]] = {}
    for b in batches:
        forward(model, b)
        for l, r in routing_records(model).items():
            d = out.setdefault(l, {"mask": [], "gates": [], "probs": [], "alpha": [], "shared": []})
            d["mask"].append(r.mask.cpu())
            d["gates"].append(r.gates.cpu())
            for k in ("probs", "alpha", "shared"):
                v = getattr(r, k)
                if v is not None:
                    d[k].append(v.cpu())
    return {l: {k: (torch.cat(v) if v else None) for k, v in d.items()} for l, d in out.items()}


def head_load(mask_routed: torch.Tensor, labels: np.ndarray | torch.Tensor, names: dict | None = None) -> pd.DataFrame:
    """Share of tokens selecting each routed head, per label. ``mask_routed`` [N, T, E] (or [N, E])
    bool, ``labels`` [N] per sequence/image. Long table: label, head (1..E), load, tokens."""
    m = mask_routed.reshape(mask_routed.shape[0], -1, mask_routed.shape[-1]).float()
    labels = np.asarray(labels)
    rows = []
    for lab in pd.unique(labels):
        sel = m[torch.as_tensor(labels == lab)]
        load = sel.mean(dim=(0, 1))
        for j, v in enumerate(load.tolist()):
            rows.append(
                {
                    "label": names.get(lab, lab) if names else lab,
                    "head": j + 1,
                    "load": v,
                    "tokens": int(sel.shape[0] * sel.shape[1]),
                }
            )
    return pd.DataFrame(rows)


def load_dependence(mask_routed: torch.Tensor, labels, n_perm: int = 200, seed: int = 0) -> dict:
    """Does routing depend on the label? A chi-square test of the label x routed-head selection
    counts (tokens treated as independent, so it overstates significance), and the honest one: the
    mean pairwise total-variation distance between per-label load vectors against a null that
    permutes labels across sequences/images."""
    from scipy.stats import chi2_contingency

    labels = np.asarray(labels)
    per_seq = mask_routed.reshape(mask_routed.shape[0], -1, mask_routed.shape[-1]).float().sum(1).numpy()  # [N, E]
    uniq = pd.unique(labels)

    def tv(lbl):
        loads = np.stack([per_seq[lbl == u].sum(0) for u in uniq])
        loads = loads / loads.sum(1, keepdims=True)
        i, j = np.triu_indices(len(uniq), 1)
        return float(0.5 * np.abs(loads[i] - loads[j]).sum(1).mean())

    table = np.stack([per_seq[labels == u].sum(0) for u in uniq])
    chi2, p, dof, _ = chi2_contingency(table[:, table.sum(0) > 0])  # a never-selected head has no expected count
    obs = tv(labels)
    rng = np.random.default_rng(seed)
    null = np.array([tv(rng.permutation(labels)) for _ in range(n_perm)])
    return {
        "chi2": float(chi2),
        "dof": int(dof),
        "p_chi2": float(p),
        "tv": obs,
        "tv_null_95": float(np.quantile(null, 0.95)),
        "p_perm": float((1 + (null >= obs).sum()) / (1 + n_perm)),
    }


def score_table(rec: dict, labels, n_shared: int, names: dict | None = None) -> pd.DataFrame:
    """Routing scores (final gate weights) of one layer, one row per (sequence, token, active head):
    label, group (shared/routed), head, score. Routed heads appear where selected."""
    g, m = rec["gates"], rec["mask"]
    N, T, h = g.shape
    lab = np.repeat(np.asarray(labels), T * h).reshape(N, T, h)
    head = np.broadcast_to(np.arange(h), (N, T, h))
    keep = m.numpy()
    df = pd.DataFrame({"label": lab[keep], "head": head[keep], "score": g.numpy()[keep]})
    df["group"] = np.where(df["head"] < n_shared, "shared", "routed")
    if names:
        df["label"] = df["label"].map(lambda x: names.get(x, x))
    return df


def score_spread(df: pd.DataFrame) -> pd.DataFrame:
    """Across-label standard deviation of each head's mean score, averaged per group: the paper says
    shared-head scores vary more across categories than routed-head scores."""
    per = df.groupby(["group", "head", "label"])["score"].mean().groupby(["group", "head"]).std()
    return per.groupby("group").mean().rename("across_label_std").reset_index()


def head_redundancy(pattern: torch.Tensor, z: torch.Tensor, mask: torch.Tensor | None = None) -> dict:
    """Table B metrics for one layer: mean over head pairs of ``1 - 0.5 * sum_k |A_i - A_j|``
    (per query, averaged) and of the cosine between head outputs ``z`` (per token), signed and
    absolute (signed means can cancel). With ``mask`` [B, T, h] (MoH) both are taken only where both
    heads are on: a head that is off contributes neither its pattern nor its output.
    pattern [B, h, q, k], z [B, T, h, dh]."""
    B, h, Tq, Tk = pattern.shape
    i, j = torch.triu_indices(h, h, 1)
    sim = (1 - 0.5 * (pattern[:, i] - pattern[:, j]).abs().sum(-1)).transpose(1, 2)  # [B, q, pairs]
    zn = F.normalize(z.float(), dim=-1)
    cos = (zn[:, :, i] * zn[:, :, j]).sum(-1)  # [B, T, pairs]
    if mask is not None:  # both metrics over the (token, pair)s where both heads are on
        both = mask[:, :, i] & mask[:, :, j]
        sim, cos = sim[both], cos[both]
    if cos.numel() == 0:
        return {"pattern_similarity": float("nan"), "output_cosine": float("nan"), "output_abs_cosine": float("nan")}
    return {
        "pattern_similarity": float(sim.mean()),
        "output_cosine": float(cos.mean()),
        "output_abs_cosine": float(cos.abs().mean()),
    }


def model_redundancy(model: nn.Module, batches: Iterable, forward: Callable | None = None) -> dict:
    """``head_redundancy`` averaged over layers and batches (masked mode, eager attention)."""
    forward = forward or (lambda m, b: m(b))
    acc = []
    with torch.no_grad(), heads.eager(model):
        for b in batches:
            with heads.capture(model, z=True, pattern=True) as cache:
                forward(model, b)
            recs = routing_records(model)
            for l in cache.z:
                mask = recs[l].mask if l in recs else None
                acc.append(head_redundancy(cache.pattern[l], cache.z[l], mask))
    return {k: float(np.nanmean([a[k] for a in acc])) for k in acc[0]}


# ----------------------------------------------------------------------------------------------
# Vision: a tiny ViT on scikit-learn's 8x8 digits
# ----------------------------------------------------------------------------------------------


def digits(seed: int = 0, test_size: int = 360):
    """sklearn's bundled digits (1797 8x8 images, offline): stratified train/test split, pixels / 16."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X / 16.0, y, test_size=test_size, stratify=y, random_state=seed)

    def f(a):
        return torch.tensor(a, dtype=torch.float32).view(-1, 8, 8)

    return f(Xtr), torch.tensor(ytr), f(Xte), torch.tensor(yte)


class TinyViT(nn.Module):
    """Patch embedding + learned positions + headlab blocks (pre-RMSNorm, SwiGLU) with non-causal
    attention + mean pooling + linear classifier. ``config.model_type == "headlab"`` and
    ``layers[i].self_attn.o_proj``, so ``headlab.heads`` works on it."""

    def __init__(
        self,
        spec: MoHSpec | Sequence[MoHSpec] | None = None,
        image: int = 8,
        patch: int = 2,
        d: int = 64,
        depth: int = 4,
        n_heads: int = 8,
        d_mlp: int = 128,
        n_classes: int = 10,
    ):
        super().__init__()
        self.patch = patch
        n_tok = (image // patch) ** 2
        self.config = Config(
            vocab_size=1,
            d_model=d,
            n_layers=depth,
            n_heads=n_heads,
            d_mlp=d_mlp,
            max_seq_len=n_tok,
            pos_emb="learned",
            attn_impl="eager",
        )  # 16 tokens: explicit softmax beats fused kernels
        spec = spec or MoHSpec(router="dense")
        specs = list(spec) if isinstance(spec, (list, tuple)) else [spec] * depth
        specs = [replace(s, causal=False) for s in specs]
        self.patch_embed = nn.Linear(patch * patch, d)
        self.pos = nn.Parameter(torch.zeros(1, n_tok, d))
        self.layers = nn.ModuleList([Block(self.config, i, partial(MoHAttention, spec=specs)) for i in range(depth)])
        self.norm = RMSNorm(d)
        self.head = nn.Linear(d, n_classes)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        nn.init.trunc_normal_(self.pos, std=0.02)

    def tokens(self, img: torch.Tensor) -> torch.Tensor:
        B, H, W = img.shape
        p = self.patch
        x = img.view(B, H // p, p, W // p, p).permute(0, 1, 3, 2, 4).reshape(B, -1, p * p)
        return self.patch_embed(x) + self.pos

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        x = self.tokens(img)
        for blk in self.layers:
            x = blk(x, None, None)
        return self.head(self.norm(x).mean(1))


VIT_VARIANTS: dict[str, tuple[MoHSpec, float]] = {  # name -> (spec, beta); 8 heads per layer
    "MHA": (MoHSpec(router="dense"), 0.0),
    "MoH-88": (MoHSpec(n_shared=2, top_k=5), 0.01),  # 7/8 heads: the closest to the paper's 90
    "MoH-75": (MoHSpec(n_shared=2, top_k=4), 0.01),
    "MoH-62": (MoHSpec(n_shared=2, top_k=3), 0.01),
    "MoH-50": (MoHSpec(n_shared=2, top_k=2), 0.01),
    "MoH-75 no shared, no two-stage": (MoHSpec(router="no_shared", n_shared=0, top_k=6), 0.01),
    "MoH-75 no two-stage": (MoHSpec(router="no_two_stage", n_shared=2, top_k=4), 0.01),
    "MoH-75 random router": (MoHSpec(router="random", n_shared=2, top_k=4), 0.0),
    "MoH-75 h_s=1": (MoHSpec(n_shared=1, top_k=5), 0.01),
    "MoH-75 h_s=3": (MoHSpec(n_shared=3, top_k=3), 0.01),
    "MoH-75 h_s=4": (MoHSpec(n_shared=4, top_k=2), 0.01),
    "MoH-75 beta=0": (MoHSpec(n_shared=2, top_k=4), 0.0),
}


def train_vit(
    spec: MoHSpec,
    data,
    *,
    epochs: int = 30,
    batch: int = 128,
    lr: float = 2e-3,
    beta: float = 0.01,
    seed: int = 0,
    eval_every: int | None = None,
    device="cpu",
    **vit_kw,
) -> tuple[TinyViT, pd.DataFrame]:
    """Train a TinyViT with AdamW + cosine and loss = CE + beta * balance. Returns the model and the
    eval log (test accuracy, NLL, per-layer balance loss / K on the test set)."""
    Xtr, ytr, Xte, yte = (t.to(device) for t in data)
    torch.manual_seed(seed)
    model = TinyViT(spec, **vit_kw).to(device)
    steps_per_epoch = math.ceil(len(Xtr) / batch)
    steps = epochs * steps_per_epoch
    g = torch.Generator().manual_seed(seed)
    perms = [torch.randperm(len(Xtr), generator=g) for _ in range(epochs)]

    def get_batch(step):
        e, i = divmod(step, steps_per_epoch)
        idx = perms[e][i * batch : (i + 1) * batch].to(device)
        return Xtr[idx], ytr[idx]

    def loss_fn(m, x, y):
        return F.cross_entropy(m(x), y) + beta * balance_loss(m), {}

    def eval_fn(m):
        logits = m(Xte)
        row = {
            "test_acc": float((logits.argmax(-1) == yte).float().mean()),
            "test_nll": float(F.cross_entropy(logits, yte)),
        }
        for a in moh_layers(m):
            if a.aux_loss is not None:
                row[f"laux_over_K_l{a.layer}"] = float(a.aux_loss) / (a.K if a.spec.balance == "code" else a.K / a.E)
        return row

    tc = TrainConfig(
        steps=steps,
        lr=lr,
        min_lr_ratio=0.01,
        warmup=steps_per_epoch,
        weight_decay=0.05,
        eval_every=eval_every or steps_per_epoch * 5,
        seed=seed,
    )
    log = train(model, get_batch, tc, loss_fn=loss_fn, eval_fn=eval_fn, desc=f"ViT {spec.router}")
    return model, pd.DataFrame(log)


def run_vit(names: Sequence[str], data, seeds: Sequence[int] = (0,), cache: dict | None = None, **kw) -> dict:
    """Train every (variant, seed) not yet in ``cache``: ``{(name, seed): (model, log)}``."""
    cache = {} if cache is None else cache
    for name in names:
        spec, beta = VIT_VARIANTS[name]
        for s in seeds:
            if (name, s) not in cache:
                cache[(name, s)] = train_vit(spec, data, beta=beta, seed=s, **kw)
    return cache


def vit_summary(results: dict, names: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per (variant, seed): activated fraction, shared share of the active heads, params,
    final test accuracy / NLL, and the largest final balance loss / K over layers."""
    rows = []
    for (name, seed), (model, log) in results.items():
        if names is not None and name not in names:
            continue
        a = moh_layers(model)[0]
        active = a.spec.active(a.n_heads)
        last = log.iloc[-1]
        laux = [v for k, v in last.items() if k.startswith("laux_over_K")]
        rows.append(
            {
                "variant": name,
                "seed": seed,
                "router": a.spec.router,
                "h_s": a.h_s,
                "K": a.K if a.spec.router != "dense" else 0,
                "active_heads": active,
                "activated": model_activated_fraction(model),
                "shared_share": a.h_s / active,
                "beta": VIT_VARIANTS[name][1],
                "params": sum(p.numel() for p in model.parameters()),
                "test_acc": last["test_acc"],
                "test_nll": last["test_nll"],
                "final_laux_over_K_max": max(laux) if laux else float("nan"),
            }
        )
    df = pd.DataFrame(rows)
    if names is not None:
        df["variant"] = pd.Categorical(df["variant"], list(names), ordered=True)
        df = df.sort_values(["variant", "seed"]).reset_index(drop=True)
        df["variant"] = df["variant"].astype(str)
    return df


# ----------------------------------------------------------------------------------------------
# Language: a byte-level LM on the shipped multi-domain corpus
# ----------------------------------------------------------------------------------------------


@dataclass
class DomainData:
    train: np.ndarray  # token stream of every domain's training part
    val: dict[str, torch.Tensor]  # domain -> [n_windows, seq + 1]
    domains: list[str] = field(default_factory=list)


def domain_data(seq: int, val_windows: int = 8, val_fraction: float = 0.1, types=None) -> DomainData:
    """Split every text type 90/10 at the end of its stream; validation = evenly spaced windows."""
    types = types or hdata.text_types()
    train_parts, val = [], {}
    for t in types:
        toks, _ = hdata.corpus_tokens([t])
        tr, va = hdata.split_tokens(toks, val_fraction)
        train_parts.append(tr)
        starts = np.linspace(0, len(va) - seq - 2, val_windows).astype(int)
        val[t] = torch.tensor(np.stack([va[s : s + seq + 1] for s in starts]), dtype=torch.long)
    return DomainData(np.concatenate(train_parts), val, list(types))


def lm_variants() -> dict[str, MoHSpec | None]:
    return {"MHA": None, "MoH-75": MoHSpec(n_shared=2, top_k=4), "MoH-50": MoHSpec(n_shared=2, top_k=2)}


def lm_config(
    seq: int = 128, d: int = 128, n_layers: int = 2, n_heads: int = 8, d_head: int = 16, d_mlp: int | None = 256
) -> Config:
    return Config(
        vocab_size=hdata.ByteTokenizer.vocab_size,
        d_model=d,
        n_layers=n_layers,
        n_heads=n_heads,
        d_head=d_head,
        d_mlp=d_mlp,
        max_seq_len=seq,
    )


def build_lm(spec: MoHSpec | None, cfg: Config, seed: int = 0) -> HeadlabLM:
    torch.manual_seed(seed)
    return HeadlabLM(cfg, Attention if spec is None else moh(spec))


def domain_losses(model: HeadlabLM, dd: DomainData) -> dict[str, float]:
    model.eval()
    out = {}
    with torch.no_grad():
        for t, w in dd.val.items():
            w = w.to(model.device)
            out[t] = float(model(w[:, :-1], labels=w[:, 1:]).loss)
    out["all"] = float(np.mean([out[t] for t in dd.val]))
    return out


def train_lm(
    spec: MoHSpec | None,
    dd: DomainData,
    cfg: Config,
    *,
    steps: int = 250,
    batch: int = 16,
    lr: float = 3e-3,
    beta: float = 0.01,
    seed: int = 0,
    eval_every: int = 50,
    device="cpu",
) -> tuple[HeadlabLM, pd.DataFrame]:
    model = build_lm(spec, cfg, seed).to(device)
    get_batch = hdata.Batches(dd.train, batch, cfg.max_seq_len, seed=seed, device=device)

    def loss_fn(m, x, y):
        return m(x, labels=y).loss + beta * balance_loss(m), {}

    val_all = torch.cat(list(dd.val.values()))[:, :-1]  # every domain at once, like the training batches

    def eval_fn(m):
        row = {f"val_{k}": v for k, v in domain_losses(m, dd).items()}
        if moh_layers(m):
            with torch.no_grad():
                m(val_all.to(m.device))  # balance over the mixed validation set, not the last domain's forward
            row["laux_over_K"] = max(float(a.aux_loss) / a.K for a in moh_layers(m))
        return row

    tc = TrainConfig(steps=steps, lr=lr, warmup=max(steps // 20, 1), eval_every=eval_every, seed=seed)
    log = train(model, get_batch, tc, loss_fn=loss_fn, eval_fn=eval_fn, desc="MoH LM" if spec else "MHA LM")
    return model, pd.DataFrame(log)


def run_lm(
    names: Sequence[str], dd: DomainData, cfg: Config, seeds: Sequence[int] = (0,), cache: dict | None = None, **kw
) -> dict:
    cache = {} if cache is None else cache
    variants = lm_variants()
    for name in names:
        for s in seeds:
            if (name, s) not in cache:
                cache[(name, s)] = train_lm(variants[name], dd, cfg, seed=s, **kw)
    return cache


def lm_summary(results: dict, dd: DomainData) -> pd.DataFrame:
    """Long table: variant, seed, domain, validation loss (nats/byte), activated fraction, params."""
    rows = []
    for (name, seed), (model, _log) in results.items():
        losses = domain_losses(model, dd)
        act = model_activated_fraction(model) if moh_layers(model) else 1.0
        for dom, v in losses.items():
            rows.append(
                {
                    "variant": name,
                    "seed": seed,
                    "domain": dom,
                    "val_loss": v,
                    "activated": act,
                    "params": model.num_params(),
                }
            )
    return pd.DataFrame(rows)


def lm_routing(model: HeadlabLM, dd: DomainData) -> tuple[dict[int, dict], np.ndarray]:
    """Routing records over every domain's validation windows, with the domain label per window."""
    batches = [w[:, :-1].to(model.device) for w in dd.val.values()]
    labels = np.concatenate([[t] * len(w) for t, w in dd.val.items()])
    return collect_routing(model, batches), labels


# ----------------------------------------------------------------------------------------------
# Converting a pretrained model (SmolLM2) with the parameter-free query-norm router, by hooks
# ----------------------------------------------------------------------------------------------


@contextlib.contextmanager
def query_norm_routing(
    model, n_shared: int, top_k: int, router: str = "query_norm", seed: int = 0, ste: bool = True, record: bool = False
):
    """Route a pretrained (HF llama-style) model's heads per token without touching its attention code:
    a forward hook on each ``q_proj`` keeps the queries, and a ``headlab.heads.intervene`` edit at the
    ``o_proj`` input multiplies each head's output by its gate. Heads ``0..n_shared-1`` are always on;
    of the rest, the ``top_k`` with the largest query norm (``query_norm``), the smallest
    (``inverse``) or uniformly random ones (``random``, seeded) are on. Gates are binary; with
    ``ste`` and grad enabled the backward pass goes through the softmax of the std-normalised norms.
    Yields a dict whose ``"masks"`` (if ``record``) collects ``[B, T, h]`` per layer per forward."""
    if router not in ("query_norm", "inverse", "random"):
        raise ValueError(f"router must be query_norm, inverse or random, not {router!r}")
    hd = heads.Heads(model)
    h, dh = hd.n_heads, hd.d_head
    E = h - n_shared
    if not 1 <= top_k <= E:
        raise ValueError(f"top_k={top_k} must be in 1..{E}")
    queries: dict[int, torch.Tensor] = {}
    gen = torch.Generator().manual_seed(seed)
    state = {"masks": {}}
    handles = []
    for l in range(hd.n_layers):

        def qhook(_m, _inp, out, l=l):
            queries[l] = out

        handles.append(hd.attn(l).q_proj.register_forward_hook(qhook))

    def edit(view):
        q = queries.pop(view.layer)
        B, T = q.shape[:2]
        qr = q.view(B, T, h, dh)[:, :, n_shared:]
        if router == "random":
            sel = topk_mask(torch.rand(B, T, E, generator=gen).to(q.device), top_k)
            r = sel.to(view.z.dtype)
        else:
            norms = qr.float().norm(dim=-1)
            score = (norms / norms.std(-1, keepdim=True).clamp_min(EPS)).softmax(-1)
            sel = topk_mask(score, top_k, largest=router == "query_norm")
            r = sel.to(view.z.dtype)
            if ste and torch.is_grad_enabled():
                r = r + ((score - score.detach()) * sel).to(view.z.dtype)
        g = torch.cat([torch.ones(B, T, n_shared, dtype=r.dtype, device=r.device), r], -1)
        if record:
            state["masks"].setdefault(view.layer, []).append(g.detach().ne(0).cpu())
        return view.z * g[..., None]

    try:
        with heads.intervene(model, edit):
            yield state
    finally:
        for hd_ in handles:
            hd_.remove()


def eval_texts(tok, texts: Sequence[str], seq: int, n: int) -> torch.Tensor:
    """``n`` token windows of exactly ``seq`` ids (no bos) from texts long enough."""
    from headlab.models import encode

    rows = [ids[:seq] for ids in (encode(tok, t, False) for t in texts) if len(ids) >= seq]
    if len(rows) < n:
        raise ValueError(f"only {len(rows)} texts have {seq} tokens; need {n}")
    return torch.tensor(rows[:n])


@torch.no_grad()
def window_nll(model, ids: torch.Tensor, batch: int = 4) -> float:
    """Mean next-token loss (nats) over windows [n, seq] (full lm_head: windows are short)."""
    tot = cnt = 0.0
    for s in range(0, len(ids), batch):
        x = ids[s : s + batch].to(model.device)
        out = model(input_ids=x, labels=x)
        n = x[:, 1:].numel()
        tot += float(out.loss) * n
        cnt += n
    return tot / cnt


def conversion_table(
    model, ids: torch.Tensor, budgets: dict[str, tuple[int, int]], random_seeds=(0, 1, 2)
) -> pd.DataFrame:
    """Table 4 analogue at step 0: perplexity of the original model and, per head budget, of the
    query-norm, random (several seeds) and inverse routers."""
    rows = [{"budget": "9/9", "router": "original", "seed": -1, "active": 1.0, "nll": window_nll(model, ids)}]
    h = heads.Heads(model).n_heads
    for name, (hs, k) in budgets.items():
        for router, seeds in (("query_norm", [0]), ("random", list(random_seeds)), ("inverse", [0])):
            for s in seeds:
                with query_norm_routing(model, hs, k, router, seed=s, ste=False):
                    rows.append(
                        {
                            "budget": name,
                            "router": router,
                            "seed": s if router == "random" else -1,
                            "active": (hs + k) / h,
                            "nll": window_nll(model, ids),
                        }
                    )
    df = pd.DataFrame(rows)
    df["ppl"] = np.exp(df["nll"])
    return df


def continue_tune(
    model,
    train_ids: torch.Tensor,
    eval_ids: torch.Tensor,
    n_shared: int,
    top_k: int,
    steps: int,
    lr: float = 2e-5,
    batch: int = 2,
    eval_at: Sequence[int] = (),
) -> pd.DataFrame:
    """A few steps of continued training of the converted model (query-norm router, binary gates with
    the straight-through gradient; all weights trained, AdamW). Returns eval NLL at ``eval_at`` steps.
    Restores the model's weights at the end."""
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    rows = []
    try:
        with query_norm_routing(model, n_shared, top_k, "query_norm", ste=True):
            for step in range(steps + 1):
                if step in eval_at:
                    model.eval()
                    rows.append(
                        {"step": step, "tokens": step * batch * train_ids.shape[1], "nll": window_nll(model, eval_ids)}
                    )
                if step == steps:
                    break
                model.train()
                i = (step * batch) % len(train_ids)
                x = train_ids[i : i + batch].to(model.device)
                loss = model(input_ids=x, labels=x).loss
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
    finally:
        model.load_state_dict(saved)
        model.eval()
    df = pd.DataFrame(rows)
    df["ppl"] = np.exp(df["nll"])
    return df


# ----------------------------------------------------------------------------------------------
# Speed (Table 7): one attention layer, MHA vs MoH masked vs MoH skipping, same run
# ----------------------------------------------------------------------------------------------


def _timer(device: torch.device):
    if device.type == "cuda":

        def t(fn):
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            fn()
            e.record()
            torch.cuda.synchronize()
            return s.elapsed_time(e) / 1000
    else:

        def t(fn):
            t0 = time.perf_counter()
            fn()
            return time.perf_counter() - t0

    return t


@torch.no_grad()
def speed_benchmark(
    seqs: Sequence[int],
    budgets: dict[str, tuple[int, int]],
    *,
    n_heads: int = 8,
    d_head: int = 64,
    batch: int = 1,
    repeats: int = 7,
    warmup: int = 2,
    device="cpu",
    dtype=torch.float32,
    seed: int = 0,
) -> pd.DataFrame:
    """Forward time of one causal attention layer (RoPE, d = n_heads * d_head): MHA (the dense router:
    fused causal SDPA, no gate) and, per MoH budget ``name -> (h_s, K)``, the masked and the skipping
    implementation with the same weights and routing. Implementations are timed round-robin so that
    machine load hits them alike; the median over ``repeats`` is reported, with tokens/s and the
    ratio to MHA of the same run, plus the analytic FLOPs ratio under perfect skipping."""
    device = torch.device(device)
    timer = _timer(device)
    rows, reps = [], []
    for T in seqs:
        cfg = Config(vocab_size=8, d_model=n_heads * d_head, n_layers=1, n_heads=n_heads, d_head=d_head, max_seq_len=T)
        torch.manual_seed(seed)
        x = torch.randn(batch, T, cfg.d_model, device=device, dtype=dtype)
        cos, sin = (t.to(device, dtype) for t in rope_cache(T, d_head, cfg.rope_theta))
        impls = {}
        mha = MoHAttention(cfg, 0, MoHSpec(router="dense")).to(device, dtype).eval()  # exactly MHA, same kernels
        mha.record = False
        impls[("MHA", "dense")] = mha
        for name, (hs, k) in budgets.items():
            torch.manual_seed(seed)
            m = MoHAttention(cfg, 0, MoHSpec(n_shared=hs, top_k=k)).to(device, dtype).eval()
            m.load_state_dict(mha.state_dict(), strict=False)
            nn.init.normal_(m.wg.weight, 0, 0.02)
            m.record = False
            impls[(name, "masked")] = m
            ms = MoHAttention(cfg, 0, MoHSpec(n_shared=hs, top_k=k, mode="skip")).to(device, dtype).eval()
            ms.load_state_dict(m.state_dict())
            ms.record = False
            impls[(name, "skip")] = ms
        fns = {key: (lambda m=m, x=x, cos=cos, sin=sin: m(x, cos, sin)) for key, m in impls.items()}  # this T's inputs
        for fn in fns.values():
            for _ in range(warmup):
                fn()
        times = {key: [] for key in fns}
        for _ in range(repeats):
            for key, fn in fns.items():
                times[key].append(timer(fn))
        base = float(np.median(times[("MHA", "dense")]))
        reps.extend(
            {"seq": T, "variant": name, "mode": mode, "repeat": r, "seconds": t}
            for (name, mode), ts in times.items()
            for r, t in enumerate(ts)
        )
        for (name, mode), ts in times.items():
            med = float(np.median(ts))
            if name == "MHA":
                active = n_heads
            else:
                hs, k = budgets[name]
                active = hs + k
            fl = layer_flops(cfg.d_model, n_heads, d_head, T, active)
            fl0 = layer_flops(cfg.d_model, n_heads, d_head, T, n_heads)
            rows.append(
                {
                    "seq": T,
                    "variant": name,
                    "mode": mode,
                    "active_heads": active,
                    "activated": active / n_heads,
                    "seconds": med,
                    "tokens_per_s": batch * T / med,
                    "time_vs_mha": med / base,
                    "flops_vs_mha_perfect_skip": sum(fl.values()) / sum(fl0.values()),
                }
            )
    df = pd.DataFrame(rows)
    df.attrs["repeats"] = pd.DataFrame(
        reps
    )  # per-repeat times (round-robin: repeat r of every implementation together)
    return df


# ----------------------------------------------------------------------------------------------
# Per-unit data for the claims (per test image, per validation window, per timing repeat)
# ----------------------------------------------------------------------------------------------


@torch.no_grad()
def vit_correct(model: nn.Module, X: torch.Tensor, y) -> np.ndarray:
    """Per test image: 1 if the model's prediction is right (the units of the accuracy claims)."""
    model.eval()
    return (model(X).argmax(-1).cpu().numpy() == np.asarray(y)).astype(int)


@torch.no_grad()
def window_losses(model: HeadlabLM, dd: DomainData) -> pd.DataFrame:
    """Validation loss (nats/byte) per window: domain, window, val_loss (their per-domain mean is
    ``domain_losses``)."""
    model.eval()
    rows = []
    for t, w in dd.val.items():
        w = w.to(model.device)
        logits = model(w[:, :-1]).logits
        l = F.cross_entropy(logits.flatten(0, 1).float(), w[:, 1:].flatten(), reduction="none").view(len(w), -1).mean(1)
        rows += [{"domain": t, "window": i, "val_loss": float(v)} for i, v in enumerate(l.tolist())]
    return pd.DataFrame(rows)


@torch.no_grad()
def window_nlls(model, ids: torch.Tensor, batch: int = 4) -> np.ndarray:
    """Mean next-token loss (nats) of each window [n, seq]; their mean is ``window_nll``."""
    out = []
    for s in range(0, len(ids), batch):
        x = ids[s : s + batch].to(model.device)
        logits = model(input_ids=x).logits
        l = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), x[:, 1:].flatten(), reduction="none")
        out += l.view(len(x), -1).mean(1).tolist()
    return np.asarray(out)


def conversion_windows(
    model, ids: torch.Tensor, budgets: dict[str, tuple[int, int]], random_seeds=(0, 1, 2)
) -> pd.DataFrame:
    """``conversion_table`` per evaluation window: budget, router, seed, window, nll."""
    rows = []

    def put(budget, router, seed, nll):
        rows.extend(
            {"budget": budget, "router": router, "seed": seed, "window": i, "nll": float(v)} for i, v in enumerate(nll)
        )

    put("9/9", "original", -1, window_nlls(model, ids))
    for name, (hs, k) in budgets.items():
        for router, seeds in (("query_norm", [0]), ("random", list(random_seeds)), ("inverse", [0])):
            for s in seeds:
                with query_norm_routing(model, hs, k, router, seed=s, ste=False):
                    put(name, router, s if router == "random" else -1, window_nlls(model, ids))
    return pd.DataFrame(rows)


def redundancy_units(model: nn.Module, x: torch.Tensor) -> pd.DataFrame:
    """``model_redundancy`` of each unit (test image or window) on its own: unit, pattern_similarity,
    output_cosine, output_abs_cosine (averaged over layers)."""
    return pd.DataFrame([{"unit": i, **model_redundancy(model, [x[i : i + 1]])} for i in range(len(x))])


def routing_units(rec: dict, labels, n_shared: int, scores: bool = False) -> pd.DataFrame:
    """Per unit (image or window) and layer: label, tokens, and ``sel_j`` = tokens that selected
    head j (shared heads: every token). With ``scores``, ``gsum_j`` = the sum of head j's gate over
    the tokens where it is active (last layer only is enough for the score claims)."""
    labels = np.asarray(labels)
    frames = []
    for l, r in sorted(rec.items()):
        m = r["mask"]
        N, T, h = m.shape
        d = pd.DataFrame({"layer": l, "unit": np.arange(N), "label": labels, "tokens": T})
        sel = m.sum(1).numpy()
        for j in range(h):
            d[f"sel_{j}"] = sel[:, j]
        if scores:
            g = (r["gates"] * m).sum(1).numpy()
            for j in range(h):
                d[f"gsum_{j}"] = g[:, j]
        d.attrs["n_shared"] = n_shared
        frames.append(d)
    return pd.concat(frames, ignore_index=True)

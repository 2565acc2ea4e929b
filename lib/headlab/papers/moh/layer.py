"""MoH attention: the spec, the routers, the module (masked, skip and flex modes) and its balance loss."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from headlab.nn import Config, apply_rope, causal_mask

from .flex import flex_forward

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
    mode: str = "masked"  # "masked" | "skip" | "flex" (FlexAttention on compacted queries, .flex)
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
        if self.mode not in ("masked", "skip", "flex"):
            raise ValueError(f"mode must be 'masked', 'skip' or 'flex', not {self.mode!r}")

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
        if self.spec.mode == "flex" and self.spec.router != "dense":
            z = flex_forward(self, x, cos, sin, doc_ids, rt, q_raw)
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
    """Switch every MoH layer between ``masked``, ``skip`` and ``flex`` (same weights, same routing)."""
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

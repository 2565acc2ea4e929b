"""Activated-head fractions, analytic FLOPs, and exact structural checks of the MoH formulation."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

import pandas as pd
import torch
from torch import nn

from headlab.nn import Attention, Config, apply_rope, rope_cache

from .layer import ROUTERS, MoHAttention, MoHSpec, Routing, balance_value, moh_layers, topk_mask

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

"""Exact checks: KV-cache bytes, logit equality, RoPE commutation, and cached decoding."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from ...nn import HeadlabLM, apply_rope
from .fusion import attach_fusion, set_members_identical
from .grouping import Grouping, budget_total, counts, n_source
from .merge import collapse, expand

# --- exact checks ----------------------------------------------------------------------------


def kv_cache_bytes(model: HeadlabLM, bytes_per_value: int = 2) -> int:
    """KV-cache bytes per token read off the built modules (unique K and V heads, as a cache
    that stores each K/V head once would hold them)."""
    return sum(
        (b.self_attn.k_proj.out_features + b.self_attn.v_proj.out_features) * bytes_per_value for b in model.layers
    )


@torch.no_grad()
def max_logit_diff(a: HeadlabLM, b: HeadlabLM, ids: torch.Tensor) -> float:
    return float((a(ids).logits - b(ids).logits).abs().max())


def rope_commutation(d_head: int = 16, T: int = 32, g: int = 4, seed: int = 0, theta: float = 10000.0) -> dict:
    """C4: ``RoPE(sum_j w_j k_j) == sum_j w_j RoPE(k_j)`` for scalar per-head coefficients; a
    per-dimension mixing inside the head (a random ``d x d`` matrix) as the negative control."""
    from ...nn import rope_cache

    gen = torch.Generator().manual_seed(seed)
    k = torch.randn(1, g, T, d_head, generator=gen, dtype=torch.float64)
    w = torch.randn(g, generator=gen, dtype=torch.float64)
    cos, sin = (t.double() for t in rope_cache(T, d_head, theta))
    lhs = apply_rope(torch.einsum("j,bjtd->btd", w, k)[:, None], cos, sin)
    rhs = torch.einsum("j,bjtd->btd", w, apply_rope(k, cos, sin))[:, None]
    M = torch.randn(d_head, d_head, generator=gen, dtype=torch.float64)
    ctrl = (apply_rope(k @ M, cos, sin) - apply_rope(k, cos, sin) @ M).abs().max()
    return {"scalar_fusion": float((lhs - rhs).abs().max()), "within_head_mixing": float(ctrl)}


@torch.no_grad()
def decode(model: HeadlabLM, prompt: torch.Tensor, n_new: int) -> dict:
    """Greedy decoding with a KV cache that stores each layer's *unique* K heads ``[b, n_k, t, d]``
    and V heads ``[b, n_v, t, d]`` (gathered to query heads by ``k_map``/``v_map`` at use).
    Returns the per-step logits, the generated ids, the cache bytes and tokens/s of the new
    tokens."""
    model.eval()
    cfg = model.config
    B = prompt.shape[0]
    cache_k = [None] * cfg.n_layers
    cache_v = [None] * cfg.n_layers
    ids = prompt
    step_logits = []
    dev = model.device

    def step(tok, pos):
        x = model.embed_tokens(tok)  # [b, 1, d_model]
        cos, sin = model.rope_cos[pos : pos + 1], model.rope_sin[pos : pos + 1]
        for l, blk in enumerate(model.layers):
            a = blk.self_attn
            h = blk.input_layernorm(x)
            q = a.q_proj(h).view(B, 1, a.n_heads, a.d_head).transpose(1, 2)
            k = a.k_proj(h).view(B, 1, a.n_k, a.d_head).transpose(1, 2)
            v = a.v_proj(h).view(B, 1, a.n_v, a.d_head).transpose(1, 2)
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
            cache_k[l] = k if cache_k[l] is None else torch.cat([cache_k[l], k], 2)
            cache_v[l] = v if cache_v[l] is None else torch.cat([cache_v[l], v], 2)
            kk = cache_k[l].index_select(1, a.k_map)
            vv = cache_v[l].index_select(1, a.v_map)
            att = ((q @ kk.transpose(-1, -2)) / math.sqrt(a.d_head)).softmax(-1)
            z = (att @ vv).transpose(1, 2).reshape(B, 1, a.n_heads * a.d_head)
            x = x + a.o_proj(z)
            if blk.mlp is not None:
                x = x + blk.mlp(blk.post_attention_layernorm(x))
        return model.lm_head(model.norm(x))[:, 0]

    for t in range(prompt.shape[1]):
        step_logits.append(step(prompt[:, t : t + 1], t))
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for t in range(prompt.shape[1], prompt.shape[1] + n_new):
        nxt = step_logits[-1].argmax(-1, keepdim=True)
        ids = torch.cat([ids, nxt], 1)
        if t < prompt.shape[1] + n_new - 1:
            step_logits.append(step(nxt, t))
    if dev.type == "cuda":
        torch.cuda.synchronize()
    secs = time.perf_counter() - t0
    nbytes = sum(c.numel() * c.element_size() for c in cache_k + cache_v)
    return {
        "ids": ids,
        "logits": torch.stack(step_logits, 1),
        "cache_bytes": nbytes,
        "cache_tokens": cache_k[0].shape[2],
        "tokens_per_s": B * n_new / max(secs, 1e-9),
    }


# --- the notebook's C1-C4 and decoding table -------------------------------------------------


def budget_checks(entries: Sequence[tuple], ids: torch.Tensor) -> pd.DataFrame:
    """C1, one row per model, allocation and budget: K and V heads kept against ``budget_total``, KV-cache bytes
    per token of the collapsed model against ``budget x`` the source's. ``entries``: ``(name, model,
    {(alloc, budget): (k_groups, v_groups)}, decode)``; with ``decode``, the collapsed model also decodes 8 tokens
    after ``ids[:1, :8]`` (``ids``: ``[batch, pos]``) with a cache of its unique heads, and the row says whether the
    cache held exactly the fp32 bytes of its tokens and how far its logits are from the full forward's."""
    rows = []
    for name, model, allocs, check_decode in entries:
        full = kv_cache_bytes(model)
        for (a, b), (kg, vg) in allocs.items():
            m = collapse(model, kg, vg, share=True)
            row = {
                "model": name,
                "budget": round(b, 3),
                "alloc": a,
                "k_heads": sum(counts(kg)),
                "v_heads": sum(counts(vg)),
                "target": budget_total(n_source(model, "k"), b),
                "kv_bytes_per_token": kv_cache_bytes(m),
                "budget_x_source_bytes": b * full,
            }
            if check_decode:  # decode with a cache of the unique heads: real bytes, same logits as the full forward
                dec = decode(m, ids[:1, :8], 8)
                row["decode_cache_bytes_ok"] = dec["cache_bytes"] == kv_cache_bytes(m, 4) * dec["cache_tokens"]
                row["decode_max_abs_diff"] = (m(dec["ids"][:, :-1]).logits - dec["logits"]).abs().max().item()
            rows.append(row)
            del m
    return pd.DataFrame(rows)


def budget_checks_ok(c1: pd.DataFrame, tol: float = 1e-4) -> bool:
    """C1 holds on every row of ``budget_checks``: exact head counts and bytes, exact decode cache, logits within
    ``tol``."""
    return bool(
        ((c1.k_heads == c1.target) & (c1.v_heads == c1.target)).all()
        and np.allclose(c1.kv_bytes_per_token, c1.budget_x_source_bytes, rtol=0, atol=1e-6)
        and c1.decode_cache_bytes_ok.dropna().all()
        and (c1.decode_max_abs_diff.dropna() < tol).all()
    )


def exact_checks(
    source: HeadlabLM, dha_groups: tuple[Grouping, Grouping], gqa_groups: tuple[Grouping, Grouping], ids, d_head, T
) -> dict[str, float]:
    """C2-C4 as max |Δlogit| on ``ids`` ``[batch, pos]``: identity fusion (``dha_groups``) against the source;
    collapsing identical members, DHA and GQA (``gqa_groups``, against its expansion back to MHA); RoPE with a
    scalar fusion and with within-head mixing (the control), at ``d_head`` over ``T`` positions."""
    kg, vg = dha_groups
    fused = copy.deepcopy(source)
    attach_fusion(fused, kg, vg)
    c2 = max_logit_diff(source, fused, ids)
    set_members_identical(fused)
    c3_dha = max_logit_diff(fused, collapse(fused, kg, vg), ids)
    gqa0 = collapse(source, *gqa_groups)
    c3_gqa = max_logit_diff(gqa0, expand(gqa0), ids)  # MHA whose heads are identical within each block
    rope = rope_commutation(d_head=d_head, T=T)
    return {
        "c2_identity_fusion": c2,
        "c3_collapse_dha": c3_dha,
        "c3_collapse_gqa": c3_gqa,
        "c4_rope_scalar": rope["scalar_fusion"],
        "c4_rope_control": rope["within_head_mixing"],
    }


def decode_models(source: HeadlabLM, alloc: dict, budgets: Sequence[float]) -> list[tuple[str, HeadlabLM]]:
    """The models the decoding table times: the MHA ``source``, then per budget its GQA and DHA (first search)
    collapses with shared heads, from ``{(alloc, budget): (k_groups, v_groups, ...)}``."""
    return [("MHA", source)] + [
        (f"{a} {b:.0%}", collapse(source, *alloc[al, b][:2], share=True))
        for b in budgets
        for a, al in (("GQA", "gqa"), ("DHA", "probe"))
    ]


def decode_table(
    source: HeadlabLM, models: Sequence[tuple[str, HeadlabLM]], prompt: torch.Tensor, n_new: int, pairs: int, batch: int
) -> pd.DataFrame:
    """Per ``(name, model)``: KV bytes per token (fp16), the decode cache's measured bytes and tokens and tokens/s
    over ``n_new`` tokens after ``prompt`` ``[batch, pos]``, and decode time over ``source``'s by
    ``headlab.bench.paired`` (A B B A quads; ``source`` against itself shows the noise)."""
    from ...bench import paired  # the harness loads models: imported when a table is measured

    rows = []
    for name, m in models:
        d = decode(m, prompt, n_new)
        r = paired(lambda: decode(source, prompt, n_new), lambda m=m: decode(m, prompt, n_new), pairs)
        rows.append(
            {
                "model": name,
                "kv_bytes_per_token_fp16": kv_cache_bytes(m),
                "cache_bytes_measured": d["cache_bytes"],
                "cache_tokens": d["cache_tokens"],
                "batch": batch,
                "tokens_per_s": d["tokens_per_s"],
                "time_vs_mha": r["median"],
                "ci_low": r["ci_low"],
                "ci_high": r["ci_high"],
                "pairs": pairs,
            }
        )
    return pd.DataFrame(rows)

"""Exact checks: KV-cache bytes, logit equality, RoPE commutation, and cached decoding."""

from __future__ import annotations

import math
import time

import torch

from ...nn import HeadlabLM, apply_rope

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

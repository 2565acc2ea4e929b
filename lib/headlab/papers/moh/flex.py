"""Head-sparse MoH attention with FlexAttention (issue 16): each routed head attends only the queries that
selected it, compacted per head, so a fused block-sparse kernel skips the rest instead of masking it.

Shapes in TransformerLens words: q, k, v ``[batch, head, pos, d_head]``; per-head outputs ``z``
``[batch, pos, head, d_head]`` (what ``o_proj`` receives). Routed head j (global head ``h_s + j``) sees
compacted queries ``[batch, j, slot, d_head]``: slot s is the s-th token, in time order, that selected j,
``pos[b, j, s]`` its original position and ``count[b, j]`` how many slots are real (the rest is padding
up to the busiest (batch, head), ``n = max count``).

* ``flex_routed``: the routed heads on compacted queries, FlexAttention with a ``BlockMask`` that is
  causal on original positions (``kv <= pos[b, h, q]``) and drops padding slots (``q < count[b, h]``).
* ``moh_flex_attention``: MoH attention from full q/k/v and a routing; shared heads run dense causal SDPA
  (flash-eligible), routed heads ``flex_routed``; output gated like the masked mode.
* ``flex_forward``: ``MoHSpec(mode="flex")`` of ``MoHAttention`` (queries projected only where selected).
  ``module.flex_compile`` (True/False; unset: compile on CUDA only) picks the compiled kernel.
* ``dense_decode`` / ``decode_step``: one new token per sequence over a KV cache, all heads or only the
  active heads' K/V.

``compile=True`` uses ``torch.compile(flex_attention)`` (built once per process); ``compile=False`` is
FlexAttention's unfused reference, which materialises the scores. FlexAttention has no backward on CPU
(torch raises); there, with gradients on, ``backend="auto"`` runs the same compacted layout through SDPA with
an explicit mask, so training code runs anywhere.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.nn.attention.flex_attention import BlockMask, create_block_mask, flex_attention

from headlab.nn import apply_rope, causal_mask

_COMPILED_FLEX = None


def _flex_fn(compile: bool):
    """``flex_attention``, or its ``torch.compile``'d version (compiled once, cached for the process)."""
    global _COMPILED_FLEX
    if not compile:
        return flex_attention
    if _COMPILED_FLEX is None:
        _COMPILED_FLEX = torch.compile(flex_attention)
    return _COMPILED_FLEX


def compact(sel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Routing ``sel`` [B, T, E] (bool, token t selected routed head j) -> ``pos`` [B, E, n] (original
    positions in time order, padding 0) and ``count`` [B, E]; n is the busiest head's count."""
    if sel.dtype != torch.bool or sel.dim() != 3:
        raise ValueError(f"sel must be a bool [batch, pos, routed head] tensor, got {sel.dtype} {tuple(sel.shape)}")
    count = sel.sum(1)  # [B, E]
    n = int(count.max()) if sel.numel() else 0
    order = torch.argsort((~sel).to(torch.int8), dim=1, stable=True)[:, :n]  # [B, n, E], selected first
    valid = torch.arange(n, device=sel.device)[None, :, None] < count[:, None, :]
    return order.masked_fill(~valid, 0).transpose(1, 2).contiguous(), count


def moh_block_mask(pos, count, kv_len, *, causal=True, doc_ids=None, block_size=128, build="direct") -> BlockMask:
    """``BlockMask`` [B, E, n, kv_len] of compacted queries: slot q of (b, h) is real iff ``q < count[b, h]``
    and sees key ``kv`` iff ``kv <= pos[b, h, q]`` (causal) and, with ``doc_ids`` [B, T], same document.
    ``build="create"``: ``create_block_mask`` (materialises the [B, E, n, kv_len] mask); ``"direct"`` (default):
    the same blocks from ``pos``/``count`` in O(blocks) (slots are in time order, so a block's first slot has
    its smallest position and its last real slot its largest); with ``doc_ids`` every live block is partial."""
    B, E, n = pos.shape
    bs = block_size
    nq, nk = -(-n // bs), -(-kv_len // bs)
    pos_p = F.pad(pos, (0, nq * bs - n))  # the kernel may call mask_mod up to the block edge
    kdoc = qdoc = None
    if doc_ids is not None:
        kdoc = F.pad(doc_ids, (0, nk * bs - kv_len), value=-1)
        qdoc = doc_ids.gather(1, pos_p.reshape(B, -1)).view(B, E, -1)

    def mask_mod(b, h, q_idx, kv_idx):
        ok = q_idx < count[b, h]
        if causal:
            ok = ok & (kv_idx <= pos_p[b, h, q_idx])
        if kdoc is not None:
            ok = ok & (kdoc[b, kv_idx] == qdoc[b, h, q_idx])
        return ok

    if build == "create":
        return create_block_mask(mask_mod, B, E, n, kv_len, device=pos.device, BLOCK_SIZE=bs)
    if build != "direct":
        raise ValueError(f"build must be 'direct' or 'create', not {build!r}")
    i, j = torch.arange(nq, device=pos.device), torch.arange(nk, device=pos.device)
    cnt = count[..., None]  # [B, E, 1]
    any_row, all_rows = (i * bs < cnt)[..., None], ((i + 1) * bs <= cnt)[..., None]  # [B, E, nq, 1]
    if causal:
        lo = pos_p[..., i * bs]  # [B, E, nq]
        hi = pos_p.gather(-1, (torch.minimum((i + 1) * bs, cnt) - 1).clamp_min(0))
        some = any_row & (j * bs <= hi[..., None])  # [B, E, nq, nk]
        full = all_rows & ((j + 1) * bs - 1 <= lo[..., None]) & ((j + 1) * bs <= kv_len)
    else:
        some = any_row.expand(B, E, nq, nk)
        full = all_rows & ((j + 1) * bs <= kv_len)
    if doc_ids is not None:
        full = torch.zeros_like(full)  # the document test needs mask_mod in every block

    def ordered(m):  # per row: number of blocks and their indices, listed first
        return m.sum(-1, dtype=torch.int32), torch.argsort((~m).to(torch.int8), dim=-1, stable=True).to(torch.int32)

    return BlockMask.from_kv_blocks(
        *ordered(some & ~full), *ordered(full), BLOCK_SIZE=bs, mask_mod=mask_mod, seq_lengths=(n, kv_len)
    )


def flex_routed(
    qr, pos, count, k, v, *, causal=True, doc_ids=None, compile=False, backend="auto", build="direct", block_size=128
) -> torch.Tensor:
    """Routed heads on compacted queries ``qr`` [B, E, n, d_head] (RoPE at the original positions) over full
    ``k``, ``v`` [B, E or E/g, T, d_head] (fewer heads: GQA). Returns [B, E, n, d_head], 0 on padding slots.
    ``backend``: "flex", "sdpa" (explicit [B, E, n, T] mask, autograd on CPU) or "auto" (sdpa only when
    FlexAttention cannot: CPU with gradients)."""
    B, E, n, _ = qr.shape
    T, gqa = k.shape[2], k.shape[1] != E
    if backend == "auto":
        grad = torch.is_grad_enabled() and any(t.requires_grad for t in (qr, k, v))
        backend = "sdpa" if grad and qr.device.type == "cpu" else "flex"
    if backend == "flex":
        bm = moh_block_mask(pos, count, T, causal=causal, doc_ids=doc_ids, block_size=block_size, build=build)
        return _flex_fn(compile)(qr, k, v, block_mask=bm, enable_gqa=gqa)
    if backend != "sdpa":
        raise ValueError(f"backend must be 'auto', 'flex' or 'sdpa', not {backend!r}")
    valid = torch.arange(n, device=qr.device) < count[..., None]  # [B, E, n]
    am = torch.ones(B, E, n, T, dtype=torch.bool, device=qr.device)
    if causal:
        am = am & (torch.arange(T, device=qr.device) <= pos[..., None])
    if doc_ids is not None:
        am = am & (doc_ids.gather(1, pos.reshape(B, -1)).view(B, E, n, 1) == doc_ids[:, None, None, :])
    am = am | ~valid[..., None]  # padding slots see every key (no all -inf row), then are zeroed
    o = F.scaled_dot_product_attention(qr, k, v, attn_mask=am, enable_gqa=gqa)
    return o * valid[..., None].to(o.dtype)


def scatter_routed(o, pos, count, T, gates=None) -> torch.Tensor:
    """Compacted outputs ``o`` [B, E, n, d_head] back to ``z`` [B, T, E, d_head], times ``gates`` [B, T, E]
    if given; 0 for (token, head) pairs that are off."""
    B, E, n, dh = o.shape
    w = (torch.arange(n, device=o.device) < count[..., None]).to(o.dtype)  # [B, E, n]
    if gates is not None:
        w = w * gates.transpose(1, 2).gather(2, pos).to(o.dtype)
    z = o.new_zeros(B, E, T, dh).scatter_add(2, pos[..., None].expand(B, E, n, dh), o * w[..., None])
    return z.transpose(1, 2)


def _kv_pair(k, v, kmap, vmap):
    """K, V [B, H_kv, T, d_head] for query heads with K/V heads ``kmap``/``vmap`` (lists): zero-copy slices
    (GQA flag set) when both are the same contiguous grouping, else per-head copies."""

    def group(m):
        n, w = len(m), m[-1] - m[0] + 1
        return w if n % w == 0 and m == [m[0] + i // (n // w) for i in range(n)] else None

    w = group(kmap)
    if w is not None and kmap == vmap:
        return k[:, kmap[0] : kmap[0] + w], v[:, kmap[0] : kmap[0] + w], w < len(kmap)
    return k[:, kmap], v[:, vmap], False


def _dense(q, k, v, gqa, causal, doc_ids):
    """Dense SDPA over q [B, H, T, d_head] (the fused causal kernel when there are no documents)."""
    if doc_ids is None:
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=gqa)
    m = causal_mask(q.shape[2], doc_ids, q.device) if causal else doc_ids[:, None, :, None] == doc_ids[:, None, None, :]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=m, enable_gqa=gqa)


def moh_flex_attention(q, k, v, sel, *, n_shared, gates=None, kv_map=None, causal=True, doc_ids=None, **kw):
    """MoH attention core: ``q`` [B, H, T, d_head], ``k``/``v`` [B, H_kv, T, d_head] (after RoPE), ``sel``
    [B, T, H - n_shared] routed selections, ``gates`` [B, T, H] (None: 1). ``kv_map`` [H]: query head -> K/V
    head (default GQA ``h // (H / H_kv)``). Returns ``z`` [B, T, H, d_head] (0 where a routed head is off);
    ``kw`` go to ``flex_routed`` (compile, backend, build, block_size)."""
    B, H, T, dh = q.shape
    hs = n_shared
    if sel.shape != (B, T, H - hs) or not 0 <= hs <= H:
        raise ValueError(f"sel must be [batch, pos, n_heads - n_shared] = {(B, T, H - hs)}, got {tuple(sel.shape)}")
    kv_map = kv_map if kv_map is not None else [h // (H // k.shape[1]) for h in range(H)]
    parts = []
    if hs:
        zs = _dense(q[:, :hs], *_kv_pair(k, v, kv_map[:hs], kv_map[:hs]), causal, doc_ids)
        zs = zs.transpose(1, 2)
        parts.append(zs if gates is None else zs * gates[..., :hs, None].to(zs.dtype))
    if hs < H:
        pos, count = compact(sel)
        n = pos.shape[-1]
        qr = q[:, hs:].gather(2, pos[..., None].expand(B, H - hs, n, dh))  # [B, E, n, dh]
        kr, vr, _ = _kv_pair(k, v, kv_map[hs:], kv_map[hs:])
        o = flex_routed(qr, pos, count, kr, vr, causal=causal, doc_ids=doc_ids, **kw)
        parts.append(scatter_routed(o, pos, count, T, None if gates is None else gates[..., hs:]))
    return torch.cat(parts, 2)


def flex_forward(m, x, cos, sin, doc_ids, rt, q_raw) -> torch.Tensor:
    """``MoHAttention`` in flex mode: per-head outputs ``z`` [B, T, h, d_head] (gated, for ``o_proj``). Like
    skip mode, routed queries are projected only for the tokens that selected the head (``q_raw`` when the
    router already needed every query)."""
    B, T, d = x.shape
    hs, E, dh = m.h_s, m.E, m.d_head
    k = m.k_proj(x).view(B, T, m.n_k, dh).transpose(1, 2)  # [B, n_k, T, dh]: GQA heads not copied
    v = m.v_proj(x).view(B, T, m.n_v, dh).transpose(1, 2)
    if cos is not None:
        k = apply_rope(k, cos, sin)
    kmap, vmap = m.k_map.tolist(), m.v_map.tolist()
    comp = getattr(m, "flex_compile", None)
    comp = x.device.type == "cuda" if comp is None else comp
    W, parts = m.q_proj.weight, []  # W [h*dh, d]
    if hs:
        qs = q_raw[:, :, :hs] if q_raw is not None else F.linear(x, W[: hs * dh]).view(B, T, hs, dh)
        qs = qs.transpose(1, 2)
        if cos is not None:
            qs = apply_rope(qs, cos, sin)
        zs = _dense(qs, *_kv_pair(k, v, kmap[:hs], vmap[:hs]), m.spec.causal, doc_ids).transpose(1, 2)
        parts.append(zs * rt.gates[..., :hs, None].to(zs.dtype))
    pos, count = compact(rt.mask[..., hs:])
    n = pos.shape[-1]
    if n == 0:
        parts.append(x.new_zeros(B, T, E, dh))
        return torch.cat(parts, 2)
    if q_raw is not None:
        qr = q_raw[:, :, hs:].transpose(1, 2).gather(2, pos[..., None].expand(B, E, n, dh))
    else:
        flat = (pos + torch.arange(B, device=x.device)[:, None, None] * T).reshape(-1)
        xs = x.reshape(B * T, d).index_select(0, flat).view(B, E, n, d)
        qr = torch.einsum("bend,ekd->benk", xs, W[hs * dh :].view(E, dh, d))  # [B, E, n, dh]
    if cos is not None:
        qr = apply_rope(qr, cos[pos], sin[pos])
    kr, vr, _ = _kv_pair(k, v, kmap[hs:], vmap[hs:])
    o = flex_routed(qr, pos, count, kr, vr, causal=m.spec.causal, doc_ids=doc_ids, compile=comp)
    parts.append(scatter_routed(o, pos, count, T, rt.gates[..., hs:]))
    return torch.cat(parts, 2)


def dense_decode(q, k_cache, v_cache) -> torch.Tensor:
    """One new token per sequence over every head: ``q`` [B, H, d_head], caches [B, H_kv, L, d_head]
    (the new token's K/V last) -> ``z`` [B, H, d_head]."""
    gqa = k_cache.shape[1] != q.shape[1]
    return F.scaled_dot_product_attention(q[:, :, None], k_cache, v_cache, enable_gqa=gqa)[:, :, 0]


def decode_step(q, k_cache, v_cache, routed, *, n_shared, method="gather", compile=False) -> torch.Tensor:
    """One new token per sequence reading K/V only for its active heads: shared heads 0..h_s-1 and
    ``routed`` [B, K] (indices into the E routed heads). ``method="gather"``: shared heads through a
    zero-copy slice, the K routed heads' caches gathered to [B, K, L, d_head], then SDPA; ``"flex"``: one
    FlexAttention call whose ``BlockMask`` has no KV block for inactive heads (nothing copied; the fused
    kernel never reads them, the eager reference computes and masks them). GQA: K/V head ``h // (H/H_kv)``.
    Returns ``z`` [B, H, d_head], ungated, 0 for inactive heads. ``routed``'s range is checked on CPU only."""
    B, H, dh = q.shape
    Hkv, L = k_cache.shape[1], k_cache.shape[2]
    g, hs = H // Hkv, n_shared
    bad = routed.dim() != 2 or routed.shape[0] != B
    if not bad and routed.numel() and routed.device.type == "cpu":  # values: no host sync on accelerators
        bad = not 0 <= int(routed.min()) <= int(routed.max()) < H - hs
    if bad:
        raise ValueError(f"routed must be [batch, K] indices in 0..{H - hs - 1}, got shape {tuple(routed.shape)}")
    if method == "flex":
        on = torch.zeros(B, H, dtype=torch.bool, device=q.device)
        on[:, :hs] = True
        on.scatter_(1, routed + hs, True)
        nk = -(-L // 128)
        idx = torch.arange(nk, dtype=torch.int32, device=q.device).expand(B, H, 1, nk).contiguous()
        bm = BlockMask.from_kv_blocks(
            (on.int() * nk)[..., None], idx, mask_mod=lambda b, h, q_idx, kv_idx: on[b, h], seq_lengths=(1, L)
        )
        return _flex_fn(compile)(q[:, :, None], k_cache, v_cache, block_mask=bm, enable_gqa=g > 1)[:, :, 0]
    if method != "gather":
        raise ValueError(f"method must be 'gather' or 'flex', not {method!r}")
    z = q.new_zeros(B, H, dh)
    if hs:
        ks, vs, gqa = _kv_pair(k_cache, v_cache, [h // g for h in range(hs)], [h // g for h in range(hs)])
        z[:, :hs] = F.scaled_dot_product_attention(q[:, :hs, None], ks, vs, enable_gqa=gqa)[:, :, 0]
    heads = routed + hs  # [B, K] query heads
    kv_idx = (heads // g)[..., None, None].expand(-1, -1, L, dh)
    kr, vr = k_cache.gather(1, kv_idx), v_cache.gather(1, kv_idx)  # [B, K, L, dh]
    zr = dense_decode(q.gather(1, heads[..., None].expand(-1, -1, dh)), kr, vr)
    return z.scatter(1, heads[..., None].expand(-1, -1, dh), zr)

"""Collapsing fused groups into fewer KV heads, expanding back, and rank-1 fusion of activations."""

from __future__ import annotations

import copy
import itertools

import torch

from ...nn import Config, HeadlabLM
from .grouping import Grouping, layer_heads_of, src_maps

# --- collapse --------------------------------------------------------------------------------


def _heads_view(w: torch.Tensor, n: int) -> torch.Tensor:
    return w.view(n, w.shape[0] // n, w.shape[1])  # [head, d_head, d_model]


@torch.no_grad()
def collapse(
    model: HeadlabLM,
    k_groups: Grouping,
    v_groups: Grouping,
    k_coef=None,
    v_coef=None,
    k_scale=None,
    v_scale=None,
    share: bool = False,
) -> HeadlabLM:
    """The DHA model with one K head per K group and one V head per V group.

    The collapsed head of group G is ``sum_{j in G} coef[j] W_j`` (``coef`` per layer and source
    head; default ``1/|G|``, the mean, which is GQA's mean-pool when G is a GQA block and exact
    when the members are identical). With ``share=True`` the unchanged tensors are shared with
    ``model`` instead of copied (for evaluation only: training either would change both).
    ``k_scale[l][s]`` multiplies the W_Q rows of every query
    head that read source K head ``s``; ``v_scale`` the W_O columns of query heads that read
    source V head ``s`` (exact reparametrisations used by ``rank1_fusion``). Reads the
    *current* K/V weights, so a model with fusion attached collapses its fused heads.
    """
    cfg = copy.deepcopy(model.config)
    maps = layer_heads_of(model, k_groups, v_groups)
    cfg.layer_heads, cfg.n_kv_heads = maps, cfg.n_heads
    sd = {}
    for name, p in itertools.chain(model.named_parameters(), model.named_buffers()):
        if "parametrizations" not in name and name not in ("rope_cos", "rope_sin"):
            sd[name] = p.detach() if share else p.detach().clone()
    d = cfg.d_head
    for l, src in enumerate(model.layers):
        a = src.self_attn
        pre = f"layers.{l}.self_attn."
        for kind, groups, coef in (("k", k_groups, k_coef), ("v", v_groups, v_coef)):
            W = _heads_view(getattr(a, f"{kind}_proj").weight.detach(), sum(len(g) for g in groups[l]))
            out = []
            for g in groups[l]:
                c = torch.tensor(
                    [coef[l][j] for j in g] if coef is not None else [1.0 / len(g)] * len(g),
                    dtype=W.dtype,
                    device=W.device,
                )
                out.append(torch.einsum("j,jdm->dm", c, W[g]))
            sd[pre + f"{kind}_proj.weight"] = torch.cat(out)
        km, vm = src_maps(model, "k")[l], src_maps(model, "v")[l]
        if share and k_scale is not None:
            sd[pre + "q_proj.weight"] = sd[pre + "q_proj.weight"].clone()
        if share and v_scale is not None:
            sd[pre + "o_proj.weight"] = sd[pre + "o_proj.weight"].clone()
        if k_scale is not None:
            for h in range(cfg.n_heads):
                sd[pre + "q_proj.weight"][h * d : (h + 1) * d] *= float(k_scale[l][km[h]])
        if v_scale is not None:
            for h in range(cfg.n_heads):
                sd[pre + "o_proj.weight"][:, h * d : (h + 1) * d] *= float(v_scale[l][vm[h]])
    return build(cfg, sd, model.device)


@torch.no_grad()
def expand(model: HeadlabLM) -> HeadlabLM:
    """The MHA model in which query head h has its own copy of the K and V head it reads
    (the inverse view of a collapse: equal to ``model`` whatever its head maps)."""
    cfg = copy.deepcopy(model.config)
    cfg.layer_heads, cfg.n_kv_heads = None, cfg.n_heads
    sd = {n: p.detach().clone() for n, p in model.named_parameters() if "parametrizations" not in n}
    for l, blk in enumerate(model.layers):
        a = blk.self_attn
        for kind in ("k", "v"):
            lin = getattr(a, f"{kind}_proj")
            W = _heads_view(lin.weight.detach(), lin.out_features // cfg.d_head)
            sd[f"layers.{l}.self_attn.{kind}_proj.weight"] = (
                W[getattr(a, f"{kind}_map")].reshape(-1, W.shape[-1]).clone()
            )
    return build(cfg, sd, model.device)


def build(cfg: Config, state: dict, device) -> HeadlabLM:
    """A ``HeadlabLM`` of ``cfg`` holding the tensors of ``state`` (no random initialisation:
    built on the meta device, then the tensors are assigned; RoPE tables and head maps are
    recomputed)."""
    from ...nn import rope_cache

    with torch.device("meta"):
        model = HeadlabLM(cfg)
    state = dict(state)
    if cfg.tie_embeddings:
        state.pop("lm_head.weight", None)
    model.load_state_dict(state, strict=False, assign=True)
    if cfg.tie_embeddings:
        model.lm_head.weight = model.embed_tokens.weight
    if cfg.pos_emb == "rope":
        model.rope_cos, model.rope_sin = rope_cache(cfg.max_seq_len, cfg.d_head, cfg.rope_theta, device=device)
    for l, blk in enumerate(model.layers):
        lh = cfg.heads_of(l)
        blk.self_attn.k_map = torch.tensor(lh.k_map, device=device)
        blk.self_attn.v_map = torch.tensor(lh.v_map, device=device)
    missing = [n for n, p in itertools.chain(model.named_parameters(), model.named_buffers()) if p.is_meta]
    if missing:
        raise ValueError(f"no tensor for {missing[:5]}")
    return model.to(device).eval()


def rank1_fusion(acts: torch.Tensor, groups: list[list[int]]) -> tuple[list[float], list[float]]:
    """Training-free fusion of one layer [R]: for each group, the best fit of every member's
    activations ``Y_i`` by ``a_i * sum_j w_j Y_j`` (top singular vector ``u`` of the stacked
    members: ``w = a = u``). Scalar per-head coefficients, so it commutes with RoPE. Returns
    per-source-head ``(coef, scale)`` for ``collapse``."""
    n = acts.shape[0]
    coef, scale = [0.0] * n, [1.0] * n
    for g in groups:
        M = acts[g].reshape(len(g), -1).double()
        u = torch.linalg.svd(M, full_matrices=False).U[:, 0]
        u = u if u.sum() >= 0 else -u
        for j, i in enumerate(g):
            coef[i], scale[i] = float(u[j]), float(u[j])
    return coef, scale

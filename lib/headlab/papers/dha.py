"""DHA: decoupled-head attention learned from an MHA checkpoint by adaptive head fusion
(Chen et al., NeurIPS 2024, arXiv 2406.06567).

The paper's body was only partly readable; what is marked [R] below is a documented
reconstruction, not the paper's equations.

A *source* is a headlab model (MHA, or GQA such as SmolLM2 converted with ``from_hf_llama``).
Each layer has ``n`` source K heads and ``n`` source V heads (``n = n_kv_heads``); query head
``h`` reads source head ``src_map[h]``. A *grouping* is, per layer, a partition of the source
heads (``[[0, 3], [1], [2, 4, 5], ...]``), chosen separately for K and for V. Collapsing a
grouping gives one K (V) head per group and the per-layer maps
``k_map[h] = group_of[src_k_map[h]]`` that ``headlab.nn.Config(layer_heads=...)`` runs.

Pieces, in the order a notebook uses them:

* data and evaluation: ``byte_splits`` (every text type has its own 5 % validation tail),
  ``fixed_batches``, ``lm_eval`` (loss and next-token accuracy), ``pretrain_source``.
* search: ``head_activations`` (q/k/v projection outputs per head, before RoPE),
  ``cka_matrix`` / ``head_cka`` (linear CKA with centred columns, K and V separately),
  ``agglomerate`` (average-linkage merges inside one layer), ``global_agglomerate``
  (DHA-lite: the globally most similar pair of groups in any layer is merged until the budget
  is met, so the per-layer counts come out non-uniform), ``uniform_groups``,
  ``contiguous_groups`` (GQA), ``tied_uniform_groups`` (GQA with CKA grouping, Table A7) and
  ``probe_allocation`` (the loss-driven search used by full DHA [R]: forward-only probes
  measure the loss of pooling one layer's K or V heads to every count, and a greedy
  marginal-gain rule spends the budget where it buys most loss).
* fusion [R]: ``attach_fusion`` puts a learnable operator ``omega`` (``n x n``, masked to
  within-group entries, identity at initialisation) on every layer's ``k_proj`` and
  ``v_proj`` as a ``torch.nn.utils.parametrize`` parametrization, so that the fused head is
  ``W_i' = sum_j omega[i, j] W_j``; ``fusion_loss`` is the normalised squared distance of the
  fused heads to their group mean; ``run_fusion`` trains LM loss + ramped lambda * fusion loss
  (omega in its own AdamW group: larger lr, no weight decay).
* ``collapse``: one head per group (coefficient-weighted sum of the members; the mean by
  default), optional per-member scales folded into W_Q rows (K) or W_O columns (V); exact when
  the members are identical.
* ``rank1_fusion``: a training-free, layer-local fusion (best rank-1 fit of a group's
  activations; coefficients and scales from the top singular vector). Used on SmolLM2.
* arms: ``Arm`` + ``run_arm`` (search, fusion, collapse, continued pre-training, with every
  search and fusion token charged to the arm's budget) and ``acceleration``.
* exact checks: ``kv_cache_bytes``, ``max_logit_diff``, ``rope_commutation``, ``decode``
  (incremental decoding with a cache of the unique K/V heads: real cache bytes and tokens/s).
* ``from_hf_llama``: a llama checkpoint (SmolLM2, Sheared-LLaMA) as a headlab model.
"""

from __future__ import annotations

import copy
import itertools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from .. import data as hd
from ..nn import Config, HeadlabLM, LayerHeads, apply_rope
from ..train import TrainConfig, lr_at, train

Grouping = list[list[list[int]]]  # [layer][group] -> source head indices


# --- data and evaluation ---------------------------------------------------------------------


def byte_splits(types=None, val_fraction: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Byte tokens of the shipped corpus, split per text type (the tail ``val_fraction`` of each
    type is validation), so that the validation set covers every type, not just the last one."""
    tr, va = [], []
    for t in types or hd.text_types():
        toks, _ = hd.corpus_tokens([t])
        a, b = hd.split_tokens(toks, val_fraction)
        tr.append(a)
        va.append(b)
    return np.concatenate(tr), np.concatenate(va)


def fixed_batches(tokens: np.ndarray, n: int, batch: int, seq: int, seed: int, device="cpu") -> list:
    b = hd.Batches(tokens, batch, seq, seed=seed, device=device)
    return [b(i) for i in range(n)]


@torch.no_grad()
def lm_eval(model, batches) -> dict:
    """Mean next-token loss (nats/token) and next-token accuracy over fixed ``(x, y)`` batches."""
    was = model.training
    model.eval()
    loss = acc = n = 0.0
    for x, y in batches:
        logits = model(x).logits.float()
        k = y.numel()
        loss += F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum").item()
        acc += (logits.argmax(-1) == y).sum().item()
        n += k
    model.train(was)
    return {"loss": loss / n, "acc": acc / n}


def pretrain_source(
    cfg: Config,
    train_toks,
    steps: int,
    batch: int,
    seq: int,
    lr: float,
    seed: int,
    eval_batches=None,
    device="cpu",
    warmup: int = 20,
    desc="pretrain MHA",
):
    """Train a headlab model from scratch (the MHA checkpoint DHA starts from)."""
    torch.manual_seed(seed)
    model = HeadlabLM(cfg).to(device)
    tc = TrainConfig(steps=steps, lr=lr, warmup=warmup, eval_every=max(steps // 5, 1), seed=seed)
    ev = (lambda m: {"val_loss": lm_eval(m, eval_batches)["loss"]}) if eval_batches else None
    log = train(model, hd.Batches(train_toks, batch, seq, seed=seed, device=device), tc, eval_fn=ev, desc=desc)
    return model.eval(), log


# --- structure helpers -----------------------------------------------------------------------


def src_maps(model: HeadlabLM, kind: str) -> list[list[int]]:
    """Per layer, query head -> source K (``kind="k"``) or V head."""
    cfg = model.config
    return [list(getattr(cfg.heads_of(l), f"{kind}_map")) for l in range(cfg.n_layers)]


def n_source(model: HeadlabLM, kind: str) -> list[int]:
    return [max(m) + 1 for m in src_maps(model, kind)]


def counts(groups: Grouping) -> list[int]:
    return [len(g) for g in groups]


def canonical(groups_of_layer) -> list[list[int]]:
    """Sorted members, groups ordered by their first member (deterministic head ids)."""
    return sorted([sorted(int(i) for i in g) for g in groups_of_layer], key=lambda g: g[0])


def group_index(groups_of_layer, n: int) -> list[int]:
    gid = [-1] * n
    for j, g in enumerate(groups_of_layer):
        for i in g:
            gid[i] = j
    if min(gid) < 0:
        raise ValueError(f"grouping {groups_of_layer} does not cover all {n} source heads")
    return gid


def identity_groups(n_per_layer: Sequence[int]) -> Grouping:
    return [[[i] for i in range(n)] for n in n_per_layer]


def layer_heads_of(model: HeadlabLM, k_groups: Grouping, v_groups: Grouping) -> list[LayerHeads]:
    """The collapsed model's per-layer query->K and query->V maps."""
    out = []
    for l, (km, vm) in enumerate(zip(src_maps(model, "k"), src_maps(model, "v"), strict=True)):
        gk = group_index(k_groups[l], max(km) + 1)
        gv = group_index(v_groups[l], max(vm) + 1)
        out.append(LayerHeads([gk[s] for s in km], [gv[s] for s in vm]))
    return out


def budget_total(n_per_layer: Sequence[int], budget: float) -> int:
    """Number of heads of one kind (K or V) kept at ``budget`` (a fraction of the source's)."""
    tot = budget * sum(n_per_layer)
    if abs(tot - round(tot)) > 1e-9:
        raise ValueError(f"budget {budget} of {sum(n_per_layer)} heads is not a whole number")
    return int(round(tot))


# --- activations and CKA ---------------------------------------------------------------------


@torch.no_grad()
def head_activations(model: HeadlabLM, ids: torch.Tensor, kinds=("q", "k", "v")) -> dict:
    """Per layer, the q/k/v projection outputs per head (before RoPE), ``[head, tokens, d_head]``."""
    acts = {k: {} for k in kinds}
    handles = []
    d = model.config.d_head
    for l, block in enumerate(model.layers):
        for k in kinds:

            def hook(_m, _i, out, l=l, k=k):
                acts[k][l] = out.detach().reshape(-1, out.shape[-1] // d, d).transpose(0, 1).float().cpu()

            handles.append(getattr(block.self_attn, f"{k}_proj").register_forward_hook(hook))
    try:
        model.eval()
        model(ids)
    finally:
        for h in handles:
            h.remove()
    return {k: [acts[k][l] for l in range(len(model.layers))] for k in kinds}


def linear_cka(X: torch.Tensor, Y: torch.Tensor) -> float:
    """Linear CKA of two activation matrices ``[tokens, features]`` (columns centred)."""
    X = X.double() - X.double().mean(0)
    Y = Y.double() - Y.double().mean(0)
    num = (X.T @ Y).pow(2).sum()
    return float(num / ((X.T @ X).norm() * (Y.T @ Y).norm()))


def cka_matrix(acts: torch.Tensor) -> np.ndarray:
    """Pairwise linear CKA of ``n`` heads' activations ``[n, tokens, d]`` -> ``[n, n]``."""
    n, N, d = acts.shape
    A = acts.double() - acts.double().mean(1, keepdim=True)
    A = A.transpose(0, 1).reshape(N, n * d)
    C = (A.T @ A).view(n, d, n, d).permute(0, 2, 1, 3)  # [n, n, d, d] = X_i^T X_j
    fro2 = C.pow(2).sum((-1, -2))  # ||X_i^T X_j||_F^2
    diag = fro2.diagonal().sqrt()
    return (fro2 / (diag[:, None] * diag[None, :])).numpy()


def head_cka(acts: dict) -> dict:
    """``{kind: [layer] -> [n, n] CKA]}`` from ``head_activations``."""
    return {k: [cka_matrix(a) for a in v] for k, v in acts.items()}


def cross_layer_cka(acts_kind: list[torch.Tensor]) -> list[float]:
    """Baseline for 'redundancy': mean CKA between each head of layer l and each head of layer
    l+1 (heads that are certainly not duplicates of each other)."""
    out = []
    for a, b in itertools.pairwise(acts_kind):
        both = torch.cat([a, b])
        m = cka_matrix(both)
        out.append(float(m[: len(a), len(a) :].mean()))
    return out


def redundancy(sim: np.ndarray) -> float:
    """Mean off-diagonal similarity of one layer's heads."""
    n = len(sim)
    return float((sim.sum() - np.trace(sim)) / (n * (n - 1))) if n > 1 else float("nan")


# --- Fig. 3a: pulling a group of heads toward its mean ---------------------------------------


def extreme_groups(sims: Sequence[np.ndarray], size: int = 4) -> dict:
    """The layer whose ``size``-head subsets differ most in mean pairwise similarity, with its
    most and least similar subsets: ``{"layer", "most", "most_sim", "least", "least_sim"}``."""
    best = None
    for l, s in enumerate(sims):
        scored = [
            (float(np.mean([s[i, j] for i, j in itertools.combinations(g, 2)])), list(g))
            for g in itertools.combinations(range(len(s)), size)
        ]
        hi, lo = max(scored), min(scored)
        if best is None or hi[0] - lo[0] > best[0]:
            best = (hi[0] - lo[0], {"layer": l, "most": hi[1], "most_sim": hi[0], "least": lo[1], "least_sim": lo[0]})
    return best[1]


@torch.no_grad()
def interpolate_to_mean(model: HeadlabLM, layer: int, kind: str, heads: Sequence[int], alpha: float) -> HeadlabLM:
    """A copy of ``model`` whose ``kind`` ("k" or "v") heads ``heads`` in ``layer`` are
    ``(1 - alpha) W_i + alpha * mean_j W_j`` (alpha = 1: fully fused, i.e. mean-pooled)."""
    m = copy.deepcopy(model)
    lin = getattr(m.layers[layer].self_attn, f"{kind}_proj")
    W = _heads_view(lin.weight, lin.out_features // m.config.d_head)
    idx = list(heads)
    mean = W[idx].mean(0, keepdim=True)
    W[idx] = (1 - alpha) * W[idx] + alpha * mean
    return m


# --- grouping --------------------------------------------------------------------------------


def _linkage(sim: np.ndarray, a: list[int], b: list[int]) -> float:
    return float(sim[np.ix_(a, b)].mean())


def agglomerate(sim: np.ndarray, n_groups: int, max_size: int | None = None) -> list[list[int]]:
    """Average-linkage agglomerative grouping of one layer's heads down to ``n_groups``."""
    groups = [[i] for i in range(len(sim))]
    while len(groups) > n_groups:
        best = None
        for i, j in itertools.combinations(range(len(groups)), 2):
            if max_size and len(groups[i]) + len(groups[j]) > max_size:
                continue
            s = _linkage(sim, groups[i], groups[j])
            if best is None or s > best[0]:
                best = (s, i, j)
        if best is None:
            raise ValueError("max_size makes the requested number of groups impossible")
        _, i, j = best
        groups[i] = groups[i] + groups[j]
        del groups[j]
    return canonical(groups)


def hierarchy(sim: np.ndarray) -> dict[int, list[list[int]]]:
    """Nested average-linkage groupings of one layer for every count 1..n."""
    groups = [[i] for i in range(len(sim))]
    out = {len(groups): canonical(groups)}
    while len(groups) > 1:
        _, i, j = max(
            (_linkage(sim, groups[i], groups[j]), i, j) for i, j in itertools.combinations(range(len(groups)), 2)
        )
        groups[i] = groups[i] + groups[j]
        del groups[j]
        out[len(groups)] = canonical(groups)
    return out


def global_agglomerate(sims: Sequence[np.ndarray], total: int, min_per_layer: int = 1) -> Grouping:
    """DHA-lite allocation: merge the most similar pair of groups in *any* layer (average-linkage
    CKA) until ``total`` groups remain over all layers."""
    groups = [[[i] for i in range(len(s))] for s in sims]
    while sum(len(g) for g in groups) > total:
        best = None
        for l, (s, gl) in enumerate(zip(sims, groups, strict=True)):
            if len(gl) <= min_per_layer:
                continue
            for i, j in itertools.combinations(range(len(gl)), 2):
                v = _linkage(s, gl[i], gl[j])
                if best is None or v > best[0]:
                    best = (v, l, i, j)
        if best is None:
            raise ValueError(f"cannot reach {total} groups with min_per_layer={min_per_layer}")
        _, l, i, j = best
        groups[l][i] = groups[l][i] + groups[l][j]
        del groups[l][j]
    return [canonical(g) for g in groups]


def uniform_groups(sims: Sequence[np.ndarray], per_layer: int) -> Grouping:
    """The same number of groups in every layer, members chosen by CKA."""
    return [agglomerate(s, per_layer) for s in sims]


def contiguous_groups(n_per_layer: Sequence[int], per_layer: int) -> Grouping:
    """GQA: contiguous blocks of source heads (HF ``repeat_kv`` layout); the last block takes the
    remainder when ``n`` is not a multiple of ``per_layer``."""
    out = []
    for n in n_per_layer:
        size = math.ceil(n / per_layer)
        out.append([list(range(i, min(i + size, n))) for i in range(0, n, size)])
        if len(out[-1]) != per_layer:
            raise ValueError(f"{n} heads cannot form {per_layer} contiguous blocks")
    return out


def tied_uniform_groups(sims_k: Sequence[np.ndarray], sims_v: Sequence[np.ndarray], per_layer: int) -> Grouping:
    """GQA with CKA-based grouping (Table A7): uniform counts, one grouping shared by K and V,
    chosen on the mean of the K and V CKA matrices."""
    return [agglomerate((a + b) / 2, per_layer) for a, b in zip(sims_k, sims_v, strict=True)]


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
    from ..nn import rope_cache

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
    from ..train import progress_bar

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


# --- arms: search + fusion + collapse + continued pre-training -------------------------------


@dataclass
class Arm:
    """One way of turning the source into a model with fewer K/V heads.

    alloc: "gqa" (contiguous blocks, K = V), "cka_gqa" (uniform, CKA groups shared by K and V),
           "uniform" (CKA groups per layer, K and V decoupled), "cka" (DHA-lite global CKA
           merges), "probe" (loss-driven search).
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

    def __post_init__(self):
        if self.sims is None:
            ids = torch.cat([x for x, _ in self.calib_batches])
            self.sims = head_cka(head_activations(self.source, ids, kinds=("k", "v")))
        self.calib_tokens = sum(x.numel() for x, _ in self.calib_batches)


def arm_groups(ctx: Context, arm: Arm) -> tuple[Grouping, Grouping, float]:
    """``(k_groups, v_groups, forward tokens the search used)``."""
    src = ctx.source
    nk, nv = n_source(src, "k"), n_source(src, "v")
    L = len(nk)
    key = (arm.alloc, arm.budget)
    if key in ctx.cache:
        return ctx.cache[key]
    sk, sv = ctx.sims["k"], ctx.sims["v"]
    cka_cost = ctx.calib_tokens  # one forward over the calibration batch
    if arm.alloc in ("gqa", "uniform", "cka_gqa"):
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
        g, rows, used = probe_allocation(src, ctx.sims, arm.budget, ctx.calib_batches)
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
    search_steps = math.ceil(search_fwd * ctx.forward_cost / ctx.tokens_per_step - 1e-9)
    fsteps = arm.fusion_steps if arm.init == "fusion" else 0
    ct_steps = ctx.total_steps - search_steps - fsteps
    if ct_steps < 0:
        raise ValueError(f"{arm.name}: search ({search_steps}) + fusion ({fsteps}) exceed the budget")
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
        )
        for r in flog:
            if "collapsed_loss" in r:
                curve.append(
                    {"tokens": (search_steps + r["step"]) * tps, "loss": r["collapsed_loss"], "phase": "fusion"}
                )
    else:
        model = collapse(ctx.source, kg, vg)
    init = lm_eval(model, ctx.eval_batches)
    curve.append({"tokens": (search_steps + fsteps) * tps, "loss": init["loss"], "phase": "init"})
    offset = search_steps + fsteps
    final = init
    if ct_steps + arm.extra_steps:
        every = ctx.eval_every if arm.curve else ct_steps
        if arm.extra_steps and ct_steps % every:
            raise ValueError(f"{arm.name}: with extra_steps, eval_every must divide the {ct_steps} CT steps")
        tc = TrainConfig(
            steps=ct_steps + arm.extra_steps, lr=ctx.lr, warmup=ctx.warmup, min_lr_ratio=1.0, eval_every=every
        )
        log = train(
            model,
            lambda s: ctx.get_batch(offset + s),
            tc,
            eval_fn=lambda m: lm_eval(m, ctx.eval_batches),
            progress=ctx.progress,
            desc=f"{arm.name} CT",
        )
        for r in log[1:]:
            curve.append(
                {
                    "tokens": (offset + r["step"]) * tps,
                    "loss": r["loss"],
                    "phase": "CT" if r["step"] <= ct_steps else "past budget",
                }
            )
        final = next(({"loss": r["loss"], "acc": r["acc"]} for r in log if r["step"] == ct_steps), None)
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
        "search_steps": search_steps,
        "fusion_steps": fsteps,
        "ct_steps": ct_steps,
        "tokens": ctx.total_steps * tps,
        "init_loss": init["loss"],
        "init_acc": init["acc"],
        "final_loss": final["loss"],
        "final_acc": final["acc"],
        "final_fusion_loss": flog[-1]["final_fusion_loss"] if flog else float("nan"),
        "fusion_log": flog,
        "curve": curve,
        "model": model if not arm.extra_steps else None,
        "seconds": time.time() - t0,
    }


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


def tokens_to_reach(curve_tokens: Sequence[float], curve_loss: Sequence[float], target: float) -> float:
    """First token count at which a (tokens, loss) curve reaches ``target`` (linear interpolation
    between evaluations); ``inf`` if it never does."""
    t, y = list(curve_tokens), list(curve_loss)
    if y[0] <= target:
        return float(t[0])
    for i in range(1, len(t)):
        if y[i] <= target:
            return float(t[i - 1] + (t[i] - t[i - 1]) * (y[i - 1] - target) / (y[i - 1] - y[i]))
    return float("inf")


def acceleration(gqa_curve, dha_tokens: float, dha_loss: float) -> float:
    """Tokens GQA needs to reach DHA's loss, divided by the tokens DHA used (> 1: DHA is faster)."""
    need = tokens_to_reach([r["tokens"] for r in gqa_curve], [r["loss"] for r in gqa_curve], dha_loss)
    return need / dha_tokens


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
    from ..nn import rope_cache

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


# --- Hugging Face llama checkpoints ----------------------------------------------------------


@torch.no_grad()
def from_hf_llama(hf_model, max_seq_len: int = 2048) -> HeadlabLM:
    """A Hugging Face ``LlamaForCausalLM`` (SmolLM2, Sheared-LLaMA, Llama 2) as a ``HeadlabLM``
    with identical weights (same RMSNorm, rotate-half RoPE, SwiGLU)."""
    c = hf_model.config
    if c.model_type != "llama":
        raise ValueError(f"from_hf_llama needs a llama model, not {c.model_type!r}")
    rp = getattr(c, "rope_parameters", None) or {}
    theta = rp.get("rope_theta", getattr(c, "rope_theta", 10000.0))
    if rp.get("rope_type", "default") not in ("default", None):
        raise ValueError(f"rope_type {rp.get('rope_type')!r} is not supported by headlab.nn")
    n_heads = c.num_attention_heads
    cfg = Config(
        vocab_size=c.vocab_size,
        d_model=c.hidden_size,
        n_layers=c.num_hidden_layers,
        n_heads=n_heads,
        n_kv_heads=c.num_key_value_heads,
        d_head=getattr(c, "head_dim", None) or c.hidden_size // n_heads,
        d_mlp=c.intermediate_size,
        max_seq_len=max_seq_len,
        rope_theta=float(theta),
        norm_eps=float(c.rms_norm_eps),
        tie_embeddings=bool(c.tie_word_embeddings),
    )
    sd = {k.removeprefix("model."): v.detach() for k, v in hf_model.state_dict().items()}
    return build(cfg, sd, hf_model.device)


def tokenize_texts(tok, texts: Sequence[str], seq: int, bos: bool = False) -> torch.Tensor:
    """Fixed-length rows ``[n, seq]`` of a hub tokenizer's ids (texts shorter than ``seq`` are
    dropped, longer ones truncated)."""
    from ..models import encode

    rows = [encode(tok, t, bos)[:seq] for t in texts]
    rows = [r for r in rows if len(r) == seq]
    if not rows:
        raise ValueError(f"no text is {seq} tokens long")
    return torch.tensor(rows)

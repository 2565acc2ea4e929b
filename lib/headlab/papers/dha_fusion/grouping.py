"""Head structure helpers and groupings: agglomerative, global, uniform, contiguous, tied."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np

from ...nn import HeadlabLM, LayerHeads

Grouping = list[list[list[int]]]  # [layer][group] -> source head indices


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

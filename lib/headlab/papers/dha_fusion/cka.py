"""Per-head activations, linear CKA between heads and layers, and Fig. 3a's pull toward a group mean."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from ...nn import HeadlabLM
from .data import lm_eval
from .merge import _heads_view

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


def fusability_matrix(acts: torch.Tensor) -> np.ndarray:
    """How well one head's activations are a scalar multiple of another's: ``[n, n]`` with entry
    ``1 - min_a ||Y_i - a Y_j||^2 / ||Y_i||^2 = cos^2(Y_i, Y_j)`` over the flattened, *uncentred* ``[tokens, d]``
    activations (symmetric, 1 on the diagonal). Unlike CKA it sees how the heads' coordinates are oriented, which is
    what a scalar fusion of their weights (``sum_j omega_ij W_j``) depends on. ``acts``: ``[n, tokens, d]``."""
    A = acts.double().flatten(1)  # [n, tokens * d]
    G = A @ A.T
    nrm = G.diagonal().clamp_min(1e-30)
    return (G.pow(2) / (nrm[:, None] * nrm[None, :])).numpy()


SEARCH_SCORES = ("cka", "fusability")


def head_similarity(acts: dict, score: str = "cka") -> dict:
    """``{kind: [layer] -> [n, n]}``: linear CKA (``"cka"``, the first design) or ``fusability_matrix``."""
    if score not in SEARCH_SCORES:
        raise ValueError(f"search_score must be one of {SEARCH_SCORES}, not {score!r}")
    f = cka_matrix if score == "cka" else fusability_matrix
    return {k: [f(a) for a in v] for k, v in acts.items()}


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


def pull_to_mean_sweep(
    model: HeadlabLM, sims: dict, alphas: Sequence[float], base_loss: float, batches, size: int = 4
) -> pd.DataFrame:
    """Fig. 3a: for K and for V, in the layer of ``extreme_groups`` (``sims``: ``head_cka``), the validation
    loss on ``batches`` while the most and the least similar ``size`` heads are pulled toward their mean by each
    ``alpha`` (``alpha = 0`` is the unedited model, ``base_loss``). One row per kind, group and alpha."""
    rows = []
    for kind in ("k", "v"):
        ex = extreme_groups(sims[kind], size)
        for which in ("most", "least"):
            for a in alphas:
                loss = (
                    base_loss
                    if a == 0
                    else lm_eval(interpolate_to_mean(model, ex["layer"], kind, ex[which], a), batches)["loss"]
                )
                rows.append(
                    {
                        "kind": kind.upper(),
                        "group": f"{which} similar",
                        "layer": ex["layer"],
                        "heads": str(ex[which]),
                        "mean_cka": ex[f"{which}_sim"],
                        "alpha": a,
                        "loss": loss,
                    }
                )
    return pd.DataFrame(rows)


# --- Fig. 3b: per-layer redundancy -----------------------------------------------------------


def redundancy_table(models: Sequence[tuple[str, dict, dict]]) -> pd.DataFrame:
    """Fig. 3b: per ``(name, sims, acts)`` (``head_cka`` and ``head_activations`` of one model), kind (Q, K, V)
    and layer, the layer's ``redundancy`` and the mean CKA of its heads with the next layer's
    (``cross_layer_cka``; NaN for the last layer)."""
    rows = []
    for name, sims, acts in models:
        for kind in ("q", "k", "v"):
            base = cross_layer_cka(acts[kind])
            rows += [
                {
                    "model": name,
                    "kind": kind.upper(),
                    "layer": l,
                    "redundancy": redundancy(s),
                    "adjacent_layer_cka": base[l] if l < len(base) else np.nan,
                }
                for l, s in enumerate(sims[kind])
            ]
    return pd.DataFrame(rows)


def redundancy_spread(f3b: pd.DataFrame) -> pd.DataFrame:
    """Per model and kind of ``redundancy_table``: min and max redundancy over layers and its coefficient of
    variation (std / mean)."""
    g = f3b.groupby(["model", "kind"], sort=False).redundancy
    cv = g.agg(lambda r: r.std() / r.mean()).rename("CV over layers")
    return pd.concat([g.agg(["min", "max"]), cv], axis=1)

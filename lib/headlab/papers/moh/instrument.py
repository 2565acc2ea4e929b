"""Routing instrumentation: records, head load per label with tests, score tables, head redundancy."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from headlab import heads

from .layer import routing_records

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

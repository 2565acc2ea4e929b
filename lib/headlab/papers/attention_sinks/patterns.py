"""Prompts, attention patterns and first-position sink scores."""

from __future__ import annotations

import contextlib

import numpy as np
import pandas as pd
import torch

from ... import heads
from ...models import encode

APOSTROPHES = ("'", "\u2019")


# ------------------------------------------------------------------------------------------------
# prompts and attention patterns
# ------------------------------------------------------------------------------------------------


def bos_label(bos) -> str:
    return "⟨bos⟩ present" if bool(bos) else "⟨bos⟩ removed"


def chance_score(T: int) -> float:
    """First-position score of a head with uniform causal attention over ``T`` tokens: H_T / T."""
    return sum(1.0 / i for i in range(1, T + 1)) / T


def prompt_ids(tok, texts, T: int, bos: bool) -> tuple[torch.Tensor, list[int]]:
    """``[n, T]`` ids: each text's first tokens, with exactly one leading ⟨bos⟩ when ``bos`` (then
    ``T - 1`` text tokens) and none otherwise (``T`` text tokens). Texts shorter than ``T`` tokens
    are skipped; returns the ids and the indices of the texts used."""
    rows, used = [], []
    for i, t in enumerate(texts):
        ids = encode(tok, t, bos)
        if len(ids) >= T:
            rows.append(ids[:T])
            used.append(i)
    if not rows:
        raise ValueError(f"no text has {T} tokens")
    return torch.tensor(rows, dtype=torch.long), used


def paired_prompt_ids(tok, texts, T: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The same text tokens with and without ⟨bos⟩: ``([n, T], [n, T-1])``; row i of the second
    is row i of the first without its leading ⟨bos⟩ (texts with fewer than ``T-1`` tokens dropped)."""
    with_bos, _ = prompt_ids(tok, texts, T, bos=True)
    return with_bos, with_bos[:, 1:].clone()


def _is_headlab(model) -> bool:
    return getattr(getattr(model, "config", None), "model_type", None) == "headlab"


def _body(model, ids: torch.Tensor, doc_ids: torch.Tensor | None = None):
    """Run the model body only (no vocabulary projection)."""
    if _is_headlab(model):
        return model.hidden(ids, doc_ids)
    base = getattr(model, model.base_model_prefix)
    return base(input_ids=ids, use_cache=False)


@torch.no_grad()
def attention_patterns(
    model, ids: torch.Tensor, doc_ids: torch.Tensor | None = None, batch_size: int = 16
) -> torch.Tensor:
    """``[layer, batch, head, q, k]`` attention weights (float32, CPU). HF models must run eager
    attention; a headlab model is switched to its eager path for the call."""
    # HF models must already be eager (capture says so otherwise); a headlab model is switched for the call
    with heads.eager(model) if _is_headlab(model) else contextlib.nullcontext():
        dev = next(model.parameters()).device
        out = []
        for s in range(0, len(ids), batch_size):
            with heads.capture(model, z=False, pattern=True) as cache:
                _body(
                    model,
                    ids[s : s + batch_size].to(dev),
                    None if doc_ids is None else doc_ids[s : s + batch_size].to(dev),
                )
            out.append(cache.stack("pattern").float().cpu())
        return torch.cat(out, dim=1)


def first_position_scores(patterns: torch.Tensor, include_first_row: bool = True) -> torch.Tensor:
    """``[prompt, layer, head]`` mean attention on key position 0 over the query rows (Gu et al.'s
    importance score of the first token). ``include_first_row=False`` drops the trivial row 0."""
    col = patterns[..., 0]  # [layer, batch, head, q]
    if not include_first_row:
        col = col[..., 1:]
    return col.mean(-1).permute(1, 0, 2).contiguous()


def exclude_first_row(scores: torch.Tensor, n_rows: int) -> torch.Tensor:
    """First-position scores with query row 0 dropped, from the scores that include it (``first_position_scores``
    over ``n_rows`` query rows): under any causal mask row 0 sees only key 0, so its weight there is exactly 1
    and ``excluded = (n_rows * included - 1) / (n_rows - 1)``. The two conventions of the literature (Gu et al.'s
    code keeps row 0) without recomputing the patterns."""
    if n_rows < 2:
        raise ValueError(f"need at least 2 query rows to drop row 0, got {n_rows}")
    return (n_rows * scores - 1.0) / (n_rows - 1)


@torch.no_grad()
def sink_scores(
    model, ids: torch.Tensor, batch_size: int = 16, keep: int = 0
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """First-position scores ``[prompt, layer, head]`` computed batch by batch (so large models never
    hold every prompt's patterns), plus the full patterns ``[layer, keep, head, q, k]`` of the first
    ``keep`` prompts (None when ``keep == 0``)."""
    out, kept = [], None
    for s in range(0, len(ids), batch_size):
        pat = attention_patterns(model, ids[s : s + batch_size], batch_size=batch_size)
        out.append(first_position_scores(pat))
        if s == 0 and keep:
            kept = pat[:, :keep].clone()
    return torch.cat(out), kept


def row_entropy(patterns: torch.Tensor) -> torch.Tensor:
    """``[..., q]`` entropy (nats) of every attention row of ``patterns [..., q, k]``; higher means a
    smoother, less peaked row."""
    p = patterns.clamp_min(0)
    return -(p * torch.log(p.clamp_min(1e-12))).sum(-1)


def sink_rate(scores: torch.Tensor, eps: float) -> float:
    """Share (0..1) of (prompt, layer, head) triples whose first-position score exceeds ``eps``."""
    return float((scores > eps).float().mean())


def sink_rate_per_layer(scores: torch.Tensor, eps: float) -> np.ndarray:
    """``[layer]`` share of (prompt, head) pairs of each layer that are sink heads."""
    return (scores > eps).float().mean(dim=(0, 2)).numpy()


def sink_metrics(scores: torch.Tensor, eps_list=(0.3, 0.8), n_rows: int | None = None) -> dict:
    """Overall sink rate (in %) at every ``eps`` plus the mean first-position score; with ``n_rows`` (the query rows
    the scores averaged, row 0 included) the same with row 0 excluded too, as ``sink_<eps>_excl`` and
    ``mean_score_excl``."""
    out = {f"sink_{e:g}": 100 * sink_rate(scores, e) for e in eps_list}
    out["mean_score"] = float(scores.mean())
    if n_rows is not None:
        ex = exclude_first_row(scores, n_rows)
        out |= {f"sink_{e:g}_excl": 100 * sink_rate(ex, e) for e in eps_list}
        out["mean_score_excl"] = float(ex.mean())
    return out


def sink_profile(scores: torch.Tensor, eps_list=(0.3, 0.8), **labels) -> pd.DataFrame:
    """Tidy per-layer table: layer, eps, sink rate (%), mean first-position score, plus ``labels``."""
    rows = []
    mean = scores.mean(dim=(0, 2)).numpy()
    for e in eps_list:
        for l, r in enumerate(sink_rate_per_layer(scores, e)):
            rows.append({**labels, "layer": l, "eps": e, "sink_pct": 100 * float(r), "mean_score": float(mean[l])})
    return pd.DataFrame(rows)

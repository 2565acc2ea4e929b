"""Evaluation: multiple choice by summed log-likelihood (lm-eval style), next-token loss, perplexity.

Batches are right-padded. Causal attention never lets a real token see later padding, so no
attention mask is needed; ``heads.token_mask`` tells interventions which positions are real.
The vocabulary projection runs only at the positions that are scored (Gemma's 262k-row lm_head
is two thirds of its forward cost otherwise).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from . import heads
from .data import MCItem
from .models import encode
from .train import progress_bar


def final_hidden(model, ids: torch.Tensor) -> torch.Tensor:
    """Final hidden states after the last norm ``[batch, pos, d_model]``."""
    if getattr(model.config, "model_type", None) == "headlab":
        return model.hidden(ids)
    base = getattr(model, model.base_model_prefix)
    return base(input_ids=ids, use_cache=False).last_hidden_state


def logits_from_hidden(model, h: torch.Tensor) -> torch.Tensor:
    logits = model.lm_head(h)
    cap = getattr(model.config, "final_logit_softcapping", None)
    if cap:  # Gemma-2 style soft-capping
        logits = torch.tanh(logits / cap) * cap
    return logits.float()


def pad(seqs: Sequence[Sequence[int]], value: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token lists: ids ``[batch, T]`` and the valid-token mask ``[batch, T]``."""
    T = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), T), value, dtype=torch.long)
    valid = torch.zeros((len(seqs), T), dtype=torch.bool)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.as_tensor(s)
        valid[i, : len(s)] = True
    return ids, valid


@torch.no_grad()
def continuation_logprobs(
    model,
    tok,
    contexts: Sequence[str],
    continuations: Sequence[str],
    bos: bool,
    batch_size: int = 16,
    progress: bool = True,
    desc: str = "scoring",
) -> np.ndarray:
    """Summed log p(continuation | context) per pair, float64 ``[n]``."""
    dev = model.device
    pairs = []
    for c, x in zip(contexts, continuations, strict=True):
        ctx, cont = encode(tok, c, bos), encode(tok, x, False)
        if not cont:
            raise ValueError(f"empty continuation for context {c[:40]!r}")
        pairs.append((ctx, cont))
    out = np.zeros(len(pairs))
    order = np.argsort([-(len(a) + len(b)) for a, b in pairs], kind="stable")  # similar lengths together
    for s in progress_bar(range(0, len(order), batch_size), desc, progress):
        idx = order[s : s + batch_size]
        seqs = [pairs[i][0] + pairs[i][1] for i in idx]
        ids, valid = pad(seqs)
        with heads.token_mask(valid.to(dev)):
            h = final_hidden(model, ids.to(dev))
        for row, i in enumerate(idx):
            ctx, cont = pairs[i]
            pos = torch.arange(len(ctx) - 1, len(ctx) + len(cont) - 1, device=dev)
            lp = logits_from_hidden(model, h[row, pos]).log_softmax(-1)
            out[i] = lp.gather(-1, torch.as_tensor(cont, device=dev)[:, None]).sum().item()
    return out


def multiple_choice(
    model,
    tok,
    items: Sequence[MCItem],
    bos: bool,
    batch_size: int = 16,
    progress: bool = True,
    length_normalised: bool = False,
) -> dict:
    """Accuracy of argmax summed log-likelihood (``acc``; per-character normalised too as ``acc_norm``)."""
    ctx = [it.prompt for it in items for _ in it.choices]
    cont = [c for it in items for c in it.choices]
    lp = continuation_logprobs(model, tok, ctx, cont, bos, batch_size, progress, desc="multiple choice")
    correct, correct_norm, k = [], [], 0
    for it in items:
        n = len(it.choices)
        s = lp[k : k + n]
        s_norm = s / np.array([len(c) for c in it.choices])
        correct.append(int(np.argmax(s)) == it.answer)
        correct_norm.append(int(np.argmax(s_norm)) == it.answer)
        k += n
    return {
        "acc": float(np.mean(correct)),
        "acc_norm": float(np.mean(correct_norm)),
        "n": len(items),
        "correct": np.array(correct),
        "logprobs": lp,
    }


@torch.no_grad()
def token_nll(
    model, tok, texts: Sequence[str], bos: bool, max_len: int = 256, batch_size: int = 8, progress: bool = True
) -> list[np.ndarray]:
    """Per-token negative log-likelihood (nats) of each text, truncated to ``max_len`` tokens
    (⟨bos⟩ included). The first real token is predicted only when ``bos`` is True."""
    dev = model.device
    seqs = [encode(tok, t, bos)[:max_len] for t in texts]
    out: list[np.ndarray] = [None] * len(seqs)  # type: ignore[list-item]
    for s in progress_bar(range(0, len(seqs), batch_size), "next-token loss", progress):
        chunk = seqs[s : s + batch_size]
        ids, valid = pad(chunk)
        with heads.token_mask(valid.to(dev)):
            h = final_hidden(model, ids.to(dev))
        for row, seq in enumerate(chunk):
            T = len(seq)
            lp = logits_from_hidden(model, h[row, : T - 1]).log_softmax(-1)
            tgt = torch.as_tensor(seq[1:], device=dev)[:, None]
            out[s + row] = (-lp.gather(-1, tgt)[:, 0]).cpu().numpy()
    return out


def mean_nll(model, tok, texts, bos: bool, **kw) -> float:
    """Token-weighted mean next-token loss (nats/token) over texts."""
    nll = token_nll(model, tok, texts, bos, **kw)
    return float(np.concatenate(nll).mean())


def perplexity(model, tok, texts, bos: bool, **kw) -> float:
    return math.exp(mean_nll(model, tok, texts, bos, **kw))

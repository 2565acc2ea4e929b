"""The small transformers trained on Count01, their decision logits, loss and predictions."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...nn import Config, HeadlabLM
from .task import EOS, ONE, TWO, VOCAB, ZERO, Batch, TaskSpec, next_token_dist_B

# -- model ---------------------------------------------------------------------------------------
INITS = ("normal", "torch")


def make_model(
    n_heads: int,
    spec: TaskSpec,
    d_model: int = 32,
    pos_emb: str = "none",
    seed: int = 0,
    init: str = "normal",
    attn_norm: bool = True,
) -> HeadlabLM:
    """One layer, attention only, ``n_heads`` heads of size d_model / n_heads, no final norm, untied
    unembedding: the logits are exactly linear in the per-head outputs.

    Two choices the paper does not state, kept switchable for the initialisation ablation:
    ``init="normal"`` draws every weight from N(0, 0.02²) (GPT-2's, and HeadlabLM's default; o_proj at
    0.02/√2), ``init="torch"`` uses PyTorch's own defaults (Kaiming-uniform linears, N(0, 1) embeddings);
    ``attn_norm=False`` removes the learnable RMSNorm in front of attention (the residual stays exact)."""
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, not {init!r}")
    torch.manual_seed(seed)
    cfg = Config(
        vocab_size=VOCAB,
        d_model=d_model,
        n_layers=1,
        n_heads=n_heads,
        pos_emb=pos_emb,
        attn_only=True,
        final_norm=False,
        tie_embeddings=False,
        max_seq_len=spec.seq_len,
        attn_impl="sdpa",
    )
    model = HeadlabLM(cfg)
    if init == "torch":
        for m in model.modules():
            if isinstance(m, (torch.nn.Linear, torch.nn.Embedding)):
                m.reset_parameters()
    if not attn_norm:
        model.layers[0].input_layernorm = torch.nn.Identity()
    return model


def decision_logits(model: HeadlabLM, b: Batch) -> torch.Tensor:
    h = model.hidden(b.ids)
    return model.lm_head(h[torch.arange(len(b)), b.pos])


def loss(model: HeadlabLM, b: Batch, spec: TaskSpec) -> torch.Tensor:
    if spec.variant == "A":  # answer token at EOS only
        return F.cross_entropy(decision_logits(model, b), b.y)
    if spec.variant == "A_LM":
        logits = model(b.ids).logits
        dec = torch.zeros_like(b.targets, dtype=torch.bool)
        dec[torch.arange(len(b)), b.pos] = True
        ce = F.cross_entropy(logits.flatten(0, 1), b.targets.flatten(), ignore_index=-100, reduction="none").view_as(
            b.targets.float()
        )
        lm_mask = (b.targets != -100) & ~dec
        return ce[dec].mean() + spec.lm_weight * ce[lm_mask].mean()
    if spec.b_targets == "sampled":
        return model(b.ids, labels=b.targets).loss  # B: plain LM over sampled sentences of L
    dist, mask = next_token_dist_B(b, spec)  # B: LM loss against the exact next-token distribution
    logp = model(b.ids).logits.log_softmax(-1)
    return -(dist * logp).sum(-1)[mask].mean()


def predict(logits: torch.Tensor, spec: TaskSpec) -> dict:
    """Decode decision-position logits ``[n, vocab]`` over the full vocabulary: the predicted label,
    and whether the argmax is a syntactically valid continuation."""
    a = logits.argmax(-1)
    if spec.variant == "B":
        return {"label": (a == EOS).long(), "valid": (a <= TWO) | (a == EOS)}
    return {"label": (a == ONE).long(), "valid": a <= ONE}


def correct(logits: torch.Tensor, y: torch.Tensor, spec: TaskSpec) -> torch.Tensor:
    p = predict(logits, spec)
    return (p["label"] == y) & p["valid"]


def decision_direction(model: HeadlabLM, spec: TaskSpec) -> torch.Tensor:
    """u with ``u . x`` the decision logit difference: logit(1) - logit(0) for A, and
    logit(EOS) - mean(logit(0), logit(1)) for B."""
    W = model.lm_head.weight.detach()
    if spec.variant == "B":
        return W[EOS] - 0.5 * (W[ZERO] + W[ONE])
    return W[ONE] - W[ZERO]

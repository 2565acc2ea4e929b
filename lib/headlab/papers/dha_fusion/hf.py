"""Hugging Face llama checkpoints as headlab models, and tokenised text windows."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ...nn import Config, HeadlabLM
from .merge import build

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
    from ...models import encode

    rows = [encode(tok, t, bos)[:seq] for t in texts]
    rows = [r for r in rows if len(r) == seq]
    if not rows:
        raise ValueError(f"no text is {seq} tokens long")
    return torch.tensor(rows)

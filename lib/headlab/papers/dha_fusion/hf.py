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


# --- the analysis model of the notebook ------------------------------------------------------


def analysis_model(P, source: HeadlabLM, eval_batches: list, train_toks) -> dict:
    """The model the notebook's analysis rows convert without training (profile ``P``).

    With ``P.analysis_lm``: ``P.lm_model`` from the hub converted with ``from_hf_llama``, its calibration rows
    ``[P.lm_calib_rows, P.lm_seq]`` and held-out ``(x, y)`` batches of 4 rows cut from shipped paragraphs, and
    the largest ``|Δlogit|`` of the conversion on two rows. Without: the MHA ``source`` itself, its evaluation
    batches, and one calibration batch ``[P.calib_rows, P.seq]`` of the first arm seed's stream.
    Returns ``{"name", "lm", "batches", "calib", "conv_diff", "base"}`` (``base``: ``lm_eval`` of the model).
    """
    from ... import data, models
    from .data import fixed_batches, lm_eval

    if P.analysis_lm:
        name = P.lm_model
        hf, tok = models.load(P.lm_model, device=P.device, attn="sdpa")
        lm = from_hf_llama(hf, max_seq_len=P.lm_seq)
        texts = [p["text"] for p in data.paragraphs(None, min_chars=800, seed=P.seed)]
        rows = tokenize_texts(tok, texts, P.lm_seq, bos=P.lm_bos).to(P.device)  # [rows, lm_seq + 1]
        calib = rows[: P.lm_calib_rows]
        batches = [(r[:, :-1], r[:, 1:]) for r in rows[P.lm_calib_rows : P.lm_calib_rows + P.lm_eval_rows].split(4)]
        with torch.no_grad():
            conv_diff = (hf(rows[:2]).logits - lm(rows[:2]).logits).abs().max().item()
        del hf
    else:  # no pretrained weights on this machine: the MHA source doubles as the analysis model
        name = "MHA source (analysis)"
        lm, batches = source, eval_batches
        calib = fixed_batches(train_toks, 1, P.calib_rows, P.seq, seed=2000 + P.arm_seeds[0], device=P.device)[0][0]
        conv_diff = 0.0
    return {
        "name": name,
        "lm": lm,
        "batches": batches,
        "calib": calib,
        "conv_diff": conv_diff,
        "base": lm_eval(lm, batches),
    }


def describe_analysis_model(A: dict, P) -> str:
    """One line on the analysis model ``A`` (from ``analysis_model``): its heads, conversion error and loss."""
    c = A["lm"].config
    if P.analysis_lm:
        return (
            f"{A['name']}: {c.n_layers} layers, {c.n_heads} query heads, {c.n_kv_heads} KV heads per layer; headlab "
            f"conversion max |Δlogit| {A['conv_diff']:.1e}; loss {A['base']['loss']:.3f} nats/token on "
            f"{P.lm_eval_rows} x {P.lm_seq} held-out tokens"
        )
    return (
        f"analysis_lm=False: the analysis rows below use the MHA source itself ({c.n_layers} x {c.n_heads} heads, "
        f"budgets {', '.join(f'{b:.0%}' for b in P.lm_budgets)}), without training"
    )

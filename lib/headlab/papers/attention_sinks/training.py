"""Pretraining headlab models with and without a fixed sink (Fig. 5, Fig. 7, Table 2)."""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ...data import ByteTokenizer
from ...nn import Attention, Config, HeadlabLM, apply_rope
from ...train import TrainConfig, train
from .patterns import attention_patterns, first_position_scores, sink_metrics

# ------------------------------------------------------------------------------------------------
# pretraining headlab models (Fig. 5, Fig. 7, Table 2)
# ------------------------------------------------------------------------------------------------

GLOBAL_DOC = -1  # doc id of a token every query may attend to (a fixed ⟨bos⟩ under intra-document masking)


def doc_mask(T: int, doc_ids: torch.Tensor | None, device=None) -> torch.Tensor:
    """Boolean ``[batch|1, 1, q, k]`` causal mask; with ``doc_ids`` a query sees its own document's
    earlier tokens plus every token whose doc id is ``GLOBAL_DOC``."""
    m = torch.ones(T, T, dtype=torch.bool, device=device).tril()[None, None]
    if doc_ids is not None:
        same = doc_ids[:, None, :, None] == doc_ids[:, None, None, :]
        m = m & (same | (doc_ids == GLOBAL_DOC)[:, None, None, :])
    return m


class SinkAttention(Attention):
    """headlab's attention with ``doc_mask``: intra-document masking that keeps a fixed ⟨bos⟩
    visible to every document. Same parameters and hook points as ``headlab.nn.Attention``."""

    def forward(self, x, cos=None, sin=None, doc_ids=None, need_weights: bool = False):
        if doc_ids is None:
            return super().forward(x, cos, sin, None, need_weights)
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.n_heads, self.d_head).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.n_k, self.d_head).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.n_v, self.d_head).transpose(1, 2)
        if cos is not None:
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        k, v = k.index_select(1, self.k_map), v.index_select(1, self.v_map)
        mask = doc_mask(T, doc_ids, x.device)
        weights = None
        if self.cfg.attn_impl == "eager" or need_weights:
            scores = (q @ k.transpose(-1, -2)) / math.sqrt(self.d_head)
            weights = scores.masked_fill(~mask, float("-inf")).softmax(-1)
            z = weights @ v
        else:
            z = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        z = z.transpose(1, 2).reshape(B, T, self.n_heads * self.d_head)
        return self.o_proj(z), weights


@dataclass(frozen=True)
class Variant:
    """How training windows are built. ``bos``: a ⟨bos⟩ fixed at position 0 of every window;
    ``intra_doc``: block-diagonal causal masking between the ⟨eos⟩-separated packed documents."""

    bos: bool
    intra_doc: bool

    @property
    def name(self) -> str:
        return (
            f"{'fixed ⟨bos⟩' if self.bos else 'no ⟨bos⟩'}, {'intra-doc mask' if self.intra_doc else 'causal packing'}"
        )


VARIANTS = {
    "nobos_causal": Variant(False, False),
    "nobos_intradoc": Variant(False, True),
    "bos_causal": Variant(True, False),
    "bos_intradoc": Variant(True, True),
}


class PackedWindows:
    """Random training windows ``(x, (y, doc_ids))`` from a packed, ⟨eos⟩-separated token stream.

    With ``variant.bos`` the window is ``[⟨bos⟩] + ctx - 1`` stream tokens (⟨bos⟩ gets doc id
    ``GLOBAL_DOC``); otherwise ``ctx`` stream tokens starting anywhere. ``doc_ids`` is returned
    only for intra-document masking (else None). Reproducible per step."""

    def __init__(
        self,
        tokens: np.ndarray,
        doc_index: np.ndarray,
        batch: int,
        ctx: int,
        variant: Variant,
        seed: int = 0,
        device="cpu",
        bos_id: int = ByteTokenizer.bos_token_id,
    ):
        self.t = torch.as_tensor(tokens, dtype=torch.long)
        self.d = torch.as_tensor(doc_index, dtype=torch.long)
        self.batch, self.ctx, self.variant, self.seed, self.device, self.bos_id = (
            batch,
            ctx,
            variant,
            seed,
            device,
            bos_id,
        )

    def __call__(self, step: int):
        n_text = self.ctx - int(self.variant.bos)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        ix = torch.randint(len(self.t) - n_text - 1, (self.batch,), generator=g)
        span = ix[:, None] + torch.arange(n_text + 1)
        toks, docs = self.t[span], self.d[span]
        x, y, dx = toks[:, :-1], toks[:, 1:], docs[:, :-1]
        if self.variant.bos:
            x = torch.cat([torch.full((self.batch, 1), self.bos_id), x[:, :]], 1)[:, : self.ctx]
            y = torch.cat([toks[:, :1], y], 1)[:, : self.ctx]
            dx = torch.cat([torch.full((self.batch, 1), GLOBAL_DOC), dx], 1)[:, : self.ctx]
        doc_ids = dx.to(self.device) if self.variant.intra_doc else None
        return x.to(self.device), (y.to(self.device), doc_ids)


def doc_start_windows(tokens: np.ndarray, doc_index: np.ndarray, n_text: int, n: int) -> torch.Tensor:
    """``[n', n_text]`` the first ``n_text`` tokens of the first ``n`` documents that are long enough
    (one document per window, so masking variants do not matter at evaluation)."""
    out = []
    starts = np.flatnonzero(np.r_[True, doc_index[1:] != doc_index[:-1]])
    for s in starts:
        if s + n_text <= len(tokens) and (doc_index[s : s + n_text] == doc_index[s]).all():
            out.append(tokens[s : s + n_text])
        if len(out) == n:
            break
    if not out:
        raise ValueError(f"no document has {n_text} tokens")
    return torch.as_tensor(np.stack(out), dtype=torch.long)


@torch.no_grad()
def evaluate_first_position(
    model, windows: torch.Tensor, bos: bool, eps_list=(0.3, 0.8), bos_id: int = ByteTokenizer.bos_token_id
) -> dict:
    """Sink metrics and loss of a headlab model on document-start text ``windows`` ``[n, m]``: fed as
    ``[⟨bos⟩] + text[:m-1]`` (m tokens) or ``text[:m-1]`` (m - 1 tokens). The loss is over the same
    targets either way, text tokens 1..m-1 (predicting the first text token needs a ⟨bos⟩)."""
    dev = next(model.parameters()).device
    x = torch.cat([torch.full((len(windows), 1), bos_id), windows], 1) if bos else windows
    x = x[:, :-1].to(dev)
    scores = first_position_scores(attention_patterns(model, x))
    logits = model(x).logits.float()
    off = int(bos)
    lg = logits[:, off:, :]  # predictions made at text positions 0..T-3
    tgt = windows[:, 1 : lg.shape[1] + 1].to(dev)
    loss = F.cross_entropy(lg.reshape(-1, lg.shape[-1]), tgt.reshape(-1)).item()
    return {**sink_metrics(scores, eps_list), "loss": loss}


@dataclass
class PretrainSpec:
    ctx: int
    tokens_per_step: int
    steps: int
    variant: Variant
    model: dict = field(default_factory=dict)  # headlab.nn.Config fields
    lr: float = 3e-3
    warmup: int = 20
    eval_every: int = 25
    seed: int = 0
    amp: bool = False  # bf16 autocast on CUDA

    @property
    def batch(self) -> int:
        return max(1, self.tokens_per_step // self.ctx)


def build_model(spec: PretrainSpec, vocab_size: int = ByteTokenizer.vocab_size) -> HeadlabLM:
    torch.manual_seed(spec.seed)
    cfg = Config(vocab_size=vocab_size, max_seq_len=max(spec.ctx, 8), **spec.model)
    return HeadlabLM(cfg, attention_cls=SinkAttention)


def pretrain(
    spec: PretrainSpec,
    train_stream: tuple[np.ndarray, np.ndarray],
    eval_windows: torch.Tensor,
    eval_bos: bool | None = None,
    eps_list=(0.3, 0.8),
    device="cpu",
    val_batches: int = 2,
    val_stream: tuple[np.ndarray, np.ndarray] | None = None,
    desc: str = "pretrain",
):
    """Train one headlab model; every ``eval_every`` steps log the sink metrics and loss on
    ``eval_windows`` (fed with ⟨bos⟩ iff ``eval_bos``, default: as trained) and, when
    ``val_stream`` is given, the validation loss on held-out windows built like the training ones.
    Returns ``(model, log DataFrame)``; the model is left in eval mode on ``device``."""
    model = build_model(spec).to(device)
    get = PackedWindows(
        *train_stream, batch=spec.batch, ctx=spec.ctx, variant=spec.variant, seed=spec.seed, device=device
    )
    val = None
    if val_stream is not None:
        vb = PackedWindows(
            *val_stream, batch=spec.batch, ctx=spec.ctx, variant=spec.variant, seed=10_000 + spec.seed, device=device
        )
        val = [vb(i) for i in range(val_batches)]
    eval_bos = spec.variant.bos if eval_bos is None else eval_bos
    use_amp = spec.amp and torch.device(device).type == "cuda"

    def amp():
        return torch.autocast("cuda", dtype=torch.bfloat16) if use_amp else contextlib.nullcontext()

    def loss_fn(m, x, yd):
        y, doc_ids = yd
        with amp():
            return m(x, labels=y, doc_ids=doc_ids).loss, {}

    def eval_fn(m):
        with amp():
            row = evaluate_first_position(m, eval_windows, eval_bos, eps_list)
            if val is not None:
                row["val_loss"] = float(np.mean([loss_fn(m, x, yd)[0].item() for x, yd in val]))
        return row

    tc = TrainConfig(steps=spec.steps, lr=spec.lr, warmup=spec.warmup, eval_every=spec.eval_every, seed=spec.seed)
    log = pd.DataFrame(train(model, get, tc, loss_fn=loss_fn, eval_fn=eval_fn, desc=desc))
    log.insert(0, "ctx", spec.ctx)
    log.insert(1, "tokens_seen", log["step"] * spec.batch * spec.ctx)
    return model.eval(), log


def variant_table(model, windows: torch.Tensor, variant_key: str, eps_list=(0.3, 0.8)) -> pd.DataFrame:
    """Table 2 rows for one trained variant: evaluated with and without a leading ⟨bos⟩."""
    v = VARIANTS[variant_key]
    rows = []
    for bos in (True, False):
        r = evaluate_first_position(model, windows, bos, eps_list)
        rows.append({"variant": variant_key, "train_bos": v.bos, "intra_doc": v.intra_doc, "eval_bos": bos, **r})
    return pd.DataFrame(rows)


def spearman(x, y) -> float:
    """Spearman rank correlation (average ranks for ties); nan when either side is constant."""
    from scipy.stats import spearmanr

    if np.std(x) == 0 or np.std(y) == 0:  # scipy would warn and return nan
        return float("nan")
    return float(spearmanr(x, y).statistic)

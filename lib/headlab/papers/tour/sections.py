"""The computations of notebook 00's sections, one function per section, each returning the tidy table that
the section's figure is drawn from (``tour.figures``). They only call the core (``headlab.heads``,
``headlab.eval``, ``headlab.nn``, ``headlab.train``): the tour shows its API, so each body is meant to be read.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from ... import data, heads, models
from ... import eval as ev


def batch_ids(tok, texts: Sequence[str], bos: bool, max_tokens: int, device="cpu") -> torch.Tensor:
    """``[batch, pos]`` token ids of ``texts``, each cut to ``max_tokens`` and then all to the shortest one
    (equal lengths: no padding), with a leading ⟨bos⟩ when ``bos``."""
    seqs = [models.encode(tok, t, bos)[:max_tokens] for t in texts]
    T = min(len(s) for s in seqs)  # equal lengths: no padding in this section
    return torch.tensor([s[:T] for s in seqs], device=device)


def first_token_attention_table(loaded: dict, paras: Sequence[str], max_tokens: int, device="cpu") -> pd.DataFrame:
    """Mean attention weight of the queries after position 0 on position 0, per model, layer and ⟨bos⟩
    prepended or not. ``loaded``: name -> (model, tokenizer). Rows: model, bos, layer, depth (layer / last
    layer), first_token_attention."""
    rows = []
    with torch.no_grad():
        for name, (model, tok) in loaded.items():
            for bos in (True, False):
                ids = batch_ids(tok, paras, bos, max_tokens, device)
                with heads.capture(model, z=False, pattern=True) as cache:
                    model.model(input_ids=ids)
                for layer, pat in cache.pattern.items():  # [batch, head, q, k]
                    rows.append(
                        {
                            "model": name,
                            "bos": bos,
                            "layer": layer,
                            "depth": layer / (len(cache.pattern) - 1),
                            "first_token_attention": pat[:, :, 1:, 0].mean().item(),
                        }
                    )
    return pd.DataFrame(rows)


def head_norm_table(loaded: dict, paras: Sequence[str], max_tokens: int, device="cpu") -> pd.DataFrame:
    """Mean L2 norm of each query head's output ``z`` (before W_O) over the paragraphs' tokens, each model
    fed ⟨bos⟩ as it was trained. Rows: model, layer, head, mean_z_norm."""
    norm_rows = []
    with torch.no_grad():
        for name, (model, tok) in loaded.items():
            bos = models.bos_for(name, tok)
            ids = batch_ids(tok, paras, bos, max_tokens, device)
            with heads.capture(model, z=True) as cache:
                model.model(input_ids=ids)
            z = cache.stack("z")  # [layer, batch, pos, head, d_head]
            norms = z.norm(dim=-1).mean(dim=(1, 2))  # [layer, head]
            for (layer, head), v in np.ndenumerate(norms.cpu().numpy()):
                norm_rows.append({"model": name, "layer": layer, "head": head, "mean_z_norm": float(v)})
    return pd.DataFrame(norm_rows)


def train_tiny(seq: int, batch: int, steps: int, seed: int = 0, device="cpu"):
    """Train a byte-level headlab LM (4 layers, d_model 128, 4 query heads sharing 2 KV heads: GQA) on the
    shipped corpus for ``steps`` steps of ``batch`` x ``seq`` bytes, validation loss on 4 held-out batches
    every ``steps // 6`` steps. Returns ``(model, log)``: the training log (step, train_loss, val_loss) with
    the model's n_params, n_heads and n_kv_heads as constant columns."""
    from ...nn import Config, HeadlabLM
    from ...train import TrainConfig, train

    tokens, _ = data.corpus_tokens()
    train_toks, val_toks = data.split_tokens(tokens, 0.05)
    cfg = Config(vocab_size=258, d_model=128, n_layers=4, n_heads=4, n_kv_heads=2, max_seq_len=seq)
    torch.manual_seed(seed)
    lm = HeadlabLM(cfg).to(device)
    val = data.Batches(val_toks, 16, seq, seed=123, device=device)
    val_batches = [val(i) for i in range(4)]  # each (x, y): [batch, pos]

    def eval_fn(m):
        return {"val_loss": float(np.mean([m(x, labels=y).loss.item() for x, y in val_batches]))}

    tc = TrainConfig(steps=steps, lr=3e-3, warmup=10, eval_every=max(steps // 6, 1), seed=seed)
    log = pd.DataFrame(
        train(
            lm,
            data.Batches(train_toks, batch, seq, seed=seed, device=device),
            tc,
            eval_fn=eval_fn,
            desc="tour LM",
        )
    )
    return lm, log.assign(n_params=lm.num_params(), n_heads=cfg.n_heads, n_kv_heads=cfg.n_kv_heads)


def published_numbers(
    loaded: dict,
    paras: Sequence[str],
    text_type: str,
    max_tokens: int,
    zl: pd.DataFrame,
    log: pd.DataFrame,
    zero_layer: int,
) -> pd.DataFrame:
    """The numbers the notebook publishes, rounded so that only a real change shows: each model's perplexity
    on the paragraphs (⟨bos⟩ as trained), the largest loss change from zeroing one head of ``zero_layer``
    (``zl``: the baseline row first, then one row per head) and the tiny LM's first and last validation loss
    (``log``). Rows: quantity, value."""
    summary = []
    for name, (model, tok) in loaded.items():
        bos = models.bos_for(name, tok)
        summary.append(
            {
                "quantity": f"{name} perplexity on {len(paras)} {text_type} paragraphs",
                "value": round(ev.perplexity(model, tok, paras, bos=bos, max_len=max_tokens, progress=False), 1),
            }
        )
    summary.append(
        {
            "quantity": f"largest Δloss from zeroing one head of layer {zero_layer}",
            "value": round(float(zl.delta_loss[1:].max()), 3),
        }
    )
    summary.append(
        {
            "quantity": "tiny LM validation loss: start -> end",
            "value": f"{log.val_loss.iloc[0]:.2f} -> {log.val_loss.iloc[-1]:.2f}",
        }
    )
    return pd.DataFrame(summary)

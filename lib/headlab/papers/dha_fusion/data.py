"""Byte-level data splits, fixed evaluation batches, and the source model's pretraining."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ... import data as hd
from ...nn import Config, HeadlabLM
from ...train import TrainConfig, train

# --- data and evaluation ---------------------------------------------------------------------


def byte_splits(types=None, val_fraction: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Byte tokens of the shipped corpus, split per text type (the tail ``val_fraction`` of each
    type is validation), so that the validation set covers every type, not just the last one."""
    tr, va = [], []
    for t in types or hd.text_types():
        toks, _ = hd.corpus_tokens([t])
        a, b = hd.split_tokens(toks, val_fraction)
        tr.append(a)
        va.append(b)
    return np.concatenate(tr), np.concatenate(va)


def fixed_batches(tokens: np.ndarray, n: int, batch: int, seq: int, seed: int, device="cpu") -> list:
    b = hd.Batches(tokens, batch, seq, seed=seed, device=device)
    return [b(i) for i in range(n)]


@torch.no_grad()
def lm_eval(model, batches) -> dict:
    """Mean next-token loss (nats/token) and next-token accuracy over fixed ``(x, y)`` batches."""
    was = model.training
    model.eval()
    loss = acc = n = 0.0
    for x, y in batches:
        logits = model(x).logits.float()
        k = y.numel()
        loss += F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum").item()
        acc += (logits.argmax(-1) == y).sum().item()
        n += k
    model.train(was)
    return {"loss": loss / n, "acc": acc / n}


def pretrain_source(
    cfg: Config,
    train_toks,
    steps: int,
    batch: int,
    seq: int,
    lr: float,
    seed: int,
    eval_batches=None,
    device="cpu",
    warmup: int = 20,
    desc="pretrain MHA",
):
    """Train a headlab model from scratch (the MHA checkpoint DHA starts from)."""
    torch.manual_seed(seed)
    model = HeadlabLM(cfg).to(device)
    tc = TrainConfig(steps=steps, lr=lr, warmup=warmup, eval_every=max(steps // 5, 1), seed=seed)
    ev = (lambda m: {"val_loss": lm_eval(m, eval_batches)["loss"]}) if eval_batches else None
    log = train(model, hd.Batches(train_toks, batch, seq, seed=seed, device=device), tc, eval_fn=ev, desc=desc)
    return model.eval(), log

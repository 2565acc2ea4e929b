"""A minimal training loop for headlab's own models (nanoGPT in spirit).

AdamW (no weight decay on norms/biases/embeddings), linear warm-up then cosine decay to
``min_lr_ratio * lr``, gradient clipping, an eval hook every ``eval_every`` steps, a checkpoint
callback, and a tqdm bar. Returns the log as a list of dicts (one per eval) for a DataFrame.

Threads: on a 2-core machine PyTorch's default intra-op pool already uses both cores;
``set_threads`` pins it explicitly so runs are reproducible (see ``python -m headlab bench``).
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm


def progress_bar(iterable, desc: str, enabled: bool = True, **kw):
    """tqdm over ``iterable``; off when ``enabled`` is False or ``TQDM_DISABLE=1`` (set by the
    notebook runner and nbval, so stored notebooks carry no progress bars)."""
    off = (not enabled) or os.environ.get("TQDM_DISABLE", "") not in ("", "0")
    return tqdm(iterable, desc=desc, disable=off, leave=False, **kw)


def set_threads(n: int | None = None) -> int:
    """Use ``n`` intra-op threads (default: ``$HEADLAB_THREADS``, else all cores capped at 8 - small
    models stop scaling)."""
    n = n or int(os.environ.get("HEADLAB_THREADS") or 0) or min(os.cpu_count() or 1, 8)
    torch.set_num_threads(n)
    return n


def seed_everything(seed: int):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class TrainConfig:
    steps: int = 200
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup: int = 20
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    eval_every: int = 50
    checkpoint_every: int | None = None
    seed: int = 0
    schedule_steps: int | None = None  # the cosine's horizon (None: ``steps``); past it the lr holds at the minimum


def lr_at(step: int, tc: TrainConfig) -> float:
    if step < tc.warmup:
        return tc.lr * (step + 1) / tc.warmup
    frac = (step - tc.warmup) / max(1, (tc.schedule_steps or tc.steps) - tc.warmup)
    return tc.lr * (tc.min_lr_ratio + (1 - tc.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))


def make_optimizer(model: torch.nn.Module, tc: TrainConfig, extra_params=()):
    decay, no_decay = [], []
    for _n, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 and "embed" not in _n else no_decay).append(p)
    groups = [
        {"params": decay, "weight_decay": tc.weight_decay},
        {"params": no_decay + list(extra_params), "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=tc.lr, betas=tc.betas)


def train(
    model: torch.nn.Module,
    get_batch: Callable[[int], tuple],
    tc: TrainConfig,
    loss_fn: Callable | None = None,
    eval_fn: Callable[[torch.nn.Module], dict] | None = None,
    on_checkpoint: Callable[[int, torch.nn.Module], None] | None = None,
    progress: bool = True,
    desc: str = "train",
    start_step: int = 0,
) -> list[dict]:
    """Train ``model`` in place.

    ``get_batch(step) -> (x, y)``; ``loss_fn(model, x, y) -> (loss, extra_metrics_dict)`` defaults
    to the LM loss ``model(x, labels=y).loss``. ``eval_fn(model) -> dict`` runs at step 0, every
    ``eval_every`` steps and at the end; ``on_checkpoint(step, model)`` every ``checkpoint_every``.
    """
    opt = make_optimizer(model, tc)
    log: list[dict] = []
    loss_fn = loss_fn or (lambda m, x, y: (m(x, labels=y).loss, {}))

    def evaluate(step, train_loss):
        row = {"step": step, "train_loss": train_loss, "lr": lr_at(max(step - 1, 0), tc), "seconds": time.time() - t0}
        if eval_fn is not None:
            model.eval()
            with torch.no_grad():
                row.update(eval_fn(model))
            model.train()
        log.append(row)
        return row

    t0 = time.time()
    model.train()
    evaluate(start_step, float("nan"))
    bar = progress_bar(range(start_step, tc.steps), desc, progress)
    running = None
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = lr_at(step, tc)
        x, y = get_batch(step)
        loss, _extra = loss_fn(model, x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if tc.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        opt.step()
        lv = loss.item()
        running = lv if running is None else 0.9 * running + 0.1 * lv
        bar.set_postfix(loss=f"{running:.3f}")
        done = step + 1
        if tc.checkpoint_every and done % tc.checkpoint_every == 0 and on_checkpoint is not None:
            model.eval()
            on_checkpoint(done, model)
            model.train()
        if done % tc.eval_every == 0 or done == tc.steps:
            evaluate(done, lv)
    model.eval()
    return log


# `torchrun --nproc-per-node=N -m headlab.train ...`: data-parallel pretraining (headlab.ddp)
if __name__ == "__main__":
    import sys

    from .ddp import main

    sys.exit(main())

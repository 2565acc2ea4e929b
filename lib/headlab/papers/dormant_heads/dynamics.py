"""Pretraining dynamics on a toy task: Bigram-Backcopy (Guo et al. 2024)."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Sequence

import numpy as np
import torch

from ... import heads
from .zeroing import needs_of, record_scores

# --------------------------------------------------------------------------------------------
# pretraining dynamics on a toy task: Bigram-Backcopy (Guo et al. 2024)
# --------------------------------------------------------------------------------------------


class BigramBackcopy:
    """Token 0 is ⟨bos⟩; tokens 1..V are content. After ⟨bos⟩ and every non-trigger token, the
    next token follows a fixed random bigram table (sparse rows, so it is predictable); after a
    *trigger* token, the next token copies the token just before the trigger. Only the triggers
    need attention (to the previous-but-one token); elsewhere an attention head has nothing to do,
    which is where sink-attending, low-output ("dormant") heads come from."""

    def __init__(self, vocab: int = 64, n_triggers: int = 4, alpha: float = 0.1, seed: int = 0):
        self.V, self.bos = vocab, 0
        rng = np.random.default_rng(seed)
        self.triggers = np.arange(1, 1 + n_triggers)  # tokens 1..n_triggers
        P = rng.dirichlet(np.full(vocab, alpha), size=vocab + 1)  # rows: previous token 0..V
        self.P = np.zeros((vocab + 1, vocab + 1))
        self.P[:, 1:] = P
        self.P[0] = 0
        self.P[0, 1 + n_triggers :] = 1.0 / (vocab - n_triggers)  # first token: never a trigger
        self.P /= self.P.sum(1, keepdims=True)
        self.is_trigger = np.zeros(vocab + 1, bool)
        self.is_trigger[self.triggers] = True
        nt = self.P.copy()  # trigger-free variant
        nt[:, self.triggers] = 0
        self.P_free = nt / nt.sum(1, keepdims=True)

    @property
    def vocab_size(self) -> int:
        return self.V + 1

    def sample(
        self, n: int, length: int, seed: int, trigger_free: bool = False, trigger_boost: float = 1.0
    ) -> np.ndarray:
        """``[n, length]`` sequences starting with ⟨bos⟩."""
        rng = np.random.default_rng(seed)
        P = self.P_free if trigger_free else self.P
        if trigger_boost != 1.0 and not trigger_free:
            P = P.copy()
            P[:, self.triggers] *= trigger_boost
            P[0, self.triggers] = 0
            P /= P.sum(1, keepdims=True)
        cum = np.cumsum(P, axis=1)
        x = np.zeros((n, length), dtype=np.int64)
        for t in range(1, length):
            prev = x[:, t - 1]
            nxt = (rng.random(n)[:, None] > cum[prev]).sum(1)
            nxt = np.minimum(nxt, self.V)
            if t >= 2:
                copy = self.is_trigger[prev]
                nxt = np.where(copy, x[:, t - 2], nxt)
            x[:, t] = nxt
        return x

    def copy_positions(self, x: np.ndarray) -> np.ndarray:
        """``[n, length-1]`` bool: positions t whose next token is a copy (x[t] is a trigger, t >= 1)."""
        m = self.is_trigger[x[:, :-1]].copy()
        m[:, 0] = False
        return m


def bb_batches(task: BigramBackcopy, batch: int, length: int, seed: int = 0, trigger_boost: float = 1.0):
    """``get_batch(step) -> (x, y)`` for ``headlab.train.train``."""

    def get(step):
        s = task.sample(batch, length + 1, seed=seed * 100_003 + step, trigger_boost=trigger_boost)
        t = torch.as_tensor(s)
        return t[:, :-1], t[:, 1:]

    return get


@torch.no_grad()
def bb_copy_accuracy(model, task: BigramBackcopy, x: np.ndarray) -> float:
    """Argmax accuracy at the copy positions."""
    ids = torch.as_tensor(x)
    logits = model(ids).logits[:, :-1]
    pred = logits.argmax(-1).numpy()
    m = task.copy_positions(x)
    return float((pred == x[:, 1:])[m].mean()) if m.any() else float("nan")


def model_scores(model, ids: torch.Tensor, names: Sequence[str]) -> dict[str, np.ndarray]:
    """Scores ``[input, layer, head]`` of one unablated forward of a headlab model on ``ids``
    (switches it to eager attention for the duration when patterns are needed)."""
    with heads.eager(model) if "pattern" in needs_of(names) else contextlib.nullcontext():
        s, _ = record_scores(model, lambda: model(ids), names)
    return s


def flip_rate(states: Sequence[np.ndarray]) -> list[float]:
    """Fraction of (input, layer, head) states that change between consecutive checkpoints."""
    return [float((a != b).mean()) for a, b in itertools.pairwise(states)]


def final_level(frac: Sequence[float], tail: float = 0.2) -> float:
    """The level a noisy training curve ends at: the mean of its last ``tail`` fraction of checkpoints."""
    frac = np.asarray(frac, float)
    return float(frac[-max(1, int(round(tail * len(frac)))) :].mean())


def plateau_step(
    steps: Sequence[int], frac: Sequence[float], level: float = 0.8, window: int = 3, tail: float = 0.2
) -> int | None:
    """When a noisy curve reaches its plateau: the first checkpoint from which the rolling mean
    (``window`` checkpoints, trailing) stays at or above ``level`` x the final level (``final_level``).
    None when the final level is 0 (nothing emerged)."""
    steps, frac = np.asarray(steps), np.asarray(frac, float)
    final = final_level(frac, tail)
    if final <= 0:
        return None
    roll = np.array([frac[max(0, i - window + 1) : i + 1].mean() for i in range(len(frac))])
    ok = roll >= level * final
    for i in range(len(frac)):
        if ok[i:].all():
            return int(steps[i])
    return None

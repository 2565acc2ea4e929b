"""The Count01 task: vocabulary, formats A, A_LM and B, sampling and fixed test sets."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch


def _tensor(a) -> torch.Tensor:
    """A numpy array as a contiguous CPU tensor (no copy when already contiguous)."""
    return torch.from_numpy(np.ascontiguousarray(a))


# -- vocabulary ----------------------------------------------------------------------------------
ZERO, ONE, TWO, BOS, EOS, PAD = range(6)
VOCAB = 6
TOKEN_NAMES = ["0", "1", "2", "BOS", "EOS", "PAD"]
VARIANTS = ("A", "A_LM", "B")


@dataclass(frozen=True)
class TaskSpec:
    """The Count01 format (a reconstruction: every default is our choice, not the paper's)."""

    variant: str = "A"
    l_min: int = 1
    l_max: int = 16
    noise: float = 0.3  # probability of a 2 at each position
    lm_weight: float = 1.0  # A_LM: weight of the next-token loss on digit positions
    end_prob: float = 0.5  # B: probability of ending when the prefix is in L (> (1-q)(1-noise)/2 so EOS is the argmax)
    b_targets: str = "exact"  # B: "exact" next-token distributions on i.i.d. prefixes, or "sampled" sentences of L

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, not {self.variant!r}")
        if not 1 <= self.l_min <= self.l_max:
            raise ValueError("need 1 <= l_min <= l_max")
        if self.b_targets not in ("exact", "sampled"):
            raise ValueError("b_targets must be 'exact' or 'sampled'")

    @property
    def seq_len(self) -> int:
        return self.l_max + 2  # BOS + digits + EOS


@dataclass
class Batch:
    ids: torch.Tensor  # [n, T] long, right-padded with PAD
    pos: torch.Tensor  # [n] decision position (EOS for A, last digit for B)
    y: torch.Tensor  # [n] long, 1 iff #1 > #0 in the decided prefix
    n0: torch.Tensor
    n1: torch.Tensor
    n2: torch.Tensor
    targets: torch.Tensor | None = None  # [n, T] next-token targets for the LM losses (-100 = none)

    def __len__(self):
        return len(self.y)

    def subset(self, mask) -> Batch:
        m = torch.as_tensor(mask, dtype=torch.bool)
        return Batch(
            *(
                None if t is None else t[m]
                for t in (self.ids, self.pos, self.y, self.n0, self.n1, self.n2, self.targets)
            )
        )

    @property
    def near_tie(self) -> torch.Tensor:
        return (self.n1 - self.n0).abs() <= 1


def _digits(rng: np.random.Generator, n: int, length: int, noise: float) -> np.ndarray:
    u = rng.random((n, length))
    d = np.where(u < noise, TWO, np.where(u < noise + (1 - noise) / 2, ZERO, ONE))
    return d.astype(np.int64)


def sample_strings(rng: np.random.Generator, n: int, spec: TaskSpec) -> Batch:
    """``n`` i.i.d. strings, lengths uniform in [l_min, l_max], each digit 2 w.p. ``noise``, else 0/1
    equally. Format A/A_LM: ``BOS x EOS``, decided at EOS; format B: ``BOS x``, decided at the last digit.
    This is the test-set distribution of every format (and the training distribution of A and A_LM)."""
    L = rng.integers(spec.l_min, spec.l_max + 1, size=n)
    d = _digits(rng, n, spec.l_max, spec.noise)
    T = spec.seq_len
    ids = np.full((n, T), PAD, dtype=np.int64)
    ids[:, 0] = BOS
    valid = np.arange(spec.l_max)[None] < L[:, None]
    ids[:, 1 : spec.l_max + 1] = np.where(valid, d, PAD)
    n0 = ((d == ZERO) & valid).sum(1)
    n1 = ((d == ONE) & valid).sum(1)
    n2 = ((d == TWO) & valid).sum(1)
    y = (n1 > n0).astype(np.int64)
    if spec.variant == "B":
        pos = L.copy()  # last digit
        targets = None
    else:
        ids[np.arange(n), L + 1] = EOS
        pos = L + 1
        targets = np.full((n, T), -100, dtype=np.int64)
        targets[np.arange(n), pos] = y  # the answer token at EOS
        if spec.variant == "A_LM":  # next token after BOS and after every digit (EOS after the last)
            nxt = ids[:, 1:]
            lm = np.arange(T - 1)[None] <= L[:, None]
            targets[:, :-1] = np.where(lm, nxt, -100)
            targets[np.arange(n), pos] = y
    return Batch(
        _tensor(ids),
        _tensor(pos),
        _tensor(y),
        _tensor(n0),
        _tensor(n1),
        _tensor(n2),
        None if targets is None else _tensor(targets),
    )


def sample_sentences_B(rng: np.random.Generator, n: int, spec: TaskSpec) -> Batch:
    """Training sentences of format B: the language L = {w : #1 > #0} generated left to right. After
    each digit, a prefix in L ends with probability ``end_prob``; sentences that reach ``l_max`` digits
    are cut there (their last target is the next digit the generator would have drawn). Targets are
    the next tokens at every position (a plain LM loss). ``y``/``pos`` describe the final prefix."""
    T = spec.seq_len
    d = _digits(rng, n, spec.l_max + 1, spec.noise)
    stop_u = rng.random((n, spec.l_max))
    diff = np.cumsum((d[:, : spec.l_max] == ONE).astype(int) - (d[:, : spec.l_max] == ZERO), axis=1)
    can_end = diff > 0  # prefix of length t+1 is in L
    ends = can_end & (stop_u < spec.end_prob)
    ends[:, : spec.l_min - 1] = False
    has_end = ends.any(1)
    L = np.where(has_end, ends.argmax(1) + 1, spec.l_max)  # number of digits
    ids = np.full((n, T), PAD, dtype=np.int64)
    ids[:, 0] = BOS
    valid = np.arange(spec.l_max)[None] < L[:, None]
    ids[:, 1 : spec.l_max + 1] = np.where(valid, d[:, : spec.l_max], PAD)
    ids[np.arange(n)[has_end], L[has_end] + 1] = EOS
    targets = np.full((n, T), -100, dtype=np.int64)
    lm = np.arange(T - 1)[None] <= L[:, None]  # positions 0..L predict the next token
    targets[:, :-1] = np.where(lm, ids[:, 1:], -100)
    cut = ~has_end  # truncated sentences: the next token is the generator's next digit
    targets[np.arange(n)[cut], L[cut]] = d[cut, spec.l_max]
    n0 = ((d[:, : spec.l_max] == ZERO) & valid).sum(1)
    n1 = ((d[:, : spec.l_max] == ONE) & valid).sum(1)
    n2 = ((d[:, : spec.l_max] == TWO) & valid).sum(1)
    return Batch(
        _tensor(ids),
        _tensor(L),
        _tensor((n1 > n0).astype(np.int64)),
        _tensor(n0),
        _tensor(n1),
        _tensor(n2),
        _tensor(targets),
    )


def train_batch(rng: np.random.Generator, n: int, spec: TaskSpec) -> Batch:
    if spec.variant == "B" and spec.b_targets == "sampled":
        return sample_sentences_B(rng, n, spec)
    return sample_strings(rng, n, spec)


def next_token_dist_B(b: Batch, spec: TaskSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact next-token distribution of the language L (format B) after every prefix of ``b``'s
    strings: ``[n, T, vocab]`` and a ``[n, T]`` mask of the positions that have one (BOS and digits).
    After a prefix in L: EOS w.p. end_prob, else a digit; otherwise a digit (2 w.p. noise, 0/1 equally)."""
    ids = b.ids
    n, T = ids.shape
    diff = torch.cumsum((ids == ONE).long() - (ids == ZERO).long(), dim=1)  # after position t
    in_L = diff > 0
    q, rho = spec.end_prob, spec.noise
    digit = torch.tensor([(1 - rho) / 2, (1 - rho) / 2, rho, 0, 0, 0])
    eos = torch.zeros(VOCAB)
    eos[EOS] = 1.0
    dist = torch.where(in_L[..., None], q * eos + (1 - q) * digit, digit.expand(n, T, VOCAB))
    mask = torch.arange(T)[None] <= b.pos[:, None]
    return dist, mask


def test_set(spec: TaskSpec, n: int, seed: int) -> Batch:
    """The fixed held-out set: i.i.d. strings from their own generator (``seed`` should differ from
    every training seed; the notebook uses ``seed + 10_000``). Near-ties: ``batch.near_tie``."""
    return sample_strings(np.random.default_rng(seed), n, spec)


def describe(b: Batch) -> dict:
    """Class balance and tie statistics of a set."""
    return {
        "n": len(b),
        "positive_rate": b.y.float().mean().item(),
        "tie_rate": (b.n1 == b.n0).float().mean().item(),
        "near_tie_rate": b.near_tie.float().mean().item(),
        "mean_length": (b.n0 + b.n1 + b.n2).float().mean().item(),
    }


def task_examples(spec: dict[str, TaskSpec], n: int = 6, seed: int = 5, variants=("A", "B")) -> pd.DataFrame:
    """Fig. 1: the same ``n`` strings (``test_set`` with ``seed``) in each format of ``variants`` (``spec``:
    ``{variant: TaskSpec}``), one row each: tokens, counts, label, decision position and the target there
    (format A: the answer token; format B: ``EOS`` for a sentence of the language, else a digit)."""
    rows = []
    for v in variants:
        b = test_set(spec[v], n, seed)
        for i in range(len(b)):
            y = int(b.y[i])
            rows.append(
                {
                    "variant": v,
                    "example": i,
                    "tokens": " ".join(TOKEN_NAMES[t] for t in b.ids[i].tolist() if t != PAD),
                    "n0": int(b.n0[i]),
                    "n1": int(b.n1[i]),
                    "n2": int(b.n2[i]),
                    "label_more_ones": y,
                    "decision_pos": int(b.pos[i]),
                    "target": ("1" if y else "0") if v == "A" else ("EOS" if y else "a digit"),
                }
            )
    return pd.DataFrame(rows)

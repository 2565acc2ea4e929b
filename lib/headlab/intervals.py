"""95 % intervals over the real unit of replication, for the claims tables: a percentile bootstrap over units
(items, prompts, windows), a t-interval over seeds, a Wilson interval for a share, and an exact sign-flip
interval for paired differences."""

from __future__ import annotations

import math

import numpy as np

LEVEL = 0.95
N_BOOT = 2000


class Clusters:
    """Draws of a cluster bootstrap: rows that share a label (the prompt several generated items were made from,
    the document several windows were cut from) are one unit of replication and are resampled together.

    ``labels``: one hashable per row; rows with distinct labels are independent units (so ``np.arange(n)`` is the
    plain row bootstrap). ``draw(rng, factor)`` returns the row indices of one replicate: ``factor x n`` units
    drawn with replacement, each bringing all its rows (the length varies between replicates).
    """

    def __init__(self, labels):
        lab = np.asarray(labels)
        _, inv = np.unique(lab, return_inverse=True)
        order = np.argsort(inv, kind="stable")
        self.groups = np.split(order, np.cumsum(np.bincount(inv))[:-1]) if len(lab) else []
        self.n_rows = len(lab)
        self.singletons = len(self.groups) == self.n_rows  # every row its own unit

    @property
    def n(self) -> int:
        """The number of units."""
        return len(self.groups)

    def draw(self, rng: np.random.Generator, factor: int = 1) -> np.ndarray:
        pick = rng.integers(0, self.n, factor * self.n)
        if self.singletons:
            return np.concatenate(self.groups)[pick] if self.n else pick
        return np.concatenate([self.groups[i] for i in pick])


def bootstrap(units, stat=np.mean, n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL, clusters=None):
    """Percentile bootstrap over the first axis of ``units`` (items, prompts, paragraphs, ...).

    ``units``: array ``[n, ...]``; ``stat`` maps a resampled array of the same shape to a float.
    ``clusters``: optional label per row; rows with one label are resampled together (``Clusters``) and ``n`` is
    then the number of labels. Returns ``(estimate, low, high, n)``. Deterministic for a given ``seed``.
    """
    x = np.asarray(units, dtype=float)
    if len(x) == 0:
        return math.nan, math.nan, math.nan, 0
    cl = Clusters(np.arange(len(x)) if clusters is None else clusters)
    if cl.n_rows != len(x):
        raise ValueError(f"clusters has {cl.n_rows} labels for {len(x)} rows")
    n = cl.n
    est = float(stat(x))
    if n < 2:
        return est, math.nan, math.nan, n
    rng = np.random.default_rng(seed)
    if clusters is None:  # the plain row bootstrap, drawn as before (same replicates for a given seed)
        draws = rng.integers(0, n, size=(n_boot, n))
    else:
        draws = [cl.draw(rng) for _ in range(n_boot)]
    boots = np.array([stat(x[i]) for i in draws], dtype=float)
    boots = boots[np.isfinite(boots)]
    if len(boots) == 0:
        return est, math.nan, math.nan, n
    a = (1 - level) / 2
    return est, float(np.quantile(boots, a)), float(np.quantile(boots, 1 - a)), n


def seed_interval(values, level: float = LEVEL):
    """Mean over seeds with a Student-t interval (the spread over seeds is the unit of replication).

    Returns ``(mean, low, high, n)``; the interval is NaN for fewer than two seeds.
    """
    from scipy import stats

    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    n = len(x)
    if n == 0:
        return math.nan, math.nan, math.nan, 0
    m = float(x.mean())
    if n < 2:
        return m, math.nan, math.nan, n
    sd = float(x.std(ddof=1))
    if sd == 0.0:
        return m, m, m, n
    h = float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return m, m - h, m + h, n


def wilson(k: int, n: int, level: float = LEVEL):
    """A proportion ``k / n`` with its Wilson score interval: ``(p, low, high, n)``."""
    from scipy import stats

    if n == 0:
        return math.nan, math.nan, math.nan, 0
    z = float(stats.norm.ppf(0.5 + level / 2))
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    lo, hi = (0.0 if k == 0 else max(0.0, c - h)), (1.0 if k == n else min(1.0, c + h))
    return p, lo, hi, n


def sign_flip_interval(diffs, level: float = LEVEL):
    """Paired differences over seeds or items: the t-interval of their mean (alias kept for readability)."""
    return seed_interval(diffs, level)

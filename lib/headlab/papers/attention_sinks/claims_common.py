"""Helpers shared by the claim rules of notebook 04 (``claims`` and ``claims_pretraining``): reading a run's
optional CSVs and parameters, per-prompt series, and a two-group bootstrap (no model, no torch)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from ...claims import read_optional


def chance_score(T: int) -> float:
    """Uniform causal attention's first-position score, H_T / T (as ``sinks.chance_score``, without torch)."""
    return sum(1.0 / i for i in range(1, T + 1)) / T


_opt = read_optional  # a table the run may not have saved


def load_params(folder: Path) -> dict[str, str]:
    d = _opt(folder, "run_params")
    return {} if d is None else {str(k): str(v) for k, v in zip(d["param"], d["value"], strict=True)}


def _eps(params: dict) -> tuple[float, float]:
    e = [float(x) for x in params.get("eps", "0.3,0.8").split(",")]
    return e[0], e[-1]


def _bool(x) -> bool:
    return str(x).strip().lower() in ("true", "1")


def _exp10(interval):
    est, lo, hi, n = interval
    return 10**est, 10**lo, 10**hi, n


def two_group_bootstrap(a, b, stat, n_boot: int = 2000, seed: int = 0, level: float = 0.95):
    """``stat(a, b)`` with a percentile interval from resampling each group separately (stratified),
    e.g. sink vs non-sink KV heads. Returns ``(estimate, low, high, n_a + n_b)``."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    n = len(a) + len(b)
    if len(a) == 0 or len(b) == 0:
        return math.nan, math.nan, math.nan, n
    est = float(stat(a, b))
    if len(a) < 2 or len(b) < 2:
        return est, math.nan, math.nan, n
    rng = np.random.default_rng(seed)
    ia, ib = rng.integers(0, len(a), (n_boot, len(a))), rng.integers(0, len(b), (n_boot, len(b)))
    boots = np.array([stat(a[i], b[j]) for i, j in zip(ia, ib, strict=True)], float)
    q = (1 - level) / 2
    return est, float(np.quantile(boots, q)), float(np.quantile(boots, 1 - q)), n


def _per_prompt(sp: pd.DataFrame, model: str, bos: bool, col: str) -> pd.Series:
    d = sp[(sp.model == model) & (sp.bos.map(_bool) == bos)].sort_values("prompt")
    return d.set_index("prompt")[col]


def _trained_with_bos(params: dict, model: str) -> bool:
    return _bool(params.get(f"trained_with_bos:{model}", "True"))

"""Comparing lenses, as functions of the per-text frame ``measure`` saves: every statistic is a mean over texts,
and its 95 % interval a percentile bootstrap over texts (resampled together for every head, so the heads'
dependence is kept). Head maps are means over texts; rank correlations are Spearman over heads."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats as st

from ..intervals import LEVEL

# lens -> (paper, what it measures, sign: +1 if a high value predicts an important head, -1 if low does)
LENSES: dict[str, tuple[str, str, int]] = {
    "ahon_ln": ("dormant heads", "mean head output norm / layer mean (AHON-LN)", +1),
    "dormant_share": ("dormant heads", "share of texts on which AHON-LN is below the 10 % quantile", -1),
    "sink": ("attention sinks", "mean attention on position 0, as trained (= the dormant paper's AWFT)", -1),
    "sink_other": ("attention sinks", "mean attention on position 0, other ⟨bos⟩ condition", -1),
    "kv_cka": ("DHA", "largest linear CKA of the head's K|V with another KV head of its layer", -1),
    "z_cka": ("DHA", "largest linear CKA of the head's z with another head of its layer", -1),
    "router_qnorm": ("MoH", "share of tokens the query-norm router puts the head in the top half", +1),
    "router_oracle": ("MoH", "share of tokens ‖z W_O‖ puts the head in the top half (oracle router)", +1),
    "attr_mean": ("causal", "attribution patching: first-order ΔNLL of mean-ablating the head", +1),
    "attr_zero": ("causal", "attribution patching: first-order ΔNLL of zero-ablating the head", +1),
}
DORMANT_Q = 0.1  # the dormant lens's quantile (of AHON-LN over texts x heads), and the "bottom 10 %" of a lens
COST_TOL = 0.01  # a head whose ablation raises the loss by < 1 % of the unablated loss "costs nothing"
N_BOOT = 1000


def cube(per_text: pd.DataFrame, col: str) -> np.ndarray:
    """``[text, layer * head]`` of one column of one model's per-text frame."""
    d = per_text.sort_values(["text", "layer", "head"])
    n = d["text"].nunique()
    return d[col].to_numpy(float).reshape(n, -1)


def with_dormant_share(per_text: pd.DataFrame, q: float = DORMANT_Q) -> pd.DataFrame:
    """Add ``dormant_share``: 1 where the text's AHON-LN is at or below the q-quantile of all (text, head)
    AHON-LN values of that model (so its mean over texts is the share of texts flagging the head)."""
    out = []
    for _, d in per_text.groupby("model", sort=False):
        d = d.copy()
        d["dormant_share"] = (d["ahon_ln"] <= d["ahon_ln"].quantile(q)).astype(float)
        out.append(d)
    return pd.concat(out, ignore_index=True)


def head_means(per_text: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, layer, head): the mean of every lens over texts."""
    cols = [c for c in LENSES if c in per_text] + ["ahon"]
    return per_text.groupby(["model", "layer", "head"], sort=False)[cols].mean().reset_index()


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3:
        return math.nan
    return float(_rank_corr(np.asarray(a, float)[ok], np.asarray(b, float)[ok]))


def _boot_idx(n: int, n_boot: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def _interval(est: float, boots, n: int) -> tuple[float, float, float, int]:
    b = np.asarray(boots, float)
    b = b[np.isfinite(b)]
    if len(b) < 10:
        return est, math.nan, math.nan, n
    a = (1 - LEVEL) / 2
    return est, float(np.quantile(b, a)), float(np.quantile(b, 1 - a)), n


def text_bootstrap(per_text: pd.DataFrame, stat, cols, n_boot: int = N_BOOT, seed: int = 0):
    """``stat({col: [layer * head] means})`` with a bootstrap over texts: ``(est, low, high, n_texts)``."""
    cubes = {c: cube(per_text, c) for c in cols}
    n = next(iter(cubes.values())).shape[0]
    est = stat({c: x.mean(0) for c, x in cubes.items()})
    boots = [stat({c: x[i].mean(0) for c, x in cubes.items()}) for i in _boot_idx(n, n_boot, seed)]
    return _interval(est, boots, n)


def _rank_corr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman over the last axis of ``a`` and ``b`` (ties averaged), vectorised over leading axes; NaN where
    either side is constant or not finite."""
    ok = np.isfinite(a).all(-1) & np.isfinite(b).all(-1)
    ra = st.rankdata(np.where(np.isfinite(a), a, 0), axis=-1)
    rb = st.rankdata(np.where(np.isfinite(b), b, 0), axis=-1)
    ra, rb = ra - ra.mean(-1, keepdims=True), rb - rb.mean(-1, keepdims=True)
    den = np.sqrt((ra * ra).sum(-1) * (rb * rb).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (ra * rb).sum(-1) / den
    return np.where(ok & (den > 0), r, np.nan)


def correlations(per_text: pd.DataFrame, n_boot: int = N_BOOT) -> pd.DataFrame:
    """Spearman between every pair of lenses over heads, per model, with a bootstrap over texts."""
    rows = []
    for model, d in per_text.groupby("model", sort=False):
        cols = [c for c in LENSES if c in d and d[c].notna().all()]
        x = np.stack([cube(d, c) for c in cols])  # [lens, text, head]
        n = x.shape[1]
        idx = _boot_idx(n, n_boot, 0)
        means = x.mean(1)  # [lens, head]
        boot = np.stack([x[:, i].mean(1) for i in idx])  # [boot, lens, head]
        for i, a in enumerate(cols):
            for j in range(i + 1, len(cols)):
                est = float(_rank_corr(means[i], means[j]))
                est, lo, hi, _ = _interval(est, _rank_corr(boot[:, i], boot[:, j]), n)
                rows.append(dict(model=model, lens_a=a, lens_b=cols[j], rho=est, ci_low=lo, ci_high=hi, n_texts=n))
    return pd.DataFrame(rows)


def _bottom(x: np.ndarray, sign: int, frac: float = DORMANT_Q) -> np.ndarray:
    """Indices of the ``frac`` of heads the lens predicts least important."""
    k = max(1, int(round(frac * len(x))))
    return np.argsort(sign * x, kind="stable")[:k]


def prediction(per_text: pd.DataFrame, exact: pd.DataFrame, n_boot: int = N_BOOT) -> pd.DataFrame:
    """How well each lens predicts causal importance, per model:

    * ``rho_attr``: Spearman of sign * lens with the attribution cost of mean ablation, over every head;
    * ``rho_exact``: the same with the exact mean-ablation ΔNLL, over the exactly ablated sample;
    * ``precision``: share of the lens's bottom 10 % whose attribution cost is below ``COST_TOL`` x the
      unablated loss; ``base_rate``: that share among all heads.
    Intervals: bootstrap over texts (and over the sampled heads for ``rho_exact``)."""
    rows = []
    for model, d in per_text.groupby("model", sort=False):
        lenses = [c for c in LENSES if c in d and d[c].notna().all()]
        sign = np.array([LENSES[c][2] for c in lenses], float)[:, None]
        x = np.stack([cube(d, c) for c in lenses])  # [lens, text, head]
        nll, cost = cube(d, "nll")[:, 0], cube(d, "attr_mean")  # [text], [text, head]
        ex = exact[exact["model"] == model]
        H = int(d["head"].max()) + 1
        pv = ex.pivot_table(index="text", columns=["layer", "head"], values="dnll_mean").sort_index()
        flat = np.array([l * H + h for l, h in pv.columns], dtype=int)
        exv = pv.to_numpy(float)  # [text, sampled head]
        n, k = len(nll), len(flat)
        t_idx = np.vstack([np.arange(n), _boot_idx(n, n_boot, 0)])  # row 0: the estimate
        h_idx = np.vstack([np.arange(k), np.random.default_rng(1).integers(0, k, size=(n_boot, k))])
        m = sign[None] * np.stack([x[:, i].mean(1) for i in t_idx])  # [boot, lens, head], high = important
        c = np.stack([cost[i].mean(0) for i in t_idx])  # [boot, head]
        e = np.stack([exv[i].mean(0)[h] for i, h in zip(t_idx, h_idx, strict=True)])  # [boot, k]
        cheap = c < COST_TOL * np.array([nll[i].mean() for i in t_idx])[:, None]  # [boot, head]
        n_low = max(1, int(round(DORMANT_Q * m.shape[-1])))
        low = np.argsort(m, axis=-1, kind="stable")[..., :n_low]  # [boot, lens, n_low]
        out = {
            "rho_attr": _rank_corr(m, c[:, None]),
            "rho_exact": _rank_corr(np.take_along_axis(m, flat[h_idx][:, None, :], -1), e[:, None]),
            "precision": np.take_along_axis(np.broadcast_to(cheap[:, None], m.shape), low, -1).mean(-1),
            "base_rate": np.broadcast_to(cheap.mean(-1)[:, None], m.shape[:2]),
        }
        for j, lens in enumerate(lenses):
            row = dict(model=model, lens=lens, n_texts=n, n_exact=k)
            for key, v in out.items():
                est, lo, hi, _ = _interval(float(v[0, j]), v[1:, j], n)
                row.update({key: est, f"{key}_low": lo, f"{key}_high": hi})
            rows.append(row)
    return pd.DataFrame(rows)


def stability(per_text: pd.DataFrame) -> pd.DataFrame:
    """Per model and lens, the Spearman over heads between the head maps of every pair of text types."""
    rows = []
    for model, d in per_text.groupby("model", sort=False):
        types = list(dict.fromkeys(d["type"]))
        for lens in LENSES:
            if lens not in d or not d[lens].notna().any():
                continue
            maps = {t: d[d["type"] == t].groupby(["layer", "head"])[lens].mean().to_numpy() for t in types}
            for i, a in enumerate(types):
                for b in types[i + 1 :]:
                    rows.append(dict(model=model, lens=lens, type_a=a, type_b=b, rho=_spearman(maps[a], maps[b])))
    return pd.DataFrame(rows)


def attribution_table(per_text: pd.DataFrame, exact: pd.DataFrame) -> pd.DataFrame:
    """Exact and first-order ΔNLL of each sampled head (means over texts), zero and mean ablation."""
    ex = exact.groupby(["model", "layer", "head", "group"], sort=False)[["dnll_zero", "dnll_mean"]].mean()
    at = per_text.groupby(["model", "layer", "head"], sort=False)[["attr_zero", "attr_mean"]].mean()
    j = ex.reset_index().merge(at.reset_index(), on=["model", "layer", "head"])
    rows = [
        j[["model", "layer", "head", "group"]].assign(ablation=k, exact=j[f"dnll_{k}"], attribution=j[f"attr_{k}"])
        for k in ("zero", "mean")
    ]
    return pd.concat(rows, ignore_index=True)

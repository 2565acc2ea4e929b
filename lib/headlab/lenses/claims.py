"""Notebook 06's claims table: OUR hypotheses about how the five lenses relate (no paper makes these claims),
computed from the two CSVs the notebook saves (``lens_per_text.csv``, ``exact_ablation.csv``).

Rules, fixed before the first run (every row is a ``hypothesis``; unit of replication: texts, and for the
exactly ablated sample also heads; 95 % percentile bootstrap, 1,000 resamples, seeded):

* L1  heads flagged dormant by AHON-LN (lowest 10 % of mean AHON-LN) cost less to mean-ablate than random
      heads: mean exact ΔNLL (dormant sample) - mean exact ΔNLL (random sample) < 0, every model;
* L2  sink heads and dormant heads are different sets: Jaccard of the top 10 % by sink score and the bottom
      10 % by AHON-LN < 0.5, every model;
* L3  attribution patching ranks heads as exact mean-ablation does: Spearman over the sampled heads > 0.5;
* L4  the oracle router (‖z W_O‖) predicts causal importance better than the query-norm router: difference of
      their Spearman with the attribution cost over all heads > 0;
* L5  AHON-LN predicts causal importance: Spearman of mean AHON-LN with the exact mean-ablation ΔNLL over
      the sampled heads > 0 (the sample is enriched in dormant heads by design; said so).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..claims import Claims, Published, compound, greater, less, read
from .stats import DORMANT_Q, _boot_idx, _interval, _spearman, cube

PAPER = "five_lenses"
OURS = Published("—", "ours (headlab issue 20); no paper makes this claim")
N_BOOT = 1000
JACCARD_MAX = 0.5
RANK_MIN = 0.5


def _exact_cube(exact: pd.DataFrame, model: str, H: int):
    ex = exact[exact["model"] == model]
    pv = ex.pivot_table(index="text", columns=["layer", "head"], values="dnll_mean").sort_index()
    groups = ex.drop_duplicates(["layer", "head"]).set_index(["layer", "head"])["group"]
    flat = np.array([l * H + h for l, h in pv.columns], dtype=int)
    return pv.to_numpy(float), flat, np.array([groups[c] for c in pv.columns])


def _boot_pair(n_text: int, n_head: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, n_text, size=(N_BOOT, n_text)), rng.integers(0, n_head, size=(N_BOOT, n_head))


def l1(per_text, exact, model, H):
    ev, _, grp = _exact_cube(exact, model, H)
    d_idx, r_idx = np.flatnonzero(grp == "dormant"), np.flatnonzero(grp == "random")
    if len(d_idx) < 2 or len(r_idx) < 2:
        return None

    def stat(ti, di, ri):
        m = ev[ti].mean(0)
        return float(m[di].mean() - m[ri].mean())

    ti, _ = _boot_pair(len(ev), 1)
    rng = np.random.default_rng(2)
    boots = [
        stat(t, d_idx[rng.integers(0, len(d_idx), len(d_idx))], r_idx[rng.integers(0, len(r_idx), len(r_idx))])
        for t in ti
    ]
    est = stat(np.arange(len(ev)), d_idx, r_idx)
    e, lo, hi, _ = _interval(est, boots, len(ev))
    return less(
        "mean exact ΔNLL, dormant sample - random sample (nats)",
        (e, lo, hi, len(ev)),
        f"texts (x {len(d_idx)} dormant, {len(r_idx)} random heads)",
    )


def _jaccard(sink: np.ndarray, ahon: np.ndarray) -> float:
    k = max(1, int(round(DORMANT_Q * len(sink))))
    a, b = set(np.argsort(-sink, kind="stable")[:k]), set(np.argsort(ahon, kind="stable")[:k])
    return len(a & b) / len(a | b)


def l2(per_text, model):
    s, a = cube(per_text, "sink"), cube(per_text, "ahon_ln")
    idx = _boot_idx(len(s), N_BOOT, 0)
    est = _jaccard(s.mean(0), a.mean(0))
    e, lo, hi, n = _interval(est, [_jaccard(s[i].mean(0), a[i].mean(0)) for i in idx], len(s))
    return less("Jaccard(top 10 % sink, bottom 10 % AHON-LN)", (e, lo, hi, n), "texts", threshold=JACCARD_MAX)


def _rank_vs_exact(per_text, exact, model, H, col):
    ev, flat, _ = _exact_cube(exact, model, H)
    x = cube(per_text, col)
    ti, hi_ = _boot_pair(len(ev), len(flat))
    est = _spearman(x.mean(0)[flat], ev.mean(0))
    boots = [_spearman(x[t].mean(0)[flat[h]], ev[t].mean(0)[h]) for t, h in zip(ti, hi_, strict=True)]
    return _interval(est, boots, len(ev)), len(flat)


def l3(per_text, exact, model, H):
    iv, k = _rank_vs_exact(per_text, exact, model, H, "attr_mean")
    return greater(
        "Spearman(attribution, exact mean-ablation ΔNLL)", iv, f"texts (x {k} sampled heads)", threshold=RANK_MIN
    )


def l4(per_text, model):
    cost, o, q = cube(per_text, "attr_mean"), cube(per_text, "router_oracle"), cube(per_text, "router_qnorm")
    if not np.isfinite(q).any():
        return None

    def stat(i):
        c = cost[i].mean(0)
        return _spearman(o[i].mean(0), c) - _spearman(q[i].mean(0), c)

    est = stat(np.arange(len(cost)))
    iv = _interval(est, [stat(i) for i in _boot_idx(len(cost), N_BOOT, 0)], len(cost))
    return greater("Spearman(oracle, cost) - Spearman(query norm, cost)", iv, "texts")


def l5(per_text, exact, model, H):
    iv, k = _rank_vs_exact(per_text, exact, model, H, "ahon_ln")
    return greater("Spearman(AHON-LN, exact mean-ablation ΔNLL)", iv, f"texts (x {k} sampled heads)")


def build(folder: Path, profile: str) -> Claims:
    per_text, exact = read(folder, "lens_per_text"), read(folder, "exact_ablation")
    C = Claims(PAPER, profile)
    models = list(dict.fromkeys(per_text["model"]))
    parts: dict[str, dict] = {k: {} for k in ("L1", "L2", "L3", "L4", "L5")}
    for m in models:
        d = per_text[per_text["model"] == m]
        H = int(d["head"].max()) + 1
        for key, ev in (
            ("L1", l1(d, exact, m, H)),
            ("L2", l2(d, m)),
            ("L3", l3(d, exact, m, H)),
            ("L4", l4(d, m)),
            ("L5", l5(d, exact, m, H)),
        ):
            if ev is not None:
                parts[key][m] = ev
    rows = {
        "L1": "Heads flagged dormant by AHON-LN cost less to mean-ablate than random heads",
        "L2": "Sink heads and dormant heads are different sets",
        "L3": "Attribution patching ranks heads as exact mean-ablation does",
        "L4": "The oracle router predicts causal importance better than the query-norm router",
        "L5": "AHON-LN predicts causal importance",
    }
    for key, statement in rows.items():
        if not parts[key]:
            C.inconclusive(key, statement, OURS, "", "not measurable on these models", kind="hypothesis")
            continue
        e = compound(parts[key])
        ours = "; ".join(f"{m}: {v.estimate:.3g} [{v.ci_low:.3g}, {v.ci_high:.3g}]" for m, v in parts[key].items())
        C.add(key, statement, OURS, ours, e, kind="hypothesis")
    base = {m: float(per_text[per_text["model"] == m].groupby("text")["nll"].first().mean()) for m in models}
    C.check(
        "S1",
        "Premise: every model predicts the texts well below a uniform guess (mean NLL < 8 nats)",
        all(v < 8 for v in base.values()),
        "; ".join(f"{m}: {v:.3f} nats" for m, v in base.items()),
    )
    finite = all(math.isfinite(v) for v in per_text[["ahon_ln", "sink", "attr_mean"]].to_numpy().ravel())
    C.check("S2", "Every head has finite AHON-LN, sink score and attribution on every text", finite, str(finite))
    return C

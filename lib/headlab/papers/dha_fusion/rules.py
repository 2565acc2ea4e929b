"""The rules: per-claim evidence as pure functions of the tidy frames (tested on hand-made frames)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ...claims import Evidence, greater, less, read
from ...intervals import bootstrap, seed_interval, wilson
from .published import LEVEL, NOTEBOOK


# ------------------------------------------------------------------------------------------------- helpers
def borrowed_interval(diff: float, sd: float, df: int, level: float = LEVEL):
    """One paired difference (one seed) with a t-interval whose SD is borrowed from replicated arms.

    ``sd``: SD over seeds of a comparable paired difference; ``df``: its degrees of freedom (seeds - 1).
    Returns ``(diff, low, high, 1)``; the interval is NaN when nothing can be borrowed (``df < 1``)."""
    from scipy import stats

    if not (df >= 1 and math.isfinite(sd)):
        return float(diff), math.nan, math.nan, 1
    h = float(stats.t.ppf(0.5 + level / 2, df)) * sd
    return float(diff), float(diff) - h, float(diff) + h, 1


def tokens_to_reach(tokens, loss, target: float) -> float:
    """First token count at which a (tokens, loss) curve reaches ``target`` (linear interpolation); inf if never."""
    t, y = list(tokens), list(loss)
    if y[0] <= target:
        return float(t[0])
    for i in range(1, len(t)):
        if y[i] <= target:
            return float(t[i - 1] + (t[i] - t[i - 1]) * (y[i - 1] - target) / (y[i - 1] - y[i]))
    return math.inf


def per_seed(curve: pd.DataFrame, budget: float) -> pd.DataFrame:
    """One row per arm seed at ``budget`` from the loss-vs-tokens curves: GQA and DHA init and final losses
    (final = at DHA's total tokens, the equal budget), GQA minus DHA at DHA's evaluations after collapse,
    and the acceleration (tokens GQA needs to reach DHA's final loss / DHA's tokens)."""
    rows = []
    c = curve[np.isclose(curve.budget, budget)]
    for s, g in c.groupby("seed"):
        gq = g[g.arm == "GQA"].sort_values("tokens")
        dh = g[g.arm == "DHA"].sort_values("tokens")
        after = dh[dh.phase != "fusion"]
        n_tok = float(dh.tokens.max())
        adv = [
            float(np.interp(t, gq.tokens, gq.loss)) - float(v) for t, v in zip(after.tokens, after.loss, strict=True)
        ]
        dfin = float(dh.loss.iloc[-1])
        rows.append(
            {
                "seed": int(s),
                "gqa_init": float(gq[gq.phase == "init"].loss.iloc[0]),
                "dha_init": float(dh[dh.phase == "init"].loss.iloc[0]),
                "gqa_final": float(np.interp(n_tok, gq.tokens, gq.loss)),
                "dha_final": dfin,
                "tokens": n_tok,
                "first_tokens": float(after.tokens.iloc[0]),
                "adv": adv,
                "accel": tokens_to_reach(gq.tokens, gq.loss, dfin) / n_tok,
            }
        )
    return pd.DataFrame(rows)


def _sd(x) -> tuple[float, int]:
    x = np.asarray(x, dtype=float)
    return (float(x.std(ddof=1)), len(x) - 1) if len(x) >= 2 else (math.nan, 0)


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def _fmt_b(b: float) -> str:
    return f"{b:.0%}"


def _ci(iv) -> str:
    est, lo, hi, n = iv
    return f"{est:+.3f} [{lo:+.3f}, {hi:+.3f}]" if math.isfinite(lo) else f"{est:+.3f} (no interval, n={n})"


def device_of(folder: Path, profile: str) -> str:
    """The run's device: ``run_params.csv`` when the run saved it, else the profile's parameters."""
    p = Path(folder) / "run_params.csv"
    if p.exists():
        d = pd.read_csv(p).set_index("name").value
        return str(d["device"])
    from ...profiles import NOTEBOOKS

    params = NOTEBOOKS[NOTEBOOK].params
    return str(params.get(profile, {}).get("device", params["smoke"]["device"]))


def exact_values(folder: Path) -> dict:
    """C1-C4 raw numbers: ``exact_checks.csv`` (+ ``c1_budgets.csv``) when saved; a run that predates them
    (the gpu run) has them only in its execution log ``gpu_exec.log``, whose printed lines are parsed."""
    folder = Path(folder)
    if (folder / "exact_checks.csv").exists():
        v = read(folder, "exact_checks").set_index("name").value.astype(float).to_dict()
        c1 = read(folder, "c1_budgets")
        dec = c1.get("decode_max_abs_diff", pd.Series(dtype=float)).dropna()
        ok_dec = c1.get("decode_cache_bytes_ok", pd.Series(dtype=object)).dropna()
        v["c1_ok"] = bool(
            ((c1.k_heads == c1.target) & (c1.v_heads == c1.target)).all()
            and np.allclose(c1.kv_bytes_per_token, c1.budget_x_source_bytes, rtol=0, atol=1e-6)
            and ok_dec.astype(str).eq("True").all()
            and (dec < 1e-4).all()
        )
        v["c1_n"] = len(c1)
        v["source"] = "exact_checks.csv"
        return v
    log = folder / "gpu_exec.log"
    if not log.exists():
        raise FileNotFoundError(f"{folder}: neither exact_checks.csv nor gpu_exec.log holds the C1-C4 numbers")
    text = log.read_text()
    num = r"([0-9.]+e[-+][0-9]+|[0-9.]+)"
    m2 = re.search(r"C2 identity fusion vs MHA: max \|Δlogit\| = " + num, text)
    m3 = re.search(r"C3 collapse of identical members: DHA " + num + ", GQA " + num, text)
    m4 = re.search(r"C4 RoPE: scalar fusion " + num + r"; within-head mixing \(control\) " + num, text)
    m1 = re.search(r"C1 all budgets exact: (True|False)", text)
    table = text[: m1.start()].split("decode_max_abs_diff")[-1]
    return {
        "c1_ok": m1.group(1) == "True",
        "c1_n": sum(1 for ln in table.splitlines() if ln.strip()),
        "c2_identity_fusion": float(m2.group(1)),
        "c3_collapse_dha": float(m3.group(1)),
        "c3_collapse_gqa": float(m3.group(2)),
        "c4_rope_scalar": float(m4.group(1)),
        "c4_rope_control": float(m4.group(2)),
        "source": "gpu_exec.log (the run predates exact_checks.csv)",
    }


def gap_r(seeds: pd.DataFrame, l_mha: float) -> np.ndarray:
    return ((seeds.gqa_init - seeds.dha_init) / (seeds.gqa_init - l_mha)).to_numpy()


def r_evidence(seeds: pd.DataFrame, l_mha: float, b: float) -> Evidence:
    return greater(
        f"gap closure r at {_fmt_b(b)}",
        seed_interval(gap_r(seeds, l_mha)),
        "seeds",
        0.3,
        "r = (L_GQA,init - L_DHA,init) / (L_GQA,init - L_MHA) per seed; reproduced if the 95% t-interval "
        "over seeds lies above 0.3 (our threshold), not if at or below",
    )


def paired_less(stat: str, diffs, threshold: float = 0.0, rule: str | None = None) -> Evidence:
    return less(stat, seed_interval(diffs), "seeds", threshold, rule)


def single_less(
    stat: str, diff: float, sd: float, df: int, threshold: float = 0.0, rule: str | None = None
) -> Evidence:
    unit = f"seed (SD of the main arms' paired DHA - GQA difference borrowed, df {df})" if df >= 1 else "seed"
    return less(stat, borrowed_interval(diff, sd, df), unit, threshold, rule)


def redundancy_parts(f3b: pd.DataFrame) -> dict[str, Evidence]:
    """Spread over layers of per-layer redundancy, K and V, one part per distinct model (a model whose rows
    repeat another's, such as the MHA source standing in for the analysis model, is counted once)."""
    parts, seen = {}, []
    for model, d in f3b.groupby("model", sort=False):
        key = d[["kind", "layer", "redundancy"]].round(6).to_numpy().tolist()
        if key in seen:
            continue
        seen.append(key)
        for kind in ("K", "V"):
            r = d[d.kind == kind].sort_values("layer").redundancy.to_numpy()
            cv = lambda x: float(np.std(x, ddof=1) / np.mean(x))  # noqa: E731  (as the notebook: pandas std)
            parts[f"{model}/{kind}"] = greater(
                "CV over layers of mean pairwise CKA",
                bootstrap(r, cv),
                "layers",
                0.05,
                "bootstrap over layers; reproduced if the 95% interval lies above 0.05",
            )
    return parts


def allocation_parts(f5: pd.DataFrame) -> dict[str, Evidence]:
    """DHA search's per-layer counts on the MHA source against the uniform counts of the same budget."""
    f5 = f5[f5.model == "MHA source"]
    get = lambda a, kind: f5[(f5.allocation == a) & (f5.kind == kind)].sort_values("layer").heads.to_numpy()  # noqa: E731
    k, v, uk, uv = get("DHA search", "K"), get("DHA search", "V"), get("uniform", "K"), get("uniform", "V")
    L = len(k)
    off = int(np.sum((k != uk) | (v != uv)))
    kv = int(np.sum(k != v))
    return {
        "layers off uniform": greater(
            "share of layers whose DHA K or V count differs from uniform",
            wilson(off, L),
            "layers",
            0.25,
            "Wilson interval over layers; reproduced if it lies above 0.25",
        ),
        "K != V": greater(
            "share of layers whose DHA K count differs from its V count",
            wilson(kv, L),
            "layers",
            0.0,
            "Wilson interval over layers; reproduced if it lies above 0",
        ),
    }

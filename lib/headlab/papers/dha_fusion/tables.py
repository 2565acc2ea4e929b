"""The notebook's tables, built from the arms' results and the search's allocations: Table 1 (MHA vs GQA vs DHA
at equal KV budget) and its gap closures, Table 2 (ablations), Fig. 5's head counts, and the run parameters
the claims module reads."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from ...nn import HeadlabLM
from .arms import gap_closure
from .checks import kv_cache_bytes
from .grouping import counts
from .merge import collapse

TABLE2_COLUMNS = [
    "arm",
    "alloc",
    "init",
    "k_counts",
    "v_counts",
    "search_steps",
    "fusion_steps",
    "ct_steps",
    "init_loss",
    "final_loss",
    "final_acc",
]


def run_params(device: str, arm_seeds: Sequence[int]) -> pd.DataFrame:
    """The run's device (its float32 tolerance decides C2-C4) and number of arm seeds, as ``name, value``."""
    return pd.DataFrame({"name": ["device", "arm_seeds"], "value": [device, len(arm_seeds)]})


def table1(
    source: HeadlabLM,
    mha: dict,
    alloc: dict,
    res: pd.DataFrame,
    n_seeds: int,
    lm_name: str,
    lm_method: str,
    lm: HeadlabLM,
    lm_base: dict,
    lm_rows: list[dict],
) -> pd.DataFrame:
    """Table 1: the MHA source (``mha``: its ``lm_eval``), GQA and DHA per budget (mean over the seeds of
    ``res``, ``arms_frame``; KV bytes of the first search's collapse from ``alloc``), then the analysis model
    ``lm`` (``lm_method``: what its own heads are) and its training-free conversions ``lm_rows``
    (``init_only_arms``)."""
    rows = [
        {
            "model": "MHA source",
            "method": "MHA",
            "budget": 1.0,
            "kv_bytes_per_token": kv_cache_bytes(source),
            "tokens": 0,
            "seeds": n_seeds,
            "init_loss": mha["loss"],
            "init_acc": mha["acc"],
            "final_loss": mha["loss"],
            "final_acc": mha["acc"],
        }
    ]
    for (b, a), g in res[res.arm.isin(["GQA", "DHA"])].groupby(["budget", "arm"], sort=False):
        m = collapse(source, *alloc["gqa" if a == "GQA" else "probe", b][:2], share=True)
        rows.append(
            {
                "model": "MHA source",
                "method": a,
                "budget": b,
                "kv_bytes_per_token": kv_cache_bytes(m),
                "tokens": int(g.tokens.iloc[0]),
                "seeds": len(g),
                "init_loss": g.init_loss.mean(),
                "init_acc": g.init_acc.mean(),
                "final_loss": g.final_loss.mean(),
                "final_acc": g.final_acc.mean(),
            }
        )
    lm_common = {"model": lm_name, "tokens": 0, "seeds": 1}
    rows.append(
        {
            **lm_common,
            "method": lm_method,
            "budget": 1.0,
            "kv_bytes_per_token": kv_cache_bytes(lm),
            "init_loss": lm_base["loss"],
            "init_acc": lm_base["acc"],
        }
    )
    rows += [
        {
            **lm_common,
            "method": r["arm"],
            "budget": r["budget"],
            "kv_bytes_per_token": r["kv_bytes_per_token"],
            "init_loss": r["loss"],
            "init_acc": r["acc"],
        }
        for r in lm_rows
    ]
    return pd.DataFrame(rows)


def gap_lines(
    t1: pd.DataFrame,
    mha_loss: float,
    budgets: Sequence[float],
    lm_name: str,
    lm_loss: float,
    lm_budgets: Sequence[float],
) -> list[str]:
    """From ``table1``: per budget, the gap closure r of DHA over GQA on the MHA source (and both final
    losses), then per analysis budget r of the best training-free conversion over GQA mean-pool."""
    lines = []
    for b in budgets:
        d = t1[(t1.model == "MHA source") & (t1.budget == b)].set_index("method")
        r = gap_closure(mha_loss, d.init_loss["GQA"], d.init_loss["DHA"])
        lines.append(
            f"MHA source, budget {b:.0%}: r = {r:.2f}; final loss GQA {d.final_loss['GQA']:.3f} vs DHA "
            f"{d.final_loss['DHA']:.3f}"
        )
    for b in lm_budgets:
        d = t1[(t1.model == lm_name) & (t1.budget == b)].set_index("method").init_loss
        pool = d["GQA (mean-pool)"]
        best = d.drop("GQA (mean-pool)").min()
        r = gap_closure(lm_loss, pool, best)
        lines.append(
            f"{lm_name}, budget {b:.0%}: GQA mean-pool {pool:.3f}, best other {best:.3f} (r = {r:.2f}); "
            f"source {lm_loss:.3f}"
        )
    return lines


def table2(
    res: pd.DataFrame, lm_rows: list[dict], seed: int, budget: float, lm_budget: float, lm_name: str, lite_arm: bool
) -> pd.DataFrame:
    """Table 2: DHA and its ablations (and DHA-lite with ``lite_arm``) on the MHA source at ``seed`` and
    ``budget`` (from ``arms_frame``), then the analysis model's conversions at ``lm_budget`` (initial loss only)."""
    names = ["DHA", "DHA w/o fusion", "DHA w/o adaptive"] + (["DHA-lite"] if lite_arm else [])
    t2 = (
        res[(res.seed == seed) & (res.budget == budget) & res.arm.isin(names)].set_index("arm").loc[names].reset_index()
    )
    t2 = t2[TABLE2_COLUMNS].assign(model="MHA source", budget=budget)
    lm2 = pd.DataFrame([r for r in lm_rows if r["budget"] == lm_budget])
    lm2 = lm2.rename(columns={"loss": "init_loss", "acc": "init_acc"})
    t2 = pd.concat(
        [t2, lm2[["arm", "alloc", "init", "k_counts", "v_counts", "init_loss"]].assign(model=lm_name)],
        ignore_index=True,
    )
    for col in ("search_steps", "fusion_steps", "ct_steps"):
        t2[col] = t2[col].astype("Int64")
    return t2


def head_counts(alloc: dict, lm_alloc: dict, budget: float, lm_budget: float, lm_name: str) -> pd.DataFrame:
    """Fig. 5: K and V heads per layer, of the MHA source at ``budget`` (uniform, DHA search, DHA-lite) and of
    the analysis model at ``lm_budget`` (uniform, DHA-lite)."""
    models = [
        (
            "MHA source",
            [
                ("uniform", alloc["uniform", budget][:2]),
                ("DHA search", alloc["probe", budget][:2]),
                ("DHA-lite", alloc["cka", budget][:2]),
            ],
        ),
        (lm_name, [("uniform", lm_alloc[lm_budget]["uniform"]), ("DHA-lite", lm_alloc[lm_budget]["cka"])]),
    ]
    return pd.DataFrame(
        {"model": name, "allocation": a, "kind": kind, "layer": l, "heads": c}
        for name, a_list in models
        for a, (kg, vg) in a_list
        for kind, g in (("K", kg), ("V", vg))
        for l, c in enumerate(counts(g))
    )

"""Re-derive a saved run's generated-MC intervals over prompts, from its CSVs (no model is loaded).

Generated items repeat prompts ("days" has 7, "cloze" 30; items of one prompt differ only in distractors and
answer order), so the unit of replication is the prompt, not the item (``Task.units``). Runs saved before
``per_item.csv`` had a ``unit`` column resampled items, which understates the spread. This command regenerates
the run's items (``items.generated_mc`` is deterministic, given the run's ``mc_per_kind`` and ``mc_kinds``: read
from ``run_params.csv`` where the run saved them, else given here and then written there; the item count, and a
``unit`` column already saved, are checked against them), writes the ``unit`` column, recomputes the generated-MC rows of Table 2's interval
(``table2.csv``'s ci_lo / ci_hi) and Fig. 4's bands (``fig4.csv``'s metric_lo / metric_hi) with the notebook's
own functions, and redraws both figures. Score functions whose per-item results the run did not save get NaN
there (their item-bootstrap interval is not kept under a prompt-bootstrap column). Next-token loss (texts) and
MMLU (distinct questions) already resample their units and are left as they are. Then rebuild the claims:
``python -m headlab claims 01_dormant_heads --profile <run>``.

    python -m headlab.papers.dormant_heads.reinterval figures/dormant_heads/cpu_powered --mc-per-kind 50

The per-item results are regenerated from nothing here: the thresholds' own intervals (C4, C5: calibration forwards
resampled, ``threshold_boot.csv``) still treat each (item, choice) forward as a unit: they need each forward's
scores, which a run does not save, so only a rerun (which now resamples prompts there too) can change that.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ... import claims as K
from ...figures import write_png
from .figures import fig4 as draw_fig4
from .figures import table2 as draw_table2
from .items import MC_KINDS, generated_mc
from .tables import point_intervals, within_tol_intervals
from .tasks import Task

TASK = "generated_mc"


def _read(folder: Path, name: str) -> tuple[pd.DataFrame, Path]:
    """A run's tidy table (plain or gzipped) and the path to write it back to."""
    return K.read(folder, name), K.saved(folder, name)


def add_units(items: pd.DataFrame, task: Task) -> pd.DataFrame:
    """``per_item`` rows with a ``unit`` column: ``task``'s units on its generated-MC rows (per model, in item order;
    the count must match, and a ``unit`` column already there must agree), each row its own unit elsewhere."""
    out = []
    for (m, t), g in items.groupby(["model", "task"], sort=False):
        g = g.sort_values("item").copy()
        if t == TASK:
            u = task.units()
            if len(u) != len(g):
                raise ValueError(f"{m}: {len(g)} saved items, {len(u)} regenerated: wrong mc_per_kind / mc_kinds")
        else:
            u = np.arange(len(g))
        if "unit" in g.columns:
            if not np.array_equal(g.unit.to_numpy(int), u):
                raise ValueError(f"{m}/{t}: the saved unit column disagrees with the regenerated items")
        else:
            g.insert(g.columns.get_loc("item") + 1, "unit", u)
        out.append(g)
    return pd.concat(out, ignore_index=True)


def extra_from_items(items: pd.DataFrame) -> dict:
    """``run_sweeps``' per-item results rebuilt from ``per_item`` for the generated-MC rows: (model, task) ->
    {"per_item": {(score, p): [item]}, "units": [item]}; p = 0 is the unablated pass of every score."""
    extra = {}
    for (m, t), g in items[items.task == TASK].groupby(["model", "task"], sort=False):
        g = g.sort_values("item")
        cols = [c for c in g.columns if "@" in c]
        scores = list(dict.fromkeys(c.split("@")[0] for c in cols))
        pi = {(s, 0.0): g.base.to_numpy(float) for s in scores}
        pi.update({(c.split("@")[0], float(c.split("@")[1])): g[c].to_numpy(float) for c in cols})
        extra[m, t] = {"per_item": pi, "units": g.unit.to_numpy(int)}
    return extra


def _covered(curves: pd.DataFrame, extra: dict) -> pd.Series:
    """Rows of ``curves`` whose (model, task, score, quantile) has per-item results in ``extra``."""
    return pd.Series(
        [
            (r.model, r.task) in extra and (r.score, float(r.quantile)) in extra[r.model, r.task]["per_item"]
            for r in curves.itertuples()
        ],
        index=curves.index,
    )


def generated_set(folder: Path, mc_per_kind: int | None = None, mc_kinds: Sequence[str] | None = None):
    """``(mc_per_kind, mc_kinds, saved)`` of a run: from its ``run_params.csv`` when saved there (``saved`` True;
    arguments given must agree), else the arguments (``saved`` False)."""
    rp, _ = _read(folder, "run_params")
    given = None if mc_per_kind is None else (int(mc_per_kind), list(mc_kinds or MC_KINDS))
    if "mc_per_kind" in rp.columns:
        saved = (int(rp.mc_per_kind.iloc[0]), json.loads(rp.mc_kinds.iloc[0]))
        if given is not None and given != saved:
            raise ValueError(f"{folder}: mc_per_kind / mc_kinds {given} disagree with run_params.csv's {saved}")
        return (*saved, True)
    if given is None:
        raise ValueError(f"{folder}: run_params.csv does not say mc_per_kind / mc_kinds: give them")
    return (*given, False)


def reinterval(
    folder: Path,
    mc_per_kind: int | None = None,
    mc_kinds: Sequence[str] | None = None,
    seed: int = 0,
    n_boot: int = 1000,
):
    folder = Path(folder)
    items, items_path = _read(folder, "per_item")
    mc_per_kind, mc_kinds, saved = generated_set(folder, mc_per_kind, mc_kinds)
    task = Task(TASK, "mc", generated_mc(mc_per_kind, seed=seed, kinds=tuple(mc_kinds)))
    items = add_units(items, task)  # checks the count (and a saved unit column) before anything is written
    extra = extra_from_items(items)
    tasks = {m: {TASK: task} for m, _ in extra}

    t2, t2_path = _read(folder, "table2")
    grid, _ = _read(folder, "appfig_grid")
    mc = grid[grid.task == TASK]
    whole = _covered(mc, extra).groupby([mc.model, mc.task, mc.score]).transform("all")  # every point of the curve
    cis = within_tol_intervals(mc[whole], extra, tasks, n_boot=n_boot, seed=seed)
    new = t2[["model", "task", "score"]].merge(cis, on=["model", "task", "score"], how="left")
    for c in ("ci_lo", "ci_hi"):  # generated-MC rows: the prompt bootstrap, NaN where per-item results are missing
        t2[c] = np.where(t2.task == TASK, new[c].to_numpy(float), t2[c].to_numpy(float))

    f4, f4_path = _read(folder, "fig4")
    is_mc = f4.task == TASK
    cov = _covered(f4[is_mc], extra)
    bands = point_intervals(f4[is_mc][cov].drop(columns=["metric_lo", "metric_hi"]), extra, n_boot=n_boot, seed=seed)
    for c in ("metric_lo", "metric_hi"):
        f4.loc[is_mc, c] = np.nan
        f4.loc[bands.index, c] = bands[c]

    if not saved:  # the generated set's parameters, as given, for the next reader
        rp, rp_path = _read(folder, "run_params")
        rp.assign(mc_per_kind=mc_per_kind, mc_kinds=json.dumps(list(mc_kinds))).to_csv(rp_path, index=False)
    items.to_csv(items_path, index=False)
    t2.to_csv(t2_path, index=False, float_format="%.6g")
    f4.to_csv(f4_path, index=False, float_format="%.6g")
    write_png(draw_table2(t2), folder / "table2.png")
    write_png(draw_fig4(f4), folder / "fig4.png")
    return t2, f4


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m headlab.papers.dormant_heads.reinterval", description=__doc__.split("\n")[0]
    )
    ap.add_argument("folder", type=Path)
    ap.add_argument("--mc-per-kind", type=int, help="the run's mc_per_kind (default: its run_params.csv)")
    ap.add_argument(
        "--mc-kinds", type=json.loads, help='JSON list, e.g. \'["count","days"]\' (default: run_params.csv)'
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-boot", type=int, default=1000)
    a = ap.parse_args(argv)
    if not a.folder.is_dir():
        ap.error(f"{a.folder} is not a folder")
    try:
        t2, _ = reinterval(a.folder, a.mc_per_kind, a.mc_kinds, a.seed, a.n_boot)
    except (ValueError, FileNotFoundError) as e:
        ap.error(str(e))
    mc = t2[t2.task == TASK].assign(half_width=lambda d: (d.ci_hi - d.ci_lo) / 2)
    print(mc[["model", "score", "within_tol_pct", "ci_lo", "ci_hi", "half_width"]].to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

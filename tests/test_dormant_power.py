"""The prompt-count projection of Table 2's within-1-pt interval (dormant_heads.power) and the re-derivation of a saved
run's intervals over prompts (dormant_heads.reinterval)."""

import numpy as np
import pandas as pd
import pytest

from headlab import PUBLISHED_DIR
from headlab.papers.dormant_heads import power as W


def _folder(tmp_path, ys_items: dict, xs, n=200):
    """A one-model sweep folder: ``ys_items[score]`` = per-point accuracy (fraction) used to draw n items each."""
    rng = np.random.default_rng(0)
    f = tmp_path / "run"
    f.mkdir()
    rows, items = [], {"model": "m", "task": "generated_mc", "item": np.arange(n), "n_tok": 1, "base": 1}
    for sc, accs in ys_items.items():
        for q, (x, a) in enumerate(zip(xs, accs, strict=True)):
            v = np.ones(n, int) if q == 0 else (rng.random(n) < a).astype(int)
            if q:
                items[f"{sc}@{0.1 * q:g}"] = v
            rows.append(
                {
                    "model": "m",
                    "task": "generated_mc",
                    "score": sc,
                    "label": sc,
                    "quantile": round(0.1 * q, 10),
                    "threshold": 0.0,
                    "achieved_pct": x,
                    "metric": 100.0 * v.mean(),
                    "baseline": 100.0,
                }
            )
    pd.DataFrame(rows).to_csv(f / "appfig_grid.csv", index=False)
    pd.DataFrame(items).to_csv(f / "per_item.csv", index=False)
    return f


def test_steep_curve_narrows_with_items_and_units_needed(tmp_path):
    # a steep fall between 10 and 20 %: the crossing is pinned and its interval shrinks as items are added
    f = _folder(tmp_path, {"awft": [1.0, 0.999, 0.7, 0.4]}, [0.0, 10.0, 20.0, 30.0])
    t = W.within_tol_power(f, factors=(1, 4, 16), scores=("awft",), n_boot=300, progress=False)
    assert list(t.n_draw) == [200, 800, 3200]
    hw = t.half_width.to_numpy()
    assert hw[2] < hw[0] and np.all(hw >= 0)
    assert np.all((t.ci_lo <= t.within_pct + 1e-9) & (t.within_pct <= t.ci_hi + 1e-9))
    need = W.units_needed(t, target=float(hw[1]) + 1e-9)
    assert need.units_needed.iloc[0] <= 800
    assert np.isnan(W.units_needed(t, target=-1.0).units_needed.iloc[0])


def test_factor_one_is_table2s_bootstrap():
    # the committed powered run: factor 1 resamples the run's own prompts, as Table 2's interval does
    f = PUBLISHED_DIR / "dormant_heads" / "cpu_powered"
    t = W.within_tol_power(f, factors=(1,), n_boot=1000, progress=False)
    t2 = pd.read_csv(f / "table2.csv")
    m = t.merge(t2[t2.task == "generated_mc"], on=["model", "task", "score"], suffixes=("", "_t2"))
    assert len(m) == len(t) == 6
    assert np.allclose(m.within_pct, m.within_tol_pct, atol=1e-3)
    assert np.allclose(m.ci_lo, m.ci_lo_t2, atol=0.05) and np.allclose(m.ci_hi, m.ci_hi_t2, atol=0.05)


def test_reinterval_reproduces_the_stored_prompt_intervals(tmp_path):
    # the committed SmolLM2 run was re-derived over prompts by this command: a rerun on a copy changes nothing
    import shutil

    from headlab.papers.dormant_heads import reinterval as R
    from headlab.papers.dormant_heads.items import EXTRA_KINDS, MC_KINDS

    src = PUBLISHED_DIR / "dormant_heads" / "cpu_powered_smollm"
    f = tmp_path / "run"
    shutil.copytree(src, f)
    t2, f4 = R.reinterval(f, n_boot=1000)  # the generated set's parameters come from its run_params.csv
    old2, old4 = pd.read_csv(src / "table2.csv"), pd.read_csv(src / "fig4.csv")
    for new, old, cols in ((t2, old2, ("ci_lo", "ci_hi")), (f4, old4, ("metric_lo", "metric_hi"))):
        for c in cols:
            assert np.allclose(new[c], old[c], atol=1e-4, equal_nan=True), c
    items = pd.read_csv(f / "per_item.csv.gz")
    mc = items[items.task == "generated_mc"]
    assert mc.unit.nunique() == 1060 and len(mc) == 2403  # 2,403 items from 1,060 distinct prompts
    with pytest.raises(ValueError, match="disagree with run_params"):
        R.reinterval(f, 266, MC_KINDS + EXTRA_KINDS, n_boot=10)
    # a run that did not save them: refused without them, checked against the items with them, then written
    rp = pd.read_csv(f / "run_params.csv")
    rp.drop(columns=["mc_per_kind", "mc_kinds"]).to_csv(f / "run_params.csv", index=False)
    with pytest.raises(ValueError, match="give them"):
        R.reinterval(f, n_boot=10)
    with pytest.raises(ValueError, match="wrong mc_per_kind"):
        R.reinterval(f, 266, MC_KINDS + EXTRA_KINDS, n_boot=10)
    assert "mc_per_kind" not in pd.read_csv(f / "run_params.csv").columns  # nothing written by a refused call
    R.reinterval(f, 267, MC_KINDS + EXTRA_KINDS, n_boot=10)
    assert pd.read_csv(f / "run_params.csv").mc_per_kind.iloc[0] == 267

"""The item-count projection of Table 2's within-1-pt interval (dormant_heads.power)."""

import numpy as np
import pandas as pd

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


def test_steep_curve_narrows_with_items_and_items_needed(tmp_path):
    # a steep fall between 10 and 20 %: the crossing is pinned and its interval shrinks as items are added
    f = _folder(tmp_path, {"awft": [1.0, 0.999, 0.7, 0.4]}, [0.0, 10.0, 20.0, 30.0])
    t = W.within_tol_power(f, factors=(1, 4, 16), scores=("awft",), n_boot=300, progress=False)
    assert list(t.n_draw) == [200, 800, 3200]
    hw = t.half_width.to_numpy()
    assert hw[2] < hw[0] and np.all(hw >= 0)
    assert np.all((t.ci_lo <= t.within_pct + 1e-9) & (t.within_pct <= t.ci_hi + 1e-9))
    need = W.items_needed(t, target=float(hw[1]) + 1e-9)
    assert need.items_needed.iloc[0] <= 800
    assert np.isnan(W.items_needed(t, target=-1.0).items_needed.iloc[0])


def test_factor_one_is_table2s_item_bootstrap():
    # the committed powered run: factor 1 resamples the run's own items, as Table 2's interval does
    f = PUBLISHED_DIR / "dormant_heads" / "cpu_powered"
    t = W.within_tol_power(f, factors=(1,), n_boot=1000, progress=False)
    t2 = pd.read_csv(f / "table2.csv")
    m = t.merge(t2[t2.task == "generated_mc"], on=["model", "task", "score"], suffixes=("", "_t2"))
    assert len(m) == len(t) == 6
    assert np.allclose(m.within_pct, m.within_tol_pct, atol=1e-3)
    assert np.allclose(m.ci_lo, m.ci_lo_t2, atol=0.05) and np.allclose(m.ci_hi, m.ci_hi_t2, atol=0.05)

"""The benchmark harness's arithmetic (no timing is asserted) and the README's table from the committed CSV."""

from __future__ import annotations

import itertools

import pandas as pd

from headlab import bench
from headlab.paths import PUBLISHED_DIR, REPO_ROOT


def test_paired_runs_abba_quads_and_reports_median_iqr_and_interval(monkeypatch):
    calls = []
    # base always takes 1.0 s; test takes 9.9 s once (a disturbed first quad), then 1.1 s and 1.3 s in turn
    durations = {"base": itertools.repeat(1.0), "test": itertools.chain([9.9], itertools.cycle([1.1, 1.3]))}

    def fake_time(fn):
        name = fn()
        calls.append(name)
        return next(durations[name])

    monkeypatch.setattr(bench, "_time", fake_time)
    r = bench.paired(lambda: "base", lambda: "test", pairs=4, warmup=0)
    assert calls == ["base", "test", "test", "base"] * 4  # A B B A quads
    assert r["pairs"] == 4 and r["base_median_s"] == 1.0
    ratios = sorted([(9.9 + 1.1) / 2, (1.3 + 1.1) / 2, (1.3 + 1.1) / 2, (1.3 + 1.1) / 2])
    assert abs(r["median"] - (ratios[1] + ratios[2]) / 2) < 1e-12 and r["q25"] <= r["median"] <= r["q75"]
    assert r["ci_low"] <= r["median"] <= r["ci_high"] and r["ci_high"] <= max(ratios)


def _runs(medians, iqr=0.02):
    return pd.DataFrame(
        [
            {
                "run": i + 1,
                "group": "edit overhead",
                "measure": "scale",
                "model": "m",
                "baseline": "b",
                "unit": "x",
                "median": m,
                "q25": m - iqr,
                "q75": m + iqr,
                "ci_low": m - iqr / 2,
                "ci_high": m + iqr / 2,
                "pairs": 10,
                "processes": 1,
                "base_median_s": 1.0,
                "note": "",
                "machine": "x",
                "threads": 2,
                "torch": "t",
                "transformers": "t",
            }
            for i, m in enumerate(medians)
        ]
    )


def test_summarise_pools_the_processes_of_a_run():
    """A run's raw quads from several processes are pooled per measure before the median and IQR."""
    row = {"group": "edit overhead", "measure": "scale", "model": "m", "baseline": "b", "unit": "x", "note": ""}
    rows = [
        {**row, "values": [1.0, 1.1], "base_s": [0.5, 0.5]},
        {**row, "values": [1.2, 1.3, 1.4], "base_s": [0.7]},
        {**row, "measure": "zero", "values": [0.9], "base_s": [0.4]},
    ]
    df = bench.summarise(rows)
    assert list(df.columns) == bench.COLUMNS and len(df) == 2
    s = df[df.measure == "scale"].iloc[0]
    assert s.pairs == 5 and s.processes == 2 and abs(s["median"] - 1.2) < 1e-12 and s.base_median_s == 0.5
    assert (s.q25, s.q75) == (1.1, 1.3)


def test_runs_agree_only_when_each_median_is_inside_every_other_iqr():
    assert bench.agreement(_runs([1.00, 1.01, 1.015])).agree.item()
    assert not bench.agreement(_runs([1.00, 1.01, 1.05])).agree.item()
    assert "| yes (0.015×) |" in bench.table(_runs([1.00, 1.01, 1.015]))
    assert "| no (0.100×) |" in bench.table(_runs([1.0, 1.1]))


def test_readme_bench_table_is_the_committed_csv():
    paths = sorted((PUBLISHED_DIR / "bench").glob("*/bench.csv"))
    assert paths, "no committed figures/bench/<machine>/bench.csv"
    text = (REPO_ROOT / "README.md").read_text()
    for p in paths:
        df = pd.read_csv(p, keep_default_na=False)
        assert list(df.columns) == bench.COLUMNS
        assert (df.q25 <= df["median"]).all() and (df["median"] <= df.q75).all()
        assert bench.table(df).strip() in text, (
            f"README's benchmark table is not `python -m headlab bench --table` ({p})"
        )

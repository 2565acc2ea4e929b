"""Benchmarks (reported, never asserted): ``python -m headlab bench [--runs N | --quick]``.

Every speed number is a ratio against a baseline measured in the same run, interleaved with it in
A B B A quads after a warm-up (a linear drift of the machine's speed cancels within a quad, and noisy
neighbours hit both sides alike), over 20 quads; we report the median ratio with its
interquartile range (IQR) over quads and a 95 % bootstrap interval of the median. Absolute times
(cached model load) are medians with their IQR over repeats.

1. cached load of each offline model (goal <= 2 s), beside its floor: rebuilding the Rust tokenizer alone
   from its JSON (timed in the same run);
2. per-head edit overhead on SmolLM2-135M and Gemma-3-270M: ``capture(z)``, ``zero``, ``scale``,
   ``replace`` and zeroing decided from the same forward's pattern, each against a plain eager
   forward (goal <= 1.05x);
3. training steps/s of a tiny headlab model, all threads vs 1 thread.

``--runs N`` repeats the whole suite N times (as N consecutive ``make bench`` would). Each run pools 4 fresh
processes, each doing a quarter of the quads and repeats (pyperf's reason for worker processes: a process's
memory layout and thread placement shift its timings, by up to 2 % here, so a run of one process measures
that process). Every run's rows go to ``figures/bench/<machine>/bench.csv`` (machine, threads, versions in
every row); ``python -m headlab bench --table`` prints the README's table from it, with whether the runs'
medians agree (each run's median inside every other run's IQR) and the spread of the runs' medians.
``--quick`` runs 3 quads in this process.
"""

from __future__ import annotations

import platform
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import heads
from .models import encode, load
from .nn import Config, HeadlabLM
from .train import set_threads

COLUMNS = [
    "run",
    "group",
    "measure",
    "model",
    "baseline",
    "unit",
    "median",
    "q25",
    "q75",
    "ci_low",
    "ci_high",
    "pairs",
    "processes",
    "base_median_s",
    "note",
    "machine",
    "threads",
    "torch",
    "transformers",
]


PAIRS, REPEATS, PROCESSES = 20, 12, 4  # per run: quads per ratio, repeats per time, fresh processes pooled


def machine_name() -> str:
    import os

    return f"{platform.machine()}-{os.cpu_count()}cpu"


def _summary(x) -> dict:
    """Median, quartiles and a 95 % percentile-bootstrap interval of the median (seed 0, 2000 resamples)."""
    x = np.asarray(x, dtype=float)
    q25, med, q75 = np.quantile(x, [0.25, 0.5, 0.75])
    boot = np.median(np.random.default_rng(0).choice(x, size=(2000, len(x))), axis=1)
    lo, hi = np.quantile(boot, [0.025, 0.975])
    return {"median": float(med), "q25": float(q25), "q75": float(q75), "ci_low": float(lo), "ci_high": float(hi)}


def _time(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def paired_values(base, test, pairs: int = 10, warmup: int = 1) -> dict:
    """The raw A B B A quads: ``values``, each quad's ``time(test) / time(base)`` (ratio of the two tests'
    sum to the two bases' sum), and ``base_s``, every baseline time."""
    for _ in range(warmup):
        base(), test()
    ratios, tb = [], []
    for _ in range(pairs):
        a1, b1, b2, a2 = _time(base), _time(test), _time(test), _time(base)
        ratios.append((b1 + b2) / (a1 + a2))
        tb += [a1, a2]
    return {"values": ratios, "base_s": tb}


def _summarised(raw: dict) -> dict:
    base = raw.get("base_s") or []
    return {
        **_summary(raw["values"]),
        "pairs": len(raw["values"]),
        "base_median_s": statistics.median(base) if base else float("nan"),
    }


def paired(base, test, pairs: int = 10, warmup: int = 1) -> dict:
    """``time(test) / time(base)`` over ``pairs`` A B B A quads: median, IQR and 95 % interval of the
    median over quads."""
    return _summarised(paired_values(base, test, pairs, warmup))


def repeated_values(fn, repeats: int) -> dict:
    """``fn``'s wall time over ``repeats`` runs, after one warm-up run."""
    fn()
    return {"values": [_time(fn) for _ in range(repeats)], "base_s": []}


def load_seconds(models, repeats: int) -> list[dict]:
    """Cached load of each model, and beside it the floor: rebuilding the Rust tokenizer alone from the compact
    JSON that the cached tokenizer stores (what unpickling it must do; Gemma-3: 262k tokens, 515k merges)."""
    from tokenizers import Tokenizer

    rows = []
    for m in models:
        rows.append(
            {
                "group": "load",
                "measure": "cached load",
                "model": m,
                "baseline": "",
                "unit": "s",
                **repeated_values(lambda m=m: load(m), repeats),
            }
        )
        text = load(m)[1].backend_tokenizer.to_str()
        rows.append(
            {
                "group": "load",
                "measure": "floor: Rust tokenizer from its JSON",
                "model": m,
                "baseline": "",
                "unit": "s",
                **repeated_values(lambda text=text: Tokenizer.from_str(text), repeats),
            }
        )
    return rows


def edit_overhead(name: str, pairs: int, batch: int = 2, seq: int = 128) -> list[dict]:
    model, tok = load(name, attn="eager")
    h = heads.Heads(model)
    L, H = h.n_layers, h.n_heads
    text = "The committee met on Tuesday to discuss the budget for the coming year, and " * 20
    ids = torch.tensor([encode(tok, text, False)[:seq]] * batch)
    body = model.model  # the decoder stack: the LM head's vocabulary projection is not a head edit
    mask = torch.zeros(batch, L, H, dtype=torch.bool)
    mask[:, ::3, ::2] = True
    factors = torch.ones(L, H)
    factors[::2, 0] = 0.5
    with torch.no_grad(), heads.capture(model, z=True) as cache:
        body(input_ids=ids)
    other = {l: z.roll(1, dims=0) for l, z in cache.z.items()}
    by_pattern = heads.zero_where(lambda v: v.pattern[:, :, :, 0].mean(-1) > 0.5)  # sink-like heads, per input
    with torch.no_grad(), heads.intervene(model, by_pattern, needs=("pattern",)):
        body(input_ids=ids)
    zeroed = torch.stack([by_pattern.zeroed[l] for l in range(L)]).float()  # [layer, batch, head]

    def run_with(ctx_fn):
        def f():
            with ctx_fn():
                body(input_ids=ids)

        return f

    edits = {
        "capture z, all layers": lambda: heads.capture(model, z=True),
        "zero (per-row mask)": lambda: heads.intervene(model, heads.zero(mask)),
        "scale": lambda: heads.intervene(model, heads.scale(factors)),
        "replace (patch from another row)": lambda: heads.intervene(model, heads.replace(other, mask)),
        "zero decided from pattern": lambda: heads.intervene(model, by_pattern, needs=("pattern",)),
    }
    notes = {
        "zero decided from pattern": (
            f"{zeroed.mean():.0%} of heads zeroed, each decided at the o_proj input from the pattern tapped "
            f"before o_proj"
        )
    }
    rows = []
    with torch.no_grad():
        plain = lambda: body(input_ids=ids)  # noqa: E731
        for measure, ctx in edits.items():
            rows.append(
                {
                    "group": "edit overhead",
                    "measure": measure,
                    "model": name,
                    "baseline": "plain eager forward",
                    "unit": "x",
                    **paired_values(plain, run_with(ctx), pairs),
                    "note": notes.get(measure, ""),
                }
            )
    return rows


def train_speed(pairs: int) -> list[dict]:
    threads = set_threads()
    torch.manual_seed(0)
    m = HeadlabLM(Config(vocab_size=258, d_model=128, n_layers=4, n_heads=8, max_seq_len=128))
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    x = torch.randint(0, 258, (16, 128))

    def step(n):
        def f():
            torch.set_num_threads(n)
            loss = m(x, labels=x).loss
            opt.zero_grad()
            loss.backward()
            opt.step()

        return f

    r = paired_values(step(threads), step(1), pairs)  # ratio = t(1 thread) / t(all): the speed-up of all threads
    set_threads()
    return [
        {
            "group": "training",
            "measure": f"train step speed-up, {threads} threads vs 1",
            "model": "headlab 4x128d",
            "baseline": "1 thread",
            "unit": "x",
            **r,
        }
    ]


def raw(quick: bool = False, pairs: int | None = None, repeats: int | None = None) -> list[dict]:
    """One pass of the whole suite in this process: one row per measure with its raw ``values``."""
    threads = set_threads()
    pairs = pairs or (3 if quick else 20)
    models = ["smollm2-135m"] if quick else ["smollm2-135m", "gemma3-270m"]
    rows = load_seconds(models, repeats or (3 if quick else 10))
    for m in models:
        rows += edit_overhead(m, pairs)
    return [r | {"threads": threads} for r in rows + train_speed(pairs)]


def summarise(rows: list[dict]) -> pd.DataFrame:
    """Pool the raw rows of one run (from one or several processes) per measure and summarise them."""
    import transformers

    pooled: dict[tuple, dict] = {}
    for r in rows:
        key = (r["group"], r["measure"], r["model"])
        p = pooled.setdefault(key, {**r, "values": [], "base_s": [], "processes": 0})
        p["values"] += list(r["values"])
        p["base_s"] += list(r.get("base_s") or [])
        p["processes"] += 1
        p["note"] = r.get("note", "") or p.get("note", "")
    df = pd.DataFrame(
        [{k: v for k, v in r.items() if k not in ("values", "base_s")} | _summarised(r) for r in pooled.values()]
    )
    df["run"], df["note"] = 1, df["note"].fillna("") if "note" in df else ""
    df["machine"] = machine_name()
    df["threads"] = df["threads"] if "threads" in df else torch.get_num_threads()  # the measuring processes' count
    df["torch"], df["transformers"] = torch.__version__, transformers.__version__
    return df[COLUMNS]


def run(quick: bool = False) -> pd.DataFrame:
    """One pass of the whole suite in this process, summarised."""
    return summarise(raw(quick))


def run_fresh(runs: int, processes: int = PROCESSES) -> pd.DataFrame:
    """``runs`` runs, each pooled from ``processes`` fresh Python processes (as consecutive ``make bench``
    would be); each process does ``PAIRS // processes`` quads per ratio and ``REPEATS // processes`` repeats
    per time, so process-to-process differences (memory layout, thread placement) land inside a run's IQR
    instead of between runs."""
    import json
    import subprocess
    import sys
    import tempfile

    frames = []
    for i in range(1, runs + 1):
        rows = []
        for w in range(1, processes + 1):
            print(f"== bench run {i}/{runs}, process {w}/{processes}", flush=True)
            with tempfile.TemporaryDirectory() as d:
                out = Path(d) / "raw.json"
                code = (
                    "import json; from headlab import bench; "
                    f"json.dump(bench.raw(pairs={PAIRS // processes}, repeats={REPEATS // processes}), "
                    f"open({str(out)!r}, 'w'))"
                )
                subprocess.run([sys.executable, "-c", code], check=True)
                rows += json.loads(out.read_text())
        frames.append(summarise(rows).assign(run=i))
    return pd.concat(frames, ignore_index=True)[COLUMNS]


def out_path(machine: str | None = None) -> Path:
    from .paths import PUBLISHED_DIR

    return PUBLISHED_DIR / "bench" / (machine or machine_name()) / "bench.csv"


def agreement(df: pd.DataFrame) -> pd.DataFrame:
    """Per measure: each run's median and IQR, whether every run's median lies inside every other run's IQR
    (the runs agree), and the spread of the runs' medians (max - min)."""
    rows = []
    for (group, measure, model), g in df.groupby(["group", "measure", "model"], sort=False):
        agree = all(b.q25 <= a["median"] <= b.q75 for _, a in g.iterrows() for _, b in g.iterrows())
        rows.append(
            {
                "group": group,
                "measure": measure,
                "model": model,
                "unit": g.unit.iloc[0],
                "runs": len(g),
                "agree": agree,
                "spread": float(g["median"].max() - g["median"].min()),
                "g": g,
            }
        )
    return pd.DataFrame(rows)


def table(df: pd.DataFrame) -> str:
    """The README's benchmark table: per measure, each run's median [IQR], and the last run's 95 % interval
    of the median."""
    runs = sorted(df.run.unique())
    head = " | ".join(f"run {r}: median [IQR]" for r in runs)
    lines = [
        f"| measure | model | {head} | 95% CI of median (run {runs[-1]}) | runs agree (spread of medians) | goal |",
        "|---|---|" + "---|" * len(runs) + "---|---|---|",
    ]
    goal = {"cached load": "≤ 2 s", "edit overhead": "≤ 1.05×"}
    for r in agreement(df).itertuples():
        u = " s" if r.unit == "s" else "×"
        cells = " | ".join(f"{x['median']:.3f}{u} [{x.q25:.3f}, {x.q75:.3f}]" for _, x in r.g.iterrows())
        last = r.g.iloc[-1]
        ok = f"{'yes' if r.agree else 'no'} ({r.spread:.3f}{u})" if len(runs) > 1 else ""
        lines.append(
            f"| {r.measure} | {r.model} | {cells} | [{last.ci_low:.3f}, {last.ci_high:.3f}] | {ok} | "
            f"{goal.get(r.measure, goal.get(r.group, ''))} |"
        )
    m = df.iloc[0]
    sizes = [
        f"{int(df.pairs[df.unit == u].iloc[0])} {what}"
        for u, what in (("x", "A B B A quads per ratio"), ("s", "repeats per time"))
        if (df.unit == u).any()
    ]
    procs = int(df.processes.max())
    pooled = f", each run pooled from {procs} fresh processes" if procs > 1 else ""
    lines.append(
        f"\n{m.machine}, {m.threads} threads, torch {m.torch}, transformers {m.transformers}; "
        + ", ".join(sizes)
        + pooled
        + "."
    )
    notes = df[df.note.astype(str).str.len() > 0].drop_duplicates(["measure", "model"], keep="last")
    for r in notes.itertuples():
        lines.append(f"{r.measure}, {r.model} (run {r.run}): {r.note}.")
    return "\n".join(lines) + "\n"


def main(quick: bool = False, print_table: bool = False, runs: int = 1) -> int:
    if print_table:
        paths = sorted(out_path("*").parent.parent.glob("*/bench.csv"))
        if not paths:
            raise FileNotFoundError("no committed figures/bench/<machine>/bench.csv: run `python -m headlab bench`")
        for p in paths:
            print(table(pd.read_csv(p, keep_default_na=False)), end="")
        return 0
    if runs < 1:
        raise ValueError(f"--runs must be at least 1, not {runs}")
    df = run(quick) if quick else run_fresh(runs)
    with pd.option_context("display.width", 200):
        print(
            df.drop(columns=["machine", "torch", "transformers", "note"]).to_string(
                index=False, float_format=lambda x: f"{x:.3f}"
            )
        )
    if not quick:
        from .figures import _atomic_write

        p = out_path()
        p.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(p, lambda t: df.to_csv(t, index=False, float_format="%.4g"))
        print(f"written: {p}")
        print(table(df), end="")
    return 0

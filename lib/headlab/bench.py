"""Benchmarks (reported, never asserted): ``python -m headlab bench [--quick]``.

Every speed number is a ratio against a baseline measured in the same run, interleaved with it
(A B, B A, A B, ... after a warm-up, so drift and noisy neighbours hit both sides alike), over at least
10 pairs; we report the median ratio with its interquartile range (IQR) over pairs. Absolute times
(cached model load) are medians with their IQR over repeats.

1. cached load of each offline model (goal <= 2 s);
2. per-head edit overhead on SmolLM2-135M and Gemma-3-270M: ``capture(z)``, ``zero``, ``scale``,
   ``replace`` and zeroing decided from the same forward's pattern, each against a plain eager
   forward (goal <= 1.05x);
3. training steps/s of a tiny headlab model, all threads vs 1 thread.

Results go to ``figures/bench/<machine>/bench.csv`` (machine, threads, versions in every row);
``python -m headlab bench --table`` prints the README's table from the committed CSV.
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

COLUMNS = ["group", "measure", "model", "baseline", "unit", "median", "q25", "q75", "pairs", "base_median_s",
           "machine", "threads", "torch", "transformers"]


def machine_name() -> str:
    import os

    return f"{platform.machine()}-{os.cpu_count()}cpu"


def _quartiles(x) -> tuple[float, float, float]:
    q = np.quantile(np.asarray(x, dtype=float), [0.25, 0.5, 0.75])
    return float(q[1]), float(q[0]), float(q[2])


def _time(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def paired(base, test, pairs: int = 10, warmup: int = 1) -> dict:
    """Median and IQR of ``time(test) / time(base)`` over ``pairs`` interleaved pairs (order alternates)."""
    for _ in range(warmup):
        base(), test()
    ratios, tb = [], []
    for i in range(pairs):
        if i % 2 == 0:
            a, b = _time(base), _time(test)
        else:
            b, a = _time(test), _time(base)
        ratios.append(b / a)
        tb.append(a)
    med, q25, q75 = _quartiles(ratios)
    return {"median": med, "q25": q25, "q75": q75, "pairs": pairs, "base_median_s": statistics.median(tb)}


def repeated(fn, repeats: int) -> dict:
    """Median and IQR of ``fn``'s wall time over ``repeats`` runs (after one warm-up run)."""
    fn()
    med, q25, q75 = _quartiles([_time(fn) for _ in range(repeats)])
    return {"median": med, "q25": q25, "q75": q75, "pairs": repeats, "base_median_s": float("nan")}


def load_seconds(models, repeats: int) -> list[dict]:
    return [{"group": "load", "measure": "cached load", "model": m, "baseline": "", "unit": "s",
             **repeated(lambda m=m: load(m), repeats)} for m in models]


def edit_overhead(name: str, pairs: int, batch: int = 4, seq: int = 128) -> list[dict]:
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
        "zero decided from pattern": lambda: heads.intervene(
            model, heads.zero_where(lambda v: v.pattern[:, :, :, 0].mean(-1) > 0.5), needs=("pattern",)),
    }
    rows = []
    with torch.no_grad():
        plain = lambda: body(input_ids=ids)  # noqa: E731
        for measure, ctx in edits.items():
            rows.append({"group": "edit overhead", "measure": measure, "model": name, "baseline": "plain eager forward",
                         "unit": "x", **paired(plain, run_with(ctx), pairs)})
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
    r = paired(step(threads), step(1), pairs)  # ratio = t(1 thread) / t(all): the speed-up of all threads
    set_threads()
    return [{"group": "training", "measure": f"train step speed-up, {threads} threads vs 1", "model": "headlab 4x128d",
             "baseline": "1 thread", "unit": "x", **r}]


def run(quick: bool = False) -> pd.DataFrame:
    import transformers

    threads = set_threads()
    pairs = 3 if quick else 10
    models = ["smollm2-135m"] if quick else ["smollm2-135m", "gemma3-270m"]
    rows = load_seconds(models, 3 if quick else 5)
    for m in models:
        rows += edit_overhead(m, pairs)
    rows += train_speed(pairs)
    df = pd.DataFrame(rows)
    df["machine"], df["threads"] = machine_name(), threads
    df["torch"], df["transformers"] = torch.__version__, transformers.__version__
    return df[COLUMNS]


def out_path(machine: str | None = None) -> Path:
    from .paths import PUBLISHED_DIR

    return PUBLISHED_DIR / "bench" / (machine or machine_name()) / "bench.csv"


def table(df: pd.DataFrame) -> str:
    """The README's benchmark table: median [IQR] per measure."""
    lines = ["| measure | model | median [IQR] | pairs/repeats | goal |", "|---|---|---|---|---|"]
    goal = {"load": "≤ 2 s", "edit overhead": "≤ 1.05×", "training": ""}
    for r in df.itertuples():
        u = " s" if r.unit == "s" else "×"
        lines.append(f"| {r.measure} | {r.model} | {r.median:.3f}{u} [{r.q25:.3f}, {r.q75:.3f}] | {r.pairs} | "
                     f"{goal.get(r.group, '')} |")
    m = df.iloc[0]
    lines.append(f"\n{m.machine}, {m.threads} threads, torch {m.torch}, transformers {m.transformers}.")
    return "\n".join(lines) + "\n"


def main(quick: bool = False, print_table: bool = False) -> int:
    if print_table:
        paths = sorted(out_path("*").parent.parent.glob("*/bench.csv"))
        if not paths:
            raise FileNotFoundError("no committed figures/bench/<machine>/bench.csv: run `python -m headlab bench`")
        for p in paths:
            print(table(pd.read_csv(p)), end="")
        return 0
    df = run(quick)
    with pd.option_context("display.width", 200):
        print(df.drop(columns=["machine", "torch", "transformers"]).to_string(index=False,
                                                                              float_format=lambda x: f"{x:.3f}"))
    if not quick:
        from .figures import _atomic_write

        p = out_path()
        p.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(p, lambda t: df.to_csv(t, index=False, float_format="%.4g"))
        print(f"written: {p}")
    return 0

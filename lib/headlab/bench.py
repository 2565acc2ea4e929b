"""Benchmarks (reported, never asserted): ``python -m headlab bench``.

1. hook overhead on SmolLM2-135M: forward with ``capture(z)`` / ``intervene(zero)`` / pattern-aware
   ``intervene`` over every layer, as a ratio to the plain forward in the same run (goal <= 1.10);
2. cached model load seconds (goal <= 5);
3. training steps/s of a tiny headlab model at 1 and at all threads.
"""
from __future__ import annotations

import time

import torch

from . import heads
from .models import encode, load
from .nn import Config, HeadlabLM
from .train import set_threads


def _best(fn, repeats: int) -> float:
    fn()  # warm-up
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return min(ts)


def hook_overhead(repeats: int = 5, batch: int = 8, seq: int = 128) -> list[dict]:
    model, tok = load("smollm2-135m", attn="eager")
    text = "The committee met on Tuesday to discuss the budget for the coming year, and " * 20
    ids = torch.tensor([encode(tok, text, False)[:seq]] * batch)
    body = model.model
    mask = torch.zeros(batch, 30, 9, dtype=torch.bool)
    mask[:, ::3, ::2] = True
    rows = []
    with torch.no_grad():
        plain = _best(lambda: body(input_ids=ids), repeats)
        rows.append({"bench": "forward, no hooks (s)", "value": plain, "ratio": 1.0})

        def cap():
            with heads.capture(model, z=True):
                body(input_ids=ids)

        def zero():
            with heads.intervene(model, heads.zero(mask)):
                body(input_ids=ids)

        def zero_pattern():
            with heads.intervene(model, heads.zero_where(lambda v: v.pattern[:, :, :, 0].mean(-1) > 0.5), needs=("pattern",)):
                body(input_ids=ids)

        for name, fn in [("capture z, all layers", cap), ("zero per-row mask", zero),
                         ("zero decided from pattern", zero_pattern)]:
            t = _best(fn, repeats)
            rows.append({"bench": f"{name} (s)", "value": t, "ratio": t / plain})
    return rows


def load_seconds() -> list[dict]:
    rows = []
    for name in ("smollm2-135m", "gemma3-270m"):
        t = time.perf_counter()
        load(name)
        rows.append({"bench": f"cached load {name} (s)", "value": time.perf_counter() - t, "ratio": float("nan")})
    return rows


def train_speed(steps: int = 20) -> list[dict]:
    rows = []
    base = None
    for threads in sorted({1, set_threads()}):
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        m = HeadlabLM(Config(vocab_size=258, d_model=128, n_layers=4, n_heads=8, max_seq_len=128))
        opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
        x = torch.randint(0, 258, (16, 128))

        def step():
            loss = m(x, labels=x).loss
            opt.zero_grad()
            loss.backward()
            opt.step()

        t = _best(step, steps)
        base = base or t
        rows.append({"bench": f"train step 4x128d, 16x128 tokens, {threads} thread(s) (steps/s)", "value": 1 / t,
                     "ratio": base / t})
    set_threads()
    return rows


def main(repeats: int = 5) -> int:
    import pandas as pd

    set_threads()
    rows = load_seconds() + hook_overhead(repeats) + train_speed()
    df = pd.DataFrame(rows)
    print(df.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    return 0

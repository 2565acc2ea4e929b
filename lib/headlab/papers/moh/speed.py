"""Speed (Table 7): one attention layer, MHA vs MoH masked vs MoH skipping, timed in the same run."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from headlab.nn import Config, rope_cache

from .checks import layer_flops
from .layer import MoHAttention, MoHSpec

# ----------------------------------------------------------------------------------------------
# Speed (Table 7): one attention layer, MHA vs MoH masked vs MoH skipping, same run
# ----------------------------------------------------------------------------------------------


def _timer(device: torch.device):
    if device.type == "cuda":

        def t(fn):
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            fn()
            e.record()
            torch.cuda.synchronize()
            return s.elapsed_time(e) / 1000
    else:

        def t(fn):
            t0 = time.perf_counter()
            fn()
            return time.perf_counter() - t0

    return t


@torch.no_grad()
def speed_benchmark(
    seqs: Sequence[int],
    budgets: dict[str, tuple[int, int]],
    *,
    n_heads: int = 8,
    d_head: int = 64,
    batch: int = 1,
    repeats: int = 7,
    warmup: int = 2,
    device="cpu",
    dtype=torch.float32,
    seed: int = 0,
) -> pd.DataFrame:
    """Forward time of one causal attention layer (RoPE, d = n_heads * d_head): MHA (the dense router:
    fused causal SDPA, no gate) and, per MoH budget ``name -> (h_s, K)``, the masked and the skipping
    implementation with the same weights and routing. Implementations are timed round-robin so that
    machine load hits them alike; the median over ``repeats`` is reported, with tokens/s and the
    ratio to MHA of the same run, plus the analytic FLOPs ratio under perfect skipping."""
    device = torch.device(device)
    timer = _timer(device)
    rows, reps = [], []
    for T in seqs:
        cfg = Config(vocab_size=8, d_model=n_heads * d_head, n_layers=1, n_heads=n_heads, d_head=d_head, max_seq_len=T)
        torch.manual_seed(seed)
        x = torch.randn(batch, T, cfg.d_model, device=device, dtype=dtype)
        cos, sin = (t.to(device, dtype) for t in rope_cache(T, d_head, cfg.rope_theta))
        impls = {}
        mha = MoHAttention(cfg, 0, MoHSpec(router="dense")).to(device, dtype).eval()  # exactly MHA, same kernels
        mha.record = False
        impls[("MHA", "dense")] = mha
        for name, (hs, k) in budgets.items():
            torch.manual_seed(seed)
            m = MoHAttention(cfg, 0, MoHSpec(n_shared=hs, top_k=k)).to(device, dtype).eval()
            m.load_state_dict(mha.state_dict(), strict=False)
            nn.init.normal_(m.wg.weight, 0, 0.02)
            m.record = False
            impls[(name, "masked")] = m
            ms = MoHAttention(cfg, 0, MoHSpec(n_shared=hs, top_k=k, mode="skip")).to(device, dtype).eval()
            ms.load_state_dict(m.state_dict())
            ms.record = False
            impls[(name, "skip")] = ms
        fns = {key: (lambda m=m, x=x, cos=cos, sin=sin: m(x, cos, sin)) for key, m in impls.items()}  # this T's inputs
        for fn in fns.values():
            for _ in range(warmup):
                fn()
        times = {key: [] for key in fns}
        for _ in range(repeats):
            for key, fn in fns.items():
                times[key].append(timer(fn))
        base = float(np.median(times[("MHA", "dense")]))
        reps.extend(
            {"seq": T, "variant": name, "mode": mode, "repeat": r, "seconds": t}
            for (name, mode), ts in times.items()
            for r, t in enumerate(ts)
        )
        for (name, mode), ts in times.items():
            med = float(np.median(ts))
            if name == "MHA":
                active = n_heads
            else:
                hs, k = budgets[name]
                active = hs + k
            fl = layer_flops(cfg.d_model, n_heads, d_head, T, active)
            fl0 = layer_flops(cfg.d_model, n_heads, d_head, T, n_heads)
            rows.append(
                {
                    "seq": T,
                    "variant": name,
                    "mode": mode,
                    "active_heads": active,
                    "activated": active / n_heads,
                    "seconds": med,
                    "tokens_per_s": batch * T / med,
                    "time_vs_mha": med / base,
                    "flops_vs_mha_perfect_skip": sum(fl.values()) / sum(fl0.values()),
                }
            )
    df = pd.DataFrame(rows)
    df.attrs["repeats"] = pd.DataFrame(
        reps
    )  # per-repeat times (round-robin: repeat r of every implementation together)
    return df


def speed_table(P) -> pd.DataFrame:
    """Table 7 at profile ``P``: ``speed_benchmark`` over ``P.speed_seqs`` and ``P.speed_budgets``, with the
    layer's shape, device and dtype as columns (for the figure's title); ``.attrs["repeats"]`` keeps the
    per-repeat times."""
    t7 = speed_benchmark(
        P.speed_seqs,
        P.speed_budgets,
        n_heads=P.speed_heads,
        d_head=P.speed_d_head,
        batch=P.speed_batch,
        repeats=P.speed_repeats,
        device=P.device,
        dtype=getattr(torch, P.speed_dtype),
        seed=P.seed,
    )
    for k, v in dict(heads=P.speed_heads, d_head=P.speed_d_head, device=str(P.device), dtype=P.speed_dtype).items():
        t7[k] = v  # for the title (t7.attrs keeps the per-repeat times)
    return t7


def speed_report(t7: pd.DataFrame) -> str:
    """Time relative to MHA, then tokens per second, per (variant, mode) and sequence length."""
    rel = t7.pivot_table(index=["variant", "mode"], columns="seq", values="time_vs_mha", sort=False).round(2)
    tps = t7.pivot_table(index=["variant", "mode"], columns="seq", values="tokens_per_s", sort=False).round(0)
    return f"{rel.to_string()}\n\ntokens/s:\n{tps.to_string()}"

"""Speed of head-sparse MoH attention (issue 16): dense SDPA, masked MoH, FlexAttention skipping and a dense
layer with only the h_s + K active heads, for prefill and for one decode step, timed in the same run; and the
figure of the resulting table (``flex_speed``).

The attention core only (q/k/v given, no projections): that is where skipping can pay. Routing is random and
seeded: each token (prefill) or sequence (decode) picks K of the E = h - h_s routed heads uniformly; gates
are uniform in (0, 1) on the selected heads and 1 on the shared ones. Random routing is close to balanced; a
trained router's imbalance shows in ``load_imbalance`` (the flex kernel pads every head to the busiest).
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

from . import flex as fx
from .layer import topk_mask
from .speed import _timer

IMPLS = {  # implementation -> (label, colour); "dense" is the reference (ratio 1)
    "masked": ("masked (all heads, gated)", "tab:orange"),
    "flex": ("flex (head-sparse block mask)", "tab:blue"),
    "gather": ("selected-heads K/V gather", "tab:purple"),
    "dense_active": ("dense, h_s + K heads (bound)", "tab:green"),
}


def _time_round_robin(fns: dict, timer, repeats: int, warmup: int) -> dict[str, list[float]]:
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {key: [] for key in fns}
    for _ in range(repeats):  # round robin: load on the machine hits every implementation alike
        for key, fn in fns.items():
            times[key].append(timer(fn))
    return times


def _rows(times, base, **common) -> list[dict]:
    ref = float(np.median(times[base]))
    rows = []
    for impl, ts in times.items():
        q25, med, q75 = np.quantile(ts, [0.25, 0.5, 0.75])
        rows.append(
            dict(common, implementation=impl, median_s=med, q25_s=q25, q75_s=q75, repeats=len(ts))
            | dict(ratio_to_dense=med / ref, ratio_q25=q25 / ref, ratio_q75=q75 / ref)
        )
    return rows


@torch.no_grad()
def flex_benchmark(
    shapes: Sequence[tuple[int, int]] = ((8, 2048), (2, 8192), (1, 32768)),
    *,
    n_heads: int = 32,
    d_head: int = 128,
    n_shared: int = 16,
    top_k: int = 8,
    fractions: Sequence[float] = (0.25,),
    repeats: int = 50,
    warmup: int = 20,
    device="cuda",
    dtype=torch.bfloat16,
    compile: bool = True,
    decode_batch: int = 64,
    decode_lens: Sequence[int] = (4096, 16384),
    seed: int = 0,
) -> pd.DataFrame:
    """One row per (kind, B, T, implementation, K). Routed head counts: ``top_k`` and ``round(f * E)`` for
    each of ``fractions`` (E = n_heads - n_shared; defaults: top-8 and top-4 of 16, 50% and 25% routed).

    * prefill, each (B, T) of ``shapes``: ``dense`` causal SDPA over all heads (the reference), ``masked``
      (the same, then gated), ``flex`` (``moh_flex_attention``: compaction, block mask, kernel, scatter all
      timed), ``dense_active`` (causal SDPA over h_s + K heads: the bound for perfect skipping);
    * decode, batch ``decode_batch`` and each KV length L of ``decode_lens`` (T = L): ``dense``
      (``dense_decode``), ``gather`` and ``flex`` (``decode_step``), ``dense_active``.

    Times: median and quartiles (q25, q75) of ``repeats`` after ``warmup`` calls, CUDA events on CUDA and
    ``perf_counter`` elsewhere, implementations in round robin; ``ratio_*`` divide by the median of
    ``dense`` of the same (kind, B, T, K). ``load_imbalance``: max / mean selected count over (batch, routed
    head); ``max_err``: flex vs masked (prefill), the active heads vs dense (decode), in float32.
    ``attrs["repeats"]``: every timed call (kind, B, T, top_k, implementation, repeat, seconds)."""
    device = torch.device(device)
    timer = _timer(device)
    hs, E = n_shared, n_heads - n_shared
    ks = sorted({top_k, *(max(1, round(f * E)) for f in fractions)}, reverse=True)
    gen = torch.Generator().manual_seed(seed)
    info = dict(device=str(device), dtype=str(dtype).removeprefix("torch."), compiled=compile, n_heads=n_heads)
    info |= dict(d_head=d_head, n_shared=hs)

    def rand(*shape):
        return torch.randn(*shape, generator=gen).to(device, dtype)

    rows, reps = [], []

    def keep(times, **key):  # per-repeat times: intervals over repeats of the paired (same-round) ratios
        reps.extend(
            dict(key, implementation=i, repeat=j, seconds=t) for i, ts in times.items() for j, t in enumerate(ts)
        )

    for B, T in shapes:
        q, k, v = rand(B, n_heads, T, d_head), rand(B, n_heads, T, d_head), rand(B, n_heads, T, d_head)
        for K in ks:
            sel = topk_mask(torch.rand(B, T, E, generator=gen), K).to(device)  # [B, T, E]
            gates = torch.cat([torch.ones(B, T, hs), torch.rand(B, T, E, generator=gen)], -1).to(device)
            gm = (gates * torch.cat([torch.ones_like(sel[..., :hs]), sel], -1)).to(dtype)  # masked mode's gates
            A = hs + K
            qa, ka, va = q[:, :A].contiguous(), k[:, :A].contiguous(), v[:, :A].contiguous()
            fns = {
                "dense": lambda q=q, k=k, v=v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
                "masked": lambda q=q, k=k, v=v, gm=gm: (
                    F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2) * gm[..., None]
                ),
                "flex": lambda q=q, k=k, v=v, sel=sel, gm=gm: fx.moh_flex_attention(
                    q, k, v, sel, n_shared=hs, gates=gm, compile=compile
                ),
                "dense_active": lambda qa=qa, ka=ka, va=va: F.scaled_dot_product_attention(qa, ka, va, is_causal=True),
            }
            err = (fns["flex"]().float() - fns["masked"]().float()).abs().max().item()
            count = sel.sum(1).float()  # [B, E]
            times = _time_round_robin(fns, timer, repeats, warmup)
            keep(times, kind="prefill", B=B, T=T, top_k=K)
            common = dict(kind="prefill", B=B, T=T, top_k=K, routed_fraction=K / E, active_heads=A)
            common |= dict(load_imbalance=(count.max() / count.mean()).item(), max_err=err) | info
            rows += _rows(times, "dense", **common)
        del q, k, v
    Bd = decode_batch
    for L in decode_lens:
        q, kc, vc = rand(Bd, n_heads, d_head), rand(Bd, n_heads, L, d_head), rand(Bd, n_heads, L, d_head)
        for K in ks:
            routed = torch.rand(Bd, E, generator=gen).topk(K, dim=-1).indices.to(device)  # [Bd, K]
            A = hs + K
            ka, va = kc[:, :A].contiguous(), vc[:, :A].contiguous()
            fns = {
                "dense": lambda q=q, kc=kc, vc=vc: fx.dense_decode(q, kc, vc),
                "gather": lambda q=q, kc=kc, vc=vc, r=routed: fx.decode_step(q, kc, vc, r, n_shared=hs),
                "flex": lambda q=q, kc=kc, vc=vc, r=routed: fx.decode_step(
                    q, kc, vc, r, n_shared=hs, method="flex", compile=compile
                ),
                "dense_active": lambda q=q[:, :A], ka=ka, va=va: fx.dense_decode(q, ka, va),
            }
            on = torch.zeros(Bd, n_heads, dtype=torch.bool, device=device)
            on[:, :hs] = True
            on.scatter_(1, routed + hs, True)
            ref = fns["dense"]().float()[on]
            err = max((fns[m]().float()[on] - ref).abs().max().item() for m in ("gather", "flex"))
            times = _time_round_robin(fns, timer, repeats, warmup)
            keep(times, kind="decode", B=Bd, T=L, top_k=K)
            common = dict(kind="decode", B=Bd, T=L, top_k=K, routed_fraction=K / E, active_heads=A)
            common |= dict(load_imbalance=float("nan"), max_err=err) | info
            rows += _rows(times, "dense", **common)
        del q, kc, vc
    out = pd.DataFrame(rows)
    out.attrs["repeats"] = pd.DataFrame(reps)
    return out


def flex_speed(df: pd.DataFrame) -> plt.Figure:
    """Time relative to dense SDPA over all heads (line at 1; lower is faster) per (B, T, routed fraction),
    one bar per implementation with the quartile range as error bar; a panel per kind (prefill, decode).
    Draws ``flex_benchmark``'s table only."""
    kinds = [k for k in ("prefill", "decode") if k in set(df["kind"])]
    fig, axes = plt.subplots(1, len(kinds), figsize=(5.5 * len(kinds), 4.0), dpi=110, squeeze=False)
    for ax, kind in zip(axes[0], kinds, strict=True):
        d = df[(df["kind"] == kind) & (df["implementation"] != "dense")]
        groups = d[["B", "T", "routed_fraction", "top_k"]].drop_duplicates().sort_values(["T", "B", "top_k"])
        keys = list(groups.itertuples(index=False, name=None))  # (B, T, routed fraction, K)
        impls = [i for i in IMPLS if i in set(d["implementation"])]
        w = 0.8 / len(impls)
        for j, impl in enumerate(impls):
            label, colour = IMPLS[impl]
            s = d[d["implementation"] == impl].set_index(["B", "T", "top_k"])
            r = s.loc[[(b, t, k) for b, t, _, k in keys]]
            x = np.arange(len(keys)) + (j - (len(impls) - 1) / 2) * w
            err = [r["ratio_to_dense"] - r["ratio_q25"], r["ratio_q75"] - r["ratio_to_dense"]]
            ax.bar(x, r["ratio_to_dense"], w, yerr=err, capsize=2, color=colour, label=label)
        ax.axhline(1, color="k", lw=0.8, ls="--", label="dense, all heads")
        ax.set_xticks(np.arange(len(keys)))
        ticks = [f"B={b} {'L' if kind == 'decode' else 'T'}={t}\n{f:.0%} routed" for b, t, f, _ in keys]
        ax.set_xticklabels(ticks, fontsize=7)
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(subs=(1, 1.5, 2, 3, 5, 7)))
        ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_ylabel("time / dense (median, IQR)")
        ax.set_title(kind, fontsize=10)
    handles = {}
    for ax in axes[0]:
        handles |= dict(zip(*ax.get_legend_handles_labels()[::-1], strict=True))
    fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=len(handles), fontsize=7, frameon=False)
    r0 = df.iloc[0]
    fig.suptitle(
        f"MoH attention, {r0['n_heads']} heads x {r0['d_head']}, h_s={r0['n_shared']}, {r0['device']} {r0['dtype']}"
        f"{', compiled flex' if r0['compiled'] else ', eager flex'}",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig

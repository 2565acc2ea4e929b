"""Figures of notebook 02 (DHA), each a pure function of the tidy table saved beside its PNG:
``python -m headlab replot 02_dha_fusion --profile smoke`` redraws them without training anything.

Runs before these functions existed saved some frames without the columns that label a figure (``budget``,
``mha_loss``, ``budget_tokens``, ``collapsed_init_loss``); their figures are redrawn without those labels.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.patches import FancyBboxPatch

from ...figures import run_value


def _pct(b) -> str:
    return "" if b is None or (isinstance(b, float) and np.isnan(b)) else f"{float(b):.0%}"


def _table(df: pd.DataFrame, title: str, width: float | None = None, digits: int = 4):
    """A table as a figure (the paper's tables are tables): header row bold on grey; whole-number float
    columns (integers with gaps, as a CSV reads them back) printed as integers."""
    df = df.copy()
    for c in df.columns:
        x = df[c]
        if x.dtype.kind == "f" and x.notna().any() and (x.dropna() % 1 == 0).all():
            df[c] = x.astype("Int64")
    show = df.round(digits).astype(object).where(df.notna(), "")
    fig, ax = plt.subplots(figsize=(width or 1.5 * len(df.columns) + 1, 0.36 * len(df) + 0.9))
    ax.axis("off")
    t = ax.table(cellText=show.astype(str).values, colLabels=list(df.columns), loc="center", cellLoc="center")
    t.auto_set_font_size(False)
    t.set_fontsize(8.5)
    t.scale(1, 1.35)
    t.auto_set_column_width(col=list(range(len(df.columns))))
    for (r, _c), cell in t.get_celld().items():
        if r == 0:
            cell.set_text_props(weight="bold")
            cell.set_facecolor("#e6e6e6")
    ax.set_title(title, weight="bold")
    return fig


def fig1(maps: pd.DataFrame):
    """Fig. 1 analogue: query→K and query→V head maps of built models. ``maps``: one row per (panel, query
    head) with the K and V head it reads."""
    panels = list(dict.fromkeys(maps.panel))
    ncol = min(len(panels), 6)
    nrow = -(-len(panels) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(2.7 * ncol, 2.9 * nrow), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.axis("off")
    cmap = plt.get_cmap("tab10")
    for ax, panel in zip(axes.flat, panels, strict=False):
        d = maps[maps.panel == panel].sort_values("query_head")
        Hq = len(d)
        for col, y in (("k_head", 1.0), ("v_head", -1.0)):
            mp = d[col].astype(int).tolist()
            groups = sorted(set(mp))
            xs = {g: np.mean([h for h in range(Hq) if mp[h] == g]) for g in groups}
            for h in range(Hq):
                ax.plot([h, xs[mp[h]]], [0, y], color=cmap(mp[h] % 10), lw=1.2, alpha=0.8)
            ax.scatter(
                list(xs.values()), [y] * len(xs), s=140, c=[cmap(g % 10) for g in groups], zorder=3, edgecolors="k"
            )
        ax.scatter(range(Hq), [0] * Hq, s=90, marker="s", color="0.6", zorder=3, edgecolors="k")
        for y, t in ((1, "K"), (0, "Q"), (-1, "V")):
            ax.text(-1.0, y, t, ha="right", va="center", weight="bold")
        title = f"{panel}\n{d.k_head.nunique()} K / {d.v_head.nunique()} V heads"
        ax.set(title=title, xlim=(-1.6, Hq - 0.4), ylim=(-1.4, 1.4))
        ax.axis("off")
    fig.suptitle("Query→K and query→V head maps (drawn from the built models)", y=1.12)
    return fig


def fig2(cka: pd.DataFrame):
    """Fig. 2 analogue: pairwise linear CKA of K heads and of V heads. ``cka``: one row per (model, kind,
    layer, head_i, head_j). Top: the first model's first and last layer; bottom: every head pair of the last
    model across its layers."""
    models = list(dict.fromkeys(cka.model))
    top, bottom = models[0], models[-1]
    fig = plt.figure(figsize=(15, 7.5))
    gs = fig.add_gridspec(2, 4, height_ratios=[1, 0.8], hspace=0.45, wspace=0.35)
    d = cka[cka.model == top]
    last = int(d.layer.max())
    im = None
    for c, (kind, layer) in enumerate([("K", 0), ("K", last), ("V", 0), ("V", last)]):
        ax = fig.add_subplot(gs[0, c])
        m = d[(d.kind == kind) & (d.layer == layer)].pivot_table(index="head_i", columns="head_j", values="cka")
        if m.empty:
            ax.axis("off")
            continue
        im = ax.imshow(m.values, vmin=0, vmax=1, cmap="magma")
        ax.set(title=f"{kind} heads, layer {layer}", xlabel="head", ylabel=f"{top}: head" if c == 0 else "head")
        ax.grid(False)
    d = cka[(cka.model == bottom) & (cka.head_i < cka.head_j)]
    for c, kind in enumerate("KV"):
        ax = fig.add_subplot(gs[1, 2 * c : 2 * c + 2])
        strip = d[d.kind == kind].pivot_table(index=["head_i", "head_j"], columns="layer", values="cka")
        if strip.empty:
            ax.axis("off")
            continue
        im = ax.imshow(strip.values, aspect="auto", vmin=0, vmax=1, cmap="magma", interpolation="nearest")
        ax.set(title=f"{bottom}: {kind} head pairs", xlabel="layer", ylabel="head pair")
        if 0 < len(strip) <= 12:
            ax.set(yticks=range(len(strip)), yticklabels=[f"{i}–{j}" for i, j in strip.index])
        ax.grid(False)
    if im is not None:
        fig.colorbar(im, ax=fig.axes, shrink=0.7, label="linear CKA")
    return fig


def fig3a(f3a: pd.DataFrame):
    """Fig. 3a analogue: validation loss while a group of four heads is pulled toward its mean (α = 1:
    mean-pooled). ``f3a``: one row per (kind, group, α); α = 0 is the source model."""
    kinds = list(dict.fromkeys(f3a.kind))
    fig, axes = plt.subplots(1, len(kinds), figsize=(5 * len(kinds), 3.6), sharey=True, squeeze=False)
    base = f3a.loc[f3a.alpha == 0, "loss"]
    for ax, kind in zip(axes[0], kinds, strict=True):
        d = f3a[f3a.kind == kind]
        for (grp, heads, cka), g in d.groupby(["group", "heads", "mean_cka"], sort=False):
            ax.plot(g.alpha, g.loss, marker="o", label=f"{grp} {heads} (CKA {cka:.2f})")
        if len(base):
            ax.axhline(base.iloc[0], color="grey", ls=":", label="MHA source")
        ax.set(
            title=f"{kind} heads, layer {d.layer.iloc[0]}",
            xlabel="fusion ratio α (1 = mean-pool)",
            ylabel="validation loss (nats/byte)",
        )
        ax.legend(fontsize=8)
    return fig


def fig3b(f3b: pd.DataFrame):
    """Fig. 3b analogue: per-layer redundancy (mean pairwise CKA) of Q, K and V heads, each model's
    adjacent-layer CKA dashed as a baseline. ``f3b``: one row per (model, kind, layer)."""
    models = list(dict.fromkeys(f3b.model))
    fig, axes = plt.subplots(len(models), 1, figsize=(13, 3.25 * len(models) + 0.5), squeeze=False)
    for ax, name in zip(axes[:, 0], models, strict=True):
        d = f3b[f3b.model == name]
        for i, (kind, g) in enumerate(d.groupby("kind", sort=False)):
            ax.bar(g.layer + (i - 1) * 0.27, g.redundancy, width=0.27, label=f"{kind} heads", color=f"C{i}")
            ax.axhline(g.adjacent_layer_cka.mean(), color=f"C{i}", ls="--", lw=1)
        ax.set(
            title=f"{name}: per-layer redundancy (dashed: adjacent-layer baseline)",
            xlabel="layer",
            ylabel="mean pairwise CKA",
            xticks=sorted(d.layer.unique()),
        )
        ax.legend(ncol=3, fontsize=8)
    fig.tight_layout()
    return fig


STAGES = [
    ("1  search", "CKA of K and V heads\n+ loss probes per layer\n→ groups and\nper-layer counts"),
    ("2  fusion", "W'ᵢ = Σⱼ Ωᵢⱼ Wⱼ\n(Ω = I at start)\nLM loss + λ(t) ·\nfusion loss"),
    ("3  collapse + CT", "one K and one V\nhead per group;\ncontinued\npre-training"),
]


def fig4(fl: pd.DataFrame):
    """Fig. 4 analogue: the method as a diagram, and the measured fusion of the first DHA arm. ``fl``: one
    row per fusion step (fusion loss, λ, LM loss; validation loss if collapsed at that step)."""
    fig, axes = plt.subplots(1, 3, figsize=(16, 3.9), gridspec_kw={"width_ratios": [1.4, 1, 1]})
    ax = axes[0]
    for i, (t, d) in enumerate(STAGES):
        x = i * 0.345
        box = FancyBboxPatch((x, 0.12), 0.29, 0.74, boxstyle="round,pad=0.015", fc=f"C{i}", alpha=0.2, ec=f"C{i}")
        ax.add_patch(box)
        ax.text(x + 0.145, 0.76, t, ha="center", weight="bold", fontsize=10)
        ax.text(x + 0.145, 0.42, d, ha="center", va="center", fontsize=8)
        if i < 2:
            ax.annotate("", xy=(x + 0.345, 0.5), xytext=(x + 0.295, 0.5), arrowprops=dict(arrowstyle="-|>", color="k"))
    ax.set(xlim=(-0.01, 1.0), ylim=(0, 1), title="DHA pipeline")
    ax.axis("off")
    ax = axes[1]
    ax.semilogy(fl.step, fl.fusion_loss, color="C0", label="fusion loss")
    b = run_value(fl, "budget")
    ax.set(xlabel="fusion step", ylabel="normalised fusion loss", title=f"fusion, budget {_pct(b)}".strip(", "))
    ax2 = ax.twinx()
    ax2.plot(fl.step, fl["lambda"], color="C1", ls="--", label="λ")
    ax2.set_ylabel("λ")
    ax2.grid(False)
    ax.legend(handles=ax.get_lines() + ax2.get_lines(), loc="center right")
    ax = axes[2]
    ax.plot(fl.step, fl.lm_loss, color="C2", alpha=0.7, label="LM loss, fusion-parametrised (train batch)")
    if "collapsed_loss" in fl:  # absent when the fusion phase is shorter than its evaluation cadence
        pts = fl.dropna(subset=["collapsed_loss"])
        ax.plot(pts.step, pts.collapsed_loss, "o-", color="C3", label="validation loss if collapsed here")
    end = run_value(fl, "collapsed_init_loss")
    if end is not None:
        ax.plot([fl.step.iloc[-1]], [end], "o", color="C3")
    mha = run_value(fl, "mha_loss")
    if mha is not None:
        ax.axhline(mha, color="grey", ls=":", label="MHA source")
    ax.set(xlabel="fusion step", ylabel="loss (nats/byte)", title="LM loss during fusion")
    ax.legend(fontsize=7.5, loc="upper right")
    fig.tight_layout()
    return fig


def table1(t1: pd.DataFrame):
    """Table 1 analogue: loss and next-token accuracy per model, method and KV budget (means over seeds)."""
    show = t1.assign(budget=t1.budget.map(_pct))
    return _table(show, "Table 1: loss / next-token accuracy at equal KV budget and equal training tokens", 16, 3)


def _counts(c) -> str:
    """A per-layer head-count list, written out for a few layers and as a range for many."""
    xs = [int(x) for x in str(c).strip("[]").split(",") if x.strip()]
    return str(c) if len(xs) <= 8 else f"{min(xs)}–{max(xs)} per layer"


def table2(t2: pd.DataFrame):
    """Table 2 analogue: the ablations (w/o fusion, w/o adaptive allocation, DHA-lite) at the first budget,
    and the analysis model's conversions without training."""
    show = t2.assign(k_counts=t2.k_counts.map(_counts), v_counts=t2.v_counts.map(_counts))
    b = run_value(t2, "budget")
    show = show.drop(columns=["budget"], errors="ignore")
    return _table(show, f"Table 2: ablations{' at budget ' + _pct(b) if b is not None else ''}", 18, 3)


def table3(t3: pd.DataFrame):
    """Table 3 analogue: one fixed step budget split between fusion and continued pre-training."""
    total = int(t3[["search_steps", "fusion_steps", "ct_steps"]].iloc[0].sum())
    b = run_value(t3, "budget")
    show = t3.drop(columns=["budget"], errors="ignore")
    return _table(show, f"Table 3: fusion / CT split at {total} steps{', budget ' + _pct(b) if b is not None else ''}")


def fig5(f5: pd.DataFrame):
    """Fig. 5 analogue: K and V heads kept per layer by each allocation. ``f5``: one row per (model,
    allocation, kind, layer)."""
    models = list(dict.fromkeys(f5.model))
    kinds = sorted(f5.kind.unique())
    ratios = [1, 2.2][: len(models)] if len(models) == 2 else [1] * len(models)
    fig, axes = plt.subplots(
        len(kinds), len(models), figsize=(14, 3 * len(kinds)), squeeze=False, gridspec_kw={"width_ratios": ratios}
    )
    for c, name in enumerate(models):
        for r, kind in enumerate(kinds):
            ax, g = axes[r, c], f5[(f5.model == name) & (f5.kind == kind)]
            al = list(dict.fromkeys(g.allocation))
            w = 0.8 / max(len(al), 1)
            for i, a in enumerate(al):
                gg = g[g.allocation == a]
                ax.bar(gg.layer + (i - (len(al) - 1) / 2) * w, gg.heads, width=w, label=a)
            ax.set(title=f"{name}: {kind} heads per layer", xlabel="layer", ylabel=f"# {kind} heads")
            ax.set_xticks(sorted(g.layer.unique()))
            if al:
                ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def loss_vs_tokens(curve: pd.DataFrame):
    """Validation loss against training tokens charged, GQA and DHA per budget; the first seed solid, the
    others faint; DHA's fusion phase (collapsed at each evaluation) dashed."""
    budgets = sorted(curve.budget.unique())
    s0 = curve.seed.min()
    fig, axes = plt.subplots(1, len(budgets), figsize=(6.5 * len(budgets), 3.8), squeeze=False)
    mha, charged = run_value(curve, "mha_loss"), run_value(curve, "budget_tokens")
    for ax, b in zip(axes[0], budgets, strict=True):
        for (a, s), g in curve[curve.budget == b].groupby(["arm", "seed"]):
            c, al, first = ("C0" if a == "GQA" else "C3"), (1.0 if s == s0 else 0.35), s == s0
            fus = g[g.phase.isin(["fusion", "init"])]
            if a == "DHA" and len(fus) > 1:
                label = "DHA during fusion (collapsed)" if first else None
                ax.plot(fus.tokens / 1e3, fus.loss, "--o", ms=3, color=c, alpha=al, label=label)
            g = g[g.phase != "fusion"]
            label = (a if a == "GQA" else "DHA after collapse") if first else None
            ax.plot(g.tokens / 1e3, g.loss, "-o", ms=3, color=c, alpha=al, label=label)
        if charged is not None:
            ax.axvline(charged / 1e3, color="k", lw=0.8, ls="--", label="budget")
        if mha is not None:
            ax.axhline(mha, color="grey", ls=":", label="MHA source")
        ax.set(
            title=f"KV budget {b:.0%}",
            xlabel="training tokens charged (thousands)",
            ylabel="validation loss (nats/byte)",
        )
        lo, ref = curve.loss.min(), mha if mha is not None else curve.loss.median()
        ax.set_ylim(top=min(ax.get_ylim()[1], lo + 3 * (ref - lo + 0.3)))
        ax.legend(fontsize=8, loc="upper right")
    return fig


def tableA7(a7: pd.DataFrame):
    """Table A7 analogue: GQA with mean-pooled contiguous groups, GQA with CKA grouping, and DHA."""
    b = run_value(a7, "budget")
    show = a7.drop(columns=["budget"], errors="ignore")
    return _table(
        show, f"Table A7: GQA, GQA with CKA grouping, DHA{' (budget ' + _pct(b) + ')' if b is not None else ''}"
    )


ARM_COLOURS = {  # fixed colours (matplotlib's tab10), not the style's cycle: under the notebooks' colour-blind
    # palette C3 and C1 are two oranges, and uniform + fusion and DHA-lite could not be told apart
    "source + CT": "grey",
    "GQA": "#1f77b4",
    "uniform + fusion": "#d62728",
    "DHA-lite": "#ff7f0e",
    "DHA": "#2ca02c",
    "DHA w/o fusion": "#9467bd",
    "first design": "grey",
}


def smollm_curves(curves: pd.DataFrame):
    """SmolLM2 as the source (``pretrained.run``): held-out test loss against training tokens charged, one panel per
    KV budget, each arm's mean over seeds with the seeds' range shaded; the source + CT control keeps every head
    (drawn in every panel). ``curves``: ``smollm_curves.csv``."""
    c = curves[curves.phase != "fusion"]
    budgets = sorted(b for b in c.budget.unique() if b < 1.0) or [1.0]
    fig, axes = plt.subplots(1, len(budgets), figsize=(6.2 * len(budgets), 3.9), squeeze=False, layout="constrained")
    for ax, b in zip(axes[0], budgets, strict=True):
        for arm, g in c[(c.budget == b) | (c.budget == 1.0)].groupby("arm", sort=False):
            st = g.groupby("tokens").test_loss.agg(["mean", "min", "max", "count"]).reset_index()
            col = ARM_COLOURS.get(arm, None)
            ax.plot(st.tokens / 1e3, st["mean"], "-o", ms=3, color=col, label=f"{arm} ({int(st['count'].max())} seeds)")
            ax.fill_between(st.tokens / 1e3, st["min"], st["max"], color=col, alpha=0.2, lw=0)
        ax.set(
            title=f"KV heads kept: {b:.0%}",
            xlabel="training tokens charged (thousands)",
            ylabel="test loss (nats/token)",
        )
        ax.legend(fontsize=8)
    fig.suptitle("DHA from SmolLM2-135M: fusion vs GQA mean-pool at equal KV budget (band: range over seeds)")
    return fig


def smollm_lr_grid(g: pd.DataFrame):
    """The per-arm learning-rate grid on the SmolLM2 source (``pretrained.lr_grid``): validation and test loss at the
    grid's token budget against the rate, one panel per KV budget, a line per (arm, seed); open circles mark each
    arm's rate chosen on validation. ``g``: ``smollm_lr_grid.csv``."""
    budgets = sorted(g.budget.unique())
    fig, axes = plt.subplots(1, len(budgets), figsize=(5.6 * len(budgets), 3.8), squeeze=False, layout="constrained")
    for ax, b in zip(axes[0], budgets, strict=True):
        for (arm, seed), h in g[g.budget == b].groupby(["arm", "seed"], sort=False):
            h = h.sort_values("lr")
            col = ARM_COLOURS.get(arm, None)
            ax.plot(h.lr, h.val_loss, "-o", ms=4, color=col, label=f"{arm}, seed {seed}: val")
            ax.plot(h.lr, h.test_loss, "--", color=col, alpha=0.6, label=f"{arm}, seed {seed}: test")
            best = h[h.best.astype(bool)]
            ax.plot(best.lr, best.val_loss, "o", ms=11, mfc="none", mec=col)
        ax.set_xscale("log")
        rates = sorted(g.lr.unique())
        ax.set_xticks(rates, [f"{x:g}" for x in rates])
        ax.minorticks_off()
        n = int(g.tokens.iloc[0]) if "tokens" in g and len(g) else 0
        ax.set(
            title=f"KV heads kept: {b:.0%}",
            xlabel="learning rate (fusion and continued training)",
            ylabel=f"loss at {n / 1e3:.0f}k tokens (nats/token)",
        )
        ax.legend(fontsize=7)
    fig.suptitle("Per-arm learning rate on the SmolLM2 source (circles: each arm's rate chosen on validation)")
    return fig


def design_ablation(d: pd.DataFrame):
    """Which design choice moves DHA vs GQA (``design.design_ablation``): left, DHA minus GQA final test loss per
    variant (a dot per seed, the bar their mean; below 0: DHA better); right, each arm's final test loss per variant
    (mean over seeds). A variant whose search and fusion exceed the budget is marked, not drawn."""
    from .design import dha_minus_gqa

    variants = list(dict.fromkeys(d.variant))
    fits = d.groupby("variant", sort=False).fits.all()
    dm = dha_minus_gqa(d)
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.5 * len(variants) + 1.8), layout="constrained")
    ax = axes[0]
    for i, v in enumerate(variants):
        x = dm[dm.variant == v]["diff"].to_numpy(float)
        if not fits[v] or not np.isfinite(x).any():
            ax.text(
                0.5,
                i,
                "does not fit the budget",
                va="center",
                ha="center",
                fontsize=8,
                color="grey",
                transform=ax.get_yaxis_transform(),
            )
            continue
        ax.barh(i, np.nanmean(x), color="C3" if np.nanmean(x) < 0 else "C0", alpha=0.35)
        ax.plot(x, np.full(len(x), i), "o", color="k", ms=4)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(range(len(variants)), variants)
    ax.invert_yaxis()
    ax.set(xlabel="DHA minus GQA final test loss (nats/byte)", title="DHA - GQA per variant (dots: seeds)")
    ax = axes[1]
    m = d[d.fits].groupby(["variant", "arm"], sort=False).final_test_loss.mean().unstack()
    for k, a in enumerate(c for c in ("source + CT", "GQA", "DHA") if c in m.columns):
        y = [variants.index(v) + (k - 1) * 0.22 for v in m.index]
        ax.barh(y, m[a], height=0.22, color=ARM_COLOURS.get(a), label=a)
    lo = float(np.nanmin(m.to_numpy())) if m.size else 0.0
    ax.set_xlim(left=lo - 0.05 * abs(lo) - 0.02)
    ax.set_yticks(range(len(variants)), variants)
    ax.invert_yaxis()
    ax.set(xlabel="final test loss (mean over seeds)", title="each arm's final test loss")
    ax.legend(fontsize=8, loc="lower right")
    b = run_value(d, "budget")
    fig.suptitle(f"Design ablation on the byte source{' at ' + _pct(b) if b is not None else ''}: one change at a time")
    return fig


FROM_CSV = {
    f.__name__: f
    for f in (
        fig1,
        fig2,
        fig3a,
        fig3b,
        fig4,
        table1,
        table2,
        table3,
        fig5,
        loss_vs_tokens,
        tableA7,
        design_ablation,
        smollm_curves,
        smollm_lr_grid,
    )
}
# drawn by their own command (python -m headlab.papers.dha_fusion.pretrained), not by the smoke notebook
NOT_IN_NOTEBOOK = ("smollm_curves", "smollm_lr_grid")

"""Figures of notebook 03 drawn from the whole grid's tidy tables: task examples, training curves, per-head
metrics, aggregation, the scaling rule, dynamics, counting heads and Table 1 (``figures.FROM_CSV`` lists them
with the others). Runs older than a function saved some frames without the columns that label a figure
(``l_max``, ``batch``, ``lr``, ``prior``); those are redrawn without the labels."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ...figures import run_value

TOKEN_COLORS = {"0": "#4C72B0", "1": "#DD8452", "2": "#BBBBBB", "BOS": "#333333", "EOS": "#333333"}


def fig1_task_examples(ex: pd.DataFrame):
    """Fig. 1: the same strings in format A (answer token at EOS) and format B (the LM must end exactly when
    #1 > #0). ``ex``: one row per (format, example) with its tokens and decision position."""
    variants = list(dict.fromkeys(ex.variant))
    fig, axes = plt.subplots(1, len(variants), figsize=(6.5 * len(variants), 3.6), squeeze=False)
    width = int(ex.tokens.str.split().str.len().max())
    for ax, v in zip(axes[0], variants, strict=True):
        d = ex[ex.variant == v]
        for r, row in enumerate(d.itertuples()):
            toks = row.tokens.split()
            for k, t in enumerate(toks):
                ax.add_patch(plt.Rectangle((k, -r - 0.4), 0.9, 0.8, color=TOKEN_COLORS.get(t, "#999999"), lw=0))
                light = t in ("BOS", "EOS", "0", "1")
                ax.text(k + 0.45, -r, t[0], ha="center", va="center", fontsize=8, color="white" if light else "black")
            k = row.decision_pos
            ax.add_patch(plt.Rectangle((k - 0.05, -r - 0.5), 1.0, 1.0, fill=False, ec="crimson", lw=1.6))
            what = "answer" if v != "B" else "next"
            ax.text(len(toks) + 0.4, -r, f"#1={row.n1}, #0={row.n0}  →  {what}: {row.target}", va="center", fontsize=8)
        title = "LM must end exactly when #1 > #0" if v == "B" else "answer token at EOS"
        ax.set(xlim=(-0.2, width + 8), ylim=(-len(d) + 0.3, 0.7), title=f"format {v}: {title}")
        ax.axis("off")
    fig.suptitle("Count01 examples (red box: decision position; B = BOS, E = EOS)", y=1.02)
    return fig


def fig2_training_curves(log: pd.DataFrame):
    """Fig. 2: held-out decision loss and accuracy during training, per head count H, one line per seed.
    ``log``: one row per (H, seed, evaluation step) of the main grid."""
    Hs = sorted(log.H.unique())
    fig, axes = plt.subplots(2, len(Hs), figsize=(3.2 * len(Hs), 5.2), sharex=True, sharey="row", squeeze=False)
    for j, H in enumerate(Hs):
        for s, g in log[log.H == H].groupby("seed"):
            axes[0, j].plot(g.step, g.test_loss, lw=1.2, label=f"seed {s}")
            axes[1, j].plot(g.step, g.test_acc, lw=1.2, label=f"seed {s}")
        axes[0, j].set(title=f"H = {H}", yscale="log")
        axes[1, j].set(xlabel="step", ylim=(0.35, 1.02))
    axes[0, 0].set_ylabel("held-out decision loss")
    axes[1, 0].set_ylabel("held-out accuracy")
    axes[0, -1].legend(fontsize=7, ncol=2)
    run = [f"{k} {run_value(log, k):g}" for k in ("l_max", "batch", "lr") if run_value(log, k) is not None]
    fig.suptitle(f"Training curves, format {log.variant.iloc[0]}" + (f" ({', '.join(run)})" if run else ""), y=1.01)
    return fig


def fig3_head_metrics(hA: pd.DataFrame):
    """Fig. 3: every head of every model of the main format: l-acc (the head alone, decoded over the
    vocabulary) against s-acc (best threshold on its decision score), coloured by the score's ROC AUC."""
    Hs = sorted(hA.H.unique())
    fig, axes = plt.subplots(1, len(Hs), figsize=(3.3 * len(Hs), 3.4), sharex=True, sharey=True, squeeze=False)
    sc = None
    for ax, H in zip(axes[0], Hs, strict=True):
        for s, g in hA[hA.H == H].groupby("seed"):
            sc = ax.scatter(
                g.l_acc, g.s_acc, c=g.auc, cmap="viridis", vmin=0.5, vmax=1.0,
                marker="osD^v<>pX*"[int(s) % 10], s=36, edgecolor="k", lw=0.4, label=f"seed {s}",
            )  # fmt: skip
        ax.plot([0.3, 1], [0.3, 1], ls="--", color="grey", lw=0.8)
        ax.set(title=f"H = {H}", xlabel="l-acc", xlim=(0.3, 1.02), ylim=(0.45, 1.02))
    axes[0, 0].set_ylabel("s-acc (best threshold on d_h)")
    axes[0, 0].legend(fontsize=7)
    if sc is not None:
        fig.colorbar(sc, ax=axes[0].tolist(), shrink=0.9, label="ROC AUC of d_h")
    fig.suptitle(
        f"Per-head metrics, format {hA.variant.iloc[0]}: every head of every model "
        "(l-acc: the head alone decoded over the full vocabulary)",
        y=1.03,
    )
    return fig


AGGREGATIONS = [
    ("model_acc", "model"),
    ("logreg_acc", "logistic regression on d_h"),
    ("uniform_std_best_acc", "uniform, score level (best threshold)"),
    ("uniform_vocab_acc", "uniform, vocabulary level"),
]


def fig6_aggregation(agg: pd.DataFrame):
    """Fig. 6: the model's accuracy against aggregations of its heads' scores (learned logistic regression,
    uniform at score level, uniform at vocabulary level), per H; lines are means over seeds, dots seeds.
    ``agg``: one row per model (format, H, seed)."""
    variants = sorted(dict.fromkeys(agg.variant), key=lambda v: v == "B")  # the main format first, then B
    fig, axes = plt.subplots(1, len(variants), figsize=(6 * len(variants), 3.8), sharey=True, squeeze=False)
    for ax, v in zip(axes[0], variants, strict=True):
        d = agg[agg.variant == v]
        Hs = sorted(d.H.unique())
        for j, (col, lab) in enumerate(AGGREGATIONS):
            m = d.groupby("H")[col].mean()
            ax.plot(np.arange(len(m)) + (j - 1.5) * 0.05, m.values, marker="os^D"[j], label=lab)
            for i, H in enumerate(m.index):
                vals = d[d.H == H][col]
                ax.scatter(np.full(len(vals), i + (j - 1.5) * 0.05), vals, s=8, color=f"C{j}", alpha=0.5)
        title = "format B: ending the sentence" if v == "B" else f"format {v}: answer token"
        ax.set(xticks=np.arange(len(Hs)), xticklabels=[f"H = {H}" for H in Hs], title=title, ylim=(0.45, 1.02))
    axes[0, 0].set_ylabel("test accuracy")
    axes[0, -1].legend(fontsize=8, loc="lower left")
    fig.suptitle("Learned versus uniform aggregation of the heads (lines: mean over seeds)", y=1.02)
    return fig


def fig7_scaling_rule(rm: pd.DataFrame):
    """Fig. 7: the rule one model computes on the (#0, #1) grid when the attention to 0s and 1s is scaled
    by (f0, f1): the fraction predicted "more ones" per cell, with the lines #1 = #0 and f1·#1 = f0·#0.
    ``rm``: one row per (edit, #0, #1) of the drawn model."""
    eds = list(dict.fromkeys(rm.edit))
    n = int(run_value(rm, "l_max") or max(rm.n0.max(), rm.n1.max()))
    fig, axes = plt.subplots(1, len(eds), figsize=(4.2 * len(eds), 3.9), sharey=True, squeeze=False)
    im = None
    for ax, e in zip(axes[0], eds, strict=True):
        d = rm[rm.edit == e]
        M = np.full((n + 1, n + 1), np.nan)
        M[d.n1.astype(int), d.n0.astype(int)] = d.p_positive
        im = ax.imshow(M, origin="lower", cmap="coolwarm", vmin=0, vmax=1, extent=(-0.5, n + 0.5, -0.5, n + 0.5))
        f0, f1 = d.f0.iloc[0], d.f1.iloc[0]
        xs = np.linspace(0, n, 50)
        ax.plot(xs, xs, ":", color="k", lw=1, label="#1 = #0")
        ax.plot(xs, f0 / f1 * xs, "--", color="k", lw=1.2, label="f1·#1 = f0·#0")
        ax.set(title=e if e != "none" else "no edit", xlabel="#0", xlim=(-0.5, n + 0.5), ylim=(-0.5, n + 0.5))
        ax.grid(False)
    axes[0, 0].set_ylabel("#1")
    axes[0, 0].legend(fontsize=7, loc="lower right", framealpha=0.9, frameon=True)
    if im is not None:
        fig.colorbar(im, ax=axes[0].tolist(), shrink=0.85, label="fraction predicted 'more ones'")
    r = rm.iloc[0]
    fig.suptitle(f"Rule computed under attention scaling (format {r.variant}, H = {r.H}, seed {r.seed})", y=1.02)
    return fig


def fig8_dynamics(dyn: pd.DataFrame):
    """Fig. 8: held-out loss of the dynamics runs per (format, H), one line per seed; grey band: the loss of
    predicting the label prior (a plateau sits there). ``dyn``: one row per (format, H, seed, step) with each
    run's plateau length and whether it plateaued."""
    variants = list(dict.fromkeys(dyn.variant))
    Hs = sorted(dyn.H.unique())
    fig, axes = plt.subplots(len(variants), len(Hs), figsize=(3.0 * len(Hs), 2.8 * len(variants)), squeeze=False)
    for i, v in enumerate(variants):
        for j, H in enumerate(Hs):
            ax, d = axes[i, j], dyn[(dyn.variant == v) & (dyn.H == H)]
            if d.empty:
                ax.axis("off")
                continue
            for s, g in d.groupby("seed"):
                ax.plot(g.step, g.test_loss, lw=1, label=f"seed {s}")
            prior = run_value(d, "prior")
            if prior is not None:
                ax.axhspan(prior - 0.08, prior + 0.08, color="grey", alpha=0.25)
            runs = d.groupby("seed").plateaus.first().astype(bool)
            ax.set(yscale="log", ylim=(1e-3, 3), title=f"{v}, H = {H}: {int(runs.sum())}/{len(runs)} plateau")
            ax.set(xlabel="step" if i == len(variants) - 1 else "", ylabel="held-out decision loss" if j == 0 else "")
    fig.tight_layout()
    return fig


def fig8b_counting_heads(cnt: pd.DataFrame):
    """How many heads count (AUC ≥ 0.95) in each model of the main format, against all heads (every head
    counts) and the minimal solution (one). ``cnt``: one row per model (format, H, seed)."""
    Hs = sorted(cnt.H.unique())
    fig, ax = plt.subplots(figsize=(4.5, 3.6))
    for i, H in enumerate(Hs):
        vals = cnt[cnt.H == H].counting_heads
        ax.scatter(i + np.linspace(-0.15, 0.15, len(vals)), vals, color="C0", s=25, zorder=3)
    ax.plot(range(len(Hs)), Hs, "k--", lw=0.8, label="all heads count")
    ax.axhline(1, color="crimson", ls=":", label="minimal solution (1)")
    ax.set(
        xticks=range(len(Hs)),
        xticklabels=[f"H = {H}" for H in Hs],
        ylabel="counting heads (AUC ≥ 0.95)",
        title=f"Redundant counting heads (format {cnt.variant.iloc[0]})",
    )
    ax.legend(fontsize=8)
    return fig


TABLE1_INTEGERS = ("seeds", "median_steps_to_95")


def table1_summary(t1: pd.DataFrame):
    """Table 1: the summary per H (columns) of the main format: accuracy, counting heads, calibration gap,
    aggregations, interventions, plateaus. ``t1``: one row per H."""
    shown = t1.drop(columns=["variant"], errors="ignore").set_index("H").T

    def fmt(row, x):
        if isinstance(x, str) or x is None:
            return x or ""
        return "" if x != x else (f"{x:.0f}" if row in TABLE1_INTEGERS else f"{x:.3f}")

    cells = [[fmt(r, x) for x in shown.loc[r]] for r in shown.index]
    fig, ax = plt.subplots(figsize=(2.0 + 1.2 * len(t1), 0.32 * len(shown) + 0.8))
    ax.axis("off")
    tb = ax.table(
        cellText=cells,
        rowLabels=[r.replace("_", " ") for r in shown.index],
        colLabels=[f"H = {H}" for H in shown.columns],
        loc="center",
        cellLoc="center",
    )
    tb.auto_set_font_size(False)
    tb.set_fontsize(8)
    tb.scale(1, 1.3)
    v, seeds = run_value(t1, "variant"), int(t1.seeds.max())
    ax.set_title(f"Table 1: summary per H ({'format ' + str(v) + ', ' if v is not None else ''}{seeds} seed(s) each)")
    return fig

"""Figures of notebook 03 (Count01) that are drawn from their own tidy CSV alone, so a committed run's
PNGs can be redrawn after a layout fix without retraining: ``python -m headlab replot
03_heads_cooperate --profile gpu`` (the H100 grid cannot be rerun on a CPU machine).

Each function takes exactly the table the notebook saves next to the PNG.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

COUNTING_CLASSES = {
    "counting (AUC ≥ 0.95)": "#55A868",
    "weak (0.9 ≤ AUC < 0.95)": "#CCB974",
    "non-counting (AUC < 0.9)": "#C44E52",
}
MASS_PARTS = [
    ("mass_0", "0s", "#4C72B0"),
    ("mass_1", "1s", "#DD8452"),
    ("mass_2", "2s", "#BBBBBB"),
    ("bos_mass", "BOS", "#333333"),
    ("self_mass", "decision token", "#8172B3"),
]


def representative(heads: pd.DataFrame) -> tuple[str, int, int]:
    """(format, H, seed) of the model the one-model panels show: most heads, first seed."""
    H = int(heads.H.max())
    return str(heads.variant.iloc[0]), H, int(heads[heads.H == H].seed.min())


def fig3b_head_metrics_one_model(g: pd.DataFrame):
    """l-acc, ROC AUC and s-acc of every head of one model; ``g``: one row per head."""
    variant, H, seed = representative(g)
    fig, ax = plt.subplots(figsize=(1.0 * H + 3, 3.2))
    x = np.arange(len(g))
    for i, (m, lab) in enumerate([("l_acc", "l-acc"), ("auc", "ROC AUC"), ("s_acc", "s-acc")]):
        ax.bar(x + (i - 1) * 0.27, g[m], width=0.27, label=lab)
    ax.set(
        xticks=x,
        xticklabels=[f"head {h}" for h in g["head"]],
        ylim=(0.3, 1.2),
        ylabel="score",
        title=f"Heads of one model (format {variant}, H = {H}, seed {seed})",
    )
    ax.legend(ncol=3, loc="upper center")  # above the bars (scores are at most 1)
    return fig


def fig4_attention_signatures(hA: pd.DataFrame):
    """Left: every head's attention ratios w01, w02 by counting class. Right: where each head of the
    representative model looks at the decision position. ``hA``: one row per head of every model."""
    variant, H, seed = representative(hA)
    g = hA[(hA.H == H) & (hA.seed == seed)]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [1.1, 1]})
    ax = axes[0]
    for cl, d in hA.groupby("counting"):
        ax.scatter(
            np.log10(d.w01.clip(1e-3, 1e3)),
            np.log10(d.w02.clip(1e-3, 1e3)),
            s=30,
            color=COUNTING_CLASSES[cl],
            edgecolor="k",
            lw=0.3,
            label=f"{cl} ({len(d)})",
        )
    ax.add_patch(
        plt.Rectangle(
            (np.log10(0.75), -3),
            np.log10(1.35 / 0.75),
            3 + np.log10(0.5),
            fill=False,
            ls="--",
            ec="k",
            label="0.75 ≤ w01 ≤ 1.35, w02 ≤ 0.5",
        )
    )
    ax.axvline(0, color="grey", lw=0.6)
    ax.axhline(0, color="grey", lw=0.6)
    n_floor = int(((hA.w01 <= 1e-3) & (hA.w02 <= 1e-3)).sum())  # heads that look at 0s only: drawn on one point
    if n_floor:
        ax.annotate(
            f"{n_floor} head(s) with w01, w02 ≤ 1e-3\n(attention on 0s only)",
            xy=(-3, -3),
            xytext=(-2.75, -2.55),
            fontsize=8,
            arrowprops=dict(arrowstyle="->", lw=0.6),
        )
    ax.set(
        xlabel="log10 w01 (one 1 vs one 0)", ylabel="log10 w02 (one 2 vs one 0)", title=f"All heads, format {variant}"
    )
    ax.legend(fontsize=8, loc="upper left")
    ax = axes[1]
    bottom = np.zeros(len(g))
    for m, lab, col in MASS_PARTS:
        ax.bar(np.arange(len(g)), g[m], bottom=bottom, color=col, label=lab)
        bottom += g[m].to_numpy()
    ax.set(
        xticks=np.arange(len(g)),
        xticklabels=[f"h{h}\n{a:.2f}" for h, a in zip(g["head"], g.auc, strict=True)],
        ylim=(0, 1),
        xlabel="head (and its AUC)",
        ylabel="mean attention at the decision position",
        title=f"H = {H}, seed {seed}: where each head looks",
    )
    ax.legend(fontsize=8, ncol=5, loc="upper center", bbox_to_anchor=(0.5, -0.25))
    return fig


def fig5_interventions(ivA: pd.DataFrame):
    """Accuracy and rule agreement under each attention edit, bars per H (mean over seeds), dots per seed."""
    heads = sorted(ivA.H.unique())
    edits = list(dict.fromkeys(ivA.edit))
    fig, axes = plt.subplots(1, 2, figsize=(13, 3.8), gridspec_kw={"width_ratios": [1.6, 1]})
    w = 0.8 / len(heads)
    for ax, metric, sel, ttl in [
        (axes[0], "acc", edits, "accuracy against the true label"),
        (axes[1], "rule_agreement", [e for e in edits if e.startswith("scale")], "agreement with f1·#1 > f0·#0"),
    ]:
        for i, H in enumerate(heads):
            m = ivA[ivA.H == H].groupby("edit")[metric].mean().reindex(sel)
            xs = np.arange(len(sel)) + (i - (len(heads) - 1) / 2) * w
            ax.bar(xs, m, width=w, label=f"H = {H}")
            for xx, e in zip(xs, sel, strict=True):
                vals = ivA[(ivA.H == H) & (ivA.edit == e)][metric]
                ax.scatter([xx] * len(vals), vals, s=6, color="k", zorder=3)
        ax.set(xticks=np.arange(len(sel)), ylim=(0.4, 1.14), title=ttl)
        ax.set_xticklabels(
            [e.replace("scale ", "×").replace(" f1=", ",f1=") for e in sel], rotation=25, ha="right", fontsize=8
        )
    axes[0].set_ylabel("fraction of test strings")
    axes[0].legend(ncol=len(heads), fontsize=8, loc="upper center")  # above the bars (fractions ≤ 1)
    fig.suptitle(
        f"Attention edits at the decision position (format {ivA.variant.iloc[0]}; bars: mean over seeds, dots: seeds)",
        y=1.02,
    )
    return fig


FROM_CSV = {f.__name__: f for f in (fig3b_head_metrics_one_model, fig4_attention_signatures, fig5_interventions)}


def replot(paper: str, profile: str) -> list[Path]:
    """Redraw every ``FROM_CSV`` figure of ``figures/<paper>/<profile>/`` from its CSV (PNG only; the
    CSV is not rewritten)."""
    from .. import figures
    from ..paths import FIGURES_DIR

    fig_dir = FIGURES_DIR / paper / profile
    missing = [n for n in FROM_CSV if not (fig_dir / f"{n}.csv").exists()]
    if missing:
        raise FileNotFoundError(
            f"{fig_dir}: no {', '.join(m + '.csv' for m in missing)} (run the notebook at this profile first)"
        )
    figures.style()
    out = []
    for name, draw in FROM_CSV.items():
        fig = draw(pd.read_csv(fig_dir / f"{name}.csv"))
        out.append(figures.save(fig, None, paper, profile, name))
        plt.close(fig)
    return out

"""Figures of notebook 03 (Count01), each drawn from its own tidy CSV alone, so a committed run's PNGs can
be redrawn after a layout fix without retraining: ``python -m headlab replot 03_heads_cooperate --profile gpu``
(the H100 grid cannot be rerun on a CPU machine).

Each function takes exactly the table the notebook saves next to the PNG. Runs older than a function saved some
frames without the columns that label a figure (``l_max``, ``batch``, ``lr``, ``prior``); those are redrawn
without the labels.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .figures_grid import (  # the grid-level figures: examples, curves, per-head metrics, aggregation, ...
    AGGREGATIONS as AGGREGATIONS,
)
from .figures_grid import (
    fig1_task_examples,
    fig2_training_curves,
    fig3_head_metrics,
    fig6_aggregation,
    fig7_scaling_rule,
    fig8_dynamics,
    fig8b_counting_heads,
    table1_summary,
)

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


FIG4_COLUMNS = ["variant", "H", "seed", "head", "auc", "counting", "w01", "w02"] + [m for m, _, _ in MASS_PARTS]


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
    ax.legend(fontsize=8, loc="center left")
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


INERT_COLOR, COUNT_COLOR, OTHER_COLOR = "#C44E52", "#55A868", "#8C8C8C"


def _cls(g: pd.DataFrame) -> np.ndarray:
    return np.where(g.inert, "inert", np.where(g.auc >= 0.95, "counting", "other"))


def fig9_inert_heads(h: pd.DataFrame):
    """Inert heads (decision-score std below 1 % of the model's largest). Left: inert heads per model
    against H, per format. Middle: every head's score std (log scale) by class. Right: where an inert head
    and a counting head of the same model look at the decision position. ``h``: one row per head, with an
    ``inert`` column."""
    variants = sorted(set(h.variant))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.0), gridspec_kw={"width_ratios": [1, 1.2, 1]})
    ax = axes[0]
    per = h.groupby(["variant", "H", "seed"], as_index=False).inert.sum()
    Hs = sorted(h.H.unique())
    for j, v in enumerate(variants):
        d = per[per.variant == v]
        for i, H in enumerate(Hs):
            vals = d[d.H == H].inert.to_numpy()
            if len(vals):
                x = i + (j - (len(variants) - 1) / 2) * 0.3 + np.linspace(-0.08, 0.08, len(vals))
                ax.scatter(x, vals, s=14, color=f"C{j}", label=f"format {v}" if i == Hs.index(d.H.min()) else None)
                share = (vals > 0).mean()
                ax.text(
                    i + (j - (len(variants) - 1) / 2) * 0.3,
                    1.0 + 0.06 * j,
                    f"{share:.0%}",
                    ha="center",
                    fontsize=7,
                    color=f"C{j}",
                    transform=ax.get_xaxis_transform(),
                )
    ax.set(
        xticks=range(len(Hs)),
        xticklabels=[f"H = {H}" for H in Hs],
        ylabel="inert heads per model",
        ylim=(-0.3, max(1, per.inert.max()) + 0.5),
    )
    ax.set_title("Inert heads per model (text: share of models with one)", pad=30)
    ax.legend(fontsize=8, loc="center left")
    ax = axes[1]
    cls = _cls(h)
    rng = np.random.default_rng(0)
    for c, col in (("counting", COUNT_COLOR), ("other", OTHER_COLOR), ("inert", INERT_COLOR)):
        m = cls == c
        x = np.array([Hs.index(H) for H in h.H[m]]) + rng.uniform(-0.25, 0.25, m.sum())
        ax.scatter(x, h.d_std[m].clip(lower=1e-4), s=8, color=col, alpha=0.7, label=f"{c} ({m.sum()})")
    ax.set(
        yscale="log",
        xticks=range(len(Hs)),
        xticklabels=[f"H = {H}" for H in Hs],
        ylabel="std of the head's decision score d_h",
        title="Every head's score spread (all formats)",
    )
    ax.legend(fontsize=8, loc="lower left")
    ax = axes[2]
    ex = h[h.inert].sort_values(["variant", "H", "seed"])  # format A first: its decision token is EOS
    if len(ex):
        v, H, seed = ex.iloc[0][["variant", "H", "seed"]]
        g = h[(h.variant == v) & (h.H == H) & (h.seed == seed)]
        inert_h = g[g.inert].iloc[0]
        cnt = g[~g.inert].sort_values("auc").iloc[-1]
        for k, r in enumerate((cnt, inert_h)):
            left = 0.0
            for col, name, colr in MASS_PARTS:
                ax.barh(k, r[col], left=left, color=colr, label=name if k == 0 else None)
                left += r[col]
            ax.text(1.02, k, f"std {r.d_std:.2g}\nAUC {r.auc:.2f}", va="center", fontsize=8)
        ax.set(
            yticks=[0, 1],
            yticklabels=[f"head {int(cnt['head'])}\n(counting)", f"head {int(inert_h['head'])}\n(inert)"],
            xlim=(0, 1.3),
            xlabel="attention mass at the decision position",
            title=f"One inert head (format {v}, H = {H}, seed {seed})",
        )
        ax.legend(fontsize=7, ncol=5, loc="upper center", bbox_to_anchor=(0.45, -0.2))
    else:
        ax.text(0.5, 0.5, "no inert head in this run", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    fig.tight_layout()
    return fig


def model_gaps(ck: pd.DataFrame) -> pd.DataFrame:
    """Per model and checkpoint: mean (s-acc - l-acc) over counting heads (NaN when none counts) and inert heads."""
    ck = ck.assign(gap=(ck.s_acc - ck.l_acc).where(ck.auc >= 0.95))
    return ck.groupby(["H", "seed", "step"], as_index=False).agg(
        gap=("gap", "mean"), n_inert=("inert", "sum"), model_acc=("model_acc", "first")
    )


def fig10_checkpoints(ck: pd.DataFrame):
    """The calibration gap (K4) and the number of inert heads against training step, per H: median over
    seeds (line) and interquartile range (band). ``ck``: one row per (model, checkpoint, head)."""
    g = model_gaps(ck)
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    for i, H in enumerate(sorted(g.H.unique())):
        d = g[g.H == H].groupby("step")
        for ax, col in zip(axes, ("gap", "n_inert", "model_acc"), strict=True):
            q = d[col].quantile([0.25, 0.5, 0.75]).unstack()
            ax.plot(q.index, q[0.5], marker="o", ms=3, color=f"C{i}", label=f"H = {H}")
            ax.fill_between(q.index, q[0.25], q[0.75], color=f"C{i}", alpha=0.15)
    axes[0].set(ylabel="mean s-acc − l-acc of counting heads", title="Calibration gap (K4) during training")
    axes[1].set(ylabel="inert heads per model", title="Inert heads during training")
    axes[2].set(ylabel="test accuracy", title="Model accuracy")
    steps = sorted(g.step.unique())
    for ax in axes:
        ax.set(xscale="log", xlabel="training step")
        ax.set_xticks(steps, [str(s) for s in steps])
        ax.minorticks_off()
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Checkpoints of the main grid (format {ck.variant.iloc[0]}; median over seeds, band: IQR)", y=1.02)
    fig.tight_layout()
    return fig


def fig11_ratio_sweep(rs: pd.DataFrame):
    """The seed's ratio sweep: s-acc of each counting head (AUC ≥ 0.95 unedited) with its attention on 1s
    scaled by f and on 2s by f2, per format: median over heads (line), IQR (band). ``rs``: one row per
    (model, head, f, f2)."""
    key = ["variant", "H", "seed", "head"]
    base = rs[(rs.f == 1) & (rs.f2 == 1)].set_index(key)
    cnt = rs.set_index(key).index.isin(base[base.auc >= 0.95].index)
    r = rs[cnt]
    variants = sorted(set(rs.variant))
    fig, axes = plt.subplots(1, len(variants), figsize=(5.5 * len(variants), 3.8), squeeze=False, sharey=True)
    for ax, v in zip(axes[0], variants, strict=True):
        d = r[r.variant == v]
        for k, f2 in enumerate(sorted(d.f2.unique())):
            q = d[d.f2 == f2].groupby("f").s_acc.quantile([0.25, 0.5, 0.75]).unstack()
            x = np.log2(q.index.to_numpy(dtype=float))
            ax.plot(x, q[0.5], marker="o", ms=3, color=f"C{k}", label=f"2s × {f2:g}")
            ax.fill_between(x, q[0.25], q[0.75], color=f"C{k}", alpha=0.15)
        n = d[["H", "seed", "head"]].drop_duplicates().shape[0]
        ax.set(xlabel="log₂ f (attention on 1s × f)", title=f"format {v}: {n} counting heads")
        ax.axvline(0, color="k", lw=0.6, ls=":")
    axes[0][0].set_ylabel("s-acc of the edited head")
    axes[0][0].legend(fontsize=8)
    fig.suptitle("Ratio sweep: separation of each counting head under edited attention (median, IQR)", y=1.02)
    fig.tight_layout()
    return fig


ARM_LABEL = {
    ("normal", True): "N(0, 0.02²) + norm (ours)",
    ("normal", False): "N(0, 0.02²), no norm",
    ("torch", True): "torch default + norm",
    ("torch", False): "torch default, no norm",
}


def fig12_init_ablation(ab: pd.DataFrame):
    """The initialisation ablation: per arm (init × pre-attention RMSNorm) and H, the share of seeds that
    plateau (Wilson 95 % interval), steps to 95 % accuracy, and the final calibration gap (H ≥ 2).
    ``ab``: one row per run."""
    from ...intervals import wilson

    arms = [a for a in ARM_LABEL if ((ab.init == a[0]) & (ab.attn_norm.astype(bool) == a[1])).any()]
    Hs = sorted(ab.H.unique())
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    w = 0.8 / max(1, len(arms))
    for k, (init, norm) in enumerate(arms):
        d = ab[(ab.init == init) & (ab.attn_norm.astype(bool) == norm)]
        xs = np.arange(len(Hs)) + (k - (len(arms) - 1) / 2) * w
        for x, H in zip(xs, Hs, strict=True):
            g = d[d.H == H]
            est, lo, hi, _ = wilson(int(g.plateaus.sum()), len(g))
            axes[0].bar(x, est, width=w, color=f"C{k}", label=ARM_LABEL[(init, norm)] if H == Hs[0] else None)
            axes[0].errorbar(x, est, yerr=[[est - lo], [hi - est]], color="k", lw=1, capsize=2)
            axes[1].scatter(np.full(len(g), x), g.steps_to_95, s=10, color=f"C{k}")
            axes[1].scatter(x, g.steps_to_95.median(), marker="_", s=200, color="k")
            if H >= 2:
                axes[2].scatter(np.full(len(g), x), g.gap, s=10, color=f"C{k}")
                axes[2].scatter(x, g.gap.median(), marker="_", s=200, color="k")
    for ax in axes:
        ax.set(xticks=range(len(Hs)), xticklabels=[f"H = {H}" for H in Hs])
    axes[0].set(ylim=(0, 1), ylabel="share of seeds with a plateau", title="Plateaus (Wilson 95% interval)")
    axes[1].set(ylabel="steps to 95% accuracy", title="Speed (dots: seeds, bar: median)")
    axes[2].set(ylabel="final s-acc − l-acc (counting heads)", title="Calibration gap at the end (H ≥ 2)")
    axes[0].legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    return fig


FROM_CSV = {
    f.__name__: f
    for f in (
        fig1_task_examples,
        fig2_training_curves,
        fig3_head_metrics,
        fig3b_head_metrics_one_model,
        fig4_attention_signatures,
        fig5_interventions,
        fig9_inert_heads,
        fig10_checkpoints,
        fig11_ratio_sweep,
        fig12_init_ablation,
        fig6_aggregation,
        fig7_scaling_rule,
        fig8_dynamics,
        fig8b_counting_heads,
        table1_summary,
    )
}

"""Figures of notebook 01 (dormant heads), each a pure function of the tidy table saved beside its PNG:
``python -m headlab replot 01_dormant_heads --profile smoke`` redraws them without loading a model.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from .scores import SCORES

PALETTE = dict(zip([s for s in SCORES if s != "random"], sns.color_palette("tab20", len(SCORES) - 1), strict=True))
PALETTE["random"] = (0, 0, 0)
YLABEL = {
    "generated_mc": "generated MC accuracy (%)",
    "mmlu": "MMLU accuracy (%)",
    "text_nll": "next-token loss (nats/token)",
}
TASK_ORDER = ("generated_mc", "mmlu", "text_nll")
TASK_SHORT = {"generated_mc": "gen. MC", "mmlu": "MMLU", "text_nll": "text loss"}


def _abbr(score: str) -> str:
    return SCORES[score].abbr


def plot_curves(ax, g: pd.DataFrame, names, title: str, bands: bool = True):
    """Metric against the achieved % of heads zeroed, one line per score function (LN/HN variants dashed), with
    each point's 95 % bootstrap band (over prompts / texts) where ``g`` has ``metric_lo`` / ``metric_hi``."""
    for s in names:
        c = g[g.score == s].sort_values("quantile")
        ls = "--" if s.endswith("_ln") or s.endswith("_hn") else "-"
        ax.plot(c.achieved_pct, c.metric, marker="o", ms=3.5, lw=1.6, ls=ls, color=PALETTE[s], label=_abbr(s))
        if bands and "metric_lo" in c:  # 95 % bootstrap band of each point (runs saved before bands: none)
            ax.fill_between(c.achieved_pct, c.metric_lo, c.metric_hi, color=PALETTE[s], alpha=0.15, lw=0)
    ax.axhline(g.baseline.iloc[0], color="gray", ls=":", lw=1.2, label="baseline")
    ax.set(title=title, xlabel="% of model heads zeroed (achieved)", ylabel=YLABEL[g.task.iloc[0]])


def fig4(curves: pd.DataFrame):
    """Fig. 4 analogue: generated-MC accuracy against % of heads zeroed, Random and the top 3 score functions by
    AUC, one panel per model. ``curves``: one row per (model, score, quantile), with each curve's ``auc``."""
    names = list(dict.fromkeys(curves.model))
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 3.8), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        g = curves[curves.model == name]
        auc = g[g.score != "random"].drop_duplicates("score").sort_values("auc", ascending=False)
        plot_curves(ax, g, ["random"] + list(auc.score[:3]), name)
        ax.legend(fontsize=8)
    fig.suptitle(
        "Fig. 4 analogue: accuracy vs % of heads zeroed (Random + top-3 score functions by AUC)"
        + (
            "\nbands: 95% bootstrap over prompts (each with all its items); none where per-item results were not saved"
            if "metric_lo" in curves
            else ""
        ),
        y=1.03 if "metric_lo" not in curves else 1.08,
    )
    return fig


def _model_task_grid(d: pd.DataFrame, width: float, legend_room: float = 2.2):
    """One row per model, one column per dataset swept; panels a model does not sweep stay empty."""
    models = list(dict.fromkeys(d.model))
    tasks = [t for t in TASK_ORDER if t in set(d.task)]
    fig, axes = plt.subplots(
        len(models),
        len(tasks),
        figsize=(width * len(tasks) + legend_room, 3.7 * len(models)),
        squeeze=False,
        layout="constrained",
    )
    cells = []
    for r, name in enumerate(models):
        for c, task in enumerate(tasks):
            if ((d.model == name) & (d.task == task)).any():
                cells.append((axes[r, c], name, task))
            else:
                axes[r, c].set_axis_off()
    return fig, cells


def appfig_grid(curves: pd.DataFrame):
    """Appendix grid analogue: every score function's curve, per model and dataset. ``curves``: every swept point."""
    fig, cells = _model_task_grid(curves, 4.8)
    for ax, name, task in cells:
        g = curves[(curves.model == name) & (curves.task == task)]
        plot_curves(ax, g, list(dict.fromkeys(g.score)), f"{name} · {task}", bands=False)  # too many to shade
    legend = {lab: h for ax, _, _ in cells for h, lab in zip(*ax.get_legend_handles_labels(), strict=True)}
    fig.legend(legend.values(), legend.keys(), loc="outside right center", fontsize=8)
    fig.suptitle("Appendix grid analogue: every score function swept, per model and dataset")
    return fig


def table2(t2: pd.DataFrame):
    """Table 2 analogue: the largest % of heads zeroed within tolerance, with its 95 % bootstrap interval over
    prompts (generated MC) or texts (next-token loss). ``t2``: model, task, score, label, within_tol_pct, ci_lo, ci_hi, stays_within."""
    width = max(3.6, 0.3 * t2.groupby(["model", "task"]).size().max() + 1.2)
    fig, cells = _model_task_grid(t2, width, legend_room=0)
    for ax, name, task in cells:
        g = t2[(t2.model == name) & (t2.task == task)]
        err = np.array([g.within_tol_pct - g.ci_lo, g.ci_hi - g.within_tol_pct]).clip(min=0)
        ax.bar(g.label, g.within_tol_pct, yerr=err, color=[PALETTE[s] for s in g.score], capsize=3)
        for x, (v, inside) in enumerate(zip(g.within_tol_pct, g.stays_within, strict=True)):
            if inside:  # the authors' rule gives 0 when the curve never leaves the band: say so on the bar
                ax.annotate(
                    "never left\nthe band", (x, v), xytext=(0, 3), textcoords="offset points", ha="center", fontsize=7
                )
        ax.set(title=f"{name} · {task}", ylabel="largest % zeroed within tolerance")
        ax.tick_params(axis="x", rotation=60)
        plt.setp(ax.get_xticklabels(), ha="right", rotation_mode="anchor")
    fig.suptitle(
        "Table 2 analogue (bars: statistic; whiskers: 95% bootstrap over prompts (MC) or texts (loss);\n"
        "none where per-item results were not saved)\n"
        '"never left the band": 0 by the crossing rule, yet no point fell below the tolerance',
        fontsize=10,
    )
    return fig


def fig3(ranked: pd.DataFrame):
    """Fig. 3 analogue: rank of each score function by normalised AUC, per (model, dataset). ``ranked``: row,
    label, rank."""
    grid = ranked.pivot_table(index="row", columns="label", values="rank")
    grid = grid[[s.abbr for s in SCORES.values() if s.abbr in grid.columns]]
    fig, ax = plt.subplots(figsize=(1.0 * grid.shape[1] + 3, 0.7 * len(grid) + 1.5))
    sns.heatmap(grid, annot=True, fmt=".0f", cmap="Blues_r", cbar_kws={"label": "rank (1 = best AUC)"}, ax=ax)
    ax.set(title="Fig. 3 analogue: rank of score functions by normalised AUC", xlabel="score function", ylabel="")
    return fig


def appfig10(m: pd.DataFrame):
    """App. Fig. 10 analogue: Spearman correlation of AUCs and IoU of the top-k functions between (model,
    dataset) rows. ``m``: both matrices stacked, ``level_0`` naming the matrix (``spearman``, ``top<k>_iou``)."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), gridspec_kw={"wspace": 0.3})
    names = list(dict.fromkeys(m.level_0))
    for ax in axes[len(names) :]:  # a slice of the table may hold one matrix only
        ax.set_axis_off()
    for ax, name in zip(axes, names, strict=False):
        M = m[m.level_0 == name].drop(columns="level_0").set_index("level_1")
        M = M[list(M.index)]
        if name == "spearman":
            sns.heatmap(M, annot=True, fmt=".2f", cmap="vlag", vmin=-1, vmax=1, ax=ax)
            ax.set(title="Spearman of AUCs (each pair: the functions both swept)")
        else:
            sns.heatmap(M, annot=True, fmt=".2f", cmap="Blues", vmin=0, vmax=1, ax=ax)
            ax.set(title=f"IoU of {name.removesuffix('_iou').replace('top', 'top-')} functions")
        ax.set(xlabel="", ylabel="")
    return fig


def thresholds(th: pd.DataFrame):
    """AHON-LN and AWFT thresholds that flag ``threshold_p`` of heads, per dataset and model. ``th``: model,
    dataset, score, label, p, threshold, and the run's threshold_p."""
    p = th.threshold_p.iloc[0]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    for ax, s in zip(axes, ["ahon_ln", "awft"], strict=True):
        g = th[(th.score == s) & np.isclose(th.p, p)]
        sns.barplot(data=g, x="dataset", y="threshold", hue="model", ax=ax)
        ax.set(title=f"{_abbr(s)}: threshold flagging {p:.0%}", ylabel="threshold")
        ax.legend(loc="lower right", fontsize=8, frameon=True)
    return fig


def overlap(ov: pd.DataFrame):
    """IoU of the heads flagged by pairs of score functions, per model, and how often AHON-LN zeroes each head.
    ``ov``: the IoU rows (a, b, iou, model, overlap_p) and the frequency rows (model, head_index, zero_freq, q)."""
    iou = ov[ov.panel == "flagged-set IoU / precision"]
    freq = ov[ov.panel == "AHON-LN zeroing frequency"]
    models, names = list(dict.fromkeys(iou.model)), list(dict.fromkeys(iou.a))
    fig, axes = plt.subplots(1, len(models) + 1, figsize=(5.6 * len(models) + 4.5, 4.4), gridspec_kw={"wspace": 0.45})
    for ax, name in zip(axes[:-1], models, strict=True):  # the last panel: zeroing frequency
        M = iou[iou.model == name].pivot(index="a", columns="b", values="iou").loc[names, names]
        M.index = M.columns = [_abbr(s) for s in names]
        sns.heatmap(M, annot=True, fmt=".2f", cmap="Blues", vmin=0, vmax=1, cbar=False, ax=ax, annot_kws={"size": 7})
        ax.set(title=f"{name}: IoU of flagged sets at {iou.overlap_p.iloc[0]:.0%}")
    for name, g in freq.groupby("model", sort=False):
        axes[-1].hist(g.zero_freq, bins=np.linspace(0, 1, 21), alpha=0.6, label=name)
    axes[-1].set(
        title=f"AHON-LN @ {freq.q.iloc[0]:.0%}: per-head zeroing frequency" if len(freq) else "",
        xlabel="fraction of inputs on which the head is zeroed",
        ylabel="heads",
    )
    axes[-1].legend(fontsize=8)
    return fig


DYN_COLOURS = {"ahon_ln": "C0", "awft": "C1"}


def v1_dynamics(dyn: pd.DataFrame):
    """v1 analogue: % dormant (input, layer, head) triples over from-scratch training, and the share that switch
    state between checkpoints. ``dyn``: step, score, dormant_frac, dormant_frac_no_trigger, copy_acc, flip_rate."""
    fig, axes = plt.subplots(1, 2, figsize=(12.5, 3.8), gridspec_kw={"wspace": 0.35})
    for s, g in dyn.groupby("score"):
        axes[0].plot(
            g.step, 100 * g.dormant_frac, marker="o", ms=3, color=DYN_COLOURS[s], label=f"{_abbr(s)}, all inputs"
        )
        axes[0].plot(
            g.step,
            100 * g.dormant_frac_no_trigger,
            ls="--",
            lw=1,
            color=DYN_COLOURS[s],
            label=f"{_abbr(s)}, trigger-free",
        )
    ax2 = axes[0].twinx()
    g = dyn[dyn.score == "ahon_ln"]
    ax2.plot(g.step, g.copy_acc, color="gray", ls=":", label="copy accuracy (right axis)")
    ax2.set(ylabel="copy accuracy", ylim=(0, 1.05))
    ax2.grid(False)
    axes[0].set(title="dormant (input, layer, head) triples over training", xlabel="training step", ylabel="% dormant")
    h1, l1 = axes[0].get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    axes[0].legend(h1 + h2, l1 + l2, fontsize=7, loc="upper left")
    for s, g in dyn.dropna(subset=["flip_rate"]).groupby("score"):
        axes[1].plot(g.step, 100 * g.flip_rate, marker="o", ms=3, color=DYN_COLOURS[s], label=_abbr(s))
    axes[1].set(
        title="state switches between consecutive checkpoints",
        xlabel="training step",
        ylabel="% of triples that switch",
    )
    axes[1].legend()
    return fig


def v1_dynamics_heads(grid: pd.DataFrame):
    """Per-head fraction of inputs dormant at each checkpoint. ``grid``: score, head (``L<l>H<h>``), step, frac."""
    scores = list(dict.fromkeys(grid.score))
    fig, axes = plt.subplots(1, len(scores), figsize=(5.5 * len(scores), 3.2), squeeze=False)
    for ax, s in zip(axes[0], scores, strict=True):
        g = grid[grid.score == s]
        G = g.pivot(index="head", columns="step", values="frac").reindex(list(dict.fromkeys(g["head"])))
        sns.heatmap(
            G.values,
            ax=ax,
            cmap="rocket_r",
            vmin=0,
            vmax=1,
            cbar_kws={"label": "fraction of inputs dormant"},
            xticklabels=[str(x) if i % 4 == 0 else "" for i, x in enumerate(G.columns)],
            yticklabels=list(G.index),
        )
        ax.set(title=f"{_abbr(s)}: per-head dormancy across checkpoints", xlabel="training step")
    return fig


def v1_text_type(tt: pd.DataFrame):
    """% of heads dormant by text type: AHON-LN on the pretrained models (95 % bootstrap over inputs), and both
    scores on the from-scratch model. ``tt``: label, pct, model, score, threshold_p, seed (one row per input)."""
    p, seed = tt.threshold_p.iloc[0], int(tt.seed.iloc[0])
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8), gridspec_kw={"width_ratios": [3, 1]})
    pre = tt[(tt.model != "from-scratch BB") & (tt.score == "ahon_ln")]
    sns.barplot(data=pre, x="label", y="pct", hue="model", ax=axes[0], errorbar=("ci", 95), seed=seed)
    axes[0].set(
        title=f"AHON-LN below its pooled {p:.0%} quantile, by text type", xlabel="", ylabel="% of heads dormant"
    )
    bb = tt[tt.model == "from-scratch BB"].assign(score=lambda d: d.score.map(_abbr))
    sns.barplot(data=bb, x="label", y="pct", hue="score", ax=axes[1], seed=seed)
    axes[1].set(title="from-scratch model (fixed τ)", xlabel="", ylabel="% of heads dormant")
    return fig


def v1_by_layer(bl: pd.DataFrame):
    """AHON-LN dormant % by layer and text type, per model. ``bl``: model, text_type, layer, pct."""
    models = list(dict.fromkeys(bl.model))
    fig, axes = plt.subplots(
        1, len(models), figsize=(7 * len(models), 3.4), squeeze=False, gridspec_kw={"wspace": 0.35}
    )
    for ax, name in zip(axes[0], models, strict=True):
        sns.heatmap(
            bl[bl.model == name].pivot(index="text_type", columns="layer", values="pct"),
            ax=ax,
            cmap="rocket_r",
            vmin=0,
            vmax=100,
            cbar_kws={"label": "% of the layer's heads dormant"},
        )
        ax.set(title=f"{name}: AHON-LN dormant % by layer and text type", ylabel="")
    return fig


def score_distributions(cdf: pd.DataFrame):
    """AHON-LN score CDFs: the from-scratch model (base, fine-tuned, other seed) and the pretrained models.
    ``cdf``: group (bb / pretrained), model, cum_fraction, ahon_ln (101 quantiles per model)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    for ax, (group, title) in zip(
        axes, [("bb", "from-scratch BB model"), ("pretrained", "pretrained models, generated MC")], strict=True
    ):
        for k, g in cdf[cdf.group == group].groupby("model", sort=False):
            ax.plot(g.ahon_ln, g.cum_fraction, label=k)
        ax.set(title=f"{title}: AHON-LN CDF", xlabel="AHON-LN score", ylabel="cumulative fraction", xlim=(0, 3))
        ax.legend()
    return fig


def natural(d: pd.DataFrame):
    """v1's dynamics on natural-text pretraining (the sink pilot's checkpoints): % dormant per window set (left),
    head-level switching against the two sets' disagreement (middle), validation loss with its convergence step
    (right). ``d``: ``natural.natural_table`` (step, score, series, value, conv_step)."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8), layout="constrained")
    conv = int(d.conv_step.iloc[0])
    for k, (panel, ylabel) in enumerate(
        (("dormant", "% dormant (window, layer, head)"), ("switch", "% of heads")),
    ):
        for (sc, series), g in d[d.panel == panel].groupby(["score", "series"], sort=False):
            ax = axes[k]
            dashed = series.startswith(("set B", "null"))
            ax.plot(
                g.step,
                g.value,
                ls="--" if dashed else "-",
                marker="o",
                ms=2.5,
                color=DYN_COLOURS[sc],
                label=f"{_abbr(sc)}, {series}",
            )
        axes[k].set(xlabel="training step", ylabel=ylabel)
        axes[k].legend(fontsize=7)
    axes[0].set_title("dormant fraction on two disjoint window sets")
    axes[1].set_title("head state changes: consecutive checkpoints vs set A ≠ set B")
    v = d[d.panel == "loss"]
    axes[2].plot(v.step, v.value, color="gray", marker="o", ms=2.5)
    axes[2].set(title="validation loss (nats/byte)", xlabel="training step")
    for ax in axes:
        ax.axvline(conv, color="k", ls=":", lw=1)
    axes[2].annotate(
        "90% of the loss drop", (conv, v.value.max()), xytext=(4, -10), textcoords="offset points", fontsize=7
    )
    fig.suptitle("v1 on natural text: dormant heads over the sink pilot's pretraining (AHON-LN, AWFT at fixed τ)")
    return fig


def within_tol_power(d: pd.DataFrame, target: float = 3.0):
    """Half-width of the 95 % interval on Table 2's "% of heads within 1 pt" against the number of units (distinct
    prompts) drawn (factor 1: the run's own; larger: drawn with replacement from them), one panel per model, one line per
    score function, the issue's target dashed. ``d``: ``power.within_tol_power``."""
    models = list(dict.fromkeys(d.model))
    fig, axes = plt.subplots(1, len(models), figsize=(4.6 * len(models), 3.6), layout="constrained", squeeze=False)
    for ax, m in zip(axes[0], models, strict=True):
        for sc, g in d[d.model == m].groupby("score", sort=False):
            ax.plot(g.n_draw, g.half_width, marker="o", color=PALETTE[sc], label=_abbr(sc))
        ax.axhline(target, color="gray", ls="--", lw=1)
        ax.set_xscale("log", base=2)
        n = sorted(d[d.model == m].n_draw.unique())
        ax.set_xticks(n, [f"{int(v):,}" for v in n])
        ax.minorticks_off()
        ax.set(title=m, xlabel="prompts drawn per replicate", ylabel="95% half-width (% of heads)")
        ax.legend(fontsize=8)
    fig.suptitle("Table 2's within-1-pt interval vs prompts (resampled from the run's; dashed: target 3 pts)")
    return fig


FROM_CSV = {
    f.__name__: f
    for f in (
        natural,
        within_tol_power,
        fig4,
        appfig_grid,
        table2,
        fig3,
        appfig10,
        thresholds,
        overlap,
        v1_dynamics,
        v1_dynamics_heads,
        v1_text_type,
        v1_by_layer,
        score_distributions,
    )
}
# drawn by their own commands, not the notebook (python -m headlab.papers.dormant_heads.natural | power); redrawn
# by `headlab replot NB --profile cpu_pilot | cpu_powered` like the others
NOT_IN_NOTEBOOK = ("natural", "within_tol_power")

"""Figures of notebook 06 (five lenses), each a pure function of the tidy table saved beside its PNG:
``python -m headlab replot 06_five_lenses --profile smoke`` redraws them without loading a model."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .stats import LENSES

MAP_LENSES = ("ahon_ln", "sink", "sink_other", "kv_cka", "z_cka", "router_qnorm", "router_oracle", "attr_mean")
SHORT = {
    "ahon_ln": "AHON-LN",
    "dormant_share": "dormant share",
    "sink": "sink (as trained)",
    "sink_other": "sink (other ⟨bos⟩)",
    "kv_cka": "K|V CKA",
    "z_cka": "z CKA",
    "router_qnorm": "router: ‖q‖",
    "router_oracle": "router: ‖zW_O‖",
    "attr_mean": "attr. ΔNLL (mean)",
    "attr_zero": "attr. ΔNLL (zero)",
}


def _models(d: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(d["model"]))


def lens_maps(means: pd.DataFrame):
    """Layer x head map of each lens (colour: the head's rank within its model, so lenses share one scale);
    one row per model. ``means``: model, layer, head, one column per lens."""
    names = _models(means)
    cols = [c for c in MAP_LENSES if c in means]
    fig, axes = plt.subplots(len(names), len(cols), figsize=(1.55 * len(cols), 3.3 * len(names)), squeeze=False)
    for r, name in enumerate(names):
        d = means[means["model"] == name]
        for c, lens in enumerate(cols):
            ax = axes[r, c]
            grid = d.pivot(index="layer", columns="head", values=lens)
            if grid.isna().all().all():
                ax.text(0.5, 0.5, "n/a\n(one KV head)", ha="center", va="center", transform=ax.transAxes, fontsize=8)
            else:
                ranks = pd.Series(grid.to_numpy().ravel()).rank(pct=True).to_numpy().reshape(grid.shape)
                ax.imshow(ranks, aspect="auto", origin="lower", cmap="viridis", vmin=0, vmax=1)
            ax.grid(False)
            ax.set_xticks([])
            if c == 0:
                ax.set_ylabel(f"{name}\nlayer")
            else:
                ax.set_yticks([])
            if r == 0:
                ax.set_title(SHORT.get(lens, lens), fontsize=8)
    fig.suptitle("Five lenses, head by head (colour = rank within the model; yellow = highest)", y=1.0)
    fig.tight_layout()
    return fig


def lens_correlations(corr: pd.DataFrame):
    """Spearman over heads between every pair of lenses (95 % bootstrap interval over texts in the CSV);
    one panel per model. ``corr``: model, lens_a, lens_b, rho, ci_low, ci_high."""
    names = _models(corr)
    fig, axes = plt.subplots(1, len(names), figsize=(5.6 * len(names), 5), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        d = corr[corr["model"] == name]
        lenses = list(dict.fromkeys([*d["lens_a"], *d["lens_b"]]))
        lenses = [x for x in LENSES if x in lenses]
        n = len(lenses)
        m = np.full((n, n), np.nan)
        for _, row in d.iterrows():
            i, j = lenses.index(row["lens_a"]), lenses.index(row["lens_b"])
            m[max(i, j), min(i, j)] = row["rho"]
        ax.imshow(m, cmap="RdBu_r", vmin=-1, vmax=1)
        for i in range(n):
            for j in range(i):
                if np.isfinite(m[i, j]):
                    colour = "white" if abs(m[i, j]) > 0.7 else "black"
                    ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=6.5, color=colour)
        labels = [SHORT.get(x, x) for x in lenses]
        ax.set_xticks(range(n), labels, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(n), labels, fontsize=7)
        ax.grid(False)
        ax.set_title(f"{name}: Spearman between lenses")
    fig.tight_layout()
    return fig


def lens_prediction(pred: pd.DataFrame):
    """How well each lens (signed so that high = predicted important) predicts causal importance:
    Spearman with the attribution cost over all heads, and with the exact ΔNLL over the sampled heads,
    with 95 % intervals. ``pred``: model, lens, rho_attr(_low/_high), rho_exact(_low/_high)."""
    names = _models(pred)
    fig, axes = plt.subplots(1, len(names), figsize=(5.2 * len(names), 4), sharex=True, squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        d = pred[(pred["model"] == name) & ~pred["lens"].isin(["attr_mean"])].reset_index(drop=True)
        y = np.arange(len(d))
        for off, key, label in (
            (-0.17, "rho_attr", "vs attribution, all heads"),
            (0.17, "rho_exact", "vs exact, sample"),
        ):
            err = np.clip(np.vstack([d[key] - d[f"{key}_low"], d[f"{key}_high"] - d[key]]), 0, None)
            ax.errorbar(d[key], y + off, xerr=err, fmt="o", ms=4, capsize=2, label=label)
        ax.axvline(0, color="0.4", lw=0.8)
        ax.set_yticks(y, [SHORT.get(x, x) for x in d["lens"]], fontsize=8)
        ax.invert_yaxis()
        ax.set(title=f"{name}: predicting mean-ablation cost", xlabel="Spearman (sign: high = important)")
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
    fig.tight_layout()
    return fig


def lens_precision(pred: pd.DataFrame):
    """Share of each lens's bottom 10 % whose mean ablation costs < 1 % of the loss (attribution), against
    the share among all heads. ``pred``: model, lens, precision(_low/_high), base_rate."""
    names = _models(pred)
    fig, axes = plt.subplots(1, len(names), figsize=(5.2 * len(names), 3.8), sharex=True, squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        d = pred[(pred["model"] == name) & ~pred["lens"].isin(["attr_mean", "attr_zero"])].reset_index(drop=True)
        y = np.arange(len(d))
        # a percentile interval need not contain its estimate (a few heads near the cut): no negative bars
        err = np.clip(np.vstack([d["precision"] - d["precision_low"], d["precision_high"] - d["precision"]]), 0, None)
        ax.errorbar(d["precision"], y, xerr=err, fmt="o", ms=4, capsize=2, label="lens's bottom 10 %")
        ax.axvline(d["base_rate"].iloc[0], color="C3", ls="--", lw=1, label="all heads")
        ax.set_yticks(y, [SHORT.get(x, x) for x in d["lens"]], fontsize=8)
        ax.invert_yaxis()
        ax.set(title=f"{name}: finding cheap heads", xlabel="share costing < 1 % loss", xlim=(-0.02, 1.02))
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2)
    fig.tight_layout()
    return fig


def lens_stability(stab: pd.DataFrame):
    """Spearman between the head maps of every pair of text types, per lens (a dot per pair).
    ``stab``: model, lens, type_a, type_b, rho."""
    names = _models(stab)
    fig, axes = plt.subplots(1, len(names), figsize=(5.2 * len(names), 3.8), sharex=True, squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        d = stab[stab["model"] == name]
        lenses = [x for x in LENSES if x in set(d["lens"])]
        for i, lens in enumerate(lenses):
            r = d[d["lens"] == lens]["rho"].to_numpy()
            ax.plot(r, np.full(len(r), i) + np.linspace(-0.2, 0.2, len(r)), "o", ms=2.5, color="C0", alpha=0.6)
            ax.plot([np.nanmean(r)], [i], "|", ms=14, color="C3")
        ax.set_yticks(range(len(lenses)), [SHORT.get(x, x) for x in lenses], fontsize=8)
        ax.invert_yaxis()
        ax.set(title=f"{name}: stable across text types?", xlabel="Spearman between two text types' maps", xlim=(-1, 1))
    fig.tight_layout()
    return fig


def attribution_vs_exact(ab: pd.DataFrame):
    """Exact against first-order (attribution) ΔNLL of ablating each sampled head, zero and mean ablation.
    ``ab``: model, layer, head, group, ablation, exact, attribution (means over texts)."""
    names = _models(ab)
    fig, axes = plt.subplots(1, len(names), figsize=(4.4 * len(names), 4), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        d = ab[ab["model"] == name]
        for (kind, group), g in d.groupby(["ablation", "group"]):
            ax.scatter(g["exact"], g["attribution"], s=16, marker="o" if group == "random" else "^",
                       color="C0" if kind == "mean" else "C1", label=f"{kind} ablation, {group} heads")  # fmt: skip
        lim = [min(d["exact"].min(), d["attribution"].min()), max(d["exact"].max(), d["attribution"].max())]
        ax.plot(lim, lim, color="0.5", lw=0.8)
        ax.set(title=name, xlabel="exact ΔNLL (nats)", ylabel="attribution ΔNLL (nats)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


FROM_CSV = {
    "lens_maps": lens_maps,
    "lens_correlations": lens_correlations,
    "lens_prediction": lens_prediction,
    "lens_precision": lens_precision,
    "lens_stability": lens_stability,
    "attribution_vs_exact": attribution_vs_exact,
}

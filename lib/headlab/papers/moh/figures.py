"""Figures of notebook 05 (MoH), each a pure function of the tidy table saved beside its PNG:
``python -m headlab replot 05_moh --profile smoke`` redraws them without training anything.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import PercentFormatter

from .flex_bench import flex_speed


def _variant_bars(ax, t: pd.DataFrame, col: str, label: str, horizontal: bool = False):
    """Mean over seeds per variant as bars (first variant grey: the baseline), each seed a dot."""
    agg = t.groupby("variant", sort=False)[col].mean()
    per_seed = t.groupby("variant", sort=False)[col].apply(list)
    x = np.arange(len(agg))
    bar, dots = (ax.barh, lambda i, v: (v, [i] * len(v))) if horizontal else (ax.bar, lambda i, v: ([i] * len(v), v))
    bar(x, agg.values, color=["grey"] + ["C2"] * (len(agg) - 1) if not horizontal else "C2")
    for i, v in enumerate(per_seed):
        ax.scatter(*dots(i, v), color="k", s=10, zorder=3)
    return agg


def table1(t1: pd.DataFrame):
    """Table 1 analogue: test accuracy and NLL of each ViT variant. ``t1``: one row per (variant, seed)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    act = t1.groupby("variant", sort=False).activated.mean()
    for ax, col, lab in zip(axes, ["test_acc", "test_nll"], ["test accuracy", "test NLL (nats)"], strict=True):
        _variant_bars(ax, t1, col, lab)
        ax.set_xticks(range(len(act)), [f"{v}\n({a:.0%})" for v, a in act.items()])
        ax.set(ylabel=lab)
    axes[0].set_ylim(max(0, t1.groupby("variant").test_acc.mean().min() - 0.1), 1)
    n_seeds = t1.seed.nunique()
    fig.suptitle(f"Tiny ViT on digits: variant (activated heads), {n_seeds} seed(s), {int(t1.epochs.iloc[0])} epochs")
    fig.tight_layout()
    return fig


def table3(t3: pd.DataFrame):
    """Table 3 analogue: validation loss per text type and LM variant. ``t3``: one row per (domain, variant,
    seed), with the run's steps, batch and seq."""
    variants = list(dict.fromkeys(t3.variant))
    piv = t3.groupby(["domain", "variant"], sort=False).val_loss.mean().unstack()[variants]
    fig, ax = plt.subplots(figsize=(9, 3.3))
    w = 0.8 / len(variants)
    for i, v in enumerate(variants):
        act = t3[t3.variant == v].activated.iloc[0]
        ax.bar(np.arange(len(piv)) + (i - (len(variants) - 1) / 2) * w, piv[v], w, label=f"{v} ({act:.0%} heads)")
    ax.set_xticks(range(len(piv)), piv.index)
    r = t3.iloc[0]
    ax.set(
        ylabel="validation loss (nats/byte)",
        ylim=(piv.values.min() * 0.9, piv.values.max() * 1.03),
        title=f"Byte-level LM, {int(r['steps'])} steps x {int(r['batch'])}x{int(r['seq'])} tokens ({t3.seed.nunique()} seed(s))",
    )
    ax.legend(ncol=3, loc="upper left")
    return fig


ROUTER_LABELS = {
    "query_norm": "query norm (largest)",
    "random": "random (mean of seeds)",
    "inverse": "inverse (smallest norms)",
    "static": "static (largest mean norm)",
    "calibrated": "per-head z-scored norm",
    "oracle": "oracle ||z W_O||",
}
TUNE_LABELS = {"query_norm": "query-norm router", "random": "random router", "none": "unrouted control"}


def table4(t4: pd.DataFrame):
    """Table 4 analogue: SmolLM2 converted at step 0, perplexity per budget, router and ablation of the dropped
    heads (bars; whiskers: 95% interval, over windows or, for random, over seeds). ``t4``: budget, router,
    ablation, ppl, ppl_lo, ppl_hi (one ``original`` row)."""
    orig = t4.ppl[t4.router == "original"].iloc[0]
    t = t4[t4.router != "original"]
    budgets = list(dict.fromkeys(t.budget))
    routers = [r for r in ROUTER_LABELS if r in set(t.router)]
    abl = list(dict.fromkeys(t.ablation))
    fig, axes = plt.subplots(1, len(budgets), figsize=(4.6 * len(budgets), 3.6), sharey=True, squeeze=False)
    for ax, b in zip(axes[0], budgets, strict=False):
        for j, ab in enumerate(abl):
            g = t[(t.budget == b) & (t.ablation == ab)].set_index("router").reindex(routers)
            xs = np.arange(len(routers)) + (j - (len(abl) - 1) / 2) * 0.38
            ax.bar(xs, g.ppl, 0.38, label=f"dropped heads {ab}-ablated", color=f"C{j}")
            err = [(g.ppl - g.ppl_lo).clip(lower=0), (g.ppl_hi - g.ppl).clip(lower=0)]
            ax.errorbar(xs, g.ppl, yerr=err, fmt="none", color="k", lw=1)
        ax.axhline(orig, color="k", ls="--", label=f"original, 9/9 heads ({orig:.1f})")
        ax.set_xticks(range(len(routers)), [ROUTER_LABELS[r] for r in routers], rotation=35, ha="right", fontsize=8)
        ax.set(yscale="log", title=f"{b} heads")
    axes[0, 0].set_ylabel("perplexity (7 text types, log)")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle("SmolLM2-135M converted to MoH at step 0: routers", fontsize=10)
    fig.tight_layout()
    return fig


def fig2(f2: pd.DataFrame):
    """Fig. 2 analogue: held-out perplexity after straight-through tuning, per router (colour) and learning rate
    (line style), band: 95% interval over windows. ``f2``: router, lr, tokens, ppl, lo, hi (NLL bounds)."""
    fig, ax = plt.subplots(figsize=(6, 3.4))
    styles = dict(zip(sorted(set(f2.lr)), ["-", "--", ":", "-."], strict=False))
    for i, (r, d) in enumerate(f2.groupby("router", sort=False)):
        for lr, g in d.groupby("lr"):
            ax.plot(
                g.tokens, g.ppl, marker="o", ls=styles[lr], color=f"C{i}", label=f"{TUNE_LABELS.get(r, r)}, lr {lr:g}"
            )
            ax.fill_between(g.tokens, np.exp(g.lo), np.exp(g.hi), color=f"C{i}", alpha=0.12)
    ax.set(xlabel="training tokens", ylabel="perplexity (held-out, log)", yscale="log", title="Straight-through tuning")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def layer_damage(ld: pd.DataFrame):
    """Per-layer damage: NLL increase over the original when only that layer is converted (zero ablation), per
    router; band: 95% interval over windows. ``ld``: layer, router, damage, lo, hi."""
    fig, ax = plt.subplots(figsize=(7, 3.4))
    for i, (r, g) in enumerate(ld.groupby("router", sort=False)):
        g = g.sort_values("layer")
        ax.plot(g.layer, g.damage, marker=".", color=f"C{i}", label=ROUTER_LABELS.get(r, r))
        ax.fill_between(g.layer, g.lo, g.hi, color=f"C{i}", alpha=0.15)
    ax.axhline(0, color="k", lw=0.8)
    ax.set(xlabel="converted layer (the others unrouted)", ylabel="NLL - original (nats)", title="Damage per layer")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def figb(loads: pd.DataFrame):
    """Fig. B analogue: routed-head loads of converted SmolLM2 per text type in layers 0, 1, the middle and the last
    (layer 1 is where one-layer query-norm conversion costs most in our runs). ``loads``: layer,
    label, head, load (share of tokens selecting the head; shared heads have load 1 and are left out)."""
    routed = loads[loads.load < 1 - 1e-9]["head"].unique()
    d = loads[loads["head"].isin(routed)] if len(routed) else loads
    L = sorted(d.layer.unique())
    show = sorted({L[0], L[min(1, len(L) - 1)], L[len(L) // 2], L[-1]})  # the first two, the middle, the last
    types = list(dict.fromkeys(d.label))
    fig, axes = plt.subplots(1, len(show), figsize=(3.3 * len(show), 3.2), sharey=True, squeeze=False)
    w = 0.8 / len(types)
    for ax, l in zip(axes[0], show, strict=False):
        g = d[d.layer == l]
        hs = sorted(g["head"].unique())
        for j, t in enumerate(types):
            v = g[g.label == t].set_index("head").load.reindex(hs)
            ax.bar(np.arange(len(hs)) + (j - (len(types) - 1) / 2) * w, v, w, label=t)
        ax.set_xticks(range(len(hs)), hs)
        ax.set(title=f"layer {l}", xlabel="routed head")
    axes[0, 0].set_ylabel("share of tokens")
    axes[0, -1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1))
    fig.tight_layout()
    return fig


def table5(t5: pd.DataFrame):
    """Table 5 analogue: router ablations, test accuracy per variant. ``t5``: one row per (variant, seed)."""
    fig, ax = plt.subplots(figsize=(7, 3))
    agg = _variant_bars(ax, t5, "test_acc", "test accuracy", horizontal=True)
    ax.set_yticks(range(len(agg)), agg.index)
    ax.set(xlabel="test accuracy", xlim=(max(0, agg.min() - 0.1), 1), title="Router components (6/8 heads active)")
    return fig


def table6(t6: pd.DataFrame):
    """Table 6 analogue: test accuracy against the shared-head share. ``t6``: shared_share, seed, test_acc."""
    agg = t6.groupby("shared_share").test_acc.mean()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(t6.shared_share, t6.test_acc, "k.", alpha=0.5, label="seed")
    ax.plot(agg.index, agg.values, marker="o", label="mean")
    ax.set(xlabel="shared heads / active heads (6/8 active)", ylabel="test accuracy", title="Shared-head share")
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.legend()
    return fig


BALANCE_PANELS = [
    "ViT MoH-75",
    "ViT MoH-50",
    "ViT MoH-75 beta=0",
    "LM MoH-75 (max over layers)",
    "LM MoH-50 (max over layers)",
]


def balance(bal: pd.DataFrame):
    """Balance loss / K over training (1 = balanced), per model; one line per layer and seed. ``bal``:
    model, seed, layer (-1: max over layers), step, laux_over_K."""
    show = [m for m in BALANCE_PANELS if m in set(bal.model)] or list(dict.fromkeys(bal.model))
    first_seed = bal.seed.min()
    fig, axes = plt.subplots(1, len(show), figsize=(3.2 * len(show), 3), sharey=True, squeeze=False)
    for ax, m in zip(axes[0], show, strict=True):
        for (layer, seed), g in bal[bal.model == m].groupby(["layer", "seed"]):
            label = f"layer {layer}" if layer >= 0 and seed == first_seed else None
            ax.plot(g.step, g.laux_over_K, marker=".", label=label)
        ax.axhline(1, color="k", ls=":")
        ax.set(title=m, xlabel="step")
        if m.startswith("ViT"):
            ax.legend(fontsize=7)
    axes[0][0].set_ylabel("balance loss / K (1 = balanced)")
    return fig


def table7(t7: pd.DataFrame):
    """Table 7 analogue: one attention layer's time relative to MHA in the same run, masked and skip modes,
    against sequence length. ``t7``: variant, mode, seq, time_vs_mha, flops_vs_mha_perfect_skip, and the
    run's heads, d_head, device, dtype."""
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for i, name in enumerate(dict.fromkeys(t7.variant)):
        for mode, ls in (("masked", "-"), ("skip", "--")):
            g = t7[(t7.variant == name) & (t7["mode"] == mode)]
            if g.empty:  # MHA has only its dense row (the baseline line below)
                continue
            ax.plot(g.seq, g.time_vs_mha, ls=ls, marker="o", color=f"C{i}", label=f"{name} {mode}")
        ax.plot(g.seq, g.flops_vs_mha_perfect_skip, color=f"C{i}", ls=":", lw=1)  # per length: attention grows with T
    ax.axhline(1, color="k", lw=1, label="MHA")
    ax.plot([], [], color="grey", ls=":", lw=1, label="perfect-skip FLOPs ratio")
    ax.set_xscale("log", base=2)
    r = t7.iloc[0]
    ax.set(
        xlabel="sequence length",
        ylabel="time / MHA time (same run)",
        title=f"One attention layer, {int(r['heads'])} heads x {int(r['d_head'])}, {r['device']}, {r['dtype']}",
    )
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    return fig


FIG3_PANELS = [("ViT MoH-75 (digits)", [1, 4, 7]), ("LM MoH-75 (text types)", ["code", "prose", "verse"])]


def fig3(f3: pd.DataFrame):
    """Fig. 3 analogue: routed-head loads for three labels of each model (dashed: the balanced load K/E).
    ``f3``: model, label, head, load."""
    fig, axes = plt.subplots(2, 3, figsize=(10, 5.2), sharey="row")
    for row, (m, labs) in enumerate(FIG3_PANELS):
        g = f3[f3.model == m]
        if g.empty:
            continue
        kE = g.groupby("label").load.sum().mean() / g["head"].nunique()  # a label's loads sum to K: mean load K/E
        for ax, lab in zip(axes[row], labs, strict=True):
            d = g[g.label.astype(str) == str(lab)]
            ax.bar(d["head"], d["load"], color="C4")
            ax.axhline(kE, color="k", ls="--", lw=1)
            title = f"{m.split(' (')[0]}: {'digit ' if row == 0 else ''}{lab}"
            ax.set(title=title, xlabel="routed head ID", xticks=d["head"])
        axes[row][0].set_ylabel("density (share of tokens)")
    fig.tight_layout()
    return fig


def score_histograms(sc: pd.DataFrame, labels, bins: int = 40) -> pd.DataFrame:
    """The tidy table behind App. Figs. C/E: per group (shared / routed) and label, the density histogram of
    routing scores over 40 bins spanning the group's 0.1-99.9 % quantiles. ``sc``: label, group, score."""
    rows = []
    for grp in ("shared", "routed"):
        d = sc[sc.group == grp]
        edges = np.linspace(d.score.quantile(0.001), d.score.quantile(0.999), bins + 1)
        for lab in labels:
            dens, _ = np.histogram(d[d.label == lab].score, bins=edges, density=True)
            rows += [
                {"group": grp, "label": lab, "bin_lo": a, "bin_hi": b, "density": v}
                for a, b, v in zip(edges[:-1], edges[1:], dens, strict=True)
            ]
    return pd.DataFrame(rows)


def _score_hist(h: pd.DataFrame, title: str, legend: str):
    fig, axes = plt.subplots(1, 2, figsize=(9, 3))
    for ax, grp in zip(axes, ["shared", "routed"], strict=True):
        d = h[h.group == grp]
        for lab, g in d.groupby("label", sort=False):
            ax.stairs(g.density, np.r_[g.bin_lo.values, g.bin_hi.values[-1:]], lw=1.5, label=str(lab))
        ax.set(title=f"{title}: {grp} heads", xlabel="routing score (gate weight)", ylabel="density")
        ax.legend(fontsize=8, title=legend)
    return fig


def appfigc(h: pd.DataFrame):
    """App. Fig. C analogue: ViT routing-score densities per digit. ``h``: ``score_histograms``' table."""
    return _score_hist(h, "ViT MoH-75 (digits)", "digit")


def appfige(h: pd.DataFrame):
    """App. Fig. E analogue: LM routing-score densities per text type. ``h``: ``score_histograms``' table."""
    return _score_hist(h, "LM MoH-75 (text types)", "text type")


def apptableb(tb: pd.DataFrame):
    """App. Table B analogue: attention-pattern similarity and |cosine| of head outputs, MHA vs MoH-75, mean
    over head pairs (and seeds). ``tb``: model, variant, seed, pattern_similarity, output_abs_cosine."""
    cols = {"pattern_similarity": "attention-pattern similarity", "output_abs_cosine": "|cosine| of head outputs"}
    agg = tb.groupby(["model", "variant"], sort=False)[list(cols)].mean().reset_index()
    fig, axes = plt.subplots(1, 2, figsize=(8.5, 3))
    for ax, (col, title) in zip(axes, cols.items(), strict=True):
        for j, v in enumerate(["MHA", "MoH-75"]):
            d = agg[agg.variant == v]
            ax.bar(np.arange(len(d)) + (j - 0.5) * 0.38, d[col], 0.38, label=v)
        ax.set_xticks(range(len(d)), d.model)
        ax.set(title=title, ylabel="mean over head pairs", ylim=(0, 1.3 * agg[col].max()))
        ax.legend(ncol=2, loc="upper center")
    fig.tight_layout()
    return fig


FROM_CSV = {
    f.__name__: f
    for f in (
        table1,
        table3,
        table4,
        fig2,
        layer_damage,
        figb,
        flex_speed,
        table5,
        table6,
        balance,
        table7,
        fig3,
        appfigc,
        appfige,
        apptableb,
    )
}

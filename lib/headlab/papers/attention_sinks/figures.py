"""Figures of notebook 04 (attention sinks), each a pure function of the tidy table saved beside its PNG:
``python -m headlab replot 04_attention_sinks --profile smoke`` redraws them without a model.

Attention maps are saved cell by cell with their token labels (``fig3``, ``fig4``), so they redraw too.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ...figures import run_value
from .patterns import bos_label, chance_score
from .training import VARIANTS


def _sink_cols(d: pd.DataFrame) -> list[str]:
    """The sink-metric columns (``sink_<ε>``), smallest ε first."""
    return sorted((c for c in d.columns if c.startswith("sink_")), key=lambda c: float(c[5:]))


def _attention_map(ax, cells: pd.DataFrame, title: str, fontsize: float = 6):
    """One attention map from its cells (``q``, ``k``, ``weight``, ``q_label``, ``k_label``); cells not saved
    (above the causal diagonal) are zero."""
    qs, ks = sorted(cells.q.unique()), sorted(cells.k.unique())
    pos = sorted(set(qs) | set(ks))
    idx = {p: i for i, p in enumerate(pos)}
    m = np.zeros((len(pos), len(pos)))
    m[cells.q.map(idx).to_numpy(), cells.k.map(idx).to_numpy()] = cells.weight.to_numpy()
    labels = pd.concat([cells.set_index("q").q_label, cells.set_index("k").k_label]).fillna("").groupby(level=0).first()
    tick = [str(labels.get(p, "")) for p in pos]  # a token that decodes to "" reads back from the CSV as NaN
    ax.imshow(m, cmap="Blues", vmin=0, vmax=1)
    ax.grid(False)
    ax.set_xticks(range(len(pos)), tick, rotation=90, fontsize=fontsize)
    ax.set_yticks(range(len(pos)), tick, fontsize=fontsize)
    ax.set_title(title, fontsize=9)


def fig1(sim: pd.DataFrame):
    """Fig. 1 (simulation): mixing with a zero-value sink. ``sim``: one row per (sink weight, layer, token)."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8), layout="constrained")
    last_tok = sim[sim.token == sim.token.max()]
    final = sim[sim.layer == sim.layer.max()]
    for s, g in last_tok.groupby("sink_weight"):
        axes[0].plot(g.layer, g.mean_cosine, marker=".", label=f"sink weight s = {s:g}")
        axes[1].plot(g.layer[g.layer > 0], g.sensitivity[g.layer > 0], marker=".", label=f"s = {s:g}")
    for s, g in final.groupby("sink_weight"):
        axes[2].plot(g.token, g.sensitivity, marker=".", label=f"s = {s:g}")
    axes[0].set(title="(a) representational collapse", xlabel="layer", ylabel="mean cosine similarity between tokens")
    axes[1].set(title="(b) sensitivity of the last token", xlabel="layer", ylabel="‖∂x_last / ∂x_1‖", yscale="log")
    axes[2].set(
        title=f"(c) sensitivity at layer {sim.layer.max()}",
        xlabel="token position",
        ylabel="‖∂x_j / ∂x_1‖",
        yscale="log",
    )
    handles = axes[0].get_legend_handles_labels()
    fig.legend(*handles, loc="outside lower center", ncols=max(1, sim.sink_weight.nunique()))
    fig.suptitle("Fig. 1 (simulation): attention parked on a zero-value first token slows mixing")
    return fig


def fig2(pert: pd.DataFrame):
    """Fig. 2: relative change of the later tokens' hidden states after a one-word edit, per layer, with
    and without ⟨bos⟩. ``pert``: one row per (model, bos, layer, text position)."""
    models = list(dict.fromkeys(pert.model))
    fig, axes = plt.subplots(
        len(models),
        3,
        figsize=(16, 3.9 * len(models)),
        squeeze=False,
        layout="constrained",
        gridspec_kw={"width_ratios": [1, 1, 0.9]},
    )
    for row, name in zip(axes, models, strict=True):
        d = pert[pert.model == name]
        vmax = d.rel_change.quantile(0.99)
        im = None
        for ax, bos in zip(row[:2], (True, False), strict=True):
            grid = d[d.bos == bos].pivot_table(index="layer", columns="text_pos", values="rel_change")
            ax.grid(False)
            ax.set(title=f"{name}: {bos_label(bos)}", xlabel="text token position (after the edit)", ylabel="layer")
            if grid.empty:
                continue
            extent = (grid.columns.min() - 0.5, grid.columns.max() + 0.5, -0.5, len(grid) - 0.5)
            im = ax.imshow(grid.values, aspect="auto", origin="lower", cmap="magma", vmin=0, vmax=vmax, extent=extent)
            ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
        if im is not None:
            fig.colorbar(im, ax=row[1], label="‖h − h'‖ / ‖h‖")
        for bos, g in d.groupby("bos"):
            m = g.groupby("layer").rel_change.mean()
            row[2].plot(m.index, m.values, marker=".", label=bos_label(bos))
        row[2].set(title=f"{name}: mean over later tokens", xlabel="layer", ylabel="mean relative change")
        row[2].legend()
    old, new = run_value(pert, "old"), run_value(pert, "new")
    edit = f" '{old}' → '{new}'" if old is not None else ""
    fig.suptitle(f"Fig. 2: perturbation{edit}, relative change of the later tokens per layer")
    return fig


def fig3(maps: pd.DataFrame):
    """Fig. 3: attention maps of the heads with the highest first-position score, with ⟨bos⟩ present
    (top) and removed (bottom). ``maps``: one row per (layer, head, bos, query, key) cell of prompt 0's first
    tokens, with the token labels, the head's mean score and its mean row entropy."""
    heads = list(dict.fromkeys(zip(maps["layer"], maps["head"], strict=True)))
    fig, axes = plt.subplots(2, len(heads), figsize=(3.7 * len(heads), 8), squeeze=False, layout="constrained")
    for j, (l, h) in enumerate(heads):
        for i, bos in enumerate((True, False)):
            cells = maps[(maps["layer"] == l) & (maps["head"] == h) & (maps.bos == bos)]
            if cells.empty:
                axes[i, j].axis("off")
                continue
            _attention_map(axes[i, j], cells, f"L{l} H{h}, {bos_label(bos)}")
    model, n = run_value(maps, "model"), maps.q.max() + 1
    fig.suptitle(
        f"Fig. 3: {model or 'the ⟨bos⟩ model'}, the {len(heads)} heads with the highest first-position score "
        f"(first {n} tokens of prompt 0)"
    )
    return fig


def fig4(f4: pd.DataFrame):
    """Fig. 4: (a) the top apostrophe head's attention, (b) value norms of the top sink heads along prompt 0,
    (c) every head's ⟨bos⟩ value norm against its first-position score. ``f4`` stacks four tables by its
    ``table`` column: ``pattern`` (the map of (a)), ``vnorm`` (the lines of (b)), ``value_norms`` (one row per
    head: (c) and the claims) and ``apostrophe_search`` (the head search)."""
    fig, axes = plt.subplots(1, 3, figsize=(17, 5.2), layout="constrained", gridspec_kw={"width_ratios": [1.2, 1, 1]})
    pat, vn, vtab = (f4[f4["table"] == t] for t in ("pattern", "vnorm", "value_norms"))
    if len(pat):
        l, h = int(pat["layer"].iloc[0]), int(pat["head"].iloc[0])
        _attention_map(axes[0], pat, f"(a) top apostrophe head L{l} H{h}", fontsize=7)
        axes[0].set(xlabel="key", ylabel="query")
    else:
        axes[0].axis("off")
    for (l, h), g in vn.groupby(["layer", "head"], sort=False):
        g = g.sort_values("pos")
        label = f"L{int(l)} H{int(h)} (score {g.score.iloc[0]:.2f})"
        (line,) = axes[1].plot(g.pos, g.value_norm, marker=".", ms=3, label=label)
        axes[1].plot(g.pos.iloc[:1], g.value_norm.iloc[:1], marker="*", ms=12, color=line.get_color())
    axes[1].set(
        title="(b) value norms of top sink heads, prompt 0 (★ = ⟨bos⟩)",
        xlabel="token position (0 = ⟨bos⟩)",
        ylabel="‖v‖",
        yscale="log",
    )
    if len(vn):
        axes[1].legend()
    sc = axes[2].scatter(vtab.score, vtab.ratio, c=vtab.layer, cmap="viridis", s=18)
    axes[2].axhline(1, color="grey", ls="--", lw=0.8)
    axes[2].axvline(0.5, color="grey", ls=":", lw=0.8)
    axes[2].set(
        title="(c) all heads", xlabel="mean first-position score", ylabel="‖v_⟨bos⟩‖ / median ‖v_other‖", yscale="log"
    )
    fig.colorbar(sc, ax=axes[2], label="layer")
    model = run_value(f4, "model")
    fig.suptitle(f"Fig. 4: {model or 'the ⟨bos⟩ model'}, an if-else head and the small ⟨bos⟩ value")
    return fig


def _curves(d: pd.DataFrame, panels: list[tuple[str, str, float | None]]):
    """Pretraining curves per context length: one column per data source, one row per (y, label, floor)."""
    sources = list(dict.fromkeys(d.source)) if "source" in d else ["live"]
    fig, axes = plt.subplots(
        len(panels), len(sources), figsize=(6 * len(sources), 3.6 * len(panels)), squeeze=False, layout="constrained"
    )
    T = run_value(d, "eval_T")
    for j, label in enumerate(sources):
        s = d[d.source == label] if "source" in d else d
        for i, (y, ylabel, ymin) in enumerate(panels):
            ax = axes[i, j]
            for ctx, g in s.groupby("ctx"):
                ax.plot(g.tokens_seen / 1e6, g[y], marker=".", label=f"ctx {ctx}")
            if y == "mean_score" and T is not None:
                ax.axhline(chance_score(int(T)), color="grey", ls="--", lw=0.8, label="uniform attention")
            if ymin is not None:  # keep the axis readable when every value is 0
                ax.set_ylim(ymin, max(10.0, 1.1 * float(s[y].max())))
            ax.set(title=label, xlabel="training tokens (M)", ylabel=ylabel)
            ax.legend(fontsize=8)
    return fig, T


def fig5(d5: pd.DataFrame):
    """Fig. 5: the sink metric (smallest ε) and the mean first-position score during pretraining, per
    context length. ``d5``: one row per (source, ctx, evaluation step)."""
    eps = _sink_cols(d5)[0]
    panels = [(eps, f"sink metric at ε = {eps[5:]} (%)", -1), ("mean_score", "mean first-position score", None)]
    fig, T = _curves(d5, panels)
    at = f" (evaluated at T = {int(T)}, ⟨bos⟩ as trained)" if T is not None else ""
    fig.suptitle(f"Fig. 5: sink metric during pretraining{at}")
    return fig


def fig6(prof: pd.DataFrame):
    """Fig. 6 (our reading): share of sink heads per layer, per model, ⟨bos⟩ present or removed and ε."""
    models = list(dict.fromkeys(prof.model))
    eps_all = sorted(prof.eps.unique())
    fig, axes = plt.subplots(
        1, len(models), figsize=(6.5 * len(models), 3.9), squeeze=False, sharey=True, layout="constrained"
    )
    for ax, name in zip(axes[0], models, strict=True):
        for (bos, eps), g in prof[prof.model == name].groupby(["bos", "eps"]):
            ax.plot(
                g.layer,
                g.sink_pct,
                marker="o" if bos else "x",
                ms=4,
                ls="-" if bos else "--",
                color=f"C{eps_all.index(eps)}",
                label=f"{bos_label(bos)}, ε = {eps:g}",
            )
        ax.set(title=name, xlabel="layer", ylabel="sink heads in layer (%)", ylim=(-3, 103))
        ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    axes[0, -1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.suptitle("Fig. 6 (our reading): per-layer sink profile")
    return fig


def table1(t1: pd.DataFrame):
    """Table 1: the sink metric at ε = 0.8 per model, ours (⟨bos⟩ present / removed) beside the paper's."""
    fig, ax = plt.subplots(figsize=(9, 3.8), layout="constrained")
    paper = t1.source.eq("paper (published)").to_numpy()
    labels = [f"{m}\n{'paper' if p else bos_label(b)}" for m, b, p in zip(t1.model, t1.bos, paper, strict=True)]
    bars = ax.bar(range(len(t1)), t1["sink_0.8"], color=["C7" if p else "C0" for p in paper])
    for bar, p in zip(bars, paper, strict=True):
        bar.set_hatch("//" if p else "")
    ax.set_xticks(range(len(t1)), labels, fontsize=7)
    ax.set(ylabel="sink metric at ε = 0.8 (%)", title="Table 1: sink metric per model (ε = 0.8)")
    return fig


def table2(t2: pd.DataFrame):
    """Table 2: the four training variants (⟨bos⟩ or not, packed or intra-document masked), each evaluated
    with ⟨bos⟩ present and removed: sink metric and loss. ``t2``: one row per (source, variant, eval ⟨bos⟩)."""
    sources = list(dict.fromkeys(t2.source)) if "source" in t2 else ["live"]
    eps = _sink_cols(t2)[0]
    fig, axes = plt.subplots(len(sources), 2, figsize=(13, 3.9 * len(sources)), squeeze=False, layout="constrained")
    for row, label in zip(axes, sources, strict=True):
        d = t2[t2.source == label] if "source" in t2 else t2
        for ax, col, ylab in ((row[0], eps, f"sink metric at ε = {eps[5:]} (%)"), (row[1], "loss", "loss (nats/byte)")):
            piv = d.pivot_table(index="variant", columns="eval_bos", values=col).reindex(list(dict.fromkeys(d.variant)))
            x = np.arange(len(piv))
            for k, bos in enumerate((True, False)):
                if bos in piv:
                    ax.bar(x + (k - 0.5) * 0.38, piv[bos], width=0.38, label=f"evaluated {bos_label(bos)}")
            names = [VARIANTS[v].name.replace(", ", "\n") if v in VARIANTS else v for v in piv.index]
            ax.set_xticks(x, names, fontsize=8)
            ax.set(ylabel=ylab, title=label)
            top = float(np.nanmax(piv.values)) if piv.size else 1.0
            ax.set_ylim(0, max(10.0, 1.15 * top) if col.startswith("sink") else 1.3 * top)
            ax.legend(fontsize=8, loc="upper left")
    fig.suptitle("Table 2: training variants × ⟨bos⟩ at inference")
    return fig


def table3(t3: pd.DataFrame):
    """Table 3 (offline proxy): next-token loss per text type and passkey accuracy, ⟨bos⟩ present and
    removed. ``t3``: one row per (model, task, ⟨bos⟩)."""
    models = list(dict.fromkeys(t3.model))
    fig, axes = plt.subplots(
        1, len(models) + 1, figsize=(5.5 * (len(models) + 1), 3.9), squeeze=False, layout="constrained"
    )
    for ax, name in zip(axes[0][:-1], models, strict=True):
        piv = t3[(t3.model == name) & (t3.metric == "nats/token")].pivot_table(
            index="task", columns="bos", values="value"
        )
        x = np.arange(len(piv))
        for k, bos in enumerate((True, False)):
            if bos in piv:
                ax.bar(x + (k - 0.5) * 0.38, piv[bos], width=0.38, label=bos_label(bos))
        ax.set_xticks(x, [t.replace("NLL ", "") for t in piv.index], rotation=30, ha="right", fontsize=8)
        ax.set(title=f"{name}: next-token loss", ylabel="nats/token")
        ax.legend(fontsize=8)
    acc = t3[t3.metric == "accuracy"]
    pk = acc.pivot_table(index="model", columns="bos", values="value")
    x = np.arange(len(pk))
    for k, bos in enumerate((True, False)):
        if bos in pk:
            axes[0, -1].bar(x + (k - 0.5) * 0.38, pk[bos], width=0.38, label=bos_label(bos))
    axes[0, -1].set_xticks(x, pk.index)
    n = int(acc.n.max()) if len(acc) else 0
    axes[0, -1].set(title=f"passkey retrieval ({n} items)", ylabel="exact match", ylim=(0, 1.3))
    axes[0, -1].legend(fontsize=8, loc="upper center", ncols=2)
    fig.suptitle("Table 3 (offline proxy): removing ⟨bos⟩ at inference")
    return fig


def fig7(d7: pd.DataFrame):
    """Fig. 7: validation loss of the context-length sweep during pretraining."""
    fig, _ = _curves(d7, [("val_loss", "validation loss (nats/byte)", None)])
    fig.suptitle("Fig. 7: validation loss during pretraining")
    return fig


def pilot(d: pd.DataFrame):
    """The go/no-go sink pilot on the big corpus (issue 23): sink rate at ε = 0.3, mean first-position score and
    loss against training tokens, query row 0 included and excluded, with the criterion and chance lines. ``d``:
    ``pilot.pilot_table`` (tokens_seen, panel, series, value; constant series are reference lines)."""
    panels = list(dict.fromkeys(d.panel))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.8), squeeze=False, layout="constrained")
    for ax, panel in zip(axes[0], panels, strict=True):
        g = d[d.panel == panel]
        for k, (series, s) in enumerate(g[g.tokens_seen > 0].groupby("series", sort=False)):  # log x: from step 1 on
            ref = series.startswith(("chance", "criterion"))
            ax.plot(
                s.tokens_seen,
                s.value,
                ls="--" if ref else "-",
                lw=0.9 if ref else 1.6,
                marker=None if ref else ".",
                color="grey" if series.startswith("chance") else "C3" if ref else f"C{k}",
                label=series,
            )
        ax.set_xscale("log")
        ax.set(title=panel, xlabel="training tokens (bytes)")
        ax.legend(fontsize=7)
    fig.suptitle("Sink pilot on the big corpus (bos_causal): sinks formed when the ε = 0.3 rate reaches 20 %")
    return fig


FROM_CSV = {f.__name__: f for f in (fig1, fig2, fig3, fig4, fig5, fig6, table1, table2, table3, fig7, pilot)}
# drawn by their own commands, not the notebook (python -m headlab.papers.attention_sinks.pilot); redrawn by
# `headlab replot NB --profile cpu_pilot` like the others
NOT_IN_NOTEBOOK = ("pilot",)

"""Figures of notebook 00 (the tour), each a pure function of the tidy table saved beside its PNG:
``python -m headlab replot 00_headlab_tour --profile smoke`` redraws them without loading a model.
"""

from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd


def first_token_attention(ft: pd.DataFrame):
    """Mean attention of queries to position 0 per layer, with and without ⟨bos⟩; one panel per model.
    ``ft``: model, bos, layer, first_token_attention."""
    names = list(dict.fromkeys(ft.model))
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 3.4), sharey=True, squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        for bos, g in ft[ft.model == name].groupby("bos"):
            label = f"⟨bos⟩ {'prepended' if bos else 'absent'}"
            ax.plot(g.layer, g.first_token_attention, marker="o", ms=3, label=label)
        ax.set(title=name, xlabel="layer", ylabel="mean attention to position 0", ylim=(0, 1))
        ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
        ax.legend()
    return fig


def head_output_norms(hn: pd.DataFrame):
    """Mean ‖z‖ per (layer, head) on a log colour scale; one panel per model.
    ``hn``: model, layer, head, mean_z_norm."""
    names = list(dict.fromkeys(hn.model))
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 5), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        grid = hn[hn.model == name].pivot(index="layer", columns="head", values="mean_z_norm")
        # log scale: Gemma's layer 0 is 10x the rest
        im = ax.imshow(grid.values, aspect="auto", cmap="viridis", origin="lower", norm=matplotlib.colors.LogNorm())
        ax.grid(False)
        ax.set(title=f"{name}: mean ‖z‖ per head", xlabel="head", ylabel="layer")
        fig.colorbar(im, ax=ax, shrink=0.8)
    return fig


def zero_one_head(zl: pd.DataFrame):
    """Loss change from zeroing each head of one layer. ``zl``: model, layer, head ("none" = baseline),
    loss, delta_loss."""
    d = zl[zl["head"].astype(str) != "none"]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.bar(d["head"].astype(str), d.delta_loss)
    ax.axhline(0, color="k", lw=0.8)
    ax.set(
        title=f"{zl.model.iloc[0]}: zeroing one head of layer {int(zl.layer.iloc[0])}",
        xlabel="head zeroed",
        ylabel="Δ next-token loss (nats/token)",
    )
    return fig


def train_tiny_lm(log: pd.DataFrame):
    """Training and validation loss of the tiny headlab LM. ``log``: step, train_loss, val_loss, and the
    model's n_params, n_heads, n_kv_heads (constant columns)."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(log.step, log.val_loss, marker="o", label="validation")
    ax.plot(log.step[1:], log.train_loss[1:], marker=".", alpha=0.6, label="training batch")
    ax.axhline(np.log(256), ls="--", color="grey", label="uniform over bytes")
    m = log.iloc[0]
    ax.set(
        title=f"headlab LM ({m['n_params'] / 1e6:.2f}M params), {int(m['n_heads'])}q/{int(m['n_kv_heads'])}kv heads",
        xlabel="step",
        ylabel="loss (nats/byte)",
    )
    ax.legend()
    return fig


FROM_CSV = {f.__name__: f for f in (first_token_attention, head_output_norms, zero_one_head, train_tiny_lm)}

"""Analyses of the trained digits ViTs and byte LMs of notebook 05: the last MoH layer's head load per category
(Fig. 3) with its dependence tests, and head redundancy of MHA vs MoH-75 (Table B).

A routing record ``rec`` is ``collect_routing``'s ``{layer: {"mask": [token, head], ...}}``; the first ``h_s``
heads are shared, the rest routed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from .instrument import head_load, load_dependence, model_redundancy
from .lm import DomainData

VIT_LOAD, LM_LOAD = "ViT MoH-75 (digits)", "LM MoH-75 (text types)"


def last_layer_loads(vit_rec: dict, y_test: np.ndarray, hs_v: int, lm_rec: dict, lm_labels, hs_l: int) -> pd.DataFrame:
    """Fig. 3: the share of tokens that select each routed head in the last MoH layer, per digit class (ViT,
    ``y_test`` per image) and per text type (LM, ``lm_labels`` per token); columns of ``head_load`` plus model
    and layer."""
    last_v, last_l = max(vit_rec), max(lm_rec)
    load_v = head_load(vit_rec[last_v]["mask"][..., hs_v:], y_test)
    load_l = head_load(lm_rec[last_l]["mask"][..., hs_l:], lm_labels)
    return pd.concat([load_v.assign(model=VIT_LOAD, layer=last_v), load_l.assign(model=LM_LOAD, layer=last_l)])


def last_layer_dependence(
    vit_rec: dict, y_test: np.ndarray, hs_v: int, lm_rec: dict, lm_labels, hs_l: int, n_perm: int, seed: int
) -> pd.DataFrame:
    """Whether the last layer's routed-head load depends on the category: ``load_dependence`` (chi-square and a
    label-permutation test of the total-variation distance) for the ViT's classes and the LM's text types."""
    last_v, last_l = max(vit_rec), max(lm_rec)
    dep_v = load_dependence(vit_rec[last_v]["mask"][..., hs_v:], y_test, n_perm, seed)
    dep_l = load_dependence(lm_rec[last_l]["mask"][..., hs_l:], lm_labels, n_perm, seed)
    return pd.DataFrame([{"model": "ViT MoH-75, classes", **dep_v}, {"model": "LM MoH-75, text types", **dep_l}])


def redundancy_table(
    vit_runs: dict, lm_runs: dict, X_test: torch.Tensor, dd: DomainData, vit_seeds, lm_seeds, device
) -> pd.DataFrame:
    """Table B: ``model_redundancy`` (pattern similarity, output cosines averaged over head pairs) of MHA and
    MoH-75, every seed, on the test images ``X_test`` ``[image, ...]`` (ViT) and the validation windows of every
    text type (LM, inputs ``[window, seq - 1]``)."""
    tb = []
    for fam, runs, batches in (
        ("ViT", vit_runs, [X_test]),
        ("LM", lm_runs, [w[:, :-1].to(device) for w in dd.val.values()]),
    ):
        for name in ("MHA", "MoH-75"):
            for seed in vit_seeds if fam == "ViT" else lm_seeds:
                tb.append(
                    {
                        "model": fam,
                        "variant": name,
                        "seed": seed,
                        **model_redundancy(runs[(name, seed)][0], batches),
                    }
                )
    return pd.DataFrame(tb)

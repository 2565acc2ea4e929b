"""Per-unit tidy data for the claims (per test image, per validation window, per timing repeat)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from headlab.nn import HeadlabLM

from .convert import query_norm_routing
from .instrument import model_redundancy
from .lm import DomainData

# ----------------------------------------------------------------------------------------------
# Per-unit data for the claims (per test image, per validation window, per timing repeat)
# ----------------------------------------------------------------------------------------------


@torch.no_grad()
def vit_correct(model: nn.Module, X: torch.Tensor, y) -> np.ndarray:
    """Per test image: 1 if the model's prediction is right (the units of the accuracy claims)."""
    model.eval()
    return (model(X).argmax(-1).cpu().numpy() == np.asarray(y)).astype(int)


@torch.no_grad()
def window_losses(model: HeadlabLM, dd: DomainData) -> pd.DataFrame:
    """Validation loss (nats/byte) per window: domain, window, val_loss (their per-domain mean is
    ``domain_losses``)."""
    model.eval()
    rows = []
    for t, w in dd.val.items():
        w = w.to(model.device)
        logits = model(w[:, :-1]).logits
        l = F.cross_entropy(logits.flatten(0, 1).float(), w[:, 1:].flatten(), reduction="none").view(len(w), -1).mean(1)
        rows += [{"domain": t, "window": i, "val_loss": float(v)} for i, v in enumerate(l.tolist())]
    return pd.DataFrame(rows)


@torch.no_grad()
def window_nlls(model, ids: torch.Tensor, batch: int = 4) -> np.ndarray:
    """Mean next-token loss (nats) of each window [n, seq]; their mean is ``window_nll``."""
    out = []
    for s in range(0, len(ids), batch):
        x = ids[s : s + batch].to(model.device)
        logits = model(input_ids=x).logits
        l = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), x[:, 1:].flatten(), reduction="none")
        out += l.view(len(x), -1).mean(1).tolist()
    return np.asarray(out)


def conversion_windows(
    model, ids: torch.Tensor, budgets: dict[str, tuple[int, int]], random_seeds=(0, 1, 2)
) -> pd.DataFrame:
    """``conversion_table`` per evaluation window: budget, router, seed, window, nll."""
    rows = []

    def put(budget, router, seed, nll):
        rows.extend(
            {"budget": budget, "router": router, "seed": seed, "window": i, "nll": float(v)} for i, v in enumerate(nll)
        )

    put("9/9", "original", -1, window_nlls(model, ids))
    for name, (hs, k) in budgets.items():
        for router, seeds in (("query_norm", [0]), ("random", list(random_seeds)), ("inverse", [0])):
            for s in seeds:
                with query_norm_routing(model, hs, k, router, seed=s, ste=False):
                    put(name, router, s if router == "random" else -1, window_nlls(model, ids))
    return pd.DataFrame(rows)


def redundancy_units(model: nn.Module, x: torch.Tensor) -> pd.DataFrame:
    """``model_redundancy`` of each unit (test image or window) on its own: unit, pattern_similarity,
    output_cosine, output_abs_cosine (averaged over layers)."""
    return pd.DataFrame([{"unit": i, **model_redundancy(model, [x[i : i + 1]])} for i in range(len(x))])


def routing_units(rec: dict, labels, n_shared: int, scores: bool = False) -> pd.DataFrame:
    """Per unit (image or window) and layer: label, tokens, and ``sel_j`` = tokens that selected
    head j (shared heads: every token). With ``scores``, ``gsum_j`` = the sum of head j's gate over
    the tokens where it is active (last layer only is enough for the score claims)."""
    labels = np.asarray(labels)
    frames = []
    for l, r in sorted(rec.items()):
        m = r["mask"]
        N, T, h = m.shape
        d = pd.DataFrame({"layer": l, "unit": np.arange(N), "label": labels, "tokens": T})
        sel = m.sum(1).numpy()
        for j in range(h):
            d[f"sel_{j}"] = sel[:, j]
        if scores:
            g = (r["gates"] * m).sum(1).numpy()
            for j in range(h):
                d[f"gsum_{j}"] = g[:, j]
        d.attrs["n_shared"] = n_shared
        frames.append(d)
    return pd.concat(frames, ignore_index=True)

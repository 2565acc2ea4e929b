"""Router diagnostics on a converted pretrained model (SmolLM2): which per-token routers keep it working, where
the damage is, and why the parameter-free query-norm router does worse than random at step 0.

Every function returns a tidy per-window frame, so that intervals are over evaluation windows (the unit) and
the rules in ``rules_routers`` can be rerun from the CSVs alone."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from headlab import data, heads
from headlab.train import progress_bar

from .convert import Calibration, _output_gram, query_norm_routing, router_scores
from .layer import topk_mask
from .units import routing_units, window_nlls

DETERMINISTIC = ("query_norm", "inverse", "static", "calibrated", "oracle")


@dataclass
class Windows:
    """Token windows ``[n, seq]`` of the shipped corpus, disjoint by role: ``eval`` (with its text ``labels``),
    ``calib`` (calibration statistics), ``tune`` (straight-through tuning) and ``damage`` (the evaluation
    windows the per-layer sweep uses: the first ``damage_per_type`` of each type)."""

    eval: torch.Tensor
    labels: list[str]
    calib: torch.Tensor
    tune: torch.Tensor
    damage: torch.Tensor


def smollm_windows(
    tok, per_type: int, calib_per_type: int, n_tune: int, seq: int, damage_per_type: int, types=None, seed: int = 0
) -> Windows:
    """Split ``data.token_windows`` per text type into evaluation, calibration and tuning windows."""
    types = list(types or data.text_types())
    tune_per_type = math.ceil(n_tune / len(types))
    k = per_type + calib_per_type + tune_per_type
    ids, _ = data.token_windows(tok, types, k, seq, seed)
    blocks = ids.view(len(types), k, seq)
    ev = blocks[:, :per_type]
    return Windows(
        ev.flatten(0, 1),
        [t for t in types for _ in range(per_type)],
        blocks[:, per_type : per_type + calib_per_type].flatten(0, 1),
        blocks[:, per_type + calib_per_type :].transpose(0, 1).flatten(0, 1)[:n_tune],  # types interleaved
        ev[:, :damage_per_type].flatten(0, 1),
    )


def router_windows(
    model,
    ids: torch.Tensor,
    budgets: dict[str, tuple[int, int]],
    calib: Calibration,
    random_seeds: Sequence[int] = tuple(range(10)),
    ablations: Sequence[str] = ("zero", "mean"),
    mean_random_seeds: int = 3,
    batch: int = 4,
    progress: bool = True,
) -> pd.DataFrame:
    """Table 4 analogue per evaluation window: NLL of the original model and, per budget ``name -> (h_s, K)``,
    of every router in ``DETERMINISTIC`` and ``random`` (``random_seeds``; under mean ablation only the first
    ``mean_random_seeds``) with dropped heads zeroed or mean-ablated. Columns: budget, router, ablation, seed,
    window, nll."""
    runs = [("9/9", None, "original", "none", -1)]
    for name, hk in budgets.items():
        for ab in ablations:
            runs += [(name, hk, r, ab, -1) for r in DETERMINISTIC]
            seeds = list(random_seeds) if ab == "zero" else list(random_seeds)[:mean_random_seeds]
            runs += [(name, hk, "random", ab, s) for s in seeds]
    rows = []
    for name, hk, router, ab, seed in progress_bar(runs, "routers", progress):
        if hk is None:
            nll = window_nlls(model, ids, batch)
        else:
            with query_norm_routing(model, *hk, router, seed=max(seed, 0), ste=False, calib=calib, ablation=ab):
                nll = window_nlls(model, ids, batch)
        rows += [
            {"budget": name, "router": router, "ablation": ab, "seed": seed, "window": i, "nll": float(v)}
            for i, v in enumerate(nll)
        ]
    return pd.DataFrame(rows)


def layer_damage(
    model,
    ids: torch.Tensor,
    hs_k: tuple[int, int],
    calib: Calibration,
    routers: Sequence[str] = ("query_norm", "random", "calibrated", "oracle"),
    layers: Sequence[int] | None = None,
    batch: int = 4,
    progress: bool = True,
) -> pd.DataFrame:
    """One layer converted at a time (zero ablation): NLL per window for each (layer, router); the original
    model's rows have layer -1. Columns: layer, router, window, nll."""
    L = heads.Heads(model).n_layers
    layers = list(range(L)) if layers is None else list(layers)
    rows = [
        {"layer": -1, "router": "original", "window": i, "nll": float(v)}
        for i, v in enumerate(window_nlls(model, ids, batch))
    ]
    for l, router in progress_bar([(l, r) for l in layers for r in routers], "per-layer damage", progress):
        with query_norm_routing(model, *hs_k, router, ste=False, calib=calib, layers=[l]):
            nll = window_nlls(model, ids, batch)
        rows += [{"layer": l, "router": router, "window": i, "nll": float(v)} for i, v in enumerate(nll)]
    return pd.DataFrame(rows)


@torch.no_grad()
def head_loads(
    model, ids: torch.Tensor, labels: Sequence[str], hs_k: tuple[int, int], router: str = "query_norm", batch: int = 4
) -> pd.DataFrame:
    """Fig. B analogue: the converted model's routing per window and layer, in ``units.routing_units`` form
    (label = text type, ``sel_j`` = tokens that selected head j)."""
    with query_norm_routing(model, *hs_k, router, ste=False, record=True) as st:
        for s in range(0, len(ids), batch):
            model(input_ids=ids[s : s + batch].to(model.device))
    rec = {l: {"mask": torch.cat(v)} for l, v in st["masks"].items()}
    return routing_units(rec, labels, hs_k[0]).assign(h_s=hs_k[0])


@torch.no_grad()
def selection_agreement(
    model,
    ids: torch.Tensor,
    hs_k: tuple[int, int],
    calib: Calibration,
    routers: Sequence[str] = ("query_norm", "inverse", "static", "calibrated", "random"),
    batch: int = 4,
) -> pd.DataFrame:
    """On the *unconverted* model's activations, each router's top-K compared per token with the oracle's
    (||z_h W_O^h||) and with the static router's: ``oracle_overlap`` and ``static_overlap`` are the shares
    of the K selected heads that the oracle / the static router also select (chance K/E each), per window
    and layer. Columns: window, layer, router, oracle_overlap, static_overlap, chance."""
    hd = heads.Heads(model)
    h, dh, L = hd.n_heads, hd.d_head, hd.n_layers
    hs, k = hs_k
    grams = {l: _output_gram(hd, l) for l in range(L)}
    gen = torch.Generator().manual_seed(0)
    rows = []
    with heads.projections(hd, ("q",)) as q:
        for s in range(0, len(ids), batch):
            x = ids[s : s + batch].to(model.device)
            with heads.capture(model, z=True) as cache:
                model(input_ids=x)
            B, T = x.shape
            for l in range(L):
                qq, z = q["q", l].view(B, T, h, dh), cache.z[l]

                def top(r, qq=qq, z=z, l=l, B=B, T=T):
                    if r == "random":
                        return topk_mask(torch.rand(B, T, h - hs, generator=gen), k)
                    sc, largest = router_scores(r, qq, z, l, hs, calib, grams[l].to(z.device))
                    return topk_mask(sc, k, largest=largest)

                ora, sta = top("oracle"), top("static")
                for r in routers:
                    m = top(r)
                    o = (m & ora).sum(-1).float().mean(1) / k  # [batch]
                    st_ = (m & sta).sum(-1).float().mean(1) / k
                    rows += [
                        {
                            "window": s + b,
                            "layer": l,
                            "router": r,
                            "oracle_overlap": float(o[b]),
                            "static_overlap": float(st_[b]),
                            "chance": k / (h - hs),
                        }
                        for b in range(B)
                    ]
    return pd.DataFrame(rows)


def tuning_runs(
    model,
    train_ids: torch.Tensor,
    eval_ids: torch.Tensor,
    hs_k: tuple[int, int],
    routers: Sequence[str],
    lrs: Sequence[float],
    steps: int,
    batch: int,
    progress: bool = True,
) -> pd.DataFrame:
    """Straight-through tuning of the converted model per (router, lr), ``router="none"`` the unrouted control:
    evaluation NLL per window at step 0 and at ``steps``. Columns: router, lr, step, tokens, window, nll."""
    from .convert import continue_tune

    rows = []
    for router, lr in progress_bar([(r, lr) for r in routers for lr in lrs], "tuning", progress):
        per_window = {}

        def ev(m, x, _pw=per_window):
            _pw[len(_pw)] = window_nlls(m, x)
            return float(np.mean(_pw[len(_pw) - 1]))

        f = continue_tune(
            model, train_ids, eval_ids, *hs_k, steps, lr=lr, batch=batch, eval_at=[0, steps], router=router, nll=ev
        )
        for j, r in f.reset_index(drop=True).iterrows():
            rows += [
                {"router": router, "lr": lr, "step": int(r.step), "tokens": int(r.tokens), "window": i, "nll": float(v)}
                for i, v in enumerate(per_window[j])
            ]
    return pd.DataFrame(rows)


def table4_summary(w: pd.DataFrame, hf_nll: float | None = None) -> pd.DataFrame:
    """Table 4 data from ``router_windows``: per (budget, router, ablation) the mean NLL over windows and its
    95% interval (deterministic routers: bootstrap over windows; random: t-interval over seeds of the seed's
    mean NLL), as perplexities too. ``hf_nll``: the original model's NLL from its own loss (a cross-check)."""
    from headlab.intervals import bootstrap, seed_interval

    rows = []
    for (b, r, ab), g in w.groupby(["budget", "router", "ablation"], sort=False):
        if r == "random":
            est, lo, hi, n = seed_interval(g.groupby("seed").nll.mean().to_numpy())
            unit = "seeds"
        else:
            est, lo, hi, n = bootstrap(g.nll.to_numpy(), n_boot=1000)
            unit = "windows"
        rows.append({"budget": b, "router": r, "ablation": ab, "nll": est, "lo": lo, "hi": hi, "n": n, "unit": unit})
    t = pd.DataFrame(rows)
    for c in ("nll", "lo", "hi"):
        t[c.replace("nll", "ppl") if c == "nll" else f"ppl_{c}"] = np.exp(t[c])
    t["hf_nll"] = np.where(t.router == "original", hf_nll if hf_nll is not None else np.nan, np.nan)
    return t


def tuning_summary(tr: pd.DataFrame) -> pd.DataFrame:
    """Fig. 2 data from ``tuning_runs``: per (router, lr, step) the mean NLL over windows with a bootstrap
    interval, and perplexity."""
    from headlab.intervals import bootstrap

    rows = []
    for (r, lr, step, tok), g in tr.groupby(["router", "lr", "step", "tokens"], sort=False):
        est, lo, hi, n = bootstrap(g.nll.to_numpy(), n_boot=1000)
        rows.append({"router": r, "lr": lr, "step": step, "tokens": tok, "nll": est, "lo": lo, "hi": hi, "n": n})
    t = pd.DataFrame(rows)
    t["ppl"] = np.exp(t.nll)
    return t

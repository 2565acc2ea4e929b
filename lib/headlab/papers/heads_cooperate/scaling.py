"""The (n0, n1) grid set for the scaling-rule maps, and one trained run analysed end to end."""

from __future__ import annotations

import numpy as np
import torch

from ...nn import HeadlabLM
from .analysis import (
    aggregation,
    checkpoint_heads,
    decompose,
    head_metrics,
    intervene_logits,
    interventions,
    ratio_sweep,
)
from .model import correct, predict
from .task import BOS, EOS, ONE, PAD, TWO, ZERO, Batch, TaskSpec, _tensor
from .training import RunSpec, load_run


# -- a set laid out on the (n0, n1) grid, for the scaling-rule maps ----------------------------------
def count_grid_set(spec: TaskSpec, per_cell: int, seed: int) -> Batch:
    """``per_cell`` strings for every (n0, n1) with 1 <= n0 + n1 <= l_max: that many 0s and 1s, a
    uniform number of 2s that keeps the length within l_max, in a random order."""
    rng = np.random.default_rng(seed)
    rows = []
    for n0 in range(spec.l_max + 1):
        for n1 in range(spec.l_max + 1 - n0):
            if n0 + n1 == 0:
                continue
            for _ in range(per_cell):
                n2 = rng.integers(0, spec.l_max - n0 - n1 + 1)
                x = np.array([ZERO] * n0 + [ONE] * n1 + [TWO] * n2, dtype=np.int64)
                rows.append(rng.permutation(x))
    n, T = len(rows), spec.seq_len
    ids = np.full((n, T), PAD, dtype=np.int64)
    ids[:, 0] = BOS
    L = np.array([len(x) for x in rows])
    for i, x in enumerate(rows):
        ids[i, 1 : len(x) + 1] = x
    if spec.variant != "B":
        ids[np.arange(n), L + 1] = EOS
    pos = L if spec.variant == "B" else L + 1
    n0, n1, n2 = (np.array([(x == v).sum() for x in rows]) for v in (ZERO, ONE, TWO))
    return Batch(_tensor(ids), _tensor(pos), _tensor((n1 > n0).astype(np.int64)), _tensor(n0), _tensor(n1), _tensor(n2))


def rule_map(
    model: HeadlabLM, g: Batch, spec: TaskSpec, edits=(("none", 1, 1), ("scale", 1, 2), ("scale", 2, 1))
) -> list[dict]:
    """Fraction of strings predicted positive in every (n0, n1) cell, for each attention edit."""
    rows = []
    for kind, f0, f1 in edits:
        lab = predict(intervene_logits(model, g, kind, f0, f1), spec)["label"].float()
        key = g.n0 * 1000 + g.n1
        for k in torch.unique(key).tolist():
            m = key == k
            rows.append(
                {
                    "edit": kind if kind != "scale" else f"scale f0={f0:g} f1={f1:g}",
                    "f0": f0,
                    "f1": f1,
                    "n0": k // 1000,
                    "n1": k % 1000,
                    "p_positive": lab[m].mean().item(),
                    "n": int(m.sum()),
                }
            )
    return rows


# -- one trained run, analysed -------------------------------------------------------------------------
COUNTING_AUC = 0.95  # a head "counts" when its AUC is at least this
NONCOUNTING_AUC = 0.9


def analyse(
    res: dict, test: Batch, fit: Batch, grid: Batch | None = None, scales=((1, 2), (2, 1), (1, 3), (3, 1))
) -> dict:
    """Everything the notebook reports for one trained run (pass the test/fit/grid sets of its spec)."""
    spec, run = TaskSpec(**res["spec"]), RunSpec(**res["run"])
    model = load_run(res)
    dec, dec_fit = decompose(model, test, spec), decompose(model, fit, spec)
    tags = {"variant": spec.variant, "H": run.n_heads, "seed": run.seed}
    with torch.no_grad():
        ok = correct(dec.logits, test.y, spec)
    hm = [{**tags, **r} for r in head_metrics(dec, model, test, spec)]
    out = {
        "tags": tags,
        "summary": {
            **tags,
            "acc": ok.float().mean().item(),
            "near_tie_acc": ok[test.near_tie].float().mean().item(),
            "decomp_err": dec.max_err,
            "logit_err": dec.max_logit_err,
            "decomp_err32": decompose(model, test, spec, dtype=torch.float32).max_err,
            **aggregation(dec, model, test, spec, dec_fit, fit),
        },
        "heads": hm,
        "interventions": [{**tags, **r} for r in interventions(model, test, spec, scales)],
        "log": [{**tags, **r} for r in res["log"]],
        "ratio_sweep": [{**tags, **r} for r in ratio_sweep(model, test, spec)],
        "ckpt_heads": [{**tags, **r} for r in checkpoint_heads(res, test)],
    }
    if grid is not None:
        out["rule_map"] = [{**tags, **r} for r in rule_map(model, grid, spec)]
    return out

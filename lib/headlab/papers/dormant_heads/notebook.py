"""Helpers for the notebook: training with checkpoint scoring, curve comparisons, data subsets."""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from ...data import MCItem
from .dynamics import BigramBackcopy, bb_batches, bb_copy_accuracy, model_scores
from .scores import SCORES
from .stats import matched_comparison
from .zeroing import flagged

# --------------------------------------------------------------------------------------------
# helpers for the notebook: training with checkpoint scoring, curve comparisons, data
# --------------------------------------------------------------------------------------------


def train_dynamics(
    task: BigramBackcopy,
    cfg,
    steps: int,
    every: int,
    lr: float,
    batch: int,
    seq: int,
    eval_ids: np.ndarray,
    eval_labels: Sequence[str],
    taus: dict[str, float],
    seed: int = 0,
    model=None,
    trigger_boost: float = 1.0,
    warmup: int = 20,
    min_lr_ratio: float = 0.1,
    desc: str = "BB",
):
    """Train a headlab model on Bigram-Backcopy and score it at checkpoints every ``every`` steps
    (and at step 0) on ``eval_ids``. ``taus``: score name -> fixed threshold (direction from SCORES).

    Returns ``(model, log, states)``: ``log`` one row per (checkpoint, score) with the dormant
    fraction overall and per eval label and the copy accuracy (on the rows of the first label);
    ``states[name]`` a list of ``[input, layer, head]`` bool arrays, one per checkpoint.
    """
    from ...nn import HeadlabLM
    from ...train import TrainConfig, train

    if model is None:
        torch.manual_seed(seed)
        model = HeadlabLM(cfg)
    ids = torch.as_tensor(eval_ids)
    labels = np.asarray(eval_labels)
    names = list(taus)
    log, states = [], {n: [] for n in names}
    first_rows = eval_ids[labels == labels[0]]

    def score(step, m):
        s = model_scores(m, ids, names)
        acc = bb_copy_accuracy(m, task, first_rows)
        for n in names:
            st = flagged(s[n], taus[n], SCORES[n].flag_high)
            states[n].append(st)
            row = {"step": step, "score": n, "dormant_frac": float(st.mean()), "copy_acc": acc}
            for lab in np.unique(labels):
                row[f"dormant_frac_{lab}"] = float(st[labels == lab].mean())
            log.append(row)

    model.eval()
    score(0, model)
    tc = TrainConfig(
        steps=steps,
        lr=lr,
        warmup=warmup,
        min_lr_ratio=min_lr_ratio,
        eval_every=10**9,
        checkpoint_every=every,
        seed=seed,
    )
    train(
        model,
        bb_batches(task, batch, seq, seed=seed, trigger_boost=trigger_boost),
        tc,
        on_checkpoint=score,
        progress=True,
        desc=desc,
    )
    return model, pd.DataFrame(log), states


def dominates(curves: pd.DataFrame, a: str, b: str, grid: Sequence[float], higher_is_better: bool) -> dict:
    """Is score ``a``'s curve better than ``b``'s at every achieved % of ``grid`` both reach?"""
    mc = matched_comparison(curves, a, b, grid)
    if mc.empty:
        return {"holds": False, "n": 0, "min_margin": float("nan"), "mean_margin": float("nan")}
    margin = (mc[a] - mc[b]) * (1 if higher_is_better else -1)
    return {
        "holds": bool((margin > 0).all()),
        "n": len(mc),
        "min_margin": float(margin.min()),
        "mean_margin": float(margin.mean()),
    }


def rel_spread(x: Sequence[float]) -> float:
    """(max - min) / mean: a scale-free spread of thresholds."""
    x = np.asarray(x, float)
    return float((x.max() - x.min()) / abs(x.mean()))


def restrict_models(P, names: Sequence[str]):
    """The profile's parameters for a subset of its models, in the profile's order (per-model score lists
    follow; the next-token-loss sweep keeps its count). For a machine that holds only some of the weights,
    e.g. the lent GPU, which receives SmolLM2 through ``headlab ship`` but not Gemma."""
    from ...profiles import Params, ProfileError

    names = list(names)
    bad = [n for n in names if n not in P.models]
    if not names or bad:
        raise ProfileError(f"models must be a non-empty subset of this profile's {P.models}; got {names}")
    keep = [i for i, n in enumerate(P.models) if n in names]
    return Params(
        {
            **P,
            "models": [P.models[i] for i in keep],
            "mc_scores": [P.mc_scores[i] for i in keep],
            "nll_models": min(P.nll_models, len(keep)),
        }
    )


def mmlu_subset(n_subjects: int | None, per_subject: int, seed: int = 0, max_chars: int | None = None) -> list[MCItem]:
    """A subject-stratified MMLU sample: ``per_subject`` items from each of ``n_subjects`` subjects
    spread evenly over the alphabetical list (all 57 when None). ``max_chars`` keeps only items
    whose prompt plus longest choice is that short (a CPU budget device: it favours short
    questions), and only subjects with enough such items."""
    from ...data import mmlu

    by: dict[str, list[MCItem]] = {}
    for it in mmlu(None, seed=seed):
        if max_chars is None or len(it.prompt) + max(map(len, it.choices)) <= max_chars:
            by.setdefault(it.subject, []).append(it)
    subjects = sorted(s for s, v in by.items() if len(v) >= per_subject)
    if n_subjects and n_subjects < len(subjects):
        subjects = [subjects[int(i)] for i in np.linspace(0, len(subjects) - 1, n_subjects).round()]
    rng = random.Random(seed)
    out = []
    for s in subjects:
        out += rng.sample(by[s], per_subject)
    return out


def text_set(per_type: int, seed: int = 0, min_chars: int = 300) -> list[dict]:
    """``per_type`` paragraphs of every text type of the shipped corpus ({"type", "text"})."""
    from ...data import paragraphs, text_types

    out = []
    for t in text_types():
        out += [{"type": t, "text": p["text"]} for p in paragraphs(t, min_chars=min_chars, n=per_type, seed=seed)]
    return out

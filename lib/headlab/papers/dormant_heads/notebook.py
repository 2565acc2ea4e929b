"""Helpers for the notebook: training with checkpoint scoring, curve comparisons, data subsets; the
notebook's set-up (inputs, tasks, run parameters) and its from-scratch runs."""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from ...data import MCItem
from .dynamics import BigramBackcopy, bb_batches, bb_copy_accuracy, model_scores
from .items import MC_KINDS, generated_mc
from .scores import SCORES
from .stats import matched_comparison
from .tasks import Task
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


# --------------------------------------------------------------------------------------------
# the notebook's set-up: inputs, tasks and the parameters the claims read
# --------------------------------------------------------------------------------------------

CLAIM_PARAMS = ("seed", "tol", "threshold_p", "awft_p", "dyn_steps", "tau_ahon_ln", "tau_awft", "random_seeds")


def build_inputs(P) -> tuple[list[MCItem], list[MCItem], list[dict]]:
    """The inputs every model sees, from the profile's ``mc_per_kind``, ``mc_kinds``, ``mmlu_subjects``,
    ``mmlu_per_subject``, ``mmlu_max_chars``, ``text_per_type``, ``text_min_chars`` and ``seed``: the generated
    multiple-choice items, the stratified MMLU subset and the corpus paragraphs ({"type", "text"})."""
    mc_items = generated_mc(P.mc_per_kind, seed=P.seed, kinds=tuple(P.mc_kinds) if P.mc_kinds else MC_KINDS)
    mmlu_items = mmlu_subset(P.mmlu_subjects, P.mmlu_per_subject, seed=P.seed, max_chars=P.mmlu_max_chars)
    texts = text_set(P.text_per_type, seed=P.seed, min_chars=P.text_min_chars)
    return mc_items, mmlu_items, texts


def tasks_for(
    bos: bool,
    mc_items: list[MCItem],
    mmlu_items: list[MCItem],
    texts: list[dict],
    batch_size: int,
    max_len: int,
    mmlu_evaluator: str = "headlab",
    mmlu_fewshot: int = 0,
) -> dict[str, Task]:
    """One model's three tasks, with ⟨bos⟩ as that model was trained: generated MC and MMLU by summed
    log-likelihood, next-token loss on the paragraphs (cut to ``max_len`` tokens, labelled by text type).
    MMLU goes through headlab's cloze scorer, or with ``mmlu_evaluator="lmeval"`` through lm-evaluation-harness
    in its letter format with ``mmlu_fewshot`` examples per prompt (the paper's protocol: 5-shot)."""
    return {
        "generated_mc": Task("generated_mc", "mc", mc_items, bos=bos, batch_size=batch_size),
        "mmlu": Task(
            "mmlu", "mc", mmlu_items, bos=bos, batch_size=batch_size, evaluator=mmlu_evaluator, fewshot=mmlu_fewshot
        ),
        "text_nll": Task(
            "text_nll",
            "nll",
            [t["text"] for t in texts],
            bos=bos,
            max_len=max_len,
            batch_size=batch_size,
            labels=[t["type"] for t in texts],
        ),
    }


def inputs_summary(mc_items: list[MCItem], mmlu_items: list[MCItem], texts: list[dict], max_tokens: int) -> str:
    """Two lines: the generated set with its first item, then the MMLU subset and the paragraphs."""
    return (
        f"generated MC: {len(mc_items)} items, e.g. {mc_items[0].prompt!r} -> {mc_items[0].choices}\n"
        f"MMLU: {len(mmlu_items)} items from {len({i.subject for i in mmlu_items})} subjects; "
        f"text: {len(texts)} paragraphs of {len({t['type'] for t in texts})} types, <= {max_tokens} tokens"
    )


def run_params(P, keys: Sequence[str] = CLAIM_PARAMS) -> pd.DataFrame:
    """One row: the run parameters the claims need (``claims`` reads the saved CSVs only), and the generated
    set's ``mc_per_kind`` and ``mc_kinds`` (JSON), which regenerate its items and their prompts (``reinterval``)."""
    row = {k: getattr(P, k) for k in keys}
    row.update(mc_per_kind=P.mc_per_kind, mc_kinds=json.dumps(list(P.mc_kinds) if P.mc_kinds else list(MC_KINDS)))
    return pd.DataFrame([row])


# --------------------------------------------------------------------------------------------
# the from-scratch Bigram-Backcopy runs (v1's pretraining dynamics, C7's finetune)
# --------------------------------------------------------------------------------------------


def bb_setup(P):
    """The fixed parts of the from-scratch runs, from the profile's ``bb_*``, ``dyn_*``, ``tau_*``,
    ``trigger_boost`` and ``seed``: ``(task, cfg, eval_ids, eval_labels, taus)``. ``eval_ids`` is
    ``[input, pos]``: ``dyn_eval`` trigger-rich sequences, then as many trigger-free ones (``eval_labels``
    "trigger" / "no_trigger"); ``cfg`` an attention-only headlab model with learned positions and an untied
    unembedding; ``taus`` the fixed thresholds (AHON-LN below, AWFT above)."""
    from ...nn import Config

    bb = BigramBackcopy(P.bb_vocab, P.bb_triggers, seed=P.seed)
    n = P.dyn_eval
    eval_ids = np.concatenate(
        [
            bb.sample(n, P.dyn_seq, seed=10_001, trigger_boost=P.trigger_boost),
            bb.sample(n, P.dyn_seq, seed=10_002, trigger_free=True),
        ]
    )
    eval_labels = ["trigger"] * n + ["no_trigger"] * n
    cfg = Config(
        vocab_size=bb.vocab_size,
        d_model=P.dyn_d_model,
        n_layers=P.dyn_layers,
        n_heads=P.dyn_heads,
        max_seq_len=P.dyn_seq,
        pos_emb="learned",
        attn_only=True,
        tie_embeddings=False,
    )
    taus = {"ahon_ln": P.tau_ahon_ln, "awft": P.tau_awft}
    return bb, cfg, eval_ids, eval_labels, taus


def pretrain_bb(bb: BigramBackcopy, cfg, eval_ids: np.ndarray, eval_labels: Sequence[str], taus: dict, P):
    """The main from-scratch run: ``dyn_steps`` steps (``dyn_lr``, ``dyn_min_lr_ratio``, ``dyn_batch`` x
    ``dyn_seq``), scored every ``dyn_every`` steps; ``train_dynamics``'s ``(model, log, states)``."""
    return train_dynamics(
        bb,
        cfg,
        P.dyn_steps,
        P.dyn_every,
        P.dyn_lr,
        P.dyn_batch,
        P.dyn_seq,
        eval_ids,
        eval_labels,
        taus,
        seed=P.seed,
        min_lr_ratio=P.dyn_min_lr_ratio,
    )


def finetune_and_reseed(bb: BigramBackcopy, cfg, tiny, eval_ids: np.ndarray, eval_labels: Sequence[str], taus, P):
    """C7's pair and reference: ``(finetuned, other)``. The finetuned model continues a copy of ``tiny`` for
    ``ft_steps`` at ``ft_lr`` on data with ``trigger_boost`` x more triggers (seed + 7); ``other`` is the main
    recipe trained again from seed + 1 (None unless ``dyn_second_seed``)."""
    ft, _, _ = train_dynamics(
        bb,
        cfg,
        P.ft_steps,
        P.ft_steps,
        P.ft_lr,
        P.dyn_batch,
        P.dyn_seq,
        eval_ids,
        eval_labels,
        taus,
        seed=P.seed + 7,
        model=copy.deepcopy(tiny),
        trigger_boost=P.trigger_boost,
        desc="finetune",
    )
    other = (
        train_dynamics(
            bb,
            cfg,
            P.dyn_steps,
            P.dyn_steps,
            P.dyn_lr,
            P.dyn_batch,
            P.dyn_seq,
            eval_ids,
            eval_labels,
            taus,
            seed=P.seed + 1,
            min_lr_ratio=P.dyn_min_lr_ratio,
        )[0]
        if P.dyn_second_seed
        else None
    )
    return ft, other


def score_samples(variants: dict, eval_ids: np.ndarray, score: str = "ahon_ln") -> dict[str, np.ndarray]:
    """name -> one score of every (input, layer, head) of ``eval_ids`` (``[input, pos]``), flattened, for each
    model of ``variants`` (name -> model)."""
    ids_t = torch.as_tensor(eval_ids)
    return {k: model_scores(m, ids_t, [score])[score].ravel() for k, m in variants.items()}


def lmeval_crosscheck(LM: dict, BOS: dict, P) -> pd.DataFrame:
    """lm-evaluation-harness against headlab's own scorer on the same ``P.lmeval_check`` MMLU items (one per
    subject, stratified as ``mmlu_subset``), per model: headlab cloze, lm-eval cloze (the same strings: a
    software check), lm-eval letter 0-shot and ``P.lmeval_fewshot``-shot (the paper's format), unablated."""
    from ... import lmeval

    items = mmlu_subset(P.lmeval_check, 1, seed=P.seed, max_chars=P.mmlu_max_chars)
    return lmeval.crosscheck(
        {n: (m, tok, BOS[n]) for n, (m, tok) in LM.items()}, items, batch_size=P.batch_size, fewshot=P.lmeval_fewshot
    )

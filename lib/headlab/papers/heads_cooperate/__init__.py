"""Count01: do attention heads compete or cooperate during counting? (Zsámboki et al., arXiv 2502.06923)

Everything the notebook ``03_heads_cooperate`` computes, as plain functions (no plotting); the notebook's tables
are built by ``task_examples`` (task.py), ``analysis_frames``, ``run_params``, ``heads_by_h`` and ``summary_table``
(tables.py) and ``dynamics_frames``, ``plateau_summary`` and ``counting_heads`` (dynamics.py).

The paper's code is not released and its exact task format could not be read, so the format here is a
**reconstruction** (see ``TaskSpec``): a string of ``0``/``1`` digits with ``2`` as noise; the label is
``#1 > #0`` (ties are negatives). Three formats:

* ``"A"``    ``BOS x1..xn EOS``; at the ``EOS`` position the model must output the token ``1`` (more ones)
             or ``0``; loss only there. Syntax = the argmax over the whole vocabulary is ``0`` or ``1``.
* ``"A_LM"`` as A, plus a next-token loss on every digit position (weight ``lm_weight``).
* ``"B"``    end-of-sentence membership: a plain language model over the sentences of
             ``L = {w : #1(w) > #0(w)}``. A sentence is generated digit by digit; whenever the prefix is in
             ``L`` it ends (``EOS``) with probability ``end_prob``. The decision at a prefix is whether the
             model's argmax is ``EOS``: correct iff it is ``EOS`` exactly when ``#1 > #0`` (and a digit
             otherwise). Ending the sentence correctly *is* the syntax here.

The model is a one-layer attention-only :class:`headlab.nn.HeadlabLM` without positions (NoPE) and
without a final norm, so the logits at the decision position are exactly
``W_U (r + sum_h o_h)`` with ``r`` the token embedding and ``o_h = W_O[:, h] z_h`` head h's output.
"""

from __future__ import annotations

from .analysis import (
    INERT_FRAC,
    RATIO_F,
    RATIO_F2,
    Decomp,
    aggregation,
    best_threshold_acc,
    checkpoint_heads,
    decompose,
    edit_row,
    head_metrics,
    inert_mask,
    intervene_logits,
    interventions,
    logreg_acc,
    ratio_sweep,
    roc_auc,
)
from .dynamics import (
    counting_heads,
    dynamics_frames,
    dynamics_row,
    plateau_steps,
    plateau_summary,
    prior_entropy,
    steps_to_solve,
)
from .model import INITS, correct, decision_direction, decision_logits, loss, make_model, predict
from .runs import eval_sets, grid_jobs, train_many
from .scaling import COUNTING_AUC, NONCOUNTING_AUC, analyse, count_grid_set, rule_map
from .tables import FRAMES, analysis_frames, counting_class, heads_by_h, run_params, summary_table
from .task import (
    BOS,
    EOS,
    ONE,
    PAD,
    TOKEN_NAMES,
    TWO,
    VARIANTS,
    VOCAB,
    ZERO,
    Batch,
    TaskSpec,
    describe,
    next_token_dist_B,
    sample_sentences_B,
    sample_strings,
    task_examples,
    test_set,
    train_batch,
)
from .training import RunSpec, evaluate, load_run, load_weights, save_weights, train_run

__all__ = [
    "BOS",
    "Batch",
    "COUNTING_AUC",
    "Decomp",
    "EOS",
    "FRAMES",
    "INERT_FRAC",
    "INITS",
    "NONCOUNTING_AUC",
    "ONE",
    "PAD",
    "RATIO_F",
    "RATIO_F2",
    "RunSpec",
    "TOKEN_NAMES",
    "TWO",
    "TaskSpec",
    "VARIANTS",
    "VOCAB",
    "ZERO",
    "aggregation",
    "analyse",
    "analysis_frames",
    "best_threshold_acc",
    "checkpoint_heads",
    "correct",
    "count_grid_set",
    "counting_class",
    "counting_heads",
    "decision_direction",
    "decision_logits",
    "decompose",
    "describe",
    "dynamics_frames",
    "dynamics_row",
    "edit_row",
    "eval_sets",
    "evaluate",
    "grid_jobs",
    "head_metrics",
    "heads_by_h",
    "inert_mask",
    "intervene_logits",
    "interventions",
    "load_run",
    "load_weights",
    "logreg_acc",
    "loss",
    "make_model",
    "next_token_dist_B",
    "plateau_steps",
    "plateau_summary",
    "predict",
    "prior_entropy",
    "ratio_sweep",
    "roc_auc",
    "rule_map",
    "run_params",
    "sample_sentences_B",
    "sample_strings",
    "save_weights",
    "steps_to_solve",
    "summary_table",
    "task_examples",
    "test_set",
    "train_batch",
    "train_many",
    "train_run",
]

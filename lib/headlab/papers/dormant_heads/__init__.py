"""Dormant / inactive attention heads (Sandoval-Segura et al. 2025, arXiv 2504.03889).

A head is *dormant* (v1) or *inactive* (v2+) on an input when a per-input score says it barely
contributes; the paper zeroes such heads **per input, inside the forward pass that computes the
score** (cascading through the layers) and plots accuracy against the *achieved* % of
(input, layer, head) triples zeroed.

Pieces, in the order a notebook uses them:

* ``SCORES``: the score functions of the ICLR version (AHON, AHON-LN = v1's HONOR, AWFT, AWFT-LN,
  entropy, value-vector norms, last-token output norms, the post-W_O variant, random), each a
  function ``HeadView -> [batch, head]`` computed from the same forward's ``z``, ``pattern`` and
  ``v``, padding excluded through ``view.valid``.
* ``Task``: multiple choice (``headlab.eval.multiple_choice``) or next-token loss on texts.
* ``calibrate``: one unablated pass that records every score of every (input, layer, head) and
  the baseline metric; ``thresholds`` turns the pooled scores into per-quantile thresholds
  (upper tail for the "flag if high" rules such as AWFT).
* ``ablate``/``sweep``: one pass per (score, quantile) with ``heads.zero_where``; returns the
  achieved %, the metric and the per-item results.
* statistics: ``largest_within`` (last crossing of baseline - tol, linear interpolation, 0 when
  the curve never crosses), ``normalised_auc``, bootstrap CIs, ranks, Spearman/IoU across models,
  selection overlap, Wasserstein distances between score distributions.
* data: ``generated_mc`` (deterministic multiple-choice items a 135M model answers well above
  chance) and ``BigramBackcopy`` (the toy task of Guo et al. 2024 for the pretraining dynamics).
* the notebook's sections as calls: ``build_inputs``/``tasks_for``, ``calibrate_all``, ``sweep_plan``/
  ``run_sweeps``, the from-scratch runs (``bb_setup``, ``pretrain_bb``, ``finetune_and_reseed``), and the
  tidy tables each section saves or prints (``tables``: ``table2_summary``, ``threshold_table``, ...).
"""

from __future__ import annotations

from .dynamics import BigramBackcopy, bb_batches, bb_copy_accuracy, final_level, flip_rate, model_scores, plateau_step
from .items import CLOZE, DAYS, EXTRA_KINDS, MC_KINDS, MONTHS, WORDS, generated_mc
from .notebook import (
    CLAIM_PARAMS,
    bb_setup,
    build_inputs,
    dominates,
    finetune_and_reseed,
    inputs_summary,
    lmeval_crosscheck,
    mmlu_subset,
    pretrain_bb,
    restrict_models,
    run_params,
    score_samples,
    tasks_for,
    text_set,
    train_dynamics,
)
from .rules import rel_spread
from .scores import (
    EPS,
    PAPER_SCORES,
    SCORES,
    Score,
    ahon,
    ahon_ln,
    ahon_wo,
    ahon_wo_ln,
    avvn,
    avvn_ln,
    awft,
    awft_ln,
    check_scores,
    entropy,
    entropy_ln,
    ftvvn,
    ftvvn_ln,
    lthon,
    lthon_hn,
    lthon_ln,
)
from .speed import overhead
from .stats import (
    bootstrap_within,
    curve_stats,
    dormant_fraction_by,
    interpolate_at,
    largest_within,
    matched_comparison,
    normalised_auc,
    permutation_test,
    rank_scores,
    selection_overlap,
    spearman_matrix,
    stays_within,
    topk_iou_matrix,
    wasserstein,
)
from .tables import (
    achieved_table,
    calibration_table,
    cdf_frame,
    flip_frame,
    overlap_summary,
    overlap_table,
    pairwise_wasserstein,
    point_intervals,
    table2_summary,
    text_type_table,
    threshold_boot_combos,
    threshold_table,
    within_tol_intervals,
    zero_freq_frame,
)
from .tasks import Task, mc_accuracy, mc_logprobs, metric_from_items
from .units import CLAIM_SCORES, dynamics_per_input, per_item_frame, threshold_bootstrap
from .zeroing import (
    Calibration,
    Selector,
    ablate,
    calibrate,
    calibrate_all,
    calibration_score_names,
    flagged,
    needs_of,
    record_scores,
    run_sweeps,
    sweep,
    sweep_plan,
    threshold,
    thresholds,
)

__all__ = [
    "BigramBackcopy",
    "CLAIM_PARAMS",
    "CLAIM_SCORES",
    "CLOZE",
    "Calibration",
    "DAYS",
    "EPS",
    "EXTRA_KINDS",
    "MC_KINDS",
    "MONTHS",
    "PAPER_SCORES",
    "SCORES",
    "Score",
    "Selector",
    "Task",
    "WORDS",
    "ablate",
    "achieved_table",
    "ahon",
    "ahon_ln",
    "ahon_wo",
    "ahon_wo_ln",
    "avvn",
    "avvn_ln",
    "awft",
    "awft_ln",
    "bb_batches",
    "bb_copy_accuracy",
    "bb_setup",
    "bootstrap_within",
    "build_inputs",
    "calibrate",
    "calibrate_all",
    "calibration_score_names",
    "calibration_table",
    "cdf_frame",
    "check_scores",
    "curve_stats",
    "dominates",
    "dormant_fraction_by",
    "dynamics_per_input",
    "entropy",
    "entropy_ln",
    "final_level",
    "finetune_and_reseed",
    "flagged",
    "flip_frame",
    "flip_rate",
    "ftvvn",
    "ftvvn_ln",
    "generated_mc",
    "inputs_summary",
    "interpolate_at",
    "largest_within",
    "lthon",
    "lthon_hn",
    "lthon_ln",
    "matched_comparison",
    "mc_accuracy",
    "mc_logprobs",
    "metric_from_items",
    "lmeval_crosscheck",
    "mmlu_subset",
    "model_scores",
    "needs_of",
    "normalised_auc",
    "overhead",
    "overlap_summary",
    "overlap_table",
    "pairwise_wasserstein",
    "per_item_frame",
    "permutation_test",
    "plateau_step",
    "pretrain_bb",
    "rank_scores",
    "record_scores",
    "rel_spread",
    "restrict_models",
    "run_params",
    "run_sweeps",
    "score_samples",
    "selection_overlap",
    "spearman_matrix",
    "stays_within",
    "sweep",
    "sweep_plan",
    "table2_summary",
    "tasks_for",
    "text_set",
    "text_type_table",
    "threshold",
    "threshold_boot_combos",
    "threshold_bootstrap",
    "threshold_table",
    "thresholds",
    "topk_iou_matrix",
    "train_dynamics",
    "wasserstein",
    "point_intervals",
    "within_tol_intervals",
    "zero_freq_frame",
]

"""DHA: decoupled-head attention learned from an MHA checkpoint by adaptive head fusion
(Chen et al., NeurIPS 2024, arXiv 2406.06567).

The paper's body was only partly readable; what is marked [R] below is a documented
reconstruction, not the paper's equations.

A *source* is a headlab model (MHA, or GQA such as SmolLM2 converted with ``from_hf_llama``).
Each layer has ``n`` source K heads and ``n`` source V heads (``n = n_kv_heads``); query head
``h`` reads source head ``src_map[h]``. A *grouping* is, per layer, a partition of the source
heads (``[[0, 3], [1], [2, 4, 5], ...]``), chosen separately for K and for V. Collapsing a
grouping gives one K (V) head per group and the per-layer maps
``k_map[h] = group_of[src_k_map[h]]`` that ``headlab.nn.Config(layer_heads=...)`` runs.

Pieces, in the order a notebook uses them:

* data and evaluation: ``byte_splits`` (every text type has its own 5 % validation tail),
  ``fixed_batches``, ``lm_eval`` (loss and next-token accuracy), ``pretrain_source``.
* search: ``head_activations`` (q/k/v projection outputs per head, before RoPE),
  ``cka_matrix`` / ``head_cka`` (linear CKA with centred columns, K and V separately),
  ``agglomerate`` (average-linkage merges inside one layer), ``global_agglomerate``
  (DHA-lite: the globally most similar pair of groups in any layer is merged until the budget
  is met, so the per-layer counts come out non-uniform), ``uniform_groups``,
  ``contiguous_groups`` (GQA), ``tied_uniform_groups`` (GQA with CKA grouping, Table A7) and
  ``probe_allocation`` (the loss-driven search used by full DHA [R]: forward-only probes
  measure the loss of pooling one layer's K or V heads to every count, and a greedy
  marginal-gain rule spends the budget where it buys most loss).
* fusion [R]: ``attach_fusion`` puts a learnable operator ``omega`` (``n x n``, masked to
  within-group entries, identity at initialisation) on every layer's ``k_proj`` and
  ``v_proj`` as a ``torch.nn.utils.parametrize`` parametrization, so that the fused head is
  ``W_i' = sum_j omega[i, j] W_j``; ``fusion_loss`` is the normalised squared distance of the
  fused heads to their group mean; ``run_fusion`` trains LM loss + ramped lambda * fusion loss
  (omega in its own AdamW group: larger lr, no weight decay).
* ``collapse``: one head per group (coefficient-weighted sum of the members; the mean by
  default), optional per-member scales folded into W_Q rows (K) or W_O columns (V); exact when
  the members are identical.
* ``rank1_fusion``: a training-free, layer-local fusion (best rank-1 fit of a group's
  activations; coefficients and scales from the top singular vector). Used on SmolLM2.
* arms: ``Arm`` + ``run_arm`` (search, fusion, collapse, continued pre-training, with every
  search and fusion token charged to the arm's budget) and ``acceleration``.
* exact checks: ``kv_cache_bytes``, ``max_logit_diff``, ``rope_commutation``, ``decode``
  (incremental decoding with a cache of the unique K/V heads: real cache bytes and tokens/s).
* ``from_hf_llama``: a llama checkpoint (SmolLM2, Sheared-LLaMA) as a headlab model.
* the notebook's steps: ``analysis_model`` (hf.py); ``contexts``, ``source_allocations``,
  ``lm_allocations`` (search.py); ``budget_checks``, ``exact_checks``, ``decode_table`` (C1-C4 and
  decoding, checks.py); ``pull_to_mean_sweep``, ``redundancy_table`` (Fig. 3, cka.py); ``arm_plan``,
  ``arms_frame`` (arms.py); ``table1``, ``gap_lines``, ``table2``, ``head_counts`` (tables.py).
"""

from __future__ import annotations

from .arms import (
    ARM_COLUMNS,
    Arm,
    Context,
    acceleration,
    arm_groups,
    arm_plan,
    arms_frame,
    gap_closure,
    init_only_arms,
    run_arm,
    tokens_to_reach,
)
from .checks import (
    budget_checks,
    budget_checks_ok,
    decode,
    decode_models,
    decode_table,
    exact_checks,
    kv_cache_bytes,
    max_logit_diff,
    rope_commutation,
)
from .cka import (
    cka_matrix,
    cross_layer_cka,
    extreme_groups,
    fusability_matrix,
    head_activations,
    head_cka,
    head_similarity,
    interpolate_to_mean,
    linear_cka,
    pull_to_mean_sweep,
    redundancy,
    redundancy_spread,
    redundancy_table,
)
from .data import byte_splits, fixed_batches, lm_eval, pretrain_source
from .fusion import (
    HeadFusion,
    SearchOverBudget,
    attach_fusion,
    fusion_loss,
    fusion_modules,
    joint_allocation,
    probe_allocation,
    run_fusion,
    search_forwards,
    set_members_identical,
)
from .grouping import (
    Grouping,
    agglomerate,
    budget_total,
    canonical,
    contiguous_groups,
    counts,
    global_agglomerate,
    group_index,
    hierarchy,
    identity_groups,
    layer_heads_of,
    n_source,
    src_maps,
    tied_uniform_groups,
    uniform_groups,
)
from .hf import analysis_model, describe_analysis_model, from_hf_llama, tokenize_texts
from .merge import build, collapse, expand, rank1_fusion
from .search import SOURCE_ALLOCS, allocation_lines, contexts, lm_allocations, source_allocations
from .tables import TABLE2_COLUMNS, gap_lines, head_counts, run_params, table1, table2

__all__ = [
    "ARM_COLUMNS",
    "Arm",
    "Context",
    "Grouping",
    "HeadFusion",
    "SOURCE_ALLOCS",
    "TABLE2_COLUMNS",
    "acceleration",
    "agglomerate",
    "allocation_lines",
    "analysis_model",
    "arm_groups",
    "arm_plan",
    "arms_frame",
    "attach_fusion",
    "budget_checks",
    "budget_checks_ok",
    "budget_total",
    "build",
    "byte_splits",
    "canonical",
    "cka_matrix",
    "collapse",
    "contexts",
    "contiguous_groups",
    "counts",
    "cross_layer_cka",
    "decode",
    "decode_models",
    "decode_table",
    "describe_analysis_model",
    "exact_checks",
    "expand",
    "extreme_groups",
    "fixed_batches",
    "from_hf_llama",
    "fusion_loss",
    "fusion_modules",
    "gap_closure",
    "gap_lines",
    "global_agglomerate",
    "group_index",
    "head_activations",
    "head_cka",
    "head_counts",
    "hierarchy",
    "identity_groups",
    "init_only_arms",
    "interpolate_to_mean",
    "kv_cache_bytes",
    "layer_heads_of",
    "linear_cka",
    "lm_allocations",
    "lm_eval",
    "max_logit_diff",
    "n_source",
    "pretrain_source",
    "probe_allocation",
    "search_forwards",
    "SearchOverBudget",
    "joint_allocation",
    "fusability_matrix",
    "head_similarity",
    "pull_to_mean_sweep",
    "rank1_fusion",
    "redundancy",
    "redundancy_spread",
    "redundancy_table",
    "rope_commutation",
    "run_arm",
    "run_fusion",
    "run_params",
    "set_members_identical",
    "source_allocations",
    "src_maps",
    "table1",
    "table2",
    "tied_uniform_groups",
    "tokenize_texts",
    "tokens_to_reach",
    "uniform_groups",
]

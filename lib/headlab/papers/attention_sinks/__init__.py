"""Attention sinks as a brake on over-mixing: Barbero et al., "Why do LLMs attend to the first token?"
(COLM 2025, arXiv 2504.02732). The science behind ``notebooks/04_attention_sinks.ipynb``.

Plain functions, no plotting:

* **sink metric** (Gu et al.'s definition, reused by the paper): for every prompt, layer and query
  head, the mean attention that all ``T`` query rows put on position 0 (row 0 included, so a head
  with uniform causal attention scores ``H_T / T``); a head is a sink head when that mean exceeds
  ``eps``; the metric is the share of (prompt, layer, head) triples that are sink heads.
  ⟨bos⟩ is always an explicit argument: ``prompt_ids(..., bos=True|False)``.
* **perturbation spread**: change one word, measure ``||h - h'|| / ||h||`` of every later token's
  residual stream after every layer, with and without ⟨bos⟩.
* **mixing simulation** (Fig. 1): a toy causal mixer ``x <- rms(x + A_s (x W))`` in which a share
  ``s`` of every row's attention parks on a first token whose value is zero.
* **value norms / apostrophe head** (Fig. 4).
* **pretraining** of small headlab models with ⟨bos⟩ / packing / intra-document-masking variants, and the
  go/no-go ``pilot`` on the big corpus (``python -m headlab.papers.attention_sinks.pilot``).

The notebook's steps: ``experiments`` (the pretrained-model figures and tables, one function per step) and
``sweeps`` (the pretraining runs at a profile and where their results come from).
"""

from __future__ import annotations

from .claims_pretraining import PILOT_DIR
from .experiments import (
    PUBLISHED_T1,
    attention_maps,
    downstream_proxy,
    fig4_report,
    fig4_tables,
    model_sink_scores,
    pair_ratio_report,
    per_prompt_sink_rates,
    perturbation_frames,
    perturbation_pairs,
    perturbation_report,
    prompt_report,
    run_params,
    sink_metric_table,
    table3_report,
    trained_with_bos,
)
from .patterns import (
    APOSTROPHES,
    attention_patterns,
    chance_score,
    exclude_first_row,
    first_position_scores,
    paired_prompt_ids,
    prompt_ids,
    row_entropy,
    sink_metrics,
    sink_profile,
    sink_rate,
    sink_rate_per_layer,
    sink_scores,
)
from .probes import (
    EDIT_PAIRS,
    FILLER,
    apostrophe_head_search,
    apostrophe_positions,
    apostrophe_texts,
    bos_value_norm_table,
    layer_states,
    mix,
    mixing_simulation,
    paired_nll,
    passkey_accuracy,
    passkey_prompts,
    perturbation_spread,
    sink_attention,
    value_norms,
)
from .sweeps import (
    committed_gpu_csv,
    ctx_sweep,
    earlier_split,
    pretrain_corpus,
    pretrain_spec,
    pretraining_curves,
    pretraining_sources,
    sweep_report,
    table2_report,
    variant_runs,
)
from .training import (
    GLOBAL_DOC,
    VARIANTS,
    PackedWindows,
    PretrainSpec,
    SinkAttention,
    Variant,
    build_model,
    doc_mask,
    doc_start_windows,
    evaluate_first_position,
    pretrain,
    spearman,
    variant_table,
)

__all__ = [
    "PILOT_DIR",
    "EDIT_PAIRS",
    "APOSTROPHES",
    "FILLER",
    "GLOBAL_DOC",
    "PackedWindows",
    "PretrainSpec",
    "SinkAttention",
    "VARIANTS",
    "Variant",
    "apostrophe_head_search",
    "apostrophe_positions",
    "apostrophe_texts",
    "attention_patterns",
    "bos_value_norm_table",
    "build_model",
    "chance_score",
    "doc_mask",
    "doc_start_windows",
    "evaluate_first_position",
    "exclude_first_row",
    "first_position_scores",
    "layer_states",
    "mix",
    "mixing_simulation",
    "paired_nll",
    "paired_prompt_ids",
    "passkey_accuracy",
    "passkey_prompts",
    "perturbation_spread",
    "pretrain",
    "prompt_ids",
    "row_entropy",
    "sink_attention",
    "sink_metrics",
    "sink_profile",
    "sink_rate",
    "sink_rate_per_layer",
    "sink_scores",
    "spearman",
    "value_norms",
    "variant_table",
    "PUBLISHED_T1",
    "attention_maps",
    "downstream_proxy",
    "fig4_report",
    "fig4_tables",
    "model_sink_scores",
    "pair_ratio_report",
    "per_prompt_sink_rates",
    "perturbation_frames",
    "perturbation_pairs",
    "perturbation_report",
    "prompt_report",
    "run_params",
    "sink_metric_table",
    "table3_report",
    "trained_with_bos",
    "committed_gpu_csv",
    "ctx_sweep",
    "pretrain_corpus",
    "earlier_split",
    "pretrain_spec",
    "pretraining_curves",
    "pretraining_sources",
    "sweep_report",
    "table2_report",
    "variant_runs",
]

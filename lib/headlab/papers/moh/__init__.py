"""MoH: multi-head attention as mixture-of-head attention (Jin, Zhu, Yuan, Yan; ICML 2025).

MHA's output is a sum over heads, ``sum_i H^i W_O^i``. MoH weights that sum per token with a router,
``sum_i g_i H^i W_O^i``: ``h_s`` *shared* heads are always on, and each token picks ``K`` of the
``E = h - h_s`` *routed* heads. Everything the notebook needs lives here as plain functions:

* ``MoHSpec`` + ``MoHAttention``: one attention module usable as ``attention_cls`` of
  ``headlab.nn.HeadlabLM`` (and of ``TinyViT``), with the routers

  - ``two_stage``  learned linear routers on the layer input: softmax over the shared heads, softmax over
    the routed heads kept for the top-K, and a learned 2-way balance between the groups (default);
  - ``no_two_stage``  the same without the learned balance; ``no_shared``  every head routed;
  - ``query_norm`` / ``query_norm_inverse``  parameter-free router for converting a pretrained model:
    score = L2 norm of each routed head's query, binary gates (straight-through gradient in training);
    the inverse picks the *lowest* norms (a control);
  - ``random``  K routed heads drawn uniformly per token (binary gates); ``dense``  every head on, gate 1
    (exactly MHA).

  ``gate="code"`` (default) follows the released code: renormalise the routed gate over the selected K
  and multiply by K, shared softmax times h_s, balance softmax times 2, so every gate is 1 when the
  routers are uniform. ``gate="paper"`` is the paper's Eq. 5 (no renormalisation, no factors).
* Two execution modes that agree numerically: ``masked`` (compute every head, multiply by its gate: the
  released code) and ``skip`` (compute queries and attention only for the (token, head) pairs that
  are on; K and V are computed for every head because any later query may select a head).
* The load-balance loss ``sum_i P_i f_i`` (``balance="paper"``) or ``(h-h_s)`` times it
  (``balance="code"``, the released code's scale, equal to K at perfect balance); each module keeps
  its own value of the latest forward in ``aux_loss`` (no global list), ``balance_loss(model)``
  averages it over MoH layers.
* Instrumentation: routing records per forward, head load per class/domain with a chi-square and a
  label-permutation test, routing-score tables, the activated-heads fraction of a config (the paper's
  released configs included), analytic FLOPs under perfect skipping, head-redundancy metrics (Table B).
* Experiments: a tiny ViT on scikit-learn's digits, a byte-level LM on the shipped multi-domain
  corpus, a SmolLM2 conversion with the query-norm router by hooks, and an attention speed benchmark.
* The notebook's analyses of the trained models (``analysis``: Fig. 3's loads, Table B) and the per-unit CSVs
  behind its claims table (``claims_data``).
"""

from __future__ import annotations

from .analysis import last_layer_dependence, last_layer_loads, redundancy_table
from .checks import (
    RELEASED_CONFIGS,
    activated_fraction,
    activation_counts,
    balanced_example,
    gate_sum_errors,
    layer_flops,
    model_activated_fraction,
    structural_checks,
)
from .claims_data import claims_units
from .convert import (
    CONVERSION_ROUTERS,
    Calibration,
    calibrate,
    continue_tune,
    conversion_table,
    eval_and_tune_windows,
    eval_texts,
    query_norm_routing,
    released_routing,
    tuning_curve,
    window_nll,
)
from .flex_bench import flex_benchmark
from .instrument import (
    collect_routing,
    head_load,
    head_redundancy,
    load_dependence,
    model_redundancy,
    score_spread,
    score_table,
)
from .layer import (
    EPS,
    LEARNED,
    ROUTERS,
    MoHAttention,
    MoHSpec,
    Routing,
    balance_loss,
    balance_value,
    moh,
    moh_layers,
    routing_records,
    set_mode,
    topk_mask,
)
from .lm import (
    DomainData,
    build_lm,
    domain_data,
    domain_losses,
    lm_config,
    lm_routing,
    lm_summary,
    lm_variants,
    run_lm,
    train_lm,
)
from .routers import (
    head_loads,
    layer_damage,
    router_windows,
    selection_agreement,
    smollm_windows,
    table4_summary,
    tuning_runs,
    tuning_summary,
)
from .rules_routers import layer_damage_summary, loads_table, mechanism_evidence, mechanism_sentence
from .speed import speed_benchmark, speed_report, speed_table
from .units import conversion_windows, redundancy_units, routing_units, vit_correct, window_losses, window_nlls
from .vit import VIT_VARIANTS, TinyViT, digits, run_vit, train_vit, vit_summary

__all__ = [
    "DomainData",
    "EPS",
    "LEARNED",
    "MoHAttention",
    "MoHSpec",
    "RELEASED_CONFIGS",
    "ROUTERS",
    "Routing",
    "TinyViT",
    "VIT_VARIANTS",
    "activated_fraction",
    "activation_counts",
    "balance_loss",
    "balance_value",
    "balanced_example",
    "build_lm",
    "claims_units",
    "collect_routing",
    "continue_tune",
    "conversion_table",
    "conversion_windows",
    "digits",
    "domain_data",
    "domain_losses",
    "eval_and_tune_windows",
    "eval_texts",
    "gate_sum_errors",
    "head_load",
    "head_redundancy",
    "last_layer_dependence",
    "last_layer_loads",
    "layer_flops",
    "lm_config",
    "lm_routing",
    "lm_summary",
    "lm_variants",
    "load_dependence",
    "model_activated_fraction",
    "model_redundancy",
    "moh",
    "moh_layers",
    "query_norm_routing",
    "CONVERSION_ROUTERS",
    "Calibration",
    "calibrate",
    "head_loads",
    "layer_damage",
    "router_windows",
    "selection_agreement",
    "table4_summary",
    "tuning_runs",
    "tuning_summary",
    "flex_benchmark",
    "smollm_windows",
    "layer_damage_summary",
    "loads_table",
    "mechanism_evidence",
    "mechanism_sentence",
    "redundancy_table",
    "redundancy_units",
    "released_routing",
    "routing_records",
    "routing_units",
    "run_lm",
    "run_vit",
    "score_spread",
    "score_table",
    "set_mode",
    "speed_benchmark",
    "speed_report",
    "speed_table",
    "structural_checks",
    "topk_mask",
    "train_lm",
    "train_vit",
    "tuning_curve",
    "vit_correct",
    "vit_summary",
    "window_losses",
    "window_nll",
    "window_nlls",
]

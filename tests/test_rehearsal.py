"""The paper profile rehearsed offline: tiny random twins of every hub model a profile names, loaded through
the same ``models.load`` and run through every notebook with papermill (``headlab run --profile paper
--rehearse``)."""

import json
import os
import re
import subprocess
import sys

import pytest
import torch

from headlab import heads, models, rehearsal
from headlab.paths import CACHE_DIR, NOTEBOOKS_DIR
from headlab.profiles import NOTEBOOKS

ROOT = NOTEBOOKS_DIR.parent


def _hub_ids(value) -> set[str]:
    """Every 'org/name' string anywhere in a parameter value (lists, nested lists, dicts)."""
    if isinstance(value, str):  # "org/name" (not a path, not a budget such as "7/9")
        return {value} if re.fullmatch(r"[A-Za-z][\w.-]*/[A-Za-z][\w.-]*", value) else set()
    if isinstance(value, dict):
        return set().union(*(_hub_ids(v) for v in value.values())) if value else set()
    if isinstance(value, list | tuple):
        return set().union(*(_hub_ids(v) for v in value)) if value else set()
    return set()


def test_every_hub_model_a_profile_names_has_a_rehearsal_twin():
    named = set().union(*(_hub_ids(nb.params[p]) for nb in NOTEBOOKS.values() for p in ("gpu", "paper")))
    assert named, "the paper profiles name no hub model: the scan is broken"
    assert named <= set(rehearsal.known()), f"no rehearsal config for {sorted(named - set(rehearsal.known()))}"


@pytest.mark.parametrize(
    "hub_id,n_heads,n_kv,model_type",
    [
        ("meta-llama/Llama-3.1-8B", 32, 8, "llama"),
        ("Qwen/Qwen2.5-3B", 16, 2, "qwen2"),
        ("allenai/OLMo-2-1124-7B-Instruct", 32, 32, "olmo2"),
        ("google/gemma-7b", 16, 16, "gemma"),
        ("google/gemma-3-270m", 4, 1, "gemma3_text"),
    ],
)
def test_twin_keeps_the_head_layout_and_bos(monkeypatch, hub_id, n_heads, n_kv, model_type):
    if not (models.cache_path("smollm2-135m") / "headlab.json").exists():
        pytest.skip("offline model cache not built (make models)")
    monkeypatch.setenv(rehearsal.ENV, "1")
    model, tok = models.load(hub_id)
    h = heads.Heads(model)
    assert (model.config.model_type, h.n_layers, h.n_heads, h.n_kv_heads) == (
        model_type,
        rehearsal.LAYERS,
        n_heads,
        n_kv,
    )
    assert h.kv_map(0).tolist() == [q * n_kv // n_heads for q in range(n_heads)]  # GQA: query head -> its KV head
    assert models.bos_for(hub_id, tok) is rehearsal.bos_in_training(hub_id)
    ids = torch.tensor([models.encode(tok, "A short test sentence.", models.bos_for(hub_id, tok))])
    with heads.capture(model) as cap:
        model(ids)
    assert cap.stack("z").shape[-2:] == (n_heads, rehearsal.HEAD_DIM)
    meta = json.loads((rehearsal.folder(hub_id) / "headlab.json").read_text())
    assert meta["rehearsal_of"] == hub_id


def test_gemma3_twin_keeps_a_global_layer_after_local_ones():
    cfg = json.loads((models.build_cache("gemma3-270m") / "config.json").read_text())
    tiny = rehearsal.tiny_config(cfg, 100)
    assert tiny["layer_types"] == ["sliding_attention"] * (rehearsal.LAYERS - 1) + ["full_attention"]
    assert (tiny["num_attention_heads"], tiny["num_key_value_heads"]) == (4, 1)


def test_a_hub_id_without_a_twin_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(rehearsal.ENV, "1")
    with pytest.raises(KeyError, match="no rehearsal config for hub model 'org/unknown'"):
        rehearsal.tiny_model("org/unknown")


def test_outside_a_rehearsal_a_hub_id_offline_fails_with_a_clear_message(monkeypatch):
    monkeypatch.delenv(rehearsal.ENV, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(models.OfflineError, match="profile 'paper' needs internet"):
        models.load("meta-llama/Llama-3.1-8B")


@pytest.mark.parametrize("notebook", sorted(n for n in NOTEBOOKS if (NOTEBOOKS_DIR / f"{n}.ipynb").exists()))
def test_paper_profile_rehearsal_runs_every_notebook(notebook):
    """``headlab run --profile paper --rehearse NB`` executes the notebook end to end with papermill on the
    CPU (hub ids -> tiny twins, lm-eval tasks, figures, claims), writing under .cache/rehearse only; notebook
    03 with ``--executor submitit-local`` (its training grid as submitit jobs)."""
    if not (models.cache_path("smollm2-135m") / "headlab.json").exists():
        pytest.skip("offline model cache not built (make models)")
    env = {k: v for k, v in os.environ.items() if k not in (rehearsal.ENV, "HEADLAB_FIGURES", "HEADLAB_EXECUTOR")}
    # Count01's grid (notebook 03) goes through submitit's local processes, as on a cluster without SLURM
    extra = ["--executor", "submitit-local"] if notebook == "03_heads_cooperate" else []
    r = subprocess.run(
        [sys.executable, "-m", "headlab", "run", "--profile", "paper", "--rehearse", *extra, notebook],
        cwd=ROOT,
        env={**env, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "1 ok, 0 failed (profile=paper, CPU rehearsal)" in r.stdout
    paper = NOTEBOOKS[notebook].paper
    out = CACHE_DIR / "rehearse" / "figures" / paper
    assert any(out.rglob(f"{notebook}.ipynb")), f"no executed notebook under {out}"

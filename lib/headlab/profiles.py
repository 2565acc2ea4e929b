"""The three profiles and every notebook's parameters under each: the one place they live.

* ``smoke``  CPU, offline, deterministic, a few minutes per notebook (the stored default; CI, nbval)
* ``gpu``    one H100-class GPU, still offline: longer training, bigger evaluations
* ``paper``  the paper's own models and data from the Hugging Face hub (needs internet)

A notebook's ``parameters`` cell holds ``profile = "smoke"`` and a few knobs; its next cell calls
``P = resolve("<notebook>", profile, **knobs)``, which validates everything *before* any compute.
"""
from __future__ import annotations

from dataclasses import dataclass, field

PROFILES = ("smoke", "gpu", "paper")


class ProfileError(ValueError):
    pass


@dataclass(frozen=True)
class Notebook:
    name: str  # file stem in notebooks/
    paper: str  # figures/<paper>/<profile>/
    title: str
    params: dict[str, dict] = field(default_factory=dict)  # profile -> parameters


def _nb(name, paper, title, smoke: dict, gpu: dict | None = None, paper_: dict | None = None) -> Notebook:
    """Profiles inherit: gpu = smoke + gpu overrides; paper = gpu + paper overrides."""
    g = {**smoke, **(gpu or {})}
    return Notebook(name, paper, title, {"smoke": smoke, "gpu": g, "paper": {**g, **(paper_ or {})}})


NOTEBOOKS: dict[str, Notebook] = {nb.name: nb for nb in [
    _nb("00_headlab_tour", "tour", "A tour of headlab",
        smoke=dict(models=["smollm2-135m", "gemma3-270m"], text_type="prose", n_paragraphs=8, max_tokens=128,
                   zero_layer=20, zero_head=0, train_steps=60, train_seq=64, train_batch=16, seed=0, device="cpu"),
        gpu=dict(n_paragraphs=64, max_tokens=256, train_steps=2000, train_batch=64, train_seq=256, device="cuda"),
        paper_=dict(models=["HuggingFaceTB/SmolLM2-135M", "google/gemma-3-270m"])),
]}


def _gpu_available() -> bool:
    import torch

    return torch.cuda.is_available()


class Params(dict):
    """A dict with attribute access (``P.seed``) that prints as a readable table."""

    def __getattr__(self, k):
        try:
            return self[k]
        except KeyError:
            raise AttributeError(k) from None

    def __repr__(self):
        w = max(len(k) for k in self)
        return "\n".join(f"{k:<{w}}  {v!r}" for k, v in self.items())


def resolve(notebook: str, profile: str, **overrides) -> Params:
    """Full parameter set of ``notebook`` under ``profile``, with ``overrides`` applied.

    Raises a one-line ``ProfileError`` for an unknown notebook, profile or parameter, for
    ``gpu`` without a visible GPU, and for ``paper`` when the hub cannot be reached.
    """
    if notebook not in NOTEBOOKS:
        raise ProfileError(f"unknown notebook {notebook!r}; known: {', '.join(NOTEBOOKS)}")
    if profile not in PROFILES:
        raise ProfileError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    nb = NOTEBOOKS[notebook]
    base = nb.params[profile]
    unknown = set(overrides) - set(base)
    if unknown:
        raise ProfileError(f"{notebook}: unknown parameter(s) {sorted(unknown)}; known: {sorted(base)}")
    if profile == "gpu" and not _gpu_available():
        raise ProfileError("profile 'gpu' needs a CUDA GPU and none is visible; use profile='smoke' on a CPU machine")
    if profile == "paper":
        from .models import hub_reachable

        if not hub_reachable():
            raise ProfileError("profile 'paper' loads the papers' own models from the Hugging Face hub, which this "
                               "machine cannot reach; use profile='smoke' (CPU) or 'gpu' (offline GPU)")
    return Params(profile=profile, notebook=notebook, paper=nb.paper, **{**base, **overrides})

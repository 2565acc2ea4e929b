"""The three profiles, and every notebook's parameters under each, read from the file beside it.

* ``smoke``  CPU, offline, deterministic, a few minutes per notebook (the stored default; CI, nbval)
* ``gpu``    one H100-class GPU, still offline: longer training, bigger evaluations
* ``paper``  the paper's own models and data from the Hugging Face hub (needs internet)

Each notebook's values live in ``notebooks/<notebook>.params.yml``: ``smoke`` lists every parameter, ``gpu``
what differs from smoke, ``paper`` what differs from gpu, ``rehearse`` the toy sizes of a CPU rehearsal of gpu.
A notebook's ``parameters`` cell holds ``profile = "smoke"``, ``overrides = {}`` and a few knobs; its next cell
calls ``P = resolve("<notebook>", profile, overrides)``, which validates everything *before* any compute.
``overrides`` sets any profile value by name (a dict, or its JSON text as papermill's ``-p`` passes it).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from .paths import NOTEBOOKS_DIR

PROFILES = ("smoke", "gpu", "paper")
# ``python -m headlab run --profile gpu|paper --rehearse NB`` sets this: the profile's lists (models, score
# functions, variants, seeds, knobs) at toy sizes on the CPU, figures under .cache/rehearse, to catch a
# broken gpu or paper code path before it costs device time; paper's hub models become tiny random twins
# with their real architectures (headlab.rehearsal). Its numbers mean nothing.
REHEARSE_ENV = "HEADLAB_REHEARSE"
PARAMS_SUFFIX = ".params.yml"


class ProfileError(ValueError):
    pass


@dataclass(frozen=True)
class Notebook:
    name: str  # file stem in notebooks/
    paper: str  # figures/<paper>/<profile>/
    title: str
    params: dict[str, dict] = field(default_factory=dict)  # profile -> parameters
    paper_needs_hub: bool = True  # False where profile=paper trains its own models (nothing to download)
    rehearse: dict | None = None  # toy sizes for a CPU rehearsal of the gpu and paper profiles (see ``resolve``)
    rehearse_paper: dict = field(default_factory=dict)  # what a paper rehearsal changes beyond ``rehearse``
    module: str = ""  # the package holding its figures (FROM_CSV) and claims (build); default headlab.papers.<paper>

    def __post_init__(self):
        if not self.module:
            object.__setattr__(self, "module", f"headlab.papers.{self.paper}")


def load_params(path: Path) -> Notebook:
    """One ``<notebook>.params.yml``; profiles inherit (gpu = smoke + gpu, paper = gpu + paper). A name in
    gpu, paper or rehearse that smoke lacks is a one-line error (a typo would otherwise add a parameter)."""
    import yaml

    name = path.name.removesuffix(PARAMS_SUFFIX)
    try:
        d = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ProfileError(f"{path.name}: not valid YAML ({str(e).splitlines()[0]})") from None
    extra = set(d) - {"paper", "title", "paper_needs_hub", "profiles", "rehearse", "rehearse_paper", "module"}
    if extra or "smoke" not in (d.get("profiles") or {}):
        raise ProfileError(f"{path.name}: needs paper, title and profiles.smoke; unknown keys {sorted(extra)}")
    prof = d["profiles"]
    smoke = prof["smoke"]
    parts = [*((k, prof.get(k)) for k in ("gpu", "paper")), *((k, d.get(k)) for k in ("rehearse", "rehearse_paper"))]
    for part, values in parts:
        unknown = sorted(set(values or {}) - set(smoke))
        if unknown:
            raise ProfileError(f"{path.name}: {part} sets {unknown}, which smoke does not define")
    gpu = {**smoke, **(prof.get("gpu") or {})}
    params = {"smoke": smoke, "gpu": gpu, "paper": {**gpu, **(prof.get("paper") or {})}}
    return Notebook(
        name,
        d["paper"],
        d["title"],
        params,
        d.get("paper_needs_hub", True),
        d.get("rehearse"),
        d.get("rehearse_paper") or {},
        d.get("module", ""),
    )


NOTEBOOKS: dict[str, Notebook] = {
    nb.name: nb for nb in (load_params(p) for p in sorted(NOTEBOOKS_DIR.glob(f"*{PARAMS_SUFFIX}")))
}


def _gpu_available() -> bool:
    import os

    import torch

    # Ask NVML, not the CUDA driver: a driver-initialised parent cannot fork CPU workers that use torch
    # (Count01's worker pool failed with "CUDA error: initialization error" on the H100 without this).
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
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


def parse_overrides(overrides: dict | str | None) -> dict:
    """``overrides`` as a dict: a dict as is; a string as JSON (papermill's ``-p overrides '{"seed": 3}'``)."""
    if overrides is None or overrides == "":
        return {}
    if isinstance(overrides, str):
        try:
            overrides = json.loads(overrides)
        except json.JSONDecodeError as e:
            raise ProfileError(
                f"overrides must be a JSON object such as '{{\"seed\": 3}}', got {overrides!r} ({e.msg})"
            ) from None
    if not isinstance(overrides, dict):
        raise ProfileError(f"overrides must be a mapping of parameter names to values, got {type(overrides).__name__}")
    return dict(overrides)


def resolve(notebook: str, profile: str, overrides: dict | str | None = None, **values) -> Params:
    """Full parameter set of ``notebook`` under ``profile``, with ``values`` (a notebook's knobs) and then
    ``overrides`` (a dict or its JSON text) applied.

    Raises a one-line ``ProfileError`` for an unknown notebook, profile or parameter, for
    ``gpu`` without a visible GPU, and for ``paper`` when the hub cannot be reached.
    """
    overrides = {**values, **parse_overrides(overrides)}  # a run's explicit overrides win
    if notebook not in NOTEBOOKS:
        raise ProfileError(f"unknown notebook {notebook!r}; known: {', '.join(NOTEBOOKS)}")
    if profile not in PROFILES:
        raise ProfileError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    nb = NOTEBOOKS[notebook]
    base = nb.params[profile]
    unknown = set(overrides) - set(base)
    if unknown:
        raise ProfileError(f"{notebook}: unknown parameter(s) {sorted(unknown)}; known: {sorted(base)}")
    rehearsal = profile in ("gpu", "paper") and os.environ.get(REHEARSE_ENV) == "1"
    if rehearsal and nb.rehearse is None:
        raise ProfileError(f"{notebook}: no rehearsal sizes defined in notebooks/{notebook}{PARAMS_SUFFIX}")
    if profile == "gpu" and not rehearsal and not _gpu_available():
        raise ProfileError("profile 'gpu' needs a CUDA GPU and none is visible; use profile='smoke' on a CPU machine")
    if profile == "paper" and nb.paper_needs_hub and not rehearsal:
        from .models import hub_reachable

        if not hub_reachable():
            raise ProfileError(
                "profile 'paper' loads the papers' own models from the Hugging Face hub, which this "
                "machine cannot reach; use profile='smoke' (CPU) or 'gpu' (offline GPU)"
            )
    if rehearsal:  # the profile's lists at the rehearsal's toy sizes, on the CPU; knobs still win
        base = {**base, **nb.rehearse, **(nb.rehearse_paper if profile == "paper" else {}), "device": "cpu"}
        what = "tiny random twins of its hub models" if profile == "paper" else "toy sizes"
        print(
            f"REHEARSAL of {notebook}'s {profile} profile on the CPU with {what}: a code-path check, numbers mean nothing"
        )
    return Params(profile=profile, notebook=notebook, paper=nb.paper, **{**base, **overrides})

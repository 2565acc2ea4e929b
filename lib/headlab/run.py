"""Execute notebooks with papermill, one profile at a time.

* smoke: the executed notebook replaces ``notebooks/<name>.ipynb`` (the stored copy that nbval
  checks), with papermill's timing metadata stripped so that reruns diff cleanly;
* gpu / paper: the executed copy goes to ``figures/<paper>/<profile>/<name>.ipynb``, never over
  ``notebooks/``.

A failed notebook leaves its stored copy and figures untouched (the failed execution is kept
as ``figures/<paper>/<profile>/<name>.failed.ipynb`` to read the traceback); the runner goes on
with the next one and exits non-zero at the end.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

from .figures import readable
from .paths import CACHE_DIR, FIGURES_DIR, NOTEBOOKS_DIR
from .profiles import NOTEBOOKS, PROFILES, REHEARSE_ENV, ProfileError, resolve

KERNEL = "python3"  # the kernel of the interpreter that runs papermill (the .venv's)


def _kernel_manager_class():
    """Kernels talk to papermill over local (IPC) sockets in a private temporary folder, not over TCP
    ports: nothing listens on the network, and ipykernel prints no plain-text-over-TCP warning."""
    import shutil

    from jupyter_client.manager import AsyncKernelManager

    class LocalKernelManager(AsyncKernelManager):
        def __init__(self, **kw):
            super().__init__(**kw)
            self._sockets = tempfile.mkdtemp(prefix="headlab-kernel-")
            self.transport, self.ip = "ipc", os.path.join(self._sockets, "kernel")

        async def _async_cleanup_resources(self, restart: bool = False) -> None:
            await super()._async_cleanup_resources(restart)
            if not restart:
                shutil.rmtree(self._sockets, ignore_errors=True)

    return LocalKernelManager


def available() -> list[str]:
    return sorted(n for n in NOTEBOOKS if (NOTEBOOKS_DIR / f"{n}.ipynb").exists())


def _select(names: list[str]) -> list[str]:
    out = []
    for n in names or available():
        n = Path(n).stem
        if n not in NOTEBOOKS:
            raise ProfileError(f"unknown notebook {n!r}; known: {', '.join(NOTEBOOKS)}")
        if not (NOTEBOOKS_DIR / f"{n}.ipynb").exists():
            raise ProfileError(f"notebook {n!r} is registered but notebooks/{n}.ipynb does not exist yet")
        out.append(n)
    return out


def clean(nb: dict, drop_injected: bool) -> dict:
    """Strip execution noise (timings, papermill bookkeeping) from an executed notebook, and recompress its images
    losslessly (``figures.shrink_png``; nbval does not compare images)."""
    nb["metadata"].pop("papermill", None)
    nb["metadata"].pop("widgets", None)
    cells = []
    for c in nb["cells"]:
        tags = c.get("metadata", {}).get("tags", [])
        if drop_injected and "injected-parameters" in tags:
            continue
        md = c.get("metadata", {})
        md.pop("papermill", None)
        md.pop("execution", None)
        cells.append(c)
    nb["cells"] = cells
    for i, c in enumerate(nb["cells"]):  # papermill leaves execution counts from its own run; renumber
        if c["cell_type"] == "code" and c.get("execution_count") is not None:
            c["execution_count"] = i + 1
            for o in c.get("outputs", []):  # an execute_result carries the count too
                if "execution_count" in o:
                    o["execution_count"] = i + 1
    shrink_images(nb)
    return nb


def shrink_images(nb: dict) -> dict:
    """Every PNG output of ``nb`` recompressed losslessly in place (``figures.shrink_png``)."""
    import base64

    from .figures import shrink_png

    for c in nb["cells"]:
        for o in c.get("outputs", []):
            d = o.get("data", {})
            if "image/png" in d:
                raw = base64.b64decode(d["image/png"])
                d["image/png"] = base64.b64encode(shrink_png(raw)).decode("ascii")
    return nb


def parse_params(items: list[str]) -> dict:
    """``["pretrained=false", "grid=full"]`` -> ``{"pretrained": False, "grid": "full"}``."""
    out = {}
    for it in items:
        name, sep, value = it.partition("=")
        if not sep or not name.isidentifier():
            raise ProfileError(f"--set wants NAME=VALUE, got {it!r}")
        try:
            out[name] = json.loads(value)
        except json.JSONDecodeError:
            out[name] = value
    return out


def check_params(name: str, params: dict, profile: str = "smoke") -> dict:
    """Split ``--set`` values into the papermill parameters of ``name``: a knob of its parameters cell is set
    directly; any other name must be one of the profile's values and goes into ``overrides``. An unknown name
    is a one-line error here, before any compute (papermill itself would only warn)."""
    if not params:
        return {}
    import papermill as pm

    declared = set(pm.inspect_notebook(str(NOTEBOOKS_DIR / f"{name}.ipynb"))) - {"profile", "overrides"}
    values = set(NOTEBOOKS[name].params[profile])
    unknown = sorted(set(params) - declared - values)
    if unknown:
        raise ProfileError(
            f"{name}: no parameter {unknown}; knobs of its parameters cell: {sorted(declared)}; "
            f"profile values: notebooks/{name}.params.yml"
        )
    knobs = {k: v for k, v in params.items() if k in declared}
    overrides = {k: v for k, v in params.items() if k not in declared}
    return {**knobs, **({"overrides": overrides} if overrides else {})}


PART_TAG = "part-"  # a code cell tagged ``part-NAME`` belongs to part NAME of its notebook (e.g. 02's ``part-bytes``)
SKIP_TAG = "skip-execution"  # the tag nbclient (papermill's engine) leaves unexecuted


def parts_of(nb: dict) -> set[str]:
    """The part names that ``nb``'s code cells are tagged with (``part-NAME``)."""
    return {
        t[len(PART_TAG) :]
        for c in nb["cells"]
        if c["cell_type"] == "code"
        for t in c.get("metadata", {}).get("tags", [])
        if t.startswith(PART_TAG)
    }


def check_skip(name: str, skip: list[str] | None) -> list[str]:
    """``skip`` checked against the parts ``name``'s cells are tagged with; an unknown part is a one-line error."""
    if not skip:
        return []
    known = parts_of(json.loads((NOTEBOOKS_DIR / f"{name}.ipynb").read_text()))
    unknown = sorted(set(skip) - known)
    if unknown:
        raise ProfileError(
            f"{name}: no part {unknown} to skip; its parts: {', '.join(sorted(known)) or 'none (no cell is tagged part-NAME)'}"
        )
    return sorted(set(skip))


def mark_skipped(nb: dict, skip: list[str]) -> dict:
    """``nb`` with every code cell of a part in ``skip`` tagged ``skip-execution`` (papermill's engine, nbclient,
    leaves such a cell unexecuted, with no outputs) and a note under the title naming what was not run: the figures
    and CSVs of those parts in the run's folder are an earlier run's (e.g. notebook 02's SmolLM2 half run alone on a
    lent GPU, its byte half's CSVs kept from the earlier gpu run)."""
    tags = {PART_TAG + p for p in skip}
    n = 0
    for c in nb["cells"]:
        md = c.setdefault("metadata", {})
        if c["cell_type"] == "code" and tags & set(md.get("tags", [])):
            md["tags"] = [*md.get("tags", []), SKIP_TAG]
            n += 1
    note = {
        "cell_type": "markdown",
        "id": "skipped-parts",
        "metadata": {},
        "source": [
            f"**Not run here:** part(s) {', '.join(skip)} ({n} code cells tagged {', '.join(sorted(tags))}, left "
            "without outputs by `headlab run --skip-part`). The figures and CSVs of those parts in this run's folder "
            "are an earlier run's; the claims below are judged from every CSV in the folder."
        ],
    }
    nb["cells"].insert(1, note)
    return nb


def run_folder(profile: str, params: dict | None) -> str:
    """The figures folder of a run: an ``out`` override (a run at other sizes, e.g. 01's ``--set out=powered``),
    notebook 03's ``grid=full`` knob (the gpu grid on any machine), else the profile."""
    params = params or {}
    out = (params.get("overrides") or {}).get("out")
    return str(out) if out else "full" if params.get("grid") == "full" else profile


def run_one(
    name: str,
    profile: str,
    params: dict | None = None,
    figures_root: Path = FIGURES_DIR,
    skip: list[str] | None = None,
) -> tuple[bool, float, str]:
    import papermill as pm

    nb = NOTEBOOKS[name]
    src = NOTEBOOKS_DIR / f"{name}.ipynb"
    fig_dir = figures_root / nb.paper / run_folder(profile, params)
    fig_dir.mkdir(parents=True, exist_ok=True)
    dest = src if profile == "smoke" and not params and not skip else fig_dir / f"{name}.ipynb"
    fd, tmp = tempfile.mkstemp(suffix=".ipynb", dir=fig_dir, prefix=f".{name}.")
    os.close(fd)
    run_src = src
    if skip:  # a copy of the notebook with the skipped parts' cells tagged for nbclient to leave alone
        run_src = Path(tmp).with_name(Path(tmp).stem + ".in.ipynb")
        run_src.write_text(json.dumps(mark_skipped(json.loads(src.read_text()), skip), indent=1) + "\n")
    t0 = time.time()
    try:
        pm.execute_notebook(
            str(run_src),
            tmp,
            parameters={"profile": profile, **(params or {})},
            kernel_name=KERNEL,
            kernel_manager_class=_kernel_manager_class(),
            cwd=str(NOTEBOOKS_DIR),
            # a per-cell bar for a person at a terminal (explicit: TQDM_DISABLE is set for the kernels); none in logs
            progress_bar={"desc": f"  {name}", "disable": not sys.stderr.isatty(), "leave": False},
            log_output=False,
        )
    except Exception as e:  # papermill raises PapermillExecutionError with the cell's traceback
        failed = fig_dir / f"{name}.failed.ipynb"
        os.replace(tmp, failed)
        msg = str(e).strip().splitlines()
        return False, time.time() - t0, (msg[-1] if msg else type(e).__name__) + f" (see {_show(failed)})"
    finally:
        if run_src != src:
            run_src.unlink(missing_ok=True)
    d = clean(json.loads(Path(tmp).read_text()), drop_injected=dest == src)
    Path(tmp).write_text(json.dumps(d, indent=1, ensure_ascii=False) + "\n")
    readable(tmp)
    os.replace(tmp, dest)
    (fig_dir / f"{name}.failed.ipynb").unlink(missing_ok=True)
    return True, time.time() - t0, _show(dest)


def _show(path: Path) -> str:
    try:
        return str(path.relative_to(FIGURES_DIR.parent))
    except ValueError:
        return str(path)


def run(
    names: list[str],
    profile: str,
    params: dict | None = None,
    rehearse: bool = False,
    executor: str | None = None,
    skip: list[str] | None = None,
) -> int:
    """Execute ``names`` (default: every stored notebook) under ``profile``; ``params`` set knobs of
    their parameters cells or, by name, any value of their ``.params.yml`` (see ``check_params``). A smoke
    run with either stores its executed copy next to the figures, like gpu/paper runs, so that the stored
    default notebook stays the plain smoke run.

    ``rehearse`` (gpu or paper): run that profile's code paths on the CPU at toy sizes, writing under
    ``.cache/rehearse/figures`` instead of ``figures/``; for checking a run before spending device time. A paper
    rehearsal loads tiny random twins of the hub models (``headlab.rehearsal``) and never touches the hub.

    ``executor`` (``headlab.sweep.KINDS``: ``process``, ``submitit``, ...): where the notebooks' independent runs go
    (``headlab.sweep``), passed to their kernels as ``HEADLAB_EXECUTOR``.

    ``skip``: parts of the notebooks (code cells tagged ``part-NAME``) left unexecuted (``mark_skipped``), e.g.
    ``["bytes"]`` runs only notebook 02's SmolLM2 half, keeping the byte half's CSVs already in the run's folder;
    the executed copy goes next to the figures and says what was not run."""
    if profile not in PROFILES:
        raise ProfileError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    if executor is not None:
        from .sweep import KINDS

        if executor not in KINDS:
            raise ProfileError(f"unknown executor {executor!r}; choose one of {', '.join(KINDS)}")
    if rehearse and profile not in ("gpu", "paper"):
        raise ProfileError("--rehearse rehearses the gpu or paper profile on the CPU; use it with --profile gpu|paper")
    env = {"HEADLAB_EXECUTOR": executor} if executor else {}
    figures_root = FIGURES_DIR
    if rehearse:
        figures_root = CACHE_DIR / "rehearse" / "figures"
        # read by profiles.resolve and models.load, here and in the notebooks' kernels
        env.update({REHEARSE_ENV: "1", "HEADLAB_FIGURES": str(figures_root)})
        if profile == "paper":  # nothing may reach for the hub: every hub id resolves to its local twin
            env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:  # these settings hold for this run only: later runs and models.load in this process see the old ones
        return _run(names, profile, params, rehearse, figures_root, skip)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _run(
    names: list[str], profile: str, params: dict | None, rehearse: bool, figures_root: Path, skip: list[str] | None
) -> int:
    names = _select(names)
    per_nb, skips = {}, {}
    for n in names:  # fail fast, before any compute, on gpu-without-GPU / paper-offline / unknown names or parts
        per_nb[n] = check_params(n, params or {}, profile)
        skips[n] = check_skip(n, skip)
        resolve(n, profile, per_nb[n].get("overrides"))
    os.environ.setdefault("TQDM_DISABLE", "1")  # kernels inherit it: no progress bars in stored outputs
    os.environ.setdefault("PYTHONHASHSEED", "0")
    rows = []
    for i, n in enumerate(names, 1):
        print(f"[{i}/{len(names)}] {n} (profile={profile}) ...", flush=True)
        ok, secs, info = run_one(n, profile, per_nb[n], figures_root, skips[n])
        print(f"      {'ok' if ok else 'FAILED'} in {secs / 60:.1f} min: {info}", flush=True)
        rows.append((n, "ok" if ok else "FAILED", secs / 60))
    w = max(len(r[0]) for r in rows)
    print(f"\n{'notebook':<{w}}  status  minutes")
    for n, s, m in rows:
        print(f"{n:<{w}}  {s:<6}  {m:7.1f}")
    failed = sum(r[1] != "ok" for r in rows)
    print(f"\n{len(rows) - failed} ok, {failed} failed (profile={profile}{', CPU rehearsal' if rehearse else ''})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:], "smoke"))

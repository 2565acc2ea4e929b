"""One interface for running independent jobs (a grid of training runs): in this process, in a local pool of
worker processes, or as a SLURM job array through submitit.

    from headlab.sweep import executor
    with executor(workers=4) as ex:             # kind None: $HEADLAB_EXECUTOR, else "process"
        results = ex.map(train_one, jobs)        # results in the order of ``jobs``

``fn`` must be a module-level function (it is pickled for worker processes and cluster jobs) and each job
must seed its own RNGs, so every kind returns the same results.

Kinds
-----
``"serial"``          every job in this process, one after the other.
``"process"``         ``workers`` single-machine processes (``ProcessPoolExecutor``; fork, or spawn once CUDA
                      is initialised in this process, since a CUDA-initialised parent cannot fork workers that
                      touch torch). ``workers <= 1`` runs serially in this process.
``"submitit"``        ``submitit.AutoExecutor``: a SLURM job array when ``srun`` is on PATH, otherwise local
                      processes (at most ``workers`` at once). Logs, pickled jobs and results go under
                      ``folder`` (default ``.cache/submitit/<job id>``, i.e. ``headlab.paths.CACHE_DIR``);
                      on a cluster that folder and the checkout must be on a file system the nodes share.
``"submitit-slurm"``  the same, forcing SLURM; ``"submitit-local"`` forcing local processes;
``"submitit-debug"``  forcing submitit's in-process debug executor (tests).

``kind=None`` reads ``$HEADLAB_EXECUTOR`` (default ``"process"``): ``headlab run --executor submitit NB`` sets
it for the notebook's kernel, which moves the notebook's sweeps (Count01's ``train_many``; notebook 04's
pretraining runs) onto SLURM without any code change.

SLURM parameters
----------------
Keyword arguments of ``executor`` and the JSON object in ``$HEADLAB_SLURM`` (keywords win) are passed to
``AutoExecutor.update_parameters``. Generic names (``timeout_min``, ``mem_gb``, ``cpus_per_task``,
``gpus_per_node``, ``nodes``, ``tasks_per_node``, ``name``) are used as they are; any other name is taken as a
SLURM option and prefixed ``slurm_`` unless it already carries an executor prefix (``partition`` ->
``slurm_partition``; also ``account``, ``qos``, ``constraint``, ``array_parallelism``, ``setup``,
``additional_parameters``...). Defaults: ``name="headlab"``, ``timeout_min=120``, ``cpus_per_task=1``, no GPU
(notebook 04's pretraining runs ask for ``gpus_per_node=1`` when its device is CUDA); ``$HEADLAB_SLURM``
applies to every sweep of the run. The generic names also steer local submitit jobs (``timeout_min``; a local
job sees no GPU unless ``gpus_per_node`` asks for some). submitit detects SLURM by ``srun`` on PATH. Example::

    export HEADLAB_SLURM='{"partition": "cpu", "timeout_min": 240, "cpus_per_task": 1, "mem_gb": 4}'
    headlab run --executor submitit 03_heads_cooperate       # the grid goes as one job array

``workers`` bounds the local processes; on SLURM the whole grid goes as one array, throttled only by
``array_parallelism`` when you set it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

EXECUTOR_ENV = "HEADLAB_EXECUTOR"
SLURM_ENV = "HEADLAB_SLURM"
DEFAULT_KIND = "process"
KINDS = ("serial", "process", "submitit", "submitit-slurm", "submitit-local", "submitit-debug")
SLURM_DEFAULTS = {"name": "headlab", "timeout_min": 120, "cpus_per_task": 1}
_GENERIC = {"name", "timeout_min", "mem_gb", "nodes", "cpus_per_task", "gpus_per_node", "tasks_per_node"}
_GENERIC |= {"stderr_to_stdout"}


def resolve_kind(kind: str | None = None) -> str:
    """``kind``, or ``$HEADLAB_EXECUTOR``, or ``"process"``; a one-line ``ValueError`` when it is unknown."""
    k = kind if kind is not None else (os.environ.get(EXECUTOR_ENV) or DEFAULT_KIND)
    k = str(k).strip().lower()
    if k not in KINDS:
        src = f"${EXECUTOR_ENV}={k!r}" if kind is None else repr(k)
        raise ValueError(f"unknown executor kind {src}; choose one of {', '.join(KINDS)}")
    return k


def requested_kind(kind: str | None = None) -> str | None:
    """The kind asked for explicitly (argument, else ``$HEADLAB_EXECUTOR``), validated; None when neither is set.
    For callers whose default is plain in-process code rather than ``"process"``."""
    if kind is None and not os.environ.get(EXECUTOR_ENV):
        return None
    return resolve_kind(kind)


def slurm_parameters(defaults: dict | None = None, **overrides) -> dict:
    """The ``AutoExecutor.update_parameters`` keywords: ``SLURM_DEFAULTS``, the caller's ``defaults`` (e.g.
    ``gpus_per_node=1`` for GPU runs), ``$HEADLAB_SLURM`` (JSON), then ``overrides``, each over the last;
    non-generic names get the ``slurm_`` prefix (see the module docstring)."""
    raw = os.environ.get(SLURM_ENV, "").strip()
    env = {}
    if raw:
        try:
            env = json.loads(raw)
        except json.JSONDecodeError as e:
            raise ValueError(
                f'${SLURM_ENV} must be a JSON object such as \'{{"partition": "cpu"}}\' ({e.msg})'
            ) from None
        if not isinstance(env, dict):
            raise ValueError(f"${SLURM_ENV} must be a JSON object, got {type(env).__name__}")
    out = {}
    for k, v in {**SLURM_DEFAULTS, **(defaults or {}), **env, **overrides}.items():
        if v is None:
            continue
        if k not in _GENERIC and not k.startswith(("slurm_", "local_", "debug_")):
            k = f"slurm_{k}"
        out[k] = v
    return out


class Executor:
    """``map(fn, items) -> list`` (input order) and ``imap`` (a generator, in input order, as results arrive);
    a context manager that keeps one worker pool across ``map`` calls (without ``with``, each call makes and
    closes its own). Build it with ``executor(...)``."""

    def __init__(self, kind: str, workers: int = 1, folder=None, defaults: dict | None = None, **slurm):
        self.kind, self.workers = kind, max(1, int(workers or 1))
        self.folder, self.slurm, self.defaults = folder, slurm, defaults
        self._pool = None
        self._entered = False
        if kind.startswith("submitit"):
            slurm_parameters(defaults, **slurm)  # a malformed $HEADLAB_SLURM fails here, before any compute
        self.logs: list[Path] = []  # submitit: the stdout log of every job of the last map (stderr beside it)

    def __repr__(self):
        return f"Executor(kind={self.kind!r}, workers={self.workers})"

    # -- context ------------------------------------------------------------------------------------------
    def __enter__(self):
        self._entered = True
        return self

    def __exit__(self, *exc):
        self._entered = False
        self.close()
        return False

    def close(self):
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    # -- mapping ------------------------------------------------------------------------------------------
    def map(self, fn: Callable, items: Iterable) -> list:
        return list(self.imap(fn, items))

    def imap(self, fn: Callable, items: Iterable) -> Iterator:
        items = list(items)
        if not items:
            return iter(())
        if self.kind == "serial" or (self.kind == "process" and self.workers <= 1):
            return (fn(x) for x in items)
        if self.kind == "process":
            return self._imap_process(fn, items)
        return self._imap_submitit(fn, items)

    def _imap_process(self, fn, items):
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        import torch

        if self._pool is None:
            # fork is fast and needs no re-import, but a process that has initialised CUDA cannot fork workers
            # that touch torch; fall back to spawn then (same results: each job seeds its own RNGs)
            ctx = mp.get_context("spawn" if torch.cuda.is_initialized() else "fork")
            self._pool = ProcessPoolExecutor(self.workers, mp_context=ctx)
        pool = self._pool
        try:
            yield from pool.map(fn, items)
        finally:
            if not self._entered:
                self.close()

    def _submitit_executor(self):
        import submitit

        from .paths import CACHE_DIR

        cluster = {"submitit": None, "submitit-slurm": "slurm", "submitit-local": "local", "submitit-debug": "debug"}
        folder = Path(self.folder) if self.folder is not None else CACHE_DIR / "submitit" / "%j"
        ex = submitit.AutoExecutor(folder=folder, cluster=cluster[self.kind])
        params = slurm_parameters(self.defaults, **self.slurm)
        if ex.cluster != "slurm":  # SLURM-only options mean nothing to the local and debug executors
            params = {k: v for k, v in params.items() if not k.startswith("slurm_")}
        elif not params.get("gpus_per_node"):  # no "--gpus-per-node=0": clusters without GPUs reject it
            params.pop("gpus_per_node", None)
        ex.update_parameters(**params)
        return ex

    def _imap_submitit(self, fn, items):
        ex = self._submitit_executor()
        jobs: list = []
        try:
            yield from self._run_submitit(ex, fn, items, jobs)
        finally:  # keep where the logs are, not the job objects (a live LocalJob complains at interpreter exit)
            self.logs = [Path(j.paths.stdout) for j in jobs if j is not None]
            jobs.clear()

    def _run_submitit(self, ex, fn, items, jobs):
        n = len(items)
        if ex.cluster == "debug":  # in-process; job.result() would open pdb on an error, exception() does not
            jobs += ex.map_array(fn, items)
            for job in jobs:
                err = job.exception()
                if err is not None:
                    raise err
                yield job.result()
            return
        if ex.cluster != "local" or self.workers >= n:  # one job array (SLURM throttles it itself)
            jobs += ex.map_array(fn, items)
            for job in jobs:
                yield job.result()
            return
        # local processes: keep at most `workers` running, yield results in input order
        jobs += [None] * n
        nxt = 0
        try:
            for i in range(n):
                while True:
                    running = sum(1 for j in jobs[:nxt] if not j.done())
                    while nxt < n and running < self.workers:
                        jobs[nxt] = ex.submit(fn, items[nxt])
                        nxt, running = nxt + 1, running + 1
                    if jobs[i].done():
                        break
                    time.sleep(0.1)
                yield jobs[i].result()
        except BaseException:
            for j in jobs[:nxt]:
                if not j.done():
                    j.cancel(check=False)
            raise


def executor(kind: str | None = None, workers: int = 1, folder=None, defaults: dict | None = None, **slurm) -> Executor:
    """An ``Executor`` of ``kind`` (None: ``$HEADLAB_EXECUTOR``, else ``"process"``) with ``workers`` processes
    (``process``; at most that many local submitit jobs at once). ``folder``: submitit's logs and pickles
    (default ``CACHE_DIR/submitit/%j``); ``slurm``: submitit/SLURM parameters over ``$HEADLAB_SLURM`` (see the
    module docstring). An unknown kind is a one-line ``ValueError``, raised here, before any compute."""
    return Executor(resolve_kind(kind), workers, folder, defaults, **slurm)

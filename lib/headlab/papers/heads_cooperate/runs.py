"""Grids of runs: the shared evaluation sets, parallel training with analysis, and the jobs of a profile."""

from __future__ import annotations

import functools
import time

import torch

from .scaling import analyse, count_grid_set
from .task import Batch, TaskSpec, test_set
from .training import RunSpec, _cache_path, train_run


def _train_worker(args):
    torch.set_num_threads(1)
    spec, run, cache_dir, sets = args
    res = None
    if cache_dir is not None:
        path = _cache_path(cache_dir, spec, run)
        if path.exists():
            res = torch.load(path, weights_only=False)
    if res is None:
        res = train_run(spec, run)
        if cache_dir is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            torch.save(res, tmp)
            tmp.replace(path)
    if sets is not None:
        t0 = time.time()
        res["analysis"] = analyse(res, *eval_sets(spec, **sets))
        res["analysis_seconds"] = time.time() - t0
    return res


@functools.lru_cache(maxsize=8)
def eval_sets(spec: TaskSpec, n_test: int, n_fit: int, grid_per_cell: int) -> tuple[Batch, Batch, Batch]:
    """The fixed evaluation sets of a format: test (seed 10 000), probe-fitting (seed 20 000) and the
    (#0, #1) grid (seed 30 000). Shared by every run, whatever its training seed."""
    return (test_set(spec, n_test, 10_000), test_set(spec, n_fit, 20_000), count_grid_set(spec, grid_per_cell, 30_000))


def train_many(
    jobs: list[tuple], workers: int = 1, progress: bool = True, cache_dir=None, executor: str | None = None
) -> list[dict]:
    """Train every job, in order: ``(spec, run)`` or ``(spec, run, sets)``, where ``sets`` (the keyword
    arguments of ``eval_sets``) asks for the full analysis (``analyse``) of the trained model, stored in
    ``result["analysis"]``. ``executor``: a ``headlab.sweep`` kind (None: ``$HEADLAB_EXECUTOR``, else
    ``"process"``, where ``workers > 1`` runs that many single-threaded processes and ``workers <= 1`` runs
    here); ``"submitit"`` sends the grid to SLURM as one job array. Results are identical whichever runs
    them, since each run seeds its own RNGs. ``cache_dir``: keep each trained run there (keyed by its full
    spec) and reuse it on the next call."""
    from ...sweep import executor as make_executor
    from ...train import progress_bar

    ex = make_executor(executor, workers)  # an unknown kind fails here, before any training
    args = [(j[0], j[1], cache_dir, j[2] if len(j) > 2 else None) for j in jobs]
    with ex:
        return list(progress_bar(ex.imap(_train_worker, args), "Count01 runs", progress, total=len(args)))


def grid_jobs(P, spec: dict, sets: dict | None) -> dict[tuple, tuple]:
    """Every run a profile asks for, keyed ``(variant, H, seed)`` or, for the initialisation ablation,
    ``(variant, H, seed, init, attn_norm)``; values are ``train_many`` jobs. The main grid (format
    ``P.variant``, checkpoints kept), format B and the ablation are analysed (``sets``); the dynamics-only
    runs (``P.dyn``) are trained only. Longest first, for packing over workers."""

    def run_of(H, seed, steps=None, **kw):
        base = dict(batch=P.batch, lr=P.lr, d_model=P.d_model, eval_every=P.eval_every, n_eval=P.n_eval)
        return RunSpec(n_heads=H, seed=seed, steps=steps or P.steps, **{**base, **kw})

    ck = tuple(P.ckpt_steps)
    jobs = {(P.variant, H, s): (spec[P.variant], run_of(H, s, ckpt_steps=ck), sets) for H in P.heads for s in P.seeds}
    for H in P.b_heads:
        for s in P.b_seeds:
            run = run_of(H, s, P.b_steps, lr=P.b_lr or P.lr, min_lr_ratio=P.b_min_lr_ratio)
            jobs.setdefault(("B", H, s), (spec["B"], run, sets))
    for v, Hs_dyn in P.dyn.items():
        for H in Hs_dyn:
            for s in P.dyn_seeds:
                jobs.setdefault((v, H, s), (spec[v], run_of(H, s, ckpt_steps=ck if v == P.variant else ())))
    for init, norm in P.init_arms:
        for H in P.abl_heads:
            for s in P.abl_seeds:
                run = run_of(H, s, ckpt_steps=ck, init=init, attn_norm=bool(norm))
                jobs[(P.variant, H, s, init, bool(norm))] = (spec[P.variant], run, sets)
    return dict(sorted(jobs.items(), key=lambda kv: -kv[0][1] * kv[1][1].steps))

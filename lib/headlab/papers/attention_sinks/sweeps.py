"""The pretraining runs of ``notebooks/04_attention_sinks.ipynb`` (Fig. 5, Fig. 7, Table 2) at a profile ``P``:
the context-length sweep, the ⟨bos⟩ / packing variants, and where their results come from when a run does not
train them itself (the committed gpu-profile CSVs, or the other part of a split gpu run).

A *source* is ``(label, frame)``: ``"live (<profile>)"`` for this run's (or an earlier split's) results,
``"gpu profile (committed CSV)"`` for the committed ones.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .training import VARIANTS, PretrainSpec, build_model, pretrain, variant_table

COMMITTED = "gpu profile (committed CSV)"


CORPORA = ("shipped", "big")


def doc_index(offsets: np.ndarray) -> np.ndarray:
    """Per-token document index ``[n_tokens]`` (int32) from document start offsets ending at the token count."""
    return np.repeat(np.arange(len(offsets) - 1, dtype=np.int32), np.diff(offsets))


def pretrain_corpus(P) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(train tokens, val tokens, train doc index, val doc index)`` of the pretraining sweeps: the shipped corpus,
    its last 5 % held out (``P.pretrain_corpus == "shipped"``, smoke), or the big corpus split by document
    (``"big"``, gpu: ``make corpus-big``, or ``headlab ship unpack`` of its parts on the GPU machine; ~193 MB of
    bytes, so the sweeps no longer cycle over 2.8 MB). A missing big corpus is a one-line ``DataError``."""
    from ... import data

    if P.pretrain_corpus not in CORPORA:
        raise ValueError(f"pretrain_corpus must be one of {CORPORA}, not {P.pretrain_corpus!r}")
    if P.pretrain_corpus == "shipped":
        toks, docs = data.corpus_tokens()
        return data.split_tokens(toks, 0.05, docs)
    tr, otr = data.big_corpus("train", "bytes")
    va, ova = data.big_corpus("val", "bytes")
    return np.asarray(tr), np.asarray(va), doc_index(otr), doc_index(ova)


def pretrain_spec(P, ctx: int, variant: str) -> PretrainSpec:
    """The pretraining spec of profile ``P`` at context length ``ctx`` for variant ``variant`` (a VARIANTS key)."""
    return PretrainSpec(
        ctx=ctx,
        tokens_per_step=P.tokens_per_step,
        steps=P.pretrain_steps,
        variant=VARIANTS[variant],
        model=P.lm,
        lr=P.pretrain_lr,
        warmup=P.pretrain_warmup,
        eval_every=P.pretrain_eval_every,
        seed=P.seed,
        amp=P.amp,
    )


def committed_gpu_csv(P, folder: Path, name: str) -> pd.DataFrame | None:
    """The committed gpu-profile ``<name>.csv`` in ``folder``, drawn next to a non-gpu run's live results."""
    path = Path(folder) / f"{name}.csv"
    return pd.read_csv(path) if P.profile != "gpu" and path.exists() else None


def earlier_split(P, folder: Path, name: str, part: str) -> pd.DataFrame | None:
    """A split gpu run (parts=[...]) takes the other part's live results from the CSV that part wrote in
    ``folder``, so the last split's figures and claims cover both parts; None when there is nothing to take."""
    path = Path(folder) / f"{name}.csv"
    if P.profile != "gpu" or not P.pretrain_live or part in P.pretrain_parts or not path.exists():
        return None
    d = pd.read_csv(path)
    d = d[d.source == f"live ({P.profile})"].drop(columns="source")
    print(f"{part}: not run in this split; its results come from the earlier split's figures/{P.paper}/gpu/{name}.csv")
    return d if len(d) else None


def pretraining_sources(P, live: pd.DataFrame | None, gpu: pd.DataFrame | None) -> list[tuple[str, pd.DataFrame]]:
    """The available sources, live first."""
    return [(label, d) for label, d in ((f"live ({P.profile})", live), (COMMITTED, gpu)) if d is not None]


def _pretrain_job(args):
    """One pretraining run in a worker (``headlab.sweep``): the model comes back on the CPU."""
    spec, train, eval_win, eps, device, val, desc, threads = args
    if threads:
        torch.set_num_threads(threads)
    m, log = pretrain(spec, train, eval_win, eps_list=eps, device=device, val_stream=val, desc=desc)
    return m.cpu(), log


def _pretrain_parallel(P, jobs: list[tuple], executor: str | None) -> list | None:
    """``jobs`` (``(spec, train, eval_win, val, desc)``) through a ``headlab.sweep`` executor, one worker per run, when
    the argument or ``$HEADLAB_EXECUTOR`` asks for a non-serial kind; None otherwise (the caller then trains
    in this process, one run after the other, as it always has). Returns ``[(model on P.device, log)]``."""
    import os

    from ...sweep import executor as make_executor
    from ...sweep import requested_kind

    kind = requested_kind(executor)
    if kind in (None, "serial") or not jobs:
        return None
    n = len(jobs)
    # local worker processes share this machine's cores; a cluster job has its own (cpus_per_task)
    threads = max(1, (os.cpu_count() or 1) // n) if kind == "process" and n > 1 else None
    args = [(spec, train, eval_win, P.eps, P.device, val, desc, threads) for spec, train, eval_win, val, desc in jobs]
    # a cluster or local submitit job sees a GPU only when it asks for one ($HEADLAB_SLURM can still override)
    gpus = {"gpus_per_node": 1} if str(P.device).startswith("cuda") else None
    with make_executor(kind, workers=n, defaults=gpus) as ex:
        return [(m.to(P.device), log) for m, log in ex.map(_pretrain_job, args)]


def ctx_sweep(P, train, val, eval_win: torch.Tensor, trained: dict, executor: str | None = None) -> pd.DataFrame:
    """Pretrain variant ``P.ctx_variant`` at every ``P.ctx_lengths``; ``train`` and ``val`` are ``(tokens,
    doc index)`` streams, ``eval_win`` ``[window, eval_T]`` the held-out windows of the sink metric. Each model
    goes into ``trained[variant, ctx]``; returns the concatenated training logs (column ``variant`` added).
    ``executor``: a ``headlab.sweep`` kind (None: ``$HEADLAB_EXECUTOR``); only a non-serial one runs the
    context lengths in parallel (``"submitit"``: one SLURM job each); unset, they train here one by one."""
    done = _pretrain_parallel(
        P,
        [(pretrain_spec(P, ctx, P.ctx_variant), train, eval_win, val, f"ctx {ctx}") for ctx in P.ctx_lengths],
        executor,
    )
    logs = []
    for i, ctx in enumerate(P.ctx_lengths):
        if done is not None:
            m, log = done[i]
        else:
            m, log = pretrain(
                pretrain_spec(P, ctx, P.ctx_variant),
                train,
                eval_win,
                eps_list=P.eps,
                device=P.device,
                val_stream=val,
                desc=f"ctx {ctx}",
            )
        trained[P.ctx_variant, ctx] = m
        logs.append(log.assign(variant=P.ctx_variant))
    return pd.concat(logs, ignore_index=True)


def sweep_report(P, gpu_log: pd.DataFrame | None) -> str:
    """The size of the sweep's live models (when this run trains them) and whether a committed gpu-profile
    Fig. 5 exists."""
    lines = []
    if P.pretrain_live and "ctx_sweep" in P.pretrain_parts:
        n_params = build_model(pretrain_spec(P, P.ctx_lengths[0], P.ctx_variant)).num_params()
        lines.append(
            f"live runs: {n_params / 1e6:.2f}M non-embedding parameters, {P.tokens_per_step} tokens per step, "
            f"{P.pretrain_steps} steps per context length"
        )
    lines.append(
        "committed gpu-profile CSV: "
        + (
            "figures/attention_sinks/gpu/fig5.csv"
            if gpu_log is not None
            else "none yet (run this notebook with profile='gpu' on an H100 and commit figures/attention_sinks/gpu/*.csv)"
        )
    )
    return "\n".join(lines)


def variant_runs(P, train, eval_win: torch.Tensor, trained: dict, executor: str | None = None) -> pd.DataFrame:
    """Table 2 rows of every ``P.variants`` at context ``P.variant_ctx``, each evaluated with and without ⟨bos⟩;
    a model already in ``trained`` (the sweep's) is reused, a new one is added to it. ``executor``: as in
    ``ctx_sweep`` (only a non-serial kind trains the missing variants in parallel)."""
    missing = [v for v in P.variants if (v, P.variant_ctx) not in trained]
    done = _pretrain_parallel(
        P, [(pretrain_spec(P, P.variant_ctx, v), train, eval_win, None, v) for v in missing], executor
    )
    for v, (m, _) in zip(missing, done or [], strict=False):
        trained[v, P.variant_ctx] = m
    rows = []
    for v in P.variants:
        m = trained.get((v, P.variant_ctx))
        if m is None:
            m, _ = pretrain(
                pretrain_spec(P, P.variant_ctx, v), train, eval_win, eps_list=P.eps, device=P.device, desc=v
            )
            trained[v, P.variant_ctx] = m
        rows.append(variant_table(m, eval_win, v, P.eps))
    return pd.concat(rows, ignore_index=True).assign(ctx=P.variant_ctx, steps=P.pretrain_steps)


def pretraining_curves(P, srcs: list[tuple[str, pd.DataFrame]]) -> pd.DataFrame | None:
    """Fig. 5 / Fig. 7's frame: every source's training log, labelled, with the evaluation length."""
    if not srcs:
        return None
    return pd.concat([d.assign(source=label) for label, d in srcs], ignore_index=True).assign(eval_T=P.eval_T)


def table2_report(P, srcs: list[tuple[str, pd.DataFrame]]) -> str:
    """Whether a committed gpu-profile Table 2 exists, then per source the sink rates at both ε, mean score and
    loss of every variant with and without ⟨bos⟩."""
    has_gpu = any(label == COMMITTED for label, _ in srcs)
    lines = ["committed gpu-profile CSV: " + ("figures/attention_sinks/gpu/table2.csv" if has_gpu else "none yet")]
    cols = ["variant", "eval_bos", f"sink_{P.eps[0]:g}", f"sink_{P.eps[1]:g}", "mean_score", "loss"]
    return "\n".join(lines + [f"{label}\n{d[cols].round(3).to_string(index=False)}" for label, d in srcs])

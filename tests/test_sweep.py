"""headlab.sweep: one executor interface (serial, process pool, submitit) gives the same results.

The grid is notebook 03's smoke grid, built exactly as the notebook builds it (``resolve`` +
``grid_jobs``). Its 44 runs (21,600 steps, 24 of them analysed) would take 4-5 minutes on two cores (estimated
from single runs: a 400-step H=1 run trains in 3.5 s and its analysis takes 2 s), so the tests train a documented
subset: the first job of each kind (main grid with checkpoints, format B, dynamics-only A, dynamics-only
A_LM, initialisation ablation), shortened to 40 steps with smaller evaluation sets (``_subset``).
"""

import dataclasses
import os
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from headlab import sweep
from headlab.papers import attention_sinks as sinks
from headlab.papers import heads_cooperate as c
from headlab.papers.heads_cooperate.runs import _train_worker
from headlab.profiles import resolve

SMALL_SETS = dict(n_test=300, n_fit=300, grid_per_cell=1)


@pytest.fixture(autouse=True)
def _no_executor_env(monkeypatch, tmp_path):
    monkeypatch.delenv(sweep.EXECUTOR_ENV, raising=False)
    monkeypatch.delenv(sweep.SLURM_ENV, raising=False)
    monkeypatch.setattr("headlab.paths.CACHE_DIR", tmp_path / "cache")  # submitit's default folder
    monkeypatch.setenv("TQDM_DISABLE", "1")


def _smoke_grid():
    """Notebook 03's jobs under the smoke profile, as its cells build them."""
    P = resolve("03_heads_cooperate", "smoke")
    spec = {
        v: c.TaskSpec(variant=v, l_max=P.l_max, noise=P.noise, lm_weight=P.lm_weight, end_prob=P.end_prob)
        for v in c.VARIANTS
    }
    sets = dict(n_test=P.n_test, n_fit=P.n_fit, grid_per_cell=P.grid_per_cell)
    return P, c.grid_jobs(P, spec, sets)


def _subset():
    """The first job of each kind of the smoke grid, at 40 steps, checkpoints (20, 40), small evaluation sets."""
    _, jobs = _smoke_grid()
    first = {}
    for key, job in jobs.items():
        kind = "ablation" if len(key) == 5 else ("main/B" if len(job) > 2 else "dynamics")
        first.setdefault((kind, key[0]), job)
    assert len(first) == 5, first.keys()  # (main, A), (main, B), (dyn, A), (dyn, A_LM), (ablation, A)
    out = []
    for spec, run, *sets in first.values():
        run = dataclasses.replace(
            run, steps=40, eval_every=20, n_eval=200, ckpt_steps=(20, 40) if run.ckpt_steps else ()
        )
        out.append((spec, run, SMALL_SETS) if sets else (spec, run))
    return out


def _same_runs(a: list[dict], b: list[dict]):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x["run"] == y["run"] and x["spec"] == y["spec"]
        assert x["state_dict"].keys() == y["state_dict"].keys()
        for n in x["state_dict"]:
            assert torch.equal(x["state_dict"][n], y["state_dict"][n]), n
        assert x["checkpoints"].keys() == y["checkpoints"].keys()
        for s in x["checkpoints"]:
            assert all(torch.equal(x["checkpoints"][s][n], y["checkpoints"][s][n]) for n in x["checkpoints"][s])
        frame = pd.DataFrame
        pd.testing.assert_frame_equal(frame(x["log"]).drop(columns="seconds"), frame(y["log"]).drop(columns="seconds"))
        assert ("analysis" in x) == ("analysis" in y)
        if "analysis" in x:
            ax, ay = x["analysis"], y["analysis"]
            assert ax.keys() == ay.keys() and ax["tags"] == ay["tags"]
            pd.testing.assert_frame_equal(frame([ax["summary"]]), frame([ay["summary"]]))
            for part in ax.keys() - {"tags", "summary", "log"}:  # heads, interventions, ratio_sweep, ...
                pd.testing.assert_frame_equal(frame(ax[part]), frame(ay[part]), obj=part)


@pytest.fixture(scope="module")
def serial_runs():
    jobs = _subset()
    return jobs, c.train_many(jobs, workers=1, progress=False)


def test_smoke_grid_is_the_notebooks():
    P, jobs = _smoke_grid()
    main = {(P.variant, H, s) for H in P.heads for s in P.seeds}
    b = {("B", H, s) for H in P.b_heads for s in P.b_seeds}
    dyn = {(v, H, s) for v, Hs in P.dyn.items() for H in Hs for s in P.dyn_seeds}
    abl = {(P.variant, H, s, i, bool(n)) for i, n in P.init_arms for H in P.abl_heads for s in P.abl_seeds}
    assert set(jobs) == main | b | dyn | abl
    assert sum(len(j) > 2 for j in jobs.values()) == len(main | b | abl)  # every run but dynamics-only is analysed


def test_train_many_submitit_debug_and_process_match_serial(serial_runs, tmp_path):
    jobs, ref = serial_runs
    assert all(np.isfinite(r["log"][-1]["test_loss"]) for r in ref)
    _same_runs(ref, c.train_many(jobs, workers=2, progress=False, executor="submitit-debug"))
    _same_runs(ref, c.train_many(jobs, workers=2, progress=False, executor="process"))


def test_submitit_local_processes_match_serial(serial_runs, tmp_path):
    """Two jobs as real local submitit processes (AutoExecutor(cluster="local"), one array): the two
    dynamics-only runs (formats A and A_LM; not analysed, which keeps this test near 10 s)."""
    jobs, ref = serial_runs
    pick = [i for i, j in enumerate(jobs) if len(j) == 2]
    args = [(jobs[i][0], jobs[i][1], None, None) for i in pick]
    with sweep.executor("submitit-local", workers=2, folder=tmp_path / "%j") as ex:
        out = ex.map(_train_worker, args)
    _same_runs([ref[i] for i in pick], out)
    assert len(ex.logs) == 2 and all(p.exists() for p in ex.logs)


def test_submitit_local_window_keeps_order(tmp_path):
    """More local jobs than workers: at most ``workers`` run at once, results still in input order."""
    ex = sweep.executor("submitit-local", workers=1, folder=tmp_path / "%j")
    assert ex.map(abs, [-3, 2, -1]) == [3, 2, 1]
    assert len(ex.logs) == 3


def test_unknown_kind_is_one_line_error_before_compute():
    calls = []
    with pytest.raises(ValueError, match=r"unknown executor kind 'ray'; choose one of serial, process, submitit"):
        c.train_many([calls], executor="ray")  # a bogus job: it would fail if anything ran
    assert not calls


def test_env_selects_the_kind(monkeypatch, tmp_path):
    assert sweep.executor().kind == "process"
    monkeypatch.setenv(sweep.EXECUTOR_ENV, "submitit-debug")
    ex = sweep.executor(workers=3, folder=tmp_path)
    assert (ex.kind, ex.workers) == ("submitit-debug", 3)
    assert ex.map(abs, [-3, 1, -2]) == [3, 1, 2]
    assert sweep.executor("serial").kind == "serial"  # an explicit kind wins over the environment
    assert sweep.requested_kind() == "submitit-debug"
    monkeypatch.setenv(sweep.EXECUTOR_ENV, "slurmish")
    with pytest.raises(ValueError, match=r"\$HEADLAB_EXECUTOR='slurmish'"):
        sweep.executor()
    monkeypatch.delenv(sweep.EXECUTOR_ENV)
    assert sweep.requested_kind() is None


def test_train_many_reads_env(monkeypatch, serial_runs):
    jobs, ref = serial_runs
    monkeypatch.setenv(sweep.EXECUTOR_ENV, "submitit-debug")
    seen = []
    orig = sweep.Executor._run_submitit

    def spy(self, *a):
        seen.append(self.kind)
        return orig(self, *a)

    monkeypatch.setattr(sweep.Executor, "_run_submitit", spy)
    _same_runs(ref[:1], c.train_many(jobs[:1], progress=False))
    assert seen == ["submitit-debug"]


def test_slurm_parameters(monkeypatch):
    monkeypatch.setenv(sweep.SLURM_ENV, '{"partition": "gpu", "gpus_per_node": 1, "timeout_min": 30}')
    p = sweep.slurm_parameters(cpus_per_task=4, slurm_account="lab")
    assert p == {
        "name": "headlab",
        "timeout_min": 30,
        "cpus_per_task": 4,
        "gpus_per_node": 1,
        "slurm_partition": "gpu",
        "slurm_account": "lab",
    }
    assert sweep.slurm_parameters({"gpus_per_node": 1, "mem_gb": 8})["mem_gb"] == 8  # caller defaults under env
    assert sweep.slurm_parameters({"gpus_per_node": 2})["gpus_per_node"] == 1
    monkeypatch.setenv(sweep.SLURM_ENV, "partition=gpu")
    with pytest.raises(ValueError, match="HEADLAB_SLURM must be a JSON object"):
        sweep.executor("submitit")


def test_slurm_job_script(monkeypatch, tmp_path):
    """On a SLURM machine (here: a stand-in ``srun`` on PATH) kind "submitit" picks SLURM, and the job script
    carries $HEADLAB_SLURM's options; nothing is submitted."""
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "srun").write_text("#!/bin/sh\nexit 0\n")
    (tmp_path / "bin" / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv(sweep.SLURM_ENV, '{"partition": "cpu", "mem_gb": 4, "array_parallelism": 8}')
    ex = sweep.executor("submitit", folder=tmp_path / "%j", timeout_min=30)._submitit_executor()
    assert ex.cluster == "slurm"
    text = ex._executor._make_submission_file_text("python -m x", "uid")
    for line in ("--partition=cpu", "--time=30", "--mem=4GB", "--cpus-per-task=1", "--job-name=headlab"):
        assert f"#SBATCH {line}\n" in text
    assert "gpus" not in text and ex._executor.parameters["array_parallelism"] == 8


def test_map_order_and_pool_reuse():
    with sweep.executor("process", workers=2) as ex:
        assert ex.map(abs, range(-5, 0)) == [5, 4, 3, 2, 1]
        pool = ex._pool
        assert ex.map(abs, [-1]) == [1] and ex._pool is pool
    assert ex._pool is None
    assert sweep.executor("process", workers=1).map(abs, [-2]) == [2]  # serial, in this process
    assert sweep.executor("serial").map(abs, []) == []


# -- notebook 04's pretraining runs -----------------------------------------------------------------------
def _sinks_P():
    return SimpleNamespace(
        profile="smoke",
        tokens_per_step=64,
        pretrain_steps=4,
        lm=dict(d_model=16, n_layers=1, n_heads=2, d_mlp=32),
        pretrain_lr=3e-3,
        pretrain_warmup=1,
        pretrain_eval_every=2,
        seed=0,
        amp=False,
        eps=[0.3, 0.8],
        device="cpu",
        ctx_variant="bos_causal",
        ctx_lengths=[16, 32],
        variant_ctx=16,
        variants=["nobos_causal", "bos_causal"],
    )


def _sinks_run(P, executor):
    toks = np.random.default_rng(0).integers(0, 256, 3000)
    docs = np.repeat(np.arange(30), 100)
    w = sinks.doc_start_windows(toks, docs, 16, 4)
    trained = {}
    log = sinks.ctx_sweep(P, (toks, docs), (toks, docs), w, trained, executor=executor)
    t2 = sinks.variant_runs(P, (toks, docs), w, trained, executor=executor)
    return log.drop(columns="seconds"), t2, trained


def test_sinks_sweeps_through_executor_match_in_process():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the process workers run one thread each on two cores
    try:
        P = _sinks_P()
        ref = _sinks_run(P, None)  # default: in this process, one run after the other
        assert set(ref[2]) == {("bos_causal", 16), ("bos_causal", 32), ("nobos_causal", 16)}
        for kind in ("submitit-debug", "process"):
            got = _sinks_run(P, kind)
            pd.testing.assert_frame_equal(ref[0], got[0])
            pd.testing.assert_frame_equal(ref[1], got[1])
            assert ref[2].keys() == got[2].keys()
            for k, m in ref[2].items():
                assert not got[2][k].training
                sd = got[2][k].state_dict()
                assert all(torch.equal(v, sd[n]) for n, v in m.state_dict().items()), k
    finally:
        torch.set_num_threads(threads)


def test_sinks_default_stays_in_process(monkeypatch):
    called = []
    monkeypatch.setattr(sweep, "executor", lambda *a, **k: called.append(a))
    monkeypatch.setenv(sweep.EXECUTOR_ENV, "serial")
    P = _sinks_P()
    P.ctx_lengths = [16]
    _sinks_run(P, None)
    assert not called and os.environ[sweep.EXECUTOR_ENV] == "serial"

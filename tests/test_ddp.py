"""headlab.ddp: data-parallel pretraining through accelerate trains the same model on 1 and 2 processes.

The model is ``python -m headlab.ddp``'s tiny HeadlabLM (d_model 32, 2 layers, 4 heads, sequence 32, global
batch 8, 5 steps) on the shipped corpus bytes. One process runs under plain python, two under torchrun
(gloo on the CPU; ``accelerate launch --cpu`` starts only one process on this machine) and two through
``accelerate.notebook_launcher``; each in a fresh interpreter with OMP_NUM_THREADS=1. Observed: the per-step
losses of 1 and 2 processes agree to ~2e-7 relative (float rounding of the shard means and the all-reduce);
the test allows 1e-4.
"""

import json
import os
import socket
import subprocess
import sys

import pytest
import torch

from headlab import ddp
from headlab.data import Batches
from headlab.nn import Config, HeadlabLM
from headlab.train import TrainConfig, train

CLI = ["--steps", "5", "--d-model", "32", "--layers", "2", "--heads", "4", "--seq", "32", "--batch", "8"]
REL = 1e-4


def _env():
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR")}
    env.pop("MASTER_PORT", None)
    return {**env, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(cmd, tmp_path):
    p = subprocess.run(cmd, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-4000:]
    return p


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp1")
    _run([sys.executable, "-m", "headlab.ddp", *CLI, "--out", str(tmp / "one.json")], tmp)
    return json.loads((tmp / "one.json").read_text())


def _same_training(a: dict, b: dict):
    assert [r["step"] for r in a["losses"]] == [r["step"] for r in b["losses"]] == [1, 2, 3, 4, 5]
    assert [r["lr"] for r in a["losses"]] == [r["lr"] for r in b["losses"]]
    for x, y in zip(a["losses"], b["losses"], strict=True):
        assert y["loss"] == pytest.approx(x["loss"], rel=REL), (x, y)
    assert b["param_norm"] == pytest.approx(a["param_norm"], rel=REL)


def test_torchrun_two_cpu_processes_match_one(one_process, tmp_path):
    assert one_process["world_size"] == 1 and one_process["losses"][0]["loss"] > one_process["losses"][-1]["loss"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", "--master-addr=127.0.0.1"]
    # the README's cluster route: `torchrun -m headlab.train` (headlab.train's __main__ is headlab.ddp's CLI)
    p = _run([*cmd, f"--master-port={_free_port()}", "-m", "headlab.train", *CLI, "--out", "two.json"], tmp_path)
    two = json.loads((tmp_path / "two.json").read_text())
    assert two["world_size"] == 2 and "2 process(es), 5 steps" in p.stdout
    _same_training(one_process, two)
    worst = max(
        abs(x["loss"] - y["loss"]) / x["loss"] for x, y in zip(one_process["losses"], two["losses"], strict=True)
    )
    print(f"1 vs 2 processes: worst relative loss difference {worst:.1e}")
    assert worst < REL  # observed ~2e-7


def test_notebook_launcher_two_processes_match_one(one_process, tmp_path):
    code = (
        "import json, sys; from headlab.ddp import launch; "
        "r = launch(num_processes=2, steps=5, d_model=32, layers=2, heads=4, seq=32, batch=8); "
        "json.dump(r, open('nb.json', 'w'))"
    )
    _run([sys.executable, "-c", code], tmp_path)
    nb = json.loads((tmp_path / "nb.json").read_text())
    assert nb["world_size"] == 2
    _same_training(one_process, nb)


def test_train_ddp_one_process_is_headlab_train(tmp_path):
    """Under plain python (one process) train_ddp is headlab.train.train: the same losses, the same weights."""
    torch.manual_seed(0)
    toks = torch.randint(0, 64, (4000,)).numpy()
    cfg = Config(vocab_size=64, d_model=16, n_layers=1, n_heads=2, max_seq_len=16)
    tc = TrainConfig(steps=4, lr=3e-3, warmup=1, eval_every=2, seed=3)
    get = Batches(toks, batch=4, seq=16, seed=1)
    res = ddp.train_ddp(lambda: HeadlabLM(cfg), get, tc, progress=False)
    assert res.world_size == 1 and res.rank == 0 and len(res.losses) == 4

    torch.manual_seed(tc.seed)
    ref = HeadlabLM(cfg)
    seen = []

    def loss_fn(m, x, y):
        loss = m(x, labels=y).loss
        seen.append(loss.item())
        return loss, {}

    train(ref, get, tc, loss_fn=loss_fn, progress=False)
    assert [r["loss"] for r in res.losses] == seen
    assert all(
        torch.equal(p, q) for p, q in zip(ref.state_dict().values(), res.model.state_dict().values(), strict=True)
    )


def test_shard():
    x = torch.arange(8).view(8, 1)
    assert torch.equal(ddp.shard(x, 2, 1), x[4:])
    y, (d, none) = ddp.shard((x, (x * 2, None)), 4, 3)
    assert torch.equal(y, x[6:]) and torch.equal(d, x[6:] * 2) and none is None
    assert ddp.shard({"a": x}, 1, 0)["a"] is x
    with pytest.raises(ValueError, match="global batch 8 does not split over 3 processes"):
        ddp.shard(x, 3, 0)

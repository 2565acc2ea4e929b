"""Data-parallel pretraining through accelerate: the same script on one process, N CPU processes or N GPUs.

``train_ddp(build_model, get_batch, tc)`` is ``headlab.train.train`` with the model wrapped by
``accelerate.Accelerator`` (DistributedDataParallel when more than one process runs; gloo on CPUs, NCCL on
GPUs). Every process builds the model from the same seed (``tc.seed``), draws the same *global* batch
``get_batch(step)`` and trains on its shard of it (rows ``rank * B/N`` to ``(rank + 1) * B/N``); DDP averages
the gradients, so 1, 2 or 8 processes train the same model up to float rounding (for a mean loss over equal
shards: true of the LM loss without ignored positions). The logged loss is the global batch's, averaged over
the processes every step.

Command line (a tiny ``HeadlabLM`` on the shipped corpus bytes; the per-step losses go to ``--out`` as JSON,
written by rank 0)::

    python -m headlab.ddp --steps 200 --out loss.json                         # one process (CPU or one GPU)
    OMP_NUM_THREADS=1 torchrun --nproc-per-node=2 -m headlab.ddp --steps 200 --out loss.json   # 2 CPU procs
    torchrun --nproc-per-node=8 -m headlab.ddp --d-model 512 --layers 12 --heads 8 --seq 1024 \\
        --batch 256 --steps 2000 --mixed-precision bf16 --out loss.json       # 8 GPUs of one machine
    accelerate launch --multi_gpu --num_processes 8 -m headlab.ddp --steps 2000 --out loss.json

Bigger than one machine (e.g. 2 nodes x 8 GPUs; run on every node, ``--node-rank`` 0 and 1)::

    torchrun --nnodes=2 --nproc-per-node=8 --rdzv-backend=c10d --rdzv-endpoint=$HEAD_NODE:29500 \\
        -m headlab.ddp --batch 512 --steps 2000 --out loss.json
    # under SLURM: srun --nodes=2 --ntasks-per-node=1 torchrun --nnodes=2 --nproc-per-node=8 \\
    #     --rdzv-backend=c10d --rdzv-endpoint=$(scontrol show hostnames $SLURM_NODELIST | head -1):29500 ...

On this project's CPU machines ``accelerate launch --cpu`` started a single process, so rehearse with
``torchrun`` (``python -m torch.distributed.run`` with the venv's python). From a notebook cell (no device
touched before it): ``headlab.ddp.launch(num_processes=2, steps=50)``, which goes through
``accelerate.notebook_launcher`` and returns the same JSON record.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .train import TrainConfig, lr_at, seed_everything, train


@dataclass
class DDPRun:
    model: torch.nn.Module  # the trained model, unwrapped (identical on every process)
    losses: list[dict] = field(default_factory=list)  # per step: step, loss (global batch), lr
    log: list[dict] = field(default_factory=list)  # headlab.train.train's eval log (this process's view)
    world_size: int = 1
    rank: int = 0
    seconds: float = 0.0


def shard(batch, world_size: int, rank: int):
    """This process's rows of a global batch: tensors split along dim 0 into ``world_size`` equal parts
    (a ``ValueError`` when the batch does not divide); tuples, lists and dicts recursively; None as is."""
    if batch is None or world_size == 1:
        return batch
    if isinstance(batch, torch.Tensor):
        n = batch.shape[0]
        if n % world_size:
            raise ValueError(f"global batch {n} does not split over {world_size} processes; use a multiple of it")
        b = n // world_size
        return batch[rank * b : (rank + 1) * b]
    if isinstance(batch, (tuple, list)):
        return type(batch)(shard(x, world_size, rank) for x in batch)
    if isinstance(batch, dict):
        return {k: shard(v, world_size, rank) for k, v in batch.items()}
    raise TypeError(f"cannot shard a {type(batch).__name__}; pass shard_batches=False and shard in get_batch")


def _to(batch, device):
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, (tuple, list)):
        return type(batch)(_to(x, device) for x in batch)
    if isinstance(batch, dict):
        return {k: _to(v, device) for k, v in batch.items()}
    return batch


def train_ddp(
    build_model: Callable[[], torch.nn.Module],
    get_batch: Callable[[int], tuple],
    tc: TrainConfig,
    loss_fn: Callable | None = None,
    eval_fn: Callable[[torch.nn.Module], dict] | None = None,
    on_checkpoint: Callable[[int, torch.nn.Module], None] | None = None,
    *,
    shard_batches: bool = True,
    accelerator=None,
    mixed_precision: str = "no",
    cpu: bool | None = None,
    progress: bool = True,
    log_every: int = 0,
    desc: str = "ddp",
) -> DDPRun:
    """Train ``build_model()`` data-parallel over however many processes were launched (1 under plain python).

    ``get_batch(step) -> (x, y)`` returns the *global* batch (the same on every process: seed it by step, as
    ``headlab.data.Batches`` does); each process keeps its shard (``shard``). ``shard_batches=False``:
    ``get_batch`` returns this process's batch itself. ``loss_fn``, ``eval_fn``, ``on_checkpoint``: as in
    ``headlab.train.train`` (the last two see the unwrapped model; eval runs on every process, on its own
    data). ``mixed_precision``: "no" or "bf16" (``train`` calls ``loss.backward()`` itself, so fp16's loss
    scaling is not available). ``cpu``: None uses the GPUs when CUDA is available, else CPU processes over
    gloo (accelerate only treats a torchrun launch as multi-process on CPUs when asked). ``log_every``: print the global loss every so many steps on rank 0."""
    from accelerate import Accelerator

    if cpu is None:
        cpu = not torch.cuda.is_available()
    acc = accelerator or Accelerator(cpu=cpu, mixed_precision=mixed_precision)
    if acc.mixed_precision == "fp16":
        raise ValueError("train_ddp supports mixed_precision 'no' or 'bf16' (fp16 needs loss scaling)")
    n, rank = acc.num_processes, acc.process_index
    seed_everything(tc.seed)  # the same initial weights on every process (DDP also broadcasts rank 0's)
    model = acc.prepare(build_model())
    base_loss = loss_fn or (lambda m, x, y: (m(x, labels=y).loss, {}))
    losses: list[dict] = []
    t0 = time.time()

    def local_batch(step):
        batch = get_batch(step)
        return _to(shard(batch, n, rank) if shard_batches else batch, acc.device)

    def loss_and_log(m, x, y):
        loss, extra = base_loss(m, x, y)
        step = len(losses)
        g = acc.reduce(loss.detach().float().clone(), "mean") if n > 1 else loss.detach().float()
        losses.append({"step": step + 1, "loss": g.item(), "lr": lr_at(step, tc)})
        if log_every and (step + 1) % log_every == 0:
            acc.print(f"step {step + 1}: loss {g.item():.4f} ({n} process{'es' if n > 1 else ''})")
        return loss, extra

    log = train(
        model,
        local_batch,
        tc,
        loss_fn=loss_and_log,
        eval_fn=(lambda m: eval_fn(acc.unwrap_model(m))) if eval_fn is not None else None,
        on_checkpoint=(lambda s, m: on_checkpoint(s, acc.unwrap_model(m))) if on_checkpoint is not None else None,
        progress=progress and acc.is_main_process,
        desc=desc,
    )
    acc.wait_for_everyone()
    return DDPRun(acc.unwrap_model(model), losses, log, n, rank, time.time() - t0)


# -- the command line: a tiny HeadlabLM on the shipped corpus -------------------------------------------------
def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m headlab.ddp",
        description="Data-parallel pretraining of a small HeadlabLM on the shipped corpus bytes "
        "(1 process under python; N under torchrun --nproc-per-node=N or accelerate launch).",
    )
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--out", type=Path, default=None, help="write the per-step loss log here (JSON, rank 0)")
    p.add_argument("--d-model", type=int, default=32)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--seq", type=int, default=32, help="sequence length")
    p.add_argument("--batch", type=int, default=8, help="global batch (sequences per step, over all processes)")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--seed", type=int, default=0, help="initialisation seed")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the batch windows")
    p.add_argument("--mixed-precision", choices=["no", "bf16"], default="no")
    p.add_argument("--log-every", type=int, default=0, help="print the loss every so many steps (rank 0)")
    p.add_argument("--progress", action="store_true", help="a progress bar on rank 0")
    return p


def run(args: argparse.Namespace) -> dict:
    """Train per ``args`` (``parser()``'s namespace); returns the record that rank 0 writes to ``args.out``."""
    from .data import Batches, ByteTokenizer, corpus_tokens, split_tokens
    from .nn import Config, HeadlabLM

    tokens, _ = corpus_tokens()
    train_tokens, _ = split_tokens(tokens, 0.05)
    cfg = Config(
        vocab_size=ByteTokenizer.vocab_size,
        d_model=args.d_model,
        n_layers=args.layers,
        n_heads=args.heads,
        max_seq_len=args.seq,
    )
    tc = TrainConfig(steps=args.steps, lr=args.lr, warmup=args.warmup, eval_every=args.steps, seed=args.seed)
    res = train_ddp(
        lambda: HeadlabLM(cfg),
        Batches(train_tokens, batch=args.batch, seq=args.seq, seed=args.data_seed),
        tc,
        mixed_precision=args.mixed_precision,
        progress=args.progress,
        log_every=args.log_every,
    )
    with torch.no_grad():
        norm = torch.sqrt(sum((p.detach().float() ** 2).sum() for p in res.model.parameters())).item()
    record = {
        "world_size": res.world_size,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "losses": res.losses,
        "param_norm": norm,
        "n_params": sum(p.numel() for p in res.model.parameters()),
        "seconds": res.seconds,
        "torch_threads": torch.get_num_threads(),
    }
    if res.rank == 0:
        if args.out is not None:
            out = Path(args.out)
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_suffix(out.suffix + ".tmp")
            tmp.write_text(json.dumps(record, indent=1))
            tmp.replace(out)
        last = res.losses[-1]["loss"] if res.losses else float("nan")
        print(f"{res.world_size} process(es), {args.steps} steps: final loss {last:.4f} ({res.seconds:.1f} s)")
    return record


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(num_processes: int = 2, out: str | Path | None = None, **options) -> dict:
    """From a notebook: ``run`` over ``num_processes`` processes through ``accelerate.notebook_launcher``
    (no CUDA call may precede it in the kernel). ``options``: the command line's, with underscores
    (``d_model=64, steps=50``). Returns rank 0's record (read back from ``out``, default a temporary file)."""
    import tempfile

    from accelerate import notebook_launcher

    argv = []
    for k, v in options.items():
        flag = "--" + k.replace("_", "-")
        argv += [flag] if v is True else ([] if v is False else [flag, str(v)])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(out) if out is not None else Path(tmp) / "ddp.json"
        args = parser().parse_args([*argv, "--out", str(path)])
        notebook_launcher(run, args=(args,), num_processes=num_processes, use_port=str(_free_port()))
        return json.loads(path.read_text())


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if "OMP_NUM_THREADS" not in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        torch.set_num_threads(1)  # N CPU processes on one machine: one thread each unless told otherwise
    run(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

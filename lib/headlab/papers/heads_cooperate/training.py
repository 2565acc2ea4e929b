"""One training run, its on-disk cache key, and the saved final weights."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ...nn import HeadlabLM
from ...train import TrainConfig, train
from .model import correct, decision_logits, loss, make_model
from .task import EOS, Batch, TaskSpec, test_set, train_batch


# -- training -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunSpec:
    n_heads: int
    seed: int
    steps: int
    batch: int = 128
    lr: float = 3e-3
    d_model: int = 32
    eval_every: int = 25
    n_eval: int = 1000
    grad_clip: float = 1.0
    min_lr_ratio: float = 1.0  # 1.0: constant learning rate; < 1: cosine decay to lr * min_lr_ratio
    init: str = "normal"  # "normal": N(0, 0.02²); "torch": PyTorch's default initialisation
    attn_norm: bool = True  # the learnable RMSNorm in front of attention
    ckpt_steps: tuple[int, ...] = ()  # keep the weights at these steps (res["checkpoints"])

    def __post_init__(self):
        object.__setattr__(self, "ckpt_steps", tuple(int(s) for s in self.ckpt_steps))
        if any(s <= 0 or s > self.steps for s in self.ckpt_steps):
            raise ValueError(f"ckpt_steps must lie in 1..steps={self.steps}, not {self.ckpt_steps}")


def evaluate(model: HeadlabLM, b: Batch, spec: TaskSpec) -> dict:
    with torch.no_grad():
        logits = decision_logits(model, b)
        ok = correct(logits, b.y, spec)
        if spec.variant == "B":  # binary decision loss: P(EOS) vs the rest, restricted to the decision
            p_eos = logits.log_softmax(-1)[:, EOS].exp().clamp(1e-6, 1 - 1e-6)
            q = spec.end_prob
            dec_loss = F.binary_cross_entropy(p_eos, b.y.float() * q).item()
        else:
            dec_loss = F.cross_entropy(logits, b.y).item()
    return {
        "test_loss": dec_loss,
        "test_acc": ok.float().mean().item(),
        "near_tie_acc": ok[b.near_tie].float().mean().item(),
    }


def train_run(spec: TaskSpec, run: RunSpec, test: Batch | None = None, progress: bool = False) -> dict:
    """Train one model (deterministic in ``run.seed``). Returns {"state_dict", "log", "seconds", ...}.

    Data: a fresh batch every step from ``numpy.random.default_rng(seed)``; the curve is evaluated
    on ``test`` (default: ``run.n_eval`` strings from seed + 10 000)."""
    torch.manual_seed(run.seed)
    model = _model_of(spec, run)
    rng = np.random.default_rng(run.seed)
    test = test if test is not None else test_set(spec, run.n_eval, run.seed + 10_000)
    tc = TrainConfig(
        steps=run.steps,
        lr=run.lr,
        min_lr_ratio=run.min_lr_ratio,
        warmup=0,
        weight_decay=0.0,
        betas=(0.9, 0.999),
        grad_clip=run.grad_clip,
        eval_every=run.eval_every,
        checkpoint_every=math.gcd(*run.ckpt_steps) if run.ckpt_steps else None,
        seed=run.seed,
    )
    ckpts: dict[int, dict] = {}

    def keep(step, m):
        if step in run.ckpt_steps:
            ckpts[step] = {k: v.detach().clone() for k, v in m.state_dict().items()}

    t0, c0 = time.time(), time.process_time()
    log = train(
        model,
        lambda step: (train_batch(rng, run.batch, spec), None),
        tc,
        loss_fn=lambda m, b, _y: (loss(m, b, spec), {}),
        eval_fn=lambda m: evaluate(m, test, spec),
        on_checkpoint=keep,
        progress=progress,
        desc=f"H={run.n_heads} seed={run.seed}",
    )
    return {
        "spec": asdict(spec),
        "run": asdict(run),
        "state_dict": {k: v.clone() for k, v in model.state_dict().items()},
        "log": log,
        "checkpoints": ckpts,
        "seconds": time.time() - t0,
        "cpu_seconds": time.process_time() - c0,
    }


def _cache_path(cache_dir, spec: TaskSpec, run: RunSpec):
    import hashlib
    import json
    from pathlib import Path

    key = hashlib.sha1(json.dumps([asdict(spec), asdict(run)], sort_keys=True).encode()).hexdigest()[:16]
    return Path(cache_dir) / f"{spec.variant}_H{run.n_heads}_s{run.seed}_{key}.pt"


def _model_of(spec: TaskSpec, run: RunSpec) -> HeadlabLM:
    return make_model(run.n_heads, spec, run.d_model, seed=run.seed, init=run.init, attn_norm=run.attn_norm)


def load_run(res: dict, step: int | None = None) -> HeadlabLM:
    """The trained model of a run (``step``: one of its checkpoints instead of the final weights)."""
    spec, run = TaskSpec(**res["spec"]), RunSpec(**res["run"])
    model = _model_of(spec, run)
    model.load_state_dict(res["state_dict"] if step is None else res["checkpoints"][step])
    return model.eval()


def save_weights(runs: dict, path) -> None:
    """The final weights of trained runs, ``{"A_H4_s0": {"spec", "run", "state_dict"}, ...}``, in one file
    (written atomically); ``load_weights`` + ``load_run`` rebuild each model without retraining."""
    from pathlib import Path

    out = {
        "_".join(str(x) for x in (k[0], f"H{k[1]}", f"s{k[2]}", *k[3:])): {
            "spec": r["spec"],
            "run": {**r["run"], "ckpt_steps": list(r["run"].get("ckpt_steps", ()))},
            "state_dict": {n: t.detach().cpu().contiguous() for n, t in r["state_dict"].items()},
        }
        for k, r in runs.items()
    }
    path = Path(path)
    tmp = path.with_suffix(".tmp")
    torch.save(out, tmp)
    tmp.replace(path)


def load_weights(path) -> dict:
    return torch.load(path, weights_only=True)

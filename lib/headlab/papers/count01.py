"""Count01: do attention heads compete or cooperate during counting? (Zsámboki et al., arXiv 2502.06923)

Everything the notebook ``03_heads_cooperate`` computes, as plain functions (no plotting).

The paper's code is not released and its exact task format could not be read, so the format here is a
**reconstruction** (see ``TaskSpec``): a string of ``0``/``1`` digits with ``2`` as noise; the label is
``#1 > #0`` (ties are negatives). Three formats:

* ``"A"``    ``BOS x1..xn EOS``; at the ``EOS`` position the model must output the token ``1`` (more ones)
             or ``0``; loss only there. Syntax = the argmax over the whole vocabulary is ``0`` or ``1``.
* ``"A_LM"`` as A, plus a next-token loss on every digit position (weight ``lm_weight``).
* ``"B"``    end-of-sentence membership: a plain language model over the sentences of
             ``L = {w : #1(w) > #0(w)}``. A sentence is generated digit by digit; whenever the prefix is in
             ``L`` it ends (``EOS``) with probability ``end_prob``. The decision at a prefix is whether the
             model's argmax is ``EOS``: correct iff it is ``EOS`` exactly when ``#1 > #0`` (and a digit
             otherwise). Ending the sentence correctly *is* the syntax here.

The model is a one-layer attention-only :class:`headlab.nn.HeadlabLM` without positions (NoPE) and
without a final norm, so the logits at the decision position are exactly
``W_U (r + sum_h o_h)`` with ``r`` the token embedding and ``o_h = W_O[:, h] z_h`` head h's output.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .. import heads
from ..nn import Config, HeadlabLM
from ..train import TrainConfig, train


def _tensor(a) -> torch.Tensor:
    """A numpy array as a contiguous CPU tensor (no copy when already contiguous)."""
    return torch.from_numpy(np.ascontiguousarray(a))


# -- vocabulary ----------------------------------------------------------------------------------
ZERO, ONE, TWO, BOS, EOS, PAD = range(6)
VOCAB = 6
TOKEN_NAMES = ["0", "1", "2", "BOS", "EOS", "PAD"]
VARIANTS = ("A", "A_LM", "B")


@dataclass(frozen=True)
class TaskSpec:
    """The Count01 format (a reconstruction: every default is our choice, not the paper's)."""

    variant: str = "A"
    l_min: int = 1
    l_max: int = 16
    noise: float = 0.3  # probability of a 2 at each position
    lm_weight: float = 1.0  # A_LM: weight of the next-token loss on digit positions
    end_prob: float = 0.5  # B: probability of ending when the prefix is in L (> (1-q)(1-noise)/2 so EOS is the argmax)
    b_targets: str = "exact"  # B: "exact" next-token distributions on i.i.d. prefixes, or "sampled" sentences of L

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, not {self.variant!r}")
        if not 1 <= self.l_min <= self.l_max:
            raise ValueError("need 1 <= l_min <= l_max")
        if self.b_targets not in ("exact", "sampled"):
            raise ValueError("b_targets must be 'exact' or 'sampled'")

    @property
    def seq_len(self) -> int:
        return self.l_max + 2  # BOS + digits + EOS


@dataclass
class Batch:
    ids: torch.Tensor  # [n, T] long, right-padded with PAD
    pos: torch.Tensor  # [n] decision position (EOS for A, last digit for B)
    y: torch.Tensor  # [n] long, 1 iff #1 > #0 in the decided prefix
    n0: torch.Tensor
    n1: torch.Tensor
    n2: torch.Tensor
    targets: torch.Tensor | None = None  # [n, T] next-token targets for the LM losses (-100 = none)

    def __len__(self):
        return len(self.y)

    def subset(self, mask) -> Batch:
        m = torch.as_tensor(mask, dtype=torch.bool)
        return Batch(
            *(
                None if t is None else t[m]
                for t in (self.ids, self.pos, self.y, self.n0, self.n1, self.n2, self.targets)
            )
        )

    @property
    def near_tie(self) -> torch.Tensor:
        return (self.n1 - self.n0).abs() <= 1


def _digits(rng: np.random.Generator, n: int, length: int, noise: float) -> np.ndarray:
    u = rng.random((n, length))
    d = np.where(u < noise, TWO, np.where(u < noise + (1 - noise) / 2, ZERO, ONE))
    return d.astype(np.int64)


def sample_strings(rng: np.random.Generator, n: int, spec: TaskSpec) -> Batch:
    """``n`` i.i.d. strings, lengths uniform in [l_min, l_max], each digit 2 w.p. ``noise``, else 0/1
    equally. Format A/A_LM: ``BOS x EOS``, decided at EOS; format B: ``BOS x``, decided at the last digit.
    This is the test-set distribution of every format (and the training distribution of A and A_LM)."""
    L = rng.integers(spec.l_min, spec.l_max + 1, size=n)
    d = _digits(rng, n, spec.l_max, spec.noise)
    T = spec.seq_len
    ids = np.full((n, T), PAD, dtype=np.int64)
    ids[:, 0] = BOS
    valid = np.arange(spec.l_max)[None] < L[:, None]
    ids[:, 1 : spec.l_max + 1] = np.where(valid, d, PAD)
    n0 = ((d == ZERO) & valid).sum(1)
    n1 = ((d == ONE) & valid).sum(1)
    n2 = ((d == TWO) & valid).sum(1)
    y = (n1 > n0).astype(np.int64)
    if spec.variant == "B":
        pos = L.copy()  # last digit
        targets = None
    else:
        ids[np.arange(n), L + 1] = EOS
        pos = L + 1
        targets = np.full((n, T), -100, dtype=np.int64)
        targets[np.arange(n), pos] = y  # the answer token at EOS
        if spec.variant == "A_LM":  # next token after BOS and after every digit (EOS after the last)
            nxt = ids[:, 1:]
            lm = np.arange(T - 1)[None] <= L[:, None]
            targets[:, :-1] = np.where(lm, nxt, -100)
            targets[np.arange(n), pos] = y
    return Batch(
        _tensor(ids),
        _tensor(pos),
        _tensor(y),
        _tensor(n0),
        _tensor(n1),
        _tensor(n2),
        None if targets is None else _tensor(targets),
    )


def sample_sentences_B(rng: np.random.Generator, n: int, spec: TaskSpec) -> Batch:
    """Training sentences of format B: the language L = {w : #1 > #0} generated left to right. After
    each digit, a prefix in L ends with probability ``end_prob``; sentences that reach ``l_max`` digits
    are cut there (their last target is the next digit the generator would have drawn). Targets are
    the next tokens at every position (a plain LM loss). ``y``/``pos`` describe the final prefix."""
    T = spec.seq_len
    d = _digits(rng, n, spec.l_max + 1, spec.noise)
    stop_u = rng.random((n, spec.l_max))
    diff = np.cumsum((d[:, : spec.l_max] == ONE).astype(int) - (d[:, : spec.l_max] == ZERO), axis=1)
    can_end = diff > 0  # prefix of length t+1 is in L
    ends = can_end & (stop_u < spec.end_prob)
    ends[:, : spec.l_min - 1] = False
    has_end = ends.any(1)
    L = np.where(has_end, ends.argmax(1) + 1, spec.l_max)  # number of digits
    ids = np.full((n, T), PAD, dtype=np.int64)
    ids[:, 0] = BOS
    valid = np.arange(spec.l_max)[None] < L[:, None]
    ids[:, 1 : spec.l_max + 1] = np.where(valid, d[:, : spec.l_max], PAD)
    ids[np.arange(n)[has_end], L[has_end] + 1] = EOS
    targets = np.full((n, T), -100, dtype=np.int64)
    lm = np.arange(T - 1)[None] <= L[:, None]  # positions 0..L predict the next token
    targets[:, :-1] = np.where(lm, ids[:, 1:], -100)
    cut = ~has_end  # truncated sentences: the next token is the generator's next digit
    targets[np.arange(n)[cut], L[cut]] = d[cut, spec.l_max]
    n0 = ((d[:, : spec.l_max] == ZERO) & valid).sum(1)
    n1 = ((d[:, : spec.l_max] == ONE) & valid).sum(1)
    n2 = ((d[:, : spec.l_max] == TWO) & valid).sum(1)
    return Batch(
        _tensor(ids),
        _tensor(L),
        _tensor((n1 > n0).astype(np.int64)),
        _tensor(n0),
        _tensor(n1),
        _tensor(n2),
        _tensor(targets),
    )


def train_batch(rng: np.random.Generator, n: int, spec: TaskSpec) -> Batch:
    if spec.variant == "B" and spec.b_targets == "sampled":
        return sample_sentences_B(rng, n, spec)
    return sample_strings(rng, n, spec)


def next_token_dist_B(b: Batch, spec: TaskSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact next-token distribution of the language L (format B) after every prefix of ``b``'s
    strings: ``[n, T, vocab]`` and a ``[n, T]`` mask of the positions that have one (BOS and digits).
    After a prefix in L: EOS w.p. end_prob, else a digit; otherwise a digit (2 w.p. noise, 0/1 equally)."""
    ids = b.ids
    n, T = ids.shape
    diff = torch.cumsum((ids == ONE).long() - (ids == ZERO).long(), dim=1)  # after position t
    in_L = diff > 0
    q, rho = spec.end_prob, spec.noise
    digit = torch.tensor([(1 - rho) / 2, (1 - rho) / 2, rho, 0, 0, 0])
    eos = torch.zeros(VOCAB)
    eos[EOS] = 1.0
    dist = torch.where(in_L[..., None], q * eos + (1 - q) * digit, digit.expand(n, T, VOCAB))
    mask = torch.arange(T)[None] <= b.pos[:, None]
    return dist, mask


def test_set(spec: TaskSpec, n: int, seed: int) -> Batch:
    """The fixed held-out set: i.i.d. strings from their own generator (``seed`` should differ from
    every training seed; the notebook uses ``seed + 10_000``). Near-ties: ``batch.near_tie``."""
    return sample_strings(np.random.default_rng(seed), n, spec)


def describe(b: Batch) -> dict:
    """Class balance and tie statistics of a set."""
    return {
        "n": len(b),
        "positive_rate": b.y.float().mean().item(),
        "tie_rate": (b.n1 == b.n0).float().mean().item(),
        "near_tie_rate": b.near_tie.float().mean().item(),
        "mean_length": (b.n0 + b.n1 + b.n2).float().mean().item(),
    }


# -- model ---------------------------------------------------------------------------------------
INITS = ("normal", "torch")


def make_model(
    n_heads: int,
    spec: TaskSpec,
    d_model: int = 32,
    pos_emb: str = "none",
    seed: int = 0,
    init: str = "normal",
    attn_norm: bool = True,
) -> HeadlabLM:
    """One layer, attention only, ``n_heads`` heads of size d_model / n_heads, no final norm, untied
    unembedding: the logits are exactly linear in the per-head outputs.

    Two choices the paper does not state, kept switchable for the initialisation ablation:
    ``init="normal"`` draws every weight from N(0, 0.02²) (GPT-2's, and HeadlabLM's default; o_proj at
    0.02/√2), ``init="torch"`` uses PyTorch's own defaults (Kaiming-uniform linears, N(0, 1) embeddings);
    ``attn_norm=False`` removes the learnable RMSNorm in front of attention (the residual stays exact)."""
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, not {init!r}")
    torch.manual_seed(seed)
    cfg = Config(
        vocab_size=VOCAB,
        d_model=d_model,
        n_layers=1,
        n_heads=n_heads,
        pos_emb=pos_emb,
        attn_only=True,
        final_norm=False,
        tie_embeddings=False,
        max_seq_len=spec.seq_len,
        attn_impl="sdpa",
    )
    model = HeadlabLM(cfg)
    if init == "torch":
        for m in model.modules():
            if isinstance(m, (torch.nn.Linear, torch.nn.Embedding)):
                m.reset_parameters()
    if not attn_norm:
        model.layers[0].input_layernorm = torch.nn.Identity()
    return model


def decision_logits(model: HeadlabLM, b: Batch) -> torch.Tensor:
    h = model.hidden(b.ids)
    return model.lm_head(h[torch.arange(len(b)), b.pos])


def loss(model: HeadlabLM, b: Batch, spec: TaskSpec) -> torch.Tensor:
    if spec.variant == "A":  # answer token at EOS only
        return F.cross_entropy(decision_logits(model, b), b.y)
    if spec.variant == "A_LM":
        logits = model(b.ids).logits
        dec = torch.zeros_like(b.targets, dtype=torch.bool)
        dec[torch.arange(len(b)), b.pos] = True
        ce = F.cross_entropy(logits.flatten(0, 1), b.targets.flatten(), ignore_index=-100, reduction="none").view_as(
            b.targets.float()
        )
        lm_mask = (b.targets != -100) & ~dec
        return ce[dec].mean() + spec.lm_weight * ce[lm_mask].mean()
    if spec.b_targets == "sampled":
        return model(b.ids, labels=b.targets).loss  # B: plain LM over sampled sentences of L
    dist, mask = next_token_dist_B(b, spec)  # B: LM loss against the exact next-token distribution
    logp = model(b.ids).logits.log_softmax(-1)
    return -(dist * logp).sum(-1)[mask].mean()


def predict(logits: torch.Tensor, spec: TaskSpec) -> dict:
    """Decode decision-position logits ``[n, vocab]`` over the full vocabulary: the predicted label,
    and whether the argmax is a syntactically valid continuation."""
    a = logits.argmax(-1)
    if spec.variant == "B":
        return {"label": (a == EOS).long(), "valid": (a <= TWO) | (a == EOS)}
    return {"label": (a == ONE).long(), "valid": a <= ONE}


def correct(logits: torch.Tensor, y: torch.Tensor, spec: TaskSpec) -> torch.Tensor:
    p = predict(logits, spec)
    return (p["label"] == y) & p["valid"]


def decision_direction(model: HeadlabLM, spec: TaskSpec) -> torch.Tensor:
    """u with ``u . x`` the decision logit difference: logit(1) - logit(0) for A, and
    logit(EOS) - mean(logit(0), logit(1)) for B."""
    W = model.lm_head.weight.detach()
    if spec.variant == "B":
        return W[EOS] - 0.5 * (W[ZERO] + W[ONE])
    return W[ONE] - W[ZERO]


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


def train_many(jobs: list[tuple], workers: int = 1, progress: bool = True, cache_dir=None) -> list[dict]:
    """Train every job, in order: ``(spec, run)`` or ``(spec, run, sets)``, where ``sets`` (the keyword
    arguments of ``eval_sets``) asks for the full analysis (``analyse``) of the trained model, stored in
    ``result["analysis"]``. ``workers > 1`` runs that many single-threaded processes (fork); results are
    identical either way, since each run seeds its own RNGs. ``cache_dir``: keep each trained run there
    (keyed by its full spec) and reuse it on the next call."""
    from ..train import progress_bar

    args = [(j[0], j[1], cache_dir, j[2] if len(j) > 2 else None) for j in jobs]
    if workers <= 1:
        return [_train_worker(a) for a in progress_bar(args, "Count01 runs", progress)]
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    # fork is fast and needs no re-import, but a process that has initialised CUDA cannot fork workers
    # that touch torch; fall back to spawn then (same results: each run seeds its own RNGs)
    ctx = mp.get_context("spawn" if torch.cuda.is_initialized() else "fork")
    with ProcessPoolExecutor(workers, mp_context=ctx) as ex:
        return list(progress_bar(ex.map(_train_worker, args), "Count01 runs", progress, total=len(args)))


def _model_of(spec: TaskSpec, run: RunSpec) -> HeadlabLM:
    return make_model(run.n_heads, spec, run.d_model, seed=run.seed, init=run.init, attn_norm=run.attn_norm)


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


def load_run(res: dict, step: int | None = None) -> HeadlabLM:
    """The trained model of a run (``step``: one of its checkpoints instead of the final weights)."""
    spec, run = TaskSpec(**res["spec"]), RunSpec(**res["run"])
    model = _model_of(spec, run)
    model.load_state_dict(res["state_dict"] if step is None else res["checkpoints"][step])
    return model.eval()


# -- per-head decomposition ----------------------------------------------------------------------
@dataclass
class Decomp:
    """Everything at the decision position of one evaluation set."""

    logits: torch.Tensor  # [n, vocab] the model's own logits
    r: torch.Tensor  # [n, d_model] residual before attention (token embedding)
    o: torch.Tensor  # [n, H, d_model] per-head outputs written into the residual stream
    d: torch.Tensor  # [n, H] per-head decision scores u . o_h
    base: torch.Tensor  # [n] u . r
    row: torch.Tensor  # [n, H, T] attention of the decision query
    max_err: float  # max |logit diff - base - sum_h d_h|
    max_logit_err: float  # max |logits - W_U (r + sum_h o_h)|


def decompose(model: HeadlabLM, b: Batch, spec: TaskSpec, dtype=torch.float64) -> Decomp:
    """Per-head outputs at the decision position. Runs a copy of the model in ``dtype`` (float64 by
    default, so the identity check measures the decomposition, not float32 rounding of large logits)."""
    import copy

    model = copy.deepcopy(model).to(dtype)
    model.set_attn_implementation("eager")
    n = len(b)
    ar = torch.arange(n)
    hd = heads.Heads(model)
    with torch.no_grad(), heads.capture(model, z=True, pattern=True) as cache:
        logits = model(b.ids).logits[ar, b.pos]
    z = cache.z[0][ar, b.pos]  # [n, H, d_head]
    W_O = hd.o_proj(0).weight.detach().view(model.config.d_model, hd.n_heads, hd.d_head)  # [D, H, dh]
    o = torch.einsum("nhe,dhe->nhd", z, W_O)
    with torch.no_grad():
        r = model.embed_tokens(b.ids[ar, b.pos])
        if model.pos is not None:
            r = r + model.pos(b.pos)
    u = decision_direction(model, spec)
    W_U = model.lm_head.weight.detach()
    d = o @ u
    base = r @ u
    recon = (r + o.sum(1)) @ W_U.T
    if spec.variant == "B":
        ld = logits[:, EOS] - 0.5 * (logits[:, ZERO] + logits[:, ONE])
    else:
        ld = logits[:, ONE] - logits[:, ZERO]
    err = (ld - base - d.sum(1)).abs().max().item()
    row = cache.pattern[0][ar, :, b.pos]  # [n, H, T]
    return Decomp(*(t.float() for t in (logits, r, o, d, base, row)), err, (logits - recon).abs().max().item())


# -- metrics --------------------------------------------------------------------------------------
def roc_auc(score, y) -> float:
    """Mann-Whitney AUC of ``score`` against binary ``y`` (ties count one half). Signed: < 0.5 means
    the score ranks the negatives higher."""
    s, y = np.asarray(score, dtype=np.float64), np.asarray(y).astype(bool)
    pos, neg = s[y], s[~y]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    ss = s[order]
    i = 0
    while i < len(s):  # average ranks over ties
        j = i
        while j + 1 < len(s) and ss[j + 1] == ss[i]:
            j += 1
        ranks[order[i : j + 1]] = 0.5 * (i + j) + 1
        i = j + 1
    return float((ranks[y].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def best_threshold_acc(score, y) -> float:
    """Separation accuracy: the best accuracy of any rule ``score > t`` or ``score < t`` (sign-agnostic),
    computed exactly over all thresholds between distinct sorted scores."""
    s, y = np.asarray(score, dtype=np.float64), np.asarray(y).astype(bool)
    n = len(s)
    order = np.argsort(s, kind="mergesort")
    ss, yy = s[order], y[order]
    # predict positive for score > t: t below index k (k items below). acc(k) = neg_below + pos_above
    neg_below = np.concatenate([[0], np.cumsum(~yy)])
    pos_above = yy.sum() - np.concatenate([[0], np.cumsum(yy)])
    acc = (neg_below + pos_above) / n
    # only cut between distinct values
    cut_ok = np.concatenate([[True], ss[1:] != ss[:-1], [True]])
    acc = acc[cut_ok]
    return float(max(acc.max(), (1 - acc).max()))


def head_metrics(dec: Decomp, model: HeadlabLM, b: Batch, spec: TaskSpec) -> list[dict]:
    """Per head: l-acc (this head alone, others zero-ablated, direct path kept, argmax over the whole
    vocabulary), l_syntax (that argmax is a valid continuation), l-acc×H (the head scaled by H),
    ROC AUC of d_h, s-acc of d_h, and the attention signature w01, w02 (ratios of the mean weight on
    one 1 / one 2 to the mean weight on one 0) plus the mass on BOS and on the decision token."""
    W_U = model.lm_head.weight.detach()
    H = dec.o.shape[1]
    y = b.y
    rows = []
    ids = b.ids
    is0, is1, is2 = (ids == ZERO)[:, None], (ids == ONE)[:, None], (ids == TWO)[:, None]
    self_mask = torch.zeros_like(ids, dtype=torch.bool)
    self_mask[torch.arange(len(b)), b.pos] = True
    for h in range(H):
        alone = (dec.r + dec.o[:, h]) @ W_U.T
        scaled = (dec.r + H * dec.o[:, h]) @ W_U.T
        row = dec.row[:, h]

        def per_tok(m, row=row):  # called within this iteration only
            m = m[:, 0]
            cnt = m.sum(1)
            return torch.where(cnt > 0, (row * m).sum(1) / cnt.clamp(min=1), torch.nan)

        a0, a1, a2 = per_tok(is0), per_tok(is1), per_tok(is2)
        rows.append(
            {
                "head": h,
                "l_acc": correct(alone, y, spec).float().mean().item(),
                "l_syntax": predict(alone, spec)["valid"].float().mean().item(),
                "l_acc_xH": correct(scaled, y, spec).float().mean().item(),
                "auc": roc_auc(dec.d[:, h].numpy(), y.numpy()),
                "s_acc": best_threshold_acc(dec.d[:, h].numpy(), y.numpy()),
                "w01": float(np.nanmedian((a1 / a0).numpy())),
                "w02": float(np.nanmedian((a2 / a0).numpy())),
                "bos_mass": (row * (ids == BOS)).sum(1).mean().item(),
                "self_mass": (row * self_mask).sum(1).mean().item(),
                "mass_0": (row * is0[:, 0]).sum(1).mean().item(),
                "mass_1": (row * is1[:, 0]).sum(1).mean().item(),
                "mass_2": (row * is2[:, 0]).sum(1).mean().item(),
                "d_std": dec.d[:, h].std().item(),
            }
        )
    return rows


# -- inert heads ------------------------------------------------------------------------------------
INERT_FRAC = 0.01  # a head is inert when the std of its decision score is below 1 % of its model's largest


def inert_mask(d: torch.Tensor, frac: float = INERT_FRAC) -> torch.Tensor:
    """``d`` ``[n, H]`` per-head decision scores -> ``[H]`` bool, True for an inert head: one whose score
    barely moves over the inputs (std below ``frac`` of the model's largest). Such a head writes a near-
    constant vector: it adds an offset, it does not count."""
    sd = d.std(0)
    return sd < frac * sd.max()


# -- aggregation ------------------------------------------------------------------------------------
def logreg_acc(d_train, y_train, d_test, y_test) -> float:
    """Logistic regression of the label on the per-head scores (fit on a separate sample)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    sc = StandardScaler().fit(d_train)
    clf = LogisticRegression(C=100.0, max_iter=2000).fit(sc.transform(d_train), y_train)
    return float((clf.predict(sc.transform(d_test)) == np.asarray(y_test)).mean())


def aggregation(dec: Decomp, model: HeadlabLM, b: Batch, spec: TaskSpec, dec_fit: Decomp, b_fit: Batch) -> dict:
    """Learned vs uniform aggregation of the heads.

    * ``model_acc``: the model (its own, learned weighting through W_O and W_U);
    * ``logreg_acc``: logistic regression on (d_1..d_H), fit on ``dec_fit``;
    * ``uniform_std_best_acc``: each d_h standardised (sign flipped if its AUC < 0.5), summed with equal
      weights, best threshold (score-level uniform ensemble);
    * ``uniform_vocab_acc`` / ``uniform_vocab_syntax``: every head's whole output rescaled to the same
      decision-score std (their mean, so the summed scale is kept), decoded by the model's own
      unembedding over the full vocabulary, no threshold tuning (vocabulary-level uniform ensemble);
    * ``uniform_active_acc`` / ``uniform_active_syntax``: the same over the heads that are not inert
      (``inert_mask`` on the fit sample); an inert head keeps its own output, unscaled. Rescaling an inert
      head to the common std multiplies a near-constant vector by 100× or more, so its offset decides
      the answer: this variant asks the paper's question of the heads that do vary;
    * ``n_inert``: the number of inert heads.
    """
    W_U = model.lm_head.weight.detach()
    y = b.y
    d, df = dec.d.numpy(), dec_fit.d.numpy()
    mu, sd = df.mean(0), df.std(0) + 1e-12
    sign = np.array([1.0 if roc_auc(df[:, h], b_fit.y.numpy()) >= 0.5 else -1.0 for h in range(d.shape[1])])
    uni = (((d - mu) / sd) * sign).sum(1)
    std = dec_fit.d.std(0)
    c = std.mean() / (std + 1e-12)
    vocab = (dec.r + (dec.o * c[None, :, None]).sum(1)) @ W_U.T
    inert = inert_mask(dec_fit.d)
    act = std[~inert]
    c_act = torch.where(inert, torch.ones_like(std), act.mean() / (std + 1e-12))
    active = (dec.r + (dec.o * c_act[None, :, None]).sum(1)) @ W_U.T
    return {
        "model_acc": correct(dec.logits, y, spec).float().mean().item(),
        "logreg_acc": logreg_acc(df, b_fit.y.numpy(), d, y.numpy()),
        "uniform_std_best_acc": best_threshold_acc(uni, y.numpy()),
        "uniform_vocab_acc": correct(vocab, y, spec).float().mean().item(),
        "uniform_vocab_syntax": predict(vocab, spec)["valid"].float().mean().item(),
        "model_syntax": predict(dec.logits, spec)["valid"].float().mean().item(),
        "uniform_active_acc": correct(active, y, spec).float().mean().item(),
        "uniform_active_syntax": predict(active, spec)["valid"].float().mean().item(),
        "n_inert": int(inert.sum()),
    }


# -- attention interventions at the decision position ----------------------------------------------
def edit_row(
    row: torch.Tensor, ids: torch.Tensor, kind: str, f0: float = 1.0, f1: float = 1.0, f2: float = 1.0
) -> torch.Tensor:
    """Edit post-softmax attention rows ``[n, H, T]`` of the decision query by key token type, then
    renormalise each row to sum to 1. ``ids`` ``[n, T]``. Kinds: ``none``, ``zero2`` (weight on every 2
    set to 0), ``balance01`` (every 0 and 1 key gets the mean of the per-token 0 weight and per-token 1
    weight), ``scale`` (0 keys x f0, 1 keys x f1, 2 keys x f2), ``uniform`` (the visible positions, equal weight).
    Visibility is never extended: a key with zero weight (future / padding) stays at zero."""
    is0, is1, is2 = (ids == ZERO)[:, None], (ids == ONE)[:, None], (ids == TWO)[:, None]
    w = row.clone()
    if kind == "none":
        return w
    if kind == "zero2":
        w = w.masked_fill(is2, 0.0)
    elif kind == "balance01":

        def per_tok(m, row=row):  # called within this iteration only
            cnt = m.sum(-1)
            return (w * m).sum(-1) / cnt.clamp(min=1), cnt > 0

        a0, has0 = per_tok(is0)
        a1, has1 = per_tok(is1)
        k = (a0 * has0 + a1 * has1) / (has0.float() + has1.float()).clamp(min=1)
        w = torch.where(is0 | is1, k[..., None].expand_as(w), w)
    elif kind == "scale":
        w = w * torch.where(is0, f0, 1.0) * torch.where(is1, f1, 1.0) * torch.where(is2, f2, 1.0)
    elif kind == "uniform":
        w = (row > 0).to(w.dtype)
    else:
        raise ValueError(f"unknown intervention {kind!r}")
    return w / w.sum(-1, keepdim=True).clamp(min=1e-30)


def intervene_logits(
    model: HeadlabLM, b: Batch, kind: str, f0: float = 1.0, f1: float = 1.0, heads_mask=None
) -> torch.Tensor:
    """Decision logits after editing every head's (or ``heads_mask``'s) attention row at the decision
    position: z = edited weights @ the unchanged values, through headlab.heads.intervene."""
    n = len(b)
    ar = torch.arange(n)

    def edit(view):
        row = view.pattern[ar, :, b.pos]  # [n, H, T]
        new = edit_row(row, b.ids, kind, f0, f1)
        if heads_mask is not None:
            m = torch.as_tensor(heads_mask, dtype=torch.bool)[None, :, None]
            new = torch.where(m, new, row)
        z = view.z.clone()
        z[ar, b.pos] = torch.einsum("nhk,nkhe->nhe", new, view.v)
        return z

    with torch.no_grad(), heads.eager(model), heads.intervene(model, edit, needs=("pattern", "v")):
        logits = model(b.ids).logits[ar, b.pos]
    return logits


def interventions(model: HeadlabLM, b: Batch, spec: TaskSpec, scales=((1, 2), (2, 1), (1, 3), (3, 1))) -> list[dict]:
    """Accuracy after each edit, and (for scale) agreement of the predictions with the rule
    f1*n1 > f0*n0 (the rule the edited counts would imply)."""
    rows = []
    for kind, f0, f1 in [("none", 1, 1), ("zero2", 1, 1), ("balance01", 1, 1), ("uniform", 1, 1)] + [
        ("scale", f0, f1) for f0, f1 in scales
    ]:
        lg = intervene_logits(model, b, kind, f0, f1)
        pred = predict(lg, spec)
        rule = (f1 * b.n1 > f0 * b.n0).long()
        name = kind if kind != "scale" else f"scale f0={f0:g} f1={f1:g}"
        rows.append(
            {
                "edit": name,
                "kind": kind,
                "f0": f0,
                "f1": f1,
                "acc": correct(lg, b.y, spec).float().mean().item(),
                "rule_agreement": ((pred["label"] == rule) & pred["valid"]).float().mean().item(),
                "syntax": pred["valid"].float().mean().item(),
            }
        )
    return rows


RATIO_F = (1 / 8, 1 / 4, 1 / 2, 1, 2, 4, 8)
RATIO_F2 = (0, 1, 4)


def ratio_sweep(model: HeadlabLM, b: Batch, spec: TaskSpec, fs=RATIO_F, f2s=RATIO_F2) -> list[dict]:
    """The seed's ratio sweep: every head's decision-query attention on 1s scaled by ``f`` and on 2s by
    ``f2`` (0s fixed, rows renormalised, values unchanged), then each head's s-acc and AUC on its own
    edited decision score ``u . W_O^h z_h``. At ``f = f2 = 1`` this is the unedited head."""
    ar = torch.arange(len(b))
    hd = heads.Heads(model)
    with torch.no_grad(), heads.eager(model), heads.capture(model, z=False, pattern=True, v=True) as cache:
        model(b.ids)
    row = cache.pattern[0][ar, :, b.pos]  # [n, H, T]
    v = cache.v[0]  # [n, T, H, d_head]
    W_O = hd.w_o(0).detach()  # [H, d_head, d_model]
    u = decision_direction(model, spec)
    wu = torch.einsum("hed,d->he", W_O, u)  # [H, d_head]: the decision score read from z_h
    y = b.y.numpy()
    rows = []
    for f2 in f2s:
        for f in fs:
            new = edit_row(row, b.ids, "scale", 1.0, f, f2)  # [n, H, T]
            d = torch.einsum("nhk,nkhe,he->nh", new, v, wu).numpy()  # [n, H]
            for h in range(d.shape[1]):
                rows.append(
                    {"f": f, "f2": f2, "head": h, "s_acc": best_threshold_acc(d[:, h], y), "auc": roc_auc(d[:, h], y)}
                )
    return rows


def checkpoint_heads(res: dict, b: Batch) -> list[dict]:
    """Per kept checkpoint and head: AUC, s-acc, l-acc, the score's std and whether the head is inert,
    plus the model's accuracy at that step (for the dynamics of the calibration gap and of inert heads)."""
    spec = TaskSpec(**res["spec"])
    rows = []
    for step in sorted(res.get("checkpoints", {})):
        model = load_run(res, step)
        dec = decompose(model, b, spec)
        inert = inert_mask(dec.d)
        acc = correct(dec.logits, b.y, spec).float().mean().item()
        for r in head_metrics(dec, model, b, spec):
            rows.append(
                {
                    "step": step,
                    "model_acc": acc,
                    **{k: r[k] for k in ("head", "auc", "s_acc", "l_acc", "d_std")},
                    "inert": bool(inert[r["head"]]),
                }
            )
    return rows


# -- training dynamics ------------------------------------------------------------------------------
def prior_entropy(p: float) -> float:
    return -(p * math.log(p) + (1 - p) * math.log(1 - p))


def plateau_steps(log: list[dict], level: float, band: float = 0.08) -> int:
    """Steps the held-out decision loss spends within ``band`` of ``level`` (the entropy of the label
    prior: what a model that ignores the counts achieves), counted over the eval grid after the
    first eval (step 0 is the untrained model)."""
    steps = [r["step"] for r in log]
    out = 0
    for i in range(1, len(log)):
        if abs(log[i]["test_loss"] - level) <= band:
            out += steps[i] - steps[i - 1]
    return out


def steps_to_solve(log: list[dict], acc: float = 0.95) -> float:
    for r in log:
        if r.get("test_acc", 0) >= acc:
            return r["step"]
    return float("nan")


def dynamics_row(res: dict, prior: float, min_plateau_steps: int) -> dict:
    """One run's dynamics (plateau, steps to 95 %, final accuracy) and, when it was analysed, its final
    calibration gap (mean s-acc - l-acc over counting heads) and inert-head count: a row of the
    initialisation ablation."""
    run, log = RunSpec(**res["run"]), res["log"]
    row = {
        "init": run.init,
        "attn_norm": run.attn_norm,
        "H": run.n_heads,
        "seed": run.seed,
        "plateau_steps": plateau_steps(log, prior),
        "steps_to_95": steps_to_solve(log),
        "final_acc": log[-1]["test_acc"],
    }
    row["plateaus"] = row["plateau_steps"] >= min_plateau_steps
    if "analysis" in res:
        g = [h["s_acc"] - h["l_acc"] for h in res["analysis"]["heads"] if h["auc"] >= COUNTING_AUC]
        row["gap"] = float(np.mean(g)) if g else math.nan
        row["n_inert"] = res["analysis"]["summary"]["n_inert"]
    return row


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


# -- a set laid out on the (n0, n1) grid, for the scaling-rule maps ----------------------------------
def count_grid_set(spec: TaskSpec, per_cell: int, seed: int) -> Batch:
    """``per_cell`` strings for every (n0, n1) with 1 <= n0 + n1 <= l_max: that many 0s and 1s, a
    uniform number of 2s that keeps the length within l_max, in a random order."""
    rng = np.random.default_rng(seed)
    rows = []
    for n0 in range(spec.l_max + 1):
        for n1 in range(spec.l_max + 1 - n0):
            if n0 + n1 == 0:
                continue
            for _ in range(per_cell):
                n2 = rng.integers(0, spec.l_max - n0 - n1 + 1)
                x = np.array([ZERO] * n0 + [ONE] * n1 + [TWO] * n2, dtype=np.int64)
                rows.append(rng.permutation(x))
    n, T = len(rows), spec.seq_len
    ids = np.full((n, T), PAD, dtype=np.int64)
    ids[:, 0] = BOS
    L = np.array([len(x) for x in rows])
    for i, x in enumerate(rows):
        ids[i, 1 : len(x) + 1] = x
    if spec.variant != "B":
        ids[np.arange(n), L + 1] = EOS
    pos = L if spec.variant == "B" else L + 1
    n0, n1, n2 = (np.array([(x == v).sum() for x in rows]) for v in (ZERO, ONE, TWO))
    return Batch(_tensor(ids), _tensor(pos), _tensor((n1 > n0).astype(np.int64)), _tensor(n0), _tensor(n1), _tensor(n2))


def rule_map(
    model: HeadlabLM, g: Batch, spec: TaskSpec, edits=(("none", 1, 1), ("scale", 1, 2), ("scale", 2, 1))
) -> list[dict]:
    """Fraction of strings predicted positive in every (n0, n1) cell, for each attention edit."""
    rows = []
    for kind, f0, f1 in edits:
        lab = predict(intervene_logits(model, g, kind, f0, f1), spec)["label"].float()
        key = g.n0 * 1000 + g.n1
        for k in torch.unique(key).tolist():
            m = key == k
            rows.append(
                {
                    "edit": kind if kind != "scale" else f"scale f0={f0:g} f1={f1:g}",
                    "f0": f0,
                    "f1": f1,
                    "n0": k // 1000,
                    "n1": k % 1000,
                    "p_positive": lab[m].mean().item(),
                    "n": int(m.sum()),
                }
            )
    return rows


# -- one trained run, analysed -------------------------------------------------------------------------
COUNTING_AUC = 0.95  # a head "counts" when its AUC is at least this
NONCOUNTING_AUC = 0.9


def analyse(
    res: dict, test: Batch, fit: Batch, grid: Batch | None = None, scales=((1, 2), (2, 1), (1, 3), (3, 1))
) -> dict:
    """Everything the notebook reports for one trained run (pass the test/fit/grid sets of its spec)."""
    spec, run = TaskSpec(**res["spec"]), RunSpec(**res["run"])
    model = load_run(res)
    dec, dec_fit = decompose(model, test, spec), decompose(model, fit, spec)
    tags = {"variant": spec.variant, "H": run.n_heads, "seed": run.seed}
    with torch.no_grad():
        ok = correct(dec.logits, test.y, spec)
    hm = [{**tags, **r} for r in head_metrics(dec, model, test, spec)]
    out = {
        "tags": tags,
        "summary": {
            **tags,
            "acc": ok.float().mean().item(),
            "near_tie_acc": ok[test.near_tie].float().mean().item(),
            "decomp_err": dec.max_err,
            "logit_err": dec.max_logit_err,
            "decomp_err32": decompose(model, test, spec, dtype=torch.float32).max_err,
            **aggregation(dec, model, test, spec, dec_fit, fit),
        },
        "heads": hm,
        "interventions": [{**tags, **r} for r in interventions(model, test, spec, scales)],
        "log": [{**tags, **r} for r in res["log"]],
        "ratio_sweep": [{**tags, **r} for r in ratio_sweep(model, test, spec)],
        "ckpt_heads": [{**tags, **r} for r in checkpoint_heads(res, test)],
    }
    if grid is not None:
        out["rule_map"] = [{**tags, **r} for r in rule_map(model, grid, spec)]
    return out

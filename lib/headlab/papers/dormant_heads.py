"""Dormant / inactive attention heads (Sandoval-Segura et al. 2025, arXiv 2504.03889).

A head is *dormant* (v1) or *inactive* (v2+) on an input when a per-input score says it barely
contributes; the paper zeroes such heads **per input, inside the forward pass that computes the
score** (cascading through the layers) and plots accuracy against the *achieved* % of
(input, layer, head) triples zeroed.

Pieces, in the order a notebook uses them:

* ``SCORES``: the score functions of the ICLR version (AHON, AHON-LN = v1's HONOR, AWFT, AWFT-LN,
  entropy, value-vector norms, last-token output norms, the post-W_O variant, random), each a
  function ``HeadView -> [batch, head]`` computed from the same forward's ``z``, ``pattern`` and
  ``v``, padding excluded through ``view.valid``.
* ``Task``: multiple choice (``headlab.eval.multiple_choice``) or next-token loss on texts.
* ``calibrate``: one unablated pass that records every score of every (input, layer, head) and
  the baseline metric; ``thresholds`` turns the pooled scores into per-quantile thresholds
  (upper tail for the "flag if high" rules such as AWFT).
* ``ablate``/``sweep``: one pass per (score, quantile) with ``heads.zero_where``; returns the
  achieved %, the metric and the per-item results.
* statistics: ``largest_within`` (last crossing of baseline - tol, linear interpolation, 0 when
  the curve never crosses), ``normalised_auc``, bootstrap CIs, ranks, Spearman/IoU across models,
  selection overlap, Wasserstein distances between score distributions.
* data: ``generated_mc`` (deterministic multiple-choice items a 135M model answers well above
  chance) and ``BigramBackcopy`` (the toy task of Guo et al. 2024 for the pretraining dynamics).
"""

from __future__ import annotations

import contextlib
import itertools
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from .. import eval as ev
from .. import heads
from ..data import MCItem
from ..models import encode

# --------------------------------------------------------------------------------------------
# score functions
# --------------------------------------------------------------------------------------------

EPS = 1e-12


def _valid(view: heads.HeadView, batch: int, pos: int, device) -> torch.Tensor:
    """``[batch, pos]`` float mask of real tokens (all ones when the caller declared none)."""
    v = view.valid
    if v is None or v.shape != (batch, pos):
        return torch.ones(batch, pos, device=device)
    return v.to(device=device, dtype=torch.float32)


def _mean_over_pos(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """x ``[batch, pos, head]``, m ``[batch, pos]`` -> masked mean over pos ``[batch, head]``."""
    return (x * m[:, :, None]).sum(1) / m.sum(1, keepdim=True).clamp_min(1.0)


def _ln(s: torch.Tensor) -> torch.Tensor:
    """Divide by the mean over the heads of the same layer and input (the paper's "(LN)")."""
    return s / s.mean(-1, keepdim=True).clamp_min(EPS)


def ahon(view: heads.HeadView) -> torch.Tensor:
    """Average head output norm: mean over real positions i of ||z_i|| (pre-W_O)."""
    z = view.z.float()
    m = _valid(view, z.shape[0], z.shape[1], z.device)
    return _mean_over_pos(z.norm(dim=-1), m)


def ahon_ln(view):
    return _ln(ahon(view))


def _pattern_rows(view: heads.HeadView):
    a = view.pattern
    if a is None:
        raise heads.AttentionImplError(
            "this score needs attention weights: intervene(..., needs=('pattern',)) on an eager-attention model"
        )
    a = a.float()  # [batch, head, q, k]
    m = _valid(view, a.shape[0], a.shape[2], a.device)
    return a, m


def awft(view):
    """Average weight on the first token: mean over real query rows of A[i, 0] (row 0 gives 1)."""
    a, m = _pattern_rows(view)
    return _mean_over_pos(a[..., 0].transpose(1, 2), m)


def awft_ln(view):
    return _ln(awft(view))


def entropy(view):
    """Average entropy (nats) of the query rows' attention distributions."""
    a, m = _pattern_rows(view)
    ent = -torch.special.xlogy(a, a).sum(-1)  # [batch, head, q]; 0 log 0 = 0
    return _mean_over_pos(ent.transpose(1, 2), m)


def entropy_ln(view):
    return _ln(entropy(view))


def _values(view):
    if view.v is None:
        raise ValueError("this score needs value vectors: intervene(..., needs=('v',))")
    return view.v.float()  # [batch, pos, head, d_head], already per query head


def ftvvn(view):
    """Norm of the first token's value vector (per query head; equal within a GQA group)."""
    return _values(view)[:, 0].norm(dim=-1)


def ftvvn_ln(view):
    return _ln(ftvvn(view))


def avvn(view):
    """Average value-vector norm over real positions."""
    v = _values(view)
    m = _valid(view, v.shape[0], v.shape[1], v.device)
    return _mean_over_pos(v.norm(dim=-1), m)


def avvn_ln(view):
    return _ln(avvn(view))


def _last_norm(view):
    z = view.z.float()
    m = _valid(view, z.shape[0], z.shape[1], z.device)
    last = (m.sum(1).long() - 1).clamp_min(0)  # right padding: real tokens are a prefix
    zl = z[torch.arange(z.shape[0], device=z.device), last]  # [batch, head, d_head]
    return zl.norm(dim=-1)


def lthon(view):
    """Norm of the head output at the last real token."""
    return _last_norm(view)


def lthon_ln(view):
    """Last-token norm divided by the layer mean of the per-head *average* output norms."""
    return _last_norm(view) / ahon(view).mean(-1, keepdim=True).clamp_min(EPS)


def lthon_hn(view):
    """Last-token norm divided by the same head's average output norm."""
    return _last_norm(view) / ahon(view).clamp_min(EPS)


def ahon_wo(view):
    """App. A.1 variant: average norm of the head's d_model contribution W_O^(h) z_i (post-W_O)."""
    z = view.z.float()
    w_o = view.heads.w_o(view.layer).float()  # [head, d_head, d_model], nn.Linear or GPT-2's Conv1D
    out = torch.einsum("bphd,hdm->bphm", z, w_o)
    m = _valid(view, z.shape[0], z.shape[1], z.device)
    return _mean_over_pos(out.norm(dim=-1), m)


def ahon_wo_ln(view):
    return _ln(ahon_wo(view))


@dataclass(frozen=True)
class Score:
    name: str
    label: str  # the paper's name
    abbr: str  # the paper's abbreviation
    flag_high: bool  # True: head flagged when score > threshold (AWFT); else when score < threshold
    needs: tuple[str, ...]
    fn: Callable[[heads.HeadView], torch.Tensor] | None  # None: random


_S = [
    Score("random", "Random", "Rand", False, (), None),
    Score("awft", "Avg Weight of First Token", "AWFT", True, ("pattern",), awft),
    Score("awft_ln", "Avg Weight of First Token (LN)", "AWFT (LN)", True, ("pattern",), awft_ln),
    Score("entropy", "Avg Entropy of Query Distributions", "AEQD", False, ("pattern",), entropy),
    Score("entropy_ln", "Avg Entropy of Query Distributions (LN)", "AEQD (LN)", False, ("pattern",), entropy_ln),
    Score("ftvvn", "First Token Value Vector Norm", "FTVVN", False, ("v",), ftvvn),
    Score("ftvvn_ln", "First Token Value Vector Norm (LN)", "FTVVN (LN)", False, ("v",), ftvvn_ln),
    Score("avvn", "Avg Value Vector Norm", "AVVN", False, ("v",), avvn),
    Score("avvn_ln", "Avg Value Vector Norm (LN)", "AVVN (LN)", False, ("v",), avvn_ln),
    Score("lthon", "Last Token Head Output Norm", "LTHON", False, (), lthon),
    Score("lthon_ln", "Last Token Head Output Norm (LN)", "LTHON (LN)", False, (), lthon_ln),
    Score("lthon_hn", "Last Token Head Output Norm (HN)", "LTHON (HN)", False, (), lthon_hn),
    Score("ahon", "Avg Head Output Norm", "AHON", False, (), ahon),
    Score("ahon_ln", "Avg Head Output Norm (LN)", "AHON (LN)", False, (), ahon_ln),
    Score("ahon_wo", "Avg Head Output Norm after W_O", "AHON-WO", False, (), ahon_wo),
    Score("ahon_wo_ln", "Avg Head Output Norm after W_O (LN)", "AHON-WO (LN)", False, (), ahon_wo_ln),
]
SCORES: dict[str, Score] = {s.name: s for s in _S}
PAPER_SCORES = [s.name for s in _S if not s.name.startswith("ahon_wo")]  # the 14 of the ICLR notebook


def check_scores(names: Sequence[str]):
    bad = [n for n in names if n not in SCORES]
    if bad:
        raise KeyError(f"unknown score function(s) {bad}; known: {list(SCORES)}")


# --------------------------------------------------------------------------------------------
# tasks: multiple choice or next-token loss
# --------------------------------------------------------------------------------------------


@dataclass
class Task:
    """An evaluation whose forwards are the "inputs" of the protocol.

    ``kind="mc"``: lm-eval style multiple choice, each (context, choice) its own forward (so its
    own dormant set, as in the paper); metric = accuracy in %. ``kind="nll"``: next-token loss of
    ``texts`` (truncated to ``max_len``); metric = mean nats/token (lower is better).
    """

    name: str
    kind: str
    items: list = field(default_factory=list)  # MCItem for mc, str for nll
    bos: bool = False
    max_len: int = 128
    batch_size: int = 32
    labels: list | None = None  # per-item labels (e.g. text type), optional

    @property
    def higher_is_better(self) -> bool:
        return self.kind == "mc"

    def n_inputs(self) -> int:
        return sum(len(it.choices) for it in self.items) if self.kind == "mc" else len(self.items)

    def evaluate(self, model, tok) -> dict:
        """``metric`` (acc % or nats/token) and ``per_item`` (bool correct, or per-text nll arrays)."""
        if self.kind == "mc":
            r = mc_accuracy(model, tok, self.items, bos=self.bos, batch_size=self.batch_size)
            return {"metric": 100.0 * r["acc"], "per_item": r["correct"].astype(bool)}
        if self.kind == "nll":
            nll = ev.token_nll(
                model, tok, self.items, bos=self.bos, max_len=self.max_len, batch_size=self.batch_size, progress=False
            )
            return {"metric": float(np.concatenate(nll).mean()), "per_item": nll}
        raise ValueError(f"task kind must be 'mc' or 'nll', not {self.kind!r}")


@torch.no_grad()
def mc_logprobs(model, tok, items: Sequence[MCItem], bos: bool, batch_size: int = 32) -> np.ndarray:
    """Summed log p(choice | prompt) for every (item, choice), each pair its own forward, exactly
    as ``headlab.eval.continuation_logprobs`` (same encoding, padding, length-sorted batches and
    ``heads.token_mask``), except that the vocabulary projection of a batch runs as **one** matmul
    over all scored positions instead of one per row: with Gemma's 262k-row lm_head the per-row
    matrix-vector products cost more than the forward itself."""
    dev = model.device
    pairs = []
    for it in items:
        for c in it.choices:
            pairs.append((encode(tok, it.prompt, bos), encode(tok, c, False)))
    out = np.zeros(len(pairs))
    order = np.argsort([-(len(a) + len(b)) for a, b in pairs], kind="stable")
    for s in range(0, len(order), batch_size):
        idx = order[s : s + batch_size]
        ids, valid = ev.pad([pairs[i][0] + pairs[i][1] for i in idx])  # the core's right-padding
        with heads.token_mask(valid.to(dev)):
            h = ev.final_hidden(model, ids.to(dev))
        rows, cols, tgt, owner = [], [], [], []
        for r, i in enumerate(idx):
            ctx, cont = pairs[i]
            n = len(cont)
            rows += [r] * n
            cols += list(range(len(ctx) - 1, len(ctx) + n - 1))
            tgt += cont
            owner += [i] * n
        lp = ev.logits_from_hidden(model, h[torch.tensor(rows, device=dev), torch.tensor(cols, device=dev)])
        lp = lp.log_softmax(-1).gather(-1, torch.tensor(tgt, device=dev)[:, None])[:, 0].double().cpu().numpy()
        np.add.at(out, np.asarray(owner), lp)
    return out


def mc_accuracy(model, tok, items: Sequence[MCItem], bos: bool, batch_size: int = 32) -> dict:
    """``headlab.eval.multiple_choice``'s ``acc`` (argmax summed log-likelihood) from ``mc_logprobs``."""
    lp = mc_logprobs(model, tok, items, bos, batch_size)
    correct, k = [], 0
    for it in items:
        n = len(it.choices)
        correct.append(int(np.argmax(lp[k : k + n])) == it.answer)
        k += n
    return {"acc": float(np.mean(correct)), "correct": np.array(correct), "logprobs": lp, "n": len(items)}


def metric_from_items(task: Task, per_item, idx=None) -> float:
    """The task metric from per-item results (optionally a resample ``idx``)."""
    if idx is None:
        idx = np.arange(len(per_item))
    if task.kind == "mc":
        return 100.0 * float(np.mean(np.asarray(per_item)[idx]))
    arrs = [per_item[i] for i in idx]
    return float(np.concatenate(arrs).mean())


# --------------------------------------------------------------------------------------------
# calibration (unablated pass, all scores) and thresholds
# --------------------------------------------------------------------------------------------


class _Recorder:
    """An edit that records scores per layer and changes nothing."""

    def __init__(self, names):
        self.fns = [(n, SCORES[n].fn) for n in names if SCORES[n].fn is not None]
        self.rows: dict[str, dict[int, list]] = {n: {} for n, _ in self.fns}

    def __call__(self, view):
        for n, fn in self.fns:
            self.rows[n].setdefault(view.layer, []).append(fn(view).detach().cpu())
        return None

    def arrays(self) -> dict[str, np.ndarray]:
        """name -> ``[input, layer, head]`` float32, inputs in the order they were run."""
        out = {}
        for n, per_layer in self.rows.items():
            layers = sorted(per_layer)
            out[n] = torch.stack([torch.cat(per_layer[l]) for l in layers], dim=1).numpy().astype(np.float32)
        return out


def needs_of(names: Sequence[str]) -> tuple[str, ...]:
    return tuple(sorted({x for n in names for x in SCORES[n].needs}))


@dataclass
class Calibration:
    task: str
    scores: dict[str, np.ndarray]  # name -> [input, layer, head]
    baseline: float
    per_item: object
    seconds: float = 0.0


def record_scores(model, run: Callable[[], object], names: Sequence[str]) -> tuple[dict[str, np.ndarray], object]:
    """Run ``run()`` (any forwards) unablated while recording the named scores."""
    check_scores(names)
    rec = _Recorder(names)
    with torch.no_grad(), heads.intervene(model, rec, needs=needs_of(names)):
        out = run()
    return rec.arrays(), out


def calibrate(model, tok, task: Task, names: Sequence[str]) -> Calibration:
    """The unablated pass: baseline metric + every named score of every (input, layer, head)."""
    t = time.perf_counter()
    scores, r = record_scores(model, lambda: task.evaluate(model, tok), names)
    return Calibration(task.name, scores, r["metric"], r["per_item"], time.perf_counter() - t)


def threshold(scores: np.ndarray, p: float, flag_high: bool) -> float:
    """Threshold that flags a fraction ``p`` of the pooled scores: the p-quantile for "flag if
    below", the (1-p)-quantile for "flag if above" (linear interpolation between order statistics)."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    s = s[np.isfinite(s)]
    return float(np.quantile(s, 1.0 - p if flag_high else p))


def thresholds(calib: Calibration, names: Sequence[str], quantiles: Sequence[float]) -> dict[tuple[str, float], float]:
    """(score, p) -> threshold; random uses p itself."""
    out = {}
    for n in names:
        for p in quantiles:
            out[n, p] = float(p) if n == "random" else threshold(calib.scores[n], p, SCORES[n].flag_high)
    return out


def flagged(scores: np.ndarray, tau: float, flag_high: bool) -> np.ndarray:
    return scores > tau if flag_high else scores < tau


# --------------------------------------------------------------------------------------------
# per-input in-pass zeroing
# --------------------------------------------------------------------------------------------


class Selector:
    """``select(view) -> bool [batch, head]`` for ``heads.zero_where``: flags heads of this
    forward whose score is past ``tau``; counts what it flagged for the achieved %."""

    def __init__(self, name: str, tau: float, seed: int = 0):
        check_scores([name])
        self.score, self.tau = SCORES[name], float(tau)
        self.gen = torch.Generator().manual_seed(seed)
        self.counts: dict[int, torch.Tensor] = {}  # layer -> [head] flagged inputs
        self.rows: dict[int, int] = {}  # layer -> inputs seen

    def __call__(self, view: heads.HeadView) -> torch.Tensor:
        b, nh = view.z.shape[0], view.z.shape[2]
        if self.score.fn is None:  # random: u ~ U(0,1) per (input, layer, head), flagged if u < p
            m = torch.rand(b, nh, generator=self.gen) < self.tau
            m = m.to(view.z.device)
        else:
            s = self.score.fn(view)
            m = s > self.tau if self.score.flag_high else s < self.tau
        self.counts[view.layer] = self.counts.get(view.layer, 0) + m.sum(0).cpu()
        self.rows[view.layer] = self.rows.get(view.layer, 0) + b
        return m

    def achieved_pct(self) -> float:
        """100 x (total flagged) / (inputs x layers x heads), the paper's x-axis."""
        if not self.rows:
            return 0.0
        flagged_ = sum(int(c.sum()) for c in self.counts.values())
        nh = len(next(iter(self.counts.values())))
        return 100.0 * flagged_ / (sum(self.rows.values()) * nh)

    def head_frequency(self) -> np.ndarray:
        """``[layer, head]`` fraction of inputs on which each head was zeroed."""
        layers = sorted(self.counts)
        return np.stack([(self.counts[l].float() / self.rows[l]).numpy() for l in layers])


def ablate(model, tok, task: Task, name: str, tau: float, seed: int = 0):
    """Evaluate ``task`` with heads zeroed per input by score ``name`` at threshold ``tau``.
    Returns (result dict, selector)."""
    sel = Selector(name, tau, seed)
    with torch.no_grad(), heads.intervene(model, heads.zero_where(sel), needs=SCORES[name].needs):
        r = task.evaluate(model, tok)
    return r, sel


def sweep(
    model,
    tok,
    task: Task,
    names: Sequence[str],
    quantiles: Sequence[float],
    calib: Calibration,
    model_name: str = "",
    seed: int = 0,
) -> tuple[pd.DataFrame, dict]:
    """One ablated run per (score, nominal quantile > 0); the 0% point is the unablated baseline.

    Returns the curve table (one row per point) and ``per_item[(score, p)]`` for bootstraps, plus
    ``freq[(score, p)]`` (per-head zeroing frequency across inputs) under key "freq".
    """
    taus = thresholds(calib, names, quantiles)
    rows, per_item, freq = [], {}, {}
    for n in names:
        for p in quantiles:
            t0 = time.perf_counter()
            if p == 0:
                r, pct, f = {"metric": calib.baseline, "per_item": calib.per_item}, 0.0, None
            else:
                r, sel = ablate(model, tok, task, n, taus[n, p], seed=seed + int(round(1000 * p)))
                pct, f = sel.achieved_pct(), sel.head_frequency()
            rows.append(
                {
                    "model": model_name,
                    "task": task.name,
                    "score": n,
                    "label": SCORES[n].abbr,
                    "quantile": p,
                    "threshold": taus[n, p],
                    "achieved_pct": pct,
                    "metric": r["metric"],
                    "baseline": calib.baseline,
                    "seconds": time.perf_counter() - t0,
                }
            )
            per_item[n, p] = r["per_item"]
            freq[n, p] = f
    return pd.DataFrame(rows), {"per_item": per_item, "freq": freq}


# --------------------------------------------------------------------------------------------
# statistics (the ICLR notebook's definitions)
# --------------------------------------------------------------------------------------------


def largest_within(xs: Sequence[float], ys: Sequence[float], baseline: float, tol: float = 1.0) -> float:
    """Largest % zeroed within ``tol`` of ``baseline``: the x of the **last** crossing of the
    polyline (xs, ys) (points in threshold order, not re-sorted) with the line ``baseline - tol``,
    by linear interpolation. A point exactly on the line counts. 0 when it never crosses
    (also when the curve never leaves the band: the official definition)."""
    xs, ys = np.asarray(xs, float), np.asarray(ys, float)
    if len(xs) < 2 or len(xs) != len(ys):
        return 0.0
    c = baseline - tol
    last = xs[0] if ys[0] == c else None
    for i in range(len(xs) - 1):
        (x1, x2), (y1, y2) = xs[i : i + 2], ys[i : i + 2]
        if (y1 - c) * (y2 - c) < 0:
            last = x1 + (c - y1) * (x2 - x1) / (y2 - y1)
        if y2 == c:
            last = x2
    return 0.0 if last is None else float(last)


def stays_within(ys: Sequence[float], baseline: float, tol: float = 1.0) -> bool:
    """True when no point of the curve falls below ``baseline - tol`` (where largest_within gives 0
    although no loss was seen)."""
    return bool(np.all(np.asarray(ys, float) >= baseline - tol))


def normalised_auc(xs: Sequence[float], ys: Sequence[float]) -> float:
    """trapz(ys, xs) / (max(xs) - min(xs)), points in threshold order (the notebook's definition).
    NaN for a curve that never zeroes anything (span 0): it would otherwise score the unablated
    baseline and outrank every function that does zero heads."""
    xs, ys = np.asarray(xs, float), np.asarray(ys, float)
    span = xs.max() - xs.min()
    if span <= 0:
        return float("nan")
    return float(np.sum((xs[1:] - xs[:-1]) * (ys[1:] + ys[:-1]) / 2.0) / span)


def curve_stats(curves: pd.DataFrame, tol_mc: float = 1.0, tol_nll_rel: float = 0.01) -> pd.DataFrame:
    """Per (model, task, score): largest % within tolerance and normalised AUC.

    MC: tolerance ``tol_mc`` accuracy points. NLL: the loss may rise by at most ``tol_nll_rel`` x
    baseline (handled as the negative loss with an absolute tolerance).
    """
    rows = []
    for (m, t, s), g in curves.groupby(["model", "task", "score"], sort=False):
        g = g.sort_values("quantile")
        xs, ys, base = g.achieved_pct.values, g.metric.values, float(g.baseline.iloc[0])
        nll = "nll" in t
        if nll:
            ys_, base_, tol = -ys, -base, tol_nll_rel * base
        else:
            ys_, base_, tol = ys, base, tol_mc
        rows.append(
            {
                "model": m,
                "task": t,
                "score": s,
                "label": g.label.iloc[0],
                "within_tol_pct": largest_within(xs, ys_, base_, tol),
                "stays_within": stays_within(ys_, base_, tol),
                "auc": normalised_auc(xs, ys_),
                "max_achieved_pct": float(xs.max()),
            }
        )
    return pd.DataFrame(rows)


def bootstrap_within(
    task: Task,
    curves: pd.DataFrame,
    per_item: dict,
    score: str,
    n_boot: int = 200,
    seed: int = 0,
    tol: float | None = None,
) -> tuple[float, float]:
    """95% bootstrap interval (items resampled) of ``largest_within`` for one score's curve."""
    g = curves[curves.score == score].sort_values("quantile")
    xs = g.achieved_pct.values
    items = [per_item[score, p] for p in g["quantile"]]
    n = len(items[0])
    rng = np.random.default_rng(seed)
    sign = 1.0 if task.higher_is_better else -1.0
    vals = []
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        ys = np.array([sign * metric_from_items(task, it, idx) for it in items])
        base = ys[0]  # the 0% point is the baseline
        t = tol if tol is not None else (1.0 if task.higher_is_better else 0.01 * abs(base))
        vals.append(largest_within(xs, ys, base, t))
    lo, hi = np.percentile(vals, [2.5, 97.5])
    return float(lo), float(hi)


def interpolate_at(curves: pd.DataFrame, score: str, x: float) -> float:
    """The metric of ``score``'s curve at achieved % ``x`` (linear; NaN outside its range)."""
    g = curves[curves.score == score].sort_values("achieved_pct")
    xs, ys = g.achieved_pct.values, g.metric.values
    if len(xs) == 0 or x < xs.min() or x > xs.max():
        return float("nan")
    return float(np.interp(x, xs, ys))


def matched_comparison(curves: pd.DataFrame, a: str, b: str, grid: Sequence[float]) -> pd.DataFrame:
    """Metrics of scores ``a`` and ``b`` at the achieved %s of ``grid`` that both curves reach."""
    rows = []
    for x in grid:
        ya, yb = interpolate_at(curves, a, x), interpolate_at(curves, b, x)
        if np.isfinite(ya) and np.isfinite(yb):
            rows.append({"pct": x, a: ya, b: yb})
    return pd.DataFrame(rows)


def rank_scores(stats: pd.DataFrame, by: str = "auc") -> pd.DataFrame:
    """Rank (1 = best, higher AUC) of each score within each (model, task); wide table."""
    r = stats.copy()
    r["rank"] = r.groupby(["model", "task"])[by].rank(ascending=False, method="min")
    return r


def _common(w: pd.DataFrame, a: str, b: str) -> pd.DataFrame:
    """The score functions with an AUC in both rows ``a`` and ``b`` of the wide table ``w``."""
    return w.loc[[a, b]].dropna(axis=1)


def spearman_matrix(stats: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Spearman correlation of score-function AUCs between rows ``keys`` (e.g. model/task pairs), each
    pair over the functions both rows have (NaN where fewer than 3)."""
    from scipy.stats import spearmanr

    w = stats.pivot_table(index="key", columns="score", values="auc").reindex(keys)
    M = np.eye(len(keys))
    for i, a in enumerate(keys):
        for j in range(i + 1, len(keys)):
            c = _common(w, a, keys[j])
            M[i, j] = M[j, i] = spearmanr(c.iloc[0].values, c.iloc[1].values).statistic if c.shape[1] >= 3 else np.nan
    return pd.DataFrame(M, index=keys, columns=keys)


def topk_iou_matrix(stats: pd.DataFrame, keys: list[str], k: int = 5) -> pd.DataFrame:
    """IoU of the sets of top-``k`` score functions (by AUC) between rows ``keys``, each pair ranked
    over the functions both rows have; NaN where they share no more than ``k`` (IoU 1 by construction)."""
    w = stats.pivot_table(index="key", columns="score", values="auc").reindex(keys)
    M = np.eye(len(keys))
    for i, a in enumerate(keys):
        for j in range(i + 1, len(keys)):
            c = _common(w, a, keys[j])
            if c.shape[1] <= k:
                M[i, j] = M[j, i] = np.nan
                continue
            ta, tb = (set(c.loc[r].sort_values(ascending=False).index[:k]) for r in (a, keys[j]))
            M[i, j] = M[j, i] = len(ta & tb) / len(ta | tb)
    return pd.DataFrame(M, index=keys, columns=keys)


def selection_overlap(scores: dict[str, np.ndarray], names: Sequence[str], p: float) -> pd.DataFrame:
    """On the unablated pass, flag a nominal fraction ``p`` with each score and compare the sets
    of (input, layer, head) triples: IoU and precision(a -> b) = |A & B| / |A|; NaN for any pair with a
    function that flags nothing (e.g. value-norm scores when all query heads share one KV head): an
    IoU of 0 there would read as "different heads" when no heads were picked at all."""
    sets = {n: flagged(scores[n], threshold(scores[n], p, SCORES[n].flag_high), SCORES[n].flag_high) for n in names}
    rows = []
    for a in names:
        for b in names:
            A, B = sets[a], sets[b]
            inter, defined = float((A & B).sum()), bool(A.any() and B.any())
            rows.append(
                {
                    "a": a,
                    "b": b,
                    "iou": inter / float((A | B).sum()) if defined else float("nan"),
                    "precision": inter / float(A.sum()) if defined else float("nan"),
                    "frac_a": float(A.mean()),
                }
            )
    return pd.DataFrame(rows)


def wasserstein(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import wasserstein_distance

    a, b = np.asarray(a, float).ravel(), np.asarray(b, float).ravel()
    return float(wasserstein_distance(a[np.isfinite(a)], b[np.isfinite(b)]))


def dormant_fraction_by(scores: np.ndarray, tau: float, flag_high: bool, labels: Sequence) -> pd.DataFrame:
    """Per-input fraction of (layer, head) flagged, with the input's label."""
    f = flagged(scores, tau, flag_high).mean(axis=(1, 2))
    return pd.DataFrame({"label": list(labels), "dormant_frac": f})


def permutation_test(values: np.ndarray, labels: Sequence, n_perm: int = 2000, seed: int = 0) -> float:
    """p-value of the between-group variance of means under label permutation."""
    values, labels = np.asarray(values, float), np.asarray(labels)
    groups = np.unique(labels)

    def stat(lab):
        return np.var([values[lab == g].mean() for g in groups])

    obs = stat(labels)
    rng = np.random.default_rng(seed)
    hits = sum(stat(rng.permutation(labels)) >= obs for _ in range(n_perm))
    return (hits + 1) / (n_perm + 1)


# --------------------------------------------------------------------------------------------
# generated multiple-choice items (deterministic)
# --------------------------------------------------------------------------------------------

DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
WORDS = [
    "apple",
    "river",
    "stone",
    "cloud",
    "table",
    "horse",
    "paper",
    "green",
    "music",
    "chair",
    "bread",
    "light",
    "water",
    "glass",
    "tiger",
    "house",
    "ocean",
    "pencil",
    "garden",
    "window",
    "candle",
    "forest",
    "bottle",
    "rabbit",
    "silver",
    "jacket",
    "planet",
    "mirror",
    "orange",
    "ladder",
]
# (prompt, answer, three distractors): facts and word relations a small LM has seen many times
CLOZE = [
    ("The opposite of hot is", "cold", ["blue", "fast", "tall"]),
    ("The opposite of up is", "down", ["red", "cat", "soft"]),
    ("The opposite of big is", "small", ["green", "loud", "happy"]),
    ("The opposite of day is", "night", ["tree", "shoe", "cup"]),
    ("The opposite of yes is", "no", ["car", "sky", "ten"]),
    ("The opposite of left is", "right", ["bread", "nose", "blue"]),
    ("The sun rises in the", "east", ["table", "river", "spoon"]),
    ("Water freezes at zero degrees", "Celsius", ["Monday", "apple", "guitar"]),
    ("The capital of France is", "Paris", ["banana", "Tuesday", "window"]),
    ("The capital of Japan is", "Tokyo", ["pencil", "winter", "garden"]),
    ("The capital of Italy is", "Rome", ["chair", "summer", "rabbit"]),
    ("A week has seven", "days", ["trees", "cars", "songs"]),
    ("A year has twelve", "months", ["dogs", "chairs", "lamps"]),
    ("Cats and dogs are", "animals", ["numbers", "colors", "tools"]),
    ("Red, blue and green are", "colors", ["animals", "cities", "verbs"]),
    ("Bread is made from", "flour", ["glass", "metal", "paper"]),
    ("Cows give us", "milk", ["wood", "steel", "sand"]),
    ("Bees make", "honey", ["bricks", "paper", "glass"]),
    ("The sky is", "blue", ["wooden", "square", "salty"]),
    ("Grass is", "green", ["purple", "frozen", "metal"]),
    ("Ice is frozen", "water", ["bread", "paper", "music"]),
    ("We see with our", "eyes", ["feet", "knees", "elbows"]),
    ("We hear with our", "ears", ["hands", "toes", "teeth"]),
    ("Birds can", "fly", ["read", "cook", "drive"]),
    ("Fish live in", "water", ["trees", "clouds", "books"]),
    ("Two plus two equals", "four", ["seven", "nine", "twelve"]),
    ("The first letter of the alphabet is", "A", ["Q", "M", "Z"]),
    ("Christmas is celebrated in", "December", ["April", "July", "March"]),
    ("A baby cat is called a", "kitten", ["puppy", "calf", "foal"]),
    ("Snow is", "white", ["black", "orange", "purple"]),
]
MC_KINDS = ("count", "days", "months", "letters", "copy", "cloze")


def generated_mc(n_per_kind: int, seed: int = 0, kinds: Sequence[str] = MC_KINDS) -> list[MCItem]:
    """Deterministic 4-way multiple choice: number sequences, days, months, letters, copying a
    random word list (induction), and short cloze facts. Choices are single words with a space."""
    rng = random.Random(seed)
    items: list[MCItem] = []
    cloze_order: list[int] = []

    def add(prompt, answer, distractors, kind):
        ch = [answer] + list(distractors)
        order = list(range(4))
        rng.shuffle(order)
        choices = tuple(" " + ch[i] for i in order)
        items.append(MCItem(prompt, choices, order.index(0), kind))

    for kind in kinds:
        for _ in range(n_per_kind):
            if kind == "count":
                step = rng.choice([1, 2, 5, 10])
                start = rng.randint(1, 12) * step
                seq = [start + i * step for i in range(5)]
                nxt = seq[-1] + step
                pool = sorted({nxt + step, nxt - 1, nxt + 1, seq[-1], seq[0], nxt + 2 * step} - {nxt})
                add(", ".join(map(str, seq)) + ",", str(nxt), [str(d) for d in rng.sample(pool, 3)], kind)
            elif kind in ("days", "months", "letters"):
                names = DAYS if kind == "days" else MONTHS if kind == "months" else [chr(65 + i) for i in range(26)]
                k = 4 if kind == "letters" else 3
                i0 = rng.randrange(len(names) - k if kind == "letters" else len(names))
                shown = [names[(i0 + j) % len(names)] for j in range(k)]
                ans = names[(i0 + k) % len(names)]
                pool = [x for x in names if x != ans and x not in shown]
                add(", ".join(shown) + ",", ans, rng.sample(pool, 3), kind)
            elif kind == "copy":
                ws = rng.sample(WORDS, 6)
                cut = rng.randint(2, 4)
                prompt = ", ".join(ws) + ". " + ", ".join(ws[:cut]) + ","
                ans = ws[cut]
                pool = [w for w in ws if w != ans]
                add(prompt, ans, rng.sample(pool, 3), kind)
            elif kind == "cloze":
                if not cloze_order:
                    cloze_order = rng.sample(range(len(CLOZE)), len(CLOZE))
                pr, ans, ds = CLOZE[cloze_order.pop()]
                add(pr, ans, ds, kind)
            else:
                raise ValueError(f"unknown item kind {kind!r}; known: {MC_KINDS}")
    return items


# --------------------------------------------------------------------------------------------
# pretraining dynamics on a toy task: Bigram-Backcopy (Guo et al. 2024)
# --------------------------------------------------------------------------------------------


class BigramBackcopy:
    """Token 0 is ⟨bos⟩; tokens 1..V are content. After ⟨bos⟩ and every non-trigger token, the
    next token follows a fixed random bigram table (sparse rows, so it is predictable); after a
    *trigger* token, the next token copies the token just before the trigger. Only the triggers
    need attention (to the previous-but-one token); elsewhere an attention head has nothing to do,
    which is where sink-attending, low-output ("dormant") heads come from."""

    def __init__(self, vocab: int = 64, n_triggers: int = 4, alpha: float = 0.1, seed: int = 0):
        self.V, self.bos = vocab, 0
        rng = np.random.default_rng(seed)
        self.triggers = np.arange(1, 1 + n_triggers)  # tokens 1..n_triggers
        P = rng.dirichlet(np.full(vocab, alpha), size=vocab + 1)  # rows: previous token 0..V
        self.P = np.zeros((vocab + 1, vocab + 1))
        self.P[:, 1:] = P
        self.P[0] = 0
        self.P[0, 1 + n_triggers :] = 1.0 / (vocab - n_triggers)  # first token: never a trigger
        self.P /= self.P.sum(1, keepdims=True)
        self.is_trigger = np.zeros(vocab + 1, bool)
        self.is_trigger[self.triggers] = True
        nt = self.P.copy()  # trigger-free variant
        nt[:, self.triggers] = 0
        self.P_free = nt / nt.sum(1, keepdims=True)

    @property
    def vocab_size(self) -> int:
        return self.V + 1

    def sample(
        self, n: int, length: int, seed: int, trigger_free: bool = False, trigger_boost: float = 1.0
    ) -> np.ndarray:
        """``[n, length]`` sequences starting with ⟨bos⟩."""
        rng = np.random.default_rng(seed)
        P = self.P_free if trigger_free else self.P
        if trigger_boost != 1.0 and not trigger_free:
            P = P.copy()
            P[:, self.triggers] *= trigger_boost
            P[0, self.triggers] = 0
            P /= P.sum(1, keepdims=True)
        cum = np.cumsum(P, axis=1)
        x = np.zeros((n, length), dtype=np.int64)
        for t in range(1, length):
            prev = x[:, t - 1]
            nxt = (rng.random(n)[:, None] > cum[prev]).sum(1)
            nxt = np.minimum(nxt, self.V)
            if t >= 2:
                copy = self.is_trigger[prev]
                nxt = np.where(copy, x[:, t - 2], nxt)
            x[:, t] = nxt
        return x

    def copy_positions(self, x: np.ndarray) -> np.ndarray:
        """``[n, length-1]`` bool: positions t whose next token is a copy (x[t] is a trigger, t >= 1)."""
        m = self.is_trigger[x[:, :-1]].copy()
        m[:, 0] = False
        return m


def bb_batches(task: BigramBackcopy, batch: int, length: int, seed: int = 0, trigger_boost: float = 1.0):
    """``get_batch(step) -> (x, y)`` for ``headlab.train.train``."""

    def get(step):
        s = task.sample(batch, length + 1, seed=seed * 100_003 + step, trigger_boost=trigger_boost)
        t = torch.as_tensor(s)
        return t[:, :-1], t[:, 1:]

    return get


@torch.no_grad()
def bb_copy_accuracy(model, task: BigramBackcopy, x: np.ndarray) -> float:
    """Argmax accuracy at the copy positions."""
    ids = torch.as_tensor(x)
    logits = model(ids).logits[:, :-1]
    pred = logits.argmax(-1).numpy()
    m = task.copy_positions(x)
    return float((pred == x[:, 1:])[m].mean()) if m.any() else float("nan")


def model_scores(model, ids: torch.Tensor, names: Sequence[str]) -> dict[str, np.ndarray]:
    """Scores ``[input, layer, head]`` of one unablated forward of a headlab model on ``ids``
    (switches it to eager attention for the duration when patterns are needed)."""
    with heads.eager(model) if "pattern" in needs_of(names) else contextlib.nullcontext():
        s, _ = record_scores(model, lambda: model(ids), names)
    return s


def flip_rate(states: Sequence[np.ndarray]) -> list[float]:
    """Fraction of (input, layer, head) states that change between consecutive checkpoints."""
    return [float((a != b).mean()) for a, b in itertools.pairwise(states)]


def final_level(frac: Sequence[float], tail: float = 0.2) -> float:
    """The level a noisy training curve ends at: the mean of its last ``tail`` fraction of checkpoints."""
    frac = np.asarray(frac, float)
    return float(frac[-max(1, int(round(tail * len(frac)))) :].mean())


def plateau_step(
    steps: Sequence[int], frac: Sequence[float], level: float = 0.8, window: int = 3, tail: float = 0.2
) -> int | None:
    """When a noisy curve reaches its plateau: the first checkpoint from which the rolling mean
    (``window`` checkpoints, trailing) stays at or above ``level`` x the final level (``final_level``).
    None when the final level is 0 (nothing emerged)."""
    steps, frac = np.asarray(steps), np.asarray(frac, float)
    final = final_level(frac, tail)
    if final <= 0:
        return None
    roll = np.array([frac[max(0, i - window + 1) : i + 1].mean() for i in range(len(frac))])
    ok = roll >= level * final
    for i in range(len(frac)):
        if ok[i:].all():
            return int(steps[i])
    return None


# --------------------------------------------------------------------------------------------
# speed: dynamic zeroing against a plain forward
# --------------------------------------------------------------------------------------------


def overhead(model, ids: torch.Tensor, taus: dict[str, float], pairs: int = 3) -> pd.DataFrame:
    """Time of the body forward with per-input zeroing by each score in ``taus`` (name -> threshold;
    scores computed in the same forward) over a plain forward, by the benchmark harness: ``pairs``
    interleaved A B B A quads after a warm-up; median ratio, IQR and 95 % interval of the median."""
    from ..bench import paired

    def plain():
        with torch.no_grad():
            ev.final_hidden(model, ids)

    def zeroed(name):
        def run():
            with (
                torch.no_grad(),
                heads.intervene(model, heads.zero_where(Selector(name, taus[name])), needs=SCORES[name].needs),
            ):
                ev.final_hidden(model, ids)

        return run

    rows = []
    for name in taus:
        r = paired(plain, zeroed(name), pairs)
        rows.append(
            {
                "score": name,
                "ratio": r["median"],
                "q25": r["q25"],
                "q75": r["q75"],
                "ci_low": r["ci_low"],
                "ci_high": r["ci_high"],
                "pairs": pairs,
                "plain_seconds": r["base_median_s"],
            }
        )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# helpers for the notebook: training with checkpoint scoring, curve comparisons, data
# --------------------------------------------------------------------------------------------


def train_dynamics(
    task: BigramBackcopy,
    cfg,
    steps: int,
    every: int,
    lr: float,
    batch: int,
    seq: int,
    eval_ids: np.ndarray,
    eval_labels: Sequence[str],
    taus: dict[str, float],
    seed: int = 0,
    model=None,
    trigger_boost: float = 1.0,
    warmup: int = 20,
    min_lr_ratio: float = 0.1,
    desc: str = "BB",
):
    """Train a headlab model on Bigram-Backcopy and score it at checkpoints every ``every`` steps
    (and at step 0) on ``eval_ids``. ``taus``: score name -> fixed threshold (direction from SCORES).

    Returns ``(model, log, states)``: ``log`` one row per (checkpoint, score) with the dormant
    fraction overall and per eval label and the copy accuracy (on the rows of the first label);
    ``states[name]`` a list of ``[input, layer, head]`` bool arrays, one per checkpoint.
    """
    from ..nn import HeadlabLM
    from ..train import TrainConfig, train

    if model is None:
        torch.manual_seed(seed)
        model = HeadlabLM(cfg)
    ids = torch.as_tensor(eval_ids)
    labels = np.asarray(eval_labels)
    names = list(taus)
    log, states = [], {n: [] for n in names}
    first_rows = eval_ids[labels == labels[0]]

    def score(step, m):
        s = model_scores(m, ids, names)
        acc = bb_copy_accuracy(m, task, first_rows)
        for n in names:
            st = flagged(s[n], taus[n], SCORES[n].flag_high)
            states[n].append(st)
            row = {"step": step, "score": n, "dormant_frac": float(st.mean()), "copy_acc": acc}
            for lab in np.unique(labels):
                row[f"dormant_frac_{lab}"] = float(st[labels == lab].mean())
            log.append(row)

    model.eval()
    score(0, model)
    tc = TrainConfig(
        steps=steps,
        lr=lr,
        warmup=warmup,
        min_lr_ratio=min_lr_ratio,
        eval_every=10**9,
        checkpoint_every=every,
        seed=seed,
    )
    train(
        model,
        bb_batches(task, batch, seq, seed=seed, trigger_boost=trigger_boost),
        tc,
        on_checkpoint=score,
        progress=True,
        desc=desc,
    )
    return model, pd.DataFrame(log), states


def dominates(curves: pd.DataFrame, a: str, b: str, grid: Sequence[float], higher_is_better: bool) -> dict:
    """Is score ``a``'s curve better than ``b``'s at every achieved % of ``grid`` both reach?"""
    mc = matched_comparison(curves, a, b, grid)
    if mc.empty:
        return {"holds": False, "n": 0, "min_margin": float("nan"), "mean_margin": float("nan")}
    margin = (mc[a] - mc[b]) * (1 if higher_is_better else -1)
    return {
        "holds": bool((margin > 0).all()),
        "n": len(mc),
        "min_margin": float(margin.min()),
        "mean_margin": float(margin.mean()),
    }


def rel_spread(x: Sequence[float]) -> float:
    """(max - min) / mean: a scale-free spread of thresholds."""
    x = np.asarray(x, float)
    return float((x.max() - x.min()) / abs(x.mean()))


def restrict_models(P, names: Sequence[str]):
    """The profile's parameters for a subset of its models, in the profile's order (per-model score lists
    follow; the next-token-loss sweep keeps its count). For a machine that holds only some of the weights,
    e.g. the lent GPU, which receives SmolLM2 through ``headlab ship`` but not Gemma."""
    from ..profiles import Params, ProfileError

    names = list(names)
    bad = [n for n in names if n not in P.models]
    if not names or bad:
        raise ProfileError(f"models must be a non-empty subset of this profile's {P.models}; got {names}")
    keep = [i for i, n in enumerate(P.models) if n in names]
    return Params(
        {
            **P,
            "models": [P.models[i] for i in keep],
            "mc_scores": [P.mc_scores[i] for i in keep],
            "nll_models": min(P.nll_models, len(keep)),
        }
    )


def mmlu_subset(n_subjects: int | None, per_subject: int, seed: int = 0, max_chars: int | None = None) -> list[MCItem]:
    """A subject-stratified MMLU sample: ``per_subject`` items from each of ``n_subjects`` subjects
    spread evenly over the alphabetical list (all 57 when None). ``max_chars`` keeps only items
    whose prompt plus longest choice is that short (a CPU budget device: it favours short
    questions), and only subjects with enough such items."""
    from ..data import mmlu

    by: dict[str, list[MCItem]] = {}
    for it in mmlu(None, seed=seed):
        if max_chars is None or len(it.prompt) + max(map(len, it.choices)) <= max_chars:
            by.setdefault(it.subject, []).append(it)
    subjects = sorted(s for s, v in by.items() if len(v) >= per_subject)
    if n_subjects and n_subjects < len(subjects):
        subjects = [subjects[int(i)] for i in np.linspace(0, len(subjects) - 1, n_subjects).round()]
    rng = random.Random(seed)
    out = []
    for s in subjects:
        out += rng.sample(by[s], per_subject)
    return out


def text_set(per_type: int, seed: int = 0, min_chars: int = 300) -> list[dict]:
    """``per_type`` paragraphs of every text type of the shipped corpus ({"type", "text"})."""
    from ..data import paragraphs, text_types

    out = []
    for t in text_types():
        out += [{"type": t, "text": p["text"]} for p in paragraphs(t, min_chars=min_chars, n=per_type, seed=seed)]
    return out


# --------------------------------------------------------------------------------------------
# per-unit tidy data for the claims (headlab.papers.dormant_heads_claims reads these CSVs)
# --------------------------------------------------------------------------------------------

CLAIM_SCORES = ("random", "ahon", "ahon_ln", "awft")  # the functions whose per-item results the claims use


def per_item_frame(extra: dict, scores: Sequence[str] = CLAIM_SCORES) -> pd.DataFrame:
    """One row per (model, task, item) from ``sweep``'s per-item results (``extra[(model, task)]``).

    ``n_tok`` is 1 for multiple choice and the text's scored tokens for next-token loss; ``base`` is the
    unablated pass; ``<score>@<p>`` is the item's result at nominal quantile p: 1/0 correct (MC) or the
    summed loss in nats over the text (so a sweep point's metric is ``100 * sum / n`` or ``sum / sum(n_tok)``).
    """
    frames = []
    for (model, task), ex in extra.items():
        pi = ex["per_item"]
        keys = [(s, p) for (s, p) in pi if s in scores]
        if not keys:
            continue
        nll = "nll" in task

        def vals(v, nll=nll):  # called within this iteration only
            if nll:
                return [float(np.sum(a)) for a in v], [len(a) for a in v]
            v = np.asarray(v).astype(int)
            return list(v), [1] * len(v)

        base, n_tok = vals(pi[keys[0][0], min(p for s, p in keys)])
        d = {"model": model, "task": task, "item": np.arange(len(base)), "n_tok": n_tok, "base": base}
        for s, p in keys:
            if p > 0:
                d[f"{s}@{p:g}"] = vals(pi[s, p])[0]
        frames.append(pd.DataFrame(d))
    return pd.concat(frames, ignore_index=True)


def threshold_bootstrap(
    cal: dict, combos: Sequence[tuple[str, str, float]], n_boot: int = 200, seed: int = 0
) -> pd.DataFrame:
    """Quantile thresholds recomputed on calibration inputs resampled with replacement (the forwards of
    the unablated pass are the unit): ``combos`` = (dataset, score, p); one resample per (model, dataset)
    and replicate, shared by every score and p of that pass. Rows: model, dataset, score, p, rep, threshold."""
    rows = []
    for k, ((model, dataset), c) in enumerate(cal.items()):
        mine = [(s, p) for d, s, p in combos if d == dataset]
        if not mine:
            continue
        n = c.scores[mine[0][0]].shape[0]
        rng = np.random.default_rng([seed, k])  # an independent stream per calibration pass
        for r in range(n_boot):
            idx = rng.integers(0, n, n)
            for s, p in mine:
                rows.append(
                    {
                        "model": model,
                        "dataset": dataset,
                        "score": s,
                        "p": p,
                        "rep": r,
                        "threshold": threshold(c.scores[s][idx], p, SCORES[s].flag_high),
                    }
                )
    return pd.DataFrame(rows)


def dynamics_per_input(states: dict, steps: Sequence[int], labels: Sequence[str]) -> pd.DataFrame:
    """One row per (score, eval input): its dormant fraction of heads at every checkpoint (columns
    ``step_<s>``) and its mean rate of state switches between consecutive checkpoints (``flip_rate``)."""
    frames = []
    for s, st in states.items():
        A = np.stack(st)  # [checkpoint, input, layer, head]
        frac = A.mean(axis=(2, 3)).T  # [input, checkpoint]
        d = pd.DataFrame(frac, columns=[f"step_{x}" for x in steps])
        d.insert(0, "label", list(labels))
        d.insert(0, "input", np.arange(frac.shape[0]))
        d.insert(0, "score", s)
        d["flip_rate"] = (A[1:] != A[:-1]).mean(axis=(0, 2, 3)) if len(A) > 1 else np.nan
        frames.append(d)
    return pd.concat(frames, ignore_index=True)

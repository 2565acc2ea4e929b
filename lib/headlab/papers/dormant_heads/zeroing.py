"""Calibration (one unablated pass, every score), thresholds, and per-input in-pass zeroing sweeps."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ... import heads
from .scores import PAPER_SCORES, SCORES, check_scores
from .tasks import Task

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
    units: np.ndarray | None = None  # the unit of each scored input (Task.input_units); None: each input its own


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
    units = task.input_units(tok)
    n = next(iter(scores.values())).shape[0] if scores else 0
    if units is not None and len(units) != n:
        raise RuntimeError(f"{task.name}: {len(units)} input units for {n} scored inputs")
    return Calibration(task.name, scores, r["metric"], r["per_item"], time.perf_counter() - t, units)


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


RANDOM_SEED_STRIDE = 100_003  # seed offset between random draws (a prime, so no draw repeats another quantile's)


def _mean_result(rs: list[dict]) -> dict:
    """The mean of several ``Task.evaluate`` results: metric, and per item (MC: fraction correct, bool when
    one draw; NLL: elementwise mean of each text's per-token losses)."""
    if len(rs) == 1:
        return rs[0]
    pis = [r["per_item"] for r in rs]
    if isinstance(pis[0], np.ndarray):
        per_item = np.mean([np.asarray(p, float) for p in pis], axis=0)
    else:
        per_item = [np.mean(np.stack(a), axis=0) for a in zip(*pis, strict=True)]
    return {"metric": float(np.mean([r["metric"] for r in rs])), "per_item": per_item}


def sweep(
    model,
    tok,
    task: Task,
    names: Sequence[str],
    quantiles: Sequence[float],
    calib: Calibration,
    model_name: str = "",
    seed: int = 0,
    random_seeds: int = 1,
) -> tuple[pd.DataFrame, dict]:
    """One ablated run per (score, nominal quantile > 0); the 0% point is the unablated baseline.

    ``random`` runs ``random_seeds`` times with independent head draws (seed 0 is the single run's draw) and
    its point is their mean: the metric, the achieved %, each item's result (an MC item's fraction correct
    over the draws, a text's mean per-token loss) and the per-head frequency. Its bootstrap (over prompts) then
    estimates the expected curve under random zeroing, not one draw's.

    Returns the curve table (one row per point) and ``per_item[(score, p)]`` for bootstraps, plus
    ``freq[(score, p)]`` (per-head zeroing frequency across inputs) under key "freq" and each item's unit of
    replication (``Task.units``) under key "units".
    """
    if random_seeds < 1:
        raise ValueError(f"random_seeds must be >= 1, got {random_seeds}")
    taus = thresholds(calib, names, quantiles)
    rows, per_item, freq = [], {}, {}
    for n in names:
        for p in quantiles:
            t0 = time.perf_counter()
            if p == 0:
                r, pct, f = {"metric": calib.baseline, "per_item": calib.per_item}, 0.0, None
            else:
                draws = [
                    ablate(model, tok, task, n, taus[n, p], seed=seed + int(round(1000 * p)) + RANDOM_SEED_STRIDE * k)
                    for k in range(random_seeds if n == "random" else 1)
                ]
                r = _mean_result([d[0] for d in draws])
                pct = float(np.mean([d[1].achieved_pct() for d in draws]))
                f = np.mean([d[1].head_frequency() for d in draws], axis=0)
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
    return pd.DataFrame(rows), {"per_item": per_item, "freq": freq, "units": task.units()}


# --------------------------------------------------------------------------------------------
# every model and dataset: the notebook's calibration passes and sweeps
# --------------------------------------------------------------------------------------------


def calibration_score_names(swept: Sequence[Sequence[str]]) -> list[str]:
    """The scores a calibration pass records, in ``SCORES`` order: the paper's 14 (random excepted, it
    has no score) and any other function that some sweep of ``swept`` (lists of names) uses, e.g. the
    post-W_O variants on the gpu profile."""
    names = {n for ns in swept for n in ns}
    return [n for n in SCORES if n != "random" and (n in PAPER_SCORES or n in names)]


def calibrate_all(lms: dict, tasks: dict, names: Sequence[str]) -> dict[tuple[str, str], Calibration]:
    """(model, dataset) -> ``calibrate``: every dataset of ``tasks[model]`` on every model of ``lms``
    (name -> (model, tokenizer))."""
    cal = {}
    for name, (m, tok) in lms.items():
        for tname, task in tasks[name].items():
            cal[name, tname] = calibrate(m, tok, task, names)
    return cal


def sweep_plan(
    models: Sequence[str],
    mc_scores: Sequence[Sequence[str]],
    nll_scores: Sequence[str],
    nll_models: int,
    mmlu_scores: Sequence[str],
) -> dict[str, list[tuple[str, list[str]]]]:
    """model -> [(dataset, score names)] to sweep: generated MC with the model's own list of
    ``mc_scores``, next-token loss on the first ``nll_models`` models, MMLU when ``mmlu_scores`` is set."""
    return {
        name: [("generated_mc", mc_scores[i])]
        + ([("text_nll", nll_scores)] if i < nll_models else [])
        + ([("mmlu", mmlu_scores)] if mmlu_scores else [])
        for i, name in enumerate(models)
    }


def run_sweeps(
    lms: dict,
    tasks: dict,
    cal: dict,
    plan: dict,
    quantiles: Sequence[float],
    seed: int = 0,
    random_seeds: int = 1,
) -> tuple[pd.DataFrame, dict]:
    """``sweep`` every (model, dataset, scores) of ``plan`` against its calibration pass ``cal`` (random averaged
    over ``random_seeds`` draws). Returns all curves in one table and ``extra[(model, dataset)]``, ``sweep``'s
    per-item results and frequencies."""
    curves, extra = [], {}
    for name, (m, tok) in lms.items():
        for tname, names in plan[name]:
            c, extra[name, tname] = sweep(
                m,
                tok,
                tasks[name][tname],
                names,
                quantiles,
                cal[name, tname],
                model_name=name,
                seed=seed,
                random_seeds=random_seeds,
            )
            curves.append(c)
    return pd.concat(curves, ignore_index=True), extra

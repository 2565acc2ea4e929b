"""The go/no-go pilot for sink formation (issue 23): does a small model pretrained on the big corpus form
attention sinks, and if not, how fast is it heading there?

One headlab model (bos_causal: a fixed ⟨bos⟩ at position 0 of every packed window) trains on random byte
windows of ``data.big_corpus("train")`` (``make corpus-big``) at a constant learning rate after warmup, so the
run can stop at any step with an interpretable log. Every ``eval_every`` steps it scores held-out windows
(the first ``ctx - 1`` bytes of validation documents, after ⟨bos⟩) in both first-position conventions:
the mean attention on key 0 over every query row (Gu et al.'s code) and over rows 1.. (row 0 can only
attend to itself). The criterion, fixed before the run: sinks formed when the sink rate at ε = 0.3 (share
of (window, layer, head) triples whose first-position score exceeds 0.3) reaches 20 % on the held-out
windows. ``trend`` fits the mean first-position score against log10(tokens seen) over the second half of
the log and projects when the criterion's score could be reached.

    python -m headlab.papers.attention_sinks.pilot --minutes 60 --out figures/attention_sinks/cpu_pilot
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ...data import ByteTokenizer, big_corpus
from ...paths import CACHE_DIR, FIGURES_DIR
from ...train import TrainConfig, lr_at, make_optimizer, progress_bar
from .patterns import attention_patterns, chance_score, first_position_scores
from .published import SINK_FORMED_PCT
from .training import VARIANTS, PretrainSpec, build_model

EPS = (0.3, 0.8)
SEPARATOR = 0xFF  # the big corpus's byte-file document separator (never valid UTF-8)


@dataclass
class PilotSpec:
    model: dict = field(default_factory=lambda: {"d_model": 128, "n_layers": 6, "n_heads": 8, "d_mlp": 512})
    ctx: int = 256
    batch: int = 32
    lr: float = 5e-3
    weight_decay: float = 0.5  # Gu et al.: larger weight decay, more sink
    warmup: int = 100
    eval_every: int = 100
    n_eval: int = 64
    seed: int = 0


def byte_windows(tokens: np.ndarray, batch: int, ctx: int, rng: np.random.Generator) -> tuple[torch.Tensor, ...]:
    """``(x, y)`` ``[batch, ctx]``: ⟨bos⟩ then ``ctx - 1`` stream bytes from a random offset (documents packed, the
    separator byte read as ⟨eos⟩); ``y`` the next token at every position, the first stream byte for ⟨bos⟩."""
    ix = rng.integers(0, len(tokens) - ctx - 1, batch)
    span = np.asarray(tokens[ix[:, None] + np.arange(ctx)], dtype=np.int64)  # [batch, ctx]
    span[span == SEPARATOR] = ByteTokenizer.eos_token_id
    toks = torch.from_numpy(span)
    bos = torch.full((batch, 1), ByteTokenizer.bos_token_id)
    return torch.cat([bos, toks[:, :-1]], 1), toks


def doc_start_windows(tokens: np.ndarray, offsets: np.ndarray, n: int, n_text: int) -> torch.Tensor:
    """``[n, n_text]`` the first ``n_text`` bytes of the first ``n`` documents that long (held-out windows)."""
    out = []
    for a, b in zip(offsets[:-1], offsets[1:], strict=True):
        if b - 1 - a >= n_text:
            out.append(np.asarray(tokens[a : a + n_text], dtype=np.int64))
        if len(out) == n:
            break
    if len(out) < n:
        raise ValueError(f"only {len(out)} documents have {n_text} bytes; asked for {n}")
    return torch.from_numpy(np.stack(out))


@torch.no_grad()
def score(model, windows: torch.Tensor) -> dict:
    """Both conventions' sink rates (%), mean first-position scores and per-layer rates at ε = 0.3, plus the
    loss on the windows' text bytes, for ``windows [n, T-1]`` fed after ⟨bos⟩ (T tokens)."""
    x = torch.cat([torch.full((len(windows), 1), ByteTokenizer.bos_token_id), windows], 1)
    pat = attention_patterns(model, x)  # [layer, batch, head, q, k]
    row = {}
    for name, incl in (("incl", True), ("excl", False)):
        s = first_position_scores(pat, include_first_row=incl)  # [window, layer, head]
        for e in EPS:
            row[f"sink_{e:g}_{name}"] = 100.0 * float((s > e).float().mean())
        row[f"mean_score_{name}"] = float(s.mean())
        for l, v in enumerate((s > EPS[0]).float().mean(dim=(0, 2)).tolist()):
            row[f"layer{l}_sink_{EPS[0]:g}_{name}"] = 100.0 * v
    logits = model(x[:, :-1]).logits.float()
    row["eval_loss"] = float(torch.nn.functional.cross_entropy(logits.flatten(0, 1), windows.flatten()))
    return row


@torch.no_grad()
def window_rates(model, windows: torch.Tensor) -> pd.DataFrame:
    """One row per held-out window: its sink rates (% of layer x head pairs) and mean first-position score in both
    conventions, the unit the pilot's verdict resamples."""
    x = torch.cat([torch.full((len(windows), 1), ByteTokenizer.bos_token_id), windows], 1)
    pat = attention_patterns(model, x)
    out = {"window": np.arange(len(windows))}
    for name, incl in (("incl", True), ("excl", False)):
        s = first_position_scores(pat, include_first_row=incl)  # [window, layer, head]
        for e in EPS:
            out[f"sink_{e:g}_{name}"] = 100.0 * (s > e).float().mean(dim=(1, 2)).numpy()
        out[f"mean_score_{name}"] = s.mean(dim=(1, 2)).numpy()
    return pd.DataFrame(out)


def score_final(out: Path, ckpt_dir: Path, corpus: Path | None = None) -> pd.DataFrame:
    """``pilot_windows.csv`` in ``out``: ``window_rates`` of the last checkpoint in ``ckpt_dir`` on the run's held-out
    windows (rebuilt from ``pilot_params.json``)."""
    meta = json.loads((out / "pilot_params.json").read_text())
    spec = PilotSpec(**{k: meta[k] for k in PilotSpec.__dataclass_fields__})
    last = sorted(ckpt_dir.glob("step*.pt"))[-1]
    model = build_model(PretrainSpec(spec.ctx, spec.batch * spec.ctx, 1, VARIANTS["bos_causal"], spec.model))
    model.load_state_dict(torch.load(last, map_location="cpu"))
    val_t, val_off = big_corpus("val", "bytes", path=corpus)
    d = window_rates(model.eval(), doc_start_windows(val_t, val_off, spec.n_eval, spec.ctx - 1))
    d.insert(0, "step", int(last.stem[4:]))
    d.to_csv(out / "pilot_windows.csv", index=False, float_format="%.5g")
    return d


def run(
    spec: PilotSpec,
    minutes: float,
    out: Path,
    ckpt_dir: Path | None = None,
    progress: bool = True,
    max_steps: int | None = None,
    corpus: Path | None = None,
) -> pd.DataFrame:
    """Train until ``minutes`` of wall time have passed (checked after each step) or ``max_steps``, scoring every
    ``eval_every`` steps; writes ``pilot_log.csv`` and ``pilot_params.json`` to ``out`` after every evaluation
    (so a stopped run keeps its log) and, with ``ckpt_dir``, a state dict per evaluation there. ``corpus``: a big
    corpus folder other than ``.cache/corpus_big``."""
    train_t, _ = big_corpus("train", "bytes", path=corpus)
    val_t, val_off = big_corpus("val", "bytes", path=corpus)
    windows = doc_start_windows(val_t, val_off, spec.n_eval, spec.ctx - 1)
    val_rng = np.random.default_rng(10_000 + spec.seed)
    val_batches = [byte_windows(val_t, spec.batch, spec.ctx, val_rng) for _ in range(4)]
    model = build_model(
        PretrainSpec(spec.ctx, spec.batch * spec.ctx, 1, VARIANTS["bos_causal"], spec.model, seed=spec.seed)
    )
    tc = TrainConfig(steps=10**9, lr=spec.lr, min_lr_ratio=1.0, warmup=spec.warmup, weight_decay=spec.weight_decay)
    opt = make_optimizer(model, tc)
    rng = np.random.default_rng(spec.seed)
    out.mkdir(parents=True, exist_ok=True)
    n_params = sum(p.numel() for p in model.parameters())
    meta = {
        **asdict(spec),
        "params": n_params,
        "variant": "bos_causal",
        "criterion": f"sink rate at eps 0.3 >= {SINK_FORMED_PCT:g}% of (held-out window, layer, head) triples",
        "chance_mean_score_incl": chance_score(spec.ctx),
        "chance_mean_score_excl": float(np.mean([1.0 / (q + 1) for q in range(1, spec.ctx)])),
        "corpus": "data.big_corpus('train', 'bytes') (make corpus-big)",
        "corpus_bytes": int(len(train_t)),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch thread(s), {os.cpu_count()} cores",
        "torch": torch.__version__,
    }
    log, t0, step, running = [], time.time(), 0, float("nan")

    def evaluate():
        model.eval()
        with torch.no_grad():
            vl = float(np.mean([model(x, labels=y).loss.item() for x, y in val_batches]))
        row = {"step": step, "tokens_seen": step * spec.batch * spec.ctx, "seconds": time.time() - t0}
        row |= {"train_loss": running, "val_loss": vl, **score(model, windows)}
        model.train()
        log.append(row)
        pd.DataFrame(log).to_csv(out / "pilot_log.csv", index=False, float_format="%.5g")
        (out / "pilot_params.json").write_text(json.dumps(meta | {"steps": step}, indent=1) + "\n")
        if ckpt_dir is not None:
            ckpt_dir.mkdir(parents=True, exist_ok=True)
            torch.save(model.state_dict(), ckpt_dir / f"step{step:07d}.pt")
        return row

    model.train()
    evaluate()
    bar = progress_bar(iter(int, 1), "sink pilot", progress)
    for _ in bar:
        for g in opt.param_groups:
            g["lr"] = lr_at(step, tc)
        x, y = byte_windows(train_t, spec.batch, spec.ctx, rng)
        loss = model(x, labels=y).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        opt.step()
        running = loss.item() if math.isnan(running) else 0.95 * running + 0.05 * loss.item()
        step += 1
        if step % spec.eval_every == 0:
            r = evaluate()
            bar.set_postfix(
                loss=f"{running:.3f}", sink=f"{r['sink_0.3_incl']:.1f}%", score=f"{r['mean_score_incl']:.3f}"
            )
        if time.time() - t0 > 60 * minutes or (max_steps is not None and step >= max_steps):
            break
    if step % spec.eval_every:
        evaluate()
    return pd.DataFrame(log)


def trend(log: pd.DataFrame, conv: str = "incl", frac: float = 0.5) -> dict:
    """The measured trend of the criterion: a least-squares fit of the sink rate at ε = 0.3 (%) on log10(tokens seen)
    over the last ``frac`` of the evaluations, the tokens at which the fitted line would reach the criterion's 20 %
    (NaN when the slope is not positive; a straight line in log tokens, so an extrapolation, not a forecast), and the
    hours that would take at this run's measured throughput. The same fit of the mean first-position score is
    reported beside it (``score_slope_per_decade``)."""
    d = log[log.tokens_seen > 0]
    d = d.iloc[int(len(d) * (1 - frac)) :]
    x = np.log10(d.tokens_seen.to_numpy(float))

    def fit(col):
        return np.polyfit(x, d[col].to_numpy(float), 1) if len(d) >= 3 else (float("nan"), float("nan"))

    slope, icpt = fit(f"sink_{EPS[0]:g}_{conv}")
    s_slope, _ = fit(f"mean_score_{conv}")
    final = log.iloc[-1]
    proj = 10 ** ((SINK_FORMED_PCT - icpt) / slope) if slope > 0 else float("nan")
    rate = float(final.tokens_seen / final.seconds) if final.seconds > 0 else float("nan")
    return {
        "convention": conv,
        "n_evals_fitted": len(d),
        "slope_per_decade": float(slope),
        "score_slope_per_decade": float(s_slope),
        "final_tokens": int(final.tokens_seen),
        "final_mean_score": float(final[f"mean_score_{conv}"]),
        "final_sink_0.3": float(final[f"sink_0.3_{conv}"]),
        "max_sink_0.3": float(log[f"sink_0.3_{conv}"].max()),
        "formed": bool(log[f"sink_0.3_{conv}"].max() >= SINK_FORMED_PCT),
        "projected_tokens": float(proj),
        "tokens_per_s": rate,
        "projected_hours": float(proj / rate / 3600) if np.isfinite(proj) else float("nan"),
    }


def pilot_table(log: pd.DataFrame, meta: dict) -> pd.DataFrame:
    """The figure's tidy table (``figures.pilot``): one row per (evaluation, panel, series) from the raw log and the
    run's parameters (chance levels, criterion)."""
    rows = []
    for r in log.to_dict("records"):
        t = r["tokens_seen"]
        rate, score, loss = "sink rate at ε = 0.3 (%)", "mean first-position score", "loss (nats/byte)"
        for conv, name in (("incl", "query row 0 included"), ("excl", "query row 0 excluded")):
            rows.append((t, rate, name, r[f"sink_0.3_{conv}"]))
            rows.append((t, score, name, r[f"mean_score_{conv}"]))
        rows.append((t, rate, f"criterion ({SINK_FORMED_PCT:g} %)", SINK_FORMED_PCT))
        for conv in ("incl", "excl"):
            rows.append((t, score, f"chance, row 0 {conv}uded (uniform causal)", meta[f"chance_mean_score_{conv}"]))
        rows.append((t, loss, "validation (random windows)", r["val_loss"]))
        if np.isfinite(r["train_loss"]):
            rows.append((t, loss, "train (running mean)", r["train_loss"]))
    return pd.DataFrame(rows, columns=["tokens_seen", "panel", "series", "value"])


def replot(out: Path) -> Path:
    """``pilot.csv`` and ``pilot.png`` in ``out`` from its ``pilot_log.csv`` and ``pilot_params.json``."""
    from ...figures import write_png
    from .figures import pilot

    log = pd.read_csv(out / "pilot_log.csv")
    table = pilot_table(log, json.loads((out / "pilot_params.json").read_text()))
    table.to_csv(out / "pilot.csv", index=False, float_format="%.5g")
    fig = pilot(pd.read_csv(out / "pilot.csv"))
    write_png(fig, out / "pilot.png")
    return out / "pilot.png"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m headlab.papers.attention_sinks.pilot", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--minutes", type=float, default=60.0, help="wall-time budget (default 60)")
    ap.add_argument("--out", type=Path, default=FIGURES_DIR / "attention_sinks" / "cpu_pilot")
    ap.add_argument("--ckpt", type=Path, default=CACHE_DIR / "sink_pilot", help="state dicts per evaluation")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    ap.add_argument("--spec", default="{}", help="JSON overrides of PilotSpec, e.g. '{\"lr\": 0.003}'")
    ap.add_argument("--score-final", action="store_true", help="only write pilot_windows.csv from the last checkpoint")
    ap.add_argument(
        "--replot", action="store_true", help="only redraw pilot.csv / pilot.png / pilot_trend.csv in --out"
    )
    a = ap.parse_args(argv)
    if a.score_final:
        print(score_final(a.out, a.ckpt).describe().round(3).to_string())
        return 0
    if a.replot:
        if not (a.out / "pilot_log.csv").exists():
            ap.error(f"no pilot_log.csv in {a.out}")
        _trend_csv(pd.read_csv(a.out / "pilot_log.csv"), a.out)
        print(f"redrawn: {replot(a.out)}")
        return 0
    if a.minutes <= 0:
        ap.error("--minutes must be > 0")
    spec = PilotSpec(**json.loads(a.spec))
    big_corpus("train", "bytes")  # a missing corpus is a one-line DataError before any work
    if a.threads:
        torch.set_num_threads(a.threads)
    log = run(spec, a.minutes, a.out, a.ckpt)
    score_final(a.out, a.ckpt)
    _trend_csv(log, a.out)
    replot(a.out)
    return 0


def _trend_csv(log: pd.DataFrame, out: Path) -> None:
    t = pd.DataFrame([trend(log, c) for c in ("incl", "excl")])
    t.to_csv(out / "pilot_trend.csv", index=False, float_format="%.5g")
    print(t.to_string(index=False))


if __name__ == "__main__":
    raise SystemExit(main())

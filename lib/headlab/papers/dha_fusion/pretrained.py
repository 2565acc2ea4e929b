"""DHA from a pretrained source (issue 24): SmolLM2-135M (GQA, 3 KV heads in each of 30 layers) converted to fewer
KV heads by GQA mean-pooling or by head fusion, then trained on the shipped corpus in SmolLM2's tokenizer.

The byte-model source of the notebook is far from the paper's regime (overfit, heads not redundant, a training
budget of 13 % of its pretraining). A pretrained model is the regime the claim is about: at equal KV budget and
the same few tokens, does fusion beat mean-pooling? Every arm sees the same token stream and is charged its search
and fusion tokens (``arms.run_arm``); the learning rate is held constant at ``lr`` after a short warm-up (the paper
used ~1e-4, a third of its source's peak; no restart to a peak), so each arm's loss at a smaller token budget is
read off its own curve (linear between evaluations). Losses are nats/token on held-out windows: ``val`` (tuning,
curves) and ``test`` (the claims), each the tail of every text type's token stream.

The committed CPU run (``figures/dha_fusion/cpu_smollm/``) is the union of six runs, two processes side by side on
one thread each, 16 fusion steps with the dual ascent at 30 (chosen on fusion-only probes of seed 1: 8 steps could not
merge the heads without wrecking the model, collapse cost 0.34-0.38 nats), with the source + CT control reused from
the first run (``cpu_smollm_unfused``: same seeds, streams and windows, to 32k tokens):

    python -m headlab.papers.dha_fusion.pretrained --out cpu_smollm_third --threads 1 --budgets 0.3333333333333333 \
        --arms GQA "uniform + fusion" --seeds 0 1 2 --no-decode
    python -m headlab.papers.dha_fusion.pretrained --out cpu_smollm_twothirds --threads 1 \
        --budgets 0.6666666666666666 --arms GQA "uniform + fusion" --seeds 0 1 2 --no-decode
    python -m headlab.papers.dha_fusion.pretrained --out cpu_smollm_litea --threads 1 \
        --budgets 0.6666666666666666 --arms DHA-lite --seeds 0 1 --no-decode
    python -m headlab.papers.dha_fusion.pretrained --out cpu_smollm_liteb --threads 1 \
        --budgets 0.6666666666666666 --arms DHA-lite --seeds 2 --no-decode
    python -m headlab.papers.dha_fusion.pretrained --out cpu_smollm --merge cpu_smollm_third cpu_smollm_twothirds \
        cpu_smollm_litea cpu_smollm_liteb cpu_smollm_unfused cpu_smollm_third_b cpu_smollm_third_c
    python -m headlab.papers.dha_fusion.pretrained --out cpu_smollm --threads 1 --decode-only \
        --budgets 0.3333333333333333 0.6666666666666666   # the decode table, alone on the machine

Four more seeds at 1/3 (2026-12-04; merged into ``cpu_smollm``, judged by the unchanged rules):

    python -m headlab.papers.dha_fusion.pretrained --out cpu_smollm_third_b --threads 1 --budgets 0.3333333333333333 \
        --arms GQA "uniform + fusion" --seeds 3 4 --no-decode   # and cpu_smollm_third_c with --seeds 5 6

The per-arm learning-rate grid (issue 24, fixed 2026-12-04 before it ran; a sensitivity check, not a verdict): seed 0,
both KV budgets, GQA and uniform + fusion at 3e-5 and 3e-4 beside the committed 1e-4, read at N0 = 24k tokens; each
arm's rate is the one with the lowest validation loss there (``lr_grid``), and what is reported is whether fusion -
GQA test loss keeps its sign when each arm trains at its own rate (``lr_grid_summary``):

    python -m headlab.papers.dha_fusion.pretrained --out cpu_smollm_lr3e-05 --threads 1 --lr 3e-5 --tokens 24576 \
        --budgets 0.3333333333333333 0.6666666666666666 --arms GQA "uniform + fusion" --seeds 0 --no-decode
    (the same with --lr 3e-4 --out cpu_smollm_lr0.0003)
    python -m headlab.papers.dha_fusion.pretrained --out cpu_smollm --tokens 24576 \
        --lr-grid cpu_smollm cpu_smollm_lr3e-05 cpu_smollm_lr0.0003

Earlier runs: ``cpu_smollm_unfused`` (8 fusion steps at omega's Adam step 1e-2: L_fuse 0.58, not merged) and
``cpu_smollm_16k`` (16 fusion steps, dual ascent at 10, 2 seeds to 32k: the collapse cost +0.28 on seed 1).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ...paths import FIGURES_DIR
from .arms import Arm, Context, run_arm
from .checks import kv_cache_bytes

# name -> (allocation, initialisation) of arms.Arm
ARM_RECIPES = {
    "source + CT": ("source", "pool"),
    "GQA": ("gqa", "pool"),
    "uniform + fusion": ("uniform", "fusion"),
    "DHA-lite": ("cka", "fusion"),
    "DHA": ("probe", "fusion"),
    "DHA w/o fusion": ("probe", "pool"),
}


@dataclass
class SmolSpec:
    """Sizes of one pretrained-source run (the CLI's flags; the gpu profile's ``smollm_*`` parameters)."""

    model: str = "smollm2-135m"
    budgets: tuple = (1 / 3,)
    token_budgets: tuple = (24576, 49152)  # N: each arm's loss is read at these tokens seen (search + fusion + CT)
    arms: tuple = ("source + CT", "GQA", "uniform + fusion")
    seeds: tuple = (0, 1)
    seq: int = 256
    batch: int = 4
    lr: float = 1e-4
    warmup: int = 2
    fusion_tokens: int = 16384  # the fusion stage's share of every fusion arm's budget
    omega_lr: float = 0.1  # omega's Adam step: 1e-2 merges too slowly for a 16-step stage (L_fuse 0.58 after 8)
    fusion_objective: str = "target"
    fusion_eps: float = 1e-3
    dual_lr: float = 30.0  # at 10 the collapse cost seed 1 of the second run 0.28 nats; a probe at 30, -0.05
    lam_max: float = 500.0
    fusion_norm: str = "group"
    search_score: str = "fusability"
    allocation: str = "greedy"
    eval_every_tokens: int = 8192
    val_rows: int = 8
    test_rows: int = 16
    calib_rows: int = 4
    tail: float = 0.1  # of every text type's token stream: the first half validation, the second test
    device: str = "cpu"
    decode_batches: tuple = ()  # batch sizes of the decode table (decode_rows); () skips it

    @property
    def tokens_per_step(self) -> int:
        return self.seq * self.batch


def token_splits(tok, tail: float = 0.1, types=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every text type's documents in ``tok``'s ids (⟨eos⟩ between documents), split per type: the last ``tail`` of
    each type's stream is held out, its first half validation and its second half test. Returns (train, val,
    test) token arrays (types concatenated)."""
    from ... import data as hd
    from ...models import encode

    tr, va, te = [], [], []
    eos = tok.eos_token_id
    for t in types or hd.text_types():
        ids = []
        for d in hd.load_corpus(t):
            ids += encode(tok, d["text"], False) + [eos]
        a = np.asarray(ids, np.int64)
        c = int(len(a) * (1 - tail))
        h = c + (len(a) - c) // 2
        tr.append(a[:c])
        va.append(a[c:h])
        te.append(a[h:])
    return np.concatenate(tr), np.concatenate(va), np.concatenate(te)


def fixed_windows(tokens: np.ndarray, rows: int, seq: int) -> list:
    """``rows`` evenly spaced, non-overlapping windows of ``seq + 1`` ids as ``(x, y)`` batches of 4 rows."""
    n = len(tokens) - seq - 1
    if rows * (seq + 1) > len(tokens):
        raise ValueError(f"{len(tokens)} held-out tokens cannot give {rows} windows of {seq + 1}")
    starts = np.linspace(0, n, rows).astype(int)
    w = torch.as_tensor(np.stack([tokens[s : s + seq + 1] for s in starts]))
    return [(b[:, :-1], b[:, 1:]) for b in w.split(4)]


def loss_at(curve: list[dict], tokens: float, key: str = "loss") -> float:
    """An arm's loss after ``tokens`` (linear between its evaluations after collapse; NaN outside them)."""
    pts = sorted((r["tokens"], r[key]) for r in curve if r.get("phase") != "fusion" and key in r)
    t = np.array([p[0] for p in pts], float)
    if len(t) == 0 or tokens < t.min() or tokens > t.max():
        return float("nan")
    return float(np.interp(tokens, t, [p[1] for p in pts]))


def at_budget(curves: pd.DataFrame, token_budgets) -> pd.DataFrame:
    """Each (seed, budget, arm)'s val and test loss at every N of ``token_budgets`` (``loss_at``: NaN where the arm
    has no evaluation yet, e.g. before its search and fusion are paid for)."""
    at = []
    for (seed, b, a), g in curves.groupby(["seed", "budget", "arm"], sort=False):
        rows = g.to_dict("records")
        for n in token_budgets:
            at.append(
                {
                    "seed": seed,
                    "budget": b,
                    "arm": a,
                    "tokens": n,
                    "val_loss": loss_at(rows, n, "loss"),
                    "test_loss": loss_at(rows, n, "test_loss"),
                }
            )
    return pd.DataFrame(at)


def load_source(spec: SmolSpec):
    """(headlab model, tokenizer) of ``spec.model`` (offline cache or hub), float32 on ``spec.device``."""
    from ... import models
    from .hf import from_hf_llama

    hf, tok = models.load(spec.model, device=spec.device, attn="sdpa")
    lm = from_hf_llama(hf, max_seq_len=spec.seq + 1).float().eval()
    del hf
    return lm, tok


def run(
    spec: SmolSpec, source=None, tok=None, progress: bool = True, progress_csv: Path | None = None
) -> dict[str, pd.DataFrame]:
    """Every (seed, budget, arm) of ``spec`` on ``source`` (default: ``load_source``). Returns ``{"curves": one row
    per evaluation (seed, budget, arm, tokens, phase, loss, test_loss), "arms": one row per run (groups, steps,
    init and final losses, seconds), "at_budget": each arm's val and test loss at every N of
    spec.token_budgets, "source": the source's own val and test loss}`` and, with ``spec.decode_batches``,
    ``"decode"`` (``decode_rows``). ``progress_csv``: the "arms" rows so far, rewritten as each arm finishes (a run
    stopped at a device lease's limit still says how far it got and how long each arm took)."""
    from ... import data as hd

    if source is None:
        source, tok = load_source(spec)
    bad = [a for a in spec.arms if a not in ARM_RECIPES]
    if bad:
        raise ValueError(f"unknown arm(s) {bad}; known: {list(ARM_RECIPES)}")
    train_t, val_t, test_t = token_splits(tok, spec.tail)
    val = [(x.to(spec.device), y.to(spec.device)) for x, y in fixed_windows(val_t, spec.val_rows, spec.seq)]
    test = [(x.to(spec.device), y.to(spec.device)) for x, y in fixed_windows(test_t, spec.test_rows, spec.seq)]
    tps = spec.tokens_per_step
    total = int(np.ceil(max(spec.token_budgets) / tps))
    every = max(1, spec.eval_every_tokens // tps)
    fsteps = max(1, spec.fusion_tokens // tps)
    curves, arms = [], []
    for seed in spec.seeds:
        stream = hd.Batches(train_t, spec.batch, spec.seq, seed=1000 + seed, device=spec.device)
        calib = [hd.Batches(train_t, spec.calib_rows, spec.seq, seed=2000 + seed, device=spec.device)(0)]
        ctx = Context(
            source,
            stream,
            tps,
            val,
            calib,
            total,
            lr=spec.lr,
            omega_lr=spec.omega_lr,
            lam_max=spec.lam_max,
            warmup=spec.warmup,
            eval_every=every,
            progress=progress,
            fusion_objective=spec.fusion_objective,
            fusion_eps=spec.fusion_eps,
            dual_lr=spec.dual_lr,
            fusion_norm=spec.fusion_norm,
            search_score=spec.search_score,
            allocation=spec.allocation,
            test_batches=test,
        )
        for b in spec.budgets:
            for name in spec.arms:
                if name == "source + CT" and b != spec.budgets[0]:
                    continue  # the control keeps every head: one run per seed
                alloc, init = ARM_RECIPES[name]
                arm = Arm(name, 1.0 if alloc == "source" else b, alloc, init, fsteps if init == "fusion" else 0, True)
                t0 = time.time()
                r = run_arm(ctx, arm)
                for c in r["curve"]:
                    curves.append({"seed": seed, "budget": arm.budget, "arm": name, **c})
                arms.append(
                    {
                        "seed": seed,
                        "budget": arm.budget,
                        "arm": name,
                        "k_counts": "-".join(map(str, r["k_counts"])),
                        "v_counts": "-".join(map(str, r["v_counts"])),
                        "search_steps": r["search_steps"],
                        "fusion_steps": r["fusion_steps"],
                        "ct_steps": r["ct_steps"],
                        "init_loss": r["init_loss"],
                        "init_test_loss": r["init_test_loss"],
                        "final_loss": r["final_loss"],
                        "final_test_loss": r["final_test_loss"],
                        "final_fusion_loss": r["final_fusion_loss"],
                        "collapse_cost": r["collapse_cost"],
                        "kv_bytes_per_token_fp16": kv_cache_bytes(r["model"]) if r["model"] is not None else np.nan,
                        "seconds": time.time() - t0,
                    }
                )
                del r
                if progress_csv is not None:
                    from ...figures import _atomic_write

                    Path(progress_csv).parent.mkdir(parents=True, exist_ok=True)
                    done = pd.DataFrame(arms)
                    _atomic_write(Path(progress_csv), lambda p, d=done: d.to_csv(p, index=False))
    curves = pd.DataFrame(curves)
    at = at_budget(curves, spec.token_budgets)
    from .data import lm_eval

    base = {"val_loss": lm_eval(source, val)["loss"], "test_loss": lm_eval(source, test)["loss"]}
    res = {"curves": curves, "arms": pd.DataFrame(arms), "at_budget": at, "source": pd.DataFrame([base])}
    if spec.decode_batches:
        res["decode"] = decode_rows(source, tok, spec.budgets, spec.decode_batches)
    return res


def decode_rows(
    source, tok, budgets, batches=(1, 8), prompt_len: int = 32, n_new: int = 16, pairs: int = 3, seq: int = 256
) -> pd.DataFrame:
    """KV-cache bytes per token and greedy-decode tokens/s of the source and of its GQA and fused conversions at each
    budget (``checks.decode_table``: a cache of the unique K/V heads; time over the source's by the benchmark
    harness), at every batch size in ``batches``, prompts cut from the held-out windows. GQA and fusion at one budget
    have the same head counts, so they decode alike; both are timed as a check of that."""
    from .checks import decode_table
    from .grouping import contiguous_groups, n_source
    from .merge import collapse

    _, val_t, _ = token_splits(tok)
    nk, nv = n_source(source, "k"), n_source(source, "v")
    models = [("source", source)]
    for b in budgets:
        per = round(b * nk[0])
        g = (contiguous_groups(nk, per), contiguous_groups(nv, per))
        models.append((f"GQA {b:.0%}", collapse(source, *g, share=True)))
    rows = []
    for bs in batches:
        w = fixed_windows(val_t, bs, seq)
        prompt = torch.cat([x for x, _ in w])[:, :prompt_len].to(source.device)
        rows.append(decode_table(source, models, prompt, n_new, pairs, bs))
    return pd.concat(rows, ignore_index=True)


def reuse(res: dict[str, pd.DataFrame], earlier: Path, token_budgets) -> dict[str, pd.DataFrame]:
    """``res`` with every (seed, budget, arm) of the earlier run in ``earlier`` that ``res`` lacks, for arms whose
    results do not depend on what changed between the runs (e.g. GQA and source + CT when only the fusion stage
    changed: same seeds, streams and evaluation windows); ``at_budget`` is recomputed from the merged curves at
    ``token_budgets``. Each reused row is marked ``reused_from``; the source and decode tables are the earlier
    run's where this run has none."""
    out = dict(res)
    keys = ["seed", "budget", "arm"]
    for k in ("curves", "arms"):
        old = pd.read_csv(earlier / f"smollm_{k}.csv")
        have = set(map(tuple, res[k][keys].round(6).itertuples(index=False)))
        take = old[[t not in have for t in map(tuple, old[keys].round(6).itertuples(index=False))]]
        was = take["reused_from"].fillna("").astype(str) if "reused_from" in take else pd.Series("", index=take.index)
        take = take.assign(reused_from=was.where(was != "", earlier.name))  # a row keeps the run that trained it
        mine = res[k] if "reused_from" in res[k] else res[k].assign(reused_from="")
        out[k] = pd.concat([take, mine], ignore_index=True)
    out["at_budget"] = at_budget(out["curves"], token_budgets)
    for k in ("source", "decode"):
        if k not in out and (earlier / f"smollm_{k}.csv").exists():
            out[k] = pd.read_csv(earlier / f"smollm_{k}.csv")
    return out


def merge(folders: list[Path], token_budgets) -> tuple[dict[str, pd.DataFrame], dict]:
    """The union of runs that split one design between processes (e.g. one KV budget each, side by side on one
    thread each): every (seed, budget, arm) of ``folders``, the first folder's where several have it, each row's
    ``reused_from`` naming the folder that trained it; ``at_budget`` recomputed at ``token_budgets``. Returns (the
    tables, the merged params: the first folder's, with budgets, arms and seeds the union and ``merged_from``)."""
    first = folders[0]
    res = {k: pd.read_csv(first / f"smollm_{k}.csv") for k in ("curves", "arms")}
    for k in res:
        was = res[k]["reused_from"].fillna("").astype(str) if "reused_from" in res[k] else ""
        res[k] = res[k].assign(reused_from=np.where(was != "", was, first.name))
    for k in ("source", "decode"):
        if (first / f"smollm_{k}.csv").exists():
            res[k] = pd.read_csv(first / f"smollm_{k}.csv")
    for f in folders[1:]:
        res = reuse(res, f, token_budgets)
    res["at_budget"] = at_budget(res["curves"], token_budgets)
    params = [json.loads((f / "smollm_params.json").read_text()) for f in folders]
    meta = dict(params[0])
    for k in ("budgets", "arms", "seeds"):
        meta[k] = sorted({v for p in params for v in p[k]}, key=lambda v: (str(type(v)), v))
    meta["token_budgets"] = [int(n) for n in token_budgets]
    meta["merged_from"] = {f.name: p.get("machine", "") for f, p in zip(folders, params, strict=True)}
    return res, meta


def lr_grid(folders: list[Path], tokens: int) -> pd.DataFrame:
    """The per-arm learning-rate grid (issue 24): every (seed, budget, arm) of the runs in ``folders`` (one learning
    rate each, read from its ``smollm_params.json``) with its val and test loss at ``tokens`` (``at_budget``), kept
    where at least two rates ran it. One row per (seed, budget, arm, lr); ``best`` marks each arm's rate with the
    lowest validation loss (the tuning criterion; test is reported beside it)."""
    rows = []
    for f in folders:
        lr = float(json.loads((f / "smollm_params.json").read_text())["lr"])
        at = at_budget(pd.read_csv(f / "smollm_curves.csv"), [tokens])
        rows.append(at.assign(lr=lr, run=f.name))
    g = pd.concat(rows, ignore_index=True).dropna(subset=["val_loss"])
    g = g.assign(budget=g.budget.round(6))
    keys = ["seed", "budget", "arm"]
    g = g[g.groupby(keys).lr.transform("nunique") >= 2]
    g = g.drop_duplicates([*keys, "lr"]).sort_values([*keys, "lr"]).reset_index(drop=True)
    best = g.groupby(keys).val_loss.idxmin()  # one rate per arm (on a tie, the smaller rate)
    return g.assign(best=g.index.isin(best.to_numpy()))


def lr_grid_summary(grid: pd.DataFrame, common: float = 1e-4, ref: str = "GQA") -> pd.DataFrame:
    """Per (seed, KV budget, arm other than ``ref``): that arm minus ``ref`` test loss with both at the ``common``
    rate and with each at its own best rate on validation (``lr_grid``), and the two best rates. ``common`` must be
    one of the grid's rates."""
    if not np.isclose(grid.lr, common).any():
        raise ValueError(f"the common rate {common:g} is not in the grid's rates {sorted(grid.lr.unique())}")
    out = []
    for (seed, b), g in grid.groupby(["seed", "budget"]):
        arms = g.set_index(["arm", "lr"])
        if ref not in set(g.arm):
            continue
        best = g[g.best].set_index("arm")
        for a in sorted(set(g.arm) - {ref}):
            at = [arms.test_loss.get((x, common), np.nan) for x in (a, ref)]
            out.append(
                {
                    "seed": seed,
                    "budget": b,
                    "arm": a,
                    "diff_common_lr": at[0] - at[1],
                    "diff_best_lr": best.test_loss[a] - best.test_loss[ref],
                    "best_lr": best.lr[a],
                    "best_lr_ref": best.lr[ref],
                }
            )
    return pd.DataFrame(out)


def save(res: dict[str, pd.DataFrame], spec: SmolSpec, out: Path, machine: str = "") -> None:
    """The run's tidy tables (``smollm_<name>.csv``) and its spec (``smollm_params.json``) under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    for k, d in res.items():
        d.to_csv(out / f"smollm_{k}.csv", index=False, float_format="%.6g")
    meta = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(spec).items()}
    (out / "smollm_params.json").write_text(json.dumps({**meta, "machine": machine}, indent=1) + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m headlab.papers.dha_fusion.pretrained", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--out", default="cpu_smollm", help="figures/dha_fusion/<out>/")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--budgets", type=float, nargs="+", default=[1 / 3])
    ap.add_argument("--tokens", type=int, nargs="+", default=[24576, 49152])
    ap.add_argument("--arms", nargs="+", default=["source + CT", "GQA", "uniform + fusion"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--eval-every", type=int, default=8192, help="tokens between evaluations")
    ap.add_argument("--fusion-tokens", type=int, default=16384)
    ap.add_argument("--objective", choices=["ramp", "target"], default="target")
    ap.add_argument("--dual-lr", type=float, default=30.0)
    ap.add_argument("--lam-max", type=float, default=500.0)
    ap.add_argument("--omega-lr", type=float, default=0.1)
    ap.add_argument(
        "--reuse", default=None, help="figures/dha_fusion/<folder> of an earlier run: its arms not in --arms are reused"
    )
    ap.add_argument(
        "--merge",
        nargs="+",
        default=None,
        help="figures/dha_fusion/<folder>s of runs that split one design: --out becomes their union (no training)",
    )
    ap.add_argument("--no-decode", action="store_true", help="skip the decode table")
    ap.add_argument("--replot", action="store_true", help="redraw the figures from the saved CSVs")
    ap.add_argument("--decode-only", action="store_true", help="only the decode table (smollm_decode.csv)")
    ap.add_argument(
        "--lr-grid",
        nargs="+",
        default=None,
        help="figures/dha_fusion/<folder>s of runs that differ only in --lr: writes smollm_lr_grid.csv (at the first "
        "--tokens) into --out beside its other tables (no training)",
    )
    a = ap.parse_args(argv)
    out = FIGURES_DIR / "dha_fusion" / a.out
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.decode_only:
        src, tok = load_source(SmolSpec(device=a.device))
        d = decode_rows(src, tok, a.budgets)
        out.mkdir(parents=True, exist_ok=True)
        d.to_csv(out / "smollm_decode.csv", index=False, float_format="%.5g")
        print(d.to_string(index=False))
        return 0
    if a.lr_grid:
        from ...figures import write_png
        from .figures import smollm_lr_grid

        g = lr_grid([FIGURES_DIR / "dha_fusion" / f for f in a.lr_grid], a.tokens[0])
        out.mkdir(parents=True, exist_ok=True)
        g.to_csv(out / "smollm_lr_grid.csv", index=False, float_format="%.6g")
        write_png(smollm_lr_grid(pd.read_csv(out / "smollm_lr_grid.csv")), out / "smollm_lr_grid.png")
        print(lr_grid_summary(g).round(4).to_string(index=False))
        return 0
    if a.merge:
        res, meta = merge([FIGURES_DIR / "dha_fusion" / f for f in a.merge], a.tokens)
        out.mkdir(parents=True, exist_ok=True)
        for k, d in res.items():
            d.to_csv(out / f"smollm_{k}.csv", index=False, float_format="%.6g")
        (out / "smollm_params.json").write_text(json.dumps(meta, indent=1) + "\n")
    elif not a.replot:
        bad = [x for x in a.arms if x not in ARM_RECIPES]
        if bad:
            ap.error(f"unknown arm(s) {bad}; known: {list(ARM_RECIPES)}")
        spec = SmolSpec(
            budgets=tuple(a.budgets),
            token_budgets=tuple(a.tokens),
            arms=tuple(a.arms),
            seeds=tuple(a.seeds),
            lr=a.lr,
            device=a.device,
            decode_batches=() if a.no_decode else (1, 8),
            eval_every_tokens=a.eval_every,
            fusion_tokens=a.fusion_tokens,
            fusion_objective=a.objective,
            dual_lr=a.dual_lr,
            lam_max=a.lam_max,
            omega_lr=a.omega_lr,
        )
        import platform

        res = run(spec)
        if a.reuse:
            res = reuse(res, FIGURES_DIR / "dha_fusion" / a.reuse, spec.token_budgets)
        machine = f"{platform.node()} {platform.processor() or platform.machine()} {torch.get_num_threads()} threads"
        save(res, spec, out, (f"reuses {a.reuse}'s other arms; " if a.reuse else "") + machine)
    from ...figures import write_png
    from .figures import smollm_curves

    write_png(smollm_curves(pd.read_csv(out / "smollm_curves.csv")), out / "smollm_curves.png")
    print(pd.read_csv(out / "smollm_at_budget.csv").groupby(["budget", "arm", "tokens"]).test_loss.agg(["mean", "std"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Pretraining claims of notebook 04 (K7: Fig. 5/7, K8: Table 2), decided from the pretraining logs ``fig5`` and
``table2`` (``source`` = live run or committed gpu CSV) after checking their premise: that sinks formed at all."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ...claims import Claims, greater
from ...intervals import bootstrap
from .claims_common import _bool, chance_score
from .published import PUB_K7, PUB_K8, PUB_PILOT, SINK_FORMED_PCT

PILOT_DIR = "cpu_pilot"  # figures/attention_sinks/<PILOT_DIR>/: the committed go/no-go pilot (pilot.py)


def pilot(C: Claims, folder: Path | None) -> str:
    """K7-pilot: did the go/no-go pilot (``pilot.py``, committed in ``folder``) form sinks on its held-out windows?
    Returns a sentence for K7/K8's reasons ("" when there is no pilot)."""
    if folder is None or not (folder / "pilot_windows.csv").exists():
        return ""
    w = pd.read_csv(folder / "pilot_windows.csv")
    meta = json.loads((folder / "pilot_params.json").read_text())
    tr = pd.read_csv(folder / "pilot_trend.csv").set_index("convention")
    m = meta["model"]
    size = (
        f"{meta['params'] / 1e6:.2f}M-parameter byte model ({m['n_layers']} x {m['d_model']}, {m['n_heads']} heads), "
        f"ctx {meta['ctx']}, lr {meta['lr']:g}, weight decay {meta['weight_decay']:g}, "
        f"{tr.loc['incl', 'final_tokens'] / 1e6:.1f}M tokens ({meta['machine']})"
    )
    x = w["sink_0.3_incl"].to_numpy(float)
    slope = tr.loc["incl", "slope_per_decade"]
    proj = tr.loc["incl", "projected_tokens"]
    trend_s = (
        f"mean first-position score {tr.loc['incl', 'final_mean_score']:.4f} (chance "
        f"{meta['chance_mean_score_incl']:.4f}); sink@0.3 changing {slope:+.2f} pt per decade of tokens over the "
        "second half of the run"
        + (
            f", so a straight line in log tokens reaches {SINK_FORMED_PCT:g}% at {proj:.1e} tokens "
            f"(~{tr.loc['incl', 'projected_hours']:.0f} h at this run's {tr.loc['incl', 'tokens_per_s']:.0f} tokens/s)"
            if np.isfinite(proj)
            else " (not rising: no projection)"
        )
    )
    ours = (
        f"{size}: sink@0.3 {x.mean():.1f}% (row 0 included), {w['sink_0.3_excl'].mean():.1f}% (excluded) on "
        f"{len(w)} held-out windows at step {int(w.step.iloc[0])}; {trend_s}"
    )
    ev = greater(
        "sink@0.3 on held-out windows at the pilot's last checkpoint (%, query row 0 included)",
        bootstrap(x),
        "held-out windows",
        SINK_FORMED_PCT,
        rule=f"sinks formed if the 95% interval (bootstrap over held-out windows) lies above {SINK_FORMED_PCT:g}%; "
        "not formed if it lies at or below",
    )
    C.add(
        "K7-pilot",
        "go/no-go: a small fixed-⟨bos⟩ model pretrained on the big corpus forms sinks (sink@0.3 >= 20 %)",
        PUB_PILOT,
        ours,
        ev,
        kind="hypothesis",
        note="the premise of K7/K8, fixed before the run; one seed",
    )
    formed = C.rows[-1].verdict == "reproduced"
    return f"the go/no-go pilot ({size}) {'formed' if formed else 'did not form'} sinks: {ours.split(': ', 1)[1]}"


def _formed(values) -> bool:
    return bool(np.nanmax(np.asarray(values, float)) >= SINK_FORMED_PCT) if len(values) else False


def k7(C: Claims, fig5: pd.DataFrame | None, params: dict, profile: str, e_lo: float, pilot_s: str = "") -> None:
    st = "sink metric grows with pretraining context length, comparable val. losses (Fig. 5/7)"
    eval_T = int(float(params.get("eval_T", 64)))
    col = f"sink_{e_lo:g}"
    srcs = {} if fig5 is None else {s: d for s, d in fig5.groupby("source")}
    for cid, pick in (("K7", lambda s: s.startswith("live")), ("K7-gpu", lambda s: s.startswith("gpu"))):
        d = next((d for s, d in srcs.items() if pick(s)), None)
        if d is None:
            why = (
                "no live pretraining in this run"
                if cid == "K7"
                else "no committed figures/attention_sinks/gpu/fig5.csv (run profile gpu on an H100)"
            ) + (f"; {pilot_s}" if pilot_s else "")
            C.untestable(cid, st if cid == "K7" else st + " (committed gpu run)", PUB_K7, why)
            continue
        fin = d[d.step == d.step.max()].sort_values("ctx")
        ours = (
            f"final sink@{e_lo:g} "
            + ", ".join(f"ctx {c}: {v:.1f}%" for c, v in zip(fin.ctx, fin[col], strict=True))
            + "; mean first-position score "
            + ", ".join(f"{v:.3f}" for v in fin.mean_score)
            + f" (chance {chance_score(eval_T):.3f} at T={eval_T}); val-loss spread "
            f"{fin.val_loss.max() - fin.val_loss.min():.2f}"
        )
        premise = (
            f"premise: a run formed a sink if its final sink@{e_lo:g} ≥ {SINK_FORMED_PCT:g}% of (held-out "
            f"window, layer, head) triples at eval T={eval_T}"
        )
        if not _formed(fin[col]):
            C.untestable(
                cid,
                st,
                PUB_K7,
                f"no sinks formed: max final sink@{e_lo:g} {fin[col].max():.1f}% < "
                f"{SINK_FORMED_PCT:g}% in every context length ({premise})"
                + ("; smoke runs are a pipeline check" if profile == "smoke" and cid == "K7" else "")
                + (f"; {pilot_s}" if pilot_s else ""),
                ours=ours,
            )
            continue
        rho = pd.Series(fin[col].to_numpy()).corr(pd.Series(fin.ctx.to_numpy()), method="spearman")
        C.inconclusive(
            cid,
            st,
            PUB_K7,
            ours + f"; Spearman {rho:.2f}",
            f"{premise}: met; but one run per context length and only aggregate sink rates saved, so no "
            "interval over seeds or windows decides the trend",
            statistic="Spearman(ctx, final sink rate)",
            n=len(fin),
            unit="context lengths (1 seed each)",
            rule="trend: Spearman ≥ 0.8 over ≥ 4 ctx, val losses within 0.15 (needs ≥ 2 seeds per ctx to decide)",
        )


def k8(C: Claims, t2: pd.DataFrame | None, params: dict, profile: str, e_lo: float, pilot_s: str = "") -> None:
    st = "fixed-⟨bos⟩ models depend on ⟨bos⟩; without one the sink forms on the first token (Table 2)"
    col = f"sink_{e_lo:g}"
    srcs = {} if t2 is None else {s: d for s, d in t2.groupby("source")}
    for cid, pick in (("K8", lambda s: s.startswith("live")), ("K8-gpu", lambda s: s.startswith("gpu"))):
        d = next((d for s, d in srcs.items() if pick(s)), None)
        if d is None:
            why = (
                "no live pretraining in this run"
                if cid == "K8"
                else "no committed figures/attention_sinks/gpu/table2.csv (run profile gpu on an H100)"
            ) + (f"; {pilot_s}" if pilot_s else "")
            C.untestable(cid, st if cid == "K8" else st + " (committed gpu run)", PUB_K8, why)
            continue
        d = d.assign(eval_bos=d.eval_bos.map(_bool), train_bos=d.train_bos.map(_bool))
        as_trained = d[d.eval_bos == d.train_bos]
        ours = "; ".join(
            f"{r.variant} {'with' if r.eval_bos else 'without'} ⟨bos⟩: sink {r.sink:.1f}%, "
            f"score {r.mean_score:.3f}, loss {r.loss:.2f}"
            for r in d.rename(columns={col: "sink"}).itertuples()
        )
        eval_T = int(float(params.get("eval_T", 64)))
        premise = (
            f"premise: a variant formed a sink if sink@{e_lo:g} ≥ {SINK_FORMED_PCT:g}% when evaluated as trained "
            f"(chance mean score {chance_score(eval_T):.3f} at T={eval_T})"
        )
        if not _formed(as_trained[col]):
            C.untestable(
                cid,
                st,
                PUB_K8,
                f"no sinks formed: max sink@{e_lo:g} as trained {as_trained[col].max():.1f}% < "
                f"{SINK_FORMED_PCT:g}% in every variant ({premise})"
                + ("; smoke runs are a pipeline check" if profile == "smoke" and cid == "K8" else "")
                + (f"; {pilot_s}" if pilot_s else ""),
                ours=ours,
            )
            continue
        C.inconclusive(
            cid,
            st,
            PUB_K8,
            ours,
            f"{premise}: met; but only aggregate rates per variant were saved (one "
            "run each), so no interval over windows or seeds decides the comparisons",
            statistic="sink and loss with vs without ⟨bos⟩ per variant",
            n=len(d),
            unit="variant x eval rows",
            rule="fixed ⟨bos⟩: sink ≥ 10x down and loss ≥ 1.5x up without it; no fixed ⟨bos⟩: sink > 10%, "
            "|Δloss| < 0.05",
        )

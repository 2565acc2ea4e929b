"""The per-unit CSVs behind notebook 05's claims table (``claims.build`` reads only these): self-check values,
right/wrong per test image, loss per validation window, the run's sizes, routing per image / window and layer,
and head redundancy per image / window.

``vit_runs`` / ``lm_runs`` map ``(variant, seed)`` to ``(model, log)``; ``X_test`` ``[image, ...]`` and
``y_test`` ``[image]`` are the digits test set; ``dd`` the LM's domain data. ``routing`` holds the MoH-75 (first
seed) routing records the notebook drew Fig. 3 from: ``(vit_rec, lm_rec, lm_labels)``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from .checks import activation_counts, gate_sum_errors
from .instrument import collect_routing
from .layer import MoHSpec, moh_layers, set_mode
from .lm import DomainData, build_lm, lm_routing
from .units import redundancy_units, routing_units, vit_correct, window_losses


def selfchecks(
    checks: pd.DataFrame, released: pd.DataFrame, vit_runs, lm_runs, lm_cfg, dd: DomainData, X_test, routing, P
) -> pd.DataFrame:
    """Self-check values (id, value, detail): the structural checks, the released configurations' activated
    fractions, the active-head counts and gate sums of the trained MoH-75 models, MHA weights loaded into a
    dense-router MoH LM (max |Δ logits|), and skip vs masked execution of a ViT and an LM (max |Δ logits|)."""
    vit_rec, lm_rec, _ = routing
    vit75, lm75 = vit_runs[("MoH-75", P.vit_seeds[0])][0], lm_runs[("MoH-75", P.lm_seeds[0])][0]
    last_v, hs_v = max(vit_rec), moh_layers(vit75)[0].h_s
    sc = [{"id": r.id, "value": r.value, "detail": ""} for r in checks.itertuples()]
    sc += [{"id": f"released {r.config}", "value": r.activated, "detail": ""} for r in released.itertuples()]
    count_ok, count_txt = True, []
    for tag, model, rec in (("ViT MoH-75", vit75, vit_rec), ("LM MoH-75", lm75, lm_rec)):
        a = moh_layers(model)[0]
        got = activation_counts(rec)
        count_ok &= all(v == [a.h_s + a.K] for v in got.values())
        count_txt.append(f"{tag}: {sorted({c for v in got.values() for c in v})}")
    sc.append({"id": "active_counts", "value": float(count_ok), "detail": "; ".join(count_txt)})
    sc.append(
        {
            "id": "gate_sums",
            "value": max(gate_sum_errors(vit_rec[last_v], hs_v, moh_layers(vit75)[0].K).values()),
            "detail": "",
        }
    )
    with torch.no_grad():
        mha_lm = lm_runs[("MHA", P.lm_seeds[0])][0]
        as_moh = build_lm(MoHSpec(router="dense"), lm_cfg).to(P.device)
        as_moh.load_state_dict(mha_lm.state_dict())
        x_eq = dd.val["prose"][:, :-1].to(P.device)
        sc.append(
            {
                "id": "mha_weights_dense",
                "value": float((as_moh(x_eq).logits - mha_lm(x_eq).logits).abs().max()),
                "detail": "",
            }
        )
        for tag, model, x in (
            ("skip_vit", vit75, X_test),
            ("skip_lm", lm_runs[("MoH-50", P.lm_seeds[0])][0], dd.val["code"][:, :-1].to(P.device)),
        ):
            ref = model(x)
            ref = ref.logits if hasattr(ref, "logits") else ref
            set_mode(model, "skip")
            out = model(x)
            out = out.logits if hasattr(out, "logits") else out
            set_mode(model, "masked")
            sc.append({"id": tag, "value": float((out - ref).abs().max()), "detail": ""})
    return pd.DataFrame(sc)


def vit_images(vit_runs, X_test, y_test) -> pd.DataFrame:
    """Per test image: right or wrong, every ViT run (accuracy claims: paired bootstrap over images)."""
    return pd.DataFrame(
        [
            {"variant": n, "seed": s, "image": i, "correct": c}
            for (n, s), (m, _) in vit_runs.items()
            for i, c in enumerate(vit_correct(m, X_test, y_test))
        ]
    )


def lm_windows(lm_runs, dd: DomainData) -> pd.DataFrame:
    """Per validation window: the loss of every LM run."""
    return pd.concat([window_losses(m, dd).assign(variant=n, seed=s) for (n, s), (m, _) in lm_runs.items()])


def run_params(dd: DomainData, n_test: int, P) -> pd.DataFrame:
    """One row: the unigram byte entropy of the validation text (C2's premise) and the run's sizes."""
    vbytes = np.bincount(torch.cat([w.flatten() for w in dd.val.values()]).numpy(), minlength=256)
    pb = vbytes[vbytes > 0] / vbytes.sum()
    return pd.DataFrame(
        [
            {
                "unigram_entropy": float(-(pb * np.log(pb)).sum()),
                "lm_steps": P.lm_steps,
                "test_images": n_test,
                "vit_seeds": len(P.vit_seeds),
                "lm_seeds": len(P.lm_seeds),
                "n_perm": P.n_perm,
            }
        ]
    )


def routing_per_unit(vit_runs, lm_runs, X_test, y_test, dd: DomainData, P) -> pd.DataFrame:
    """Routing per image / window and layer of MoH-75 and MoH-50, every seed (loads: C3, C4)."""
    ru = []
    for fam, name in (("ViT", "MoH-75"), ("ViT", "MoH-50"), ("LM", "MoH-75"), ("LM", "MoH-50")):
        for seed in P.vit_seeds if fam == "ViT" else P.lm_seeds:
            model = (vit_runs if fam == "ViT" else lm_runs)[(name, seed)][0]
            rec, labs = (collect_routing(model, [X_test]), y_test) if fam == "ViT" else lm_routing(model, dd)
            a = moh_layers(model)[0]
            ru.append(routing_units(rec, labs, a.h_s).assign(family=fam, variant=name, seed=seed, h_s=a.h_s, K=a.K))
    return pd.concat(ru, ignore_index=True)


def score_units(routing, y_test, hs_v: int, hs_l: int) -> pd.DataFrame:
    """Gate scores per image / window of the last layer of the MoH-75 ViT and LM (C8)."""
    vit_rec, lm_rec, lm_labels = routing
    last_v, last_l = max(vit_rec), max(lm_rec)
    return pd.concat(
        [
            routing_units({last_v: vit_rec[last_v]}, y_test, hs_v, scores=True).assign(family="ViT", h_s=hs_v),
            routing_units({last_l: lm_rec[last_l]}, lm_labels, hs_l, scores=True).assign(family="LM", h_s=hs_l),
        ]
    )


def redundancy_per_unit(vit_runs, lm_runs, X_test, dd: DomainData, P) -> pd.DataFrame:
    """Head redundancy per image / window of MHA and MoH-75, every seed (Table B: paired MoH - MHA)."""
    lm_x = torch.cat([w[:, :-1] for w in dd.val.values()]).to(P.device)  # [window, seq - 1]
    return pd.concat(
        [
            redundancy_units(runs[(n, s)][0], x).assign(model=fam, variant=n, seed=s)
            for fam, runs, x, seeds in (("ViT", vit_runs, X_test, P.vit_seeds), ("LM", lm_runs, lm_x, P.lm_seeds))
            for n in ("MHA", "MoH-75")
            for s in seeds
        ]
    )


def claims_units(P, checks, released, vit_runs, lm_runs, lm_cfg, dd: DomainData, test, routing) -> dict:
    """Every per-unit CSV of the claims, ``{csv name: frame}`` in the order they are computed; ``test`` is
    ``(X_test, y_test)``, ``routing`` ``(vit_rec, lm_rec, lm_labels)`` of the MoH-75 models of the first seed."""
    X_test, y_test = test
    hs_v = moh_layers(vit_runs[("MoH-75", P.vit_seeds[0])][0])[0].h_s
    hs_l = moh_layers(lm_runs[("MoH-75", P.lm_seeds[0])][0])[0].h_s
    out = {"selfchecks": selfchecks(checks, released, vit_runs, lm_runs, lm_cfg, dd, X_test, routing, P)}
    out["vit_images"] = vit_images(vit_runs, X_test, y_test)
    out["lm_windows"] = lm_windows(lm_runs, dd)
    out["run_params"] = run_params(dd, len(X_test), P)
    out["routing_units"] = routing_per_unit(vit_runs, lm_runs, X_test, y_test, dd, P)
    out["score_units"] = score_units(routing, y_test, hs_v, hs_l)
    out["redundancy_units"] = redundancy_per_unit(vit_runs, lm_runs, X_test, dd, P)
    return out

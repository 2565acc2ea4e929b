"""Verdict rules of headlab.papers.moh.claims on hand-made frames (no model, no training)."""

import numpy as np
import pandas as pd

from headlab.claims import Claims
from headlab.papers.moh import claims as mc
from headlab.papers.moh import rules as mc_rules


def images(acc: dict, n=360, seed=0, rng=0):
    """Per-image correctness: variant -> accuracy; images wrong for MHA are wrong for all (paired)."""
    r = np.random.default_rng(rng)
    u = r.random(n)
    return pd.DataFrame(
        [{"variant": v, "seed": seed, "image": i, "correct": int(u[i] < a)} for v, a in acc.items() for i in range(n)]
    )


def test_c1_verdicts():
    same = images({"MHA": 0.95, "MoH-88": 0.95, "MoH-75": 0.95, "MoH-50": 0.95})
    assert mc_rules.c1_evidence(same).verdict == "reproduced"  # identical predictions: interval [0, 0] above -3 pp
    worse = images({"MHA": 0.95, "MoH-88": 0.70, "MoH-75": 0.70, "MoH-50": 0.70})
    assert mc_rules.c1_evidence(worse).verdict == "not reproduced"
    mixed = images({"MHA": 0.95, "MoH-88": 0.95, "MoH-75": 0.70, "MoH-50": 0.95})
    assert mc_rules.c1_evidence(mixed).verdict == "partly"
    edge = images({"MHA": 0.95, "MoH-88": 0.92, "MoH-75": 0.92, "MoH-50": 0.90}, n=60)
    assert mc_rules.c1_evidence(edge).verdict == "inconclusive"


def test_c2_premise_and_evidence():
    assert not mc_rules.lm_premise(3.16, 2.82)  # 0.34 nats below unigram: barely trained
    assert mc_rules.lm_premise(3.16, 1.9)
    rows = [
        {"variant": v, "seed": 0, "domain": d, "window": w, "val_loss": 2.0 + 0.01 * w + add}
        for d in ("a", "b")
        for w in range(8)
        for v, add in (("MHA", 0.0), ("MoH-75", 0.0), ("MoH-50", 0.01))
    ]
    assert mc_rules.c2_evidence(pd.DataFrame(rows)).verdict == "reproduced"
    rows = [{**r, "val_loss": r["val_loss"] + (0.5 if r["variant"] != "MHA" else 0)} for r in rows]
    assert mc_rules.c2_evidence(pd.DataFrame(rows)).verdict == "not reproduced"


def routing(dep: bool, n=40, E=4, hs=2):
    rows = []
    for i in range(n):
        lab = i % 2
        sel = [10, 0, 10, 0] if (dep and lab) else ([0, 10, 0, 10] if dep else [5, 5, 5, 5])
        rows.append(
            {
                "layer": 1,
                "unit": i,
                "label": lab,
                "tokens": 10,
                **{f"sel_{j}": 10 for j in range(hs)},
                **{f"sel_{hs + j}": s for j, s in enumerate(sel)},
                "h_s": hs,
                "K": 2,
            }
        )
    return pd.DataFrame(rows)


def test_c3_verdicts():
    assert mc_rules.c3_evidence(routing(True), n_perm=50, n_boot=100).verdict == "reproduced"
    assert mc_rules.c3_evidence(routing(False), n_perm=50, n_boot=100).verdict == "not reproduced"


def test_c4_balance():
    ru = routing(False).assign(family="ViT", variant="MoH-75", seed=0)
    assert mc_rules.c4_evidence(ru, n_boot=100).verdict == "reproduced"  # every head at load K/E exactly
    ru = routing(True).assign(family="ViT", variant="MoH-75", seed=0)
    ru.loc[:, "sel_3"] = 0  # head 2 never selected: collapsed
    assert mc_rules.c4_evidence(ru, n_boot=100).verdict in ("not reproduced", "partly")


def conversion(qn: float, rnd: float, inv: float, orig: float = 3.0, n=6):
    rows = [{"budget": "9/9", "router": "original", "seed": -1, "window": w, "nll": orig + 0.1 * w} for w in range(n)]
    for r, v, seeds in (("query_norm", qn, [-1]), ("random", rnd, [0, 1, 2]), ("inverse", inv, [-1])):
        rows += [
            {"budget": "7/9", "router": r, "seed": s, "window": w, "nll": v + 0.1 * w + 0.01 * s}
            for s in seeds
            for w in range(n)
        ]
    return pd.DataFrame(rows)


def test_c5_hypothesis_verdicts():
    assert mc_rules.c5_evidence(conversion(3.1, 3.5, 4.0), "7/9").verdict == "reproduced"
    assert mc_rules.c5_evidence(conversion(5.6, 5.2, 4.8), "7/9").verdict == "not reproduced"
    assert mc_rules.c5_evidence(conversion(3.1, 4.8, 4.5), "7/9").verdict == "partly"


def test_c6_needs_five_seeds():
    acc = {"MoH-75 no shared, no two-stage": 0.90, "MoH-75 no two-stage": 0.97}
    C = Claims("moh", "test")
    mc_rules.add_c6(C, images(acc), 1)
    assert C.rows[-1].verdict == "inconclusive" and "5 training seeds" in C.rows[-1].note
    img = pd.concat([images(acc, seed=s, rng=s) for s in range(5)])
    mc_rules.add_c6(C, img, 5)
    assert C.rows[-1].verdict == "reproduced" and C.rows[-1].unit == "seeds"


def test_c7_flat():
    variants = ["a", "b", "c"]
    assert mc_rules.c7_evidence(images(dict.fromkeys(variants, 0.95)), variants).verdict == "reproduced"
    assert mc_rules.c7_evidence(images({"a": 0.95, "b": 0.80, "c": 0.95}), variants).verdict == "not reproduced"


def scores(shared_varies: bool, n=40, h=4, hs=2):
    rows = []
    for i in range(n):
        lab = i % 4
        g = [1.0 + (0.3 * lab if shared_varies else 0.01 * (i % 3)) for _ in range(hs)] + [
            1.0 + (0.01 * (i % 3) if shared_varies else 0.3 * lab) for _ in range(h - hs)
        ]
        rows.append(
            {
                "family": "ViT",
                "unit": i,
                "label": lab,
                "h_s": hs,
                **{f"sel_{j}": 10 for j in range(h)},
                **{f"gsum_{j}": 10 * g[j] for j in range(h)},
            }
        )
    return pd.DataFrame(rows)


def test_c8_spread():
    assert mc_rules.c8_evidence(scores(True), n_boot=100).verdict == "reproduced"
    assert mc_rules.c8_evidence(scores(False), n_boot=100).verdict == "not reproduced"


def test_c9_redundancy():
    rows = [
        {
            "model": m,
            "variant": v,
            "seed": 0,
            "unit": i,
            "pattern_similarity": 0.5 - (0.1 if v != "MHA" else 0) + 0.01 * (i % 5),
            "output_abs_cosine": 0.3 - (0.05 if v != "MHA" else 0) + 0.01 * (i % 3),
        }
        for m in ("ViT", "LM")
        for v in ("MHA", "MoH-75")
        for i in range(30)
    ]
    assert mc_rules.c9_evidence(pd.DataFrame(rows)).verdict == "reproduced"
    flip = pd.DataFrame(rows).assign(variant=lambda d: d.variant.map({"MHA": "MoH-75", "MoH-75": "MHA"}))
    assert mc_rules.c9_evidence(flip).verdict == "not reproduced"


def test_speed_rows(tmp_path):
    C = mc.speed(tmp_path, "test")  # no per-repeat times saved
    assert {r.verdict for r in C.rows} == {"not testable here"}
    reps, t7 = [], []
    for seq in (256, 512):
        for (v, mode), t in {("MHA", "dense"): 1.0, ("MoH-50", "masked"): 1.05, ("MoH-50", "skip"): 0.6}.items():
            reps += [
                {"seq": seq, "variant": v, "mode": mode, "repeat": r, "seconds": t * (1 + 0.01 * (r % 3))}
                for r in range(9)
            ]
            t7.append({"seq": seq, "variant": v, "mode": mode, "activated": 1.0 if v == "MHA" else 0.5})
    pd.DataFrame(reps).to_csv(tmp_path / "table7_repeats.csv", index=False)
    pd.DataFrame(t7).to_csv(tmp_path / "table7.csv", index=False)
    C = mc.speed(tmp_path, "test")
    v = {r.claim_id: r.verdict for r in C.rows}
    assert v == {"T7-masked": "reproduced", "T7-skip<masked": "reproduced", "T7-skip50": "reproduced"}
    assert [r.kind for r in C.rows] == ["hypothesis", "hypothesis", "paper"]


def test_each_family_names_its_own_unit():
    assert mc_rules.unit_name("ViT") == "test images" and mc_rules.unit_name("LM") == "LM windows"
    assert mc_rules.unit_name("ViT MoH-75") == "test images" and mc_rules.unit_name("other") == "units"

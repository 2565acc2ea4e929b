"""headlab.papers.dha_fusion.claims on hand-made CSVs: every verdict its rules can give, without a model."""

import math

import numpy as np
import pandas as pd
import pytest

from headlab.intervals import seed_interval
from headlab.papers.dha_fusion import claims as dc
from headlab.papers.dha_fusion import rules as dc_rules

L_MHA = 1.40


def _curve(seed, budget, gqa_init, gqa_final, dha_init, dha_final, lead=0.0, narrow=0.0):
    """GQA: init at 0, then a straight line to its final loss at 100 tokens (and past it to 200).
    DHA: fusion points, init (collapse) at 60, CT points up to its final at 100; ``lead`` is GQA minus DHA at
    the first point after collapse, changing by ``narrow`` until the last."""
    rows = [(seed, "GQA", budget, 0, gqa_init, "init")]
    rows += [(seed, "GQA", budget, t, gqa_final + (100 - t) * 0.001, "CT") for t in (20, 40, 60, 80)]
    rows += [(seed, "GQA", budget, 100, gqa_final, "CT"), (seed, "GQA", budget, 200, gqa_final - 0.1, "past budget")]
    g = {t: gqa_final + (100 - t) * 0.001 for t in (60, 80)} | {100: gqa_final}
    rows += [(seed, "DHA", budget, 20, dha_init + 1.0, "fusion"), (seed, "DHA", budget, 40, dha_init + 0.5, "fusion")]
    rows += [
        (seed, "DHA", budget, 60, g[60] - lead, "init"),
        (seed, "DHA", budget, 80, g[80] - lead - narrow / 2, "CT"),
        (seed, "DHA", budget, 100, dha_final, "CT"),
    ]
    return rows


def _folder(
    tmp_path,
    *,
    dha_final=(1.45, 1.46),
    gqa_final=(1.50, 1.50),
    dha_init=(1.6, 1.6),
    lead=None,
    narrow=-0.01,
    budgets=(0.25,),
    abl_final=None,
    device="cpu",
    c3=4e-6,
    redundancy=None,
    k_alloc=(4, 1, 1, 2),
    v_alloc=(5, 1, 1, 1),
    seeds=(0, 1),
):
    rows = []
    for b in budgets:
        for i, s in enumerate(seeds):
            gf, df = gqa_final[i], dha_final[i]
            ld = (gf - df) if lead is None else lead[i]
            rows += _curve(s, b, 4.0, gf, dha_init[i], df, lead=ld, narrow=narrow if lead is None else narrow)
    pd.DataFrame(rows, columns=["seed", "arm", "budget", "tokens", "loss", "phase"]).to_csv(
        tmp_path / "loss_vs_tokens.csv", index=False
    )
    pd.DataFrame(
        [
            {
                "model": "MHA source",
                "method": "MHA",
                "budget": 1.0,
                "init_loss": L_MHA,
                "init_acc": 0.6,
                "final_loss": L_MHA,
                "final_acc": 0.6,
            },
            {
                "model": "MHA source",
                "method": "DHA",
                "budget": budgets[0],
                "init_loss": 1.6,
                "init_acc": 0.5,
                "final_loss": 1.5,
                "final_acc": 0.57,
            },
        ]
    ).to_csv(tmp_path / "table1.csv", index=False)
    d0 = dha_final[0]
    abl = abl_final or {"DHA w/o fusion": d0 + 0.05, "DHA w/o adaptive": d0 + 0.05, "CKA": d0 + 0.05}
    pd.DataFrame(
        [
            {
                "arm": "DHA",
                "k_counts": "[4, 1, 1, 2]",
                "init_loss": dha_init[0],
                "final_loss": d0,
                "final_acc": 0.55,
                "model": "MHA source",
            },
            {
                "arm": "DHA w/o fusion",
                "k_counts": "[4, 1, 1, 2]",
                "init_loss": 3.0,
                "final_loss": abl["DHA w/o fusion"],
                "final_acc": 0.55,
                "model": "MHA source",
            },
            {
                "arm": "DHA w/o adaptive",
                "k_counts": "[2, 2, 2, 2]",
                "init_loss": 1.7,
                "final_loss": abl["DHA w/o adaptive"],
                "final_acc": 0.55,
                "model": "MHA source",
            },
        ]
    ).to_csv(tmp_path / "table2.csv", index=False)
    pd.DataFrame(
        {"fusion_steps": [10, 25, 40], "init_loss": [2.0, 1.8, dha_init[0]], "final_loss": [d0 + 0.01, d0 + 0.005, d0]}
    ).to_csv(tmp_path / "table3.csv", index=False)
    pd.DataFrame({"arm": ["GQA", "DHA", "GQA + CKA grouping"], "final_loss": [gqa_final[0], d0, abl["CKA"]]}).to_csv(
        tmp_path / "tableA7.csv", index=False
    )
    red = redundancy or {"K": [0.9, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5], "V": [0.9, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4]}
    f3b = [
        {"model": m, "kind": k, "layer": l, "redundancy": r, "adjacent_layer_cka": 0.3}
        for m in ("MHA source", "MHA source (analysis)")
        for k, rs in red.items()
        for l, r in enumerate(rs)
    ]
    pd.DataFrame(f3b).to_csv(tmp_path / "fig3b.csv", index=False)
    f5 = [
        {"model": "MHA source", "allocation": a, "kind": k, "layer": l, "heads": h}
        for a, ks, vs in (("uniform", [2] * len(k_alloc), [2] * len(v_alloc)), ("DHA search", k_alloc, v_alloc))
        for k, hs in (("K", ks), ("V", vs))
        for l, h in enumerate(hs)
    ]
    pd.DataFrame(f5).to_csv(tmp_path / "fig5.csv", index=False)
    pd.DataFrame(
        {
            "name": ["c2_identity_fusion", "c3_collapse_dha", "c3_collapse_gqa", "c4_rope_scalar", "c4_rope_control"],
            "value": [0.0, c3, 1e-7, 1e-15, 20.0],
        }
    ).to_csv(tmp_path / "exact_checks.csv", index=False)
    pd.DataFrame(
        {
            "model": ["MHA source"],
            "budget": [0.25],
            "alloc": ["gqa"],
            "k_heads": [8],
            "v_heads": [8],
            "target": [8],
            "kv_bytes_per_token": [256],
            "budget_x_source_bytes": [256.0],
            "decode_cache_bytes_ok": [True],
            "decode_max_abs_diff": [1e-6],
        }
    ).to_csv(tmp_path / "c1_budgets.csv", index=False)
    pd.DataFrame({"name": ["device", "arm_seeds"], "value": [device, len(seeds)]}).to_csv(
        tmp_path / "run_params.csv", index=False
    )
    return tmp_path


def _rows(C):
    t = pd.concat([C.table(), C.checks()]).set_index("claim_id")
    return t


# --- helpers -------------------------------------------------------------------------------------------


def test_borrowed_interval_uses_t_with_the_borrowed_df():
    est, lo, hi, n = dc_rules.borrowed_interval(0.5, 0.1, 1)
    assert (est, n) == (0.5, 1)
    assert hi - est == pytest.approx(12.7062 * 0.1, rel=1e-4)
    assert math.isnan(dc_rules.borrowed_interval(0.5, math.nan, 0)[1])


def test_tokens_to_reach_interpolates_and_never_reached_is_inf():
    assert dc_rules.tokens_to_reach([0, 10, 20], [3.0, 2.0, 1.0], 1.5) == pytest.approx(15.0)
    assert dc_rules.tokens_to_reach([0, 10], [3.0, 2.0], 3.5) == 0.0
    assert math.isinf(dc_rules.tokens_to_reach([0, 10], [3.0, 2.0], 1.0))


def test_per_seed_reads_init_final_and_the_advantage_after_collapse(tmp_path):
    f = _folder(tmp_path, dha_final=(1.45, 1.46), gqa_final=(1.50, 1.50))
    s = dc_rules.per_seed(pd.read_csv(f / "loss_vs_tokens.csv"), 0.25)
    assert s.seed.tolist() == [0, 1]
    assert s.gqa_init.tolist() == [4.0, 4.0]
    np.testing.assert_allclose(s.dha_final - s.gqa_final, [-0.05, -0.04])
    assert len(s.adv.iloc[0]) == 3 and s.first_tokens.iloc[0] == 60
    # DHA's final 1.45 is below anything GQA reaches before 200 tokens: GQA needs > 100 tokens
    assert (s.accel > 1).all()


# --- verdicts ------------------------------------------------------------------------------------------


def test_dha_clearly_better_reproduces_equal_budget_claims(tmp_path):
    C = dc.build(
        _folder(tmp_path, dha_final=(1.40, 1.41), gqa_final=(1.50, 1.505), lead=(0.2, 0.21), narrow=-0.05), "smoke"
    )
    t = _rows(C)
    assert t.loc["C9", "verdict"] == "reproduced"
    assert t.loc["C9", "unit"] == "seeds" and t.loc["C9", "n"] == "2"
    assert t.loc["C5", "kind"] == "hypothesis" and t.loc["C5", "verdict"] == "reproduced"
    assert t.loc["C12", "kind"] == "hypothesis" and t.loc["C12", "verdict"] == "reproduced"
    assert t.loc["C13a", "verdict"] == "reproduced" and t.loc["C13b", "verdict"] == "reproduced"
    assert "arXiv" in t.loc["C13a", "source"] and "NeurIPS" in t.loc["C13b", "source"]
    assert "arXiv" not in t.loc["C13b", "source"] and "NeurIPS" not in t.loc["C13a", "source"]
    assert t.loc["C6", "verdict"] == "reproduced"  # 1.6 vs 3.0 with the borrowed seed SD
    assert t.loc["C11", "verdict"] == "not testable here"


def test_dha_clearly_worse_is_not_reproduced_and_narrowing_premise_fails(tmp_path):
    C = dc.build(_folder(tmp_path, dha_final=(1.60, 1.61), gqa_final=(1.50, 1.505)), "smoke")
    t = _rows(C)
    assert t.loc["C9", "verdict"] == "not reproduced"
    assert t.loc["C14", "verdict"] == "not reproduced"
    for cid in ("C13a", "C13b"):
        assert t.loc[cid, "verdict"] == "inconclusive" and "premise" in t.loc[cid, "note"]


def test_noisy_seeds_are_inconclusive(tmp_path):
    C = dc.build(_folder(tmp_path, dha_final=(1.45, 1.56), gqa_final=(1.50, 1.50)), "smoke")
    t = _rows(C)
    assert t.loc["C9", "verdict"] == "inconclusive"
    assert "25%: inconclusive (" in t.loc["C9", "note"] and t.loc["C9", "ci_low"].startswith("-")


def test_one_seed_gives_no_interval_and_single_seed_rows_are_inconclusive(tmp_path):
    C = dc.build(_folder(tmp_path, dha_final=(1.40,), gqa_final=(1.50,), dha_init=(1.6,), seeds=(0,)), "smoke")
    t = _rows(C)
    for cid in ("C5", "C6", "C9", "C10", "C16", "C17"):
        assert t.loc[cid, "verdict"] == "inconclusive", cid
        assert t.loc[cid, "ci_low"] == ""
    assert "one arm seed" in t.loc["C6", "note"]


def test_compound_partly_when_budgets_disagree(tmp_path):
    f = _folder(tmp_path, budgets=(0.25, 0.5), dha_final=(1.40, 1.41), gqa_final=(1.50, 1.505))
    cur = pd.read_csv(f / "loss_vs_tokens.csv")
    last = (cur.arm == "DHA") & (cur.tokens == 100) & (cur.budget == 0.5)
    cur.loc[last, "loss"] = cur.loc[last, "seed"].map({0: 1.60, 1: 1.61})  # DHA clearly worse at 50 % only
    cur.to_csv(f / "loss_vs_tokens.csv", index=False)
    t = _rows(dc.build(f, "smoke"))
    assert t.loc["C9", "verdict"] == "partly"
    assert t.loc["C11", "verdict"] == "reproduced"  # both budgets present: r is tested at 25 % and 50 %


def test_c7_counts_a_repeated_model_once_and_bootstraps_layers(tmp_path):
    t = _rows(dc.build(_folder(tmp_path), "smoke"))
    note = t.loc["C7", "note"]
    assert note.count("MHA source/K") == 1 and "(analysis)/K" not in note
    assert t.loc["C7", "unit"] == "layers"
    flat = {"K": [0.5] * 8, "V": [0.4] * 8}  # no spread at all: the redundancy part is not reproduced
    t2 = _rows(dc.build(_folder(tmp_path, redundancy=flat, k_alloc=(2, 2, 2, 2), v_alloc=(2, 2, 2, 2)), "smoke"))
    assert (
        "MHA source/K: not reproduced" in t2.loc["C7", "note"]
        and "layers off uniform: inconclusive" in t2.loc["C7", "note"]
    )
    assert t2.loc["C7", "verdict"] == "inconclusive"  # 0 of 4 layers off uniform: Wilson [0, 0.49] admits 0.25


def test_checks_use_the_device_tolerance(tmp_path):
    cpu = _rows(dc.build(_folder(tmp_path, c3=5.7e-5, device="cpu"), "smoke"))
    cuda = _rows(dc.build(_folder(tmp_path, c3=5.7e-5, device="cuda"), "smoke"))
    assert cpu.loc["C3", "kind"] == "check" and cpu.loc["C3", "verdict"] == "failed"
    assert cuda.loc["C3", "verdict"] == "passed" and "1e-04" in cuda.loc["C3", "paper_value"]
    assert set(cuda.loc[["C1", "C2", "C4"], "verdict"]) == {"passed"}


def test_exact_values_fall_back_to_the_gpu_log(tmp_path):
    f = _folder(tmp_path)
    for name in ("exact_checks.csv", "c1_budgets.csv"):
        (f / name).unlink()
    (f / "gpu_exec.log").write_text(
        "=== cell\n   model budget alloc decode_max_abs_diff\n   MHA 0.25 gqa 0.00001\n   MHA 0.5 gqa 0.00001\n"
        "C1 all budgets exact: True\nC2 identity fusion vs MHA: max |Δlogit| = 0.0e+00\n"
        "C3 collapse of identical members: DHA 1.9e-05, GQA 5.7e-05\n"
        "C4 RoPE: scalar fusion 8.9e-16; within-head mixing (control) 54.6\n"
    )
    v = dc_rules.exact_values(f)
    assert v["c1_ok"] and v["c1_n"] == 2 and v["c3_collapse_gqa"] == 5.7e-5 and v["c4_rope_control"] == 54.6


def test_seed_interval_of_identical_paired_differences_is_a_point():
    assert seed_interval([0.1, 0.1])[1:3] == (0.1, 0.1)

"""Rules of headlab.papers.attention_sinks.claims on hand-made frames (no model, no torch): one case per verdict."""

import numpy as np
import pandas as pd
import pytest

from headlab.claims import Claims
from headlab.papers.attention_sinks import claims as sc

BM, FREE = "bosmodel", "freemodel"
PARAMS = {
    "bos_model": BM,
    "eps": "0.3,0.8",
    "eval_T": "64",
    f"trained_with_bos:{BM}": "True",
    f"trained_with_bos:{FREE}": "False",
    f"n_heads:{BM}": "2",
    f"n_kv_heads:{BM}": "1",
}


def per_prompt(model, with_bos, without_bos, hi_frac=0.1):
    rows = []
    for bos, vals in ((True, with_bos), (False, without_bos)):
        for i, v in enumerate(vals):
            rows.append(
                {"model": model, "bos": bos, "prompt": i, "sink_0.3": v, "sink_0.8": v * hi_frac, "mean_score": v / 100}
            )
    return pd.DataFrame(rows)


def row(C, cid):
    return next(r for r in C.rows if r.claim_id == cid)


def verdict(C, cid):
    return row(C, cid).verdict


# --- K3: sink collapse without <bos> ------------------------------------------------------------------
def test_k3_reproduced_not_and_partly_and_inconclusive():
    C = Claims("attention_sinks", "test")
    sc.k3(C, per_prompt(BM, [80, 78, 82, 79, 81, 77], [0, 0, 1, 0, 0, 0]), BM, 0.3)
    assert verdict(C, "K3") == "reproduced"
    sc.k3(C, per_prompt(BM, [80, 78, 82, 79, 81, 77], [60, 65, 70, 62, 66, 64]), BM, 0.3)
    assert verdict(C, "K3") == "not reproduced"
    # without <bos> below 5 % (yes) but not 10x lower than a weak sink (no): parts decided both ways
    sc.k3(C, per_prompt(BM, [2, 2, 3, 2, 3, 2], [1, 1, 1, 1, 1, 1]), BM, 0.3)
    assert verdict(C, "K3") == "partly"
    sc.k3(C, per_prompt(BM, [80, 78, 82, 79, 81, 77], [0, 12, 0, 0, 9, 0]), BM, 0.3)
    assert verdict(C, "K3") == "inconclusive"


# --- K2 is a check ----------------------------------------------------------------------------------------
def test_k2_is_a_check_in_checks_csv():
    C = Claims("attention_sinks", "test")
    sc.k2_check(C, per_prompt(BM, [80, 70], [0, 0]), PARAMS, 0.3, 0.8)
    r = row(C, "K2")
    assert r.kind == "check" and r.verdict == "passed"
    assert "K2" not in set(C.table().claim_id) and "K2" in set(C.checks().claim_id)
    C2 = Claims("attention_sinks", "test")
    sc.k2_check(C2, per_prompt(BM, [80, 70], [0, 0], hi_frac=2.0), PARAMS, 0.3, 0.8)
    assert row(C2, "K2").verdict == "failed"


# --- K1 ------------------------------------------------------------------------------------------------
def test_k1_untestable_without_llama_and_within_with_it():
    C = Claims("attention_sinks", "test")
    sc.k1(C, per_prompt(BM, [80, 70], [0, 0]), PARAMS)
    assert verdict(C, "K1") == "not testable here"
    llama = "meta-llama/Llama-3.1-8B"
    sp = per_prompt(llama, [460, 458, 462, 459, 461], [0] * 5)  # sink_0.8 = 46 %
    sc.k1(C, sp, {**PARAMS, f"trained_with_bos:{llama}": "True"})
    assert verdict(C, "K1") == "reproduced"


# --- K4: pairs -------------------------------------------------------------------------------------------
def pairs_frame(ratios, layers=3):
    rows = []
    for k, r in enumerate(ratios):
        for layer in range(layers):
            rows += [
                {"model": BM, "pair": k, "bos": True, "layer": layer, "rel_change": 0.1},
                {"model": BM, "pair": k, "bos": False, "layer": layer, "rel_change": 0.1 * r},
            ]
    return pd.DataFrame(rows)


def test_k4_verdicts():
    C = Claims("attention_sinks", "test")
    sc.k4(C, pairs_frame([2.0, 2.2, 1.9, 2.5, 2.1, 1.8, 2.4, 2.0]), BM)
    assert verdict(C, "K4") == "reproduced"
    sc.k4(C, pairs_frame([0.8, 0.9, 0.7, 0.85, 0.95, 0.9, 0.8, 0.75]), BM)
    assert verdict(C, "K4") == "not reproduced"
    sc.k4(C, pairs_frame([2.0]), BM)  # one pair: no interval
    assert verdict(C, "K4") == "inconclusive"
    sc.k4(C, None, BM)
    assert verdict(C, "K4") == "inconclusive"


# --- K5: NLL and passkey ----------------------------------------------------------------------------------
def test_k5_nll_and_passkey():
    nll = pd.DataFrame(
        {
            "model": BM,
            "text_type": list("abcdef"),
            "n_tokens": 100,
            "nll_bos": [3.0, 3.2, 2.8, 3.1, 3.0, 2.9],
            "nll_no_bos": [5.0, 5.5, 4.9, 5.2, 5.1, 4.8],
        }
    )
    pk_rise = pd.DataFrame(
        [
            {"model": BM, "item": i, "bos": b, "correct": int(c), "tokens": 160}
            for i in range(8)
            for b, c in ((True, i >= 2), (False, True))
        ]
    )
    C = Claims("attention_sinks", "test")
    sc.k5(C, nll, pk_rise, BM)
    assert verdict(C, "K5-nll") == "reproduced"
    # accuracy rises without <bos> (0.75 -> 1.00): no item supports a drop
    assert verdict(C, "K5-passkey") == "not reproduced"
    assert "6/8" in row(C, "K5-passkey").our_value and "8/8" in row(C, "K5-passkey").our_value
    pk_drop = pd.DataFrame(
        [
            {"model": BM, "item": i, "bos": b, "correct": int(c), "tokens": 4000}
            for i in range(30)
            for b, c in ((True, True), (False, i < 3))
        ]
    )
    sc.k5(C, nll.assign(nll_no_bos=nll.nll_bos * 1.01), pk_drop, BM)
    assert verdict(C, "K5-passkey") == "reproduced"
    assert verdict(C, "K5-nll") == "not reproduced"
    pk_mixed = pd.DataFrame(
        [
            {"model": BM, "item": i, "bos": b, "correct": int(c), "tokens": 160}
            for i in range(8)
            for b, c in ((True, i < 5), (False, i < 4))
        ]
    )
    sc.k5(C, None, pk_mixed, BM)
    assert verdict(C, "K5-passkey") == "inconclusive"
    assert verdict(C, "K5-nll") == "not testable here"
    pk_cannot = pd.DataFrame(  # 1/32 with <bos>: the model cannot retrieve at this length, so no drop is measurable
        [
            {"model": BM, "item": i, "bos": b, "correct": int(c), "tokens": 3000}
            for i in range(32)
            for b, c in ((True, i == 0), (False, False))
        ]
    )
    sc.k5(C, None, pk_cannot, BM)
    assert verdict(C, "K5-passkey") == "inconclusive" and "premise failed" in row(C, "K5-passkey").note


# --- K6 ------------------------------------------------------------------------------------------------------
def test_k6():
    C = Claims("attention_sinks", "test")
    sc.k6(C, per_prompt(FREE, [0] * 6, [76, 78, 75, 77, 74, 79]), PARAMS, 0.3)
    assert verdict(C, "K6") == "reproduced"
    sc.k6(C, per_prompt(FREE, [0] * 6, [10, 12, 8, 9, 11, 10]), PARAMS, 0.3)
    assert verdict(C, "K6") == "not reproduced"
    sc.k6(C, per_prompt(BM, [0] * 6, [76] * 6), PARAMS, 0.3)
    assert verdict(C, "K6") == "not testable here"


# --- K9 with a non-sink contrast ------------------------------------------------------------------------------
def value_norms(sink_ratios, other_ratios):
    rows = []
    for layer, (r, sink) in enumerate([(r, True) for r in sink_ratios] + [(r, False) for r in other_ratios]):
        for h in range(2):  # two query heads share the one KV head of the layer
            rows.append(
                {
                    "layer": layer,
                    "head": h,
                    "table": "value_norms",
                    "score": (0.9 if h == 0 else 0.1) if sink else 0.1,
                    "bos_value_norm": r,
                    "median_value_norm": 1.0,
                    "ratio": r,
                    "bos_rank": 0.0,
                    "below_median": float(r < 1),
                }
            )
    return pd.DataFrame(rows)


def test_k9_small_everywhere_is_not_specific():
    C = Claims("attention_sinks", "test")
    sc.k9(C, value_norms([0.2, 0.25, 0.18, 0.22, 0.3], [0.21, 0.19, 0.24, 0.2, 0.26]), PARAMS, BM)
    assert verdict(C, "K9") == "reproduced"
    assert row(C, "K9").n == "5" and row(C, "K9").unit == "KV heads"  # query heads sharing a KV head count once
    assert row(C, "K9-contrast").kind == "hypothesis"
    assert verdict(C, "K9-contrast") == "inconclusive"
    sc.k9(C, value_norms([0.1, 0.12, 0.09, 0.11, 0.1], [0.9, 1.1, 0.95, 1.05, 1.0]), PARAMS, BM)
    assert verdict(C, "K9-contrast") == "reproduced"
    sc.k9(C, value_norms([2.0, 2.2, 1.9, 2.1, 2.0], [0.2, 0.21, 0.19, 0.2, 0.22]), PARAMS, BM)
    assert verdict(C, "K9") == "not reproduced" and verdict(C, "K9-contrast") == "not reproduced"


def test_two_group_bootstrap_is_deterministic():
    a, b = np.array([1.0, 2, 3, 4]), np.array([0.0, 1, 0, 1])
    f = lambda x, y: x.mean() - y.mean()  # noqa: E731
    assert sc.two_group_bootstrap(a, b, f) == sc.two_group_bootstrap(a, b, f)
    est, lo, hi, n = sc.two_group_bootstrap(a, b, f)
    assert est == pytest.approx(2.0) and lo <= est <= hi and n == 8


# --- K7 / K8: premise -------------------------------------------------------------------------------------------
def fig5(final_sinks, source="live (test)"):
    rows = []
    for ctx, s in final_sinks.items():
        for step, v in ((0, 0.0), (10, s)):
            rows.append(
                {
                    "ctx": ctx,
                    "step": step,
                    "sink_0.3": v,
                    "sink_0.8": 0.0,
                    "mean_score": 0.07 + v / 1000,
                    "val_loss": 3.0,
                    "source": source,
                }
            )
    return pd.DataFrame(rows)


def table2(sink_as_trained, source="live (test)"):
    rows = []
    for v, tb in (("bos_causal", True), ("nobos_causal", False)):
        for eb in (True, False):
            rows.append(
                {
                    "variant": v,
                    "train_bos": tb,
                    "intra_doc": False,
                    "eval_bos": eb,
                    "sink_0.3": sink_as_trained if eb == tb else 0.0,
                    "sink_0.8": 0.0,
                    "mean_score": 0.07,
                    "loss": 3.0,
                    "source": source,
                }
            )
    return pd.DataFrame(rows)


def test_k7_k8_untestable_when_no_sink_formed_and_inconclusive_otherwise():
    C = Claims("attention_sinks", "smoke")
    sc.k7(C, fig5({64: 0.0, 128: 0.8, 256: 0.0}), PARAMS, "smoke", 0.3)
    sc.k8(C, table2(0.0), PARAMS, "smoke", 0.3)
    for cid in ("K7", "K8"):
        r = row(C, cid)
        assert r.verdict == "not testable here" and "no sinks formed" in r.note and "20%" in r.note
    assert verdict(C, "K7-gpu") == "not testable here" and verdict(C, "K8-gpu") == "not testable here"
    C2 = Claims("attention_sinks", "gpu")
    sc.k7(C2, fig5({128: 5.0, 512: 30.0, 2048: 60.0}, "gpu profile (committed CSV)"), PARAMS, "gpu", 0.3)
    sc.k8(C2, table2(50.0, "gpu profile (committed CSV)"), PARAMS, "gpu", 0.3)
    assert verdict(C2, "K7-gpu") == "inconclusive" and verdict(C2, "K8-gpu") == "inconclusive"
    assert verdict(C2, "K7") == "not testable here"


# --- build from a folder ----------------------------------------------------------------------------------------
def test_build_from_csvs(tmp_path):
    C = sc.build(tmp_path, "test")  # nothing saved: every row says why it cannot be judged
    assert {r.verdict for r in C.rows} == {"not testable here"}
    pd.DataFrame({"param": list(PARAMS), "value": list(PARAMS.values())}).to_csv(
        tmp_path / "run_params.csv", index=False
    )
    pd.concat(
        [per_prompt(BM, [80, 78, 82, 79], [0, 0, 0, 0]), per_prompt(FREE, [70, 72, 71, 69], [75, 76, 77, 74])]
    ).to_csv(tmp_path / "sink_per_prompt.csv", index=False)
    pairs_frame([2.0, 2.2, 1.9, 2.5]).to_csv(tmp_path / "fig2_pairs.csv", index=False)
    value_norms([0.2, 0.25, 0.18], [0.21, 0.19, 0.24]).to_csv(tmp_path / "fig4.csv", index=False)
    fig5({64: 0.0, 128: 0.0}).to_csv(tmp_path / "fig5.csv", index=False)
    table2(0.0).to_csv(tmp_path / "table2.csv", index=False)
    C = sc.build(tmp_path, "test")
    ids = [r.claim_id for r in C.rows]
    assert ids[:1] == ["K1"] and {
        "K2",
        "K3",
        "K4",
        "K5-nll",
        "K5-passkey",
        "K6",
        "K7",
        "K8",
        "K9",
        "K9-contrast",
    } <= set(ids)
    assert verdict(C, "K3") == "reproduced" and verdict(C, "K6") == "reproduced"
    assert verdict(C, "K5-nll") == "not testable here"
    C.save(tmp_path / "out")
    assert (tmp_path / "out" / "checks.csv").exists()


def _pilot_folder(folder, rates):
    folder.mkdir(parents=True)
    pd.DataFrame(
        {"step": 900, "window": range(len(rates)), "sink_0.3_incl": rates, "sink_0.3_excl": np.array(rates) * 0.9}
    ).to_csv(folder / "pilot_windows.csv", index=False)
    meta = {
        "model": {"d_model": 128, "n_layers": 6, "n_heads": 8, "d_mlp": 512},
        "params": 1.6e6,
        "ctx": 256,
        "lr": 0.005,
        "weight_decay": 0.5,
        "machine": "x86_64, 1 torch thread(s)",
        "chance_mean_score_incl": 0.0239,
    }
    (folder / "pilot_params.json").write_text(__import__("json").dumps(meta))
    pd.DataFrame(
        {
            "convention": ["incl", "excl"],
            "final_tokens": [2.0e7, 2.0e7],
            "final_mean_score": [0.026, 0.022],
            "slope_per_decade": [2.0, 2.0],
            "projected_tokens": [3.0e12, 4.0e12],
            "projected_hours": [1.9e5, 2.5e5],
            "tokens_per_s": [4400.0, 4400.0],
        }
    ).to_csv(folder / "pilot_trend.csv", index=False)


def test_pilot_row_and_k7_k8_reasons(tmp_path):
    _pilot_folder(tmp_path / "cpu_pilot", [0.0, 1.0, 0.0, 2.0, 0.0, 0.0])
    C = Claims("attention_sinks", "smoke")
    s = sc.pilot(C, tmp_path / "cpu_pilot")
    r = row(C, "K7-pilot")
    assert r.kind == "hypothesis" and r.verdict == "not reproduced" and r.n == "6"
    assert "did not form" in s and "3.0e+12 tokens" in s
    sc.k7(C, fig5({64: 0.0, 128: 0.0}), PARAMS, "smoke", 0.3, s)
    assert "did not form" in row(C, "K7").note and "did not form" in row(C, "K7-gpu").note
    _pilot_folder(tmp_path / "formed", [30.0, 40.0, 35.0, 45.0])
    C2 = Claims("attention_sinks", "smoke")
    assert "formed sinks" in sc.pilot(C2, tmp_path / "formed") and verdict(C2, "K7-pilot") == "reproduced"
    assert sc.pilot(Claims("attention_sinks", "smoke"), tmp_path / "absent") == ""

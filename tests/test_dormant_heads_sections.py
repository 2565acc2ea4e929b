"""headlab.papers.dormant_heads: the notebook's section functions (set-up, calibration and sweeps over every
model and dataset, the tidy tables, the from-scratch runs) on hand-made calibrations and a tiny random
headlab model."""

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from headlab.data import ByteTokenizer, MCItem
from headlab.nn import Config, HeadlabLM
from headlab.papers import dormant_heads as D


def cal_of(scores: dict, baseline=50.0, seconds=1.23) -> D.Calibration:
    return D.Calibration("t", scores, baseline, None, seconds)


# ---------------------------------------------------------------- set-up -----------------------


def test_calibration_scores_are_the_papers_plus_any_swept_extra_in_scores_order():
    base = D.calibration_score_names([["random", "ahon"], ["awft"]])
    assert "random" not in base and set(base) == set(D.PAPER_SCORES) - {"random"}
    extra = D.calibration_score_names([["ahon_wo_ln"], []])
    assert set(extra) - set(base) == {"ahon_wo_ln"}
    assert extra == [n for n in D.SCORES if n in extra]  # SCORES order


def test_sweep_plan_per_model_lists_nll_on_the_first_models_and_mmlu_when_set():
    plan = D.sweep_plan(["a", "b"], [["random", "ahon"], ["awft"]], ["random"], 1, [])
    assert plan == {
        "a": [("generated_mc", ["random", "ahon"]), ("text_nll", ["random"])],
        "b": [("generated_mc", ["awft"])],
    }
    plan = D.sweep_plan(["a", "b"], [["x"], ["y"]], ["z"], 0, ["m"])
    assert plan["b"] == [("generated_mc", ["y"]), ("mmlu", ["m"])] and plan["a"][1] == ("mmlu", ["m"])


def test_tasks_inputs_summary_and_run_params():
    mc = [MCItem("1, 2, 3,", (" 4", " 5", " 6", " 7"), 0, "count"), MCItem("a, b,", (" c", " d", " e", " f"), 0, "x")]
    texts = [{"type": "prose", "text": "one two"}, {"type": "verse", "text": "three"}]
    tasks = D.tasks_for(True, mc, mc[:1], texts, batch_size=4, max_len=8)
    assert list(tasks) == ["generated_mc", "mmlu", "text_nll"]
    assert tasks["text_nll"].labels == ["prose", "verse"] and tasks["text_nll"].max_len == 8
    assert all(t.bos for t in tasks.values()) and len(tasks["mmlu"].items) == 1
    s = D.inputs_summary(mc, mc[:1], texts, 8).split("\n")
    assert s[0] == "generated MC: 2 items, e.g. '1, 2, 3,' -> (' 4', ' 5', ' 6', ' 7')"
    assert s[1] == "MMLU: 1 items from 1 subjects; text: 2 paragraphs of 2 types, <= 8 tokens"
    P = SimpleNamespace(**{k: i for i, k in enumerate(D.CLAIM_PARAMS)}, other=9, mc_per_kind=5, mc_kinds=None)
    # the claims' parameters and the generated set's (mc_kinds None: the six default kinds, saved as JSON)
    want = {k: i for i, k in enumerate(D.CLAIM_PARAMS)} | {"mc_per_kind": 5, "mc_kinds": json.dumps(list(D.MC_KINDS))}
    assert D.run_params(P).to_dict("records") == [want]
    P.mc_kinds = ["arith"]
    assert D.run_params(P).mc_kinds.iloc[0] == '["arith"]' and "other" not in D.run_params(P)


def test_calibrate_all_and_run_sweeps_equal_one_call_per_model_and_dataset():
    torch.manual_seed(0)
    m = HeadlabLM(Config(vocab_size=258, d_model=32, n_layers=2, n_heads=4, max_seq_len=64, attn_impl="eager")).eval()
    tok = ByteTokenizer()
    tasks = {"tiny": {"toy_nll": D.Task("toy_nll", "nll", ["the cat sat", "a b c d", "hello"], bos=True, max_len=16)}}
    cal = D.calibrate_all({"tiny": (m, tok)}, tasks, ["ahon", "ahon_ln"])
    assert list(cal) == [("tiny", "toy_nll")] and cal["tiny", "toy_nll"].scores["ahon"].shape == (3, 2, 4)
    plan = {"tiny": [("toy_nll", ["random", "ahon_ln"])]}
    curves, extra = D.run_sweeps({"tiny": (m, tok)}, tasks, cal, plan, [0.0, 0.5], seed=3)
    want, _ = D.sweep(
        m, tok, tasks["tiny"]["toy_nll"], ["random", "ahon_ln"], [0.0, 0.5], cal["tiny", "toy_nll"], "tiny", 3
    )
    cols = ["model", "task", "score", "quantile", "achieved_pct", "metric"]
    pd.testing.assert_frame_equal(curves[cols], want[cols])
    assert list(extra) == [("tiny", "toy_nll")] and ("ahon_ln", 0.5) in extra["tiny", "toy_nll"]["freq"]
    t = D.calibration_table(cal)
    assert t.to_dict("records")[0]["inputs"] == 3 and t.metric[0] == "nats/token"
    a = D.achieved_table(curves)
    assert list(a.columns) == ["achieved % @ nominal 0%", "achieved % @ nominal 50%"] and (a.iloc[:, 0] == 0).all()


# ---------------------------------------------------------------- tables -----------------------


def test_table2_summary_takes_the_best_non_awft_non_random_function():
    long = pd.DataFrame(
        {
            "model": "m",
            "task": ["mc"] * 4 + ["nll"] * 2,
            "score": ["random", "awft", "ahon", "ahon_ln", "random", "ahon_ln"],
            "label": ["Rand", "AWFT", "AHON", "AHON (LN)", "Rand", "AHON (LN)"],
            "within_tol_pct": [30.0, 5.0, 8.0, 12.0, 1.0, 4.0],
        }
    )
    t = D.table2_summary(long)
    assert t.loc[0, ["AWFT", "best other", "best function", "difference"]].tolist() == [5.0, 12.0, "AHON (LN)", 7.0]
    assert np.isnan(t.loc[1, "AWFT"]) and t.loc[1, "best other"] == 4.0 and np.isnan(t.loc[1, "difference"])


def test_threshold_table_uses_the_upper_tail_for_flag_high_scores_and_the_combos():
    x = np.arange(100, dtype=np.float32).reshape(10, 2, 5) / 100  # [input, layer, head]
    th = D.threshold_table({("m", "d"): cal_of({"ahon_ln": x, "awft": x})}, ["ahon_ln", "awft"], [0.1, 0.2])
    got = th.set_index(["score", "p"]).threshold
    assert got["ahon_ln", 0.1] == pytest.approx(np.quantile(x, 0.1)) and got["awft", 0.1] == pytest.approx(
        np.quantile(x, 0.9)
    )
    assert th.label.tolist() == ["AHON (LN)", "AHON (LN)", "AWFT", "AWFT"]
    combos = D.threshold_boot_combos(["mc", "nll"], 0.15, 0.05)
    assert combos[:4] == [
        ("mc", "ahon_ln", 0.15),
        ("mc", "awft", 0.15),
        ("nll", "ahon_ln", 0.15),
        ("nll", "awft", 0.15),
    ]
    assert combos[4:] == [("generated_mc", "ahon_ln", 0.05), ("generated_mc", "awft", 0.05)]
    assert len(D.threshold_boot_combos(["mc"], 0.1, 0.1)) == 2


def test_overlap_tables_and_summary():
    rng = np.random.default_rng(0)
    s = {"m1": {"ahon": rng.random((6, 2, 4)), "ahon_ln": rng.random((6, 2, 4))}}
    ovs = D.overlap_table(s, ["ahon", "ahon_ln"], 0.25)
    assert set(ovs.model) == {"m1"} and len(ovs) == 4
    freq = {"m1": np.array([0.0, 0.5, 1.0, 0.25])}  # [layer * head]
    z = D.zero_freq_frame(freq)
    assert z.head_index.tolist() == [0, 1, 2, 3] and z.zero_freq.tolist() == [0.0, 0.5, 1.0, 0.25]
    line = D.overlap_summary(ovs, freq)
    off = ovs[ovs.a != ovs.b]
    assert line.startswith(f"m1: max IoU {off.iou.max():.2f}, max precision {off.precision.max():.2f}")
    assert line.endswith("inputs: 50% (always 25%, never 25%)")


def test_flip_frame_text_type_table_and_distances():
    a, b = np.zeros((4, 1, 2), bool), np.zeros((4, 1, 2), bool)
    b[0, 0, :] = True  # input 0: both heads dormant at the last checkpoint
    states = {"ahon_ln": [a, b], "awft": [a, a]}
    f = D.flip_frame(states, [0, 10])
    assert f.to_dict("records") == [
        {"score": "ahon_ln", "step": 10, "flip_rate": 0.25},
        {"score": "awft", "step": 10, "flip_rate": 0.0},
    ]
    x = np.linspace(0, 1, 6 * 2 * 3, dtype=np.float32).reshape(6, 2, 3)  # 6 paragraphs
    labels = ["p", "p", "p", "v", "v", "v"]
    cal = {("m", "text_nll"): cal_of({"ahon_ln": x, "awft": x})}
    tasks = {"m": {"text_nll": SimpleNamespace(labels=labels)}}
    tt, perm = D.text_type_table(cal, tasks, ["m"], states, ["t", "t", "n", "n"], p=0.5, seed=0)
    assert list(perm) == [("m", "ahon_ln"), ("m", "awft"), ("from-scratch BB", "ahon_ln"), ("from-scratch BB", "awft")]
    m = tt[(tt.model == "m") & (tt.score == "ahon_ln")].groupby("label").pct.mean()
    assert m["p"] == 100.0 and m["v"] == 0.0  # the first half of the scores is below the median
    bb = tt[(tt.model == "from-scratch BB") & (tt.score == "ahon_ln")]
    assert bb.pct.tolist() == [100.0, 0.0, 0.0, 0.0] and bb.label.tolist() == ["t", "t", "n", "n"]
    g1, g2 = {"a": np.zeros(5), "b": np.ones(5), "c": np.full(5, 3.0)}, {"x": np.zeros(3), "y": np.zeros(3)}
    assert D.pairwise_wasserstein(g1, g2) == {"a vs b": 1.0, "a vs c": 3.0, "b vs c": 2.0, "x vs y": 0.0}
    c = D.cdf_frame({"g": {"a": np.arange(11.0)}})
    assert len(c) == 101 and c.ahon_ln.iloc[50] == 5.0 and c.cum_fraction.iloc[-1] == 1.0


# ---------------------------------------------------------------- from-scratch runs ------------


def tiny_P(**kw):
    d = dict(
        bb_vocab=16,
        bb_triggers=2,
        seed=0,
        dyn_eval=3,
        dyn_seq=12,
        trigger_boost=3.0,
        dyn_d_model=16,
        dyn_layers=1,
        dyn_heads=2,
        tau_ahon_ln=0.5,
        tau_awft=0.5,
        dyn_steps=2,
        dyn_every=1,
        dyn_lr=0.01,
        dyn_batch=4,
        dyn_min_lr_ratio=1.0,
        ft_steps=1,
        ft_lr=0.003,
        dyn_second_seed=False,
    )
    return SimpleNamespace(**(d | kw))


def test_bb_setup_pretrain_and_finetune_leave_the_base_model_alone():
    P = tiny_P()
    bb, cfg, eval_ids, eval_labels, taus = D.bb_setup(P)
    assert eval_ids.shape == (6, 12) and eval_labels == ["trigger"] * 3 + ["no_trigger"] * 3
    assert not bb.is_trigger[eval_ids[3:]].any() and taus == {"ahon_ln": 0.5, "awft": 0.5}
    assert cfg.attn_only and cfg.n_heads == 2 and cfg.vocab_size == bb.vocab_size
    tiny, dyn, states = D.pretrain_bb(bb, cfg, eval_ids, eval_labels, taus, P)
    assert sorted(dyn.step.unique()) == [0, 1, 2] and len(states["awft"]) == 3
    assert states["awft"][0].shape == (6, 1, 2)  # [input, layer, head]
    before = [p.detach().clone() for p in tiny.parameters()]
    ft, other = D.finetune_and_reseed(bb, cfg, tiny, eval_ids, eval_labels, taus, P)
    assert other is None and ft is not tiny
    assert all(torch.equal(a, p) for a, p in zip(before, tiny.parameters(), strict=True))
    assert any(not torch.equal(a, p) for a, p in zip(before, ft.parameters(), strict=True))
    dist = D.score_samples({"base": tiny, "finetuned": ft}, eval_ids)
    assert list(dist) == ["base", "finetuned"] and dist["base"].shape == (6 * 1 * 2,)

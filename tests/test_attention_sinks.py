"""Unit tests of headlab.papers.attention_sinks on hand-built patterns and tiny headlab models (no downloads)."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import spearmanr

from headlab.data import ByteTokenizer
from headlab.nn import Attention, Config, HeadlabLM
from headlab.papers import attention_sinks as sinks

torch.manual_seed(0)


def causal_uniform(T: int) -> torch.Tensor:
    return torch.ones(T, T).tril() / torch.arange(1, T + 1)[:, None]


def sink_pattern(T: int) -> torch.Tensor:
    p = torch.zeros(T, T)
    p[:, 0] = 1.0
    return p


def tiny_lm(n_layers=2, n_kv_heads=2, max_seq_len=64, attention_cls=sinks.SinkAttention, attn_impl="sdpa"):
    torch.manual_seed(0)
    cfg = Config(
        vocab_size=258,
        d_model=32,
        n_layers=n_layers,
        n_heads=4,
        n_kv_heads=n_kv_heads,
        d_mlp=64,
        max_seq_len=max_seq_len,
        attn_impl=attn_impl,
    )
    return HeadlabLM(cfg, attention_cls=attention_cls).eval()


# --- sink metric ---------------------------------------------------------------------------------


def test_chance_score_is_the_uniform_head_score():
    for T in (1, 4, 16, 64):
        pat = causal_uniform(T)[None, None, None]  # [layer, batch, head, q, k]
        score = sinks.first_position_scores(pat)[0, 0, 0].item()
        assert score == pytest.approx(sinks.chance_score(T), abs=1e-6)
    assert sinks.chance_score(64) == pytest.approx(0.0744, abs=1e-3)  # H_64 / 64


def test_sink_rates_on_a_hand_built_pattern():
    T = 4
    # layer 0: head 0 a perfect sink, head 1 uniform; layer 1: both uniform. Two identical prompts.
    pat = torch.stack(
        [torch.stack([sink_pattern(T), causal_uniform(T)]), torch.stack([causal_uniform(T), causal_uniform(T)])]
    )[:, None].repeat(1, 2, 1, 1, 1)
    scores = sinks.first_position_scores(pat)
    assert scores.shape == (2, 2, 2)  # [prompt, layer, head]
    h4 = (1 + 1 / 2 + 1 / 3 + 1 / 4) / 4
    assert torch.allclose(scores[0], torch.tensor([[1.0, h4], [h4, h4]]))
    assert sinks.sink_rate(scores, 0.3) == pytest.approx(1.0)  # h4 = 0.52 > 0.3: uniform heads count at T=4
    assert sinks.sink_rate(scores, 0.6) == pytest.approx(0.25)
    assert sinks.sink_rate(scores, 0.8) == pytest.approx(0.25)
    np.testing.assert_allclose(sinks.sink_rate_per_layer(scores, 0.8), [0.5, 0.0])
    m = sinks.sink_metrics(scores, (0.3, 0.8))
    assert m["sink_0.3"] == pytest.approx(100.0) and m["sink_0.8"] == pytest.approx(25.0)
    # without row 0 the uniform head scores (1/2 + 1/3 + 1/4) / 3
    s2 = sinks.first_position_scores(pat, include_first_row=False)
    assert s2[0, 1, 0].item() == pytest.approx((1 / 2 + 1 / 3 + 1 / 4) / 3)
    prof = sinks.sink_profile(scores, (0.3, 0.8), model="m")
    assert set(prof.columns) >= {"model", "layer", "eps", "sink_pct", "mean_score"}
    assert prof.query("eps == 0.8 and layer == 0").sink_pct.item() == pytest.approx(50.0)


def test_exclude_first_row_is_exact_on_causal_patterns():
    """Row 0 of a causal pattern puts weight 1 on key 0, so row-0-excluded scores follow from the included ones."""
    torch.manual_seed(0)
    T = 9
    logits = torch.randn(3, 2, 4, T, T)  # [layer, batch, head, q, k]
    pat = logits.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf")).softmax(-1)
    incl = sinks.first_position_scores(pat)
    excl = sinks.first_position_scores(pat, include_first_row=False)
    torch.testing.assert_close(sinks.exclude_first_row(incl, T), excl)
    m = sinks.sink_metrics(incl, (0.3,), n_rows=T)
    assert m["sink_0.3_excl"] == pytest.approx(100 * sinks.sink_rate(excl, 0.3))
    assert m["mean_score_excl"] == pytest.approx(float(excl.mean()), abs=1e-6)
    with pytest.raises(ValueError, match="2 query rows"):
        sinks.exclude_first_row(incl, 1)


def test_row_entropy():
    T = 4
    ent = sinks.row_entropy(causal_uniform(T))
    np.testing.assert_allclose(ent.numpy(), [math.log(i) for i in range(1, T + 1)], atol=1e-6)
    assert torch.all(sinks.row_entropy(sink_pattern(T)) == 0)


def test_prompt_ids_bos_is_explicit():
    tok = ByteTokenizer()
    texts = ["hello world, a long enough text", "short"]
    ids, used = sinks.prompt_ids(tok, texts, 8, bos=True)
    assert used == [0] and ids.shape == (1, 8) and ids[0, 0].item() == tok.bos_token_id
    assert ids[0, 1:].tolist() == list(b"hello w")
    with_bos, without = sinks.paired_prompt_ids(tok, texts, 8)
    assert without.shape == (1, 7) and torch.equal(without, with_bos[:, 1:])
    assert tok.bos_token_id not in without.tolist()[0]


def test_attention_patterns_and_scores_of_a_headlab_model():
    model = tiny_lm()
    ids = torch.randint(0, 256, (3, 12))
    pat = sinks.attention_patterns(model, ids)
    assert pat.shape == (2, 3, 4, 12, 12)
    assert torch.allclose(pat.sum(-1), torch.ones(2, 3, 4, 12), atol=1e-5)
    assert torch.all(pat.triu(1) == 0)  # causal
    assert model.config.attn_impl == "sdpa"  # restored
    scores, kept = sinks.sink_scores(model, ids, batch_size=2, keep=1)
    assert torch.allclose(scores, sinks.first_position_scores(pat), atol=1e-6)
    assert torch.allclose(kept, pat[:, :1])


# --- perturbation -------------------------------------------------------------------------------


def test_edit_span():
    assert sinks.probes._edit_span([1, 2, 3, 4, 5], [1, 2, 9, 4, 5]) == (2, 2)
    assert sinks.probes._edit_span([1, 2, 3, 4, 5], [1, 2, 7, 8, 4, 5]) == (2, 2)  # unequal lengths
    assert sinks.probes._edit_span([1, 2, 3], [1, 2, 3]) == (3, 0)


def test_layer_states_end_in_the_final_hidden_state():
    model = tiny_lm()
    ids = torch.randint(0, 256, (2, 10))
    states = sinks.layer_states(model, ids)
    assert states.shape == (2, 2, 10, 32)
    with torch.no_grad():
        assert torch.allclose(model.norm(states[-1]), model.hidden(ids), atol=1e-5)


def test_perturbation_spread_alignment_and_invariants():
    model, tok = tiny_lm(), ByteTokenizer()
    text = "the cat sat on the mat and looked at the dog"
    rows = {}
    for bos in (True, False):
        df, meta = sinks.perturbation_spread(model, tok, text, "cat", "cow", bos)
        assert meta["edit_start"] == len("the c") + int(bos)
        assert (meta["ids"][0] == tok.bos_token_id) == bos
        assert (df.rel_change > 0).all()  # every later token changes at every layer (causal attention)
        assert sorted(set(df.layer)) == [0, 1]
        rows[bos] = df
    # text positions line up with and without <bos>: the tokens after "cow" / "cat"
    expect = list(range(len("the cat"), len(text)))
    assert sorted(set(rows[True].text_pos)) == sorted(set(rows[False].text_pos)) == expect
    # an unequal-length edit is aligned from the end
    longer, meta = sinks.perturbation_spread(model, tok, text, "cat", "camel", False)
    assert sorted(set(longer.text_pos)) == expect and len(meta["ids_perturbed"]) == len(meta["ids"]) + 2
    with pytest.raises(ValueError):
        sinks.perturbation_spread(model, tok, text, "zebra", "horse", True)


# --- mixing simulation --------------------------------------------------------------------------


def test_sink_attention_rows():
    A = sinks.sink_attention(5, 0.9)
    assert torch.allclose(A.sum(-1), torch.ones(5, dtype=A.dtype))
    assert torch.all(A.triu(1) == 0)
    assert torch.allclose(A[1:, 0], torch.full((4,), 0.9, dtype=A.dtype))
    assert A[3, 1].item() == pytest.approx(0.1 / 3)


def test_mixing_simulation_sinks_slow_mixing():
    df = sinks.mixing_simulation(sinks=(0.0, 0.99), n_tokens=8, d=8, n_layers=6, seed=0)
    L = df.layer.max()
    last = df[(df.layer == L)].groupby("sink_weight").mean_cosine.first()
    assert last[0.99] < last[0.0]  # less collapse with a strong sink
    # layer 0: the Jacobian of x_1 w.r.t. itself is the identity (norm sqrt(d)), zero for others
    l0 = df[(df.layer == 0) & (df.sink_weight == 0.0)].set_index("token").sensitivity
    assert l0[1] == pytest.approx(math.sqrt(8)) and l0.drop(1).abs().max() == 0
    sens = df[(df.token == 7) & (df.layer == L)].set_index("sink_weight").sensitivity
    assert sens[0.99] < 0.1 * sens[0.0]
    # s = 1: every query parks on the zero-value sink, tokens never mix
    one = sinks.mixing_simulation(sinks=(1.0,), n_tokens=6, d=4, n_layers=3)
    assert one[(one.token > 1)].sensitivity.abs().max() < 1e-12


# --- value norms and the apostrophe head -------------------------------------------------------


def test_value_norms_match_v_proj_with_gqa():
    model = tiny_lm(n_kv_heads=2)
    ids = torch.randint(0, 256, (2, 7))
    vn = sinks.value_norms(model, ids)  # [prompt, layer, head, pos]
    assert vn.shape == (2, 2, 4, 7)
    with torch.no_grad():
        x = model.embed_tokens(ids)
        v = model.layers[0].self_attn.v_proj(model.layers[0].input_layernorm(x)).view(2, 7, 2, 8)
    ref = v.norm(dim=-1)  # [b, pos, kv]
    for h, kv in enumerate([0, 0, 1, 1]):
        assert torch.allclose(vn[:, 0, h], ref[:, :, kv], atol=1e-5)


def test_bos_value_norm_table():
    scores = torch.tensor([[[0.9, 0.1]]])  # [prompt, layer, head]
    vn = torch.tensor([[[[1.0, 3.0, 5.0, 4.0], [9.0, 3.0, 5.0, 4.0]]]])  # [prompt, layer, head, pos]
    t = sinks.bos_value_norm_table(scores, vn).set_index("head")
    assert t.loc[0, "median_value_norm"] == pytest.approx(4.0)
    assert t.loc[0, "ratio"] == pytest.approx(0.25) and t.loc[0, "bos_rank"] == 0 and t.loc[0, "below_median"] == 1
    assert t.loc[1, "bos_rank"] == 3 and t.loc[1, "below_median"] == 0


def test_apostrophe_head_search_finds_the_planted_head():
    T = 8
    fire = [[3, 6]]  # queries right after an apostrophe token at 2 and 5
    sink = sink_pattern(T)
    planted = sink_pattern(T)
    for q in fire[0]:
        planted[q] = 0
        planted[q, q - 1] = 1.0
    pat = torch.stack([sink, planted, causal_uniform(T)])[None, None]  # [layer=1, batch=1, head=3, q, k]
    res = sinks.apostrophe_head_search(pat, fire)
    top = res.iloc[0]
    assert int(top["head"]) == 1
    assert top.attn_to_apostrophe == pytest.approx(1.0) and top.prev_elsewhere == pytest.approx(0.0)
    assert top.bos_elsewhere == pytest.approx(1.0) and top.bos_after_apostrophe == pytest.approx(0.0)
    assert top.score == pytest.approx(1.0)
    with pytest.raises(ValueError):
        sinks.apostrophe_head_search(pat, [[]])


def test_apostrophe_positions():
    class Tok:
        def decode(self, ids):
            return {0: "<bos>", 1: "don", 2: "'", 3: "t", 4: " go", 5: "’s"}[ids[0]]

    assert sinks.apostrophe_positions(Tok(), [0, 1, 2, 3, 4, 5, 4]) == [3, 6]


# --- downstream proxies ----------------------------------------------------------------------------


def test_passkey_prompts_and_paired_nll():
    items = sinks.passkey_prompts(3, 4, seed=1)
    assert items == sinks.passkey_prompts(3, 4, seed=1)
    for prompt, ans in items:
        assert ans.strip() in prompt and len(ans.strip()) == 5 and prompt.endswith("The pass key is")
    model, tok = tiny_lm(max_seq_len=512), ByteTokenizer()
    r = sinks.paired_nll(model, tok, ["some text here to score", "another one, longer than the limit"], max_len=16)
    assert r["n_tokens"] == (15 - 1) + (15 - 1)
    assert sum(u["n_tokens"] for u in r["per_text"]) == r["n_tokens"]  # per-text units for the claims' interval
    assert np.average(
        [u["nll_no_bos"] for u in r["per_text"]], weights=[u["n_tokens"] for u in r["per_text"]]
    ) == pytest.approx(r["nll_no_bos"])
    acc = sinks.passkey_accuracy(model, tok, items[:1], bos=True)
    assert 0 <= acc["acc"] <= 1 and acc["answer_logprob"] < 0
    assert len(acc["correct"]) == len(acc["tokens"]) == 1 and acc["acc"] == float(acc["correct"][0])


# --- pretraining machinery ---------------------------------------------------------------------


def test_doc_mask_keeps_a_global_bos_visible():
    d = torch.tensor([[sinks.GLOBAL_DOC, 0, 0, 1, 1]])
    m = sinks.doc_mask(5, d)[0, 0].int()
    expect = torch.tensor([[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0], [1, 0, 0, 1, 0], [1, 0, 0, 1, 1]])
    assert torch.equal(m, expect)


def test_sink_attention_matches_stock_attention_and_eager_matches_sdpa():
    cfg = Config(vocab_size=258, d_model=32, n_layers=1, n_heads=4, n_kv_heads=2, max_seq_len=16)
    torch.manual_seed(0)
    a, b = Attention(cfg, 0), sinks.SinkAttention(cfg, 0)
    b.load_state_dict(a.state_dict())
    from headlab.nn import rope_cache

    cos, sin = rope_cache(10, 8, 10000.0)
    x = torch.randn(2, 10, 32)
    docs = torch.tensor([[0] * 4 + [1] * 6, [3] * 10])
    with torch.no_grad():
        assert torch.allclose(a(x, cos, sin)[0], b(x, cos, sin)[0], atol=1e-6)
        assert torch.allclose(a(x, cos, sin, docs)[0], b(x, cos, sin, docs)[0], atol=1e-5)
        g = torch.cat([torch.full((2, 1), sinks.GLOBAL_DOC), docs[:, 1:]], 1)
        sd = b(x, cos, sin, g)[0]
        cfg.attn_impl = "eager"
        out, w = b(x, cos, sin, g)
    assert torch.allclose(sd, out, atol=1e-5)
    assert torch.all(w[0, :, 5:, 0] > 0)  # the second document still sees position 0
    assert torch.all(w[0, :, 5:, 1:4] == 0)  # but not the first document


def test_packed_windows():
    toks = np.arange(100) % 50
    docs = np.repeat(np.arange(10), 10)
    for v in sinks.VARIANTS.values():
        get = sinks.PackedWindows(toks, docs, batch=3, ctx=8, variant=v, seed=0)
        x, (y, d) = get(5)
        x2, (y2, _) = get(5)
        assert torch.equal(x, x2) and torch.equal(y, y2)  # reproducible per step
        assert x.shape == y.shape == (3, 8)
        assert torch.equal(x[:, 1:], y[:, :-1])  # y is x shifted by one
        if v.bos:
            assert torch.all(x[:, 0] == ByteTokenizer.bos_token_id)
            assert torch.all(y[:, 0] == x[:, 1])
        else:
            assert not torch.any(x == ByteTokenizer.bos_token_id)
        if v.intra_doc:
            assert d.shape == (3, 8)
            assert torch.all(d[:, 0] == sinks.GLOBAL_DOC) if v.bos else torch.all(d >= 0)
        else:
            assert d is None


def test_doc_start_windows_and_evaluation():
    toks = np.arange(60) % 40
    docs = np.repeat([0, 1, 2], [25, 5, 30])
    w = sinks.doc_start_windows(toks, docs, 10, 5)
    assert w.shape == (2, 10) and w[0, 0].item() == 0 and w[1, 0].item() == 30  # doc 1 is too short
    model = tiny_lm()
    with_bos = sinks.evaluate_first_position(model, w, True)
    without = sinks.evaluate_first_position(model, w, False)
    # the same targets either way: check the no-bos loss by hand
    with torch.no_grad():
        logits = model(w[:, :-1]).logits
        ref = torch.nn.functional.cross_entropy(logits.reshape(-1, 258), w[:, 1:].reshape(-1)).item()
    assert without["loss"] == pytest.approx(ref, rel=1e-5)
    assert set(with_bos) == {"sink_0.3", "sink_0.8", "mean_score", "loss"}
    tab = sinks.variant_table(model, w, "bos_causal")
    assert list(tab.eval_bos) == [True, False]


def test_pretrain_runs_and_logs():
    toks = np.random.default_rng(0).integers(0, 256, 3000)
    docs = np.repeat(np.arange(30), 100)
    w = sinks.doc_start_windows(toks, docs, 16, 4)
    spec = sinks.PretrainSpec(
        ctx=32,
        tokens_per_step=128,
        steps=4,
        variant=sinks.VARIANTS["bos_intradoc"],
        model=dict(d_model=16, n_layers=1, n_heads=2, d_mlp=32),
        eval_every=2,
        warmup=1,
    )
    assert spec.batch == 4
    model, log = sinks.pretrain(spec, (toks, docs), w, val_stream=(toks, docs))
    assert list(log.step) == [0, 2, 4] and list(log.tokens_seen) == [0, 256, 512]
    assert {"sink_0.3", "mean_score", "loss", "val_loss", "ctx"} <= set(log.columns)
    assert not model.training


def test_spearman():
    x, y = [1, 2, 3, 4, 5], [2, 1, 4, 3, 5]
    assert sinks.spearman(x, y) == pytest.approx(spearmanr(x, y).statistic)
    assert math.isnan(sinks.spearman(x, [0, 0, 0, 0, 0]))


# --- the notebook's steps (experiments, sweeps) ---------------------------------------------------


def test_model_sink_scores_keeps_patterns_of_the_bos_model_only():
    model, tok = tiny_lm(), ByteTokenizer()
    texts = ["the quick brown fox jumps over the lazy dog " * 2] * 3
    loaded = {"a": (model, tok), "b": (model, tok)}
    scores, ids_fed, kept = sinks.model_sink_scores(loaded, texts, 10, 2, "a", keep=1)
    assert ids_fed["a", True].shape == (2, 10) and ids_fed["a", False].shape == (2, 9)
    assert scores["a", True].shape == (2, 2, 4)  # [prompt, layer, head]
    assert kept["a", False].shape == (2, 1, 4, 9, 9) and kept["b", True] is None  # [layer, kept prompt, head, q, k]
    rates = sinks.per_prompt_sink_rates(scores, (0.3, 0.8))
    assert len(rates) == 8 and list(rates.columns[:3]) == ["model", "bos", "prompt"]
    row = rates[(rates.model == "a") & rates.bos & (rates.prompt == 1)].iloc[0]
    assert row["sink_0.3"] == pytest.approx(sinks.sink_metrics(scores["a", True][1:2], (0.3, 0.8))["sink_0.3"])
    maps = sinks.attention_maps(tok, "a", scores, kept, ids_fed, n_heads=2, n=4)
    assert len(maps) == 2 * 2 * 10  # heads x bos x (q, k <= q) cells
    top = maps[maps.bos].groupby(["layer", "head"]).score.first()
    assert top.min() >= scores["a", True].mean(0).flatten().sort(descending=True).values[1].item() - 1e-6
    l, h = top.index[0]
    cell = maps[(maps.layer == l) & (maps["head"] == h) & ~maps.bos & (maps.q == 3) & (maps.k == 0)].iloc[0]
    assert cell.weight == pytest.approx(kept["a", False][l, 0, h, 3, 0].item())
    params = sinks.run_params({}, "smoke", "", (0.3, 0.8), 64, 32)
    assert dict(zip(params.param, params.value, strict=True))["eps"] == "0.3,0.8"


def test_perturbation_and_downstream_reports():
    pert = pd.DataFrame(
        [
            {
                "model": "m",
                "bos": bos,
                "layer": layer,
                "token": t,
                "rel_change": (2.0 if not bos else 1.0) * (layer + 1),
            }
            for bos in (True, False)
            for layer in range(3)
            for t in range(2)
        ]
    )
    rep = sinks.perturbation_report(pert, {("m", True): {"edit_start": 4, "n_after": 2}})
    assert rep == (
        "m: edit at token 4, 2 later tokens; last layer 3.000 (⟨bos⟩) vs 6.000 (no ⟨bos⟩), ratio 2.00; "
        "larger without ⟨bos⟩ at 100% of layers"
    )
    pairs = pd.DataFrame(
        [
            {"pair": p, "bos": b, "layer": 1, "rel_change": v}
            for p, r in ((0, 2.0), (1, 8.0))
            for b, v in ((True, 1.0), (False, r))
        ]
    )
    assert "geo-mean 4.00, range 2.00–8.00, > 1 in 2/2 pairs" in sinks.pair_ratio_report(pairs, "m")
    t3 = pd.DataFrame(
        [
            {"model": "m", "task": "NLL a", "metric": "nats/token", "bos": True, "value": 1.0, "n": 1},
            {"model": "m", "task": "NLL b", "metric": "nats/token", "bos": True, "value": 3.0, "n": 3},
            {"model": "m", "task": "passkey", "metric": "accuracy", "bos": True, "value": 0.5, "n": 4},
        ]
    )
    rep = sinks.table3_report(t3).splitlines()
    assert rep[3].split() == ["m", "2.5"] and rep[-1].split() == ["m", "0.5"]  # token-weighted mean loss


def test_pretraining_sources_committed_and_earlier_split(tmp_path, capsys):
    from types import SimpleNamespace

    live = pd.DataFrame({"variant": ["v"], "eval_bos": [True], "sink_0.3": [1.0], "sink_0.8": [0.0]})
    live = live.assign(mean_score=0.1, loss=3.0)
    live.assign(source="live (gpu)").to_csv(tmp_path / "table2.csv", index=False)
    smoke = SimpleNamespace(profile="smoke", eps=(0.3, 0.8), eval_T=16)
    gpu = SimpleNamespace(profile="gpu", pretrain_live=True, pretrain_parts=["ctx_sweep"], paper="attention_sinks")
    assert sinks.committed_gpu_csv(gpu, tmp_path, "table2") is None  # a gpu run draws its own results
    committed = sinks.committed_gpu_csv(smoke, tmp_path, "table2")
    assert len(committed) == 1 and sinks.committed_gpu_csv(smoke, tmp_path, "fig5") is None
    taken = sinks.earlier_split(gpu, tmp_path, "table2", "variants")
    assert "source" not in taken.columns and "earlier split" in capsys.readouterr().out
    assert sinks.earlier_split(gpu, tmp_path, "table2", "ctx_sweep") is None  # this split runs it itself
    srcs = sinks.pretraining_sources(smoke, live, committed)
    assert [label for label, _ in srcs] == ["live (smoke)", "gpu profile (committed CSV)"]
    assert sinks.pretraining_sources(smoke, None, None) == [] and sinks.pretraining_curves(smoke, []) is None
    assert set(sinks.pretraining_curves(smoke, srcs).eval_T) == {16}
    rep = sinks.table2_report(smoke, srcs).splitlines()
    assert rep[0] == "committed gpu-profile CSV: figures/attention_sinks/gpu/table2.csv" and rep[1] == "live (smoke)"
    assert sinks.table2_report(smoke, []) == "committed gpu-profile CSV: none yet"


def test_pretrain_corpus_shipped_big_and_bad(monkeypatch, tmp_path):
    from types import SimpleNamespace

    from headlab import data
    from headlab.papers.attention_sinks import sweeps

    assert sweeps.doc_index(np.array([0, 3, 5])).tolist() == [0, 0, 0, 1, 1]
    tr, va, dtr, dva = sweeps.pretrain_corpus(SimpleNamespace(pretrain_corpus="shipped"))
    assert len(tr) == len(dtr) and len(va) == len(dva) and abs(len(va) / (len(tr) + len(va)) - 0.05) < 1e-3
    monkeypatch.setattr(data, "BIG_CORPUS_DIR", tmp_path)  # no big corpus there: one clear error
    with pytest.raises(data.DataError, match="corpus"):
        sweeps.pretrain_corpus(SimpleNamespace(pretrain_corpus="big"))
    with pytest.raises(ValueError, match="pretrain_corpus"):
        sweeps.pretrain_corpus(SimpleNamespace(pretrain_corpus="wiki"))

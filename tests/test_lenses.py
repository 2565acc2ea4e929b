"""headlab.lenses on a tiny random llama: hand-checkable values, the statistics, the CLI's one-line errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from headlab import heads
from headlab.__main__ import main
from headlab.lenses import probe, stats
from headlab.lenses.claims import build


@pytest.fixture(scope="module")
def tiny():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        attn_implementation="eager",
    )
    model = LlamaForCausalLM(cfg).eval()
    ids = torch.randint(0, 64, (6, 16), generator=torch.Generator().manual_seed(1))
    tx = probe.Texts(ids, ids.clone(), ["a", "a", "a", "b", "b", "b"], False)
    return model, tx


def test_a_head_without_output_weights_costs_nothing(tiny):
    model, tx = tiny
    w, idx = heads.Heads(model).o_proj_weight_slice(1, 2)
    saved = w.data.clone()
    try:
        w.data[idx] = 0.0  # head 2 of layer 1 writes nothing
        z_mean = torch.randn(2, 4, 8)
        ex = probe.exact_ablation(model, tx.ids, [(1, 2), (0, 1)], z_mean, batch=3, progress=False)
        zero, mean = probe._attribution_batch(model, tx.ids, z_mean)
    finally:
        w.data.copy_(saved)
    assert np.abs(ex[(1, 2)][0]).max() < 1e-6 and np.abs(ex[(1, 2)][1]).max() < 1e-6
    assert np.abs(zero[:, 1, 2]).max() < 1e-6 and np.abs(mean[:, 1, 2]).max() < 1e-6
    assert np.abs(ex[(0, 1)][0]).max() > 1e-4  # a head that writes does cost something
    # first order agrees in sign and size with the exact effect of a live head
    assert np.corrcoef(ex[(0, 1)][1], mean[:, 0, 1])[0, 1] > 0.5


def test_sink_score_of_a_head_that_reads_only_position_0_is_1():
    pat = torch.zeros(1, 2, 5, 5)
    pat[:, 0, :, 0] = 1.0  # head 0: every query row on position 0
    pat[:, 1] = torch.tril(torch.ones(5, 5)) / torch.arange(1, 6)[:, None]  # head 1: uniform causal
    s = probe.first_token_share(pat)
    assert s[0, 0] == pytest.approx(1.0)
    assert s[0, 1] == pytest.approx(float(np.mean(1 / np.arange(1, 6))))


def test_cka_and_router_shares():
    x = torch.randn(3, 20, 4, generator=torch.Generator().manual_seed(0))
    acts = torch.stack([x[0], 2 * x[0] + 1, x[1]])  # head 1 is a scaled, shifted copy of head 0
    nn_ = probe.nearest_cka(acts)
    assert nn_[0] == pytest.approx(1.0) and nn_[1] == pytest.approx(1.0) and nn_[2] < 1.0
    assert torch.isnan(probe.nearest_cka(acts[:1])).all()  # one KV head: no neighbour
    share = probe.topk_share(torch.randn(2, 7, 5), 2)
    assert torch.allclose(share.sum(-1), torch.full((2,), 2.0))


def test_measure_on_a_tiny_model(tiny):
    model, tx = tiny
    m = probe.measure(model, "tiny", tx, n_random=3, n_dormant=2, batch=4, progress=False)
    d = m.per_text
    assert len(d) == 6 * 2 * 4 and set(probe.LENS_COLUMNS) <= set(d.columns)
    assert np.allclose(d.groupby(["text", "layer"]).ahon_ln.mean(), 1.0)  # AHON-LN: layer mean 1
    assert ((d.sink >= 0) & (d.sink <= 1)).all()
    assert np.allclose(d.groupby(["text", "layer"]).router_qnorm.sum(), 2.0)  # top half of 4 heads
    # a GQA head's K|V lens is its KV head's: heads 0, 1 read KV head 0
    assert np.allclose(d[d["head"] == 0].kv_cka.to_numpy(), d[d["head"] == 1].kv_cka.to_numpy())
    assert len(m.exact) == 6 * len(m.exact[["layer", "head"]].drop_duplicates())
    pt = stats.with_dormant_share(d)
    pred = stats.prediction(pt, m.exact, n_boot=50)
    assert set(pred.lens) >= {"ahon_ln", "sink", "router_oracle"}
    assert ((pred.precision >= 0) & (pred.precision <= 1)).all()
    corr = stats.correlations(pt, n_boot=50)
    assert (corr.ci_low <= corr.rho + 1e-12).all() and (corr.rho <= corr.ci_high + 1e-12).all()


def test_rank_correlation_matches_scipy():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=30), rng.integers(0, 4, size=30).astype(float)  # b has ties
    assert stats._spearman(a, b) == pytest.approx(spearmanr(a, b).statistic)


def test_claims_from_frames(tiny, tmp_path):
    model, tx = tiny
    m = probe.measure(model, "tiny", tx, n_random=3, n_dormant=2, batch=6, progress=False)
    stats.with_dormant_share(m.per_text).to_csv(tmp_path / "lens_per_text.csv", index=False)
    m.exact.to_csv(tmp_path / "exact_ablation.csv", index=False)
    C = build(tmp_path, "smoke")
    t = C.table()
    assert (t.kind == "hypothesis").all() and set(t.claim_id) >= {"L2", "L3", "L4", "L5"}
    assert isinstance(C.checks(), pd.DataFrame)


@pytest.mark.parametrize(
    "args, says",
    [
        (["lenses", "no-such-model"], "unknown model"),
        (["lenses", "smollm2-135m", "--attn", "sdpa"], "must be 'eager'"),
        (["lenses", "smollm2-135m", "--texts", "poetry"], "unknown text type"),
    ],
)
def test_cli_bad_inputs_stop_with_one_line(args, says, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert says in err and len(err.splitlines()) == 1


def test_cli_hub_model_offline_is_one_line(capsys, monkeypatch):
    from headlab import models

    monkeypatch.setattr(models, "hub_reachable", lambda timeout=3.0: False)
    assert main(["lenses", "org/not-cached-model"]) == 2
    err = capsys.readouterr().err.strip()
    assert "hub" in err and len(err.splitlines()) == 1

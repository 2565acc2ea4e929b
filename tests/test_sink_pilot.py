"""The sink pilot (headlab.papers.attention_sinks.pilot) on a tiny synthetic big corpus: windows, held-out
windows, both first-position conventions, the log it writes, the trend fit and the figure's table."""

import json
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from headlab.data import ByteTokenizer
from headlab.papers.attention_sinks import pilot as PL
from headlab.paths import DATA_DIR

sys.path.insert(0, str(DATA_DIR))
import build_big_corpus as B  # noqa: E402


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus_big")
    rng = np.random.default_rng(0)
    words = "the sea ran far past old mills and quiet towns where bells rang at dawn".split()
    docs = [
        {
            "doc_id": f"prose/synthetic/d{i:03d}",
            "type": "prose",
            "source": "synthetic",
            "text": " ".join(rng.choice(words, 120)) + f" ({i})",
        }
        for i in range(300)
    ]
    train, val = B.split_docs(docs, per_mille=100)  # ~30 held-out documents
    B.write_corpus(root, train, val, None)
    return root


def test_byte_windows_put_bos_first_and_read_the_separator_as_eos():
    toks = np.array([65, 66, PL.SEPARATOR, 67, 68, 69, PL.SEPARATOR, 70], dtype=np.uint8)
    x, y = PL.byte_windows(toks, 4, 5, np.random.default_rng(0))
    assert x.shape == y.shape == (4, 5)
    assert (x[:, 0] == ByteTokenizer.bos_token_id).all()
    assert torch.equal(x[:, 1:], y[:, :-1])  # next-token targets
    assert PL.SEPARATOR not in y and (y == ByteTokenizer.eos_token_id).any()


def test_doc_start_windows_take_long_documents_only():
    toks = np.frombuffer(b"abc\xffabcdefg\xffxy\xffhijklmn\xff", dtype=np.uint8)
    off = np.array([0, 4, 12, 15, 23])
    w = PL.doc_start_windows(toks, off, 2, 5)
    assert bytes(w[0].tolist()) == b"abcde" and bytes(w[1].tolist()) == b"hijkl"
    with pytest.raises(ValueError, match="only 2 documents"):
        PL.doc_start_windows(toks, off, 3, 5)


def test_pilot_run_logs_both_conventions_and_replots(corpus, tmp_path):
    spec = PL.PilotSpec(
        model={"d_model": 32, "n_layers": 2, "n_heads": 2, "d_mlp": 64},
        ctx=32,
        batch=4,
        warmup=2,
        eval_every=3,
        n_eval=8,
    )
    log = PL.run(spec, 5.0, tmp_path, tmp_path / "ck", progress=False, max_steps=7, corpus=corpus)
    assert log.step.tolist() == [0, 3, 6, 7] and (log.tokens_seen == log.step * 4 * 32).all()
    assert len(list((tmp_path / "ck").glob("step*.pt"))) == 4
    meta = json.loads((tmp_path / "pilot_params.json").read_text())
    assert meta["steps"] == 7 and meta["chance_mean_score_incl"] == pytest.approx(sum(1 / i for i in range(1, 33)) / 32)
    # the two conventions are tied exactly: excluded = (T * included - 1) / (T - 1)
    np.testing.assert_allclose(log.mean_score_excl, (32 * log.mean_score_incl - 1) / 31, rtol=1e-4)
    assert log.mean_score_incl.iloc[0] == pytest.approx(
        meta["chance_mean_score_incl"], abs=0.02
    )  # near uniform at init
    assert np.isfinite(log.val_loss).all() and log.val_loss.iloc[-1] < log.val_loss.iloc[0]
    w = PL.score_final(tmp_path, tmp_path / "ck", corpus=corpus)
    assert len(w) == 8 and (w.step == 7).all()
    assert w.mean_score_incl.mean() == pytest.approx(log.mean_score_incl.iloc[-1], rel=1e-4)  # the last evaluation
    assert w["sink_0.3_incl"].mean() == pytest.approx(log["sink_0.3_incl"].iloc[-1], abs=1e-3)
    png = PL.replot(tmp_path)
    assert png.exists() and png.stat().st_size > 10_000
    t = pd.read_csv(tmp_path / "pilot.csv")
    assert set(t.panel) == {"sink rate at ε = 0.3 (%)", "mean first-position score", "loss (nats/byte)"}
    assert (t[t.series.str.startswith("criterion")].value == 20.0).all()


def test_trend_projects_only_a_rising_rate():
    tokens = np.array([0, 1e5, 1e6, 1e7, 1e8])
    rising = pd.DataFrame(
        {
            "tokens_seen": tokens,
            "seconds": tokens / 1e4,  # 10k tokens/s
            "mean_score_incl": [0.02, 0.02, 0.03, 0.04, 0.05],
            "sink_0.3_incl": [0, 0, 5.0, 10.0, 15.0],
        }
    )
    t = PL.trend(rising, "incl", frac=1.0)
    assert t["slope_per_decade"] == pytest.approx(5.0) and t["score_slope_per_decade"] == pytest.approx(0.01)
    assert not t["formed"] and t["projected_tokens"] == pytest.approx(1e9)  # 20 % one decade after 15 %
    assert t["tokens_per_s"] == pytest.approx(1e4) and t["projected_hours"] == pytest.approx(1e5 / 3600)
    flat = rising.assign(**{"sink_0.3_incl": [0, 5.0, 5.0, 5.0, 4.0]})
    assert np.isnan(PL.trend(flat, "incl", frac=0.6)["projected_tokens"])

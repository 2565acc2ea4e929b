"""headlab.nn and headlab.train on tiny configs."""

import math

import numpy as np
import pytest
import torch

from headlab import data
from headlab.nn import Config, HeadlabLM, LayerHeads
from headlab.train import TrainConfig, lr_at, train


def _model(**kw):
    torch.manual_seed(0)
    base = dict(vocab_size=50, d_model=32, n_layers=2, n_heads=4, max_seq_len=32)
    return HeadlabLM(Config(**{**base, **kw})).eval()


IDS = torch.randint(0, 50, (3, 16), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize(
    "kw", [{}, {"n_kv_heads": 2}, {"n_kv_heads": 1}, {"pos_emb": "learned"}, {"attn_only": True, "pos_emb": "none"}]
)
def test_sdpa_and_eager_paths_agree(kw):
    m = _model(**kw)
    with torch.no_grad():
        a = m(IDS).logits
        b = m.set_attn_implementation("eager")(IDS).logits
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_gqa_equals_mha_with_copied_kv_heads():
    """A GQA model equals the MHA model whose K/V heads are its KV heads repeated per group."""
    gqa = _model(n_kv_heads=2)
    mha = _model()
    sd = gqa.state_dict()
    for l in range(2):
        for name in ("k_proj", "v_proj"):
            w = sd[f"layers.{l}.self_attn.{name}.weight"].view(2, 8, 32)  # [kv_head, d_head, d_model]
            sd[f"layers.{l}.self_attn.{name}.weight"] = w.repeat_interleave(2, 0).reshape(32, 32)
    mha.load_state_dict(sd)
    with torch.no_grad():
        torch.testing.assert_close(mha(IDS).logits, gqa(IDS).logits, atol=1e-5, rtol=0)


def test_dha_maps_reduce_to_gqa():
    gqa = _model(n_kv_heads=2)
    lh = [LayerHeads([0, 0, 1, 1], [0, 0, 1, 1])] * 2
    dha = _model(layer_heads=lh)
    dha.load_state_dict(gqa.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(dha(IDS).logits, gqa(IDS).logits, atol=0, rtol=0)


def test_causality():
    m = _model()
    ids2 = IDS.clone()
    ids2[:, 10:] = (ids2[:, 10:] + 1) % 50
    with torch.no_grad():
        torch.testing.assert_close(m(IDS).logits[:, :10], m(ids2).logits[:, :10], atol=1e-6, rtol=0)


def test_intra_document_mask_isolates_documents():
    m = _model()
    doc = torch.tensor([[0] * 8 + [1] * 8] * 3)
    ids2 = IDS.clone()
    ids2[:, :8] = (ids2[:, :8] + 7) % 50  # change document 0 only
    with torch.no_grad():
        a = m(IDS, doc_ids=doc).logits
        b = m(ids2, doc_ids=doc).logits
        c = m.set_attn_implementation("eager")(IDS, doc_ids=doc).logits
    # rope is relative, and document 1 cannot see document 0: its logits equal a fresh run on it alone
    torch.testing.assert_close(a[:, 8:], b[:, 8:], atol=1e-5, rtol=0)
    torch.testing.assert_close(a, c, atol=1e-5, rtol=0)


def test_save_load_roundtrip(tmp_path):
    m = _model(n_kv_heads=2, layer_heads=None)
    m.save(tmp_path / "ck")
    m2 = HeadlabLM.load(tmp_path / "ck")
    with torch.no_grad():
        torch.testing.assert_close(m(IDS).logits, m2(IDS).logits, atol=0, rtol=0)


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="multiple"):
        Config(n_heads=4, n_kv_heads=3)
    with pytest.raises(ValueError, match="attn_impl"):
        Config(attn_impl="flash")
    with pytest.raises(ValueError, match="max_seq_len"):
        _model()(torch.zeros(1, 40, dtype=torch.long))


def test_lr_schedule_shape():
    tc = TrainConfig(steps=100, lr=1.0, warmup=10, min_lr_ratio=0.1)
    assert lr_at(0, tc) == pytest.approx(0.1) and lr_at(9, tc) == pytest.approx(1.0)
    assert lr_at(10, tc) == pytest.approx(1.0) and lr_at(100, tc) == pytest.approx(0.1)
    assert lr_at(55, tc) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))


@pytest.mark.slow
def test_training_learns_a_copy_task_and_is_deterministic():
    """Repeat-the-first-half sequences: a 2-layer model must beat the unigram loss quickly."""

    def batch(step):
        g = torch.Generator().manual_seed(step)
        half = torch.randint(2, 12, (16, 8), generator=g)
        x = torch.cat([half, half], 1)
        return x[:, :-1], x[:, 1:]

    logs = []
    for _ in range(2):
        m = _model(vocab_size=12, d_model=32, n_layers=2, n_heads=2)
        tc = TrainConfig(steps=150, lr=1e-2, warmup=10, eval_every=50, seed=0)

        def ev(model):
            x, y = batch(10_000)
            logits = model(x).logits[:, 8:]  # second half is predictable
            return {"copy_loss": torch.nn.functional.cross_entropy(logits.flatten(0, 1), y[:, 8:].flatten()).item()}

        logs.append(train(m, batch, tc, eval_fn=ev, progress=False))
    assert logs[0][-1]["copy_loss"] < 0.5 * math.log(10), logs[0][-1]
    assert [r["copy_loss"] for r in logs[0]] == [r["copy_loss"] for r in logs[1]]


def test_byte_batches_are_reproducible():
    toks = np.arange(1000) % 258
    b = data.Batches(toks, batch=4, seq=16, seed=3)
    x1, y1 = b(5)
    x2, y2 = b(5)
    assert torch.equal(x1, x2) and torch.equal(y1[:, :-1], x1[:, 1:])

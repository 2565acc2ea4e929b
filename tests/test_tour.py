"""headlab.papers.tour: the tour notebook's section functions on a tiny random llama with the byte tokenizer
(no weights, no corpus model), and its tiny-LM training for a few steps."""

import numpy as np
import pandas as pd
import pytest
import torch
import transformers as tf

from headlab import heads
from headlab.data import ByteTokenizer
from headlab.papers import tour as T

TEXTS = ["the cat sat on the mat", "a b c d e f g h", "hello hello hello"]


@pytest.fixture(scope="module")
def loaded():
    torch.manual_seed(0)
    cfg = tf.LlamaConfig(
        vocab_size=258,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        attn_implementation="eager",
    )
    return {"tiny-llama": (tf.LlamaForCausalLM(cfg).eval(), ByteTokenizer())}


def test_batch_ids_cuts_to_the_shortest_text_and_prepends_bos():
    tok = ByteTokenizer()
    ids = T.batch_ids(tok, TEXTS, bos=True, max_tokens=10)
    assert ids.shape == (3, 10) and (ids[:, 0] == tok.bos_token_id).all()
    assert ids[0, 1:].tolist() == list(b"the cat s")
    ids = T.batch_ids(tok, TEXTS, bos=False, max_tokens=100)
    assert ids.shape == (3, min(map(len, TEXTS)))  # the shortest text, no padding
    assert ids[2].tolist() == list(TEXTS[2].encode())[: ids.shape[1]]


def test_first_token_attention_and_head_norms_match_a_direct_capture(loaded):
    ft = T.first_token_attention_table(loaded, TEXTS, max_tokens=12)
    assert len(ft) == 2 * 3 and set(ft.bos) == {True, False}
    assert ft.depth.tolist()[:3] == [0.0, 0.5, 1.0]
    assert ((ft.first_token_attention > 0) & (ft.first_token_attention < 1)).all()
    model, tok = loaded["tiny-llama"]
    ids = T.batch_ids(tok, TEXTS, bos=False, max_tokens=12)
    with torch.no_grad(), heads.capture(model, z=True, pattern=True) as cache:
        model.model(input_ids=ids)
    want = cache.pattern[1][:, :, 1:, 0].mean().item()  # [batch, head, q, k]: queries after 0 on key 0
    got = ft[(~ft.bos) & (ft.layer == 1)].first_token_attention.item()
    assert got == pytest.approx(want, rel=1e-6)
    hn = T.head_norm_table(loaded, TEXTS, max_tokens=12)  # ByteTokenizer adds no <bos> by default: bos=False
    assert len(hn) == 3 * 4 and list(hn.columns) == ["model", "layer", "head", "mean_z_norm"]
    z = cache.z[2][:, :, 3]  # [batch, pos, d_head] of layer 2, head 3
    assert hn[(hn.layer == 2) & (hn["head"] == 3)].mean_z_norm.item() == pytest.approx(z.norm(dim=-1).mean().item())


def test_published_numbers_rounds_and_reads_the_right_rows(loaded):
    zl = pd.DataFrame({"head": ["none", "0", "1"], "delta_loss": [0.0, 0.01234, -0.5]})
    log = pd.DataFrame({"step": [0, 10], "val_loss": [5.581, 2.6449]})
    s = T.published_numbers(loaded, TEXTS, "prose", 12, zl, log, zero_layer=7)
    assert s.quantity.tolist() == [
        "tiny-llama perplexity on 3 prose paragraphs",
        "largest Δloss from zeroing one head of layer 7",
        "tiny LM validation loss: start -> end",
    ]
    assert s.value[1] == 0.012 and s.value[2] == "5.58 -> 2.64"
    assert s.value[0] > 1 and s.value[0] == round(s.value[0], 1)


def test_train_tiny_logs_validation_loss_and_the_model_shape(monkeypatch):
    from headlab import data

    text = np.frombuffer(b"the cat sat on the mat. " * 400, dtype=np.uint8).astype(np.int64)
    monkeypatch.setattr(data, "corpus_tokens", lambda: (text, np.zeros_like(text)))  # a small corpus: fast
    lm, log = T.train_tiny(seq=16, batch=2, steps=2, seed=0)
    assert log.step.iloc[0] == 0 and log.step.iloc[-1] == 2 and np.isfinite(log.val_loss).all()
    assert log.val_loss.iloc[0] == pytest.approx(np.log(258), abs=0.3)  # a fresh model: about uniform over bytes
    assert log.n_params.iloc[0] == lm.num_params() and (log.n_heads == 4).all() and (log.n_kv_heads == 2).all()
    h = heads.Heads(lm)
    assert (h.n_layers, h.n_heads, h.n_kv_heads) == (4, 4, 2)  # GQA

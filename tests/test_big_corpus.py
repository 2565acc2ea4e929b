"""data/build_big_corpus.py on tiny synthetic documents (dedup, split, writers, manifest, markup converters)
and headlab.data.big_corpus; plus a check of the built corpus against its manifest where one exists."""

import gzip
import json
import random
import sys

import numpy as np
import pytest

from headlab import data
from headlab.paths import DATA_DIR

sys.path.insert(0, str(DATA_DIR))
import build_big_corpus as B  # noqa: E402
import build_corpus as bc  # noqa: E402


def _prose(seed: int, n_words: int = 400) -> str:
    rng = random.Random(seed)
    words = "the of and a to in is was that for it with as his on be at by had not are but from or have an they".split()
    words += [f"w{rng.randrange(5000)}" for _ in range(200)]
    lines = [" ".join(rng.choice(words) for _ in range(12)) for _ in range(n_words // 12)]
    return "\n".join(lines)


def _doc(i: int, text: str, type_: str = "prose", source: str = "synthetic") -> dict:
    return {"doc_id": f"{type_}/{source}/d{i:04d}", "type": type_, "source": source, "text": text}


def test_dedup_drops_exact_folded_and_near_duplicates_keeping_the_first():
    base = _prose(1)
    words = base.split(" ")
    near = " ".join(w if k % 150 else "CHANGED" for k, w in enumerate(words))  # every 150th word changed
    half = "\n".join(base.split("\n")[: len(base.split("\n")) // 2]) + "\n" + _prose(9)[: len(base) // 2]
    docs = [
        _doc(0, base),
        _doc(1, base),  # exact
        _doc(2, "  " + base.upper().replace("\n", "\n\n")),  # same after case and whitespace folding
        _doc(3, near),  # near duplicate
        _doc(4, _prose(2)),  # different
        _doc(5, half),  # shares half its text: kept
    ]
    kept, report = B.dedup(docs)
    assert [d["doc_id"] for d in kept] == ["prose/synthetic/d0000", "prose/synthetic/d0004", "prose/synthetic/d0005"]
    assert (report["exact"], report["folded"], report["near"]) == (1, 1, 1)
    assert report["examples"]["near"] == [("prose/synthetic/d0003", "prose/synthetic/d0000")]
    assert report["by_source"] == {"synthetic": {"exact": 1, "folded": 1, "near": 1}}
    assert B.dedup(docs)[0] == kept  # deterministic


def test_shingle_sample_estimates_jaccard():
    a, b = _prose(3, 3000), _prose(4, 3000)
    sa, sb = B.shingles(a), B.shingles(b)
    assert len(sa) > 50 and np.all(np.diff(sa.astype(np.float64)) > 0)  # sorted, unique
    assert np.mean(B.minhash(sa) == B.minhash(sa)) == 1.0
    assert np.mean(B.minhash(sa) == B.minhash(sb)) < 0.3
    assert len(B.shingles("short")) == 0


def test_split_is_by_document_disjoint_deterministic_and_covers_every_type():
    docs = [_doc(i, f"text {i}", "prose") for i in range(1500)]
    docs += [_doc(i, f"code {i}", "code", "lib") for i in range(3)]  # too few for the hash alone
    docs += [_doc(0, "only one", "single", "one")]
    train, val = B.split_docs(docs)
    ids_t, ids_v = {d["doc_id"] for d in train}, {d["doc_id"] for d in val}
    assert not ids_t & ids_v and len(ids_t | ids_v) == len(docs)
    assert {d["type"] for d in val} == {"prose", "code"}  # a one-document type stays in train
    assert {d["type"] for d in train} == {"prose", "code", "single"}
    assert 5 <= sum(d["type"] == "prose" for d in val) <= 30  # ~1 %
    shuffled = docs[:]
    random.Random(0).shuffle(shuffled)
    assert {d["doc_id"] for d in B.split_docs(shuffled)[1]} == ids_v  # membership depends on the doc_id only
    assert [d["doc_id"] for d in train] == [d["doc_id"] for d in docs if d["doc_id"] in ids_t]  # order kept


def test_write_tokens_offsets_and_separators(tmp_path):
    seqs = [np.array([1, 2, 3]), np.array([], dtype=int), np.array([7])]
    off = B.write_tokens(tmp_path / "t.u16", seqs, 0, np.uint16)
    tok = np.fromfile(tmp_path / "t.u16", dtype=np.uint16)
    assert off.tolist() == [0, 4, 5, 7] and tok.tolist() == [1, 2, 3, 0, 0, 7, 0]
    for i, s in enumerate(seqs):
        assert tok[off[i] : off[i + 1] - 1].tolist() == list(s)


class _FakeTokenizer:
    """Stands in for the SmolLM2 backend: one id per character (mod 1000)."""

    class _Enc:
        def __init__(self, text):
            self.ids = [ord(c) % 1000 + 1 for c in text]

    def encode_batch_fast(self, texts, add_special_tokens=False):
        return [self._Enc(t) for t in texts]


def _tiny_corpus(tmp_path, tokenizer=None):
    docs = [_doc(i, f"Document {i}: naïve café text.\n" * (i + 1), ["prose", "code"][i % 2]) for i in range(40)]
    train, val = B.split_docs(docs)
    return B.write_corpus(tmp_path, train, val, tokenizer), train, val


def test_write_corpus_files_manifest_and_loader(tmp_path):
    manifest, train, val = _tiny_corpus(tmp_path, (_FakeTokenizer(), 0))
    assert B.verify_manifest(tmp_path) == []
    assert not list(tmp_path.glob(".build-*"))  # the temporary folder is gone
    for name in ("train", "val"):
        assert f"{name}.smollm2.u16" in manifest["files"] and f"{name}.bytes.u8" in manifest["files"]
    split = manifest["splits"]["train"]
    assert split["docs"] == len(train) and split["chars"] == sum(len(d["text"]) for d in train)
    assert split["smollm2_tokens"] == split["chars"]  # one fake id per character
    assert manifest["by_type"]["code"]["val"]["docs"] >= 1 and manifest["by_type"]["prose"]["val"]["docs"] >= 1
    with gzip.open(tmp_path / "train.jsonl.gz", "rt", encoding="utf-8") as fh:
        assert [json.loads(line) for line in fh] == train

    tokens, offsets = data.big_corpus("train", "bytes", path=tmp_path, verify=True)
    assert tokens.dtype == np.uint8 and len(offsets) == len(train) + 1
    for i, d in enumerate(train):
        assert bytes(tokens[offsets[i] : offsets[i + 1] - 1]).decode("utf-8") == d["text"]
        assert tokens[offsets[i + 1] - 1] == B.SEP_BYTE
    types = np.load(tmp_path / "train.doctypes.npy")
    assert [manifest["types"][c] for c in types] == [d["type"] for d in train]
    ids, ioff = data.big_corpus("val", "smollm2", path=tmp_path, verify=True)
    assert ids.dtype == np.uint16 and ids[ioff[1] - 1] == 0

    # a changed byte fails verification; a rebuild without the tokenizer removes the SmolLM2 files
    raw = bytearray((tmp_path / "val.bytes.u8").read_bytes())
    raw[0] ^= 1
    (tmp_path / "val.bytes.u8").write_bytes(bytes(raw))
    assert B.verify_manifest(tmp_path) == ["val.bytes.u8"]
    with pytest.raises(data.DataError, match="differs"):
        data.big_corpus("val", path=tmp_path, verify=True)
    _tiny_corpus(tmp_path, None)
    assert not (tmp_path / "train.smollm2.u16").exists() and B.verify_manifest(tmp_path) == []
    with pytest.raises(data.DataError, match="make models"):
        data.big_corpus("train", "smollm2", path=tmp_path)


def test_outputs_are_byte_identical_across_builds(tmp_path):
    a, _, _ = _tiny_corpus(tmp_path / "a", (_FakeTokenizer(), 0))
    b, _, _ = _tiny_corpus(tmp_path / "b", (_FakeTokenizer(), 0))
    assert a["files"] == b["files"]


def test_loader_explains_a_missing_corpus(tmp_path):
    with pytest.raises(data.DataError, match="make corpus-big"):
        data.big_corpus(path=tmp_path)
    with pytest.raises(ValueError):
        data.big_corpus("test", path=tmp_path)


def test_whole_units_restores_build_corpus():
    cap, pack = bc.cap, bc.pack
    with B.whole_units():
        assert bc.cap("x" * 10_000) == "x" * 10_000
        assert bc.pack(["a", " ", "b"]) == ["a\n\nb"]
    assert (bc.cap, bc.pack, bc.MIN_CHARS) == (cap, pack, 400)


def test_markup_converters():
    rst = (
        "Title\n=====\n\n.. note::\n\n   See :func:`os.path.join` and ``x``.\n\n.. toctree::\n   :maxdepth: 2\n\n"
        "   intro\n\nExample::\n\n    code  here\n\n.. _label:\n\nText with `a link <http://x>`_ and *emph*.\n"
    )
    text = B.clean_text(B.rst_to_text(rst))
    assert (
        text == "Title\n\nNote:\n\nSee os.path.join and x.\n\nExample:\n\n    code  here\n\nText with a link and emph."
    )
    man = ".TH FOO 1\n.SH NAME\nfoo \\- do things\n.SH DESCRIPTION\n.B foo\nreads\n.IR file (5)\nand\n\\fBwrites\\fR.\n"
    assert (
        B.clean_text(B.man_to_text(man))
        == "FOO(1)\n\nNAME\n\nfoo - do things\n\nDESCRIPTION\n\nfoo reads file(5) and writes."
    )
    assert B.man_to_text(".so man3/other.3\n") == ""
    pod = "=head1 NAME\n\nperlfoo - B<bold> C<< $a <=> $b >> L<perlfunc/open>\n\n    verbatim C<kept>\n\n=cut\n\nsub x {}\n"
    assert B.pod_to_text(pod) == "NAME\n\nperlfoo - bold $a <=> $b perlfunc open\n\n    verbatim C<kept>"
    page = '<html><head><title>t</title></head><body><div class="navheader">Prev</div><h1>Head</h1>' + (
        "<p>One  <b>two</b>\nthree.</p><pre>  a\n    b</pre><ul><li>x</li><li>y</li></ul></body></html>"
    )
    assert B.clean_text(B.html_to_text(page, {"navheader"})) == "Head\n\nOne two three.\n\n  a\n    b\n\n- x\n- y"


_BUILT = B.DEFAULT_OUT / "manifest.json"


@pytest.mark.skipif(not _BUILT.exists(), reason="the big corpus is not built (make corpus-big)")
def test_built_corpus_matches_its_manifest():
    out = _BUILT.parent
    assert B.verify_manifest(out) == []
    manifest = json.loads(_BUILT.read_text())
    for split in ("train", "val"):
        tokens, offsets = data.big_corpus(split, "bytes")
        assert len(offsets) == manifest["splits"][split]["docs"] + 1
        assert np.all(tokens[offsets[1:] - 1] == B.SEP_BYTE)
        assert set(np.load(out / f"{split}.doctypes.npy")) == set(range(len(manifest["types"])))  # every type
        if manifest["smollm2"]["written"]:
            ids, ioff = data.big_corpus(split, "smollm2")
            assert len(ioff) == len(offsets) and np.all(ids[ioff[1:] - 1] == manifest["smollm2"]["separator_id"])

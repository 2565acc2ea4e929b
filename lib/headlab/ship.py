"""Carry an offline model's GGUF, or the big corpus's byte files, to a machine that takes only small transfers.

The lent GPU machine receives at most 64 MiB per call (working tree included) and has no model
packages, so SmolLM2's 98 MB GGUF goes over in parts, one or two per call, and is put back together
there (the machine keeps ignored files between calls while it stays warm):

    python -m headlab ship pack smollm2-135m   # here: .ship/smollm2-135m.json + .ship/smollm2-135m.000 ...
    python -m headlab ship unpack              # there, once every part has arrived: .cache/gguf/<file>
    python -m headlab cache                    # there: dequantise into .cache/models (needs the gguf package)

The big pretraining corpus (``make corpus-big``, issue 23) goes the same way: ``ship pack corpus-big`` puts its byte
files, document offsets and manifest in one gzipped tar (57 MB, three parts); ``ship unpack`` there extracts it into
``.cache/corpus_big/`` and checks every file against the corpus manifest's sha256.

Every part and the whole file are sha256-checked; a missing or damaged part is named in the error.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from .paths import CACHE_DIR, REPO_ROOT

SHIP_DIR = REPO_ROOT / ".ship"  # git-ignored
MiB = 1 << 20


class ShipError(RuntimeError):
    pass


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(MiB), b""):
            h.update(block)
    return h.hexdigest()


CORPUS = "corpus-big"  # the name that ships the big corpus's byte files instead of a model
CORPUS_FILES = ("manifest.json", "train.bytes.u8", "train.bytes.docs.npy", "val.bytes.u8", "val.bytes.docs.npy")


def corpus_tarball(ship_dir: Path = SHIP_DIR, root: Path | None = None) -> Path:
    """``ship_dir/corpus-big.tar.gz``: the big corpus's byte files and manifest (what ``data.big_corpus(kind="bytes")``
    reads); a missing corpus is a one-line error."""
    import tarfile

    from .data import BIG_CORPUS_DIR, DataError

    root = Path(root or BIG_CORPUS_DIR)
    missing = [f for f in CORPUS_FILES if not (root / f).exists()]
    if missing:
        raise DataError(f"no big corpus to ship in {root} (missing {', '.join(missing)}): run `make corpus-big`")
    ship_dir.mkdir(parents=True, exist_ok=True)
    out = ship_dir / f"{CORPUS}.tar.gz"
    tmp = out.with_name(out.name + ".tmp")
    with tarfile.open(tmp, "w:gz", compresslevel=6) as tar:
        for f in CORPUS_FILES:
            tar.add(root / f, arcname=f)
    os.replace(tmp, out)
    return out


def pack(name: str, src: Path | None = None, max_bytes: int = 32 * MiB, ship_dir: Path = SHIP_DIR) -> Path:
    """Split ``src`` (default: the offline model's GGUF; for ``name="corpus-big"`` the corpus tarball) into parts of
    at most ``max_bytes``; returns the manifest's path."""
    if src is None and name == CORPUS:
        src = corpus_tarball(ship_dir)
    if src is None:
        from .models import gguf_path

        src = gguf_path(name)
    src = Path(src)
    ship_dir.mkdir(parents=True, exist_ok=True)
    parts = []
    with open(src, "rb") as f:
        for i, block in enumerate(iter(lambda: f.read(max_bytes), b"")):
            part = ship_dir / f"{name}.{i:03d}"
            tmp = part.with_name(part.name + ".tmp")
            tmp.write_bytes(block)
            os.replace(tmp, part)
            parts.append({"file": part.name, "bytes": len(block), "sha256": hashlib.sha256(block).hexdigest()})
    manifest = ship_dir / f"{name}.json"
    manifest.write_text(
        json.dumps(
            {"name": name, "file": src.name, "bytes": src.stat().st_size, "sha256": _sha256(src), "parts": parts},
            indent=1,
        )
        + "\n"
    )
    return manifest


def _extract_corpus(tarball: Path, root: Path | None = None) -> Path:
    """Extract the corpus tarball into ``root`` (default ``.cache/corpus_big``) and check the files' sha256."""
    import tarfile

    from .data import BIG_CORPUS_DIR, big_corpus

    root = Path(root or BIG_CORPUS_DIR)
    root.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tarball, "r:gz") as tar:
        names = tar.getnames()
        if sorted(names) != sorted(CORPUS_FILES):
            raise ShipError(f"{tarball} holds {names}, not the corpus's {list(CORPUS_FILES)}")
        tar.extractall(root, filter="data")
    for split in ("train", "val"):
        big_corpus(split, "bytes", path=root, verify=True)  # sha256 against the corpus manifest
    return root


def unpack(
    ship_dir: Path = SHIP_DIR, dest_dir: Path = CACHE_DIR / "gguf", corpus_dir: Path | None = None
) -> list[Path]:
    """Reassemble every manifest's file in ``dest_dir`` (checked part by part, then whole); the big corpus's tarball is
    extracted into ``corpus_dir`` (default ``.cache/corpus_big``) and checked against its own manifest."""
    manifests = sorted(Path(ship_dir).glob("*.json"))
    if not manifests:
        raise ShipError(
            f"no manifest in {ship_dir}: run `python -m headlab ship pack NAME` where the model is, "
            "and carry the .json with the first part"
        )
    out = []
    for mf in manifests:
        m = json.loads(mf.read_text())
        dest = Path(dest_dir) / m["file"]
        if m["name"] == CORPUS:
            dest = Path(ship_dir) / m["file"]  # reassembled beside its parts, then extracted
        if dest.exists() and dest.stat().st_size == m["bytes"] and _sha256(dest) == m["sha256"]:
            out.append(_extract_corpus(dest, corpus_dir) if m["name"] == CORPUS else dest)
            continue
        missing = [p["file"] for p in m["parts"] if not (mf.parent / p["file"]).exists()]
        if missing:
            raise ShipError(
                f"{m['name']}: {len(missing)} of {len(m['parts'])} parts have not arrived: {', '.join(missing)}"
            )
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".tmp")
        h = hashlib.sha256()
        with open(tmp, "wb") as f:
            for p in m["parts"]:
                block = (mf.parent / p["file"]).read_bytes()
                if len(block) != p["bytes"] or hashlib.sha256(block).hexdigest() != p["sha256"]:
                    tmp.unlink()
                    raise ShipError(f"{m['name']}: part {p['file']} is damaged (size or sha256 differs); send it again")
                f.write(block)
                h.update(block)
        if h.hexdigest() != m["sha256"]:
            tmp.unlink()
            raise ShipError(f"{m['name']}: the reassembled file's sha256 differs from the manifest's")
        os.replace(tmp, dest)
        out.append(_extract_corpus(dest, corpus_dir) if m["name"] == CORPUS else dest)
    return out


CALL_LIMIT = 64 * MiB  # what one device call may send: the working tree (tracked + untracked, not ignored) + carry
PLAN = REPO_ROOT / ".ci" / "device" / "plan.txt"
LEASE_MINUTES = 15  # device time a lent session has in all


def tree_bytes(root: Path = REPO_ROOT) -> int:
    """Bytes of the working tree a device call sends: tracked files and untracked ones git does not ignore."""
    import subprocess

    names = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    return sum((root / os.fsdecode(n)).stat().st_size for n in set(names) if n and (root / os.fsdecode(n)).is_file())


def carry_bytes(paths: list[str], root: Path = REPO_ROOT) -> int:
    """Bytes of the carried paths (files, or folders counted whole); a missing one is a one-line error."""
    total = 0
    for p in paths:
        f = root / p
        if not f.exists():
            raise ShipError(f"carry path {p} does not exist here: build it first (make device-bundle)")
        total += f.stat().st_size if f.is_file() else sum(x.stat().st_size for x in f.rglob("*") if x.is_file())
    return total


def read_plan(path: Path = PLAN) -> list[dict]:
    """The calls of a plan file: ``carry | command | minutes`` per line (``#`` comments; ``-`` carries nothing)."""
    calls = []
    for i, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = [x.strip() for x in line.split("|")]
        if len(parts) != 3:
            raise ShipError(f"{path}:{i}: want 'carry | command | minutes', got {line!r}")
        carry, command, minutes = parts
        calls.append({"carry": [] if carry == "-" else carry.split(), "command": command, "minutes": float(minutes)})
    return calls


def check_plan(calls: list[dict], root: Path = REPO_ROOT, tree: int | None = None) -> list[dict]:
    """Each call with its ``tree``, ``carry`` and ``total`` bytes and ``fits`` (total <= 64 MiB)."""
    tree = tree_bytes(root) if tree is None else tree
    out = []
    for c in calls:
        b = carry_bytes(c["carry"], root)
        out.append({**c, "tree": tree, "carried": b, "total": tree + b, "fits": tree + b <= CALL_LIMIT})
    return out

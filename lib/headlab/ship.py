"""Carry an offline model's GGUF, or the big corpus's byte files, to a machine that takes only small transfers.

The lent GPU machine receives at most 64 MiB per call (working tree included) and has no model
packages, so SmolLM2's 98 MB GGUF goes over in parts, one or two per call, and is put back together
there (the machine keeps ignored files between calls while it stays warm):

    python -m headlab ship pack smollm2-135m   # here: .ship/smollm2-135m.json + .ship/smollm2-135m.000 ...
    python -m headlab ship unpack              # there, once every part has arrived: .cache/gguf/<file>
    python -m headlab cache                    # there: dequantise into .cache/models (needs the gguf package)

The big pretraining corpus (``make corpus-big``, issue 23) goes the same way: ``ship pack corpus-big`` puts its byte
files, document offsets and manifest in one gzipped tar (57 MB, two 29 MiB parts); ``ship unpack`` there extracts it into
``.cache/corpus_big/`` and checks every file against the corpus manifest's sha256.

Every part and the whole file are sha256-checked; a missing or damaged part is named in the error.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
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
    for old in ship_dir.glob(f"{name}.[0-9][0-9][0-9]"):  # an earlier packing's parts (another part size)
        old.unlink()
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
LEASE_MINUTES = 15  # device time a lent session has in all, the machine's start (START_MINUTES) included
START_MINUTES = 1.5  # a fresh machine's start, counted against the lease
MAX_CARRY, MAX_COMMAND = 8, 2000  # the device tool's limits on one call's carried paths and command
PART_MIB = 29  # ship pack's part size: the plan's three calls keep >= 4 MiB spare (28 left call 2 only 2.2)
WHEELS_BYTES = 6_874_207  # .whl/ from .ci/device/wheels.txt (2026-12-05), for checking the plan where it is not built


def tree_bytes(root: Path = REPO_ROOT) -> int:
    """Bytes of the working tree a device call sends: tracked files and untracked ones git does not ignore (a link
    counted as what it points to: an over-count, the safe side)."""
    import subprocess

    names = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    return sum((root / os.fsdecode(n)).stat().st_size for n in set(names) if n and (root / os.fsdecode(n)).is_file())


def carry_bytes(paths: list[str], root: Path = REPO_ROOT, nominal: dict | None = None) -> int:
    """Bytes of the carried paths (files, or folders counted whole); a path not built here counts its ``nominal``
    size where one is given, else is a one-line error."""
    total = 0
    for p in paths:
        f = root / p
        if not f.exists():
            if nominal and p in nominal:
                total += nominal[p]
                continue
            raise ShipError(f"carry path {p} does not exist here: build it first (make device-bundle)")
        total += f.stat().st_size if f.is_file() else sum(x.stat().st_size for x in f.rglob("*") if x.is_file())
    return total


def nominal_sizes(gguf_bytes: int, name: str = "smollm2-135m", part_mib: int = PART_MIB) -> dict[str, int]:
    """What ``make device-bundle`` builds, by size: ``.whl`` and ``.ship/<name>.NNN`` parts of ``gguf_bytes``."""
    n = -(-gguf_bytes // (part_mib * MiB))
    parts = {f".ship/{name}.{i:03d}": min(part_mib * MiB, gguf_bytes - i * part_mib * MiB) for i in range(n)}
    return {".whl": WHEELS_BYTES, f".ship/{name}.json": 1024, **parts}


def read_plan(path: Path = PLAN) -> list[dict]:
    """The calls of a plan file: ``carry | command | minutes`` per line (``#`` comments; ``-`` carries nothing; the
    command may hold ``|``). ``minutes``: what the call may hold the machine, the command's own ``LIMIT=`` (seconds,
    read by run.sh) plus its set-up and transfers."""
    calls = []
    for i, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        carry, sep, rest = line.partition("|")
        command, sep2, minutes = rest.rpartition("|")
        if not sep or not sep2 or not command.strip():
            raise ShipError(f"{path}:{i}: want 'carry | command | minutes', got {line!r}")
        try:
            minutes = float(minutes)
        except ValueError:
            raise ShipError(f"{path}:{i}: minutes must be a number, got {minutes.strip()!r}") from None
        carry, command = carry.strip(), command.strip()
        paths = [] if carry == "-" else carry.split()
        if len(paths) > MAX_CARRY or len(command) > MAX_COMMAND:
            raise ShipError(
                f"{path}:{i}: a call carries at most {MAX_CARRY} paths and a {MAX_COMMAND}-character command"
            )
        limit = re.search(r"\bLIMIT=(\d+)\b", command)
        calls.append(
            {"carry": paths, "command": command, "minutes": minutes, "limit_s": int(limit[1]) if limit else None}
        )
    return calls


def check_plan(
    calls: list[dict], root: Path = REPO_ROOT, tree: int | None = None, nominal: dict | None = None
) -> list[dict]:
    """Each call with its ``tree``, ``carried`` and ``total`` bytes, ``fits`` (total <= 64 MiB) and ``capped`` (a
    run.sh command has a ``LIMIT=`` within its minutes, so a slow run stops in time for the calls after it)."""
    tree = tree_bytes(root) if tree is None else tree
    out = []
    for c in calls:
        b = carry_bytes(c["carry"], root, nominal)
        runs = "run.sh" in c["command"]
        capped = not runs or (c.get("limit_s") is not None and c["limit_s"] / 60 <= c["minutes"])
        out.append(
            {**c, "tree": tree, "carried": b, "total": tree + b, "fits": tree + b <= CALL_LIMIT, "capped": capped}
        )
    return out


def plan_minutes(rows: list[dict]) -> float:
    """The lease a plan holds at most: the machine's start plus every call's minutes."""
    return START_MINUTES + sum(r["minutes"] for r in rows)

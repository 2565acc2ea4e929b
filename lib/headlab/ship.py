"""Carry an offline model's GGUF to a machine that takes only small transfers.

The lent GPU machine receives at most 64 MiB per call (working tree included) and has no model
packages, so SmolLM2's 98 MB GGUF goes over in parts, one or two per call, and is put back together
there (the machine keeps ignored files between calls while it stays warm):

    python -m headlab ship pack smollm2-135m   # here: .ship/smollm2-135m.json + .ship/smollm2-135m.000 ...
    python -m headlab ship unpack              # there, once every part has arrived: .cache/gguf/<file>
    python -m headlab cache                    # there: dequantise into .cache/models (needs the gguf package)

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


def pack(name: str, src: Path | None = None, max_bytes: int = 32 * MiB, ship_dir: Path = SHIP_DIR) -> Path:
    """Split ``src`` (default: the offline model's GGUF) into parts of at most ``max_bytes``;
    returns the manifest's path."""
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


def unpack(ship_dir: Path = SHIP_DIR, dest_dir: Path = CACHE_DIR / "gguf") -> list[Path]:
    """Reassemble every manifest's file in ``dest_dir`` (checked part by part, then whole)."""
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
        if dest.exists() and dest.stat().st_size == m["bytes"] and _sha256(dest) == m["sha256"]:
            out.append(dest)
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
        out.append(dest)
    return out

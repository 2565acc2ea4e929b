"""One look for every figure, and an atomic save of the PNG together with its tidy CSV.

``save(fig, data, paper, profile, fig_id)`` writes ``figures/<paper>/<profile>/<fig_id>.png`` and
``<fig_id>.csv`` (the numbers behind the plot). Both are written to temporary files first and
renamed into place, so a run that fails half-way never leaves a broken or half-new figure. PNGs are
recompressed losslessly (``shrink_png``: the same pixels in about two thirds of matplotlib's bytes), as are the
images of stored notebooks (``headlab run``), to keep the repository small.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from .paths import FIGURES_DIR

DPI = 110  # modest: keeps the repository small, still crisp in the README


def style():
    """The one seaborn style for all notebooks."""
    import seaborn as sns

    sns.set_theme(context="paper", style="whitegrid", palette="colorblind", font_scale=1.1)
    plt.rcParams.update(
        {
            "figure.dpi": 90,
            "savefig.dpi": DPI,
            "savefig.bbox": "tight",
            "axes.titleweight": "bold",
            "legend.frameon": False,
        }
    )


def run_value(d: pd.DataFrame, col: str):
    """A frame's one value of a per-run column (e.g. a budget repeated on every row), or None where the run
    that saved the frame predates that column: figure functions then leave the label out."""
    return d[col].dropna().iloc[0] if col in d and d[col].notna().any() else None


def out_dir(paper: str, profile: str) -> Path:
    d = FIGURES_DIR / paper / profile
    d.mkdir(parents=True, exist_ok=True)
    return d


def readable(path) -> None:
    """mkstemp creates files 0600; give the published file the usual umask-based mode instead."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def _atomic_write(path: Path, write):
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(fd)
    try:
        write(tmp)
        readable(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def save_csv(data: pd.DataFrame, paper: str, profile: str, fig_id: str, float_digits: int = 6) -> Path:
    path = out_dir(paper, profile) / f"{fig_id}.csv"
    _atomic_write(path, lambda t: data.to_csv(t, index=False, float_format=f"%.{float_digits}g"))
    return path


def shrink_png(data: bytes) -> bytes:
    """Lossless recompression of a PNG (oxipng, level 2: filters and deflate chosen per image; pixels unchanged).
    Returns ``data`` itself when pyoxipng is not installed."""
    try:
        import oxipng
    except ImportError:
        return data
    return oxipng.optimize_from_memory(data, level=2)


def write_png(fig, path: Path | str, dpi: int = DPI) -> Path:
    """``fig`` as a PNG at ``path``, written atomically and recompressed losslessly (``shrink_png``)."""
    buf = io.BytesIO()
    fig.savefig(buf, dpi=dpi, bbox_inches="tight", format="png")
    data = shrink_png(buf.getvalue())
    _atomic_write(Path(path), lambda t: Path(t).write_bytes(data))
    return Path(path)


def save(fig, data: pd.DataFrame | None, paper: str, profile: str, fig_id: str) -> Path:
    """Write ``<fig_id>.png`` (+ ``<fig_id>.csv`` when ``data`` is given); returns the PNG path."""
    if data is not None:
        save_csv(data, paper, profile, fig_id)
    return write_png(fig, out_dir(paper, profile) / f"{fig_id}.png")


def replot_from(registry: dict, paper: str, profile: str) -> list[Path]:
    """Redraw every figure of ``registry`` (``{fig_id: draw(frame) -> Figure}``) whose CSV is in
    ``figures/<paper>/<profile>/`` from that CSV alone (PNG only; the CSV is not rewritten)."""

    from .claims import saved  # a CSV or its gzipped copy (large tables of committed runs)

    fig_dir = FIGURES_DIR / paper / profile
    present = [n for n in registry if saved(fig_dir, n) is not None]
    if not present:  # older runs lack the later figures: redraw what a run saved
        raise FileNotFoundError(
            f"{fig_dir}: none of {', '.join(m + '.csv' for m in registry)} (run the notebook at this profile first)"
        )
    style()
    out = []
    for name in present:
        fig = registry[name](pd.read_csv(saved(fig_dir, name)))
        out.append(save(fig, None, paper, profile, name))
        plt.close(fig)
    return out

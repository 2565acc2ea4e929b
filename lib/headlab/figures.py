"""One look for every figure, and an atomic save of the PNG together with its tidy CSV.

``save(fig, data, paper, profile, fig_id)`` writes ``figures/<paper>/<profile>/<fig_id>.png`` and
``<fig_id>.csv`` (the numbers behind the plot). Both are written to temporary files first and
renamed into place, so a run that fails half-way never leaves a broken or half-new figure.
"""

from __future__ import annotations

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


def save(fig, data: pd.DataFrame | None, paper: str, profile: str, fig_id: str) -> Path:
    """Write ``<fig_id>.png`` (+ ``<fig_id>.csv`` when ``data`` is given); returns the PNG path."""
    if data is not None:
        save_csv(data, paper, profile, fig_id)
    path = out_dir(paper, profile) / f"{fig_id}.png"
    _atomic_write(path, lambda t: fig.savefig(t, dpi=DPI, bbox_inches="tight", format="png"))
    return path

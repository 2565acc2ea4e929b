"""Where things live. Everything is resolved from the repository root, so notebooks behave the
same under papermill (cwd = wherever it was started) and nbval (cwd = notebooks/)."""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(os.environ.get("HEADLAB_ROOT", Path(__file__).resolve().parents[2]))
DATA_DIR = REPO_ROOT / "data"
# HEADLAB_FIGURES redirects every figure, CSV and executed notebook (gpu rehearsals write under .cache/).
FIGURES_DIR = Path(os.environ.get("HEADLAB_FIGURES", REPO_ROOT / "figures"))
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
# Dequantised model weights (hundreds of MB): git-ignored, rebuilt by `make setup`.
CACHE_DIR = Path(os.environ.get("HEADLAB_CACHE", REPO_ROOT / ".cache"))

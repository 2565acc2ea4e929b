"""Where things live. Everything is resolved from the repository root, so notebooks behave the
same under papermill (cwd = wherever it was started) and nbval (cwd = notebooks/)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(os.environ.get("HEADLAB_ROOT", Path(__file__).resolve().parents[2]))
DATA_DIR = REPO_ROOT / "data"
# The committed results (read by notebooks that draw another profile's CSVs, e.g. 04's gpu runs).
PUBLISHED_DIR = REPO_ROOT / "figures"
# Where runs write. HEADLAB_FIGURES redirects every figure, CSV and executed notebook: gpu rehearsals
# write under .cache/, and `make nbval` into a temporary folder, so validating leaves the checkout as it was.
FIGURES_DIR = Path(os.environ.get("HEADLAB_FIGURES", PUBLISHED_DIR))
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
# Dequantised model weights (hundreds of MB): git-ignored, rebuilt by `make setup`.
CACHE_DIR = Path(os.environ.get("HEADLAB_CACHE", REPO_ROOT / ".cache"))

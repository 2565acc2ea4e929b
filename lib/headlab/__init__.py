"""headlab: replications of five 2024-2025 papers on attention heads.

The library is thin on purpose: notebooks in ``notebooks/`` call it, it never calls them.
See README.md for the layout and ``headlab.heads`` for the per-head API.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .paths import CACHE_DIR, DATA_DIR, FIGURES_DIR, NOTEBOOKS_DIR, PUBLISHED_DIR, REPO_ROOT  # noqa: F401

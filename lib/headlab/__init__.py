"""headlab: replications of five 2024-2025 papers on attention heads.

The library is thin on purpose: notebooks in ``notebooks/`` call it, it never calls them.
See README.md for the layout and ``headlab.heads`` for the per-head API.
"""

from __future__ import annotations

__version__ = "0.1.0"


def _pin_cpu_isa() -> None:
    """Smoke numbers are checked byte for byte by nbval, but a CPU's matmul and vector kernels differ with
    its instruction set (MKL, ATen and oneDNN each pick AVX2 or AVX-512 at run time), and training amplifies
    the last-bit differences into different models. On x86-64 we pin all three to AVX2, which every x86-64
    machine we meet has, so stored outputs agree across machines (MKL's conditional numerical
    reproducibility). Takes effect when headlab is imported before the first matmul (every notebook's set-up
    cell does so); ``HEADLAB_NATIVE_ISA=1`` keeps the machine's own choice; explicit settings win."""
    import os
    import platform

    if os.environ.get("HEADLAB_NATIVE_ISA") == "1" or platform.machine().lower() not in ("x86_64", "amd64"):
        return
    os.environ.setdefault("MKL_CBWR", "AVX2")
    os.environ.setdefault("ATEN_CPU_CAPABILITY", "avx2")
    os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")


_pin_cpu_isa()

from .paths import CACHE_DIR, DATA_DIR, FIGURES_DIR, NOTEBOOKS_DIR, PUBLISHED_DIR, REPO_ROOT  # noqa: E402, F401

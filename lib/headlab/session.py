"""The first and last code cells of every notebook: determinism, style, timing, versions.

S = session.start(P)          # seeds, threads, plot style, device; starts the section timer
with S.section("fig4"): ...   # wall time per section, reported by the footer
S.figure(frame, draw)         # frame -> <draw.__name__>.csv, then draw(CSV) -> .png, in figures/<paper>/<profile>/
                              # (or figures/<paper>/<P.out>/ where the notebook has an `out` parameter)
S.footer()                    # versions, device, wall time per section
"""

from __future__ import annotations

import contextlib
import platform
import time

import torch

from .data import require_checksums
from .figures import style
from .train import seed_everything, set_threads


class Session:
    def __init__(self, P):
        self.P = P
        self.t0 = time.time()
        self.times: dict[str, float] = {}
        require_checksums()  # the notebook's data are the committed ones
        seed_everything(int(P.get("seed", 0)))
        self.threads = set_threads()
        self.device = torch.device(P.get("device", "cpu"))
        torch.use_deterministic_algorithms(self.device.type == "cpu", warn_only=True)
        style()

    @contextlib.contextmanager
    def section(self, name: str):
        t = time.time()
        try:
            yield
        finally:
            self.times[name] = self.times.get(name, 0.0) + time.time() - t

    def figure(self, data, draw, fig_id: str | None = None):
        """Save ``data`` as this run's ``<fig_id>.csv``, then draw ``draw(frame)`` from that CSV as read back
        and save it as ``<fig_id>.png`` (so the PNG is exactly what ``headlab replot`` redraws). ``fig_id``
        defaults to the function's name, its key in the paper's ``FROM_CSV`` registry. Returns the PNG path."""
        import pandas as pd

        from .figures import save, save_csv

        fig_id = fig_id or draw.__name__
        csv = save_csv(data, self.P.paper, self.out, fig_id)
        return save(draw(pd.read_csv(csv)), None, self.P.paper, self.out, fig_id)

    @property
    def out(self) -> str:
        """The run's figures folder name: its ``out`` parameter where the notebook has one (03), else the profile."""
        return str(getattr(self.P, "out", None) or self.P.profile)

    @property
    def machine(self) -> str:
        """What ran this: the GPU's name, or the CPU's architecture and core count."""
        import os

        if self.device.type == "cuda":
            return torch.cuda.get_device_name(0)
        return f"CPU ({platform.machine()}, {os.cpu_count()} cores)"

    def footer(self) -> str:
        import matplotlib
        import numpy
        import pandas
        import transformers

        from . import __version__

        dev = (
            torch.cuda.get_device_name(0)
            if self.device.type == "cuda"
            else f"CPU ({platform.machine()}, {self.threads} threads)"
        )
        lines = [
            f"headlab {__version__} | profile {self.P.profile} | device {dev}",
            f"python {platform.python_version()} | torch {torch.__version__} | transformers {transformers.__version__} | "
            f"numpy {numpy.__version__} | pandas {pandas.__version__} | matplotlib {matplotlib.__version__}",
            f"total wall time {time.time() - self.t0:.0f} s",
        ]
        lines += [f"  {k:<28} {v:6.1f} s" for k, v in self.times.items()]
        return "\n".join(lines)


def start(P) -> Session:
    return Session(P)

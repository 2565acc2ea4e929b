"""The claims table every notebook ends with.

Each row: claim id, statement, the paper's value, ours, tolerance, verdict, note. Verdicts come
from the numbers, never from hope:

* numeric with a tolerance: ``|ours - paper| <= tol`` -> reproduced, ``<= 2 tol`` -> partly,
  else not reproduced;
* a test the notebook computes from its measurements (``holds=ours > 0.5``) -> reproduced / not
  reproduced (``partly=True`` marks a qualitative match with a quantitative miss);
* ``untestable(...)`` -> "not testable here", with the reason.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import pandas as pd

from .figures import save_csv

VERDICTS = ("reproduced", "partly", "not reproduced", "not testable here")


@dataclass
class Claim:
    claim_id: str
    statement: str
    paper_value: str
    our_value: str
    tolerance: str
    verdict: str
    note: str


def _fmt(x) -> str:
    if x is None:
        return ""
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        if math.isnan(x):
            return "nan"
        return f"{x:.3g}" if abs(x) < 1e4 else f"{x:.4g}"
    return str(x)


class Claims:
    def __init__(self, paper: str, profile: str):
        self.paper, self.profile = paper, profile
        self.rows: list[Claim] = []

    def _put(self, claim: Claim):
        if claim.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}")
        self.rows = [r for r in self.rows if r.claim_id != claim.claim_id] + [claim]
        return claim

    def add(self, claim_id: str, statement: str, paper, ours, *, tolerance: float | None = None,
            holds: bool | None = None, partly: bool = False, note: str = "") -> Claim:
        if tolerance is not None:
            if holds is not None:
                raise ValueError("give either tolerance or holds, not both")
            diff = abs(float(ours) - float(paper))
            verdict = "reproduced" if diff <= tolerance else "partly" if diff <= 2 * tolerance else "not reproduced"
        elif holds is not None:
            verdict = "reproduced" if bool(holds) else ("partly" if partly else "not reproduced")
        else:
            raise ValueError(f"claim {claim_id}: a verdict needs a tolerance or a computed test (holds=...)")
        return self._put(Claim(claim_id, statement, _fmt(paper), _fmt(ours),
                               "" if tolerance is None else f"±{_fmt(tolerance)}", verdict, note))

    def untestable(self, claim_id: str, statement: str, paper, why: str) -> Claim:
        return self._put(Claim(claim_id, statement, _fmt(paper), "", "", "not testable here", why))

    def table(self) -> pd.DataFrame:
        return pd.DataFrame([asdict(r) for r in self.rows],
                            columns=list(Claim.__dataclass_fields__))

    def save(self):
        return save_csv(self.table(), self.paper, self.profile, "claims")

    def summary(self) -> str:
        t = self.table()
        counts = t["verdict"].value_counts()
        return ", ".join(f"{counts.get(v, 0)} {v}" for v in VERDICTS)

    def show(self, max_colwidth: int = 70) -> str:
        """Save claims.csv and return the table as plain text (stable for nbval)."""
        self.save()
        with pd.option_context("display.max_colwidth", max_colwidth, "display.width", 250):
            return self.table().to_string(index=False) + "\n\n" + self.summary()

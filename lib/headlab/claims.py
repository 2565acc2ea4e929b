"""The claims table every notebook ends with: verdicts decided by intervals, rows labelled by kind.

A row says what kind of statement it judges:

* ``paper``      a claim the paper makes (the only kind the README counts as a replication);
* ``hypothesis`` our own inference or threshold, not the paper's (said so in the table);
* ``pilot``      a target taken from a pilot study, not from the paper;
* ``check``      a software or arithmetic self-check; written to ``checks.csv``, never counted.

A ``paper`` / ``hypothesis`` / ``pilot`` row is decided by :class:`Evidence`: the deciding statistic, its
point estimate, a 95 % interval over the real unit of replication (items, prompts, seeds), how many
units, and the rule in words. The interval decides (:func:`greater`, :func:`less`, :func:`within`):

* reproduced      the interval lies wholly on the claim's side of the rule;
* not reproduced  the interval lies wholly on the other side;
* inconclusive    the interval admits both (the note says about how many units would decide it);
* partly          a compound claim (:func:`compound`) whose parts were decided both ways;
* not testable here (:meth:`Claims.untestable`), with the reason.

The paper's numbers are data (:class:`Published`: value as quoted, where, which version). Each paper's
verdict code lives in ``headlab.papers.<paper>.claims`` as ``build(folder, profile) -> Claims``, computed
from the tidy CSVs the notebook saved in ``folder``; ``rebuild`` reruns it without any model or kernel,
which is how ``tests/test_claims_rebuild.py`` checks every committed ``claims.csv``.
"""

from __future__ import annotations

import importlib
import math
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

KINDS = ("paper", "hypothesis", "pilot", "check")
VERDICTS = ("reproduced", "partly", "not reproduced", "inconclusive", "not testable here")
CHECK_VERDICTS = ("passed", "failed")
COLUMNS = [
    "claim_id",
    "kind",
    "statement",
    "source",
    "paper_value",
    "our_value",
    "statistic",
    "estimate",
    "ci_low",
    "ci_high",
    "n",
    "unit",
    "rule",
    "tolerance",
    "verdict",
    "note",
]

# paper -> module with ``build(folder: Path, profile: str) -> Claims``
BUILDERS = {
    "dormant_heads": "headlab.papers.dormant_heads.claims",
    "dha_fusion": "headlab.papers.dha_fusion.claims",
    "heads_cooperate": "headlab.papers.heads_cooperate.claims",
    "attention_sinks": "headlab.papers.attention_sinks.claims",
    "moh": "headlab.papers.moh.claims",
    "five_lenses": "headlab.lenses.claims",
}


# --------------------------------------------------------------------------------------------- the paper's numbers
@dataclass(frozen=True)
class Published:
    """A number (or qualitative statement) as the paper gives it, and where.

    ``source`` names the place and version, e.g. ``"Table 2, arXiv v4"``; ``note`` says what was
    inferred ([I] in the notes) or how the quote was read.
    """

    value: str
    source: str
    note: str = ""


# -------------------------------------------------------------------------------------------------- evidence
@dataclass(frozen=True)
class Evidence:
    """The deciding statistic of a row and the verdict its interval gives."""

    statistic: str  # what was measured, in words, e.g. "AHON-LN SD minus AWFT SD (pt)"
    estimate: float
    ci_low: float
    ci_high: float
    n: int  # how many units the interval rests on
    unit: str  # "items", "prompts", "seeds", "heads", ...
    rule: str  # the decision rule in words, fixed before the run
    verdict: str
    margin: float = math.nan  # signed distance of the interval from the rule's boundary (+ = claim side)
    note: str = ""


def _needed(n: int, lo: float, hi: float, est: float, threshold: float) -> str:
    """Roughly how many units would make an interval of this width exclude ``threshold``."""
    half = (hi - lo) / 2
    gap = abs(est - threshold)
    if not (n and math.isfinite(half) and half > 0):
        return ""
    if gap == 0:
        return "; the estimate sits on the boundary: no sample size decides it"
    need = math.ceil(n * (half / gap) ** 2)
    return f"; about {need} units would decide it at this effect size" if need > n else ""


def _bounded(statistic, est, lo, hi, n, unit, rule, side: str, threshold: float) -> Evidence:
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return Evidence(
            statistic, est, lo, hi, n, unit, rule, "inconclusive", math.nan, f"no interval ({n} {unit}): undecided"
        )
    if side == "greater":
        margin = lo - threshold if lo > threshold else (hi - threshold if hi <= threshold else 0.0)
        verdict = "reproduced" if lo > threshold else "not reproduced" if hi <= threshold else "inconclusive"
    else:
        margin = threshold - hi if hi < threshold else (threshold - lo if lo >= threshold else 0.0)
        verdict = "reproduced" if hi < threshold else "not reproduced" if lo >= threshold else "inconclusive"
    note = "interval admits both" + _needed(n, lo, hi, est, threshold) if verdict == "inconclusive" else ""
    return Evidence(statistic, est, lo, hi, n, unit, rule, verdict, margin, note)


def greater(statistic: str, interval, unit: str, threshold: float = 0.0, rule: str | None = None) -> Evidence:
    """The claim holds when the statistic exceeds ``threshold``; ``interval = (est, lo, hi, n)``."""
    est, lo, hi, n = interval
    return _bounded(
        statistic,
        float(est),
        float(lo),
        float(hi),
        int(n),
        unit,
        rule or f"reproduced if the 95% interval lies above {threshold:g}; not if it lies at or below",
        "greater",
        threshold,
    )


def less(statistic: str, interval, unit: str, threshold: float = 0.0, rule: str | None = None) -> Evidence:
    """The claim holds when the statistic is below ``threshold``; ``interval = (est, lo, hi, n)``."""
    est, lo, hi, n = interval
    return _bounded(
        statistic,
        float(est),
        float(lo),
        float(hi),
        int(n),
        unit,
        rule or f"reproduced if the 95% interval lies below {threshold:g}; not if it lies at or above",
        "less",
        threshold,
    )


def within(statistic: str, interval, unit: str, target: float, tol: float, rule: str | None = None) -> Evidence:
    """The claim holds when the statistic is within ``target ± tol``: reproduced if the whole interval is
    inside the band, not reproduced if it is wholly outside, inconclusive if it straddles an edge."""
    est, lo, hi, n = (float(v) for v in interval)
    n = int(n)
    rule = rule or f"reproduced if the 95% interval lies inside {target:g} ± {tol:g}; not if wholly outside"
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return Evidence(statistic, est, lo, hi, n, unit, rule, "inconclusive", math.nan, f"no interval ({n} {unit})")
    a, b = target - tol, target + tol
    if a <= lo and hi <= b:
        v, m = "reproduced", min(lo - a, b - hi)
    elif hi < a or lo > b:
        v, m = "not reproduced", -max(a - hi, lo - b)
    else:
        v, m = "inconclusive", 0.0
    note = "interval straddles the band's edge" if v == "inconclusive" else ""
    return Evidence(statistic, est, lo, hi, n, unit, rule, v, m, note)


def compound(parts: dict[str, Evidence], rule: str | None = None) -> Evidence:
    """A claim with several parts (e.g. one per model): reproduced if every part is, not reproduced if
    every part is not, partly if parts were decided both ways, inconclusive otherwise. The row shows the
    part nearest its boundary as the deciding statistic; the note lists every part."""
    if not parts:
        raise ValueError("compound() needs at least one part")
    vs = {e.verdict for e in parts.values()}
    if len(vs) == 1:
        verdict = vs.pop()
    elif {"reproduced", "not reproduced"} <= vs or "partly" in vs:
        verdict = "partly"
    else:
        verdict = "inconclusive"
    name, key = min(parts.items(), key=lambda kv: abs(kv[1].margin) if math.isfinite(kv[1].margin) else -1.0)
    note = "; ".join(
        f"{k}: {e.verdict} ({_fmt(e.estimate)} [{_fmt(e.ci_low)}, {_fmt(e.ci_high)}], n={e.n})"
        for k, e in parts.items()
    )
    return replace(
        key, statistic=f"{key.statistic} [{name}]", verdict=verdict, rule=rule or f"every part: {key.rule}", note=note
    )


# ---------------------------------------------------------------------------------------------------- the table
def _part_of(statistic) -> str:
    """The part a compound row's statistic names at its end (``compound`` appends `` [part]``), else ''."""
    m = re.search(r" \[([^\[\]]+)\]$", str(statistic)) if isinstance(statistic, str) else None
    return m.group(1) if m else ""


def _fmt(x) -> str:
    if x is None:
        return ""
    if isinstance(x, (bool, np.bool_)):
        return str(bool(x))
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if isinstance(x, (float, np.floating)):
        x = float(x)
        if math.isnan(x):
            return ""
        if x == 0:
            return "0"
        return f"{x:.4g}"
    return str(x)


@dataclass
class Row:
    claim_id: str
    kind: str
    statement: str
    source: str = ""
    paper_value: str = ""
    our_value: str = ""
    statistic: str = ""
    estimate: str = ""
    ci_low: str = ""
    ci_high: str = ""
    n: str = ""
    unit: str = ""
    rule: str = ""
    tolerance: str = ""
    verdict: str = ""
    note: str = ""


class Claims:
    """Rows of one paper under one profile; ``save`` writes ``claims.csv`` and ``checks.csv``."""

    def __init__(self, paper: str, profile: str):
        self.paper, self.profile = paper, profile
        self.rows: list[Row] = []

    def _put(self, row: Row) -> Row:
        if row.kind not in KINDS:
            raise ValueError(f"claim {row.claim_id}: kind must be one of {KINDS}")
        allowed = CHECK_VERDICTS if row.kind == "check" else VERDICTS
        if row.verdict not in allowed:
            raise ValueError(f"claim {row.claim_id}: verdict {row.verdict!r} is not one of {allowed}")
        if (
            row.kind != "check"
            and row.verdict in ("reproduced", "not reproduced")
            and not (row.ci_low and row.ci_high and row.n)
        ):
            raise ValueError(f"claim {row.claim_id}: '{row.verdict}' needs a 95% interval and a unit count")
        self.rows = [r for r in self.rows if r.claim_id != row.claim_id] + [row]
        return row

    def add(
        self,
        claim_id: str,
        statement: str,
        published: Published,
        ours: str,
        evidence: Evidence,
        *,
        kind: str = "paper",
        tolerance: str = "",
        note: str = "",
    ) -> Row:
        """A row decided by ``evidence`` (see :func:`greater`, :func:`less`, :func:`within`, :func:`compound`)."""
        if kind == "check":
            raise ValueError("use check() for self-checks")
        e = evidence
        notes = "; ".join(s for s in (note, e.note, published.note) if s)
        return self._put(
            Row(
                claim_id,
                kind,
                statement,
                published.source,
                published.value,
                ours,
                e.statistic,
                _fmt(e.estimate),
                _fmt(e.ci_low),
                _fmt(e.ci_high),
                _fmt(e.n),
                e.unit,
                e.rule,
                tolerance,
                e.verdict,
                notes,
            )
        )

    def untestable(
        self, claim_id: str, statement: str, published: Published, why: str, *, kind: str = "paper", ours: str = ""
    ) -> Row:
        """Not testable here: ``why`` says what it would need (and ``ours`` any analogue measured)."""
        return self._put(
            Row(
                claim_id,
                kind,
                statement,
                published.source,
                published.value,
                ours,
                verdict="not testable here",
                note=why,
            )
        )

    def inconclusive(
        self,
        claim_id: str,
        statement: str,
        published: Published,
        ours: str,
        why: str,
        *,
        kind: str = "paper",
        statistic: str = "",
        n: int | None = None,
        unit: str = "",
        rule: str = "",
    ) -> Row:
        """Measured, but the measurement cannot decide (e.g. the premise did not hold); ``why`` says so."""
        return self._put(
            Row(
                claim_id,
                kind,
                statement,
                published.source,
                published.value,
                ours,
                statistic,
                n=_fmt(n),
                unit=unit,
                rule=rule,
                verdict="inconclusive",
                note=why,
            )
        )

    def check(
        self, claim_id: str, statement: str, passed: bool, ours: str, *, expected: str = "", note: str = ""
    ) -> Row:
        """A software or arithmetic self-check (goes to ``checks.csv``; never counted as a replication)."""
        return self._put(
            Row(
                claim_id,
                "check",
                statement,
                paper_value=expected,
                our_value=ours,
                verdict="passed" if bool(passed) else "failed",
                note=note,
            )
        )

    # ------------------------------------------------------------------------------------------- output
    def table(self, kinds=("paper", "hypothesis", "pilot")) -> pd.DataFrame:
        return pd.DataFrame([asdict(r) for r in self.rows if r.kind in kinds], columns=COLUMNS)

    def checks(self) -> pd.DataFrame:
        return self.table(kinds=("check",))

    def save(self, folder: Path | None = None) -> Path:
        """Write ``claims.csv`` (paper, hypothesis, pilot rows) and ``checks.csv`` into ``folder``
        (default ``figures/<paper>/<profile>/``), atomically; returns the claims path."""
        from .figures import _atomic_write, out_dir

        folder = Path(folder) if folder is not None else out_dir(self.paper, self.profile)
        folder.mkdir(parents=True, exist_ok=True)
        for name, t in (("claims", self.table()), ("checks", self.checks())):
            _atomic_write(folder / f"{name}.csv", lambda p, t=t: t.to_csv(p, index=False))
        return folder / "claims.csv"

    def summary(self) -> str:
        t = self.table(kinds=("paper",))
        counts = t["verdict"].value_counts()
        s = "paper claims: " + ", ".join(f"{counts.get(v, 0)} {v}" for v in VERDICTS)
        other = self.table(kinds=("hypothesis", "pilot"))
        if len(other):
            s += f"\nour hypotheses and pilot targets (not the paper's): {len(other)}, " + ", ".join(
                f"{k} {v}" for v, k in other.verdict.value_counts().items()
            )
        ch = self.checks()
        if len(ch):
            s += f"\nchecks (not replications): {(ch.verdict == 'passed').sum()}/{len(ch)} passed"
        return s

    def show(self, max_colwidth: int = 48, folder: Path | None = None) -> str:
        """Save claims.csv + checks.csv and return the tables as plain text (stable for nbval): per row its
        kind, verdict, deciding estimate with its 95 % interval and unit count, and ours in short (the full
        statement, paper value, source, rule and note are in the CSV). A compound row's estimate, interval and n are
        its deciding part's, named after n, e.g. ``3 seeds (67%)``."""
        self.save(folder)

        def cut(x: str) -> str:
            x = " ".join(str(x).split())
            return x if len(x) <= max_colwidth else x[: max_colwidth - 1] + "…"

        t = self.table()
        view = pd.DataFrame(
            {
                "claim": t.claim_id,
                "kind": t.kind,
                "verdict": t.verdict,
                "estimate [95% CI]": [
                    f"{e} [{lo}, {hi}]" if lo else e for e, lo, hi in zip(t.estimate, t.ci_low, t.ci_high, strict=True)
                ],
                "n": [
                    (f"{n} {u}".strip() + (f" ({p})" if (p := _part_of(st)) else "")) if n else ""
                    for n, u, st in zip(t.n, t.unit, t.statistic, strict=True)
                ],
                "ours": t.our_value.map(cut),
            }
        )
        out = [view.to_string(index=False)]
        ch = self.checks()
        if len(ch):
            out.append(
                "\nchecks:\n"
                + pd.DataFrame(
                    {
                        "check": ch.claim_id,
                        "verdict": ch.verdict,
                        "what": ch.statement.map(cut),
                        "ours": ch.our_value.map(cut),
                    }
                ).to_string(index=False)
            )
        return "\n".join(out) + "\n\n" + self.summary()


# ------------------------------------------------------------------------------------------------- rebuilding
def builder(paper: str):
    if paper not in BUILDERS:
        raise KeyError(f"no claims code for paper {paper!r}; known: {', '.join(BUILDERS)}")
    return importlib.import_module(BUILDERS[paper])


def rebuild(paper: str, profile: str, folder: Path | None = None) -> Claims:
    """Recompute a run's claims from the CSVs in ``folder`` (default: the committed ``figures/``)."""
    from .paths import PUBLISHED_DIR

    folder = Path(folder) if folder is not None else PUBLISHED_DIR / paper / profile
    return builder(paper).build(folder, profile)


def saved(folder: Path, name: str) -> Path | None:
    """The path of a run's tidy table ``<name>.csv``, or of its gzipped copy ``<name>.csv.gz`` (large per-unit
    tables of committed runs are stored compressed to keep the repository small); None if neither exists."""
    for path in (Path(folder) / f"{name}.csv", Path(folder) / f"{name}.csv.gz"):
        if path.exists():
            return path
    return None


def read_optional(folder: Path, name: str) -> pd.DataFrame | None:
    """``read`` where the run saved the table (plain or gzipped), else None (parts a run may skip)."""
    return read(folder, name) if saved(folder, name) is not None else None


def read(folder: Path, name: str) -> pd.DataFrame:
    """A saved tidy CSV of a run (plain or gzipped, see ``saved``), with a clear error when it is missing."""
    path = saved(folder, name)
    if path is None:
        raise FileNotFoundError(
            f"{Path(folder) / name}.csv: the claims need this CSV; rerun the notebook that writes it"
        )
    return pd.read_csv(path)


def committed(folder: Path, name: str) -> Path:
    """A sibling run folder ``name`` of ``folder`` (e.g. a pilot's), else the committed one under ``figures/``: a
    run writing elsewhere (nbval, a rehearsal) still reads the committed results of a command-line run."""
    from .paths import PUBLISHED_DIR

    here = Path(folder).parent / name
    return here if here.exists() else PUBLISHED_DIR / Path(folder).parent.name / name

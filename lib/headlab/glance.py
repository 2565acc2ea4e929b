"""The README's "claims at a glance" block (``python -m headlab claims --glance``), generated from the committed
``claims.csv`` / ``checks.csv`` files; the report site shows the same table."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .claims import COLUMNS, VERDICTS


def counts(path: Path) -> dict[str, int]:
    """Verdict counts of the ``paper`` rows of a claims.csv, plus checks passed / total from checks.csv."""
    d = pd.read_csv(path, dtype=str, keep_default_na=False)
    vc = d[d.kind == "paper"].verdict.value_counts()
    out = {v: int(vc.get(v, 0)) for v in VERDICTS}
    ch_path = Path(path).with_name("checks.csv")
    ch = pd.read_csv(ch_path, dtype=str, keep_default_na=False) if ch_path.exists() else pd.DataFrame(columns=COLUMNS)
    out["checks passed"], out["checks"] = int((ch.verdict == "passed").sum()), len(ch)
    out["hypothesis/pilot"] = int(d.kind.isin(["hypothesis", "pilot"]).sum())
    return out


# ---------------------------------------------------------------------------------------- claims at a glance
# The claim each paper is cited for (its headline), by claim id in that paper's claims.csv.
HEADLINES: dict[str, str] = {
    "dormant_heads": "C1",
    "dha_fusion": "C9",
    "heads_cooperate": "K8",
    "attention_sinks": "K4",
    "moh": "C1",
}
GLANCE_COLUMNS = ["reproduced", "partly", "not reproduced", "inconclusive", "not testable here"]


def glance(root: Path | None = None) -> str:
    """The README's "claims at a glance" block, generated from the committed claims.csv / checks.csv files:
    verdict counts of ``paper`` rows only, hypothesis/pilot rows and self-checks counted apart, and one line
    per paper with its headline claim's verdict and evidence."""
    from .paths import PUBLISHED_DIR
    from .profiles import NOTEBOOKS

    root = Path(root) if root is not None else PUBLISHED_DIR
    nb_of = {nb.paper: nb.name for nb in NOTEBOOKS.values()}
    lines = [
        "| notebook | profile | " + " | ".join(GLANCE_COLUMNS) + " | ours (hypothesis, pilot) | checks passed |",
        "|---|---|" + "---|" * (len(GLANCE_COLUMNS) + 2),
    ]
    heads = []
    for path in sorted(
        root.glob("*/*/claims.csv"),
        key=lambda p: (nb_of.get(p.parent.parent.name, "~"), p.parent.name != "smoke", p.parent.name),
    ):
        paper, profile = path.parent.parent.name, path.parent.name
        c = counts(path)
        nb = nb_of.get(paper, paper)
        lines.append(
            f"| {nb} | {profile} | "
            + " | ".join(str(c[v]) for v in GLANCE_COLUMNS)
            + f" | {c['hypothesis/pilot']} | {c['checks passed']}/{c['checks']} |"
        )
        hid = HEADLINES.get(paper)
        if hid:
            d = pd.read_csv(path, dtype=str, keep_default_na=False).set_index("claim_id")
            if hid in d.index:
                r = d.loc[hid]
                ev = (
                    f": {r.statistic} = {r.estimate} [{r.ci_low}, {r.ci_high}], n = {r.n} {r.unit}"
                    if r.ci_low
                    else (f": {r.note}" if r.verdict in ("not testable here", "inconclusive") else "")
                )
                heads.append(f"- **{nb} ({profile})**, headline {hid} — {r.statement}: **{r.verdict}**{ev}")
    return "\n".join(lines) + ("\n\nHeadline claims:\n\n" + "\n".join(heads) if heads else "") + "\n"

"""Checks on what the notebooks publish (figures/<paper>/<profile>/): every plot has its numbers, every
claims table is well formed, never decides a claim without an interval, keeps self-checks apart, and the
README's summary of verdicts is the one the claims files hold."""

from __future__ import annotations

import pandas as pd
import pytest

from headlab.claims import CHECK_VERDICTS, COLUMNS, KINDS, VERDICTS
from headlab.glance import glance
from headlab.paths import PUBLISHED_DIR, REPO_ROOT
from headlab.profiles import NOTEBOOKS

CLAIMS = sorted(PUBLISHED_DIR.glob("*/*/claims.csv"))


def test_every_registered_paper_publishes_smoke_claims():
    papers = {nb.paper for nb in NOTEBOOKS.values() if nb.name != "00_headlab_tour"}
    assert papers <= {p.parent.parent.name for p in CLAIMS if p.parent.name == "smoke"}


@pytest.mark.parametrize("path", CLAIMS, ids=lambda p: f"{p.parent.parent.name}/{p.parent.name}")
def test_claims_table_is_well_formed(path):
    d = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert list(d.columns) == COLUMNS
    assert d.claim_id.is_unique and (d.claim_id != "").all()
    assert set(d.kind) <= set(KINDS) - {"check"}, "self-checks belong in checks.csv"
    assert set(d.verdict) <= set(VERDICTS), set(d.verdict) - set(VERDICTS)
    measured = d[~d.verdict.isin(["not testable here", "inconclusive"])]
    assert (measured.our_value.str.strip() != "").all(), "a verdict without a measured value"
    decided = d[d.verdict.isin(["reproduced", "not reproduced"])]
    for col in ("statistic", "ci_low", "ci_high", "n", "unit", "rule"):
        assert (decided[col].str.strip() != "").all(), f"a decided row without its {col}"
    lo, hi = decided.ci_low.astype(float), decided.ci_high.astype(float)
    assert (lo <= hi).all()
    untestable = d[d.verdict.isin(["not testable here", "inconclusive"])]
    assert (untestable.note.str.strip() != "").all(), "'not testable here' / 'inconclusive' must say why"
    checks = pd.read_csv(path.with_name("checks.csv"), dtype=str, keep_default_na=False)
    assert list(checks.columns) == COLUMNS and set(checks.kind) <= {"check"}
    assert set(checks.verdict) <= set(CHECK_VERDICTS)
    assert not set(checks.claim_id) & set(d.claim_id)


def test_every_figure_has_its_numbers():
    from headlab.claims import saved

    pngs = [p for p in PUBLISHED_DIR.glob("*/*/*.png") if not p.name.startswith(".")]
    assert pngs
    missing = [str(p.relative_to(PUBLISHED_DIR)) for p in pngs if saved(p.parent, p.stem) is None]  # .csv or .csv.gz
    assert not missing, missing


def test_readme_claims_at_a_glance_is_generated_from_the_claims_files():
    text = (REPO_ROOT / "README.md").read_text()
    begin, end = "<!-- claims-at-a-glance: python -m headlab claims --glance -->", "<!-- /claims-at-a-glance -->"
    assert begin in text and end in text, "README has no generated claims-at-a-glance block"
    block = text.split(begin, 1)[1].split(end, 1)[0].strip()
    assert block == glance().strip(), "README's claims at a glance is stale: paste `python -m headlab claims --glance`"

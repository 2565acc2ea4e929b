"""Checks on what the notebooks publish (figures/<paper>/<profile>/): every plot has its numbers, every
claims table is well formed and never calls a claim measured without a measured value, and the
README's summary of verdicts is the one the claims files hold."""
from __future__ import annotations

import re

import pandas as pd
import pytest

from headlab.claims import VERDICTS
from headlab.paths import FIGURES_DIR, REPO_ROOT
from headlab.profiles import NOTEBOOKS

CLAIMS = sorted(FIGURES_DIR.glob("*/*/claims.csv"))
COLUMNS = ["claim_id", "statement", "paper_value", "our_value", "tolerance", "verdict", "note"]


def test_every_registered_paper_publishes_smoke_claims():
    papers = {nb.paper for nb in NOTEBOOKS.values() if nb.name != "00_headlab_tour"}
    assert papers <= {p.parent.parent.name for p in CLAIMS if p.parent.name == "smoke"}


@pytest.mark.parametrize("path", CLAIMS, ids=lambda p: f"{p.parent.parent.name}/{p.parent.name}")
def test_claims_table_is_well_formed(path):
    d = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert list(d.columns) == COLUMNS
    assert d.claim_id.is_unique and (d.claim_id != "").all()
    assert set(d.verdict) <= set(VERDICTS), set(d.verdict) - set(VERDICTS)
    measured = d[d.verdict != "not testable here"]
    assert (measured.our_value.str.strip() != "").all(), "a verdict without a measured value"
    untestable = d[d.verdict == "not testable here"]
    assert (untestable.note.str.strip() != "").all(), "'not testable here' must say why"


def test_every_figure_has_its_numbers():
    pngs = [p for p in FIGURES_DIR.glob("*/*/*.png") if not p.name.startswith(".")]
    assert pngs
    missing = [str(p.relative_to(FIGURES_DIR)) for p in pngs if not p.with_suffix(".csv").exists()]
    assert not missing, missing


def test_readme_claims_summary_matches_the_claims_files():
    text = (REPO_ROOT / "README.md").read_text()
    rows = re.findall(r"^\| (\d\d) [^|]+\| (\w+)[^|]*\| (\d+) \| (\d+) \| (\d+) \| (\d+) \|$", text, flags=re.M)
    assert rows, "README has no claims-at-a-glance table"
    paper_of = {name[:2]: nb.paper for name, nb in NOTEBOOKS.items()}
    listed = set()
    for num, profile, *counts in rows:
        path = FIGURES_DIR / paper_of[num] / profile / "claims.csv"
        verdicts = pd.read_csv(path).verdict.value_counts()
        assert [int(c) for c in counts] == [int(verdicts.get(v, 0)) for v in VERDICTS], path
        listed.add(path)
    assert listed == set(CLAIMS), "README lists a different set of claims files"

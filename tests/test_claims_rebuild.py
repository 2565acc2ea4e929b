"""Every committed claims table is rebuilt from its run's CSVs alone (no model, no kernel) and must equal
what is committed: a verdict can only change through its rule in ``headlab.papers.<paper>_claims``."""

from __future__ import annotations

import pytest

from headlab.claims import rebuild
from headlab.paths import PUBLISHED_DIR

RUNS = sorted(p.parent for p in PUBLISHED_DIR.glob("*/*/claims.csv"))


@pytest.mark.parametrize("folder", RUNS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_committed_claims_rebuild_from_their_csvs(folder, tmp_path):
    C = rebuild(folder.parent.name, folder.name, folder)
    C.save(tmp_path)
    for name in ("claims.csv", "checks.csv"):
        assert (tmp_path / name).read_text() == (folder / name).read_text(), f"{folder.name}/{name} differs"

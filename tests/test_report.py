"""The static report site, built from the committed files as a reader would open it: every internal link and
image resolves, every committed figure, CSV, claims table and notebook is in it, and its counts are the README's."""

from __future__ import annotations

import re
import shutil
import subprocess

import pandas as pd
import pytest

from headlab import glance, report
from headlab.paths import NOTEBOOKS_DIR, PUBLISHED_DIR, REPO_ROOT


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    return report.build(tmp_path_factory.mktemp("site") / "_site")


def _text(path):
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", path.read_text(encoding="utf-8")))


@pytest.mark.slow
def test_every_internal_link_and_image_resolves(site):
    assert report.broken_links(site) == []


@pytest.mark.slow
def test_every_committed_figure_csv_claims_table_and_notebook_is_in_the_site(site):
    for p in PUBLISHED_DIR.rglob("*"):
        if p.suffix in (".png", ".csv") and not p.name.startswith("."):
            assert (site / p.relative_to(REPO_ROOT)).exists(), p
    gallery = (site / "figures.html").read_text(encoding="utf-8")
    assert all(f'src="{p.relative_to(REPO_ROOT).as_posix()}"' in gallery for p in PUBLISHED_DIR.glob("*/*/[!.]*.png"))
    for nb in NOTEBOOKS_DIR.glob("*.ipynb"):
        assert (site / "notebooks" / f"{nb.stem}.html").exists()
    for r in report.runs():
        if r.profile != "smoke" and r.executed is not None:
            assert (site / "runs" / f"{r.notebook}-{r.profile}.html").exists()


@pytest.mark.slow
def test_dashboard_has_every_claims_row_and_the_index_the_readmes_counts(site):
    n = sum(
        len(pd.read_csv(p, dtype=str)) for name in ("claims", "checks") for p in PUBLISHED_DIR.glob(f"*/*/{name}.csv")
    )
    dash = (site / "claims.html").read_text(encoding="utf-8")
    assert dash.count("<tr data-notebook=") == n and f"of {n} rows" in dash
    index, dash_text = _text(site / "index.html"), _text(site / "claims.html")
    for line in glance.glance().splitlines():
        if line.startswith("| 0"):  # one run's counts, as the README's claims-at-a-glance table shows them
            cells = [c.strip() for c in line.strip("|").split("|")]
            assert " ".join(cells) in index and " ".join(cells) in dash_text, cells


def test_bibtex_names_the_figure_and_its_commit():
    fig = next(PUBLISHED_DIR.glob("*/*/[!.]*.png"))
    b = report.bibtex(fig, "abc1234", {"title": "headlab", "authors": [{"name": "X"}], "version": "0.1.0"})
    assert b.startswith("@misc{headlab_") and fig.relative_to(REPO_ROOT).as_posix() in b and "abc1234" in b


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium (make report-check)")
def test_dashboard_filters_work_in_a_browser(site):
    """Headless Chromium opens the dashboard with filters in its URL; the page counts the rows they keep."""
    url = f"file://{site}/claims.html#verdict=reproduced&kind=paper"
    dom = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=3000", "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    d = pd.concat([pd.read_csv(p, dtype=str, keep_default_na=False) for p in PUBLISHED_DIR.glob("*/*/claims.csv")])
    want = int(((d.verdict == "reproduced") & (d.kind == "paper")).sum())
    assert re.search(r'id="hl-shown">(\d+)<', dom).group(1) == str(want)


def test_machine_of_a_run_that_skipped_parts_names_both(tmp_path):
    """A gpu folder whose executed notebook ran only some parts (``--skip-part``) beside an earlier run's log: the
    report names the device of each."""
    import json

    from headlab.report import Run
    from headlab.run import mark_skipped

    nb = {
        "cells": [
            {"cell_type": "markdown", "id": "t", "metadata": {}, "source": ["# t"]},
            {"cell_type": "code", "id": "a", "metadata": {"tags": ["part-bytes"]}, "source": [], "outputs": []},
            {
                "cell_type": "code",
                "id": "f",
                "metadata": {},
                "source": [],
                "outputs": [
                    {
                        "output_type": "stream",
                        "name": "stdout",
                        "text": ["headlab 0.1 | profile gpu | device NVIDIA H200\n"],
                    }
                ],
            },
        ]
    }
    (tmp_path / "02_dha_fusion.ipynb").write_text(json.dumps(mark_skipped(nb, ["bytes"])))
    run = Run("dha_fusion", "gpu", "02_dha_fusion", "t", tmp_path, tmp_path / "02_dha_fusion.ipynb")
    assert run.machine() == "NVIDIA H200; part(s) bytes: an earlier run"
    (tmp_path / "gpu_exec.log").write_text("GPU: NVIDIA H100 80GB HBM3\n")
    assert run.machine() == "NVIDIA H200; part(s) bytes: NVIDIA H100 80GB HBM3"

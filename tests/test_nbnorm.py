"""The notebook JSON policy (.ci/nbnorm.py): it finds each kind of departure, fixes the mechanical ones,
and the stored notebooks obey it."""

from __future__ import annotations

import copy
import importlib.util
import json

from headlab.paths import NOTEBOOKS_DIR, REPO_ROOT

spec = importlib.util.spec_from_file_location("nbnorm", REPO_ROOT / ".ci" / "nbnorm.py")
nbnorm = importlib.util.module_from_spec(spec)
spec.loader.exec_module(nbnorm)

CLEAN = {
    "cells": [
        {"cell_type": "markdown", "id": "a", "metadata": {}, "source": ["# title"]},
        {
            "cell_type": "code",
            "execution_count": 2,
            "id": "b",
            "metadata": {"tags": ["parameters"]},
            "outputs": [],
            "source": ["profile = 'smoke'"],
        },
    ],
    "metadata": {"kernelspec": dict(nbnorm.KERNELSPEC), "language_info": {"name": "python"}},
    "nbformat": 4,
    "nbformat_minor": 5,
}


def test_a_clean_notebook_passes():
    assert nbnorm.problems(copy.deepcopy(CLEAN), fix=False) == []


def test_each_departure_is_found_and_the_mechanical_ones_fixed(tmp_path):
    nb = copy.deepcopy(CLEAN)
    nb["metadata"]["papermill"] = {"duration": 3.2}
    nb["cells"][1]["metadata"]["execution"] = {"iopub.status.busy": "2026"}
    nb["cells"][1]["execution_count"] = 7
    found = nbnorm.problems(copy.deepcopy(nb), fix=False)
    assert len(found) == 3 and any("papermill" in f for f in found) and any("execution_count 7" in f for f in found)
    p = tmp_path / "x.ipynb"
    p.write_text(json.dumps(nb, indent=2))
    assert nbnorm.main(["--fix", str(p)]) == 0
    assert json.loads(p.read_text()) == CLEAN and nbnorm.main([str(p)]) == 0


def test_errors_and_stderr_are_reported_not_fixed(tmp_path):
    nb = copy.deepcopy(CLEAN)
    nb["cells"][1]["outputs"] = [
        {"output_type": "stream", "name": "stderr", "text": ["warning"]},
        {"output_type": "error", "ename": "ValueError", "evalue": "x", "traceback": []},
    ]
    p = tmp_path / "x.ipynb"
    p.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    assert nbnorm.main(["--fix", str(p)]) == 1 and nbnorm.main([str(p)]) == 1


def test_stored_notebooks_follow_the_policy():
    paths = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
    assert paths and nbnorm.main([str(p) for p in paths]) == 0

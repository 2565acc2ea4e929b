"""The claims core: every verdict outcome from hand-made numbers, kinds, and the checks split."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from headlab import claims as K
from headlab import glance
from headlab import intervals as KI
from headlab.claims import Claims, Published

PUB = Published("10 %", "Table 1, arXiv v2")


def test_greater_and_less_decide_only_when_the_interval_excludes_the_other_side():
    assert K.greater("d", (0.5, 0.1, 0.9, 30), "items").verdict == "reproduced"
    assert K.greater("d", (-0.5, -0.9, -0.1, 30), "items").verdict == "not reproduced"
    e = K.greater("d", (0.1, -0.2, 0.4, 30), "items")
    assert e.verdict == "inconclusive" and "units would decide" in e.note
    assert K.less("d", (-0.5, -0.9, -0.1, 30), "items").verdict == "reproduced"
    assert K.less("d", (0.5, 0.1, 0.9, 30), "items").verdict == "not reproduced"
    assert K.less("d", (0.0, -0.1, 0.1, 30), "items").verdict == "inconclusive"
    assert K.greater("d", (1.0, math.nan, math.nan, 1), "seeds").verdict == "inconclusive"
    assert K.greater("d", (2.0, 1.2, 3.0, 5), "seeds", threshold=1.0).verdict == "reproduced"


def test_within_a_band():
    assert K.within("x", (10.0, 9.6, 10.4, 8), "seeds", 10.0, 0.5).verdict == "reproduced"
    assert K.within("x", (12.0, 11.6, 12.4, 8), "seeds", 10.0, 0.5).verdict == "not reproduced"
    assert K.within("x", (10.4, 10.0, 10.8, 8), "seeds", 10.0, 0.5).verdict == "inconclusive"


def test_compound_parts():
    yes = K.greater("d", (0.5, 0.1, 0.9, 30), "items")
    no = K.greater("d", (-0.5, -0.9, -0.1, 30), "items")
    maybe = K.greater("d", (0.1, -0.2, 0.4, 30), "items")
    assert K.compound({"a": yes, "b": yes}).verdict == "reproduced"
    assert K.compound({"a": no, "b": no}).verdict == "not reproduced"
    assert K.compound({"a": yes, "b": no}).verdict == "partly"
    c = K.compound({"a": yes, "b": maybe})
    assert c.verdict == "inconclusive" and "[b]" in c.statistic and "a: reproduced" in c.note


def test_intervals():
    est, lo, hi, n = KI.bootstrap(np.arange(100.0))
    assert n == 100 and lo < est < hi and abs(est - 49.5) < 1e-9
    assert KI.bootstrap(np.arange(100.0)) == (est, lo, hi, n)  # deterministic
    m, lo, hi, n = KI.seed_interval([1.0, 2.0, 3.0])
    assert (m, n) == (2.0, 3) and lo < 2.0 < hi and abs((hi - lo) / 2 - 4.303 * 1 / math.sqrt(3)) < 1e-3
    assert math.isnan(KI.seed_interval([1.0])[1])
    p, lo, hi, n = KI.wilson(0, 20)
    assert p == 0 and lo == 0 and 0.1 < hi < 0.2


def test_table_kinds_and_checks(tmp_path):
    C = Claims("test", "smoke")
    C.add("C1", "x", PUB, "12 %", K.greater("d", (0.5, 0.1, 0.9, 30), "items"))
    C.add("H1", "ours", PUB, "1", K.less("d", (0.5, 0.1, 0.9, 30), "items"), kind="hypothesis")
    C.untestable("C2", "y", PUB, "needs Llama-3.1-8B")
    C.inconclusive("C3", "z", PUB, "0 sinks", "premise failed: no sinks formed")
    C.check("S1", "masked == skip", True, "max diff 1e-7")
    C.check("S2", "no hooks left", False, "1 hook left")
    C.save(tmp_path)
    t = pd.read_csv(tmp_path / "claims.csv", dtype=str, keep_default_na=False)
    ch = pd.read_csv(tmp_path / "checks.csv", dtype=str, keep_default_na=False)
    assert list(t.columns) == K.COLUMNS and list(t.claim_id) == ["C1", "H1", "C2", "C3"]
    assert list(t.verdict) == ["reproduced", "not reproduced", "not testable here", "inconclusive"]
    assert list(ch.verdict) == ["passed", "failed"] and set(ch.kind) == {"check"}
    c = glance.counts(tmp_path / "claims.csv")
    assert c["reproduced"] == 1 and c["not reproduced"] == 0 and c["checks passed"] == 1 and c["checks"] == 2
    assert "paper claims: 1 reproduced" in C.summary() and "1/2 passed" in C.summary()


def test_a_decided_row_needs_an_interval():
    C = Claims("test", "smoke")
    bare = K.Evidence("d", 1.0, math.nan, math.nan, 0, "items", "rule", "reproduced")
    with pytest.raises(ValueError, match="interval"):
        C.add("C1", "x", PUB, "1", bare)
    with pytest.raises(ValueError, match="kind"):
        C.add("C1", "x", PUB, "1", K.greater("d", (0.5, 0.1, 0.9, 30), "items"), kind="vibe")
    with pytest.raises(ValueError):
        C.add("C1", "x", PUB, "1", K.greater("d", (0.5, 0.1, 0.9, 30), "items"), kind="check")


def test_show_names_a_compound_rows_deciding_part(tmp_path):
    """A compound row's estimate, interval and n are its deciding part's: the printed table names that part after n
    (the statistic's ' [part]' suffix), so '3 seeds' is not read as the whole row's."""
    from headlab.claims import Claims, _part_of, compound, less

    assert _part_of("fusion minus GQA at 24k [67%]") == "67%" and _part_of("plain") == "" and _part_of(None) == ""
    C = Claims("dha_fusion", "x")
    parts = {"33%": less("d", (-0.74, -1.03, -0.45, 7), "seeds"), "67%": less("d", (0.004, -0.115, 0.122, 3), "seeds")}
    C.add("Z1", "s", PUB, "o", compound(parts))
    row = [ln for ln in C.show(folder=tmp_path).splitlines() if ln.strip().startswith("Z1")][0]
    assert "3 seeds (67%)" in row

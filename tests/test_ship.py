"""headlab.ship: a GGUF split for a size-limited transfer comes back byte-identical, or fails loudly."""

import json
import re

import pytest

from headlab import ship


@pytest.fixture
def blob(tmp_path):
    src = tmp_path / "model.gguf"
    src.write_bytes(bytes(range(256)) * 41 + b"tail")  # 10,500 bytes: three full parts and a short one
    return src


def test_round_trip_is_byte_identical(blob, tmp_path):
    mf = ship.pack("toy", src=blob, max_bytes=3000, ship_dir=tmp_path / "ship")
    m = json.loads(mf.read_text())
    assert [p["bytes"] for p in m["parts"]] == [3000, 3000, 3000, 1500]
    assert m["bytes"] == blob.stat().st_size == sum(p["bytes"] for p in m["parts"])
    (out,) = ship.unpack(tmp_path / "ship", tmp_path / "dest")
    assert out.name == "model.gguf" and out.read_bytes() == blob.read_bytes()
    assert ship.unpack(tmp_path / "ship", tmp_path / "dest") == [out]  # already there and checked: kept


def test_missing_part_is_named(blob, tmp_path):
    ship.pack("toy", src=blob, max_bytes=3000, ship_dir=tmp_path / "ship")
    (tmp_path / "ship" / "toy.002").unlink()
    with pytest.raises(ship.ShipError, match=r"1 of 4 parts have not arrived: toy\.002"):
        ship.unpack(tmp_path / "ship", tmp_path / "dest")
    assert not (tmp_path / "dest" / "model.gguf").exists()


def test_damaged_part_is_refused_and_nothing_is_left(blob, tmp_path):
    ship.pack("toy", src=blob, max_bytes=3000, ship_dir=tmp_path / "ship")
    p = tmp_path / "ship" / "toy.001"
    data = bytearray(p.read_bytes())
    data[10] ^= 1
    p.write_bytes(bytes(data))
    with pytest.raises(ship.ShipError, match=r"toy\.001 is damaged"):
        ship.unpack(tmp_path / "ship", tmp_path / "dest")
    assert list((tmp_path / "dest").iterdir()) == []


def test_no_manifest(tmp_path):
    with pytest.raises(ship.ShipError, match="no manifest"):
        ship.unpack(tmp_path, tmp_path / "dest")


def test_corpus_ships_and_is_checked_against_its_manifest(tmp_path):
    """ship pack corpus-big / unpack: the byte files arrive in the corpus folder, sha256-checked."""
    import sys

    import numpy as np

    from headlab import data
    from headlab.paths import DATA_DIR

    sys.path.insert(0, str(DATA_DIR))
    import build_big_corpus as B

    docs = [
        {"doc_id": f"prose/s/d{i:03d}", "type": "prose", "source": "s", "text": f"Text number {i}. " * (20 + i)}
        for i in range(60)
    ]
    src = tmp_path / "src"
    B.write_corpus(src, *B.split_docs(docs, per_mille=100), None)
    with pytest.raises(data.DataError, match="make corpus-big"):
        ship.corpus_tarball(tmp_path / "ship", tmp_path / "nothing")
    tarball = ship.corpus_tarball(tmp_path / "ship", src)
    ship.pack(ship.CORPUS, src=tarball, max_bytes=4096, ship_dir=tmp_path / "ship")
    dest = tmp_path / "there"
    assert ship.unpack(tmp_path / "ship", tmp_path / "gguf", corpus_dir=dest) == [dest]
    for split in ("train", "val"):
        got, want = data.big_corpus(split, "bytes", path=dest), data.big_corpus(split, "bytes", path=src)
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
    (dest / "val.bytes.u8").write_bytes(b"damaged")
    with pytest.raises(data.DataError, match="differs"):
        data.big_corpus("val", "bytes", path=dest, verify=True)
    ship.unpack(tmp_path / "ship", tmp_path / "gguf", corpus_dir=dest)  # a second unpack restores the files
    assert data.big_corpus("val", "bytes", path=dest, verify=True)[0].tobytes() == want[0].tobytes()


def test_plan_sizes_each_call_and_flags_one_over_64_mib(tmp_path):
    (tmp_path / ".ship").mkdir()
    for name, size in (("a.000", 30 * ship.MiB), ("a.001", 45 * ship.MiB)):
        with open(tmp_path / ".ship" / name, "wb") as f:  # sparse: the size is what counts
            f.truncate(size)
    plan = tmp_path / "plan.txt"
    plan.write_text(
        "# a comment\n.ship/a.000 | LIMIT=60 bash .ci/device/run.sh x | 2\n"
        ".ship/a.001 .ship/a.000 | ls | sort | 0.5\n- | bash .ci/device/run.sh y | 2\n"
    )
    calls = ship.read_plan(plan)
    assert [c["carry"] for c in calls] == [[".ship/a.000"], [".ship/a.001", ".ship/a.000"], []]
    assert [c["command"] for c in calls][1] == "ls | sort"  # a command may hold '|'
    assert [c["limit_s"] for c in calls] == [60, None, None]
    rows = ship.check_plan(calls, root=tmp_path, tree=20 * ship.MiB)
    assert [r["total"] // ship.MiB for r in rows] == [50, 95, 20]
    assert [r["fits"] for r in rows] == [True, False, True]
    assert [r["capped"] for r in rows] == [True, True, False]  # a run without LIMIT= could eat the lease
    assert ship.plan_minutes(rows) == ship.START_MINUTES + 4.5
    with pytest.raises(ship.ShipError, match="carry path .ship/nope does not exist"):
        ship.check_plan([{"carry": [".ship/nope"], "command": "ls", "minutes": 1}], root=tmp_path, tree=0)
    nominal = {".ship/nope": 5}
    assert ship.carry_bytes([".ship/nope"], tmp_path, nominal) == 5
    for bad, match in (
        ("only | two\n", "want 'carry | command | minutes'"),
        ("a | ls | soon\n", "minutes must be a number, got 'soon'"),
        (" ".join(f"p{i}" for i in range(9)) + " | ls | 1\n", "at most 8 paths"),
    ):
        plan.write_text(bad)
        with pytest.raises(ship.ShipError, match=re.escape(match)):
            ship.read_plan(plan)


def test_the_committed_device_plan_fits_a_lease_with_the_repository_as_it_is():
    """.ci/device/plan.txt: every carried path is one `make device-bundle` builds, every run is capped by its LIMIT,
    the minutes with the machine's start fit the 15 a lent session has, and every call's transfer (this working tree
    plus the nominal wheel and part sizes, built or not) fits 64 MiB, so a repository grown too big shows here."""
    from headlab import models

    calls = ship.read_plan()
    assert all(p == ".whl" or p.startswith(".ship/smollm2-135m.") for c in calls for p in c["carry"])
    gguf = models.gguf_path("smollm2-135m").stat().st_size
    nominal = ship.nominal_sizes(gguf)
    shipped = [p for c in calls for p in c["carry"] if p.startswith(".ship/")]
    assert sorted(shipped) == sorted(k for k in nominal if k.startswith(".ship/"))  # every part, once
    assert all(c["command"].startswith(("LIMIT=", "ls ")) for c in calls)
    rows = ship.check_plan(calls, nominal=nominal)
    assert all(r["capped"] for r in rows) and ship.plan_minutes(rows) <= ship.LEASE_MINUTES
    assert all(r["fits"] for r in rows), [round(r["total"] / ship.MiB, 1) for r in rows]

"""Atomic outputs and provenance: no half-written files, no machine paths, stable digests."""

import os

import pandas as pd
import pytest

from mibgkit.outputs import atomic_path, write_csv, write_text
from mibgkit.provenance import inputs_digest, provenance_table, relative_name


def test_failed_write_leaves_previous_file_and_no_temporary(tmp_path):
    target = tmp_path / "features.csv"
    write_text(target, "old\n")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["features.csv"]


def test_csv_bytes_are_reproducible(tmp_path):
    df = pd.DataFrame({"a": [0.1 + 0.2, 1 / 3], "b": ["x", "y"]})
    write_csv(tmp_path / "a.csv", df)
    write_csv(tmp_path / "b.csv", pd.read_csv(tmp_path / "a.csv", float_precision="round_trip"))
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    assert pd.read_csv(tmp_path / "a.csv", float_precision="round_trip")["a"].tolist() == df["a"].tolist()  # full precision


def test_digest_depends_on_content_not_location(tmp_path):
    for root in ("one", "two"):
        d = tmp_path / root / "p1"
        d.mkdir(parents=True)
        (d / "spect.dcm").write_bytes(b"abc")
    d1, t1 = inputs_digest([tmp_path / "one" / "p1"], tmp_path / "one")
    d2, _ = inputs_digest([tmp_path / "two" / "p1"], tmp_path / "two")
    assert d1 == d2 and t1["file"].tolist() == ["p1/spect.dcm"]
    (tmp_path / "two" / "p1" / "spect.dcm").write_bytes(b"abd")
    assert inputs_digest([tmp_path / "two" / "p1"], tmp_path / "two")[0] != d1


def test_provenance_shows_no_absolute_paths(tmp_path):
    (tmp_path / "data_manifest.csv").write_text("x")
    t = provenance_table({"manifest": str(tmp_path / "data_manifest.csv"), "mtv_method": "roi"},
                         inputs=[tmp_path / "data_manifest.csv"], base=tmp_path)
    text = t.to_string()
    assert str(tmp_path) not in text
    items = dict(zip(t["item"], t["value"]))
    assert items["parameter: manifest"] == "data_manifest.csv"
    assert items["input files"].startswith("1 files") and len(items["input digest (SHA-256)"]) == 64
    assert "version: numpy" in items and "mibgkit commit" in items
    assert len(items["SHA-256 of data_manifest.csv"]) == 64
    assert relative_name("/somewhere/else/x.csv", tmp_path) == "x.csv"

"""Several readers: readers.csv validation, each reader measured as the manifest is, ROI overlap, and
the synthetic cohort's further readers."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from mibgkit import readers as rd
from mibgkit.errors import ManifestError, QCWarning
from mibgkit.extraction import extract
from mibgkit.manifest import read_manifest, read_readers
from mibgkit.synth.readers import HABITS, READERS, reader_mask


@pytest.fixture(scope="module")
def cohort(small_cohort):
    manifest = read_manifest(small_cohort / "data_manifest.csv")
    return small_cohort, manifest, rd.find_readers(manifest)


def _write(tmp_path, text: str):
    path = tmp_path / "readers.csv"
    path.write_text(text)
    return path


def test_synthetic_cohort_writes_three_readers_r1_being_the_manifest(cohort):
    folder, manifest, readers = cohort
    assert list(dict.fromkeys(readers["reader"])) == ["R1", *READERS]
    assert len(readers) == 3 * len(manifest)
    r1 = readers[readers.reader == "R1"].set_index("patient_id")
    for pid in manifest.index:
        assert r1.at[pid, "roi"] == manifest.at[pid, "roi"]
        assert r1.at[pid, "markups"] == manifest.at[pid, "markups"]


def test_each_reader_measured_as_extract_measures_its_files(cohort, tmp_path):
    folder, manifest, readers = cohort
    long, qc = rd.extract_readers(manifest, readers, parts_dir=tmp_path / "parts", progress=False)
    assert (qc.status != "error").all()
    assert len(long) == len(readers)
    # reader R2 of the first patient, by hand: the manifest row with R2's ROI and markups
    pid = manifest.index[0]
    own = readers[(readers.patient_id == pid) & (readers.reader == "R2")].iloc[0]
    row = manifest.loc[[pid]].copy()
    row["roi"], row["markups"] = own["roi"], own["markups"]
    row.attrs = dict(manifest.attrs)
    direct, _ = extract(row, progress=False).tables()
    got = long[(long.patient_id == pid) & (long.reader == "R2")].iloc[0]
    for key in ("tmax", "lmax", "mmax", "tmax_lmax", "asphericity", "mtv_ml"):
        assert got[key] == direct.iloc[0][key], key
    # R1 is the manifest: same numbers as the cohort's own extraction
    cohort_features, _ = extract(manifest, progress=False).tables()
    r1 = long[long.reader == "R1"].set_index("patient_id")
    pd.testing.assert_series_equal(r1["asphericity"], cohort_features.set_index("patient_id")["asphericity"],
                                   check_names=False)
    # readers differ (the synthetic readers draw differently)
    assert not np.allclose(long[long.reader == "R2"]["mtv_ml"].to_numpy(), r1["mtv_ml"].to_numpy())


def test_one_part_per_patient_and_reader_reused_on_a_rerun(cohort, tmp_path):
    folder, manifest, readers = cohort
    parts = tmp_path / "parts"
    rd.extract_readers(manifest, readers, parts_dir=parts, progress=False)
    n_parts = len(list(parts.glob("*.csv")))
    assert n_parts == len(readers)
    before = {p.name: p.stat().st_mtime_ns for p in parts.glob("*.csv")}
    rd.extract_readers(manifest, readers, parts_dir=parts, progress=False)
    assert {p.name: p.stat().st_mtime_ns for p in parts.glob("*.csv")} == before


def test_reader_without_markups_keeps_the_manifests_spheres(cohort, tmp_path):
    folder, manifest, readers = cohort
    own = readers[readers.reader == "R2"].copy()
    own["markups"] = None
    m = rd.reader_manifest(manifest, own, "R2")
    assert list(m["markups"]) == list(manifest.loc[m.index, "markups"])
    assert list(m["roi"]) == list(own["roi"])


def test_roi_overlaps_dice_and_hd95_per_pair(cohort):
    folder, manifest, readers = cohort
    ov = rd.roi_overlaps(manifest, readers)
    assert len(ov) == 3 * len(manifest)
    assert ov["dice"].between(0.3, 1.0).all()
    assert (ov["hd95_mm"] >= 0).all()
    r1 = ov[(ov.reader_a == "R1") & (ov.reader_b == "R2")]
    assert (r1["dice"] < 1.0).all()


def test_unreadable_reader_roi_is_an_error_row_not_a_stop(cohort, tmp_path):
    folder, manifest, readers = cohort
    bad = readers.copy()
    pid = manifest.index[0]
    broken = tmp_path / "broken.seg.nrrd"
    broken.write_text("not an image")
    bad.loc[(bad.patient_id == pid) & (bad.reader == "R3"), "roi"] = str(broken)
    ov = rd.roi_overlaps(manifest, bad)
    errors = ov[ov["error"].notna()]
    assert set(errors.patient_id) == {pid} and len(errors) == 2
    assert "broken.seg.nrrd" in errors.iloc[0]["error"]
    long, qc = rd.extract_readers(manifest, bad, parts_dir=None, progress=False)
    failed = qc[qc.status == "error"]
    assert list(zip(failed.patient_id, failed.reader)) == [(pid, "R3")]


# ------------------------------------------------------------------------------------------ readers.csv


def test_readers_csv_errors_name_the_row_and_what_is_wrong(cohort):
    folder, manifest, _ = cohort
    tmp = folder / "bad_readers"
    tmp.mkdir(exist_ok=True)
    cases = {
        "patient_id,reader\nNB001,R1\n": "missing required column(s): roi",
        "patient_id,reader,roi\nNB001,<b>x</b>,a.nrrd\n": "row 2: reader",
        "patient_id,reader,roi\nNB001,R1,a.nrrd\nNB001,R1,b.nrrd\n": "duplicate patient_id × reader: NB001 × R1",
        "patient_id,reader,roi\nNB999,R1,a.nrrd\n": "no row of the readers table is a patient of the manifest",
        "patient_id,reader,roi\nNB001,R1,../../etc/passwd\n": "leaves the readers table's folder",
        "patient_id,reader,roi,roi_label\nNB001,R1,a.nrrd,x\n": "roi_label = 'x' is not a number",
    }
    for text, message in cases.items():
        path = tmp / "readers.csv"
        path.write_text(text)
        with pytest.raises(ManifestError) as info:
            read_readers(path, manifest)
        assert message in str(info.value), text
        assert "readers.csv" in str(info.value)


def test_rows_of_other_patients_are_left_out_with_a_warning(cohort):
    folder, manifest, _ = cohort
    tmp = folder / "subset_readers"
    tmp.mkdir(exist_ok=True)
    path = tmp / "readers.csv"
    path.write_text("patient_id,reader,roi\nNB001,R1,a.nrrd\nNB999,R1,b.nrrd\n")
    with pytest.warns(QCWarning, match=r"NB999 \(row 3\)"):
        df = read_readers(path, manifest)
    assert list(df.patient_id) == ["NB001"]


def test_no_readers_file_means_no_second_reader(tmp_path, cohort):
    folder, manifest, _ = cohort
    m = manifest.copy()
    m.attrs = {"manifest": str(tmp_path / "data_manifest.csv")}
    assert rd.find_readers(m) is None


# ------------------------------------------------------------------------------------------ the synthetic readers


def _ball(radius_vox: float, n: int = 40) -> np.ndarray:
    z, y, x = np.indices((n, n, n)) - (n - 1) / 2
    return x**2 + y**2 + z**2 <= radius_vox**2


def test_reader_mask_is_deterministic_padded_and_overlaps_like_a_human_reader():
    mask = _ball(12)
    rng = lambda: np.random.default_rng(np.random.SeedSequence([7, 2]))  # noqa: E731
    a, pad = reader_mask(mask, (2.0, 1.5, 1.5), HABITS["R2"], rng())
    b, _ = reader_mask(mask, (2.0, 1.5, 1.5), HABITS["R2"], rng())
    np.testing.assert_array_equal(a, b)
    assert a.shape == tuple(n + 2 * p for n, p in zip(mask.shape, pad))
    padded = np.pad(mask, [(p, p) for p in pad])
    dice = 2 * (a & padded).sum() / (a.sum() + padded.sum())
    assert 0.6 < dice < 0.99
    # the core of the tumour is never missed
    from scipy import ndimage

    depth = ndimage.distance_transform_edt(padded, sampling=(2.0, 1.5, 1.5))
    assert a[depth >= 0.5 * depth.max()].all()
    labels, n = ndimage.label(a)
    assert n == 1


@pytest.mark.parametrize("bias_mm", [-4.0, 1.0, 6.0, 14.0])
def test_reader_boundary_moves_by_the_signed_distance(bias_mm):
    """With a fixed offset (no spread, wobble, blob or missed lobe) the reader's ROI is every voxel
    whose signed distance to the boundary is below it, distances taken over the whole padded grid."""
    from dataclasses import replace

    from scipy import ndimage

    h = (5.0, 1.5, 1.5)
    mask = np.zeros((14, 60, 50), bool)
    mask[4:10, 10:40, 8:20] = True
    mask[6:8, 30:52, 18:44] = True  # an L: nearest boundary points in several directions
    habit = replace(HABITS["R2"], bias_mm=bias_mm, spread_mm=0.0, wobble_mm=0.0, p_adjacent=0.0,
                    p_lobe_missed=0.0)
    got, pad = reader_mask(mask, h, habit, np.random.default_rng(5))
    m = np.pad(mask, [(p, p) for p in pad])
    signed = np.where(m, -ndimage.distance_transform_edt(m, sampling=h), ndimage.distance_transform_edt(~m, sampling=h))
    want = (signed < bias_mm) | (signed <= 0.5 * signed.min())
    labels, n = ndimage.label(want)
    if n > 1:
        want = labels == 1 + int(np.argmax(np.bincount(labels.ravel())[1:]))
    np.testing.assert_array_equal(got, want)
    assert got.sum() >= mask.sum() if bias_mm > 0 else got.sum() < mask.sum()


def test_report_07_renders_without_a_second_reader(small_cohort, tmp_path):
    from mibgkit.report import run_report

    cohort = tmp_path / "cohort"
    shutil.copytree(small_cohort, cohort)
    (cohort / "readers.csv").unlink()
    run_report(cohort / "data_manifest.csv", out_dir=tmp_path / "out", only=["07_reader_agreement"],
               parameters={"poisson_draws": 1}, progress=False)
    html = (tmp_path / "out" / "07_reader_agreement.html").read_text()
    assert "No second reader given" in html
    assert "Perturbations: would the patient still be on the same side?" in html
    assert "change side at 0.342" in html  # the verdict still speaks, from the perturbations


def test_measured_readers_keep_the_readers_csv_order_and_drop_readers_without_a_measurement():
    from mibgkit.workbook.reader_agreement import measured_readers

    readers = pd.DataFrame({"patient_id": ["A", "A", "A", "B", "B"], "reader": ["R2", "R1", "R3", "R2", "R1"]})
    long = pd.DataFrame({"patient_id": ["B", "A", "A"], "reader": ["R3", "R1", "R3"]})
    assert measured_readers(readers, long) == ["R1", "R3"]
    assert measured_readers(readers, long.iloc[0:0]) == []


@pytest.mark.parametrize("unreadable, expect", [
    (("R1",), "Bland–Altman"),  # the reference falls to R2, the first reader still measured
    (("R2", "R3"), "Sections 2–5 are not computed: the ROIs of 1 of the 3 readers could be measured"),
])
def test_report_07_renders_when_readers_rois_cannot_be_read(small_cohort, tmp_path, unreadable, expect):
    from mibgkit.report import run_report

    cohort = tmp_path / "cohort"
    shutil.copytree(small_cohort, cohort)
    r = pd.read_csv(cohort / "readers.csv", dtype=str, keep_default_na=False)
    r.loc[r["reader"].isin(unreadable), "roi_segment"] = "no such segment"
    r.to_csv(cohort / "readers.csv", index=False)
    run_report(cohort / "data_manifest.csv", out_dir=tmp_path / "out", only=["07_reader_agreement"],
               parameters={"poisson_draws": 1}, progress=False)
    html = (tmp_path / "out" / "07_reader_agreement.html").read_text()
    assert "Reader measurements that failed" in html
    assert expect in html
    if unreadable == ("R1",):
        assert "Not computed" not in html
        assert ">R3<" in html and ">R2<" in html and "vs R1" not in html

"""DICOM out: ``mibgkit extract --dicom DIR`` writes per patient a SEG whose segments are the
measured voxels and an SR whose values are the FEATURES.csv cells, with the source SPECT's identity,
byte-identical on a re-run."""

from __future__ import annotations

import math
from pathlib import Path

import highdicom as hd
import numpy as np
import pandas as pd
import pydicom
import pytest
import SimpleITK as sitk

from mibgkit import cli, dicom_out, rois
from mibgkit.errors import OutputError
from mibgkit.extraction import dicom_folder_for, extract, read_features
from mibgkit.features import FEATURE_COLUMNS, extract_patient
from mibgkit.geometry import roi_on_grid
from mibgkit.manifest import read_manifest

IDENTITY = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyID",
            "StudyDate", "StudyTime", "AccessionNumber", "ReferringPhysicianName")

#: UCUM code of each unit kind of dicom_out.MEASUREMENTS (the synthetic SPECT is in counts).
UNITS = {"uptake": "{counts}", "mL": "mL", "1": "1"}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    from mibgkit.synth.generate import generate_cohort

    out = tmp_path_factory.mktemp("dicom_out")
    generate_cohort(out, n=2, seed=11, progress=False, workers=1)
    return out


@pytest.fixture(scope="module")
def run(cohort) -> dict:
    """``mibgkit extract --dicom`` on the cohort: the DICOM folder, the tables, the manifest."""
    dicom = cohort / "dicom"
    assert cli.main(["extract", str(cohort / "data_manifest.csv"), "-o", str(cohort / "out" / "features.csv"),
                     "--dicom", str(dicom), "-q"]) == 0
    features, qc = read_features(cohort / "out" / "features.csv")
    return {"dicom": dicom, "features": features, "qc": qc, "manifest": read_manifest(cohort / "data_manifest.csv")}


def _measured(row) -> dict:
    masks: dict = {}
    extract_patient(row, masks=masks)
    return masks


def test_every_patient_gets_a_seg_and_an_sr(run):
    assert list(run["qc"].status) == ["ok", "ok"]
    for pid in run["manifest"].patient_id:
        folder = dicom_folder_for(run["dicom"], pid)
        assert sorted(p.name for p in folder.iterdir()) == ["seg.dcm", "sr.dcm"]
        seg = hd.seg.segread(folder / "seg.dcm")
        assert [s.SegmentLabel for s in seg.SegmentSequence] == list(dicom_out.SEGMENT_LABELS)
        assert seg.SegmentationType == "BINARY"
        assert [int(s.SegmentNumber) for s in seg.SegmentSequence] == [1, 2, 3, 4]
        meanings = [(s.SegmentedPropertyCategoryCodeSequence[0].CodeMeaning,
                     s.SegmentedPropertyTypeCodeSequence[0].CodeMeaning, s.SegmentAlgorithmType,
                     s.SegmentationAlgorithmIdentificationSequence[0].AlgorithmName)
                    for s in seg.SegmentSequence]
        assert meanings == [("Morphologically Abnormal Structure", "Neoplasm", "MANUAL", "mibgkit"),
                            ("Tissue", "Liver", "SEMIAUTOMATIC", "mibgkit"),
                            ("Tissue", "Skeletal muscle", "SEMIAUTOMATIC", "mibgkit"),
                            ("Tissue", "Skeletal muscle", "SEMIAUTOMATIC", "mibgkit")]
        sides = [s.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence[0].CodeMeaning
                 for s in seg.SegmentSequence[2:]]
        assert sides == ["Left", "Right"]


def test_seg_voxels_are_the_measured_masks(run):
    for _, row in run["manifest"].iterrows():
        masks = _measured(row.to_dict())
        spect = masks["spect"]
        seg = dicom_folder_for(run["dicom"], row.patient_id) / "seg.dcm"
        for name in dicom_out.SEGMENT_LABELS:
            back = rois.read_roi(seg, segment=name, patient=row.patient_id)
            got = sitk.GetArrayFromImage(roi_on_grid(back, spect)).astype(bool)
            want = sitk.GetArrayFromImage(roi_on_grid(masks[name], spect)).astype(bool)
            assert got.sum() > 0
            np.testing.assert_array_equal(got, want, err_msg=f"{row.patient_id} {name}")


def test_seg_frames_reference_the_nm_frames_they_lie_on(run):
    """The NM multi-frame source has no Plane Position Sequence: SEG frame positions follow the NM rule."""
    row = run["manifest"].iloc[0]
    source = pydicom.dcmread(row.spect, stop_before_pixels=True)
    det = source.DetectorInformationSequence[0]
    first = np.asarray(det.ImagePositionPatient, float)
    step = float(source.SpacingBetweenSlices)
    index = list(source.SliceVector)
    iop = np.asarray(det.ImageOrientationPatient, float)
    normal = np.cross(iop[:3], iop[3:])
    seg = pydicom.dcmread(dicom_folder_for(run["dicom"], row.patient_id) / "seg.dcm")
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source.SeriesInstanceUID
    assert seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == \
        source.SOPInstanceUID
    for item in seg.PerFrameFunctionalGroupsSequence:
        ref = item.DerivationImageSequence[0].SourceImageSequence[0]
        assert ref.ReferencedSOPInstanceUID == source.SOPInstanceUID
        frame = int(ref.ReferencedFrameNumber)
        expected = first + (index[frame - 1] - index[0]) * step * normal
        np.testing.assert_allclose(np.asarray(item.PlanePositionSequence[0].ImagePositionPatient, float),
                                   expected, atol=1e-4)


def test_seg_as_the_manifest_roi_gives_the_same_features(run, cohort):
    manifest = pd.read_csv(cohort / "data_manifest.csv", dtype=str, keep_default_na=False)
    manifest["roi"] = [f"dicom/{pid}/seg.dcm" for pid in manifest.patient_id]
    manifest["roi_segment"] = "tumour MTV"
    manifest.to_csv(cohort / "seg_manifest.csv", index=False)
    again = extract(read_manifest(cohort / "seg_manifest.csv"), progress=False)
    features, qc = again.tables()
    assert list(qc.status) == ["ok", "ok"]
    for pid in features.index:
        for col in FEATURE_COLUMNS:
            assert features.at[pid, col] == pytest.approx(run["features"].at[pid, col], rel=1e-12, abs=0), (pid, col)
        for col in ("tmax", "tmean", "lmax", "lmean", "mmax", "mmean", "mtv_ml", "asphericity", "roi_n_voxels"):
            assert features.at[pid, col] == run["features"].at[pid, col], (pid, col)


def _sr_values(path: Path) -> tuple[dict, dict]:
    """``{(segment label, column): (value, unit)}`` from an SR, and the groups' references."""
    sr = hd.sr.srread(path)
    concepts = dicom_out._concepts()
    by_code = {}
    for label, group in dicom_out.MEASUREMENTS.items():
        for col, concept, derivation, unit in group:
            code = lambda key: None if key is None else (concepts[key].value, concepts[key].scheme_designator)
            by_code[(label, code(concept), code(derivation))] = col
    values, refs = {}, {}
    for group in sr.content.get_volumetric_roi_measurement_groups():
        segment = group.referenced_segment
        label = str(group.tracking_identifier)
        refs[label] = segment
        for m in group.get_measurements():
            key = (label, (m.name.value, m.name.scheme_designator),
                   None if m.derivation is None else (m.derivation.value, m.derivation.scheme_designator))
            values[(label, by_code[key])] = (m.value, m.unit.value)
    return values, refs


def test_sr_values_and_units_equal_the_features_csv(run):
    table = pd.read_csv(run["dicom"].parent / "out" / "features.csv", dtype={"patient_id": str},
                        float_precision="round_trip").set_index("patient_id")
    for pid in table.index:
        folder = dicom_folder_for(run["dicom"], pid)
        values, refs = _sr_values(folder / "sr.dcm")
        expected = {(label, col): (float(table.at[pid, col]), UNITS[unit])
                    for label, group in dicom_out.MEASUREMENTS.items() for col, _, _, unit in group}
        assert values == expected, pid
        assert len(values) == 17
        seg = pydicom.dcmread(folder / "seg.dcm", stop_before_pixels=True)
        spect = pydicom.dcmread(run["manifest"].at[pid, "spect"], stop_before_pixels=True)
        for number, label in enumerate(dicom_out.SEGMENT_LABELS, start=1):
            segment = refs[label]
            assert segment.referenced_sop_instance_uid == seg.SOPInstanceUID
            assert list(segment.referenced_segment_numbers) == [number]
            assert segment.source_series_for_segmentation.value == spect.SeriesInstanceUID
        sr = pydicom.dcmread(folder / "sr.dcm")
        evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence
        assert {s.SeriesInstanceUID for s in evidence} == {spect.SeriesInstanceUID, seg.SeriesInstanceUID}
        assert sr.CodingSchemeIdentificationSequence[0].CodingSchemeDesignator == dicom_out.PRIVATE_SCHEME


def test_both_files_carry_the_source_identity(run):
    for _, row in run["manifest"].iterrows():
        source = pydicom.dcmread(row.spect, stop_before_pixels=True)
        for name in ("seg.dcm", "sr.dcm"):
            ds = pydicom.dcmread(dicom_folder_for(run["dicom"], row.patient_id) / name, stop_before_pixels=True)
            for keyword in IDENTITY:
                assert str(ds.get(keyword, "")) == str(source.get(keyword, "")), (name, keyword)
            assert ds.ContentDate == source.ContentDate and ds.ContentTime == source.ContentTime
            assert "InstanceCreationTime" not in ds
        seg = pydicom.dcmread(dicom_folder_for(run["dicom"], row.patient_id) / "seg.dcm", stop_before_pixels=True)
        assert seg.FrameOfReferenceUID == source.FrameOfReferenceUID


def test_rerun_writes_identical_bytes_and_reuses_what_is_there(run, cohort):
    manifest = run["manifest"]
    first = {pid: {n: (dicom_folder_for(run["dicom"], pid) / n).read_bytes() for n in ("seg.dcm", "sr.dcm")}
             for pid in manifest.patient_id}
    # a fresh run (no parts) into another folder measures again: the same bytes
    other = cohort / "dicom_again"
    extract(manifest, cohort / "again" / "features.csv", dicom=other, progress=False)
    for pid, files in first.items():
        for name, data in files.items():
            assert (dicom_folder_for(other, pid) / name).read_bytes() == data, (pid, name)
    # files present: every part is reused, nothing rewritten
    stamp = {p: p.stat().st_mtime_ns for p in other.rglob("*.dcm")}
    again = extract(manifest, cohort / "again" / "features.csv", dicom=other, progress=False)
    assert again.n_cached == 2 and {p: p.stat().st_mtime_ns for p in other.rglob("*.dcm")} == stamp
    # one file missing: that patient is measured again (its part notwithstanding) and the file restored
    pid = manifest.patient_id.iloc[1]
    (dicom_folder_for(other, pid) / "sr.dcm").unlink()
    again = extract(manifest, cohort / "again" / "features.csv", dicom=other, progress=False)
    assert again.n_cached == 1
    assert (dicom_folder_for(other, pid) / "sr.dcm").read_bytes() == first[pid]["sr.dcm"]
    assert not list(other.rglob(".*.part"))
    assert oct((dicom_folder_for(other, pid) / "sr.dcm").stat().st_mode & 0o777) == \
        oct((dicom_folder_for(other, pid) / "seg.dcm").stat().st_mode & 0o777)


def test_unwritable_dicom_folder_is_a_clear_error(run, cohort, tmp_path):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="cannot create the DICOM output folder") as info:
        extract(run["manifest"], tmp_path / "f.csv", dicom=blocker / "dicom", progress=False)
    assert "not_a_folder" in str(info.value)
    assert not (tmp_path / "f.csv").exists()
    assert cli.main(["extract", str(cohort / "data_manifest.csv"), "-o", str(tmp_path / "g.csv"),
                     "--dicom", str(blocker / "dicom"), "-q"]) == 2


def test_one_patient_failing_to_write_is_a_qc_error_and_the_batch_goes_on(run, tmp_path):
    manifest = run["manifest"]
    bad, good = manifest.patient_id
    dicom = tmp_path / "dicom"
    dicom.mkdir()
    (dicom / bad).write_text("a file where the patient's folder belongs")
    result = extract(manifest, tmp_path / "f.csv", dicom=dicom, progress=False)
    features, qc = result.tables()
    qc = qc.set_index("patient_id")
    assert qc.at[bad, "status"] == "error" and qc.at[bad, "error_type"] == "OutputError"
    assert qc.at[bad, "message"].startswith("DICOM output: cannot write here")
    assert qc.at[bad, "file"] == f"dicom/{bad}/seg.dcm"
    assert qc.at[good, "status"] == "ok" and list(features.index) == [good]
    assert (dicom / good / "sr.dcm").is_file()
    # fixed: the re-run writes the missing files (the features part was kept)
    (dicom / bad).unlink()
    result = extract(manifest, tmp_path / "f.csv", dicom=dicom, progress=False)
    assert result.n_errors == 0 and (dicom / bad / "seg.dcm").is_file()


def test_a_value_that_is_not_a_number_is_left_out(run, tmp_path):
    row = run["manifest"].iloc[0].to_dict()
    masks: dict = {}
    feat = extract_patient(row, masks=masks)
    feat["tmax_mmax"] = math.nan
    out = dicom_out.write_dicom_results(row["spect"], masks, feat, tmp_path, patient_id=row["patient_id"])
    values, _ = _sr_values(out["sr"])
    assert ("tumour MTV", "tmax_mmax") not in values and ("tumour MTV", "tmax_lmax") in values
    assert len(values) == 16


def test_threshold_mtv_is_semiautomatic_and_its_voxels_are_written(run, tmp_path):
    row = run["manifest"].iloc[0].to_dict()
    masks: dict = {}
    feat = extract_patient(row, mtv_method="percent_max", mtv_params={"fraction": 0.4}, masks=masks)
    out = dicom_out.write_dicom_results(row["spect"], masks, feat, tmp_path, patient_id=row["patient_id"])
    seg = pydicom.dcmread(out["seg"], stop_before_pixels=True)
    assert seg.SegmentSequence[0].SegmentAlgorithmType == "SEMIAUTOMATIC"
    spect = masks["spect"]
    back = sitk.GetArrayFromImage(roi_on_grid(rois.read_roi(out["seg"], segment="tumour MTV"), spect))
    assert back.sum() == feat["mtv_n_voxels"] < feat["roi_n_voxels"]
    np.testing.assert_array_equal(back, sitk.GetArrayFromImage(roi_on_grid(masks["tumour MTV"], spect)))
    values, _ = _sr_values(out["sr"])
    assert values[("tumour MTV", "mtv_ml")][0] == feat["mtv_ml"]


def test_single_frame_nm_folder_and_bq_per_ml(tmp_path):
    """A folder of single-frame NM files (hermes layout): every SEG frame references the file it lies on."""
    from mibgkit.synth.generate import generate_cohort

    generate_cohort(tmp_path / "c", n=1, seed=11, progress=False, workers=1, vendor="hermes")
    row = read_manifest(tmp_path / "c" / "data_manifest.csv").iloc[0].to_dict()
    masks: dict = {}
    feat = extract_patient(row, masks=masks)
    feat["uptake_unit"] = "Bq/ml"
    out = dicom_out.write_dicom_results(row["spect"], masks, feat, tmp_path / "out", patient_id=row["patient_id"])
    spect = masks["spect"]
    back = rois.read_roi(out["seg"], segment="tumour MTV")
    np.testing.assert_array_equal(sitk.GetArrayFromImage(roi_on_grid(back, spect)),
                                  sitk.GetArrayFromImage(roi_on_grid(masks["tumour MTV"], spect)))
    files = {}
    for f in Path(row["spect"]).glob("*.dcm"):
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        files[ds.SOPInstanceUID] = np.asarray(ds.ImagePositionPatient, float)
    seg = pydicom.dcmread(out["seg"])
    assert len(seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence) == len(files)
    for item in seg.PerFrameFunctionalGroupsSequence:
        uid = item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        np.testing.assert_allclose(files[uid], np.asarray(item.PlanePositionSequence[0].ImagePositionPatient, float),
                                   atol=1e-4)
    values, _ = _sr_values(out["sr"])
    assert values[("tumour MTV", "tmax")] == (feat["tmax"], "Bq/mL")
    assert values[("tumour MTV", "mtv_ml")] == (feat["mtv_ml"], "mL")


def test_a_spect_that_is_not_dicom_is_refused(run, tmp_path):
    from mibgkit.errors import InputError

    row = run["manifest"].iloc[0].to_dict()
    masks = _measured(row)
    nifti = tmp_path / "spect.nii.gz"
    sitk.WriteImage(masks["spect"], str(nifti))
    with pytest.raises(InputError, match="DICOM output needs a DICOM SPECT"):
        dicom_out.write_dicom_results(nifti, masks, None, tmp_path / "out", patient_id="NB001")
    assert not (tmp_path / "out").exists()

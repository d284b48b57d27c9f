"""Bad input, class by class: each gives an error or a QC warning that names the patient, the file and
what is wrong, and a batch carries on past it.

Image-level classes run through batch extraction (``mibgkit.extraction.extract``): one healthy patient and one
patient with the defect; the QC table must name the bad patient, its file and the problem, and the
healthy patient must still be measured. Table-level classes run through the manifest and clinical
readers. Statistics-level classes (constant covariate, all values missing) are in the stats tests.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from mibgkit.cohort import analysis_table
from mibgkit.extraction import extract
from mibgkit.errors import ManifestError, StatisticsError
from mibgkit.manifest import read_clinical, read_manifest
from mibgkit.slicer_write import write_markups, write_segmentation
from mibgkit.stats import cox_univariate
from mibgkit.synth.dicom import write_ct_series
from mibgkit.synth.nm_layouts import write_nm_multiframe

SPACING = (3.0, 3.0, 3.0)
ORIGIN = (-96.0, -96.0, -60.0)
CENTRES = {"liver": (70.0, 0.0, 0.0), "muscle_left": (-60.0, 30.0, 0.0), "muscle_right": (-60.0, -30.0, 0.0)}


def spect_array():
    z, y, x = np.meshgrid(*[ORIGIN[2 - a] + 3.0 * np.arange(n) for a, n in enumerate((40, 64, 64))], indexing="ij")
    arr = np.full(x.shape, 5.0)
    arr[x > 40] = 20.0
    arr[(x - 10) ** 2 + (y - 5) ** 2 + z**2 <= 20**2] = 120.0
    return arr


def roi_image(centre=(10.0, 5.0, 0.0), radius=20.0):
    """A ball of ``radius`` mm at ``centre`` (LPS mm) on a 1.5 mm grid of its own."""
    img = sitk.Image(60, 60, 44, sitk.sitkUInt8)
    img.SetSpacing((1.5, 1.5, 1.5))
    img.SetOrigin(tuple(c - 44.25 for c in centre))
    zz, yy, xx = np.meshgrid(*[np.arange(n) * 1.5 - 44.25 for n in (44, 60, 60)], indexing="ij")
    a = (xx**2 + yy**2 + zz**2 <= radius**2).astype(np.uint8)
    out = sitk.GetImageFromArray(a)
    out.CopyInformation(img)
    return out


def write_patient(root: Path, pid: str) -> dict:
    d = root / "patients" / pid
    d.mkdir(parents=True)
    write_nm_multiframe(spect_array().astype(np.uint16), d / "spect.dcm", spacing=SPACING, origin=ORIGIN,
                        identity={"PatientName": f"HIDDEN^{pid}", "PatientID": f"ID-{pid}"})
    write_segmentation(d / "tumour.seg.nrrd", {"tumour": roi_image()})
    write_markups(d / "spheres.mrk.json", CENTRES)
    return {"patient_id": pid, "spect": f"patients/{pid}/spect.dcm", "roi": f"patients/{pid}/tumour.seg.nrrd",
            "roi_segment": "tumour", "markups": f"patients/{pid}/spheres.mrk.json", "efs_days": 400.0,
            "efs_event": 1}


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    root = tmp_path_factory.mktemp("template")
    rows = [write_patient(root, "OK01"), write_patient(root, "BAD01")]
    pd.DataFrame(rows).to_csv(root / "data_manifest.csv", index=False)
    return root


@pytest.fixture
def cohort(template, tmp_path):
    root = tmp_path / "cohort"
    shutil.copytree(template, root)
    return root


def run(root: Path, manifest_rows=None):
    if manifest_rows is not None:
        pd.DataFrame(manifest_rows).to_csv(root / "data_manifest.csv", index=False)
    features, qc = extract(read_manifest(root / "data_manifest.csv"), progress=False).tables()
    qc = qc.set_index("patient_id")
    assert "OK01" in features.index and qc.at["OK01", "status"] == "ok"  # the batch carried on
    return features, qc.loc["BAD01"]


def expect_error(root, file_part, *reason, manifest_rows=None):
    _, bad = run(root, manifest_rows)
    assert bad["status"] == "error", bad.to_dict()
    assert file_part in bad["file"], bad.to_dict()
    for r in reason:
        assert r.lower() in bad["message"].lower(), bad.to_dict()
    return bad


def expect_warning(root, *reason):
    features, bad = run(root)
    assert bad["status"] == "warning", bad.to_dict()
    for r in reason:
        assert r.lower() in bad["message"].lower(), bad.to_dict()
    return features


def bad_dir(root):
    return root / "patients" / "BAD01"


# ---- images ----------------------------------------------------------------------------------

def test_spect_missing(cohort):
    (bad_dir(cohort) / "spect.dcm").unlink()
    expect_error(cohort, "patients/BAD01/spect.dcm", "no such file")


def test_spect_not_dicom(cohort):
    (bad_dir(cohort) / "spect.dcm").write_text("this is a report, not an image\n" * 20)
    expect_error(cohort, "spect.dcm", "DICOM")


def test_spect_truncated(cohort):
    p = bad_dir(cohort) / "spect.dcm"
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    expect_error(cohort, "spect.dcm", "truncated")


def _spect_as_nifti(cohort, arr):
    img = sitk.GetImageFromArray(arr.astype(np.float32))
    img.SetSpacing(SPACING)
    img.SetOrigin(ORIGIN)
    sitk.WriteImage(img, str(bad_dir(cohort) / "spect.nii.gz"))
    m = pd.read_csv(cohort / "data_manifest.csv")
    m.loc[m.patient_id == "BAD01", "spect"] = "patients/BAD01/spect.nii.gz"
    return m.to_dict("records")


def test_spect_with_nan_voxels(cohort):
    arr = spect_array()
    arr[20, 30, 30] = np.nan
    expect_error(cohort, "spect.nii.gz", "NaN", manifest_rows=_spect_as_nifti(cohort, arr))


def test_spect_with_infinite_voxels(cohort):
    arr = spect_array()
    arr[20, 30, 30] = np.inf
    expect_error(cohort, "spect.nii.gz", "inf", manifest_rows=_spect_as_nifti(cohort, arr))


def test_spect_with_negative_counts(cohort):
    arr = spect_array()
    arr[0, 0, :5] = -3.0
    rows = _spect_as_nifti(cohort, arr)
    pd.DataFrame(rows).to_csv(cohort / "data_manifest.csv", index=False)
    expect_warning(cohort, "negative")


def test_spect_two_dimensional(cohort):
    img = sitk.GetImageFromArray(spect_array()[20].astype(np.float32))
    sitk.WriteImage(img, str(bad_dir(cohort) / "spect.nrrd"))
    m = pd.read_csv(cohort / "data_manifest.csv")
    m.loc[m.patient_id == "BAD01", "spect"] = "patients/BAD01/spect.nrrd"
    expect_error(cohort, "spect.nrrd", "2-D", manifest_rows=m.to_dict("records"))


def test_spect_folder_with_mixed_series(cohort):
    folder = bad_dir(cohort) / "ct"
    vol = np.zeros((6, 16, 16), np.int16)
    write_ct_series(vol, folder, spacing=(2.0, 2.0, 3.0), origin=(0, 0, 0), identity={"PatientID": "A"})
    write_ct_series(vol, folder / "other", spacing=(2.0, 2.0, 5.0), origin=(0, 0, 0),
                    identity={"PatientID": "A"}, series={"SeriesNumber": 9, "SeriesDescription": "other"})
    for f in (folder / "other").iterdir():
        f.rename(folder / ("b_" + f.name))
    (folder / "other").rmdir()
    m = pd.read_csv(cohort / "data_manifest.csv")
    m.loc[m.patient_id == "BAD01", "spect"] = "patients/BAD01/ct"
    expect_error(cohort, "patients/BAD01/ct", "series", manifest_rows=m.to_dict("records"))


def test_roi_missing(cohort):
    (bad_dir(cohort) / "tumour.seg.nrrd").unlink()
    expect_error(cohort, "tumour.seg.nrrd", "not found")


def test_roi_not_a_segmentation(cohort):
    (bad_dir(cohort) / "tumour.seg.nrrd").write_bytes(b"\x00\x01garbage" * 100)
    expect_error(cohort, "tumour.seg.nrrd")


def test_roi_grid_does_not_overlap_the_spect(cohort):
    write_segmentation(bad_dir(cohort) / "tumour.seg.nrrd", {"tumour": roi_image(centre=(910.0, 5.0, 0.0))})
    expect_error(cohort, "tumour.seg.nrrd", "outside the SPECT field of view")


def test_roi_partly_outside_the_field_of_view(cohort):
    write_segmentation(bad_dir(cohort) / "tumour.seg.nrrd", {"tumour": roi_image(centre=(90.0, 5.0, 0.0))})
    expect_warning(cohort, "outside the SPECT field of view")


def test_empty_roi(cohort):
    empty = roi_image(radius=0.0)
    empty = sitk.Image(empty.GetSize(), sitk.sitkUInt8)
    empty.CopyInformation(roi_image())
    write_segmentation(bad_dir(cohort) / "tumour.seg.nrrd", {"tumour": empty, "liver": roi_image()})
    expect_error(cohort, "tumour.seg.nrrd", "empty")


def test_segment_name_not_found(cohort):
    write_segmentation(bad_dir(cohort) / "tumour.seg.nrrd", {"Tumor": roi_image(), "kidney": roi_image(radius=5)})
    bad = expect_error(cohort, "tumour.seg.nrrd", "tumour")
    assert "Tumor" in bad["message"] and "kidney" in bad["message"]  # lists what is there


def test_several_segments_with_the_name(cohort):
    from mibgkit import slicer

    path = bad_dir(cohort) / "tumour.seg.nrrd"
    write_segmentation(path, {"tumour": roi_image(), "tumour2": roi_image(radius=8)})
    text = path.read_bytes().replace(b"tumour2", b"tumour")  # two segments named exactly "tumour"
    path.write_bytes(text)
    assert (slicer.list_segments(path)["name"] == "tumour").sum() == 2
    expect_error(cohort, "tumour.seg.nrrd", "tumour")


def test_markups_missing_control_point(cohort):
    write_markups(bad_dir(cohort) / "spheres.mrk.json", {k: v for k, v in CENTRES.items() if k != "muscle_right"})
    expect_error(cohort, "spheres.mrk.json", "muscle_right")


def test_markups_not_json(cohort):
    (bad_dir(cohort) / "spheres.mrk.json").write_text("{ liver: 1, 2, 3")
    expect_error(cohort, "spheres.mrk.json", "JSON")


def test_markups_in_ras_are_honoured(cohort):
    write_markups(bad_dir(cohort) / "spheres.mrk.json", CENTRES, coordinate_system="RAS")
    data = json.loads((bad_dir(cohort) / "spheres.mrk.json").read_text())
    assert data["markups"][0]["coordinateSystem"] == "RAS"
    features, bad = run(cohort)
    assert bad["status"] == "ok"
    cols = ["lmax", "lmean", "mmax", "mmean", "liver_n_voxels", "muscle_left_n_voxels"]
    assert features.loc["BAD01", cols].tolist() == features.loc["OK01", cols].tolist()


def test_sphere_partly_outside_the_image(cohort):
    write_markups(bad_dir(cohort) / "spheres.mrk.json", {**CENTRES, "liver": (92.0, 0.0, 0.0)})
    features = expect_warning(cohort, "liver sphere", "inside the image")
    assert features.at["BAD01", "liver_fraction_inside"] < 1.0


def _liver_organ(cohort):
    """An organ segmentation on the SPECT grid whose liver is the x > 40 mm slab (the hot region)."""
    arr = (spect_array() == 20.0).astype(np.uint8)
    liver = sitk.GetImageFromArray(arr)
    liver.SetSpacing(SPACING)
    liver.SetOrigin(ORIGIN)
    write_segmentation(bad_dir(cohort) / "organs.seg.nrrd", {"liver": liver})
    m = pd.read_csv(cohort / "data_manifest.csv")
    m["organs"] = ""
    m.loc[m.patient_id == "BAD01", "organs"] = "patients/BAD01/organs.seg.nrrd"
    m.to_csv(cohort / "data_manifest.csv", index=False)


def test_sphere_inside_its_organ_is_silent(cohort):
    _liver_organ(cohort)
    features, bad = run(cohort)
    assert bad["status"] == "ok" and features.at["BAD01", "liver_fraction_in_organ"] == 1.0


def test_sphere_extending_outside_the_liver(cohort):
    _liver_organ(cohort)
    write_markups(bad_dir(cohort) / "spheres.mrk.json", {**CENTRES, "liver": (52.0, 0.0, 0.0)})
    features = expect_warning(cohort, "liver sphere", "outside the organ mask")
    assert 0.5 < features.at["BAD01", "liver_fraction_in_organ"] < 1.0


def test_organ_outside_the_field_of_view_is_a_warning_not_an_error(cohort):
    far = roi_image(centre=(900.0, 0.0, 0.0))
    write_segmentation(bad_dir(cohort) / "organs.seg.nrrd", {"liver": far})
    m = pd.read_csv(cohort / "data_manifest.csv")
    m["organs"] = ""
    m.loc[m.patient_id == "BAD01", "organs"] = "patients/BAD01/organs.seg.nrrd"
    m.to_csv(cohort / "data_manifest.csv", index=False)
    expect_warning(cohort, "organ 'liver' lies outside the SPECT field of view", "not checked")


def test_sphere_entirely_outside_the_image(cohort):
    write_markups(bad_dir(cohort) / "spheres.mrk.json", {**CENTRES, "muscle_left": (900.0, 0.0, 0.0)})
    expect_error(cohort, "BAD01/spheres.mrk.json", "muscle_left", "outside the image")  # the file is named


def test_sphere_from_the_manifests_columns_entirely_outside_the_image(cohort):
    rows = pd.read_csv(cohort / "data_manifest.csv").to_dict("records")
    rows[1]["markups"] = ""
    for name, centre in {**CENTRES, "liver": (0.0, 0.0, 900.0)}.items():
        for axis, v in zip("xyz", centre):
            rows[1][f"{name}_{axis}_mm"] = v
    expect_error(cohort, "", "liver sphere", "outside the image", manifest_rows=rows)  # no file to name


# ---- tables --------------------------------------------------------------------------------

def manifest_rows(cohort):
    return pd.read_csv(cohort / "data_manifest.csv", dtype=str, keep_default_na=False).to_dict("records")


@pytest.mark.parametrize("change, reason", [
    (lambda r: [{k: v for k, v in x.items() if k != "efs_event"} for x in r], "missing required column"),
    (lambda r: [dict(x, patient_id="OK01") for x in r], "duplicate patient_id"),
    (lambda r: [dict(x, efs_days="12,5") for x in r], "is not a number"),
    (lambda r: [dict(x, efs_days="0") for x in r], "must be > 0"),
    (lambda r: [dict(x, efs_days="-20") for x in r], "must be > 0"),
    (lambda r: [dict(x, efs_event="yes") for x in r], "must be 0 or 1"),
    (lambda r: [dict(x, scan_date=d) for x, d in zip(r, ["2021-03-04", "04/03/2021"])], "not an ISO date"),
    (lambda r: [dict(x, roi="../../elsewhere/tumour.seg.nrrd") for x in r], "leaves the manifest's folder"),
    (lambda r: [dict(x, roi_label="one") for x in r], "is not a number"),
])
def test_bad_manifest(cohort, change, reason):
    rows = change(manifest_rows(cohort))
    pd.DataFrame(rows).to_csv(cohort / "data_manifest.csv", index=False)
    with pytest.raises(ManifestError, match=reason) as e:
        read_manifest(cohort / "data_manifest.csv")
    assert "data_manifest.csv" in str(e.value)


def test_unknown_categorical_level_in_clinical_table(cohort):
    pd.DataFrame({"patient_id": ["OK01", "BAD01"], "histology": ["NB", "ganglioneuroma"]}).to_csv(
        cohort / "clinical.csv", index=False)
    with pytest.raises(ManifestError, match="patient BAD01: histology = 'ganglioneuroma' is not one of NB, GNB"):
        read_clinical(cohort / "clinical.csv")


def test_clinical_table_and_manifest_list_different_patients(cohort):
    pd.DataFrame({"patient_id": ["OK01", "XX99"], "sex": ["M", "F"]}).to_csv(cohort / "clinical.csv", index=False)
    with pytest.raises(ManifestError, match="only in manifest: BAD01; only in clinical table: XX99"):
        analysis_table(read_manifest(cohort / "data_manifest.csv"), read_clinical(cohort / "clinical.csv"))


def test_constant_or_all_missing_covariate():
    d = pd.DataFrame({"t": [5.0, 8, 13, 21, 34, 55], "e": [1, 0, 1, 1, 0, 1], "c": [2.0] * 6, "m": [np.nan] * 6})
    with pytest.raises(StatisticsError, match="'c' is constant"):
        cox_univariate(d, "t", "e", ["c"])
    with pytest.raises(StatisticsError, match="'m' has no value for any patient"):
        cox_univariate(d, "t", "e", ["m"])


def test_qc_messages_carry_no_machine_path(cohort):
    """Whatever a reader says, the QC table names files relative to the manifest's folder."""
    folder = bad_dir(cohort) / "ct"
    write_ct_series(np.zeros((6, 16, 16), np.int16), folder, spacing=(2.0, 2.0, 3.0), origin=(0, 0, 0),
                    identity={"PatientID": "A"})
    victim = sorted(folder.iterdir())[3]
    victim.write_bytes(victim.read_bytes()[:-200])  # a damaged slice inside the series
    m = pd.read_csv(cohort / "data_manifest.csv")
    m.loc[m.patient_id == "BAD01", "spect"] = "patients/BAD01/ct"
    bad = expect_error(cohort, "patients/BAD01/ct", manifest_rows=m.to_dict("records"))
    assert str(cohort) not in bad["message"] and str(cohort) not in bad["file"]


@pytest.mark.parametrize("args, message", [
    (["--mtv-method", "percent_max", "--fraction", "1.0"], "percent_max threshold fraction must be a number in (0, 1)"),
    (["--mtv-method", "adaptive", "--fraction", "-0.2"], "adaptive threshold fraction"),
])
def test_an_invalid_mtv_parameter_stops_the_run_before_any_patient(cohort, tmp_path, capsys, args, message):
    from mibgkit.cli import main

    out = tmp_path / "features.csv"
    assert main(["extract", str(cohort / "data_manifest.csv"), "-o", str(out), "-q", *args]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "features.parts").exists()


def test_an_invalid_mtv_parameter_stops_the_report_before_any_patient(small_cohort, tmp_path, capsys):
    from mibgkit.cli import main

    params = tmp_path / "params.json"
    params.write_text(json.dumps({"mtv_method": "adaptive", "mtv_fraction": 1.0}))
    assert main(["report", "--manifest", str(small_cohort / "data_manifest.csv"), "--out", str(tmp_path / "reports"),
                 "--params", str(params), "-q"]) == 2
    assert "adaptive threshold fraction must be a number in (0, 1), got 1.0" in capsys.readouterr().err
    assert not (tmp_path / "reports" / "index.html").exists()


@pytest.mark.parametrize("args, message", [
    (["--n", "0"], "a cohort needs n >= 1 patients and a seed >= 0, got n=0"),
    (["--n", "1", "--seed", "-1"], "got n=1, seed=-1"),
])
def test_synth_refuses_bad_parameters_before_writing_anything(tmp_path, capsys, args, message):
    from mibgkit.cli import main

    assert main(["synth", str(tmp_path / "out"), "-q", *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_synth_into_a_file_is_an_output_error(tmp_path, capsys):
    from mibgkit.cli import main

    (tmp_path / "afile").write_text("x")
    assert main(["synth", str(tmp_path / "afile"), "--n", "1", "-q"]) == 2
    assert "cannot create the cohort folder" in capsys.readouterr().err
    assert (tmp_path / "afile").read_text() == "x"


@pytest.mark.parametrize("content, message", [
    ("[1, 2]", "the parameters must be a JSON object"),
    ("{bad", "not a JSON file"),
    (None, "cannot read the parameters"),
])
def test_report_params_that_cannot_be_read_are_named(small_cohort, tmp_path, capsys, content, message):
    from mibgkit.cli import main

    params = tmp_path / "params.json"
    if content is not None:
        params.write_text(content)
    assert main(["report", "--manifest", str(small_cohort / "data_manifest.csv"), "--out", str(tmp_path / "r"),
                 "--params", str(params), "-q"]) == 2
    err = capsys.readouterr().err
    assert message in err and "params.json" in err


def test_a_fraction_without_a_threshold_method_is_noted(cohort, tmp_path, capsys):
    from mibgkit.cli import main

    assert main(["extract", str(cohort / "data_manifest.csv"), "-o", str(tmp_path / "f.csv"), "-q",
                 "--fraction", "0.3"]) == 0
    assert "--fraction is only used by --mtv-method percent_max or adaptive" in capsys.readouterr().err

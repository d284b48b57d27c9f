"""Batch extraction from real files: DICOM SPECT, Slicer ROI on a CT grid, markups; QC, cache, CLI."""

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from mibgkit.cli import main
from mibgkit.cohort import cached_features, load_cohort
from mibgkit.extraction import extract, read_features
from mibgkit.manifest import read_manifest
from mibgkit.slicer_write import write_markups, write_segmentation
from mibgkit.synth.nm_layouts import write_nm_multiframe

SPECT_SPACING = (3.0, 3.0, 3.0)
SPECT_ORIGIN = (-96.0, -96.0, -60.0)


def write_patient(root, pid, *, tumour_centre=(10.0, 5.0, 0.0), radius=20.0, liver_in=True):
    """SPECT 64×64×40 (3 mm) with liver (x > 40 mm) 20 counts, muscle 5, tumour 120; ROI on a 1.5 mm grid."""
    d = root / "patients" / pid
    d.mkdir(parents=True)
    z, y, x = np.meshgrid(*[SPECT_ORIGIN[2 - a] + 3.0 * np.arange(n) for a, n in enumerate((40, 64, 64))], indexing="ij")
    arr = np.full(x.shape, 5.0)
    arr[x > 40] = 20.0
    tumour = (x - tumour_centre[0]) ** 2 + (y - tumour_centre[1]) ** 2 + (z - tumour_centre[2]) ** 2 <= radius**2
    arr[tumour] = 120.0
    write_nm_multiframe(arr.astype(np.uint16), d / "spect.dcm", spacing=SPECT_SPACING, origin=SPECT_ORIGIN,
                        identity={"PatientName": f"SECRET^{pid}", "PatientID": f"MRN-{pid}"})
    ct = sitk.Image(80, 80, 60, sitk.sitkUInt8)
    ct.SetSpacing((1.5, 1.5, 1.5))
    ct.SetOrigin((tumour_centre[0] - 59.25, tumour_centre[1] - 59.25, tumour_centre[2] - 44.25))
    a = np.zeros((60, 80, 80), np.uint8)
    zz, yy, xx = np.meshgrid(*[np.arange(n) * 1.5 - c for n, c in ((60, 44.25), (80, 59.25), (80, 59.25))], indexing="ij")
    a[xx**2 + yy**2 + zz**2 <= radius**2] = 1
    roi = sitk.GetImageFromArray(a)
    roi.CopyInformation(ct)
    write_segmentation(d / "tumour.seg.nrrd", {"tumour": roi})
    write_markups(d / "spheres.mrk.json", {"liver": (70.0 if liver_in else 90.0, 0.0, 0.0),
                                            "muscle_left": (-60.0, 30.0, 0.0), "muscle_right": (-60.0, -30.0, 0.0)})
    return {"patient_id": pid, "spect": f"patients/{pid}/spect.dcm", "roi": f"patients/{pid}/tumour.seg.nrrd",
            "roi_segment": "tumour", "markups": f"patients/{pid}/spheres.mrk.json",
            "efs_days": 100.0, "efs_event": 0}


@pytest.fixture(scope="module")
def cohort_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cohort")
    rows = [write_patient(root, "P01"), write_patient(root, "P02", liver_in=False),
            write_patient(root, "P03", tumour_centre=(900.0, 0.0, 0.0))]
    pd.DataFrame(rows).to_csv(root / "data_manifest.csv", index=False)
    pd.DataFrame({"patient_id": ["P01", "P02", "P03"], "sex": ["M", "F", "F"]}).to_csv(root / "clinical.csv", index=False)
    return root


def test_batch_carries_on_past_a_bad_patient(cohort_dir):
    m = read_manifest(cohort_dir / "data_manifest.csv")
    features, qc = extract(m, progress=False).tables()
    assert list(features.index) == ["P01", "P02"]
    assert features.at["P01", "tmax"] == 120.0 and features.at["P01", "lmax"] == 20.0
    assert features.at["P01", "tmax_lmax"] == pytest.approx(6.0)
    assert features.at["P01", "mmean"] == pytest.approx(5.0)
    assert features.at["P01", "asphericity"] < 0.15
    # ROI drawn on the 1.5 mm grid: its native shape is reported beside the SPECT-grid one
    assert features.at["P01", "roi_native_mtv_ml"] == pytest.approx(4 / 3 * np.pi * 20**3 / 1000, rel=0.03)
    q = qc.set_index("patient_id")
    assert q.at["P01", "status"] == "ok"
    assert q.at["P02", "status"] == "warning" and "liver sphere" in q.at["P02", "message"]
    assert q.at["P03", "status"] == "error"
    assert q.at["P03", "file"] == "patients/P03/tumour.seg.nrrd"
    assert "outside the SPECT field of view" in q.at["P03", "message"]


def test_cache_gives_identical_tables_and_rerun_identical_bytes(cohort_dir, tmp_path):
    m = read_manifest(cohort_dir / "data_manifest.csv")
    f1, q1 = cached_features(m, tmp_path, progress=False)
    files = sorted(tmp_path.glob("features-*.csv"))
    first = {p.name: p.read_bytes() for p in files}
    f2, q2 = cached_features(m, tmp_path, progress=False)
    pd.testing.assert_frame_equal(f1, f2)
    pd.testing.assert_frame_equal(q1, q2)
    for p in files:  # a fresh extraction writes the same bytes
        p.unlink()
    cached_features(m, tmp_path, progress=False)
    assert {p.name: p.read_bytes() for p in sorted(tmp_path.glob("features-*.csv"))} == first
    # a different MTV definition is a different cache entry
    f3, _ = cached_features(m, tmp_path, mtv_method="adaptive", progress=False)
    assert len(list(tmp_path.glob("features-*.csv"))) == 4 and (f3["mtv_method"] == "adaptive").all()


def test_load_cohort_joins_outcome_clinical_and_features(cohort_dir, tmp_path):
    c = load_cohort(cohort_dir / "data_manifest.csv", workdir=tmp_path)
    assert list(c.table.index) == ["P01", "P02", "P03"]
    assert np.isnan(c.table.at["P03", "tmax_lmax"]) and c.table.at["P01", "sex"] == "M"
    assert "tmax_lmax" in c.covariates and "efs_days" in c.covariates


def test_cli_extract_writes_features_and_qc(cohort_dir, tmp_path, capsys):
    out = tmp_path / "features.csv"
    assert main(["extract", str(cohort_dir / "data_manifest.csv"), "-o", str(out), "-q"]) == 0
    assert main(["extract", str(cohort_dir / "data_manifest.csv"), "-o", str(out), "-q", "--strict"]) == 1
    err = capsys.readouterr().err
    assert "P03" in err and "2 of 3 patients measured" in err
    f = pd.read_csv(out)
    qc = pd.read_csv(tmp_path / "features_qc.csv")
    assert list(f.patient_id) == ["P01", "P02"] and len(qc) == 3
    # no DICOM identity and no absolute paths in the outputs
    text = out.read_text() + (tmp_path / "features_qc.csv").read_text()
    assert "SECRET" not in text and "MRN-" not in text and str(cohort_dir) not in text


def test_cli_shape_json(tmp_path, capsys):
    import json
    from pathlib import Path

    mask = Path(__file__).parents[1] / "mibgkit" / "data" / "ibsi_phantom" / "mask.nii.gz"
    assert main(["shape", str(mask), "--json"]) == 0
    feats = json.loads(capsys.readouterr().out)
    assert feats["mesh_volume_mm3"] == pytest.approx(556, abs=4)
    assert main(["shape", str(tmp_path / "missing.nii.gz")]) == 2
    assert "missing.nii.gz" in capsys.readouterr().err


# --------------------------------------------------------------------------- streaming and resume


def _parts(folder):
    return sorted(p.name for p in (folder / "features.parts").iterdir())


def test_parts_stream_one_file_per_patient_and_assemble_in_manifest_order(cohort_dir, tmp_path):
    from mibgkit.extraction import extract

    m = read_manifest(cohort_dir / "data_manifest.csv")
    run = extract(m, tmp_path / "features.csv", progress=False)
    names = _parts(tmp_path)
    assert [n.split("-")[0] for n in names] == ["P01", "P02", "P03"]  # the error is kept too
    assert [o["patient_id"] for o in run.outcomes] == ["P01", "P02", "P03"] and run.n_cached == 0
    # the tables equal the in-memory extraction, and a re-run computes nothing and writes the same bytes
    features, qc = extract(m, progress=False).tables()
    pd.testing.assert_frame_equal(read_features(tmp_path / "features.csv")[0], features)
    first = (tmp_path / "features.csv").read_bytes(), (tmp_path / "features_qc.csv").read_bytes()
    again = extract(m, tmp_path / "features.csv", progress=False)
    assert again.n_cached == 3 and _parts(tmp_path) == names
    assert ((tmp_path / "features.csv").read_bytes(), (tmp_path / "features_qc.csv").read_bytes()) == first


def test_interrupted_run_leaves_no_output_and_resumes(cohort_dir, tmp_path, monkeypatch):
    """A run killed after the first patient: complete parts only, no tables; the re-run does the rest."""
    import mibgkit.extraction as cohort

    m = read_manifest(cohort_dir / "data_manifest.csv")
    clean = tmp_path / "clean"
    cohort.extract(m, clean / "features.csv", progress=False)

    real, calls = cohort.extract_patient, []

    def dies_on_second(row, **kw):
        calls.append(row["patient_id"])
        if len(calls) == 2:
            raise KeyboardInterrupt  # as Ctrl-C (or a kill) would stop it
        return real(row, **kw)

    out = tmp_path / "run" / "features.csv"
    monkeypatch.setattr(cohort, "extract_patient", dies_on_second)
    with pytest.raises(KeyboardInterrupt):
        cohort.extract(m, out, progress=False)
    assert not out.exists() and not cohort.qc_path_for(out).exists()
    assert [n.split("-")[0] for n in _parts(out.parent)] == ["P01"]  # complete parts only, no temporaries

    calls.clear()
    monkeypatch.setattr(cohort, "extract_patient", lambda row, **kw: calls.append(row["patient_id"]) or real(row, **kw))
    run = cohort.extract(m, out, progress=False)
    assert calls == ["P02", "P03"] and run.n_cached == 1
    assert out.read_bytes() == (clean / "features.csv").read_bytes()
    assert cohort.qc_path_for(out).read_bytes() == (clean / "features_qc.csv").read_bytes()


def test_killed_while_writing_a_part_leaves_no_half_written_file(cohort_dir, tmp_path):
    """SIGKILL inside the atomic rename of the second part: the re-run finds one part and finishes."""
    import subprocess
    import sys
    import textwrap

    out = tmp_path / "features.csv"
    script = textwrap.dedent(f"""
        import os, signal
        import mibgkit.outputs as outputs
        from mibgkit.extraction import extract
        from mibgkit.manifest import read_manifest
        real, n = os.replace, []
        def replace(src, dst):
            n.append(dst)
            if len(n) == 2:
                os.kill(os.getpid(), signal.SIGKILL)
            real(src, dst)
        outputs.os.replace = replace
        extract(read_manifest({str(cohort_dir / "data_manifest.csv")!r}), {str(out)!r}, progress=False)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert proc.returncode != 0 and not out.exists()
    left = sorted((tmp_path / "features.parts").iterdir())
    assert [p.name.split("-")[0] for p in left if not p.name.startswith(".")] == ["P01"]
    assert all(len(p.read_text().splitlines()) == 2 for p in left if not p.name.startswith("."))
    from mibgkit.extraction import extract

    run = extract(read_manifest(cohort_dir / "data_manifest.csv"), out, progress=False)
    assert run.n_cached == 1 and len(_parts(tmp_path)) == 3  # the killed run's temporary is gone
    assert list(pd.read_csv(out).patient_id) == ["P01", "P02"]


def test_changed_input_or_parameters_recompute_only_what_changed(cohort_dir, tmp_path):
    import shutil

    from mibgkit.extraction import extract

    root = tmp_path / "cohort"
    shutil.copytree(cohort_dir, root)
    m = read_manifest(root / "data_manifest.csv")
    out = tmp_path / "features.csv"
    extract(m, out, progress=False)
    markups = root / "patients" / "P02" / "spheres.mrk.json"
    markups.write_text(markups.read_text().replace("90.0", "70.0"))  # move P02's liver sphere into the liver
    run = extract(read_manifest(root / "data_manifest.csv"), out, progress=False)
    assert [o["patient_id"] for o in run.outcomes if not o["cached"]] == ["P02"]
    assert run.tables()[1].set_index("patient_id").at["P02", "status"] == "ok"
    run = extract(m, out, mtv_method="adaptive", progress=False)
    assert run.n_cached == 0 and len(_parts(tmp_path)) == 3 + 1 + 3


def test_unexpected_error_is_recorded_retried_and_not_cached(cohort_dir, tmp_path, monkeypatch):
    import mibgkit.extraction as cohort

    m = read_manifest(cohort_dir / "data_manifest.csv")
    real = cohort.extract_patient

    def flaky(row, **kw):
        if row["patient_id"] == "P01":
            raise MemoryError("worker ran out of memory")
        return real(row, **kw)

    monkeypatch.setattr(cohort, "extract_patient", flaky)
    features, qc = cohort.extract(m, progress=False, parts_dir=tmp_path / "parts").tables()
    q = qc.set_index("patient_id")
    assert q.at["P01", "status"] == "error" and q.at["P01", "error_type"] == "UnexpectedError"
    assert "MemoryError" in q.at["P01", "message"] and list(features.index) == ["P02"]
    assert not any(p.name.startswith("P01") for p in (tmp_path / "parts").iterdir())
    monkeypatch.setattr(cohort, "extract_patient", real)
    features, _ = cohort.extract(m, progress=False, parts_dir=tmp_path / "parts").tables()
    assert list(features.index) == ["P01", "P02"]


def test_report_refuses_a_cohort_whose_clinical_table_disagrees(cohort_dir, tmp_path, capsys):
    """`mibgkit report` checks manifest and clinical table before running any notebook."""
    import shutil

    root = tmp_path / "c"
    shutil.copytree(cohort_dir, root)
    pd.DataFrame({"patient_id": ["P01", "P02"], "sex": ["M", "F"]}).to_csv(root / "clinical.csv", index=False)
    assert main(["report", "--manifest", str(root / "data_manifest.csv"), "--out", str(tmp_path / "r"), "-q"]) == 2
    assert "only in manifest: P03" in capsys.readouterr().err
    assert not (tmp_path / "r" / "00_data_qc.html").exists()


def test_resume_key_changes_with_the_extraction_code(monkeypatch):
    """A part computed by other code is never reused: the key covers the extraction modules' source."""
    from mibgkit import extraction as c

    row = {"patient_id": "P1"}
    before = c.patient_key(row, {"mtv_method": "roi"})
    c.extraction_code_digest.cache_clear()
    monkeypatch.setattr(c, "EXTRACTION_MODULES", c.EXTRACTION_MODULES[:-1])
    try:
        assert c.patient_key(row, {"mtv_method": "roi"}) != before
    finally:
        c.extraction_code_digest.cache_clear()


def test_resume_key_follows_a_detached_data_file(tmp_path):
    """An .nhdr whose data file has another name: changing that file's bytes changes the key."""
    import SimpleITK as sitk

    from mibgkit.extraction import patient_key

    img = sitk.Image(4, 4, 4, sitk.sitkUInt8)
    sitk.WriteImage(img, str(tmp_path / "roi.nhdr"))
    raw = [f for f in tmp_path.iterdir() if f.name != "roi.nhdr"]
    assert len(raw) == 1
    renamed = tmp_path / "voxels.bin"
    raw[0].rename(renamed)
    header = (tmp_path / "roi.nhdr").read_text()
    (tmp_path / "roi.nhdr").write_text("\n".join(
        f"data file: {renamed.name}" if line.startswith("data file:") else line for line in header.splitlines()) + "\n")
    row = {"patient_id": "P1", "roi": str(tmp_path / "roi.nhdr")}
    before = patient_key(row, {})
    renamed.write_bytes(renamed.read_bytes()[:-1] + b"\x01")
    assert patient_key(row, {}) != before


def test_two_extractions_on_one_output_never_share_the_part_cache(tmp_path, cohort_dir):
    """The command line refuses, with a message, while another run holds the same features.parts."""
    import subprocess
    import sys

    from mibgkit.cli import main
    from mibgkit.extraction import lock_path_for, parts_dir_for

    out = tmp_path / "features.csv"
    holder = ("import sys, time\nfrom mibgkit.outputs import exclusive\n"
              "with exclusive(sys.argv[1], lock=sys.argv[2]):\n    print('held', flush=True); time.sleep(30)")
    parts = parts_dir_for(out)
    proc = subprocess.Popen([sys.executable, "-c", holder, str(parts), str(lock_path_for(parts))],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        assert main(["extract", str(cohort_dir / "data_manifest.csv"), "-o", str(out), "-q", "--wait", "0"]) == 2
    finally:
        proc.kill()
        proc.wait()
    assert not out.exists()
    assert main(["extract", str(cohort_dir / "data_manifest.csv"), "-o", str(out), "-q"]) == 0

"""The manifest and clinical-table schemas: what is accepted, what is refused and how it is said."""

from pathlib import Path

import pandas as pd
import pytest

from mibgkit.errors import ManifestError
from mibgkit.cohort import analysis_table
from mibgkit.manifest import read_clinical, read_manifest


def make_files(tmp_path: Path, n=3):
    for i in range(n):
        d = tmp_path / "patients" / f"P{i}"
        d.mkdir(parents=True)
        for f in ("spect.dcm", "tumour.seg.nrrd", "spheres.mrk.json"):
            (d / f).write_text("x")


def manifest_rows(n=3):
    return [
        {"patient_id": f"P{i}", "spect": f"patients/P{i}/spect.dcm", "roi": f"patients/P{i}/tumour.seg.nrrd",
         "roi_segment": "tumour", "markups": f"patients/P{i}/spheres.mrk.json", "scan_date": "2020-03-0" + str(i + 1),
         "efs_days": str(100 + i), "efs_event": str(i % 2)}
        for i in range(n)
    ]


def write(tmp_path, rows, name="data_manifest.csv"):
    p = tmp_path / name
    pd.DataFrame(rows).to_csv(p, index=False)
    return p


def test_valid_manifest_resolves_paths(tmp_path):
    make_files(tmp_path)
    m = read_manifest(write(tmp_path, manifest_rows()))
    assert list(m.index) == ["P0", "P1", "P2"]
    assert Path(m.at["P1", "spect"]).is_absolute() and Path(m.at["P1", "spect"]).exists()
    assert m["efs_event"].tolist() == [0, 1, 0] and m["efs_days"].dtype.kind == "f"
    assert m.attrs["manifest"].endswith("data_manifest.csv")


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda r: r[0].pop("efs_days") and [dict(x, efs_days=None) for x in r], "efs_days is empty"),
        (lambda r: [dict(x, patient_id="P0") for x in r], "duplicate patient_id: P0"),
        (lambda r: [dict(x, efs_event="2") for x in r], "efs_event = '2' must be 0 or 1"),
        (lambda r: [dict(x, efs_days="0") for x in r], "efs_days = 0 must be > 0"),
        (lambda r: [dict(x, efs_days="-3") for x in r], "must be > 0"),
        (lambda r: [dict(x, efs_days="ten") for x in r], "'ten' is not a number"),
        (lambda r: [dict(x, scan_date="03/04/2020") for x in r], "not an ISO date"),
        (lambda r: [dict(x, spect="../outside.dcm") for x in r], "leaves the manifest's folder"),
        (lambda r: [dict(x, markups=None) for x in r], "no markups file and incomplete sphere-centre columns"),
    ],
)
def test_bad_manifests_name_patient_and_problem(tmp_path, change, message):
    make_files(tmp_path)
    (tmp_path.parent / "outside.dcm").write_text("x")
    rows = change(manifest_rows())
    p = write(tmp_path, rows)
    with pytest.raises(ManifestError, match=message) as e:
        read_manifest(p)
    assert "data_manifest.csv" in str(e.value)


def test_missing_file_is_left_to_extraction(tmp_path):
    """One patient's missing scan must not stop the cohort: the manifest is accepted, the path kept."""
    make_files(tmp_path)
    rows = manifest_rows()
    rows[1]["spect"] = "patients/P1/nothere.dcm"
    m = read_manifest(write(tmp_path, rows))
    assert m.at["P1", "spect"].endswith("nothere.dcm") and not Path(m.at["P1", "spect"]).exists()


def test_missing_required_column(tmp_path):
    make_files(tmp_path)
    rows = [{k: v for k, v in r.items() if k != "roi"} for r in manifest_rows()]
    with pytest.raises(ManifestError, match="missing required column.*roi"):
        read_manifest(write(tmp_path, rows))


def test_sphere_centre_columns_replace_markups(tmp_path):
    make_files(tmp_path)
    rows = manifest_rows()
    for r in rows:
        r["markups"] = ""
        for s in ("liver", "muscle_left", "muscle_right"):
            for a in "xyz":
                r[f"{s}_{a}_mm"] = "1.5"
    m = read_manifest(write(tmp_path, rows))
    assert m["markups"].isna().all()


def clinical_rows():
    return [
        {"patient_id": "P0", "sex": "M", "age_months": "12", "bone_marrow_metastasis": "yes", "mycn": "",
         "patient_name": "DOE^JANE", "birth_date": "2019-01-02"},
        {"patient_id": "P1", "sex": "F", "age_months": "40.5", "bone_marrow_metastasis": "no", "mycn": "amplified",
         "patient_name": "ROE^RICHARD", "birth_date": "2016-05-06"},
        {"patient_id": "P2", "sex": "F", "age_months": "70", "bone_marrow_metastasis": "no", "mycn": "normal",
         "patient_name": "POE^EDGAR", "birth_date": "2014-07-08"},
    ]


def test_clinical_table_drops_identity_columns_and_keeps_missing(tmp_path):
    c = read_clinical(write(tmp_path, clinical_rows(), "clinical.csv"))
    assert "patient_name" not in c and "birth_date" not in c
    assert c.at["P0", "mycn"] is None and c.at["P1", "age_months"] == 40.5


def test_clinical_unknown_level_is_refused(tmp_path):
    rows = clinical_rows()
    rows[1]["sex"] = "male"
    with pytest.raises(ManifestError, match="patient P1: sex = 'male' is not one of M, F"):
        read_clinical(write(tmp_path, rows, "clinical.csv"))


def test_cohort_table_requires_the_same_patients(tmp_path):
    make_files(tmp_path)
    m = read_manifest(write(tmp_path, manifest_rows()))
    c = read_clinical(write(tmp_path, clinical_rows()[:2], "clinical.csv"))
    with pytest.raises(ManifestError, match="only in manifest: P2"):
        analysis_table(m, c)
    c = read_clinical(write(tmp_path, clinical_rows(), "clinical.csv"))
    t = analysis_table(m, c)
    assert list(t.columns[:3]) == ["patient_id", "efs_days", "efs_event"] and "sex" in t


def test_readme_and_template_follow_the_schema():
    """The README's schema tables and the template manifest are the schema, not a copy that drifts."""
    from mibgkit.manifest import CLINICAL_COLUMNS, MANIFEST_COLUMNS, schema_markdown

    root = Path(__file__).parents[1]
    readme = (root / "README.md").read_text()
    assert schema_markdown(MANIFEST_COLUMNS) in readme
    assert schema_markdown(CLINICAL_COLUMNS) in readme
    header = (root / "data_manifest.csv").read_text().splitlines()[0].split(",")
    assert header == [c.name for c in MANIFEST_COLUMNS]

"""Any valid cohort renders; hostile text stays text.

A matrix of cohorts made from a 6-patient synthetic cohort by editing its manifest and clinical
table: what a new user tries first (6 patients, 3, 2), no event, every patient an event, cutoffs
nobody or everybody passes, a constant covariate, clinical columns entirely missing, separation, no
patient measurable.
Every notebook must render, ``mibgkit report`` exit 0, and what cannot be estimated be listed with
a reason on the index page. The default run samples the matrix; ``--run-slow`` runs all of it.
"""

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pydicom
import pytest

from mibgkit.cli import main
from mibgkit.errors import ManifestError
from mibgkit.manifest import read_clinical, read_manifest
from mibgkit.report import NOTEBOOKS

# The default run samples the cases that exercise "not estimable" (cutoffs nobody passes and
# separation together in one cohort); the plain 6-patient cohort is rendered by
# test_hostile_text_stays_text (with hostile text in it) on every run.
SAMPLED = {"no_events", "cut_none_separation"}


def _variants(m: pd.DataFrame, c: pd.DataFrame) -> dict:
    events = m.efs_event == "1"
    separated = c.assign(bone_marrow_metastasis=["yes" if e else "no" for e in events])  # BM metastasis = event
    return {
        "base": (m, c, {}),
        "no_events": (m.assign(efs_event="0"), c.assign(event_type="none"), {}),
        "all_events": (m.assign(efs_event="1"), c.assign(event_type="death"), {}),
        "three": (m.head(3), c.head(3), {}),
        "two": (m.head(2), c.head(2), {}),
        "cut_none": (m, c, {"cutoff_asp": 50, "cutoff_tmax_lmax": 1000}),
        "cut_all": (m, c, {"cutoff_asp": 0.0, "cutoff_tmax_lmax": 0.0}),
        "constant": (m, c.assign(bone_marrow_metastasis="no", curie_score="2"), {}),
        "columns_missing": (m, c.assign(curie_score="", histology="", idrf_number=""), {}),
        "separation": (m, separated, {}),
        "cut_none_separation": (m, separated, {"cutoff_asp": 50, "cutoff_tmax_lmax": 1000}),
        # no patient can be measured (every markups file missing): the QC table lists them all
        "none_measured": (m.assign(markups="patients/missing.mrk.json"), c, {}),
    }


def _assert_every_notebook_rendered(rc: int, out: Path) -> None:
    assert rc == 0
    for nb, _ in NOTEBOOKS:
        html = (out / f"{nb}.html").read_text()
        assert "Provenance" in html and "Traceback" not in html, nb
        assert not (out / f"{nb}.failed.html").exists(), nb


def _render(cohort: Path, name: str, out: Path, tweak=None) -> tuple[int, Path]:
    m = pd.read_csv(cohort / "data_manifest.csv", dtype=str, keep_default_na=False)
    c = pd.read_csv(cohort / "clinical.csv", dtype=str, keep_default_na=False)
    mm, cc, params = _variants(m, c)[name] if tweak is None else tweak(m, c)
    mm.to_csv(cohort / f"manifest_{name}.csv", index=False)  # beside the images: paths stay inside
    cc.to_csv(cohort / f"clinical_{name}.csv", index=False)
    (cohort / f"params_{name}.json").write_text(json.dumps({"clinical": str(cohort / f"clinical_{name}.csv"),
                                                            "n_boot": 30, **params}))
    rc = main(["report", "--manifest", str(cohort / f"manifest_{name}.csv"), "--out", str(out),
               "--params", str(cohort / f"params_{name}.json"), "-q"])
    return rc, out


@pytest.mark.parametrize("name", [pytest.param(n, marks=() if n in SAMPLED else pytest.mark.slow)
                                  for n in _variants(pd.DataFrame({"efs_event": []}), pd.DataFrame()).keys()])
def test_every_notebook_renders_on_the_cohort(small_cohort, tmp_path, name):
    rc, out = _render(small_cohort, name, tmp_path / name)
    _assert_every_notebook_rendered(rc, out)
    index = (out / "index.html").read_text()
    if name in ("no_events", "two", "all_events", "cut_none", "separation", "cut_none_separation", "none_measured"):
        assert "Not estimable in this cohort" in index  # ... with the reason beside each item
        assert re.search(r"<li>.*— .{10,}</li>", index), index[-800:]
    if name == "no_events":
        assert "ROC needs both positive and negative" in index
    if name.startswith("cut_none"):
        assert "every patient is in the &#x27;low&#x27; group" in index
    if name.endswith("separation"):  # the Cox model of the separating covariate, with why
        assert "&#x27;bone_marrow_metastasis&#x27;: no events where it equals 0" in index


# --------------------------------------------------------------------------- hostile text

SCRIPT = "<script>alert('x')</script>"
IMG = "<img src=x onerror=alert(1)>"
FORMULA = "=HYPERLINK(\"x\",\"y\")"


def _hostile(m: pd.DataFrame, c: pd.DataFrame, cohort: Path):
    """Plant script, image-tag, formula and path strings in the text fields a user controls: the
    manifest's file and segment names, the readers' segment names and DICOM header strings."""
    m = m.copy()
    # a file name and a segment name (a patient whose ROI cannot be read: its QC message names them)
    hostile_roi = Path(m.at[1, "roi"]).with_name(f"{IMG}{FORMULA}.seg.nrrd")
    shutil.copy(cohort / m.at[1, "roi"], cohort / hostile_roi)
    m.at[1, "roi"] = str(hostile_roi)
    m.at[1, "roi_segment"] = SCRIPT
    m.at[2, "roi"] = f"patients/{IMG}/missing.seg.nrrd"  # a file that does not exist
    # DICOM headers of one SPECT: descriptions, institution, names
    spect = cohort / m.at[0, "spect"]
    ds = pydicom.dcmread(spect)
    for kw in ("SeriesDescription", "StudyDescription", "InstitutionName", "Manufacturer",
               "ManufacturerModelName", "OperatorsName", "PatientName", "ProtocolName"):
        setattr(ds, kw, SCRIPT if kw != "PatientName" else "Evil^<b>x</b>")
    ds.save_as(spect)
    # readers.csv beside the manifest: segment names of two readers' ROIs (report 07 names them)
    r = pd.read_csv(cohort / "readers.csv", dtype=str, keep_default_na=False)
    r.loc[r["reader"] == "R2", "roi_segment"] = SCRIPT
    r.loc[r["reader"] == "R3", "roi_segment"] = FORMULA
    r.to_csv(cohort / "readers.csv", index=False)
    return m, c, {}


def test_hostile_text_stays_text(small_cohort, tmp_path):
    cohort = tmp_path / "cohort"
    shutil.copytree(small_cohort, cohort)
    rc, out = _render(cohort, "hostile", tmp_path / "out", tweak=lambda m, c: _hostile(m, c, cohort))
    _assert_every_notebook_rendered(rc, out)
    for f in out.rglob("*"):
        if f.is_dir() or "_executed" in f.parts or f.suffix not in (".html", ".csv"):
            continue
        text = f.read_text()
        if f.suffix == ".html":
            for raw in (SCRIPT, IMG, "<b>x</b>"):
                assert raw not in text, (f.name, raw)
        assert "Evil" not in text, f.name  # a DICOM name never reaches an output
        if f.suffix == ".csv":
            cells = pd.read_csv(f, dtype=str, keep_default_na=False).to_numpy().ravel()
            for cell in cells:
                if cell[:1] in "=+-@" and cell:
                    float(cell)  # only numbers may start like a formula
    for name in ("00_data_qc.html", "07_reader_agreement.html"):  # the messages are there, as text
        page = (out / name).read_text()
        assert "&lt;script&gt;" in page or "&amp;lt;script" in page, name


@pytest.mark.parametrize("bad", [IMG, "=cmd|' /C calc'!A0", "../../etc/passwd", ".hidden", "-rf", "x" * 65, "a b"])
def test_unsafe_ids_are_a_manifest_error_naming_the_row(small_cohort, tmp_path, bad):
    m = pd.read_csv(small_cohort / "data_manifest.csv", dtype=str, keep_default_na=False)
    m.at[2, "patient_id"] = bad
    path = small_cohort / "manifest_bad_id.csv"
    m.to_csv(path, index=False)
    with pytest.raises(ManifestError, match=r"row 4: patient_id .* is not a valid ID"):
        read_manifest(path)
    c = pd.read_csv(small_cohort / "clinical.csv", dtype=str, keep_default_na=False)
    c.at[0, "patient_id"] = bad
    c.to_csv(small_cohort / "clinical_bad_id.csv", index=False)
    with pytest.raises(ManifestError, match=r"row 2: patient_id"):
        read_clinical(small_cohort / "clinical_bad_id.csv")


@pytest.mark.parametrize("good", ["NB001", "p_1.2-3", "_x", "A" * 64])
def test_safe_ids_pass(small_cohort, good):
    m = pd.read_csv(small_cohort / "data_manifest.csv", dtype=str, keep_default_na=False)
    m.at[0, "patient_id"] = good
    m.to_csv(small_cohort / "manifest_good_id.csv", index=False)
    assert good in read_manifest(small_cohort / "manifest_good_id.csv").index

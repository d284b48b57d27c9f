"""The workbook end to end: every notebook runs on the synthetic cohort and renders to HTML that
shows the published numbers beside this run's, with no code, no machine paths and no DICOM identity."""

import re
import shutil
from pathlib import Path

import nbformat
import pandas as pd
import pydicom
import pytest

from mibgkit.cli import main
from mibgkit.report import NOTEBOOKS, ReportError, default_notebooks_dir, run_report

REPO = Path(__file__).resolve().parents[1]


def _tree_digest(root: Path) -> dict[str, tuple[int, str]]:
    """Every file under ``root``: size, SHA-256 and modification time."""
    from mibgkit.provenance import sha256_file

    return {f.relative_to(root).as_posix(): (f.stat().st_mtime_ns, sha256_file(f))
            for f in sorted(root.rglob("*")) if f.is_file()}


@pytest.fixture(scope="session")
def rendered(default_cohort, tmp_path_factory):
    out = tmp_path_factory.mktemp("reports")
    before = _tree_digest(default_cohort)
    assert main(["report", "--manifest", str(default_cohort / "data_manifest.csv"), "--out", str(out), "-q"]) == 0
    out.joinpath("inputs-unchanged").write_text(str(before == _tree_digest(default_cohort)))
    return out


def test_no_input_file_is_modified(rendered):
    """A full run (extraction, every notebook) leaves every input file's bytes and mtime as they were."""
    assert (rendered / "inputs-unchanged").read_text() == "True"


def test_notebooks_are_committed_clean_with_a_parameters_cell():
    for name, _ in NOTEBOOKS:
        nb = nbformat.read(default_notebooks_dir() / f"{name}.ipynb", as_version=4)
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, name
        assert all(not c.get("outputs") and not c.get("execution_count") for c in nb.cells if c.cell_type == "code"), name


def test_every_notebook_is_rendered_without_code(rendered):
    for name, title in NOTEBOOKS:
        html = (rendered / f"{name}.html").read_text()
        assert "Provenance" in html, name
        assert html.count("mibgkit commit") == 1, name  # the provenance table once, formatted
        for code in ("load_cohort(", "plots.set_style()", "display(Markdown(", "warnings.filterwarnings"):
            assert code not in html, (name, code)  # no input cells
        assert "Traceback" not in html, name
        executed = nbformat.read(rendered / "_executed" / f"{name}.ipynb", as_version=4)
        errors = [o for c in executed.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
        assert not errors, name
    index = (rendered / "index.html").read_text()
    assert all(f"{name}.html" in index for name, _ in NOTEBOOKS)


def _identities(cohort: Path) -> set[str]:
    """Every DICOM identity value and every identity column of the clinical export."""
    found = set()
    for f in cohort.rglob("*.dcm"):
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        for kw in ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber", "InstitutionName",
                   "ReferringPhysicianName", "OtherPatientIDs"):
            v = str(ds.get(kw, "") or "").strip()
            if len(v) >= 4:
                found.add(v)
                found.update(p for p in re.split(r"[\^ ]", v) if len(p) >= 5)
    clinical = pd.read_csv(cohort / "clinical.csv", dtype=str, keep_default_na=False)
    for col in ("patient_name", "birth_date", "hospital_mrn"):
        for v in clinical.get(col, []):
            if len(v) >= 4:
                found.add(v)
                found.update(p for p in re.split(r"[\^ ]", v) if len(p) >= 5)
    return found


def test_no_identity_and_no_machine_paths_in_any_output(rendered, default_cohort):
    identities = _identities(default_cohort)
    assert len(identities) > 100  # the generator planted names, IDs, birth dates, accession numbers
    machine = {str(default_cohort), str(rendered), str(REPO), str(Path.home())}
    for f in rendered.rglob("*"):
        if f.suffix not in (".html", ".csv", ".json") or "_executed" in f.parts:
            continue
        text = f.read_text()
        leaked = [s for s in identities if s in text]
        assert not leaked, f"{f.name} contains DICOM/clinical identity {leaked[:3]}"
        paths = [m for m in machine if m in text]
        assert not paths, f"{f.name} contains machine path {paths}"


def test_table3_and_table1_counts_equal_the_paper(rendered):
    t3 = pd.read_csv(rendered / "tables" / "table3_at_paper_cutoffs.csv")
    assert len(t3) == 8 and t3["equal"].all(), t3
    roc = pd.read_csv(rendered / "tables" / "table3_roc.csv").set_index(["variable", "source"])
    for marker in ("Tmax/Lmax", "ASP"):  # this run's Youden optimum gives the paper's 2×2 table too
        cells = ["TP", "FN", "FP", "TN"]
        assert roc.loc[(marker, "this run"), cells].tolist() == roc.loc[(marker, "paper"), cells].tolist(), marker
    t1 = pd.read_csv(rendered / "tables" / "table1.csv", keep_default_na=False)
    categorical = t1[(t1.level != "") & (t1.paper != "")]
    assert len(categorical) >= 30
    assert (categorical["equal"].astype(str) == "True").all(), categorical[categorical["equal"].astype(str) != "True"]
    outcome = pd.read_csv(rendered / "tables" / "table1_outcome.csv").set_index("item")
    for item in ("patients", "events", "event: relapse", "event: progression", "event: death"):
        assert bool(outcome.at[item, "equal"]), item


def test_table2_pattern_in_the_report(rendered):
    uni = pd.read_csv(rendered / "tables" / "table2_univariate.csv").set_index("covariate")
    for var in ("bone_marrow_metastasis", "tmax_lmax", "tmax_lmean", "asphericity", "curie_score", "idrf_number"):
        assert uni.at[var, "p"] < 0.05 and uni.at[var, "hr"] > 1, var
    for var in ("tmean_lmean", "tmean_mmean"):
        assert uni.at[var, "p"] >= 0.05, var
    steps = pd.read_csv(rendered / "tables" / "table2_stepwise_steps.csv")
    assert (steps["action"] == "enter").any()


def test_km_means_are_reported_for_every_group(rendered):
    km = pd.read_csv(rendered / "tables" / "km_mean_efs.csv")
    assert len(km) == 6 and km["paper"].notna().all()


def test_rerun_gives_identical_tables(rendered, default_cohort, tmp_path):
    run_report(default_cohort / "data_manifest.csv", out_dir=tmp_path, only=["04_roc_cutoffs"], progress=False)
    for name in ("table3_roc.csv", "table3_at_paper_cutoffs.csv"):
        assert (tmp_path / "tables" / name).read_bytes() == (rendered / "tables" / name).read_bytes()


def test_a_failing_notebook_stops_the_run_and_keeps_the_previous_report(default_cohort, tmp_path):
    nbdir = tmp_path / "notebooks"
    shutil.copytree(default_notebooks_dir(), nbdir)
    out = tmp_path / "out"
    run_report(default_cohort / "data_manifest.csv", out_dir=out, notebooks_dir=nbdir, only=["04_roc_cutoffs"],
               progress=False)
    good = (out / "04_roc_cutoffs.html").read_text()
    nb = nbformat.read(nbdir / "04_roc_cutoffs.ipynb", as_version=4)
    nb.cells.insert(5, nbformat.v4.new_code_cell(f"raise ValueError('planted failure in {default_cohort}')"))
    nbformat.write(nb, nbdir / "04_roc_cutoffs.ipynb")
    with pytest.raises(ReportError, match="04_roc_cutoffs failed in cell .*ValueError: planted failure"):
        run_report(default_cohort / "data_manifest.csv", out_dir=out, notebooks_dir=nbdir, only=["04_roc_cutoffs"],
                   progress=False)
    assert (out / "04_roc_cutoffs.html").read_text() == good
    failed = (out / "04_roc_cutoffs.failed.html").read_text()
    assert "planted failure" in failed
    assert str(default_cohort) not in failed and str(REPO) not in failed and "Traceback" not in failed

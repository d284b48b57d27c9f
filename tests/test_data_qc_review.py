"""The QC report lists the analyst's review (review.csv beside the manifest, written by the viewer)."""

from __future__ import annotations

import shutil

import pytest

from mibgkit.errors import QCWarning
from mibgkit.manifest import read_manifest
from mibgkit.report import run_report
from mibgkit.review import set_review
from mibgkit.workbook import data_qc


def test_review_table_in_manifest_order_and_qc_report_lists_it(small_cohort, tmp_path):
    cohort = tmp_path / "cohort"
    shutil.copytree(small_cohort, cohort)
    manifest = read_manifest(cohort / "data_manifest.csv")
    assert data_qc.review_table(manifest.attrs["manifest"], list(manifest.index)) == (None, "")
    review = cohort / "review.csv"
    pids = list(manifest.index)
    set_review(review, pids[2], "exclude", "<b>sphere</b> in the kidney", order=pids)
    set_review(review, pids[0], "ok", "", order=pids)
    table, problem = data_qc.review_table(manifest.attrs["manifest"], pids)
    assert problem == ""
    assert list(table.patient_id) == [pids[0], pids[2]]
    run_report(cohort / "data_manifest.csv", out_dir=tmp_path / "out", only=["00_data_qc"], progress=False)
    html = (tmp_path / "out" / "00_data_qc.html").read_text()
    assert "2 of 6 patients reviewed" in html
    assert "&lt;b&gt;sphere&lt;/b&gt; in the kidney" in html and "<b>sphere</b>" not in html


@pytest.mark.parametrize("content, says", [
    ("patient_id,review,note\nNB001,maybe,\n", "row 2: review 'maybe' is not one of ok, needs attention, exclude"),
    ("", "cannot be read as CSV"),
])
def test_a_review_file_that_cannot_be_used_is_named_and_the_report_goes_on(small_cohort, tmp_path, content, says):
    cohort = tmp_path / "cohort"
    shutil.copytree(small_cohort, cohort)
    (cohort / "review.csv").write_text(content)
    manifest = read_manifest(cohort / "data_manifest.csv")
    table, problem = data_qc.review_table(manifest.attrs["manifest"], list(manifest.index))
    assert table is None and problem.startswith("review.csv: ")
    run_report(cohort / "data_manifest.csv", out_dir=tmp_path / "out", only=["00_data_qc"], progress=False)
    html = (tmp_path / "out" / "00_data_qc.html").read_text()
    assert "The review file cannot be used" in html and says in html


def test_review_rows_of_patients_not_in_the_manifest_are_left_out_with_a_warning(small_cohort, tmp_path):
    cohort = tmp_path / "cohort"
    shutil.copytree(small_cohort, cohort)
    (cohort / "review.csv").write_text("patient_id,review,note\nNB999,ok,\nNB002,exclude,x\n")
    manifest = read_manifest(cohort / "data_manifest.csv")
    with pytest.warns(QCWarning, match=r"review.csv: rows of patients that are not in the manifest are left out: NB999 \(row 2\)"):
        table, problem = data_qc.review_table(manifest.attrs["manifest"], list(manifest.index))
    assert problem == "" and list(table.patient_id) == ["NB002"]

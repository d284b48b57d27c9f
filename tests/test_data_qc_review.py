"""The QC report lists the analyst's review (review.csv beside the manifest, written by the viewer)."""

from __future__ import annotations

import shutil

from mibgkit.manifest import read_manifest
from mibgkit.report import run_report
from mibgkit.review import set_review
from mibgkit.workbook import data_qc


def test_review_table_in_manifest_order_and_qc_report_lists_it(small_cohort, tmp_path):
    cohort = tmp_path / "cohort"
    shutil.copytree(small_cohort, cohort)
    manifest = read_manifest(cohort / "data_manifest.csv")
    assert data_qc.review_table(manifest.attrs["manifest"], list(manifest.index)) is None
    review = cohort / "review.csv"
    pids = list(manifest.index)
    set_review(review, pids[2], "exclude", "<b>sphere</b> in the kidney", order=pids)
    set_review(review, pids[0], "ok", "", order=pids)
    table = data_qc.review_table(manifest.attrs["manifest"], pids)
    assert list(table.patient_id) == [pids[0], pids[2]]
    run_report(cohort / "data_manifest.csv", out_dir=tmp_path / "out", only=["00_data_qc"], progress=False)
    html = (tmp_path / "out" / "00_data_qc.html").read_text()
    assert "2 of 6 patients reviewed" in html
    assert "&lt;b&gt;sphere&lt;/b&gt; in the kidney" in html and "<b>sphere</b>" not in html

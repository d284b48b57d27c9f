"""The live viewer and the review file: its numbers are those of ``mibgkit extract``."""

from __future__ import annotations

import base64
import hashlib
import io
import math
import re

import pandas as pd
import pytest
import traitlets
from PIL import Image

from mibgkit import slicer
from mibgkit.errors import InputError, ManifestError, OutputError
from mibgkit.extraction import extract
from mibgkit.features import FEATURE_COLUMNS, SPHERES
from mibgkit.manifest import read_manifest
from mibgkit.review import REVIEW_COLUMNS, read_review, set_review
from mibgkit.viewer import NO_POINT, PatientViewer, format_number


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """A 3-patient synthetic cohort of this module's own (the viewer writes review.csv beside it)."""
    from mibgkit.synth.generate import generate_cohort

    out = tmp_path_factory.mktemp("viewer")
    generate_cohort(out, n=3, seed=11, progress=False, workers=1)
    return out


@pytest.fixture(scope="module")
def manifest(cohort):
    return read_manifest(cohort / "data_manifest.csv")


@pytest.fixture(scope="module")
def input_hashes(cohort):
    """Every file of the cohort as generated, hashed before any test of this module touched it."""
    return _hashes(cohort)


def _hashes(folder) -> dict:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _extracted(manifest: pd.DataFrame, pid: str, **kwargs) -> pd.Series:
    run = extract(manifest.loc[[pid]], progress=False, **kwargs)
    assert run.n_errors == 0, run.qc_csv
    features, _ = run.tables()
    return features.loc[pid]


def _assert_same_as_extract(viewer: PatientViewer, expected: pd.Series) -> None:
    got = viewer.features
    for col in FEATURE_COLUMNS:
        a, b = float(got[col]), float(expected[col])
        assert a == b or (math.isnan(a) and math.isnan(b)), (col, a, b)
    assert got["qc_warnings"] == expected["qc_warnings"]
    assert viewer.asphericity == float(expected["asphericity"])
    assert viewer.mtv_ml == float(expected["mtv_ml"])
    assert viewer.tmax_lmax == float(expected["tmax_lmax"])


def test_numbers_equal_extract_for_the_roi(manifest, input_hashes):
    viewer = PatientViewer(manifest, "NB001")
    assert viewer.error == ""
    _assert_same_as_extract(viewer, _extracted(manifest, "NB001"))
    panel = viewer._w_numbers.value
    assert f'data-key="asphericity" style="text-align:right">{format_number("asphericity", viewer.asphericity)}<' in panel


@pytest.mark.parametrize("method, fraction", [("percent_max", None), ("adaptive", 0.45)])
def test_numbers_equal_extract_for_a_threshold(manifest, method, fraction):
    viewer = PatientViewer(manifest, "NB002")
    seen = []
    viewer.observe(lambda c: seen.append(c["new"]), "asphericity")
    viewer.mtv_method = method
    viewer.mtv_fraction = fraction
    params = None if fraction is None else {"fraction": fraction}
    _assert_same_as_extract(viewer, _extracted(manifest, "NB002", mtv_method=method, mtv_params=params))
    assert seen and seen[-1] == viewer.asphericity
    assert viewer.features["mtv_method"] == method


def test_constructor_takes_the_mtv_definition(cohort, manifest):
    viewer = PatientViewer(cohort / "data_manifest.csv", "NB003", mtv_method="percent_max", mtv_fraction=0.5)
    _assert_same_as_extract(viewer, _extracted(manifest, "NB003", mtv_method="percent_max",
                                               mtv_params={"fraction": 0.5}))


def test_moved_spheres_round_trip_through_markups_and_extract(cohort, manifest):
    viewer = PatientViewer(manifest, "NB001")
    start = viewer.liver_centre_mm
    spacing = viewer._current.grid.spacing
    viewer.move_sphere("liver", 0, 2)
    viewer.move_sphere("liver", 2, -1)
    assert viewer.liver_centre_mm == pytest.approx((start[0] + 2 * spacing[0], start[1], start[2] - spacing[2]))
    # the left muscle sphere half out of the field of view: a QC warning, as extraction gives it
    spect = viewer._current.data.spect
    edge_x = spect.TransformIndexToPhysicalPoint((spect.GetSize()[0] - 1, 0, 0))[0]
    y, z = viewer.muscle_left_centre_mm[1:]
    viewer.muscle_left_centre_mm = [edge_x, y, z]
    assert "muscle_left sphere: only" in viewer.features["qc_warnings"]

    path = cohort / "patients" / "NB001" / "viewer.mrk.json"
    viewer.save_markups(path)
    points = slicer.read_markups(path)
    assert {k: tuple(float(v) for v in points[k]) for k in SPHERES} == viewer.centres

    table = pd.read_csv(cohort / "data_manifest.csv", dtype=str, keep_default_na=False)
    table.loc[table["patient_id"] == "NB001", "markups"] = "patients/NB001/viewer.mrk.json"
    moved_manifest = cohort / "manifest_moved.csv"
    table.to_csv(moved_manifest, index=False)
    expected = _extracted(read_manifest(moved_manifest), "NB001")
    _assert_same_as_extract(viewer, expected)
    assert "muscle_left sphere: only" in expected["qc_warnings"]
    moved_manifest.unlink()


def test_arrow_buttons_move_the_selected_sphere_by_one_voxel(manifest):
    viewer = PatientViewer(manifest, "NB001")
    viewer._w_sphere.value = "muscle_right"
    before = viewer.muscle_right_centre_mm
    buttons = {b.description: b for b in viewer._w_moves}
    buttons["L ▶"].click()
    buttons["S ▲"].click()
    sx, _, sz = viewer._current.grid.spacing
    assert viewer.muscle_right_centre_mm == pytest.approx((before[0] + sx, before[1], before[2] + sz))
    assert viewer.liver_centre_mm == viewer._current.data.centres["liver"]


def test_placing_a_sphere_on_the_axial_view(manifest):
    viewer = PatientViewer(manifest, "NB001")
    entry = viewer._current
    centre = viewer.liver_centre_mm
    idx = entry.grid.index(centre)[0]
    viewer._w_slice["axial"].value = int(round(idx[2]))
    col, row = viewer._to_pixels(entry, "axial", idx)
    placed = viewer.place_sphere("liver", "axial", col + 10, row)
    mm_per_px = viewer._scale(entry)
    assert placed[0] == pytest.approx(centre[0] + 10 * mm_per_px)
    assert placed[1] == pytest.approx(centre[1])
    assert viewer.liver_centre_mm == placed


def test_traits(manifest):
    viewer = PatientViewer(manifest)  # first patient by default
    assert viewer.patient_id == "NB001"
    for name in ("asphericity", "mtv_ml", "tmax_lmax", "features", "error"):
        with pytest.raises(traitlets.TraitError):
            setattr(viewer, name, 1.0)
    with pytest.raises(traitlets.TraitError):
        viewer.patient_id = "NB999"
    with pytest.raises(traitlets.TraitError):
        viewer.mtv_fraction = 1.5
    with pytest.raises(traitlets.TraitError):
        viewer.mtv_method = "watershed"
    for bad in ((1.0, 2.0), (1.0, math.nan, 2.0), "abc"):
        with pytest.raises(traitlets.TraitError):
            viewer.liver_centre_mm = bad
    moved = tuple(v + 3.0 for v in viewer.liver_centre_mm)
    viewer.liver_centre_mm = moved
    viewer._w_next.click()  # patient chooser: next
    assert viewer.patient_id == "NB002"
    _assert_same_as_extract(viewer, _extracted(manifest, "NB002"))
    assert viewer._w_patient.value == "NB002"
    viewer._w_patient.value = "NB001"  # back: the moved sphere is where it was left
    assert viewer.patient_id == "NB001"
    assert viewer.liver_centre_mm == moved
    viewer._w_method.value = "percent_max"  # the controls drive the traits
    assert viewer.mtv_method == "percent_max" and viewer.mtv_fraction is None
    assert viewer._w_fraction.value == pytest.approx(0.40)
    viewer._w_fraction.value = 0.47
    assert viewer.mtv_fraction == 0.47
    viewer.mtv_fraction = None
    assert viewer._w_fraction.value == pytest.approx(0.40)


def test_a_failed_measurement_is_shown_not_raised(manifest):
    viewer = PatientViewer(manifest, "NB001")
    viewer.liver_centre_mm = (1e4, 1e4, 1e4)  # entirely outside the image
    assert "liver sphere" in viewer.error and "outside the image" in viewer.error
    assert math.isnan(viewer.asphericity) and math.isnan(viewer.tmax_lmax)
    assert 'data-key="error"' in viewer._w_numbers.value


def test_save_markups_and_to_png_never_overwrite_an_input(manifest):
    viewer = PatientViewer(manifest, "NB001")
    for write in (viewer.save_markups, viewer.to_png):
        for path in (manifest.loc["NB001", "markups"], manifest.attrs["manifest"], manifest.loc["NB002", "roi"]):
            with pytest.raises(OutputError, match="input"):
                write(path)


def test_a_patient_that_cannot_be_read_shows_no_centres_of_another(cohort, tmp_path):
    """Switching to (or opening on) a patient whose files cannot be read leaves no centre of the
    previous patient on show, and save_markups refuses instead of writing them under the new patient."""
    m = pd.read_csv(cohort / "data_manifest.csv", dtype=str, keep_default_na=False)
    m.loc[m.patient_id == "NB002", "roi"] = "data_manifest.csv"  # not a segmentation
    path = cohort / "manifest_bad_roi.csv"
    m.to_csv(path, index=False)
    viewer = PatientViewer(path, "NB001")
    assert all(math.isfinite(v) for v in viewer.liver_centre_mm)
    viewer.patient_id = "NB002"
    assert viewer.error and "NB002" in viewer.error
    assert all(math.isnan(v) for c in viewer.centres.values() for v in c)
    with pytest.raises(InputError, match="no patient is loaded"):
        viewer.save_markups(tmp_path / "x.mrk.json")
    assert not (tmp_path / "x.mrk.json").exists()
    viewer.to_png(tmp_path / "failed.png")  # the view says why, it does not raise
    viewer.patient_id = "NB001"  # back: its own centres again
    with pytest.raises(traitlets.TraitError):  # NaN is for "no patient" only
        viewer.liver_centre_mm = NO_POINT
    assert viewer.centres == PatientViewer(path, "NB001").centres
    opened = PatientViewer(path, "NB002")
    assert all(math.isnan(v) for v in opened.liver_centre_mm) and opened.error
    with pytest.raises(InputError, match="no patient is loaded"):
        opened.save_markups(tmp_path / "y.mrk.json")
    path.unlink()


def test_a_script_that_opens_a_viewer_exits_cleanly(cohort):
    """The CT loads in a thread of its own: leaving while it loads must not abort the interpreter."""
    import subprocess
    import sys

    code = f"from mibgkit.viewer import PatientViewer; PatientViewer({str(cohort / 'data_manifest.csv')!r}, 'NB001')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def test_bad_view_or_axis_is_a_clear_error(manifest):
    viewer = PatientViewer(manifest, "NB001")
    with pytest.raises(ValueError, match="axis must be 0"):
        viewer.move_sphere("liver", 5)
    with pytest.raises(ValueError, match="view 'bogus'"):
        viewer.place_sphere("liver", "bogus", 10, 10)


def test_review_round_trip(cohort, manifest):
    viewer = PatientViewer(manifest, "NB002")
    path = cohort / "review.csv"
    assert viewer.review_path == path
    viewer.set_review("exclude", "=HYPERLINK(\"x\") motion, \"quoted\"\nsecond line")
    viewer._w_patient.value = "NB001"
    viewer._w_review.value = "needs attention"
    viewer._w_note.value = "liver sphere near a lesion"
    viewer._w_save_review.click()
    table = read_review(path, patients=manifest.index)
    assert list(table.columns) == list(REVIEW_COLUMNS)
    assert table.values.tolist() == [
        ["NB001", "needs attention", "liver sphere near a lesion"],
        ["NB002", "exclude", "=HYPERLINK(\"x\") motion, \"quoted\"\nsecond line"],
    ]
    first = path.read_bytes()
    assert b"'=HYPERLINK" in first  # inert in a spreadsheet
    viewer.set_review("needs attention", "liver sphere near a lesion")  # the same again: the same bytes
    assert path.read_bytes() == first
    viewer._w_patient.value = "NB002"  # the controls show a patient's saved review
    assert viewer._w_review.value == "exclude"
    path.unlink()


@pytest.mark.parametrize("text, problem", [
    ("patient_id,review,note\n../etc,ok,\n", "not a valid ID"),
    ("patient_id,review,note\nNB001,maybe,\n", "is not one of ok, needs attention, exclude"),
    ("patient_id,review,note\nNB001,ok,\nNB001,exclude,\n", "reviewed twice"),
    ("patient_id,review\nNB001,ok\n", "missing column(s): note"),
    ("patient_id,review,note\nNB001,ok,\"a\x07b\"\n", "control characters"),
    ("patient_id,review,note\nNB001,ok,\"a\nb\n", "cannot be read as CSV"),
    ("", "cannot be read as CSV"),
])
def test_bad_review_files_are_refused(tmp_path, text, problem):
    path = tmp_path / "review.csv"
    path.write_text(text)
    with pytest.raises(ManifestError, match=re.escape(problem)):
        read_review(path)


def test_review_of_a_patient_not_in_the_manifest(tmp_path):
    path = tmp_path / "review.csv"
    path.write_text("patient_id,review,note\nNB007,ok,\n")
    assert read_review(path)["patient_id"].tolist() == ["NB007"]
    with pytest.raises(ManifestError, match="not in the manifest"):
        read_review(path, patients=["NB001"])
    with pytest.raises(ManifestError, match="file not found"):
        read_review(tmp_path / "none.csv")
    with pytest.raises(InputError, match="is not one of"):
        set_review(path, "NB001", "fine")
    assert path.read_text() == "patient_id,review,note\nNB007,ok,\n"  # a refused review changes nothing


def test_to_png_writes_the_current_view(manifest, tmp_path):
    viewer = PatientViewer(manifest, "NB003")
    path = viewer.to_png(tmp_path / "view.png")
    with Image.open(path) as im:
        assert im.format == "PNG"
        assert im.width > 4 * 384 and im.height > 384
    again = viewer.to_png(tmp_path / "again.png")
    assert again.read_bytes() == path.read_bytes()  # waits for the CT: no race in what it shows


def test_static_html_fallback_is_escaped(manifest):
    viewer = PatientViewer(manifest, "NB001")
    bundle = viewer._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    page = bundle["text/html"]
    png = re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page).group(1)
    assert Image.open(io.BytesIO(base64.b64decode(png))).format == "PNG"
    assert format_number("asphericity", viewer.asphericity) in page
    viewer.set_trait("features", {**viewer.features, "qc_warnings": "<script>alert(1)</script>; a & b"})
    page = viewer.static_html()
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "a &amp; b" in page


def test_nbconvert_without_a_kernel_shows_the_static_view(cohort, tmp_path):
    nbformat = pytest.importorskip("nbformat")
    from nbclient import NotebookClient
    from nbconvert import HTMLExporter

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "from mibgkit.viewer import PatientViewer\n"
        f"PatientViewer({str(cohort / 'data_manifest.csv')!r}, 'NB001')")]
    NotebookClient(nb, timeout=300, kernel_name="python3", store_widget_state=False,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    page, _ = HTMLExporter().from_notebook_node(nb)
    assert 'class="mibgkit-viewer-static"' in page
    assert "data:image/png;base64," in page


def test_inputs_are_never_modified(cohort, manifest, input_hashes, tmp_path):
    viewer = PatientViewer(manifest, "NB001")
    viewer.mtv_method = "adaptive"
    viewer.move_sphere("liver", 1, 1)
    viewer.save_markups(tmp_path / "m.mrk.json")
    viewer.to_png(tmp_path / "v.png")
    viewer.patient_id = "NB003"
    viewer.wait_for_ct()
    after = _hashes(cohort)
    assert {k: after.get(k) for k in input_hashes} == input_hashes

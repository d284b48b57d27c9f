"""DICOM SEG read through rois.read_roi: the same voxels as the mask highdicom wrote, on any grid,
with sparse, reordered, overlapping and fractional frames; and the same ROI as .seg.nrrd."""

from __future__ import annotations

import math
import random
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.sr.codedict import codes

from mibgkit import dicom_out, dicom_seg, io, rois, slicer_write
from mibgkit.errors import GeometryError, InputError, QCWarning, SegmentationError
from mibgkit.geometry import crop, lps_to_index, roi_on_grid, same_grid
from mibgkit.shape import shape_features
from mibgkit.synth.dicom import write_ct_series

IDENTITY = {"PatientID": "NB-T01", "PatientName": "Test^Seg", "PatientBirthDate": "20190101", "PatientSex": "F",
            "StudyDate": "20240105", "StudyTime": "101500", "AccessionNumber": "A1", "StudyID": "1"}
SHAPE = (7, 8, 10)  # (z, y, x); 8 x 10 = 80 pixels, a whole number of bytes per BINARY frame


def rotation(axis, degrees) -> np.ndarray:
    k = np.asarray(axis, float) / np.linalg.norm(axis)
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    t = math.radians(degrees)
    return np.eye(3) + math.sin(t) * kx + (1 - math.cos(t)) * kx @ kx


GRIDS = {
    "anisotropic": dict(spacing=(0.8, 1.2, 3.0), origin=(10.0, -20.0, 30.0), direction=np.eye(3), thickness=2.0),
    "oblique": dict(spacing=(1.1, 0.9, 2.5), origin=(-40.5, 12.25, -300.0), direction=rotation([1, 2, 3], 30),
                    thickness=2.5),
}


def write_ct(folder: Path, grid: str = "anisotropic", shape=SHAPE, series=None) -> tuple[list, sitk.Image]:
    """A small CT series (zeros) on one of GRIDS; its datasets in slice order, and the image load_image reads."""
    g = GRIDS[grid]
    write_ct_series(np.zeros(shape), folder, spacing=g["spacing"], origin=g["origin"], direction=g["direction"],
                    identity=IDENTITY, series={"SliceThickness": str(g["thickness"]), **(series or {})})
    sources = [pydicom.dcmread(p) for p in sorted(folder.glob("*.dcm"))]
    return sources, io.load_image(folder)


def _description(number: int, name: str) -> hd.seg.SegmentDescription:
    return hd.seg.SegmentDescription(
        segment_number=number, segment_label=name, segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Neoplasm, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL)


def write_seg(path: Path, sources, masks: dict[str, np.ndarray], *, fractional: bool = False,
              max_fractional_value: int = 255) -> Path:
    """A SEG written by highdicom: one segment per mask ((z, y, x) on the sources' grid), numbered 1, 2, ..."""
    arrays = [np.asarray(m) for m in masks.values()]
    pixels = np.stack(arrays, axis=-1)
    pixels = pixels.astype(np.float32) if fractional else pixels.astype(np.uint8)
    kwargs = dict(max_fractional_value=max_fractional_value) if fractional else {}
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=pixels, segmentation_type="FRACTIONAL" if fractional else "BINARY",
        segment_descriptions=[_description(n, name) for n, name in enumerate(masks, start=1)],
        series_instance_uid=hd.UID(), series_number=40, sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer="mibgkit tests", manufacturer_model_name="test", software_versions="0", device_serial_number="0",
        **kwargs)
    seg.save_as(path)
    return path


def reorder_frames(path: Path, order) -> Path:
    """Rewrite a BINARY SEG with its frames (pixels and per-frame items together) in ``order``."""
    ds = pydicom.dcmread(path)
    n, rows, cols = int(ds.NumberOfFrames), int(ds.Rows), int(ds.Columns)
    bits = np.unpackbits(np.frombuffer(ds.PixelData, np.uint8), bitorder="little")[: n * rows * cols]
    frames = bits.reshape(n, rows * cols)[list(order)]
    ds.PixelData = np.packbits(frames.ravel(), bitorder="little").tobytes()
    items = list(ds.PerFrameFunctionalGroupsSequence)
    ds.PerFrameFunctionalGroupsSequence = pydicom.Sequence([items[i] for i in order])
    ds.save_as(path)
    return path


def mask_image(array_zyx: np.ndarray, grid: sitk.Image) -> sitk.Image:
    image = sitk.GetImageFromArray(np.asarray(array_zyx, np.uint8))
    image.CopyInformation(grid)
    return image


def expected_on_slices(array_zyx: np.ndarray, grid: sitk.Image, k0: int, k1: int) -> sitk.Image:
    """The known mask restricted to slices k0..k1 (inclusive): the grid highdicom's volume covers."""
    full = mask_image(array_zyx, grid)
    nx, ny, _ = grid.GetSize()
    return crop(full, (0, 0, k0), (nx, ny, k1 - k0 + 1))


def assert_identical(got: sitk.Image, expected: sitk.Image):
    """Same grid (within 1e-6 mm), same voxels, same shape features."""
    assert got.GetPixelID() == sitk.sitkUInt8
    assert same_grid(got, expected, tol=1e-6), (got.GetOrigin(), expected.GetOrigin(), got.GetSpacing(),
                                                expected.GetSpacing(), got.GetDirection(), expected.GetDirection())
    np.testing.assert_array_equal(sitk.GetArrayFromImage(got), sitk.GetArrayFromImage(expected))
    f_got, f_exp = shape_features(got), shape_features(expected)
    for key in f_exp:
        assert f_got[key] == pytest.approx(f_exp[key], rel=1e-9, abs=1e-9), key


def blob(shape=SHAPE, slices=range(1, 6)) -> np.ndarray:
    """A lumpy, asymmetric mask on ``slices`` (so an axis swap or flip cannot pass)."""
    z, y, x = np.indices(shape)
    m = ((x - 4.2) ** 2 / 9 + (y - 3.6) ** 2 / 4 + (z - 3.1) ** 2 / 5 <= 1.0) | ((x == 7) & (y == 1))
    keep = np.zeros(shape[0], bool)
    keep[list(slices)] = True
    return m & keep[:, None, None]


# ------------------------------------------------------------------------------------------------
# grids
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("grid", ["anisotropic", "oblique"])
def test_seg_round_trip_on_any_grid(tmp_path, grid):
    sources, ct = write_ct(tmp_path / "ct", grid)
    known = blob()
    path = write_seg(tmp_path / "seg.dcm", sources, {"tumour": known})
    got = rois.read_roi(path, segment="tumour", patient="NB-T01")
    assert rois.roi_format(path) == "seg"
    k = np.flatnonzero(known.any(axis=(1, 2)))
    assert_identical(got, expected_on_slices(known, ct, k[0], k[-1]))
    # spacing is Spacing Between Slices, not the Slice Thickness (2.0 mm on the anisotropic grid)
    assert got.GetSpacing()[2] == pytest.approx(GRIDS[grid]["spacing"][2], abs=1e-9)
    # a SEG on the CT lattice, resampled onto the CT grid, is the known mask exactly
    np.testing.assert_array_equal(sitk.GetArrayFromImage(roi_on_grid(got, ct)), known.astype(np.uint8))


def test_sparse_frames_in_descending_and_shuffled_order(tmp_path):
    sources, ct = write_ct(tmp_path / "ct", "oblique")
    known = blob(slices=[1, 2, 4, 5])  # slice 3 empty: a gap in the frames
    path = write_seg(tmp_path / "seg.dcm", sources, {"tumour": known})
    assert int(pydicom.dcmread(path).NumberOfFrames) == 4  # empty frames are omitted: sparse
    expected = expected_on_slices(known, ct, 1, 5)
    assert_identical(rois.read_roi(path, segment="tumour"), expected)
    n = 4
    orders = {"reversed": list(range(n))[::-1], "shuffled": random.Random(3).sample(range(n), n)}
    for name, order in orders.items():
        copy = tmp_path / f"seg_{name}.dcm"
        copy.write_bytes(path.read_bytes())
        reorder_frames(copy, order)
        z = [float(f.PlanePositionSequence[0].ImagePositionPatient[0])
             for f in pydicom.dcmread(copy).PerFrameFunctionalGroupsSequence]
        assert z != sorted(z) and z != sorted(z, reverse=True) or name == "reversed"
        assert_identical(rois.read_roi(copy, segment="tumour"), expected)


def test_ascending_frames_give_the_same_mask(tmp_path):
    sources, ct = write_ct(tmp_path / "ct")
    known = blob()
    path = write_seg(tmp_path / "seg.dcm", sources, {"tumour": known})
    z = [float(f.PlanePositionSequence[0].ImagePositionPatient[2])
         for f in pydicom.dcmread(path).PerFrameFunctionalGroupsSequence]
    assert z == sorted(z, reverse=True)  # highdicom writes head to feet
    reorder_frames(path, list(range(len(z)))[::-1])
    assert_identical(rois.read_roi(path, segment="tumour"), expected_on_slices(known, ct, 1, 5))


def test_overlapping_segments_are_read_one_at_a_time(tmp_path):
    sources, ct = write_ct(tmp_path / "ct")
    a = blob(slices=[1, 2, 3])
    b = np.roll(blob(slices=[2, 3, 4, 5]), 1, axis=2)
    assert (a & b).any()  # they overlap
    path = write_seg(tmp_path / "seg.dcm", sources, {"tumour": a, "lesion": b})
    # highdicom's volume spans the slices of every segment (1..5)
    assert_identical(rois.read_roi(path, segment="tumour"), expected_on_slices(a, ct, 1, 5))
    assert_identical(rois.read_roi(path, segment="lesion"), expected_on_slices(b, ct, 1, 5))
    assert_identical(rois.read_roi(path, label=2), expected_on_slices(b, ct, 1, 5))
    table = rois.list_rois(path)
    assert table["name"].tolist() == ["tumour", "lesion"]
    assert table["label_value"].tolist() == [1, 2]
    assert table["n_frames"].tolist() == [3, 4]
    assert set(table["segmentation_type"]) == {"BINARY"} and set(table["algorithm_type"]) == {"MANUAL"}
    assert table["property_type"].tolist() == ["Neoplasm", "Neoplasm"]
    assert rois.segment_names(path) == ["tumour", "lesion"]
    with pytest.raises(SegmentationError, match="choose one by Segment Label") as info:
        rois.read_roi(path, patient="NB-T01")
    assert "'tumour' (number 1)" in str(info.value) and "'lesion' (number 2)" in str(info.value)


def test_fractional_segment_is_binarised_at_half_the_maximum(tmp_path):
    sources, ct = write_ct(tmp_path / "ct")
    frac = np.zeros(SHAPE, np.float32)
    frac[2, 2:6, 2:8] = 0.3
    frac[2, 3, 3:6] = 0.495  # stored 99 of 200: out
    frac[2, 4, 3:6] = 0.5  # stored 100 of 200: in (v >= 0.5 max)
    frac[3, 1:6, 1:9] = 0.9
    frac[4, 2:4, 2:4] = 1.0
    path = write_seg(tmp_path / "frac.dcm", sources, {"tumour": frac}, fractional=True, max_fractional_value=200)
    assert rois.list_rois(path)["segmentation_type"].tolist() == ["FRACTIONAL"]
    known = frac >= 0.5
    assert_identical(rois.read_roi(path, segment="tumour"), expected_on_slices(known, ct, 2, 4))


def test_labelmap_seg(tmp_path):
    sources, ct = write_ct(tmp_path / "ct")
    a = blob(slices=[1, 2, 3])
    b = np.roll(blob(slices=[3, 4]), 3, axis=2) & ~a
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=a.astype(np.uint8) + 2 * b.astype(np.uint8), segmentation_type="LABELMAP",
        segment_descriptions=[_description(1, "tumour"), _description(2, "lesion")], series_instance_uid=hd.UID(),
        series_number=41, sop_instance_uid=hd.UID(), instance_number=1, manufacturer="mibgkit tests",
        manufacturer_model_name="test", software_versions="0", device_serial_number="0")
    seg.save_as(tmp_path / "labelmap.dcm")
    assert rois.roi_format(tmp_path / "labelmap.dcm") == "seg"
    assert rois.segment_names(tmp_path / "labelmap.dcm") == ["tumour", "lesion"]  # no background row
    for name, known in (("tumour", a), ("lesion", b)):
        assert_identical(rois.read_roi(tmp_path / "labelmap.dcm", segment=name), expected_on_slices(known, ct, 1, 4))


def test_seg_and_seg_nrrd_give_the_same_voxels_both_ways(tmp_path):
    sources, ct = write_ct(tmp_path / "ct", "oblique")
    known = blob()
    nrrd_path = slicer_write.write_segmentation(tmp_path / "tumour.seg.nrrd", {"tumour": mask_image(known, ct)})
    seg_path = write_seg(tmp_path / "tumour.dcm", sources, {"tumour": known})
    from_nrrd = rois.read_roi(nrrd_path, segment="tumour")
    from_seg = rois.read_roi(seg_path, segment="tumour")
    on_ct = [sitk.GetArrayFromImage(roi_on_grid(m, ct)) for m in (from_nrrd, from_seg)]
    np.testing.assert_array_equal(on_ct[0], on_ct[1])
    f_nrrd, f_seg = shape_features(from_nrrd), shape_features(from_seg)
    for key in f_nrrd:
        assert f_seg[key] == pytest.approx(f_nrrd[key], rel=1e-9), key
    # .seg.nrrd -> SEG -> mask, and SEG -> .seg.nrrd -> mask
    again_seg = write_seg(tmp_path / "again.dcm", sources,
                          {"tumour": sitk.GetArrayFromImage(roi_on_grid(from_nrrd, ct)).astype(bool)})
    again_nrrd = slicer_write.write_segmentation(tmp_path / "again.seg.nrrd", {"tumour": from_seg})
    assert_identical(rois.read_roi(again_seg, segment="tumour"), from_seg)
    assert_identical(rois.read_roi(again_nrrd, segment="tumour"), from_seg)


# ------------------------------------------------------------------------------------------------
# a synthetic-cohort patient
# ------------------------------------------------------------------------------------------------

SYNTHETIC = Path(__file__).resolve().parents[1] / "work" / "synthetic"


@pytest.fixture(scope="module")
def synthetic_patient(tmp_path_factory) -> Path:
    """NB001 of work/synthetic when present, else the one patient of a freshly generated cohort."""
    folder = SYNTHETIC / "patients" / "NB001"
    if (folder / "tumour.seg.nrrd").is_file() and (folder / "ct").is_dir():
        return folder
    from mibgkit.synth.generate import generate_cohort

    out = tmp_path_factory.mktemp("cohort")
    generate_cohort(out, n=1, seed=11, progress=False, workers=1)
    return next((out / "patients").iterdir())


def _lattice_offset(roi: sitk.Image, image: sitk.Image):
    """Integer index of ``roi``'s first voxel on ``image``'s lattice, or None when the lattices differ."""
    if not (np.allclose(roi.GetSpacing(), image.GetSpacing(), atol=1e-6)
            and np.allclose(roi.GetDirection(), image.GetDirection(), atol=1e-6)):
        return None
    offset = lps_to_index(image, [roi.GetOrigin()])[0]
    return np.rint(offset).astype(int) if np.allclose(offset, np.rint(offset), atol=1e-6) else None


def test_synthetic_patient_seg_nrrd_written_as_seg_reads_back_identical(synthetic_patient, tmp_path):
    roi = rois.read_roi(synthetic_patient / "tumour.seg.nrrd", segment="tumour")
    ct_folder, spect_file = synthetic_patient / "ct", synthetic_patient / "spect.dcm"
    ct = io.load_image(ct_folder)
    grid = ct if _lattice_offset(roi, ct) is not None else io.load_image(spect_file)
    assert _lattice_offset(roi, grid) is not None, "the segmentation is on neither grid"
    on_grid = sitk.GetArrayFromImage(roi_on_grid(roi, grid)).astype(bool)
    slices = np.flatnonzero(on_grid.any(axis=(1, 2)))
    if grid is ct:
        # only the source images holding the segment (their order: load_image's slice order)
        order = sorted(ct_folder.glob("*.dcm"), key=lambda p: float(np.dot(
            np.asarray(pydicom.dcmread(p, stop_before_pixels=True).ImagePositionPatient, float),
            np.reshape(grid.GetDirection(), (3, 3))[:, 2])))
        sources = [pydicom.dcmread(order[k]) for k in slices]
        path, name = write_seg(tmp_path / "tumour.dcm", sources, {"tumour": on_grid[slices]}), "tumour"
    else:
        # an NM multi-frame SPECT has no Plane Position Sequence: the SEG writer of DICOM out gives
        # highdicom plane positions computed from the image geometry
        mask = roi_on_grid(roi, grid)
        path = dicom_out.write_dicom_results(spect_file, {"spect": grid, "tumour MTV": mask}, None, tmp_path,
                                             patient_id="NB001")["seg"]
        name = "tumour MTV"
    back = rois.read_roi(path, segment=name, patient="NB001")
    offset = _lattice_offset(back, grid)
    assert offset is not None and offset[2] == slices[0]
    np.testing.assert_array_equal(sitk.GetArrayFromImage(roi_on_grid(back, grid)), on_grid.astype(np.uint8))
    f_nrrd, f_seg = shape_features(roi), shape_features(back)
    for key in f_nrrd:
        assert f_seg[key] == pytest.approx(f_nrrd[key], rel=1e-9), key


# ------------------------------------------------------------------------------------------------
# bad SEGs
# ------------------------------------------------------------------------------------------------


@pytest.fixture()
def seg_file(tmp_path):
    sources, _ = write_ct(tmp_path / "ct")
    return write_seg(tmp_path / "seg.dcm", sources, {"tumour": blob(), "liver": blob(slices=[5])})


def test_unknown_segment_lists_labels_and_numbers(seg_file):
    with pytest.raises(SegmentationError) as info:
        rois.read_roi(seg_file, segment="Tumour", patient="NB-T01")
    message = str(info.value)
    assert "patient NB-T01" in message and str(seg_file) in message
    assert "'tumour' (number 1)" in message and "'liver' (number 2)" in message
    with pytest.raises(SegmentationError, match="no segment has Segment Number 7"):
        rois.read_roi(seg_file, label=7)
    with pytest.raises(InputError, match="not both"):
        dicom_seg.read_dicom_seg(seg_file, segment="tumour", label=1)


def test_missing_slice_spacing_is_taken_from_frames_or_thickness(seg_file, tmp_path):
    ds = pydicom.dcmread(seg_file)
    del ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].SpacingBetweenSlices
    ds.save_as(tmp_path / "nosbs.dcm")
    # 'tumour' fills slices 1..5 and 'liver' slice 5: contiguous frames tell the spacing
    assert rois.read_roi(tmp_path / "nosbs.dcm", segment="tumour").GetSpacing()[2] == pytest.approx(3.0)
    # a single frame with Slice Thickness 2.0 mm: thickness is taken, with a warning
    sources, _ = write_ct(tmp_path / "ct1")
    single = write_seg(tmp_path / "single.dcm", sources, {"tumour": blob(slices=[3])})
    ds = pydicom.dcmread(single)
    del ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].SpacingBetweenSlices
    ds.save_as(single)
    with pytest.warns(QCWarning, match="Slice Thickness"):
        assert rois.read_roi(single).GetSpacing()[2] == pytest.approx(2.0)


def test_frames_without_position_are_a_geometry_error(seg_file, tmp_path):
    ds = pydicom.dcmread(seg_file)
    for item in ds.PerFrameFunctionalGroupsSequence:
        del item.PlanePositionSequence
    ds.save_as(tmp_path / "nopos.dcm")
    with pytest.raises(GeometryError, match="Plane Position") as info:
        rois.read_roi(tmp_path / "nopos.dcm", segment="tumour", patient="NB-T01")
    assert "patient NB-T01" in str(info.value) and "nopos.dcm" in str(info.value)

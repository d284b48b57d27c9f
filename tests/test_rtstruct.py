"""RT Structure Sets: contours rasterised on a reference grid by the documented rule (mibgkit.rtstruct), checked against
masks computed by hand (convex, non-convex, holes, even-odd overlap, union across planes, oblique
grids), the errors the rule demands, and a digital sphere's contours against its mask."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import DSfloat
from skimage.measure import find_contours

from mibgkit import rois, rtstruct
from mibgkit.errors import GeometryError, InputError, QCWarning, SegmentationError
from mibgkit.geometry import roi_on_grid
from mibgkit.shape import shape_features
from mibgkit.synth.dicom import write_ct_series

FOR_UID = "1.2.826.0.1.3680043.8.498.1001"


def rotation(axis, degrees) -> np.ndarray:
    k = np.asarray(axis, float) / np.linalg.norm(axis)
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    t = math.radians(degrees)
    return np.eye(3) + math.sin(t) * kx + (1 - math.cos(t)) * kx @ kx


def grid(size=(12, 10, 5), spacing=(1.0, 1.5, 3.0), origin=(10.0, -5.0, 20.0), direction=None) -> sitk.Image:
    image = sitk.Image([int(v) for v in size], sitk.sitkUInt8)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    if direction is not None:
        image.SetDirection(np.asarray(direction, float).ravel().tolist())
    return image


def polygon(reference: sitk.Image, ij, k: float) -> np.ndarray:
    """LPS mm points of a polygon given in the reference's continuous (i, j) at slice (index) ``k``."""
    return np.array([reference.TransformContinuousIndexToPhysicalPoint((float(i), float(j), float(k)))
                     for i, j in ij])


def rect(i0, i1, j0, j1):
    return [(i0, j0), (i1, j0), (i1, j1), (i0, j1)]


def write_rtstruct(path: Path, rois_: list[dict], *, frame_of_reference: str = FOR_UID) -> Path:
    """A minimal RT Structure Set. Each ROI: ``name``, ``number``, ``contours`` (list of n x 3 LPS mm),
    optional ``type`` (Contour Geometric Type, default CLOSED_PLANAR)."""
    ds = Dataset()
    ds.SOPClassUID = rtstruct.RTSTRUCT_SOP_CLASS
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = "RTSTRUCT"
    ds.PatientID, ds.PatientName = "NB-T01", "Test^Contour"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.StructureSetLabel = "tumour"
    ref = Dataset()
    ref.FrameOfReferenceUID = frame_of_reference
    ds.ReferencedFrameOfReferenceSequence = [ref]
    ss, rc, obs = [], [], []
    for roi in rois_:
        item = Dataset()
        item.ROINumber = roi["number"]
        item.ReferencedFrameOfReferenceUID = frame_of_reference
        item.ROIName = roi["name"]
        item.ROIGenerationAlgorithm = "MANUAL"
        ss.append(item)
        contour_item = Dataset()
        contour_item.ReferencedROINumber = roi["number"]
        contour_item.ROIDisplayColor = [255, 0, 0]
        contours = []
        for points in roi["contours"]:
            c = Dataset()
            c.ContourGeometricType = roi.get("type", "CLOSED_PLANAR")
            points = np.asarray(points, float).reshape(-1, 3)
            c.NumberOfContourPoints = len(points)
            c.ContourData = [DSfloat(v, auto_format=True) for v in points.ravel()]
            contours.append(c)
        if contours:
            contour_item.ContourSequence = contours
        rc.append(contour_item)
        o = Dataset()
        o.ObservationNumber = roi["number"]
        o.ReferencedROINumber = roi["number"]
        o.RTROIInterpretedType = "GTV"
        o.ROIInterpreter = ""
        obs.append(o)
    ds.StructureSetROISequence, ds.ROIContourSequence, ds.RTROIObservationsSequence = ss, rc, obs
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.preamble = b"\0" * 128
    ds.save_as(path, enforce_file_format=True)
    return path


def expected(reference: sitk.Image, cells: dict[int, np.ndarray]) -> np.ndarray:
    """A (z, y, x) mask with the given (y, x) slices."""
    out = np.zeros(reference.GetSize()[::-1], np.uint8)
    for k, plane in cells.items():
        out[k] = plane
    return out


def centres(reference: sitk.Image, rule) -> np.ndarray:
    """(y, x) boolean slice: voxel centres (i, j) where ``rule(i, j)`` holds."""
    nx, ny, _ = reference.GetSize()
    j, i = np.mgrid[0:ny, 0:nx]
    return rule(i, j).astype(np.uint8)


def raster(reference, *contour_lists, **kwargs):
    return sitk.GetArrayFromImage(rtstruct.rasterise_contours(list(contour_lists), reference, **kwargs))


# ------------------------------------------------------------------------------------------------
# hand-computed masks
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("direction", [None, rotation([1, 2, 3], 30)], ids=["axial", "oblique"])
def test_convex_polygons(direction):
    ref = grid(direction=direction)
    square = polygon(ref, rect(1.5, 4.5, 2.5, 5.5), 1)  # centres i 2..4, j 3..5
    triangle = polygon(ref, [(0.2, 0.2), (6.2, 0.2), (0.2, 6.2)], 3)  # centres i, j >= 1 with i + j <= 6
    got = raster(ref, square, triangle)
    want = expected(ref, {1: centres(ref, lambda i, j: (i >= 2) & (i <= 4) & (j >= 3) & (j <= 5)),
                          3: centres(ref, lambda i, j: (i >= 1) & (j >= 1) & (i + j <= 6))})
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("direction", [None, rotation([0, 1, 1], 40)], ids=["axial", "oblique"])
def test_non_convex_polygons(direction):
    ref = grid(direction=direction)
    ell = polygon(ref, [(0.5, 0.5), (7.5, 0.5), (7.5, 2.5), (2.5, 2.5), (2.5, 8.5), (0.5, 8.5)], 0)
    you = polygon(ref, [(0.5, 0.5), (9.5, 0.5), (9.5, 7.5), (7.5, 7.5), (7.5, 3.5), (3.5, 3.5), (3.5, 7.5),
                        (0.5, 7.5)], 2)
    got = raster(ref, ell, you)
    l_shape = centres(ref, lambda i, j: ((i >= 1) & (i <= 7) & (j >= 1) & (j <= 2))
                      | ((i >= 1) & (i <= 2) & (j >= 1) & (j <= 8)))
    u_shape = centres(ref, lambda i, j: ((i >= 1) & (i <= 9) & (j >= 1) & (j <= 3))
                      | ((i >= 1) & (i <= 3) & (j >= 1) & (j <= 7)) | ((i >= 8) & (i <= 9) & (j >= 1) & (j <= 7)))
    np.testing.assert_array_equal(got, expected(ref, {0: l_shape, 2: u_shape}))


def test_ring_with_a_hole_on_an_oblique_grid():
    ref = grid(direction=rotation([2, -1, 1], 25))
    outer = polygon(ref, rect(0.5, 8.5, 0.5, 8.5), 2)
    inner = polygon(ref, rect(2.5, 5.5, 2.5, 5.5), 2)
    ring = centres(ref, lambda i, j: (i >= 1) & (i <= 8) & (j >= 1) & (j <= 8)
                   & ~((i >= 3) & (i <= 5) & (j >= 3) & (j <= 5)))
    np.testing.assert_array_equal(raster(ref, outer, inner), expected(ref, {2: ring}))
    np.testing.assert_array_equal(raster(ref, inner, outer), expected(ref, {2: ring}))  # order does not matter


def test_partly_overlapping_contours_on_one_slice_leave_their_overlap_out():
    """Contours of one ROI on one slice combine by the even-odd rule."""
    ref = grid()
    a = polygon(ref, rect(0.5, 4.5, 0.5, 4.5), 1)  # centres 1..4
    b = polygon(ref, rect(2.5, 6.5, 2.5, 6.5), 1)  # centres 3..6
    in_a = centres(ref, lambda i, j: (i >= 1) & (i <= 4) & (j >= 1) & (j <= 4)).astype(bool)
    in_b = centres(ref, lambda i, j: (i >= 3) & (i <= 6) & (j >= 3) & (j <= 6)).astype(bool)
    got = raster(ref, a, b)
    np.testing.assert_array_equal(got, expected(ref, {1: (in_a ^ in_b).astype(np.uint8)}))
    assert got[1, 3, 3] == 0 and got[1, 4, 4] == 0  # the overlap is a hole
    assert got[1, 1, 1] == 1 and got[1, 6, 6] == 1


def test_contours_from_two_planes_on_one_coarse_slice_are_united():
    ref = grid(spacing=(1.0, 1.0, 4.0))
    a = polygon(ref, rect(0.5, 4.5, 0.5, 4.5), 2 - 0.25)  # 1 mm below the centre of slice 2
    b = polygon(ref, rect(2.5, 6.5, 2.5, 6.5), 2 + 0.25)  # 1 mm above it
    in_a = centres(ref, lambda i, j: (i >= 1) & (i <= 4) & (j >= 1) & (j <= 4)).astype(bool)
    in_b = centres(ref, lambda i, j: (i >= 3) & (i <= 6) & (j >= 3) & (j <= 6)).astype(bool)
    got = raster(ref, a, b)
    np.testing.assert_array_equal(got, expected(ref, {2: (in_a | in_b).astype(np.uint8)}))
    assert got[2, 3, 3] == 1  # the overlap is in: union, not XOR
    # a contour exactly halfway between two slices goes to the higher one
    half = polygon(ref, rect(0.5, 2.5, 0.5, 2.5), 0.5)
    assert raster(ref, half)[1].sum() == 4 and raster(ref, half)[0].sum() == 0


@pytest.mark.parametrize("direction", [None, rotation([1, 2, 3], 30)], ids=["axial", "oblique"])
def test_centres_on_the_contour_line_are_in_whichever_way_it_runs(direction):
    """Exporters that trace voxel centres put them on the polygon: they are in (within 0.01 mm)."""
    ref = grid(direction=direction)
    ccw = rect(1, 4, 2, 6)  # vertices on voxel centres
    want = expected(ref, {1: centres(ref, lambda i, j: (i >= 1) & (i <= 4) & (j >= 2) & (j <= 6))})
    for ij in (ccw, ccw[::-1]):
        np.testing.assert_array_equal(raster(ref, polygon(ref, ij, 1)), want)
        noisy = polygon(ref, ij, 1) + np.array([0.004, -0.004, 0.003])  # rounding of 2-decimal exports
        np.testing.assert_array_equal(raster(ref, noisy), want)
    # an inner contour through centres takes them out with the hole
    ring = raster(ref, polygon(ref, rect(0, 8, 0, 8), 1), polygon(ref, rect(3, 5, 3, 5), 1))
    np.testing.assert_array_equal(ring, expected(ref, {1: centres(ref, lambda i, j: (i <= 8) & (j <= 8)
                                                                  & ~((i >= 3) & (i <= 5) & (j >= 3) & (j <= 5)))}))
    with pytest.raises(SegmentationError, match="encloses no area"):
        raster(ref, polygon(ref, [(1, 1), (2, 2), (3, 3)], 1), name="line")


def test_slices_between_contours_are_not_interpolated():
    ref = grid()
    got = raster(ref, polygon(ref, rect(0.5, 4.5, 0.5, 4.5), 0), polygon(ref, rect(0.5, 4.5, 0.5, 4.5), 4))
    assert got[0].sum() == got[4].sum() == 16 and got[1:4].sum() == 0


# ------------------------------------------------------------------------------------------------
# the file, and errors
# ------------------------------------------------------------------------------------------------


@pytest.fixture()
def ref():
    return grid()


@pytest.fixture()
def rt_file(tmp_path, ref):
    return write_rtstruct(tmp_path / "rs.dcm", [
        {"name": "tumour", "number": 3, "contours": [polygon(ref, rect(1.5, 4.5, 2.5, 5.5), k) for k in (1, 2)]},
        {"name": "liver", "number": 7, "contours": [polygon(ref, rect(5.5, 9.5, 0.5, 3.5), 3)]},
    ])


def test_read_by_name_and_number_and_list(rt_file, ref):
    square = centres(ref, lambda i, j: (i >= 2) & (i <= 4) & (j >= 3) & (j <= 5))
    by_name = rois.read_roi(rt_file, segment="tumour", reference=ref, patient="NB-T01")
    assert by_name.GetSize() == ref.GetSize() and by_name.GetOrigin() == ref.GetOrigin()
    np.testing.assert_array_equal(sitk.GetArrayFromImage(by_name), expected(ref, {1: square, 2: square}))
    by_number = rois.read_roi(rt_file, label=3, reference=ref)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(by_number), sitk.GetArrayFromImage(by_name))
    table = rois.list_rois(rt_file)
    assert table["name"].tolist() == ["tumour", "liver"]
    assert table["label_value"].tolist() == [3, 7]
    assert table["n_contours"].tolist() == [2, 1]
    assert table["contour_types"].tolist() == [("CLOSED_PLANAR",)] * 2
    assert table["interpreted_type"].tolist() == ["GTV", "GTV"]
    assert not table.astype(str).apply(lambda col: col.str.contains(FOR_UID)).any().any()  # no UIDs
    assert rois.segment_names(rt_file) == ["tumour", "liver"]


def test_unknown_roi_lists_the_names(rt_file, ref):
    with pytest.raises(SegmentationError) as info:
        rois.read_roi(rt_file, segment="Tumour", reference=ref, patient="NB-T01")
    message = str(info.value)
    assert "patient NB-T01" in message and str(rt_file) in message
    assert "'tumour' (number 3)" in message and "'liver' (number 7)" in message
    with pytest.raises(SegmentationError, match="no ROI has ROI Number 4"):
        rois.read_roi(rt_file, label=4, reference=ref)
    with pytest.raises(SegmentationError, match="choose one by ROI Name"):
        rois.read_roi(rt_file, reference=ref)


def test_no_reference_is_an_input_error(rt_file):
    with pytest.raises(InputError, match="needs an image to rasterise them on") as info:
        rois.read_roi(rt_file, segment="tumour", patient="NB-T01")
    assert "patient NB-T01" in str(info.value) and str(rt_file) in str(info.value)


def test_contour_off_every_slice_names_roi_and_position(tmp_path, ref):
    beyond = polygon(ref, rect(1.5, 4.5, 2.5, 5.5), 4.8)  # 0.8 slice beyond the last slice centre
    path = write_rtstruct(tmp_path / "off.dcm", [{"name": "tumour", "number": 1, "contours": [
        polygon(ref, rect(1.5, 4.5, 2.5, 5.5), 3), beyond]}])
    with pytest.raises(GeometryError) as info:
        rois.read_roi(path, segment="tumour", reference=ref, patient="NB-T01")
    message = str(info.value)
    centroid = beyond.mean(axis=0)
    assert "ROI 'tumour'" in message and "contour 2" in message and "off every slice" in message
    assert "({:.2f}, {:.2f}, {:.2f}) mm LPS".format(*centroid) in message
    assert "patient NB-T01" in message and "off.dcm" in message


def test_contour_not_parallel_to_the_slices_is_an_error(ref):
    tilted = np.array([ref.TransformContinuousIndexToPhysicalPoint(p) for p in
                       [(1.5, 2.5, 1.0), (4.5, 2.5, 1.0), (4.5, 5.5, 2.2), (1.5, 5.5, 2.2)]])
    with pytest.raises(GeometryError, match="not parallel to the reference's slices"):
        rtstruct.rasterise_contours([tilted], ref, name="tumour")
    slightly = tilted.copy()
    slightly[2:, :] = [ref.TransformContinuousIndexToPhysicalPoint(p) for p in [(4.5, 5.5, 1.3), (1.5, 5.5, 1.3)]]
    assert sitk.GetArrayFromImage(rtstruct.rasterise_contours([slightly], ref))[1].sum() == 9  # within half


@pytest.mark.parametrize("kind", ["OPEN_PLANAR", "POINT"])
def test_open_contour_is_an_error(tmp_path, ref, kind):
    path = write_rtstruct(tmp_path / "open.dcm", [{"name": "line", "number": 1, "type": kind,
                                                   "contours": [polygon(ref, rect(1.5, 4.5, 2.5, 5.5), 1)]}])
    with pytest.raises(SegmentationError, match=f"ROI 'line': contour 1 has Contour Geometric Type '{kind}'"):
        rois.read_roi(path, reference=ref, patient="NB-T01")


def test_roi_without_contours_and_empty_contour(tmp_path, ref):
    path = write_rtstruct(tmp_path / "none.dcm", [{"name": "tumour", "number": 1, "contours": []}])
    with pytest.raises(SegmentationError, match="ROI 'tumour' has no contours"):
        rois.read_roi(path, reference=ref)
    path = write_rtstruct(tmp_path / "two.dcm", [{"name": "tumour", "number": 1, "contours": [
        polygon(ref, rect(1.5, 4.5, 2.5, 5.5), 1), polygon(ref, [(1.5, 2.5), (4.5, 2.5)], 1)]}])
    with pytest.raises(SegmentationError, match="contour 2 is empty"):
        rois.read_roi(path, reference=ref)


def test_roi_outside_or_smaller_than_a_voxel(ref):
    with pytest.raises(GeometryError, match="outside the reference image's field of view"):
        rtstruct.rasterise_contours([polygon(ref, rect(20.5, 24.5, 2.5, 5.5), 1)], ref, name="tumour")
    with pytest.raises(SegmentationError, match="encloses? no voxel centre"):
        rtstruct.rasterise_contours([polygon(ref, rect(1.1, 1.4, 2.1, 2.4), 1)], ref, name="tumour")
    with pytest.warns(QCWarning, match="part of ROI 'tumour' lies outside"):
        partial = rtstruct.rasterise_contours([polygon(ref, rect(9.5, 14.5, 2.5, 5.5), 1)], ref, name="tumour")
    assert sitk.GetArrayFromImage(partial).sum() == 2 * 3  # i = 10, 11; j = 3..5


def test_reference_in_another_frame_of_reference_warns_naming_both(tmp_path):
    folder = write_ct_series(np.zeros((5, 10, 12)), tmp_path / "ct", spacing=(1.0, 1.5, 3.0), origin=(10, -5, 20),
                             identity={"PatientID": "NB-T01"}, series={"FrameOfReferenceUID": "1.2.3.4.5"})
    ref = grid()
    path = write_rtstruct(tmp_path / "rs.dcm", [{"name": "tumour", "number": 1,
                                                 "contours": [polygon(ref, rect(1.5, 4.5, 2.5, 5.5), 1)]}])
    with pytest.warns(QCWarning, match="different Frames of Reference") as record:
        mask = rois.read_roi(path, segment="tumour", reference=folder, patient="NB-T01")
    message = str(record[0].message)
    assert str(path) in message and str(folder) in message and "patient NB-T01" in message
    assert FOR_UID not in message and "1.2.3.4.5" not in message
    assert sitk.GetArrayFromImage(mask).sum() == 9
    table = rois.list_rois(path, reference=folder)
    assert table["matches_reference"].tolist() == [False]
    # the same Frame of Reference: no warning
    same = write_rtstruct(tmp_path / "same.dcm", [{"name": "tumour", "number": 1,
                                                   "contours": [polygon(ref, rect(1.5, 4.5, 2.5, 5.5), 1)]}],
                          frame_of_reference="1.2.3.4.5")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", QCWarning)
        rois.read_roi(same, reference=folder)
    assert rois.list_rois(same, reference=folder)["matches_reference"].tolist() == [True]


# ------------------------------------------------------------------------------------------------
# a digital sphere: contours from its mask, rasterised back
# ------------------------------------------------------------------------------------------------


def sphere_contours(mask_zyx: np.ndarray, reference: sitk.Image) -> list[np.ndarray]:
    """Iso-0.5 contours of each slice (skimage.measure.find_contours), in LPS mm."""
    contours = []
    for k, plane in enumerate(mask_zyx):
        if not plane.any():
            continue
        for rc in find_contours(np.pad(plane.astype(float), 1), 0.5):
            rc = rc - 1.0  # undo the padding; columns are (row, col) = (j, i)
            contours.append(polygon(reference, rc[:, ::-1], k))
    return contours


def test_sphere_contours_give_back_the_mask_and_its_features(tmp_path):
    ref = grid(size=(24, 24, 14), spacing=(1.0, 1.0, 2.0), origin=(-12.0, -12.0, -14.0),
               direction=rotation([1, 1, 0], 20))
    k, j, i = np.indices(ref.GetSize()[::-1])
    radius = 8.0
    mask = ((i - 11.3) ** 2 + (j - 11.7) ** 2 + ((k - 6.6) * 2.0) ** 2 <= radius ** 2).astype(np.uint8)
    mask_image = sitk.GetImageFromArray(mask)
    mask_image.CopyInformation(ref)
    contours = sphere_contours(mask, ref)
    path = write_rtstruct(tmp_path / "sphere.dcm", [{"name": "sphere", "number": 1, "contours": contours}])
    back = rois.read_roi(path, segment="sphere", reference=ref)
    # on the grid the contours were drawn on, the iso-0.5 polygon holds exactly the voxel centres of the mask
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), mask)
    f_mask, f_back = shape_features(mask_image), shape_features(back)
    for key in f_mask:
        assert f_back[key] == pytest.approx(f_mask[key], rel=1e-9), key
    # on a coarser grid (2 x 2 x 2 mm voxels, shifted) the rasterisation has its own error; compare
    # with the mask resampled (nearest neighbour) onto the same grid
    coarse = grid(size=(13, 13, 14), spacing=(2.0, 2.0, 2.0),
                  origin=ref.TransformContinuousIndexToPhysicalPoint((0.3, 0.6, 0.0)), direction=ref.GetDirection())
    on_coarse = rois.read_roi(path, segment="sphere", reference=coarse)
    resampled = roi_on_grid(mask_image, coarse)
    f_coarse, f_nn = shape_features(on_coarse), shape_features(resampled)
    # measured: V 2128.8 -> 2170.7 mm3 (+2.0 %), ASP 0.128 -> 0.095 (nearest neighbour: 2116.3, 0.090)
    assert f_coarse["mesh_volume_mm3"] == pytest.approx(f_mask["mesh_volume_mm3"], rel=0.04)
    assert f_coarse["asphericity"] == pytest.approx(f_mask["asphericity"], abs=0.04)
    assert f_coarse["mesh_volume_mm3"] == pytest.approx(f_nn["mesh_volume_mm3"], rel=0.04)
    assert f_coarse["asphericity"] == pytest.approx(f_nn["asphericity"], abs=0.01)
    # 4 mm slices under 2 mm contour planes: two discs per slice are united, so the volume grows
    thick = grid(size=(13, 13, 7), spacing=(2.0, 2.0, 4.0), origin=coarse.GetOrigin(), direction=ref.GetDirection())
    f_thick = shape_features(rois.read_roi(path, segment="sphere", reference=thick))
    assert f_thick["mesh_volume_mm3"] > 1.1 * f_mask["mesh_volume_mm3"]

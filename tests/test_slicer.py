"""3D Slicer segmentations, labelmaps and markups (ROI by exact segment name, shared layers,
LPS/RAS markups)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import nrrd
import numpy as np
import pytest
import SimpleITK as sitk
import slicerio

from mibgkit import slicer, slicer_write
from mibgkit.errors import GeometryError, InputError, SegmentationError

# A non-trivial grid: anisotropic spacing, non-zero origin, axes rotated 30 degrees about z, k axis flipped.
SHAPE_IJK = (9, 7, 6)
SPACING = np.array([2.0, 3.5, 5.0])
ANGLE = math.radians(30.0)
DIRECTION = np.array(
    [
        [math.cos(ANGLE), -math.sin(ANGLE), 0.0],
        [math.sin(ANGLE), math.cos(ANGLE), 0.0],
        [0.0, 0.0, -1.0],
    ]
)  # column c = LPS direction of voxel axis c
ORIGIN = np.array([-12.5, 40.25, -310.0])
IJK_TO_LPS = np.eye(4)
IJK_TO_LPS[:3, :3] = DIRECTION @ np.diag(SPACING)
IJK_TO_LPS[:3, 3] = ORIGIN


def _box(lo, hi):
    mask = np.zeros(SHAPE_IJK, dtype=bool)  # indexed [i, j, k]
    mask[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = True
    return mask


TUMOUR = _box((1, 1, 1), (4, 4, 3))
LIVER = _box((5, 2, 2), (8, 6, 5))
LESION = _box((2, 2, 0), (5, 5, 4))  # overlaps TUMOUR -> second layer, label value 1 again


def _segment(seg_id, name, label, layer, mask):
    return {"id": seg_id, "name": name, "labelValue": label, "layer": layer, "extent": slicer.segment_extent(mask),
            "color": [0.5, 0.5, 0.5]}


def _write_fixture(path: Path, *, names=("tumour", "liver", "lesion")) -> Path:
    """Two segments in layer 0 (labels 1, 2) and one in layer 1 (label 1), written by slicerio itself."""
    voxels = np.zeros((2,) + SHAPE_IJK, dtype=np.uint8)
    voxels[0][TUMOUR] = 1
    voxels[0][LIVER] = 2
    voxels[1][LESION] = 1
    segmentation = {
        "voxels": voxels,
        "ijkToLPS": IJK_TO_LPS,
        "segments": [
            _segment("Segment_1", names[0], 1, 0, TUMOUR),
            _segment("Segment_2", names[1], 2, 0, LIVER),
            _segment("Segment_3", names[2], 1, 1, LESION),
        ],
    }
    slicerio.write_segmentation(str(path), segmentation)
    return path


@pytest.fixture()
def seg_file(tmp_path):
    return _write_fixture(tmp_path / "fixture.seg.nrrd")


def _assert_mask_matches(image: sitk.Image, expected_ijk: np.ndarray, ijk_to_lps: np.ndarray = IJK_TO_LPS):
    """Same voxels, and every voxel of the mask at the same physical LPS point."""
    assert image.GetPixelID() == sitk.sitkUInt8
    array = sitk.GetArrayFromImage(image)  # [k, j, i]
    assert set(np.unique(array)) <= {0, 1}
    assert np.array_equal(np.transpose(array, (2, 1, 0)).astype(bool), expected_ijk)
    for ijk in np.argwhere(expected_ijk):
        expected_lps = (ijk_to_lps @ np.append(ijk, 1.0))[:3]
        got = image.TransformIndexToPhysicalPoint([int(v) for v in ijk])
        np.testing.assert_allclose(got, expected_lps, atol=1e-9)
    np.testing.assert_allclose(image.GetSpacing(), np.linalg.norm(ijk_to_lps[:3, :3], axis=0), atol=1e-12)


# ------------------------------------------------------------------------------------------------
# reading .seg.nrrd
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, expected", [("tumour", TUMOUR), ("liver", LIVER), ("lesion", LESION)])
def test_read_each_segment_by_name_with_shared_layers(seg_file, name, expected):
    image = slicer.read_segmentation(seg_file, segment=name)
    _assert_mask_matches(image, expected)
    np.testing.assert_allclose(image.GetOrigin(), ORIGIN)
    np.testing.assert_allclose(np.reshape(image.GetDirection(), (3, 3)), DIRECTION, atol=1e-12)


def test_list_segments_reports_layers_labels_extent_color(seg_file):
    table = slicer.list_segments(seg_file)
    assert list(table.columns[:6]) == ["name", "id", "layer", "label_value", "extent", "color"]
    assert table["name"].tolist() == ["tumour", "liver", "lesion"]
    assert table["id"].tolist() == ["Segment_1", "Segment_2", "Segment_3"]
    assert table["layer"].tolist() == [0, 0, 1]
    assert table["label_value"].tolist() == [1, 2, 1]
    assert table["extent"].tolist()[0] == (1, 3, 1, 3, 1, 2)
    assert table["color"].tolist()[1] == (0.5, 0.5, 0.5)


def test_unknown_name_lists_available_segments(seg_file):
    with pytest.raises(SegmentationError) as info:
        slicer.read_segmentation(seg_file, segment="Tumour", patient="P007")  # case matters
    message = str(info.value)
    assert "patient P007" in message and "fixture.seg.nrrd" in message
    for name in ("tumour", "liver", "lesion"):
        assert repr(name) in message


def test_several_segments_need_a_name(seg_file):
    with pytest.raises(SegmentationError, match="choose one by name"):
        slicer.read_segmentation(seg_file)


def test_duplicate_names_are_an_error(tmp_path):
    path = _write_fixture(tmp_path / "dup.seg.nrrd", names=("tumour", "liver", "tumour"))
    with pytest.raises(SegmentationError, match="2 segments are named 'tumour'"):
        slicer.read_segmentation(path, segment="tumour")
    assert sitk.GetArrayFromImage(slicer.read_segmentation(path, segment="liver")).sum() == LIVER.sum()


def test_select_segment_by_label_value(seg_file):
    _assert_mask_matches(slicer.read_segmentation(seg_file, label=2), LIVER)
    with pytest.raises(SegmentationError, match="label value 1 is used by 2 segments"):
        slicer.read_segmentation(seg_file, label=1)
    with pytest.raises(InputError, match="not both"):
        slicer.read_segmentation(seg_file, segment="liver", label=2)


def test_single_segment_is_taken_without_name_and_empty_segment_is_error(tmp_path):
    voxels = np.zeros(SHAPE_IJK, dtype=np.uint8)
    voxels[TUMOUR] = 1
    one = {"voxels": voxels, "ijkToLPS": IJK_TO_LPS, "segments": [_segment("S1", "tumour", 1, 0, TUMOUR)]}
    slicerio.write_segmentation(str(tmp_path / "one.seg.nrrd"), one)
    _assert_mask_matches(slicer.read_segmentation(tmp_path / "one.seg.nrrd"), TUMOUR)

    empty = {"voxels": np.zeros(SHAPE_IJK, np.uint8), "ijkToLPS": IJK_TO_LPS,
             "segments": [_segment("S1", "tumour", 1, 0, TUMOUR)]}
    slicerio.write_segmentation(str(tmp_path / "empty.seg.nrrd"), empty)
    with pytest.raises(SegmentationError, match="'tumour' is empty") as info:
        slicer.read_segmentation(tmp_path / "empty.seg.nrrd", segment="tumour", patient="P1")
    assert "empty.seg.nrrd" in str(info.value)


def test_ras_space_file_gives_the_same_lps_geometry(seg_file, tmp_path):
    voxels, header = nrrd.read(str(seg_file))
    header["space"] = "right-anterior-superior"
    directions = header["space directions"].copy()  # rows = axes (first row NaN: the layer axis)
    directions[1:, :2] *= -1.0
    header["space directions"] = directions
    origin = np.asarray(header["space origin"], dtype=float).copy()
    origin[:2] *= -1.0
    header["space origin"] = origin
    ras_file = tmp_path / "ras.seg.nrrd"
    nrrd.write(str(ras_file), voxels, header)
    assert nrrd.read_header(str(ras_file))["space"] == "right-anterior-superior"
    for name, expected in (("tumour", TUMOUR), ("lesion", LESION)):
        ras, lps = slicer.read_segmentation(ras_file, segment=name), slicer.read_segmentation(seg_file, segment=name)
        _assert_mask_matches(ras, expected)
        np.testing.assert_allclose(ras.GetOrigin(), lps.GetOrigin())
        np.testing.assert_allclose(ras.GetDirection(), lps.GetDirection(), atol=1e-12)


def test_legacy_file_without_layer_and_label_fields(tmp_path):
    """3D Slicer < 4.11: one layer per segment, value 1, no LabelValue/Layer fields."""
    voxels = np.stack([TUMOUR, LESION]).astype(np.uint8)
    header = {
        "space": "left-posterior-superior",
        "space directions": np.vstack([[np.nan] * 3, IJK_TO_LPS[:3, :3].T]),
        "space origin": ORIGIN,
        "kinds": ["list", "domain", "domain", "domain"],
        "Segment0_ID": "a", "Segment0_Name": "tumour",
        "Segment1_ID": "b", "Segment1_Name": "lesion",
    }
    nrrd.write(str(tmp_path / "old.seg.nrrd"), voxels, header)
    _assert_mask_matches(slicer.read_segmentation(tmp_path / "old.seg.nrrd", segment="lesion"), LESION)
    assert slicer.list_segments(tmp_path / "old.seg.nrrd")["layer"].tolist() == [0, 1]


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        slicer.read_segmentation(tmp_path / "nope.seg.nrrd", segment="x")
    bad = tmp_path / "bad.seg.nrrd"
    bad.write_bytes(b"not a nrrd file at all")
    with pytest.raises(InputError):
        slicer.read_segmentation(bad, segment="x")


def test_segmentation_made_by_slicer_matches_slicerio():
    path = Path(slicerio.__file__).parent / "data" / "SegmentationOverlapping.seg.nrrd"
    if not path.is_file():
        pytest.skip("slicerio sample data not installed")
    reference = slicerio.read_segmentation(str(path))
    table = slicer.list_segments(path)
    assert table["layer"].max() == 1
    for name in ("ribs", "overlapping sphere"):
        image = slicer.read_segmentation(path, segment=name)
        _assert_mask_matches(image, slicerio.segment_mask(reference, name), reference["ijkToLPS"])


# ------------------------------------------------------------------------------------------------
# plain labelmaps
# ------------------------------------------------------------------------------------------------


def _labelmap_image(labels: dict[int, np.ndarray]) -> sitk.Image:
    array = np.zeros(SHAPE_IJK, dtype=np.uint8)
    for value, mask in labels.items():
        array[mask] = value
    image = sitk.GetImageFromArray(np.transpose(array, (2, 1, 0)).copy())
    image.SetOrigin(tuple(ORIGIN))
    image.SetSpacing(tuple(SPACING))
    image.SetDirection(tuple(DIRECTION.reshape(-1)))
    return image


@pytest.mark.parametrize("suffix", [".nrrd", ".nii.gz"])
def test_plain_labelmap(tmp_path, suffix):
    path = tmp_path / f"labels{suffix}"
    sitk.WriteImage(_labelmap_image({1: TUMOUR, 3: LIVER}), str(path))
    _assert_mask_matches(slicer.read_segmentation(path, label=3), LIVER)
    with pytest.raises(SegmentationError, match=r"2 distinct labels \[1, 3\]"):
        slicer.read_segmentation(path)
    with pytest.raises(SegmentationError, match=r"label value 5 is not present; labels present: \[1, 3\]"):
        slicer.read_segmentation(path, label=5)
    with pytest.raises(SegmentationError, match="plain labelmap"):
        slicer.read_segmentation(path, segment="tumour")
    assert slicer.list_segments(path)["label_value"].tolist() == [1, 3]

    single = tmp_path / f"single{suffix}"
    sitk.WriteImage(_labelmap_image({7: TUMOUR}), str(single))
    _assert_mask_matches(slicer.read_segmentation(single), TUMOUR)


# ------------------------------------------------------------------------------------------------
# writing .seg.nrrd
# ------------------------------------------------------------------------------------------------


def _reference_image() -> sitk.Image:
    return _labelmap_image({})


def _as_sitk(mask_ijk: np.ndarray) -> sitk.Image:
    image = sitk.GetImageFromArray(np.transpose(mask_ijk, (2, 1, 0)).astype(np.uint8).copy())
    image.CopyInformation(_reference_image())
    return image


def test_write_shared_layers_round_trip(tmp_path):
    geometry = {"origin": ORIGIN, "spacing": SPACING, "direction": DIRECTION.reshape(-1)}
    masks = {
        "tumour": _as_sitk(TUMOUR),
        "liver": (np.transpose(LIVER, (2, 1, 0)), geometry),
        "lesion": (np.transpose(LESION, (2, 1, 0)), IJK_TO_LPS),
    }
    path = slicer_write.write_segmentation(tmp_path / "out.seg.nrrd", masks, colors={"tumour": (1.0, 0.0, 0.0)})
    table = slicer.list_segments(path)
    assert table["name"].tolist() == ["tumour", "liver", "lesion"]
    assert table["layer"].tolist() == [0, 0, 1]  # non-overlapping share layer 0, overlapping goes to layer 1
    assert table["label_value"].tolist() == [1, 2, 1]
    assert table["extent"].tolist() == [tuple(slicer.segment_extent(m)) for m in (TUMOUR, LIVER, LESION)]
    assert table["color"][0] == (1.0, 0.0, 0.0)
    assert "SCT^85756007^Tissue" in table["terminology"][0]
    header = nrrd.read_header(str(path))
    assert header["kinds"] == ["list", "domain", "domain", "domain"]
    assert header["space"] == "left-posterior-superior"
    for name, expected in (("tumour", TUMOUR), ("liver", LIVER), ("lesion", LESION)):
        _assert_mask_matches(slicer.read_segmentation(path, segment=name), expected)


def test_write_separate_layers_and_terminology(tmp_path):
    mass = ("Segmentation category and type - 3D Slicer General Anatomy list~SCT^49755003^Morphologically "
            "Altered Structure~SCT^4147007^Mass~^^~Anatomic codes - DICOM master list~SCT^23451007^Adrenal gland~^^")
    path = slicer_write.write_segmentation(
        tmp_path / "sep.seg.nrrd", {"tumour": TUMOUR.transpose(2, 1, 0), "liver": LIVER.transpose(2, 1, 0)},
        reference=_reference_image(), shared_layers=False, terminology={"tumour": mass},
    )
    table = slicer.list_segments(path)
    assert table["layer"].tolist() == [0, 1] and table["label_value"].tolist() == [1, 1]
    assert table["terminology"][0] == mass
    _assert_mask_matches(slicer.read_segmentation(path, segment="liver"), LIVER)


def test_written_single_layer_file_is_a_valid_nrrd_for_itk(tmp_path):
    """An independent reader (ITK) sees the same voxels at the same physical points."""
    path = slicer_write.write_segmentation(tmp_path / "one.seg.nrrd", {"tumour": _as_sitk(TUMOUR), "liver": _as_sitk(LIVER)})
    assert nrrd.read_header(str(path))["kinds"] == ["domain", "domain", "domain"]
    image = sitk.ReadImage(str(path))
    _assert_mask_matches(image == 2, LIVER)
    assert path.read_bytes().startswith(b"NRRD0004\n")


def test_write_is_deterministic(tmp_path):
    masks = {"tumour": _as_sitk(TUMOUR), "liver": _as_sitk(LIVER), "lesion": _as_sitk(LESION)}
    first = slicer_write.write_segmentation(tmp_path / "a.seg.nrrd", masks).read_bytes()
    second = slicer_write.write_segmentation(tmp_path / "b.seg.nrrd", masks).read_bytes()
    assert first == second
    header, _, body = first.partition(b"\n\n")
    assert b"# on " not in header and b"GMT" not in header
    assert body[:2] == b"\x1f\x8b" and body[4:8] == b"\x00\x00\x00\x00"  # gzip member without timestamp


def test_write_rejects_masks_on_different_grids(tmp_path):
    shifted = _as_sitk(LIVER)
    shifted.SetOrigin(tuple(ORIGIN + [1.0, 0.0, 0.0]))
    with pytest.raises(GeometryError, match="'liver' is not on the common grid"):
        slicer_write.write_segmentation(tmp_path / "x.seg.nrrd", {"tumour": _as_sitk(TUMOUR), "liver": shifted})
    with pytest.raises(GeometryError, match="reference"):
        slicer_write.write_segmentation(tmp_path / "x.seg.nrrd", {"tumour": TUMOUR})
    with pytest.raises(InputError, match="no masks"):
        slicer_write.write_segmentation(tmp_path / "x.seg.nrrd", {})


# ------------------------------------------------------------------------------------------------
# markups
# ------------------------------------------------------------------------------------------------

POINTS_LPS = {"liver": [-80.5, -20.0, 1050.25], "muscle_left": [45.0, 30.5, 990.0], "muscle_right": [-44.0, 31.0, 990.0]}


def _markups_json(points_lps, system):
    sign = np.array([-1.0, -1.0, 1.0]) if system == "RAS" else np.ones(3)
    markup = {"type": "Fiducial", "controlPoints": [
        {"id": str(n), "label": label, "position": (sign * np.asarray(xyz)).tolist(), "positionStatus": "defined"}
        for n, (label, xyz) in enumerate(points_lps.items(), start=1)
    ]}
    if system is not None:
        markup["coordinateSystem"] = system
    return {"@schema": slicer_write.MARKUPS_SCHEMA, "markups": [markup]}


@pytest.mark.parametrize("system", ["LPS", "RAS", None])
def test_read_markups_lps_and_ras_agree(tmp_path, system):
    path = tmp_path / "spheres.mrk.json"
    path.write_text(json.dumps(_markups_json(POINTS_LPS, system)))
    points = slicer.read_markups(path)
    assert list(points) == list(POINTS_LPS)
    for label, xyz in POINTS_LPS.items():
        np.testing.assert_allclose(points[label], xyz)


def test_undefined_points_are_skipped_and_required_points_checked(tmp_path):
    document = _markups_json(POINTS_LPS, "LPS")
    document["markups"][0]["controlPoints"][2]["positionStatus"] = "undefined"
    path = tmp_path / "spheres.mrk.json"
    path.write_text(json.dumps(document))
    points = slicer.read_markups(path)
    assert set(points) == {"liver", "muscle_left"}
    assert list(slicer.require_points(points, ["muscle_left", "liver"], path, "P3")) == ["muscle_left", "liver"]
    with pytest.raises(InputError) as info:
        slicer.require_points(points, ["liver", "muscle_left", "muscle_right"], path, "P3")
    message = str(info.value)
    assert "patient P3" in message and "spheres.mrk.json" in message
    assert "['muscle_right']" in message and "['liver', 'muscle_left']" in message


def test_duplicate_labels_and_malformed_files(tmp_path):
    document = _markups_json(POINTS_LPS, "RAS")
    document["markups"][0]["controlPoints"][1]["label"] = "liver"
    path = tmp_path / "dup.mrk.json"
    path.write_text(json.dumps(document))
    with pytest.raises(InputError, match="'liver' occurs more than once"):
        slicer.read_markups(path)

    broken = tmp_path / "broken.mrk.json"
    broken.write_text('{"markups": [{"type": "Fiducial", "controlPoints": [}')
    with pytest.raises(InputError, match="not valid JSON") as info:
        slicer.read_markups(broken, patient="P9")
    assert "broken.mrk.json" in str(info.value) and "patient P9" in str(info.value)

    wrong = tmp_path / "wrong.mrk.json"
    wrong.write_text(json.dumps({"points": []}))
    with pytest.raises(InputError, match="'markups' list"):
        slicer.read_markups(wrong)

    bad_position = _markups_json({"liver": [1.0, 2.0, 3.0]}, "LPS")
    bad_position["markups"][0]["controlPoints"][0]["position"] = [1.0, 2.0]
    (tmp_path / "pos.mrk.json").write_text(json.dumps(bad_position))
    with pytest.raises(InputError, match="3 finite numbers"):
        slicer.read_markups(tmp_path / "pos.mrk.json")


@pytest.mark.parametrize("system", ["LPS", "RAS"])
def test_write_markups_round_trip_and_determinism(tmp_path, system):
    first = slicer_write.write_markups(tmp_path / "a.mrk.json", POINTS_LPS, coordinate_system=system)
    second = slicer_write.write_markups(tmp_path / "b.mrk.json", POINTS_LPS, coordinate_system=system)
    assert first.read_bytes() == second.read_bytes()
    document = json.loads(first.read_text())
    assert document["@schema"] == slicer_write.MARKUPS_SCHEMA
    markup = document["markups"][0]
    assert markup["type"] == "Fiducial" and markup["coordinateSystem"] == system
    assert markup["controlPoints"][0]["label"] == "liver"
    if system == "RAS":
        assert markup["controlPoints"][0]["position"] == [80.5, 20.0, 1050.25]
    points = slicer.read_markups(first)
    for label, xyz in POINTS_LPS.items():
        np.testing.assert_allclose(points[label], xyz)


def test_legacy_fcsv(tmp_path):
    path = tmp_path / "old.fcsv"
    path.write_text(
        "# Markups fiducial file version = 4.10\n# CoordinateSystem = 0\n"
        "# columns = id,x,y,z,ow,ox,oy,oz,vis,sel,lock,label,desc,associatedNodeID\n"
        "vtkMRMLMarkupsFiducialNode_0,80.5,20,1050.25,0,0,0,1,1,1,0,liver,,\n"
    )
    np.testing.assert_allclose(slicer.read_markups(path)["liver"], POINTS_LPS["liver"])


def test_coordinate_units(tmp_path):
    path = tmp_path / "units.mrk.json"
    for units, scale in ((["mm", "UCUM", "millimeter"], 1.0), ("um", 1000.0)):
        document = _markups_json({k: np.multiply(v, scale).tolist() for k, v in POINTS_LPS.items()}, "RAS")
        document["markups"][0]["coordinateUnits"] = units
        path.write_text(json.dumps(document))
        np.testing.assert_allclose(slicer.read_markups(path)["liver"], POINTS_LPS["liver"])
    document["markups"][0]["coordinateUnits"] = "cm"
    path.write_text(json.dumps(document))
    with pytest.raises(InputError, match="coordinateUnits 'cm'"):
        slicer.read_markups(path)


def test_write_checks_masks_against_reference_size(tmp_path):
    small = np.zeros((3, 3, 3), dtype=np.uint8)
    small[1, 1, 1] = 1
    with pytest.raises(GeometryError, match="'tumour' is not on the common grid"):
        slicer_write.write_segmentation(tmp_path / "x.seg.nrrd", {"tumour": small}, reference=_reference_image())

"""rois: the one door for ROI files — dispatch by SOP Class UID, the RTSTRUCT reference in a
manifest, bad input (every error names the file and the patient), and `mibgkit shape` on SEG and
RTSTRUCT."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from test_dicom_seg import IDENTITY, blob, mask_image, write_ct, write_seg
from test_rtstruct import polygon, rect, write_rtstruct

from mibgkit import cli, rois, slicer_write
from mibgkit.errors import GeometryError, InputError, QCWarning, SegmentationError
from mibgkit.geometry import roi_on_grid
from mibgkit.synth.nm_layouts import write_nm_multiframe


@pytest.fixture()
def ct(tmp_path):
    """A small CT series (anisotropic grid): its folder, source datasets and image."""
    sources, image = write_ct(tmp_path / "ct")
    return tmp_path / "ct", sources, image


@pytest.fixture()
def seg(tmp_path, ct):
    return write_seg(tmp_path / "tumour_seg.dcm", ct[1], {"tumour": blob()})


def _rtstruct_on(image, path, frame_of_reference, name="tumour"):
    return write_rtstruct(path, [{"name": name, "number": 1, "contours": [
        polygon(image, rect(1.5, 6.5, 1.5, 5.5), k) for k in (2, 3, 4)]}], frame_of_reference=frame_of_reference)


def _spect(tmp_path, frame_of_reference=None):
    series = {"FrameOfReferenceUID": frame_of_reference} if frame_of_reference else None
    return write_nm_multiframe(np.full((6, 8, 8), 100, np.int64), tmp_path / "spect.dcm", spacing=(4.0, 4.0, 4.0),
                               origin=(8.0, -22.0, 28.0), identity=IDENTITY, series=series)


# ------------------------------------------------------------------------------------------------
# dispatch
# ------------------------------------------------------------------------------------------------


def test_formats_are_told_by_sop_class_not_by_name(tmp_path, ct, seg):
    folder, sources, image = ct
    rt = _rtstruct_on(image, tmp_path / "rs", str(sources[0].FrameOfReferenceUID))  # no suffix at all
    nrrd = slicer_write.write_segmentation(tmp_path / "t.seg.nrrd", {"tumour": mask_image(blob(), image)})
    renamed = tmp_path / "segmentation.nrrd.dcm"
    renamed.write_bytes(seg.read_bytes())
    assert rois.roi_format(seg) == "seg" and rois.roi_format(renamed) == "seg"
    assert rois.roi_format(rt) == "rtstruct"
    assert rois.roi_format(nrrd) == "voxel"
    assert rois.roi_format(sorted(folder.glob("*.dcm"))[0]) == "dicom"
    # the SEG is read as a SEG (its own geometry), never as a labelmap
    assert sitk.GetArrayFromImage(rois.read_roi(renamed, segment="tumour")).sum() == blob().sum()
    assert rois.frame_of_reference_uid(folder) == str(sources[0].FrameOfReferenceUID)
    assert rois.frame_of_reference_uid(rt) == str(sources[0].FrameOfReferenceUID)
    assert rois.frame_of_reference_uid(nrrd) is None


def test_a_dicom_file_that_is_not_an_roi(ct):
    ct_file = sorted(ct[0].glob("*.dcm"))[0]
    with pytest.raises(InputError, match="is a CT Image Storage") as info:
        rois.read_roi(ct_file, patient="NB-T01")
    assert "patient NB-T01" in str(info.value) and str(ct_file) in str(info.value)
    assert "not an ROI" in str(info.value)
    with pytest.raises(InputError, match="not an ROI"):
        rois.list_rois(ct_file)


def test_a_folder_is_refused_naming_the_roi_files_in_it(tmp_path, ct, seg):
    with pytest.raises(InputError, match=r"is a folder; give the ROI file itself; it holds \['tumour_seg.dcm'\]"):
        rois.read_roi(tmp_path, patient="NB-T01")


def test_truncated_dicom_roi(tmp_path, seg):
    bad = tmp_path / "cut.dcm"
    bad.write_bytes(seg.read_bytes()[:1500])
    with pytest.raises(InputError) as info:
        rois.read_roi(bad, patient="NB-T01")
    assert "cut.dcm" in str(info.value) and "patient NB-T01" in str(info.value)


# ------------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------------


def test_seg_frames_without_position(tmp_path, seg):
    ds = pydicom.dcmread(seg)
    for item in ds.PerFrameFunctionalGroupsSequence:
        del item.PlanePositionSequence
    ds.save_as(tmp_path / "nopos.dcm")
    with pytest.raises(GeometryError, match="frame 1 has no Plane Position Sequence") as info:
        rois.read_roi(tmp_path / "nopos.dcm", segment="tumour", patient="NB-T01")
    assert "patient NB-T01" in str(info.value) and "nopos.dcm" in str(info.value)


def test_unknown_segment_and_roi_names(tmp_path, ct, seg):
    with pytest.raises(SegmentationError, match=r"no segment labelled 'liver'.*'tumour' \(number 1\)") as info:
        rois.read_roi(seg, segment="liver", patient="NB-T01")
    assert "patient NB-T01" in str(info.value) and str(seg) in str(info.value)
    rt = _rtstruct_on(ct[2], tmp_path / "rs.dcm", "1.2.3")
    with pytest.raises(SegmentationError, match=r"no ROI named 'liver'.*'tumour' \(number 1\)") as info:
        rois.read_roi(rt, segment="liver", reference=ct[2], patient="NB-T01")
    assert "patient NB-T01" in str(info.value) and str(rt) in str(info.value)


def test_empty_contour(tmp_path, ct):
    rt = write_rtstruct(tmp_path / "rs.dcm", [{"name": "tumour", "number": 1, "contours": [
        polygon(ct[2], rect(1.5, 6.5, 1.5, 5.5), 2), np.zeros((0, 3))]}])
    with pytest.raises(SegmentationError, match="ROI 'tumour': contour 2 is empty") as info:
        rois.read_roi(rt, reference=ct[0], patient="NB-T01")
    assert "patient NB-T01" in str(info.value) and "rs.dcm" in str(info.value)


def test_segment_outside_the_spect_field_of_view(tmp_path, ct, seg):
    spect = sitk.Image(8, 8, 6, sitk.sitkFloat32)
    spect.SetOrigin((500.0, 500.0, 500.0))
    spect.SetSpacing((4.0, 4.0, 4.0))
    roi = rois.read_roi(seg, segment="tumour", patient="NB-T01")
    with pytest.raises(GeometryError, match="outside the SPECT field of view") as info:
        roi_on_grid(roi, spect, patient="NB-T01", path=seg)
    assert "patient NB-T01" in str(info.value) and str(seg) in str(info.value)


# ------------------------------------------------------------------------------------------------
# the RTSTRUCT reference in a manifest
# ------------------------------------------------------------------------------------------------


def test_manifest_reference_is_the_ct_when_it_shares_the_frame_of_reference(tmp_path, ct):
    folder, sources, image = ct
    spect = _spect(tmp_path, frame_of_reference="1.2.826.0.1.3680043.8.498.77")
    rt = _rtstruct_on(image, tmp_path / "rs.dcm", str(sources[0].FrameOfReferenceUID))
    with warnings.catch_warnings():
        warnings.simplefilter("error", QCWarning)
        chosen = rois.rtstruct_reference(rt, folder, spect, patient="NB-T01")
    assert chosen.GetSize() == image.GetSize() and np.allclose(chosen.GetSpacing(), image.GetSpacing())
    mask = rois.read_roi(rt, segment="tumour", reference=chosen, patient="NB-T01")
    assert sitk.GetArrayFromImage(mask).sum() == 3 * 5 * 4


def test_manifest_reference_falls_back_to_the_spect(tmp_path, ct):
    folder, _, image = ct
    spect = _spect(tmp_path, frame_of_reference="1.2.826.0.1.3680043.8.498.77")
    rt = _rtstruct_on(image, tmp_path / "rs.dcm", "1.2.826.0.1.3680043.8.498.77")
    chosen = rois.rtstruct_reference(rt, folder, spect, patient="NB-T01")
    assert chosen.GetSize() == (8, 8, 6)
    assert rois.rtstruct_reference(rt, float("nan"), spect).GetSize() == (8, 8, 6)  # a manifest without CT


def test_manifest_frame_of_reference_matching_no_image(tmp_path, ct):
    folder, _, image = ct
    spect = _spect(tmp_path, frame_of_reference="1.2.826.0.1.3680043.8.498.77")
    rt = _rtstruct_on(image, tmp_path / "rs.dcm", "1.2.826.0.1.3680043.8.498.99")
    with pytest.raises(GeometryError, match="matches neither the CT") as info:
        rois.rtstruct_reference(rt, folder, spect, patient="NB-T01")
    message = str(info.value)
    assert "patient NB-T01" in message and "rs.dcm" in message and str(folder) in message
    assert "1.2.826.0.1.3680043.8.498" not in message  # no UIDs in messages


def test_manifest_reference_that_cannot_be_checked_warns(tmp_path, ct):
    _, _, image = ct
    nifti = tmp_path / "ct.nii.gz"
    sitk.WriteImage(sitk.Cast(image, sitk.sitkInt16), str(nifti))
    spect_nifti = tmp_path / "spect.nii.gz"
    sitk.WriteImage(sitk.Image(8, 8, 6, sitk.sitkFloat32), str(spect_nifti))
    rt = _rtstruct_on(image, tmp_path / "rs.dcm", "1.2.3")
    with pytest.warns(QCWarning, match="cannot be checked; its contours are rasterised on the SPECT grid"):
        chosen = rois.rtstruct_reference(rt, nifti, spect_nifti, patient="NB-T01")
    assert chosen.GetSize() == (8, 8, 6)
    with pytest.raises(InputError, match="not an RT Structure Set"):
        rois.rtstruct_reference(nifti, nifti, spect_nifti)


# ------------------------------------------------------------------------------------------------
# mibgkit shape
# ------------------------------------------------------------------------------------------------


def _shape_json(capsys, *argv) -> tuple[dict, str]:
    assert cli.main(["shape", *map(str, argv), "--json"]) == 0
    out = capsys.readouterr()
    return json.loads(out.out), out.err


def test_cli_shape_on_seg_and_rtstruct_prints_the_seg_nrrd_keys(tmp_path, capsys, ct, seg):
    folder, sources, image = ct
    nrrd = slicer_write.write_segmentation(tmp_path / "t.seg.nrrd", {"tumour": mask_image(blob(), image)})
    rt = _rtstruct_on(image, tmp_path / "rs.dcm", str(sources[0].FrameOfReferenceUID))
    from_nrrd, _ = _shape_json(capsys, nrrd, "--segment", "tumour")
    from_seg, err = _shape_json(capsys, seg, "--segment", "tumour")
    assert err == ""
    from_rt, _ = _shape_json(capsys, rt, "--segment", "tumour", "--reference", folder)
    assert list(from_seg) == list(from_nrrd) == list(from_rt)
    for key in from_nrrd:
        assert from_seg[key] == pytest.approx(from_nrrd[key], rel=1e-9)
    assert from_rt["voxel_volume_mm3"] == pytest.approx(3 * 5 * 4 * 0.8 * 1.2 * 3.0)
    # --reference is ignored, with a note, for formats with their own grid
    again, err = _shape_json(capsys, seg, "--segment", "tumour", "--reference", folder)
    assert again == from_seg and "--reference is only used" in err
    # an RTSTRUCT without --reference: exit 2 with the message
    assert cli.main(["shape", str(rt), "--segment", "tumour", "--json"]) == 2
    assert "needs an image to rasterise them on" in capsys.readouterr().err

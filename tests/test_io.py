"""Tests for mibgkit.io (loading images with geometry) and the DICOM writers in mibgkit.synth.dicom."""

from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from mibgkit.errors import GeometryError, InputError, QCWarning
from mibgkit.geometry import image_geometry, same_grid
from mibgkit.io import check_counts, load_image
from mibgkit.synth.dicom import write_ct_series
from mibgkit.synth.nm_layouts import write_nm_multiframe, write_nm_slices

IDENTITY = {
    "PatientName": "Moreau^Lucas",
    "PatientID": "NB-0042",
    "PatientBirthDate": "20180304",
    "PatientSex": "M",
    "AccessionNumber": "A20210611-17",
    "InstitutionName": "Synthetic Children's Hospital",
    "StudyDate": "20210611",
    "StudyTime": "101500",
}
SPACING = (3.3, 3.0, 2.0)  # anisotropic, and sx != sy so a row/column swap cannot pass
ORIGIN = (-187.5, 42.25, -1003.0)
SHAPE = (9, 10, 12)  # (z, y, x), non-square


def rotation(axis, degrees) -> np.ndarray:
    """Right-handed rotation matrix (Rodrigues)."""
    k = np.asarray(axis, float) / np.linalg.norm(axis)
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    t = np.radians(degrees)
    return np.eye(3) + np.sin(t) * kx + (1 - np.cos(t)) * kx @ kx


DIRECTIONS = {
    "identity": np.eye(3),
    "flipped_xy": np.diag([-1.0, -1.0, 1.0]),
    "oblique": rotation([1, 2, 3], 30),
}


@pytest.fixture(scope="module")
def counts():
    rng = np.random.default_rng(7)
    return rng.poisson(200, SHAPE).astype(np.int64)


def expected_point(index, origin, spacing, direction):
    return np.asarray(origin) + np.asarray(direction) @ (np.asarray(index) * np.asarray(spacing))


def assert_geometry(image, origin, spacing, direction, shape_zyx):
    assert image.GetDimension() == 3
    assert image.GetSize() == tuple(reversed(shape_zyx))
    np.testing.assert_allclose(image.GetSpacing(), spacing, atol=1e-9)
    np.testing.assert_allclose(image.GetOrigin(), origin, atol=1e-6)
    np.testing.assert_allclose(np.reshape(image.GetDirection(), (3, 3)), direction, atol=1e-9)
    nz, ny, nx = shape_zyx
    corners = [(0, 0, 0), (nx - 1, 0, 0), (0, ny - 1, 0), (0, 0, nz - 1), (nx - 1, ny - 1, nz - 1), (3, 7, 2)]
    for index in corners:
        np.testing.assert_allclose(image.TransformIndexToPhysicalPoint(index),
                                   expected_point(index, origin, spacing, direction), atol=1e-6)


def series_reader(folder):
    """SimpleITK's own DICOM series reader, as an independent reference."""
    ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    assert len(ids) == 1
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), ids[0]))
    return reader.Execute()


# ------------------------------------------------------------------------------------------------
# NM multi-frame
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", DIRECTIONS)
def test_nm_multiframe_round_trip(tmp_path, counts, name):
    direction = DIRECTIONS[name]
    path = write_nm_multiframe(counts, tmp_path / "spect.dcm", spacing=SPACING, origin=ORIGIN,
                               direction=direction, identity=IDENTITY)
    image = load_image(path)
    assert image.GetPixelID() == sitk.sitkUInt16  # integer counts stay integer
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), counts)
    assert_geometry(image, ORIGIN, SPACING, direction, SHAPE)


def test_nm_file_follows_the_nm_iod(tmp_path, counts):
    path = write_nm_multiframe(counts, tmp_path / "spect.dcm", spacing=SPACING, origin=ORIGIN,
                               direction=DIRECTIONS["oblique"], identity=IDENTITY)
    ds = pydicom.dcmread(path)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.20"
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert list(ds.ImageType) == ["ORIGINAL", "PRIMARY", "RECON TOMO", "EMISSION"]
    assert ds.NumberOfFrames == SHAPE[0] and ds.NumberOfSlices == SHAPE[0]
    assert ds.FrameIncrementPointer == pydicom.tag.Tag("SliceVector")
    assert list(ds.SliceVector) == list(range(1, SHAPE[0] + 1))
    assert [float(v) for v in ds.PixelSpacing] == [SPACING[1], SPACING[0]]  # rows, then columns
    assert float(ds.SpacingBetweenSlices) == SPACING[2]
    assert "ImagePositionPatient" not in ds  # NM keeps it in the detector item
    detector_ipp = ds.DetectorInformationSequence[0].ImagePositionPatient
    np.testing.assert_allclose([float(v) for v in detector_ipp], ORIGIN)
    assert ds.Manufacturer == "SIEMENS" and ds.ManufacturerModelName == "Symbia T16"
    assert ds.PatientName == "Moreau^Lucas" and ds.PatientID == "NB-0042"
    assert "I-123" in ds.RadiopharmaceuticalInformationSequence[0].Radiopharmaceutical


def test_nm_writer_is_deterministic(tmp_path, counts):
    kwargs = dict(spacing=SPACING, origin=ORIGIN, identity=IDENTITY)
    a = write_nm_multiframe(counts, tmp_path / "a.dcm", **kwargs)
    b = write_nm_multiframe(counts, tmp_path / "b.dcm", **kwargs)
    assert a.read_bytes() == b.read_bytes()
    other_identity = {**IDENTITY, "PatientID": "NB-0043"}
    other = write_nm_multiframe(counts, tmp_path / "c.dcm", **{**kwargs, "identity": other_identity})
    assert pydicom.dcmread(other).StudyInstanceUID != pydicom.dcmread(a).StudyInstanceUID
    ct_a = write_ct_series(counts, tmp_path / "ct_a", **kwargs)
    ct_b = write_ct_series(counts, tmp_path / "ct_b", **kwargs)
    assert [f.read_bytes() for f in sorted(ct_a.iterdir())] == [f.read_bytes() for f in sorted(ct_b.iterdir())]
    # SPECT and CT of one study share the study and the frame of reference, as on a SPECT/CT scanner
    nm, ct = pydicom.dcmread(a), pydicom.dcmread(next(ct_a.iterdir()))
    assert nm.StudyInstanceUID == ct.StudyInstanceUID and nm.FrameOfReferenceUID == ct.FrameOfReferenceUID
    assert nm.SeriesInstanceUID != ct.SeriesInstanceUID


def test_nm_fractional_counts_use_rescale(tmp_path):
    values = np.random.default_rng(3).gamma(2.0, 40.0, SHAPE) - 5.0  # fractional, some negative
    path = write_nm_multiframe(values, tmp_path / "f.dcm", spacing=SPACING, origin=ORIGIN, identity=IDENTITY)
    slope = float(pydicom.dcmread(path, stop_before_pixels=True).RescaleSlope)
    image = load_image(path)
    assert image.GetPixelID() == sitk.sitkFloat32
    np.testing.assert_allclose(sitk.GetArrayFromImage(image), values, atol=slope * 0.51 + 1e-5)


def test_nm_left_handed_volume_is_returned_right_handed(tmp_path, counts):
    direction = np.diag([1.0, 1.0, -1.0])  # slices run towards the feet: negative spacing in the file
    path = write_nm_multiframe(counts, tmp_path / "s.dcm", spacing=SPACING, origin=ORIGIN,
                               direction=direction, identity=IDENTITY)
    assert float(pydicom.dcmread(path, stop_before_pixels=True).SpacingBetweenSlices) == -SPACING[2]
    image = load_image(path)
    d = np.reshape(image.GetDirection(), (3, 3))
    np.testing.assert_allclose(d[:, 2], np.cross(d[:, 0], d[:, 1]))
    array = sitk.GetArrayFromImage(image)
    nz, ny, nx = SHAPE
    for k, j, i in [(0, 0, 0), (nz - 1, 2, 5), (4, ny - 1, nx - 1)]:
        point = expected_point((i, j, k), ORIGIN, SPACING, direction)
        ii, jj, kk = image.TransformPhysicalPointToIndex(tuple(point))
        assert array[kk, jj, ii] == counts[k, j, i]
        np.testing.assert_allclose(image.TransformIndexToPhysicalPoint((ii, jj, kk)), point, atol=1e-6)


def test_nm_frames_are_placed_by_slice_vector(tmp_path, counts):
    path = write_nm_multiframe(counts, tmp_path / "s.dcm", spacing=SPACING, origin=ORIGIN,
                               direction=DIRECTIONS["oblique"], identity=IDENTITY)
    reference = load_image(path)
    ds = pydicom.dcmread(path)
    perm = np.array([0, 3, 1, 2, 8, 7, 4, 5, 6])  # slice 1 stays first: IPP is that of frame 1
    ds.PixelData = np.ascontiguousarray(counts[perm].astype(np.uint16)).tobytes()
    ds.SliceVector = [int(v) + 1 for v in perm]
    ds.save_as(tmp_path / "shuffled.dcm")
    shuffled = load_image(tmp_path / "shuffled.dcm")
    assert same_grid(shuffled, reference, tol=1e-9)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(shuffled), counts)


def test_nm_geometry_fallbacks(tmp_path, counts):
    path = write_nm_multiframe(counts, tmp_path / "s.dcm", spacing=SPACING, origin=ORIGIN,
                               direction=DIRECTIONS["flipped_xy"], identity=IDENTITY)
    reference = load_image(path)
    ds = pydicom.dcmread(path)
    det = ds.DetectorInformationSequence[0]
    ds.ImagePositionPatient, ds.ImageOrientationPatient = det.ImagePositionPatient, det.ImageOrientationPatient
    del det.ImagePositionPatient, det.ImageOrientationPatient
    ds.save_as(tmp_path / "fallback.dcm")
    assert same_grid(load_image(tmp_path / "fallback.dcm"), reference, tol=1e-9)
    # Slice Thickness is never taken for the spacing (it was the fallback before)
    del ds.SpacingBetweenSlices
    ds.save_as(tmp_path / "no_spacing.dcm")
    with pytest.raises(GeometryError, match=r"Spacing Between Slices \(0018,0088\)") as err:
        load_image(tmp_path / "no_spacing.dcm")
    assert "no_spacing.dcm" in str(err.value)


@pytest.mark.parametrize("name", ["identity", "oblique"])
def test_nm_multiframe_matches_single_frame_export(tmp_path, counts, name):
    """The multi-frame reading agrees with SimpleITK's series reader on single-frame exports."""
    direction = DIRECTIONS[name]
    kwargs = dict(spacing=SPACING, origin=ORIGIN, direction=direction, identity=IDENTITY)
    multi = load_image(write_nm_multiframe(counts, tmp_path / "spect.dcm", **kwargs))
    for export in (write_nm_slices(counts, tmp_path / "nm_slices", **kwargs),
                   write_ct_series(counts, tmp_path / "ct_slices", **kwargs)):
        reference = series_reader(export)
        assert same_grid(multi, reference, tol=1e-6), (image_geometry(multi), image_geometry(reference))
        np.testing.assert_array_equal(sitk.GetArrayFromImage(multi), sitk.GetArrayFromImage(reference))
        assert same_grid(load_image(export), reference, tol=1e-6)


# ------------------------------------------------------------------------------------------------
# DICOM series
# ------------------------------------------------------------------------------------------------


def test_ct_series_round_trip_sorted_by_geometry(tmp_path):
    hu = np.random.default_rng(1).integers(-1024, 2500, SHAPE)
    direction = DIRECTIONS["oblique"]
    folder = write_ct_series(hu, tmp_path / "ct", spacing=(0.98, 0.98, 2.5), origin=ORIGIN,
                             direction=direction, identity=IDENTITY)
    for i, f in enumerate(sorted(folder.iterdir())):  # file names must not carry the order
        f.rename(folder / f"IMG{(i * 7919) % 1000:04d}")
    image = load_image(folder)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), hu)
    assert_geometry(image, ORIGIN, (0.98, 0.98, 2.5), direction, SHAPE)
    assert same_grid(image, series_reader(folder), tol=1e-6)
    ds = pydicom.dcmread(next(folder.iterdir()))
    assert ds.SOPClassUID == pydicom.uid.CTImageStorage and ds.RescaleIntercept == -1024


def _pydicom_file_meta(sop_class, sop_instance, syntax) -> bytes:
    from pydicom.dataset import FileMetaDataset
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_file_meta_info

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance
    meta.TransferSyntaxUID = syntax
    fp = DicomBytesIO()
    fp.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(fp, meta, enforce_standard=True)
    return fp.getvalue()


@pytest.mark.parametrize("compression", ["none", "deflate"])
def test_ct_series_file_meta_is_pydicoms_for_each_file(tmp_path, compression):
    """Each file's meta information is the bytes pydicom writes for it (the writer reuses them)."""
    from mibgkit.synth.dicom import _SeriesEncoder

    hu = np.random.default_rng(3).integers(-1024, 1500, (12, 4, 5))
    folder = write_ct_series(hu, tmp_path / "ct", spacing=SPACING, origin=ORIGIN, identity=IDENTITY,
                             compression=compression)
    for f in sorted(folder.iterdir()):
        ds = pydicom.dcmread(f)
        want = _pydicom_file_meta(ds.SOPClassUID, ds.SOPInstanceUID, ds.file_meta.TransferSyntaxUID)
        assert f.read_bytes().startswith(want), f.name
    # UIDs of other lengths (odd ones padded) each get their own bytes around the UID
    template = pydicom.dcmread(f)
    encoder = _SeriesEncoder(template, ["SOPInstanceUID"], compression)
    for uid in ("1.2.3", "1.2.34", "1.2.3.4.5.6.7.8.9.10.11", "1.2.3", "1.2.345"):
        out = encoder.save(tmp_path / "one.dcm", {"SOPInstanceUID": uid})
        assert out.read_bytes().startswith(_pydicom_file_meta(template.SOPClassUID, uid,
                                                              template.file_meta.TransferSyntaxUID)), uid
        assert pydicom.dcmread(out).SOPInstanceUID == uid


def test_ct_series_signed_values(tmp_path):
    hu = np.random.default_rng(2).integers(-3000, 3000, SHAPE)
    folder = write_ct_series(hu, tmp_path / "ct", spacing=SPACING, origin=ORIGIN, identity=IDENTITY)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(load_image(folder)), hu)


def test_ct_left_handed_series_keeps_physical_positions(tmp_path):
    hu = np.random.default_rng(4).integers(-1000, 1000, SHAPE)
    direction = np.diag([1.0, 1.0, -1.0])
    folder = write_ct_series(hu, tmp_path / "ct", spacing=SPACING, origin=ORIGIN, direction=direction,
                             identity=IDENTITY)
    image = load_image(folder)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), hu[::-1])
    last_slice = expected_point((0, 0, SHAPE[0] - 1), ORIGIN, SPACING, direction)
    np.testing.assert_allclose(image.GetOrigin(), last_slice)


# ------------------------------------------------------------------------------------------------
# NIfTI, NRRD, MetaImage
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz", ".nrrd", ".mha"])
def test_itk_formats_round_trip(tmp_path, counts, suffix):
    image = sitk.GetImageFromArray(counts.astype(np.float32) * 0.5)
    image.SetSpacing(SPACING)
    image.SetOrigin(ORIGIN)
    image.SetDirection(tuple(DIRECTIONS["oblique"].ravel()))
    path = tmp_path / f"image{suffix}"
    sitk.WriteImage(image, str(path))
    loaded = load_image(path)
    assert same_grid(loaded, image, tol=1e-4)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(loaded), counts.astype(np.float32) * 0.5)


def test_4d_nifti_with_one_volume_is_3d(tmp_path, counts):
    path = tmp_path / "one.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(counts[None].astype(np.int16), isVector=False), str(path))
    assert load_image(path).GetSize() == tuple(reversed(SHAPE))
    path = tmp_path / "two.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.stack([counts, counts]).astype(np.int16), isVector=False), str(path))
    with pytest.raises(InputError, match="2 volumes") as err:
        load_image(path)
    assert str(path) in str(err.value)


# ------------------------------------------------------------------------------------------------
# errors name the file (and the patient)
# ------------------------------------------------------------------------------------------------


@pytest.fixture
def nm_file(tmp_path, counts):
    return write_nm_multiframe(counts, tmp_path / "spect.dcm", spacing=SPACING, origin=ORIGIN,
                               identity=IDENTITY)


@pytest.fixture
def ct_folder(tmp_path, counts):
    return write_ct_series(counts, tmp_path / "ct", spacing=SPACING, origin=ORIGIN, identity=IDENTITY)


def test_missing_path(tmp_path):
    path = tmp_path / "nope.dcm"
    with pytest.raises(InputError, match="no such file") as err:
        load_image(path, patient="P007")
    assert str(path) in str(err.value) and "P007" in str(err.value)


def test_not_dicom(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("tumour drawn on slice 40\n")
    with pytest.raises(InputError, match="neither DICOM") as err:
        load_image(path, patient="P007")
    assert str(path) in str(err.value) and "P007" in str(err.value)


@pytest.mark.parametrize("keep", [0.5, 0.995])
def test_truncated_dicom(tmp_path, nm_file, keep):
    data = nm_file.read_bytes()
    path = tmp_path / "cut.dcm"
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(InputError, match="truncated") as err:
        load_image(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("suffix, dtype", [(".nii.gz", np.float32), (".nii.gz", np.int16), (".nii", np.int16),
                                           (".nrrd", np.float32), (".mha", np.int16)])
def test_truncated_itk_formats(tmp_path, counts, suffix, dtype):
    path = tmp_path / f"cut{suffix}"
    sitk.WriteImage(sitk.GetImageFromArray(counts.astype(dtype)), str(path))
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(InputError, match="truncated") as err:
        load_image(path, patient="P007")
    assert str(path) in str(err.value) and "P007" in str(err.value)


def test_truncated_slice_in_series(ct_folder):
    victim = sorted(ct_folder.iterdir())[4]
    victim.write_bytes(victim.read_bytes()[:-100])
    with pytest.raises(InputError, match="truncated") as err:
        load_image(ct_folder)
    assert victim.name in str(err.value)


def test_missing_slice(ct_folder):
    files = sorted(ct_folder.iterdir())
    files[4].unlink()
    with pytest.raises(GeometryError, match="non-uniform slice spacing") as err:
        load_image(ct_folder, patient="P007")
    message = str(err.value)
    assert "1 slice(s) missing" in message and files[3].name in message and files[5].name in message
    assert str(ct_folder) in message and "P007" in message


def test_uneven_spacing(tmp_path, counts):
    folder = write_ct_series(counts, tmp_path / "ct", spacing=SPACING, origin=ORIGIN, identity=IDENTITY)
    victim = sorted(folder.iterdir())[-1]
    ds = pydicom.dcmread(victim)
    ds.ImagePositionPatient[2] = float(ds.ImagePositionPatient[2]) + 0.7
    ds.save_as(victim)
    with pytest.raises(GeometryError, match="non-uniform slice spacing") as err:
        load_image(folder)
    assert victim.name in str(err.value) and "missing" not in str(err.value)


def test_duplicated_slice(ct_folder):
    source = sorted(ct_folder.iterdir())[3]
    ds = pydicom.dcmread(source)
    ds.SOPInstanceUID = pydicom.uid.generate_uid(entropy_srcs=["duplicate"])
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(ct_folder / "copy_of_slice.dcm")
    with pytest.raises(InputError, match="duplicated slice") as err:
        load_image(ct_folder)
    assert source.name in str(err.value) and "copy_of_slice.dcm" in str(err.value)


def test_mixed_series(tmp_path, counts):
    folder = tmp_path / "mixed"
    write_ct_series(counts, folder, spacing=SPACING, origin=ORIGIN, identity=IDENTITY)
    other = write_ct_series(counts, tmp_path / "other", spacing=SPACING, origin=ORIGIN,
                            identity=IDENTITY, series={"SeriesNumber": 5, "SeriesDescription": "CT 3.0 B31s"})
    for i, f in enumerate(sorted(other.iterdir())):
        shutil.copy(f, folder / f"second_{i}.dcm")
    with pytest.raises(InputError, match="2 DICOM series") as err:
        load_image(folder)
    assert str(folder) in str(err.value) and "series number 5" in str(err.value)
    # series are told apart without their UID or free-text description (either may identify)
    assert "CT 3.0 B31s" not in str(err.value) and "1.2." not in str(err.value)


def test_nm_without_geometry(tmp_path, nm_file):
    ds = pydicom.dcmread(nm_file)
    del ds.DetectorInformationSequence[0].ImagePositionPatient
    path = tmp_path / "nogeo.dcm"
    ds.save_as(path)
    with pytest.raises(GeometryError, match="Image Position/Orientation") as err:
        load_image(path, patient="P007")
    assert str(path) in str(err.value) and "P007" in str(err.value)


@pytest.mark.parametrize("attribute, value, match", [
    ("PixelSpacing", None, "Pixel Spacing"),
    ("SpacingBetweenSlices", "0", "non-zero spacing"),
])
def test_nm_bad_spacing(tmp_path, nm_file, attribute, value, match):
    ds = pydicom.dcmread(nm_file)
    if value is None:
        delattr(ds, attribute)
    else:
        setattr(ds, attribute, value)
    path = tmp_path / "bad.dcm"
    ds.save_as(path)
    with pytest.raises(GeometryError, match=match) as err:
        load_image(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("image_type, pointer, match", [
    (["ORIGINAL", "PRIMARY", "TOMO", "EMISSION"], None, "not a reconstructed"),
    (["ORIGINAL", "PRIMARY", "RECON GATED TOMO", "EMISSION"], "TimeSlotVector", "several volumes"),
])
def test_nm_not_one_volume(tmp_path, nm_file, image_type, pointer, match):
    ds = pydicom.dcmread(nm_file)
    ds.ImageType = image_type
    if pointer:
        ds.FrameIncrementPointer = [pydicom.tag.Tag(pointer), pydicom.tag.Tag("SliceVector")]
        setattr(ds, pointer, [1 + i % 2 for i in range(int(ds.NumberOfFrames))])
    path = tmp_path / "nm.dcm"
    ds.save_as(path)
    with pytest.raises(InputError, match=match) as err:
        load_image(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd"])
def test_nan_voxels(tmp_path, counts, suffix):
    values = counts.astype(np.float32)
    values[2, 3, 4] = np.nan
    values[5, 0, 0] = np.inf
    path = tmp_path / f"nan{suffix}"
    sitk.WriteImage(sitk.GetImageFromArray(values), str(path))
    with pytest.raises(InputError, match="2 voxels are NaN or infinite") as err:
        load_image(path, patient="P007")
    assert str(path) in str(err.value) and "P007" in str(err.value)


def test_2d_images(tmp_path, nm_file, ct_folder):
    path = tmp_path / "plane.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((10, 12), np.float32)), str(path))
    with pytest.raises(InputError, match="2-D") as err:
        load_image(path)
    assert str(path) in str(err.value)

    one_slice = sorted(ct_folder.iterdir())[0]
    with pytest.raises(InputError, match="2-D DICOM slice.*give its folder") as err:
        load_image(one_slice)
    assert str(one_slice) in str(err.value)

    lonely = tmp_path / "lonely"
    lonely.mkdir()
    shutil.copy(one_slice, lonely / one_slice.name)
    with pytest.raises(InputError, match="2-D image") as err:
        load_image(lonely)
    assert one_slice.name in str(err.value)

    ds = pydicom.dcmread(nm_file)
    ds.NumberOfFrames = 1
    ds.SliceVector = [1]
    ds.PixelData = ds.PixelData[: 2 * int(ds.Rows) * int(ds.Columns)]
    path = tmp_path / "oneframe.dcm"
    ds.save_as(path)
    with pytest.raises(InputError, match="2-D image") as err:
        load_image(path)
    assert str(path) in str(err.value)


def test_folder_without_dicom(tmp_path):
    (tmp_path / "series_1").mkdir()
    with pytest.raises(InputError, match="no DICOM.*series_1") as err:
        load_image(tmp_path)
    assert str(tmp_path) in str(err.value)


def test_folder_with_one_multiframe_file(tmp_path, nm_file, counts):
    image = load_image(nm_file.parent)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), counts)


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------


def test_check_counts(tmp_path):
    image = sitk.GetImageFromArray(np.ones(SHAPE, np.float32))
    assert check_counts(image) == 0
    values = np.ones(SHAPE, np.float32)
    values[0, 0, :3] = -2.0
    image = sitk.GetImageFromArray(values)
    with pytest.warns(QCWarning, match="3 voxels .* negative counts") as record:
        assert check_counts(image, tmp_path / "s.dcm", "P007") == 3
    assert "P007" in str(record[0].message) and "s.dcm" in str(record[0].message)
    with pytest.raises(InputError, match="negative counts") as err:
        check_counts(image, tmp_path / "s.dcm", "P007", strict=True)
    assert "s.dcm" in str(err.value)


def test_image_geometry_and_same_grid(counts):
    image = sitk.GetImageFromArray(counts.astype(np.float32))
    image.SetSpacing(SPACING)
    image.SetOrigin(ORIGIN)
    geometry = image_geometry(image)
    assert geometry == {"size": (12, 10, 9), "spacing": SPACING, "origin": ORIGIN,
                        "direction": (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)}
    other = sitk.Image(image)
    other.SetOrigin(tuple(np.add(ORIGIN, (0, 0, 5e-5))))
    assert same_grid(image, other)
    other.SetOrigin(tuple(np.add(ORIGIN, (0, 0, 1e-3))))
    assert not same_grid(image, other)
    assert not same_grid(image, sitk.GetImageFromArray(counts[1:].astype(np.float32)))

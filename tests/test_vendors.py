"""SPECT from every vendor (SPEC 6.6): the NM layouts of mibgkit.synth.dicom read back to the same voxels,
positions and values, a patient's features do not depend on the layout, the reader's value rules (Real
World Value Mapping, rescale, float pixel data, per frame or per file) and geometry errors, and the
compressed transfer syntaxes of the synthetic cohort as pydicom, SimpleITK/GDCM and highdicom read them."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from mibgkit.errors import GeometryError, InputError
from mibgkit.io import UNIT_KEY, load_image
from mibgkit.synth.dicom import write_ct_series
from mibgkit.synth.nm_layouts import (
    QUANT_BQML_PER_COUNT,
    VENDORS,
    write_nm_multiframe,
    write_nm_slices,
    write_spect,
)

IDENTITY = {"PatientName": "Okafor^Ada", "PatientID": "NB-0777", "StudyDate": "20220301", "StudyTime": "093000"}
SPACING = (3.3, 3.0, 2.0)
ORIGIN = (-12.5, 40.25, -300.0)
SHAPE = (6, 8, 10)
#: Feature columns that carry the image's unit (all others are unit-free or geometric).
VALUED = {"tmax", "tmean", "lmax", "lmean", "mmax", "mmean", "liver_max", "liver_mean", "muscle_left_max",
          "muscle_left_mean", "muscle_right_max", "muscle_right_mean", "mtv_threshold"}
#: Transfer syntax each vendor's cohort is written with, so that all three are exercised end to end.
COHORT_COMPRESSION = {"hermes": "rle", "reversed": "none", "float": "none"}


@pytest.fixture(scope="module")
def counts():
    return np.random.default_rng(11).poisson(150, SHAPE).astype(np.uint16)


# ------------------------------------------------------------------------------------------------
# one synthetic patient in every layout
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory):
    """One patient (seed 5), written by `mibgkit synth --vendor V` for every vendor layout."""
    from mibgkit.manifest import read_manifest
    from mibgkit.synth.generate import generate_cohort

    rows = {}
    for vendor in VENDORS:
        out = tmp_path_factory.mktemp(f"vendor_{vendor}")
        manifest = generate_cohort(out, n=1, seed=5, progress=False, workers=1, vendor=vendor,
                                   compression=COHORT_COMPRESSION.get(vendor, "deflate"))
        rows[vendor] = read_manifest(manifest).iloc[0].to_dict()
    return rows


@pytest.fixture(scope="module")
def features(cohorts):
    from mibgkit.features import extract_patient

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {v: extract_patient(row) for v, row in cohorts.items()}


def voxel_centres(image: sitk.Image) -> np.ndarray:
    """LPS position (mm) of every voxel centre, in numpy order (z, y, x, 3)."""
    size = image.GetSize()
    k, j, i = np.meshgrid(*(np.arange(n) for n in size[::-1]), indexing="ij")
    ijk = np.stack([i, j, k], axis=-1).reshape(-1, 3) * np.asarray(image.GetSpacing())
    d = np.reshape(image.GetDirection(), (3, 3))
    return (ijk @ d.T + np.asarray(image.GetOrigin())).reshape(*size[::-1], 3)


@pytest.mark.parametrize("vendor", VENDORS)
def test_every_layout_reads_to_the_same_voxels_positions_and_values(cohorts, vendor):
    reference = load_image(cohorts["siemens"]["spect"])
    image = load_image(cohorts[vendor]["spect"])
    assert image.GetSize() == reference.GetSize()
    # same physical position of every voxel (LPS mm), whatever the file's own slice order
    np.testing.assert_allclose(voxel_centres(image), voxel_centres(reference), rtol=0, atol=1e-4)
    values, expected = sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(reference).astype(np.float64)
    scale = QUANT_BQML_PER_COUNT if vendor == "quant" else 1.0
    np.testing.assert_array_equal(values, expected * scale)  # integer counts: every layout is exact
    assert image.GetMetaData(UNIT_KEY) == ("Bq/ml" if vendor == "quant" else "counts")


@pytest.mark.parametrize("vendor", [v for v in VENDORS if v != "siemens"])
def test_features_do_not_depend_on_the_layout(features, vendor):
    reference, row = features["siemens"], features[vendor]
    assert row.keys() == reference.keys()
    scale = QUANT_BQML_PER_COUNT if vendor == "quant" else 1.0
    for key, value in reference.items():
        if key == "uptake_unit":
            assert row[key] == ("Bq/ml" if vendor == "quant" else "counts")
        elif isinstance(value, str):
            assert row[key] == value, key
        elif np.isnan(value):
            assert np.isnan(row[key]), key
        else:  # ratios, shape and counts of voxels equal; Tmax/Lmax/... differ only by the unit
            expected = value * scale if key in VALUED else value
            assert row[key] == pytest.approx(expected, rel=1e-9, abs=1e-12), key


def test_quant_thresholded_mtv_equals_counts(cohorts):
    from mibgkit.features import extract_patient

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a, b = (extract_patient(cohorts[v], mtv_method="percent_max") for v in ("siemens", "quant"))
    assert a["mtv_n_voxels"] == b["mtv_n_voxels"] and a["asphericity"] == pytest.approx(b["asphericity"], rel=1e-12)
    assert b["mtv_threshold"] == pytest.approx(a["mtv_threshold"] * QUANT_BQML_PER_COUNT, rel=1e-12)


def test_layout_headers(cohorts):
    def nm(vendor):
        return pydicom.dcmread(cohorts[vendor]["spect"])

    siemens = nm("siemens")
    assert "ImagePositionPatient" not in siemens and float(siemens.SpacingBetweenSlices) > 0
    assert siemens.file_meta.TransferSyntaxUID == pydicom.uid.DeflatedExplicitVRLittleEndian
    ge = nm("ge")
    assert "ImagePositionPatient" in ge and "ImagePositionPatient" in ge.DetectorInformationSequence[0]
    assert float(ge.SliceThickness) != float(ge.SpacingBetweenSlices) and "SliceVector" in ge
    philips = nm("philips")
    assert philips.PixelRepresentation == 1 and float(philips.RescaleSlope) < 1
    quant = nm("quant")
    units = [item.MeasurementUnitsCodeSequence[0].CodeValue for item in quant.RealWorldValueMappingSequence]
    assert units == ["{counts}", "Bq/ml"]
    assert "FloatPixelData" in nm("float") and "PixelData" not in nm("float")
    reversed_ = nm("reversed")
    assert float(reversed_.SpacingBetweenSlices) < 0
    assert reversed_.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    folder = cohorts["hermes"]["spect"]
    slices = [pydicom.dcmread(f) for f in sorted(Path(folder).iterdir())]
    assert len(slices) > 100 and all(int(s.get("NumberOfFrames", 1)) == 1 for s in slices)
    assert len({str(s.RescaleSlope) for s in slices}) > 1  # each slice scaled on its own
    assert slices[0].file_meta.TransferSyntaxUID == pydicom.uid.RLELossless


def test_unknown_vendor_or_compression_is_refused(tmp_path, counts):
    from mibgkit.synth.generate import generate_cohort

    with pytest.raises(ValueError, match="vendor"):
        generate_cohort(tmp_path, n=1, vendor="acme")
    with pytest.raises(ValueError, match="compression"):
        write_nm_multiframe(counts, tmp_path / "x.dcm", spacing=SPACING, origin=ORIGIN, identity=IDENTITY,
                            compression="jpeg")


# ------------------------------------------------------------------------------------------------
# the reader's value rules (mibgkit.nm)
# ------------------------------------------------------------------------------------------------


def rwv_item(slope, intercept=0.0, unit="Bq/ml"):
    item = Dataset()
    item.RealWorldValueFirstValueMapped = 0
    item.RealWorldValueLastValueMapped = 65535
    item.RealWorldValueSlope = float(slope)
    item.RealWorldValueIntercept = float(intercept)
    item.LUTLabel = "RWV"
    if unit is not None:
        code = Dataset()
        code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = unit, "UCUM", unit
        item.MeasurementUnitsCodeSequence = Sequence([code])
    return item


@pytest.fixture
def nm(tmp_path, counts):
    path = write_nm_multiframe(counts, tmp_path / "nm.dcm", spacing=SPACING, origin=ORIGIN, identity=IDENTITY)
    return pydicom.dcmread(path)


def read_back(ds, tmp_path, name="m.dcm"):
    ds.save_as(tmp_path / name)
    return load_image(tmp_path / name)


def test_rwv_per_frame_shared_and_top_level(tmp_path, nm, counts):
    slopes = [0.5 + k for k in range(SHAPE[0])]
    frames = []
    for s in slopes:
        fg = Dataset()
        fg.RealWorldValueMappingSequence = Sequence([rwv_item(s, 2.0)])
        frames.append(fg)
    nm.PerFrameFunctionalGroupsSequence = Sequence(frames)
    nm.RescaleSlope, nm.RescaleIntercept = "3", "0"  # the mapping, not the rescale, gives the values
    image = read_back(nm, tmp_path)
    assert image.GetPixelID() == sitk.sitkFloat64 and image.GetMetaData(UNIT_KEY) == "Bq/ml"
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), counts * np.array(slopes)[:, None, None] + 2.0)

    del nm.PerFrameFunctionalGroupsSequence
    shared = Dataset()
    shared.RealWorldValueMappingSequence = Sequence([rwv_item(1.0, 0.0, "{counts}"), rwv_item(4.0, 0.0, "kBq/ml")])
    nm.SharedFunctionalGroupsSequence = Sequence([shared])
    image = read_back(nm, tmp_path)
    assert image.GetMetaData(UNIT_KEY) == "kBq/ml"  # the quantitative item of two
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), counts * 4.0)

    del nm.SharedFunctionalGroupsSequence
    nm.RealWorldValueMappingSequence = Sequence([rwv_item(2.0, 0.0, unit=None)])
    image = read_back(nm, tmp_path)
    assert image.GetMetaData(UNIT_KEY) == "counts"
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), counts * 2.0)


def test_rescale_per_frame_and_per_file(tmp_path, nm, counts):
    nm.RescaleSlope, nm.RescaleIntercept = "0.25", "-1"
    image = read_back(nm, tmp_path)
    assert image.GetPixelID() == sitk.sitkFloat32 and image.GetMetaData(UNIT_KEY) == "counts"
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), counts * 0.25 - 1)
    frames = []
    for k in range(SHAPE[0]):
        pvt = Dataset()
        pvt.RescaleSlope, pvt.RescaleIntercept, pvt.RescaleType = str(2 ** k), "0", "US"
        fg = Dataset()
        fg.PixelValueTransformationSequence = Sequence([pvt])
        frames.append(fg)
    nm.PerFrameFunctionalGroupsSequence = Sequence(frames)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read_back(nm, tmp_path)),
                                  counts * (2.0 ** np.arange(SHAPE[0]))[:, None, None])


def test_double_float_pixel_data_with_rwv(tmp_path, nm, counts):
    values = counts.astype(np.float64) / 3.0
    del nm.PixelData, nm.BitsStored, nm.HighBit, nm.PixelRepresentation
    nm.BitsAllocated = 64
    nm.DoubleFloatPixelData = values.tobytes()
    image = read_back(nm, tmp_path)
    assert image.GetPixelID() == sitk.sitkFloat64
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), values)
    nm.RealWorldValueMappingSequence = Sequence([rwv_item(10.0)])
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read_back(nm, tmp_path)), values * 10.0)


@pytest.mark.parametrize("change, error, pattern", [
    (lambda ds: ds.RealWorldValueMappingSequence[0].__delattr__("RealWorldValueSlope"), InputError,
     r"Real World Value Slope \(0040,9225\)"),
    (lambda ds: setattr(ds.RealWorldValueMappingSequence[0], "RealWorldValueLUTData", [1.0, 2.0]), None, None),
    (lambda ds: setattr(ds, "NumberOfSlices", 5), GeometryError, r"Number of Slices \(0054,0081\)"),
    (lambda ds: setattr(ds, "SliceVector", [1, 2, 3, 4, 5]), GeometryError, r"Slice Vector \(0054,0080\).*Number of Frames"),
    (lambda ds: setattr(ds, "ImagePositionPatient", ["1", "2", "3"]), GeometryError,
     r"Image Position \(Patient\) \(0020,0032\).*differs from the top-level"),
    (lambda ds: ds.__delattr__("DetectorInformationSequence"), GeometryError,
     r"no Image Position/Orientation.*Detector Information Sequence \(0054,0022\)"),
    (lambda ds: setattr(ds, "SpacingBetweenSlices", ""), GeometryError, r"Spacing Between Slices \(0018,0088\)"),
])
def test_inconsistent_nm_files_name_the_attribute(tmp_path, nm, change, error, pattern):
    nm.RealWorldValueMappingSequence = Sequence([rwv_item(2.0)])
    change(nm)
    if error is None:  # a LUT beside the slope: the slope is used
        assert read_back(nm, tmp_path).GetMetaData(UNIT_KEY) == "Bq/ml"
        del nm.RealWorldValueMappingSequence[0].RealWorldValueSlope
        error, pattern = InputError, r"Real World Value LUT Data \(0040,9212\).*not supported"
    with pytest.raises(error, match=pattern) as err:
        read_back(nm, tmp_path, "bad.dcm")
    assert "bad.dcm" in str(err.value)


def test_single_frame_nm_folder_with_rwv_and_units(tmp_path, counts):
    folder = write_nm_slices(counts, tmp_path / "nm", spacing=SPACING, origin=ORIGIN, identity=IDENTITY)
    files = sorted(folder.iterdir())
    for f in files:
        ds = pydicom.dcmread(f)
        ds.RealWorldValueMappingSequence = Sequence([rwv_item(QUANT_BQML_PER_COUNT)])
        ds.save_as(f)
    image = load_image(folder)
    assert image.GetMetaData(UNIT_KEY) == "Bq/ml"
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), counts * QUANT_BQML_PER_COUNT)
    ds = pydicom.dcmread(files[2])
    ds.RealWorldValueMappingSequence = Sequence([rwv_item(1.0, unit="{counts}")])
    ds.save_as(files[2])
    with pytest.raises(InputError, match="slices differ in unit"):
        load_image(folder)


def test_unit_of_other_formats(tmp_path, counts):
    path = tmp_path / "s.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(counts), str(path))
    assert load_image(path).GetMetaData(UNIT_KEY) == "counts"
    ct = write_ct_series(counts.astype(int) - 1000, tmp_path / "ct", spacing=SPACING, origin=ORIGIN, identity=IDENTITY)
    assert load_image(ct).GetMetaData(UNIT_KEY) == "HU"


# ------------------------------------------------------------------------------------------------
# compressed transfer syntaxes: every reader, same values, same bytes
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("compression", ["deflate", "rle"])
def test_compressed_files_read_everywhere_and_are_deterministic(tmp_path, counts, compression):
    import highdicom as hd

    hu = counts.astype(np.int64) * 7 - 1024
    kw = dict(spacing=SPACING, origin=ORIGIN, identity=IDENTITY)
    nm_path = write_nm_multiframe(counts, tmp_path / "nm.dcm", compression=compression, **kw)
    ct = write_ct_series(hu, tmp_path / "ct", compression=compression, **kw)
    plain = load_image(write_nm_multiframe(counts, tmp_path / "plain.dcm", **kw))
    # mibgkit
    image = load_image(nm_path)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), counts)
    assert image.GetOrigin() == plain.GetOrigin() and image.GetSpacing() == plain.GetSpacing()
    np.testing.assert_array_equal(sitk.GetArrayFromImage(load_image(ct)), hu)
    # pydicom
    np.testing.assert_array_equal(pydicom.dcmread(nm_path).pixel_array, counts)
    # SimpleITK / GDCM: the NM file and the CT series
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(nm_path))).reshape(SHAPE), counts)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(ct)))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(reader.Execute()), hu)
    # highdicom (DICOM SEG output references the SPECT)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nm_hd = hd.imread(nm_path)
        np.testing.assert_array_equal(np.stack([nm_hd.get_stored_frame(k + 1) for k in range(SHAPE[0])]), counts)
        first = sorted(ct.iterdir())[0]
        np.testing.assert_array_equal(hd.imread(first).get_stored_frame(1), pydicom.dcmread(first).pixel_array)
    # the same inputs give the same bytes
    again = write_nm_multiframe(counts, tmp_path / "again.dcm", compression=compression, **kw)
    assert again.read_bytes() == nm_path.read_bytes()
    ct_again = write_ct_series(hu, tmp_path / "ct_again", compression=compression, **kw)
    assert [f.read_bytes() for f in sorted(ct.iterdir())] == [f.read_bytes() for f in sorted(ct_again.iterdir())]
    if compression == "deflate":  # RLE cannot shrink pure noise; the cohort's CT and SPECT are not that
        assert nm_path.stat().st_size < (tmp_path / "plain.dcm").stat().st_size


def test_deflated_files_read_as_pydicom_reads_them(tmp_path, counts):
    """The ISA-L inflate of the file door gives pydicom's own dataset, for every vendor layout
    written deflated; a truncated deflate stream is a clear input error naming the file."""
    from mibgkit.dicom_image import _dcmread

    for vendor in VENDORS:
        out = write_spect(counts, tmp_path / vendor, spacing=SPACING, origin=ORIGIN, identity=IDENTITY,
                          vendor=vendor, compression="deflate")
        for path in sorted(out.iterdir()) if out.is_dir() else [out]:
            ours, theirs = _dcmread(path), pydicom.dcmread(path)
            assert ours.file_meta.TransferSyntaxUID == pydicom.uid.DeflatedExplicitVRLittleEndian
            assert ours == theirs and ours.file_meta == theirs.file_meta and ours.preamble == theirs.preamble
            assert ours.original_encoding == theirs.original_encoding and ours.filename == theirs.filename
            np.testing.assert_array_equal(ours.pixel_array, theirs.pixel_array)
    plain = write_nm_multiframe(counts, tmp_path / "plain.dcm", spacing=SPACING, origin=ORIGIN, identity=IDENTITY)
    assert _dcmread(plain) == pydicom.dcmread(plain)  # other transfer syntaxes: pydicom itself
    whole = write_nm_multiframe(counts, tmp_path / "whole.dcm", spacing=SPACING, origin=ORIGIN, identity=IDENTITY,
                                compression="deflate")
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(InputError, match="cut.dcm.*truncated or corrupt"):
        load_image(cut, patient="NB001")


def test_write_spect_places_every_layout(tmp_path, counts):
    for vendor in VENDORS:
        out = write_spect(counts, tmp_path / vendor, spacing=SPACING, origin=ORIGIN, identity=IDENTITY, vendor=vendor)
        assert out.name == ("spect" if vendor == "hermes" else "spect.dcm") and out.exists()

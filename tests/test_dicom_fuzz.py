"""Fuzzing the DICOM reader: damaged NM multi-frame and CT series headers end in a clear error or a correct read.

Hypothesis mutates the attributes :func:`mibgkit.io.load_image` uses — deletes them, empties them, writes them
with a wrong VR or type, or with out-of-range values (Rows, Columns, Number of Frames, Bits Allocated/Stored,
Pixel Representation, Pixel Spacing, Image Position/Orientation (Patient), Detector Information Sequence
items, Spacing Between Slices, Slice Vector, Rescale Slope/Intercept, Real World Value Mapping items, Image
Type), truncates or pads the pixel data and makes frame counts disagree. The property: every case ends
either in a :class:`mibgkit.errors.MibgkitError` whose message names the file and the mutated attribute, or
in a read whose geometry and values equal the unmutated file's — never in another exception. Each strategy
runs ``MIBGKIT_FUZZ_EXAMPLES`` examples (default 60, on 8 × 8 × 6 images); run longer with
``MIBGKIT_FUZZ_EXAMPLES=5000 .venv/bin/python -m pytest tests/test_dicom_fuzz.py``.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.datadict import dictionary_description, dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from mibgkit.errors import MibgkitError
from mibgkit.io import load_image
from mibgkit.rois import read_roi
from mibgkit.synth.dicom import write_ct_series
from mibgkit.synth.nm_layouts import write_nm_multiframe

EXAMPLES = int(os.environ.get("MIBGKIT_FUZZ_EXAMPLES", "60"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=EXAMPLES <= 60,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

IDENTITY = {"PatientName": "Fuzz^Test", "PatientID": "NB-FUZZ", "StudyDate": "20230101", "StudyTime": "120000"}
SHAPE = (6, 8, 8)
KW = dict(spacing=(3.3, 3.0, 2.0), origin=(-12.5, 40.25, -300.0))

# ------------------------------------------------------------------------------------------------
# broken values: none of them is a valid value with another meaning (that would be a different image)
# ------------------------------------------------------------------------------------------------

GARBAGE = [("LO", "abc"), ("LO", "1\\x"), ("OB", b"\x01\x02\x03\xff"), ("LO", "\\\\"), ("UT", "é" * 3)]
INTEGERS = [("US", 0), ("US", 3), ("US", 7), ("US", 33), ("US", 64), ("US", 65535), ("SS", -1),
            ("LO", "2.5"), ("LO", "1e9"), ("LO", "nan")]
SCALARS = [("LO", "0"), ("LO", "nan"), ("LO", "inf"), ("LO", "-inf"), ("LO", "1e999"), ("LO", "1\\2")]
INTERCEPTS = [("LO", "nan"), ("LO", "inf"), ("LO", "1\\2"), ("LO", "0")]
VECTORS = {
    2: ["0\\0", "-1\\2", "nan\\1", "1", "1\\2\\3", "inf\\1"],
    3: ["nan\\1\\2", "1", "1\\2", "inf\\0\\0", "1\\2\\3\\4", "1e999\\0\\0"],
    6: ["1\\0\\0\\1\\0\\0", "0\\0\\0\\0\\0\\0", "2\\0\\0\\0\\2\\0", "nan\\0\\0\\0\\1\\0", "1\\0\\0\\0\\1", "1\\0\\0"],
}
VALUES = {
    "Rows": INTEGERS, "Columns": INTEGERS, "NumberOfFrames": INTEGERS, "BitsAllocated": INTEGERS,
    "BitsStored": INTEGERS, "PixelRepresentation": INTEGERS, "SamplesPerPixel": INTEGERS,
    "NumberOfSlices": INTEGERS,
    "PhotometricInterpretation": [("CS", "RGB"), ("CS", "PALETTE COLOR"), ("CS", "YBR_FULL")],
    "PixelSpacing": [("LO", v) for v in VECTORS[2]],
    "ImagePositionPatient": [("LO", v) for v in VECTORS[3]],
    "ImageOrientationPatient": [("LO", v) for v in VECTORS[6]],
    "SpacingBetweenSlices": SCALARS, "RescaleSlope": SCALARS, "RescaleIntercept": INTERCEPTS,
    "RealWorldValueSlope": [("FD", 0.0), ("FD", float("nan")), ("FD", float("inf"))] + SCALARS,
    "RealWorldValueIntercept": [("FD", float("nan")), ("FD", float("-inf"))] + INTERCEPTS,
    "SliceVector": [("LO", "1\\1\\2\\3\\4\\5"), ("LO", "1\\2\\3"), ("LO", "0\\1\\2\\3\\4\\5"),
                    ("LO", "2\\3\\4\\5\\6\\7"), ("LO", "1\\2\\3\\4\\5\\6\\7")],
    "ImageType": [("CS", "ORIGINAL\\PRIMARY\\STATIC"), ("CS", "ORIGINAL\\PRIMARY\\TOMO\\EMISSION")],
    "SliceThickness": SCALARS,
}
SEQUENCES = {"DetectorInformationSequence", "RealWorldValueMappingSequence", "MeasurementUnitsCodeSequence"}


def mutation(keywords):
    """A (keyword, operation, value) triple for one of ``keywords``."""
    def ops(keyword):
        if keyword in SEQUENCES:
            values = [("SQ-empty", None), ("SQ-empty-item", None), ("SQ-two-items", None)]
        else:
            values = VALUES[keyword]
        return st.tuples(st.just(keyword), st.sampled_from(["delete", "empty", "value", "value", "garbage"]),
                         st.sampled_from(values), st.sampled_from(GARBAGE))
    return st.sampled_from(keywords).flatmap(ops)


def apply(item: Dataset, keyword: str, op: str, value, garbage) -> None:
    """Mutate ``keyword`` of ``item`` in place."""
    tag = tag_for_keyword(keyword)
    if op == "delete":
        if keyword in item:
            del item[keyword]
    elif op == "empty":
        vr = dictionary_VR(keyword)
        item[tag] = DataElement(tag, "SQ" if vr == "SQ" else vr if vr in ("US", "SS", "FD") else "LO",
                                Sequence([]) if vr == "SQ" else None)
    elif op == "garbage":
        item[tag] = DataElement(tag, *garbage)
    elif value[0] == "SQ-empty":
        item[tag] = DataElement(tag, "SQ", Sequence([]))
    elif value[0] == "SQ-empty-item":
        item[tag] = DataElement(tag, "SQ", Sequence([Dataset()]))
    elif value[0] == "SQ-two-items":  # a second, damaged item after the real one
        first = item[tag].value[0] if keyword in item and len(item[tag].value) else Dataset()
        extra = Dataset()
        extra[tag_for_keyword("ImagePositionPatient")] = DataElement(tag_for_keyword("ImagePositionPatient"), "LO", "abc")
        extra[tag_for_keyword("RealWorldValueSlope")] = DataElement(tag_for_keyword("RealWorldValueSlope"), "FD",
                                                                    float("nan"))
        item[tag] = DataElement(tag, "SQ", Sequence([first, extra]))
    else:
        item[tag] = DataElement(tag, *value)


def names(keyword: str) -> str:
    """How an error message may name ``keyword``: its dictionary name (PS3.6) or the keyword."""
    return "|".join(re.escape(n) for n in {dictionary_description(tag_for_keyword(keyword)), keyword})


def image_state(image: sitk.Image):
    return (image.GetSize(), np.round(image.GetOrigin(), 6), np.round(image.GetSpacing(), 6),
            np.round(image.GetDirection(), 9), sitk.GetArrayFromImage(image).astype(np.float64))


def check(path: Path, reference, keywords: list[str], where: Path) -> None:
    """The property: a MibgkitError naming the file and one of ``keywords``, or the reference image."""
    try:
        image = load_image(path)
    except MibgkitError as exc:
        message = str(exc)
        assert str(where) in message, message
        assert any(re.search(names(k), message) for k in keywords), (keywords, message)
        return
    for a, b in zip(image_state(image), reference):
        np.testing.assert_array_equal(a, b, err_msg=f"{keywords[0]} mutated: read succeeded with other values")
    assert image.GetMetaData("uptake_unit") in ("Bq/ml", "counts", "HU")


# ------------------------------------------------------------------------------------------------
# NM multi-frame
# ------------------------------------------------------------------------------------------------


class Bases(dict):
    """Base files and their reference images (a short repr keeps hypothesis' reports readable)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {sorted(self)}>"


def _rwv_item() -> Dataset:
    item = Dataset()
    item.RealWorldValueFirstValueMapped = 0
    item.RealWorldValueLastValueMapped = 65535
    item.RealWorldValueSlope = 1.0  # identity: removing the mapping changes no value, only the unit
    item.RealWorldValueIntercept = 0.0
    unit = Dataset()
    unit.CodeValue, unit.CodingSchemeDesignator, unit.CodeMeaning = "Bq/ml", "UCUM", "Becquerels/milliliter"
    item.MeasurementUnitsCodeSequence = Sequence([unit])
    return item


@pytest.fixture(scope="module")
def nm_bases(tmp_path_factory):
    """Two NM files (Siemens layout with a Real World Value Mapping; GE layout), and their reference images."""
    folder = tmp_path_factory.mktemp("fuzz_nm")
    counts = np.random.default_rng(5).poisson(150, SHAPE).astype(np.uint16)
    bases = Bases()
    for vendor in ("siemens", "ge"):
        path = write_nm_multiframe(counts, folder / f"{vendor}.dcm", identity=IDENTITY, vendor=vendor, **KW)
        ds = pydicom.dcmread(path)
        if vendor == "siemens":
            ds.RealWorldValueMappingSequence = Sequence([_rwv_item()])
            ds.save_as(path)
        bases[vendor] = (ds, image_state(load_image(path)))
    return bases


TOP = ["Rows", "Columns", "NumberOfFrames", "BitsAllocated", "BitsStored", "PixelRepresentation",
       "SamplesPerPixel", "PhotometricInterpretation", "PixelSpacing", "ImagePositionPatient",
       "ImageOrientationPatient", "SpacingBetweenSlices", "SliceVector", "NumberOfSlices", "RescaleSlope",
       "RescaleIntercept", "ImageType", "SliceThickness", "DetectorInformationSequence",
       "RealWorldValueMappingSequence"]
DETECTOR = ["ImagePositionPatient", "ImageOrientationPatient"]
RWV = ["RealWorldValueSlope", "RealWorldValueIntercept", "MeasurementUnitsCodeSequence"]


def _save_mutated(ds: Dataset, name: str) -> tuple[Path, Path]:
    folder = Path(tempfile.mkdtemp(prefix="mibgkit_fuzz_"))
    path = folder / name
    ds.save_as(path)
    return folder, path


@FUZZ
@given(base=st.sampled_from(["siemens", "ge"]), where=st.sampled_from(["top", "detector", "rwv"]), data=st.data())
def test_nm_header_mutations(nm_bases, base, where, data):
    ds, reference = nm_bases[base]
    ds = copy.deepcopy(ds)
    if where == "detector":
        keyword, op, value, garbage = data.draw(mutation(DETECTOR))
        apply(ds.DetectorInformationSequence[0], keyword, op, value, garbage)
        keywords = [keyword, "DetectorInformationSequence"]
    elif where == "rwv" and "RealWorldValueMappingSequence" in ds:
        keyword, op, value, garbage = data.draw(mutation(RWV))
        apply(ds.RealWorldValueMappingSequence[0], keyword, op, value, garbage)
        keywords = [keyword, "RealWorldValueMappingSequence"]
    else:
        keyword, op, value, garbage = data.draw(mutation(TOP))
        apply(ds, keyword, op, value, garbage)
        keywords = [keyword]
    folder, path = _save_mutated(ds, "spect.dcm")
    try:
        check(path, reference, keywords, path)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@FUZZ
@given(base=st.sampled_from(["siemens", "ge"]), op=st.sampled_from(["truncate", "extend", "empty"]),
       n=st.integers(1, 300).map(lambda k: 2 * k), frames=st.integers(-3, 3))
def test_nm_pixel_data_and_frame_counts(nm_bases, base, op, n, frames):
    ds, reference = nm_bases[base]
    ds = copy.deepcopy(ds)
    data = ds.PixelData
    ds.PixelData = data[:-n] if op == "truncate" else data + b"\x07" * n if op == "extend" else b""
    keyword = "PixelData"
    if frames:  # frame count, Slice Vector and Number of Slices disagree as well
        ds.NumberOfFrames = max(1, SHAPE[0] + frames)
        keyword = "NumberOfFrames"
    folder, path = _save_mutated(ds, "spect.dcm")
    try:
        check(path, reference, [keyword, "PixelData", "NumberOfFrames"], path)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# ------------------------------------------------------------------------------------------------
# CT series of single-frame files
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ct_base(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz_ct")
    hu = np.random.default_rng(6).poisson(150, SHAPE).astype(np.int64) * 7 - 1024
    series = write_ct_series(hu, folder / "ct", identity=IDENTITY, **KW)
    files = sorted(series.iterdir())
    return Bases(datasets=[pydicom.dcmread(f) for f in files], names=[f.name for f in files],
                 reference=image_state(load_image(series)))


CT_KEYS = ["Rows", "Columns", "NumberOfFrames", "BitsAllocated", "BitsStored", "PixelRepresentation",
           "SamplesPerPixel", "PhotometricInterpretation", "PixelSpacing", "ImagePositionPatient",
           "ImageOrientationPatient", "RescaleSlope", "RescaleIntercept", "ImageType", "SpacingBetweenSlices",
           "SliceThickness"]


@FUZZ
@given(victim=st.integers(0, SHAPE[0] - 1), data=st.data())
def test_ct_series_mutations(ct_base, victim, data):
    datasets, names_, reference = ct_base["datasets"], ct_base["names"], ct_base["reference"]
    if data.draw(st.booleans(), label="pixel data"):
        keyword = "PixelData"
        n = 2 * data.draw(st.integers(1, 60), label="bytes")  # even: the writer would pad an odd length
        mutate = (lambda ds: setattr(ds, "PixelData", ds.PixelData[:-n])) if data.draw(st.booleans()) else \
            (lambda ds: setattr(ds, "PixelData", ds.PixelData + b"\x01" * n))
    else:
        keyword, op, value, garbage = data.draw(mutation(CT_KEYS))

        def mutate(ds):
            apply(ds, keyword, op, value, garbage)

    folder = Path(tempfile.mkdtemp(prefix="mibgkit_fuzz_ct_"))
    try:
        for k, (ds, name) in enumerate(zip(datasets, names_)):
            if k == victim:
                ds = copy.deepcopy(ds)
                mutate(ds)
            ds.save_as(folder / name)
        check(folder, reference, [keyword], folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# ------------------------------------------------------------------------------------------------
# DICOM SEG (read through mibgkit.rois.read_roi)
# ------------------------------------------------------------------------------------------------
#
# A highdicom-written BINARY SEG of two segments on a small CT series; hypothesis damages its Segment
# Sequence items, its per-frame and shared functional groups (plane positions, orientation, pixel
# measures, segment identification) and its image attributes. The property: read_roi either reads a
# binary mask or raises a MibgkitError naming the file — never another exception.

VALUES.update({
    "SegmentNumber": INTEGERS, "ReferencedSegmentNumber": INTEGERS, "MaximumFractionalValue": INTEGERS,
    "SegmentLabel": [("LO", ""), ("LO", "Tumour"), ("LO", "tumour\\other"), ("LO", " tumour")],
    "SegmentationType": [("CS", "FRACTIONAL"), ("CS", "LABELMAP"), ("CS", "BOGUS"), ("CS", "BINARY\\FRACTIONAL")],
    "SegmentAlgorithmType": [("CS", "BOGUS"), ("CS", "")],
})
SEQUENCES.update({"SegmentSequence", "PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence",
                  "PlanePositionSequence", "PlaneOrientationSequence", "PixelMeasuresSequence",
                  "SegmentIdentificationSequence"})

SEG_TOP = ["Rows", "Columns", "NumberOfFrames", "BitsAllocated", "BitsStored", "SamplesPerPixel",
           "SegmentationType", "MaximumFractionalValue", "SegmentSequence", "PerFrameFunctionalGroupsSequence",
           "SharedFunctionalGroupsSequence"]
SEG_SEGMENT = ["SegmentNumber", "SegmentLabel", "SegmentAlgorithmType"]
SEG_FRAME = ["PlanePositionSequence", "SegmentIdentificationSequence"]
SEG_POSITION = ["ImagePositionPatient"]
SEG_IDENTIFICATION = ["ReferencedSegmentNumber"]
SEG_SHARED = ["PlaneOrientationSequence", "PixelMeasuresSequence"]
SEG_ORIENTATION = ["ImageOrientationPatient"]
SEG_MEASURES = ["PixelSpacing", "SliceThickness", "SpacingBetweenSlices"]


@pytest.fixture(scope="module")
def seg_base(tmp_path_factory):
    """A BINARY SEG (segments ``tumour`` on slices 1–4 and ``other`` on 2–3, sparse frames) on a CT series."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    folder = tmp_path_factory.mktemp("fuzz_seg")
    write_ct_series(np.zeros(SHAPE), folder / "ct", identity=IDENTITY, **KW)
    sources = [pydicom.dcmread(p) for p in sorted((folder / "ct").iterdir())]
    z, y, x = np.indices(SHAPE)
    tumour = ((x - 3.5) ** 2 / 6 + (y - 4.0) ** 2 / 4 <= 1.0) & (z >= 1) & (z <= 4) & ~((x == 6) & (y == 4))
    other = (x >= 5) & (y <= 2) & (z >= 2) & (z <= 3)
    descriptions = [hd.seg.SegmentDescription(
        segment_number=n, segment_label=name, segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Neoplasm, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL)
        for n, name in ((1, "tumour"), (2, "other"))]
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=np.stack([tumour, other], axis=-1).astype(np.uint8),
        segmentation_type="BINARY", segment_descriptions=descriptions, series_instance_uid=hd.UID(),
        series_number=40, sop_instance_uid=hd.UID(), instance_number=1, manufacturer="mibgkit tests",
        manufacturer_model_name="fuzz", software_versions="0", device_serial_number="0")
    path = folder / "seg.dcm"
    seg.save_as(path)
    mask = read_roi(path, segment="tumour")
    assert int(sitk.GetArrayViewFromImage(mask).sum()) == int(tumour.sum())
    return Bases(dataset=pydicom.dcmread(path))


def check_roi(path: Path, segment: str) -> None:
    """The property for ROI files: a binary mask, or a MibgkitError naming the file."""
    try:
        mask = read_roi(path, segment=segment)
    except MibgkitError as exc:
        assert str(path) in str(exc), str(exc)
        return
    assert mask.GetPixelID() == sitk.sitkUInt8
    assert set(np.unique(sitk.GetArrayViewFromImage(mask))) <= {0, 1}


@FUZZ
@given(where=st.sampled_from(["top", "segment", "frame", "position", "identification", "shared", "orientation",
                              "measures"]),
       segment=st.sampled_from(["tumour", "other"]), data=st.data())
def test_seg_header_mutations(seg_base, where, segment, data):
    ds = copy.deepcopy(seg_base["dataset"])
    n = int(ds.NumberOfFrames)
    frame = ds.PerFrameFunctionalGroupsSequence[data.draw(st.integers(0, n - 1), label="frame")]
    shared = ds.SharedFunctionalGroupsSequence[0]
    targets = {
        "top": (ds, SEG_TOP),
        "segment": (ds.SegmentSequence[data.draw(st.integers(0, 1), label="segment item")], SEG_SEGMENT),
        "frame": (frame, SEG_FRAME),
        "position": (frame.PlanePositionSequence[0], SEG_POSITION),
        "identification": (frame.SegmentIdentificationSequence[0], SEG_IDENTIFICATION),
        "shared": (shared, SEG_SHARED),
        "orientation": (shared.PlaneOrientationSequence[0], SEG_ORIENTATION),
        "measures": (shared.PixelMeasuresSequence[0], SEG_MEASURES),
    }
    item, keywords = targets[where]
    keyword, op, value, garbage = data.draw(mutation(keywords))
    apply(item, keyword, op, value, garbage)
    folder, path = _save_mutated(ds, "seg.dcm")
    try:
        check_roi(path, segment)
    finally:
        shutil.rmtree(folder, ignore_errors=True)

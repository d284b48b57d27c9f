"""Write synthetic volumes as DICOM files that look like a SPECT/CT scanner's export.

Two writers cover what a Siemens Symbia T16 SPECT/CT sends to PACS:

- :func:`write_nm_multiframe` — one NM Image Storage file holding a reconstructed SPECT volume
  (``ImageType`` ``RECON TOMO``), geometry in the Detector Information Sequence, as the NM IOD requires;
- :func:`write_ct_series` — a folder of single-frame CT Image Storage files, one per slice.

:func:`write_nm_slices` writes the same SPECT volume as single-frame NM files, the form some
workstations export; readers must give the same image for both.

Geometry conventions (all writers)
----------------------------------
Arrays are in numpy order ``(z, y, x)`` = (slice, row, column). ``spacing`` and ``origin`` are in
SimpleITK order ``(x, y, z)``: column spacing, row spacing, slice spacing in mm, and the LPS position
(mm) of the centre of voxel ``array[0, 0, 0]``. ``direction`` is SimpleITK's direction matrix: its
columns are the LPS unit vectors of the x (along a row), y (down a column) and z (slice) axes; 9 values
row-major or a 3 × 3 array. It must be orthonormal; it may be left-handed (the NM file then carries a
negative Spacing Between Slices, which the standard allows).

Determinism
-----------
Every UID is derived from the identity and series content with
:func:`pydicom.uid.generate_uid` (``entropy_srcs``), and no date or time is taken from the clock, so
writing the same inputs twice gives byte-identical files.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataelem import DataElement
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import correct_ambiguous_vr, write_data_element, write_file_meta_info
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import Tag
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    NuclearMedicineImageStorage,
    generate_uid,
)
from pydicom.valuerep import DS

__all__ = ["write_nm_multiframe", "write_nm_slices", "write_ct_series"]

#: Half-life of iodine-123 in seconds (13.2232 h).
I123_HALF_LIFE_S = 47603.5

#: Identity attributes every file carries (DICOM type 2: present, possibly empty).
_IDENTITY_DEFAULTS: dict[str, object] = {
    "PatientName": "",
    "PatientID": "",
    "PatientBirthDate": "",
    "PatientSex": "",
    "StudyDate": "",
    "StudyTime": "",
    "AccessionNumber": "",
    "ReferringPhysicianName": "",
    "StudyID": "",
}


# --------------------------------------------------------------------------------------------
# public writers
# --------------------------------------------------------------------------------------------


def write_nm_multiframe(
    array_zyx,
    path,
    *,
    spacing: Sequence[float],
    origin: Sequence[float],
    direction=None,
    identity: Mapping[str, object],
    series: Mapping[str, object] | None = None,
) -> Path:
    """Write a reconstructed SPECT volume as one NM Image Storage multi-frame file.

    Parameters
    ----------
    array_zyx : array_like, shape (nz, ny, nx)
        Reconstructed counts, one frame per slice. Integer values in ``0..65535`` are stored as they
        are (uint16, no rescale, as scanners do); anything else (fractional or negative values) is
        stored as uint16 with ``RescaleSlope``/``RescaleIntercept`` so that
        ``value = stored * slope + intercept`` to within half a slope step.
    path : str or os.PathLike
        Output file; parent folders are created.
    spacing : sequence of 3 float
        ``(sx, sy, sz)`` in mm: column spacing, row spacing, slice spacing (all > 0).
    origin : sequence of 3 float
        LPS position in mm of the centre of voxel ``[0, 0, 0]``.
    direction : sequence of 9 float or (3, 3) array, optional
        SimpleITK direction matrix (columns = axis directions in LPS). Default identity.
    identity : mapping
        Patient and study attributes by DICOM keyword (``PatientName``, ``PatientID``,
        ``PatientBirthDate``, ``PatientSex``, ``AccessionNumber``, ``InstitutionName``, ``StudyDate``,
        ``StudyTime``, ``StudyInstanceUID``, ...). Missing type-2 attributes are written empty; a missing
        ``StudyInstanceUID`` is derived from the identity.
    series : mapping, optional
        Series attributes and overrides by DICOM keyword (``SeriesNumber``, ``SeriesDescription``,
        ``SeriesInstanceUID``, ``FrameOfReferenceUID``, ``RadionuclideTotalDose`` in MBq, ...).
        Keywords that are not top-level attributes of the file are set on the top level.

    Returns
    -------
    pathlib.Path
        The file written.

    Notes
    -----
    The file follows the NM Image IOD for ``RECON TOMO``: Image Position and Orientation (Patient)
    live in the first (only) item of the Detector Information Sequence; frames are ordered by the Slice
    Vector (``FrameIncrementPointer`` = (0054,0080)), slice ``k`` (1-based) lying at
    ``IPP + (k - 1) * SpacingBetweenSlices * n`` with ``n = row cosines × column cosines``. A
    left-handed ``direction`` is written with a negative Spacing Between Slices (DICOM PS3.3 C.8.4.15).
    """
    arr = _as_volume(array_zyx)
    sx, sy, sz = _check_spacing(spacing)
    org = _vector3(origin, "origin")
    rot = _direction_matrix(direction)
    normal = np.cross(rot[:, 0], rot[:, 1])
    handed = 1.0 if float(normal @ rot[:, 2]) > 0 else -1.0
    series = dict(series or {})

    pixels, slope, intercept = _encode_counts(arr)
    nz, ny, nx = arr.shape

    ds = _base_dataset(identity, series, modality="NM", sop_class=NuclearMedicineImageStorage,
                       n_instance=1, seed_extra=["multiframe", str(arr.shape)])
    ds.ImageType = ["ORIGINAL", "PRIMARY", "RECON TOMO", "EMISSION"]
    _set_image_pixel(ds, nx, ny, bits_stored=16, signed=False)
    ds.NumberOfFrames = nz
    ds.PixelSpacing = [_ds(sy), _ds(sx)]
    ds.SliceThickness = _ds(sz)
    ds.SpacingBetweenSlices = _ds(handed * sz)
    if slope is not None:
        ds.RescaleSlope = slope
        ds.RescaleIntercept = intercept
        ds.RescaleType = "US"
    _set_nm_modules(ds, ipp=org, iop=_iop(rot), n_slices=nz, series=series,
                    slice_vector=list(range(1, nz + 1)), diameter=max(nx * sx, ny * sy))
    ds.PixelData = pixels.tobytes()
    _apply_overrides(ds, series, skip=_NM_SERIES_KEYS)
    return _save(ds, Path(path))


def write_nm_slices(
    array_zyx,
    folder,
    *,
    spacing: Sequence[float],
    origin: Sequence[float],
    direction=None,
    identity: Mapping[str, object],
    series: Mapping[str, object] | None = None,
) -> Path:
    """Write a SPECT volume as single-frame NM files, one per slice (a workstation-style export).

    Each file is an NM Image Storage instance with one frame whose Image Position and Orientation
    (Patient) appear both at the top level and in the Detector Information Sequence. Counts are encoded
    as in :func:`write_nm_multiframe`, with one slope for the whole volume.

    Parameters
    ----------
    array_zyx, spacing, origin, direction, identity, series
        As for :func:`write_nm_multiframe`.
    folder : str or os.PathLike
        Output folder (created); files are named ``NM000001.dcm``, ``NM000002.dcm``, ...

    Returns
    -------
    pathlib.Path
        The folder.
    """
    arr = _as_volume(array_zyx)
    sx, sy, sz = _check_spacing(spacing)
    org = _vector3(origin, "origin")
    rot = _direction_matrix(direction)
    series = dict(series or {})
    series.setdefault("SeriesDescription", "SPECT MIBG Flash3D AC slices")
    pixels, slope, intercept = _encode_counts(arr)
    nz, ny, nx = arr.shape
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(nz):
        ipp = org + k * sz * rot[:, 2]
        ds = _base_dataset(identity, series, modality="NM", sop_class=NuclearMedicineImageStorage,
                           n_instance=k + 1, seed_extra=["slices", str(arr.shape)])
        ds.ImageType = ["DERIVED", "SECONDARY", "RECON TOMO", "EMISSION"]
        _set_image_pixel(ds, nx, ny, bits_stored=16, signed=False)
        ds.NumberOfFrames = 1
        ds.PixelSpacing = [_ds(sy), _ds(sx)]
        ds.SliceThickness = _ds(sz)
        ds.SpacingBetweenSlices = _ds(sz)
        ds.ImagePositionPatient = [_ds(v) for v in ipp]
        ds.ImageOrientationPatient = _iop(rot)
        ds.SliceLocation = _ds(float(ipp @ np.cross(rot[:, 0], rot[:, 1])))
        if slope is not None:
            ds.RescaleSlope = slope
            ds.RescaleIntercept = intercept
            ds.RescaleType = "US"
        _set_nm_modules(ds, ipp=ipp, iop=_iop(rot), n_slices=1, series=series, slice_vector=[1],
                        diameter=max(nx * sx, ny * sy))
        ds.PixelData = pixels[k].tobytes()
        _apply_overrides(ds, series, skip=_NM_SERIES_KEYS)
        _save(ds, folder / f"NM{k + 1:06d}.dcm")
    return folder


def write_ct_series(
    array_zyx,
    folder,
    *,
    spacing: Sequence[float],
    origin: Sequence[float],
    direction=None,
    identity: Mapping[str, object],
    series: Mapping[str, object] | None = None,
) -> Path:
    """Write a CT volume in Hounsfield units as a folder of single-frame CT Image Storage files.

    Parameters
    ----------
    array_zyx : array_like, shape (nz, ny, nx)
        CT numbers in HU; rounded to integers. Values in ``-1024..3071`` are stored as Siemens does
        (unsigned, 12 bits stored, ``RescaleIntercept`` -1024); wider ranges within int16 are stored as
        signed 16-bit with intercept 0.
    folder : str or os.PathLike
        Output folder (created); files are named ``CT000001.dcm``, ... in slice order.
    spacing, origin, direction, identity, series
        As for :func:`write_nm_multiframe` (``spacing[2]`` is the slice interval; each file's
        Image Position (Patient) is ``origin + k * spacing[2] * direction[:, 2]``).

    Returns
    -------
    pathlib.Path
        The folder.
    """
    arr = _as_volume(array_zyx)
    sx, sy, sz = _check_spacing(spacing)
    org = _vector3(origin, "origin")
    rot = _direction_matrix(direction)
    series = dict(series or {})
    hu = np.rint(arr).astype(np.int64)
    lo, hi = int(hu.min()), int(hu.max())
    if lo >= -1024 and hi <= 3071:
        pixels, signed, intercept, bits = (hu + 1024).astype(np.uint16), False, -1024, 12
    elif lo >= -32768 and hi <= 32767:
        pixels, signed, intercept, bits = hu.astype(np.int16), True, 0, 16
    else:
        raise ValueError(f"CT values {lo}..{hi} HU do not fit 16 bits")
    nz, ny, nx = arr.shape
    normal = np.cross(rot[:, 0], rot[:, 1])
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # The attributes shared by the series are encoded once; each file only re-encodes the few
    # that change from slice to slice (profiling: encoding every attribute per file dominated).
    ds = _base_dataset(identity, series, modality="CT", sop_class=CTImageStorage,
                       n_instance=1, seed_extra=["ct", str(arr.shape)])
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "CT_SOM5 SPI"]
    _set_image_pixel(ds, nx, ny, bits_stored=bits, signed=signed)
    ds.PixelSpacing = [_ds(sy), _ds(sx)]
    ds.SliceThickness = _ds(sz)
    ds.ImagePositionPatient = [_ds(v) for v in org]
    ds.ImageOrientationPatient = _iop(rot)
    ds.SliceLocation = _ds(float(org @ normal))
    ds.PatientPosition = "HFS"
    ds.KVP = "130"
    ds.XRayTubeCurrent = 30
    ds.Exposure = 17
    ds.ConvolutionKernel = "B08s"
    ds.DataCollectionDiameter = "500"
    ds.ReconstructionDiameter = _ds(max(nx * sx, ny * sy))
    ds.GantryDetectorTilt = "0"
    ds.TableHeight = "150"
    ds.RotationDirection = "CW"
    ds.RescaleIntercept = str(intercept)
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    ds.WindowCenter = "40"
    ds.WindowWidth = "400"
    ds.PixelData = pixels[0].tobytes()
    _apply_overrides(ds, series, skip=_CT_SERIES_KEYS)
    encoder = _SeriesEncoder(ds, _CT_PER_INSTANCE)
    series_uid = str(ds.SeriesInstanceUID)
    for k in range(nz):
        ipp = org + k * sz * rot[:, 2]
        encoder.save(folder / f"CT{k + 1:06d}.dcm", {
            "SOPInstanceUID": generate_uid(entropy_srcs=["sop", series_uid, str(k + 1)]),
            "InstanceNumber": k + 1,
            "ImagePositionPatient": [_ds(v) for v in ipp],
            "SliceLocation": _ds(float(ipp @ normal)),
            "PixelData": pixels[k].tobytes(),
        })
    return folder


# --------------------------------------------------------------------------------------------
# dataset assembly
# --------------------------------------------------------------------------------------------

_NM_SERIES_KEYS = {"RadionuclideTotalDose", "RadiopharmaceuticalStartTime", "Radiopharmaceutical"}
_CT_SERIES_KEYS: set[str] = set()


def _base_dataset(identity, series, *, modality, sop_class, n_instance, seed_extra) -> Dataset:
    """Patient, study, series, equipment and SOP common attributes with deterministic UIDs."""
    ident = {**_IDENTITY_DEFAULTS, **dict(identity)}
    seed = [str(ident.get(k, "")) for k in ("PatientID", "PatientName", "PatientBirthDate",
                                            "StudyDate", "StudyTime", "AccessionNumber")]
    study_uid = str(ident.get("StudyInstanceUID") or generate_uid(entropy_srcs=["study", *seed]))
    series_number = int(series.get("SeriesNumber", 3 if modality == "NM" else 2))
    description = str(series.get("SeriesDescription",
                                 "SPECT MIBG Flash3D AC" if modality == "NM" else "CT LowDose 5.0 B08s"))
    series_uid = str(series.get("SeriesInstanceUID") or generate_uid(
        entropy_srcs=["series", study_uid, modality, str(series_number), description, *seed_extra]))
    for_uid = str(series.get("FrameOfReferenceUID") or generate_uid(entropy_srcs=["for", study_uid]))
    sop_uid = generate_uid(entropy_srcs=["sop", series_uid, str(n_instance)])

    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    study_date = str(ident.get("StudyDate", ""))
    study_time = str(ident.get("StudyTime", ""))
    ds.StudyDate = study_date
    ds.SeriesDate = str(series.get("SeriesDate", study_date))
    ds.AcquisitionDate = ds.SeriesDate
    ds.ContentDate = ds.SeriesDate
    ds.StudyTime = study_time
    ds.SeriesTime = str(series.get("SeriesTime", study_time))
    ds.AcquisitionTime = ds.SeriesTime
    ds.ContentTime = ds.SeriesTime
    ds.Modality = modality
    ds.Manufacturer = "SIEMENS"
    ds.ManufacturerModelName = "Symbia T16"
    ds.SoftwareVersions = "syngo MI.SPECT VB20A"
    ds.StationName = "SYMBIAT16"
    ds.DeviceSerialNumber = "1234"
    ds.InstitutionName = ""
    ds.StudyDescription = "NM SPECT-CT MIBG"
    ds.SeriesDescription = description
    ds.BodyPartExamined = "ABDOMEN" if modality == "CT" else ""
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = for_uid
    ds.PositionReferenceIndicator = ""
    ds.SeriesNumber = series_number
    ds.AcquisitionNumber = 1
    ds.InstanceNumber = n_instance
    ds.PatientOrientation = ""
    ds.Laterality = ""
    ds.BurnedInAnnotation = "NO"
    _apply_overrides(ds, ident, skip=set())
    return ds


def _set_image_pixel(ds: Dataset, nx: int, ny: int, *, bits_stored: int, signed: bool) -> None:
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ny
    ds.Columns = nx
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if signed else 0


def _set_nm_modules(ds: Dataset, *, ipp, iop, n_slices, series, slice_vector, diameter) -> None:
    """NM multi-frame, image, isotope, detector, TOMO acquisition and reconstruction modules."""
    ds.FrameIncrementPointer = pydicom.tag.Tag("SliceVector")
    ds.SliceVector = slice_vector
    ds.NumberOfSlices = n_slices
    ds.NumberOfRotations = 1
    ds.NumberOfEnergyWindows = 1
    ds.NumberOfDetectors = 1
    ds.CountsAccumulated = None
    ds.ActualFrameDuration = 25000
    ds.CorrectedImage = ["UNIF", "COR", "ATTN", "SCAT", "DECY"]
    ds.DecayCorrection = "START"

    window = Dataset()
    window.EnergyWindowName = "I123"
    rng = Dataset()
    rng.EnergyWindowLowerLimit = "143.1"
    rng.EnergyWindowUpperLimit = "174.9"
    window.EnergyWindowRangeSequence = DicomSequence([rng])
    ds.EnergyWindowInformationSequence = DicomSequence([window])

    pharm = Dataset()
    pharm.Radiopharmaceutical = str(series.get("Radiopharmaceutical", "Iobenguane I-123 (MIBG)"))
    pharm.RadiopharmaceuticalRoute = "Intravenous route"
    pharm.RadiopharmaceuticalStartTime = str(series.get("RadiopharmaceuticalStartTime", ""))
    pharm.RadionuclideTotalDose = _ds(float(series.get("RadionuclideTotalDose", 185.0)))
    pharm.RadionuclideHalfLife = _ds(I123_HALF_LIFE_S)
    pharm.RadionuclideCodeSequence = DicomSequence([])
    ds.RadiopharmaceuticalInformationSequence = DicomSequence([pharm])

    det = Dataset()
    det.CollimatorGridName = "LEHR"
    det.CollimatorType = "PARA"
    det.FieldOfViewShape = "RECTANGLE"
    det.FieldOfViewDimensions = [533, 387]
    det.FocalDistance = 0
    det.ZoomFactor = ["1.6", "1.6"]
    det.CenterOfRotationOffset = "0"
    det.ImagePositionPatient = [_ds(v) for v in ipp]
    det.ImageOrientationPatient = list(iop)
    ds.DetectorInformationSequence = DicomSequence([det])

    rot = Dataset()
    rot.StartAngle = "0"
    rot.AngularStep = "6"
    rot.RotationDirection = "CW"
    rot.ScanArc = "180"
    rot.ActualFrameDuration = 25000
    rot.NumberOfFramesInRotation = 30
    rot.TableTraverse = "0"
    rot.TableHeight = "150"
    ds.RotationInformationSequence = DicomSequence([rot])
    ds.TypeOfDetectorMotion = "STEP AND SHOOT"

    ds.ReconstructionDiameter = _ds(diameter)
    ds.ConvolutionKernel = "Flash3D 8i4s"

    orient = Dataset()
    orient.CodeValue = "F-10450"
    orient.CodingSchemeDesignator = "SRT"
    orient.CodeMeaning = "recumbent"
    modifier = Dataset()
    modifier.CodeValue = "F-10340"
    modifier.CodingSchemeDesignator = "SRT"
    modifier.CodeMeaning = "supine"
    orient.PatientOrientationModifierCodeSequence = DicomSequence([modifier])
    ds.PatientOrientationCodeSequence = DicomSequence([orient])
    gantry = Dataset()
    gantry.CodeValue = "F-10470"
    gantry.CodingSchemeDesignator = "SRT"
    gantry.CodeMeaning = "headfirst"
    ds.PatientGantryRelationshipCodeSequence = DicomSequence([gantry])


def _apply_overrides(ds: Dataset, values: Mapping[str, object], *, skip: set[str]) -> None:
    """Set every ``keyword: value`` on ``ds``; unknown keywords are an error."""
    for key, value in values.items():
        if key in skip:
            continue
        if tag_for_keyword(key) is None:
            raise ValueError(f"{key!r} is not a DICOM keyword")
        if dictionary_VR(key) == "SQ":
            raise ValueError(f"{key!r} is a sequence; set it after writing if needed")
        setattr(ds, key, value)


#: CT attributes that differ between the files of one series.
_CT_PER_INSTANCE = ("SOPInstanceUID", "InstanceNumber", "ImagePositionPatient", "SliceLocation", "PixelData")


class _SeriesEncoder:
    """Files of one series from a template: the shared attributes are encoded once, and each
    file re-encodes only ``per_instance`` (same bytes as writing the whole dataset each time)."""

    def __init__(self, template: Dataset, per_instance: Sequence[str]):
        template = correct_ambiguous_vr(template, True)
        self._encoding = template.get("SpecificCharacterSet", "iso8859")
        self._cut = sorted(Tag(tag_for_keyword(k)) for k in per_instance)
        self._vr = {tag: template[tag].VR for tag in self._cut}
        self._sop_class = template.SOPClassUID
        parts = [_buffer() for _ in range(len(self._cut) + 1)]
        for tag in sorted(template.keys()):
            if tag in self._vr or (tag.element == 0 and tag.group > 6):
                continue
            write_data_element(parts[bisect.bisect(self._cut, tag)], template[tag], self._encoding)
        self._parts = [p.getvalue() for p in parts]

    def save(self, path: Path, values: Mapping[str, object]) -> Path:
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = self._sop_class
        meta.MediaStorageSOPInstanceUID = values["SOPInstanceUID"]
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        fp = _buffer()
        fp.write(b"\0" * 128 + b"DICM")
        write_file_meta_info(fp, meta, enforce_standard=True)
        fp.write(self._parts[0])
        for tag, part in zip(self._cut, self._parts[1:]):
            write_data_element(fp, DataElement(tag, self._vr[tag], values[keyword_for_tag(tag)]), self._encoding)
            fp.write(part)
        path.write_bytes(fp.getvalue())
        return path


def _buffer() -> DicomBytesIO:
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = False
    return fp


def _save(ds: Dataset, path: Path) -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    ds.preamble = b"\0" * 128
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


# --------------------------------------------------------------------------------------------
# geometry and pixel encoding helpers
# --------------------------------------------------------------------------------------------


def _as_volume(array_zyx) -> np.ndarray:
    arr = np.asarray(array_zyx)
    if arr.ndim != 3 or min(arr.shape) < 1:
        raise ValueError(f"expected a 3-D (z, y, x) array, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise ValueError(f"expected a real numeric array, got dtype {arr.dtype}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("array holds NaN or infinite values")
    return arr


def _vector3(values, name: str) -> np.ndarray:
    vec = np.asarray(values, dtype=float).reshape(-1)
    if vec.shape != (3,) or not np.all(np.isfinite(vec)):
        raise ValueError(f"{name} must be 3 finite numbers, got {values!r}")
    return vec


def _check_spacing(spacing) -> tuple[float, float, float]:
    vec = _vector3(spacing, "spacing")
    if np.any(vec <= 0):
        raise ValueError(f"spacing must be positive (mm), got {tuple(vec)}")
    return float(vec[0]), float(vec[1]), float(vec[2])


def _direction_matrix(direction) -> np.ndarray:
    if direction is None:
        return np.eye(3)
    rot = np.asarray(direction, dtype=float).reshape(3, 3)
    if not np.allclose(rot.T @ rot, np.eye(3), atol=1e-6):
        raise ValueError("direction must be an orthonormal 3 × 3 matrix")
    return rot


def _iop(rot: np.ndarray) -> list[DS]:
    """Image Orientation (Patient): row direction (x axis) then column direction (y axis)."""
    return [_ds(v) for v in (*rot[:, 0], *rot[:, 1])]


def _ds(value: float) -> DS:
    value = float(value)
    if value == 0:
        value = 0.0  # no "-0"
    return DS(value, auto_format=True)


def _encode_counts(arr: np.ndarray) -> tuple[np.ndarray, DS | None, DS | None]:
    """Counts → uint16 stored values, with (slope, intercept) when a rescale is needed."""
    lo, hi = float(arr.min()), float(arr.max())
    integral = np.issubdtype(arr.dtype, np.integer) or bool(np.all(arr == np.rint(arr)))
    if integral and lo >= 0 and hi <= 65535:
        return arr.astype(np.uint16), None, None
    intercept = _ds(min(lo, 0.0))
    span = hi - float(intercept)
    # a hair above span / 65535 so that rounding the slope to a decimal string cannot clip the max
    slope = _ds(span / 65535.0 * (1 + 1e-9) if span > 0 else 1.0)
    stored = np.rint((arr.astype(np.float64) - float(intercept)) / float(slope))
    return np.clip(stored, 0, 65535).astype(np.uint16), slope, intercept

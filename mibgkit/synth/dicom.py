"""Write synthetic volumes as DICOM files: what every writer shares, and the CT series.

- :func:`write_ct_series` writes a folder of single-frame CT Image Storage files, one per slice;
- the parts every writer shares live here too: patient, study, series and SOP attributes with
  deterministic UIDs, keyword overrides, the Image Pixel Module, the file meta information, the
  transfer syntaxes and their encoding, and the checks and DICOM encodings of the geometry.

The NM (SPECT) files in their vendor layouts are written by :mod:`mibgkit.synth.nm_layouts`
(:func:`~mibgkit.synth.nm_layouts.write_spect`, :data:`~mibgkit.synth.nm_layouts.VENDORS`) with these parts.

Compression (``compression=``)
------------------------------
``"none"`` (Explicit VR Little Endian, the writers' default), ``"deflate"`` (Deflated Explicit VR Little
Endian, PS3.5 A.5: the dataset after the file meta information compressed to a raw deflate stream at
the level :data:`DEFLATE_LEVEL` gives its modality, by ISA-L (``isal``, Intel's deflate, about four times
faster than zlib here for the same size); the synthetic cohort's default, read by pydicom, GDCM/SimpleITK
and highdicom),
or ``"rle"`` (RLE Lossless, PS3.5 G, pydicom's own encoder; not for Float Pixel Data). Both are
lossless and deterministic: the same inputs give the same bytes (with the same ISA-L).

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
from isal import isal_zlib
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import (
    correct_ambiguous_vr,
    write_data_element,
    write_dataset,
    write_file_meta_info,
)
from pydicom.pixels.encoders import RLELosslessEncoder
from pydicom.tag import Tag
from pydicom.uid import (
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    RLELossless,
    generate_uid,
)
from pydicom.valuerep import DS

__all__ = ["COMPRESSIONS", "DEFLATE_LEVEL", "write_ct_series"]

#: Transfer syntax of each ``compression`` choice.
COMPRESSIONS = {"none": ExplicitVRLittleEndian, "deflate": DeflatedExplicitVRLittleEndian, "rle": RLELossless}

#: ISA-L level (0-3) of Deflated Explicit VR Little Endian, by Modality; other modalities level 2. Measured
#: on the synthetic cohort's largest patient, each in the same run: the CT series (noise, which no level
#: compresses much) 4.32 MB in 48 ms at level 3, 4.36 MB in 31 ms at level 2, 4.45 MB in 30 ms at level 1
#: (zlib level 1: 4.30 MB in 112 ms); the NM file (sparse counts) 589 kB in 4.4 ms at level 2, 597 kB in
#: 16 ms at level 3. CT keeps level 3 so that the largest patient stays under 5 MB (4.95; 4.99 at level 2).
DEFLATE_LEVEL = {"CT": 3, "NM": 2}

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

#: Equipment every file names unless its layout says otherwise (Manufacturer, model, software, station):
#: the Siemens Symbia T16 SPECT/CT.
_DEFAULT_EQUIPMENT = ("SIEMENS", "Symbia T16", "syngo MI.SPECT VB20A", "SYMBIAT16")


# --------------------------------------------------------------------------------------------
# the CT writer
# --------------------------------------------------------------------------------------------


def write_ct_series(
    array_zyx,
    folder,
    *,
    spacing: Sequence[float],
    origin: Sequence[float],
    direction=None,
    identity: Mapping[str, object],
    series: Mapping[str, object] | None = None,
    compression: str = "none",
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
        As for :func:`mibgkit.synth.nm_layouts.write_nm_multiframe` (``spacing[2]`` is the slice
        interval; each file's Image Position (Patient) is ``origin + k * spacing[2] * direction[:, 2]``).
    compression : str
        ``"none"`` (default), ``"deflate"`` or ``"rle"`` (module notes).

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
    hu = arr if np.issubdtype(arr.dtype, np.integer) and arr.itemsize <= 2 else np.rint(arr).astype(np.int64)
    lo, hi = int(hu.min()), int(hu.max())
    if lo >= -1024 and hi <= 3071:
        # hu + 1024 as uint16: int16 bits reinterpreted, then + 1024 modulo 2**16 (one pass, no wider copy)
        pixels, signed, intercept, bits = hu.astype(np.int16).view(np.uint16) + np.uint16(1024), False, -1024, 12
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
    encoder = _SeriesEncoder(ds, _CT_PER_INSTANCE, compression)
    series_uid = str(ds.SeriesInstanceUID)
    for k in range(nz):
        ipp = org + k * sz * rot[:, 2]
        encoder.save(folder / f"CT{k + 1:06d}.dcm", {
            "SOPInstanceUID": generate_uid(entropy_srcs=["sop", series_uid, str(k + 1)]),
            "InstanceNumber": k + 1,
            "ImagePositionPatient": [_ds(v) for v in ipp],
            "SliceLocation": _ds(float(ipp @ normal)),
            "PixelData": encoder.pixel_data(pixels[k]),
        })
    return folder



# --------------------------------------------------------------------------------------------
# dataset assembly
# --------------------------------------------------------------------------------------------

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
    _set_equipment(ds, _DEFAULT_EQUIPMENT)
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




def _set_equipment(ds: Dataset, equipment: Sequence[str]) -> None:
    """Manufacturer, model, software versions and station name from a 4-tuple."""
    manufacturer, model, software, station = equipment
    ds.Manufacturer = manufacturer
    ds.ManufacturerModelName = model
    ds.SoftwareVersions = software
    ds.StationName = station


def _set_image_pixel(ds: Dataset, nx: int, ny: int, *, bits_stored: int, signed: bool) -> None:
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ny
    ds.Columns = nx
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if signed else 0



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

    def __init__(self, template: Dataset, per_instance: Sequence[str], compression: str = "none"):
        self._syntax = _transfer_syntax(compression)
        template = correct_ambiguous_vr(template, True)
        self._encoding = template.get("SpecificCharacterSet", "iso8859")
        self._cut = sorted(Tag(tag_for_keyword(k)) for k in per_instance)
        self._vr = {tag: template[tag].VR for tag in self._cut}
        self._pixel_module = {k: template[k].value for k in (
            "Rows", "Columns", "SamplesPerPixel", "BitsAllocated", "BitsStored", "PixelRepresentation",
            "PhotometricInterpretation")}
        if self._syntax == RLELossless:
            self._vr[Tag("PixelData")] = "OB"
        self._sop_class = template.SOPClassUID
        self._modality = str(template.get("Modality", ""))
        self._meta: dict[int, tuple[bytes, bytes]] = {}  # UID length -> file meta around the UID's value
        parts = [_buffer() for _ in range(len(self._cut) + 1)]
        for tag in sorted(template.keys()):
            if tag in self._vr or (tag.element == 0 and tag.group > 6):
                continue
            write_data_element(parts[bisect.bisect(self._cut, tag)], template[tag], self._encoding)
        self._parts = [p.getvalue() for p in parts]

    def pixel_data(self, frame: np.ndarray) -> bytes:
        """One frame's Pixel Data value in the series' transfer syntax (RLE: encapsulated)."""
        if self._syntax != RLELossless:
            return frame.tobytes()
        return encapsulate([_rle_frame(frame, self._pixel_module)])

    def save(self, path: Path, values: Mapping[str, object]) -> Path:
        body = _buffer()
        body.write(self._parts[0])
        for tag, part in zip(self._cut, self._parts[1:]):
            element = DataElement(tag, self._vr[tag], values[keyword_for_tag(tag)],
                                  is_undefined_length=tag == 0x7FE00010 and self._syntax == RLELossless)
            write_data_element(body, element, self._encoding)
            body.write(part)
        meta = self._file_meta(str(values["SOPInstanceUID"]))
        path.write_bytes(meta + _dataset_bytes(body.getvalue(), self._syntax, self._modality))
        return path

    def _file_meta(self, sop_instance: str) -> bytes:
        """Preamble and file meta information of one file: pydicom's encoding, made once per UID length.

        The files of a series differ in their meta information only by the value of Media Storage SOP
        Instance UID (0002,0003), so the bytes around that value are kept from pydicom's encoding of the
        first file with a UID of that (even-padded) length. Encoding the meta information anew took
        0.8 ms a file, 60 ms of a CT series' 140.
        """
        value = sop_instance.encode("ascii")
        value += b"\0" * (len(value) % 2)  # PS3.5 6.2: UI padded with NUL to even length
        if len(value) not in self._meta:
            meta = _file_meta(self._sop_class, sop_instance, self._syntax)
            header = b"\x02\x00\x03\x00UI" + len(value).to_bytes(2, "little")
            at = meta.index(header) + len(header)
            if meta[at:at + len(value)] != value:  # pragma: no cover - pydicom changed its encoding
                raise RuntimeError("file meta information: Media Storage SOP Instance UID not where expected")
            self._meta[len(value)] = (meta[:at], meta[at + len(value):])
        head, tail = self._meta[len(value)]
        return head + value + tail


def _buffer() -> DicomBytesIO:
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = False
    return fp


def _transfer_syntax(compression: str):
    try:
        return COMPRESSIONS[compression]
    except KeyError:
        raise ValueError(f"compression {compression!r}: choose one of {', '.join(COMPRESSIONS)}") from None


def _file_meta(sop_class, sop_instance, syntax) -> bytes:
    """Preamble and file meta information (PS3.10 7.1), encoded by pydicom."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance
    meta.TransferSyntaxUID = syntax
    fp = _buffer()
    fp.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(fp, meta, enforce_standard=True)
    return fp.getvalue()


def _dataset_bytes(body: bytes, syntax, modality: str) -> bytes:
    """The encoded dataset as it follows the file meta information: deflated for the Deflated syntax."""
    if syntax == DeflatedExplicitVRLittleEndian:  # PS3.5 A.5: raw deflate, padded to even length
        level = DEFLATE_LEVEL.get(modality, 2)
        compressor = isal_zlib.compressobj(level, isal_zlib.DEFLATED, -isal_zlib.MAX_WBITS)
        body = compressor.compress(body) + compressor.flush()
        body += b"\0" * (len(body) % 2)
    return body


def _rle_frame(frame: np.ndarray, module: Mapping[str, object]) -> bytes:
    return RLELosslessEncoder.encode(
        np.ascontiguousarray(frame), rows=int(module["Rows"]), columns=int(module["Columns"]),
        samples_per_pixel=int(module["SamplesPerPixel"]), bits_allocated=int(module["BitsAllocated"]),
        bits_stored=int(module["BitsStored"]), pixel_representation=int(module["PixelRepresentation"]),
        photometric_interpretation=str(module["PhotometricInterpretation"]), number_of_frames=1,
        encoding_plugin="pydicom")


def _save(ds: Dataset, path: Path, compression: str = "none") -> Path:
    syntax = _transfer_syntax(compression)
    if syntax == RLELossless:
        if "PixelData" not in ds:
            raise ValueError("RLE Lossless holds integer Pixel Data only; use compression 'deflate' or 'none'")
        module = {k: ds[k].value for k in ("Rows", "Columns", "SamplesPerPixel", "BitsAllocated", "BitsStored",
                                            "PixelRepresentation", "PhotometricInterpretation")}
        dtype = f"{'i' if module['PixelRepresentation'] else 'u'}{module['BitsAllocated'] // 8}"
        frames = np.frombuffer(ds.PixelData, dtype).reshape(int(ds.get("NumberOfFrames") or 1), int(ds.Rows),
                                                            int(ds.Columns))
        ds.PixelData = encapsulate([_rle_frame(f, module) for f in frames])
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
    body = _buffer()
    write_dataset(body, correct_ambiguous_vr(ds, True))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_file_meta(ds.SOPClassUID, ds.SOPInstanceUID, syntax)
                     + _dataset_bytes(body.getvalue(), syntax, str(ds.get("Modality", ""))))
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
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
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




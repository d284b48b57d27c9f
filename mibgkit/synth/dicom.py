"""Write synthetic volumes as DICOM files that look like a SPECT/CT scanner's export.

Three writers cover what a SPECT/CT department sends to PACS:

- :func:`write_nm_multiframe` — one NM Image Storage file holding a reconstructed SPECT volume
  (``ImageType`` ``RECON TOMO``), geometry in the Detector Information Sequence, as the NM IOD requires;
- :func:`write_nm_slices` — the same SPECT volume as single-frame NM files, the form some workstations
  export; readers must give the same image for both;
- :func:`write_ct_series` — a folder of single-frame CT Image Storage files, one per slice.

:func:`write_spect` picks the writer for a vendor layout (below) and is what the synthetic cohort uses.

Vendor layouts (``vendor=``)
----------------------------
Every layout holds the same voxels at the same physical positions and the same values (counts, or for
``quant`` counts × a fixed calibration in Bq/ml), so a patient's features agree across layouts. Each entry
names the public documents the layout follows. Of the vendors' conformance statements only the title
pages and tables of contents could be consulted when this was written (they confirm which NM modules a
product writes, not every attribute's value), so attribute placement rests on the NM IOD and on the
public issue threads cited; what no document settles is marked *guess*.

``siemens`` (default; the synthetic cohort's own form)
    Symbia T16 / syngo MI "Flash3D" reconstruction: one multi-frame NM file, Image Type
    ``ORIGINAL\\PRIMARY\\RECON TOMO\\EMISSION``, Image Position/Orientation (Patient) only in the Detector
    Information Sequence, Slice Vector 1..N, Spacing Between Slices = Slice Thickness, uint16 counts
    without rescale. Follows the NM Image IOD (PS3.3 A.5; C.8.4.10 NM Detector, C.8.4.15 NM
    Reconstruction), whose modules the "Siemens syngo MI Applications 2009A DICOM Conformance
    Statement" lists for NM; the attribute values are a *guess* at a typical export.
``ge``
    Xeleris / Discovery NM-like: multi-frame NM with Image Position/Orientation (Patient) both at the top
    level and in the detector item, a Slice Vector, and a Slice Thickness (twice the slice interval, the
    nominal thickness) that differs from Spacing Between Slices. After the GE Healthcare "NM General
    Purpose 600 Series DICOM Conformance Statement" (DOC0660253), the "Xeleris 3.0/3.1 DICOM Conformance
    Statement" (5357330-1EN) and the "NM Applications DICOM Conformance Statement" (5503462-1EN); that
    the position is written at the top level besides the detector item is a *guess*. A thickness other
    than the spacing is legal and common (D. Clunie, "How thick am I? The sad story of a lonely slice",
    2013, the blog post Slicer issue #7496 cites).
``philips``
    JETStream Workspace / BrightView-like: multi-frame NM, geometry at the top level and in the detector
    item, signed 16-bit stored values with a per-file Rescale Slope (a power of two, so that the counts
    are exact) and Rescale Intercept 0. After the Philips "JETStream Acquisition DICOM Conformance
    Statement" (document 9206-0002, 2007), which lists the NM Image modules; where Philips puts rescale
    in reconstructed NM could not be checked in a public document: *guess*.
``hermes``
    Hermes Medical Solutions (Hybrid Recon) export: a folder of single-frame NM files (Image Type
    ``DERIVED\\SECONDARY\\RECON TOMO\\EMISSION``), Image Position/Orientation (Patient) at the top level and
    in the detector item, each file with its own Rescale Slope (a power of two scaling that slice into the
    16-bit range). No Hermes conformance statement could be consulted (only the HERMES RAPID viewer
    manual is public); the single-frame form and the per-slice scaling are a *guess*.
``quant``
    Quantitative SPECT (as xSPECT Quant or Q.Metrix exports aim to give): the ``siemens`` layout with
    uint16 counts and a Real World Value Mapping Sequence (PS3.3 C.7.6.16-12b) of two items, the first
    ``{counts}`` (slope 1), the second in ``Bq/ml`` (UCUM) with slope :data:`QUANT_BQML_PER_COUNT`; the
    reader takes the Bq/ml item. Where vendors put the mapping is a *guess*.
``float``
    Float Pixel Data (7FE0,0008), 32 bits, no Bits Stored / Pixel Representation / rescale (PS3.3
    C.7.6.3), as conversion and research tools write. The NM IOD proper allows only 8/16-bit integer
    pixels, so this is not a scanner's export (*guess* at what such tools produce).
``reversed``
    The slices stored from the far end: frame 1 is the last slice along the normal and Spacing Between
    Slices is negative (PS3.3 C.8.4.15 defines the sign), as reported for GE reconstructions in
    dcm2niix issue #885 and OHIF issue #4352.

Compression (``compression=``)
------------------------------
``"none"`` (Explicit VR Little Endian, the writers' default), ``"deflate"`` (Deflated Explicit VR Little
Endian, PS3.5 A.5: the dataset after the file meta information compressed by zlib at level
:data:`DEFLATE_LEVEL`; the synthetic cohort's default, read by pydicom, GDCM/SimpleITK and highdicom),
or ``"rle"`` (RLE Lossless, PS3.5 G, pydicom's own encoder; not for Float Pixel Data). Both are
lossless and deterministic: the same inputs give the same bytes (with the same zlib).

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
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pydicom
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
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import Tag
from pydicom.uid import (
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    NuclearMedicineImageStorage,
    RLELossless,
    generate_uid,
)
from pydicom.valuerep import DS

__all__ = ["write_nm_multiframe", "write_nm_slices", "write_ct_series", "write_spect", "VENDORS",
           "COMPRESSIONS", "QUANT_BQML_PER_COUNT", "DEFLATE_LEVEL"]

#: Half-life of iodine-123 in seconds (13.2232 h).
I123_HALF_LIFE_S = 47603.5

#: NM layouts the writers produce (module notes); ``hermes`` is a folder of single-frame files.
VENDORS = ("siemens", "ge", "philips", "hermes", "quant", "float", "reversed")

#: Transfer syntax of each ``compression`` choice.
COMPRESSIONS = {"none": ExplicitVRLittleEndian, "deflate": DeflatedExplicitVRLittleEndian, "rle": RLELossless}

#: zlib level of Deflated Explicit VR Little Endian (3: smaller *and* faster than zlib's default 6 on
#: the synthetic CT; measured 4.19 MB vs 4.27 MB and 0.35 s vs 1.2 s per patient).
DEFLATE_LEVEL = 3

#: Calibration of the ``quant`` layout, Bq/ml per count (a power-of-two fraction, so that Bq/ml values
#: are exact in binary and ratios equal those of the counts).
QUANT_BQML_PER_COUNT = 37.5

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

#: Equipment attributes per vendor layout (Manufacturer, model, software, station).
_EQUIPMENT = {
    "siemens": ("SIEMENS", "Symbia T16", "syngo MI.SPECT VB20A", "SYMBIAT16"),
    "ge": ("GE MEDICAL SYSTEMS", "Discovery NM/CT 670", "Xeleris 4.0", "XELERIS4"),
    "philips": ("Philips Medical Systems", "BrightView XCT", "JETStream Workspace 3.0", "JSWS01"),
    "hermes": ("HERMES MEDICAL SOLUTIONS", "Hybrid Recon", "HybridRecon 3.0", "HERMES01"),
}


# --------------------------------------------------------------------------------------------
# public writers
# --------------------------------------------------------------------------------------------


def write_spect(array_zyx, folder, *, spacing: Sequence[float], origin: Sequence[float], direction=None,
                identity: Mapping[str, object], series: Mapping[str, object] | None = None,
                vendor: str = "siemens", compression: str = "none") -> Path:
    """Write a SPECT volume in a vendor layout into ``folder``: ``spect.dcm``, or ``spect/`` (hermes).

    Parameters are those of :func:`write_nm_multiframe`. Returns the file or folder written.
    """
    if vendor == "hermes":
        return write_nm_slices(array_zyx, Path(folder) / "spect", spacing=spacing, origin=origin,
                               direction=direction, identity=identity, series=series, vendor=vendor,
                               compression=compression)
    return write_nm_multiframe(array_zyx, Path(folder) / "spect.dcm", spacing=spacing, origin=origin,
                               direction=direction, identity=identity, series=series, vendor=vendor,
                               compression=compression)


def write_nm_multiframe(
    array_zyx,
    path,
    *,
    spacing: Sequence[float],
    origin: Sequence[float],
    direction=None,
    identity: Mapping[str, object],
    series: Mapping[str, object] | None = None,
    vendor: str = "siemens",
    compression: str = "none",
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
    vendor : str
        Layout, one of :data:`VENDORS` except ``hermes`` (module notes). Default ``siemens``.
    compression : str
        ``"none"``, ``"deflate"`` or ``"rle"`` (module notes). Default ``"none"``.

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
    if vendor not in VENDORS or vendor == "hermes":
        raise ValueError(f"vendor {vendor!r} is not a multi-frame layout; choose one of "
                         f"{', '.join(v for v in VENDORS if v != 'hermes')} (hermes: write_nm_slices)")
    arr = _as_volume(array_zyx)
    sx, sy, sz = _check_spacing(spacing)
    org = _vector3(origin, "origin")
    rot = _direction_matrix(direction)
    if vendor == "reversed":  # frame 1 = the far end; the z axis flips, so the file is left-handed
        org = org + (arr.shape[0] - 1) * sz * rot[:, 2]
        arr, rot = arr[::-1], rot * np.array([1.0, 1.0, -1.0])
    normal = np.cross(rot[:, 0], rot[:, 1])
    handed = 1.0 if float(normal @ rot[:, 2]) > 0 else -1.0
    series = dict(series or {})
    nz, ny, nx = arr.shape

    seed_extra = ["multiframe", str(arr.shape)] + ([vendor] if vendor != "siemens" else [])
    ds = _base_dataset(identity, series, modality="NM", sop_class=NuclearMedicineImageStorage,
                       n_instance=1, seed_extra=seed_extra)
    _set_equipment(ds, vendor)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "RECON TOMO", "EMISSION"]
    ds.NumberOfFrames = nz
    _set_nm_pixels(ds, arr, vendor)
    ds.PixelSpacing = [_ds(sy), _ds(sx)]
    ds.SliceThickness = _ds(2 * sz if vendor == "ge" else sz)
    ds.SpacingBetweenSlices = _ds(handed * sz)
    _set_nm_modules(ds, ipp=org, iop=_iop(rot), n_slices=nz, series=series,
                    slice_vector=list(range(1, nz + 1)), diameter=max(nx * sx, ny * sy))
    if vendor in ("ge", "philips"):  # Image Plane attributes also at the top level
        ds.ImagePositionPatient = [_ds(v) for v in org]
        ds.ImageOrientationPatient = _iop(rot)
    _apply_overrides(ds, series, skip=_NM_SERIES_KEYS)
    return _save(ds, Path(path), compression)


def write_nm_slices(
    array_zyx,
    folder,
    *,
    spacing: Sequence[float],
    origin: Sequence[float],
    direction=None,
    identity: Mapping[str, object],
    series: Mapping[str, object] | None = None,
    vendor: str = "siemens",
    compression: str = "none",
) -> Path:
    """Write a SPECT volume as single-frame NM files, one per slice (a workstation-style export).

    Each file is an NM Image Storage instance with one frame whose Image Position and Orientation
    (Patient) appear both at the top level and in the Detector Information Sequence. Counts are encoded
    as in :func:`write_nm_multiframe`, with one slope for the whole volume; with ``vendor="hermes"``
    integer counts get a per-file Rescale Slope (a power of two filling the 16-bit range of that slice).

    Parameters
    ----------
    array_zyx, spacing, origin, direction, identity, series, compression
        As for :func:`write_nm_multiframe`.
    folder : str or os.PathLike
        Output folder (created); files are named ``NM000001.dcm``, ``NM000002.dcm``, ...
    vendor : str
        ``"siemens"`` (default) or ``"hermes"`` (equipment and per-slice rescale; module notes).

    Returns
    -------
    pathlib.Path
        The folder.
    """
    if vendor not in ("siemens", "hermes"):
        raise ValueError(f"vendor {vendor!r}: single-frame NM files are written as 'siemens' or 'hermes'")
    arr = _as_volume(array_zyx)
    sx, sy, sz = _check_spacing(spacing)
    org = _vector3(origin, "origin")
    rot = _direction_matrix(direction)
    series = dict(series or {})
    series.setdefault("SeriesDescription", "SPECT MIBG Flash3D AC slices" if vendor == "siemens"
                      else "SPECT MIBG HybridRecon OSEM")
    pixels, slope, intercept = _encode_counts(arr)
    per_slice = vendor == "hermes" and slope is None
    nz, ny, nx = arr.shape
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    seed_extra = ["slices", str(arr.shape)] + ([vendor] if vendor != "siemens" else [])
    for k in range(nz):
        ipp = org + k * sz * rot[:, 2]
        ds = _base_dataset(identity, series, modality="NM", sop_class=NuclearMedicineImageStorage,
                           n_instance=k + 1, seed_extra=seed_extra)
        _set_equipment(ds, vendor)
        ds.ImageType = ["DERIVED", "SECONDARY", "RECON TOMO", "EMISSION"]
        _set_image_pixel(ds, nx, ny, bits_stored=16, signed=False)
        ds.NumberOfFrames = 1
        ds.PixelSpacing = [_ds(sy), _ds(sx)]
        ds.SliceThickness = _ds(sz)
        ds.SpacingBetweenSlices = _ds(sz)
        ds.ImagePositionPatient = [_ds(v) for v in ipp]
        ds.ImageOrientationPatient = _iop(rot)
        ds.SliceLocation = _ds(float(ipp @ np.cross(rot[:, 0], rot[:, 1])))
        frame = pixels[k]
        if per_slice:
            frame, shift = _scaled_to_range(frame, 65535)
            ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = _power_of_two(-shift), "0", "US"
        elif slope is not None:
            ds.RescaleSlope = slope
            ds.RescaleIntercept = intercept
            ds.RescaleType = "US"
        _set_nm_modules(ds, ipp=ipp, iop=_iop(rot), n_slices=1, series=series, slice_vector=[1],
                        diameter=max(nx * sx, ny * sy))
        ds.PixelData = frame.tobytes()
        _apply_overrides(ds, series, skip=_NM_SERIES_KEYS)
        _save(ds, folder / f"NM{k + 1:06d}.dcm", compression)
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
        As for :func:`write_nm_multiframe` (``spacing[2]`` is the slice interval; each file's
        Image Position (Patient) is ``origin + k * spacing[2] * direction[:, 2]``).
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


def _set_equipment(ds: Dataset, vendor: str) -> None:
    manufacturer, model, software, station = _EQUIPMENT.get(vendor, _EQUIPMENT["siemens"])
    ds.Manufacturer = manufacturer
    ds.ManufacturerModelName = model
    ds.SoftwareVersions = software
    ds.StationName = station


def _set_nm_pixels(ds: Dataset, arr: np.ndarray, vendor: str) -> None:
    """Image Pixel Module, Pixel Data and the value mapping of one NM multi-frame file."""
    ny, nx = arr.shape[1:]
    if vendor == "float":  # Float Pixel Data: no Bits Stored, High Bit, Pixel Representation (C.7.6.3)
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = ny
        ds.Columns = nx
        ds.BitsAllocated = 32
        ds.FloatPixelData = np.ascontiguousarray(arr, dtype="<f4").tobytes()
        return
    pixels, slope, intercept = _encode_counts(arr)
    signed = False
    if vendor == "philips" and slope is None:
        if int(pixels.max(initial=0)) <= 32767:  # signed 16 bit, scaled by a power of two
            scaled, shift = _scaled_to_range(pixels, 32767)
            pixels, signed = scaled.astype(np.int16), True
            slope, intercept = _power_of_two(-shift), DS("0")
        else:
            slope, intercept = DS("1"), DS("0")
    _set_image_pixel(ds, nx, ny, bits_stored=16, signed=signed)
    if slope is not None:
        ds.RescaleSlope = slope
        ds.RescaleIntercept = intercept
        ds.RescaleType = "US"
    if vendor == "quant":
        s, b = float(slope or 1.0), float(intercept or 0.0)
        ds.RealWorldValueMappingSequence = DicomSequence([
            _rwv_item(s, b, "{counts}", "Counts", "counts"),
            _rwv_item(s * QUANT_BQML_PER_COUNT, b * QUANT_BQML_PER_COUNT, "Bq/ml", "Becquerels/milliliter",
                      "BQML"),
        ])
    ds.PixelData = pixels.tobytes()


def _rwv_item(slope: float, intercept: float, code: str, meaning: str, lut_label: str) -> Dataset:
    """One Real World Value Mapping item (PS3.3 C.7.6.16-12b) for 16-bit unsigned stored values."""
    item = Dataset()
    item.RealWorldValueFirstValueMapped = 0
    item.RealWorldValueLastValueMapped = 65535
    item.RealWorldValueIntercept = float(intercept)
    item.RealWorldValueSlope = float(slope)
    item.LUTExplanation = meaning
    item.LUTLabel = lut_label
    unit = Dataset()
    unit.CodeValue = code
    unit.CodingSchemeDesignator = "UCUM"
    unit.CodeMeaning = meaning
    item.MeasurementUnitsCodeSequence = DicomSequence([unit])
    return item


def _scaled_to_range(frame: np.ndarray, limit: int) -> tuple[np.ndarray, int]:
    """Integer values × 2**shift with the largest shift (0..12) that keeps them within ``limit``."""
    top = int(frame.max(initial=0))
    shift = 0
    while shift < 12 and top and top << (shift + 1) <= limit:
        shift += 1
    return (frame.astype(np.int64) << shift).astype(frame.dtype), shift


def _power_of_two(exponent: int) -> DS:
    """2**exponent as a DS whose decimal text is exact (exponent ≥ -12 fits 16 characters)."""
    return DS(repr(2.0 ** exponent) if exponent < 0 else str(2 ** exponent))


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
        path.write_bytes(_file_bytes(self._sop_class, values["SOPInstanceUID"], body.getvalue(), self._syntax))
        return path


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


def _file_bytes(sop_class, sop_instance, body: bytes, syntax) -> bytes:
    """Preamble, file meta information (PS3.10 7.1) and the encoded dataset, deflated if asked."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance
    meta.TransferSyntaxUID = syntax
    fp = _buffer()
    fp.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(fp, meta, enforce_standard=True)
    if syntax == DeflatedExplicitVRLittleEndian:  # PS3.5 A.5: raw deflate, padded to even length
        compressor = zlib.compressobj(DEFLATE_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
        body = compressor.compress(body) + compressor.flush()
        body += b"\0" * (len(body) % 2)
    fp.write(body)
    return fp.getvalue()


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
    path.write_bytes(_file_bytes(ds.SOPClassUID, ds.SOPInstanceUID, body.getvalue(), syntax))
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

"""Write a SPECT volume as NM files in the layouts of several vendors' exports.

Two writers cover what a SPECT/CT department sends to PACS for the SPECT:

- :func:`write_nm_multiframe` — one NM Image Storage file holding a reconstructed SPECT volume
  (``ImageType`` ``RECON TOMO``), geometry in the Detector Information Sequence, as the NM IOD requires;
- :func:`write_nm_slices` — the same SPECT volume as single-frame NM files, the form some workstations
  export; readers must give the same image for both.

:func:`write_spect` picks the writer for a vendor layout (below) and is what the synthetic cohort uses.
Compression (:data:`mibgkit.synth.dicom.COMPRESSIONS`), the geometry conventions and the deterministic
UIDs are those of :mod:`mibgkit.synth.dicom`, whose shared parts these writers use; the CT series is
written there (:func:`mibgkit.synth.dicom.write_ct_series`).

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
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import NuclearMedicineImageStorage
from pydicom.valuerep import DS

from .dicom import (
    _DEFAULT_EQUIPMENT,
    _apply_overrides,
    _as_volume,
    _base_dataset,
    _check_spacing,
    _direction_matrix,
    _ds,
    _iop,
    _save,
    _set_equipment,
    _set_image_pixel,
    _vector3,
)

__all__ = ["QUANT_BQML_PER_COUNT", "VENDORS", "write_nm_multiframe", "write_nm_slices", "write_spect"]

#: Half-life of iodine-123 in seconds (13.2232 h).
I123_HALF_LIFE_S = 47603.5

#: NM layouts the writers produce (module notes); ``hermes`` is a folder of single-frame files.
VENDORS = ("siemens", "ge", "philips", "hermes", "quant", "float", "reversed")

#: Calibration of the ``quant`` layout, Bq/ml per count (a power-of-two fraction, so that Bq/ml values
#: are exact in binary and ratios equal those of the counts).
QUANT_BQML_PER_COUNT = 37.5

#: Equipment attributes per vendor layout (Manufacturer, model, software, station).
_EQUIPMENT = {
    "siemens": _DEFAULT_EQUIPMENT,
    "ge": ("GE MEDICAL SYSTEMS", "Discovery NM/CT 670", "Xeleris 4.0", "XELERIS4"),
    "philips": ("Philips Medical Systems", "BrightView XCT", "JETStream Workspace 3.0", "JSWS01"),
    "hermes": ("HERMES MEDICAL SOLUTIONS", "Hybrid Recon", "HybridRecon 3.0", "HERMES01"),
}

_NM_SERIES_KEYS = {"RadionuclideTotalDose", "RadiopharmaceuticalStartTime", "Radiopharmaceutical"}


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
    _set_vendor_equipment(ds, vendor)
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
        _set_vendor_equipment(ds, vendor)
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


# --------------------------------------------------------------------------------------------
# NM modules and pixel encoding
# --------------------------------------------------------------------------------------------


def _set_vendor_equipment(ds: Dataset, vendor: str) -> None:
    _set_equipment(ds, _EQUIPMENT.get(vendor, _EQUIPMENT["siemens"]))


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

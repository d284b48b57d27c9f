"""DICOM images: one NM multi-frame SPECT file, or a folder of single-frame slices (CT, NM, PET, MR).

This is the DICOM half of :func:`mibgkit.io.load_image`, which is the only door images come
through; the conventions (LPS, mm, right-handed volumes, pixel types, errors) are stated there.
NM multi-frame geometry follows DICOM PS3.3 C.8.4.8 (NM Image) and C.8.4.15 (NM Reconstruction);
single-frame series are stacked by GDCM's series grouping and sorted along the slice normal.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.errors import InvalidDicomError
from pydicom.misc import is_dicom
from pydicom.uid import NuclearMedicineImageStorage

from .errors import GeometryError, InputError, first_line

__all__ = ["read_dicom_file", "read_dicom_folder"]

#: NM ``ImageType`` value 3 that hold one reconstructed volume per file.
_NM_VOLUME_TYPES = ("RECON TOMO", "RECON GATED TOMO")

#: Header tags needed to stack single-frame slices (pixel data is never read by pydicom there).
_SERIES_TAGS = [
    "SOPClassUID", "SOPInstanceUID", "Modality", "SeriesInstanceUID", "SeriesDescription",
    "SeriesNumber", "NumberOfFrames", "Rows", "Columns", "PixelSpacing", "ImagePositionPatient",
    "ImageOrientationPatient", "DetectorInformationSequence", "RescaleSlope", "RescaleIntercept",
    "SamplesPerPixel",
]

#: Relative tolerance on slice gaps (1 %), with an absolute floor in mm for DS rounding.
_GAP_RTOL = 0.01
_GAP_ATOL_MM = 1e-3



# --------------------------------------------------------------------------------------------
# single DICOM files
# --------------------------------------------------------------------------------------------


def read_dicom_file(p: Path, patient: str | None, *, in_folder: bool = False) -> sitk.Image:
    try:
        ds = pydicom.dcmread(p)
    except InvalidDicomError:
        raise InputError(
            "is neither DICOM nor a supported image format (NIfTI .nii/.nii.gz, NRRD .nrrd/.nhdr, "
            "MetaImage .mha/.mhd, or a folder of DICOM files)", patient=patient, path=p) from None
    except Exception as exc:  # pydicom raises several types on damaged files
        raise InputError(f"cannot be read as DICOM (truncated or corrupt?): {first_line(exc)}",
                         patient=patient, path=p) from None
    if "PixelData" not in ds:
        what = "a DICOMDIR" if "DirectoryRecordSequence" in ds else f"SOP class {_sop_name(ds)}"
        raise InputError(f"holds no pixel data ({what}; truncated?): give an image file or the folder "
                         "of one series", patient=patient, path=p)
    n_frames = int(ds.get("NumberOfFrames") or 1)
    if ds.get("SOPClassUID") == NuclearMedicineImageStorage:
        return _nm_volume(ds, p, patient)
    if n_frames > 1:
        raise InputError(f"is a multi-frame {_sop_name(ds)} file, which is not supported; export it "
                         "as single-frame DICOM files, NIfTI or NRRD", patient=patient, path=p)
    if in_folder:
        raise InputError(f"is the only DICOM slice of its series in folder {p.parent}: a 2-D image, "
                         "not a 3-D volume", patient=patient, path=p)
    raise InputError(f"is a single 2-D DICOM slice ({_sop_name(ds)}); to read the 3-D series, give "
                     f"its folder {p.parent} instead", patient=patient, path=p)


def _nm_volume(ds: pydicom.Dataset, p: Path, patient: str | None) -> sitk.Image:
    """NM Image Storage file → 3-D image, geometry from the NM Detector and Reconstruction modules."""
    image_type = [str(v).upper() for v in (ds.get("ImageType") or [])]
    kind = image_type[2] if len(image_type) > 2 else None
    if kind is not None and kind not in _NM_VOLUME_TYPES:
        raise InputError(f"is an NM {kind} image (planar or projection frames), not a reconstructed "
                         "SPECT volume (ImageType RECON TOMO)", patient=patient, path=p)
    n_frames = int(ds.get("NumberOfFrames") or 1)
    if n_frames < 2:
        raise InputError("is a 2-D image (an NM file with one frame); a 3-D SPECT volume is needed — "
                         "if this is one slice of a single-frame export, give its folder",
                         patient=patient, path=p)
    if int(ds.get("SamplesPerPixel") or 1) != 1:
        raise InputError("is a colour (multi-sample) image; counts are needed", patient=patient, path=p)

    slice_index = _nm_slice_index(ds, n_frames, p, patient)
    ipp, iop = _nm_position_orientation(ds)
    if ipp is None or iop is None:
        raise GeometryError(
            "NM file has no Image Position/Orientation (Patient) (looked in the Detector Information "
            "Sequence and at the top level); the volume cannot be placed in space",
            patient=patient, path=p)
    row, col = _orientation_vectors(iop, p, patient)
    pixel_spacing = _pixel_spacing(ds, p, patient)
    step = _nm_slice_step(ds, p, patient)
    normal = np.cross(row, col)

    try:
        frames = ds.pixel_array
    except Exception as exc:
        frames = _decode_with_sitk(p, exc, ds, patient)
    frames = np.asarray(frames).reshape(n_frames, int(ds.Rows), int(ds.Columns))

    order = np.argsort(slice_index, kind="stable")
    volume = frames if np.array_equal(order, np.arange(n_frames)) else frames[order]  # no copy when in order
    first = ipp + (1 - slice_index[0]) * step * normal  # centre of slice 1
    if step < 0:  # stacked against the normal: reverse to keep the z axis = row × column
        volume = volume[::-1]
        first = first + (n_frames - 1) * step * normal

    slope = float(ds.get("RescaleSlope") or 1.0)
    intercept = float(ds.get("RescaleIntercept") or 0.0)
    if slope != 1.0 or intercept != 0.0:
        volume = (volume.astype(np.float64) * slope + intercept).astype(np.float32)

    image = sitk.GetImageFromArray(np.ascontiguousarray(volume))
    _set_geometry(image, first, (pixel_spacing[1], pixel_spacing[0], abs(step)), row, col, p, patient)
    return image


def _nm_slice_index(ds, n_frames: int, p: Path, patient) -> np.ndarray:
    """1-based slice number of each frame, from the Slice Vector (frames in file order otherwise)."""
    pointers = ds.get("FrameIncrementPointer")
    if pointers is not None:
        pointers = [pointers] if isinstance(pointers, pydicom.tag.BaseTag) else list(pointers)
        for tag in pointers:
            keyword = pydicom.datadict.keyword_for_tag(tag) or str(tag)
            if keyword == "SliceVector" or tag not in ds:
                continue
            vector = np.atleast_1d(ds[tag].value)
            if len(set(int(v) for v in vector)) > 1:
                raise InputError(f"frames vary along {keyword} (e.g. a gated study): the file holds "
                                 "several volumes; only one 3-D volume per file is supported",
                                 patient=patient, path=p)
    vector = ds.get("SliceVector")
    if vector is None:
        return np.arange(1, n_frames + 1)
    vector = np.asarray([int(v) for v in np.atleast_1d(vector)])
    if len(vector) != n_frames or sorted(vector.tolist()) != list(range(1, n_frames + 1)):
        raise InputError(f"Slice Vector {_short(vector)} is not a permutation of 1..{n_frames} "
                         f"for {n_frames} frames (missing or repeated slices)", patient=patient, path=p)
    return vector


def _nm_position_orientation(ds) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Image Position/Orientation (Patient): Detector Information Sequence first, then top level."""
    sources = []
    seq = ds.get("DetectorInformationSequence")
    if seq:
        sources.append(seq[0])
    sources.append(ds)
    ipp = iop = None
    for item in sources:
        if ipp is None and item.get("ImagePositionPatient"):
            ipp = item.ImagePositionPatient
        if iop is None and item.get("ImageOrientationPatient"):
            iop = item.ImageOrientationPatient
    return _floats(ipp, 3), _floats(iop, 6)


def _nm_slice_step(ds, p: Path, patient) -> float:
    """Signed slice interval (mm) along the normal: Spacing Between Slices, else Slice Thickness."""
    for keyword in ("SpacingBetweenSlices", "SliceThickness"):
        value = ds.get(keyword)
        if value not in (None, ""):
            step = float(value)
            if not np.isfinite(step) or step == 0:
                raise GeometryError(f"{keyword} is {value}; slices need a non-zero spacing (mm)",
                                    patient=patient, path=p)
            if keyword == "SliceThickness" and step < 0:
                raise GeometryError(f"Slice Thickness is negative ({value} mm)", patient=patient, path=p)
            return step
    raise GeometryError("NM file has neither Spacing Between Slices nor Slice Thickness; the slice "
                        "spacing is unknown", patient=patient, path=p)


def _decode_with_sitk(p: Path, exc: Exception, ds, patient) -> np.ndarray:
    """Pixel data pydicom cannot decode: compressed → GDCM via SimpleITK; otherwise truncated."""
    syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if syntax is not None and syntax.is_compressed:
        try:
            return sitk.GetArrayFromImage(sitk.ReadImage(str(p)))
        except RuntimeError:
            pass
    raise InputError(f"pixel data cannot be decoded (truncated or corrupt file?): {first_line(exc)}",
                     patient=patient, path=p) from None


# --------------------------------------------------------------------------------------------
# DICOM folders of single-frame slices
# --------------------------------------------------------------------------------------------


def read_dicom_folder(folder: Path, patient: str | None) -> sitk.Image:
    series_ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if not series_ids:
        subfolders = sorted(d.name for d in folder.iterdir() if d.is_dir())
        hint = f"; it has subfolders {', '.join(subfolders[:10])} — give the one holding the series" \
            if subfolders else ""
        raise InputError(f"folder holds no DICOM image files{hint}", patient=patient, path=folder)
    if len(series_ids) > 1:
        described = [_describe_series(folder, sid) for sid in series_ids]
        raise InputError(f"folder holds {len(series_ids)} DICOM series, expected one: "
                         + "; ".join(described) + ". Move each series to its own folder",
                         patient=patient, path=folder)
    files = list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series_ids[0]))
    _check_skipped_files(folder, files, patient)
    if len(files) == 1:
        return read_dicom_file(Path(files[0]), patient, in_folder=True)

    headers = []
    for name in files:
        try:
            headers.append(pydicom.dcmread(name, stop_before_pixels=True, specific_tags=_SERIES_TAGS))
        except Exception as exc:
            raise InputError(f"cannot be read as DICOM (truncated or corrupt?): {first_line(exc)}",
                             patient=patient, path=name) from None
    ordered, first, spacing, row, col = _stack_slices(files, headers, folder, patient)

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([files[i] for i in ordered])
    rescales = {(float(h.get("RescaleSlope") or 1), float(h.get("RescaleIntercept") or 0)) for h in headers}
    if len(rescales) > 1 or any(s != round(s) or b != round(b) for s, b in rescales):
        reader.SetOutputPixelType(sitk.sitkFloat32)  # per-slice rescale must not be truncated
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        culprit = _find_damaged_file([files[i] for i in ordered]) or folder
        raise InputError(f"pixel data cannot be read (truncated or corrupt file?): {first_line(exc)}",
                         patient=patient, path=culprit) from None
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError("series does not form a scalar 3-D volume", patient=patient, path=folder)
    _set_geometry(image, first, spacing, row, col, folder, patient)
    return image


def _stack_slices(files, headers, folder: Path, patient):
    """Order single-frame slices along their normal and check that they form a regular volume.

    Returns the file order, the first slice's position, spacing ``(sx, sy, sz)`` and the row and
    column direction cosines.
    """
    names = [Path(f).name for f in files]
    for name, h in zip(names, headers):
        if int(h.get("NumberOfFrames") or 1) != 1:
            raise InputError(f"series mixes multi-frame and single-frame files ({name} has "
                             f"{h.NumberOfFrames} frames)", patient=patient, path=folder / name)
    sizes = {(int(h.get("Rows") or 0), int(h.get("Columns") or 0)) for h in headers}
    if len(sizes) > 1:
        raise InputError(f"slices differ in matrix size {sorted(sizes)}", patient=patient, path=folder)

    positions, orientations = [], []
    for name, h in zip(names, headers):
        ipp, iop = _slice_position_orientation(h)
        if ipp is None or iop is None:
            raise GeometryError("slice has no Image Position/Orientation (Patient); cannot stack it",
                                patient=patient, path=folder / name)
        positions.append(ipp)
        orientations.append(iop)
    orientations = np.asarray(orientations)
    differing = np.flatnonzero(np.abs(orientations - orientations[0]).max(axis=1) > 1e-4)
    if differing.size:
        raise GeometryError(f"slices have different orientations ({names[0]} vs "
                            f"{names[differing[0]]}); a localizer or a second stack in the series?",
                            patient=patient, path=folder)
    row, col = _orientation_vectors(orientations[0], folder / names[0], patient)
    pixel_spacing = _pixel_spacing(headers[0], folder / names[0], patient)
    normal = np.cross(row, col)

    positions = np.asarray(positions)
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    along = along[order]
    gaps = np.diff(along)
    tol = max(_GAP_ATOL_MM, _GAP_RTOL * float(np.median(gaps)))
    for i in np.flatnonzero(gaps <= tol):
        a, b = names[order[i]], names[order[i + 1]]
        raise InputError(f"duplicated slice: {a} and {b} lie at the same position "
                         f"({along[i]:.3f} mm along the slice normal)", patient=patient, path=folder / b)
    step = float(np.median(gaps))
    tol = max(_GAP_ATOL_MM, _GAP_RTOL * step)
    for i in np.flatnonzero(np.abs(gaps - step) > tol):
        a, b = names[order[i]], names[order[i + 1]]
        ratio = gaps[i] / step
        missing = (f"; about {round(ratio) - 1} slice(s) missing there"
                   if ratio > 1.5 and abs(ratio - round(ratio)) * step <= tol else "")
        raise GeometryError(f"non-uniform slice spacing: {gaps[i]:.4g} mm between {a} and {b}, where "
                            f"the other slices are {step:.4g} mm apart{missing}",
                            patient=patient, path=folder)
    lateral = positions[order] - positions[order[0]] - np.outer(along - along[0], normal)
    if np.abs(lateral).max() > max(1e-2, tol):
        raise GeometryError("slices are not stacked along their normal (gantry tilt or sheared "
                            "series); resample the series before use", patient=patient, path=folder)
    spacing = (pixel_spacing[1], pixel_spacing[0], (along[-1] - along[0]) / (len(along) - 1))
    return order, positions[order[0]], spacing, row, col


def _slice_position_orientation(h) -> tuple[np.ndarray | None, np.ndarray | None]:
    ipp, iop = h.get("ImagePositionPatient"), h.get("ImageOrientationPatient")
    seq = h.get("DetectorInformationSequence")
    if (ipp is None or iop is None) and seq:  # NM single frames keep them in the detector item
        ipp = ipp if ipp is not None else seq[0].get("ImagePositionPatient")
        iop = iop if iop is not None else seq[0].get("ImageOrientationPatient")
    return _floats(ipp, 3), _floats(iop, 6)


def _describe_series(folder: Path, series_id: str) -> str:
    """A series as an error message may name it: modality, series number, file count, a file name.

    Never the Series Instance UID or the free-text Series Description: both can identify a patient
    and the message may reach a QC table.
    """
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series_id)
    label = ""
    if files:
        try:
            h = pydicom.dcmread(files[0], stop_before_pixels=True, specific_tags=["Modality", "SeriesNumber"])
            parts = [str(h.get("Modality") or ""), f"series number {h.get('SeriesNumber')}"
                     if h.get("SeriesNumber") not in (None, "") else ""]
            label = ", ".join(p for p in parts if p)
        except Exception:
            label = ""
    label = label or "series"
    return f"{label} ({len(files)} files, e.g. {Path(files[0]).name if files else '-'})"


def _check_skipped_files(folder: Path, listed, patient) -> None:
    """Raise for DICOM image files in ``folder`` that GDCM left out of the series (damaged files).

    GDCM silently skips files it cannot parse, which would otherwise surface as a missing slice.
    Non-image DICOM files (DICOMDIR, reports) are ignored.
    """
    listed = {os.path.normcase(os.path.abspath(f)) for f in listed}
    for entry in sorted(folder.iterdir()):
        if not entry.is_file() or os.path.normcase(os.path.abspath(entry)) in listed:
            continue
        if not is_dicom(entry):
            continue
        if _find_damaged_file([str(entry)]) is not None:
            raise InputError("DICOM file cannot be read (truncated or corrupt?); it was left out of the "
                             f"series in folder {folder.name}", patient=patient, path=entry)


def _find_damaged_file(files) -> str | None:
    """The first file whose pixel data is shorter than its header says (error path only)."""
    for name in files:
        try:
            ds = pydicom.dcmread(name)
            if "PixelData" not in ds:
                if "Image Storage" in _sop_name(ds):  # an image whose pixel data was cut off
                    return name
                continue
            expected = int(ds.Rows) * int(ds.Columns) * int(ds.get("NumberOfFrames") or 1) \
                * int(ds.get("SamplesPerPixel") or 1) * int(ds.BitsAllocated) // 8
            syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
            if not (syntax is not None and syntax.is_compressed) and len(ds.PixelData) < expected:
                return name
        except Exception:
            return name
    return None


# --------------------------------------------------------------------------------------------
# shared geometry helpers and validation
# --------------------------------------------------------------------------------------------


def _orientation_vectors(iop, where, patient) -> tuple[np.ndarray, np.ndarray]:
    iop = np.asarray(iop, dtype=float)
    row, col = iop[:3], iop[3:]
    norms = np.linalg.norm(row), np.linalg.norm(col)
    if not np.all(np.isfinite(iop)) or min(norms) < 1e-6:
        raise GeometryError(f"Image Orientation (Patient) {_short(iop)} is not two direction vectors",
                            patient=patient, path=where)
    row, col = row / norms[0], col / norms[1]
    if abs(max(norms) - 1) > 1e-3 or abs(min(norms) - 1) > 1e-3 or abs(row @ col) > 1e-3:
        raise GeometryError(f"Image Orientation (Patient) {_short(iop)} is not two orthogonal unit "
                            "vectors", patient=patient, path=where)
    col = col - (row @ col) * row  # remove DS rounding so the direction matrix is orthonormal
    return row, col / np.linalg.norm(col)


def _pixel_spacing(ds, where, patient) -> tuple[float, float]:
    """Pixel Spacing as (between rows, between columns) in mm."""
    value = _floats(ds.get("PixelSpacing"), 2)
    if value is None:
        raise GeometryError("has no Pixel Spacing; the voxel size is unknown", patient=patient, path=where)
    if not np.all(value > 0):
        raise GeometryError(f"Pixel Spacing {_short(value)} mm is not positive", patient=patient, path=where)
    return float(value[0]), float(value[1])


def _set_geometry(image: sitk.Image, first, spacing, row, col, where, patient) -> None:
    spacing = tuple(float(s) for s in spacing)
    if not all(np.isfinite(s) and s > 0 for s in spacing):
        raise GeometryError(f"spacing {spacing} mm is not positive", patient=patient, path=where)
    image.SetSpacing(spacing)
    image.SetOrigin(tuple(float(v) for v in first))
    image.SetDirection(tuple(np.column_stack([row, col, np.cross(row, col)]).ravel().tolist()))


def _floats(value, n: int) -> np.ndarray | None:
    if value is None or value == "":
        return None
    try:
        arr = np.asarray([float(v) for v in value], dtype=float)
    except (TypeError, ValueError):
        return None
    return arr if arr.shape == (n,) else None


def _sop_name(ds) -> str:
    uid = ds.get("SOPClassUID")
    return getattr(uid, "name", None) or str(uid or "unknown SOP class")


def _short(values) -> str:
    values = np.atleast_1d(np.asarray(values))
    text = ", ".join(f"{v:g}" if isinstance(v, (float, np.floating)) else str(v) for v in values[:8])
    return f"[{text}{', ...' if values.size > 8 else ''}]"

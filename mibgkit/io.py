"""Load SPECT and CT volumes from DICOM, NIfTI, NRRD or MetaImage into one geometry-aware image.

:func:`load_image` is the only door images come through: whatever the format, it returns a 3-D
:class:`SimpleITK.Image` whose origin, spacing and direction place every voxel in the patient's LPS
coordinates (mm). Nothing downstream needs to know which format a file came in.

Conventions
-----------
- Physical space is DICOM's patient space, LPS: x grows to the patient's left, y to posterior, z to
  superior (head). NIfTI and NRRD files in RAS are converted on reading (SimpleITK does this).
- ``image.GetOrigin()`` is the centre of voxel ``(0, 0, 0)``; ``image.GetSpacing()`` is ``(sx, sy, sz)``
  in mm; ``image.GetDirection()`` is a 3 × 3 matrix, row-major, whose *columns* are the unit vectors
  of the image's x, y and z axes. A voxel index ``(i, j, k)`` (SimpleITK order) lies at
  ``origin + D @ (i * sx, j * sy, k * sz)``; the numpy array from ``sitk.GetArrayFromImage`` is
  indexed ``[k, j, i]``.
- DICOM volumes are returned right-handed: the z axis is ``row × column`` direction cosines and slices
  are ordered along it, as SimpleITK's own DICOM reader does. A file whose slices run the other way
  (NM with a negative Spacing Between Slices) is returned with its slices reversed; physical
  positions are unchanged.

Pixel type
----------
The image keeps the type it was stored in (e.g. uint16 counts, int16 HU); where DICOM rescale
(``RescaleSlope``/``RescaleIntercept``) changes values the result is floating point (float32 for NM
files, SimpleITK's choice for series). Callers cast as they need (``sitk.Cast(image, sitk.sitkFloat32)``).

Errors
------
Every problem is an :class:`~mibgkit.errors.InputError` (cannot read, not an image, truncated, 2-D,
NaN/inf voxels, several series in one folder) or a :class:`~mibgkit.errors.GeometryError` (missing or
inconsistent position/orientation, missing or duplicated slices, non-uniform slice spacing,
non-positive spacing); the message names the file or folder and, if given, the patient.
"""

from __future__ import annotations

import gzip
import os
import warnings
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.errors import InvalidDicomError
from pydicom.misc import is_dicom
from pydicom.uid import NuclearMedicineImageStorage

from mibgkit.errors import GeometryError, InputError, QCWarning

__all__ = ["load_image", "check_counts", "image_geometry", "same_grid", "ITK_SUFFIXES"]

#: File endings read through SimpleITK (anything else is tried as DICOM).
ITK_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")

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
# public API
# --------------------------------------------------------------------------------------------


def load_image(path: str | os.PathLike, *, patient: str | None = None) -> sitk.Image:
    """Read a 3-D image with its physical geometry (LPS, mm) from any supported input.

    Parameters
    ----------
    path : str or os.PathLike
        One of

        - a folder holding one DICOM series of single-frame files (CT, or single-frame NM/PET/MR);
          slices are sorted by their position along the slice normal, not by file name or
          Instance Number;
        - one DICOM file: an NM Image Storage multi-frame file of a reconstructed SPECT volume
          (``ImageType`` value 3 ``RECON TOMO``); a folder holding only such a file works too;
        - a NIfTI (``.nii``, ``.nii.gz``), NRRD (``.nrrd``, ``.nhdr``) or MetaImage (``.mha``,
          ``.mhd``) file.
    patient : str, optional
        Manifest ``patient_id``, only used to name the patient in error messages.

    Returns
    -------
    SimpleITK.Image
        3-D, scalar, in the stored pixel type (floating point where DICOM rescale applies); origin,
        spacing (mm) and direction as described in the module notes.

    Raises
    ------
    InputError
        Missing path; not a readable image; not DICOM (for other endings); truncated or corrupt
        file; several series in one folder; a 2-D image (one slice, or a single-frame DICOM file
        given instead of its folder); vector or 4-D images; NaN or infinite voxels.
    GeometryError
        NM file without Image Position/Orientation (Patient) or pixel spacing; slices missing,
        duplicated, unevenly spaced, differently oriented or not stacked along their normal; zero,
        negative or non-finite spacing; direction cosines that are not orthonormal.

    Notes
    -----
    NM multi-frame geometry follows DICOM PS3.3 C.8.4.8 and C.8.4.15. Image Position and Orientation
    (Patient) are taken from the first item of the Detector Information Sequence (top-level values are
    accepted as a fallback, as some exporters write them there). Frames are placed by the Slice Vector
    (the Frame Increment Pointer of ``RECON TOMO``): the frame with slice index ``s`` lies at
    ``IPP + (s - s1) * SpacingBetweenSlices * (row × column)``, ``s1`` being the first frame's index.
    A negative Spacing Between Slices stacks slices against the normal; such volumes are returned
    reversed so that the direction stays right-handed. Without Spacing Between Slices, Slice Thickness
    is used (contiguous slices). Frames that vary along any other vector (gated R-R interval, time
    slot) are not one 3-D volume and are refused.

    Examples
    --------
    ::

        image = load_image("patients/P001/spect.dcm", patient="P001")
        image.GetSpacing()  # (3.30, 3.30, 3.30), mm
    """
    p = Path(path)
    if not p.exists():
        raise InputError("no such file or folder", patient=patient, path=p)
    if p.is_dir():
        image = _read_dicom_folder(p, patient)
    elif _has_itk_suffix(p):
        image = _read_itk_file(p, patient)
    else:
        image = _read_dicom_file(p, patient)
    return _validated(image, p, patient)


def check_counts(
    image: sitk.Image,
    path: str | os.PathLike | None = None,
    patient: str | None = None,
    *,
    strict: bool = False,
) -> int:
    """Check a SPECT image for negative counts.

    Iterative reconstructions (OSEM, as on the Symbia) give non-negative counts; negative voxels point
    to filtered back-projection, aggressive scatter correction or a wrong rescale, and they bias
    means in low-uptake spheres (muscle). This check is separate from :func:`load_image` because CT
    images are negative by nature.

    Parameters
    ----------
    image : SimpleITK.Image
        The SPECT volume (counts).
    path : str or os.PathLike, optional
        File the image came from, for the message.
    patient : str, optional
        Manifest ``patient_id``, for the message.
    strict : bool, default False
        Raise instead of warning.

    Returns
    -------
    int
        Number of voxels with a value below zero (0 when the image is clean).

    Warns
    -----
    QCWarning
        When negative voxels exist and ``strict`` is false.

    Raises
    ------
    InputError
        When negative voxels exist and ``strict`` is true.
    """
    values = sitk.GetArrayViewFromImage(image)
    if np.issubdtype(values.dtype, np.unsignedinteger):
        return 0  # stored counts without rescale cannot be negative
    n_negative = int(np.count_nonzero(values < 0))
    if n_negative:
        share = 100.0 * n_negative / values.size
        reason = (f"{n_negative} voxels ({share:.2g} %) have negative counts (minimum "
                  f"{float(values.min()):.4g}); SPECT counts from OSEM are non-negative, so check the "
                  "reconstruction (filtered back-projection?) or the rescale slope/intercept")
        if strict:
            raise InputError(reason, patient=patient, path=path)
        where = ", ".join(x for x in (patient and f"patient {patient}",
                                       path is not None and f"file {os.fspath(path)}") if x)
        warnings.warn(f"{where}: {reason}" if where else reason, QCWarning, stacklevel=2)
    return n_negative


def image_geometry(image: sitk.Image) -> dict[str, tuple]:
    """Describe where an image lies in space.

    Parameters
    ----------
    image : SimpleITK.Image

    Returns
    -------
    dict
        ``size`` (voxels, x y z), ``spacing`` (mm, x y z), ``origin`` (LPS mm of the centre of voxel
        (0, 0, 0)) and ``direction`` (9 values, row-major, columns = axis directions), all tuples.
    """
    return {
        "size": tuple(int(v) for v in image.GetSize()),
        "spacing": tuple(float(v) for v in image.GetSpacing()),
        "origin": tuple(float(v) for v in image.GetOrigin()),
        "direction": tuple(float(v) for v in image.GetDirection()),
    }


def same_grid(a: sitk.Image, b: sitk.Image, tol: float = 1e-4) -> bool:
    """Whether two images share one voxel grid (same size, spacing, origin and direction).

    Parameters
    ----------
    a, b : SimpleITK.Image
    tol : float, default 1e-4
        Absolute tolerance: mm for spacing and origin, unitless for direction cosines.

    Returns
    -------
    bool
        True when voxel ``(i, j, k)`` of ``a`` and of ``b`` are the same physical box.
    """
    if a.GetDimension() != b.GetDimension() or a.GetSize() != b.GetSize():
        return False
    return all(
        np.allclose(getter(a), getter(b), rtol=0.0, atol=tol)
        for getter in (sitk.Image.GetSpacing, sitk.Image.GetOrigin, sitk.Image.GetDirection)
    )


# --------------------------------------------------------------------------------------------
# formats read by SimpleITK
# --------------------------------------------------------------------------------------------


def _has_itk_suffix(p: Path) -> bool:
    return p.name.lower().endswith(ITK_SUFFIXES)


def _read_itk_file(p: Path, patient: str | None) -> sitk.Image:
    try:
        image = sitk.ReadImage(str(p))
    except RuntimeError as exc:
        raise InputError(f"cannot be read as an image (corrupt or truncated?): {_first_line(exc)}",
                         patient=patient, path=p) from None
    if p.name.lower().endswith((".nii", ".nii.gz")):
        problem = _nifti_stored_problem(p)
        if problem:
            raise InputError(problem, patient=patient, path=p)
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"has {image.GetNumberOfComponentsPerPixel()} values per voxel (vector/colour "
                         "image); a scalar volume is needed", patient=patient, path=p)
    if image.GetDimension() == 4:
        size = list(image.GetSize())
        if size[3] != 1:
            raise InputError(f"is 4-D with {size[3]} volumes; a single 3-D volume is needed",
                             patient=patient, path=p)
        image = sitk.Extract(image, size[:3] + [0], [0, 0, 0, 0])
    return image


def _nifti_stored_problem(p: Path) -> str | None:
    """What is wrong with the voxel data stored in a NIfTI-1/-2 file that ITK would hide, if anything.

    ITK's NIfTI reader (ITK 5) zero-fills a truncated file and replaces NaN and ±inf by 0 while reading,
    both silently, so the stored bytes are checked here. Returns a reason or None.
    """
    gz = p.name.lower().endswith(".gz")
    try:
        with (gzip.open if gz else open)(p, "rb") as fh:
            head = fh.read(540)
            for order in "<>":
                size = int(np.frombuffer(head, f"{order}i4", 1, 0)[0])
                if size in (348, 540):
                    break
            else:
                return None  # not a NIfTI header ITK would read either; ITK reports it
            if size == 348:
                dims = np.frombuffer(head, f"{order}i2", 8, 40).astype(np.int64)
                code, bitpix = (int(v) for v in np.frombuffer(head, f"{order}i2", 2, 70))
                offset = int(np.frombuffer(head, f"{order}f4", 1, 108)[0])
            else:
                code, bitpix = (int(v) for v in np.frombuffer(head, f"{order}i2", 2, 12))
                dims = np.frombuffer(head, f"{order}i8", 8, 16)
                offset = int(np.frombuffer(head, f"{order}i8", 1, 168)[0])
            if not 1 <= dims[0] <= 7 or bitpix <= 0:
                return None
            expected = int(np.prod(dims[1:dims[0] + 1])) * bitpix // 8
            dtype = {16: f"{order}f4", 64: f"{order}f8"}.get(code)
            if dtype is None and not gz:
                stored = max(0, p.stat().st_size - offset)
                data = None
            else:
                fh.seek(offset)
                chunks, stored = [], 0
                while stored < expected:
                    chunk = fh.read(min(1 << 24, expected - stored))
                    if not chunk:
                        break
                    stored += len(chunk)
                    if dtype is not None:
                        chunks.append(chunk)
                data = np.frombuffer(b"".join(chunks), dtype) if dtype is not None else None
    except EOFError:
        return "is truncated (the compressed stream ends early)"
    except (OSError, ValueError):
        return None
    if stored < expected:
        return f"is truncated: it holds {stored} of the {expected} bytes of voxel data"
    if data is not None:
        bad = int(data.size - np.count_nonzero(np.isfinite(data)))
        if bad:
            return f"{bad} voxels are NaN or infinite in the file (SimpleITK would read them as 0)"
    return None


# --------------------------------------------------------------------------------------------
# single DICOM files
# --------------------------------------------------------------------------------------------


def _read_dicom_file(p: Path, patient: str | None, *, in_folder: bool = False) -> sitk.Image:
    try:
        ds = pydicom.dcmread(p)
    except InvalidDicomError:
        raise InputError(
            "is neither DICOM nor a supported image format (NIfTI .nii/.nii.gz, NRRD .nrrd/.nhdr, "
            "MetaImage .mha/.mhd, or a folder of DICOM files)", patient=patient, path=p) from None
    except Exception as exc:  # pydicom raises several types on damaged files
        raise InputError(f"cannot be read as DICOM (truncated or corrupt?): {_first_line(exc)}",
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
    raise InputError(f"pixel data cannot be decoded (truncated or corrupt file?): {_first_line(exc)}",
                     patient=patient, path=p) from None


# --------------------------------------------------------------------------------------------
# DICOM folders of single-frame slices
# --------------------------------------------------------------------------------------------


def _read_dicom_folder(folder: Path, patient: str | None) -> sitk.Image:
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
        return _read_dicom_file(Path(files[0]), patient, in_folder=True)

    headers = []
    for name in files:
        try:
            headers.append(pydicom.dcmread(name, stop_before_pixels=True, specific_tags=_SERIES_TAGS))
        except Exception as exc:
            raise InputError(f"cannot be read as DICOM (truncated or corrupt?): {_first_line(exc)}",
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
        raise InputError(f"pixel data cannot be read (truncated or corrupt file?): {_first_line(exc)}",
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


def _validated(image: sitk.Image, p: Path, patient: str | None) -> sitk.Image:
    """Checks every loaded image passes, whatever its format."""
    if image.GetDimension() != 3:
        raise InputError(f"is a {image.GetDimension()}-D image; a 3-D volume is needed",
                         patient=patient, path=p)
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError("is a vector/colour image; a scalar volume is needed", patient=patient, path=p)
    size = image.GetSize()
    if min(size) < 2:
        raise InputError(f"is a 2-D image (size {size} voxels has a single slice); a 3-D volume is "
                         "needed", patient=patient, path=p)
    spacing = np.asarray(image.GetSpacing())
    if not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise GeometryError(f"voxel spacing {tuple(spacing)} mm must be positive", patient=patient, path=p)
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    if not np.allclose(direction.T @ direction, np.eye(3), atol=1e-3):
        raise GeometryError("direction cosines are not orthonormal (sheared or scaled axes)",
                            patient=patient, path=p)
    if not np.all(np.isfinite(image.GetOrigin())):
        raise GeometryError("origin is not finite", patient=patient, path=p)
    if image.GetPixelID() in (sitk.sitkFloat32, sitk.sitkFloat64):
        values = sitk.GetArrayViewFromImage(image)
        bad = int(values.size - np.count_nonzero(np.isfinite(values)))
        if bad:
            raise InputError(f"{bad} voxels are NaN or infinite", patient=patient, path=p)
    return image


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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__

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

Values, pixel type and unit
---------------------------
An image holds the values its file means (the rules are in :mod:`mibgkit.nm`): an NM
file's Real World Value Mapping where it has one (float64, e.g. Bq/ml for quantitative SPECT), else
its Rescale Slope/Intercept (float32 where they change values), else the stored values in their own
type (e.g. uint16 counts; Float Pixel Data as float32). Single-frame series of other modalities keep
SimpleITK's choice (int16 HU for CT; float32 under a per-slice rescale). The unit travels with the
image as the SimpleITK metadata key ``"uptake_unit"`` (``image.GetMetaData("uptake_unit")``): the UCUM
code of the NM file's Real World Value Mapping (``"Bq/ml"``, ...), ``"counts"`` otherwise and for
NIfTI, NRRD and MetaImage files, ``"HU"`` for a CT series. Ratios of values are unit-free. Callers
cast as they need (``sitk.Cast(image, sitk.sitkFloat32)``).

Errors
------
Every problem is an :class:`~mibgkit.errors.InputError` (cannot read, not an image, truncated, 2-D,
NaN/inf voxels, several series in one folder, a DICOM attribute that cannot be read or does not
describe the pixel data) or a :class:`~mibgkit.errors.GeometryError` (missing or inconsistent
position/orientation, missing or duplicated slices, non-uniform slice spacing, non-positive spacing);
the message names the file or folder, the DICOM attribute (name and tag) where one is at fault, and,
if given, the patient. No other exception type leaves :func:`load_image` for a damaged DICOM header.
"""

from __future__ import annotations

import gzip
import os
import warnings
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .dicom_image import read_dicom_file, read_dicom_folder
from .errors import GeometryError, InputError, QCWarning, first_line

__all__ = ["load_image", "check_counts", "uptake_unit", "ITK_SUFFIXES", "UNIT_KEY"]

#: SimpleITK metadata key holding the unit of an image's values (``"counts"``, ``"Bq/ml"``, ...).
UNIT_KEY = "uptake_unit"

#: File endings read through SimpleITK (anything else is tried as DICOM).
ITK_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")

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
        3-D, scalar, holding the values the file means (module notes: Real World Value Mapping,
        rescale, stored values), with the metadata key ``"uptake_unit"``; origin, spacing (mm) and
        direction as described in the module notes.

    Raises
    ------
    InputError
        Missing path; not a readable image; not DICOM (for other endings); truncated or corrupt
        file; several series in one folder; a 2-D image (one slice, or a single-frame DICOM file
        given instead of its folder); vector or 4-D images; NaN or infinite voxels.
    GeometryError
        NM file without Image Position/Orientation (Patient), Spacing Between Slices or pixel
        spacing, or with a Slice Vector or Number of Slices inconsistent with Number of Frames; slices missing,
        duplicated, unevenly spaced, differently oriented or not stacked along their normal; zero,
        negative or non-finite spacing; direction cosines that are not orthonormal.

    Notes
    -----
    NM multi-frame geometry follows DICOM PS3.3 C.8.4.10 (NM Detector) and C.8.4.15 (NM
    Reconstruction). Image Position and Orientation (Patient) are taken from the first item of the
    Detector Information Sequence, or from the top level where a vendor writes them only there (both
    present: they must agree). Frames are placed by the Slice Vector (the Frame Increment Pointer of
    ``RECON TOMO``): the frame with slice index ``s`` lies at
    ``IPP + (s - s1) * SpacingBetweenSlices * (row × column)``, ``s1`` being the first frame's index.
    A negative Spacing Between Slices stacks slices against the normal; such volumes are returned
    reversed so that the direction stays right-handed. Slice Thickness is never taken for the spacing
    (it is the nominal thickness, which some systems set apart from the spacing): without Spacing
    Between Slices an NM file is refused. Frames that vary along any other vector (gated R-R interval,
    time slot) are not one 3-D volume and are refused. Values: see :mod:`mibgkit.nm`.

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
        image = read_dicom_folder(p, patient)
    elif _has_itk_suffix(p):
        image = _read_itk_file(p, patient)
    else:
        image = read_dicom_file(p, patient)
    image.SetMetaData(UNIT_KEY, uptake_unit(image))
    return _validated(image, p, patient)


def uptake_unit(image: sitk.Image) -> str:
    """The unit of an image's values (UCUM code, e.g. ``"Bq/ml"``); ``"counts"`` unless the file said otherwise."""
    return image.GetMetaData(UNIT_KEY) if image.HasMetaDataKey(UNIT_KEY) else "counts"


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


# --------------------------------------------------------------------------------------------
# formats read by SimpleITK
# --------------------------------------------------------------------------------------------


def _has_itk_suffix(p: Path) -> bool:
    return p.name.lower().endswith(ITK_SUFFIXES)


def _read_itk_file(p: Path, patient: str | None) -> sitk.Image:
    try:
        image = sitk.ReadImage(str(p))
    except RuntimeError as exc:
        raise InputError(f"cannot be read as an image (corrupt or truncated?): {first_line(exc)}",
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

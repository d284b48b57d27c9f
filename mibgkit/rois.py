"""The tumour ROI, whatever the workstation wrote: one door for masks, as :mod:`mibgkit.io` is for images.

:func:`read_roi` returns a binary ``SimpleITK.Image`` (uint8, 0/1) in LPS mm from

- a 3D Slicer segmentation (``.seg.nrrd``) or a labelmap (NIfTI, NRRD, MetaImage), read by
  :mod:`mibgkit.slicer`, on the file's own grid;
- a DICOM Segmentation (SEG), read by :mod:`mibgkit.dicom_seg` (highdicom), on the SEG's own grid;
- an RT Structure Set (RTSTRUCT), read by :mod:`mibgkit.rtstruct`: its closed planar contours are
  rasterised on the grid of a reference image (see that module for the rule).

Everything downstream (resampling onto the SPECT grid, MTV, shape) is the same whatever the format.

Format detection
----------------
A file is tried as DICOM only when it is one (``pydicom.misc.is_dicom``: the ``DICM`` marker) and
does not end like an ITK file (``.nii``, ``.nii.gz``, ``.nrrd``, ...). For a DICOM file only the
header is read, and its SOP Class UID decides: Segmentation Storage (SEG), RT Structure Set Storage
(RTSTRUCT), or anything else (an image, a report: an :class:`InputError`). This happens before any
labelmap reader sees the file: SimpleITK would open a SEG as a labelmap with the wrong geometry.

Which grid an RTSTRUCT is rasterised on: the one the caller gives (``reference=``; ``mibgkit shape
--reference``); in a manifest, :func:`rtstruct_reference` chooses the ``ct`` image when its Frame of
Reference UID is the structure set's, else the SPECT.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pydicom
import SimpleITK as sitk
from pydicom.errors import InvalidDicomError
from pydicom.misc import is_dicom

from . import dicom_seg, io, rtstruct, slicer
from .errors import GeometryError, InputError, QCWarning, first_line

__all__ = ["read_roi", "list_rois", "segment_names", "roi_format", "frame_of_reference_uid", "rtstruct_reference"]

_HEADER_TAGS = ["SOPClassUID", "Modality", "FrameOfReferenceUID", "ReferencedFrameOfReferenceSequence",
                "StructureSetROISequence"]


# --------------------------------------------------------------------------------------------
# detection
# --------------------------------------------------------------------------------------------


def _itk_named(path: Path) -> bool:
    return path.name.lower().endswith(io.ITK_SUFFIXES)


def _header(path: Path, patient) -> pydicom.Dataset | None:
    """The few header attributes detection needs, or None when the file is not DICOM."""
    if not path.is_file() or _itk_named(path) or not is_dicom(path):
        return None
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_HEADER_TAGS)
    except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
        raise InputError(f"not a readable DICOM file: {first_line(exc)}", patient=patient, path=path) from None
    if "SOPClassUID" not in ds and "MediaStorageSOPClassUID" in getattr(ds, "file_meta", {}):
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    return ds


def _kind(ds: pydicom.Dataset | None) -> str:
    if ds is None:
        return "voxel"
    sop = str(ds.get("SOPClassUID", ""))
    if sop in dicom_seg.SEG_SOP_CLASSES:
        return "seg"
    if sop == rtstruct.RTSTRUCT_SOP_CLASS:
        return "rtstruct"
    return "dicom"


def roi_format(path: str | os.PathLike, *, patient: str | None = None) -> str:
    """Which reader an ROI file needs: ``"seg"``, ``"rtstruct"``, ``"dicom"`` (another DICOM object,
    not an ROI) or ``"voxel"`` (anything else: ``.seg.nrrd``, labelmaps; also a missing path).

    Only the header of a DICOM file is read; files ending like ITK files are never opened.
    """
    return _kind(_header(Path(path), patient))


def _not_an_roi(path: Path, ds, patient) -> InputError:
    sop = str(ds.get("SOPClassUID", ""))
    what = pydicom.uid.UID(sop).name if sop else "an object without SOP Class UID"
    return InputError(
        f"this DICOM file is a {what} ({ds.get('Modality', 'no modality')}), not an ROI; give a DICOM SEG, "
        "an RT Structure Set, a 3D Slicer .seg.nrrd or a labelmap", patient=patient, path=path)


def _folder_error(path: Path, patient) -> InputError:
    found = sorted(p.name for p in path.iterdir() if _kind(_header(p, patient)) in ("seg", "rtstruct"))
    hint = f"; it holds {found}" if found else ""
    return InputError(f"is a folder; give the ROI file itself{hint}", patient=patient, path=path)


def frame_of_reference_uid(path: str | os.PathLike, *, patient: str | None = None) -> str | None:
    """The Frame of Reference UID of an image or ROI file, from its header (None if it has none).

    Parameters
    ----------
    path : str or os.PathLike
        A DICOM file (for an RTSTRUCT: the first Frame of Reference its ROIs lie in), a folder of a
        DICOM series (one file's header is read), or a non-DICOM file (NIfTI, NRRD: None).

    Returns
    -------
    str or None
        The UID. For comparisons only: keep it out of tables and reports.
    """
    path = Path(path)
    if path.is_dir():
        for candidate in sorted(path.iterdir()):
            ds = _header(candidate, patient)
            if ds is not None:
                return str(ds.get("FrameOfReferenceUID", "")) or None
        return None
    ds = _header(path, patient)
    if ds is None:
        return None
    if _kind(ds) == "rtstruct":
        return next(iter(rtstruct.structure_set_frames_of_reference(ds)), None)
    return str(ds.get("FrameOfReferenceUID", "")) or None


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------


def read_roi(
    path: str | os.PathLike,
    *,
    segment: str | None = None,
    label: int | None = None,
    reference: sitk.Image | str | os.PathLike | None = None,
    patient: str | None = None,
) -> sitk.Image:
    """Read one ROI as a binary mask in LPS.

    Parameters
    ----------
    path : str or os.PathLike
        The ROI file (see the module docstring for the formats).
    segment : str, optional
        Exact segment name: Slicer segment name, SEG Segment Label, RTSTRUCT ROI Name.
    label : int, optional
        Label value: labelmap value or Slicer label value, SEG Segment Number, RTSTRUCT ROI Number.
    reference : SimpleITK.Image or str or os.PathLike, optional
        The grid an RTSTRUCT is rasterised on: an image, or a path :func:`mibgkit.io.load_image`
        reads (then its Frame of Reference is compared with the structure set's: another one is a
        :class:`QCWarning`). Required for an RTSTRUCT, unused by voxel formats.
    patient : str, optional
        Manifest ``patient_id``, named in errors.

    Returns
    -------
    SimpleITK.Image
        uint8 0/1 mask on the file's grid (or ``reference``'s, for an RTSTRUCT).

    Raises
    ------
    InputError
        A folder, a DICOM file that is not an ROI, an RTSTRUCT without ``reference``, or as the
        format's reader raises them.
    GeometryError, SegmentationError
        As the format's reader raises them; every message names the file and the patient.
    """
    p = Path(path)
    if p.is_dir():
        raise _folder_error(p, patient)
    ds = _header(p, patient)
    kind = _kind(ds)
    if kind == "seg":
        return dicom_seg.read_dicom_seg(p, segment=segment, label=label, patient=patient)
    if kind == "rtstruct":
        if reference is None:
            raise InputError(
                "an RT Structure Set holds contours, not voxels, and needs an image to rasterise them on: give "
                "one (mibgkit shape RTSTRUCT --reference IMAGE; read_roi(..., reference=image))",
                patient=patient, path=p)
        uid = name = None
        if isinstance(reference, (str, os.PathLike)):
            name = reference
            uid = frame_of_reference_uid(reference, patient=patient)
            reference = io.load_image(reference, patient=patient)
        return rtstruct.read_rtstruct(p, reference, segment=segment, label=label, patient=patient,
                                      reference_frame_of_reference=uid, reference_name=name)
    if kind == "dicom":
        raise _not_an_roi(p, ds, patient)
    return slicer.read_segmentation(p, segment=segment, label=label, patient=patient)


def list_rois(
    path: str | os.PathLike,
    *,
    patient: str | None = None,
    reference: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """The ROIs a file holds (one row each: ``name``, ``label_value``, and format-specific columns).

    For an RTSTRUCT and a ``reference`` image path, a boolean ``matches_reference`` column says
    whether each ROI lies in the reference's Frame of Reference. No table carries UIDs.
    """
    p = Path(path)
    if p.is_dir():
        raise _folder_error(p, patient)
    ds = _header(p, patient)
    kind = _kind(ds)
    if kind == "seg":
        return dicom_seg.list_seg_segments(p, patient=patient)
    if kind == "rtstruct":
        uid = frame_of_reference_uid(reference, patient=patient) if reference is not None else None
        return rtstruct.list_rtstruct_rois(p, patient=patient, reference_frame_of_reference=uid)
    if kind == "dicom":
        raise _not_an_roi(p, ds, patient)
    return slicer.list_segments(p, patient=patient)


def segment_names(path: str | os.PathLike, *, patient: str | None = None) -> Sequence[str]:
    """The ROI names a file holds (an empty list for a plain labelmap)."""
    return [n for n in list_rois(path, patient=patient)["name"] if n is not None]


# --------------------------------------------------------------------------------------------
# the grid an RTSTRUCT is rasterised on, in a manifest
# --------------------------------------------------------------------------------------------


def _given(value) -> bool:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    return bool(str(value).strip())


def rtstruct_reference(
    rtstruct_path: str | os.PathLike,
    ct_path: str | os.PathLike | None,
    spect_path: str | os.PathLike,
    patient: str | None = None,
) -> sitk.Image:
    """The image a manifest row's RTSTRUCT is rasterised on: the CT when its Frame of Reference UID is
    the structure set's, else the SPECT.

    Parameters
    ----------
    rtstruct_path : str or os.PathLike
        The structure set (the row's ``roi``).
    ct_path : str or os.PathLike or None
        The row's ``ct`` (a DICOM folder or file, NIfTI, NRRD); None, NaN or empty when absent.
    spect_path : str or os.PathLike
        The row's ``spect``.
    patient : str, optional
        Manifest ``patient_id``, named in errors and warnings.

    Returns
    -------
    SimpleITK.Image
        The chosen image, read by :func:`mibgkit.io.load_image`.

    Raises
    ------
    GeometryError
        Both images are DICOM and neither shares the structure set's Frame of Reference (the ROI
        was drawn on another image: its contours cannot be placed on either).

    Warns
    -----
    QCWarning
        The match cannot be checked (a non-DICOM image, or a structure set without Frame of
        Reference); the SPECT is used.

    Notes
    -----
    Only headers are read for the comparison (for a CT folder, one file's); the UIDs are not
    printed.
    """
    header = _header(Path(rtstruct_path), patient)
    if _kind(header) != "rtstruct":
        raise InputError("not an RT Structure Set, so no reference image is needed for it",
                         patient=patient, path=rtstruct_path)
    own = set(rtstruct.structure_set_frames_of_reference(header))
    ct_uid = frame_of_reference_uid(ct_path, patient=patient) if _given(ct_path) else None
    if ct_uid is not None and ct_uid in own:
        return io.load_image(ct_path, patient=patient)
    spect_uid = frame_of_reference_uid(spect_path, patient=patient)
    if spect_uid is not None and spect_uid in own:
        return io.load_image(spect_path, patient=patient)
    unknown = [os.fspath(p) for p, uid in ((ct_path, ct_uid), (spect_path, spect_uid)) if _given(p) and uid is None]
    if not own or unknown:
        why = "the structure set names no Frame of Reference" if not own else \
            f"{' and '.join(unknown)} carry no Frame of Reference UID (not DICOM)"
        who = f"patient {patient}, " if patient is not None else ""
        warnings.warn(f"{who}file {os.fspath(rtstruct_path)}: {why}, so the image the ROI was drawn on "
                      f"cannot be checked; its contours are rasterised on the SPECT grid ({os.fspath(spect_path)})",
                      QCWarning, stacklevel=2)
        return io.load_image(spect_path, patient=patient)
    images = (f"matches neither the CT ({os.fspath(ct_path)}) nor the SPECT ({os.fspath(spect_path)})"
              if _given(ct_path) else f"does not match the SPECT ({os.fspath(spect_path)}) and the row has no CT")
    raise GeometryError(
        f"the structure set's Frame of Reference {images}: the ROI "
        "was drawn on another image; give that image as the row's ct, or rasterise the ROI yourself with "
        "mibgkit shape --reference", patient=patient, path=rtstruct_path)

"""DICOM Segmentation (SEG) objects as ROI masks: one segment, on the SEG's own grid, in LPS.

A DICOM SEG (SOP Class 1.2.840.10008.5.1.4.1.1.66.4; also the Label Map Segmentation Storage class
1.2.840.10008.5.1.4.1.1.66.7) stores each segment as a stack of frames, each with its own Plane
Position. It is read here with highdicom (``highdicom.seg.Segmentation``, the reader the DICOM
community maintains), never by hand; this module only chooses the segment, checks the geometry and
turns highdicom's volume into the binary ``SimpleITK.Image`` that :func:`mibgkit.slicer.read_segmentation`
returns for a ``.seg.nrrd``.

Conventions
-----------
- Physical space is DICOM patient space, LPS (mm). A segment is chosen by its exact, case-sensitive
  Segment Label (``segment=``) or by its Segment Number (``label=``).
- Geometry comes from the SEG alone: per-frame Plane Position (Patient), the Plane Orientation,
  Pixel Measures (Pixel Spacing) and Spacing Between Slices. Slice Thickness is *not* the spacing
  (a SEG's Slice Thickness may differ from it); it is used only as a last resort, with a
  :class:`~mibgkit.errors.QCWarning`, when Spacing Between Slices is absent and the frame positions
  cannot tell the spacing themselves (a single frame, or frames with gaps).
- Frames may be sparse (only slices holding a segment, highdicom's default when writing) and in
  any order (ascending, descending, shuffled): highdicom sorts them by position along the slice
  normal. Its volume (``Segmentation.get_volume``) covers only the slices from the first to the last
  position that has a frame (of any segment), with its own affine; the mask is placed through that
  affine (:func:`mibgkit.geometry.image_on_affine`), so its grid is the SEG's, not the source
  image's full extent.
- highdicom's volume index is (slice, row, column), and its slices run along ``column × row`` (for
  an axial HFS SEG: from head to feet). The returned image uses ITK's order (i = column, j = row,
  k = slice) and, like :func:`mibgkit.io.load_image` for DICOM, is right-handed: k runs along
  ``row × column`` direction cosines. A SEG drawn on a CT series therefore lies on that CT's lattice.
- Segments are read one at a time (``get_volume(segment_numbers=[n])``), so overlapping segments are
  each returned whole.
- BINARY frames are 0/1. FRACTIONAL frames (PROBABILITY or OCCUPANCY) hold integers ``v`` in
  ``0..MaximumFractionalValue``; a voxel is in the ROI when ``v >= 0.5 * MaximumFractionalValue``
  (compared as ``2 v >= max``, on the stored integers, so no rounding decides it).
"""

from __future__ import annotations

import os
import sqlite3
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import SimpleITK as sitk
from pydicom.errors import InvalidDicomError

from .errors import GeometryError, InputError, QCWarning, SegmentationError, first_line
from .geometry import image_on_affine

__all__ = ["SEG_SOP_CLASSES", "read_dicom_seg", "list_seg_segments"]

#: Segmentation Storage and Label Map Segmentation Storage.
SEG_SOP_CLASSES = ("1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.66.7")

#: Relative tolerance on frame spacings (of the spacing), as highdicom's default.
_SPACING_RTOL = 0.01


# --------------------------------------------------------------------------------------------
# reading and checking the dataset
# --------------------------------------------------------------------------------------------


def _dataset(path, patient, *, pixels: bool) -> pydicom.Dataset:
    path = Path(path)
    if not path.is_file():
        raise InputError("file not found", patient=patient, path=path)
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=not pixels)
    except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
        raise InputError(f"not a readable DICOM file: {first_line(exc)}", patient=patient, path=path) from None
    meta = getattr(ds, "file_meta", None) or {}
    sop = str(ds.get("SOPClassUID", "") or meta.get("MediaStorageSOPClassUID", ""))
    if sop not in SEG_SOP_CLASSES:
        name = pydicom.uid.UID(sop).name if sop else "no SOP Class UID"
        raise InputError(f"not a DICOM Segmentation (SOP Class {name}); give a DICOM SEG file",
                         patient=patient, path=path)
    if pixels and "PixelData" not in ds:
        raise InputError("the SEG has no Pixel Data: the file is truncated or incomplete", patient=patient, path=path)
    if pixels:
        _check_pixel_data_length(ds, path, patient)
    segments = ds.get("SegmentSequence")
    if segments is not None and not isinstance(segments, pydicom.sequence.Sequence):
        raise InputError("the SEG's Segment Sequence is not a sequence (wrong VR); the SEG is damaged",
                         patient=patient, path=path)
    if not segments:
        raise SegmentationError("the SEG has no Segment Sequence (no segments)", patient=patient, path=path)
    return ds


def _check_pixel_data_length(ds, path, patient) -> None:
    """Uncompressed Pixel Data must hold every frame (a truncated file otherwise decodes as garbage)."""
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is None or syntax.is_compressed:
        return
    try:
        bits = int(ds.NumberOfFrames) * int(ds.Rows) * int(ds.Columns) * int(ds.BitsAllocated)
    except (AttributeError, TypeError, ValueError):
        raise InputError("the SEG lacks Number of Frames, Rows, Columns or Bits Allocated",
                         patient=patient, path=path) from None
    need = (bits + 7) // 8
    if len(ds.PixelData) < need:
        raise InputError(f"the SEG's Pixel Data holds {len(ds.PixelData)} bytes but its {int(ds.NumberOfFrames)} "
                         f"frames need {need}: the file is truncated", patient=patient, path=path)


def _integer(value) -> int | None:
    """A header value as an int, or None when it is missing, empty, multi-valued or not an integer."""
    if isinstance(value, pydicom.multival.MultiValue) or value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if np.isfinite(number) and number == int(number) else None


def _segment_number(item, k: int, path, patient) -> int:
    """An item's Segment Number; a missing or malformed one is an error naming the item."""
    number = _integer(item.get("SegmentNumber"))
    if number is None or number < 0:  # 0: a LABELMAP's background
        raise InputError(f"Segment Sequence item {k} has no valid Segment Number "
                         f"({item.get('SegmentNumber', 'missing')!r}); the SEG is damaged", patient=patient, path=path)
    return number


def _real_segments(ds, path=None, patient=None) -> list:
    """Segment Sequence items, less a LABELMAP's background (its number is the Pixel Padding Value)."""
    background = _integer(ds.get("PixelPaddingValue")) if str(ds.get("SegmentationType", "")) == "LABELMAP" else None
    return [s for k, s in enumerate(ds.SegmentSequence, start=1)
            if background is None or _segment_number(s, k, path, patient) != background]


def _segments(ds, path=None, patient=None) -> list[tuple[int, str]]:
    items = _real_segments(ds, path, patient)
    out = [(_segment_number(s, k, path, patient), str(s.get("SegmentLabel", "") or "")) for k, s in enumerate(items, 1)]
    numbers = [n for n, _ in out]
    if len(set(numbers)) != len(numbers):
        raise InputError(f"the Segment Sequence repeats Segment Numbers ({sorted(numbers)}); the SEG is damaged",
                         patient=patient, path=path)
    return out


def _listing(ds, path=None, patient=None) -> str:
    return ", ".join(f"{label!r} (number {number})" for number, label in _segments(ds, path, patient))


def _choose_segment(ds, segment, label, path, patient) -> tuple[int, str]:
    """(Segment Number, Segment Label) of the segment the caller asked for."""
    segments = _segments(ds, path, patient)
    if segment is not None:
        found = [s for s in segments if s[1] == segment]
        if not found:
            raise SegmentationError(
                f"no segment labelled {segment!r} (Segment Labels are case-sensitive); segments in the "
                f"SEG: {_listing(ds)}", patient=patient, path=path)
        if len(found) > 1:
            raise SegmentationError(
                f"{len(found)} segments are labelled {segment!r} (numbers {[s[0] for s in found]}); "
                "choose one by Segment Number (--label / roi_label)", patient=patient, path=path)
        return found[0]
    if label is not None:
        found = [s for s in segments if s[0] == int(label)]
        if not found:
            raise SegmentationError(f"no segment has Segment Number {label}; segments in the SEG: {_listing(ds)}",
                                    patient=patient, path=path)
        return found[0]
    if len(segments) == 1:
        return segments[0]
    raise SegmentationError(f"the SEG has {len(segments)} segments; choose one by Segment Label: {_listing(ds)}",
                            patient=patient, path=path)


def _functional(ds, frame_item, sequence: str, attribute: str):
    """``attribute`` of a functional group, per-frame first, then shared (None if absent)."""
    holders = [frame_item]
    shared = ds.get("SharedFunctionalGroupsSequence")
    if isinstance(shared, pydicom.sequence.Sequence) and shared:
        holders.append(shared[0])
    for holder in holders:
        if not isinstance(holder, pydicom.Dataset):  # absent, or damaged (wrong VR)
            continue
        seq = holder.get(sequence)
        if isinstance(seq, pydicom.sequence.Sequence) and seq and isinstance(seq[0], pydicom.Dataset) \
                and attribute in seq[0]:
            return seq[0].get(attribute)
    return None


def _check_geometry(ds, path, patient) -> tuple[np.ndarray, np.ndarray]:
    """Every frame's Image Position (n × 3, mm) and the shared orientation (6 cosines).

    Raises GeometryError naming the frame and the attribute that is missing.
    """
    if "FrameOfReferenceUID" not in ds:
        raise GeometryError("the SEG has no Frame of Reference UID, so it is not in patient space "
                            "(a slide or a SEG without geometry)", patient=patient, path=path)
    n = int(ds.get("NumberOfFrames", 0) or 0)
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if n < 1 or per_frame is None or len(per_frame) != n:
        raise InputError(f"the SEG has {n} frames but {0 if per_frame is None else len(per_frame)} items in its "
                         "Per-Frame Functional Groups Sequence", patient=patient, path=path)
    positions, orientations = [], set()
    labelmap = str(ds.get("SegmentationType", "")) == "LABELMAP"
    segment_numbers = {s for s, _ in _segments(ds, path, patient)}
    for f, item in enumerate(per_frame, start=1):
        if not isinstance(item, pydicom.Dataset):
            raise InputError(f"frame {f}'s Per-Frame Functional Groups item is not a dataset (wrong VR); the SEG is "
                             "damaged", patient=patient, path=path)
        if not labelmap:  # every BINARY / FRACTIONAL frame names the segment it holds
            ref = _integer(_functional(ds, item, "SegmentIdentificationSequence", "ReferencedSegmentNumber"))
            if ref not in segment_numbers:
                raise InputError(f"frame {f} has no valid Segment Identification Sequence > Referenced Segment Number "
                                 f"(one of the Segment Numbers {sorted(segment_numbers)}); the SEG is damaged",
                                 patient=patient, path=path)
        ipp = _functional(ds, item, "PlanePositionSequence", "ImagePositionPatient")
        iop = _functional(ds, item, "PlaneOrientationSequence", "ImageOrientationPatient")
        pixel_spacing = _functional(ds, item, "PixelMeasuresSequence", "PixelSpacing")
        for value, vm, what in ((ipp, 3, "Plane Position Sequence > Image Position (Patient)"),
                                (iop, 6, "Plane Orientation Sequence > Image Orientation (Patient)"),
                                (pixel_spacing, 2, "Pixel Measures Sequence > Pixel Spacing")):
            if value is None or value == "":
                raise GeometryError(
                    f"frame {f} has no {what}, so it cannot be placed in space; export the SEG with "
                    "per-frame geometry (every DICOM SEG writer does)", patient=patient, path=path)
            try:
                numbers = [float(v) for v in value]
            except (TypeError, ValueError):
                numbers = []
            if len(numbers) != vm or not np.all(np.isfinite(numbers)):
                raise GeometryError(f"frame {f} has {what} {value!r}; expected {vm} finite numbers",
                                    patient=patient, path=path)
        positions.append([float(v) for v in ipp])
        orientations.add(tuple(round(float(v), 6) for v in iop))
    if len(orientations) != 1:
        raise GeometryError(f"frames have {len(orientations)} different orientations; a SEG volume needs one",
                            patient=patient, path=path)
    return np.asarray(positions, float), np.asarray(next(iter(orientations)), float)


def _ensure_slice_spacing(ds, positions, orientation, path, patient) -> None:
    """Make sure highdicom sees the true slice spacing (edits ``ds`` in memory only).

    Spacing Between Slices, when the SEG gives it, is the spacing. Without it, frames at regular
    distances give it; a single frame, or frames with gaps, give none: Slice Thickness is then
    taken (QCWarning) when the distances are whole multiples of it, else the SEG cannot be placed.
    """
    first = ds.PerFrameFunctionalGroupsSequence[0]
    if _functional(ds, first, "PixelMeasuresSequence", "SpacingBetweenSlices") is not None:
        return
    normal = np.cross(orientation[:3], orientation[3:])
    d = np.unique(np.round(positions @ normal, 6))
    steps = np.diff(d)
    if steps.size and np.allclose(steps, steps[0], rtol=_SPACING_RTOL, atol=0):
        return  # regular frames: highdicom finds the spacing from them
    thickness = _functional(ds, first, "PixelMeasuresSequence", "SliceThickness")
    thickness = float(thickness) if thickness not in (None, "") else None
    multiples = None if not thickness or thickness <= 0 else (d - d[0]) / thickness
    if multiples is None or not np.allclose(multiples, np.round(multiples), atol=_SPACING_RTOL):
        what = "it has a single frame position" if d.size == 1 else \
            f"its frames have gaps ({np.round(steps, 4).tolist()} mm apart)"
        raise GeometryError(
            f"the SEG has no Spacing Between Slices and {what}, so its slice spacing is unknown; "
            "re-export it with Spacing Between Slices in the Pixel Measures", patient=patient, path=path)
    who = f"patient {patient}, " if patient is not None else ""
    what = "one frame position" if d.size == 1 else "gaps between its frames"
    warnings.warn(f"{who}file {os.fspath(path)}: the SEG has no Spacing Between Slices and {what}; its Slice "
                  f"Thickness ({thickness:g} mm) is taken as the slice spacing", QCWarning, stacklevel=3)
    shared = list(ds.get("SharedFunctionalGroupsSequence") or [])[:1]
    for holder in shared + list(ds.PerFrameFunctionalGroupsSequence):
        seq = holder.get("PixelMeasuresSequence")
        if seq:
            seq[0].SpacingBetweenSlices = pydicom.valuerep.DSfloat(thickness, auto_format=True)


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------


def read_dicom_seg(
    path: str | os.PathLike,
    *,
    segment: str | None = None,
    label: int | None = None,
    patient: str | None = None,
) -> sitk.Image:
    """Read one segment of a DICOM SEG as a binary mask on the SEG's grid, in LPS.

    Parameters
    ----------
    path : str or os.PathLike
        A DICOM Segmentation file (BINARY, FRACTIONAL or LABELMAP).
    segment : str, optional
        Exact, case-sensitive Segment Label.
    label : int, optional
        Segment Number. Without ``segment`` or ``label`` the only segment is taken.
    patient : str, optional
        Manifest ``patient_id``, named in errors.

    Returns
    -------
    SimpleITK.Image
        uint8 0/1 mask over the slices highdicom's volume covers (first to last frame position of
        the SEG, sparse positions empty) and the frames' full rows × columns; spacing (mm): Pixel
        Spacing (column, row) and the slice spacing; origin and direction cosines in LPS; right-handed
        (k along row × column).

    Raises
    ------
    InputError
        Missing or unreadable file, not a SEG, both ``segment`` and ``label`` given, or highdicom
        cannot decode the frames.
    GeometryError
        A frame without Plane Position, Plane Orientation or Pixel Spacing; no Frame of Reference;
        frames that do not stack into a regularly spaced volume; an unknown slice spacing.
    SegmentationError
        No such segment (the message lists Segment Labels and Numbers), an ambiguous label, several
        segments and none chosen, or an empty segment.

    Warns
    -----
    QCWarning
        The slice spacing had to be taken from Slice Thickness.

    Notes
    -----
    highdicom's ``get_volume`` affine ``M_hd`` maps (slice, row, column) to LPS; the returned image
    is placed by ``M = M_hd[:, [2, 1, 0, 3]]`` (i = column, j = row, k = slice), flipped along k when
    ``M[:, 2]`` points against ``M[:, 0] × M[:, 1]``.

    Examples
    --------
    ::

        mask = read_dicom_seg("tumour_seg.dcm", segment="tumour", patient="NB001")
    """
    import highdicom as hd

    if segment is not None and label is not None:
        raise InputError("give either a Segment Label or a Segment Number, not both", patient=patient, path=path)
    ds = _dataset(path, patient, pixels=True)
    number, name = _choose_segment(ds, segment, label, path, patient)
    positions, orientation = _check_geometry(ds, path, patient)
    _ensure_slice_spacing(ds, positions, orientation, path, patient)
    kind = ds.get("SegmentationType")
    if not isinstance(kind, str) or kind not in ("BINARY", "FRACTIONAL", "LABELMAP"):
        raise InputError(f"the SEG's Segmentation Type is {kind!r}; expected BINARY, FRACTIONAL or LABELMAP",
                         patient=patient, path=path)
    maximum = _integer(ds.get("MaximumFractionalValue"))
    if kind == "FRACTIONAL" and (maximum is None or maximum < 1):
        raise InputError(f"the FRACTIONAL SEG's Maximum Fractional Value is {ds.get('MaximumFractionalValue')!r}; "
                         "expected a positive integer", patient=patient, path=path)
    try:
        seg = hd.seg.Segmentation.from_dataset(ds, copy=False)
    except (AttributeError, KeyError, TypeError, ValueError, IndexError, RuntimeError, NotImplementedError,
            sqlite3.Error) as exc:  # highdicom validates as it parses (frame index in sqlite); damage fails so
        raise InputError(f"highdicom cannot read the SEG: {first_line(exc)}", patient=patient, path=path) from None
    fractional = seg.segmentation_type == hd.seg.SegmentationTypeValues.FRACTIONAL
    try:
        volume = seg.get_volume(segment_numbers=[number], combine_segments=False, rescale_fractional=False,
                                allow_missing_positions=True)
    except RuntimeError as exc:
        raise GeometryError(f"the SEG's frames do not form one regularly spaced volume: {first_line(exc)}",
                            patient=patient, path=path) from None
    except (ValueError, KeyError, NotImplementedError, AttributeError, TypeError, IndexError) as exc:
        raise InputError(f"highdicom cannot decode the SEG's frames: {first_line(exc)}",
                         patient=patient, path=path) from None
    values = np.asarray(volume.array)
    if values.ndim == 4:
        values = values[..., 0]
    if fractional:
        inside = 2 * values.astype(np.int64) >= maximum
    else:
        inside = values != 0
    if not inside.any():
        raise SegmentationError(f"segment {name!r} (number {number}) is empty (no voxels)", patient=patient, path=path)
    affine = np.asarray(volume.affine, float)
    matrix = affine[:, [2, 1, 0, 3]]
    if np.dot(np.cross(matrix[:3, 0], matrix[:3, 1]), matrix[:3, 2]) < 0:
        inside = inside[::-1]
        matrix[:3, 3] = matrix[:3, 3] + (inside.shape[0] - 1) * matrix[:3, 2]
        matrix[:3, 2] = -matrix[:3, 2]
    return image_on_affine(inside.astype(np.uint8), matrix, path=path, patient=patient)


def list_seg_segments(path: str | os.PathLike, *, patient: str | None = None) -> pd.DataFrame:
    """The segments of a DICOM SEG, one row each, from its header (pixels are not read).

    Returns
    -------
    pandas.DataFrame
        Columns ``name`` (Segment Label), ``label_value`` (Segment Number), ``n_frames`` (frames
        holding the segment), ``segmentation_type`` (``BINARY``, ``FRACTIONAL``, ``LABELMAP``),
        ``algorithm_type`` (``MANUAL``, ``SEMIAUTOMATIC``, ``AUTOMATIC``), ``algorithm_name``,
        ``property_category`` and ``property_type`` (code meanings); no UIDs.
    """
    ds = _dataset(path, patient, pixels=False)
    counts: dict[int, int] = {}
    for item in ds.get("PerFrameFunctionalGroupsSequence", []):
        ident = item.get("SegmentIdentificationSequence")
        if ident:
            n = int(ident[0].ReferencedSegmentNumber)
            counts[n] = counts.get(n, 0) + 1

    def meaning(s, keyword):
        seq = s.get(keyword)
        return str(seq[0].get("CodeMeaning")) if seq else None

    rows = [{
        "name": str(s.get("SegmentLabel", "")),
        "label_value": int(s.SegmentNumber),
        "n_frames": counts.get(int(s.SegmentNumber), int(ds.get("NumberOfFrames", 0) or 0)
                               if str(ds.get("SegmentationType")) == "LABELMAP" else 0),
        "segmentation_type": str(ds.get("SegmentationType", "")),
        "algorithm_type": str(s.get("SegmentAlgorithmType", "")) or None,
        "algorithm_name": str(s.get("SegmentAlgorithmName", "")) or None,
        "property_category": meaning(s, "SegmentedPropertyCategoryCodeSequence"),
        "property_type": meaning(s, "SegmentedPropertyTypeCodeSequence"),
    } for s in _real_segments(ds)]
    return pd.DataFrame(rows, columns=["name", "label_value", "n_frames", "segmentation_type", "algorithm_type",
                                       "algorithm_name", "property_category", "property_type"])

"""NM Image IOD (DICOM PS3.3 A.5, C.8.4): the values and the geometry of reconstructed SPECT.

:func:`read_nm_volume` reads one NM multi-frame file of a reconstructed volume (Image Type value 3
``RECON TOMO``); :func:`read_nm_slices` turns the single-frame NM files of one folder, already ordered
by :mod:`mibgkit.dicom_image`, into values. Both are reached through :func:`mibgkit.io.load_image`.

Values
-----------------
The image holds what the file means, not the stored integers:

1. a **Real World Value Mapping** (Real World Value Mapping Sequence (0040,9096), PS3.3 C.7.6.16-12b):
   ``value = stored × Real World Value Slope + Real World Value Intercept``, in float64 (the slope is
   an FD). Looked up per frame in the Per-Frame Functional Groups Sequence, then the Shared Functional
   Groups Sequence, then the top level, as files give them. Of several mapping items, the first whose
   unit is not counts is taken (a quantitative and a counts mapping side by side), else the first.
   Its unit is the UCUM Code Value of the Measurement Units Code Sequence (e.g. ``Bq/ml``;
   ``{counts}`` is reported as ``counts``); a mapping without units is ``counts``. A mapping by LUT
   (Real World Value LUT Data) is refused.
2. else **Rescale Slope/Intercept** (per frame in a Pixel Value Transformation Sequence of the
   functional groups, else at the top level), in float32 when it changes values;
3. else the stored values as they are (integer counts; Float Pixel Data (7FE0,0008) and Double Float
   Pixel Data (7FE0,0009) as float32 / float64).

The unit goes with the image as the metadata key ``"uptake_unit"``.

Geometry (PS3.3 C.8.4.10 NM Detector, C.8.4.15 NM Reconstruction)
-----------------------------------------------------------------
Image Position and Orientation (Patient) of the first frame come from the first item of the Detector
Information Sequence or, where a vendor writes them only there, the top level; where both are given
they must agree. Slice ``s`` (the Slice Vector's value for a frame, file order without one) lies at
``IPP + (s - s1) × Spacing Between Slices × (row × column)``; a negative Spacing Between Slices stacks
the slices against the normal, and such volumes are returned reversed (right-handed, same physical
positions). Slice Thickness is the nominal thickness of a slice, not the distance between slices
(they differ on some systems), and is never used: without Spacing Between Slices the file is refused.
A Slice Vector that is not a permutation of ``1..Number of Frames``, a Number of Slices other than the
number of frames, or frames that vary along another vector (gated, dynamic) are errors naming the
attribute.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk

from .dicom_image import (
    _orientation_vectors,
    _pixel_spacing,
    _set_geometry,
    _short,
    as_int,
    as_numbers,
    as_sequence,
    as_text,
    attribute,
    decode_frames,
    label,
    pixel_layout,
)
from .errors import GeometryError, InputError

__all__ = ["read_nm_volume", "read_nm_slices", "COUNTS"]

#: NM ``ImageType`` value 3 that hold one reconstructed volume per file.
_NM_VOLUME_TYPES = ("RECON TOMO", "RECON GATED TOMO")

#: The unit reported for counts (UCUM ``{counts}``, or no unit given).
COUNTS = "counts"

#: UCUM spellings read as counts.
_COUNT_CODES = {"{counts}", "{count}", "counts", "count", "cnts", "1"}


def read_nm_volume(ds: pydicom.Dataset, p: Path, patient: str | None) -> sitk.Image:
    """NM Image Storage multi-frame file → 3-D image with geometry (LPS, mm) and ``uptake_unit``.

    Parameters
    ----------
    ds : pydicom.Dataset
        The file, read with its pixel data.
    p : pathlib.Path
        Its path, for messages.
    patient : str, optional
        Manifest ``patient_id``, for messages.

    Returns
    -------
    SimpleITK.Image
        Values as the module notes define them.

    Raises
    ------
    InputError, GeometryError
        Naming the file and the attribute that is missing or inconsistent.
    """
    kw = dict(path=p, patient=patient)
    image_type = attribute(ds, "ImageType", as_text, **kw) or []
    kind = image_type[2] if len(image_type) > 2 else None
    if kind is not None and kind not in _NM_VOLUME_TYPES:
        raise InputError(f"is an NM {kind} image (planar or projection frames), not a reconstructed "
                         f"SPECT volume ({label('ImageType')} value 3 RECON TOMO)", **kw)
    n_frames = attribute(ds, "NumberOfFrames", as_int(1), **kw) or 1
    if n_frames < 2:
        raise InputError(f"is a 2-D image (an NM file with one frame: {label('NumberOfFrames')} "
                         f"{'missing' if 'NumberOfFrames' not in ds else n_frames}); a 3-D SPECT volume is "
                         "needed — if this is one slice of a single-frame export, give its folder", **kw)
    layout = pixel_layout(ds, n_frames, p, patient)
    slice_index = _slice_index(ds, n_frames, p, patient)
    ipp, iop = _position_orientation(ds, p, patient)
    row, col = _orientation_vectors(iop, p, patient)
    pixel_spacing = _pixel_spacing(ds, p, patient)
    step = _slice_step(ds, p, patient)
    normal = np.cross(row, col)

    frames = decode_frames(ds, layout, p, patient)
    values, unit = _mapped_values(ds, frames, _frame_groups(ds, n_frames, p, patient), p, patient)

    order = np.argsort(slice_index, kind="stable")
    volume = values if np.array_equal(order, np.arange(n_frames)) else values[order]  # no copy when in order
    first = ipp + (1 - slice_index[0]) * step * normal  # centre of slice 1
    if step < 0:  # stacked against the normal: reverse to keep the z axis = row × column
        volume = volume[::-1]
        first = first + (n_frames - 1) * step * normal
    image = sitk.GetImageFromArray(np.ascontiguousarray(volume))
    _set_geometry(image, first, (pixel_spacing[1], pixel_spacing[0], abs(step)), row, col, p, patient)
    image.SetMetaData("uptake_unit", unit)
    return image


def read_nm_slices(datasets, paths, patient: str | None) -> tuple[np.ndarray, str]:
    """Values ``(slices, rows, columns)`` and their unit from single-frame NM files in slice order.

    Each file's own mapping applies (Real World Value Mapping, else Rescale, per file); the files must
    agree on the unit. Geometry is the caller's (:mod:`mibgkit.dicom_image` stacks the slices).
    """
    parts, units = [], set()
    for ds, p in zip(datasets, paths):
        frames = decode_frames(ds, pixel_layout(ds, 1, p, patient), p, patient)
        values, unit = _mapped_values(ds, frames, [None], p, patient)
        parts.append(values)
        units.add(unit)
        if len(units) > 1:
            raise InputError(f"slices differ in unit ({', '.join(sorted(units))}; "
                             f"{label('RealWorldValueMappingSequence')})", patient=patient, path=p)
    kinds = {v.dtype for v in parts}
    dtype = np.result_type(*kinds) if len(kinds) > 1 else parts[0].dtype
    return np.concatenate([v.astype(dtype, copy=False) for v in parts]), units.pop()


# --------------------------------------------------------------------------------------------
# values
# --------------------------------------------------------------------------------------------


def _frame_groups(ds, n_frames: int, p, patient) -> list:
    """Per frame, its Per-Frame Functional Groups item (None without that sequence)."""
    items = attribute(ds, "PerFrameFunctionalGroupsSequence", as_sequence, path=p, patient=patient)
    if items is None:
        return [None] * n_frames
    if len(items) != n_frames:
        raise InputError(f"{label('PerFrameFunctionalGroupsSequence')} has {len(items)} items for "
                         f"{label('NumberOfFrames')} {n_frames}", patient=patient, path=p)
    return items


def _mapped_values(ds, frames: np.ndarray, per_frame: list, p, patient) -> tuple[np.ndarray, str]:
    """Stored frames → values and unit, by the rules of the module notes."""
    kw = dict(path=p, patient=patient)
    shared = attribute(ds, "SharedFunctionalGroupsSequence", as_sequence, **kw)
    levels = [(f"{label('SharedFunctionalGroupsSequence')} item 1", shared[0])] if shared else []
    top_rwv = [_rwv(item, within, p, patient) for within, item in levels] + [_rwv(ds, None, p, patient)]
    top_rescale = [_rescale(item, within, p, patient) for within, item in levels] + [_rescale(ds, None, p, patient)]
    mappings = []
    common = None  # the mapping of frames without a per-frame item (the same for all of them)
    for k, item in enumerate(per_frame):
        if item is None:
            if common is None:
                found = next((m for m in top_rwv if m is not None), None)
                common = (("rwv", *found) if found is not None else
                          ("rescale", *next((m for m in top_rescale if m is not None), (1.0, 0.0)), COUNTS))
            mappings.append(common)
            continue
        within = f"{label('PerFrameFunctionalGroupsSequence')} item {k + 1}"
        rwv = [_rwv(item, within, p, patient)] if item is not None else []
        rescale = [_rescale(item, within, p, patient)] if item is not None else []
        found = next((m for m in rwv + top_rwv if m is not None), None)
        mappings.append(("rwv", *found) if found is not None else
                        ("rescale", *next((m for m in rescale + top_rescale if m is not None), (1.0, 0.0)), COUNTS))
    kinds = {m[0] for m in mappings}
    if len(kinds) > 1:
        raise InputError(f"some frames have a {label('RealWorldValueMappingSequence')} and others not",
                         **kw)
    units = {m[3] for m in mappings}
    if len(units) > 1:
        raise InputError(f"frames differ in unit ({', '.join(sorted(units))}) in their "
                         f"{label('RealWorldValueMappingSequence')}", **kw)
    slopes = np.array([m[1] for m in mappings])[:, None, None]
    intercepts = np.array([m[2] for m in mappings])[:, None, None]
    if kinds == {"rwv"}:
        values = frames.astype(np.float64) * slopes + intercepts
    elif np.any(slopes != 1) or np.any(intercepts != 0):
        values = (frames.astype(np.float64) * slopes + intercepts).astype(np.float32)
    else:
        values = frames
    return values, units.pop()


def _rwv(item, within, p, patient) -> tuple[float, float, str] | None:
    """(slope, intercept, unit) of the Real World Value Mapping Sequence of ``item``, if any."""
    kw = dict(path=p, patient=patient)
    seq = attribute(item, "RealWorldValueMappingSequence", as_sequence, within=within, **kw)
    if not seq:
        return None
    parsed = []
    for k, entry in enumerate(seq, 1):
        where = f"{label('RealWorldValueMappingSequence', within)} item {k}"
        slope = attribute(entry, "RealWorldValueSlope", as_numbers(1), within=where, **kw)
        if slope is None:
            lut = "RealWorldValueLUTData" in entry
            raise InputError(f"{where} maps by {label('RealWorldValueLUTData')}, which is not supported"
                             if lut else f"{where} has no {label('RealWorldValueSlope')}", **kw)
        if slope == 0:
            raise InputError(f"{label('RealWorldValueSlope', where)} is 0", **kw)
        intercept = attribute(entry, "RealWorldValueIntercept", as_numbers(1), within=where, **kw) or 0.0
        units = attribute(entry, "MeasurementUnitsCodeSequence", as_sequence, within=where, **kw)
        code = None
        if units:
            code = attribute(units[0], "CodeValue", lambda v: str(v).strip(),
                             within=f"{label('MeasurementUnitsCodeSequence', where)} item 1", **kw)
        unit = COUNTS if code is None or code.lower() in _COUNT_CODES else code
        parsed.append((slope, intercept, unit))
    return next((m for m in parsed if m[2] != COUNTS), parsed[0])


def _rescale(item, within, p, patient) -> tuple[float, float] | None:
    """(slope, intercept) of Rescale Slope/Intercept in ``item`` (or its Pixel Value Transformation)."""
    kw = dict(path=p, patient=patient)
    if within is not None:  # a functional group item
        seq = attribute(item, "PixelValueTransformationSequence", as_sequence, within=within, **kw)
        if not seq:
            return None
        item, within = seq[0], f"{label('PixelValueTransformationSequence', within)} item 1"
    slope = attribute(item, "RescaleSlope", as_numbers(1), within=within, **kw)
    intercept = attribute(item, "RescaleIntercept", as_numbers(1), within=within, **kw)
    if slope is None and intercept is None:
        return None
    if slope == 0:
        raise InputError(f"{label('RescaleSlope', within)} is 0", **kw)
    return (1.0 if slope is None else slope), (0.0 if intercept is None else intercept)


# --------------------------------------------------------------------------------------------
# geometry
# --------------------------------------------------------------------------------------------


def _slice_index(ds, n_frames: int, p, patient) -> np.ndarray:
    """1-based slice number of each frame, from the Slice Vector (frames in file order otherwise)."""
    kw = dict(path=p, patient=patient)
    pointers = attribute(ds, "FrameIncrementPointer", **kw)
    if pointers is not None:
        pointers = [pointers] if isinstance(pointers, pydicom.tag.BaseTag) else list(pointers)
        for tag in pointers:
            try:
                tag = pydicom.tag.Tag(tag)
            except Exception:
                raise InputError(f"{label('FrameIncrementPointer')} holds {tag!r}, not a tag", **kw) from None
            keyword = pydicom.datadict.keyword_for_tag(tag) or str(tag)
            if keyword == "SliceVector" or tag not in ds:
                continue
            vector = attribute(ds, keyword, lambda v: np.atleast_1d(np.asarray(v, dtype=float)), **kw)
            if vector is not None and len(set(vector.tolist())) > 1:
                raise InputError(f"frames vary along {keyword} (e.g. a gated study): the file holds "
                                 "several volumes; only one 3-D volume per file is supported", **kw)
    n_slices = attribute(ds, "NumberOfSlices", as_int(), **kw)
    if n_slices is not None and n_slices != n_frames:
        raise GeometryError(f"{label('NumberOfSlices')} is {n_slices} but {label('NumberOfFrames')} is "
                            f"{n_frames}; one reconstructed volume has one frame per slice", **kw)
    vector = attribute(ds, "SliceVector", _int_vector, error=GeometryError, **kw)
    if vector is None:
        return np.arange(1, n_frames + 1)
    if len(vector) != n_frames or sorted(vector.tolist()) != list(range(1, n_frames + 1)):
        raise GeometryError(f"{label('SliceVector')} {_short(vector)} is not a permutation of 1..{n_frames} "
                            f"for {label('NumberOfFrames')} {n_frames} (missing or repeated slices)", **kw)
    return vector


def _int_vector(value) -> np.ndarray:
    """Converter: integers, one per value (an integer array as it is, else value by value)."""
    values = np.atleast_1d(value)
    if values.dtype.kind in "iu":
        return values.astype(np.int64)
    return np.asarray([as_int()(x) for x in values])


def _position_orientation(ds, p, patient) -> tuple[np.ndarray, np.ndarray]:
    """Image Position/Orientation (Patient) of frame 1: Detector Information Sequence, else top level."""
    kw = dict(path=p, patient=patient, error=GeometryError)
    found: dict[str, list] = {"ImagePositionPatient": [], "ImageOrientationPatient": []}
    items = attribute(ds, "DetectorInformationSequence", as_sequence, **kw) or []
    sources = ([(f"{label('DetectorInformationSequence')} item 1", items[0])] if items else []) + [(None, ds)]
    for within, item in sources:
        for keyword, n in (("ImagePositionPatient", 3), ("ImageOrientationPatient", 6)):
            value = attribute(item, keyword, as_numbers(n), within=within, **kw)
            if value is not None:
                found[keyword].append((within, value))
    for keyword, values in found.items():
        if not values:
            raise GeometryError(f"NM file has no Image Position/Orientation (Patient): {label(keyword)} is "
                                f"in neither the {label('DetectorInformationSequence')} nor the top level; "
                                "the volume cannot be placed in space", patient=patient, path=p)
        if len(values) == 2 and np.abs(values[0][1] - values[1][1]).max() > 1e-3:
            raise GeometryError(f"{label(keyword)} {_short(values[0][1])} in the "
                                f"{label('DetectorInformationSequence')} differs from the top-level "
                                f"{_short(values[1][1])}", patient=patient, path=p)
    return found["ImagePositionPatient"][0][1], found["ImageOrientationPatient"][0][1]


def _slice_step(ds, p, patient) -> float:
    """Signed slice interval (mm) along the normal: Spacing Between Slices (never Slice Thickness)."""
    step = attribute(ds, "SpacingBetweenSlices", as_numbers(1), path=p, patient=patient, error=GeometryError,
                     required=f"the slice spacing is unknown ({label('SliceThickness')} is the nominal "
                              "thickness of a slice, not the distance between slices, and is not used)")
    if step == 0:
        raise GeometryError(f"{label('SpacingBetweenSlices')} is 0; slices need a non-zero spacing (mm)",
                            patient=patient, path=p)
    return step

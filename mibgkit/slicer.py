"""3D Slicer files: segmentations (``.seg.nrrd``), labelmaps and markups (``.mrk.json``).

Readers return what the rest of mibgkit works with: a binary ``SimpleITK.Image`` (uint8, 0/1) whose
origin, spacing and direction cosines place every voxel in physical LPS coordinates (mm), and named
points as numpy arrays in LPS (mm). The writers are :mod:`mibgkit.slicer_write`.

Conventions
-----------
* Physical space is DICOM/ITK patient LPS (x towards the patient's left, y posterior, z superior), in mm.
  Files in RAS (3D Slicer's internal world space) are converted: (x, y, z)_LPS = (-x, -y, z)_RAS.
* A Slicer segmentation stores its voxels as one or more *layers* (a 3-D array, or a 4-D array whose
  first axis is the layer). Each segment is the set of voxels of its layer equal to its label value, so
  the same label value may occur in several layers (overlapping segments live in different layers).
* Segments are chosen by their exact, case-sensitive name; plain labelmaps by label value.

The parsing of NRRD headers and Slicer segment metadata is done by ``slicerio`` (the 3D Slicer team's
reader/writer) and ``pynrrd``; plain labelmaps (NRRD without segment metadata, NIfTI, MetaImage) are read
by SimpleITK.
"""

from __future__ import annotations

import json
import os
import re
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import nrrd
import numpy as np
import pandas as pd
import SimpleITK as sitk
import slicerio
import slicerio.segmentation as _slicerio_segmentation

from .errors import GeometryError, InputError, SegmentationError
from .geometry import RAS_TO_LPS, image_on_affine, index_to_lps_matrix, split_affine

__all__ = [
    "list_segments",
    "read_segmentation",
    "segment_extent",
    "read_markups",
    "require_points",
]

_SEGMENT_FIELD = re.compile(r"^Segment[0-9]+_")
_NRRD_SUFFIXES = (".nrrd", ".nhdr")


# --------------------------------------------------------------------------------------------------
# geometry helpers
# --------------------------------------------------------------------------------------------------


def _mask_image(mask_ijk: np.ndarray, matrix: np.ndarray, *, path=None, patient=None) -> sitk.Image:
    """uint8 0/1 SimpleITK image from a boolean array indexed [i, j, k] and its index-to-LPS matrix."""
    array = np.ascontiguousarray(np.transpose(mask_ijk, (2, 1, 0)).astype(np.uint8))  # SimpleITK: [k, j, i]
    return image_on_affine(array, matrix, path=path, patient=patient)


def segment_extent(mask_ijk: np.ndarray) -> list[int]:
    """Slicer extent [i_min, i_max, j_min, j_max, k_min, k_max] (inclusive); [0, -1, ...] if empty."""
    if not mask_ijk.any():
        return [0, -1, 0, -1, 0, -1]
    out = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        present = np.flatnonzero(mask_ijk.any(axis=other))
        out += [int(present[0]), int(present[-1])]
    return out


# --------------------------------------------------------------------------------------------------
# reading segmentations
# --------------------------------------------------------------------------------------------------


def _existing(path, patient) -> Path:
    path = Path(path)
    if not path.is_file():
        raise InputError("file not found", patient=patient, path=path)
    return path


def _segmentation_header(path: Path, patient) -> dict | None:
    """The NRRD header of a file carrying Slicer segment metadata (``Segment<N>_...`` header
    fields); None for any other file."""
    if not path.name.lower().endswith(_NRRD_SUFFIXES):
        return None
    header = _read_nrrd_header(path, patient)
    return header if any(_SEGMENT_FIELD.match(key) or key.startswith("Segmentation_") for key in header) else None


def _read_nrrd_header(path: Path, patient) -> dict:
    try:
        return nrrd.read_header(str(path))
    except (nrrd.errors.NRRDError, OSError, ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"not a readable NRRD file: {exc}", patient=patient, path=path) from None


def _read_slicer_segmentation(path: Path, patient, header: dict, *, skip_voxels: bool = False) -> dict:
    """slicerio segmentation dict, with sanity checks of the file's NRRD ``header`` turned into
    mibgkit errors."""
    if "space" not in header:
        raise GeometryError(
            "NRRD header has no 'space' field, so its axes cannot be placed in LPS/RAS", patient=patient, path=path
        )
    if "space directions" not in header:
        raise GeometryError("NRRD header has no 'space directions' field (voxel axes unknown)", patient=patient, path=path)
    try:
        segmentation = slicerio.read_segmentation(str(path), skip_voxels=skip_voxels)
    except (nrrd.errors.NRRDError, OSError, ValueError, EOFError, zlib.error) as exc:
        raise InputError(f"cannot read 3D Slicer segmentation: {exc}", patient=patient, path=path) from None
    voxels = segmentation.get("voxels")
    if voxels is not None and voxels.ndim not in (3, 4):
        raise InputError(f"segmentation voxels must be 3-D or 4-D, got {voxels.ndim}-D", patient=patient, path=path)
    return segmentation


def _segment_layer_label(segmentation: dict, index: int) -> tuple[int, int]:
    """(layer, label value) of segment ``index``.

    Files written before shared layers existed (3D Slicer < 4.11) have neither ``Layer`` nor
    ``LabelValue``: each segment is then its own layer (the segment's index) with value 1.
    """
    segments = segmentation["segments"]
    segment = segments[index]
    layer = segment.get("layer")
    if layer is None:
        legacy = all("layer" not in s for s in segments)
        layer = index if legacy and len(segments) > 1 else 0
    return int(layer), int(segment.get("labelValue", 1))


def _describe(segmentation: dict, indices: Sequence[int]) -> str:
    parts = []
    for i in indices:
        layer, label = _segment_layer_label(segmentation, i)
        seg = segmentation["segments"][i]
        parts.append(f"{seg.get('name')!r} (ID {seg.get('id')!r}, layer {layer}, label value {label})")
    return ", ".join(parts)


def _segment_names(segmentation: dict) -> list[str]:
    return [str(s.get("name")) for s in segmentation["segments"]]


def _choose_segment(segmentation: dict, segment: str | None, label: int | None, path: Path, patient) -> int:
    segments = segmentation["segments"]
    if not segments:
        raise SegmentationError("segmentation contains no segments", patient=patient, path=path)
    if segment is not None:
        found = [i for i, s in enumerate(segments) if s.get("name") == segment]
        if not found:
            raise SegmentationError(
                f"no segment named {segment!r} (names are case-sensitive); available segments: "
                f"{_segment_names(segmentation)}",
                patient=patient,
                path=path,
            )
        if len(found) > 1:
            raise SegmentationError(
                f"{len(found)} segments are named {segment!r}: {_describe(segmentation, found)}; "
                "rename them in 3D Slicer so that the name is unique",
                patient=patient,
                path=path,
            )
        return found[0]
    if label is not None:
        found = [i for i in range(len(segments)) if _segment_layer_label(segmentation, i)[1] == label]
        if not found:
            labels = sorted({_segment_layer_label(segmentation, i)[1] for i in range(len(segments))})
            raise SegmentationError(
                f"no segment has label value {label}; label values present: {labels} "
                f"(segments: {_segment_names(segmentation)})",
                patient=patient,
                path=path,
            )
        if len(found) > 1:
            raise SegmentationError(
                f"label value {label} is used by {len(found)} segments in different layers: "
                f"{_describe(segmentation, found)}; choose one by name",
                patient=patient,
                path=path,
            )
        return found[0]
    if len(segments) == 1:
        return 0
    raise SegmentationError(
        f"segmentation has {len(segments)} segments; choose one by name: {_segment_names(segmentation)}",
        patient=patient,
        path=path,
    )


def _read_labelmap(path: Path, patient) -> tuple[np.ndarray, sitk.Image]:
    """Integer label array indexed [k, j, i] and the image it came from (geometry in LPS)."""
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        first_line = str(exc).strip().splitlines()[-1] if str(exc).strip() else ""
        raise InputError(f"cannot read labelmap image: {first_line}", patient=patient, path=path) from None
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(
            f"expected a 3-D scalar labelmap, got a {image.GetDimension()}-D image with "
            f"{image.GetNumberOfComponentsPerPixel()} component(s)",
            patient=patient,
            path=path,
        )
    array = sitk.GetArrayFromImage(image)
    if not np.issubdtype(array.dtype, np.integer):
        if not np.all(np.isfinite(array)) or not np.array_equal(array, np.round(array)):
            raise InputError("labelmap has non-integer voxel values; it is not a label image", patient=patient, path=path)
        array = array.astype(np.int64)
    return array, image


def read_segmentation(
    path: str | os.PathLike,
    *,
    segment: str | None = None,
    label: int | None = None,
    patient: str | None = None,
) -> sitk.Image:
    """Read one ROI from a 3D Slicer segmentation or a labelmap as a binary image in LPS.

    Parameters
    ----------
    path : str or os.PathLike
        A 3D Slicer segmentation (``.seg.nrrd``: a NRRD file with ``Segment<N>_...`` header fields,
        3-D, or 4-D with shared layers) or a plain labelmap (NRRD, NIfTI, MetaImage... without segment
        metadata).
    segment : str, optional
        Exact, case-sensitive segment name (Slicer segmentations only).
    label : int, optional
        Label value. For a plain labelmap it selects the voxels equal to ``label``; for a Slicer
        segmentation it selects the segment with that label value, which must then be unique across
        layers.
    patient : str, optional
        Manifest ``patient_id``, used only to attribute errors.

    Returns
    -------
    SimpleITK.Image
        uint8 mask (1 inside the ROI, 0 outside) on the file's voxel grid, with origin (mm), spacing
        (mm) and direction cosines in LPS, taken from the file's ``space origin`` and ``space
        directions`` (a ``right-anterior-superior`` file is converted to LPS).

    Raises
    ------
    InputError
        The file is missing or unreadable, or both ``segment`` and ``label`` are given.
    GeometryError
        The file has no usable physical geometry (no space, sheared or degenerate axes).
    SegmentationError
        The requested segment or label is absent (the message lists what is available), a name is
        shared by several segments, several segments/labels exist and none was chosen, or the
        selected ROI has no voxels.

    Notes
    -----
    Selection rules:

    * Slicer segmentation, ``segment`` given: the unique segment with exactly that name.
    * Slicer segmentation, nothing given: the only segment, if there is exactly one.
    * Plain labelmap, ``label=None``: all non-zero voxels, provided a single non-zero value is present;
      with several distinct labels this is an error listing them, because silently merging, e.g.,
      tumour and organ labels would corrupt every shape feature.
    * A plain labelmap has no segment names, so ``segment`` is an error there (use ``label``).

    A segment is the set of voxels of its layer equal to its label value; the voxel-to-physical matrix
    ``M`` (columns: spacing times direction of voxel axes i, j, k; last column: origin) becomes
    ``spacing = |M[:, c]|``, ``direction[:, c] = M[:, c] / spacing[c]``. The returned image's numpy view
    (``SimpleITK.GetArrayFromImage``) is indexed [k, j, i].

    Examples
    --------
    ::

        mask = read_segmentation("tumour.seg.nrrd", segment="tumour")
        sitk.GetArrayFromImage(mask).sum()  # number of ROI voxels
    """
    if segment is not None and label is not None:
        raise InputError("give either a segment name or a label value, not both", patient=patient, path=path)
    path = _existing(path, patient)
    header = _segmentation_header(path, patient)
    if header is not None:
        segmentation = _read_slicer_segmentation(path, patient, header)
        index = _choose_segment(segmentation, segment, label, path, patient)
        layer, label_value = _segment_layer_label(segmentation, index)
        voxels = segmentation["voxels"]
        if voxels.ndim == 4:
            if not 0 <= layer < voxels.shape[0]:
                raise InputError(
                    f"segment {segmentation['segments'][index].get('name')!r} is in layer {layer}, but the "
                    f"file has {voxels.shape[0]} layers",
                    patient=patient,
                    path=path,
                )
            mask = voxels[layer] == label_value
        else:
            if layer != 0:
                raise InputError(
                    f"segment {segmentation['segments'][index].get('name')!r} is in layer {layer}, but the "
                    "file has a single layer",
                    patient=patient,
                    path=path,
                )
            mask = voxels == label_value
        name = segmentation["segments"][index].get("name")
        if not mask.any():
            raise SegmentationError(f"segment {name!r} is empty (no voxels)", patient=patient, path=path)
        return _mask_image(mask, segmentation["ijkToLPS"], path=path, patient=patient)

    array, image = _read_labelmap(path, patient)
    labels = [int(v) for v in np.unique(array) if v != 0]
    if segment is not None:
        raise SegmentationError(
            f"file is a plain labelmap without segment names, so segment {segment!r} cannot be chosen; "
            f"select a label value instead (labels present: {labels})",
            patient=patient,
            path=path,
        )
    if not labels:
        raise SegmentationError("labelmap is empty (no non-zero voxels)", patient=patient, path=path)
    if label is None:
        if len(labels) > 1:
            raise SegmentationError(
                f"labelmap has {len(labels)} distinct labels {labels}; choose one with label=",
                patient=patient,
                path=path,
            )
        label = labels[0]
    elif label not in labels:
        raise SegmentationError(
            f"label value {label} is not present; labels present: {labels}", patient=patient, path=path
        )
    mask = sitk.GetImageFromArray((array == label).astype(np.uint8))
    mask.CopyInformation(image)
    # validate the direction cosines as for segmentations
    split_affine(index_to_lps_matrix(mask), path=path, patient=patient)
    return mask


def list_segments(path: str | os.PathLike, *, patient: str | None = None) -> pd.DataFrame:
    """Table of the segments in a 3D Slicer segmentation (or of the labels in a plain labelmap).

    Parameters
    ----------
    path : str or os.PathLike
        ``.seg.nrrd`` segmentation, or a plain labelmap readable by SimpleITK.
    patient : str, optional
        Manifest ``patient_id``, used only to attribute errors.

    Returns
    -------
    pandas.DataFrame
        One row per segment, in file order, with columns

        ``name`` (str), ``id`` (str), ``layer`` (int, 0 for 3-D files), ``label_value`` (int),
        ``extent`` (tuple ``(i_min, i_max, j_min, j_max, k_min, k_max)`` of voxel indices, inclusive,
        as recorded in the file; ``None`` if absent), ``color`` (tuple of RGB in [0, 1]; ``None`` if
        absent), ``terminology`` (Slicer ``TerminologyEntry`` string; ``None`` if absent).

        For a plain labelmap: one row per non-zero label, ``name``/``id``/``color``/``terminology``
        ``None``, ``layer`` 0 and the extent computed from the voxels.

    Notes
    -----
    For a Slicer segmentation only the header is read, so this is cheap even for large files.
    """
    path = _existing(path, patient)
    columns = ["name", "id", "layer", "label_value", "extent", "color", "terminology"]
    rows = []
    header = _segmentation_header(path, patient)
    if header is not None:
        segmentation = _read_slicer_segmentation(path, patient, header, skip_voxels=True)
        for index, seg in enumerate(segmentation["segments"]):
            layer, label_value = _segment_layer_label(segmentation, index)
            terminology = seg.get("terminology")
            rows.append(
                {
                    "name": seg.get("name"),
                    "id": seg.get("id"),
                    "layer": layer,
                    "label_value": label_value,
                    "extent": tuple(seg["extent"]) if "extent" in seg else None,
                    "color": tuple(float(c) for c in seg["color"]) if "color" in seg else None,
                    "terminology": (
                        _slicerio_segmentation.terminology_entry_to_string(terminology) if terminology else None
                    ),
                }
            )
    else:
        array, _ = _read_labelmap(path, patient)
        ijk = np.transpose(array, (2, 1, 0))
        for value in np.unique(array):
            if value == 0:
                continue
            rows.append(
                {
                    "name": None,
                    "id": None,
                    "layer": 0,
                    "label_value": int(value),
                    "extent": tuple(segment_extent(ijk == value)),
                    "color": None,
                    "terminology": None,
                }
            )
    return pd.DataFrame(rows, columns=columns)


# --------------------------------------------------------------------------------------------------
# writing segmentations
# --------------------------------------------------------------------------------------------------


def _units_to_mm(units: Any) -> float | None:
    """Factor from the markup's ``coordinateUnits`` to mm (None if unsupported).

    The schema allows a UCUM string (``"mm"``, ``"um"``) or a code triple
    (``["mm", "UCUM", "millimeter"]``); absent means mm.
    """
    if isinstance(units, (list, tuple)) and units:
        units = units[0]
    return {None: 1.0, "mm": 1.0, "um": 1e-3}.get(units) if isinstance(units, (str, type(None))) else None


def read_markups(path: str | os.PathLike, *, patient: str | None = None) -> dict[str, np.ndarray]:
    """Read the control points of a 3D Slicer markups file, keyed by label, in LPS (mm).

    Parameters
    ----------
    path : str or os.PathLike
        A markups JSON file (``.mrk.json``, markups schema v1.x), or a legacy fiducial list
        (``.fcsv``, converted with slicerio).
    patient : str, optional
        Manifest ``patient_id``, used only to attribute errors.

    Returns
    -------
    dict of str to numpy.ndarray
        Control-point label -> position, shape (3,), float, LPS, mm; in file order, over all markups
        in the file.

    Raises
    ------
    InputError
        The file is missing, is not valid JSON or does not follow the markups schema (no ``markups``
        list, a position that is not three finite numbers, a missing label, a coordinate system other
        than LPS/RAS, units other than mm or um), or two defined control points share a label.

    Notes
    -----
    Each markup carries its own ``coordinateSystem``. ``"RAS"`` positions are converted with
    (x, y, z)_LPS = (-x, -y, z)_RAS. A markup without ``coordinateSystem`` is read as LPS, as 3D
    Slicer's markups JSON reader does (the JSON format has always defaulted to LPS; only the legacy
    ``.fcsv`` format defaulted to RAS, which slicerio handles when converting it).

    Positions in ``coordinateUnits`` "um" are converted to mm.

    Control points whose ``positionStatus`` is not ``"defined"`` (``"undefined"``, ``"preview"``,
    ``"missing"``: placeholders without a placed position) are skipped, so :func:`require_points`
    reports them as missing. A missing ``positionStatus`` means defined.

    Examples
    --------
    ::

        points = read_markups("spheres.mrk.json")
        points["liver"]  # array([ -80.5,  -20. , 1050. ]), LPS mm
    """
    path = _existing(path, patient)

    def fail(reason: str) -> InputError:
        return InputError(reason, patient=patient, path=path)

    if path.name.lower().endswith(".fcsv"):
        try:
            document = slicerio.read_markups_fcsv(str(path))
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            raise fail(f"cannot read fiducial CSV file: {exc}") from None
    else:
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise fail(f"not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
        except UnicodeDecodeError:
            raise fail("not a UTF-8 text file, so not a markups JSON file") from None

    if not isinstance(document, Mapping) or not isinstance(document.get("markups"), list):
        raise fail("not a 3D Slicer markups file: expected a JSON object with a 'markups' list")
    points: dict[str, np.ndarray] = {}
    for m, markup in enumerate(document["markups"]):
        if not isinstance(markup, Mapping):
            raise fail(f"markups[{m}] is not a JSON object")
        system = markup.get("coordinateSystem", "LPS")
        if system not in ("LPS", "RAS"):
            raise fail(f"markups[{m}] has coordinateSystem {system!r}; expected 'LPS' or 'RAS'")
        to_mm = _units_to_mm(markup.get("coordinateUnits"))
        if to_mm is None:
            raise fail(f"markups[{m}] has coordinateUnits {markup.get('coordinateUnits')!r}; expected 'mm' or 'um'")
        control_points = markup.get("controlPoints", [])
        if not isinstance(control_points, list):
            raise fail(f"markups[{m}].controlPoints is not a list")
        for c, point in enumerate(control_points):
            where = f"markups[{m}].controlPoints[{c}]"
            if not isinstance(point, Mapping):
                raise fail(f"{where} is not a JSON object")
            if point.get("positionStatus", "defined") != "defined":
                continue
            label = point.get("label")
            if not isinstance(label, str) or not label:
                raise fail(f"{where} has no label")
            position = point.get("position")
            try:
                xyz = np.asarray(position, dtype=float)
            except (TypeError, ValueError):
                xyz = np.empty(0)
            if xyz.shape != (3,) or not np.all(np.isfinite(xyz)):
                raise fail(f"control point {label!r} ({where}) has position {position!r}; expected 3 finite numbers")
            xyz = xyz * to_mm
            if system == "RAS":
                xyz = RAS_TO_LPS @ xyz
            if label in points:
                raise fail(f"control point label {label!r} occurs more than once; labels must be unique")
            points[label] = xyz + 0.0
    return points


def require_points(
    points: Mapping[str, np.ndarray],
    names: Sequence[str],
    path: str | os.PathLike | None = None,
    patient: str | None = None,
) -> dict[str, np.ndarray]:
    """Check that all required control points are present and return them.

    Parameters
    ----------
    points : mapping of str to numpy.ndarray
        As returned by :func:`read_markups` (LPS, mm).
    names : sequence of str
        Required labels, e.g. ``("liver", "muscle_left", "muscle_right")``.
    path : str or os.PathLike, optional
        The markups file, named in the error.
    patient : str, optional
        Manifest ``patient_id``, named in the error.

    Returns
    -------
    dict of str to numpy.ndarray
        The required points, in the order of ``names``.

    Raises
    ------
    InputError
        Some labels are missing; the message lists the missing and the available labels.
    """
    missing = [name for name in names if name not in points]
    if missing:
        raise InputError(
            f"missing control point(s) {missing}; the markups file has {list(points)} "
            "(labels are case-sensitive)",
            patient=patient,
            path=path,
        )
    return {name: np.asarray(points[name], dtype=float) for name in names}

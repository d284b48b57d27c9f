"""3D Slicer files: segmentations (``.seg.nrrd``), labelmaps and markups (``.mrk.json``).

Readers return what the rest of mibgkit works with: a binary ``SimpleITK.Image`` (uint8, 0/1) whose
origin, spacing and direction cosines place every voxel in physical LPS coordinates (mm), and named
points as numpy arrays in LPS (mm). Writers produce files that 3D Slicer opens as it would its own,
byte-identical when run twice on the same input.

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

import io
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

from mibgkit.errors import GeometryError, InputError, SegmentationError

__all__ = [
    "MARKUPS_SCHEMA",
    "list_segments",
    "read_segmentation",
    "write_segmentation",
    "read_markups",
    "require_points",
    "write_markups",
]

#: ``@schema`` identifier written into ``.mrk.json`` files (markups JSON schema v1.0.3).
MARKUPS_SCHEMA = (
    "https://raw.githubusercontent.com/slicer/slicer/main/Modules/Loadable/Markups/Resources/Schema/"
    "markups-schema-v1.0.3.json#"
)

# Colours 3D Slicer gives new segments when none is chosen (its "GenericAnatomyColors" table, from
# "tissue" onwards), as RGB in [0, 1] rounded as Slicer writes them.
_DEFAULT_COLORS_255 = (
    (128, 174, 128),  # tissue
    (241, 214, 145),  # bone
    (177, 122, 101),  # skin
    (111, 184, 210),  # connective tissue
    (216, 101, 79),  # blood
    (221, 130, 101),  # organ
    (144, 238, 144),  # mass
    (192, 104, 88),  # muscle
    (220, 245, 20),  # foreign object
    (78, 63, 0),  # waste
)

# The terminology entry Slicer attaches to a segment whose type the user has not chosen.
_DEFAULT_TERMINOLOGY = (
    "Segmentation category and type - 3D Slicer General Anatomy list"
    "~SCT^85756007^Tissue~SCT^85756007^Tissue~^^~Anatomic codes - DICOM master list~^^~^^"
)

_SEGMENT_FIELD = re.compile(r"^Segment[0-9]+_")
_NRRD_SUFFIXES = (".nrrd", ".nhdr")
_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])


# --------------------------------------------------------------------------------------------------
# geometry helpers
# --------------------------------------------------------------------------------------------------


def _matrix_from_image(image: sitk.Image) -> np.ndarray:
    """4x4 matrix mapping a voxel index (i, j, k, 1) to LPS (mm) for a SimpleITK image."""
    if image.GetDimension() != 3:
        raise GeometryError(f"expected a 3-D image, got {image.GetDimension()}-D")
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    matrix = np.eye(4)
    matrix[:3, :3] = direction @ np.diag(image.GetSpacing())
    matrix[:3, 3] = image.GetOrigin()
    return matrix


def _matrix_from_geometry(geometry: Any) -> np.ndarray:
    """4x4 index-to-LPS matrix from an image, a mapping (origin/spacing/direction) or a 4x4 matrix."""
    if isinstance(geometry, sitk.Image):
        return _matrix_from_image(geometry)
    if isinstance(geometry, Mapping):
        try:
            origin = np.asarray(geometry["origin"], dtype=float).reshape(3)
            spacing = np.asarray(geometry["spacing"], dtype=float).reshape(3)
            direction = np.asarray(geometry.get("direction", np.eye(3)), dtype=float).reshape(3, 3)
        except (KeyError, ValueError) as exc:
            raise GeometryError(
                "geometry mapping needs 'origin' (3 values, mm), 'spacing' (3 values, mm) and optionally "
                f"'direction' (9 values, row-major as SimpleITK): {exc}"
            ) from None
        matrix = np.eye(4)
        matrix[:3, :3] = direction @ np.diag(spacing)
        matrix[:3, 3] = origin
        return matrix
    matrix = np.asarray(geometry, dtype=float)
    if matrix.shape != (4, 4):
        raise GeometryError(
            "geometry must be a SimpleITK.Image, a mapping with origin/spacing/direction, or a 4x4 "
            f"index-to-LPS matrix; got an object of shape {matrix.shape}"
        )
    return matrix


def _image_geometry(matrix: np.ndarray, *, path=None, patient=None) -> tuple[tuple, tuple, tuple]:
    """Split a 4x4 index-to-LPS matrix into SimpleITK origin, spacing and direction.

    Spacing is the norm of each of the first three columns, the direction the normalised columns
    (column c is the LPS direction of voxel axis c); they must be orthogonal.
    """
    matrix = np.asarray(matrix, dtype=float)
    if not np.all(np.isfinite(matrix[:3, :4])):
        raise GeometryError("voxel-to-physical matrix has non-finite entries", patient=patient, path=path)
    columns = matrix[:3, :3]
    spacing = np.linalg.norm(columns, axis=0)
    if np.any(spacing <= 0):
        raise GeometryError(f"voxel spacing must be positive, got {spacing.tolist()} mm", patient=patient, path=path)
    direction = columns / spacing
    gram = direction.T @ direction
    if not np.allclose(gram, np.eye(3), atol=1e-4):
        raise GeometryError(
            "voxel axes are not orthogonal (sheared grid, e.g. gantry tilt); resample the segmentation "
            "onto an orthogonal grid in 3D Slicer first",
            patient=patient,
            path=path,
        )
    origin = tuple(float(v) for v in matrix[:3, 3])
    return origin, tuple(float(v) for v in spacing), tuple(float(v) for v in direction.reshape(-1))


def _mask_image(mask_ijk: np.ndarray, matrix: np.ndarray, *, path=None, patient=None) -> sitk.Image:
    """uint8 0/1 SimpleITK image from a boolean array indexed [i, j, k] and its index-to-LPS matrix."""
    origin, spacing, direction = _image_geometry(matrix, path=path, patient=patient)
    # SimpleITK arrays are indexed [k, j, i]
    array = np.ascontiguousarray(np.transpose(mask_ijk, (2, 1, 0)).astype(np.uint8))
    image = sitk.GetImageFromArray(array)
    image.SetOrigin(origin)
    image.SetSpacing(spacing)
    image.SetDirection(direction)
    return image


def _extent(mask_ijk: np.ndarray) -> list[int]:
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


def _is_segmentation_file(path: Path, patient) -> bool:
    """True for a NRRD file carrying Slicer segment metadata (``Segment<N>_...`` header fields)."""
    if not path.name.lower().endswith(_NRRD_SUFFIXES):
        return False
    header = _read_nrrd_header(path, patient)
    return any(_SEGMENT_FIELD.match(key) or key.startswith("Segmentation_") for key in header)


def _read_nrrd_header(path: Path, patient) -> dict:
    try:
        return nrrd.read_header(str(path))
    except (nrrd.errors.NRRDError, OSError, ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"not a readable NRRD file: {exc}", patient=patient, path=path) from None


def _read_slicer_segmentation(path: Path, patient, *, skip_voxels: bool = False) -> dict:
    """slicerio segmentation dict, with header sanity checks turned into mibgkit errors."""
    header = _read_nrrd_header(path, patient)
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
    if _is_segmentation_file(path, patient):
        segmentation = _read_slicer_segmentation(path, patient)
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
    _image_geometry(_matrix_from_image(mask), path=path, patient=patient)
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
    if _is_segmentation_file(path, patient):
        segmentation = _read_slicer_segmentation(path, patient, skip_voxels=True)
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
                    "extent": tuple(_extent(ijk == value)),
                    "color": None,
                    "terminology": None,
                }
            )
    return pd.DataFrame(rows, columns=columns)


# --------------------------------------------------------------------------------------------------
# writing segmentations
# --------------------------------------------------------------------------------------------------


def _mask_to_ijk(name: str, mask: Any, reference_matrix: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Boolean array indexed [i, j, k] and index-to-LPS matrix for one entry of ``masks``."""
    if isinstance(mask, sitk.Image):
        if mask.GetDimension() != 3 or mask.GetNumberOfComponentsPerPixel() != 1:
            raise InputError(f"segment {name!r}: mask must be a 3-D scalar image")
        array, matrix = sitk.GetArrayFromImage(mask), _matrix_from_image(mask)
    elif isinstance(mask, tuple) and len(mask) == 2:
        array, geometry = np.asarray(mask[0]), mask[1]
        if geometry is None:
            if reference_matrix is None:
                raise GeometryError(f"segment {name!r}: array given without geometry and no reference grid")
            matrix = reference_matrix
        else:
            matrix = _matrix_from_geometry(geometry)
    else:
        array = np.asarray(mask)
        if reference_matrix is None:
            raise GeometryError(
                f"segment {name!r}: a bare array needs reference= (an image or geometry) to place it in space"
            )
        matrix = reference_matrix
    if array.ndim != 3:
        raise InputError(f"segment {name!r}: mask must be 3-D, got shape {array.shape}")
    return np.transpose(array != 0, (2, 1, 0)), matrix


def _terminology_dict(name: str, entry: Any) -> dict:
    if isinstance(entry, Mapping):
        if "category" not in entry or "type" not in entry:
            raise InputError(f"segment {name!r}: terminology mapping needs 'category' and 'type' codes")
        return {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in entry.items()}
    if isinstance(entry, str):
        if entry.count("~") != 6:
            raise InputError(
                f"segment {name!r}: terminology string must have 7 '~'-separated parts "
                "(context~category~type~type modifier~anatomic context~region~region modifier)"
            )
        return _slicerio_segmentation.terminology_entry_from_string(entry)
    raise InputError(f"segment {name!r}: terminology must be a Slicer TerminologyEntry string or a mapping")


def _check_header_text(name: str) -> None:
    if not isinstance(name, str) or not name:
        raise InputError(f"segment names must be non-empty strings, got {name!r}")
    if not name.isascii() or any(c in name for c in "\r\n"):
        raise InputError(f"segment name {name!r} must be single-line ASCII text (it is stored in the NRRD header)")


def _slicer_style_header(data: bytes) -> bytes:
    """Make pynrrd's output deterministic and written as 3D Slicer writes it.

    pynrrd writes ``NRRD0005``, a ``# on <date>`` comment with the current time and ``type: uint8``;
    Slicer writes ``NRRD0004``, no date and ``type: unsigned char`` (the same type, older spelling).
    The header is everything before the first empty line.
    """
    header, sep, body = data.partition(b"\n\n")
    lines = header.split(b"\n")
    if lines and lines[0].startswith(b"NRRD"):
        lines[0] = b"NRRD0004"
    lines = [
        b"type: unsigned char" if line == b"type: uint8" else line
        for line in lines
        if not (line.startswith(b"# This NRRD file was generated by pynrrd") or line.startswith(b"# on "))
    ]
    return b"\n".join(lines) + sep + body


def write_segmentation(
    path: str | os.PathLike,
    masks: Mapping[str, Any],
    *,
    reference: Any = None,
    colors: Mapping[str, Sequence[float]] | None = None,
    shared_layers: bool = True,
    terminology: Mapping[str, Any] | None = None,
    status: str = "inprogress",
) -> Path:
    """Write binary masks as a 3D Slicer segmentation (``.seg.nrrd``).

    Parameters
    ----------
    path : str or os.PathLike
        Output file, conventionally ending in ``.seg.nrrd``.
    masks : mapping of str to mask
        Segment name -> mask, in the order the segments should appear. A mask is

        * a ``SimpleITK.Image`` (non-zero = inside; its geometry is used), or
        * a tuple ``(array, geometry)``: ``array`` in SimpleITK's numpy order [k, j, i]
          (as ``SimpleITK.GetArrayFromImage`` returns it) and ``geometry`` a ``SimpleITK.Image``, a
          mapping with ``origin`` (mm, LPS), ``spacing`` (mm) and optionally ``direction`` (9 values,
          row-major, columns = LPS directions of the i, j, k axes), a 4x4 index-to-LPS matrix, or
          ``None`` to use ``reference``, or
        * a bare array (numpy order [k, j, i]) placed on ``reference``.

        All masks must lie on one common grid (same size and geometry within 1e-4 mm); resample with
        nearest-neighbour interpolation beforehand if they do not.
    reference : SimpleITK.Image or geometry, optional
        The grid the segmentation is defined on (only its geometry is used). When given, every mask
        must be on it.
    colors : mapping of str to (r, g, b), optional
        Display colour per segment name, components in [0, 1]. Segments without a colour get the
        colours 3D Slicer assigns automatically (tissue green, bone, skin, ...).
    shared_layers : bool, default True
        True (3D Slicer's default, "collapse labelmaps"): segments share layers; a segment is placed in
        the first layer where it overlaps no other segment, with the next free label value of that
        layer, so non-overlapping segments end up in one layer and overlapping ones in further layers
        (a 4-D file whose label values repeat across layers). False: every segment gets its own layer
        with label value 1.
    terminology : mapping of str to str or mapping, optional
        Per segment name, a Slicer ``TerminologyEntry`` string, e.g.
        ``"Segmentation category and type - 3D Slicer General Anatomy list~SCT^49755003^Morphologically
        Altered Structure~SCT^4147007^Mass~^^~Anatomic codes - DICOM master list~SCT^23451007^Adrenal
        gland~^^"``, or the equivalent slicerio mapping (``category``, ``type``, ...). Segments without
        one get Slicer's default ("Tissue").
    status : str, default "inprogress"
        Value of the ``Segmentation.Status`` tag ("notstarted", "inprogress", "completed", "flagged").

    Returns
    -------
    pathlib.Path
        The written file.

    Raises
    ------
    InputError
        No masks, a mask that is not 3-D, a name that cannot be stored, a malformed colour or
        terminology.
    GeometryError
        The masks do not share one grid, or a grid is degenerate or sheared.

    Notes
    -----
    The file follows what 3D Slicer writes: ``space: left-posterior-superior``, ``space directions``
    and ``space origin`` from the grid, ``kinds: domain domain domain`` (3-D) or ``list domain domain
    domain`` (4-D, layer axis first), uint8 voxels, gzip encoding, and per segment ``ID``
    (``Segment_1``, ``Segment_2``, ...), ``Name``, ``Color``, ``Extent`` (tight voxel bounding box, i/j/k
    inclusive), ``LabelValue``, ``Layer`` and ``Tags`` (``Segmentation.Status`` and ``TerminologyEntry``).

    Output is deterministic: identical inputs give byte-identical files (segment IDs are numbered, the
    NRRD header carries no date, and the gzip stream carries no timestamp).
    """
    if not masks:
        raise InputError("no masks to write", path=path)
    colors = dict(colors or {})
    terminology = dict(terminology or {})
    unknown = (set(colors) | set(terminology)) - set(masks)
    if unknown:
        raise InputError(f"colors/terminology given for segments that are not in masks: {sorted(unknown)}", path=path)

    reference_matrix = None if reference is None else _matrix_from_geometry(reference)
    grid_matrix = reference_matrix
    grid_shape = tuple(reference.GetSize()) if isinstance(reference, sitk.Image) else None
    arrays: list[tuple[str, np.ndarray]] = []
    for name, mask in masks.items():
        _check_header_text(name)
        array, matrix = _mask_to_ijk(name, mask, reference_matrix)
        if grid_matrix is None:
            grid_matrix = matrix
        if grid_shape is None:
            grid_shape = array.shape
        if array.shape != grid_shape or not np.allclose(matrix, grid_matrix, rtol=0, atol=1e-4):
            raise GeometryError(
                f"segment {name!r} is not on the common grid (size {array.shape} vs {grid_shape}, or different "
                "origin/spacing/direction); resample it with nearest-neighbour interpolation first",
                path=path,
            )
        arrays.append((name, array))
    _image_geometry(grid_matrix, path=path)  # reject degenerate or sheared grids

    segment_fields = []
    for number, (name, _) in enumerate(arrays, start=1):
        if name in colors:
            rgb = [float(c) for c in colors[name]]
            if len(rgb) != 3 or not all(0.0 <= c <= 1.0 for c in rgb):
                raise InputError(f"segment {name!r}: colour must be three numbers in [0, 1], got {colors[name]!r}")
            auto_color = False
        else:
            rgb = [round(c / 255.0, 6) for c in _DEFAULT_COLORS_255[(number - 1) % len(_DEFAULT_COLORS_255)]]
            auto_color = True
        segment_fields.append(
            {
                "color": rgb,
                "colorAutoGenerated": auto_color,
                "id": f"Segment_{number}",
                "name": name,
                "nameAutoGenerated": False,
                "status": status,
                "terminology": _terminology_dict(name, terminology.get(name, _DEFAULT_TERMINOLOGY)),
            }
        )

    if shared_layers:
        segmentation = slicerio.create_segmentation(grid_shape, grid_matrix, dtype="uint8")
        for (name, array), fields in zip(arrays, segment_fields):
            slicerio.add_segment(segmentation, array, fields)
        placed = segmentation["segments"]
        voxels = segmentation["voxels"]
    else:
        voxels = np.zeros((len(arrays),) + tuple(grid_shape), dtype=np.uint8)
        placed = []
        for layer, ((name, array), fields) in enumerate(zip(arrays, segment_fields)):
            voxels[layer][array] = 1
            placed.append({**fields, "labelValue": 1, "layer": layer, "extent": _extent(array)})
        if len(arrays) == 1:
            voxels = voxels[0]

    # Header fields in the order 3D Slicer writes them; tags (status, terminology) come last.
    order = ["color", "colorAutoGenerated", "extent", "id", "labelValue", "layer", "name", "nameAutoGenerated",
             "status", "terminology"]
    segments = [{key: seg[key] for key in order} for seg in placed]

    ijk_to_ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ grid_matrix
    reference_geometry = ";".join(repr(float(v) + 0.0) for v in ijk_to_ras.reshape(-1))
    reference_geometry += ";" + ";".join(f"0;{n - 1}" for n in grid_shape) + ";"
    output = {
        "voxels": voxels,
        "ijkToLPS": grid_matrix,
        "encoding": "gzip",
        "containedRepresentationNames": ["Binary labelmap"],
        "conversionParameters": [
            {
                "name": "Reference image geometry",
                "value": reference_geometry,
                "description": "Image geometry description string determining the geometry of the labelmap "
                "that is created in course of conversion.",
            }
        ],
        "masterRepresentation": "Binary labelmap",
        "referenceImageExtentOffset": [0, 0, 0],
        "segments": segments,
    }
    buffer = io.BytesIO()
    try:
        slicerio.write_segmentation(buffer, output)
    except UnicodeEncodeError as exc:
        raise InputError(f"segment metadata must be ASCII text: {exc}", path=path) from None
    path = Path(path)
    try:
        path.write_bytes(_slicer_style_header(buffer.getvalue()))
    except OSError as exc:
        raise InputError(f"cannot write segmentation: {exc.strerror}", path=path) from None
    return path


# --------------------------------------------------------------------------------------------------
# markups
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
                xyz = _RAS_TO_LPS @ xyz
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


def _json_number(value: float) -> float:
    return float(value) + 0.0  # turns -0.0 into 0.0


def write_markups(
    path: str | os.PathLike,
    points: Mapping[str, Sequence[float]],
    coordinate_system: str = "LPS",
) -> Path:
    """Write named points as a 3D Slicer point list (``.mrk.json``, markups schema v1.0.3).

    Parameters
    ----------
    path : str or os.PathLike
        Output file, conventionally ending in ``.mrk.json``.
    points : mapping of str to (x, y, z)
        Control-point label -> position in LPS, mm. Labels must be non-empty and are unique by
        construction.
    coordinate_system : {"LPS", "RAS"}, default "LPS"
        Coordinate system of the positions stored in the file (LPS is what Slicer writes by default);
        with ``"RAS"`` the positions are converted, (x, y, z)_RAS = (-x, -y, z)_LPS.
    Returns
    -------
    pathlib.Path
        The written file.

    Notes
    -----
    The file carries the fields 3D Slicer writes for a point list (``type: "Fiducial"``,
    ``coordinateUnits: "mm"``, control points with ``id``, ``label``, ``position``, identity
    ``orientation`` expressed in the file's coordinate system, ``positionStatus: "defined"``, and a
    ``display`` block), and is deterministic (fixed key order, no dates, ``\\n`` line endings).
    """
    if coordinate_system not in ("LPS", "RAS"):
        raise InputError(f"coordinate_system must be 'LPS' or 'RAS', got {coordinate_system!r}", path=path)
    to_file = np.eye(3) if coordinate_system == "LPS" else _RAS_TO_LPS  # the flip is its own inverse
    # Identity orientation in RAS written in the file's system (what Slicer writes for a new point).
    orientation = [_json_number(v) for v in (_RAS_TO_LPS if coordinate_system == "LPS" else np.eye(3)).reshape(-1)]
    control_points = []
    for number, (label, position) in enumerate(points.items(), start=1):
        if not isinstance(label, str) or not label:
            raise InputError(f"control point labels must be non-empty strings, got {label!r}", path=path)
        xyz = np.asarray(position, dtype=float)
        if xyz.shape != (3,) or not np.all(np.isfinite(xyz)):
            raise InputError(f"control point {label!r}: position must be 3 finite numbers (mm)", path=path)
        control_points.append(
            {
                "id": str(number),
                "label": label,
                "description": "",
                "associatedNodeID": "",
                "position": [_json_number(v) for v in to_file @ xyz],
                "orientation": orientation,
                "selected": True,
                "locked": False,
                "visibility": True,
                "positionStatus": "defined",
            }
        )
    document = {
        "@schema": MARKUPS_SCHEMA,
        "markups": [
            {
                "type": "Fiducial",
                "coordinateSystem": coordinate_system,
                "coordinateUnits": "mm",
                "locked": False,
                "fixedNumberOfControlPoints": False,
                "labelFormat": "%N-%d",
                "lastUsedControlPointNumber": len(control_points),
                "controlPoints": control_points,
                "measurements": [],
                "display": {
                    "visibility": True,
                    "opacity": 1.0,
                    "color": [0.4, 1.0, 1.0],
                    "selectedColor": [1.0, 0.5000076295109484, 0.5000076295109484],
                    "activeColor": [0.4, 1.0, 0.0],
                    "propertiesLabelVisibility": False,
                    "pointLabelsVisibility": True,
                    "textScale": 3.0,
                    "glyphType": "Sphere3D",
                    "glyphScale": 3.0,
                    "glyphSize": 5.0,
                    "useGlyphScale": True,
                    "sliceProjection": False,
                    "sliceProjectionUseFiducialColor": True,
                    "sliceProjectionOutlinedBehindSlicePlane": False,
                    "sliceProjectionColor": [1.0, 1.0, 1.0],
                    "sliceProjectionOpacity": 0.6,
                    "lineThickness": 0.2,
                    "lineColorFadingStart": 1.0,
                    "lineColorFadingEnd": 10.0,
                    "lineColorFadingSaturation": 1.0,
                    "lineColorFadingHueOffset": 0.0,
                    "handlesInteractive": False,
                    "snapMode": "toVisibleSurface",
                },
            }
        ],
    }
    path = Path(path)
    text = json.dumps(document, indent=4, ensure_ascii=False) + "\n"
    try:
        with open(path, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
    except OSError as exc:
        raise InputError(f"cannot write markups: {exc.strerror}", path=path) from None
    return path

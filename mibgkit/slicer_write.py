"""Writing 3D Slicer files: segmentations (``.seg.nrrd``) and markups (``.mrk.json``).

The files are those 3D Slicer writes itself, byte-identical when written twice from the same input,
and :mod:`mibgkit.slicer` reads them back. Used by the synthetic cohort, the viewer (saving an
analyst's sphere placements) and the tests; extraction only reads (:mod:`mibgkit.slicer`).
Conventions as there: LPS, mm; (x, y, z)_RAS = (-x, -y, z)_LPS.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
import slicerio
import slicerio.segmentation as _slicerio_segmentation

from .errors import GeometryError, InputError
from .geometry import RAS_TO_LPS, index_to_lps_matrix, split_affine
from .slicer import segment_extent

__all__ = ["MARKUPS_SCHEMA", "write_segmentation", "write_markups"]

#: zlib level of the gzip-encoded voxels. On the synthetic tumour masks (190 kB raw): level 3 2.1 kB
#: in 0.27 ms, pynrrd's default 9 0.9 kB in 5.2 ms (measured in the same run).
GZIP_LEVEL = 3

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


def _matrix_from_geometry(geometry: Any) -> np.ndarray:
    """4x4 index-to-LPS matrix from an image, a mapping (origin/spacing/direction) or a 4x4 matrix."""
    if isinstance(geometry, sitk.Image):
        return index_to_lps_matrix(geometry)
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


# --------------------------------------------------------------------------------------------------


def _mask_to_ijk(name: str, mask: Any, reference_matrix: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Boolean array indexed [i, j, k] and index-to-LPS matrix for one entry of ``masks``."""
    if isinstance(mask, sitk.Image):
        if mask.GetDimension() != 3 or mask.GetNumberOfComponentsPerPixel() != 1:
            raise InputError(f"segment {name!r}: mask must be a 3-D scalar image")
        array, matrix = sitk.GetArrayFromImage(mask), index_to_lps_matrix(mask)
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
    split_affine(grid_matrix, path=path)  # reject degenerate or sheared grids

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
            placed.append({**fields, "labelValue": 1, "layer": layer, "extent": segment_extent(array)})
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
        slicerio.write_segmentation(buffer, output, compression_level=GZIP_LEVEL)
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
    to_file = np.eye(3) if coordinate_system == "LPS" else RAS_TO_LPS  # the flip is its own inverse
    # Identity orientation in RAS written in the file's system (what Slicer writes for a new point).
    orientation = [_json_number(v) for v in (RAS_TO_LPS if coordinate_system == "LPS" else np.eye(3)).reshape(-1)]
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

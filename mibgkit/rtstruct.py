"""RT Structure Sets (RTSTRUCT) as ROI masks: closed planar contours rasterised on a reference grid.

An RT Structure Set (SOP Class 1.2.840.10008.5.1.4.1.1.481.3) stores an ROI as polygons in patient
coordinates (LPS, mm), one per contour plane; it has no voxels. To measure it, the polygons are
rasterised on the grid of a reference image (the CT or SPECT the ROI was drawn on, or any image the
user chooses).

Why it is written here: the file is read with pydicom (the structure set is plain DICOM attributes,
no pixel data), and the rasterisation is ours because there is no maintained RTSTRUCT library to
delegate it to — rt-utils, the usual choice, has been unmaintained since 2023 — and because the
rule below must be exact and documented: MTV and asphericity depend on which voxels are in.

Rasterisation rule
------------------
1. Each contour belongs to the reference slice whose centre plane is nearest to it: with the
   contour's points mapped to continuous voxel indices ``(i, j, k)`` of the reference
   (:func:`mibgkit.geometry.lps_to_index`), the slice is ``k* = floor(mean(k) + 0.5)`` (a contour
   exactly halfway between two slices goes to the higher index, as in
   :mod:`mibgkit.geometry`'s nearest-neighbour rule).
2. A point's distance to the slice is ``|k - k*| · s_k`` (mm, ``s_k`` the slice spacing; the grid's
   axes are orthogonal, sheared grids are refused). Every point of the contour must lie within half
   a slice spacing of slice ``k*`` (tolerance :data:`PLANE_TOL_MM`); a contour off every slice, or one
   not parallel to the slices (its points spread over more than that), makes the whole ROI an error
   naming the ROI and the contour's position — never a silently partial ROI.
3. On its slice, a voxel is in the contour when its centre ``(i, j)`` lies inside the polygon of the
   contour's ``(i, j)`` or on its boundary (within :data:`PLANE_TOL_MM`), whichever way the polygon
   runs: exporters that trace voxel centres put centres exactly on the line, where rounding would
   otherwise decide. Evaluated with matplotlib's ``Path.contains_points`` (the polygon oriented
   counter-clockwise in ``(i, j)`` and grown by the tolerance) on the voxel centres of the polygon's
   bounding box only. A contour must enclose an area (collinear points are an error).
4. Contours of the ROI in one plane combine by the even–odd rule: a voxel is in when it is inside an
   odd number of them, so an inner contour is a hole and two partly overlapping contours leave their
   overlap out (centres on an inner contour's line are inside both: they fall in the hole).
   Contours from *different* planes (their mean distances along the slice normal differ by more
   than :data:`PLANE_TOL_MM`) that fall on the same slice — a grid coarser than the contour spacing —
   are united, not XOR-ed.
5. Slices between contours are not interpolated: a slice without a contour is empty.

Only ``CLOSED_PLANAR`` contours (and ``CLOSEDPLANAR_XOR``, whose explicit XOR is the even–odd rule
already) describe a volume; ``POINT``, ``OPEN_PLANAR`` and ``OPEN_NONPLANAR`` are an error.

A reference image in another Frame of Reference than the structure set's is allowed (the user
chose the grid) with a :class:`~mibgkit.errors.QCWarning` naming both files. UIDs are kept out of
messages and tables, which may reach a report.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import SimpleITK as sitk
from pydicom.errors import InvalidDicomError

from .errors import GeometryError, InputError, QCWarning, SegmentationError, first_line
from .geometry import TIE_VOX, index_to_lps_matrix, lps_to_index, split_affine

__all__ = [
    "RTSTRUCT_SOP_CLASS",
    "PLANE_TOL_MM",
    "read_rtstruct",
    "rasterise_contours",
    "list_rtstruct_rois",
    "structure_set_frames_of_reference",
]

RTSTRUCT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"

#: Tolerance (mm) on a contour point's distance to its slice beyond half a slice spacing, below
#: which two contours lie in one plane, and within which a voxel centre is on a polygon's boundary
#: (DICOM decimal strings carry rounding noise).
PLANE_TOL_MM = 0.01

_CLOSED = ("CLOSED_PLANAR", "CLOSEDPLANAR_XOR")


# --------------------------------------------------------------------------------------------
# the structure set
# --------------------------------------------------------------------------------------------


def _dataset(path, patient) -> pydicom.Dataset:
    path = Path(path)
    if not path.is_file():
        raise InputError("file not found", patient=patient, path=path)
    try:
        ds = pydicom.dcmread(path)
    except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
        raise InputError(f"not a readable DICOM file: {first_line(exc)}", patient=patient, path=path) from None
    sop = str(ds.get("SOPClassUID", ""))
    if sop != RTSTRUCT_SOP_CLASS:
        name = pydicom.uid.UID(sop).name if sop else "no SOP Class UID"
        raise InputError(f"not an RT Structure Set (SOP Class {name}); give an RTSTRUCT file",
                         patient=patient, path=path)
    return ds


def _rois(ds) -> list[dict]:
    """Structure Set ROI items as dicts: number, name, frame of reference, contours (or None)."""
    contours = {int(item.ReferencedROINumber): item for item in ds.get("ROIContourSequence", [])
                if "ReferencedROINumber" in item}
    observations = {int(item.ReferencedROINumber): item for item in ds.get("RTROIObservationsSequence", [])
                    if "ReferencedROINumber" in item}
    rois = []
    for item in ds.get("StructureSetROISequence", []):
        number = int(item.ROINumber)
        obs = observations.get(number)
        rois.append({
            "number": number,
            "name": str(item.get("ROIName", "")),
            "frame_of_reference": str(item.get("ReferencedFrameOfReferenceUID", "")) or None,
            "algorithm": str(item.get("ROIGenerationAlgorithm", "")) or None,
            "interpreted_type": (str(obs.get("RTROIInterpretedType", "")) or None) if obs is not None else None,
            "contours": list(contours[number].get("ContourSequence", [])) if number in contours else [],
        })
    return rois


def _listing(rois) -> str:
    return ", ".join(f"{r['name']!r} (number {r['number']})" for r in rois)


def _choose_roi(rois, segment, label, path, patient) -> dict:
    if not rois:
        raise SegmentationError("the structure set has no ROIs (empty Structure Set ROI Sequence)",
                                patient=patient, path=path)
    if segment is not None:
        found = [r for r in rois if r["name"] == segment]
        if not found:
            raise SegmentationError(f"no ROI named {segment!r} (ROI Names are case-sensitive); ROIs in the "
                                    f"structure set: {_listing(rois)}", patient=patient, path=path)
        if len(found) > 1:
            raise SegmentationError(f"{len(found)} ROIs are named {segment!r} (numbers "
                                    f"{[r['number'] for r in found]}); choose one by ROI Number (--label / roi_label)",
                                    patient=patient, path=path)
        return found[0]
    if label is not None:
        found = [r for r in rois if r["number"] == int(label)]
        if not found:
            raise SegmentationError(f"no ROI has ROI Number {label}; ROIs in the structure set: {_listing(rois)}",
                                    patient=patient, path=path)
        return found[0]
    if len(rois) == 1:
        return rois[0]
    raise SegmentationError(f"the structure set has {len(rois)} ROIs; choose one by ROI Name: {_listing(rois)}",
                            patient=patient, path=path)


def _contour_points(roi, path, patient) -> list[np.ndarray]:
    """The ROI's contours as (n × 3) LPS mm arrays; every defect is an error naming the ROI."""
    name = roi["name"]
    if not roi["contours"]:
        raise SegmentationError(f"ROI {name!r} has no contours (nothing was drawn, or only its name exists)",
                                patient=patient, path=path)
    out = []
    for c, item in enumerate(roi["contours"], start=1):
        kind = str(item.get("ContourGeometricType", "")).strip()
        if kind not in _CLOSED:
            raise SegmentationError(
                f"ROI {name!r}: contour {c} has Contour Geometric Type {kind or 'missing'!r}; a volume ROI "
                "needs CLOSED_PLANAR contours (POINT and OPEN_PLANAR ROIs are markers or lines, not volumes)",
                patient=patient, path=path)
        data = item.get("ContourData")
        try:
            values = np.zeros(0) if data is None or data == "" else np.atleast_1d(np.asarray(data, float)).ravel()
        except (TypeError, ValueError):
            raise InputError(f"ROI {name!r}: contour {c} has non-numeric Contour Data", patient=patient,
                             path=path) from None
        if values.size < 9:
            raise SegmentationError(f"ROI {name!r}: contour {c} is empty ({values.size // 3} points; a polygon "
                                    "needs at least 3)", patient=patient, path=path)
        if values.size % 3 or not np.all(np.isfinite(values)):
            raise InputError(f"ROI {name!r}: contour {c} has Contour Data that are not finite (x, y, z) triplets",
                             patient=patient, path=path)
        points = values.reshape(-1, 3)
        declared = item.get("NumberOfContourPoints")
        if declared is not None and int(declared) != len(points):
            raise InputError(f"ROI {name!r}: contour {c} declares {int(declared)} points but holds {len(points)}",
                             patient=patient, path=path)
        out.append(points)
    return out


def structure_set_frames_of_reference(ds: pydicom.Dataset) -> list[str]:
    """The Frame of Reference UIDs a structure set's ROIs lie in (referenced frames first, unique)."""
    uids = [str(item.FrameOfReferenceUID) for item in ds.get("ReferencedFrameOfReferenceSequence", [])
            if "FrameOfReferenceUID" in item]
    uids += [str(item.ReferencedFrameOfReferenceUID) for item in ds.get("StructureSetROISequence", [])
             if "ReferencedFrameOfReferenceUID" in item]
    return list(dict.fromkeys(u for u in uids if u))


# --------------------------------------------------------------------------------------------
# rasterisation
# --------------------------------------------------------------------------------------------


def _who(patient, path) -> str:
    """``"patient P, file F: "`` (the parts that are known) to start a warning."""
    parts = ([f"patient {patient}"] if patient is not None else []) + ([f"file {os.fspath(path)}"] if path else [])
    return ", ".join(parts) + ": " if parts else ""


def _signed_area(ij: np.ndarray) -> float:
    """Shoelace area of a polygon (positive when counter-clockwise in (i, j))."""
    x, y = ij[:, 0], ij[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def _where(points: np.ndarray) -> str:
    centre = points.mean(axis=0)
    return "centroid ({:.2f}, {:.2f}, {:.2f}) mm LPS".format(*centre)


def rasterise_contours(
    contours,
    reference: sitk.Image,
    *,
    name: str = "ROI",
    path: str | os.PathLike | None = None,
    patient: str | None = None,
) -> sitk.Image:
    """Rasterise closed planar contours on ``reference``'s grid by the module's rule.

    Parameters
    ----------
    contours : sequence of array_like, each (n × 3)
        Polygons in LPS mm (one per contour; the closing edge is implicit).
    reference : SimpleITK.Image
        3-D image whose grid (origin, spacing, direction) receives the mask; its voxels are unused.
    name : str
        ROI name, for messages.
    path, patient
        Named in errors.

    Returns
    -------
    SimpleITK.Image
        uint8 0/1 mask on ``reference``'s grid.

    Raises
    ------
    GeometryError
        A contour off every slice or not parallel to the slices (the message names the ROI and the
        contour's centroid), a sheared reference grid, or an ROI wholly outside the field of view.
    SegmentationError
        No contours, or no voxel centre inside them (contours smaller than a voxel).

    Warns
    -----
    QCWarning
        Part of the ROI lies outside the reference's field of view (in-plane).

    Examples
    --------
    A 4 × 4 mm square around voxel centres 1..2 (i and j) on slice 0 of a 1 mm grid:

    >>> import SimpleITK as sitk
    >>> grid = sitk.Image(5, 5, 2, sitk.sitkUInt8)
    >>> square = [[0.5, 0.5, 0.0], [2.5, 0.5, 0.0], [2.5, 2.5, 0.0], [0.5, 2.5, 0.0]]
    >>> mask = rasterise_contours([square], grid)
    >>> sitk.GetArrayFromImage(mask)[0].tolist()
    [[0, 0, 0, 0, 0], [0, 1, 1, 0, 0], [0, 1, 1, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]]
    """
    if reference.GetDimension() != 3:
        raise GeometryError(f"the reference image is {reference.GetDimension()}-D; a 3-D image is needed",
                            patient=patient, path=path)
    split_affine(index_to_lps_matrix(reference), patient=patient, path=path)  # refuses sheared grids
    if len(contours) == 0:
        raise SegmentationError(f"ROI {name!r} has no contours", patient=patient, path=path)
    nx, ny, nz = reference.GetSize()
    spacing_k = float(reference.GetSpacing()[2])
    tol_k = PLANE_TOL_MM / spacing_k
    tol_ij = PLANE_TOL_MM / max(reference.GetSpacing()[:2])  # in voxels, the stricter of i and j
    by_slice: dict[int, list[tuple[float, np.ndarray]]] = {}
    failures = []
    for c, pts in enumerate(contours, start=1):
        pts = np.asarray(pts, float).reshape(-1, 3)
        idx = lps_to_index(reference, pts)
        k = int(np.floor(idx[:, 2].mean() + 0.5 + TIE_VOX))
        off = np.abs(idx[:, 2] - k)
        if off.max() > 0.5 + tol_k:
            spread = (idx[:, 2].max() - idx[:, 2].min()) * spacing_k
            failures.append(
                f"contour {c} ({_where(pts)}) is not parallel to the reference's slices: its points spread "
                f"{spread:.2f} mm along the slice normal, more than fits within half a slice spacing "
                f"({spacing_k / 2:.2f} mm) of one slice")
        elif not 0 <= k < nz:
            failures.append(
                f"contour {c} ({_where(pts)}) lies off every slice of the reference: it is at slice index "
                f"{idx[:, 2].mean():.2f}, the reference has slices 0..{nz - 1} ({spacing_k:g} mm apart)")
        elif abs(_signed_area(idx[:, :2])) < 1e-9:
            raise SegmentationError(f"ROI {name!r}: contour {c} ({_where(pts)}) encloses no area (its points are "
                                    "collinear)", patient=patient, path=path)
        else:
            ij = idx[:, :2] if _signed_area(idx[:, :2]) > 0 else idx[::-1, :2]  # counter-clockwise in (i, j)
            by_slice.setdefault(k, []).append((float(idx[:, 2].mean() * spacing_k), ij))
    if failures:
        more = f" (and {len(failures) - 1} more contour(s))" if len(failures) > 1 else ""
        raise GeometryError(f"ROI {name!r}: {failures[0]}{more}; give a reference image whose slices hold "
                            "the contours (the image the ROI was drawn on)", patient=patient, path=path)

    # imported here, not with the module: matplotlib is slow to load
    from matplotlib.path import Path as PolygonPath

    out = np.zeros((nz, ny, nx), np.uint8)
    clipped = False
    for k, items in by_slice.items():
        items.sort(key=lambda t: t[0])
        planes, current, last = [], [], None
        for level, ij in items:  # contours closer than PLANE_TOL_MM along the normal share a plane
            if last is not None and level - last > PLANE_TOL_MM:
                planes.append(current)
                current = []
            current.append(ij)
            last = level
        planes.append(current)
        for polygons in planes:
            stacked = np.vstack(polygons)
            lo, hi = stacked.min(axis=0), stacked.max(axis=0)
            clipped |= bool(np.any(lo < -0.5) or hi[0] > nx - 0.5 or hi[1] > ny - 0.5)
            i0, j0 = max(int(np.ceil(lo[0] - tol_ij)), 0), max(int(np.ceil(lo[1] - tol_ij)), 0)
            i1, j1 = min(int(np.floor(hi[0] + tol_ij)), nx - 1), min(int(np.floor(hi[1] + tol_ij)), ny - 1)
            if i0 > i1 or j0 > j1:
                continue
            jj, ii = np.mgrid[j0:j1 + 1, i0:i1 + 1]
            centres = np.column_stack([ii.ravel(), jj.ravel()]).astype(float)
            inside = np.zeros(centres.shape[0], bool)
            for ij in polygons:  # even-odd within one plane
                # radius: matplotlib grows a counter-clockwise path by radius / 2 on every side
                inside ^= PolygonPath(ij).contains_points(centres, radius=2 * tol_ij)
            out[k, j0:j1 + 1, i0:i1 + 1] |= inside.reshape(ii.shape).astype(np.uint8)
    if not out.any():
        if clipped:
            raise GeometryError(f"ROI {name!r} lies outside the reference image's field of view",
                                patient=patient, path=path)
        raise SegmentationError(f"ROI {name!r} is empty after rasterisation: its contours enclose no voxel centre "
                                "of the reference (contours smaller than a voxel?)", patient=patient, path=path)
    if clipped:
        warnings.warn(f"{_who(patient, path)}part of ROI {name!r} lies outside the reference "
                      "image's field of view (in-plane); only the part inside is measured", QCWarning, stacklevel=2)
    image = sitk.GetImageFromArray(out)
    image.CopyInformation(reference)
    return image


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------


def read_rtstruct(
    path: str | os.PathLike,
    reference: sitk.Image,
    *,
    segment: str | None = None,
    label: int | None = None,
    patient: str | None = None,
    reference_frame_of_reference: str | None = None,
    reference_name: str | os.PathLike | None = None,
) -> sitk.Image:
    """Read one ROI of an RT Structure Set as a binary mask on ``reference``'s grid.

    Parameters
    ----------
    path : str or os.PathLike
        The RTSTRUCT file.
    reference : SimpleITK.Image
        Image whose grid the contours are rasterised on (see the module docstring for the rule).
    segment : str, optional
        Exact, case-sensitive ROI Name.
    label : int, optional
        ROI Number. Without ``segment`` or ``label`` the only ROI is taken.
    patient : str, optional
        Manifest ``patient_id``, named in errors.
    reference_frame_of_reference : str, optional
        The reference image's Frame of Reference UID, when known; another UID than the ROI's is a
        :class:`QCWarning` (the UIDs themselves are not printed).
    reference_name : str or os.PathLike, optional
        The reference image's file or folder, named in that warning.

    Returns
    -------
    SimpleITK.Image
        uint8 0/1 mask on ``reference``'s grid (same size, origin, spacing, direction; LPS mm).

    Raises
    ------
    InputError
        Missing or unreadable file, not an RTSTRUCT, both ``segment`` and ``label``, malformed
        Contour Data.
    SegmentationError
        Unknown ROI (the message lists names and numbers), an ambiguous name, several ROIs and none
        chosen, an ROI without contours, an empty contour, a non-closed contour type, an empty result.
    GeometryError
        A contour off every slice or not parallel to them, an ROI outside the field of view.
    """
    if segment is not None and label is not None:
        raise InputError("give either an ROI Name or an ROI Number, not both", patient=patient, path=path)
    ds = _dataset(path, patient)
    roi = _choose_roi(_rois(ds), segment, label, path, patient)
    contours = _contour_points(roi, path, patient)
    own = roi["frame_of_reference"] or next(iter(structure_set_frames_of_reference(ds)), None)
    if reference_frame_of_reference and own and reference_frame_of_reference != own:
        warnings.warn(
            f"{_who(patient, None)}the structure set {os.fspath(path)} and the reference image "
            f"{os.fspath(reference_name) if reference_name is not None else '(given as an image)'} "
            f"are in different Frames of Reference; ROI {roi['name']!r} is rasterised on the reference's grid as "
            "chosen, which is right only if the two share patient coordinates", QCWarning, stacklevel=2)
    return rasterise_contours(contours, reference, name=roi["name"], path=path, patient=patient)


def list_rtstruct_rois(
    path: str | os.PathLike,
    *,
    patient: str | None = None,
    reference_frame_of_reference: str | None = None,
) -> pd.DataFrame:
    """The ROIs of an RT Structure Set, one row each (no UIDs).

    Returns
    -------
    pandas.DataFrame
        Columns ``name`` (ROI Name), ``label_value`` (ROI Number), ``n_contours``, ``contour_types``
        (tuple of the Contour Geometric Types present), ``interpreted_type`` (RT ROI Interpreted
        Type, e.g. ``GTV``, ``ORGAN``), ``algorithm`` (ROI Generation Algorithm) and, when
        ``reference_frame_of_reference`` is given, ``matches_reference`` (bool: the ROI lies in that
        Frame of Reference).
    """
    ds = _dataset(path, patient)
    default = next(iter(structure_set_frames_of_reference(ds)), None)
    rows = []
    for roi in _rois(ds):
        row = {
            "name": roi["name"],
            "label_value": roi["number"],
            "n_contours": len(roi["contours"]),
            "contour_types": tuple(sorted({str(c.get("ContourGeometricType", "")) for c in roi["contours"]})),
            "interpreted_type": roi["interpreted_type"],
            "algorithm": roi["algorithm"],
        }
        if reference_frame_of_reference is not None:
            row["matches_reference"] = (roi["frame_of_reference"] or default) == reference_frame_of_reference
        rows.append(row)
    columns = ["name", "label_value", "n_contours", "contour_types", "interpreted_type", "algorithm"]
    if reference_frame_of_reference is not None:
        columns.append("matches_reference")
    return pd.DataFrame(rows, columns=columns)

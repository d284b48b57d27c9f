"""One feature row per patient: tumour, liver and muscle uptake, their ratios, and MTV shape.

Uptake and shape are computed on the SPECT grid (the MTV is a SPECT quantity). A tumour ROI that
lives on another grid (CT, or a Slicer segmentation with its own geometry) is resampled onto the
SPECT grid with nearest-neighbour interpolation in physical space (LPS, mm).
"""

from __future__ import annotations

import inspect
import math
import time
import warnings
from typing import Mapping, Sequence

import numpy as np
import SimpleITK as sitk

from . import io, slicer
from .errors import GeometryError, MibgkitError, QCWarning, SegmentationError
from .segment import mtv_mask
from .shape import shape_features
from .voi import reference_uptake

#: The SPEC §1 feature columns, in report order.
FEATURE_COLUMNS = (
    "tmax", "tmean", "lmax", "lmean", "mmax", "mmean",
    "tmax_lmax", "tmean_lmean", "tmax_lmean", "tmax_mmax", "tmean_mmean",
    "mtv_ml", "surface_mm2", "asphericity", "sphericity", "max_diameter_mm", "voxel_volume_ml",
)

#: Sphere names expected in markups files / manifest coordinate columns.
SPHERES = ("liver", "muscle_left", "muscle_right")

#: Voxel-index tolerance under which a SPECT voxel centre counts as exactly halfway between two ROI
#: voxels (nearest-neighbour resampling then takes the higher index, whatever the rounding noise).
_TIE_VOX = 1e-6


def _same_grid(a: sitk.Image, b: sitk.Image, tol: float = 1e-4) -> bool:
    return (
        a.GetSize() == b.GetSize()
        and np.allclose(a.GetSpacing(), b.GetSpacing(), atol=tol)
        and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=tol)
        and np.allclose(a.GetDirection(), b.GetDirection(), atol=tol)
    )


def _affine(image: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """``(A, o)`` with ``p = A @ (i, j, k) + o``: voxel index (SimpleITK order) to LPS mm."""
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    return direction * np.asarray(image.GetSpacing(), dtype=float)[None, :], np.asarray(image.GetOrigin(), float)


def _inside_fov(image: sitk.Image, points_mm: np.ndarray, reference: sitk.Image) -> np.ndarray:
    """Which physical points (n × 3, LPS mm) fall inside ``reference``'s voxel grid."""
    size = np.array(reference.GetSize())
    idx = np.array([reference.TransformPhysicalPointToContinuousIndex(tuple(map(float, p))) for p in points_mm])
    return np.all((idx > -0.5) & (idx < size - 0.5), axis=1)


def _all_voxels_inside(arr_kji: np.ndarray, roi: sitk.Image, reference: sitk.Image) -> bool:
    """Whether the centre of every non-zero ROI voxel lies inside ``reference``'s voxel grid.

    Checked voxel by voxel (vectorised): on an oblique grid the corners of the index bounding box
    may lie outside while no voxel does.
    """
    k, j, i = np.nonzero(arr_kji)
    a_r, o_r = _affine(roi)
    a_s, o_s = _affine(reference)
    ijk = np.stack([i, j, k]).astype(float)
    on_ref = np.linalg.solve(a_s, a_r @ ijk + (o_r - o_s)[:, None])
    size = np.asarray(reference.GetSize(), float)[:, None]
    return bool(np.all((on_ref > -0.5) & (on_ref < size - 0.5)))


def _nonzero_box(arr_kji: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Inclusive index bounds ``(lo, hi)`` (SimpleITK order i, j, k) of the non-zero voxels, or None."""
    bounds = []
    for axis in (2, 1, 0):  # i, j, k are numpy axes 2, 1, 0
        other = tuple(a for a in range(3) if a != axis)
        present = np.flatnonzero(arr_kji.any(axis=other))
        if present.size == 0:
            return None
        bounds.append((present[0], present[-1]))
    lo, hi = zip(*bounds)
    return np.asarray(lo, int), np.asarray(hi, int)


def _box_on_reference(roi: sitk.Image, lo: np.ndarray, hi: np.ndarray, reference: sitk.Image):
    """Reference voxels (inclusive index bounds, clamped) whose centres can fall in the ROI box.

    The ROI voxels ``lo..hi`` occupy, in physical space, the box between continuous indices
    ``lo - 0.5`` and ``hi + 0.5``; its 8 corners mapped onto the reference grid, rounded outwards
    and grown by one voxel, bound every reference voxel that nearest-neighbour sampling can put
    inside the ROI. Returns ``(lo, hi)`` on the reference or None when they do not overlap.
    """
    a_r, o_r = _affine(roi)
    a_s, o_s = _affine(reference)
    corners = np.array([[x, y, z] for x in (lo[0] - 0.5, hi[0] + 0.5) for y in (lo[1] - 0.5, hi[1] + 0.5)
                        for z in (lo[2] - 0.5, hi[2] + 0.5)], float)
    on_ref = np.linalg.solve(a_s, (corners @ a_r.T + o_r - o_s).T).T
    size = np.asarray(reference.GetSize())
    box_lo = np.maximum(np.floor(on_ref.min(axis=0)).astype(int) - 1, 0)
    box_hi = np.minimum(np.ceil(on_ref.max(axis=0)).astype(int) + 1, size - 1)
    if np.any(box_lo > box_hi):
        return None
    return box_lo, box_hi


def _nearest_neighbour(roi_kji: np.ndarray, roi: sitk.Image, reference: sitk.Image,
                       lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Nearest-neighbour samples of the ROI (non-zero inside) at the centres of reference voxels ``lo..hi``.

    Each reference voxel centre is mapped into the ROI's continuous index from its *absolute*
    reference index, so a voxel gets the same value whatever box it is computed in (a crop and
    the full grid agree bit for bit). The nearest index is ``floor(c + 0.5)``: half-integers round
    up, as ITK's nearest-neighbour interpolator does, and so do centres within ``1e-6`` voxel of a
    half-integer (grids whose voxel edges align, as a 2× oversampled Slicer segmentation's do, put
    SPECT voxel centres exactly halfway between ROI voxels; rounding noise must not pick the side).
    Centres outside the ROI grid get 0.

    ``roi_kji`` is the ROI's voxel array (numpy order) and ``roi`` its image (for the geometry).
    Returns a uint8 0/1 array indexed ``[k, j, i]`` over the box.
    """
    a_r, o_r = _affine(roi)
    a_s, o_s = _affine(reference)
    to_roi = np.linalg.inv(a_r)
    b = to_roi @ a_s
    t = to_roi @ (o_s - o_r)
    i = np.arange(lo[0], hi[0] + 1, dtype=float)[None, None, :]
    j = np.arange(lo[1], hi[1] + 1, dtype=float)[None, :, None]
    k = np.arange(lo[2], hi[2] + 1, dtype=float)[:, None, None]
    shape = (k.shape[0], j.shape[1], i.shape[2])
    inside = np.ones(shape, bool)
    index = []
    for d, n in enumerate(roi.GetSize()):
        c = np.floor((b[d, 2] * k + b[d, 1] * j) + b[d, 0] * i + t[d] + (0.5 + _TIE_VOX)).astype(np.intp)
        c = np.broadcast_to(c, shape)
        inside &= (c >= 0) & (c < n)
        index.append(c)
    out = np.zeros(shape, np.uint8)
    out[inside] = roi_kji[index[2][inside], index[1][inside], index[0][inside]] != 0
    return out


def _sub_image(array_kji: np.ndarray, reference: sitk.Image, lo) -> sitk.Image:
    """An image of ``array_kji`` placed on ``reference``'s grid with its first voxel at index ``lo``."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(array_kji))
    image.SetSpacing(reference.GetSpacing())
    image.SetDirection(reference.GetDirection())
    image.SetOrigin(reference.TransformIndexToPhysicalPoint(tuple(int(v) for v in lo)))
    return image


def roi_box_on_grid(
    roi: sitk.Image,
    reference: sitk.Image,
    *,
    margin_vox: Sequence[int] = (0, 0, 0),
    patient=None,
    path=None,
    what: str = "tumour ROI",
) -> tuple[sitk.Image, tuple[int, int, int]]:
    """The ROI as a uint8 0/1 mask on the box of ``reference``'s grid that holds it.

    The same mask as :func:`roi_on_grid`, but only over the bounding box of its voxels grown by
    ``margin_vox`` voxels (i, j, k) and clamped to the grid: cost follows the tumour, not the image.

    Parameters
    ----------
    roi : SimpleITK.Image
        Tumour ROI (non-zero inside) on any grid.
    reference : SimpleITK.Image
        The SPECT image whose grid the mask is wanted on.
    margin_vox : sequence of 3 int
        Extra voxels on each side of the box (for a search region around the ROI).
    patient, path
        Named in errors.
    what : str
        What the mask is, as messages name it (``"tumour ROI"``, ``"organ 'liver'"``).

    Returns
    -------
    mask : SimpleITK.Image
        uint8 0/1 on the box; its origin places it on ``reference``'s lattice.
    start : tuple of 3 int
        Index (i, j, k) of the box's first voxel in ``reference``; ``reference[i0:i0+nx, ...]``
        is the matching crop of the image.

    Raises
    ------
    SegmentationError
        The ROI is empty, or nothing of it survives resampling (thinner than a SPECT voxel).
    GeometryError
        The ROI lies outside the reference field of view.

    Warns
    -----
    QCWarning
        Part of the ROI lies outside the reference field of view.
    """
    arr = sitk.GetArrayViewFromImage(roi)
    box = _nonzero_box(arr)
    if box is None:
        raise SegmentationError(f"the {what} is empty", patient=patient, path=path)
    lo, hi = box
    size = np.asarray(reference.GetSize())
    margin = np.asarray(margin_vox, int)
    if _same_grid(roi, reference):
        b_lo, b_hi = np.maximum(lo - margin, 0), np.minimum(hi + margin, size - 1)
        crop = arr[b_lo[2]:b_hi[2] + 1, b_lo[1]:b_hi[1] + 1, b_lo[0]:b_hi[0] + 1]
        return _sub_image((crop != 0).astype(np.uint8), reference, b_lo), tuple(int(v) for v in b_lo)
    covered = _box_on_reference(roi, lo, hi, reference)
    sampled = None
    if covered is not None:
        c_lo, c_hi = covered
        sampled = _nearest_neighbour(arr, roi, reference, c_lo, c_hi)
    if sampled is None or not sampled.any():
        nz = np.nonzero(arr)
        k, j, i = (a[::max(1, a.size // 500)] for a in nz)
        pts = np.array([roi.TransformIndexToPhysicalPoint((int(a), int(b), int(c))) for a, b, c in zip(i, j, k)])
        if not _inside_fov(roi, pts, reference).any():
            raise GeometryError(f"the {what} lies outside the SPECT field of view", patient=patient, path=path)
        raise SegmentationError(
            f"the {what} is empty after resampling onto the SPECT grid (it is thinner than a SPECT voxel)",
            patient=patient, path=path,
        )
    if not _all_voxels_inside(arr, roi, reference):
        warnings.warn(f"part of the {what} lies outside the SPECT field of view", QCWarning, stacklevel=2)
    # Tighten to the sampled voxels, then grow by the margin (clamped to the grid).
    s_lo, s_hi = _nonzero_box(sampled)
    s_lo, s_hi = s_lo + c_lo, s_hi + c_lo
    b_lo, b_hi = np.maximum(s_lo - margin, 0), np.minimum(s_hi + margin, size - 1)
    out = np.zeros(tuple((b_hi - b_lo + 1)[::-1]), np.uint8)
    src_lo, src_hi = np.maximum(b_lo, c_lo), np.minimum(b_hi, c_hi)
    out[src_lo[2] - b_lo[2]:src_hi[2] - b_lo[2] + 1, src_lo[1] - b_lo[1]:src_hi[1] - b_lo[1] + 1,
        src_lo[0] - b_lo[0]:src_hi[0] - b_lo[0] + 1] = sampled[
        src_lo[2] - c_lo[2]:src_hi[2] - c_lo[2] + 1, src_lo[1] - c_lo[1]:src_hi[1] - c_lo[1] + 1,
        src_lo[0] - c_lo[0]:src_hi[0] - c_lo[0] + 1]
    return _sub_image(out, reference, b_lo), tuple(int(v) for v in b_lo)


def roi_on_grid(roi: sitk.Image, reference: sitk.Image, *, patient=None, path=None,
                what: str = "tumour ROI") -> sitk.Image:
    """The ROI (non-zero inside) as a uint8 0/1 mask on ``reference``'s grid.

    Nearest-neighbour resampling in physical space (see :func:`roi_box_on_grid`, which does the
    work on the ROI's bounding box only); identity when the grids already agree.
    Raises :class:`GeometryError` when the ROI lies outside the reference field of view and
    :class:`SegmentationError` when it is empty, or nothing of it survives resampling; warns
    (:class:`QCWarning`) when part of it lies outside the field of view.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", QCWarning)
        box, start = roi_box_on_grid(roi, reference, patient=patient, path=path, what=what)
    for w in caught:
        warnings.warn(w.message, w.category, stacklevel=2)
    full = np.zeros(tuple(reference.GetSize())[::-1], np.uint8)
    i0, j0, k0 = start
    nx, ny, nz = box.GetSize()
    full[k0:k0 + nz, j0:j0 + ny, i0:i0 + nx] = sitk.GetArrayViewFromImage(box)
    out = sitk.GetImageFromArray(full)
    out.CopyInformation(reference)
    return out


def _finite_ratio(a: float, b: float) -> float:
    return a / b if b > 0 else math.nan


def mtv_margin_vox(spacing: Sequence[float], mtv_method: str = "roi", mtv_params: Mapping | None = None) -> np.ndarray:
    """Voxels (i, j, k) around the ROI that the MTV definition looks at.

    ``"roi"`` needs none; the thresholds search the ROI dilated by ``dilation_mm`` and, for
    ``"adaptive"``, a background shell ``background_shell_mm`` around it (defaults of
    :func:`mibgkit.segment.mtv_mask`). Two voxels more than :func:`~mibgkit.segment.mtv_mask`'s own
    crop, so that the crop it takes inside this box is the one it takes on the full image.
    """
    if mtv_method == "roi":
        return np.zeros(3, int)
    defaults = inspect.signature(mtv_mask).parameters
    params = dict(mtv_params or {})
    reach = sum(float(params.get(k, defaults[k].default)) for k in ("dilation_mm", "background_shell_mm"))
    return np.ceil(max(reach, 0.0) / np.asarray(spacing, float)).astype(int) + 2


def _crop(image: sitk.Image, start: Sequence[int], size: Sequence[int]) -> sitk.Image:
    """``image`` restricted to the box of ``size`` voxels at index ``start`` (geometry kept)."""
    return sitk.RegionOfInterest(image, [int(v) for v in size], [int(v) for v in start])


def _tumour_features(spect_box: sitk.Image, roi_box: sitk.Image, *, mtv_method: str, mtv_params,
                     timings: dict | None) -> tuple[dict, dict]:
    """Tumour uptake, MTV and shape from the SPECT and ROI on the same box of the SPECT grid."""
    t0 = time.perf_counter()
    roi_arr = sitk.GetArrayViewFromImage(roi_box) != 0
    if not roi_arr.any():
        raise SegmentationError("the tumour ROI is empty on the SPECT grid")
    values = sitk.GetArrayViewFromImage(spect_box)[roi_arr].astype(float)
    mtv, info = mtv_mask(spect_box, roi_box, mtv_method, **dict(mtv_params or {}))
    t1 = time.perf_counter()
    shape = shape_features(mtv)
    if timings is not None:
        timings["mtv"] = timings.get("mtv", 0.0) + t1 - t0
        timings["shape"] = timings.get("shape", 0.0) + time.perf_counter() - t1
    tumour = {"tmax": float(values.max()), "tmean": float(values.mean()), "roi_n_voxels": int(roi_arr.sum())}
    return tumour, {"shape": shape, "info": info}


def _feature_row(tumour: dict, mtv: dict, ref: dict, mtv_method: str) -> dict:
    shape, info = mtv["shape"], mtv["info"]
    row = {
        "tmax": tumour["tmax"],
        "tmean": tumour["tmean"],
        "lmax": ref["lmax"], "lmean": ref["lmean"], "mmax": ref["mmax"], "mmean": ref["mmean"],
    }
    row.update(
        tmax_lmax=_finite_ratio(row["tmax"], row["lmax"]),
        tmean_lmean=_finite_ratio(row["tmean"], row["lmean"]),
        tmax_lmean=_finite_ratio(row["tmax"], row["lmean"]),
        tmax_mmax=_finite_ratio(row["tmax"], row["mmax"]),
        tmean_mmean=_finite_ratio(row["tmean"], row["mmean"]),
        mtv_ml=shape["mesh_volume_mm3"] / 1000.0,
        surface_mm2=shape["surface_mm2"],
        asphericity=shape["asphericity"],
        sphericity=shape["sphericity"],
        max_diameter_mm=shape["max_diameter_mm"],
        voxel_volume_ml=shape["voxel_volume_mm3"] / 1000.0,
    )
    notes = list(ref["warnings"])
    for key in ("lmax", "mmax", "lmean", "mmean"):
        if not row[key] > 0:
            notes.append(f"{key} is {row[key]:g}: ratios over it are undefined")
    row.update(
        roi_n_voxels=tumour["roi_n_voxels"],
        mtv_method=mtv_method,
        mtv_n_voxels=info["n_voxels"],
        mtv_threshold=info["threshold"],
    )
    row.update({k: v for k, v in ref.items() if k.startswith(SPHERES)})
    row["qc_warnings"] = "; ".join(notes)
    return row


def _reference(spect: sitk.Image, centres, organ_masks, timings: dict | None) -> dict:
    t0 = time.perf_counter()
    ref = reference_uptake(spect, centres, organ_masks=organ_masks)
    if timings is not None:
        timings["spheres"] = timings.get("spheres", 0.0) + time.perf_counter() - t0
    return ref


def image_features(
    spect: sitk.Image,
    roi: sitk.Image,
    centres: Mapping[str, Sequence[float]],
    *,
    mtv_method: str = "roi",
    mtv_params: Mapping | None = None,
    organ_masks: Mapping[str, sitk.Image] | None = None,
) -> dict:
    """The SPEC §1 features of one patient from images already in memory.

    Parameters
    ----------
    spect : SimpleITK.Image
        SPECT counts (no SUV for MIBG).
    roi : SimpleITK.Image
        Primary-tumour ROI on the SPECT grid (see :func:`roi_on_grid`).
    centres : mapping
        ``liver``, ``muscle_left``, ``muscle_right`` sphere centres, LPS mm.
    mtv_method, mtv_params
        MTV definition, see :func:`mibgkit.segment.mtv_mask`; ``"roi"`` (as drawn) by default.

    Returns
    -------
    dict
        ``tmax, tmean`` (counts, inside the ROI as drawn), ``lmax, lmean, mmax, mmean``, the five
        ratios, shape of the MTV (``mtv_ml`` mesh volume in ml, ``surface_mm2``, ``asphericity``,
        ``sphericity``, ``max_diameter_mm``, ``voxel_volume_ml``), and QC columns: ``roi_n_voxels``,
        ``mtv_n_voxels``, ``mtv_threshold``, per sphere ``<s>_n_voxels``, ``<s>_volume_ml``,
        ``<s>_fraction_inside``, ``<s>_fraction_in_organ``, and ``qc_warnings`` (str, "; "-joined).

    Notes
    -----
    Tumour uptake, MTV and shape are computed on the ROI's bounding box (grown by what the MTV
    definition searches, :func:`mtv_margin_vox`); the values are those of the full grid.
    """
    if roi.GetSize() != spect.GetSize():
        raise GeometryError("the ROI is not on the SPECT grid; resample it first (features.roi_on_grid)")
    box = _nonzero_box(sitk.GetArrayViewFromImage(roi))
    if box is None:
        raise SegmentationError("the tumour ROI is empty on the SPECT grid")
    margin = mtv_margin_vox(spect.GetSpacing(), mtv_method, mtv_params)
    lo = np.maximum(box[0] - margin, 0)
    hi = np.minimum(box[1] + margin, np.asarray(spect.GetSize()) - 1)
    start, size = lo, hi - lo + 1
    ref = _reference(spect, centres, organ_masks, None)
    tumour, mtv = _tumour_features(_crop(spect, start, size), _crop(roi, start, size),
                                   mtv_method=mtv_method, mtv_params=mtv_params, timings=None)
    return _feature_row(tumour, mtv, ref, mtv_method)


def load_roi(row: Mapping, *, patient=None) -> sitk.Image:
    """The tumour ROI named by a manifest row, on its own grid (Slicer segmentation or labelmap)."""
    segment = row.get("roi_segment")
    label = row.get("roi_label")
    label = None if label is None or (isinstance(label, float) and math.isnan(label)) else int(label)
    return slicer.read_segmentation(row["roi"], segment=segment, label=label, patient=patient)


#: Organ segments a reference sphere must stay inside, by sphere (first match wins).
ORGAN_SEGMENTS = {"liver": ("liver",), "muscle_left": ("muscle_left", "muscle"), "muscle_right": ("muscle_right", "muscle")}


def load_organs(row: Mapping, spect: sitk.Image, *, patient=None) -> dict[str, sitk.Image] | None:
    """Organ masks on the SPECT grid, by sphere name, from the row's ``organs`` segmentation.

    Segments are matched by exact name (:data:`ORGAN_SEGMENTS`); a sphere without a matching
    segment is not checked. An organ that is empty or outside the SPECT field of view is a
    :class:`QCWarning` (that sphere is then not checked), not an error: the check is optional.
    ``None`` when the row has no organ segmentation.
    """
    path = row.get("organs")
    if not path:
        return None
    names = set(slicer.list_segments(path, patient=patient)["name"])
    masks: dict[str, sitk.Image] = {}
    for sphere, candidates in ORGAN_SEGMENTS.items():
        for name in candidates:
            if name in names:
                try:
                    organ = slicer.read_segmentation(path, segment=name, patient=patient)
                    masks[sphere] = roi_on_grid(organ, spect, patient=patient, path=path, what=f"organ {name!r}")
                except (GeometryError, SegmentationError) as e:  # the check is optional: say so, go on
                    warnings.warn(f"{e.reason}; the {sphere} sphere is not checked against it", QCWarning,
                                  stacklevel=2)
                break
    return masks


def load_centres(row: Mapping, *, patient=None) -> dict[str, tuple[float, float, float]]:
    """Sphere centres (LPS mm) from the row's markups file, else from its coordinate columns."""
    markups = row.get("markups")
    if markups:
        points = slicer.read_markups(markups, patient=patient)
        slicer.require_points(points, SPHERES, markups, patient)
        return {s: tuple(float(v) for v in points[s]) for s in SPHERES}
    try:
        return {s: tuple(float(row[f"{s}_{a}_mm"]) for a in "xyz") for s in SPHERES}
    except (KeyError, TypeError, ValueError) as e:
        raise GeometryError(f"no markups file and no usable sphere-centre columns ({e})", patient=patient) from e


def load_patient_images(row: Mapping) -> tuple[sitk.Image, sitk.Image, dict]:
    """SPECT, the ROI on the SPECT grid, and the sphere centres of one manifest row (for QC views)."""
    pid = str(row["patient_id"])
    spect = io.load_image(row["spect"], patient=pid)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", QCWarning)
        roi = roi_on_grid(load_roi(row, patient=pid), spect, patient=pid, path=row["roi"])
    return spect, roi, load_centres(row, patient=pid)


def extract_patient(
    row: Mapping,
    *,
    mtv_method: str = "roi",
    mtv_params: Mapping | None = None,
    native_shape: bool = False,
    timings: dict | None = None,
) -> dict:
    """Read one patient's files (a manifest row with absolute paths) and compute its features.

    Parameters
    ----------
    row : mapping
        Manifest row: ``patient_id``, ``spect``, ``roi`` (+ ``roi_segment`` / ``roi_label``),
        ``markups`` or sphere-centre columns.
    mtv_method, mtv_params
        MTV definition, see :func:`mibgkit.segment.mtv_mask`.
    native_shape : bool
        Also measure the ROI's shape on its own grid (``roi_native_asphericity``,
        ``roi_native_mtv_ml``), to show the effect of the SPECT grid.
    timings : dict, optional
        When given, filled with the seconds spent per stage: ``spect_read``, ``roi_read``,
        ``markups_read``, ``resample``, ``spheres``, ``mtv``, ``shape``, ``native_shape``.

    Returns
    -------
    dict
        ``patient_id`` and the columns of :func:`image_features`.

    Raises
    ------
    MibgkitError
        Every error, re-raised so that it names the patient and, where known, the file.

    Notes
    -----
    Each file is read once. The ROI is resampled onto the SPECT grid only over its bounding box
    (:func:`roi_box_on_grid`) and tumour uptake, MTV and shape are computed on that box; the
    reference spheres read the full SPECT image. The values are those of the full-grid computation.
    """
    pid = str(row["patient_id"])
    clock = _Stopwatch(timings)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", QCWarning)
            spect = io.load_image(row["spect"], patient=pid)
            io.check_counts(spect, row["spect"], pid)
            clock.lap("spect_read")
            roi_native = load_roi(row, patient=pid)
            clock.lap("roi_read")
            centres = load_centres(row, patient=pid)
            organs = load_organs(row, spect, patient=pid)
            clock.lap("markups_read")
            margin = mtv_margin_vox(spect.GetSpacing(), mtv_method, mtv_params)
            roi_box, start = roi_box_on_grid(roi_native, spect, margin_vox=margin, patient=pid, path=row["roi"])
            spect_box = _crop(spect, start, roi_box.GetSize())
            clock.lap("resample")
            ref = _reference(spect, centres, organs, timings)
            tumour, mtv = _tumour_features(spect_box, roi_box, mtv_method=mtv_method, mtv_params=mtv_params,
                                           timings=timings)
            out = _feature_row(tumour, mtv, ref, mtv_method)
        clock.restart()
        extra = [str(w.message) for w in caught if issubclass(w.category, QCWarning)]
        for w in caught:  # anything else (numpy, SimpleITK) is passed on, not swallowed
            if not issubclass(w.category, QCWarning):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        if extra:
            out["qc_warnings"] = "; ".join(filter(None, [out["qc_warnings"], *extra]))
        if native_shape:
            native = shape_features(roi_native)
            out["roi_native_asphericity"] = native["asphericity"]
            out["roi_native_mtv_ml"] = native["mesh_volume_mm3"] / 1000.0
            clock.lap("native_shape")
    except MibgkitError as e:
        raise e.for_patient(pid)
    except (RuntimeError, ValueError, OSError) as e:  # SimpleITK / numpy / file system
        raise MibgkitError(f"{type(e).__name__}: {e}", patient=pid) from e
    return {"patient_id": pid, **out}


class _Stopwatch:
    """Adds the seconds since the last lap to ``timings[stage]`` (does nothing without a dict)."""

    def __init__(self, timings: dict | None):
        self.timings = timings
        self.restart()

    def restart(self) -> None:
        self.t = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        if self.timings is not None:
            self.timings[stage] = self.timings.get(stage, 0.0) + now - self.t
        self.t = now

"""One feature row per patient: tumour, liver and muscle uptake, their ratios, and MTV shape.

Uptake and shape are computed on the SPECT grid (the MTV is a SPECT quantity). A tumour ROI that
lives on another grid (CT, or a Slicer segmentation with its own geometry) is resampled onto the
SPECT grid with nearest-neighbour interpolation in physical space (LPS, mm).
"""

from __future__ import annotations

import math
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


def _same_grid(a: sitk.Image, b: sitk.Image, tol: float = 1e-4) -> bool:
    return (
        a.GetSize() == b.GetSize()
        and np.allclose(a.GetSpacing(), b.GetSpacing(), atol=tol)
        and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=tol)
        and np.allclose(a.GetDirection(), b.GetDirection(), atol=tol)
    )


def _inside_fov(image: sitk.Image, points_mm: np.ndarray, reference: sitk.Image) -> np.ndarray:
    """Which physical points (n × 3, LPS mm) fall inside ``reference``'s voxel grid."""
    size = np.array(reference.GetSize())
    idx = np.array([reference.TransformPhysicalPointToContinuousIndex(tuple(map(float, p))) for p in points_mm])
    return np.all((idx > -0.5) & (idx < size - 0.5), axis=1)


def roi_on_grid(roi: sitk.Image, reference: sitk.Image, *, patient=None, path=None) -> sitk.Image:
    """The ROI (non-zero inside) as a uint8 0/1 mask on ``reference``'s grid.

    Nearest-neighbour resampling in physical space; identity when the grids already agree.
    Raises :class:`GeometryError` when the ROI lies outside the reference field of view and
    :class:`SegmentationError` when it is empty, or nothing of it survives resampling; warns
    (:class:`QCWarning`) when part of it lies outside the field of view.
    """
    binary = sitk.Cast(roi != 0, sitk.sitkUInt8)
    arr = sitk.GetArrayViewFromImage(binary)
    if not arr.any():
        raise SegmentationError("the tumour ROI is empty", patient=patient, path=path)
    if _same_grid(roi, reference):
        return binary
    # The corners of the ROI's bounding box, in physical space.
    nz = np.nonzero(arr)
    lo = [int(a.min()) for a in nz][::-1]
    hi = [int(a.max()) for a in nz][::-1]
    corners = np.array([binary.TransformIndexToPhysicalPoint((x, y, z))
                        for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    out = sitk.Resample(binary, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    if not np.count_nonzero(sitk.GetArrayViewFromImage(out)):
        k, j, i = (a[::max(1, a.size // 500)] for a in nz)
        pts = np.array([binary.TransformIndexToPhysicalPoint((int(a), int(b), int(c))) for a, b, c in zip(i, j, k)])
        if not _inside_fov(binary, pts, reference).any():
            raise GeometryError("the tumour ROI lies outside the SPECT field of view", patient=patient, path=path)
        raise SegmentationError(
            "the tumour ROI is empty after resampling onto the SPECT grid (it is thinner than a SPECT voxel)",
            patient=patient, path=path,
        )
    if not _inside_fov(binary, corners, reference).all():
        warnings.warn("part of the tumour ROI lies outside the SPECT field of view", QCWarning, stacklevel=2)
    return out


def _finite_ratio(a: float, b: float) -> float:
    return a / b if b > 0 else math.nan


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
    """
    roi_arr = sitk.GetArrayViewFromImage(roi) != 0
    if not roi_arr.any():
        raise SegmentationError("the tumour ROI is empty on the SPECT grid")
    values = sitk.GetArrayViewFromImage(spect)[roi_arr].astype(float)
    ref = reference_uptake(spect, centres, organ_masks=organ_masks)
    mtv, info = mtv_mask(spect, roi, mtv_method, **dict(mtv_params or {}))
    shape = shape_features(mtv)
    row = {
        "tmax": float(values.max()),
        "tmean": float(values.mean()),
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
    notes = list(ref.pop("warnings"))
    for key in ("lmax", "mmax", "lmean", "mmean"):
        if not row[key] > 0:
            notes.append(f"{key} is {row[key]:g}: ratios over it are undefined")
    row.update(
        roi_n_voxels=int(roi_arr.sum()),
        mtv_method=mtv_method,
        mtv_n_voxels=info["n_voxels"],
        mtv_threshold=info["threshold"],
    )
    row.update({k: v for k, v in ref.items() if k.startswith(SPHERES)})
    row["qc_warnings"] = "; ".join(notes)
    return row


def load_roi(row: Mapping, *, patient=None) -> sitk.Image:
    """The tumour ROI named by a manifest row, on its own grid (Slicer segmentation or labelmap)."""
    segment = row.get("roi_segment")
    label = row.get("roi_label")
    label = None if label is None or (isinstance(label, float) and math.isnan(label)) else int(label)
    return slicer.read_segmentation(row["roi"], segment=segment, label=label, patient=patient)


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
) -> dict:
    """Read one patient's files (a manifest row with absolute paths) and compute its features.

    Every error is re-raised as a :class:`~mibgkit.errors.MibgkitError` that names the patient
    and, where known, the file. With ``native_shape`` the ROI's shape is also measured on its own
    grid (``roi_native_asphericity``, ``roi_native_mtv_ml``), to show the effect of the SPECT grid.
    """
    pid = str(row["patient_id"])
    try:
        spect = io.load_image(row["spect"], patient=pid)
        io.check_counts(spect, row["spect"], pid)
        roi_native = load_roi(row, patient=pid)
        centres = load_centres(row, patient=pid)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", QCWarning)
            roi = roi_on_grid(roi_native, spect, patient=pid, path=row["roi"])
            out = image_features(spect, roi, centres, mtv_method=mtv_method, mtv_params=mtv_params)
        extra = [str(w.message) for w in caught if issubclass(w.category, QCWarning)]
        if extra:
            out["qc_warnings"] = "; ".join(filter(None, [out["qc_warnings"], *extra]))
        if native_shape:
            native = shape_features(roi_native)
            out["roi_native_asphericity"] = native["asphericity"]
            out["roi_native_mtv_ml"] = native["mesh_volume_mm3"] / 1000.0
    except MibgkitError as e:
        raise e.for_patient(pid)
    except (RuntimeError, ValueError, OSError) as e:  # SimpleITK / numpy / file system
        raise MibgkitError(f"{type(e).__name__}: {e}", patient=pid) from e
    return {"patient_id": pid, **out}

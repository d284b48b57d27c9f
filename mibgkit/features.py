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
from contextlib import contextmanager
from typing import Mapping, Sequence

import numpy as np
import SimpleITK as sitk

from . import io, rois, slicer
from .geometry import crop, nonzero_box, place_on_grid, roi_box_on_grid, roi_on_grid
from .errors import GeometryError, MibgkitError, QCWarning, SegmentationError
from .segment import mtv_mask
from .shape import shape_features
from .voi import SPHERE_VOLUMES_ML, reference_uptake, sphere_index_mask, sphere_radius_mm

#: The feature columns (README "Input schema" and "Conventions"), in report order.
FEATURE_COLUMNS = (
    "tmax", "tmean", "lmax", "lmean", "mmax", "mmean",
    "tmax_lmax", "tmean_lmean", "tmax_lmean", "tmax_mmax", "tmean_mmean",
    "mtv_ml", "surface_mm2", "asphericity", "sphericity", "max_diameter_mm", "voxel_volume_ml",
)

#: Sphere names expected in markups files / manifest coordinate columns.
SPHERES = ("liver", "muscle_left", "muscle_right")

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
    return tumour, {"shape": shape, "info": info, "mask": mtv}


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
    """The features of one patient (:data:`FEATURE_COLUMNS`) from images already in memory.

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
        raise GeometryError("the ROI is not on the SPECT grid; resample it first (geometry.roi_on_grid)")
    box = nonzero_box(sitk.GetArrayViewFromImage(roi))
    if box is None:
        raise SegmentationError("the tumour ROI is empty on the SPECT grid")
    margin = mtv_margin_vox(spect.GetSpacing(), mtv_method, mtv_params)
    lo = np.maximum(box[0] - margin, 0)
    hi = np.minimum(box[1] + margin, np.asarray(spect.GetSize()) - 1)
    start, size = lo, hi - lo + 1
    ref = _reference(spect, centres, organ_masks, None)
    tumour, mtv = _tumour_features(crop(spect, start, size), crop(roi, start, size),
                                   mtv_method=mtv_method, mtv_params=mtv_params, timings=None)
    return _feature_row(tumour, mtv, ref, mtv_method)


#: The reference spheres as DICOM output names them, with their nominal volumes (ml).
SPHERE_SEGMENTS = {"liver": "liver reference", "muscle_left": "muscle left reference",
                   "muscle_right": "muscle right reference"}


def sphere_masks(spect: sitk.Image, centres: Mapping[str, Sequence[float]]) -> dict[str, sitk.Image]:
    """The three reference-sphere VOIs (voxel-centre rule) as uint8 images on boxes of the SPECT lattice."""
    out = {}
    for sphere, name in SPHERE_SEGMENTS.items():
        (k, j, i), _ = sphere_index_mask(spect, centres[sphere], sphere_radius_mm(SPHERE_VOLUMES_ML[sphere]))
        if k.size == 0:
            continue
        lo = np.array([i.min(), j.min(), k.min()])
        box = np.zeros((k.max() - lo[2] + 1, j.max() - lo[1] + 1, i.max() - lo[0] + 1), np.uint8)
        box[k - lo[2], j - lo[1], i - lo[0]] = 1
        out[name] = place_on_grid(box, spect, lo)
    return out


def load_roi(row: Mapping, *, patient=None) -> sitk.Image:
    """The tumour ROI named by a manifest row, on its own grid (any format :func:`mibgkit.rois.read_roi` reads)."""
    segment = row.get("roi_segment")
    label = row.get("roi_label")
    label = None if label is None or (isinstance(label, float) and math.isnan(label)) else int(label)
    reference = None
    if rois.roi_format(row["roi"]) == "rtstruct":  # contours need a grid: the CT of the same frame, else the SPECT
        reference = rois.rtstruct_reference(row["roi"], row.get("ct"), row["spect"], patient=patient)
    return rois.read_roi(row["roi"], segment=segment, label=label, reference=reference, patient=patient)


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
    names = set(rois.segment_names(path, patient=patient))
    masks: dict[str, sitk.Image] = {}
    for sphere, candidates in ORGAN_SEGMENTS.items():
        for name in candidates:
            if name in names:
                try:
                    organ = rois.read_roi(path, segment=name, reference=spect, patient=patient)
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
    masks: dict | None = None,
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
    masks : dict, optional
        When given, filled with what was measured, for DICOM output: ``"spect"`` (the SPECT image),
        ``"tumour MTV"`` (uint8 0/1 image on a box of the SPECT lattice) and ``"liver reference"``,
        ``"muscle left reference"``, ``"muscle right reference"`` (the sphere VOIs, likewise).

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
    ``PatientData.load(row).measure(...)``: each file is read once. The ROI is resampled onto the
    SPECT grid only over its bounding box (:func:`mibgkit.geometry.roi_box_on_grid`) and tumour
    uptake, MTV and shape are computed on that box; the reference spheres read the full SPECT image.
    The values are those of the full-grid computation.
    """
    pid = str(row["patient_id"])
    with _patient_errors(pid):
        data = PatientData.load(row, timings=timings)
        return data.measure(mtv_method=mtv_method, mtv_params=mtv_params, native_shape=native_shape,
                            timings=timings, masks=masks)


@contextmanager
def _patient_errors(pid: str):
    """Every error of one patient's measurement as a :class:`MibgkitError` naming the patient."""
    try:
        yield
    except MibgkitError as e:
        raise e.for_patient(pid)
    except (RuntimeError, ValueError, OSError) as e:  # SimpleITK / numpy / file system
        raise MibgkitError(f"{type(e).__name__}: {e}", patient=pid) from e


@contextmanager
def _qc_warnings(into: list):
    """Collect the QC warnings raised in a block into ``into`` (messages, in order); pass the rest on."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", QCWarning)
        yield
    into.extend(str(w.message) for w in caught if issubclass(w.category, QCWarning))
    for w in caught:  # anything else (numpy, SimpleITK) is passed on, not swallowed
        if not issubclass(w.category, QCWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


class PatientData:
    """One patient's inputs, read once, measured as often as wanted.

    :meth:`load` reads the SPECT, the tumour ROI (on its own grid), the sphere centres and the organ
    masks of a manifest row; :meth:`measure` computes the feature row of :func:`extract_patient`
    from them, for any MTV definition, sphere centres or replacement ROI, reusing what does not
    change (the ROI resampled onto the SPECT grid per search margin, the crops, the reference
    spheres per centre set). The live viewer and the perturbation analysis measure through it, so
    their numbers are those of ``mibgkit extract``.
    """

    def __init__(self, patient_id: str, spect: sitk.Image, roi_native: sitk.Image, centres: Mapping,
                 organs: Mapping | None, *, roi_path=None, centres_path=None, load_warnings: Sequence[str] = ()):
        self.patient_id = str(patient_id)
        self.spect = spect
        self.roi_native = roi_native
        self.centres = {k: tuple(float(x) for x in v) for k, v in centres.items()}
        self.organs = organs
        self.roi_path = roi_path
        self.centres_path = centres_path  # the markups file the centres came from (None: manifest columns)
        self.load_warnings = list(load_warnings)
        self._boxes: dict = {}
        self._refs: dict = {}
        self._native: dict = {}

    @classmethod
    def load(cls, row: Mapping, *, timings: dict | None = None) -> "PatientData":
        """Read one manifest row's files (see :func:`extract_patient` for the row)."""
        pid = str(row["patient_id"])
        clock = _Stopwatch(timings)
        notes: list[str] = []
        with _patient_errors(pid), _qc_warnings(notes):
            spect = io.load_image(row["spect"], patient=pid)
            io.check_counts(spect, row["spect"], pid)
            clock.lap("spect_read")
            roi_native = load_roi(row, patient=pid)
            clock.lap("roi_read")
            centres = load_centres(row, patient=pid)
            organs = load_organs(row, spect, patient=pid)
            clock.lap("markups_read")
        return cls(pid, spect, roi_native, centres, organs, roi_path=row.get("roi"),
                   centres_path=row.get("markups") or None, load_warnings=notes)

    def roi_box(self, margin_vox=(0, 0, 0), roi: sitk.Image | None = None) -> tuple[sitk.Image, tuple, list]:
        """The ROI on a box of the SPECT grid grown by ``margin_vox`` (cached): ``(mask, start, warnings)``."""
        roi = self.roi_native if roi is None else roi
        key = (id(roi), tuple(int(v) for v in margin_vox))
        if key not in self._boxes:
            notes: list[str] = []
            with _qc_warnings(notes):
                box, start = roi_box_on_grid(roi, self.spect, margin_vox=margin_vox, patient=self.patient_id,
                                             path=self.roi_path)
            self._boxes[key] = (box, start, notes, roi)
        box, start, notes, _ = self._boxes[key]
        return box, start, notes

    def reference(self, centres: Mapping | None = None) -> dict:
        """Liver and muscle reference uptake (:func:`mibgkit.voi.reference_uptake`) at ``centres``
        (default: the patient's), cached per centre set."""
        own = centres is None
        centres = self.centres if own else {k: tuple(float(x) for x in v) for k, v in centres.items()}
        key = tuple(sorted(centres.items()))
        if key not in self._refs:
            try:
                self._refs[key] = reference_uptake(self.spect, centres, organ_masks=self.organs)
            except GeometryError as e:  # a sphere off the image: the patient's own centres name their file
                if own and e.path is None and self.centres_path:
                    raise GeometryError(e.reason, patient=self.patient_id, path=self.centres_path) from e
                raise
        return self._refs[key]

    def measure(self, *, mtv_method: str = "roi", mtv_params: Mapping | None = None,
                centres: Mapping | None = None, roi: sitk.Image | None = None, roi_box: tuple | None = None,
                native_shape: bool = False, timings: dict | None = None, masks: dict | None = None) -> dict:
        """The feature row (``patient_id`` first) for an MTV definition and sphere centres.

        ``roi`` replaces the tumour ROI (any grid); ``roi_box`` = ``(mask, start)`` gives it already
        on a box of the SPECT grid (e.g. eroded or dilated there). Other arguments as
        :func:`extract_patient`.
        """
        clock = _Stopwatch(timings)
        with _patient_errors(self.patient_id):
            notes: list[str] = []
            with _qc_warnings(notes):
                margin = mtv_margin_vox(self.spect.GetSpacing(), mtv_method, mtv_params)
                if roi_box is None:
                    box, start, resample_notes = self.roi_box(margin, roi)
                    notes.extend(resample_notes)
                else:
                    box, start = roi_box
                spect_box = crop(self.spect, start, box.GetSize())
                clock.lap("resample")
                t0 = time.perf_counter()
                ref = self.reference(centres)
                if timings is not None:
                    timings["spheres"] = timings.get("spheres", 0.0) + time.perf_counter() - t0
                tumour, mtv = _tumour_features(spect_box, box, mtv_method=mtv_method, mtv_params=mtv_params,
                                               timings=timings)
                out = _feature_row(tumour, mtv, ref, mtv_method)
                out["uptake_unit"] = io.uptake_unit(self.spect)
                if masks is not None:
                    masks.update({"spect": self.spect, "tumour MTV": mtv["mask"],
                                  **sphere_masks(self.spect, self.centres if centres is None else centres)})
            clock.restart()
            extra = [*self.load_warnings, *notes]
            if extra:
                out["qc_warnings"] = "; ".join(filter(None, [out["qc_warnings"], *extra]))
            if native_shape:
                native = self._native_shape(self.roi_native if roi is None else roi)
                out["roi_native_asphericity"] = native["asphericity"]
                out["roi_native_mtv_ml"] = native["mesh_volume_mm3"] / 1000.0
                clock.lap("native_shape")
        return {"patient_id": self.patient_id, **out}

    def _native_shape(self, roi: sitk.Image) -> dict:
        if id(roi) not in self._native:
            self._native[id(roi)] = (shape_features(roi, max_diameter=False), roi)
        return self._native[id(roi)][0]


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

"""Generate a synthetic study cohort on disk, one patient at a time, calibrated by measurement.

:func:`generate_cohort` draws the cohort design (:func:`mibgkit.synth.clinical.design_cohort`), then
for each patient builds the anatomy, the tumour, the SPECT and CT volumes, the analyst's tumour
segmentation and reference-sphere markups, writes them, and appends the patient's rows to
``data_manifest.csv`` and ``clinical.csv``. Only one patient's images are in memory at a time
(per worker process), so ``n = 2000`` streams to disk.

Calibration by measurement
--------------------------
The design gives each patient latent targets (Tmax/Lmax, ASP, Tmean/Lmean, Mmax/Lmax, maximum
diameter). Nothing of these is written. The generator adjusts its *own* parameters until the
imaging pipeline, measuring the generated data, lands in the target band:

1. *Shape*: the tumour's shape amplitude is searched by bisection (and its size rescaled) until the
   asphericity that :func:`mibgkit.shape.shape_features` measures — on the ROI as the pipeline sees
   it, i.e. the analyst's mask resampled nearest-neighbour onto the SPECT grid — is on the target's
   side of the published cut-off, close to the target.
2. *Uptake*: tumour activity concentration, hot-focus strength and muscle activity are adjusted
   until Tmax/Lmax (and, as far as the tumour allows, Tmean/Lmean and Mmax/Lmax) measured on the
   *noisy* SPECT counts — the tumour ROI for Tmax/Tmean, the sphere VOIs of :mod:`mibgkit.voi` for
   the liver and muscle — match their targets.
3. *Check*: the written volume and ROI are measured once more with
   :func:`mibgkit.features.image_features` (after :func:`mibgkit.geometry.roi_on_grid`), exactly as
   ``mibgkit extract`` measures the files; for the calibrated design (default seed, n = 50) the
   confusion counts at the published cut-offs, and that those splits are the Youden optima, are
   asserted.

Geometry conventions: LPS, mm; arrays in numpy order (z, y, x); spacing and origin in SimpleITK
order (x, y, z).
"""

from __future__ import annotations

import csv
import math
import os
import warnings
from collections.abc import Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..errors import OutputError, ParameterError, QCWarning
from . import anatomy, centres, clinical, identities, tumour
from .calibrate import calibrate_shape, roi_on_spect, solve_uptake
from .export import write_patient
from .readers import write_readers
from .anatomy import Grid
from .clinical import ASP_CUTOFF, DEFAULT_SEED, STUDY_N, TMAX_LMAX_CUTOFF

__all__ = ["DEFAULT_SEED", "generate_cohort", "simulate_patient", "MANIFEST_FIELDS", "CLINICAL_FIELDS",
           "CalibrationError"]

#: Columns of the ``data_manifest.csv`` the generator writes.
MANIFEST_FIELDS = ("patient_id", "spect", "ct", "roi", "roi_segment", "markups", "scan_date", "efs_days",
                   "efs_event")

#: Columns of the ``readers.csv`` it writes (:data:`mibgkit.manifest.READER_COLUMNS`; ``roi_label`` unused).
READER_FIELDS = ("patient_id", "reader", "roi", "roi_segment", "markups")

#: Columns of the ``clinical.csv`` it writes (Table 1 variables, then hospital identity columns).
CLINICAL_FIELDS = clinical.CLINICAL_COLUMNS + identities.IDENTITY_COLUMNS

#: Siemens Symbia T16: 4.795 mm detector pixels for a 128 matrix; zoom 1.6 → 2.996875 mm.
SPECT_MATRIX = 128
SPECT_PIXEL_MM = 2.996875  # 4.795 / 1.6

#: Low-dose attenuation-correction CT: 256 × 256 at one of these pixel sizes (mm; FOV / 256), 5 mm
#: slices over the SPECT axial field of view.
CT_MATRIX = 256
CT_PIXELS_MM = (1.3671875, 1.5234375, 1.640625, 1.7578125)
CT_SLICE_MM = 5.0

_TILE = 16  # Poisson noise is drawn in 16³ tiles, each from its own seeded stream.
_TL_TOL = 0.03  # accepted relative |Tmax/Lmax - target|
_TL_MARGIN = 0.06  # measured Tmax/Lmax must clear the cut-off by this much


class CalibrationError(RuntimeError):
    """The generated cohort does not reproduce what its design promises."""


@dataclass
class PatientResult:
    """What :func:`simulate_patient` hands back: the CSV rows and the pipeline's measurement."""

    manifest: dict
    clinical: dict
    measured: dict
    readers: list = field(default_factory=list)  # readers.csv rows (R1 = the manifest's files)


# --------------------------------------------------------------------------------------------
# geometry of one examination
# --------------------------------------------------------------------------------------------


def _round_mm(v: float) -> float:
    """Round a coordinate to 0.01 mm, as scanners print them (keeps DICOM strings exact)."""
    return float(round(float(v), 2))


def _site_centre(rng: np.random.Generator, body: anatomy.Body, site: str, radius_mm: float) -> np.ndarray:
    """LPS centre of a primary tumour of ``radius_mm`` at ``site`` (abdomen, mediastinum, pelvis)."""
    s = body.scale
    side = float(rng.choice([-1.0, 1.0]))
    if site == "mediastinum":
        c = np.array([side * 24.0 * s + side * 0.35 * radius_mm, 20.0 * s, 168.0 * s])
    elif site == "pelvis":
        c = np.array([side * 6.0 * s, 12.0 * s - 0.3 * radius_mm, -105.0 * s])
    else:
        kind = rng.random()
        if kind < 0.65:  # adrenal
            c = np.array([side * 34.0 * s + side * 0.3 * radius_mm, 18.0 * s - 0.35 * radius_mm,
                          (46.0 * s if side > 0 else 40.0 * s)])
        else:  # retroperitoneal paravertebral
            c = np.array([side * 26.0 * s + side * 0.45 * radius_mm, 8.0 * s - 0.3 * radius_mm, -22.0 * s])
    c += rng.normal(0.0, 4.0 * s, 3)
    return body.l2 + c


def _exam_grids(rng: np.random.Generator, body: anatomy.Body, tumour_centre: np.ndarray, reach: float,
                must_cover: list[np.ndarray], pixel_mm: float = SPECT_PIXEL_MM) -> tuple[Grid, Grid]:
    """SPECT grid (128 × 128 × n, ~3 mm) and CT grid (256 × 256, 1.4–1.8 mm, 5 mm slices over the SPECT FOV)."""
    sp = pixel_mm
    nz = SPECT_MATRIX
    lo = min([tumour_centre[2] - reach] + [p[2] - 25.0 for p in must_cover]) - 20.0
    hi = max([tumour_centre[2] + reach] + [p[2] + 25.0 for p in must_cover]) + 20.0
    extent = (nz - 1) * sp
    slack = max(extent - (hi - lo), 0.0)
    z0 = lo - slack * rng.uniform(0.3, 0.7)
    cx = body.l2[0] + rng.normal(0.0, 6.0)
    cy = body.l2[1] + rng.normal(0.0, 6.0)
    half = (SPECT_MATRIX - 1) / 2.0 * sp
    spect = Grid((nz, SPECT_MATRIX, SPECT_MATRIX), (sp, sp, sp),
                 (_round_mm(cx - half), _round_mm(cy - half), _round_mm(z0)))

    width = 2.0 * body.outline[:, 1].max() + 60.0
    ct_px = next((p for p in CT_PIXELS_MM if p * CT_MATRIX >= width), CT_PIXELS_MM[-1])
    ct_dz = CT_SLICE_MM
    z_lo = spect.origin[2] - rng.uniform(0.0, 2.5)
    z_hi = spect.origin[2] + extent + rng.uniform(0.0, 2.5)
    n_ct = int(math.ceil((z_hi - z_lo) / ct_dz)) + 1
    half_ct = (CT_MATRIX - 1) / 2.0 * ct_px
    # Table centre, not the patient: the CT grid is centred on the bore (x) and the table (y).
    ct_cx = body.l2[0] + rng.normal(0.0, 8.0) + 0.13
    ct_cy = body.l2[1] + rng.normal(0.0, 8.0) + 0.07
    ct = Grid((n_ct, CT_MATRIX, CT_MATRIX), (ct_px, ct_px, ct_dz),
              (_round_mm(ct_cx - half_ct), _round_mm(ct_cy - half_ct), _round_mm(z_lo) + 0.11))
    return spect, ct


# --------------------------------------------------------------------------------------------
# SPECT synthesis
# --------------------------------------------------------------------------------------------


def _tiles(shape) -> list[tuple[slice, slice, slice]]:
    return [(slice(z, min(z + _TILE, shape[0])), slice(y, min(y + _TILE, shape[1])), slice(x, min(x + _TILE, shape[2])))
            for z in range(0, shape[0], _TILE) for y in range(0, shape[1], _TILE) for x in range(0, shape[2], _TILE)]


def _tile_ids_touching(shape, lo, hi) -> set[int]:
    nty, ntx = -(-shape[1] // _TILE), -(-shape[2] // _TILE)
    ids = set()
    for tz in range(lo[0] // _TILE, (max(hi[0] - 1, lo[0])) // _TILE + 1):
        for ty in range(lo[1] // _TILE, (max(hi[1] - 1, lo[1])) // _TILE + 1):
            for tx in range(lo[2] // _TILE, (max(hi[2] - 1, lo[2])) // _TILE + 1):
                ids.add((tz * nty + ty) * ntx + tx)
    return ids


def _poisson(expect, counts: np.ndarray, tiles, ids, entropy: int, drawn: dict | None = None) -> None:
    """Draw Poisson counts in the listed tiles; each tile has its own reproducible stream.

    ``expect(tile)`` gives the expectation over a tile (its slices). A tile whose expectation is
    zero throughout holds zero counts (what the draw gives there, without drawing: the stream is
    the tile's own, so no other tile changes). With ``drawn`` (a dict kept between calls), a tile
    whose expectation equals the one it was last drawn from keeps its counts: the same stream and
    the same expectation give the same draw.
    """
    for t in ids:
        sl = tiles[t]
        part = expect(sl)
        if drawn is not None:
            if t in drawn and np.array_equal(drawn[t], part):
                continue
            drawn[t] = part
        if not part.max() > 0.0:
            counts[sl] = 0
            continue
        g = np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy, spawn_key=(t,))))
        counts[sl] = g.poisson(np.maximum(part, 0.0))


_BLUR_TRUNCATE = 3.5  # Gaussian kernel half-width in SD


def _blur(activity: np.ndarray, sigma_vox) -> np.ndarray:
    """The system's blur: a Gaussian of ``sigma_vox`` (SD in voxels, numpy order), zero outside the grid.

    Filtered over the activity's bounding box grown by the kernel radius only: outside it the
    blurred image is exactly zero, and inside, every kernel tap reads the same values as on the
    whole grid, so the result equals ``scipy.ndimage.gaussian_filter`` of the whole grid bit for bit.
    """
    out = np.zeros(activity.shape, dtype=activity.dtype)  # as gaussian_filter returns
    nonzero = [np.flatnonzero(activity.any(axis=tuple(j for j in range(3) if j != i))) for i in range(3)]
    if any(v.size == 0 for v in nonzero):
        return out
    radius = [int(_BLUR_TRUNCATE * float(sd) + 0.5) for sd in sigma_vox]
    box = tuple(slice(max(int(v[0]) - r, 0), min(int(v[-1]) + r + 1, n))
                for v, r, n in zip(nonzero, radius, activity.shape))
    out[box] = ndimage.gaussian_filter(activity[box], sigma_vox, mode="constant", truncate=_BLUR_TRUNCATE)
    return out


def _sitk(array: np.ndarray, grid: Grid) -> sitk.Image:
    img = sitk.GetImageFromArray(array)
    img.SetSpacing(tuple(float(v) for v in grid.spacing))
    img.SetOrigin(tuple(float(v) for v in grid.origin))
    return img


def simulate_patient(row: Mapping, seed_entropy: int, out_dir: str | os.PathLike, *, write: bool = True,
                     vendor: str = "siemens", compression: str = "deflate",
                     centre_code: str | None = None, roi_format: str = "nrrd") -> PatientResult:
    """Build, calibrate and write one patient.

    Parameters
    ----------
    row : mapping
        One row of :func:`mibgkit.synth.clinical.design_cohort`.
    seed_entropy : int
        The patient's own seed; the patient's files are a deterministic function of it and ``row``.
    out_dir : path
        Cohort folder; the patient's files go to ``out_dir/patients/<patient_id>/``.
    write : bool
        False to skip writing files (for calibration studies).
    vendor, compression : str
        SPECT layout and DICOM compression of the files (:func:`mibgkit.synth.export.write_patient`);
        they change neither the simulation nor the measurement.
    centre_code : str, optional
        A department of :mod:`mibgkit.synth.centres` (``"B"``): its SPECT voxel size, system
        resolution and acquisition headers. None: the paper's department.
    roi_format : str
        How the tumour ROI is written: ``nrrd`` (``tumour.seg.nrrd``, default), ``seg`` or
        ``rtstruct`` (:mod:`mibgkit.synth.roi_files`); the simulation does not depend on it.

    Returns
    -------
    PatientResult
    """
    from ..features import image_features
    from ..geometry import roi_on_grid
    from ..voi import sphere_index_mask, sphere_radius_mm

    rng = np.random.default_rng(np.random.SeedSequence(seed_entropy))
    pid = str(row["patient_id"])
    age = float(row["age_months"])
    bm = row["bone_marrow_metastasis"] == "yes"
    n_foci = int(np.clip(round(1.0 + 0.9 * float(row["curie_score"])), 2, 28)) if bm else 0
    l2 = np.array([rng.normal(0.0, 5.0), rng.normal(10.0, 8.0), rng.normal(-420.0, 40.0)])
    body = anatomy.make_body(rng, age, offset_mm=l2, metastases=n_foci)

    # ---- tumour --------------------------------------------------------------------------
    target_asp = float(row["target_asp"])
    diameter = float(min(row["target_diameter_mm"], 2.0 * 0.85 * body.outline[:, 1].max()))
    spiculated = float(np.clip((target_asp - 0.28) / 0.55 + rng.normal(0, 0.1), 0.0, 1.0))
    centre = _site_centre(rng, body, str(row["primary_site"]), 0.5 * diameter)
    shape = tumour.draw_tumour(rng, centre, 0.5 * diameter / 1.15, spiculated=spiculated)
    drawn_on_ct = rng.random() < 0.8

    provisional = anatomy.reference_centres(body)
    dept = None if centre_code is None else centres.get(centre_code)
    spect, ct = _exam_grids(rng, body, centre, 0.75 * diameter + 10.0, list(provisional.values()),
                            SPECT_PIXEL_MM if dept is None else dept.spect_pixel_mm)
    drawn_on = ct if drawn_on_ct else spect

    shape, amplitude, _ = calibrate_shape(shape, target_asp, diameter, spect, drawn_on,
                                                    high=bool(row["asp_high"]))
    # The analyst places the reference spheres after seeing the tumour.
    roi_crop, roi_lo = roi_on_spect(shape, amplitude, spect, drawn_on)
    k, j, i = np.nonzero(roi_crop)
    tumour_pts = np.stack([spect.origin[0] + (i + roi_lo[2]) * spect.spacing[0],
                           spect.origin[1] + (j + roi_lo[1]) * spect.spacing[1],
                           spect.origin[2] + (k + roi_lo[0]) * spect.spacing[2]], axis=1)
    refs = anatomy.reference_centres(body, tumour_pts, inside_fov=lambda c, r: _sphere_in_grid(spect, c, r))

    # ---- SPECT expectation: organs (liver-scaled) + soft tissue (muscle-scaled) + tumour ----
    fwhm = rng.uniform(*((12.0, 15.0) if dept is None else dept.fwhm_mm))
    sigma_vox = fwhm / 2.354820045 / np.asarray(spect.spacing[::-1])
    labels = anatomy.label_map(body, spect)
    liver_tab, muscle_tab = anatomy.activity_tables(body)
    reach = tumour.reach_mm(shape, amplitude)
    t_lo, t_hi = spect.box_around(shape.centre, reach + 3.0 * fwhm, margin_vox=1)
    crop = spect.crop(t_lo, t_hi)
    necrosis = float(rng.uniform(0.25, 0.55)) if (diameter > 45 and rng.random() < 0.4) else 0.0
    n_hot = int(rng.integers(1, 4))
    pattern_seed = int(rng.integers(2**62))

    def patterns(necrosis, n_hot=n_hot):
        return tumour.uptake_patterns(shape, crop, amplitude, np.random.default_rng(pattern_seed),
                                      necrosis=necrosis, n_hot=n_hot, supersample=1)

    base, hot, occ = patterns(necrosis)
    box = tuple(slice(a, b) for a, b in zip(t_lo, t_hi))
    a_liver = liver_tab[labels]
    a_muscle = muscle_tab[labels]
    a_liver[box] *= 1.0 - occ  # the tumour displaces the organs it grows into
    a_muscle[box] *= 1.0 - occ
    b_liver = _blur(a_liver, sigma_vox)
    b_muscle = _blur(a_muscle, sigma_vox)
    b_t0 = _blur(base, sigma_vox)
    b_t1 = _blur(hot, sigma_vox)
    del a_liver, a_muscle

    # ---- measurement sets: ROI on the SPECT grid, sphere VOIs ---------------------------
    roi = np.zeros(spect.shape, dtype=bool)
    roi[tuple(slice(a, a + n) for a, n in zip(roi_lo, roi_crop.shape))] = roi_crop
    roi_idx = np.nonzero(roi)
    geometry = sitk.Image([int(v) for v in spect.shape[::-1]], sitk.sitkUInt8)
    geometry.SetSpacing(spect.spacing)
    geometry.SetOrigin(spect.origin)
    spheres = {}
    for name, vol in (("liver", 30.0), ("muscle_left", 10.0), ("muscle_right", 10.0)):
        spheres[name] = sphere_index_mask(geometry, refs[name], sphere_radius_mm(vol))[0]

    tiles = _tiles(spect.shape)
    needed = _tile_ids_touching(spect.shape, roi_lo, np.asarray(roi_lo) + np.asarray(roi_crop.shape))
    for name, idx in spheres.items():
        needed |= _tile_ids_touching(spect.shape, [int(a.min()) for a in idx], [int(a.max()) + 1 for a in idx])
    entropy = int(rng.integers(2**62))
    counts = np.zeros(spect.shape, dtype=np.int64)

    c_liver = float(row["liver_counts"])
    c_muscle = c_liver * float(row["target_mmax_lmax"]) * 0.75
    target_tl = float(row["target_tmax_lmax"])
    target_tm = float(row["target_tmean_lmean"])
    target_ml = float(row["target_mmax_lmax"])
    tl_high = bool(row["tl_high"])

    whole = tuple(slice(0, n) for n in spect.shape)
    drawn: dict = {}

    def expectation(c_t, eta, c_m, sl=whole):
        """Expected counts over the voxels ``sl`` (slices from 0; default the whole grid)."""
        lam = c_liver * b_liver[sl] + c_m * b_muscle[sl]
        a = [max(s.start, lo) for s, lo in zip(sl, t_lo)]
        b = [min(s.stop, hi) for s, hi in zip(sl, t_hi)]
        if all(x < y for x, y in zip(a, b)):  # where the tiles meet the tumour's box
            local = tuple(slice(x - s.start, y - s.start) for x, y, s in zip(a, b, sl))
            inner = tuple(slice(x - lo, y - lo) for x, y, lo in zip(a, b, t_lo))
            lam[local] += c_t * (b_t0[inner] + eta * b_t1[inner])
        return lam

    def measure(c_t, eta, c_m):
        _poisson(lambda sl: expectation(c_t, eta, c_m, sl), counts, tiles, needed, entropy, drawn)
        t = counts[roi_idx]
        liver = counts[spheres["liver"]]
        ml = counts[spheres["muscle_left"]]
        mr = counts[spheres["muscle_right"]]
        return {"tmax": float(t.max()), "tmean": float(t.mean()), "lmax": float(liver.max()),
                "lmean": float(liver.mean()), "mmax": 0.5 * (float(ml.max()) + float(mr.max())),
                "mmean": 0.5 * (float(ml.mean()) + float(mr.mean()))}

    # First pass without tumour: liver and muscle references; set muscle activity.
    m = measure(0.0, 0.0, c_muscle)
    for _ in range(4):
        ratio = m["mmax"] / m["lmax"]
        if abs(ratio / target_ml - 1.0) < 0.08:
            break
        c_muscle *= float(np.clip((target_ml / ratio) ** 1.15, 0.4, 2.5))
        m = measure(0.0, 0.0, c_muscle)

    # Tumour concentration and hot-focus strength from the noise-free expectation.
    lam0 = expectation(0.0, 0.0, c_muscle)
    bg_r = lam0[roi_idx]
    roi_in_box = tuple(a - lo for a, lo in zip(roi_idx, t_lo))
    want_max = target_tl * m["lmax"]
    want_mean = target_tm * m["lmean"]
    # A tumour too uniform for its targets gets a (larger) necrotic core: heterogeneity is one of
    # the generator's parameters, raised until the wanted Tmax/Tmean is reachable.
    for level in (None, "one focus", 0.45, 0.6, 0.72):
        if level == "one focus":
            if n_hot == 1:
                continue
            n_hot = 1
            base, hot, _ = patterns(necrosis, 1)
            b_t0 = _blur(base, sigma_vox)
            b_t1 = _blur(hot, sigma_vox)
        elif level is not None:
            if level <= necrosis:
                continue
            necrosis = level
            base, hot, _ = patterns(necrosis, n_hot)
            b_t0 = _blur(base, sigma_vox)
            b_t1 = _blur(hot, sigma_vox)
        t0_r, t1_r = b_t0[roi_in_box], b_t1[roi_in_box]
        c_t, eta, reached = solve_uptake(bg_r, t0_r, t1_r, want_max, want_mean)
        if reached:
            break

    peak = float(np.max(t0_r + eta * t1_r))
    for attempt in range(12):
        m = measure(c_t, eta, c_muscle)
        tl = m["tmax"] / m["lmax"]
        ok = abs(tl / target_tl - 1.0) <= _TL_TOL and (
            tl >= TMAX_LMAX_CUTOFF * (1 + _TL_MARGIN) if tl_high else tl <= TMAX_LMAX_CUTOFF * (1 - _TL_MARGIN))
        if ok or attempt == 11:
            break
        if attempt < 6:  # re-solve with the Poisson excess actually seen, keeping the mean
            expected_peak = float(np.max(bg_r + c_t * (t0_r + eta * t1_r)))
            want_max = target_tl * m["lmax"]
            c_t, eta, _ = solve_uptake(bg_r, t0_r, t1_r, want_max, want_mean,
                                        excess_counts=m["tmax"] - expected_peak)
            peak = float(np.max(t0_r + eta * t1_r))
        else:
            c_t = max(c_t + (target_tl * m["lmax"] - m["tmax"]) / max(peak, 1e-6) * 0.9, 0.0)

    # Final Poisson draw everywhere; then measure exactly as the pipeline does.
    lam = expectation(c_t, eta, c_muscle)
    _poisson(lambda sl: lam[sl], counts, tiles, set(range(len(tiles))) - needed, entropy)
    del lam, b_liver, b_muscle
    spect_counts = np.clip(counts, 0, 65535).astype(np.uint16)
    spect_img = _sitk(spect_counts, spect)

    ct_tumour, ct_lo = _rasterise(shape, amplitude, ct)
    seg_mask, seg_grid = _tight(ct_tumour, ct.crop(ct_lo, ct_lo + np.asarray(ct_tumour.shape))) if drawn_on_ct \
        else _tight(*_rasterise(shape, amplitude, spect, grid_only=True))
    seg_img = _sitk(seg_mask.astype(np.uint8), seg_grid)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", QCWarning)
        measured = image_features(spect_img, roi_on_grid(seg_img, spect_img), refs)
    measured = {k: measured[k] for k in ("tmax", "tmean", "lmax", "lmean", "mmax", "mmean", "tmax_lmax",
                                         "tmean_lmean", "tmax_lmean", "tmax_mmax", "tmean_mmean",
                                         "asphericity", "max_diameter_mm", "mtv_ml")}
    measured["patient_id"] = pid

    man = {}
    if write:
        man = write_patient(row, rng, Path(out_dir), body, spect, ct, spect_counts, seg_mask, seg_grid, shape,
                             (ct_tumour, ct_lo), necrosis, refs, vendor=vendor, compression=compression,
                             roi_format=roi_format)
        if dept is not None:
            centres.finish_files(dept, Path(out_dir) / man["spect"].rsplit("/", 1)[0], compression)
    readers = [] if not write else write_readers(
        Path(out_dir) / "patients" / pid, pid, seg_mask, seg_grid, refs, seed_entropy,
        liver_depth=lambda pts: anatomy.liver_depth(body, pts), inside_fov=lambda c, r: _sphere_in_grid(spect, c, r),
        vertebra_step_mm=22.0 * body.scale)
    if readers and roi_format != "nrrd":  # R1 is the manifest's ROI, in whatever format it was written
        readers[0] = {**readers[0], "roi": man["roi"]}
    clin = {k: row[k] for k in CLINICAL_FIELDS}
    return PatientResult(manifest=man, clinical=clin, measured=measured, readers=readers)


def _sphere_in_grid(grid: Grid, centre, radius: float) -> bool:
    """Whether a sphere lies inside the grid's field of view (voxel centres' bounding box)."""
    c = [float(v) for v in centre]
    for a, o, s, n in zip(c, grid.origin, grid.spacing, grid.shape[::-1]):  # first and last centre, as axes()
        if not (o <= a - radius and a + radius <= o + s * (n - 1)):
            return False
    return True


def _rasterise(shape: tumour.TumourShape, amplitude: float, grid: Grid, *, grid_only: bool = False):
    """The tumour solid sampled at the voxel centres of ``grid``, over its bounding box.

    Returns the boolean crop and its start index (numpy order), or with ``grid_only`` the crop
    and the cropped :class:`Grid`.
    """
    lo, hi = grid.box_around(shape.centre, tumour.reach_mm(shape, amplitude), margin_vox=2)
    sub = grid.crop(lo, hi)
    mask = tumour.inside(shape, sub.points(), amplitude).reshape(sub.shape)
    return (mask, sub) if grid_only else (mask, lo)


def _tight(mask: np.ndarray, grid: Grid) -> tuple[np.ndarray, Grid]:
    """The analyst's segmentation as 3D Slicer stores it: cropped to the segment's extent plus a
    two-voxel margin."""
    nz = np.nonzero(mask)
    a = np.maximum([int(v.min()) - 2 for v in nz], 0)
    b = np.minimum([int(v.max()) + 3 for v in nz], mask.shape)
    return mask[a[0]:b[0], a[1]:b[1], a[2]:b[2]], grid.crop(a, b)


# --------------------------------------------------------------------------------------------
# the cohort
# --------------------------------------------------------------------------------------------


def _csv_value(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        if math.isnan(v):
            return ""
        return f"{v:g}" if v == int(v) and abs(v) < 1e15 else f"{v:.6g}"
    if isinstance(v, (np.integer,)):
        return str(int(v))
    if isinstance(v, (np.floating,)):
        return _csv_value(float(v))
    return str(v)


def _work(args) -> PatientResult:
    """One patient on one thread: the default two worker processes on two cores were 1.3 times
    faster than one while BLAS and ITK each ran a second thread per worker, 1.7 times on one."""
    from ..cluster import single_threaded

    row, entropy, out_dir, files = args
    with single_threaded():
        return simulate_patient(row, entropy, out_dir, **files)


def _patients(design, entropies, out_dir, workers: int, files: dict) -> Iterator[PatientResult]:
    rows = design.to_dict("records")
    jobs = ((rows[i], int(entropies[i]), str(out_dir), files) for i in range(len(rows)))
    if workers <= 1:
        for job in jobs:
            yield _work(job)
        return
    from ..cluster import reuse_image_buffers

    with ProcessPoolExecutor(max_workers=workers, initializer=reuse_image_buffers) as pool:
        # map() keeps order; chunks of one keep only a few patients in flight.
        yield from pool.map(_work, jobs, chunksize=1)


def generate_cohort(out_dir: str | os.PathLike, n: int = STUDY_N, seed: int | None = None, progress: bool = True,
                    *, workers: int | None = None, check: bool | None = None, vendor: str | None = None,
                    compression: str = "deflate", centre: str | None = None, roi_format: str = "nrrd") -> Path:
    """Generate a synthetic cohort and return the path of its ``data_manifest.csv``.

    Parameters
    ----------
    out_dir : path
        Cohort folder (created). Receives ``data_manifest.csv``, ``clinical.csv`` and
        ``patients/<patient_id>/`` with ``spect.dcm`` (NM multi-frame), ``ct/`` (CT series),
        ``tumour.seg.nrrd`` (3D Slicer segmentation, segment ``tumour``) and ``spheres.mrk.json``
        (control points ``liver``, ``muscle_left``, ``muscle_right``; LPS or RAS).
    n : int
        Number of patients.
    seed : int, optional
        Seed; the same seed and ``n`` give byte-identical files. Default: :data:`DEFAULT_SEED`
        (a ``centre``'s own seed with ``centre``).
    progress : bool
        Show a progress bar.
    workers : int, optional
        Worker processes (default: up to 2, one per CPU). The output does not depend on it.
    check : bool, optional
        Assert the published confusion counts at the Table 3 cut-offs, and that these splits are
        the Youden optima, as measured by the pipeline on the generated data. Default: only for
        the calibrated design (``n = 50``, default seed).
    vendor : str
        Layout of the SPECT files (:data:`mibgkit.synth.nm_layouts.VENDORS`: ``siemens`` (default), ``ge``,
        ``philips``, ``hermes`` (a folder of single-frame files), ``quant`` (Bq/ml), ``float``,
        ``reversed``). Only the files change: every layout reads back to the same image. Default
        ``siemens``, or the ``centre``'s scanner.
    compression : str
        DICOM transfer syntax of SPECT and CT: ``"deflate"`` (default, Deflated Explicit VR Little
        Endian, 4.3 MB per patient on average for the default cohort, 3.8–4.96 MB), ``"rle"`` (RLE
        Lossless, larger on noisy CT) or ``"none"`` (14.6 MB).
    centre : str, optional
        Write a cohort of another department instead of the paper's (:mod:`mibgkit.synth.centres`:
        ``"B"``, a GE scanner with 4.4 mm voxels and a MEGP collimator, another case mix and an
        outcome under which the published effects hold at half their size). None: the default
        cohort, unchanged.
    roi_format : str
        How the analyst's tumour ROI is written (:data:`mibgkit.synth.roi_files.ROI_FORMATS`):
        ``"nrrd"`` (default, ``tumour.seg.nrrd``), ``"seg"`` (a DICOM SEG ``tumour_seg.dcm``
        referencing the CT slices or the SPECT it was drawn on) or ``"rtstruct"`` (an RT Structure
        Set ``tumour_rtstruct.dcm``, contours on the CT slices). The manifest's ``roi`` (and
        ``readers.csv``'s ``R1`` row) names that file; every other file is unchanged.

    Returns
    -------
    pathlib.Path
        ``out_dir/data_manifest.csv``.

    Raises
    ------
    CalibrationError
        With ``check``, when the measured counts differ from Table 3.
    """
    from tqdm.auto import tqdm

    from .dicom import COMPRESSIONS
    from .nm_layouts import VENDORS
    from .roi_files import ROI_FORMATS

    dept = None if centre is None else centres.get(centre)
    seed = (DEFAULT_SEED if dept is None else dept.seed) if seed is None else seed
    vendor = ("siemens" if dept is None else dept.vendor) if vendor is None else vendor
    if vendor not in VENDORS or compression not in COMPRESSIONS:
        raise ParameterError(f"vendor {vendor!r} / compression {compression!r}: choose a vendor of {VENDORS} "
                             f"and a compression of {tuple(COMPRESSIONS)}")
    if roi_format not in ROI_FORMATS:
        raise ParameterError(f"roi_format {roi_format!r}: choose one of {ROI_FORMATS}")
    if int(n) < 1 or int(seed) < 0:
        raise ParameterError(f"a cohort needs n >= 1 patients and a seed >= 0, got n={n}, seed={seed}")
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create the cohort folder ({e.strerror or type(e).__name__})", path=out) from None
    root = np.random.SeedSequence(int(seed))
    design_seq, patient_seq = root.spawn(2)
    with tqdm(total=1, desc="design", unit="cohort", disable=not progress) as bar:  # seconds for a study design
        design = (clinical.design_cohort(int(n), np.random.default_rng(design_seq)) if dept is None
                  else centres.design_cohort(dept, int(n), np.random.default_rng(design_seq)))
        bar.update()
    entropies = [int(s.generate_state(2, dtype=np.uint64)[0] >> np.uint64(2)) for s in patient_seq.spawn(int(n))]
    if workers is None:
        workers = max(1, min(2, os.cpu_count() or 1, int(n)))
    if check is None:
        check = int(n) == STUDY_N and int(seed) == DEFAULT_SEED and dept is None

    manifest_path = out / "data_manifest.csv"
    clinical_path = out / "clinical.csv"
    tallies = {"tl": np.zeros((2, 2), int), "asp": np.zeros((2, 2), int)}
    measured: dict[str, list[float]] = {"tl": [], "asp": [], "event": []}
    reader_rows: list[dict] = []
    with open(manifest_path, "w", newline="", encoding="utf-8") as fm, \
            open(clinical_path, "w", newline="", encoding="utf-8") as fc:
        wm = csv.writer(fm, lineterminator="\n")
        wc = csv.writer(fc, lineterminator="\n")
        wm.writerow(MANIFEST_FIELDS)
        wc.writerow(CLINICAL_FIELDS)
        results = _patients(design, entropies, out, workers, {"vendor": vendor, "compression": compression,
                                                                   **({} if roi_format == "nrrd" else {"roi_format": roi_format}),
                                                                   **({} if dept is None else {"centre_code": dept.code})})
        for res in tqdm(results, total=int(n), desc="synth", unit="patient", disable=not progress):
            wm.writerow([_csv_value(res.manifest[k]) for k in MANIFEST_FIELDS])
            wc.writerow([_csv_value(res.clinical[k]) for k in CLINICAL_FIELDS])
            reader_rows.extend(res.readers)
            ev = int(res.manifest["efs_event"])
            tallies["tl"][ev, int(res.measured["tmax_lmax"] >= TMAX_LMAX_CUTOFF)] += 1
            tallies["asp"][ev, int(res.measured["asphericity"] >= ASP_CUTOFF)] += 1
            if check:
                measured["tl"].append(float(res.measured["tmax_lmax"]))
                measured["asp"].append(float(res.measured["asphericity"]))
                measured["event"].append(ev)
    with open(out / "readers.csv", "w", newline="", encoding="utf-8") as fr:
        wr = csv.writer(fr, lineterminator="\n")
        wr.writerow(READER_FIELDS)
        wr.writerows([_csv_value(r.get(k)) for k in READER_FIELDS] for r in reader_rows)
    if check:
        expected = {"tl": np.array([[35, 4], [5, 6]]), "asp": np.array([[35, 4], [4, 7]])}
        for key, exp in expected.items():
            if not np.array_equal(tallies[key], exp):
                raise CalibrationError(
                    f"measured confusion counts for {'Tmax/Lmax' if key == 'tl' else 'ASP'} "
                    f"(rows event 0/1, columns below/above cut-off) {tallies[key].tolist()} "
                    f"differ from Table 3 {exp.tolist()}")
        # The published cut-offs were Youden optima: the measured split must be the optimum too.
        for key, cut, name in (("tl", TMAX_LMAX_CUTOFF, "Tmax/Lmax"), ("asp", ASP_CUTOFF, "ASP")):
            values = np.asarray(measured[key])
            if not clinical.youden_robust(values, values >= cut, measured["event"], 0.0, False):
                raise CalibrationError(f"the Youden-optimal {name} cut-off, as measured, is not the split at {cut}")
    return manifest_path

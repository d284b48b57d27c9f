"""Further readers of the synthetic cohort: the same tumours drawn again, as other physicians draw them.

The manifest's ROI is reader ``R1`` (the analyst who drew the paper's ROIs). Readers ``R2`` and
``R3`` start from the same tumour and differ as human readers do (:class:`ReaderHabit`):

- the boundary drawn further in or out: a signed-distance offset per patient (the reader's habit
  plus a patient-to-patient spread) and a smooth local wobble along the surface (a Gaussian random
  field, 12 mm correlation length), so the edge moves by about one SPECT voxel (3–4 mm) in places;
- occasionally adjacent uptake included (a blob of 5–9 mm radius grown from the surface) or a lobe
  missed (a ball of a third of the tumour's equivalent radius cut away at the surface);
- the reference spheres placed elsewhere in the organ: the liver sphere moved 4–15 mm (kept at
  least 15 mm deep in the liver and inside the field of view), the muscle spheres 2–6 mm in plane
  and, now and then, one vertebra up or down.

Calibration target (the README states it with its source): inter-reader Dice of manual lesion
delineation averages about 0.79, with a volume coefficient of variation of about 17 % (three
radiologists, 20 lesions of 1.8–195 ml: inter-observer Dice 0.79 against intra-observer 0.85;
"Intra- and inter-operator variability in MRI-based manual segmentation of HCC lesions and its
impact on dosimetry", EJNMMI Physics 2022, doi:10.1186/s40658-022-00515-6). On the SPECT grid,
where the edge of an MIBG-avid tumour is blurred over 12–15 mm, manual boundaries vary at least
as much. The README gives what the parameters below produce on the default cohort.

Each reader draws from their own random stream (the patient's seed, then the reader's number), so
the files of ``R1`` and everything the survival analysis uses do not change.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

__all__ = ["READERS", "ReaderHabit", "HABITS", "reader_mask", "reader_centres", "write_readers"]

#: The further readers the synthetic cohort writes (``R1`` is the manifest's ROI).
READERS = ("R2", "R3")


@dataclass(frozen=True)
class ReaderHabit:
    """How one reader draws (mm where a length)."""

    bias_mm: float  # mean signed offset of the boundary (+ out, − in)
    spread_mm: float  # patient-to-patient SD of that offset
    wobble_mm: float  # SD of the smooth local offset along the surface
    p_adjacent: float  # chance of including adjacent uptake
    p_lobe_missed: float  # chance of missing a lobe
    liver_shift_mm: tuple[float, float]  # range of the liver sphere's displacement
    muscle_shift_mm: tuple[float, float]  # range of the muscle spheres' in-plane displacement
    p_other_vertebra: float  # chance of placing the muscle spheres one vertebra up or down


HABITS = {
    "R2": ReaderHabit(bias_mm=0.8, spread_mm=0.8, wobble_mm=4.0, p_adjacent=0.15, p_lobe_missed=0.08,
                      liver_shift_mm=(4.0, 15.0), muscle_shift_mm=(2.0, 6.0), p_other_vertebra=0.15),
    "R3": ReaderHabit(bias_mm=-0.6, spread_mm=0.8, wobble_mm=4.0, p_adjacent=0.08, p_lobe_missed=0.15,
                      liver_shift_mm=(4.0, 15.0), muscle_shift_mm=(2.0, 6.0), p_other_vertebra=0.15),
}

_WOBBLE_LENGTH_MM = 12.0


def reader_mask(mask: np.ndarray, spacing_zyx, habit: ReaderHabit, rng: np.random.Generator
                ) -> tuple[np.ndarray, np.ndarray]:
    """Another reader's version of ``mask`` (bool, numpy order) on the same grid, padded.

    Returns ``(mask, pad)``: the new mask on the grid grown by ``pad`` voxels on every side (numpy
    order), so that a boundary drawn further out is not clipped.
    """
    h = np.asarray(spacing_zyx, float)
    reach = abs(habit.bias_mm) + 3 * habit.spread_mm + 3 * habit.wobble_mm + 10.0
    pad = np.ceil(reach / h).astype(int) + 1
    m = np.pad(np.asarray(mask, bool), [(p, p) for p in pad])
    field = ndimage.gaussian_filter(rng.standard_normal(m.shape), _WOBBLE_LENGTH_MM / h, mode="wrap")
    field /= max(float(field.std()), 1e-12)
    radius_eq = (3.0 * m.sum() * float(np.prod(h)) / (4.0 * np.pi)) ** (1.0 / 3.0)
    offset = habit.bias_mm + habit.spread_mm * rng.standard_normal() + habit.wobble_mm * field
    # Signed distance (mm) of each voxel centre: − inside (to the nearest outside voxel), + outside (to
    # the nearest inside one). Each is taken over a box only: inside, the mask's bounding box grown by one
    # voxel holds every nearest outside voxel; outside, only voxels nearer than the largest offset can
    # join the ROI, and those lie within the box grown by that distance (farther ones count as infinite).
    if not m.any():  # nothing drawn, nothing to redraw
        return m, pad
    signed = np.full(m.shape, np.inf)
    nz = np.nonzero(m)
    box = tuple(slice(int(v.min()) - 1, int(v.max()) + 2) for v in nz)
    signed[box] = -ndimage.distance_transform_edt(m[box], sampling=h)
    grow = np.ceil(max(float(offset.max()), 0.0) / h).astype(int) + 1
    box = tuple(slice(max(int(v.min()) - g, 0), int(v.max()) + g + 1) for v, g in zip(nz, grow))
    signed[box] = np.where(m[box], signed[box], ndimage.distance_transform_edt(~m[box], sampling=h))
    # nobody misses the core of a tumour they can see: voxels deeper than half the deepest stay in
    out = (signed < offset) | (signed <= 0.5 * float(signed.min()))
    surface = np.argwhere(m & ~ndimage.binary_erosion(m))
    grid = np.indices(m.shape, sparse=True)
    if rng.random() < habit.p_adjacent:
        point = surface[rng.integers(len(surface))]
        r = rng.uniform(5.0, 9.0)
        direction = rng.standard_normal(3)
        centre = point + direction / np.linalg.norm(direction) * 0.6 * r / h
        out |= sum(((g - c) * s) ** 2 for g, c, s in zip(grid, centre, h)) <= r * r
    if rng.random() < habit.p_lobe_missed:
        point = surface[rng.integers(len(surface))]
        r = radius_eq / 3.0
        out &= sum(((g - c) * s) ** 2 for g, c, s in zip(grid, point, h)) > r * r
    labels, n = ndimage.label(out)
    if n > 1:  # a reader draws one connected tumour: keep the largest piece
        sizes = np.bincount(labels.ravel())[1:]
        out = labels == 1 + int(np.argmax(sizes))
    if not out.any():  # never an empty ROI: fall back to the tumour as drawn by R1
        out = m
    return out, pad


def reader_centres(refs: dict, habit: ReaderHabit, rng: np.random.Generator, *, liver_depth, inside_fov,
                   vertebra_step_mm: float) -> dict:
    """Where this reader puts the three spheres (LPS mm), near ``refs`` and inside their organs.

    ``liver_depth(points) -> mm`` and ``inside_fov(centre, radius) -> bool`` come from the anatomy.
    """
    out = {}
    liver = np.asarray(refs["liver"], float)
    for _ in range(30):
        d = rng.standard_normal(3)
        c = liver + d / np.linalg.norm(d) * rng.uniform(*habit.liver_shift_mm)
        if float(liver_depth(c[None])[0]) >= 15.0 and inside_fov(c, 19.28):
            out["liver"] = c
            break
    else:
        out["liver"] = liver
    dz = vertebra_step_mm * rng.choice([-1.0, 1.0]) if rng.random() < habit.p_other_vertebra else 0.0
    for name in ("muscle_left", "muscle_right"):
        base = np.asarray(refs[name], float)
        angle = rng.uniform(0.0, 2.0 * np.pi)
        shift = rng.uniform(*habit.muscle_shift_mm)
        c = base + np.array([shift * np.cos(angle), shift * np.sin(angle), dz])
        out[name] = c if inside_fov(c, 13.37) else base
    return out


def write_readers(folder: Path, pid: str, seg_mask: np.ndarray, seg_grid, refs: dict, entropy: int, *,
                  liver_depth, inside_fov, vertebra_step_mm: float) -> list[dict]:
    """Write ``tumour_<reader>.seg.nrrd`` and ``spheres_<reader>.mrk.json`` per further reader.

    Returns the ``readers.csv`` rows (paths relative to the cohort folder), ``R1`` (the manifest's
    files) first.
    """
    from ..slicer_write import write_markups, write_segmentation

    rel = f"patients/{pid}"
    rows = [{"patient_id": pid, "reader": "R1", "roi": f"{rel}/tumour.seg.nrrd", "roi_segment": "tumour",
             "markups": f"{rel}/spheres.mrk.json"}]
    spacing_zyx = np.asarray(seg_grid.spacing, float)[::-1]
    for number, reader in enumerate(READERS, start=2):
        rng = np.random.default_rng(np.random.SeedSequence([int(entropy), number]))
        habit = HABITS[reader]
        mask, pad = reader_mask(seg_mask, spacing_zyx, habit, rng)
        origin = tuple(float(o - p * s) for o, p, s in zip(seg_grid.origin, pad[::-1], seg_grid.spacing))
        write_segmentation(folder / f"tumour_{reader}.seg.nrrd", {"tumour": (mask.astype(np.uint8), {
            "origin": origin, "spacing": seg_grid.spacing})}, colors={"tumour": (0.3, 0.6, 0.85)},
            status="completed")
        centres = reader_centres(refs, habit, rng, liver_depth=liver_depth, inside_fov=inside_fov,
                                 vertebra_step_mm=vertebra_step_mm)
        write_markups(folder / f"spheres_{reader}.mrk.json",
                      {k: [float(round(v, 3)) for v in p] for k, p in centres.items()}, coordinate_system="LPS")
        rows.append({"patient_id": pid, "reader": reader, "roi": f"{rel}/tumour_{reader}.seg.nrrd",
                     "roi_segment": "tumour", "markups": f"{rel}/spheres_{reader}.mrk.json"})
    return rows

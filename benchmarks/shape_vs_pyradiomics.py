"""Shape features: mibgkit against pyradiomics on the same masks, in one run.

Run from the repository root::

    python benchmarks/shape_vs_pyradiomics.py [--repeats 5] [--small-repeats 41] [--quick]

pyradiomics is a benchmark-only extra (see benchmarks/README.md for how to install it).

Both libraries get the same SimpleITK mask image (spacing attached). Timed, per mask:

``mibgkit``
    ``mibgkit.shape.shape_features(mask)``: crop to the bounding box, pad, the marching-cubes
    configurations of the cubes the surface crosses, volume and surface from per-configuration
    integrals, sphericity, asphericity, maximum diameter (exact, pruned pair search).
``pyrad``
    ``radiomics.shape.RadiomicsShape(mask, mask, label=1)`` then ``MeshVolume``,
    ``SurfaceArea``, ``Sphericity``, ``Maximum3DDiameter``. The class meshes the whole image
    it is given (padded by one voxel) and compares every pair of mesh vertices for the
    diameters.
``pyrad+crop``
    As pyradiomics' own feature extractor does it: ``imageoperations.checkMask`` and
    ``cropToTumorMask`` first, then the class on the cropped images.

Each time is the median of ``--repeats`` rounds (``--small-repeats`` for the small masks, whose
times are a fraction of a millisecond); in every round the three take turns, so that a slow spell
of a shared machine falls on all of them. The ratio is pyradiomics / mibgkit (> 1: mibgkit is
faster). Differences are (mibgkit - pyradiomics) / pyradiomics in %.

Two regimes have their own targets, printed at the end:

small masks
    Tumours of 62-925 voxels: neuroblastoma primaries of infants on a 3.3 mm SPECT grid
    (lobulated 20, 30, 40, 50 mm; spheres of radius 10, 15 and 20 mm) and a sphere of radius 5 mm
    at 1 mm. Target: at least 5x pyradiomics with its own crop ("pyrad+crop"), in every case.
128³ grid
    The 60 mm tumour in a 128³ SPECT matrix, as an extraction sees it. Target: at least 8x the
    shape class on the image as given ("pyrad").
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import sys
import time

import numpy as np
import SimpleITK as sitk

from mibgkit.shape import shape_features

try:
    import radiomics
    from radiomics import imageoperations
    from radiomics.shape import RadiomicsShape
except ImportError:  # pragma: no cover - benchmark-only extra
    sys.exit("pyradiomics is not installed; see benchmarks/README.md")

radiomics.setVerbosity(logging.ERROR)

PYRAD_FEATURES = {
    "mesh_volume_mm3": "MeshVolume",
    "surface_mm2": "SurfaceArea",
    "sphericity": "Sphericity",
    "max_diameter_mm": "Maximum3DDiameter",
}


# --------------------------------------------------------------------------- masks


def _grid(shape, spacing):
    """Physical coordinates (mm) of voxel centres, numpy order, origin at the grid centre."""
    return np.meshgrid(
        *[(np.arange(n) - (n - 1) / 2) * h for n, h in zip(shape, spacing)], indexing="ij", sparse=True
    )


def ball_mask(radius_mm, spacing, margin=3):
    shape = tuple(int(np.ceil(2 * radius_mm / h)) + 2 * margin for h in spacing)
    z, y, x = _grid(shape, spacing)
    return (z**2 + y**2 + x**2 <= radius_mm**2).astype(np.uint8)


def lobulated_mask(diameter_mm, spacing, seed, shape=None, lobes=7):
    """A lobulated tumour: a core ball plus random lobes of 30-55 % of its radius on its surface."""
    rng = np.random.default_rng(seed)
    core = diameter_mm / 2 / 1.35
    if shape is None:
        shape = tuple(int(np.ceil(diameter_mm * 1.1 / h)) + 6 for h in spacing)
    z, y, x = _grid(shape, spacing)
    mask = z**2 + y**2 + x**2 <= core**2
    for _ in range(lobes):
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        c = direction * core * rng.uniform(0.8, 1.0)
        r = core * rng.uniform(0.3, 0.55)
        mask |= (z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2 <= r**2
    return mask.astype(np.uint8)


def image(mask, spacing):
    img = sitk.GetImageFromArray(mask)
    img.SetSpacing(tuple(float(h) for h in spacing[::-1]))
    return img


#: Names of the small-mask cases (see the module notes) and of the 128³ case.
SMALL = ("lobulated 20 mm, 3.3 mm", "lobulated 30 mm, 3.3 mm", "lobulated 40 mm, 3.3 mm",
         "lobulated 50 mm, 3.3 mm", "sphere r=10 mm, 3.3 mm", "sphere r=15 mm, 3.3 mm",
         "sphere r=20 mm, 3.3 mm", "sphere r=5 mm, 1 mm")
GRID_128 = "60 mm tumour in 128^3 @ 3.3 mm"


def cases(quick=False):
    iso1 = (1.0, 1.0, 1.0)
    spect = (3.3, 3.3, 3.3)
    # small masks: infant primaries on the SPECT grid (62-925 voxels), then a small sphere at 1 mm
    yield "lobulated 20 mm, 3.3 mm", image(lobulated_mask(20, spect, seed=5), spect)
    yield "lobulated 30 mm, 3.3 mm", image(lobulated_mask(30, spect, seed=6), spect)
    yield "lobulated 40 mm, 3.3 mm", image(lobulated_mask(40, spect, seed=7), spect)
    yield "lobulated 50 mm, 3.3 mm", image(lobulated_mask(50, spect, seed=8), spect)
    yield "sphere r=10 mm, 3.3 mm", image(ball_mask(10, spect), spect)
    yield "sphere r=15 mm, 3.3 mm", image(ball_mask(15, spect), spect)
    yield "sphere r=20 mm, 3.3 mm", image(ball_mask(20, spect), spect)
    yield "sphere r=5 mm, 1 mm", image(ball_mask(5, iso1), iso1)
    yield "sphere r=10 mm, 1 mm", image(ball_mask(10, iso1), iso1)
    yield "sphere r=20 mm, 1 mm", image(ball_mask(20, iso1), iso1)
    if not quick:
        yield "sphere r=40 mm, 1 mm", image(ball_mask(40, iso1), iso1)
    yield "sphere r=20 mm, 3.3x3.3x2 mm", image(ball_mask(20, (2.0, 3.3, 3.3)), (2.0, 3.3, 3.3))
    yield "lobulated 30 mm, 1 mm", image(lobulated_mask(30, iso1, seed=1), iso1)
    yield "lobulated 50 mm, 1 mm", image(lobulated_mask(50, iso1, seed=2), iso1)
    yield "lobulated 60 mm, 3.3 mm", image(lobulated_mask(60, spect, seed=3), spect)
    # a realistic case: a 60 mm tumour somewhere in a 128^3 SPECT matrix at 3.3 mm
    big = np.zeros((128, 128, 128), np.uint8)
    tumour = lobulated_mask(60, spect, seed=3)
    big[40 : 40 + tumour.shape[0], 70 : 70 + tumour.shape[1], 30 : 30 + tumour.shape[2]] = tumour
    yield GRID_128, image(big, spect)
    if not quick:
        # a large tumour on a fine CT-like grid
        yield "lobulated 100 mm in 160^3 @ 1 mm", image(lobulated_mask(100, iso1, seed=4, shape=(160,) * 3), iso1)


# --------------------------------------------------------------------------- timing


def median_times(fns, repeats):
    """Median seconds and last result of each function, the functions taking turns in every round.

    Interleaving keeps the ratios fair on a shared machine: a slow spell of the host falls on all
    of them instead of on whichever ran then.
    """
    times = [[] for _ in fns]
    results = [None] * len(fns)
    for _ in range(repeats):
        for k, fn in enumerate(fns):
            start = time.perf_counter()
            results[k] = fn()
            times[k].append(time.perf_counter() - start)
    return [(statistics.median(t), r) for t, r in zip(times, results)]


def run_mibgkit(mask):
    return shape_features(mask)


def run_pyradiomics(mask):
    shape = RadiomicsShape(mask, mask, label=1)
    return {ours: float(getattr(shape, f"get{theirs}FeatureValue")()) for ours, theirs in PYRAD_FEATURES.items()}


def run_pyradiomics_cropped(mask):
    bounding_box, _ = imageoperations.checkMask(mask, mask, label=1)
    cropped_image, cropped_mask = imageoperations.cropToTumorMask(mask, mask, bounding_box, label=1)
    return run_pyradiomics(cropped_mask) if cropped_image is not None else None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs per mask and library (median taken)")
    parser.add_argument("--small-repeats", type=int, default=41,
                        help="runs per small mask and library (median taken; at least 21)")
    parser.add_argument("--quick", action="store_true", help="skip the two largest masks")
    args = parser.parse_args(argv)

    import skimage
    import scipy

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} logical CPUs, {platform.platform()}\n"
        f"python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}, "
        f"scikit-image {skimage.__version__}, SimpleITK {sitk.Version.VersionString()}, "
        f"pyradiomics {radiomics.__version__}\n"
        f"times: median of {args.repeats} runs ({args.small_repeats} for the small masks), in ms; "
        f"ratio = pyradiomics / mibgkit; "
        f"differences (mibgkit - pyradiomics) / pyradiomics in %\n"
    )
    header = (
        f"{'mask':34s} {'array':>13s} {'voxels':>8s} {'mibgkit':>9s} {'pyrad':>9s} {'ratio':>6s} "
        f"{'pyrad+crop':>10s} {'ratio':>6s} {'dV %':>7s} {'dS %':>7s} {'dSph %':>7s} {'dDmax %':>7s}"
    )
    print(header)
    print("-" * len(header))
    ratios, crop_ratios, worst = [], [], {k: 0.0 for k in PYRAD_FEATURES}
    crop_drift = {k: 0.0 for k in PYRAD_FEATURES}  # pyradiomics on the image vs on its crop
    small, small_voxels, grid_ratio = [], [], None
    for name, mask in cases(args.quick):
        run_mibgkit(mask)  # warm-up (imports, caches) for both
        run_pyradiomics_cropped(mask)
        repeats = max(args.small_repeats, 21) if name in SMALL else args.repeats
        (t_ours, ours), (t_theirs, theirs), (t_crop, theirs_crop) = median_times(
            [lambda: run_mibgkit(mask), lambda: run_pyradiomics(mask), lambda: run_pyradiomics_cropped(mask)],
            repeats)
        if name in SMALL:
            small.append(t_crop / t_ours)
            small_voxels.append(ours["n_voxels"])
        if name == GRID_128:
            grid_ratio = t_theirs / t_ours
        diff = {k: 100 * (ours[k] - theirs[k]) / theirs[k] for k in PYRAD_FEATURES}
        for k in PYRAD_FEATURES:
            worst[k] = max(worst[k], abs(diff[k]))
            crop_drift[k] = max(crop_drift[k], 100 * abs(theirs_crop[k] - theirs[k]) / abs(theirs[k]))
        ratios.append(t_theirs / t_ours)
        crop_ratios.append(t_crop / t_ours)
        size = "x".join(str(n) for n in mask.GetSize()[::-1])
        print(
            f"{name:34s} {size:>13s} {ours['n_voxels']:8d} {1e3 * t_ours:9.2f} {1e3 * t_theirs:9.2f} "
            f"{t_theirs / t_ours:6.1f} {1e3 * t_crop:10.2f} {t_crop / t_ours:6.1f} "
            f"{diff['mesh_volume_mm3']:+7.3f} {diff['surface_mm2']:+7.3f} {diff['sphericity']:+7.3f} "
            f"{diff['max_diameter_mm']:+7.3f}"
        )
    geo = float(np.exp(np.mean(np.log(ratios))))
    geo_crop = float(np.exp(np.mean(np.log(crop_ratios))))
    print(
        f"\nspeed-up (pyradiomics / mibgkit): class on the image as given: min {min(ratios):.1f}x, "
        f"geometric mean {geo:.1f}x; with pyradiomics' own crop: min {min(crop_ratios):.1f}x, "
        f"geometric mean {geo_crop:.1f}x"
    )
    print(
        "largest |difference|: "
        + ", ".join(f"{PYRAD_FEATURES[k]} {worst[k]:.3f} %" for k in PYRAD_FEATURES)
    )
    print(
        "pyradiomics itself, image as given vs cropped, largest |difference|: "
        + ", ".join(f"{PYRAD_FEATURES[k]} {crop_drift[k]:.4f} %" for k in PYRAD_FEATURES)
    )
    target = min(crop_ratios) >= 3 and worst["mesh_volume_mm3"] <= 0.5 and worst["surface_mm2"] <= 0.5
    print(f"target (>= 3x faster in every case, volume and surface within 0.5 %): {'met' if target else 'NOT met'}")
    small_met = min(small) >= 5
    geo_small = float(np.exp(np.mean(np.log(small))))
    print(
        f"small masks: min {min(small):.1f}x / geomean {geo_small:.1f}x vs pyradiomics "
        f"on its bounding box over {len(small)} masks of {min(small_voxels)}–{max(small_voxels)} voxels "
        f"(target ≥ 5×): {'met' if small_met else 'NOT met'}"
    )
    grid_met = grid_ratio >= 8
    print(f"128³ grid: {grid_ratio:.1f}x vs RadiomicsShape on the image (target ≥ 8×): "
          f"{'met' if grid_met else 'NOT met'}")
    return 0 if target and small_met and grid_met else 1


if __name__ == "__main__":
    sys.exit(main())

"""Calibration by measurement: the generator's shape and uptake parameters, searched until the
imaging pipeline, measuring what would be written, lands on the design's targets.

:func:`calibrate_shape` searches a tumour's shape amplitude (and size) until the asphericity that
:func:`mibgkit.shape.shape_features` measures on the analyst's ROI as the pipeline sees it (resampled
nearest-neighbour onto the SPECT grid) meets its target; :func:`solve_uptake` finds the tumour
concentration and hot-focus weight for a target maximum and mean. Geometry: LPS mm; arrays in
numpy order (z, y, x).
"""

from __future__ import annotations

import math

import numpy as np

from . import tumour
from .anatomy import Grid
from .clinical import ASP_CUTOFF

__all__ = ["calibrate_shape", "roi_on_spect", "solve_uptake", "nearest_points"]

_ASP_TOL = 0.03  # accepted |ASP - target|
_ASP_MARGIN = 0.012  # measured ASP must clear the cut-off by this much on the target's side


def nearest_points(target: Grid, source: Grid, lo, hi) -> tuple[np.ndarray, tuple, np.ndarray]:
    """For the target voxels ``lo <= idx < hi``: the physical centres of the nearest source voxels.

    This is what nearest-neighbour resampling of a mask on ``source`` onto ``target`` reads
    (index rounded half up, as ITK does). Both grids are axis-aligned, so the nearest index is
    found axis by axis, and where the source is coarser along an axis (5 mm CT slices under 3 mm
    SPECT slices) several target voxels read the same source voxel.

    Returns
    -------
    points : ndarray, shape (nz, ny, nx, 3)
        The distinct source centres read (LPS mm, ``x, y, z``), as a grid in numpy order.
    index : tuple of three 1-D int arrays
        Per target axis ``(z, y, x)``, the position of each target voxel's source centre on that
        grid: ``values[np.ix_(*index)]`` spreads values on it onto the target box.
    ok : ndarray of bool, shape ``hi - lo``
        Whether each nearest index lies inside ``source``.
    """
    sub = target.crop(lo, hi)
    o = np.asarray(source.origin)
    s = np.asarray(source.spacing)
    centres, index, ok = [], [], []
    for axis, t in enumerate(sub.axes()):  # z, y, x
        a = 2 - axis  # the same axis in (x, y, z) order
        i = np.floor((t - o[a]) / s[a] + 0.5)
        ok.append((i >= 0) & (i < source.shape[axis]))
        distinct, inverse = np.unique(i, return_inverse=True)
        centres.append(o[a] + distinct * s[a])
        index.append(inverse.reshape(-1))
    zz, yy, xx = np.meshgrid(*centres, indexing="ij")
    inside_source = ok[0][:, None, None] & ok[1][None, :, None] & ok[2][None, None, :]
    return np.stack([xx, yy, zz], axis=-1), tuple(index), inside_source


def roi_on_spect(shape: tumour.TumourShape, amplitude: float, spect: Grid, drawn_on: Grid):
    """The analyst's ROI (drawn on ``drawn_on``) as the pipeline sees it on the SPECT grid (crop)."""
    r = tumour.reach_mm(shape, amplitude)
    lo, hi = spect.box_around(shape.centre, r, margin_vox=1)
    points, index, ok = nearest_points(spect, drawn_on, lo, hi)
    drawn = tumour.inside(shape, points.reshape(-1, 3), amplitude).reshape(points.shape[:3])
    return drawn[np.ix_(*index)] & ok, lo


def _measure_shape(mask: np.ndarray, spacing_zyx) -> dict:
    from ..shape import shape_features

    if not mask.any():
        return {"asphericity": math.nan, "max_diameter_mm": 0.0}
    return shape_features(mask, spacing=spacing_zyx)


def calibrate_shape(shape: tumour.TumourShape, target_asp: float, target_diameter_mm: float, spect: Grid,
                    drawn_on: Grid, *, high: bool) -> tuple[tumour.TumourShape, float, dict]:
    """Search the shape amplitude (and size) until the measured ASP meets its target.

    Parameters
    ----------
    shape : TumourShape
        Initial solid; its ``scale`` is adjusted towards ``target_diameter_mm``.
    target_asp : float
        Target asphericity (as :func:`mibgkit.shape.shape_features` reports it).
    target_diameter_mm : float
        Soft target for the maximum 3-D diameter, mm.
    spect, drawn_on : Grid
        The SPECT grid and the grid the analyst draws on (CT or SPECT).
    high : bool
        Whether the target lies above the published ASP cut-off; the accepted ASP must clear the
        cut-off on that side.

    Returns
    -------
    shape, amplitude, measured
        The final solid, its amplitude and the shape features measured on the SPECT grid.
    """
    spacing_zyx = spect.spacing[::-1]

    def ok_class(asp):
        return asp >= ASP_CUTOFF + _ASP_MARGIN if high else asp <= ASP_CUTOFF - _ASP_MARGIN

    def measure(sh, a):
        mask, _ = roi_on_spect(sh, a, spect, drawn_on)
        return _measure_shape(mask, spacing_zyx)

    best = None
    a_cap = 3.0
    for _round in range(4):
        f0 = measure(shape, 0.0)
        a, f = 0.0, f0
        if f0["asphericity"] < target_asp - _ASP_TOL or not ok_class(f0["asphericity"]):
            # Bracket the target by doubling the amplitude, then bisect.
            lo_a, hi_a, f_hi = 0.0, 0.4, measure(shape, 0.4)
            while f_hi["asphericity"] < target_asp and hi_a < a_cap:
                lo_a, hi_a = hi_a, min(2.0 * hi_a, a_cap)
                f_hi = measure(shape, hi_a)
            a, f = hi_a, f_hi
            if f_hi["asphericity"] >= target_asp:
                for _ in range(14):
                    if abs(f["asphericity"] - target_asp) <= _ASP_TOL and ok_class(f["asphericity"]):
                        break
                    mid = 0.5 * (lo_a + hi_a)
                    a, f = mid, measure(shape, mid)
                    if f["asphericity"] < target_asp:
                        lo_a = mid
                    else:
                        hi_a = mid
        miss = abs(f["asphericity"] - target_asp) + (0.0 if ok_class(f["asphericity"]) else 10.0)
        ratio = target_diameter_mm / max(f["max_diameter_mm"], 1.0)
        size_miss = abs(math.log(ratio))
        cand = (miss + 0.05 * size_miss, shape, a, f)
        if best is None or cand[0] < best[0]:
            best = cand
        if 0.88 <= ratio <= 1.12:
            break
        shape = shape.with_scale(shape.scale * float(np.clip(ratio, 0.4, 1.8)))
    _, shape, a, f = best
    return shape, a, f


def solve_uptake(bg, t0, t1, want_max, want_mean, excess_counts: float | None = None) -> tuple[float, float, bool]:
    """Tumour concentration ``c`` and hot-focus weight ``η`` for target max and mean in the ROI.

    Uses the noise-free expectation ``bg + c·(t0 + η·t1)`` over the ROI voxels. For a given ``η``,
    ``c(η)`` gives the wanted mean, and the maximum (inflated by ``excess_counts``, the excess of
    the noisy maximum over the expected one; by default 2.5 Poisson SD) grows with ``η``; ``η`` is found by bracketing and bisection.
    When even ``η = 0`` gives too high a maximum for that mean, the maximum has priority: ``η = 0``
    and ``c`` from the maximum. Returns ``(c, η, reached)``; ``reached`` is False when no ``η``
    makes the maximum high enough for the wanted mean (the tumour is too uniform).
    """
    bg = np.asarray(bg, float)
    t0 = np.asarray(t0, float)
    t1 = np.asarray(t1, float)

    def excess(eta):
        pattern = t0 + eta * t1
        c = (want_mean - bg.mean()) / max(float(pattern.mean()), 1e-12)
        peak = float(np.max(bg + c * pattern))
        noise = 2.5 * math.sqrt(max(peak, 1.0)) if excess_counts is None else excess_counts
        return peak + noise - want_max, c

    g0, c0 = excess(0.0)
    if g0 >= 0 or c0 <= 0:
        i = int(np.argmax(t0))
        return max((want_max - 2.5 * math.sqrt(want_max) - bg[i]) / max(float(t0[i]), 1e-12), 0.0), 0.0, True
    lo, hi = 0.0, None
    for eta in np.geomspace(0.05, 1000.0, 40):
        g, _ = excess(eta)
        if g >= 0:
            hi = eta
            break
        lo = eta
    if hi is None:
        return excess(lo)[1], lo, False
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        if excess(mid)[0] >= 0:
            hi = mid
        else:
            lo = mid
    return excess(lo)[1], lo, True

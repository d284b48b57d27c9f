"""Primary tumours: 3-D shape (round, lobulated, spiculated) and heterogeneous MIBG uptake.

A tumour is an implicit solid in physical space (LPS, mm): the union of

* a *core* ellipsoid whose surface is perturbed radially by a sum of random plane waves on the
  unit sphere (bosselated surface),
* a few ellipsoidal *lobes* whose centres move outwards from the core as the shape amplitude grows
  (lobulated mass), and
* tapered *spicules* (capsules along random directions) whose length grows with the amplitude.

One scalar, the *amplitude* ``a`` (0 = a near-ellipsoid), drives all three at once with
patient-specific weights, so that asphericity (ASP) grows monotonically with ``a`` and the cohort
generator can search ``a`` for a target ASP. ``scale`` (mm) is the mean radius of the core.

Uptake inside the tumour is a smooth heterogeneous field with optional central necrosis (the *base*
pattern) plus a few Gaussian hot foci (the *hot* pattern); the generator mixes the two to set the
ratio of the tumour's maximum to its mean.

Everything is evaluated at arbitrary points, so the same solid can be rasterised on the SPECT grid,
on the CT grid, or at the CT voxel centres nearest to SPECT voxel centres (which is what a
nearest-neighbour resampling of a CT-drawn ROI onto the SPECT grid sees).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .anatomy import Grid

__all__ = ["TumourShape", "draw_tumour", "inside", "reach_mm", "uptake_patterns"]


@dataclass(frozen=True)
class TumourShape:
    """Parameters of one tumour solid.

    Attributes
    ----------
    centre : ndarray, shape (3,)
        LPS position of the core centre, mm.
    rotation : ndarray, shape (3, 3)
        Columns are the tumour's local axes in LPS.
    radii : ndarray, shape (3,)
        Core semi-axes relative to ``scale`` (geometric mean 1).
    wave_dirs, wave_freq, wave_phase, wave_amp : ndarray
        Plane waves on the unit sphere, ``H(u) = Σ amp·cos(freq·(u·dir) + phase)``.
    lobe_dirs : ndarray, shape (k, 3)
        Unit directions of the lobe centres (local frame).
    lobe_radii : ndarray, shape (k, 3)
        Lobe semi-axes relative to ``scale``.
    lobe_reach : ndarray, shape (k,)
        How far each lobe moves out per unit amplitude (core radii).
    spike_dirs : ndarray, shape (m, 3)
        Unit directions of the spicules (local frame).
    spike_length : ndarray, shape (m,)
        Spicule length gained per unit amplitude (core radii).
    spike_radius : ndarray, shape (m,)
        Spicule radius at the base relative to ``scale``; tapers to 60 % at the tip.
    weights : ndarray, shape (3,)
        Weights of surface waves, lobes and spicules in the amplitude.
    scale : float
        Mean core radius, mm.
    min_spike_mm : float
        Spicules never get thinner than this radius (mm), so they survive the grids they are drawn on.
    """

    centre: np.ndarray
    rotation: np.ndarray
    radii: np.ndarray
    wave_dirs: np.ndarray
    wave_freq: np.ndarray
    wave_phase: np.ndarray
    wave_amp: np.ndarray
    lobe_dirs: np.ndarray
    lobe_radii: np.ndarray
    lobe_reach: np.ndarray
    spike_dirs: np.ndarray
    spike_length: np.ndarray
    spike_radius: np.ndarray
    weights: np.ndarray
    scale: float
    min_spike_mm: float = 3.2

    def with_scale(self, scale: float) -> "TumourShape":
        """The same solid, resized to a mean core radius of ``scale`` mm."""
        return TumourShape(**{**self.__dict__, "scale": float(scale)})


def _unit(rng: np.random.Generator, k: int) -> np.ndarray:
    v = rng.standard_normal((k, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def draw_tumour(rng: np.random.Generator, centre_mm, scale_mm: float, *, spiculated: float) -> TumourShape:
    """Draw the random parameters of a tumour solid.

    Parameters
    ----------
    rng : numpy.random.Generator
    centre_mm : sequence of 3 float
        LPS centre of the core, mm.
    scale_mm : float
        Mean core radius, mm (rescaled later to meet a diameter).
    spiculated : float
        0–1: how much of the amplitude goes into spicules rather than lobes and surface waves.
        High-ASP tumours need spicules; a round or lobulated mass has few or none.

    Returns
    -------
    TumourShape
    """
    radii = np.exp(rng.normal(0.0, 0.15, 3))
    radii /= np.prod(radii) ** (1 / 3)
    n_waves = 6
    n_lobes = int(rng.integers(1, 5))
    n_spikes = int(rng.integers(10, 18) + 14 * spiculated)
    s = float(np.clip(spiculated, 0.0, 1.0))
    weights = np.array([0.35 + 0.3 * rng.random(), (1.0 - 0.7 * s) * (0.6 + 0.6 * rng.random()), 1.4 * s])
    return TumourShape(
        centre=np.asarray(centre_mm, dtype=float),
        rotation=_random_rotation(rng),
        radii=radii,
        wave_dirs=_unit(rng, n_waves),
        wave_freq=rng.uniform(2.0, 5.5, n_waves),
        wave_phase=rng.uniform(0, 2 * np.pi, n_waves),
        wave_amp=rng.uniform(0.5, 1.0, n_waves) / np.sqrt(n_waves),
        lobe_dirs=_unit(rng, n_lobes),
        lobe_radii=rng.uniform(0.45, 0.75, (n_lobes, 1)) * np.exp(rng.normal(0, 0.12, (n_lobes, 3))),
        lobe_reach=rng.uniform(0.5, 1.0, n_lobes),
        spike_dirs=_unit(rng, n_spikes),
        spike_length=rng.uniform(0.3, 1.0, n_spikes),
        spike_radius=rng.uniform(0.14, 0.22, n_spikes),
        weights=weights,
        scale=float(scale_mm),
    )


def reach_mm(shape: TumourShape, amplitude: float) -> float:
    """An upper bound of the distance from the centre to any point of the solid, mm."""
    a = max(float(amplitude), 0.0)
    w_wave, w_lobe, w_spike = shape.weights
    core = shape.radii.max() * (1.0 + a * w_wave * np.abs(shape.wave_amp).sum())
    lobes = (0.35 + a * w_lobe * shape.lobe_reach + shape.lobe_radii.max(axis=1)).max()
    spikes = 1.0 + a * w_spike * shape.spike_length.max() + shape.spike_radius.max()
    return float(shape.scale * max(core, lobes, spikes)) + shape.min_spike_mm + 1.0


def inside(shape: TumourShape, points_mm: np.ndarray, amplitude: float) -> np.ndarray:
    """Whether points lie inside the tumour solid.

    Parameters
    ----------
    shape : TumourShape
    points_mm : ndarray, shape (n, 3)
        LPS points, mm.
    amplitude : float
        Shape amplitude ``a`` ≥ 0.

    Returns
    -------
    ndarray of bool, shape (n,)
    """
    a = max(float(amplitude), 0.0)
    w_wave, w_lobe, w_spike = shape.weights
    points = np.asarray(points_mm, dtype=float)
    offset = np.empty_like(points)  # points - centre, column by column: the same values, 3x faster
    for j in range(3):
        np.subtract(points[:, j], shape.centre[j], out=offset[:, j])
    q = offset @ (shape.rotation / shape.scale)
    qx, qy, qz = q[:, 0], q[:, 1], q[:, 2]
    norm = np.sqrt(qx * qx + qy * qy + qz * qz)
    rx, ry, rz = shape.radii
    rho2 = (qx / rx) ** 2 + (qy / ry) ** 2 + (qz / rz) ** 2
    # Only points that can be in the core (perturbed radius <= 1 + a·w·Σ|amp|) need the waves.
    bound = 1.0 + a * w_wave * float(np.abs(shape.wave_amp).sum())
    result = np.zeros(len(q), dtype=bool)
    near = np.flatnonzero(rho2 <= bound * bound)
    if near.size:
        u = q[near] / np.maximum(norm[near], 1e-9)[:, None]
        phase = u @ shape.wave_dirs.T
        for j in range(phase.shape[1]):  # freq·(u·dir) + phase, wave by wave (as broadcasting would)
            phase[:, j] *= shape.wave_freq[j]
            phase[:, j] += shape.wave_phase[j]
        waves = np.cos(phase) @ shape.wave_amp
        result[near] = np.sqrt(rho2[near]) <= 1.0 + a * w_wave * waves
    # Lobes and spicules are tested only on the points still outside and within the solid's reach
    # (every per-point test is elementwise, so pruning changes no point's answer).
    rest = np.flatnonzero(~result & (norm <= (reach_mm(shape, a) - 1.0) / shape.scale))
    for d, r, reach in zip(shape.lobe_dirs, shape.lobe_radii, shape.lobe_reach):
        if not rest.size:
            return result
        c = d * (0.35 + a * w_lobe * reach)
        hit = ((qx[rest] - c[0]) / r[0]) ** 2 + ((qy[rest] - c[1]) / r[1]) ** 2 + ((qz[rest] - c[2]) / r[2]) ** 2 <= 1.0
        result[rest[hit]] = True
        rest = rest[~hit]
    if w_spike > 0 and a > 0 and rest.size:
        floor = shape.min_spike_mm / shape.scale
        px, py, pz = qx[rest], qy[rest], qz[rest]
        for d, length, r0 in zip(shape.spike_dirs, shape.spike_length, shape.spike_radius):
            end = 1.0 + a * w_spike * length
            if end <= 0.8:
                continue
            rmax = max(r0, floor)
            t_all = px * d[0] + py * d[1] + pz * d[2]
            cand = np.flatnonzero((t_all > 0.5 - rmax) & (t_all < end + rmax))
            if not cand.size:
                continue
            t = np.clip(t_all[cand], 0.5, end)
            dx, dy, dz = px[cand] - t * d[0], py[cand] - t * d[1], pz[cand] - t * d[2]
            axis_dist2 = (dx * dx + dy * dy) + dz * dz
            radius = np.maximum(r0 * (1.0 - 0.4 * (t - 0.5) / (end - 0.5)), floor)
            result[rest[cand[axis_dist2 <= radius * radius]]] = True
    return result


def uptake_patterns(shape: TumourShape, grid: Grid, amplitude: float, rng: np.random.Generator, *,
                    necrosis: float, n_hot: int, supersample: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Activity patterns of the tumour on (a crop of) the SPECT grid, before blur.

    Parameters
    ----------
    shape : TumourShape
    grid : Grid
        Grid to render on (usually a crop of the SPECT grid around the tumour).
    amplitude : float
        Shape amplitude.
    rng : numpy.random.Generator
    necrosis : float
        0 for none; otherwise the relative radius (0–0.6 of the core) of a central necrotic region
        whose activity falls to 15 %.
    n_hot : int
        Number of Gaussian hot foci (1–3).
    supersample : int
        Sub-voxel samples per axis for partial-volume occupancy.

    Returns
    -------
    base, hot, occupancy : ndarray, shape ``grid.shape``, float32
        ``base`` is ~1 inside viable tumour (smooth ±18 % texture, reduced in necrosis), times the
        occupied fraction of each voxel; ``hot`` is the hot-focus pattern (peak 1) times occupancy;
        ``occupancy`` is the fraction of each voxel inside the solid. The activity concentration is
        ``c·(base + η·hot)`` for the generator's ``c`` and ``η``.
    """
    z, y, x = grid.axes()
    sx, sy, sz = grid.spacing
    # Every pattern is multiplied by the occupancy, which is zero beyond the solid's reach: the voxels
    # are evaluated over the reach's box only (a tenth of a crop that holds the blur's tails) and
    # zero elsewhere. The texture's random field covers the whole grid, as its draws and filter do.
    lo, hi = grid.box_around(shape.centre, reach_mm(shape, amplitude), margin_vox=1)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    zb, yb, xb = z[box[0]], y[box[1]], x[box[2]]
    sub = (zb.size, yb.size, xb.size)
    offsets = (np.arange(supersample) + 0.5) / supersample - 0.5
    occ = np.zeros(sub, dtype=np.float32)
    zz, yy, xx = np.meshgrid(zb, yb, xb, indexing="ij")
    for oz in offsets:
        for oy in offsets:
            for ox in offsets:
                pts = np.stack([(xx + ox * sx).ravel(), (yy + oy * sy).ravel(), (zz + oz * sz).ravel()], axis=1)
                occ += inside(shape, pts, amplitude).reshape(sub)
    occ /= supersample**3

    texture = ndimage.gaussian_filter(rng.standard_normal(grid.shape).astype(np.float32), 6.0 / sx)
    texture /= max(float(texture.std()), 1e-6)
    base = 1.0 + 0.18 * texture[box]
    if necrosis > 0:
        shift = rng.normal(0, 0.15, 3)
        centres = np.stack([xx.ravel(), yy.ravel(), zz.ravel()], axis=1)
        q = (centres - shape.centre) @ shape.rotation / shape.scale
        rn = np.sqrt((((q - shift) / shape.radii) ** 2).sum(axis=1)).reshape(sub)
        viable = np.clip((rn - necrosis) / 0.15, 0.0, 1.0)
        base = base * (0.15 + 0.85 * viable)
    hot = np.zeros(sub, dtype=np.float32)
    for _ in range(max(int(n_hot), 0)):
        d = _unit(rng, 1)[0] * rng.uniform(0.0, 0.55)
        p = shape.centre + shape.rotation @ (d * shape.radii) * shape.scale
        sigma = rng.uniform(2.5, 4.5)
        # squared distance to the focus, (dx² + dy²) + dz² as a row sum over (x, y, z) adds them
        r2 = (((xb - p[0]) ** 2)[None, None, :] + ((yb - p[1]) ** 2)[None, :, None]) + ((zb - p[2]) ** 2)[:, None, None]
        hot = np.maximum(hot, np.exp(-0.5 * r2 / sigma**2).astype(np.float32))
    out = [np.zeros(grid.shape, dtype=np.float32) for _ in range(3)]
    out[0][box] = np.maximum(base, 0.0) * occ
    out[1][box] = hot * occ
    out[2][box] = occ
    return tuple(out)

"""Spherical volumes of interest (VOIs) for reference uptake: liver (30 ml) and muscle (10 ml).

Geometry is physical: a voxel belongs to a sphere of nominal volume ``v`` ml centred at
``c`` (LPS, mm) when its *centre* lies within ``r = (3·1000·v / (4π))^(1/3)`` mm of ``c``.
Voxel centres come from the image's origin, spacing and direction cosines, so the rule holds
for anisotropic voxels and any axis orientation.
"""

from __future__ import annotations

import math
import warnings
from typing import Mapping, Sequence

import numpy as np
import SimpleITK as sitk

from .errors import GeometryError, QCWarning
from .geometry import index_to_lps

#: Nominal reference VOI volumes of the study, in ml.
LIVER_VOLUME_ML = 30.0
MUSCLE_VOLUME_ML = 10.0

#: Nominal volume (ml) of each reference sphere, by name.
SPHERE_VOLUMES_ML = {"liver": LIVER_VOLUME_ML, "muscle_left": MUSCLE_VOLUME_ML, "muscle_right": MUSCLE_VOLUME_ML}


def sphere_radius_mm(volume_ml: float) -> float:
    """Radius in mm of a sphere of ``volume_ml`` millilitres: ``(3·1000·v / 4π)^(1/3)``.

    Examples
    --------
    >>> round(sphere_radius_mm(30), 2), round(sphere_radius_mm(10), 2)
    (19.28, 13.37)
    """
    if not volume_ml > 0:
        raise ValueError(f"sphere volume must be positive, got {volume_ml} ml")
    return (3.0 * 1000.0 * volume_ml / (4.0 * math.pi)) ** (1.0 / 3.0)


def sphere_index_mask(image: sitk.Image, centre_mm: Sequence[float], radius_mm: float):
    """Voxels of ``image`` whose centres lie within ``radius_mm`` of ``centre_mm``.

    Parameters
    ----------
    image : SimpleITK.Image
        3-D image; only its geometry is used.
    centre_mm : sequence of 3 floats
        Sphere centre in the image's physical (LPS) coordinates, mm.
    radius_mm : float
        Sphere radius, mm.

    Returns
    -------
    inside : tuple of 3 int arrays
        Array indices ``(z, y, x)`` (numpy order) of the voxels inside the sphere and inside the image.
    n_lattice : int
        Voxel centres of the image's (unbounded) lattice inside the sphere, counted as if the
        image extended forever; ``len(inside[0]) / n_lattice`` is the share inside the field of view.
    """
    if image.GetDimension() != 3:
        raise GeometryError(f"sphere VOIs need a 3-D image, got {image.GetDimension()}-D")
    a, o = index_to_lps(image)
    c = np.asarray(centre_mm, dtype=float)
    if c.shape != (3,) or not np.all(np.isfinite(c)):
        raise GeometryError(f"sphere centre must be 3 finite coordinates in mm, got {centre_mm!r}")
    a_inv = np.linalg.inv(a)
    c_idx = a_inv @ (c - o)
    # Half-extent of the sphere's bounding box in index units along each index axis.
    half = radius_mm * np.linalg.norm(a_inv, axis=1)
    lo = np.floor(c_idx - half).astype(int)
    hi = np.ceil(c_idx + half).astype(int)
    axes = [np.arange(lo[d], hi[d] + 1) for d in range(3)]
    size = np.asarray(image.GetSize())
    if not np.any(a[~np.eye(3, dtype=bool)]):
        # Axis-aligned grid (flips allowed): coordinate d depends on index d alone, so the squared
        # distances are sums of per-axis terms, the same floating-point values as the general case
        # (a @ idx adds exact zeros there), in the same (i, j, k) order of the voxels.
        sq = [((a[d, d] * axes[d] + o[d]) - c[d]) ** 2 for d in range(3)]
        d2 = (sq[0][:, None, None] + sq[1][None, :, None]) + sq[2][None, None, :]
        within = d2 <= radius_mm**2
        n_lattice = int(np.count_nonzero(within))
        ok = [(ax >= 0) & (ax < n) for ax, n in zip(axes, size)]
        within &= ok[0][:, None, None] & ok[1][None, :, None] & ok[2][None, None, :]
        i, j, k = np.nonzero(within)
        return (k + lo[2], j + lo[1], i + lo[0]), n_lattice
    ii, jj, kk = np.meshgrid(*axes, indexing="ij")
    idx = np.stack([ii.ravel(), jj.ravel(), kk.ravel()])
    pts = a @ idx + o[:, None]
    within = np.sum((pts - c[:, None]) ** 2, axis=0) <= radius_mm**2
    in_image = np.all((idx >= 0) & (idx < size[:, None]), axis=0)
    keep = within & in_image
    i, j, k = idx[:, keep]
    return (k, j, i), int(within.sum())


def sphere_stats(
    image: sitk.Image,
    centre_mm: Sequence[float],
    volume_ml: float,
    *,
    organ_mask: sitk.Image | None = None,
    name: str = "sphere",
) -> dict:
    """Max and mean of ``image`` inside a sphere of nominal ``volume_ml`` at ``centre_mm``.

    Parameters
    ----------
    image : SimpleITK.Image
        3-D image (e.g. SPECT counts).
    centre_mm : sequence of 3 floats
        Centre in the image's physical LPS coordinates, mm.
    volume_ml : float
        Nominal sphere volume, ml (30 for liver, 10 for muscle in the study).
    organ_mask : SimpleITK.Image, optional
        Organ mask on the same grid as ``image``; when given, the share of the sphere's voxels
        inside the organ is reported and a sphere leaving its organ raises a :class:`QCWarning`.
    name : str
        Label used in QC messages (``"liver"``, ``"muscle_left"``...).

    Returns
    -------
    dict
        ``max``, ``mean`` (image units), ``n_voxels`` (voxels whose centres are inside the sphere
        and the image), ``volume_ml`` (realised volume: ``n_voxels`` × voxel volume),
        ``nominal_volume_ml``, ``radius_mm``, ``fraction_inside`` (share of the sphere's lattice
        voxels that lie inside the image, 1.0 when fully inside), ``fraction_in_organ`` (NaN
        without an organ mask) and ``warnings`` (list of str; also emitted as QCWarning).

    Notes
    -----
    ``r = (3·1000·v / 4π)^(1/3)`` mm: 30 ml → 19.28 mm, 10 ml → 13.37 mm. A voxel is in the
    sphere when its centre is within ``r`` of the centre (voxel-centre rule; no partial volumes).
    """
    radius = sphere_radius_mm(volume_ml)
    (z, y, x), n_lattice = sphere_index_mask(image, centre_mm, radius)
    voxel_ml = float(np.prod(image.GetSpacing())) / 1000.0
    n = int(z.size)
    messages: list[str] = []
    if n == 0:
        raise GeometryError(
            f"{name} sphere ({volume_ml:g} ml) at {tuple(round(float(v), 1) for v in centre_mm)} mm "
            "lies entirely outside the image"
        )
    values = sitk.GetArrayViewFromImage(image)[z, y, x].astype(float)
    fraction_inside = n / n_lattice
    if fraction_inside < 1.0:
        messages.append(
            f"{name} sphere: only {100 * fraction_inside:.1f}% of the {volume_ml:g} ml sphere lies inside the image"
        )
    fraction_in_organ = math.nan
    if organ_mask is not None:
        if organ_mask.GetSize() != image.GetSize():
            raise GeometryError(f"{name} organ mask is not on the image grid")
        organ = sitk.GetArrayViewFromImage(organ_mask)[z, y, x] != 0
        fraction_in_organ = float(organ.mean())
        if fraction_in_organ < 1.0:
            messages.append(
                f"{name} sphere: {100 * (1 - fraction_in_organ):.1f}% of its voxels lie outside the organ mask"
            )
    for m in messages:
        warnings.warn(m, QCWarning, stacklevel=2)
    return {
        "max": float(values.max()),
        "mean": float(values.mean()),
        "n_voxels": n,
        "volume_ml": n * voxel_ml,
        "nominal_volume_ml": float(volume_ml),
        "radius_mm": radius,
        "fraction_inside": float(fraction_inside),
        "fraction_in_organ": fraction_in_organ,
        "warnings": messages,
    }


def reference_uptake(
    image: sitk.Image,
    centres: Mapping[str, Sequence[float]],
    *,
    liver_ml: float = LIVER_VOLUME_ML,
    muscle_ml: float = MUSCLE_VOLUME_ML,
    organ_masks: Mapping[str, sitk.Image] | None = None,
) -> dict:
    """Liver and muscle reference values as the study defines them.

    ``lmax``/``lmean`` from a ``liver_ml`` sphere at ``centres["liver"]``; ``mmax``/``mmean`` are
    the averages over the left and right ``muscle_ml`` spheres at ``centres["muscle_left"]`` and
    ``centres["muscle_right"]`` (beside the L2 vertebral body). Centres are LPS mm.

    Returns a flat dict: ``lmax, lmean, mmax, mmean`` and, per sphere ``s`` in
    ``liver, muscle_left, muscle_right``: ``s_max, s_mean, s_n_voxels, s_volume_ml,
    s_fraction_inside, s_fraction_in_organ``, plus ``warnings`` (list of str).
    """
    organ_masks = organ_masks or {}
    out: dict = {}
    notes: list[str] = []
    spheres = {**SPHERE_VOLUMES_ML, "liver": liver_ml, "muscle_left": muscle_ml, "muscle_right": muscle_ml}
    for sphere, ml in spheres.items():
        if sphere not in centres:
            raise GeometryError(f"no centre for the {sphere} sphere (have: {', '.join(sorted(centres)) or 'none'})")
        organ = organ_masks.get(sphere)
        if organ is None:
            organ = organ_masks.get(sphere.split("_")[0])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", QCWarning)
            s = sphere_stats(image, centres[sphere], ml, organ_mask=organ, name=sphere)
        for key in ("max", "mean", "n_voxels", "volume_ml", "fraction_inside", "fraction_in_organ"):
            out[f"{sphere}_{key}"] = s[key]
        notes.extend(s["warnings"])
    out["lmax"], out["lmean"] = out["liver_max"], out["liver_mean"]
    out["mmax"] = (out["muscle_left_max"] + out["muscle_right_max"]) / 2.0
    out["mmean"] = (out["muscle_left_mean"] + out["muscle_right_mean"]) / 2.0
    out["warnings"] = notes
    return out

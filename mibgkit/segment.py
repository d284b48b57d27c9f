"""The metabolic tumour volume (MTV): the ROI as drawn, or a threshold of the uptake inside it.

Three definitions, chosen by ``method``:

``"roi"`` (default, the study's choice)
    the primary-tumour ROI exactly as the analyst drew it.
``"percent_max"``
    voxels ``≥ fraction · Tmax`` inside the ROI dilated by ``dilation_mm``; Tmax is the maximum
    inside the drawn ROI.
``"adaptive"``
    background-adapted threshold ``bg + fraction · (Tmax − bg)`` inside the dilated ROI (the ROVER
    approach of the asphericity literature, Hofheinz et al. 2012/2015); ``bg`` is the mean uptake in a
    shell ``background_shell_mm`` thick around the dilated ROI unless given.

For both thresholds the MTV is the 26-connected component that contains the Tmax voxel, so
neighbouring hot organs inside the search region do not join the tumour. Where that component
reaches the edge of the search region the threshold has not bounded it (a cold tumour, a hot organ
next to it): a :class:`~mibgkit.errors.QCWarning` says so, since its volume and shape then depend
on ``dilation_mm``.
"""

from __future__ import annotations

import math
import numbers
import warnings

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .errors import GeometryError, ParameterError, QCWarning, SegmentationError

MTV_METHODS = ("roi", "percent_max", "adaptive")

#: Threshold fraction of each thresholding method when none is given.
DEFAULT_FRACTIONS = {"percent_max": 0.40, "adaptive": 0.50}


def _ellipsoid(radius_vox: np.ndarray, spacing_zyx: np.ndarray, radius_mm: float) -> np.ndarray:
    """Boolean ball of ``radius_mm`` on a voxel grid with ``spacing_zyx`` (numpy order)."""
    grids = np.meshgrid(*[np.arange(-r, r + 1) * s for r, s in zip(radius_vox, spacing_zyx)], indexing="ij")
    return sum(g**2 for g in grids) <= radius_mm**2 + 1e-9


def dilate_mm(mask: np.ndarray, spacing_zyx, radius_mm: float) -> np.ndarray:
    """Dilate a boolean array by a ball of ``radius_mm`` (physical, honours anisotropic spacing)."""
    if radius_mm <= 0:
        return mask.copy()
    spacing_zyx = np.asarray(spacing_zyx, float)
    radius_vox = np.floor(radius_mm / spacing_zyx).astype(int)
    return ndimage.binary_dilation(mask, structure=_ellipsoid(radius_vox, spacing_zyx, radius_mm))


def _component_with(mask: np.ndarray, seed: tuple) -> np.ndarray:
    labels, _ = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    return labels == labels[seed]


def check_mtv(method: str, fraction: float | None = None) -> None:
    """Raise :class:`~mibgkit.errors.ParameterError` (a ValueError) unless ``method`` is one of
    :data:`MTV_METHODS` and ``fraction``, where given for a thresholding method, lies in (0, 1)."""
    if method not in MTV_METHODS:
        raise ParameterError(f"unknown MTV method {method!r}; choose one of {', '.join(MTV_METHODS)}")
    if method in DEFAULT_FRACTIONS and fraction is not None:
        check_fraction(fraction, f"the {method} threshold fraction")


def check_fraction(fraction, what: str = "the threshold fraction") -> None:
    """Raise :class:`~mibgkit.errors.ParameterError`, naming ``what``, unless ``fraction`` is a
    number in (0, 1)."""
    if not (isinstance(fraction, numbers.Real) and 0 < fraction < 1):
        raise ParameterError(f"{what} must be a number in (0, 1), got {fraction!r}")


def mtv_mask(
    image: sitk.Image,
    roi: sitk.Image,
    method: str = "roi",
    *,
    fraction: float | None = None,
    dilation_mm: float = 10.0,
    background: float | None = None,
    background_shell_mm: float = 10.0,
) -> tuple[sitk.Image, dict]:
    """The MTV mask of a tumour on ``image``'s grid.

    Parameters
    ----------
    image : SimpleITK.Image
        SPECT counts, 3-D.
    roi : SimpleITK.Image
        Tumour ROI (non-zero inside) on the same grid as ``image``.
    method : {"roi", "percent_max", "adaptive"}
        See the module docstring.
    fraction : float, optional
        Threshold fraction; default 0.40 for ``"percent_max"`` (40 % of Tmax) and 0.50 for
        ``"adaptive"`` (50 % background-corrected).
    dilation_mm : float
        Search region: the ROI dilated by this many mm (physical ball), default 10 mm.
    background : float, optional
        Background for ``"adaptive"``; by default the mean in a shell around the search region.
    background_shell_mm : float
        Thickness of that shell, mm.

    Returns
    -------
    mask : SimpleITK.Image
        uint8 0/1 on ``image``'s grid.
    info : dict
        ``method, threshold, tmax, background, fraction, n_voxels``.
    """
    check_mtv(method, fraction)
    if roi.GetSize() != image.GetSize() or not np.allclose(roi.GetSpacing(), image.GetSpacing()) or not np.allclose(
        roi.GetOrigin(), image.GetOrigin(), atol=1e-3
    ):
        raise GeometryError("the ROI is not on the SPECT grid; resample it first (geometry.roi_on_grid)")
    roi_arr = sitk.GetArrayViewFromImage(roi) != 0
    if not roi_arr.any():
        raise SegmentationError("the tumour ROI is empty")
    img = sitk.GetArrayViewFromImage(image)
    tmax = float(img[roi_arr].max())
    info = {"method": method, "threshold": math.nan, "tmax": tmax, "background": math.nan,
            "fraction": math.nan, "n_voxels": int(roi_arr.sum())}
    if method == "roi":
        out = roi_arr.astype(np.uint8)
    else:
        spacing_zyx = np.asarray(image.GetSpacing(), float)[::-1]
        # Work on a crop around the ROI: cost follows the tumour, not the image.
        margin = np.ceil((dilation_mm + background_shell_mm) / spacing_zyx).astype(int) + 1
        nz = np.nonzero(roi_arr)
        lo = np.maximum([a.min() for a in nz] - margin, 0)
        hi = np.minimum([a.max() + 1 for a in nz] + margin, roi_arr.shape)
        crop = tuple(slice(a, b) for a, b in zip(lo, hi))
        r, v = roi_arr[crop], np.asarray(img[crop], float)
        region = dilate_mm(r, spacing_zyx, dilation_mm)
        if method == "percent_max":
            f = DEFAULT_FRACTIONS[method] if fraction is None else fraction
            thr = f * tmax
            bg = math.nan
        else:
            f = DEFAULT_FRACTIONS[method] if fraction is None else fraction
            if background is None:
                shell = dilate_mm(region, spacing_zyx, background_shell_mm) & ~region
                if not shell.any():
                    raise SegmentationError("no background shell around the ROI inside the image")
                bg = float(v[shell].mean())
            else:
                bg = float(background)
            thr = bg + f * (tmax - bg)
        seed = np.unravel_index(np.argmax(np.where(r, v, -np.inf)), r.shape)
        if not v[seed] >= thr:
            raise SegmentationError(
                f"{method} threshold {thr:g} is not below Tmax {tmax:g} (background {bg:g}): the ROI is not "
                "hotter than its surroundings, so there is no MTV to threshold"
            )
        comp = _component_with(region & (v >= thr), seed)
        if (comp & ~ndimage.binary_erosion(region)).any():
            warnings.warn(f"the {method} MTV reaches the edge of its search region (the ROI dilated by "
                          f"{dilation_mm:g} mm): the threshold does not bound it there, so its volume and shape "
                          "depend on the search region", QCWarning, stacklevel=2)
        out = np.zeros(roi_arr.shape, np.uint8)
        out[crop] = comp
        info.update(threshold=float(thr), background=bg, fraction=f, n_voxels=int(comp.sum()))
    mask = sitk.GetImageFromArray(out)
    mask.CopyInformation(image)
    return mask, info

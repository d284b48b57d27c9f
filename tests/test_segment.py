"""MTV definitions: as drawn, %-of-Tmax and background-adapted thresholds."""

import re

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from mibgkit.errors import GeometryError, SegmentationError
from mibgkit.segment import dilate_mm, mtv_mask


def phantom(bg=10.0, hot=110.0, radius_mm=15.0, spacing=(3.0, 3.0, 3.0), blur_mm=0.0, second_blob=False):
    """A hot sphere of ``radius_mm`` at the centre of a uniform background (x, y, z spacing)."""
    shape = (40, 44, 48)
    sp_zyx = np.array(spacing[::-1])
    zz, yy, xx = np.meshgrid(*[(np.arange(n) - n / 2) * s for n, s in zip(shape, sp_zyx)], indexing="ij")
    sphere = zz**2 + yy**2 + xx**2 <= radius_mm**2
    arr = np.where(sphere, hot, bg).astype(float)
    if second_blob:  # another hot object 2 voxels away from the sphere's surface
        other = (zz**2 + yy**2 + (xx - radius_mm - 12) ** 2) <= 4**2
        arr[other] = hot
    if blur_mm:
        arr = ndimage.gaussian_filter(arr, blur_mm / 2.3548 / sp_zyx)
    img = sitk.GetImageFromArray(arr.astype(np.float32))
    img.SetSpacing(spacing)
    img.SetOrigin((-50.0, 20.0, 7.5))
    roi = sitk.GetImageFromArray(sphere.astype(np.uint8))
    roi.CopyInformation(img)
    return img, roi, sphere


def test_roi_method_returns_the_roi_unchanged():
    img, roi, sphere = phantom()
    mask, info = mtv_mask(img, roi)
    assert np.array_equal(sitk.GetArrayFromImage(mask).astype(bool), sphere)
    assert info["tmax"] == 110.0 and info["n_voxels"] == sphere.sum()


def test_percent_max_threshold_value_and_region():
    img, roi, sphere = phantom(blur_mm=12.0)
    mask, info = mtv_mask(img, roi, "percent_max", fraction=0.4)
    arr = sitk.GetArrayFromImage(img)
    m = sitk.GetArrayFromImage(mask).astype(bool)
    assert info["threshold"] == pytest.approx(0.4 * arr[sphere].max())
    assert arr[m].min() >= info["threshold"]
    region = dilate_mm(sphere, (3.0, 3.0, 3.0), 10.0)
    assert not (m & ~region).any()


def test_adaptive_threshold_uses_background_shell():
    img, roi, _ = phantom(bg=10.0, hot=110.0)
    mask, info = mtv_mask(img, roi, "adaptive")
    assert info["background"] == pytest.approx(10.0)
    assert info["threshold"] == pytest.approx(10.0 + 0.5 * 100.0)
    # without blur the threshold recovers the sphere exactly
    assert info["n_voxels"] == int(sitk.GetArrayFromImage(roi).sum())
    _, info2 = mtv_mask(img, roi, "adaptive", background=30.0, fraction=0.3)
    assert info2["threshold"] == pytest.approx(30.0 + 0.3 * 80.0)


def test_threshold_keeps_the_component_of_tmax_only():
    img, roi, sphere = phantom(second_blob=True)
    mask, _ = mtv_mask(img, roi, "percent_max", dilation_mm=20.0)
    m = sitk.GetArrayFromImage(mask).astype(bool)
    assert np.array_equal(m, sphere)


def test_dilation_is_physical_on_anisotropic_grid():
    m = np.zeros((21, 21, 21), bool)
    m[10, 10, 10] = True
    d = dilate_mm(m, (2.0, 1.0, 1.0), 4.0)  # z voxels twice as thick
    assert d[10, 10, 6] and not d[10, 10, 5]
    assert d[8, 10, 10] and not d[7, 10, 10]


def test_errors():
    img, roi, _ = phantom()
    empty = sitk.Image(roi.GetSize(), sitk.sitkUInt8)
    empty.CopyInformation(roi)
    with pytest.raises(SegmentationError, match="empty"):
        mtv_mask(img, empty)
    other = sitk.Image((10, 10, 10), sitk.sitkUInt8)
    with pytest.raises(GeometryError, match="not on the SPECT grid"):
        mtv_mask(img, other)
    with pytest.raises(ValueError, match="unknown MTV method"):
        mtv_mask(img, roi, "otsu")


def test_threshold_above_tmax_is_an_error_not_the_complement():
    """A cold ROI (background ≥ Tmax) has no MTV: say so instead of returning everything below it."""
    img, roi, _ = phantom(bg=10.0, hot=110.0)
    with pytest.raises(SegmentationError, match="not below Tmax"):
        mtv_mask(img, roi, "adaptive", background=200.0)
    cold, roi2, _ = phantom(bg=50.0, hot=20.0)
    with pytest.raises(SegmentationError, match="not hotter than its surroundings"):
        mtv_mask(cold, roi2, "adaptive")


@pytest.mark.parametrize("method, fraction, message", [
    ("otsu", None, "unknown MTV method 'otsu'"),
    ("percent_max", 1.0, "percent_max threshold fraction must be a number in (0, 1), got 1.0"),
    ("adaptive", 0.0, "got 0.0"),
    ("adaptive", float("nan"), "got nan"),
    ("percent_max", "0.4", "got '0.4'"),
])
def test_mtv_parameters_outside_their_range_are_a_parameter_error(method, fraction, message):
    from mibgkit.errors import ParameterError
    from mibgkit.segment import check_mtv

    with pytest.raises(ParameterError, match=re.escape(message)):
        check_mtv(method, fraction)
    img, roi, _ = phantom(bg=10.0, hot=110.0)
    with pytest.raises(ValueError, match=re.escape(message)):  # mtv_mask checks by the same rule
        mtv_mask(img, roi, method, fraction=fraction)


def test_valid_mtv_parameters_pass():
    from mibgkit.segment import check_mtv

    for method, fraction in (("roi", None), ("roi", 5.0), ("percent_max", None), ("percent_max", np.float32(0.4)),
                             ("adaptive", 0.05), ("adaptive", 0.95)):
        check_mtv(method, fraction)


def test_an_mtv_the_threshold_does_not_bound_is_a_qc_warning():
    """A flat uptake around a one-voxel ROI: every voxel of the search region passes the threshold,
    so the MTV is the dilated ROI itself, and the warning says so; a hot tumour stays silent."""
    import warnings

    from mibgkit.errors import QCWarning

    flat = sitk.GetImageFromArray(np.full((30, 30, 30), 10.0))
    flat.SetSpacing((3.0, 3.0, 3.0))
    one = sitk.GetImageFromArray(np.zeros((30, 30, 30), np.uint8))
    one.CopyInformation(flat)
    one[15, 15, 15] = 1
    with pytest.warns(QCWarning, match="percent_max MTV reaches the edge of its search region"):
        mask, info = mtv_mask(flat, one, "percent_max")
    assert info["n_voxels"] > 1
    img, roi, _ = phantom(bg=10.0, hot=110.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", QCWarning)
        for method in ("percent_max", "adaptive"):
            mtv_mask(img, roi, method)

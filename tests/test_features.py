"""Feature rows from images: ratios, resampling of the ROI onto the SPECT grid, QC."""

import warnings

import numpy as np
import pytest
import SimpleITK as sitk

from mibgkit.errors import GeometryError, QCWarning, SegmentationError
from mibgkit.features import FEATURE_COLUMNS, image_features
from mibgkit.geometry import roi_on_grid


def grid(shape_zyx, spacing, origin=(0.0, 0.0, 0.0), value=0.0, dtype=np.float32):
    img = sitk.GetImageFromArray(np.full(shape_zyx, value, dtype))
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    return img


def ball(reference, centre_mm, radius_mm):
    """Voxels of ``reference`` whose centres are within ``radius_mm`` of ``centre_mm``."""
    size = reference.GetSize()
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in size], indexing="ij"), -1).reshape(-1, 3)
    a = np.asarray(reference.GetDirection()).reshape(3, 3) * np.asarray(reference.GetSpacing())
    pts = idx @ a.T + np.asarray(reference.GetOrigin())
    inside = (np.sum((pts - centre_mm) ** 2, 1) <= radius_mm**2).reshape(size)
    m = sitk.GetImageFromArray(np.transpose(inside, (2, 1, 0)).astype(np.uint8))
    m.CopyInformation(reference)
    return m


def toy_patient():
    """SPECT with a hot tumour (200/100 counts), liver 20, left muscle 4, right muscle 6."""
    spect = grid((60, 70, 80), (3.0, 3.0, 3.0), origin=(-120.0, -105.0, -90.0))
    arr = sitk.GetArrayFromImage(spect)
    arr[:] = 1.0
    arr[:, :, 40:] = 20.0  # "liver" in +x half
    arr[:, 35:, :20] = 4.0
    arr[:, 35:, 20:40] = 6.0
    spect2 = sitk.GetImageFromArray(arr)
    spect2.CopyInformation(spect)
    tumour_centre = np.array(spect.TransformIndexToPhysicalPoint((30, 15, 30)))
    roi = ball(spect2, tumour_centre, 20.0)
    a = sitk.GetArrayFromImage(spect2)
    r = sitk.GetArrayFromImage(roi).astype(bool)
    a[r] = 100.0
    k, j, i = np.argwhere(r)[0]
    a[k, j, i] = 200.0
    img = sitk.GetImageFromArray(a)
    img.CopyInformation(spect)
    centres = {
        "liver": spect.TransformIndexToPhysicalPoint((60, 20, 30)),
        "muscle_left": spect.TransformIndexToPhysicalPoint((10, 55, 30)),
        "muscle_right": spect.TransformIndexToPhysicalPoint((30, 55, 30)),
    }
    return img, roi, centres, r


def test_ratios_follow_the_definitions():
    img, roi, centres, r = toy_patient()
    f = image_features(img, roi, centres)
    assert set(FEATURE_COLUMNS) <= set(f)
    tmean = (100.0 * (r.sum() - 1) + 200.0) / r.sum()
    assert f["tmax"] == 200.0 and f["tmean"] == pytest.approx(tmean)
    assert f["lmax"] == 20.0 and f["lmean"] == 20.0
    assert f["mmax"] == pytest.approx(5.0) and f["mmean"] == pytest.approx(5.0)
    assert f["tmax_lmax"] == pytest.approx(10.0)
    assert f["tmean_lmean"] == pytest.approx(tmean / 20)
    assert f["tmax_lmean"] == pytest.approx(10.0)
    assert f["tmax_mmax"] == pytest.approx(40.0)
    assert f["tmean_mmean"] == pytest.approx(tmean / 5)
    assert f["voxel_volume_ml"] == pytest.approx(r.sum() * 27 / 1000)
    assert f["mtv_ml"] == pytest.approx(4 / 3 * np.pi * 20**3 / 1000, rel=0.12)
    assert 0 <= f["asphericity"] < 0.2
    assert f["liver_fraction_inside"] == 1.0 and f["qc_warnings"] == ""


def test_mtv_method_changes_shape_not_uptake():
    img, roi, centres, _ = toy_patient()
    a = image_features(img, roi, centres)
    b = image_features(img, roi, centres, mtv_method="percent_max", mtv_params={"fraction": 0.7})
    assert b["tmax"] == a["tmax"] and b["tmean"] == a["tmean"]
    assert b["mtv_n_voxels"] == 1  # only the 200-count voxel is above 70 % of Tmax
    assert b["mtv_method"] == "percent_max"


def test_sphere_leaving_the_image_is_a_qc_warning_in_the_row():
    img, roi, centres, _ = toy_patient()
    centres["liver"] = img.TransformIndexToPhysicalPoint((79, 20, 30))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", QCWarning)
        f = image_features(img, roi, centres)
    assert f["liver_fraction_inside"] < 0.7
    assert "liver sphere" in f["qc_warnings"]


def test_roi_from_a_finer_grid_is_resampled_nearest_neighbour():
    spect = grid((40, 40, 40), (3.0, 3.0, 3.0), origin=(-60.0, -60.0, -60.0))
    ct = grid((120, 121, 122), (1.0, 1.0, 1.0), origin=(-60.7, -60.2, -60.4), dtype=np.uint8)
    centre = np.array([1.3, -2.1, 0.7])
    fine = ball(ct, centre, 25.0)
    on_spect = roi_on_grid(fine, spect)
    assert on_spect.GetSize() == spect.GetSize() and on_spect.GetSpacing() == spect.GetSpacing()
    direct = sitk.GetArrayFromImage(ball(spect, centre, 25.0)).astype(bool)
    got = sitk.GetArrayFromImage(on_spect).astype(bool)
    # nearest-neighbour sampling of the fine mask agrees with the analytic ball up to the surface
    assert abs(int(got.sum()) - int(direct.sum())) <= 0.03 * direct.sum()
    assert (got ^ direct).sum() <= 0.08 * direct.sum()


def test_roi_on_same_grid_is_unchanged():
    spect = grid((20, 20, 20), (2.0, 2.0, 2.0))
    roi = ball(spect, np.array([20.0, 20.0, 20.0]), 8.0)
    out = roi_on_grid(roi, spect)
    assert np.array_equal(sitk.GetArrayFromImage(out), sitk.GetArrayFromImage(roi))


def test_roi_outside_or_empty_is_an_error_naming_patient_and_file():
    spect = grid((20, 20, 20), (3.0, 3.0, 3.0))
    far = grid((10, 10, 10), (1.0, 1.0, 1.0), origin=(500.0, 500.0, 500.0), dtype=np.uint8) + 1
    with pytest.raises(GeometryError, match=r"patient NB007, file roi\.seg\.nrrd: .*outside the SPECT field of view"):
        roi_on_grid(far, spect, patient="NB007", path="roi.seg.nrrd")
    empty = grid((10, 10, 10), (1.0, 1.0, 1.0), dtype=np.uint8)
    with pytest.raises(SegmentationError, match="empty"):
        roi_on_grid(empty, spect, patient="NB007")


def test_roi_partly_outside_the_fov_warns():
    spect = grid((20, 20, 20), (3.0, 3.0, 3.0))
    ct = grid((40, 40, 40), (1.0, 1.0, 1.0), origin=(40.0, 20.0, 20.0), dtype=np.uint8)
    roi = ball(ct, np.array([58.0, 30.0, 30.0]), 8.0)  # straddles x = 58.5 mm, the SPECT edge
    with pytest.warns(QCWarning, match="outside the SPECT field of view"):
        roi_on_grid(roi, spect)


def test_oblique_roi_fully_inside_does_not_warn():
    """On a 45°-rotated ROI grid the corners of the index box leave the FOV while no voxel does."""
    import math
    import warnings as _w

    spect = grid((13, 13, 13), (3.0, 3.0, 3.0), origin=(-18.0, -18.0, -18.0))  # FOV ±19.5 mm
    roi = grid((40, 60, 60), (1.0, 1.0, 1.0), dtype=np.uint8)
    c, s = math.cos(math.pi / 4), math.sin(math.pi / 4)
    roi.SetDirection((c, -s, 0, s, c, 0, 0, 0, 1))
    roi.SetOrigin((0.0, -42.0, -20.0))
    ball_mask = ball(roi, np.array([0.0, 0.0, 0.0]), 15.0)  # every voxel within 15 mm: inside the FOV
    nz = np.argwhere(sitk.GetArrayViewFromImage(ball_mask))
    lo, hi = nz.min(0)[::-1], nz.max(0)[::-1]
    corner = np.array(ball_mask.TransformIndexToPhysicalPoint(tuple(int(v) for v in (hi[0], hi[1], lo[2]))))
    assert np.abs(corner).max() > 19.5  # ... while a corner of its index box is not
    with _w.catch_warnings():
        _w.simplefilter("error", QCWarning)
        out = roi_on_grid(ball_mask, spect)
    assert sitk.GetArrayViewFromImage(out).sum() > 0

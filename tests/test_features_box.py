"""Bounding-box extraction: the ROI's box of the SPECT grid gives the full grid's values, bit for bit."""

import warnings

import numpy as np
import pytest
import SimpleITK as sitk
from scipy.spatial.transform import Rotation

from mibgkit.errors import QCWarning
from mibgkit.features import extract_patient, image_features
from mibgkit.geometry import roi_box_on_grid, roi_on_grid
from mibgkit.segment import mtv_mask
from mibgkit.shape import shape_features
from mibgkit.voi import reference_uptake


def _image(size, spacing, origin, direction=None, dtype=sitk.sitkUInt8):
    img = sitk.Image([int(v) for v in size], dtype)
    img.SetSpacing(tuple(float(v) for v in spacing))
    img.SetOrigin(tuple(float(v) for v in origin))
    if direction is not None:
        img.SetDirection(tuple(float(v) for v in np.asarray(direction).ravel()))
    return img


def _random_case(seed):
    """A SPECT grid and a blobby ROI on a finer, possibly rotated, grid around its centre."""
    rng = np.random.default_rng(seed)
    spect = _image((40, 44, 38), rng.uniform(2.5, 4.5, 3), rng.uniform(-80, -60, 3),
                   Rotation.random(random_state=seed).as_matrix() if seed % 2 else None, sitk.sitkFloat32)
    direction = Rotation.random(random_state=100 + seed).as_matrix() if seed % 3 == 0 else np.eye(3)
    size, spacing = rng.integers(20, 40, 3), rng.uniform(0.7, 2.0, 3)
    centre = np.asarray(spect.TransformContinuousIndexToPhysicalPoint((20.0, 22.0, 19.0)))
    origin = centre - direction @ (spacing * size / 2) + rng.uniform(-0.3, 0.3, 3)
    roi = _image(size, spacing, origin, direction)
    k, j, i = np.meshgrid(*[np.linspace(-1, 1, n) for n in size[::-1]], indexing="ij")
    blob = (i**2 + j**2 + k**2 < 0.8) | (rng.random((size[2], size[1], size[0])) < 0.05)
    mask = sitk.GetImageFromArray(blob.astype(np.uint8))
    mask.CopyInformation(roi)
    return spect, mask


@pytest.mark.parametrize("seed", range(12))
def test_nearest_neighbour_matches_itk_resample_off_ties(seed):
    spect, roi = _random_case(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", QCWarning)
        ours = sitk.GetArrayFromImage(roi_on_grid(roi, spect))
    itk = sitk.GetArrayFromImage(sitk.Resample(roi, spect, sitk.Transform(), sitk.sitkNearestNeighbor, 0,
                                               sitk.sitkUInt8))
    assert ours.any() and np.array_equal(ours, itk)


@pytest.mark.parametrize("seed", range(6))
def test_box_is_the_full_grid_mask_cropped(seed):
    spect, roi = _random_case(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", QCWarning)
        full = sitk.GetArrayFromImage(roi_on_grid(roi, spect))
        box, (i0, j0, k0) = roi_box_on_grid(roi, spect, margin_vox=(2, 3, 4))
    nx, ny, nz = box.GetSize()
    assert np.array_equal(sitk.GetArrayViewFromImage(box), full[k0:k0 + nz, j0:j0 + ny, i0:i0 + nx])
    assert full.sum() == sitk.GetArrayViewFromImage(box).sum()  # nothing outside the box
    assert np.allclose(box.GetOrigin(), spect.TransformIndexToPhysicalPoint((i0, j0, k0)))


def test_half_voxel_ties_are_decided_by_rule_not_rounding_noise():
    """A 2x oversampled ROI with aligned voxel edges puts SPECT centres exactly between ROI voxels."""
    spect = _image((30, 30, 30), (4.0, 4.0, 4.0), (-60.0, -60.0, -60.0), dtype=sitk.sitkFloat32)
    roi = _image((24, 24, 24), (2.0, 2.0, 2.0), spect.TransformContinuousIndexToPhysicalPoint((9.75, 9.75, 9.75)))
    a = np.zeros((24, 24, 24), np.uint8)
    a[1::2, 1::2, 1::2] = 1  # only the higher-index voxel of each 2x2x2 block
    mask = sitk.GetImageFromArray(a)
    mask.CopyInformation(roi)
    got = sitk.GetArrayFromImage(roi_on_grid(mask, spect))
    assert got.sum() == 12**3  # every SPECT voxel over the ROI takes its higher-index neighbour
    box, start = roi_box_on_grid(mask, spect, margin_vox=(5, 5, 5))
    assert sitk.GetArrayViewFromImage(box).sum() == 12**3 and start == (5, 5, 5)


@pytest.mark.parametrize("method, params", [("roi", {}), ("percent_max", {"fraction": 0.5}),
                                            ("adaptive", {}), ("adaptive", {"dilation_mm": 25.0})])
def test_image_features_equal_the_full_grid_computation(method, params):
    rng = np.random.default_rng(4)
    size = (64, 60, 56)
    arr = rng.poisson(5.0, size[::-1]).astype(np.float32)
    k, j, i = np.indices(size[::-1])
    arr[(i - 50) ** 2 + (j - 30) ** 2 + (k - 28) ** 2 < 40] += 60.0  # tumour near the x edge
    arr[(i - 58) ** 2 + (j - 30) ** 2 + (k - 28) ** 2 < 10] += 30.0  # a hot neighbour
    spect = sitk.GetImageFromArray(arr)
    spect.SetSpacing((3.3, 3.3, 3.0))
    roi_arr = ((i - 50) ** 2 + (j - 30) ** 2 + (k - 28) ** 2 < 30).astype(np.uint8)
    roi = sitk.GetImageFromArray(roi_arr)
    roi.CopyInformation(spect)
    centres = {s: spect.TransformIndexToPhysicalPoint(p) for s, p in
               (("liver", (15, 20, 20)), ("muscle_left", (10, 45, 30)), ("muscle_right", (30, 45, 30)))}
    got = image_features(spect, roi, centres, mtv_method=method, mtv_params=params)
    mtv, info = mtv_mask(spect, roi, method, **params)  # the full-grid reference
    shape = shape_features(mtv)
    values = arr[roi_arr != 0].astype(float)  # as the full-grid code computed them
    ref = reference_uptake(spect, centres)
    assert got["tmax"] == float(values.max()) and got["tmean"] == float(values.mean())
    assert got["lmax"] == ref["lmax"] and got["mmean"] == ref["mmean"]
    assert got["mtv_n_voxels"] == info["n_voxels"] and got["mtv_threshold"] == pytest.approx(info["threshold"],
                                                                                             nan_ok=True)
    assert got["mtv_ml"] == shape["mesh_volume_mm3"] / 1000.0 and got["asphericity"] == shape["asphericity"]
    assert got["max_diameter_mm"] == shape["max_diameter_mm"]


def test_extract_patient_reports_its_stage_timings(tmp_path):
    from test_cohort import write_patient

    from mibgkit.manifest import read_manifest

    import pandas as pd

    pd.DataFrame([write_patient(tmp_path, "P01")]).to_csv(tmp_path / "m.csv", index=False)
    row = read_manifest(tmp_path / "m.csv").iloc[0].to_dict()
    timings = {}
    plain = extract_patient(row, native_shape=True)
    timed = extract_patient(row, native_shape=True, timings=timings)
    assert plain == timed
    assert set(timings) == {"spect_read", "roi_read", "markups_read", "resample", "spheres", "mtv", "shape",
                            "native_shape"}
    assert all(v >= 0 for v in timings.values())

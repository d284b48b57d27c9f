"""Sphere VOIs against a brute-force numpy computation and the radii of the voxel-centre rule."""

import math
import warnings

import numpy as np
import pytest
import SimpleITK as sitk

from mibgkit.errors import GeometryError, QCWarning
from mibgkit.voi import reference_uptake, sphere_radius_mm, sphere_stats


def rotated_image(shape_zyx=(40, 50, 60), spacing=(3.3, 3.3, 2.0), seed=0):
    """Anisotropic image with a rotated, partly flipped direction and a non-zero origin."""
    rng = np.random.default_rng(seed)
    img = sitk.GetImageFromArray(rng.gamma(2.0, 50.0, size=shape_zyx).astype(np.float32))
    img.SetSpacing(spacing)
    img.SetOrigin((-120.5, 35.25, -310.0))
    a = math.radians(25)
    rz = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    flip = np.diag([1.0, -1.0, 1.0])
    img.SetDirection(tuple((rz @ flip).ravel()))
    return img


def brute_force(img, centre, volume_ml):
    """Every voxel's centre via SimpleITK, one by one; inside when within r of the centre."""
    r = sphere_radius_mm(volume_ml)
    arr = sitk.GetArrayFromImage(img)
    vals = []
    for k in range(arr.shape[0]):
        for j in range(arr.shape[1]):
            for i in range(arr.shape[2]):
                p = np.array(img.TransformIndexToPhysicalPoint((i, j, k)))
                if np.sum((p - centre) ** 2) <= r * r:
                    vals.append(arr[k, j, i])
    return np.array(vals, dtype=float)


def test_radii_as_spec_states():
    assert sphere_radius_mm(30) == pytest.approx(19.28, abs=0.005)
    assert sphere_radius_mm(10) == pytest.approx(13.37, abs=0.005)
    assert (4 / 3) * math.pi * sphere_radius_mm(30) ** 3 == pytest.approx(30000)


@pytest.mark.parametrize("volume_ml", [10.0, 30.0])
def test_matches_brute_force_on_rotated_anisotropic_image(volume_ml):
    img = rotated_image(shape_zyx=(30, 36, 40))
    centre = np.array(img.TransformContinuousIndexToPhysicalPoint((20.3, 17.8, 14.6)))
    ref = brute_force(img, centre, volume_ml)
    s = sphere_stats(img, centre, volume_ml)
    assert s["n_voxels"] == ref.size
    assert s["max"] == pytest.approx(ref.max())
    assert s["mean"] == pytest.approx(ref.mean())
    assert s["fraction_inside"] == 1.0
    voxel_ml = np.prod(img.GetSpacing()) / 1000
    assert s["volume_ml"] == pytest.approx(ref.size * voxel_ml)
    # realised volume is close to nominal for voxels much smaller than the sphere
    assert s["volume_ml"] == pytest.approx(volume_ml, rel=0.1)


def test_partly_outside_image_is_reported_and_warned():
    img = rotated_image(shape_zyx=(30, 36, 40))
    corner = np.array(img.TransformContinuousIndexToPhysicalPoint((0.0, 0.0, 0.0)))
    with pytest.warns(QCWarning, match="inside the image"):
        s = sphere_stats(img, corner, 30, name="liver")
    # a sphere centred on a corner voxel has about 1/8 of its voxels in the image
    assert 0.08 < s["fraction_inside"] < 0.2
    assert s["warnings"] and "liver" in s["warnings"][0]


def test_entirely_outside_is_an_error():
    img = rotated_image(shape_zyx=(10, 10, 10))
    with pytest.raises(GeometryError, match="outside the image"):
        sphere_stats(img, (5000.0, 5000.0, 5000.0), 10, name="muscle_left")


def test_organ_mask_fraction_and_warning():
    img = sitk.Image(40, 40, 40, sitk.sitkFloat32) + 1.0
    img.SetSpacing((2.0, 2.0, 2.0))
    organ = sitk.Image(40, 40, 40, sitk.sitkUInt8)
    organ.CopyInformation(img)
    arr = sitk.GetArrayFromImage(organ)
    arr[:, :, :20] = 1  # x < 40 mm is organ
    organ = sitk.GetImageFromArray(arr)
    organ.CopyInformation(img)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = sphere_stats(img, (20.0, 40.0, 40.0), 10, organ_mask=organ)  # well inside
    assert s["fraction_in_organ"] == 1.0
    with pytest.warns(QCWarning, match="outside the organ"):
        s = sphere_stats(img, (39.0, 40.0, 40.0), 10, organ_mask=organ)
    assert 0.3 < s["fraction_in_organ"] < 0.7


def test_reference_uptake_averages_the_two_muscle_spheres():
    arr = np.zeros((60, 60, 60), np.float32)
    arr[:, :, :30] = 10.0  # left half of x
    arr[:, :, 30:] = 30.0
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((2.0, 2.0, 2.0))
    centres = {"liver": (60.0, 60.0, 60.0), "muscle_left": (30.0, 60.0, 60.0), "muscle_right": (90.0, 60.0, 60.0)}
    ref = reference_uptake(img, centres)
    assert ref["mmax"] == pytest.approx(20.0)
    assert ref["mmean"] == pytest.approx(20.0)
    assert ref["lmax"] == 30.0
    with pytest.raises(GeometryError, match="muscle_right"):
        reference_uptake(img, {"liver": (60, 60, 60), "muscle_left": (30, 60, 60)})

"""mibgkit.overlap: Dice and Hausdorff distances against hand-computed cases.

Cubes offset by k voxels (Dice and the maximum Hausdorff distance analytic), concentric spheres
(HD ≈ the difference of the radii), anisotropic voxels, masks on different grids, brute-force
surface distances, and the errors for empty masks.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy.spatial.distance import cdist

from mibgkit.errors import GeometryError, SegmentationError
from mibgkit.overlap import dice, hausdorff95, mask_agreement


def image(arr_kji, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), direction=None) -> sitk.Image:
    img = sitk.GetImageFromArray(np.asarray(arr_kji, np.uint8))
    img.SetSpacing(tuple(float(v) for v in spacing))
    img.SetOrigin(tuple(float(v) for v in origin))
    if direction is not None:
        img.SetDirection(tuple(float(v) for v in np.ravel(direction)))
    return img


def cube(shape, lo_kji, side) -> np.ndarray:
    arr = np.zeros(shape, np.uint8)
    k, j, i = lo_kji
    arr[k:k + side, j:j + side, i:i + side] = 1
    return arr


def sphere(shape, radius_mm, spacing_kji, centre_kji=None) -> np.ndarray:
    centre = (np.asarray(shape) - 1) / 2 if centre_kji is None else np.asarray(centre_kji, float)
    axes = [(np.arange(n) - c) * s for n, c, s in zip(shape, centre, spacing_kji)]
    grids = np.meshgrid(*axes, indexing="ij")
    return (sum(g**2 for g in grids) <= radius_mm**2).astype(np.uint8)


def brute_distances(arr_a, arr_b, spacing_kji):
    """Pooled surface distances by an explicit all-pairs search (face-connected surfaces)."""
    def surface(m):
        m = m.astype(bool)
        padded = np.pad(m, 1)
        inner = padded[1:-1, 1:-1, 1:-1].copy()
        for ax in range(3):
            for step in (-1, 1):
                inner &= np.roll(padded, step, axis=ax)[1:-1, 1:-1, 1:-1]
        return m & ~inner

    pa = np.argwhere(surface(arr_a)) * np.asarray(spacing_kji)
    pb = np.argwhere(surface(arr_b)) * np.asarray(spacing_kji)
    d = cdist(pa, pb)
    return np.concatenate([d.min(axis=1), d.min(axis=0)])


# ----------------------------------------------------------------------------- cubes

@pytest.mark.parametrize("k", [0, 1, 2, 5])
def test_cubes_offset_along_each_axis(k):
    side = 8
    for axis in range(3):
        lo_b = [3, 3, 3]
        lo_b[axis] += k
        a, b = cube((20, 20, 20), (3, 3, 3), side), cube((20, 20, 20), lo_b, side)
        r = mask_agreement(image(a), image(b))
        assert r["dice"] == pytest.approx((side - k) / side)
        assert r["hd_max_mm"] == pytest.approx(float(k))
        assert 0.0 <= r["hd95_mm"] <= r["hd_max_mm"]
        assert r["volume_a_ml"] == r["volume_b_ml"] == pytest.approx(side**3 / 1000)
        assert not r["resampled"]


def test_disjoint_cubes():
    a, b = cube((20, 20, 30), (2, 2, 2), 5), cube((20, 20, 30), (2, 2, 12), 5)
    r = mask_agreement(image(a), image(b))
    assert r["dice"] == 0.0
    assert r["hd_max_mm"] == pytest.approx(10.0)   # front face of a to front face of b, and back to back


def test_anisotropic_spacing():
    """Spacing (x, y, z) = (1, 1, 3) mm: an offset of 2 slices is 6 mm; along x, 2 mm."""
    spacing = (1.0, 1.0, 3.0)
    a = cube((16, 20, 20), (4, 4, 4), 6)
    along_z = cube((16, 20, 20), (6, 4, 4), 6)
    along_x = cube((16, 20, 20), (4, 4, 6), 6)
    rz = mask_agreement(image(a, spacing), image(along_z, spacing))
    rx = mask_agreement(image(a, spacing), image(along_x, spacing))
    assert rz["dice"] == pytest.approx(4 / 6) and rx["dice"] == pytest.approx(4 / 6)
    assert rz["hd_max_mm"] == pytest.approx(6.0) and rx["hd_max_mm"] == pytest.approx(2.0)
    assert rz["volume_a_ml"] == pytest.approx(6**3 * 3 / 1000)


def test_identical_masks():
    a = image(sphere((21, 21, 21), 6.0, (1, 1, 1)), spacing=(2, 2, 2))
    r = mask_agreement(a, a)
    assert r["dice"] == 1.0 and r["hd95_mm"] == 0.0 and r["hd_max_mm"] == 0.0
    assert dice(a, a) == 1.0 and hausdorff95(a, a) == 0.0


# ----------------------------------------------------------------------------- spheres

@pytest.mark.parametrize("r1, r2", [(8.0, 12.0), (10.0, 13.0)])
def test_concentric_spheres(r1, r2):
    spacing = (0.5, 0.5, 0.5)
    shape = (61, 61, 61)
    a = image(sphere(shape, r1, spacing), spacing)
    b = image(sphere(shape, r2, spacing), spacing)
    r = mask_agreement(a, b)
    # every surface point is r2 − r1 from the other surface, within the voxelisation (≈ one voxel)
    assert r["hd_max_mm"] == pytest.approx(r2 - r1, abs=0.75)
    assert r["hd95_mm"] == pytest.approx(r2 - r1, abs=0.75)
    assert r["dice"] == pytest.approx(2 * r1**3 / (r1**3 + r2**3), rel=0.03)


# ----------------------------------------------------------------------------- brute force

def test_matches_brute_force_on_irregular_masks():
    rng = np.random.default_rng(11)
    spacing_kji = (2.5, 1.2, 0.8)
    a = (rng.random((12, 14, 16)) < 0.4).astype(np.uint8)
    b = (rng.random((12, 14, 16)) < 0.4).astype(np.uint8)
    a[0] = 1                                   # a voxel on the grid's edge is surface
    spacing = spacing_kji[::-1]
    d = brute_distances(a, b, spacing_kji)
    r = mask_agreement(image(a, spacing), image(b, spacing))
    assert r["hd95_mm"] == pytest.approx(np.percentile(d, 95))
    assert r["hd_max_mm"] == pytest.approx(d.max())
    assert r["dice"] == pytest.approx(2 * np.sum(a & b) / (a.sum() + b.sum()))


def test_crop_does_not_change_distances():
    """A small mask pair inside a large grid gives the distances of the tight grid."""
    small_a = cube((10, 10, 10), (2, 2, 2), 5)
    small_b = cube((10, 10, 10), (3, 2, 4), 4)
    big_a, big_b = np.zeros((40, 50, 60), np.uint8), np.zeros((40, 50, 60), np.uint8)
    big_a[20:30, 10:20, 30:40], big_b[20:30, 10:20, 30:40] = small_a, small_b
    spacing = (0.7, 1.1, 2.0)
    r_small = mask_agreement(image(small_a, spacing), image(small_b, spacing))
    r_big = mask_agreement(image(big_a, spacing), image(big_b, spacing))
    for key in ("dice", "hd95_mm", "hd_max_mm"):
        assert r_big[key] == pytest.approx(r_small[key])


def test_hd95_is_pooled_linear_percentile():
    """Convention: one pooled set of both directions, numpy's linear percentile."""
    a = cube((20, 20, 20), (4, 4, 4), 6)
    b = cube((20, 20, 20), (4, 4, 4), 9)
    d = brute_distances(a, b, (1.0, 1.0, 1.0))
    assert hausdorff95(image(a), image(b)) == pytest.approx(np.percentile(d, 95, method="linear"))


# ----------------------------------------------------------------------------- grids

def test_b_on_another_grid_is_resampled():
    """b at half the voxel size, aligned voxel edges: the same cube, Dice 1 after resampling."""
    a = image(cube((12, 12, 12), (3, 3, 3), 5), spacing=(2, 2, 2))
    fine = np.zeros((24, 24, 24), np.uint8)
    fine[6:16, 6:16, 6:16] = 1
    b = image(fine, spacing=(1, 1, 1), origin=(-0.5, -0.5, -0.5))
    r = mask_agreement(a, b)
    assert r["resampled"]
    assert r["dice"] == 1.0 and r["hd_max_mm"] == 0.0
    assert r["volume_a_ml"] == pytest.approx(1.0) and r["volume_b_ml"] == pytest.approx(1.0)


def test_b_shifted_in_physical_space():
    """The same voxel array with its origin 2 mm further along x is 2 mm off."""
    arr = cube((20, 20, 20), (5, 5, 5), 8)
    a = image(arr, spacing=(1, 1, 1))
    b = image(arr, spacing=(1, 1, 1), origin=(2.0, 0.0, 0.0))
    r = mask_agreement(a, b)
    assert r["resampled"] and r["dice"] == pytest.approx(6 / 8) and r["hd_max_mm"] == pytest.approx(2.0)


def test_rotated_direction_keeps_mm():
    """A direction matrix (axes permuted) does not change the distances in mm."""
    perm = [[0, 1, 0], [1, 0, 0], [0, 0, 1]]
    a = cube((16, 16, 16), (4, 4, 4), 6)
    b = cube((16, 16, 16), (4, 4, 6), 6)
    r = mask_agreement(image(a, (1, 1, 3), direction=perm), image(b, (1, 1, 3), direction=perm))
    assert r["hd_max_mm"] == pytest.approx(2.0)


# ----------------------------------------------------------------------------- errors

def test_empty_masks():
    full = image(cube((10, 10, 10), (2, 2, 2), 4))
    empty = image(np.zeros((10, 10, 10), np.uint8))
    for args, name in (((empty, full), "mask a"), ((full, empty), "mask b")):
        for fn in (dice, hausdorff95, mask_agreement):
            with pytest.raises(SegmentationError, match=f"{name} is empty"):
                fn(*args)
    with pytest.raises(SegmentationError, match="patient P7"):
        dice(empty, full, patient="P7")


def test_b_outside_a():
    a = image(cube((10, 10, 10), (2, 2, 2), 4))
    far = image(cube((10, 10, 10), (2, 2, 2), 4), origin=(500.0, 0.0, 0.0))
    with pytest.raises(GeometryError):
        dice(a, far)


def test_not_an_image():
    with pytest.raises(SegmentationError, match="SimpleITK image"):
        dice(np.ones((3, 3, 3)), image(np.ones((3, 3, 3))))

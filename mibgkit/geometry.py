"""Voxel grids in physical space: the index ↔ LPS affine, grid comparison, and ROI resampling.

Every module that places voxels in space does it through this one: the SPECT reader checks a
grid, the sphere VOIs map voxel centres to millimetres, the ROI readers build masks on their own
grids, and extraction resamples an ROI onto the SPECT grid.

Conventions
-----------
- Physical space is DICOM patient space, LPS (x → patient left, y → posterior, z → superior), mm.
- A SimpleITK image's voxel index ``(i, j, k)`` lies at ``p = A @ (i, j, k) + o`` with
  ``A = D · diag(spacing)``, ``D`` the direction matrix (columns are the LPS directions of the i, j,
  k axes) and ``o`` the origin, the centre of voxel ``(0, 0, 0)``. Numpy views of images are indexed
  ``[k, j, i]``.
- Nearest-neighbour resampling picks, for each target voxel centre, the source voxel whose centre is
  nearest: continuous source index ``c``, nearest index ``floor(c + 0.5)``. Where a target centre lies
  exactly halfway between two source voxels (grids whose voxel edges align, such as a segmentation
  at twice the SPECT resolution) the higher index is taken, whatever the rounding noise
  (:data:`TIE_VOX`); ITK's resampler decides such ties by rounding noise instead.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
import SimpleITK as sitk

from .errors import GeometryError, QCWarning, SegmentationError

__all__ = [
    "TIE_VOX",
    "index_to_lps",
    "index_to_lps_matrix",
    "lps_to_index",
    "RAS_TO_LPS",
    "split_affine",
    "image_on_affine",
    "image_geometry",
    "same_grid",
    "nonzero_box",
    "crop",
    "place_on_grid",
    "roi_box_on_grid",
    "roi_on_grid",
]

#: (x, y, z)_LPS = RAS_TO_LPS @ (x, y, z)_RAS (its own inverse): 3D Slicer's world space is RAS.
RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])

#: Voxel-index tolerance under which a target voxel centre counts as exactly halfway between two
#: source voxels (nearest-neighbour resampling then takes the higher index).
TIE_VOX = 1e-6


# --------------------------------------------------------------------------------------------
# the affine
# --------------------------------------------------------------------------------------------


def index_to_lps(image: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """``(A, o)`` with ``p = A @ (i, j, k) + o``: voxel index (SimpleITK order) to LPS mm.

    ``A`` is 3 × 3 (direction cosines times spacing, column c = the step of axis c in mm) and ``o``
    the origin (mm).

    Examples
    --------
    >>> import SimpleITK as sitk
    >>> im = sitk.Image(4, 4, 4, sitk.sitkUInt8); im.SetSpacing((2.0, 3.0, 4.0)); im.SetOrigin((1, 2, 3))
    >>> a, o = index_to_lps(im)
    >>> (a @ [1, 1, 1] + o).tolist()
    [3.0, 5.0, 7.0]
    """
    if image.GetDimension() != 3:
        raise GeometryError(f"expected a 3-D image, got {image.GetDimension()}-D")
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    return direction * np.asarray(image.GetSpacing(), dtype=float)[None, :], np.asarray(image.GetOrigin(), float)


def index_to_lps_matrix(image: sitk.Image) -> np.ndarray:
    """The same affine as a 4 × 4 homogeneous matrix (``M @ (i, j, k, 1)`` = LPS mm), as 3D Slicer
    and NRRD headers store it."""
    a, o = index_to_lps(image)
    matrix = np.eye(4)
    matrix[:3, :3] = a
    matrix[:3, 3] = o
    return matrix


def split_affine(matrix: np.ndarray, *, path=None, patient=None) -> tuple[tuple, tuple, tuple]:
    """Split a 4 × 4 index-to-LPS matrix into SimpleITK origin, spacing and direction.

    Spacing is the norm of each of the first three columns, the direction the normalised columns
    (column c is the LPS direction of voxel axis c); they must be orthogonal (within 1e-4).

    Raises
    ------
    GeometryError
        Non-finite entries, a zero-length axis, or axes that are not orthogonal (a sheared grid).
    """
    matrix = np.asarray(matrix, dtype=float)
    if not np.all(np.isfinite(matrix[:3, :4])):
        raise GeometryError("voxel-to-physical matrix has non-finite entries", patient=patient, path=path)
    columns = matrix[:3, :3]
    spacing = np.linalg.norm(columns, axis=0)
    if np.any(spacing <= 0):
        raise GeometryError(f"voxel spacing must be positive, got {spacing.tolist()} mm", patient=patient, path=path)
    direction = columns / spacing
    gram = direction.T @ direction
    if not np.allclose(gram, np.eye(3), atol=1e-4):
        raise GeometryError(
            "voxel axes are not orthogonal (sheared grid, e.g. gantry tilt); resample the segmentation "
            "onto an orthogonal grid in 3D Slicer first",
            patient=patient,
            path=path,
        )
    origin = tuple(float(v) for v in matrix[:3, 3])
    return origin, tuple(float(v) for v in spacing), tuple(float(v) for v in direction.reshape(-1))


def image_on_affine(array_kji: np.ndarray, matrix: np.ndarray, *, path=None, patient=None) -> sitk.Image:
    """A SimpleITK image of ``array_kji`` (numpy order) placed by a 4 × 4 index-to-LPS matrix."""
    origin, spacing, direction = split_affine(matrix, path=path, patient=patient)
    image = sitk.GetImageFromArray(np.ascontiguousarray(array_kji))
    image.SetOrigin(origin)
    image.SetSpacing(spacing)
    image.SetDirection(direction)
    return image


def lps_to_index(image: sitk.Image, points_mm) -> np.ndarray:
    """Continuous voxel indices (n × 3, SimpleITK order i, j, k) of physical points (n × 3, LPS mm)."""
    a, o = index_to_lps(image)
    pts = np.atleast_2d(np.asarray(points_mm, dtype=float))
    return np.linalg.solve(a, (pts - o).T).T


def image_geometry(image: sitk.Image) -> dict[str, tuple]:
    """Describe where an image lies in space.

    Returns
    -------
    dict
        ``size`` (voxels, x y z), ``spacing`` (mm, x y z), ``origin`` (LPS mm of the centre of voxel
        (0, 0, 0)) and ``direction`` (9 values, row-major, columns = axis directions), all tuples.
    """
    return {
        "size": tuple(int(v) for v in image.GetSize()),
        "spacing": tuple(float(v) for v in image.GetSpacing()),
        "origin": tuple(float(v) for v in image.GetOrigin()),
        "direction": tuple(float(v) for v in image.GetDirection()),
    }


def same_grid(a: sitk.Image, b: sitk.Image, tol: float = 1e-4) -> bool:
    """Whether two images share one voxel grid (same size, spacing, origin and direction).

    Parameters
    ----------
    a, b : SimpleITK.Image
    tol : float, default 1e-4
        Absolute tolerance: mm for spacing and origin, unitless for direction cosines.

    Returns
    -------
    bool
        True when voxel ``(i, j, k)`` of ``a`` and of ``b`` are the same physical box.
    """
    if a.GetDimension() != b.GetDimension() or a.GetSize() != b.GetSize():
        return False
    return all(
        np.allclose(getter(a), getter(b), rtol=0.0, atol=tol)
        for getter in (sitk.Image.GetSpacing, sitk.Image.GetOrigin, sitk.Image.GetDirection)
    )


# --------------------------------------------------------------------------------------------
# boxes and crops
# --------------------------------------------------------------------------------------------


def nonzero_box(arr_kji: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Inclusive index bounds ``(lo, hi)`` (SimpleITK order i, j, k) of the non-zero voxels, or None."""
    bounds = []
    for axis in (2, 1, 0):  # i, j, k are numpy axes 2, 1, 0
        other = tuple(a for a in range(3) if a != axis)
        present = np.flatnonzero(arr_kji.any(axis=other))
        if present.size == 0:
            return None
        bounds.append((present[0], present[-1]))
    lo, hi = zip(*bounds)
    return np.asarray(lo, int), np.asarray(hi, int)


def crop(image: sitk.Image, start: Sequence[int], size: Sequence[int]) -> sitk.Image:
    """``image`` restricted to the box of ``size`` voxels at index ``start`` (geometry kept)."""
    start, size = [int(v) for v in start], [int(v) for v in size]
    if (image.GetDimension() == 3 and image.GetNumberOfComponentsPerPixel() == 1
            and all(0 <= s and n >= 1 and s + n <= full for s, n, full in zip(start, size, image.GetSize()))):
        # what sitk.RegionOfInterest gives (voxels, spacing, direction, origin at the start index,
        # no metadata), from a slice of the voxel array: without the filter's set-up cost
        (i0, j0, k0), (nx, ny, nz) = start, size
        out = sitk.GetImageFromArray(sitk.GetArrayViewFromImage(image)[k0:k0 + nz, j0:j0 + ny, i0:i0 + nx])
        if out.GetPixelID() == image.GetPixelID():
            out.SetSpacing(image.GetSpacing())
            out.SetDirection(image.GetDirection())
            out.SetOrigin(image.TransformIndexToPhysicalPoint(start))
            return out
    return sitk.RegionOfInterest(image, size, start)


def place_on_grid(array_kji: np.ndarray, reference: sitk.Image, lo) -> sitk.Image:
    """An image of ``array_kji`` placed on ``reference``'s lattice with its first voxel at index ``lo``."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(array_kji))
    image.SetSpacing(reference.GetSpacing())
    image.SetDirection(reference.GetDirection())
    image.SetOrigin(reference.TransformIndexToPhysicalPoint(tuple(int(v) for v in lo)))
    return image


def _inside_fov(points_mm: np.ndarray, reference: sitk.Image) -> np.ndarray:
    """Which physical points (n × 3, LPS mm) fall inside ``reference``'s voxel grid."""
    idx = lps_to_index(reference, points_mm)
    return np.all((idx > -0.5) & (idx < np.asarray(reference.GetSize()) - 0.5), axis=1)


def _all_voxels_inside(arr_kji: np.ndarray, roi: sitk.Image, reference: sitk.Image, box=None) -> bool:
    """Whether the centre of every non-zero ROI voxel lies inside ``reference``'s voxel grid.

    ``box`` = ``(lo, hi)``, the index bounds (i, j, k) of the non-zero voxels, when known: the
    reference grid is convex and the map affine, so when the 8 corner voxel centres of that box lie
    inside it by more than ``1e-6`` voxel (far above rounding), every voxel does. Otherwise checked
    voxel by voxel (vectorised): on an oblique grid the corners of the index bounding box may lie
    outside while no voxel does.
    """
    a_r, o_r = index_to_lps(roi)
    a_s, o_s = index_to_lps(reference)
    size = np.asarray(reference.GetSize(), float)[:, None]
    if box is not None:
        lo, hi = box
        corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])],
                           float).T
        on_ref = np.linalg.solve(a_s, a_r @ corners + (o_r - o_s)[:, None])
        if np.all((on_ref > -0.5 + 1e-6) & (on_ref < size - (0.5 + 1e-6))):
            return True
    k, j, i = np.nonzero(arr_kji)
    ijk = np.stack([i, j, k]).astype(float)
    on_ref = np.linalg.solve(a_s, a_r @ ijk + (o_r - o_s)[:, None])
    return bool(np.all((on_ref > -0.5) & (on_ref < size - 0.5)))


def _box_on_reference(roi: sitk.Image, lo: np.ndarray, hi: np.ndarray, reference: sitk.Image):
    """Reference voxels (inclusive index bounds, clamped) whose centres can fall in the ROI box.

    The ROI voxels ``lo..hi`` occupy, in physical space, the box between continuous indices
    ``lo - 0.5`` and ``hi + 0.5``; its 8 corners mapped onto the reference grid, rounded outwards
    and grown by one voxel, bound every reference voxel that nearest-neighbour sampling can put
    inside the ROI. Returns ``(lo, hi)`` on the reference or None when they do not overlap.
    """
    a_r, o_r = index_to_lps(roi)
    a_s, o_s = index_to_lps(reference)
    corners = np.array([[x, y, z] for x in (lo[0] - 0.5, hi[0] + 0.5) for y in (lo[1] - 0.5, hi[1] + 0.5)
                        for z in (lo[2] - 0.5, hi[2] + 0.5)], float)
    on_ref = np.linalg.solve(a_s, (corners @ a_r.T + o_r - o_s).T).T
    size = np.asarray(reference.GetSize())
    box_lo = np.maximum(np.floor(on_ref.min(axis=0)).astype(int) - 1, 0)
    box_hi = np.minimum(np.ceil(on_ref.max(axis=0)).astype(int) + 1, size - 1)
    if np.any(box_lo > box_hi):
        return None
    return box_lo, box_hi


def _nearest_neighbour(roi_kji: np.ndarray, roi: sitk.Image, reference: sitk.Image,
                       lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Nearest-neighbour samples of the ROI (non-zero inside) at the centres of reference voxels ``lo..hi``.

    Each reference voxel centre is mapped into the ROI's continuous index from its *absolute*
    reference index, so a voxel gets the same value whatever box it is computed in (a crop and
    the full grid agree bit for bit). The nearest index is ``floor(c + 0.5 + TIE_VOX)``: half-integers
    round up, as ITK's nearest-neighbour interpolator does, and so do centres within ``TIE_VOX`` of a
    half-integer. Centres outside the ROI grid get 0.

    ``roi_kji`` is the ROI's voxel array (numpy order) and ``roi`` its image (for the geometry).
    Returns a uint8 0/1 array indexed ``[k, j, i]`` over the box.

    When each ROI index axis follows the reference axis of the same number alone (both grids axial,
    flips allowed: the off-diagonal terms of the index map are exactly zero), the index along each
    axis is computed once per row of the box from the same expression (the zero terms add nothing)
    and the box is sampled as an outer product.
    """
    a_r, o_r = index_to_lps(roi)
    a_s, o_s = index_to_lps(reference)
    to_roi = np.linalg.inv(a_r)
    b = to_roi @ a_s
    t = to_roi @ (o_s - o_r)
    if not np.any(b[~np.eye(3, dtype=bool)]):
        picks, hits = [], []
        for d, n in enumerate(roi.GetSize()):
            c = np.floor(b[d, d] * np.arange(lo[d], hi[d] + 1, dtype=float) + t[d] + (0.5 + TIE_VOX)).astype(np.intp)
            hit = (c >= 0) & (c < n)
            picks.append(c[hit])
            hits.append(hit)
        out = np.zeros((len(hits[2]), len(hits[1]), len(hits[0])), np.uint8)
        out[np.ix_(hits[2], hits[1], hits[0])] = roi_kji[np.ix_(picks[2], picks[1], picks[0])] != 0
        return out
    i = np.arange(lo[0], hi[0] + 1, dtype=float)[None, None, :]
    j = np.arange(lo[1], hi[1] + 1, dtype=float)[None, :, None]
    k = np.arange(lo[2], hi[2] + 1, dtype=float)[:, None, None]
    shape = (k.shape[0], j.shape[1], i.shape[2])
    inside = np.ones(shape, bool)
    index = []
    for d, n in enumerate(roi.GetSize()):
        c = np.floor((b[d, 2] * k + b[d, 1] * j) + b[d, 0] * i + t[d] + (0.5 + TIE_VOX)).astype(np.intp)
        c = np.broadcast_to(c, shape)
        inside &= (c >= 0) & (c < n)
        index.append(c)
    out = np.zeros(shape, np.uint8)
    out[inside] = roi_kji[index[2][inside], index[1][inside], index[0][inside]] != 0
    return out


# --------------------------------------------------------------------------------------------
# an ROI on another grid
# --------------------------------------------------------------------------------------------


def roi_box_on_grid(
    roi: sitk.Image,
    reference: sitk.Image,
    *,
    margin_vox: Sequence[int] = (0, 0, 0),
    patient=None,
    path=None,
    what: str = "tumour ROI",
) -> tuple[sitk.Image, tuple[int, int, int]]:
    """The ROI as a uint8 0/1 mask on the box of ``reference``'s grid that holds it.

    The same mask as :func:`roi_on_grid`, but only over the bounding box of its voxels grown by
    ``margin_vox`` voxels (i, j, k) and clamped to the grid: cost follows the tumour, not the image.

    Parameters
    ----------
    roi : SimpleITK.Image
        Tumour ROI (non-zero inside) on any grid.
    reference : SimpleITK.Image
        The SPECT image whose grid the mask is wanted on.
    margin_vox : sequence of 3 int
        Extra voxels on each side of the box (for a search region around the ROI).
    patient, path
        Named in errors.
    what : str
        What the mask is, as messages name it (``"tumour ROI"``, ``"organ 'liver'"``).

    Returns
    -------
    mask : SimpleITK.Image
        uint8 0/1 on the box; its origin places it on ``reference``'s lattice.
    start : tuple of 3 int
        Index (i, j, k) of the box's first voxel in ``reference``; ``reference[i0:i0+nx, ...]``
        is the matching crop of the image.

    Raises
    ------
    SegmentationError
        The ROI is empty, or nothing of it survives resampling (thinner than a SPECT voxel).
    GeometryError
        The ROI lies outside the reference field of view.

    Warns
    -----
    QCWarning
        Part of the ROI lies outside the reference field of view.
    """
    arr = sitk.GetArrayViewFromImage(roi)
    box = nonzero_box(arr)
    if box is None:
        raise SegmentationError(f"the {what} is empty", patient=patient, path=path)
    lo, hi = box
    size = np.asarray(reference.GetSize())
    margin = np.asarray(margin_vox, int)
    if same_grid(roi, reference):
        b_lo, b_hi = np.maximum(lo - margin, 0), np.minimum(hi + margin, size - 1)
        part = arr[b_lo[2]:b_hi[2] + 1, b_lo[1]:b_hi[1] + 1, b_lo[0]:b_hi[0] + 1]
        return place_on_grid((part != 0).astype(np.uint8), reference, b_lo), tuple(int(v) for v in b_lo)
    covered = _box_on_reference(roi, lo, hi, reference)
    sampled = None
    if covered is not None:
        c_lo, c_hi = covered
        sampled = _nearest_neighbour(arr, roi, reference, c_lo, c_hi)
    if sampled is None or not sampled.any():
        nz = np.nonzero(arr)
        k, j, i = (a[::max(1, a.size // 500)] for a in nz)
        a_r, o_r = index_to_lps(roi)
        pts = (a_r @ np.stack([i, j, k]).astype(float)).T + o_r
        if not _inside_fov(pts, reference).any():
            raise GeometryError(f"the {what} lies outside the SPECT field of view", patient=patient, path=path)
        raise SegmentationError(
            f"the {what} is empty after resampling onto the SPECT grid (it is thinner than a SPECT voxel)",
            patient=patient, path=path,
        )
    if not _all_voxels_inside(arr, roi, reference, box):
        warnings.warn(f"part of the {what} lies outside the SPECT field of view", QCWarning, stacklevel=2)
    # Tighten to the sampled voxels, then grow by the margin (clamped to the grid).
    s_lo, s_hi = nonzero_box(sampled)
    s_lo, s_hi = s_lo + c_lo, s_hi + c_lo
    b_lo, b_hi = np.maximum(s_lo - margin, 0), np.minimum(s_hi + margin, size - 1)
    out = np.zeros(tuple((b_hi - b_lo + 1)[::-1]), np.uint8)
    src_lo, src_hi = np.maximum(b_lo, c_lo), np.minimum(b_hi, c_hi)
    out[src_lo[2] - b_lo[2]:src_hi[2] - b_lo[2] + 1, src_lo[1] - b_lo[1]:src_hi[1] - b_lo[1] + 1,
        src_lo[0] - b_lo[0]:src_hi[0] - b_lo[0] + 1] = sampled[
        src_lo[2] - c_lo[2]:src_hi[2] - c_lo[2] + 1, src_lo[1] - c_lo[1]:src_hi[1] - c_lo[1] + 1,
        src_lo[0] - c_lo[0]:src_hi[0] - c_lo[0] + 1]
    return place_on_grid(out, reference, b_lo), tuple(int(v) for v in b_lo)


def roi_on_grid(roi: sitk.Image, reference: sitk.Image, *, patient=None, path=None,
                what: str = "tumour ROI") -> sitk.Image:
    """The ROI (non-zero inside) as a uint8 0/1 mask on ``reference``'s grid.

    Nearest-neighbour resampling in physical space (see :func:`roi_box_on_grid`, which does the
    work on the ROI's bounding box only); identity when the grids already agree.
    Raises :class:`GeometryError` when the ROI lies outside the reference field of view and
    :class:`SegmentationError` when it is empty, or nothing of it survives resampling; warns
    (:class:`QCWarning`) when part of it lies outside the field of view.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", QCWarning)
        box, start = roi_box_on_grid(roi, reference, patient=patient, path=path, what=what)
    for w in caught:
        warnings.warn(w.message, w.category, stacklevel=2)
    full = np.zeros(tuple(reference.GetSize())[::-1], np.uint8)
    i0, j0, k0 = start
    nx, ny, nz = box.GetSize()
    full[k0:k0 + nz, j0:j0 + ny, i0:i0 + nx] = sitk.GetArrayViewFromImage(box)
    out = sitk.GetImageFromArray(full)
    out.CopyInformation(reference)
    return out

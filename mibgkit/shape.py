"""Shape of a tumour mask: mesh volume, surface, sphericity, asphericity, maximum diameter.

The features follow IBSI 1 (Zwanenburg et al., Radiology 2020), morphological family:
a triangle mesh is built by marching cubes at iso-level 0.5 on the binary mask, with the
voxel spacing, and every mesh feature is computed from that mesh in millimetres.

Cost follows the size of the tumour, not of the image: the mask is cropped to its bounding
box (plus one voxel of zero padding, so that masks touching the image border close) before
the mesh is built, and every step after that is vectorised.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.spatial import ConvexHull, QhullError
from skimage.measure import marching_cubes

from .errors import GeometryError, InputError, SegmentationError

__all__ = ["shape_features", "surface_mesh"]

# Points are compared in blocks of this many rows, so that the pairwise-distance step
# never holds more than _BLOCK x n distances in memory.
_BLOCK = 2048
# Above this many candidate points for the maximum diameter, keep only their convex hull.
_HULL_ABOVE = 256
# Axes, face diagonals and body diagonals: the extreme vertices along these seed the
# lower bound of the maximum diameter.
_DIRECTIONS = np.array(
    [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, -1, 0], [1, 0, 1], [1, 0, -1],
     [0, 1, 1], [0, 1, -1], [1, 1, 1], [1, 1, -1], [1, -1, 1], [-1, 1, 1]],
    dtype=float,
)


def shape_features(mask: Any, spacing: Any = None, *, label: int | float | None = None) -> dict[str, float | int]:
    """Morphological (shape) features of a 3-D mask, in physical units.

    Parameters
    ----------
    mask : SimpleITK.Image or array_like, 3-D
        The region of interest. Voxels that are non-zero are inside (or, when ``label`` is
        given, voxels equal to ``label``). A SimpleITK image carries its own spacing; a numpy
        array is read in numpy axis order, e.g. ``(z, y, x)`` for an array taken from
        SimpleITK with ``GetArrayFromImage``.
    spacing : sequence of 3 float, optional
        Voxel size in mm, in the same axis order as the array. Required for arrays, must be
        left out for SimpleITK images (their spacing is used).
    label : int or float, optional
        Restrict the region to voxels equal to this value (for label maps holding several
        structures). By default every non-zero voxel is inside.

    Returns
    -------
    dict
        ``mesh_volume_mm3``
            V, volume enclosed by the mesh (mm³).
        ``surface_mm2``
            S, mesh surface area (mm²).
        ``sphericity``
            (36 π V²)^(1/3) / S; 1 for a perfect sphere, smaller otherwise.
        ``asphericity``
            (S³ / (36 π V²))^(1/3) − 1; 0 for a perfect sphere, larger otherwise.
        ``max_diameter_mm``
            Largest distance between two mesh vertices (mm).
        ``voxel_volume_mm3``
            Number of voxels × volume of one voxel (mm³).
        ``voxel_volume_ml``
            The same in ml.
        ``n_voxels``
            Number of voxels in the region (int).
        ``mtv_ml``
            Mesh volume in ml (V / 1000): the metabolic tumour volume when the mask is the MTV.

    Raises
    ------
    SegmentationError
        The mask (or the selected label) is empty.
    GeometryError
        The spacing is missing, not three positive finite numbers, or given together with
        a SimpleITK image.
    InputError
        The mask is not three-dimensional.

    Notes
    -----
    The mask is cropped to its bounding box and padded by one voxel of zeros on every side;
    marching cubes (Lewiner et al. 2003, ``skimage.measure.marching_cubes``) at level 0.5
    with the voxel spacing gives vertices in mm and triangles :math:`(a_k, b_k, c_k)`.
    Because the mask is binary, every vertex lies halfway between an inside and an outside
    voxel centre.

    Mesh volume by the divergence theorem, as the sum of the signed volumes of the
    tetrahedra spanned by each triangle and a common point (the vertex centroid, which keeps
    the sum well conditioned):

    .. math:: V = \\frac{1}{6} \\left| \\sum_k a_k \\cdot (b_k \\times c_k) \\right|

    The absolute value makes the result independent of the face orientation (marching
    cubes orients all faces consistently, but the sign depends on whether the inside is the
    high or the low side of the level, and a mirrored axis flips it).

    Surface area, sphericity and asphericity:

    .. math::

        S = \\frac{1}{2} \\sum_k \\left| (b_k - a_k) \\times (c_k - a_k) \\right|, \\qquad
        \\text{sphericity} = \\frac{(36 \\pi V^2)^{1/3}}{S}, \\qquad
        \\text{ASP} = \\left( \\frac{S^3}{36 \\pi V^2} \\right)^{1/3} - 1
        = \\frac{1}{\\text{sphericity}} - 1 .

    ASP is the asphericity of Hofheinz et al. (2015), :math:`\\sqrt[3]{H} - 1` with
    :math:`H = S^3 / (36 \\pi V^2)`; it equals IBSI's "asphericity" (25C7).

    Maximum diameter: the largest distance between two mesh vertices, computed exactly.
    A lower bound from extreme vertices prunes vertices that cannot be the end of a longer
    chord (triangle inequality); the two ends of a diameter are vertices of the convex hull
    (Qhull), so when many candidates remain only their hull vertices are compared. Should
    the hull be degenerate, all candidates are compared directly.

    Voxel volume: :math:`N \\prod_i \\Delta_i` with N the number of voxels in the mask.

    Geometry: for a SimpleITK image the spacing comes from the image. Direction cosines
    that form an orthonormal matrix (rotations and mirrorings, which is what scanners write)
    move the mesh rigidly and leave every feature unchanged; a non-orthonormal direction
    matrix (a sheared grid) is applied to the vertices so that the features are still
    measured in physical space.

    The marching-cubes mesh of a binary mask is a staircase with cut corners. Its volume
    converges to the true volume as the voxels shrink, but its surface area does not: for a
    sphere it stays about 8-9 % larger than 4 π r² at any resolution, so a sphere's
    asphericity levels off near 0.08-0.09 instead of reaching 0 (the known area bias of
    marching cubes on binary data, see Lindblad 2005). This is the IBSI definition and
    what other IBSI-compliant software (e.g. pyradiomics) computes; values are comparable
    between patients and with the literature that uses the same definition.

    A single voxel gives an octahedron with vertices at the centres of its six faces: for
    1 mm voxels V = 1/6 mm³, S = √3 mm², sphericity = π^(1/3)/√3 ≈ 0.846 and maximum
    diameter 1 mm.

    References
    ----------
    .. [1] Zwanenburg A, Vallières M, Abdalah MA, et al. The Image Biomarker
       Standardization Initiative: standardized quantitative radiomics for high-throughput
       image-based phenotyping. Radiology 2020;295:328-338. Features RNU0 (mesh volume),
       YEKZ (voxel volume), C0JK (surface area), QCFX (sphericity), 25C7 (asphericity),
       L0JK (maximum 3-D diameter).
    .. [2] Hofheinz F, Lougovski A, Zöphel K, et al. Increased evidence for the prognostic
       value of primary tumor asphericity in pretherapeutic FDG PET for risk stratification
       in patients with head and neck cancer. Eur J Nucl Med Mol Imaging 2015;42:429-437.
    .. [3] Lewiner T, Lopes H, Vieira AW, Tavares G. Efficient implementation of marching
       cubes' cases with topological guarantees. J Graphics Tools 2003;8(2):1-15.
    .. [4] Lindblad J. Surface area estimation of digitized 3D objects using weighted
       local configurations. Image Vis Comput 2005;23:111-122.

    Examples
    --------
    A ball of radius 10 mm on a 1 mm grid (true volume 4188.8 mm³, true surface 1256.6 mm²):

    >>> import numpy as np
    >>> from mibgkit.shape import shape_features
    >>> z, y, x = np.ogrid[-12:13, -12:13, -12:13]
    >>> ball = x**2 + y**2 + z**2 <= 10**2
    >>> f = shape_features(ball, spacing=(1.0, 1.0, 1.0))
    >>> f["n_voxels"], round(f["voxel_volume_mm3"], 1)
    (4169, 4169.0)
    >>> round(f["mesh_volume_mm3"], 1), round(f["surface_mm2"], 1)
    (4147.8, 1372.0)
    >>> round(f["sphericity"], 3), round(f["asphericity"], 3), round(f["max_diameter_mm"], 2)
    (0.91, 0.099, 21.0)
    """
    array, spacing_mm, direction = _mask_and_geometry(mask, spacing, label)
    crop, _ = _crop_to_bounding_box(array, label)
    n_voxels = int(np.count_nonzero(crop))
    verts, faces = _mesh(crop, spacing_mm)
    if direction is not None:
        verts = verts[:, ::-1] @ direction.T  # (z, y, x) mm -> physical (x, y, z) mm

    volume, surface = _volume_and_surface(verts, faces)
    sphericity = (36.0 * math.pi * volume**2) ** (1.0 / 3.0) / surface
    voxel_volume = n_voxels * float(np.prod(spacing_mm))
    if direction is not None:
        voxel_volume *= abs(float(np.linalg.det(direction)))
    return {
        "mesh_volume_mm3": volume,
        "surface_mm2": surface,
        "sphericity": sphericity,
        "asphericity": 1.0 / sphericity - 1.0,
        "max_diameter_mm": _max_diameter(verts),
        "voxel_volume_mm3": voxel_volume,
        "voxel_volume_ml": voxel_volume / 1000.0,
        "n_voxels": n_voxels,
        "mtv_ml": volume / 1000.0,
    }


def surface_mesh(mask: Any, spacing: Any = None, *, label: int | float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The triangle mesh that :func:`shape_features` measures, for display.

    Parameters
    ----------
    mask, spacing, label
        As for :func:`shape_features`.

    Returns
    -------
    verts : ndarray, shape (n, 3), float
        Vertex positions in mm, in numpy axis order, relative to the centre of voxel
        ``(0, 0, 0)`` of the array (index × spacing; direction cosines are not applied).
    faces : ndarray, shape (m, 3), int
        Triangles as indices into ``verts``.

    Examples
    --------
    >>> import numpy as np
    >>> verts, faces = surface_mesh(np.ones((1, 1, 1)), spacing=(2.0, 1.0, 1.0))
    >>> verts.shape, faces.shape
    ((6, 3), (8, 3))
    >>> verts.min(axis=0).tolist(), verts.max(axis=0).tolist()
    ([-1.0, -0.5, -0.5], [1.0, 0.5, 0.5])
    """
    array, spacing_mm, _ = _mask_and_geometry(mask, spacing, label)
    crop, offset = _crop_to_bounding_box(array, label)
    verts, faces = _mesh(crop, spacing_mm)
    # _mesh works in the padded crop, whose voxel (1, 1, 1) is the crop's first voxel.
    verts += (np.asarray(offset, dtype=float) - 1.0) * spacing_mm
    return verts, faces


# --------------------------------------------------------------------------- helpers


def _mask_and_geometry(mask: Any, spacing: Any, label: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Mask array (numpy order), spacing in mm (numpy order), direction if it is not orthonormal."""
    direction = None
    if _is_sitk_image(mask):
        import SimpleITK as sitk

        if spacing is not None:
            raise GeometryError(
                "spacing was given together with a SimpleITK image; the image's own spacing "
                "is used, so leave spacing out (or pass a numpy array)"
            )
        if mask.GetDimension() != 3 or mask.GetNumberOfComponentsPerPixel() != 1:
            raise InputError(
                f"the mask must be a 3-D scalar image, got {mask.GetDimension()}-D with "
                f"{mask.GetNumberOfComponentsPerPixel()} component(s) per voxel"
            )
        array = sitk.GetArrayViewFromImage(mask)  # (z, y, x), no copy
        spacing = mask.GetSpacing()[::-1]
        matrix = np.asarray(mask.GetDirection(), dtype=float).reshape(3, 3)
        if not np.allclose(matrix.T @ matrix, np.eye(3), atol=1e-6):
            direction = matrix
    else:
        array = np.asarray(mask)
        if array.ndim != 3:
            raise InputError(f"the mask must be a 3-D array, got shape {array.shape}")
        if spacing is None:
            raise GeometryError(
                "spacing (voxel size in mm, in numpy axis order) is required for a numpy mask; "
                "pass e.g. spacing=image.GetSpacing()[::-1] for an array from SimpleITK"
            )
    spacing_mm = np.asarray(spacing, dtype=float).reshape(-1)
    if spacing_mm.shape != (3,) or not np.all(np.isfinite(spacing_mm)) or np.any(spacing_mm <= 0):
        raise GeometryError(f"spacing must be three positive numbers in mm, got {spacing!r}")
    return array, spacing_mm, direction


def _is_sitk_image(obj: Any) -> bool:
    return type(obj).__name__ == "Image" and hasattr(obj, "GetSpacing") and hasattr(obj, "GetDirection")


def _crop_to_bounding_box(array: np.ndarray, label: Any) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Boolean sub-array over the bounding box of the region, and its start index.

    Only one pass touches the whole array (a projection along the first axis); the
    comparisons that make the boolean mask run on the bounding box alone.
    """
    def inside(part: np.ndarray) -> np.ndarray:
        return part != 0 if label is None else part == label

    plane = array.any(axis=0) if label is None else inside(array).any(axis=0)  # (y, x)
    if not plane.any():
        what = "mask is empty (no non-zero voxel)" if label is None else f"mask has no voxel with label {label}"
        raise SegmentationError(f"{what}; shape features need at least one voxel inside the region")
    rows = np.flatnonzero(plane.any(axis=1))
    cols = np.flatnonzero(plane.any(axis=0))
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    slab = inside(array[:, y0:y1, x0:x1])
    slices = np.flatnonzero(slab.any(axis=(1, 2)))
    z0, z1 = slices[0], slices[-1] + 1
    return slab[z0:z1], (int(z0), int(y0), int(x0))


def _mesh(crop: np.ndarray, spacing_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Marching cubes at 0.5 on the crop padded by one zero voxel; vertices in mm (float64)."""
    padded = np.zeros(tuple(n + 2 for n in crop.shape), dtype=np.float32)
    padded[1:-1, 1:-1, 1:-1] = crop
    verts, faces, _, _ = marching_cubes(padded, level=0.5, spacing=tuple(spacing_mm), allow_degenerate=True)
    return verts.astype(np.float64), faces


def _volume_and_surface(verts: np.ndarray, faces: np.ndarray) -> tuple[float, float]:
    """Mesh volume |Σ a·(b × c)| / 6 (divergence theorem, about the centroid) and area Σ |(b−a) × (c−a)| / 2.

    Cross products written out over the coordinates (one pass over the triangles, no temporaries
    from ``np.cross``).
    """
    centred = verts - verts.mean(axis=0)
    a, b, c = centred[faces[:, 0]], centred[faces[:, 1]], centred[faces[:, 2]]
    ax, ay, az = a[:, 0], a[:, 1], a[:, 2]
    bx, by, bz = b[:, 0], b[:, 1], b[:, 2]
    cx, cy, cz = c[:, 0], c[:, 1], c[:, 2]
    volume = abs(float((ax * (by * cz - bz * cy) + ay * (bz * cx - bx * cz) + az * (bx * cy - by * cx)).sum())) / 6.0
    ux, uy, uz = bx - ax, by - ay, bz - az
    vx, vy, vz = cx - ax, cy - ay, cz - az
    nx, ny, nz = uy * vz - uz * vy, uz * vx - ux * vz, ux * vy - uy * vx
    surface = 0.5 * float(np.sqrt(nx * nx + ny * ny + nz * nz).sum())
    return volume, surface


def _max_diameter(verts: np.ndarray) -> float:
    """Largest distance between two vertices (exact), pruned first, then via the convex hull.

    1. Lower bound L: the farthest vertex from each of the extreme vertices along 13
       directions (axes, face and body diagonals) gives a pair at distance L.
    2. Pruning: with c the midpoint of that pair and R the largest distance of a vertex
       from c, any pair farther apart than L has both ends at more than L - R from c
       (triangle inequality), so vertices closer to c are dropped. For round shapes this
       leaves a thin shell of a few dozen vertices.
    3. If many vertices remain, only the vertices of their convex hull are kept (the two
       ends of a diameter are hull vertices); the rest are compared pairwise.
    """
    points = verts - verts.mean(axis=0)
    norms = np.einsum("ij,ij->i", points, points)
    projections = _inner(points, _DIRECTIONS)
    extremes = np.concatenate([projections.argmax(axis=0), projections.argmin(axis=0)])
    d2 = norms[extremes, None] + norms[None, :] - 2.0 * _inner(points[extremes], points)
    i, j = np.unravel_index(int(d2.argmax()), d2.shape)
    lower = math.sqrt(max(float(d2[i, j]), 0.0))
    from_centre = points - 0.5 * (points[extremes[i]] + points[j])
    radius = np.sqrt(np.einsum("ij,ij->i", from_centre, from_centre))
    candidates = points[radius >= lower - radius.max() - 1e-6 * (1.0 + lower)]
    if len(candidates) > _HULL_ABOVE:
        try:
            candidates = candidates[ConvexHull(candidates).vertices]
        except (QhullError, ValueError):  # flat or otherwise degenerate: compare all candidates
            pass
    return max(lower, _max_pairwise_distance(candidates))


def _max_pairwise_distance(points: np.ndarray) -> float:
    points = points - points.mean(axis=0)
    norms = np.einsum("ij,ij->i", points, points)
    best = 0.0
    for start in range(0, len(points), _BLOCK):  # loop over blocks of rows only (few iterations)
        block = points[start : start + _BLOCK]
        d2 = norms[start : start + _BLOCK, None] + norms[None, :] - 2.0 * _inner(block, points)
        best = max(best, float(d2.max()))
    return math.sqrt(max(best, 0.0))


def _inner(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """All dot products of the rows of ``a`` (m, 3) with the rows of ``b`` (n, 3), shape (m, n).

    Written out over the three coordinates: for an inner dimension of 3 this is as fast as
    a matrix product and stays on one thread (a threaded BLAS call this thin is slower,
    and erratic on a loaded machine).
    """
    return a[:, 0, None] * b[None, :, 0] + a[:, 1, None] * b[None, :, 1] + a[:, 2, None] * b[None, :, 2]

"""Shape of a tumour mask: mesh volume, surface, sphericity, asphericity, maximum diameter.

The features follow IBSI 1 (Zwanenburg et al., Radiology 2020), morphological family:
a triangle mesh is built by marching cubes at iso-level 0.5 on the binary mask, with the
voxel spacing, and every mesh feature is computed from that mesh in millimetres.

Cost follows the size of the tumour, not of the image: the mask is cropped to its bounding
box (plus one voxel of zero padding, so that masks touching the image border close) before
the mesh is built, and every step after that is vectorised.
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import Any

import numpy as np
from skimage.measure import marching_cubes

from .errors import GeometryError, InputError, SegmentationError

__all__ = ["shape_features", "surface_mesh"]

# Points are compared in blocks of rows of about this many pairs, so that the pairwise-distance
# step works in the cache.
_BLOCK_ELEMENTS = 16384
# Above this many candidates for the maximum diameter, those that cannot reach the lower
# bound are dropped first (see _max_diameter); below, comparing all pairs is as fast.
_PAIRS_BELOW = 96
# Above this many vertices, the rows of the lower bound are compared only with the vertices that
# can be farthest from one of them (see _max_diameter); below, comparing with all costs less.
_COLUMNS_ABOVE = 200
# The 13 directions of the lower bound (axes, face and body diagonals), as used in
# _max_diameter (entries 0 and ±1), their inverse lengths, and the cosine of the covering
# radius of these directions and their opposites on the sphere (0.886452 rounded down).
_DIRECTIONS = np.array(
    [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, -1, 0], [1, 0, 1], [1, 0, -1],
     [0, 1, 1], [0, 1, -1], [1, 1, 1], [1, 1, -1], [1, -1, 1], [-1, 1, 1]],
    dtype=float,
)
_DIRECTION_SCALE = 1.0 / np.sqrt((_DIRECTIONS**2).sum(axis=1))[:, None]
_COS_13 = 0.88645
_ROWS = np.arange(13)
# Finer: the 49 primitive integer vectors in {-2..2}^3 up to sign, as unit vectors
# (covering radius with their opposites: cos = 0.952910, rounded down).
_FINE_DIRECTIONS = np.array(
    [v for v in itertools.product(range(-2, 3), repeat=3)
     if any(v) and math.gcd(*v) == 1 and v > tuple(-c for c in v)],
    dtype=float,
)
_FINE_DIRECTIONS /= np.sqrt((_FINE_DIRECTIONS**2).sum(axis=1))[:, None]
_COS_FINE = 0.95290
_EYE = np.eye(3)
_IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
_ORTHONORMAL_TOL = 1e-6 + 1e-5 * _EYE  # np.allclose(..., atol=1e-6) against the identity
_ROLL = np.array([0, 1, 2, 0, 1])


def shape_features(mask: Any, spacing: Any = None, *, label: int | float | None = None,
                   max_diameter: bool = True) -> dict[str, float | int]:
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
    max_diameter : bool
        False leaves out ``max_diameter_mm`` (the costliest feature on a fine grid, for callers
        that need only volume and asphericity); every other value is the same.

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
    chord (triangle inequality); of the rest, those that cannot reach that bound in any of
    62 directions are dropped too (exact bounds, no convex hull), and the few that remain
    are compared pairwise. The result is the largest distance over all pairs, to the bit.

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

    centred = verts - np.add.reduce(verts, axis=0) / len(verts)  # what verts.mean(axis=0) computes
    volume, surface = _volume_and_surface(centred, faces)
    sphericity = (36.0 * math.pi * volume**2) ** (1.0 / 3.0) / surface
    voxel_volume = n_voxels * math.prod(spacing_mm.tolist())  # the product np.prod forms, in that order
    if direction is not None:
        voxel_volume *= abs(float(np.linalg.det(direction)))
    out = {"mesh_volume_mm3": volume, "surface_mm2": surface, "sphericity": sphericity,
           "asphericity": 1.0 / sphericity - 1.0}
    if max_diameter:
        out["max_diameter_mm"] = _max_diameter(centred)
    return {**out, "voxel_volume_mm3": voxel_volume, "voxel_volume_ml": voxel_volume / 1000.0,
            "n_voxels": n_voxels, "mtv_ml": volume / 1000.0}


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
        cosines = mask.GetDirection()
        if cosines != _IDENTITY:  # (the identity is orthonormal: nothing to check)
            matrix = np.asarray(cosines, dtype=float).reshape(3, 3)
            # np.allclose(matrix.T @ matrix, I, atol=1e-6) written out (allclose costs more than the rest here)
            if not bool(np.all(np.abs(matrix.T @ matrix - _EYE) <= _ORTHONORMAL_TOL)):
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
    if spacing_mm.shape != (3,) or not all(0.0 < h < math.inf for h in spacing_mm.tolist()):
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

    if label is None and array.dtype.kind in "biu":
        # OR of the integer values: non-zero exactly where some voxel along z is non-zero, with
        # no cast to bool of the whole array (what ``any`` does for integers)
        plane = np.bitwise_or.reduce(array.view(np.uint8) if array.dtype.kind == "b" else array, axis=0) != 0
    else:
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
    """Marching cubes at 0.5 on the crop padded by one zero voxel; vertices in mm (float64, C order).

    The mesh is that of ``skimage.measure.marching_cubes(padded, level=0.5, spacing=spacing_mm,
    allow_degenerate=True)`` (Lewiner et al.), vertex for vertex and face for face, built with
    array operations instead of a loop over the cubes; for the small masks of a tumour the
    set-up of that call and its per-vertex normals cost more than the rest of the features.

    How: on a 0/1 volume the triangles of a cube depend only on which of its 8 corners are
    inside (all corner values are ±0.5 about the level, so Lewiner's face and interior tests
    have fixed outcomes), and every vertex is the midpoint of a cube edge or, for some
    configurations, the cube centre. :func:`_cube_tables` records, for each of the 256
    configurations, the sequence of edge references that ``marching_cubes`` emits for that
    cube alone. ``marching_cubes`` visits the cubes in C order (z, then y, then x), emits these
    references, and numbers the vertices in the order in which their edge is first referenced
    (it keeps one vertex per edge; the centre vertex belongs to its cube): that is what is
    reproduced here. Vertex coordinates are multiples of half a voxel, exact in floating
    point; they are scaled exactly as ``marching_cubes`` does it (a float64 product with the
    spacing), so the vertices are the same to the bit.
    """
    table, counts_per_config = _cube_tables()
    nz, ny, nx = (n + 2 for n in crop.shape)
    padded = np.zeros((nz, ny, nx), dtype=np.uint8)
    padded[1:-1, 1:-1, 1:-1] = crop
    # configuration of every cube: bit dz*4 + dy*2 + dx set when that corner is inside
    pairs = padded[:, :, :-1] + (padded[:, :, 1:] << 1)
    quads = pairs[:, :-1] + (pairs[:, 1:] << 2)
    # each cube stored at its first corner, so that its position in C order is that point's linear
    # index (the last plane, row and column hold no cube: configuration 0, no triangles)
    config = np.zeros((nz, ny, nx), dtype=np.uint8)
    np.add(quads[:-1], quads[1:] << 4, out=config[:-1, :-1, :-1])
    config = config.ravel()
    counts = counts_per_config[config]
    cubes = np.flatnonzero(counts)  # linear index of each cube's first corner, in C order
    config, counts = config[cubes], counts[cubes]
    rows = table[config]
    local = rows[rows >= 0]  # edge references of all cubes, in order
    # global id of a reference: 4 * (linear index of the edge's first point) + direction,
    # direction 0, 1, 2 for edges along x, y, z and 3 for the centre of the cube
    offsets = _LOCAL @ np.array([4 * ny * nx, 4 * nx, 4, 1], dtype=np.int64)
    gid = np.repeat(cubes * 4, counts) + offsets[local]
    first = _first_occurrence(gid, 4 * nz * ny * nx)
    is_first = first == np.arange(len(gid))
    number = np.cumsum(is_first) - 1  # vertex number of each first reference
    faces = number[first].astype(np.int32).reshape(-1, 3)[:, ::-1]  # marching_cubes' orientation
    vertex_gid = gid[is_first]
    point, direction = np.divmod(vertex_gid, 4)
    halves = np.empty((len(vertex_gid), 3), dtype=np.int64)  # vertex position in half voxels
    halves[:, 0], halves[:, 1], halves[:, 2] = np.unravel_index(point, (nz, ny, nx))
    halves *= 2
    halves += _HALF_STEP[direction]
    # (2k)·(h/2) is k·h rounded once, as the float32 vertex k times h in marching_cubes
    return halves * (0.5 * spacing_mm), faces


def _first_occurrence(ids: np.ndarray, size: int) -> np.ndarray:
    """For each position, the first position holding the same id (ids in [0, size))."""
    n = len(ids)
    if size <= 16 * n + (1 << 16):
        first = np.full(size, n, dtype=np.intp)
        np.minimum.at(first, ids, np.arange(n))
        return first[ids]
    order = np.argsort(ids, kind="stable")
    ordered = ids[order]
    start = np.empty(n, dtype=bool)
    start[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=start[1:])
    first = np.empty(n, dtype=np.intp)
    first[order] = order[start][np.cumsum(start) - 1]
    return first


# Local references within a cube: (dz, dy, dx, direction) of the 12 edges and the centre.
_LOCAL = np.array(
    [[0, 0, 0, 0], [0, 1, 0, 0], [1, 0, 0, 0], [1, 1, 0, 0],  # along x
     [0, 0, 0, 1], [0, 0, 1, 1], [1, 0, 0, 1], [1, 0, 1, 1],  # along y
     [0, 0, 0, 2], [0, 0, 1, 2], [0, 1, 0, 2], [0, 1, 1, 2],  # along z
     [0, 0, 0, 3]],  # centre
    dtype=np.int64,
)
# Half-voxel step (z, y, x) from an edge's first point to its vertex, by direction.
_HALF_STEP = np.array([[0, 0, 1], [0, 1, 0], [1, 0, 0], [1, 1, 1]], dtype=np.int64)


@functools.lru_cache(maxsize=1)
def _cube_tables() -> tuple[np.ndarray, np.ndarray]:
    """Edge references of ``marching_cubes`` for each of the 256 configurations of one cube.

    Returns ``table`` (256, k) of indices into ``_LOCAL`` (-1 after the last) and the
    number of references per configuration (three per triangle). Built once, by running
    ``marching_cubes`` on every 2x2x2 configuration, so it follows the installed scikit-image.
    """
    position = {tuple(int(v) for v in 2 * row[:3] + _HALF_STEP[row[3]]): i for i, row in enumerate(_LOCAL)}
    sequences = []
    for config in range(256):
        cube = np.array([(config >> bit) & 1 for bit in range(8)], dtype=np.float32).reshape(2, 2, 2)
        if config in (0, 255):
            sequences.append([])
            continue
        verts, faces, _, _ = marching_cubes(cube, level=0.5, allow_degenerate=True)
        order = faces[:, ::-1].ravel()  # references in the order they were emitted
        sequences.append([position[tuple(int(v) for v in 2 * verts[i])] for i in order])
    width = max(len(seq) for seq in sequences)
    table = np.full((256, width), -1, dtype=np.int8)
    for config, seq in enumerate(sequences):
        table[config, : len(seq)] = seq
    return table, np.array([len(seq) for seq in sequences], dtype=np.int64)


def _volume_and_surface(centred: np.ndarray, faces: np.ndarray) -> tuple[float, float]:
    """Mesh volume |Σ a·(b × c)| / 6 (divergence theorem) and area Σ |(b−a) × (c−a)| / 2.

    ``centred`` are the vertices minus their centroid (which keeps the sum well conditioned).
    One gather puts the corners of every triangle in rows (x, y, z, x, y) of coordinates, so
    that each cross product is three products over contiguous rows ((y, z, x) times (z, x, y)
    and so on). Every term is the same floating-point expression as written out per
    coordinate, (by cz − bz cy, ...), and (ax (by cz − bz cy) + ay (...)) + az (...), so the
    sums are the same to the bit.
    """
    rows = centred.T[_ROLL]  # (5, n): x, y, z, x, y
    corners = np.take(rows, np.ascontiguousarray(faces.T), axis=1)  # (5, 3, m): coordinate, corner, triangle
    a, b, c = corners[:, 0], corners[:, 1], corners[:, 2]
    cross = b[1:4] * c[2:5] - b[2:5] * c[1:4]  # b × c, rows x, y, z
    dots = a[0:3] * cross
    volume = abs(float((dots[0] + dots[1] + dots[2]).sum())) / 6.0
    u = b - a
    v = c - a
    normal = u[1:4] * v[2:5] - u[2:5] * v[1:4]  # (b − a) × (c − a)
    normal *= normal
    surface = 0.5 * float(np.sqrt(normal[0] + normal[1] + normal[2]).sum())
    return volume, surface


def _max_diameter(points: np.ndarray) -> float:
    """Largest distance between two vertices (exact), from a pruned candidate set.

    ``points`` are the vertices minus their centroid.

    1. Lower bound L: the farthest vertex from each of the extreme vertices along 13
       directions (axes, face and body diagonals) gives a pair at distance L.
    2. Pruning: with c the midpoint of that pair and R the largest distance of a vertex
       from c, any pair farther apart than L has both ends at more than L - R from c
       (triangle inequality), so vertices closer to c are dropped.
    3. The remaining candidates are moved to their own centroid and compared pairwise as
       |p|² + |q|² − 2 p·q; the result is the larger of L and the largest of these.

    Step 3 does not compare all pairs of candidates, only those between candidates that
    can still be an end of a chord of length L (exact pruning, no convex hull):
    for unit directions u_1..u_K that cover the sphere to within an angle θ (every unit
    vector is within θ of some u_k), the direction of q − p is within θ of some u_k, so
    (q − p)·u_k ≥ |q − p| cos θ, while (q − p)·u_k ≤ h_k − p·u_k with h_k the largest
    projection of a candidate on u_k. Hence every partner q of p is at most
    B(p) / cos θ away, with B(p) = max_k (h_k − p·u_k), and candidates with
    B(p) < L cos θ (less a margin far above rounding) are dropped. This runs with the 13
    directions of step 1 and their opposites (cos θ = 0.8864), then with the 49 directions
    of integer vectors in {−2..2}³ and their opposites (cos θ = 0.9529); θ is the covering
    radius of each set, arccos of the smallest offset of a facet of its convex hull. What
    remains is typically 5-50 vertices. Every pair whose rounded |p|² + |q|² − 2 p·q could
    be the largest has both ends at distance ≥ L from each other (up to rounding), so it
    is kept and the maximum is the value of the full comparison of all candidates, to the
    bit.

    Steps 1-3 are computed with the same floating-point expressions as a straightforward
    implementation; the projections on directions with entries 0 and ±1 are written as
    sums and differences of coordinates, which are exactly the values of the dot products.
    In step 1, up to ``_COLUMNS_ABOVE`` vertices the extreme vertices are compared with every
    vertex (cheaper than choosing the columns first; the columns left out otherwise cannot
    hold the largest distance, so the pair is the same). The projections on the 49 finer
    directions only decide which candidates go on, with the margin above: they are one
    matrix product. The final pairwise comparison computes each unordered pair once (the
    expression is symmetric to the bit).
    """
    n = len(points)
    norms = np.einsum("ij,ij->i", points, points)
    coords = np.ascontiguousarray(points.T)
    x, y, z = coords
    proj = np.empty((13, n))
    proj[0:3] = coords
    np.add(x, y, out=proj[3])
    np.subtract(x, y, out=proj[4])
    np.add(x, z, out=proj[5])
    np.subtract(x, z, out=proj[6])
    np.add(y, z, out=proj[7])
    np.subtract(y, z, out=proj[8])
    np.add(proj[3], z, out=proj[9])
    np.subtract(proj[3], z, out=proj[10])
    np.add(proj[4], z, out=proj[11])
    np.subtract(y, x, out=proj[12])
    proj[12] += z
    high, low = proj.argmax(axis=1), proj.argmin(axis=1)
    # The same vertex is often extreme in several directions: one row each (first appearance
    # kept, so that the first maximum in row order is the same pair).
    unique = np.fromiter(dict.fromkeys(np.concatenate([high, low]).tolist()), dtype=np.intp)
    top, bottom = proj[_ROWS, high], proj[_ROWS, low]
    if n > _COLUMNS_ABOVE:
        # Columns that cannot be the farthest vertex from any row are left out (see above): the
        # largest width along the 13 directions is the distance of a (row, column) pair, hence
        # at most the maximum sought. (Below, comparing the rows with every vertex costs less;
        # the columns left out cannot hold the largest distance, so the pair is the same.)
        width = float(((top - bottom) * _DIRECTION_SCALE.ravel()).max())
        reach_all = _reach(proj, top, bottom)  # B(p) for every vertex, against all vertices
        columns = np.flatnonzero(reach_all >= _COS_13 * (width - 1e-6 * (1.0 + width)))
        xc, yc, zc = coords[:, columns]
        column_norms = norms[columns]
    else:
        columns = None
        xc, yc, zc = x, y, z
        column_norms = norms
    # d2 = |e|² + |q|² − 2 e·q for rows e and columns q, in two buffers (same expression)
    ends = points[unique]
    d2 = np.multiply(ends[:, 0, None], xc)
    term = np.multiply(ends[:, 1, None], yc)
    d2 += term
    np.multiply(ends[:, 2, None], zc, out=term)
    d2 += term
    d2 *= 2.0
    np.add(norms[unique, None], column_norms, out=term)
    np.subtract(term, d2, out=d2)
    row, col = divmod(int(d2.argmax()), d2.shape[1])
    j = col if columns is None else int(columns[col])
    lower = math.sqrt(max(float(d2[row, col]), 0.0))
    from_centre = points - 0.5 * (points[unique[row]] + points[j])
    radius = np.sqrt(np.einsum("ij,ij->i", from_centre, from_centre))
    keep = np.flatnonzero(radius >= lower - radius.max() - 1e-6 * (1.0 + lower))
    candidates = points[keep]
    # minus their mean: np.add.reduce along axis 0 divided by the count is what ndarray.mean computes
    candidates -= np.add.reduce(candidates, axis=0) / len(candidates)
    cnorms = np.einsum("ij,ij->i", candidates, candidates)
    if len(candidates) > _PAIRS_BELOW:
        reach = lower - 1e-6 * (1.0 + lower)  # a chord longer than this must be kept
        # B(p) of the candidates against all vertices (the values of reach_all, for them alone)
        reach_keep = reach_all[keep] if columns is not None else _reach(proj[:, keep], top, bottom)
        chosen = np.flatnonzero(reach_keep >= _COS_13 * reach)
        if len(chosen) > _PAIRS_BELOW:
            # projections on the 49 directions by one matrix product: they only decide which
            # candidates go on, with a margin (1e-6 of L) far above the rounding of any summation
            fine = _FINE_DIRECTIONS @ candidates[chosen].T
            term = np.subtract(fine.max(axis=1, keepdims=True), fine)
            fine -= fine.min(axis=1, keepdims=True)
            np.maximum(fine, term, out=fine)
            chosen = chosen[fine.max(axis=0) >= _COS_FINE * reach]
        candidates, cnorms = candidates[chosen], cnorms[chosen]
    return max(lower, math.sqrt(max(_max_d2(candidates, cnorms), 0.0)))


def _reach(proj: np.ndarray, top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    """B(p) = max_k (h_k − p·u_k) over the 13 directions and their opposites, per column of ``proj``.

    ``proj`` holds the projections (13, m) of the vertices asked about, ``top`` and ``bottom``
    the largest and smallest projections of all vertices (13,); each direction's spread is
    scaled by its inverse length. ``proj`` is overwritten.
    """
    spread = np.subtract(top[:, None], proj)
    np.subtract(proj, bottom[:, None], out=proj)
    np.maximum(spread, proj, out=spread)
    spread *= _DIRECTION_SCALE
    return spread.max(axis=0)


def _max_d2(points: np.ndarray, norms: np.ndarray) -> float:
    """max over all pairs (i, j) of (|p_i|² + |p_j|²) − 2 p_i·p_j, rows in blocks; at least 0.

    Each pair is computed once, row i against columns j ≥ the first row of its block: the
    expression is symmetric to the bit (a sum of two norms and a dot product summed in
    coordinate order), so the pairs left out hold values already seen. Blocks are small enough
    for the cache and reuse two buffers.
    """
    m = len(points)
    best = 0.0
    if m == 0:
        return best
    x, y, z = np.ascontiguousarray(points.T)
    rows = max(1, min(m, _BLOCK_ELEMENTS // m))
    d2_buf, term_buf = np.empty(rows * m), np.empty(rows * m)
    for start in range(0, m, rows):  # loop over blocks of rows only (few iterations)
        stop = min(start + rows, m)
        shape = (stop - start, m - start)
        d2 = d2_buf[: shape[0] * shape[1]].reshape(shape)
        term = term_buf[: shape[0] * shape[1]].reshape(shape)
        np.multiply(x[start:stop, None], x[None, start:], out=d2)
        np.multiply(y[start:stop, None], y[None, start:], out=term)
        d2 += term
        np.multiply(z[start:stop, None], z[None, start:], out=term)
        d2 += term
        d2 *= 2.0
        np.add(norms[start:stop, None], norms[None, start:], out=term)
        term -= d2
        best = max(best, float(term.max()))
    return best

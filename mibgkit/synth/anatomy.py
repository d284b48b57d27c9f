"""A child's trunk as a few dozen analytic shapes, rendered as SPECT activity or CT numbers.

Coordinates are patient LPS in mm (x towards the patient's left, y posterior, z superior). A body
is built around the centre of the L2 vertebral body (the muscle reference level of the study) and
scaled by the child's height relative to a 5-year-old; all shapes are axis-aligned ellipsoids,
cylinders or per-slice ellipses, so that rendering them on a grid costs a bounding box each.

The same body gives

* a *tissue label map* on any grid (:func:`label_map`),
* SPECT activity concentrations through two look-up tables — organs that scale with the liver
  (liver, heart, salivary glands, bladder, kidneys, spleen, bone marrow foci...) and soft tissue
  that scales with skeletal muscle (paraspinal and psoas muscles, generic body background), see
  :func:`activity_tables` — and
* CT numbers in HU (:func:`ct_numbers`).

Physiological 123I-MIBG biodistribution at 24 h (Bombardieri et al. 2010; Bar-Sever et al. 2018):
intense salivary glands, liver and bladder, moderate heart, faint kidneys, spleen and normal
adrenals, low muscle; thyroid blocked by Lugol's solution; no uptake in normal bone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Grid", "Body", "TISSUES", "make_body", "label_map", "activity_tables", "ct_numbers",
           "reference_centres", "body_scale"]

#: Tissue codes of the label maps.
TISSUES = {
    "air": 0, "fat": 1, "soft_tissue": 2, "muscle": 3, "liver": 4, "spleen": 5, "kidney": 6,
    "heart": 7, "lung": 8, "bladder": 9, "cortical_bone": 10, "marrow": 11, "salivary": 12,
    "bowel": 13, "adrenal": 14, "csf": 15, "brain": 16, "bone_metastasis": 17, "tumour": 18,
    "calcification": 19, "necrosis": 20, "gas": 21, "thyroid": 22, "vessel": 23,
}


@dataclass(frozen=True)
class Grid:
    """An axis-aligned voxel grid (direction = identity).

    Attributes
    ----------
    shape : tuple of int
        ``(nz, ny, nx)``, numpy order.
    spacing : tuple of float
        ``(sx, sy, sz)`` in mm, SimpleITK order.
    origin : tuple of float
        LPS position (mm) of the centre of voxel ``[0, 0, 0]``.
    """

    shape: tuple
    spacing: tuple
    origin: tuple

    def axes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Voxel-centre coordinates along z, y, x (mm), each a 1-D array."""
        nz, ny, nx = self.shape
        ox, oy, oz = self.origin
        sx, sy, sz = self.spacing
        return oz + sz * np.arange(nz), oy + sy * np.arange(ny), ox + sx * np.arange(nx)

    def crop(self, lo_zyx, hi_zyx) -> "Grid":
        """The sub-grid of voxels ``lo <= index < hi`` (numpy order), same spacing."""
        lo = np.maximum(np.asarray(lo_zyx, int), 0)
        hi = np.minimum(np.asarray(hi_zyx, int), self.shape)
        origin = tuple(float(o + s * i) for o, s, i in zip(self.origin, self.spacing, lo[::-1]))
        return Grid(tuple(int(v) for v in hi - lo), self.spacing, origin)

    def box_around(self, centre_mm, radius_mm, margin_vox: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Index bounds ``(lo, hi)`` (numpy order, clipped) of the voxels within a box around a point.

        ``radius_mm`` is the box's half-width in mm: one number (a cube) or one per axis ``(x, y, z)``.
        """
        c = np.asarray(centre_mm, float)[::-1]
        r = np.broadcast_to(np.asarray(radius_mm, float), (3,))[::-1]
        o = np.asarray(self.origin, float)[::-1]
        s = np.asarray(self.spacing, float)[::-1]
        lo = np.floor((c - r - o) / s).astype(int) - margin_vox
        hi = np.ceil((c + r - o) / s).astype(int) + 1 + margin_vox
        return np.clip(lo, 0, self.shape), np.clip(hi, 0, self.shape)

    def points(self) -> np.ndarray:
        """All voxel centres as an ``(n, 3)`` LPS array (x, y, z), in C order of the array."""
        z, y, x = self.axes()
        zz, yy, xx = np.meshgrid(z, y, x, indexing="ij")
        return np.stack([xx.ravel(), yy.ravel(), zz.ravel()], axis=1)


@dataclass(frozen=True)
class Ellipsoid:
    """An axis-aligned ellipsoid of one tissue (centre and semi-axes in mm, LPS)."""

    tissue: str
    centre: tuple
    radii: tuple


@dataclass(frozen=True)
class Body:
    """Geometry of one child's trunk.

    Attributes
    ----------
    scale : float
        Linear size relative to a 5-year-old.
    l2 : ndarray, shape (3,)
        LPS centre of the L2 vertebral body, mm.
    outline : ndarray, shape (k, 4)
        Body cross-section profile: rows ``(z, semi-axis x, semi-axis y, centre y offset)`` in mm,
        interpolated linearly in z (z absolute, LPS).
    shapes : tuple of Ellipsoid
        Organs and bones in painting order (later ones win).
    vertebrae : ndarray, shape (m, 2)
        ``(z centre, half height)`` of each vertebral body, mm.
    spine_xy : tuple of float
        LPS (x, y) of the vertebral body axis, mm.
    vertebra_radius : float
        Radius of the vertebral bodies, mm.
    bladder_activity : float
        Bladder concentration relative to liver.
    organ_activity : dict
        Concentration relative to liver per tissue (patient-specific).
    """

    scale: float
    l2: np.ndarray
    outline: np.ndarray
    shapes: tuple
    vertebrae: np.ndarray
    spine_xy: tuple
    vertebra_radius: float
    organ_activity: dict = field(default_factory=dict)


def body_scale(age_months: float) -> float:
    """Linear body size relative to a 5-year-old: height(age) / 110 cm.

    Height follows ``50 + 25·(age/12)^0.544`` cm (56 cm at 1 month, 75 cm at 1 year, 110 cm at 5 years,
    130 cm at 8.5 years), close to WHO growth-chart medians.
    """
    return (50.0 + 25.0 * (float(age_months) / 12.0) ** 0.544) / 110.0


def make_body(rng: np.random.Generator, age_months: float, *, offset_mm=(0.0, 0.0, 0.0),
              metastases: int = 0) -> Body:
    """Draw one child's anatomy.

    Parameters
    ----------
    rng : numpy.random.Generator
    age_months : float
        Age; sets the size (see :func:`body_scale`).
    offset_mm : sequence of 3 float
        LPS position of the L2 vertebral body centre (the scanner's coordinates of the patient).
    metastases : int
        Number of bone / bone-marrow metastatic foci (0 for none).

    Returns
    -------
    Body
    """
    s = body_scale(age_months) * float(np.exp(rng.normal(0.0, 0.04)))
    infant = float(np.clip((24.0 - age_months) / 24.0, 0.0, 1.0))
    o = np.asarray(offset_mm, dtype=float)
    j = lambda sd=0.06: float(np.exp(rng.normal(0.0, sd)))  # noqa: E731 - small size jitter

    # Body cross-sections (reference mm for a 5-year-old, z relative to L2); infants are rounder.
    belly = 1.0 + 0.12 * infant
    prof = np.array([
        [-200, 80, 60, 0], [-150, 95, 66, 0], [-60, 100, 70 * belly, -4], [60, 100, 72 * belly, -6],
        [120, 104, 74, -4], [220, 108, 72, 0], [245, 70, 55, 4], [265, 38, 40, 8], [300, 40, 42, 10],
        [330, 70, 80, -4], [380, 75, 88, -2], [440, 60, 70, 0], [460, 10, 10, 0],
    ], dtype=float)
    prof[:, :3] *= s
    prof[:, 1] *= j(0.05)
    prof[:, 2] *= j(0.05)
    prof[:, 3] *= s
    prof[:, 0] += o[2]

    def E(tissue, c, r, sd=0.06):  # noqa: N802 - short local constructor
        c = o + s * np.asarray(c, float)
        r = s * np.asarray(r, float) * np.array([j(sd), j(sd), j(sd)])
        return Ellipsoid(tissue, tuple(c), tuple(r))

    liver_boost = 1.0 + 0.15 * infant
    shapes = [
        E("lung", (-50, 5, 175), (42, 52, 62)), E("lung", (50, 5, 175), (42, 52, 62)),
        E("heart", (12, -18, 165), (40, 36, 40)),
        E("vessel", (6, 12, 60), (7, 7, 140), 0.02),
        E("liver", (-42, -4, 72), tuple(np.array([56, 52, 50]) * liver_boost)),
        E("liver", (14, -26, 88), tuple(np.array([38, 24, 26]) * liver_boost)),
        E("spleen", (62, 26, 74), (22, 18, 34)),
        E("kidney", (-52, 40, -4), (16, 15, 36)), E("kidney", (52, 40, 6), (16, 15, 36)),
        E("adrenal", (-36, 24, 42), (8, 5, 10)), E("adrenal", (34, 24, 50), (8, 5, 10)),
        E("bowel", (0, -30, -40), (62, 28, 40), 0.1),
        E("bladder", (0, -26, -135), tuple(np.array([28, 22, 22]) * rng.uniform(0.6, 1.2))),
        E("muscle", (-22, 20, -30), (11, 11, 90)), E("muscle", (22, 20, -30), (11, 11, 90)),  # psoas
        E("muscle", (-27, 52, 0), (16, 13, 160)), E("muscle", (27, 52, 0), (16, 13, 160)),  # erector spinae
        E("cortical_bone", (-62, 30, -92), (10, 34, 40)), E("cortical_bone", (62, 30, -92), (10, 34, 40)),
        E("cortical_bone", (0, 48, -128), (30, 14, 34)),  # sacrum
        E("cortical_bone", (-58, 0, -165), (17, 17, 17)), E("cortical_bone", (58, 0, -165), (17, 17, 17)),
        E("thyroid", (0, -22, 262), (16, 7, 12)),
        E("salivary", (-46, 8, 305), (12, 12, 17)), E("salivary", (46, 8, 305), (12, 12, 17)),
        E("salivary", (-30, -22, 282), (10, 9, 8)), E("salivary", (30, -22, 282), (10, 9, 8)),
        E("brain", (0, 4, 385), (64, 76, 62)),
    ]
    # Vertebral bodies from the sacrum to C7 (L2 at z = 0), 18 mm bodies + 4 mm discs at age 5.
    levels = np.arange(-4, 13)  # L5 .. T1 approx, relative to L2
    vertebrae = np.stack([o[2] + s * 22.0 * levels, np.full(levels.size, s * 9.0)], axis=1)
    spine_xy = (float(o[0]), float(o[1] + s * 30.0))
    vr = float(s * 12.0)

    # Metastatic foci in the marrow of spine, pelvis and femora (bone/bone-marrow metastasis).
    for _ in range(int(metastases)):
        where = rng.random()
        if where < 0.5:
            v = vertebrae[rng.integers(len(vertebrae))]
            c = np.array([spine_xy[0] + rng.normal(0, 0.3) * vr, spine_xy[1] + rng.normal(0, 0.3) * vr, v[0]])
        elif where < 0.8:
            side = rng.choice([-1.0, 1.0])
            c = o + s * np.array([side * 62, 30 + rng.normal(0, 12), -92 + rng.normal(0, 18)])
        else:
            side = rng.choice([-1.0, 1.0])
            c = o + s * np.array([side * 58, 0, -165 + rng.normal(0, 8)])
        r = rng.uniform(5.0, 10.0) * np.ones(3)
        shapes.append(Ellipsoid("bone_metastasis", tuple(c), tuple(r)))

    activity = {
        "liver": 1.0,
        "heart": float(rng.uniform(0.55, 0.95)),
        "salivary": float(rng.uniform(1.0, 2.0)),
        "bladder": float(rng.uniform(2.0, 5.0)),
        "kidney": float(rng.uniform(0.2, 0.4)),
        "spleen": float(rng.uniform(0.35, 0.6)),
        "adrenal": float(rng.uniform(0.25, 0.5)),
        "bowel": float(rng.uniform(0.08, 0.2)),
        "thyroid": float(rng.uniform(0.05, 0.15)),
        "bone_metastasis": float(rng.uniform(1.2, 3.0)),
        "brain": 0.05,
        "vessel": 0.12,
    }
    return Body(scale=s, l2=o.copy(), outline=prof, shapes=tuple(shapes), vertebrae=vertebrae,
                spine_xy=spine_xy, vertebra_radius=vr, organ_activity=activity)


def _paint_ellipsoid(labels: np.ndarray, grid: Grid, e: Ellipsoid, code: int, inside_body: np.ndarray) -> None:
    lo, hi = grid.box_around(e.centre, e.radii)  # beyond a semi-axis, that axis' term alone exceeds 1
    if np.any(hi <= lo):
        return
    z, y, x = grid.axes()
    zz = ((z[lo[0]:hi[0]] - e.centre[2]) / e.radii[2]) ** 2
    yy = ((y[lo[1]:hi[1]] - e.centre[1]) / e.radii[1]) ** 2
    xx = ((x[lo[2]:hi[2]] - e.centre[0]) / e.radii[0]) ** 2
    m = (zz[:, None, None] + yy[None, :, None] + xx[None, None, :]) <= 1.0
    box = (slice(lo[0], hi[0]), slice(lo[1], hi[1]), slice(lo[2], hi[2]))
    m &= inside_body[box]
    np.copyto(labels[box], np.uint8(code), where=m)


def _outline_at(body: Body, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    p = body.outline
    ax = np.interp(z, p[:, 0], p[:, 1], left=0.0, right=0.0)
    ay = np.interp(z, p[:, 0], p[:, 2], left=0.0, right=0.0)
    cy = np.interp(z, p[:, 0], p[:, 3])
    return ax, ay, cy


def label_map(body: Body, grid: Grid) -> np.ndarray:
    """Tissue codes (:data:`TISSUES`) of the body on ``grid``, uint8, numpy order (z, y, x)."""
    z, y, x = grid.axes()
    ax, ay, cy = _outline_at(body, z)
    ox, oy = body.l2[0], body.l2[1]
    # The outline is evaluated over its bounding rectangle (one voxel wider); outside it, air.
    ix = np.flatnonzero(np.abs(x - ox) <= np.maximum(ax, 1e-3).max() + abs(grid.spacing[0]))
    iy = np.flatnonzero((np.abs(y[:, None] - oy - cy[None, :]) <= np.maximum(ay, 1e-3)[None, :]
                         + abs(grid.spacing[1])).any(axis=1))
    inside = np.zeros(grid.shape, dtype=bool)
    labels = np.full(grid.shape, TISSUES["air"], dtype=np.uint8)
    if ix.size and iy.size:
        xs, ys = slice(ix[0], ix[-1] + 1), slice(iy.min(), iy.max() + 1)
        dx = (x[None, None, xs] - ox) / np.maximum(ax, 1e-3)[:, None, None]
        dy = (y[None, ys, None] - oy - cy[:, None, None]) / np.maximum(ay, 1e-3)[:, None, None]
        r2 = dx * dx + dy * dy
        inside[:, ys, xs] = r2 <= 1.0
        fat_depth = 1.0 - 5.0 * body.scale / np.maximum(np.minimum(ax, ay), 1e-3)  # ~5 mm fat layer
        sub = np.where(inside[:, ys, xs], np.uint8(TISSUES["fat"]), np.uint8(TISSUES["air"]))
        sub[r2 <= (fat_depth[:, None, None] ** 2)] = TISSUES["soft_tissue"]
        sub[~inside[:, ys, xs]] = TISSUES["air"]
        labels[:, ys, xs] = sub
    for e in body.shapes:
        _paint_ellipsoid(labels, grid, e, TISSUES[e.tissue], inside)
    # Spine: vertebral bodies (cortex + marrow) and the spinal canal behind them.
    sx0, sy0 = body.spine_xy
    rr = (x[None, :] - sx0) ** 2 + (y[:, None] - sy0) ** 2
    canal = (x[None, :] - sx0) ** 2 + (y[:, None] - (sy0 + 1.55 * body.vertebra_radius)) ** 2
    for zc, half in body.vertebrae:
        k = np.flatnonzero(np.abs(z - zc) <= half)
        if k.size:
            sl = labels[k]
            sl[:, rr <= body.vertebra_radius**2] = TISSUES["cortical_bone"]
            sl[:, rr <= (0.78 * body.vertebra_radius) ** 2] = TISSUES["marrow"]
            labels[k] = sl
    kz = np.flatnonzero((z >= body.vertebrae[:, 0].min() - 12 * body.scale) & inside.any(axis=(1, 2)))
    if kz.size:
        sl = labels[kz]
        sl[:, canal <= (0.45 * body.vertebra_radius) ** 2] = TISSUES["csf"]
        labels[kz] = sl
    for e in body.shapes:  # metastases live inside bone: paint them last
        if e.tissue == "bone_metastasis":
            _paint_ellipsoid(labels, grid, e, TISSUES["bone_metastasis"], inside)
    return labels


def activity_tables(body: Body) -> tuple[np.ndarray, np.ndarray]:
    """Look-up tables from tissue code to activity concentration (relative units).

    Returns
    -------
    liver_table, muscle_table : ndarray, shape (256,), float32
        Concentration per tissue code relative to the liver (organs) and relative to skeletal
        muscle (soft tissue background); the SPECT expectation is
        ``c_liver·liver_table[labels] + c_muscle·muscle_table[labels]`` before blur.
    """
    liver = np.zeros(256, np.float32)
    muscle = np.zeros(256, np.float32)
    for name, value in body.organ_activity.items():
        liver[TISSUES[name]] = value
    muscle[TISSUES["muscle"]] = 1.0
    muscle[TISSUES["soft_tissue"]] = 0.75
    muscle[TISSUES["fat"]] = 0.3
    muscle[TISSUES["lung"]] = 0.25
    muscle[TISSUES["marrow"]] = 0.35
    muscle[TISSUES["cortical_bone"]] = 0.15
    muscle[TISSUES["csf"]] = 0.1
    return liver, muscle


_HU = {
    "air": -1000, "fat": -95, "soft_tissue": 35, "muscle": 48, "liver": 58, "spleen": 50, "kidney": 32,
    "heart": 42, "lung": -820, "bladder": 8, "cortical_bone": 650, "marrow": 210, "salivary": 40,
    "bowel": 25, "adrenal": 30, "csf": 10, "brain": 32, "bone_metastasis": 120, "tumour": 38,
    "calcification": 420, "necrosis": 18, "gas": -900, "thyroid": 90, "vessel": 42,
}


def ct_numbers(labels: np.ndarray, rng: np.random.Generator, *, noise_hu: float = 18.0) -> np.ndarray:
    """CT numbers (HU, int16) for a label map, with quantum noise of ``noise_hu`` (SD).

    Each voxel holds ``rint(HU + SD * z)``, clipped to -1024..3071, with ``HU`` and ``SD`` its tissue's
    (:data:`_HU`; outside the body the reconstruction's smoother background, SD 6 HU) and ``z`` a
    standard normal drawn by inverse transform: 16 random bits ``u`` per voxel pick
    ``z = Φ⁻¹((u + ½) / 65536)`` (the normal truncated at ±4.3 SD, quantiles 0.01 HU apart at the
    centre). The rounded values of every tissue are tabulated once, so a voxel costs one draw and
    one table look-up (a float normal draw and its arithmetic took three times as long).

    The scanner reconstructs the circle inscribed in each axial slice (the Reconstruction Diameter
    is the matrix width): outside it, where there is only air, the image holds -1024 HU without
    noise, as Siemens CT images do. Columns (``y, x``) that hold body anywhere are reconstructed
    whatever their position.
    """
    from scipy.special import ndtri

    labels = np.asarray(labels, dtype=np.uint8)
    n_codes = int(labels.max()) + 1
    hu = np.full(n_codes, -1000.0)
    for name, value in _HU.items():
        if TISSUES[name] < n_codes:
            hu[TISSUES[name]] = value
    sd = np.full(n_codes, float(noise_hu))
    sd[TISSUES["air"]] = 6.0
    z = ndtri((np.arange(65536) + 0.5) / 65536.0)
    table = np.clip(np.rint(hu[:, None] + sd[:, None] * z[None, :]), -1024, 3071).astype(np.int16).ravel()
    index = labels.astype(np.uint32)
    index <<= 16
    index |= rng.integers(0, 65536, labels.shape, dtype=np.uint16)
    out = table[index]
    ny, nx = labels.shape[1:]
    v = (np.arange(ny) - (ny - 1) / 2.0) / (ny / 2.0)
    u = (np.arange(nx) - (nx - 1) / 2.0) / (nx / 2.0)
    columns = (v[:, None] ** 2 + u[None, :] ** 2 <= 1.0) | (labels != TISSUES["air"]).any(axis=0)
    np.copyto(out, np.int16(-1024), where=~columns)
    return out


def reference_centres(body: Body, tumour_points_mm: np.ndarray | None = None, *,
                      inside_fov=None) -> dict[str, np.ndarray]:
    """Where an analyst puts the three reference spheres (LPS mm).

    The liver sphere (30 ml, r = 19.3 mm) goes in the right lobe, at the candidate point deepest
    inside the liver that keeps at least 20 mm between the sphere and the tumour; the muscle spheres
    (10 ml, r = 13.4 mm) go left and right of the L2 vertebral body, in the paraspinal/psoas muscle,
    moved one or two vertebrae up or down when the tumour crowds the L2 level.

    Parameters
    ----------
    body : Body
    tumour_points_mm : ndarray, shape (n, 3), optional
        LPS points of the tumour to keep clear of.
    inside_fov : callable, optional
        ``f(centre, radius) -> bool``: whether a sphere lies inside the field of view.

    Returns
    -------
    dict
        ``liver``, ``muscle_left``, ``muscle_right``: LPS centres in mm.
    """
    s = body.scale
    l2 = body.l2

    tree = None
    if tumour_points_mm is not None and len(tumour_points_mm):
        from scipy.spatial import cKDTree

        tree = cKDTree(np.asarray(tumour_points_mm, float))

    def clearance(points, radius):
        if tree is None:
            return np.full(len(points), np.inf)
        return tree.query(points)[0] - radius

    livers = [e for e in body.shapes if e.tissue == "liver"]
    lo = np.min([np.asarray(e.centre) - np.asarray(e.radii) for e in livers], axis=0)
    hi = np.max([np.asarray(e.centre) + np.asarray(e.radii) for e in livers], axis=0)
    axes = [np.arange(a, b, 5.0) for a, b in zip(lo, hi)]
    cand = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    cand = cand[liver_depth(body, cand) > 10.0]
    # Prefer the right lobe (an analyst's habit): a small bonus for positions right of the midline.
    cand = cand[np.argsort(cand[:, 0], kind="stable")]
    score = np.minimum(liver_depth(body, cand) - 19.28, clearance(cand, 19.28) - 20.0)
    score = np.minimum(score, 8.0) - 0.02 * (cand[:, 0] - l2[0])
    if inside_fov is not None:
        score = np.where([inside_fov(c, 19.28) for c in cand], score, score - 1e3)
    liver = cand[int(np.argmax(score))]
    dx = body.vertebra_radius + 0.6 * 13.37 + 2.0
    y = body.spine_xy[1] + 0.45 * body.vertebra_radius
    step = 22.0 * s
    out = {"liver": liver}
    for name, sign in (("muscle_left", 1.0), ("muscle_right", -1.0)):
        base = np.array([body.spine_xy[0] + sign * dx, y, l2[2]])
        options = np.array([base + np.array([0.0, 0.0, k * step]) for k in (0, -1, 1, -2, 2)])
        room = clearance(options, 13.37)
        ok = room >= 15.0
        if inside_fov is not None:
            ok &= np.array([inside_fov(c, 13.37) for c in options])
        out[name] = options[int(np.argmax(ok))] if ok.any() else options[int(np.argmax(room))]
    return out


def liver_depth(body: Body, points: np.ndarray) -> np.ndarray:
    """Approximate depth (mm) of points inside the union of the liver ellipsoids (negative outside)."""
    best = np.full(len(points), -np.inf)
    for e in body.shapes:
        if e.tissue != "liver":
            continue
        r = np.asarray(e.radii)
        rho = np.sqrt((((points - np.asarray(e.centre)) / r) ** 2).sum(axis=1))
        best = np.maximum(best, (1.0 - rho) * r.min())
    return best

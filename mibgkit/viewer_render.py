"""What the live viewer draws: slices, contours, spheres, the MIP and the numbers panel, as plain functions.

:class:`mibgkit.viewer.PatientViewer` holds the state (which patient, which slice, where the spheres
are); this module turns arrays into pictures and numbers into text. Every function takes arrays,
images and parameters and returns an array, a PIL image, bytes or a string; nothing here keeps
state or feeds back into a number.

Display conventions: slices are shown as a radiologist reads them (patient's right on the left of
axial and coronal views, anterior on the left of the sagittal view, superior at the top), on the
SPECT voxel lattice reoriented to the nearest LPS axes (:class:`DisplayGrid`); coordinates are LPS mm.
SPECT is drawn in matplotlib's ``hot`` colour map (a look-up table) over the CT in grey, the SPECT's
opacity rising from 0 to ``opacity`` over its lowest 40 of 255 display levels; the ROI contour is
cyan, the MTV contour green, and each reference sphere a circle where it cuts the slice (radius
``sqrt(r² - d²)`` for a sphere of radius ``r`` whose centre is ``d`` mm from the slice).
Rendering uses numpy and Pillow; a matplotlib figure per update would be about ten times too slow
for a slider.
"""

from __future__ import annotations

import base64
import html
import io as _io
import itertools
import math
from collections.abc import Mapping, Sequence

import numpy as np
import SimpleITK as sitk
from matplotlib import colormaps
from PIL import Image, ImageDraw, ImageFont

from .geometry import index_to_lps, lps_to_index
from .segment import DEFAULT_FRACTIONS
from .voi import SPHERE_VOLUMES_ML, sphere_radius_mm

__all__ = ["NUMBER_ROWS", "format_number", "DisplayGrid", "DisplayVolumes", "VIEWS", "COLOURS", "LIVE_PX",
           "STATIC_PX", "spect_display", "ct_display", "take_slice", "mask_edge", "encode_png", "mm_per_pixel",
           "to_pixels", "from_pixels", "view_size", "draw_mask_edges", "spect_over_ct", "render_slice",
           "render_mip", "panels", "view_title", "blank_view", "legend_html", "static_html", "number_rows",
           "qc_notes", "numbers_html", "static_composite"]

#: The numbers panel: feature column, label, format.
NUMBER_ROWS = (
    ("tmax", "Tmax", "{:.5g}"),
    ("tmean", "Tmean", "{:.5g}"),
    ("lmax", "Lmax", "{:.5g}"),
    ("lmean", "Lmean", "{:.5g}"),
    ("mmax", "Mmax", "{:.5g}"),
    ("mmean", "Mmean", "{:.5g}"),
    ("tmax_lmax", "Tmax/Lmax", "{:.4f}"),
    ("tmean_lmean", "Tmean/Lmean", "{:.4f}"),
    ("tmax_lmean", "Tmax/Lmean", "{:.4f}"),
    ("tmax_mmax", "Tmax/Mmax", "{:.4f}"),
    ("tmean_mmean", "Tmean/Mmean", "{:.4f}"),
    ("mtv_ml", "MTV (ml)", "{:.3f}"),
    ("asphericity", "ASP", "{:.4f}"),
    ("sphericity", "sphericity", "{:.4f}"),
    ("surface_mm2", "surface (mm²)", "{:.1f}"),
    ("max_diameter_mm", "max diameter (mm)", "{:.1f}"),
    ("mtv_threshold", "MTV threshold", "{:.5g}"),
)

#: Outline colour (RGB) of the ROI, the MTV and each reference sphere.
COLOURS = {"roi": (0, 229, 255), "mtv": (57, 255, 20), "liver": (255, 0, 255),
           "muscle_left": (255, 165, 0), "muscle_right": (100, 149, 237)}
#: The ``hot`` colour map as a 256 × 3 uint8 look-up table.
HOT = (colormaps["hot"](np.linspace(0.0, 1.0, 256))[:, :3] * 255).round().astype(np.uint8)
VIEWS = ("axial", "coronal", "sagittal")
#: Per view: the LPS axis normal to it, the axis along its rows, the axis along its columns, rows flipped.
VIEW_AXES = {"axial": (2, 1, 0, False), "coronal": (1, 2, 0, True), "sagittal": (0, 2, 1, True)}
_AXIS_NAMES = "xyz"
CT_WINDOW = (-160.0, 240.0)  # soft-tissue window, HU
LIVE_PX = 256  # longest side of a live view, pixels (shown 384 px wide: PNG encoding is the cost)
STATIC_PX = 384  # longest side of a view in to_png and the static HTML


def format_number(key: str, value) -> str:
    """A number as the panel shows it (``"—"`` when not a finite number).

    >>> format_number("asphericity", 0.386123), format_number("mtv_ml", float("nan"))
    ('0.3861', '—')
    """
    fmt = {k: f for k, _, f in NUMBER_ROWS}.get(key, "{:.5g}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "—"
    return fmt.format(v) if math.isfinite(v) else "—"


class DisplayGrid:
    """The SPECT lattice reoriented to the nearest LPS axes, for display.

    Display arrays are numpy-ordered ``[z, y, x]`` with index increasing towards patient left (x),
    posterior (y) and superior (z); ``index`` and ``point`` convert between LPS mm and continuous
    display indices ``(x, y, z)`` exactly (the reorientation is a permutation and flips).

    >>> image = sitk.Image([4, 3, 2], sitk.sitkUInt8)
    >>> image.SetDirection((-1, 0, 0, 0, 1, 0, 0, 0, 1))  # x runs towards patient right
    >>> grid = DisplayGrid(image)
    >>> grid.size, grid.index([(0.0, 0.0, 0.0)]).tolist()
    ((4, 3, 2), [[3.0, 0.0, 0.0]])
    """

    def __init__(self, image: sitk.Image):
        self.image = image
        direction = np.asarray(image.GetDirection(), float).reshape(3, 3)
        # axis[a] = the image index axis (i, j, k) that runs closest to LPS axis a
        self.axis = max(itertools.permutations(range(3)),
                        key=lambda p: sum(abs(direction[a, p[a]]) for a in range(3)))
        self.sign = tuple(1 if direction[a, self.axis[a]] >= 0 else -1 for a in range(3))
        size = np.asarray(image.GetSize())
        self.size_native = size
        self.size = tuple(int(size[self.axis[a]]) for a in range(3))  # (nx, ny, nz)
        self.spacing = tuple(float(image.GetSpacing()[self.axis[a]]) for a in range(3))

    def array(self, native_kji: np.ndarray) -> np.ndarray:
        """A native ``[k, j, i]`` array as a display ``[z, y, x]`` view (no copy)."""
        out = np.transpose(native_kji, [2 - self.axis[a] for a in (2, 1, 0)])
        flips = tuple(slice(None, None, -1) if self.sign[a] < 0 else slice(None) for a in (2, 1, 0))
        return out[flips]

    def index(self, points_mm) -> np.ndarray:
        """Continuous display indices ``(x, y, z)`` (n × 3) of LPS points (n × 3, mm)."""
        ijk = lps_to_index(self.image, points_mm)
        out = np.empty_like(ijk)
        for a in range(3):
            c = self.axis[a]
            out[:, a] = ijk[:, c] if self.sign[a] > 0 else self.size_native[c] - 1 - ijk[:, c]
        return out

    def point(self, index_xyz) -> np.ndarray:
        """LPS mm of a continuous display index ``(x, y, z)``."""
        ijk = np.empty(3)
        for a in range(3):
            c = self.axis[a]
            ijk[c] = index_xyz[a] if self.sign[a] > 0 else self.size_native[c] - 1 - index_xyz[a]
        a_mat, o = index_to_lps(self.image)
        return a_mat @ ijk + o

    def box_mask(self, box_kji: np.ndarray, start) -> np.ndarray:
        """A mask on a box of the lattice (native start index i, j, k) as a full display array."""
        full = np.zeros(tuple(int(v) for v in self.size_native[::-1]), bool)
        i, j, k = (int(v) for v in start)
        nk, nj, ni = box_kji.shape
        full[k:k + nk, j:j + nj, i:i + ni] = box_kji
        return self.array(full)

    def mask(self, mask: sitk.Image) -> np.ndarray:
        """A mask image on a box of the lattice (same spacing and direction) as a full display array."""
        start = np.rint(lps_to_index(self.image, mask.GetOrigin())[0]).astype(int)
        return self.box_mask(sitk.GetArrayViewFromImage(mask) != 0, start)


class DisplayVolumes:
    """One patient's volumes as the viewer draws them, on the SPECT's :class:`DisplayGrid`.

    ``spect_u8`` (display levels, :func:`spect_display`), ``mip_u8`` (its maximum along y, ``[z, x]``),
    ``roi`` (bool) and, once :meth:`set_ct` gave it, ``ct_u8`` (grey levels, :func:`ct_display`); all
    display arrays ``[z, y, x]`` except the MIP. ``mip_rgb`` caches the upscaled MIP per size.

    Parameters
    ----------
    spect : SimpleITK.Image
        The SPECT.
    roi_box : ndarray of bool, ``[k, j, i]``
        The ROI on a box of the SPECT lattice whose first voxel is at native index ``roi_start`` (i, j, k).
    """

    def __init__(self, spect: sitk.Image, roi_box: np.ndarray, roi_start):
        self.grid = DisplayGrid(spect)
        self.spect_u8, self.vmax = spect_display(self.grid.array(sitk.GetArrayViewFromImage(spect)))
        self.mip_u8 = self.spect_u8.max(axis=1)  # [z, x]
        self.mip_rgb: dict = {}  # rendered once per size, on first use
        self.roi = self.grid.box_mask(roi_box, roi_start)
        self.roi_centre = np.argwhere(self.roi).mean(axis=0)[::-1] if self.roi.any() else \
            (np.asarray(self.grid.size) - 1) / 2.0
        self.ct_u8: np.ndarray | None = None

    def set_ct(self, ct: sitk.Image) -> None:
        """Resample a CT (linear, -1024 HU outside it) onto the SPECT lattice and keep its grey levels."""
        on_spect = sitk.Resample(sitk.Cast(ct, sitk.sitkFloat32), self.grid.image, sitk.Transform(),
                                 sitk.sitkLinear, -1024.0, sitk.sitkFloat32)
        self.ct_u8 = ct_display(self.grid.array(sitk.GetArrayViewFromImage(on_spect)))

    def mask(self, mask: sitk.Image) -> np.ndarray:
        """A mask image on a box of the SPECT lattice as a full display array."""
        return self.grid.mask(mask)


def spect_display(vol: np.ndarray) -> tuple[np.ndarray, float]:
    """SPECT values as display levels 0..255 (uint8), full scale at the 99.9th percentile; and that scale."""
    vmax = float(np.percentile(vol, 99.9))
    vmax = vmax if vmax > 0 else float(vol.max()) or 1.0
    return np.ascontiguousarray(np.clip(vol * (255.0 / vmax), 0, 255).astype(np.uint8)), vmax


def ct_display(hu: np.ndarray, window: tuple[float, float] = CT_WINDOW) -> np.ndarray:
    """CT numbers (HU) as grey levels 0..255 (uint8) over a window ``(low, high)``."""
    lo, hi = window
    return np.ascontiguousarray(np.clip((hu - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8))


def take_slice(vol: np.ndarray, view: str, k: int) -> np.ndarray:
    """The 2-D slice ``k`` of a display volume in a view: rows top to bottom, columns left to right."""
    normal, _, _, flip = VIEW_AXES[view]
    out = np.take(vol, int(k), axis=2 - normal)
    return out[::-1] if flip else out


def mask_edge(mask: np.ndarray, width: int = 2) -> np.ndarray:
    """The pixels of a 2-D mask within ``width`` pixels (4-connected) of its outside (beyond the
    array's border counts as inside).

    >>> square = np.zeros((7, 7), bool)
    >>> square[1:6, 1:6] = True
    >>> int(mask_edge(square, 1).sum()), int(mask_edge(square, 2).sum())
    (16, 24)
    """
    inner = mask
    for _ in range(width):
        e = inner.copy()
        e[1:, :] &= inner[:-1, :]
        e[:-1, :] &= inner[1:, :]
        e[:, 1:] &= inner[:, :-1]
        e[:, :-1] &= inner[:, 1:]
        inner = e
    return mask & ~inner


def _font(size: int):
    """Pillow's built-in font at ``size`` points (its fixed-size bitmap font without FreeType)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):
        return ImageFont.load_default()


def encode_png(image: Image.Image) -> bytes:
    """Fast PNG for the live views (zlib level 1, run-length strategy: about 20 KB a view)."""
    buf = _io.BytesIO()
    image.save(buf, format="PNG", compress_level=1, compress_type=3)
    return buf.getvalue()


# ----------------------------------------------------------------------------------------
# pixels and millimetres


def mm_per_pixel(grid: DisplayGrid, px: int) -> float:
    """Display millimetres per pixel when the longest side of the lattice is ``px`` pixels."""
    extent = max(n * s for n, s in zip(grid.size, grid.spacing))
    return extent / px


def to_pixels(grid: DisplayGrid, view: str, index_xyz, mm: float) -> tuple[float, float]:
    """Pixel (column, row) in a rendered view of a continuous display index (x, y, z)."""
    _, r_ax, c_ax, flip = VIEW_AXES[view]
    row = index_xyz[r_ax]
    if flip:
        row = grid.size[r_ax] - 1 - row
    return ((index_xyz[c_ax] + 0.5) * grid.spacing[c_ax] / mm,
            (row + 0.5) * grid.spacing[r_ax] / mm)


def from_pixels(grid: DisplayGrid, view: str, col: float, row: float, depth: float, mm: float) -> np.ndarray:
    """Continuous display index (x, y, z) of a pixel of a view at slice ``depth``."""
    normal, r_ax, c_ax, flip = VIEW_AXES[view]
    out = np.zeros(3)
    out[c_ax] = col * mm / grid.spacing[c_ax] - 0.5
    r = row * mm / grid.spacing[r_ax] - 0.5
    out[r_ax] = grid.size[r_ax] - 1 - r if flip else r
    out[normal] = depth
    return out


def view_size(grid: DisplayGrid, view: str, mm: float) -> tuple[int, int]:
    """(width, height) in pixels of a rendered view at ``mm`` millimetres per pixel."""
    _, r_ax, c_ax, _ = VIEW_AXES[view]
    return (max(1, round(grid.size[c_ax] * grid.spacing[c_ax] / mm)),
            max(1, round(grid.size[r_ax] * grid.spacing[r_ax] / mm)))


# ----------------------------------------------------------------------------------------
# images


def draw_mask_edges(rgb: np.ndarray, layers) -> np.ndarray:
    """Outline 2-D masks (on the slice's voxels) on an upscaled image, in place.

    ``layers`` is a sequence of ``(mask, colour)``; a mask may be None (nothing drawn).
    """
    fy, fx = rgb.shape[0] / layers[0][0].shape[0], rgb.shape[1] / layers[0][0].shape[1]
    for mask, colour in layers:
        if mask is None or not mask.any():
            continue
        rows, cols = np.nonzero(mask)
        r0, r1 = max(rows.min() - 1, 0), min(rows.max() + 2, mask.shape[0])
        c0, c1 = max(cols.min() - 1, 0), min(cols.max() + 2, mask.shape[1])
        y0, y1 = round(r0 * fy), round(r1 * fy)
        x0, x1 = round(c0 * fx), round(c1 * fx)
        part = Image.fromarray(mask[r0:r1, c0:c1].astype(np.uint8) * 255).resize((x1 - x0, y1 - y0), Image.NEAREST)
        rgb[y0:y1, x0:x1][mask_edge(np.asarray(part) > 0)] = colour
    return rgb


def spect_over_ct(spect: np.ndarray, ct: np.ndarray | None, opacity: float) -> np.ndarray:
    """A SPECT slice (display levels) in ``hot`` over a CT slice (grey levels), as RGB uint8.

    The SPECT's weight is ``opacity × min(level, 40) / 40``, so that cold voxels show the CT; without
    a CT the SPECT alone.
    """
    hot = HOT[spect]
    if ct is None:
        return hot
    grey = ct[..., None].astype(np.float32)
    alpha = (opacity * np.minimum(spect, 40) / 40.0)[..., None].astype(np.float32)
    return (grey * (1 - alpha) + hot * alpha).astype(np.uint8)


def render_slice(vols: DisplayVolumes, view: str, k: int, *, mtv: np.ndarray | None, opacity: float,
                 centres: Mapping[str, Sequence[float]], selected: str, px: int) -> Image.Image:
    """Slice ``k`` of a view: SPECT over CT, the ROI and MTV contours, the spheres that cut it.

    ``mtv`` is a display mask (or None); ``centres`` are LPS mm by sphere name, the ``selected``
    sphere drawn thicker; the longest side of the lattice is ``px`` pixels.
    """
    grid = vols.grid
    s = take_slice(vols.spect_u8, view, k)
    rgb = spect_over_ct(s, None if vols.ct_u8 is None else take_slice(vols.ct_u8, view, k), opacity)
    mm = mm_per_pixel(grid, px)
    rgb = np.array(Image.fromarray(rgb).resize(view_size(grid, view, mm), Image.BILINEAR))
    mtv_slice = None if mtv is None else take_slice(mtv, view, k)
    rgb = draw_mask_edges(rgb, [(take_slice(vols.roi, view, k), COLOURS["roi"]), (mtv_slice, COLOURS["mtv"])])
    image = Image.fromarray(rgb)
    draw = ImageDraw.Draw(image)
    normal = VIEW_AXES[view][0]
    for sphere, centre in centres.items():
        idx = grid.index(centre)[0]
        radius = sphere_radius_mm(SPHERE_VOLUMES_ML[sphere])
        depth = (idx[normal] - k) * grid.spacing[normal]
        if abs(depth) >= radius:
            continue
        r_px = math.sqrt(radius**2 - depth**2) / mm
        u, v = to_pixels(grid, view, idx, mm)
        width = 3 if sphere == selected else 1
        draw.ellipse((u - r_px, v - r_px, u + r_px, v + r_px), outline=COLOURS[sphere], width=width)
    return image


def render_mip(vols: DisplayVolumes, *, mtv: np.ndarray | None, axial_k: int,
               centres: Mapping[str, Sequence[float]], px: int) -> Image.Image:
    """The coronal maximum-intensity projection with the ROI and MTV projected, the axial slice's
    level as a grey line and each sphere's full circle (the upscaled MIP is cached in ``vols``)."""
    grid = vols.grid
    mm = mm_per_pixel(grid, px)
    size = view_size(grid, "coronal", mm)
    if size not in vols.mip_rgb:
        vols.mip_rgb[size] = np.array(Image.fromarray(HOT[vols.mip_u8[::-1]]).resize(size, Image.BILINEAR))
    rgb = vols.mip_rgb[size].copy()
    mtv_mip = None if mtv is None else mtv.any(axis=1)[::-1]
    rgb = draw_mask_edges(rgb, [(vols.roi.any(axis=1)[::-1], COLOURS["roi"]), (mtv_mip, COLOURS["mtv"])])
    image = Image.fromarray(rgb)
    draw = ImageDraw.Draw(image)
    _, z_row = to_pixels(grid, "coronal", (0, 0, axial_k), mm)
    draw.line((0, z_row, size[0], z_row), fill=(160, 160, 160), width=1)
    for sphere, centre in centres.items():
        idx = grid.index(centre)[0]
        r_px = sphere_radius_mm(SPHERE_VOLUMES_ML[sphere]) / mm
        u, v = to_pixels(grid, "coronal", idx, mm)
        draw.ellipse((u - r_px, v - r_px, u + r_px, v + r_px), outline=COLOURS[sphere], width=1)
    return image


def panels(vols: DisplayVolumes, slices: Mapping[str, int], *, views: Sequence[str] = VIEWS, mip: bool = False,
           mtv: np.ndarray | None, opacity: float, centres: Mapping[str, Sequence[float]], selected: str,
           px: int) -> list[tuple[str, Image.Image]]:
    """(title, image) of each view at its slice (``slices[view]``) and, with ``mip``, of the coronal MIP
    (:func:`render_slice`, :func:`render_mip`)."""
    out = [(view_title(vols.grid, v, slices[v]),
            render_slice(vols, v, slices[v], mtv=mtv, opacity=opacity, centres=centres, selected=selected, px=px))
           for v in views]
    if mip:
        out.append(("coronal MIP", render_mip(vols, mtv=mtv, axial_k=slices["axial"], centres=centres, px=px)))
    return out


def view_title(grid: DisplayGrid, view: str, k: int) -> str:
    """A view's title: its name and the LPS coordinate (mm) of slice ``k``."""
    normal = VIEW_AXES[view][0]
    idx = (np.asarray(grid.size, float) - 1) / 2
    idx[normal] = k
    mm = grid.point(idx)[normal]
    return f"{view}, {_AXIS_NAMES[normal]} = {mm:.1f} mm"


def legend_html() -> str:
    """The colour key of the contours and spheres, as HTML."""
    return " ".join(
        f'<span style="color:rgb{COLOURS[k]};font-weight:bold">■</span> {html.escape(label)}'
        for k, label in (("roi", "ROI"), ("mtv", "MTV"), ("liver", "liver sphere"),
                         ("muscle_left", "muscle left"), ("muscle_right", "muscle right")))


def blank_view(px: int) -> Image.Image:
    """A black ``px`` × ``px`` view (no patient loaded)."""
    return Image.new("RGB", (px, px))


# ----------------------------------------------------------------------------------------
# the numbers


def number_rows(features: Mapping, patient_id: str, mtv_method: str,
                mtv_fraction: float | None) -> list[tuple[str, str, str]]:
    """The numbers panel's rows ``(key, label, text)``: patient, MTV definition, :data:`NUMBER_ROWS`.

    >>> for row in number_rows({"tmax": 812.0}, "NB001", "percent_max", None)[:3]:
    ...     print(row)
    ('patient_id', 'patient', 'NB001')
    ('mtv_method', 'MTV method', 'percent_max (0.4, default)')
    ('tmax', 'Tmax', '812')
    """
    rows = [("patient_id", "patient", patient_id)]
    method = mtv_method
    if method != "roi":
        frac = mtv_fraction if mtv_fraction is not None else DEFAULT_FRACTIONS[method]
        method += f" ({frac:g}{'' if mtv_fraction is not None else ', default'})"
    rows.append(("mtv_method", "MTV method", method))
    for key, label, _ in NUMBER_ROWS:
        if key == "mtv_threshold" and mtv_method == "roi":
            continue
        rows.append((key, label, format_number(key, features.get(key, math.nan))))
    if features.get("uptake_unit"):
        rows.append(("uptake_unit", "uptake unit", str(features["uptake_unit"])))
    return rows


def qc_notes(features: Mapping, ct_note: str = "") -> list[str]:
    """The QC warnings shown: the feature row's ``qc_warnings``, then why the CT is not shown (if so)."""
    notes = [w for w in str(features.get("qc_warnings", "") or "").split("; ") if w]
    if ct_note and ct_note != "no CT in the manifest":
        notes.append(ct_note)
    return notes


def numbers_html(rows: Sequence[tuple[str, str, str]], error: str, notes: Sequence[str]) -> str:
    """The numbers panel as HTML (every value escaped)."""
    cells = "".join(
        f'<tr><th style="text-align:left;padding-right:1em">{html.escape(label)}</th>'
        f'<td data-key="{html.escape(key)}" style="text-align:right">{html.escape(value)}</td></tr>'
        for key, label, value in rows)
    parts = [f'<table class="mibgkit-numbers">{cells}</table>']
    if error:
        parts.append(f'<p data-key="error" style="color:#b00020"><b>Not measured:</b> '
                     f'{html.escape(error)}</p>')
    if notes:
        items = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
        parts.append(f'<div data-key="qc_warnings"><b>QC warnings</b><ul>{items}</ul></div>')
    else:
        parts.append('<div data-key="qc_warnings"><b>QC warnings:</b> none</div>')
    return "".join(parts)


def static_html(png: bytes, patient_id: str, numbers: str) -> str:
    """The static view for pages without a kernel: the PNG (base64) and the numbers panel's HTML."""
    data = base64.b64encode(png).decode("ascii")
    alt = html.escape(f"patient {patient_id}: axial, coronal, sagittal slices and coronal MIP")
    return (f'<div class="mibgkit-viewer-static"><img src="data:image/png;base64,{data}" alt="{alt}" '
            f'style="max-width:100%"/>{numbers}</div>')


def static_composite(panels: Sequence[tuple[str, Image.Image]], rows: Sequence[tuple[str, str, str]],
                     error: str, notes: Sequence[str]) -> Image.Image:
    """One image of the current view: the titled panels side by side, the numbers in four columns
    below, then the measurement error (if any) and the QC warnings (``to_png`` and the static HTML)."""
    font, small = _font(14), _font(13)
    gap, title_h = 8, 22
    width = sum(p.width for _, p in panels) + gap * (len(panels) + 1)
    height_img = max(p.height for _, p in panels)
    lines = [f"{label.replace('²', '2')}: {value}" for _, label, value in rows]
    per_col = math.ceil(len(lines) / 4)
    text_h = 18 * per_col + 10
    extra = ([f"Not measured: {error}"] if error else []) + (
        [f"QC: {n}" for n in notes] if notes else ["QC warnings: none"])
    height = gap + title_h + height_img + gap + text_h + 18 * len(extra) + gap
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    x = gap
    for title, panel in panels:
        draw.text((x, gap), title, fill=(0, 0, 0), font=font)
        canvas.paste(panel, (x, gap + title_h))
        x += panel.width + gap
    y0 = gap + title_h + height_img + gap
    col_w = (width - 2 * gap) // 4
    for n, line in enumerate(lines):
        draw.text((gap + (n // per_col) * col_w, y0 + 18 * (n % per_col)), line, fill=(0, 0, 0), font=small)
    y = y0 + text_h
    for line in extra:
        draw.text((gap, y), line[:200], fill=(176, 0, 32) if line.startswith(("QC:", "Not")) else (0, 0, 0),
                  font=small)
        y += 18
    return canvas

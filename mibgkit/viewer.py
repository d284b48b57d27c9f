"""The live viewer: one patient's SPECT/CT with the tumour ROI, the MTV and the reference spheres,
beside the numbers ``mibgkit extract`` gives for what is on screen.

:class:`PatientViewer` shows axial, coronal and sagittal slices (SPECT in a hot colour map over the
CT in grey, with an opacity slider), a coronal maximum-intensity projection (MIP), the ROI contour
(cyan), the MTV contour (green) and the three reference spheres drawn as circles where they cut each
slice; a panel lists Tmax, Lmax, Mmax, the ratios, the MTV volume, ASP and the QC warnings. Changing
the MTV definition or moving a sphere re-measures at once.

Every number comes from :meth:`mibgkit.features.PatientData.measure`, the function behind
``mibgkit extract``, so the viewer's numbers are extraction's numbers for the same inputs and
parameters (the QC warnings too: they are the feature row's ``qc_warnings``). The images are for
display only: the CT is resampled (linear) onto the SPECT grid in a background thread, so the first
view appears before the CT is read; nothing the viewer draws feeds back into a number.

Why ipywidgets
--------------
The viewer is an :class:`ipywidgets.VBox` of standard widgets: they render in JupyterLab 4 and in
Voilà with the widget JavaScript those packages already ship, so there is no front-end code to build
or install, and the same object works in a notebook, in a Voilà app and headless (tests, the latency
benchmark). Images travel to the browser as PNG bytes in :class:`ipywidgets.Image` widgets, rendered
with numpy, matplotlib's colour maps (as look-up tables) and Pillow; a matplotlib figure per update
would be about ten times too slow for a slider. Clicking on the axial view to place the selected
sphere needs the optional ``ipyevents`` package; the arrow buttons work everywhere.

Display conventions: slices are shown as a radiologist reads them (patient's right on the left of
axial and coronal views, anterior on the left of the sagittal view, superior at the top), on the
SPECT voxel lattice reoriented to the nearest LPS axes; coordinates are LPS mm.

Outside a kernel (nbconvert HTML of a notebook saved without widget state) the widget's place shows
a static view instead: :meth:`PatientViewer.to_png`'s image and the numbers table
(``_repr_mimebundle_`` adds ``text/html``).
"""

from __future__ import annotations

import base64
import html
import io as _io
import itertools
import math
import os
import threading
import warnings
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Mapping, Sequence

import ipywidgets as widgets
import numpy as np
import pandas as pd
import SimpleITK as sitk
import traitlets
from matplotlib import colormaps
from PIL import Image, ImageDraw, ImageFont

from . import io as mio
from .errors import InputError, MibgkitError, OutputError, QCWarning, first_line
from .features import SPHERES, PatientData
from .geometry import index_to_lps, lps_to_index
from .manifest import read_manifest
from .outputs import atomic_path, write_bytes
from .review import REVIEW_CHOICES, REVIEW_FILE, read_review, review_path_for, set_review
from .segment import MTV_METHODS
from .slicer_write import write_markups
from .voi import SPHERE_VOLUMES_ML, sphere_radius_mm

__all__ = ["PatientViewer", "NUMBER_ROWS", "format_number", "DEFAULT_FRACTIONS"]

#: The threshold fraction each MTV method uses when none is given (:func:`mibgkit.segment.mtv_mask`).
DEFAULT_FRACTIONS = {"percent_max": 0.40, "adaptive": 0.50}

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

_LABELS = {"liver": "liver", "muscle_left": "muscle left", "muscle_right": "muscle right"}
_COLOURS = {"roi": (0, 229, 255), "mtv": (57, 255, 20), "liver": (255, 0, 255),
            "muscle_left": (255, 165, 0), "muscle_right": (100, 149, 237)}
_HOT = (colormaps["hot"](np.linspace(0.0, 1.0, 256))[:, :3] * 255).round().astype(np.uint8)
_VIEWS = ("axial", "coronal", "sagittal")
#: Per view: the LPS axis normal to it, the axis along its rows, the axis along its columns, rows flipped.
_VIEW_AXES = {"axial": (2, 1, 0, False), "coronal": (1, 2, 0, True), "sagittal": (0, 2, 1, True)}
_AXIS_NAMES = "xyz"
_CT_WINDOW = (-160.0, 240.0)  # soft-tissue window, HU
_LIVE_PX = 256  # longest side of a live view, pixels (shown 384 px wide: PNG encoding is the cost)
_STATIC_PX = 384  # longest side of a view in to_png and the static HTML
_CACHE = 3  # patients kept in memory (images, CT)


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


class _PointMM(traitlets.TraitType):
    """Three finite numbers, LPS mm, stored as a tuple of floats."""

    info_text = "a sequence of 3 finite numbers (LPS mm)"
    default_value = (math.nan, math.nan, math.nan)

    def validate(self, obj, value):
        try:
            point = tuple(float(v) for v in value)
        except (TypeError, ValueError):
            self.error(obj, value)
        if len(point) != 3 or not all(math.isfinite(v) for v in point):
            self.error(obj, value)
        return point


class _DisplayGrid:
    """The SPECT lattice reoriented to the nearest LPS axes, for display.

    Display arrays are numpy-ordered ``[z, y, x]`` with index increasing towards patient left (x),
    posterior (y) and superior (z); ``index`` and ``point`` convert between LPS mm and continuous
    display indices ``(x, y, z)`` exactly (the reorientation is a permutation and flips).
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


class _Patient:
    """What the viewer keeps per patient: the measured data and the display volumes."""

    def __init__(self, data: PatientData):
        self.data = data
        self.grid = _DisplayGrid(data.spect)
        vol = self.grid.array(sitk.GetArrayViewFromImage(data.spect))
        vmax = float(np.percentile(vol, 99.9))
        vmax = vmax if vmax > 0 else float(vol.max()) or 1.0
        self.vmax = vmax
        self.spect_u8 = np.ascontiguousarray(np.clip(vol * (255.0 / vmax), 0, 255).astype(np.uint8))
        self.mip_u8 = self.spect_u8.max(axis=1)  # [z, x]
        self.mip_rgb: dict = {}  # rendered once per size, on first use
        box, start, _ = data.roi_box((0, 0, 0))
        self.roi = self._full(sitk.GetArrayViewFromImage(box) != 0, start)
        self.roi_centre = np.argwhere(self.roi).mean(axis=0)[::-1] if self.roi.any() else \
            (np.asarray(self.grid.size) - 1) / 2.0
        self.ct_u8: np.ndarray | None = None
        self.ct_note = ""
        self.ct_done = threading.Event()

    def _full(self, box_kji: np.ndarray, start) -> np.ndarray:
        """A mask on a box of the SPECT lattice (native start index i, j, k) as a full display array."""
        full = np.zeros(tuple(int(v) for v in self.grid.size_native[::-1]), bool)
        i, j, k = (int(v) for v in start)
        nk, nj, ni = box_kji.shape
        full[k:k + nk, j:j + nj, i:i + ni] = box_kji
        return self.grid.array(full)

    def mask_on_display(self, mask: sitk.Image) -> np.ndarray:
        start = np.rint(lps_to_index(self.data.spect, mask.GetOrigin())[0]).astype(int)
        return self._full(sitk.GetArrayViewFromImage(mask) != 0, start)


def _slice(vol: np.ndarray, view: str, k: int) -> np.ndarray:
    """The 2-D slice ``k`` of a display volume in a view: rows top to bottom, columns left to right."""
    normal, _, _, flip = _VIEW_AXES[view]
    out = np.take(vol, int(k), axis=2 - normal)
    return out[::-1] if flip else out


def _edge(mask: np.ndarray, width: int = 2) -> np.ndarray:
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


def _png(image: Image.Image) -> bytes:
    """Fast PNG for the live views (zlib level 1, run-length strategy: about 20 KB a view)."""
    buf = _io.BytesIO()
    image.save(buf, format="PNG", compress_level=1, compress_type=3)
    return buf.getvalue()


#: Encodes the live views' PNGs side by side (Pillow releases the GIL while it encodes).
_ENCODER = ThreadPoolExecutor(max_workers=4, thread_name_prefix="mibgkit-viewer-png")


class PatientViewer(widgets.VBox):
    """One patient's images, ROI, MTV and reference spheres, with the numbers ``mibgkit extract`` gives.

    Parameters
    ----------
    manifest : path or DataFrame
        ``data_manifest.csv`` or a table :func:`mibgkit.manifest.read_manifest` returned.
    patient_id : str, optional
        The patient shown first (default: the manifest's first).
    mtv_method : {"roi", "percent_max", "adaptive"}
        MTV definition (:func:`mibgkit.segment.mtv_mask`); ``"roi"`` is the ROI as drawn.
    mtv_fraction : float, optional
        Threshold fraction for the threshold methods; None = the method's default
        (:data:`DEFAULT_FRACTIONS`). It is kept when the method changes.

    Attributes
    ----------
    patient_id, mtv_method, mtv_fraction : traits
        The inputs; assigning one re-measures (and, for ``patient_id``, loads that patient).
    liver_centre_mm, muscle_left_centre_mm, muscle_right_centre_mm : traits
        Sphere centres, LPS mm (3 floats); assigning one moves that sphere and re-measures. They
        start at the patient's markups (or manifest columns); a patient's moved spheres are kept
        when switching to another patient and back.
    asphericity, mtv_ml, tmax_lmax : traits, read-only
        Results, updated on every change (NaN when the measurement failed, see ``error``).
    features : trait, read-only
        The whole feature row (:func:`mibgkit.features.extract_patient`'s keys).
    error : trait, read-only
        Why the current measurement failed ("" when it did not).

    Notes
    -----
    Numbers come from :meth:`mibgkit.features.PatientData.measure` with
    ``mtv_params={"fraction": mtv_fraction}`` (none for ``"roi"`` or a default fraction) and the
    current centres, i.e. what ``mibgkit extract --mtv-method M`` computes with those parameters and
    a markups file holding those centres (:meth:`save_markups` writes one). Input files are only read.
    """

    patient_id = traitlets.Unicode()
    mtv_method = traitlets.Enum(MTV_METHODS, default_value="roi")
    mtv_fraction = traitlets.Float(None, allow_none=True)
    liver_centre_mm = _PointMM()
    muscle_left_centre_mm = _PointMM()
    muscle_right_centre_mm = _PointMM()
    asphericity = traitlets.Float(math.nan, read_only=True)
    mtv_ml = traitlets.Float(math.nan, read_only=True)
    tmax_lmax = traitlets.Float(math.nan, read_only=True)
    features = traitlets.Dict(read_only=True)
    error = traitlets.Unicode("", read_only=True)

    def __init__(self, manifest, patient_id: str | None = None, mtv_method: str = "roi",
                 mtv_fraction: float | None = None, **kwargs):
        super().__init__(**kwargs)
        self._manifest = read_manifest(manifest) if not isinstance(manifest, pd.DataFrame) else manifest
        if self._manifest.empty:
            raise InputError("the manifest has no patients")
        where = self._manifest.attrs.get("manifest")
        self.manifest_path = Path(where) if where else None
        self.review_path = review_path_for(where) if where else None
        self._ids = [str(p) for p in self._manifest.index]
        self._rows = {str(pid): row.to_dict() for pid, row in self._manifest.iterrows()}
        self._patients: OrderedDict[str, _Patient] = OrderedDict()
        self._moved: dict[str, dict] = {}
        self._current: _Patient | None = None
        self._mtv_display: np.ndarray | None = None
        self._lock = threading.RLock()
        self._quiet = 0
        self._px = _LIVE_PX
        self._threads: list[threading.Thread] = []
        self._build()
        with self._hold():
            self.mtv_method = mtv_method
            self.mtv_fraction = mtv_fraction
            self.patient_id = self._ids[0] if patient_id is None else str(patient_id)
        self._load_patient()
        self._refresh()

    # ----------------------------------------------------------------------------------------
    # traits

    @traitlets.validate("patient_id")
    def _check_patient(self, proposal):
        pid = str(proposal["value"])
        if pid not in self._rows:
            raise traitlets.TraitError(f"patient {pid!r} is not in the manifest")
        return pid

    @traitlets.validate("mtv_fraction")
    def _check_fraction(self, proposal):
        f = proposal["value"]
        if f is not None and not 0 < f < 1:
            raise traitlets.TraitError(f"mtv_fraction must be in (0, 1) or None, got {f}")
        return f

    @traitlets.observe("patient_id")
    def _on_patient(self, change):
        if self._quiet:
            return
        self._load_patient()
        self._refresh()

    @traitlets.observe("mtv_method", "mtv_fraction")
    def _on_mtv(self, change):
        self._sync_mtv_controls()
        if not self._quiet:
            self._refresh()

    @traitlets.observe("liver_centre_mm", "muscle_left_centre_mm", "muscle_right_centre_mm")
    def _on_centre(self, change):
        sphere = change["name"][: -len("_centre_mm")]
        self._moved.setdefault(self.patient_id, {})[sphere] = change["new"]
        self._sphere_readout()
        if not self._quiet:
            self._refresh()

    @contextmanager
    def _hold(self):
        self._quiet += 1
        try:
            yield
        finally:
            self._quiet -= 1

    @property
    def centres(self) -> dict[str, tuple[float, float, float]]:
        """The current sphere centres, LPS mm, by sphere name."""
        return {s: tuple(getattr(self, f"{s}_centre_mm")) for s in SPHERES}

    @property
    def mtv_params(self) -> dict | None:
        """The ``mtv_params`` extraction is given for the current MTV definition."""
        if self.mtv_method == "roi" or self.mtv_fraction is None:
            return None
        return {"fraction": float(self.mtv_fraction)}

    # ----------------------------------------------------------------------------------------
    # loading and measuring

    def _patient(self, pid: str) -> _Patient:
        if pid in self._patients:
            self._patients.move_to_end(pid)
            return self._patients[pid]
        row = self._rows[pid]
        entry = _Patient(PatientData.load(row))
        self._patients[pid] = entry
        while len(self._patients) > _CACHE:
            self._patients.popitem(last=False)
        self._start_ct(pid, row, entry)
        return entry

    def _start_ct(self, pid: str, row: Mapping, entry: _Patient) -> None:
        if not row.get("ct"):
            entry.ct_note = "no CT in the manifest"
            entry.ct_done.set()
            return

        def work():
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", QCWarning)
                    ct = mio.load_image(row["ct"], patient=pid)
                on_spect = sitk.Resample(sitk.Cast(ct, sitk.sitkFloat32), entry.data.spect, sitk.Transform(),
                                         sitk.sitkLinear, -1024.0, sitk.sitkFloat32)
                lo, hi = _CT_WINDOW
                hu = entry.grid.array(sitk.GetArrayViewFromImage(on_spect))
                entry.ct_u8 = np.ascontiguousarray(np.clip((hu - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8))
            except (MibgkitError, RuntimeError, ValueError, OSError) as e:
                entry.ct_note = f"CT not shown: {first_line(e)}"
            finally:
                entry.ct_done.set()
            if self._current is entry:
                self._render_views()

        thread = threading.Thread(target=work, name=f"mibgkit-viewer-ct-{pid}", daemon=True)
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def wait_for_ct(self, timeout: float | None = 60.0) -> bool:
        """Wait until the current patient's CT is loaded (or known to be absent); True when done."""
        entry = self._current
        return True if entry is None else entry.ct_done.wait(timeout)

    def _load_patient(self) -> None:
        pid = self.patient_id
        with self._lock:
            try:
                entry = self._patient(pid)
            except MibgkitError as e:
                self._current = None
                self._load_error = str(e)
            else:
                self._current = entry
                self._load_error = ""
                centres = {**entry.data.centres, **self._moved.get(pid, {})}
                with self._hold():
                    for s in SPHERES:
                        setattr(self, f"{s}_centre_mm", centres[s])
                    self._setup_sliders(entry)
            with self._hold():
                self._w_patient.value = pid
                i = self._ids.index(pid)
                self._w_prev.disabled = i == 0
                self._w_next.disabled = i == len(self._ids) - 1
                self._load_review_controls()

    def _refresh(self) -> None:
        """Measure with the current inputs, then update the results, the panel and every image."""
        with self._lock:
            entry = self._current
            row: dict = {}
            error = self._load_error
            self._mtv_display = None
            if entry is not None:
                masks: dict = {}
                try:
                    row = entry.data.measure(mtv_method=self.mtv_method, mtv_params=self.mtv_params,
                                             centres=self.centres, masks=masks)
                    self._mtv_display = entry.mask_on_display(masks["tumour MTV"])
                except MibgkitError as e:
                    error = str(e)
            with self.hold_trait_notifications():
                self.set_trait("features", row)
                self.set_trait("error", error)
                for name in ("asphericity", "mtv_ml", "tmax_lmax"):
                    self.set_trait(name, float(row.get(name, math.nan)))
            self._w_numbers.value = self._numbers_html()
            self._render_views(mip=True)

    # ----------------------------------------------------------------------------------------
    # drawing

    def _scale(self, entry: _Patient) -> float:
        """Display millimetres per pixel for a patient (longest side ``self._px`` pixels)."""
        extent = max(n * s for n, s in zip(entry.grid.size, entry.grid.spacing))
        return extent / self._px

    def _to_pixels(self, entry: _Patient, view: str, index_xyz) -> tuple[float, float]:
        """Pixel (column, row) in a rendered view of a continuous display index (x, y, z)."""
        _, r_ax, c_ax, flip = _VIEW_AXES[view]
        mm = self._scale(entry)
        row = index_xyz[r_ax]
        if flip:
            row = entry.grid.size[r_ax] - 1 - row
        return ((index_xyz[c_ax] + 0.5) * entry.grid.spacing[c_ax] / mm,
                (row + 0.5) * entry.grid.spacing[r_ax] / mm)

    def _from_pixels(self, entry: _Patient, view: str, col: float, row: float, depth: float) -> np.ndarray:
        """Continuous display index (x, y, z) of a pixel of a view at slice ``depth``."""
        normal, r_ax, c_ax, flip = _VIEW_AXES[view]
        mm = self._scale(entry)
        out = np.zeros(3)
        out[c_ax] = col * mm / entry.grid.spacing[c_ax] - 0.5
        r = row * mm / entry.grid.spacing[r_ax] - 0.5
        out[r_ax] = entry.grid.size[r_ax] - 1 - r if flip else r
        out[normal] = depth
        return out

    def _view_size(self, entry: _Patient, view: str) -> tuple[int, int]:
        _, r_ax, c_ax, _ = _VIEW_AXES[view]
        mm = self._scale(entry)
        return (max(1, round(entry.grid.size[c_ax] * entry.grid.spacing[c_ax] / mm)),
                max(1, round(entry.grid.size[r_ax] * entry.grid.spacing[r_ax] / mm)))

    def _draw_masks(self, rgb: np.ndarray, layers) -> np.ndarray:
        """Outline 2-D masks (on the slice's voxels) on an upscaled image, in place."""
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
            rgb[y0:y1, x0:x1][_edge(np.asarray(part) > 0)] = colour
        return rgb

    def _view_image(self, view: str) -> Image.Image:
        """The rendered view (SPECT over CT, contours, spheres) as a PIL image."""
        entry = self._current
        if entry is None:
            return Image.new("RGB", (self._px, self._px))
        k = self._w_slice[view].value
        s = _slice(entry.spect_u8, view, k)
        hot = _HOT[s]
        if entry.ct_u8 is not None:
            grey = _slice(entry.ct_u8, view, k)[..., None].astype(np.float32)
            alpha = (self._w_opacity.value * np.minimum(s, 40) / 40.0)[..., None].astype(np.float32)
            rgb = (grey * (1 - alpha) + hot * alpha).astype(np.uint8)
        else:
            rgb = hot
        size = self._view_size(entry, view)
        rgb = np.array(Image.fromarray(rgb).resize(size, Image.BILINEAR))
        mtv = None if self._mtv_display is None else _slice(self._mtv_display, view, k)
        rgb = self._draw_masks(rgb, [(_slice(entry.roi, view, k), _COLOURS["roi"]), (mtv, _COLOURS["mtv"])])
        image = Image.fromarray(rgb)
        draw = ImageDraw.Draw(image)
        normal = _VIEW_AXES[view][0]
        mm = self._scale(entry)
        for sphere, centre in self.centres.items():
            idx = entry.grid.index(centre)[0]
            radius = sphere_radius_mm(SPHERE_VOLUMES_ML[sphere])
            depth = (idx[normal] - k) * entry.grid.spacing[normal]
            if abs(depth) >= radius:
                continue
            r_px = math.sqrt(radius**2 - depth**2) / mm
            u, v = self._to_pixels(entry, view, idx)
            width = 3 if sphere == self._w_sphere.value else 1
            draw.ellipse((u - r_px, v - r_px, u + r_px, v + r_px), outline=_COLOURS[sphere], width=width)
        return image

    def _mip_image(self) -> Image.Image:
        entry = self._current
        if entry is None:
            return Image.new("RGB", (self._px, self._px))
        size = self._view_size(entry, "coronal")
        if size not in entry.mip_rgb:
            entry.mip_rgb[size] = np.array(Image.fromarray(_HOT[entry.mip_u8[::-1]]).resize(size, Image.BILINEAR))
        rgb = entry.mip_rgb[size].copy()
        mtv = None if self._mtv_display is None else self._mtv_display.any(axis=1)[::-1]
        rgb = self._draw_masks(rgb, [(entry.roi.any(axis=1)[::-1], _COLOURS["roi"]), (mtv, _COLOURS["mtv"])])
        image = Image.fromarray(rgb)
        draw = ImageDraw.Draw(image)
        mm = self._scale(entry)
        _, z_row = self._to_pixels(entry, "coronal", (0, 0, self._w_slice["axial"].value))
        draw.line((0, z_row, size[0], z_row), fill=(160, 160, 160), width=1)
        for sphere, centre in self.centres.items():
            idx = entry.grid.index(centre)[0]
            r_px = sphere_radius_mm(SPHERE_VOLUMES_ML[sphere]) / mm
            u, v = self._to_pixels(entry, "coronal", idx)
            draw.ellipse((u - r_px, v - r_px, u + r_px, v + r_px), outline=_COLOURS[sphere], width=1)
        return image

    def _view_title(self, view: str) -> str:
        entry = self._current
        if entry is None:
            return view
        normal = _VIEW_AXES[view][0]
        idx = (np.asarray(entry.grid.size, float) - 1) / 2
        idx[normal] = self._w_slice[view].value
        mm = entry.grid.point(idx)[normal]
        return f"{view}, {_AXIS_NAMES[normal]} = {mm:.1f} mm"

    def _render_view(self, view: str) -> None:
        with self._lock:
            self._w_image[view].value = _png(self._view_image(view))
            self._w_title[view].value = f"<b>{html.escape(self._view_title(view))}</b>"

    def _render_views(self, mip: bool = False) -> None:
        """Redraw the three slices (and the MIP): drawn one after the other, encoded in parallel."""
        with self._lock:
            images = [self._view_image(v) for v in _VIEWS] + ([self._mip_image()] if mip else [])
            pngs = list(_ENCODER.map(_png, images))
            for view, png in zip(_VIEWS, pngs):
                self._w_image[view].value = png
                self._w_title[view].value = f"<b>{html.escape(self._view_title(view))}</b>"
            if mip:
                self._w_mip.value = pngs[-1]

    def _render_mip(self) -> None:
        with self._lock:
            self._w_mip.value = _png(self._mip_image())

    # ----------------------------------------------------------------------------------------
    # the numbers

    def _number_rows(self) -> list[tuple[str, str, str]]:
        f = self.features
        rows = [("patient_id", "patient", self.patient_id)]
        method = self.mtv_method
        if method != "roi":
            frac = self.mtv_fraction if self.mtv_fraction is not None else DEFAULT_FRACTIONS[method]
            method += f" ({frac:g}{'' if self.mtv_fraction is not None else ', default'})"
        rows.append(("mtv_method", "MTV method", method))
        for key, label, _ in NUMBER_ROWS:
            if key == "mtv_threshold" and self.mtv_method == "roi":
                continue
            rows.append((key, label, format_number(key, f.get(key, math.nan))))
        if f.get("uptake_unit"):
            rows.append(("uptake_unit", "uptake unit", str(f["uptake_unit"])))
        return rows

    def _warnings(self) -> list[str]:
        notes = [w for w in str(self.features.get("qc_warnings", "") or "").split("; ") if w]
        if self._current is not None and self._current.ct_note and self._current.ct_note != "no CT in the manifest":
            notes.append(self._current.ct_note)
        return notes

    def _numbers_html(self) -> str:
        """The numbers panel as HTML (every value escaped)."""
        cells = "".join(
            f'<tr><th style="text-align:left;padding-right:1em">{html.escape(label)}</th>'
            f'<td data-key="{html.escape(key)}" style="text-align:right">{html.escape(value)}</td></tr>'
            for key, label, value in self._number_rows())
        parts = [f'<table class="mibgkit-numbers">{cells}</table>']
        if self.error:
            parts.append(f'<p data-key="error" style="color:#b00020"><b>Not measured:</b> '
                         f'{html.escape(self.error)}</p>')
        notes = self._warnings()
        if notes:
            items = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
            parts.append(f'<div data-key="qc_warnings"><b>QC warnings</b><ul>{items}</ul></div>')
        else:
            parts.append('<div data-key="qc_warnings"><b>QC warnings:</b> none</div>')
        return "".join(parts)

    # ----------------------------------------------------------------------------------------
    # controls

    def _build(self) -> None:
        w = widgets
        self._w_patient = w.Dropdown(options=self._ids, description="patient",
                                     layout=w.Layout(width="220px"))
        self._w_prev = w.Button(description="◀ previous", layout=w.Layout(width="110px"))
        self._w_next = w.Button(description="next ▶", layout=w.Layout(width="90px"))
        self._w_method = w.Dropdown(
            options=[(m if m != "roi" else "roi (as drawn)", m) for m in MTV_METHODS], description="MTV",
            layout=w.Layout(width="220px"))
        self._w_fraction = w.FloatSlider(min=0.05, max=0.95, step=0.01, value=0.40, description="fraction",
                                         readout_format=".2f", continuous_update=False,
                                         layout=w.Layout(width="300px"))
        self._w_default = w.Button(description="default", tooltip="the method's default fraction",
                                   layout=w.Layout(width="80px"))
        self._w_opacity = w.FloatSlider(min=0.0, max=1.0, step=0.05, value=0.6, description="SPECT opacity",
                                        readout_format=".2f", style={"description_width": "initial"},
                                        layout=w.Layout(width="260px"))
        self._w_slice = {v: w.IntSlider(min=0, max=1, description=v, continuous_update=True,
                                        layout=w.Layout(width="384px")) for v in _VIEWS}
        self._w_image = {v: w.Image(format="png", layout=w.Layout(width="384px")) for v in _VIEWS}
        self._w_title = {v: w.HTML() for v in _VIEWS}
        self._w_mip = w.Image(format="png", layout=w.Layout(width="384px"))
        self._w_numbers = w.HTML(layout=w.Layout(min_width="320px"))
        self._w_sphere = w.ToggleButtons(options=[(_LABELS[s], s) for s in SPHERES], value="liver",
                                         description="sphere", style={"button_width": "100px"})
        moves = (("x", -1, "◀ R", "towards patient right"), ("x", 1, "L ▶", "towards patient left"),
                 ("y", -1, "▲ A", "anterior"), ("y", 1, "P ▼", "posterior"),
                 ("z", 1, "S ▲", "superior"), ("z", -1, "I ▼", "inferior"))
        self._w_moves = []
        for axis, step, label, tip in moves:
            b = w.Button(description=label, tooltip=f"move the sphere one voxel {tip}",
                         layout=w.Layout(width="60px"))
            b.on_click(lambda _b, a="xyz".index(axis), s=step: self.move_sphere(self._w_sphere.value, a, s))
            self._w_moves.append(b)
        self._w_centre = w.HTML()
        self._w_markups_path = w.Text(description="markups", placeholder="file.mrk.json",
                                      tooltip="relative paths are relative to the manifest's folder",
                                      layout=w.Layout(width="420px"))
        self._w_save_markups = w.Button(description="save markups", layout=w.Layout(width="120px"))
        self._w_review = w.Dropdown(options=[("not reviewed", "")] + [(c, c) for c in REVIEW_CHOICES],
                                    description="review", layout=w.Layout(width="260px"))
        self._w_note = w.Text(description="note", layout=w.Layout(width="420px"))
        self._w_save_review = w.Button(description="save review", layout=w.Layout(width="120px"))
        self._w_status = w.HTML()

        self._w_patient.observe(lambda c: self._ui(lambda: setattr(self, "patient_id", c["new"])), "value")
        self._w_prev.on_click(lambda _b: self._step_patient(-1))
        self._w_next.on_click(lambda _b: self._step_patient(1))
        self._w_method.observe(lambda c: self._ui(lambda: setattr(self, "mtv_method", c["new"])), "value")
        self._w_fraction.observe(self._on_fraction_slider, "value")
        self._w_default.on_click(lambda _b: setattr(self, "mtv_fraction", None))
        self._w_opacity.observe(lambda c: self._render_views(), "value")
        for v in _VIEWS:
            self._w_slice[v].observe(lambda c, v=v: self._on_slice(v), "value")
        self._w_sphere.observe(lambda c: self._on_sphere_selected(), "value")
        self._w_save_markups.on_click(lambda _b: self._ui_save_markups())
        self._w_save_review.on_click(lambda _b: self._ui_save_review())
        self._connect_clicks()

        legend = " ".join(
            f'<span style="color:rgb{_COLOURS[k]};font-weight:bold">■</span> {html.escape(label)}'
            for k, label in (("roi", "ROI"), ("mtv", "MTV"), ("liver", "liver sphere"),
                             ("muscle_left", "muscle left"), ("muscle_right", "muscle right")))
        views = [w.VBox([self._w_title[v], self._w_image[v], self._w_slice[v]]) for v in _VIEWS]
        views.append(w.VBox([w.HTML("<b>coronal MIP</b>"), self._w_mip]))
        arrows = w.HBox(self._w_moves)
        self.add_class("mibgkit-viewer")
        self.children = [
            w.HBox([self._w_prev, self._w_patient, self._w_next, self._w_method, self._w_fraction,
                    self._w_default, self._w_opacity], layout=w.Layout(flex_flow="row wrap")),
            w.HBox(views, layout=w.Layout(flex_flow="row wrap")),
            w.HTML(f"<small>{legend}</small>"),
            w.HBox([
                self._w_numbers,
                w.VBox([self._w_sphere, arrows, self._w_centre,
                        w.HBox([self._w_markups_path, self._w_save_markups]),
                        self._w_review, w.HBox([self._w_note, self._w_save_review]), self._w_status]),
            ], layout=w.Layout(flex_flow="row wrap")),
        ]

    def _ui(self, action) -> None:
        """Run a control's action; a refused value (e.g. from an out-of-date control) goes to the status line."""
        if self._quiet:
            return
        try:
            action()
        except (traitlets.TraitError, MibgkitError) as e:
            self._w_status.value = f'<span style="color:#b00020">{html.escape(first_line(e))}</span>'

    def _step_patient(self, step: int) -> None:
        i = self._ids.index(self.patient_id) + step
        if 0 <= i < len(self._ids):
            self.patient_id = self._ids[i]

    def _on_fraction_slider(self, change) -> None:
        if self._quiet or self.mtv_method == "roi":
            return
        self.mtv_fraction = round(float(change["new"]), 4)

    def _sync_mtv_controls(self) -> None:
        with self._hold():
            self._w_method.value = self.mtv_method
            roi = self.mtv_method == "roi"
            self._w_fraction.disabled = roi
            self._w_default.disabled = roi or self.mtv_fraction is None
            if not roi:
                f = self.mtv_fraction if self.mtv_fraction is not None else DEFAULT_FRACTIONS[self.mtv_method]
                self._w_fraction.value = f

    def _setup_sliders(self, entry: _Patient) -> None:
        for view in _VIEWS:
            normal = _VIEW_AXES[view][0]
            s = self._w_slice[view]
            s.max = entry.grid.size[normal] - 1
            s.value = int(np.clip(round(entry.roi_centre[normal]), 0, s.max))
        self._default_path()

    def _on_slice(self, view: str) -> None:
        if self._quiet:
            return
        self._render_view(view)
        if view == "axial":
            self._render_mip()

    def show_point(self, point_mm: Sequence[float]) -> None:
        """Move the three slices through a point (LPS mm)."""
        entry = self._current
        if entry is None:
            return
        idx = entry.grid.index(point_mm)[0]
        with self._hold():
            for view in _VIEWS:
                normal = _VIEW_AXES[view][0]
                s = self._w_slice[view]
                s.value = int(np.clip(round(idx[normal]), 0, s.max))
        self._render_views(mip=True)

    def _on_sphere_selected(self) -> None:
        self._sphere_readout()
        self.show_point(getattr(self, f"{self._w_sphere.value}_centre_mm"))

    def _sphere_readout(self) -> None:
        sphere = self._w_sphere.value
        c = getattr(self, f"{sphere}_centre_mm")
        self._w_centre.value = (f"{html.escape(_LABELS[sphere])} centre (LPS mm): "
                                f"<span data-key='centre'>{', '.join(f'{v:.2f}' for v in c)}</span>")

    def move_sphere(self, sphere: str, axis: int, steps: int = 1) -> None:
        """Move a sphere by ``steps`` voxel spacings along LPS axis ``axis`` (0 = x, 1 = y, 2 = z).

        The step is the SPECT voxel spacing along that axis, in mm; the slices follow the sphere.
        """
        if sphere not in SPHERES:
            raise ValueError(f"unknown sphere {sphere!r}; choose one of {', '.join(SPHERES)}")
        if self._current is None:
            return
        centre = list(getattr(self, f"{sphere}_centre_mm"))
        centre[axis] += steps * self._current.grid.spacing[axis]
        with self._hold():  # slices first, so the one refresh draws the sphere where it now is
            idx = self._current.grid.index(centre)[0]
            for view in _VIEWS:
                normal = _VIEW_AXES[view][0]
                s = self._w_slice[view]
                s.value = int(np.clip(round(idx[normal]), 0, s.max))
        self._ui(lambda: setattr(self, f"{sphere}_centre_mm", tuple(centre)))

    def place_sphere(self, sphere: str, view: str, col: float, row: float) -> tuple[float, float, float]:
        """Place a sphere at pixel (``col``, ``row``) of a rendered view, on that view's current slice.

        Returns the new centre (LPS mm). Clicking on the axial view calls this (with ``ipyevents``).
        """
        entry = self._current
        if entry is None:
            raise InputError("no patient is loaded")
        idx = self._from_pixels(entry, view, col, row, self._w_slice[view].value)
        centre = tuple(float(v) for v in entry.grid.point(idx))
        setattr(self, f"{sphere}_centre_mm", centre)
        return centre

    def _connect_clicks(self) -> None:
        try:
            from ipyevents import Event
        except ImportError:
            self._click_events = None
            return
        self._click_events = Event(source=self._w_image["axial"], watched_events=["click"])

        def on_click(event):
            if "dataX" in event:
                col, row = event["dataX"], event["dataY"]
            else:  # displayed size may differ from the PNG's
                width, height = self._view_size(self._current, "axial") if self._current else (1, 1)
                col = event["relativeX"] * width / max(event.get("boundingRectWidth", width), 1)
                row = event["relativeY"] * height / max(event.get("boundingRectHeight", height), 1)
            self._ui(lambda: self.place_sphere(self._w_sphere.value, "axial", col, row))

        self._click_events.on_dom_event(on_click)

    def _default_path(self) -> None:
        self._w_markups_path.value = f"viewer_markups/{self.patient_id}.mrk.json"

    def _ui_save_markups(self) -> None:
        """The "save markups" button: a relative path in the box is relative to the manifest's folder."""
        path = self._w_markups_path.value.strip()
        if not path:
            self._w_status.value = "give a file name for the markups"
            return
        if self.manifest_path is not None and not Path(path).is_absolute():
            path = self.manifest_path.parent / path
        try:
            self.save_markups(path)
        except MibgkitError as e:
            self._w_status.value = f'<span style="color:#b00020">{html.escape(first_line(e))}</span>'
        else:
            self._w_status.value = f"saved {html.escape(Path(path).name)}"

    def _ui_save_review(self) -> None:
        if not self._w_review.value:
            self._w_status.value = "choose a review flag first"
            return
        try:
            self.set_review(self._w_review.value, self._w_note.value)
        except MibgkitError as e:
            self._w_status.value = f'<span style="color:#b00020">{html.escape(first_line(e))}</span>'
        else:
            self._w_status.value = f"review of {html.escape(self.patient_id)} saved to {REVIEW_FILE}"

    def _load_review_controls(self) -> None:
        review, note = "", ""
        if self.review_path is not None and self.review_path.exists():
            try:
                table = read_review(self.review_path)
            except MibgkitError as e:
                self._w_status.value = f'<span style="color:#b00020">{html.escape(first_line(e))}</span>'
            else:
                hit = table[table["patient_id"] == self.patient_id]
                if len(hit):
                    review, note = hit.iloc[0]["review"], hit.iloc[0]["note"]
        self._w_review.value = review
        self._w_note.value = note

    # ----------------------------------------------------------------------------------------
    # outputs

    def _input_files(self) -> set[Path]:
        out = set()
        if self.manifest_path is not None:
            out.add(self.manifest_path.resolve())
        for row in self._rows.values():
            for col in ("spect", "ct", "roi", "markups", "organs"):
                if row.get(col):
                    out.add(Path(row[col]).resolve())
        return out

    def save_markups(self, path: str | os.PathLike) -> Path:
        """Write the current sphere centres as a 3D Slicer ``.mrk.json`` (LPS), atomically.

        Control points ``liver``, ``muscle_left``, ``muscle_right``; ``mibgkit extract`` reads the
        file back to the same centres (point the manifest's ``markups`` column at it). An input
        file (the manifest or any file it names) is never overwritten.
        """
        path = Path(path)
        if path.resolve() in self._input_files():
            raise OutputError("is an input of the manifest; the viewer never overwrites inputs, choose "
                              "another file", path=path)
        with atomic_path(path) as tmp:
            write_markups(tmp, self.centres, "LPS")
        return path

    def set_review(self, review: str, note: str = "") -> pd.DataFrame:
        """Record the current patient's review (:data:`mibgkit.review.REVIEW_CHOICES`) in ``review.csv``
        beside the manifest (one row per patient, manifest order, written atomically)."""
        if self.review_path is None:
            raise OutputError("the manifest has no file (a DataFrame without attrs['manifest']), so there is "
                              "no folder for review.csv")
        table = set_review(self.review_path, self.patient_id, review, note, order=self._ids)
        with self._hold():
            self._w_review.value = review
            self._w_note.value = note
        return table

    def _static_image(self, wait_ct: float | None) -> Image.Image:
        """The current view as one image: three slices and the MIP, titles, the numbers below."""
        if wait_ct:
            self.wait_for_ct(wait_ct)
        with self._lock:
            self._px = _STATIC_PX
            try:
                panels = [(self._view_title(v), self._view_image(v)) for v in _VIEWS]
                panels.append(("coronal MIP", self._mip_image()))
            finally:
                self._px = _LIVE_PX
            rows = self._number_rows()
            notes = self._warnings()
            error = self.error
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

    def to_png(self, path: str | os.PathLike, *, wait_ct: float | None = 60.0) -> Path:
        """Write the current view (three slices, the coronal MIP, the numbers) as one PNG, atomically.

        Waits up to ``wait_ct`` seconds for the CT, so that the file does not depend on timing.
        """
        buf = _io.BytesIO()
        self._static_image(wait_ct).save(buf, format="PNG", optimize=True)
        write_bytes(path, buf.getvalue())
        return Path(path)

    def static_html(self) -> str:
        """A static view for pages without a kernel: the current image (PNG, base64) and the numbers."""
        buf = _io.BytesIO()
        self._static_image(None).save(buf, format="PNG", compress_level=6)
        data = base64.b64encode(buf.getvalue()).decode("ascii")
        alt = html.escape(f"patient {self.patient_id}: axial, coronal, sagittal slices and coronal MIP")
        return (f'<div class="mibgkit-viewer-static"><img src="data:image/png;base64,{data}" alt="{alt}" '
                f'style="max-width:100%"/>{self._numbers_html()}</div>')

    def _repr_mimebundle_(self, **kwargs):
        data = super()._repr_mimebundle_(**kwargs)
        data["text/html"] = self.static_html()
        return data


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
view appears before the CT is read; nothing the viewer draws feeds back into a number. The drawing
(slices, contours, spheres, MIP, the numbers panel, the static image) is :mod:`mibgkit.viewer_render`,
plain functions of arrays; this module holds the widget: traits, controls, events, saving.

Why ipywidgets
--------------
The viewer is an :class:`ipywidgets.VBox` of standard widgets: they render in JupyterLab 4 and in
Voilà with the widget JavaScript those packages already ship, so there is no front-end code to build
or install, and the same object works in a notebook, in a Voilà app and headless (tests, the latency
benchmark). Images travel to the browser as PNG bytes in :class:`ipywidgets.Image` widgets, rendered
with numpy, matplotlib's colour maps (as look-up tables) and Pillow (:mod:`mibgkit.viewer_render`);
a matplotlib figure per update would be about ten times too slow for a slider; the PNGs of one update
are encoded in parallel by a small thread pool the viewer owns (shut down by :meth:`PatientViewer.close`).
Clicking on the axial view to place the selected sphere needs the optional ``ipyevents`` package; the
arrow buttons work everywhere.

Display conventions (radiological orientation, the SPECT lattice reoriented to the nearest LPS axes,
coordinates in LPS mm) are :mod:`mibgkit.viewer_render`'s.

Outside a kernel (nbconvert HTML of a notebook saved without widget state) the widget's place shows
a static view instead: :meth:`PatientViewer.to_png`'s image and the numbers table
(``_repr_mimebundle_`` adds ``text/html``).
"""

from __future__ import annotations

import html
import io as _io
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
from PIL import Image

from . import io as mio
from . import viewer_render as render
from .errors import InputError, MibgkitError, OutputError, ParameterError, QCWarning, first_line
from .features import SPHERES, PatientData
from .manifest import read_manifest
from .outputs import atomic_path, write_bytes
from .review import REVIEW_CHOICES, REVIEW_FILE, read_review, review_path_for, set_review
from .segment import DEFAULT_FRACTIONS, MTV_METHODS, check_fraction
from .slicer_write import write_markups
from .viewer_render import NUMBER_ROWS, VIEW_AXES, VIEWS, format_number

__all__ = ["PatientViewer", "NUMBER_ROWS", "format_number", "DEFAULT_FRACTIONS"]

_LABELS = {"liver": "liver", "muscle_left": "muscle left", "muscle_right": "muscle right"}
_CACHE = 3  # patients kept in memory (images, CT)


#: A sphere centre while no patient is loaded (the viewer's patient could not be read).
NO_POINT = (math.nan, math.nan, math.nan)


class _PointMM(traitlets.TraitType):
    """Three finite numbers, LPS mm, stored as a tuple of floats; :data:`NO_POINT` (three NaNs)
    only while no patient is loaded."""

    info_text = "a sequence of 3 finite numbers (LPS mm)"
    default_value = NO_POINT

    def validate(self, obj, value):
        try:
            point = tuple(float(v) for v in value)
        except (TypeError, ValueError):
            self.error(obj, value)
        no_patient = getattr(obj, "_current", None) is None
        if len(point) != 3 or not (all(math.isfinite(v) for v in point)
                                   or (no_patient and all(math.isnan(v) for v in point))):
            self.error(obj, value)
        return point


class _Patient(render.DisplayVolumes):
    """What the viewer keeps per patient: the measured data, the display volumes, the CT's progress."""

    def __init__(self, data: PatientData):
        box, start, _ = data.roi_box((0, 0, 0))
        super().__init__(data.spect, sitk.GetArrayViewFromImage(box) != 0, start)
        self.data = data
        self.ct_note = ""
        self.ct_done = threading.Event()


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
        (:data:`mibgkit.segment.DEFAULT_FRACTIONS`). It is kept when the method changes.

    Attributes
    ----------
    patient_id, mtv_method, mtv_fraction : traits
        The inputs; assigning one re-measures (and, for ``patient_id``, loads that patient).
    liver_centre_mm, muscle_left_centre_mm, muscle_right_centre_mm : traits
        Sphere centres, LPS mm (3 floats); assigning one moves that sphere and re-measures. They
        start at the patient's markups (or manifest columns); a patient's moved spheres are kept
        when switching to another patient and back. While the patient cannot be read they are
        (NaN, NaN, NaN) and :meth:`save_markups` refuses.
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
        self._px = render.LIVE_PX
        self._threads: list[threading.Thread] = []
        self._encoder: ThreadPoolExecutor | None = None  # encodes the live PNGs; made on first use
        self._closed = False
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
        if f is not None:
            try:
                check_fraction(f, "mtv_fraction")
            except ParameterError as e:
                raise traitlets.TraitError(str(e)) from None
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
        if self._current is not None:  # a patient's own or moved centre, kept when switching back
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
                entry.set_ct(ct)
            except (MibgkitError, RuntimeError, ValueError, OSError) as e:
                entry.ct_note = f"CT not shown: {first_line(e)}"
            finally:
                entry.ct_done.set()
            if self._current is entry:
                self._render_views()

        # Not a daemon: the interpreter waits for a CT still loading at exit instead of aborting in
        # SimpleITK's C++ code.
        thread = threading.Thread(target=work, name=f"mibgkit-viewer-ct-{pid}")
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
                with self._hold():  # nothing of the previous patient stays on show or in save_markups
                    for s in SPHERES:
                        setattr(self, f"{s}_centre_mm", NO_POINT)
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
                    self._mtv_display = entry.mask(masks["tumour MTV"])
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
        return render.mm_per_pixel(entry.grid, self._px)

    def _to_pixels(self, entry: _Patient, view: str, index_xyz) -> tuple[float, float]:
        """Pixel (column, row) in a rendered view of a continuous display index (x, y, z)."""
        return render.to_pixels(entry.grid, view, index_xyz, self._scale(entry))

    def _panels(self, views: Sequence[str] = VIEWS, mip: bool = False,
                px: int | None = None) -> list[tuple[str, Image.Image]]:
        """(title, image) of each view and, with ``mip``, of the coronal MIP, as the controls now say."""
        px = px or self._px
        entry = self._current
        if entry is None:
            blank = render.blank_view(px)
            return [(v, blank) for v in views] + ([("coronal MIP", blank)] if mip else [])
        return render.panels(entry, {v: s.value for v, s in self._w_slice.items()}, views=views, mip=mip,
                             mtv=self._mtv_display, opacity=self._w_opacity.value, centres=self.centres,
                             selected=self._w_sphere.value, px=px)

    def _encode(self, images: Sequence[Image.Image]) -> list[bytes]:
        """PNGs of the images, encoded side by side (Pillow releases the GIL while it encodes)."""
        if len(images) > 1 and not self._closed:
            if self._encoder is None:  # called under self._lock
                self._encoder = ThreadPoolExecutor(max_workers=4, thread_name_prefix="mibgkit-viewer-png")
            try:
                return list(self._encoder.map(render.encode_png, images))
            except RuntimeError:  # the pool was shut down meanwhile (closed, or the interpreter is exiting)
                pass
        return [render.encode_png(im) for im in images]

    def close(self) -> None:
        """Close the widget and shut down its PNG encoder's threads."""
        self._closed = True
        encoder, self._encoder = getattr(self, "_encoder", None), None
        if encoder is not None:
            encoder.shutdown(wait=False)
        super().close()

    def _render_views(self, views: Sequence[str] = VIEWS, mip: bool = False) -> None:
        """Redraw the views (and the MIP): drawn one after the other, encoded in parallel."""
        with self._lock:
            panels = self._panels(views, mip)
            pngs = self._encode([image for _, image in panels])
            for view, (title, _), png in zip(views, panels, pngs):
                self._w_image[view].value = png
                self._w_title[view].value = f"<b>{html.escape(title)}</b>"
            if mip:
                self._w_mip.value = pngs[-1]

    # ----------------------------------------------------------------------------------------
    # the numbers

    def _numbers(self) -> tuple[list[tuple[str, str, str]], list[str]]:
        """The numbers panel's rows and the QC warnings shown, for the current measurement."""
        ct_note = self._current.ct_note if self._current is not None else ""
        return (render.number_rows(self.features, self.patient_id, self.mtv_method, self.mtv_fraction),
                render.qc_notes(self.features, ct_note))

    def _numbers_html(self) -> str:
        """The numbers panel as HTML (every value escaped)."""
        rows, notes = self._numbers()
        return render.numbers_html(rows, self.error, notes)

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
                                        layout=w.Layout(width="384px")) for v in VIEWS}
        self._w_image = {v: w.Image(format="png", layout=w.Layout(width="384px")) for v in VIEWS}
        self._w_title = {v: w.HTML() for v in VIEWS}
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
        for v in VIEWS:
            self._w_slice[v].observe(lambda c, v=v: self._on_slice(v), "value")
        self._w_sphere.observe(lambda c: self._on_sphere_selected(), "value")
        self._w_save_markups.on_click(lambda _b: self._ui_save_markups())
        self._w_save_review.on_click(lambda _b: self._ui_save_review())
        self._connect_clicks()

        views = [w.VBox([self._w_title[v], self._w_image[v], self._w_slice[v]]) for v in VIEWS]
        views.append(w.VBox([w.HTML("<b>coronal MIP</b>"), self._w_mip]))
        arrows = w.HBox(self._w_moves)
        self.add_class("mibgkit-viewer")
        self.children = [
            w.HBox([self._w_prev, self._w_patient, self._w_next, self._w_method, self._w_fraction,
                    self._w_default, self._w_opacity], layout=w.Layout(flex_flow="row wrap")),
            w.HBox(views, layout=w.Layout(flex_flow="row wrap")),
            w.HTML(f"<small>{render.legend_html()}</small>"),
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
            self._show_error(e)

    def _show_error(self, error: Exception) -> None:
        self._w_status.value = f'<span style="color:#b00020">{html.escape(first_line(error))}</span>'

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
        for view in VIEWS:
            self._w_slice[view].max = entry.grid.size[VIEW_AXES[view][0]] - 1
        self._slices_at(entry.roi_centre)
        self._default_path()

    def _on_slice(self, view: str) -> None:
        if self._quiet:
            return
        self._render_views((view,), mip=view == "axial")

    def show_point(self, point_mm: Sequence[float]) -> None:
        """Move the three slices through a point (LPS mm)."""
        entry = self._current
        if entry is None:
            return
        self._slices_at(entry.grid.index(point_mm)[0])
        self._render_views(mip=True)

    def _slices_at(self, idx) -> None:
        """Set the three slice sliders through a continuous display index (x, y, z), without redrawing."""
        with self._hold():
            for view in VIEWS:
                s = self._w_slice[view]
                s.value = int(np.clip(round(idx[VIEW_AXES[view][0]]), 0, s.max))

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
        if axis not in (0, 1, 2):
            raise ValueError(f"axis must be 0 (x), 1 (y) or 2 (z), got {axis!r}")
        if self._current is None:
            return
        centre = list(getattr(self, f"{sphere}_centre_mm"))
        centre[axis] += steps * self._current.grid.spacing[axis]
        self._slices_at(self._current.grid.index(centre)[0])  # first: the refresh draws the sphere where it is
        self._ui(lambda: setattr(self, f"{sphere}_centre_mm", tuple(centre)))

    def place_sphere(self, sphere: str, view: str, col: float, row: float) -> tuple[float, float, float]:
        """Place a sphere at pixel (``col``, ``row``) of a rendered view, on that view's current slice.

        Returns the new centre (LPS mm). Clicking on the axial view calls this (with ``ipyevents``).
        """
        if sphere not in SPHERES or view not in VIEWS:
            raise ValueError(f"sphere {sphere!r} / view {view!r}: choose a sphere of {', '.join(SPHERES)} and "
                             f"a view of {', '.join(VIEWS)}")
        entry = self._current
        if entry is None:
            raise InputError("no patient is loaded")
        idx = render.from_pixels(entry.grid, view, col, row, self._w_slice[view].value, self._scale(entry))
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
                entry = self._current
                width, height = render.view_size(entry.grid, "axial", self._scale(entry)) if entry else (1, 1)
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
            self._show_error(e)
        else:
            self._w_status.value = f"saved {html.escape(Path(path).name)}"

    def _ui_save_review(self) -> None:
        if not self._w_review.value:
            self._w_status.value = "choose a review flag first"
            return
        try:
            self.set_review(self._w_review.value, self._w_note.value)
        except MibgkitError as e:
            self._show_error(e)
        else:
            self._w_status.value = f"review of {html.escape(self.patient_id)} saved to {REVIEW_FILE}"

    def _load_review_controls(self) -> None:
        review, note = "", ""
        if self.review_path is not None and self.review_path.exists():
            try:
                table = read_review(self.review_path)
            except MibgkitError as e:
                self._show_error(e)
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

    def _output_path(self, path: str | os.PathLike) -> Path:
        """``path``, unless it is an input of the manifest: the viewer never overwrites inputs."""
        path = Path(path)
        if path.resolve() in self._input_files():
            raise OutputError("is an input of the manifest; the viewer never overwrites inputs, choose "
                              "another file", path=path)
        return path

    def save_markups(self, path: str | os.PathLike) -> Path:
        """Write the current sphere centres as a 3D Slicer ``.mrk.json`` (LPS), atomically.

        Control points ``liver``, ``muscle_left``, ``muscle_right``; ``mibgkit extract`` reads the
        file back to the same centres (point the manifest's ``markups`` column at it). An input
        file (the manifest or any file it names) is never overwritten.
        """
        if self._current is None:
            raise InputError(f"no patient is loaded, so there are no centres to save ({self._load_error})")
        path = self._output_path(path)
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
            panels = self._panels(VIEWS, mip=True, px=render.STATIC_PX)
            rows, notes = self._numbers()
            error = self.error
        return render.static_composite(panels, rows, error, notes)

    def to_png(self, path: str | os.PathLike, *, wait_ct: float | None = 60.0) -> Path:
        """Write the current view (three slices, the coronal MIP, the numbers) as one PNG, atomically.

        Waits up to ``wait_ct`` seconds for the CT, so that the file does not depend on timing. An
        input file (the manifest or any file it names) is never overwritten.
        """
        path = self._output_path(path)
        buf = _io.BytesIO()
        self._static_image(wait_ct).save(buf, format="PNG", optimize=True)
        write_bytes(path, buf.getvalue())
        return Path(path)

    def static_html(self) -> str:
        """A static view for pages without a kernel: the current image (PNG, base64) and the numbers."""
        buf = _io.BytesIO()
        self._static_image(None).save(buf, format="PNG", compress_level=6)
        return render.static_html(buf.getvalue(), self.patient_id, self._numbers_html())

    def _repr_mimebundle_(self, **kwargs):
        data = super()._repr_mimebundle_(**kwargs)
        data["text/html"] = self.static_html()
        return data


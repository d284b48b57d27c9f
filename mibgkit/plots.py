"""Figures in one house style: Kaplan–Meier with numbers at risk, forest plot, ROC, QC views.

Functions draw on a given ``matplotlib`` Axes (or make a Figure) and return it; nothing is saved
here. Images are shown in radiological convention (patient's right on the left of the picture,
anterior at the top of axial slices, superior at the top of coronal views), after reorienting to
LPS so any direction matrix displays the same way.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
from matplotlib import ticker
import numpy as np
import pandas as pd
import SimpleITK as sitk

#: Colours: this run vs the paper, high vs low group.
THIS_RUN = "#1f5c99"
PAPER = "#c05621"
GROUP_COLOURS = ("#b22222", "#1f5c99", "#2e8b57", "#6a3d9a")


def set_style() -> None:
    """The house style (seaborn ``whitegrid``, print-sized fonts, vector figures in notebooks)."""
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook", font_scale=0.95)
    plt.rcParams.update({
        "figure.dpi": 110, "savefig.bbox": "tight", "axes.titleweight": "bold", "axes.titlesize": 11,
        "svg.fonttype": "none", "legend.frameon": False,
    })
    try:
        from matplotlib_inline.backend_inline import set_matplotlib_formats

        set_matplotlib_formats("svg")
    except ImportError:  # not in a notebook
        pass


def km_plot(
    result,
    *,
    order: Sequence | None = None,
    labels: Mapping | None = None,
    title: str = "",
    p_text: str | None = None,
    time_unit: str = "days",
    ax=None,
):
    """Kaplan–Meier curves per group with censor marks and the numbers at risk below the axis.

    Draws the :class:`mibgkit.stats.KaplanMeierResult` the tables print (one object for the
    numbers and the figure): right-continuous steps from (0, 1), a ``|`` at each censored time,
    and an at-risk table whose columns sit under the time ticks (patients with time ≥ tick), as
    survminer draws it. ``order`` sets the groups drawn and their colours (default: the result's).
    """
    groups = list(order) if order is not None else result.groups
    n_rows = len(groups)
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 4.2 + 0.25 * n_rows))
    summary = result.summary
    for colour, g in zip(GROUP_COLOURS, groups):
        if g not in summary.index:
            continue
        curve = result.curve(g)
        name = f"{(labels or {}).get(g, g)} (n={int(summary.at[g, 'n'])})"
        ax.step(curve["time"], curve["survival"], where="post", color=colour, lw=1.8, label=name)
        cens = result.censored(g)
        ax.plot(cens["time"], cens["survival"], ls="none", marker="|", ms=7, mew=1.2, color=colour)
    ax.set_ylim(0, 1.04)
    ax.set_xlim(left=0)
    ax.set_xlabel(f"time since scan ({time_unit})")
    ax.set_ylabel("event-free survival")
    if title:
        ax.set_title(title)
    if p_text:
        ax.text(0.03, 0.05, p_text, transform=ax.transAxes, fontsize=9)
    ax.legend(loc="lower right", fontsize=9)
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    ax.set_xticks(ticks)
    present = [g for g in groups if g in summary.index]
    at_risk = result.at_risk(ticks).reindex(present)
    below = ax.get_xaxis_transform()  # x in data, y in axes fraction
    ax.text(-0.05, -0.24, "at risk", transform=ax.transAxes, fontsize=8.5, ha="right", va="center", color="0.3")
    for row, (colour, g) in enumerate((c, g) for c, g in zip(GROUP_COLOURS, groups) if g in present):
        y = -0.32 - 0.075 * row
        ax.text(-0.05, y, str((labels or {}).get(g, g)), transform=ax.transAxes, fontsize=8.5, ha="right",
                va="center", color=colour)
        for tick, n in zip(ticks, at_risk.loc[g]):
            ax.text(tick, y, f"{int(n)}", transform=below, fontsize=8.5, ha="center", va="center", color=colour)
    return ax


def forest_plot(table: pd.DataFrame, *, published: pd.DataFrame | None = None, labels: Mapping | None = None,
                title: str = "", ax=None):
    """Hazard ratios with 95 % CI on a log axis; the paper's beside this run's when given.

    ``table`` and ``published`` are indexed by variable with ``hr, ci_lower, ci_upper``.
    """
    names = list(table.index)
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, max(0.42 * len(names) + 1.2, 2.2)))
    y = np.arange(len(names))[::-1]
    off = 0.17 if published is not None else 0.0
    ax.errorbar(table.hr, y + off, xerr=[table.hr - table.ci_lower, table.ci_upper - table.hr], fmt="o",
                color=THIS_RUN, capsize=3, label="this run")
    if published is not None:
        pub = published.reindex(names)
        ax.errorbar(pub.hr, y - off, xerr=[pub.hr - pub.ci_lower, pub.ci_upper - pub.hr], fmt="s",
                    color=PAPER, capsize=3, label="Zhou et al. 2025", alpha=0.85)
    ax.axvline(1.0, color="0.4", lw=1, ls="--")
    ax.set_xscale("log")
    plain = ticker.FuncFormatter(lambda v, _: f"{v:g}")  # 0.8, 1, 2: not 8×10⁻¹
    ax.xaxis.set_major_formatter(plain)
    if np.log10(ax.get_xlim()[1] / ax.get_xlim()[0]) < 1.2:  # within about a decade: label the minor ticks too
        ax.xaxis.set_minor_formatter(plain)
    ax.set_ylim(-0.6, len(names) - 0.4)
    ax.set_yticks(y, [(labels or {}).get(n, n) for n in names])
    ax.set_xlabel("hazard ratio (95 % CI, log scale)")
    if title:
        ax.set_title(title)
    # below the axis label at a fixed distance (0.55 in), whatever the number of rows
    height_in = ax.get_position().height * ax.figure.get_figheight()
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.55 / height_in), ncol=2, fontsize=9)
    return ax


def bland_altman_plot(a, b, result: Mapping, *, label: str = "", reader: str = "B", reference: str = "A", ax=None):
    """Bland–Altman plot of ``a`` (reader) against ``b`` (reference): difference (or ratio a/b on a log
    axis when ``result["log"]``) over the pair's mean, with the bias and 95 % limits of
    :func:`mibgkit.stats.bland_altman` as lines and their CIs as bands."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if ax is None:
        _, ax = plt.subplots(figsize=(4.6, 3.4))
    log = bool(result.get("log"))
    mean = np.sqrt(a * b) if log else (a + b) / 2
    ax.scatter(mean, a / b if log else a - b, s=14, color=THIS_RUN, alpha=0.8)
    for key, style in (("bias", "-"), ("loa_lower", "--"), ("loa_upper", "--")):
        colour = PAPER if key == "bias" else "0.35"
        ax.axhline(result[key], color=colour, ls=style, lw=1)
        ax.axhspan(result[f"{key}_ci_lower"], result[f"{key}_ci_upper"], color=colour, alpha=0.1)
    ax.axhline(1.0 if log else 0.0, color="0.7", lw=0.8)
    if log:
        ax.set_yscale("log")
        ax.set_xscale("log")
    ax.set_xlabel(f"{'geometric ' if log else ''}mean of {reader} and {reference}" + (f" ({label})" if label else ""))
    ax.set_ylabel(f"{reader} / {reference}" if log else f"{reader} − {reference}")
    ax.set_title(f"{label}: bias {result['bias']:.3g}, limits {result['loa_lower']:.3g} to {result['loa_upper']:.3g}",
                 fontsize=9)
    return ax


def roc_plot(curve: pd.DataFrame, *, point: Mapping | None = None, published: Mapping | None = None,
             title: str = "", ax=None):
    """ROC curve (``curve`` has ``fpr`` or ``specificity``, and ``tpr`` or ``sensitivity``).

    ``point``: this run's Youden point (``sensitivity``, ``specificity``, ``cutoff``, ``auc``);
    ``published``: the paper's (``sensitivity``, ``specificity``, ``cutoff``).
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(4.6, 4.4))
    fpr = curve["fpr"] if "fpr" in curve else 1 - curve["specificity"]
    tpr = curve["tpr"] if "tpr" in curve else curve["sensitivity"]
    order = np.lexsort((np.asarray(tpr), np.asarray(fpr)))
    ax.plot(np.asarray(fpr)[order], np.asarray(tpr)[order], color=THIS_RUN, lw=2, drawstyle="default")
    ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls=":")
    if point:
        lab = f"Youden: ≥ {point['cutoff']:.3g}"
        if "auc" in point:
            lab += f" (AUC {point['auc']:.3f})"
        ax.plot(1 - point["specificity"], point["sensitivity"], "o", color=THIS_RUN, ms=8, label=lab)
    if published:
        ax.plot(1 - published["specificity"], published["sensitivity"], "s", mfc="none", mec=PAPER, mew=2,
                ms=10, label=f"paper: ≥ {published['cutoff']:.3g}")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_aspect("equal")
    ax.set_xlabel("1 − specificity")
    ax.set_ylabel("sensitivity")
    if title:
        ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    return ax


def _lps(image: sitk.Image) -> sitk.Image:
    return sitk.DICOMOrient(image, "LPS")


def qc_figure(
    spect: sitk.Image,
    roi: sitk.Image,
    centres: Mapping[str, Sequence[float]],
    *,
    radii_mm: Mapping[str, float] | None = None,
    ct: sitk.Image | None = None,
    title: str = "",
):
    """SPECT coronal MIP plus axial and coronal slices through the tumour with ROI contour and spheres.

    ``roi`` is on the SPECT grid; ``centres`` are LPS mm; ``radii_mm`` gives each sphere's radius.
    With ``ct``, a fourth panel shows the CT slice at the tumour's level with the SPECT fused over it
    and the ROI contour, each drawn at its own physical extent (so a misregistration would show).
    """
    from .voi import SPHERE_VOLUMES_ML, sphere_radius_mm

    radii_mm = radii_mm or {s: sphere_radius_mm(v) for s, v in SPHERE_VOLUMES_ML.items()}
    img, m = _lps(spect), _lps(roi)
    a = sitk.GetArrayFromImage(img).astype(float)  # z, y, x with x→L, y→P, z→S
    r = sitk.GetArrayFromImage(m) != 0
    sx, sy, sz = img.GetSpacing()
    ox, oy, oz = img.GetOrigin()
    nz, ny, nx = a.shape
    ext_x = (ox - sx / 2, ox + (nx - 0.5) * sx)
    ext_y = (oy - sy / 2, oy + (ny - 0.5) * sy)
    ext_z = (oz - sz / 2, oz + (nz - 0.5) * sz)
    kz, ky, _ = (np.argwhere(r).mean(axis=0).round().astype(int) if r.any() else np.array(a.shape) // 2)
    vmax = np.percentile(a, 99.9)
    if ct is not None:
        fig, grid = plt.subplots(2, 2, figsize=(8.6, 8.4))
        axes = grid.ravel()
    else:
        fig, axes = plt.subplots(1, 3, figsize=(10.5, 4.0))
    axes[0].imshow(a.max(axis=1), cmap="gray_r", origin="lower", extent=(*ext_x, *ext_z), vmax=vmax, aspect="equal")
    axes[0].set_title("coronal MIP")
    axes[1].imshow(a[kz], cmap="gray_r", extent=(*ext_x, ext_y[1], ext_y[0]), vmax=vmax, aspect="equal")
    axes[1].contour(np.linspace(*ext_x, nx), np.linspace(*ext_y, ny), r[kz].astype(float), levels=[0.5],
                    colors="#d62728", linewidths=1.4)
    axes[1].set_title(f"axial, z = {oz + kz * sz:.0f} mm")
    axes[2].imshow(a[:, ky, :], cmap="gray_r", origin="lower", extent=(*ext_x, *ext_z), vmax=vmax, aspect="equal")
    axes[2].contour(np.linspace(*ext_x, nx), np.linspace(*ext_z, nz), r[:, ky, :].astype(float), levels=[0.5],
                    colors="#d62728", linewidths=1.4)
    axes[2].set_title(f"coronal, y = {oy + ky * sy:.0f} mm")
    colours = {"liver": "#2ca02c", "muscle_left": "#ff7f0e", "muscle_right": "#9467bd"}
    z_axial, y_cor = oz + kz * sz, oy + ky * sy
    for name, c in centres.items():
        rad = radii_mm.get(name, 10.0)
        col = colours.get(name, "k")
        for ax, depth, (u, v) in ((axes[1], c[2] - z_axial, (c[0], c[1])), (axes[2], c[1] - y_cor, (c[0], c[2]))):
            if abs(depth) < rad:
                ax.add_patch(plt.Circle((u, v), np.sqrt(rad**2 - depth**2), fill=False, color=col, lw=1.4))
        axes[0].add_patch(plt.Circle((c[0], c[2]), rad, fill=False, color=col, lw=1.0, ls="--"))
    if ct is not None:
        c = _lps(ct)
        ca = sitk.GetArrayViewFromImage(c)
        cx, cy, cz = c.GetSpacing()
        cox, coy, coz = c.GetOrigin()
        kc = int(np.clip(round((z_axial - coz) / cz), 0, ca.shape[0] - 1))
        cext = (cox - cx / 2, cox + (ca.shape[2] - 0.5) * cx, coy + (ca.shape[1] - 0.5) * cy, coy - cy / 2)
        axes[3].imshow(ca[kc], cmap="gray", vmin=-200, vmax=300, extent=cext, aspect="equal")
        hot = np.ma.masked_less(a[kz], 0.08 * vmax)
        axes[3].imshow(hot, cmap="inferno", alpha=0.55, vmin=0, vmax=vmax, extent=(*ext_x, ext_y[1], ext_y[0]),
                       aspect="equal")
        axes[3].contour(np.linspace(*ext_x, nx), np.linspace(*ext_y, ny), r[kz].astype(float), levels=[0.5],
                        colors="#00e5ff", linewidths=1.2)
        axes[3].set_xlim(axes[1].get_xlim())
        axes[3].set_ylim(axes[1].get_ylim())
        axes[3].set_title(f"CT + SPECT, z = {coz + kc * cz:.0f} mm")
    for ax in axes:
        ax.set_xlabel("x (mm, patient left →)")
        ax.grid(False)
    axes[0].set_ylabel("z (mm)")
    axes[1].set_ylabel("y (mm, posterior ↓)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig

"""Draw docs/img/rtstruct_rule.png: the RTSTRUCT rasterisation rule of mibgkit.rtstruct, by its own rasteriser.

Left: one slice. Voxel centres (dots), a non-convex contour with an inner contour (a hole); the voxels
:func:`mibgkit.rtstruct.rasterise_contours` puts in the ROI are filled (centre inside, even–odd).
Right: the slices seen from the side. Each contour goes to the slice whose centre plane is nearest, within
half a slice spacing (the bands); two contour planes on one slice are united; a contour beyond the last
band is off every slice, an error naming the ROI (the message shown is the rasteriser's).

Run from the repository root: ``python docs/make_rtstruct_figure.py``.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402
from matplotlib.patches import Polygon, Rectangle  # noqa: E402

from mibgkit.errors import GeometryError  # noqa: E402
from mibgkit.rtstruct import rasterise_contours  # noqa: E402

OUT = Path(__file__).resolve().parent / "img" / "rtstruct_rule.png"

# one slice: 16 × 12 voxels of 1 mm, origin 0 (voxel centre (i, j) at (i, j) mm)
NX, NY = 16, 12
OUTER = np.array([[1.2, 1.4], [9.6, 0.7], [14.3, 2.2], [13.6, 6.1], [9.4, 5.2], [8.7, 8.3], [12.8, 10.4],
                  [6.1, 10.8], [2.3, 9.4], [0.8, 5.6]])  # non-convex (a notch on the right)
HOLE = np.array([[3.4, 3.6], [6.6, 3.1], [6.9, 6.7], [3.9, 7.3]])


def _grid(nz: int, dz: float) -> sitk.Image:
    grid = sitk.Image(NX, NY, nz, sitk.sitkUInt8)
    grid.SetSpacing((1.0, 1.0, dz))
    return grid


def slice_panel(ax) -> None:
    z = np.zeros((len(OUTER), 1))
    contours = [np.hstack([OUTER, z]), np.hstack([HOLE, np.zeros((len(HOLE), 1))])]
    mask = sitk.GetArrayFromImage(rasterise_contours(contours, _grid(1, 3.0), name="tumour"))[0]
    for j, i in zip(*np.nonzero(mask)):
        ax.add_patch(Rectangle((i - 0.5, j - 0.5), 1, 1, facecolor="#f4a582", edgecolor="#d6604d", lw=0.6))
    jj, ii = np.mgrid[0:NY, 0:NX]
    inside = mask.astype(bool)
    ax.plot(ii[inside], jj[inside], "o", ms=3.2, color="#67001f", label="centre inside → voxel in ROI")
    ax.plot(ii[~inside], jj[~inside], "o", ms=3.2, mfc="white", mec="#777777", mew=0.7, label="centre outside")
    ax.add_patch(Polygon(OUTER, closed=True, fill=False, ec="#2166ac", lw=1.8, label="contour"))
    ax.add_patch(Polygon(HOLE, closed=True, fill=False, ec="#2166ac", lw=1.8, ls="--",
                         label="inner contour (even–odd: a hole)"))
    ax.set_xlim(-0.8, NX - 0.2)
    ax.set_ylim(NY - 0.2, -0.8)  # rows downwards, as a slice is shown
    ax.set_aspect("equal")
    ax.set_xlabel("column i (voxel centres)")
    ax.set_ylabel("row j")
    ax.set_title("on a slice: a voxel is in when its centre is inside\n(even–odd over the slice's contours)",
                 fontsize=10)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, fontsize=8, frameon=False)


def side_panel(ax) -> None:
    dz, nz = 3.0, 4  # slice centres at z = 0, 3, 6, 9 mm
    square = np.array([[3.0, 3.0], [9.0, 3.0], [9.0, 8.0], [3.0, 8.0]])
    planes = {"a": 0.4, "b": 2.6, "c": 4.1, "d": 7.4, "off": 11.2}
    for k in range(nz):
        ax.axhspan(k * dz - dz / 2, k * dz + dz / 2, color="#f0f0f0" if k % 2 else "#e0e0e0", zorder=0)
        ax.axhline(k * dz, color="#555555", lw=1.0, zorder=1)
        ax.text(0.2, k * dz - 0.25, f"slice {k} centre", va="bottom", ha="left", fontsize=8, color="#333333")
    ax.axhline(-dz / 2, color="#999999", lw=0.6, ls=":")
    ax.axhline((nz - 0.5) * dz, color="#999999", lw=0.6, ls=":")
    grid = _grid(nz, dz)
    for name, zc in planes.items():
        contour = np.column_stack([square, np.full(len(square), zc)])
        if name == "off":
            try:
                rasterise_contours([contour], grid, name="tumour")
                message = "(accepted?)"
            except GeometryError as exc:
                message = exc.reason.split(";")[0]
            ax.plot([3, 9], [zc, zc], color="#b2182b", lw=3, solid_capstyle="butt", zorder=3)
            ax.text(9.4, zc, "off every slice → error", color="#b2182b", va="center", fontsize=8.5)
            ax.text(0.2, 12.6, "rasteriser: " + "\n".join(_wrap(message, 70)), color="#b2182b", fontsize=7,
                    va="top")
            continue
        k = int(np.floor(zc / dz + 0.5))
        ax.plot([3, 9], [zc, zc], color="#2166ac", lw=3, solid_capstyle="butt", zorder=3)
        ax.annotate("", xy=(6, k * dz), xytext=(6, zc), arrowprops=dict(arrowstyle="->", color="#2166ac", lw=1.2),
                    zorder=4)
        united = " (+ 2.6: united)" if name == "c" else ""
        ax.text(9.4, zc, f"contour at z = {zc:g} mm → slice {k}{united}", color="#2166ac", va="center", fontsize=8.5)
    ax.set_xlim(0, 21)
    ax.set_ylim(15.2, -2.5)
    ax.set_xticks([])
    ax.set_ylabel("z along the slice normal (mm); bands: ± half a slice spacing")
    ax.set_title("across slices: each contour goes to the nearest slice,\nwithin half a spacing; no interpolation",
                 fontsize=10)


def _wrap(text: str, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        if len(line) + len(word) + 1 > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return lines + [line]


def main() -> Path:
    fig, (left, right) = plt.subplots(1, 2, figsize=(11.5, 5.6), gridspec_kw={"width_ratios": [1.25, 1]})
    slice_panel(left)
    side_panel(right)
    fig.suptitle("RTSTRUCT → mask in mibgkit (mibgkit.rtstruct.rasterise_contours)", fontsize=11.5)
    fig.tight_layout()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT, dpi=130, bbox_inches="tight")
    plt.close(fig)
    return OUT


if __name__ == "__main__":
    print(main())

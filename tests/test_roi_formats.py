"""The tumour ROI as a DICOM SEG or an RTSTRUCT gives the .seg.nrrd's features (SPEC 6.1), end to end.

``mibgkit synth --roi-format seg|rtstruct`` writes the analyst's ROI as ``tumour_seg.dcm`` or
``tumour_rtstruct.dcm`` (:mod:`mibgkit.synth.roi_files`); everything else is byte-identical. The SEG
holds the ``.seg.nrrd``'s voxels, so every feature is equal. The RTSTRUCT's contours rasterise back
exactly on the grid they were traced on; an ROI drawn on the SPECT is contoured on the CT slices (CT
and SPECT share a Frame of Reference, so the reader rasterises on the CT) after nearest-neighbour
resampling SPECT → CT, and measured after CT → SPECT: its features differ by that resampling, the
rasterisation's own error. Tolerances (measured on the cohorts below, see the README): tumour voxel
count on the SPECT grid within :data:`VOXEL_RTOL`, ASP within :data:`ASP_ATOL`; the uptake ratios
within :data:`RATIO_RTOL`.

The default run checks a small cohort's SEG and RTSTRUCT built from its ``.seg.nrrd`` files; the
slow runs (``--run-slow``) generate the cohorts three times and the calibrated 50-patient cohort as
SEG and as RTSTRUCT and compare Table 3.
"""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from mibgkit import io, rois
from mibgkit.cli import build_parser
from mibgkit.cohort import load_cohort
from mibgkit.errors import QCWarning
from mibgkit.features import FEATURE_COLUMNS, load_patient_images, load_roi
from mibgkit.geometry import roi_on_grid
from mibgkit.synth.dicom import write_ct_series
from mibgkit.synth.nm_layouts import write_nm_multiframe
from mibgkit.synth.roi_files import ROI_FILES, write_roi_rtstruct, write_roi_seg, write_tumour_roi

#: Relative tolerance on the tumour's voxel count on the SPECT grid, RTSTRUCT against .seg.nrrd.
VOXEL_RTOL = 0.08
#: Absolute tolerance on asphericity, RTSTRUCT against .seg.nrrd.
ASP_ATOL = 0.10
#: Relative tolerance on Tmax/Lmax and the other uptake ratios (Tmax may move with the ROI's edge).
RATIO_RTOL = 0.05

IDENTITY = {"PatientID": "NB-RF", "PatientName": "Roi^Formats", "PatientBirthDate": "20190101", "PatientSex": "F",
            "StudyDate": "20240105", "StudyTime": "101500", "AccessionNumber": "A7", "StudyID": "7"}


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------


def features(manifest, workdir) -> pd.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", QCWarning)
        f = load_cohort(manifest, workdir=workdir).features
    return f.set_index("patient_id") if "patient_id" in f else f


def voxel_counts(manifest) -> pd.DataFrame:
    """Per patient: the tumour's voxel count on the SPECT grid, and whether the ROI lies on the CT lattice."""
    rows = pd.read_csv(manifest, dtype=str)
    base = manifest.parent
    out = {}
    for row in rows.to_dict("records"):
        row = {k: (str(base / v) if k in ("spect", "ct", "roi", "markups") else v) for k, v in row.items()}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", QCWarning)
            _, roi, _ = load_patient_images(row)
            own = load_roi(row)
        ct_spacing = io.load_image(row["ct"]).GetSpacing()
        out[row["patient_id"]] = {"voxels": int(sitk.GetArrayViewFromImage(roi).sum()),
                                  "on_ct": bool(np.allclose(own.GetSpacing(), ct_spacing))}
    return pd.DataFrame.from_dict(out, orient="index")


def rtstruct_differences(nrrd: pd.DataFrame, rt: pd.DataFrame, n_nrrd: pd.DataFrame, n_rt: pd.DataFrame):
    """Per patient: where the ROI was drawn, and the RTSTRUCT's differences from the .seg.nrrd."""
    ratios = ["tmax_lmax", "tmean_lmean", "tmax_lmean", "tmax_mmax", "tmean_mmean"]
    return pd.DataFrame({
        "drawn_on": np.where(n_nrrd["on_ct"], "CT", "SPECT"),
        "voxels_nrrd": n_nrrd["voxels"], "voxels_rtstruct": n_rt["voxels"],
        "voxels_rel": (n_rt["voxels"] - n_nrrd["voxels"]).abs() / n_nrrd["voxels"],
        "asp_abs": (rt["asphericity"] - nrrd["asphericity"]).abs(),
        "ratios_rel": ((rt[ratios] - nrrd[ratios]).abs() / nrrd[ratios].abs()).max(axis=1),
    })


def assert_rtstruct_close(nrrd: pd.DataFrame, rt: pd.DataFrame, n_nrrd: pd.DataFrame, n_rt: pd.DataFrame) -> dict:
    """ROIs drawn on the CT: every feature equal. Drawn on the SPECT: within the stated tolerances.
    Returns the largest differences (SPECT-drawn ROIs)."""
    d = rtstruct_differences(nrrd, rt, n_nrrd, n_rt)
    print(d.to_string())
    on_ct = d.index[d["drawn_on"] == "CT"]
    pd.testing.assert_frame_equal(rt.loc[on_ct, list(FEATURE_COLUMNS)], nrrd.loc[on_ct, list(FEATURE_COLUMNS)],
                                  check_exact=True)
    np.testing.assert_array_equal(rt[["lmax", "lmean", "mmax", "mmean"]], nrrd[["lmax", "lmean", "mmax", "mmean"]])
    spect = d[d["drawn_on"] == "SPECT"]
    assert spect["voxels_rel"].max() <= VOXEL_RTOL, spect
    assert spect["asp_abs"].max() <= ASP_ATOL, spect
    assert spect["ratios_rel"].max() <= RATIO_RTOL, spect
    return {"n_ct": len(on_ct), "n_spect": len(spect), **{f"{k}_max": float(spect[k].max()) for k in
                                                          ("voxels_rel", "asp_abs", "ratios_rel")},
            **{f"{k}_mean": float(spect[k].mean()) for k in ("voxels_rel", "asp_abs", "ratios_rel")}}


def blob(shape, hole: bool = True) -> np.ndarray:
    """A non-convex mask (two lobes, a one-voxel bridge, a hole on the middle slices)."""
    z, y, x = np.indices(shape)
    m = ((x - 5.0) ** 2 / 12 + (y - 6.0) ** 2 / 9 + (z - 3.0) ** 2 / 4 <= 1.0)
    m |= ((x - 12.0) ** 2 / 5 + (y - 9.0) ** 2 / 5 + (z - 3.0) ** 2 / 3 <= 1.0)
    m |= (y == 9) & (x >= 5) & (x <= 12) & (z == 3)
    if hole:
        m &= ~((x == 5) & (y == 6) & (z >= 2) & (z <= 4))
    return m


# ------------------------------------------------------------------------------------------------
# the writers on small grids: exact round trips
# ------------------------------------------------------------------------------------------------


def test_rtstruct_and_seg_round_trip_exactly_on_the_ct(tmp_path):
    shape = (7, 14, 18)
    write_ct_series(np.zeros(shape), tmp_path / "ct", spacing=(1.3671875, 1.3671875, 5.0), origin=(-120.37, 33.1, -412.89),
                    identity=IDENTITY)
    ct = io.load_image(tmp_path / "ct")
    m = blob(shape)
    mask = sitk.GetImageFromArray(m.astype(np.uint8))
    mask.CopyInformation(ct)
    for writer, name in ((write_roi_seg, "seg.dcm"), (write_roi_rtstruct, "rt.dcm")):
        path = writer(tmp_path / name, mask, tmp_path / "ct")
        got = rois.read_roi(path, segment="tumour", reference=ct)
        np.testing.assert_array_equal(sitk.GetArrayFromImage(roi_on_grid(got, ct)), m.astype(np.uint8), err_msg=name)
        assert path.read_bytes() == writer(tmp_path / ("again_" + name), mask, tmp_path / "ct").read_bytes()


def test_spect_roi_is_contoured_on_the_spect_when_the_ct_has_another_frame_of_reference(tmp_path):
    shape = (7, 14, 18)
    spect_path = write_nm_multiframe(np.zeros(shape, np.uint16), tmp_path / "spect.dcm", spacing=(3.0, 3.0, 3.0),
                                     origin=(-20.0, -30.0, -400.0), identity=IDENTITY)
    write_ct_series(np.zeros((5, 20, 20)), tmp_path / "ct", spacing=(2.0, 2.0, 5.0), origin=(-20.0, -30.0, -400.0),
                    identity=IDENTITY, series={"FrameOfReferenceUID": "1.2.826.0.1.3680043.8.498.1"})
    spect = io.load_image(spect_path)
    m = blob(shape)
    mask = sitk.GetImageFromArray(m.astype(np.uint8))
    mask.CopyInformation(spect)
    name = write_tumour_roi(tmp_path, "rtstruct", mask, spect_path=spect_path, ct_path=tmp_path / "ct")
    row = {"roi": str(tmp_path / name), "roi_segment": "tumour", "ct": str(tmp_path / "ct"), "spect": str(spect_path)}
    got = load_roi(row)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(roi_on_grid(got, spect)), m.astype(np.uint8))


def test_cli_takes_the_roi_format():
    args = build_parser().parse_args(["synth", "out", "--roi-format", "rtstruct"])
    assert args.roi_format == "rtstruct"
    assert build_parser().parse_args(["synth", "out"]).roi_format == "nrrd"


# ------------------------------------------------------------------------------------------------
# a small cohort: its .seg.nrrd files rewritten as SEG and RTSTRUCT (default run)
# ------------------------------------------------------------------------------------------------


def _rewritten(small_cohort, out, roi_format):
    """A copy of the small cohort whose tumour ROIs are rewritten as ``roi_format``; its manifest."""
    shutil.copytree(small_cohort, out, ignore=shutil.ignore_patterns("tumour.seg.nrrd", "tumour_R*", "spheres_R*"))
    manifest = pd.read_csv(small_cohort / "data_manifest.csv", dtype=str)
    for row in manifest.to_dict("records"):
        mask = rois.read_roi(small_cohort / row["roi"], segment="tumour")
        write_tumour_roi(out / "patients" / row["patient_id"], roi_format, mask, spect_path=out / row["spect"],
                         ct_path=out / row["ct"])
    manifest["roi"] = [f"patients/{p}/{ROI_FILES[roi_format]}" for p in manifest["patient_id"]]
    manifest.to_csv(out / "data_manifest.csv", index=False)
    return out / "data_manifest.csv"


def test_small_cohort_seg_and_rtstruct_features(small_cohort, tmp_path):
    nrrd_manifest = small_cohort / "data_manifest.csv"
    nrrd = features(nrrd_manifest, tmp_path / "cache_nrrd")
    seg = features(_rewritten(small_cohort, tmp_path / "seg", "seg"), tmp_path / "cache_seg")
    pd.testing.assert_frame_equal(seg[list(FEATURE_COLUMNS)], nrrd[list(FEATURE_COLUMNS)], check_exact=True)
    rt_manifest = _rewritten(small_cohort, tmp_path / "rt", "rtstruct")
    rt = features(rt_manifest, tmp_path / "cache_rt")
    assert_rtstruct_close(nrrd, rt, voxel_counts(nrrd_manifest), voxel_counts(rt_manifest))


# ------------------------------------------------------------------------------------------------
# slow: the cohorts generated in each format
# ------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_generated_cohorts_in_three_formats(small_cohort, tmp_path):
    from mibgkit.synth.generate import generate_cohort

    nrrd_manifest = small_cohort / "data_manifest.csv"
    nrrd = features(nrrd_manifest, tmp_path / "cache_nrrd")
    manifests = {fmt: generate_cohort(tmp_path / fmt, n=6, seed=11, progress=False, roi_format=fmt)
                 for fmt in ("seg", "rtstruct")}
    for fmt, manifest in manifests.items():  # every file but the ROI is the nrrd cohort's, byte for byte
        for p in sorted((small_cohort / "patients").rglob("*")):
            if p.is_file() and p.name != "tumour.seg.nrrd":
                assert p.read_bytes() == (tmp_path / fmt / p.relative_to(small_cohort)).read_bytes(), p
        assert (tmp_path / fmt / "clinical.csv").read_bytes() == (small_cohort / "clinical.csv").read_bytes()
        rows = pd.read_csv(manifest, dtype=str)
        assert all(r.endswith(ROI_FILES[fmt]) for r in rows["roi"])
        assert (rows["roi_segment"] == "tumour").all()
        assert not list((tmp_path / fmt).rglob("tumour.seg.nrrd"))
    seg = features(manifests["seg"], tmp_path / "cache_seg")
    pd.testing.assert_frame_equal(seg[list(FEATURE_COLUMNS)], nrrd[list(FEATURE_COLUMNS)], check_exact=True)
    rt = features(manifests["rtstruct"], tmp_path / "cache_rt")
    diffs = assert_rtstruct_close(nrrd, rt, voxel_counts(nrrd_manifest), voxel_counts(manifests["rtstruct"]))
    print("RTSTRUCT vs nrrd (n = 6, seed 11):", diffs)


@pytest.mark.slow
def test_calibrated_cohort_table3_in_every_format(default_cohort, tmp_path):
    from mibgkit.synth.generate import DEFAULT_SEED, generate_cohort
    from mibgkit import paper
    from mibgkit.workbook import roc_cutoffs

    def table3(manifest, workdir):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", QCWarning)
            cohort = load_cohort(manifest, workdir=workdir)
        return cohort, roc_cutoffs.at_cutoffs(cohort.covariates)

    nrrd_cohort, nrrd = table3(default_cohort / "data_manifest.csv", tmp_path / "cache_nrrd")
    assert nrrd["equal"].all()
    f_nrrd = nrrd_cohort.features.set_index("patient_id")
    for fmt in ("seg", "rtstruct"):
        # generate_cohort itself asserts the published counts on its own measurement (check=True)
        manifest = generate_cohort(tmp_path / fmt, n=50, seed=DEFAULT_SEED, progress=False, roi_format=fmt)
        cohort, got = table3(manifest, tmp_path / f"cache_{fmt}")
        f_got = cohort.features.set_index("patient_id")
        if fmt == "seg":
            pd.testing.assert_frame_equal(got, nrrd)
            pd.testing.assert_frame_equal(f_got[list(FEATURE_COLUMNS)], f_nrrd[list(FEATURE_COLUMNS)],
                                          check_exact=True)
            continue
        diffs = assert_rtstruct_close(f_nrrd, f_got, voxel_counts(default_cohort / "data_manifest.csv"),
                                      voxel_counts(manifest))
        print("RTSTRUCT vs nrrd (calibrated n = 50):", diffs)
        print(pd.concat({"nrrd": nrrd["this run"], "rtstruct": got["this run"]}, axis=1).to_string())
        # Table 3 at the published cutoffs: a patient may change side only by the rasterisation's own
        # error, i.e. when its .seg.nrrd value lies within that tolerance of the cutoff.
        for var, cut, tol in (("tmax_lmax", paper.TABLE3.at["tmax_lmax", "cutoff"], None),
                              ("asphericity", paper.TABLE3.at["asphericity", "cutoff"], ASP_ATOL)):
            flipped = f_nrrd.index[(f_nrrd[var] >= cut) != (f_got[var] >= cut)]
            if tol is None:
                assert flipped.empty, (var, list(flipped))
            else:
                assert ((f_nrrd.loc[flipped, var] - cut).abs() <= tol).all(), f_nrrd.loc[flipped, var]
            print(var, "patients on the other side of the cutoff:", list(flipped))

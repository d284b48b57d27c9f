"""The synthetic cohort: files and their contract, determinism, DICOM identity and geometry, and the
calibration of the default design (Table 1 counts, Table 3 confusion counts, Table 2 pattern) as
measured by the imaging pipeline from the written files."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest

from mibgkit.synth import clinical
from mibgkit.synth.anatomy import Grid
from mibgkit.synth.clinical import ASP_CUTOFF, TMAX_LMAX_CUTOFF, apportion, design_cohort
from mibgkit.synth.clinical import _wald_p as cox_wald_p
from mibgkit.synth.generate import CLINICAL_FIELDS, MANIFEST_FIELDS, generate_cohort
from mibgkit.synth.tumour import draw_tumour, inside


# ----------------------------------------------------------------------------------------- units


def test_apportion_keeps_study_counts_and_scales():
    counts = {"abdomen": 39, "mediastinum": 7, "pelvis": 4}
    assert apportion(counts, 50) == counts
    scaled = apportion(counts, 2000)
    assert sum(scaled.values()) == 2000 and scaled["abdomen"] == 1560
    assert sum(apportion(counts, 3).values()) == 3


def test_design_reproduces_table1_counts_for_n50():
    d = design_cohort(50, np.random.default_rng(1), search=False)
    vc = lambda c: d[c].value_counts().to_dict()  # noqa: E731
    assert vc("sex") == {"M": 25, "F": 25}
    assert vc("primary_site") == {"abdomen": 39, "mediastinum": 7, "pelvis": 4}
    assert vc("idrf")["positive"] == 30
    assert ((d.idrf == "positive") == (d.idrf_number > 0)).all()
    assert vc("uptake_extent") == {"above_liver": 31, "muscle_to_liver": 19}
    assert vc("bone_marrow_metastasis") == {"no": 33, "yes": 17}
    assert vc("histology") == {"NB": 33, "GNB": 17}
    assert d.nse_ng_ml.isna().sum() == 13 and d.ldh_u_l.isna().sum() == 20
    assert vc("mycn") == {"normal": 33, "amplified": 4, "": 13}
    assert vc("del_1p36") == {"no": 30, "yes": 2, "": 18}
    assert vc("del_11q23") == {"no": 30, "yes": 5, "": 15}
    assert [vc(c).get("yes", 0) for c in ("neoadjuvant_chemo", "surgery", "postoperative_chemo", "radiotherapy")] \
        == [23, 50, 31, 13]
    assert vc("event_type") == {"none": 39, "death": 7, "relapse": 2, "progression": 2}
    ages = d.age_months
    assert ((ages < 18).sum(), ((ages >= 18) & (ages < 60)).sum(), (ages >= 60).sum()) == (18, 18, 14)
    assert (ages.min(), ages.max(), ages.median()) == (1, 102, 37)
    # Latent image classes reproduce Table 3's cross-tabulation against the outcome.
    ev = d.efs_event == 1
    assert (d.tl_high[ev].sum(), d.tl_high[~ev].sum()) == (6, 4)
    assert (d.asp_high[ev].sum(), d.asp_high[~ev].sum()) == (7, 4)
    assert ((d.target_tmax_lmax >= TMAX_LMAX_CUTOFF) == (d.tl_high == 1)).all()
    assert ((d.target_asp >= ASP_CUTOFF) == (d.asp_high == 1)).all()
    assert d.efs_days.min() == 76 and d.efs_days.max() == 2252
    # One event in a GNB, so that histology's hazard ratio is finite.
    assert ((d.histology == "GNB") & ev).sum() == 1
    # Targets are ordered so that the published split is Youden's optimum, with room to spare.
    assert clinical.youden_robust(d.target_tmax_lmax, d.tl_high, d.efs_event, clinical._TL_REALISED, True)
    assert clinical.youden_robust(d.target_asp, d.asp_high, d.efs_event, clinical._ASP_REALISED, False)


def test_youden_robust_is_roc_cutoffs_rule():
    from mibgkit.stats import roc_cutoff

    rng = np.random.default_rng(4)
    for _ in range(200):
        x = rng.normal(size=30)
        e = (rng.random(30) < 0.3).astype(int)
        if e.sum() in (0, 30):
            continue
        cut = np.sort(x)[rng.integers(5, 25)]
        high = (x >= cut).astype(int)
        r = roc_cutoff(x, e)
        best = r["cutoff"] == cut and r["n_optimal"] == 1
        assert clinical.youden_robust(x, high, e, 0.0, False) == best


def test_design_scales_and_birth_dates_match_ages():
    d = design_cohort(7, np.random.default_rng(3))
    assert len(d) == 7 and d.patient_id.is_unique and d.patient_name.is_unique
    for _, r in d.iterrows():
        born = pd.Timestamp(r.birth_date)
        scan = pd.Timestamp(r.scan_date)
        months = (scan.year - born.year) * 12 + scan.month - born.month - (scan.day < born.day)
        assert months == r.age_months


def test_cox_wald_p_matches_lifelines():
    lifelines = pytest.importorskip("lifelines")
    rng = np.random.default_rng(0)
    x = rng.normal(size=60)
    t = rng.exponential(np.exp(-0.8 * x)) * 100 + 1
    e = (rng.random(60) < 0.7).astype(int)
    df = pd.DataFrame({"t": t, "e": e, "x": x})
    ref = lifelines.CoxPHFitter().fit(df, "t", "e").summary.loc["x", "p"]
    assert cox_wald_p(t, e, x) == pytest.approx(ref, rel=1e-3)


def test_tumour_amplitude_roughens_the_surface():
    from mibgkit.shape import shape_features

    shape = draw_tumour(np.random.default_rng(5), (0.0, 0.0, 0.0), 20.0, spiculated=0.8)
    g = Grid((48, 48, 48), (3.0, 3.0, 3.0), (-70.5, -70.5, -70.5))
    pts = g.points()
    asp = [shape_features(inside(shape, pts, a).reshape(g.shape), spacing=(3.0, 3.0, 3.0))["asphericity"]
           for a in (0.0, 0.5, 1.0)]
    assert asp[0] < 0.25 < asp[1] < asp[2]


@pytest.mark.parametrize("necrosis, n_hot", [(0.0, 1), (0.45, 3)])
def test_uptake_patterns_live_inside_the_solid(necrosis, n_hot):
    """Occupancy at one sample per voxel is the solid at the voxel centres of the whole grid (the
    patterns are evaluated over the solid's reach only); nothing is taken up outside it."""
    from mibgkit.synth.tumour import uptake_patterns

    shape = draw_tumour(np.random.default_rng(8), (4.0, -6.0, 10.0), 14.0, spiculated=0.9)
    g = Grid((40, 44, 42), (3.0, 3.0, 3.0), (-60.5, -70.5, -50.5))  # blur-sized margins around it
    base, hot, occ = uptake_patterns(shape, g, 1.0, np.random.default_rng(2), necrosis=necrosis, n_hot=n_hot,
                                     supersample=1)
    solid = inside(shape, g.points(), 1.0).reshape(g.shape)
    assert solid.sum() > 100 and (~solid).sum() > 10 * solid.sum()
    np.testing.assert_array_equal(occ, solid.astype(np.float32))
    assert not base[~solid].any() and not hot[~solid].any()
    assert base[solid].min() >= 0 and 0.2 < float(np.median(base[solid])) < 1.5
    assert 0 < hot.max() <= 1.0
    # a hot focus: Gaussian of 2.5-4.5 mm SD, so it halves within 3-5.3 mm of its peak
    peak = np.unravel_index(np.argmax(hot), hot.shape)
    assert hot[peak] > 0.5
    for ax in range(3 if n_hot == 1 else 0):
        step = list(peak)
        step[ax] += 2  # 6 mm away
        if step[ax] < hot.shape[ax] and solid[tuple(step)]:
            assert hot[tuple(step)] < 0.5 * hot[peak]


def test_system_blur_over_the_activity_box_equals_the_whole_grid():
    from scipy import ndimage

    from mibgkit.synth.generate import _blur

    rng = np.random.default_rng(3)
    shape = (40, 44, 36)
    for trial in range(12):
        a = np.zeros(shape, dtype=np.float32 if trial % 2 else np.float64)
        lo = rng.integers(0, 30, 3)
        hi = np.minimum(lo + rng.integers(1, 20, 3), shape)
        if trial == 0:  # activity touching every face of the grid
            lo, hi = np.zeros(3, int), np.array(shape)
        a[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = rng.random(tuple(hi - lo))
        sigma = rng.uniform(0.4, 2.5, 3)
        want = ndimage.gaussian_filter(a, sigma, mode="constant", truncate=3.5)
        got = _blur(a, sigma)
        assert got.dtype == want.dtype and np.array_equal(got, want), trial
    assert not _blur(np.zeros(shape), (1.0, 1.0, 1.0)).any()


def test_ct_is_reconstructed_inside_the_inscribed_circle():
    from mibgkit.synth.anatomy import TISSUES, ct_numbers

    labels = np.full((3, 32, 32), TISSUES["air"], np.uint8)
    labels[:, 12:20, 12:20] = TISSUES["muscle"]
    labels[1, 0, 0] = TISSUES["soft_tissue"]  # body outside the circle is still reconstructed
    hu = ct_numbers(labels, np.random.default_rng(0))
    assert hu.dtype == np.int16
    assert abs(float(hu[:, 14:18, 14:18].mean()) - 48.0) < 6.0
    assert np.all(hu[:, 31, 31] == -1024) and np.all(hu[:, 0, 31] == -1024)  # corners: not reconstructed
    assert np.std(hu[:, 16, 2:6]) > 2.0  # air inside the circle carries noise
    assert hu[1, 0, 0] != -1024 and hu[0, 0, 0] != -1024  # the column holding body is reconstructed


def test_ct_noise_is_normal_about_the_tissue_value():
    from scipy import stats

    from mibgkit.synth.anatomy import TISSUES, ct_numbers

    labels = np.full((40, 64, 64), TISSUES["liver"], np.uint8)
    labels[:, :, 32:] = TISSUES["air"]
    hu = ct_numbers(labels, np.random.default_rng(3), noise_hu=18.0)
    inner = np.zeros(labels.shape[1:], bool)
    inner[16:48, 16:48] = True  # inside the reconstructed circle
    for tissue, mean, sd in (("liver", 58.0, 18.0), ("air", -1000.0, 6.0)):
        x = hu[:, inner & (labels[0] == TISSUES[tissue])].astype(float).ravel()
        assert abs(x.mean() - mean) < 0.1 * sd / 2 and abs(x.std() - np.sqrt(sd**2 + 1 / 12)) < 0.02 * sd, tissue
        # rounded normal: the share at each integer matches the normal's mass over [k - ½, k + ½]
        k = np.arange(int(mean - 3 * sd), int(mean + 3 * sd) + 1)
        want = stats.norm.cdf(k + 0.5, mean, sd) - stats.norm.cdf(k - 0.5, mean, sd)
        got = np.array([(x == v).mean() for v in k])
        assert np.abs(got - want).max() < 0.004, tissue
    assert ct_numbers(labels, np.random.default_rng(3)).tobytes() == hu.tobytes()  # reproducible for a seed


# ---------------------------------------------------------------------------- a small cohort


def _hashes(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def small_cohort(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth4")
    manifest = generate_cohort(out, n=4, seed=7, progress=False)
    return out, manifest


def test_small_cohort_writes_the_contract(small_cohort):
    out, manifest = small_cohort
    m = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    c = pd.read_csv(out / "clinical.csv", dtype=str, keep_default_na=False)
    assert tuple(m.columns) == MANIFEST_FIELDS and tuple(c.columns) == CLINICAL_FIELDS
    assert list(m.patient_id) == ["NB001", "NB002", "NB003", "NB004"] == list(c.patient_id)
    for _, row in m.iterrows():
        for col in ("spect", "ct", "roi", "markups"):
            assert not Path(row[col]).is_absolute()
            assert (out / row[col]).exists(), row[col]
        assert row.roi_segment == "tumour"
        assert float(row.efs_days) > 0 and row.efs_event in ("0", "1")
        pd.Timestamp(row.scan_date)
    systems = {json.loads((out / r).read_text())["markups"][0]["coordinateSystem"] for r in m.markups}
    assert systems == {"LPS", "RAS"}
    from mibgkit.manifest import read_clinical, read_manifest

    read_manifest(manifest)
    clin = read_clinical(out / "clinical.csv")
    assert "patient_name" not in clin.columns


def test_dicom_carries_the_planted_identity_and_geometry(small_cohort):
    out, manifest = small_cohort
    m = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    c = pd.read_csv(out / "clinical.csv", dtype=str, keep_default_na=False).set_index("patient_id")
    row = m.iloc[0]
    ident = c.loc[row.patient_id]
    nm = pydicom.dcmread(out / row.spect)
    assert nm.Modality == "NM" and (nm.Rows, nm.Columns) == (128, 128)
    assert float(nm.PixelSpacing[0]) == pytest.approx(4.795 / 1.6, abs=1e-3)
    assert str(nm.PatientName) == ident.patient_name
    assert nm.PatientID == ident.hospital_mrn
    assert nm.PatientBirthDate == ident.birth_date.replace("-", "")
    assert nm.StudyDate == row.scan_date.replace("-", "")
    ct_files = sorted((out / row.ct).glob("*.dcm"))
    ct = pydicom.dcmread(ct_files[0])
    assert ct.Modality == "CT" and (ct.Rows, ct.Columns) == (256, 256)
    assert str(ct.PatientName) == ident.patient_name and ct.PatientID == ident.hospital_mrn
    assert float(ct.PixelSpacing[0]) != float(nm.PixelSpacing[0])
    counts = nm.pixel_array
    assert counts.dtype == np.uint16 and 0 < counts.max() < 65535


def test_pipeline_reads_a_synthetic_patient(small_cohort):
    from mibgkit import io
    from mibgkit.features import extract_patient
    from mibgkit.manifest import read_manifest

    out, manifest = small_cohort
    m = read_manifest(manifest)
    spect = io.load_image(m.iloc[0]["spect"])
    assert spect.GetSize()[:2] == (128, 128)
    assert spect.GetSpacing()[0] == pytest.approx(2.996875)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        row = extract_patient(m.iloc[0].to_dict())
    assert row["tmax_lmax"] > 1 and 0 < row["asphericity"] < 3 and 20 < row["max_diameter_mm"] < 200
    assert 1.0 < row["lmax"] / row["lmean"] < 2.5


def test_generation_is_byte_identical(tmp_path, small_cohort):
    out, _ = small_cohort
    again = tmp_path / "again"
    generate_cohort(again, n=4, seed=7, progress=False, workers=1)
    assert _hashes(again) == _hashes(out)


# ------------------------------------------------------------------ the calibrated default design


@pytest.fixture(scope="module")
def study_cohort(default_cohort):
    """The session's default cohort (n = 50, default seed; generation asserts Table 3 itself),
    measured file by file with the imaging pipeline."""
    from mibgkit.features import extract_patient
    from mibgkit.cohort import analysis_table
    from mibgkit.manifest import read_clinical, read_manifest

    out = Path(default_cohort)
    m = read_manifest(out / "data_manifest.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows = [extract_patient(r.to_dict()) for _, r in m.iterrows()]
    features = pd.DataFrame(rows).set_index("patient_id", drop=False).rename_axis(None)
    return analysis_table(m, read_clinical(out / "clinical.csv"), features)


def test_default_cohort_reproduces_table3_confusion_counts(study_cohort):
    d = study_cohort
    ev = d.efs_event.astype(int) == 1
    for col, cut, expected in (("tmax_lmax", TMAX_LMAX_CUTOFF, (6, 5, 4, 35)),
                               ("asphericity", ASP_CUTOFF, (7, 4, 4, 35))):
        pos = d[col] >= cut
        assert ((pos & ev).sum(), (~pos & ev).sum(), (pos & ~ev).sum(), (~pos & ~ev).sum()) == expected, col


def test_default_cohort_outcome_and_table1(study_cohort):
    d = study_cohort
    assert int(d.efs_event.sum()) == 11
    assert d.event_type.value_counts().to_dict() == {"none": 39, "death": 7, "relapse": 2, "progression": 2}
    months = d.efs_days / 30.4375
    assert (round(months.min(), 1), round(months.max(), 1)) == (2.5, 74.0)  # as published
    assert 38 <= months[d.efs_event == 0].median() <= 46
    assert (d.bone_marrow_metastasis == "yes").sum() == 17


@pytest.fixture(scope="module")
def study_covariates(study_cohort):
    from mibgkit.variables import covariates

    return covariates(study_cohort)


def test_default_cohort_youden_optima_are_table3(study_covariates):
    """The paper found its cut-offs as Youden optima: so does the twin, with the same tables."""
    from mibgkit.stats import roc_cutoff

    x = study_covariates
    for col, cut, expected in (("tmax_lmax", TMAX_LMAX_CUTOFF, (6, 5, 4, 35)),
                               ("asphericity", ASP_CUTOFF, (7, 4, 4, 35))):
        r = roc_cutoff(x[col], x.efs_event)
        assert (r["tp"], r["fn"], r["fp"], r["tn"]) == expected, (col, r["cutoff"])
        assert r["n_optimal"] == 1
        assert r["cutoff"] == x[col][x[col] >= cut].min()  # the split at the published cut-off


def test_default_cohort_shows_table2_univariate_pattern(study_covariates):
    from mibgkit.stats import cox_univariate
    from mibgkit.variables import TABLE2_VARIABLES

    x = study_covariates
    names = [v.name for v in TABLE2_VARIABLES]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        uni = cox_univariate(x, "efs_days", "efs_event", names, errors="warn")
    significant = {n for n in names if uni.at[n, "p"] < 0.05}
    assert significant == {"bone_marrow_metastasis", "tmax_lmax", "tmax_lmean", "asphericity", "curie_score",
                           "idrf_number"}, uni.p.round(4).to_dict()
    # Histology: events in both groups (finite HR, NB higher), not significant, as published.
    assert np.isfinite(uni.at["histology", "hr"]) and uni.at["histology", "hr"] > 1
    # Age group: older children tend to do worse (published HR 3.87, p .084).
    assert uni.at["age_group", "hr"] > 2


def test_default_cohort_stepwise_selects_the_published_model(study_covariates):
    from mibgkit.stats import cox_forward_stepwise, cox_univariate
    from mibgkit.variables import TABLE2_VARIABLES

    x = study_covariates
    names = [v.name for v in TABLE2_VARIABLES]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        uni = cox_univariate(x, "efs_days", "efs_event", names, errors="warn")
        candidates = [n for n in names if uni.at[n, "p"] <= 0.05]
        step = cox_forward_stepwise(x, "efs_days", "efs_event", candidates)
    assert set(step.selected) == {"bone_marrow_metastasis", "tmax_lmax", "asphericity"}, step.steps
    assert (step.table.p < 0.05).all()

"""External validation (notebook 08's workbook) and the centre-B synthetic cohort."""

import json

import numpy as np
import pandas as pd
import pytest

from mibgkit.frozen_model import DEFAULT_MODEL, load_model
from mibgkit.workbook import Missing
from mibgkit.workbook import external_validation as ev


def _run_all(table, model, n_boot=50):
    """Every analysis of notebook 08 on ``table``; returns the results and the not-estimable list."""
    missing = Missing()
    sc = ev.scored(table, model, missing)
    diag = ev.diagnostics(table, model, (2, 3), missing)
    ev.diagnostics_display(diag)
    groups, km = ev.km_by_groups(table, model, missing)
    ev.km_summary(km, groups)
    disc = ev.discrimination(sc, model, 3, missing)
    calib = ev.calibration(sc, (2, 3), 3, "efron", missing)
    curves = ev.decision_curves(sc, model, (2, 3), missing=missing)
    incr = ev.incremental_value(sc, model, n_boot=n_boot, seed=1, missing=missing)
    verdicts = ev.claims(model, diag, km, groups, disc, calib, incr)
    text = ev.closing_paragraph(verdicts, len(sc), int(sc.efs_event.sum()), model.name)
    ev.calibration_figure(calib), ev.decision_figure(curves)
    return dict(sc=sc, diag=diag, km=km, disc=disc, calib=calib, curves=curves, incr=incr, verdicts=verdicts,
                text=text), missing


def _table(n, seed=0, events=True, asp=None):
    rng = np.random.default_rng(seed)
    bm = rng.random(n) < 0.3
    tl = np.exp(np.log(4.0) + 0.5 * rng.standard_normal(n))
    a = 0.15 + 0.5 * rng.beta(1.3, 3.0, n) if asp is None else np.full(n, asp)
    lp = 1.5 * bm + 0.22 * tl + 3.3 * a
    t = rng.exponential(1500 * np.exp(-(lp - lp.mean())))
    c = rng.uniform(400, 2500, n)
    e = (t <= c).astype(int) if events else np.zeros(n, int)
    return pd.DataFrame({"efs_days": np.maximum(np.floor(np.where(e == 1, t, c)), 1.0), "efs_event": e,
                         "bone_marrow_metastasis": np.where(bm, "yes", "no"), "tmax_lmax": tl, "asphericity": a},
                        index=[f"P{i:03d}" for i in range(n)])


def _whats(missing):
    return [m.what for m in missing]


def test_a_normal_cohort_estimates_everything():
    res, missing = _run_all(_table(120, seed=3), load_model())
    assert res["calib"].slope is not None and np.isfinite(res["calib"].slope["slope"])
    assert set(res["curves"].strategy) == {"high Tmax/Lmax", "high ASP", "both high", "treat all", "treat none"}
    assert res["incr"]["delta_c"] is not None and len(res["incr"]["lr"]) == 3
    assert np.isfinite(res["disc"]["Harrell C"]).all()
    assert not [w for w in _whats(missing) if "slope" in w or "Harrell" in w or "LR test" in w]
    assert "Applied frozen to 120 patients" in res["text"]


def test_diagnostics_are_clopper_pearson_beside_the_paper():
    from mibgkit.stats import clopper_pearson

    t = _table(80, seed=5)
    diag = ev.diagnostics(t, load_model(), (2,))
    row = diag[(diag.cutoff_variable == "asphericity") & (diag.definition == "event during follow-up (paper)")
               & (diag.measure == "sensitivity")].iloc[0]
    assert row.value == row.tp / (row.tp + row.fn)
    assert (row.ci_lower, row.ci_upper) == pytest.approx(clopper_pearson(row.tp, row.tp + row.fn))
    assert row.paper == pytest.approx(0.636)
    at2 = diag[(diag.definition == "event by 2 years")]
    assert (at2.n + at2.excluded == 80).all()  # censored before 2 years are excluded and counted


def test_no_events_is_not_estimable_not_a_crash():
    res, missing = _run_all(_table(30, seed=1, events=False), load_model())
    whats = _whats(missing)
    for needed in ("calibration slope", "Harrell C of prognostic index (frozen model)",
                   "ΔC (imaging added to bone/BM metastasis)", "log-rank test by ASP ≥ 0.342"):
        assert needed in whats
    assert res["calib"].slope is None
    assert all(c.verdict == "not testable" for c in res["verdicts"])


def test_nobody_high_is_not_estimable():
    res, missing = _run_all(_table(40, seed=2, asp=0.2), load_model())
    whats = _whats(missing)
    assert "ppv of ASP ≥ 0.342, event during follow-up (paper)" in whats
    assert "log-rank test by ASP ≥ 0.342" in whats
    asp_rows = res["diag"][(res["diag"].cutoff_variable == "asphericity") & (res["diag"].measure == "ppv")]
    assert asp_rows.value.isna().all() and asp_rows.reason.str.contains("no patients called high").all()


def test_three_patients():
    t = _table(3, seed=4)
    t["efs_event"] = [1, 0, 0]
    res, missing = _run_all(t, load_model(), n_boot=20)
    assert "Applied frozen to 3 patients" in res["text"]
    assert missing  # something is always not estimable at n = 3


def test_event_status_definitions():
    s = ev.event_status([100, 800, 900, 200, 730.5], [1, 1, 0, 0, 1], 730.5)
    assert s.iloc[:3].tolist() == [1.0, 0.0, 0.0] and np.isnan(s.iloc[3])  # censored before: excluded
    assert s.iloc[4] == 1.0  # an event exactly at the horizon counts
    assert ev.event_status([100, 800], [1, 0]).tolist() == [1.0, 0.0]


def test_report_routes_the_validation_cohort():
    from mibgkit.report import NOTEBOOKS, _notebook_parameters

    names = [n for n, _ in NOTEBOOKS]
    assert names.index("08_external_validation") == names.index("06_robustness") + 1 + ("07_reader_agreement" in names)
    assert names.index("09_checklist") == names.index("08_external_validation") + 1
    params = {"manifest": "/d/data_manifest.csv", "clinical": "/d/other.csv", "workdir": "/w"}
    p8 = _notebook_parameters("08_external_validation", params, "/v/data_manifest.csv")
    assert p8["manifest"] == "/v/data_manifest.csv" and p8["derivation_manifest"] == "/d/data_manifest.csv"
    assert p8["clinical"] is None
    assert _notebook_parameters("09_checklist", params, "/v/m.csv")["validation_manifest"] == "/v/m.csv"
    assert _notebook_parameters("03_cox_regression", params, "/v/m.csv") == params
    assert _notebook_parameters("08_external_validation", params, None) == params


# --------------------------------------------------------------------------------------------
# centre B
# --------------------------------------------------------------------------------------------


def test_centre_b_design_has_the_published_effects_at_half_size():
    """On the latent targets of a large design the slope of the published PI is the design's γ = 0.5."""
    from mibgkit.stats import calibration_slope
    from mibgkit.synth import centres

    d = centres.design_cohort("B", 3000, np.random.default_rng(7))
    pi = centres.published_pi((d.bone_marrow_metastasis == "yes").astype(float), d.target_tmax_lmax, d.target_asp)
    s = calibration_slope(d.efs_days, d.efs_event, pi)
    assert 0.4 < s["slope"] < 0.6 and s["ci_upper"] < 1
    assert (d.age_months < 18).mean() < 0.25  # fewer infants than the paper's 36 %
    assert (d.idrf == "positive").mean() > 0.7


@pytest.fixture(scope="module")
def centre_b_small(tmp_path_factory):
    from mibgkit.synth.generate import generate_cohort

    out = tmp_path_factory.mktemp("centre_b")
    generate_cohort(out, n=3, centre="B", progress=False, workers=1)
    return out


def test_centre_b_files_are_another_department(centre_b_small):
    import pydicom

    ds = pydicom.dcmread(centre_b_small / "patients" / "CB001" / "spect.dcm", stop_before_pixels=True)
    assert ds.Manufacturer == "GE MEDICAL SYSTEMS"
    assert [float(v) for v in ds.PixelSpacing] == [4.418, 4.418]
    assert ds.DetectorInformationSequence[0].CollimatorGridName == "MEGP"
    assert ds.ConvolutionKernel == "OSEM 4i10s"


def test_workbook_on_a_small_generated_cohort(centre_b_small, tmp_path):
    """Three generated centre-B patients (no events with this seed), and a model nobody is high on."""
    from mibgkit.cohort import load_cohort

    cohort = load_cohort(centre_b_small / "data_manifest.csv", workdir=tmp_path / "work")
    res, missing = _run_all(cohort.table, load_model(), n_boot=20)
    assert len(res["sc"]) == 3
    if cohort.table.efs_event.sum() == 0:
        assert "calibration slope" in _whats(missing)
    raw = json.loads(DEFAULT_MODEL.read_text())
    for c in raw["cutoffs"]:
        c["cutoff"] = 1e6
    p = tmp_path / "nobody_high.json"
    p.write_text(json.dumps(raw))
    res, missing = _run_all(cohort.table, load_model(p), n_boot=20)
    assert any(w.startswith("ppv of ASP") for w in _whats(missing))
    assert set(res["sc"].asphericity_group) == {"low"}


def test_checklist_reads_the_headers(centre_b_small):
    from mibgkit.manifest import read_manifest
    from mibgkit.workbook import checklist as ck

    m = read_manifest(centre_b_small / "data_manifest.csv")
    headers = ck.acquisition_headers(m, centre_b_small)
    ctx = ck.RunContext(n_patients=3, n_events=0, validation=True, validation_n=3)
    items = ck.ibsi_items(headers, ctx).set_index("IBSI item")["this run"]
    assert items["Collimator"].startswith("MEGP")
    assert "Discovery NM/CT 670" in items["Scanner model"]
    assert "4.418" in items["SPECT voxel size, mm (in-plane; slice spacing)"]
    text = " ".join(map(str, headers.to_numpy().ravel()))
    clinical = pd.read_csv(centre_b_small / "clinical.csv")
    for name in clinical.patient_name:  # no identity from the headers
        assert name.split("^")[0] not in text
    assert ck.rqs_table(ctx).attrs["total"] <= 36
    assert set(ck.tripod_items(ctx).status) <= {"met", "partly", "not met"}


@pytest.mark.slow
def test_centre_b_calibration_slope_below_one_through_the_pipeline(tmp_path):
    """The centre-B cohort (its default seed, n = 50), measured by the pipeline from its files: the
    published model is optimistic there (slope < 1)."""
    from mibgkit.cohort import load_cohort
    from mibgkit.synth.generate import generate_cohort

    manifest = generate_cohort(tmp_path / "b", n=50, centre="B", progress=False)
    cohort = load_cohort(manifest, workdir=tmp_path / "work")
    missing = Missing()
    sc = ev.scored(cohort.table, load_model(), missing)
    s = ev.calibration(sc, (2, 3), missing=missing).slope
    assert s is not None and s["slope"] < 1 and s["ci_upper"] < 1

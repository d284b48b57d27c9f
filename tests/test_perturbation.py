"""Perturbation robustness: every variant is the measurement extraction makes of the changed input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from scipy import ndimage

from mibgkit import perturbation as pt
from mibgkit.features import PatientData
from mibgkit.manifest import read_manifest


@pytest.fixture(scope="module")
def patient(small_cohort):
    manifest = read_manifest(small_cohort / "data_manifest.csv")
    return PatientData.load(manifest.iloc[0].to_dict())


@pytest.fixture(scope="module")
def variants(patient):
    return pt.perturb_patient(patient, poisson_draws=2)


def test_families_and_counts(variants):
    counts = variants.groupby("family", sort=False).size().to_dict()
    assert counts == {"none": 1, "roi": 2, "liver sphere": 6, "muscle spheres": 6, "poisson": 2}


def test_original_is_the_extraction_row(patient, variants):
    original = variants[variants.family == "none"].iloc[0]
    direct = patient.measure()
    for key in ("tmax", "lmax", "mmax", "asphericity", "mtv_ml"):
        assert original[key] == direct[key]


def test_eroded_and_dilated_roi_are_one_face_voxel(patient, variants):
    box, _, _ = patient.roi_box((1, 1, 1))
    roi = sitk.GetArrayViewFromImage(box) != 0
    cross = ndimage.generate_binary_structure(3, 1)
    n = variants.set_index("variant")["roi_n_voxels"]
    assert n["eroded 1 voxel"] == ndimage.binary_erosion(roi, structure=cross).sum()
    assert n["dilated 1 voxel"] == ndimage.binary_dilation(roi, structure=cross).sum()
    assert n["eroded 1 voxel"] < n["original"] < n["dilated 1 voxel"]


def test_sphere_shift_is_a_measurement_at_the_moved_centre(patient, variants):
    row = variants[(variants.family == "liver sphere") & (variants.variant == "y +5 mm")].iloc[0]
    centres = dict(patient.centres)
    x, y, z = centres["liver"]
    centres["liver"] = (x, y + 5.0, z)
    direct = patient.measure(centres=centres)
    assert row["lmean"] == direct["lmean"] and row["tmax_lmax"] == direct["tmax_lmax"]
    muscles = variants[variants.family == "muscle spheres"]
    assert (muscles["lmean"] == variants[variants.family == "none"]["lmean"].iloc[0]).all()


def test_threshold_family_only_for_a_thresholded_mtv(patient):
    v = pt.perturb_patient(patient, mtv_method="percent_max", poisson_draws=0)
    thr = v[v.family == "threshold"].set_index("variant")
    assert list(thr.index) == ["fraction × 0.95", "fraction × 1.05"]
    assert thr.at["fraction × 0.95", "mtv_n_voxels"] >= thr.at["fraction × 1.05", "mtv_n_voxels"]
    assert patient.measure(mtv_method="percent_max", mtv_params={"fraction": 0.38})["mtv_ml"] == \
        thr.at["fraction × 0.95", "mtv_ml"]


def test_poisson_draws_are_seeded_by_the_patient(patient, variants):
    again = pt.perturb_patient(patient, poisson_draws=2)
    pd.testing.assert_frame_equal(variants, again)
    draws = variants[variants.family == "poisson"]
    assert draws["tmax"].nunique() >= 1 and not (draws["tmean"] == variants["tmean"].iloc[0]).all()


def _table(values: dict) -> pd.DataFrame:
    rows = [{"patient_id": pid, "family": fam, "variant": var, "asphericity": x}
            for pid, per in values.items() for (fam, var), x in per.items()]
    return pd.DataFrame(rows)


def test_changed_side_counts_patients_any_variant_puts_across_the_cutoff():
    m = _table({
        "A": {("none", "original"): 0.30, ("roi", "e"): 0.29, ("roi", "d"): 0.35},  # crosses 0.342
        "B": {("none", "original"): 0.50, ("roi", "e"): 0.45, ("roi", "d"): 0.60},  # stays high
        "C": {("none", "original"): 0.342, ("roi", "e"): 0.3419, ("roi", "d"): 0.343},  # at the cutoff: high; one low
    })
    out = pt.changed_side(m, "asphericity", 0.342).set_index("family")
    assert out.at["roi", "n_patients"] == 3 and out.at["roi", "n_changed"] == 2
    assert out.at["roi", "patients_changed"] == "A, C"
    assert out.at["roi", "share_changed"] == pytest.approx(2 / 3)


def test_robustness_table_is_icc2_of_variants_and_original():
    rng = np.random.default_rng(3)
    truth = rng.uniform(0.1, 0.9, 12)
    values = {f"P{i}": {("none", "original"): t, ("roi", "a"): t + 0.01, ("roi", "b"): t - 0.02}
              for i, t in enumerate(truth)}
    m = _table(values)
    from mibgkit.stats import icc

    long = m.rename(columns={"variant": "rater"})
    expected = icc(long, "patient_id", "rater", "asphericity").loc["ICC2", "icc"]
    out = pt.robustness_table(m, features=("asphericity",))
    assert out.iloc[0]["icc"] == pytest.approx(expected) and out.iloc[0]["n_variants"] == 2


def test_cohort_carries_on_past_a_bad_patient(small_cohort, tmp_path):
    manifest = read_manifest(small_cohort / "data_manifest.csv").iloc[:2].copy()
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(b"nope")
    manifest.iloc[1, manifest.columns.get_loc("spect")] = str(bad)
    meas, problems = pt.perturb_cohort(manifest, poisson_draws=0, progress=False)
    assert list(problems.patient_id) == [manifest.index[1]]
    assert "bad.dcm" in problems.iloc[0]["error"]
    assert set(meas.patient_id) == {manifest.index[0]}

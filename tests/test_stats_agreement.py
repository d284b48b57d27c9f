"""mibgkit.stats.agreement against R (psych 2.2 ``ICC(lmer = FALSE)`` and ``cohen.kappa``; irr
0.84.1's ``kappam.fleiss`` formulas), published values, and the definitions.

Golden values: tests/reference/golden_agreement.json, written by
tests/reference/make_golden_agreement.R (Shrout & Fleiss 1979 Table 2, Fleiss 1971 Table 1 and
seeded data sets with ties; none of it the synthetic cohort).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose
from reference_data import golden

from mibgkit.errors import QCWarning, StatisticsError
from mibgkit.stats import bland_altman, cohen_kappa, fleiss_kappa, icc, koo_li
from mibgkit.stats.icc import ICC_COLUMNS, ICC_TYPES

GOLDEN = golden("golden_agreement.json")


def long_table(wide, targets=None, raters=None) -> pd.DataFrame:
    wide = np.asarray(wide, float)
    targets = [f"P{i:02d}" for i in range(wide.shape[0])] if targets is None else targets
    raters = [f"reader{j}" for j in range(wide.shape[1])] if raters is None else raters
    return pd.DataFrame(
        [(t, r, wide[i, j]) for i, t in enumerate(targets) for j, r in enumerate(raters)],
        columns=["patient_id", "reader", "value"],
    )


def icc_of(wide, **kw) -> pd.DataFrame:
    return icc(long_table(wide), "patient_id", "reader", "value", **kw)


# ----------------------------------------------------------------------------- ICC against R

@pytest.mark.parametrize("ref", GOLDEN["icc"], ids=lambda r: r["dataset"])
def test_icc_matches_psych(ref):
    res = icc_of(ref["ratings"])
    assert list(res.index) == list(ICC_TYPES) and list(res.columns) == list(ICC_COLUMNS)
    for row in ref["results"]:
        got = res.loc[row["type"]]
        for col in ICC_COLUMNS:
            assert_allclose(got[col], row[col], rtol=1e-9, atol=0, err_msg=f"{row['type']} {col}")


def test_golden_cases_cover_what_the_tests_rely_on():
    by = {c["dataset"]: c for c in GOLDEN["icc"]}
    # p far below 1e-16 (needs the survival function)
    assert min(r["p"] for r in by["tight60x3"]["results"]) < 1e-100
    # ties: integer scores
    assert np.all(np.mod(by["likert40x5"]["ratings"], 1) == 0)
    # k = 2 and a non-square design are both present
    shapes = {np.shape(c["ratings"]) for c in GOLDEN["icc"]}
    assert (9, 2) in shapes and (6, 4) in shapes


def test_shrout_fleiss_published_values():
    """Shrout & Fleiss (1979), Table 4: .17, .29, .71, .44, .62, .91."""
    res = icc_of(GOLDEN["icc"][0]["ratings"])
    assert res["icc"].round(2).tolist() == [0.17, 0.29, 0.71, 0.44, 0.62, 0.91]


# ----------------------------------------------------------------------------- ICC definitions

def test_identical_raters_give_one():
    x = np.array([[3, 3, 3], [7, 7, 7], [1, 1, 1], [5, 5, 5]], float)
    res = icc_of(x)
    assert_allclose(res["icc"], 1.0)
    assert_allclose(res["ci_lower"], 1.0)
    assert_allclose(res["ci_upper"], 1.0)
    assert np.isinf(res["F"]).all() and (res["p"] == 0).all()


def test_constant_offset_hits_consistency_not_agreement():
    """Reader 2 always reads 2 higher: consistency (ICC3) is perfect, absolute agreement is not."""
    x = np.array([[1, 3], [4, 6], [2, 4], [8, 10], [5, 7]], float)
    res = icc_of(x)
    assert res.loc["ICC3", "icc"] == pytest.approx(1.0)
    assert res.loc["ICC2", "icc"] < 1.0 and res.loc["ICC1", "icc"] < 1.0
    assert np.isfinite(res.loc["ICC2", ["ci_lower", "ci_upper"]]).all()
    assert res.loc["ICC2", "ci_lower"] <= res.loc["ICC2", "icc"] <= res.loc["ICC2", "ci_upper"]


@pytest.mark.parametrize("ref", GOLDEN["icc"], ids=lambda r: r["dataset"])
def test_spearman_brown(ref):
    """ICCxk = k·ICCx / (1 + (k − 1)·ICCx) for the estimates; and for the ICC2 bounds."""
    res = icc_of(ref["ratings"])
    k = np.shape(ref["ratings"])[1]

    def sb(v):
        return k * v / (1 + (k - 1) * v)

    for single, average in (("ICC1", "ICC1k"), ("ICC2", "ICC2k"), ("ICC3", "ICC3k")):
        assert_allclose(res.loc[average, "icc"], sb(res.loc[single, "icc"]), rtol=1e-12)
    for bound in ("ci_lower", "ci_upper"):
        assert_allclose(res.loc["ICC2k", bound], sb(res.loc["ICC2", bound]), rtol=1e-12)


def test_order_of_rows_and_labels_does_not_matter():
    ref = GOLDEN["icc"][1]["ratings"]
    base = icc_of(ref)
    shuffled = long_table(ref).sample(frac=1.0, random_state=3)
    assert_allclose(icc(shuffled, "patient_id", "reader", "value").to_numpy(), base.to_numpy(), rtol=1e-12)


def test_incomplete_targets_are_dropped_with_their_names():
    ref = GOLDEN["icc"][2]["ratings"]
    df = long_table(ref)
    extra = long_table([[1.0, 2.0, np.nan, 3.0, 4.0]], targets=["NaNpatient"])
    missing_row = long_table([[2.0, 3.0, 4.0, 5.0]], targets=["Shortpatient"])   # reader4 has no row
    full = pd.concat([df, extra, missing_row], ignore_index=True)
    with pytest.warns(QCWarning, match=r"2 patient_id\(s\) without a rating.*NaNpatient.*Shortpatient"):
        res = icc(full, "patient_id", "reader", "value")
    assert_allclose(res.to_numpy(), icc_of(ref).to_numpy(), rtol=1e-12)
    assert res.attrs["n_targets"] == len(ref) and res.attrs["n_raters"] == 5
    assert set(res.attrs["dropped"]) == {"NaNpatient", "Shortpatient"}


def test_no_warning_when_complete():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        icc_of(GOLDEN["icc"][0]["ratings"])


@pytest.mark.parametrize("wide, match", [
    ([[1.0], [2.0], [3.0]], "at least 2 reader"),
    ([[1.0, 2.0]], "at least 2 patient_id"),
    ([[1.0, 2.0], [1.0, 2.0], [1.0, 2.0]], "do not vary"),
])
def test_not_estimable(wide, match):
    with pytest.raises(StatisticsError, match=match):
        icc_of(wide)


def test_too_few_after_dropping():
    df = long_table([[1.0, 2.0], [3.0, np.nan], [np.nan, 1.0]])
    with pytest.warns(QCWarning), pytest.raises(StatisticsError, match="at least 2"):
        icc(df, "patient_id", "reader", "value")


def test_bad_tables():
    df = long_table([[1.0, 2.0], [3.0, 4.0], [5.0, 7.0]])
    with pytest.raises(StatisticsError, match="columns not in the table"):
        icc(df, "patient", "reader", "value")
    dup = pd.concat([df, df.iloc[[0]]], ignore_index=True)
    with pytest.raises(StatisticsError, match="more than one rating.*P00 × reader0"):
        icc(dup, "patient_id", "reader", "value")
    text = df.assign(value=["a", "b", "c", "d", "e", "f"])
    with pytest.raises(StatisticsError, match="numeric"):
        icc(text, "patient_id", "reader", "value")


# ----------------------------------------------------------------------------- Koo & Li

@pytest.mark.parametrize("value, word", [
    (-0.2, "poor"), (0.0, "poor"), (0.4999, "poor"), (0.5, "moderate"), (0.7499, "moderate"),
    (0.75, "good"), (0.9, "good"), (0.9001, "excellent"), (1.0, "excellent"),
    (float("nan"), "not estimable"), (None, "not estimable"), (np.float64("nan"), "not estimable"),
])
def test_koo_li(value, word):
    assert koo_li(value) == word


# ----------------------------------------------------------------------------- Bland–Altman

@pytest.mark.parametrize("log", [False, True], ids=["linear", "log"])
def test_bland_altman_matches_r(log):
    ref = GOLDEN["bland_altman"]
    want = ref["log" if log else "linear"]
    got = bland_altman(ref["a"], ref["b"], log=log)
    for key, value in want.items():
        if key in ("n", "log"):
            assert got[key] == value
        else:
            assert_allclose(got[key], value, rtol=1e-9, err_msg=key)


def test_bland_altman_definitions():
    rng = np.random.default_rng(5)
    a = rng.normal(50, 10, 40)
    b = a + rng.normal(1.5, 2.0, 40)
    r = bland_altman(a, b)
    d = a - b
    assert r["bias"] == pytest.approx(d.mean())
    assert r["loa_upper"] - r["loa_lower"] == pytest.approx(2 * 1.959963984540054 * d.std(ddof=1))
    assert r["bias_ci_lower"] < r["bias"] < r["bias_ci_upper"]
    assert r["loa_lower_ci_lower"] < r["loa_lower"] < r["loa_lower_ci_upper"]
    # the limits' CI is √3 times as wide as the bias's
    assert (r["loa_upper_ci_upper"] - r["loa_upper_ci_lower"]) == pytest.approx(
        math.sqrt(3) * (r["bias_ci_upper"] - r["bias_ci_lower"]))
    # swapping the readers mirrors everything
    s = bland_altman(b, a)
    assert s["bias"] == pytest.approx(-r["bias"]) and s["loa_upper"] == pytest.approx(-r["loa_lower"])


def test_bland_altman_log_is_ratio():
    b = np.array([5.0, 10.0, 20.0, 40.0, 80.0])
    r = bland_altman(1.1 * b, b, log=True)
    assert r["bias"] == pytest.approx(1.1) and r["loa_lower"] == pytest.approx(1.1)
    assert r["sd"] == pytest.approx(0.0, abs=1e-12)
    assert r["slope"] == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(StatisticsError, match="> 0"):
        bland_altman([1.0, 0.0, 2.0], [1.0, 1.0, 2.0], log=True)


def test_bland_altman_proportional_bias():
    """Reader A reads 20 % higher: the difference grows with the mean (slope 0.2/1.1)."""
    b = np.linspace(10, 100, 12)
    r = bland_altman(1.2 * b, b)
    assert r["slope"] == pytest.approx(0.2 / 1.1)
    assert r["slope_p"] < 1e-100


def test_bland_altman_missing_and_short():
    with pytest.warns(QCWarning, match=r"1 pair\(s\) with a missing value dropped \(positions 1\)"):
        r = bland_altman([1.0, np.nan, 2.0, 4.0], [1.5, 2.0, 2.5, 3.0])
    assert r["n"] == 3
    with pytest.raises(StatisticsError, match="at least 3"):
        bland_altman([1.0, 2.0], [1.0, 3.0])
    with pytest.raises(StatisticsError, match="differ in length"):
        bland_altman([1.0, 2.0, 3.0], [1.0, 3.0])


# ----------------------------------------------------------------------------- Cohen's kappa

@pytest.mark.parametrize("ref", GOLDEN["cohen_kappa"], ids=lambda r: r["dataset"])
def test_cohen_kappa_matches_psych(ref):
    got = cohen_kappa(ref["a"], ref["b"])
    assert_allclose(got["kappa"], ref["kappa"], rtol=1e-9)
    assert_allclose(got["se"] ** 2, ref["var_kappa"], rtol=1e-9)
    assert_allclose([got["ci_lower"], got["ci_upper"]], [ref["ci_lower"], ref["ci_upper"]], rtol=1e-9)
    assert got["n"] == ref["n"]


def test_cohen_kappa_definitions():
    a = ["x", "y", "z", "x", "y", "z", "x"]
    assert cohen_kappa(a, a)["kappa"] == pytest.approx(1.0)
    r = cohen_kappa([1, 2, 1, 2, 1, 2], [2, 1, 2, 1, 2, 1])
    assert r["kappa"] == pytest.approx(-1.0) and r["observed"] == 0.0
    # labels of any kind; kappa is symmetric in the readers
    g = GOLDEN["cohen_kappa"][0]
    assert cohen_kappa(g["b"], g["a"])["kappa"] == pytest.approx(g["kappa"])
    ab = cohen_kappa(g["a"], g["b"])
    assert ab["categories"] == sorted(set(g["a"]) | set(g["b"]))
    assert ab["kappa"] == pytest.approx((ab["observed"] - ab["expected"]) / (1 - ab["expected"]))


def test_cohen_kappa_degenerate_and_missing():
    with pytest.raises(StatisticsError, match="same category 'pos'"):
        cohen_kappa(["pos"] * 5, ["pos"] * 5)
    with pytest.warns(QCWarning, match="1 pair"):
        r = cohen_kappa(["a", "b", None, "a"], ["a", "b", "b", "b"])
    assert r["n"] == 3
    with pytest.raises(StatisticsError, match="differ in length"):
        cohen_kappa(["a", "b"], ["a"])


# ----------------------------------------------------------------------------- Fleiss' kappa

@pytest.mark.parametrize("ref", GOLDEN["fleiss_kappa"], ids=lambda r: r["dataset"])
def test_fleiss_kappa_matches_irr(ref):
    got = fleiss_kappa(ref["ratings"])
    for key, col in (("kappa", "kappa"), ("se", "se0"), ("z", "z"), ("p", "p")):
        assert_allclose(got[key], ref[col], rtol=1e-9, err_msg=key)
    assert got["n_subjects"] == ref["subjects"] and got["n_raters"] == ref["raters"]


def test_fleiss_1971_published_values():
    """Fleiss (1971): kappa = .430 for 30 patients × 6 psychiatrists; irr prints z = 17.7."""
    ref = next(c for c in GOLDEN["fleiss_kappa"] if c["dataset"] == "fleiss1971")
    got = fleiss_kappa(ref["ratings"])
    assert round(got["kappa"], 3) == 0.430
    assert round(got["z"], 1) == 17.7
    assert round(got["observed"], 3) == 0.556 and round(got["expected"], 3) == 0.220


def test_fleiss_kappa_definitions():
    ref = GOLDEN["fleiss_kappa"][1]["ratings"]
    base = fleiss_kappa(ref)
    # the column order carries no meaning; labels can be renamed
    shuffled = np.array([np.random.default_rng(i).permutation(row) for i, row in enumerate(ref)])
    assert fleiss_kappa(shuffled)["kappa"] == pytest.approx(base["kappa"], rel=1e-12)
    renamed = np.vectorize({"A": 3, "B": 1, "C": 2}.get)(np.array(ref))
    assert fleiss_kappa(renamed)["kappa"] == pytest.approx(base["kappa"], rel=1e-12)
    # two raters: Fleiss' kappa is Scott's pi
    two = np.array(ref)[:, :2]
    pooled = pd.Series(two.ravel()).value_counts(normalize=True)
    po = np.mean(two[:, 0] == two[:, 1])
    pe = float((pooled**2).sum())
    assert fleiss_kappa(two)["kappa"] == pytest.approx((po - pe) / (1 - pe))
    assert fleiss_kappa([["a", "a"], ["b", "b"], ["c", "c"]])["kappa"] == pytest.approx(1.0)


def test_fleiss_kappa_degenerate_and_missing():
    with pytest.raises(StatisticsError, match="same category"):
        fleiss_kappa([["a", "a", "a"], ["a", "a", "a"]])
    with pytest.raises(StatisticsError, match="at least 2 raters"):
        fleiss_kappa([["a"], ["b"]])
    table = pd.DataFrame({"r1": ["a", "b", "a", "b"], "r2": ["a", None, "a", "b"],
                          "r3": ["b", "b", "a", "b"]},
                         index=["P1", "P2", "P3", "P4"])
    with pytest.warns(QCWarning, match=r"1 subject\(s\).*dropped: P2"):
        r = fleiss_kappa(table)
    assert r["n_subjects"] == 3

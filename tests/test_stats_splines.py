"""mibgkit.stats.splines against R (Hmisc rcspline.eval, rms cph/anova/Predict/summary) and by
the defining properties of a restricted cubic spline.

Golden values: tests/reference/golden_robustness.json (make_golden_robustness.R).
"""

from __future__ import annotations


import numpy as np
import pytest
from numpy.testing import assert_allclose

from mibgkit.errors import StatisticsError
from mibgkit.stats.splines import cox_spline, hr_per_iqr, rcs_basis, rcs_knots
from reference_data import DATA, golden

GOLDEN = golden("golden_robustness.json")


@pytest.mark.parametrize("ref", GOLDEN["rcs_knots"], ids=lambda r: f"{r['dataset']}-{r['covariate']}-{r['n_knots']}")
def test_knots_and_basis_match_hmisc(ref):
    df, _, _ = DATA[ref["dataset"]]
    x = df[ref["covariate"]]
    assert_allclose(rcs_knots(x, ref["n_knots"]), ref["knots"], rtol=1e-12)
    basis = rcs_basis(x, ref["knots"], ref["covariate"])
    assert list(basis.columns) == [ref["covariate"] + "'" * j for j in range(len(ref["knots"]) - 1)]
    assert_allclose(basis.to_numpy(), np.asarray(ref["basis"], dtype=float), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("ref", GOLDEN["spline_fit"],
                         ids=lambda r: f"{r['dataset']}-{r['covariate']}-{r['n_knots']}-{r['ties']}")
def test_cox_spline_matches_rms(ref):
    df, t, e = DATA[ref["dataset"]]
    res = cox_spline(df, t, e, ref["covariate"], n_knots=ref["n_knots"], ties=ref["ties"], grid=ref["grid"])
    assert_allclose(res["knots"], ref["knots"], rtol=1e-12)
    assert_allclose(res["coefficients"]["beta"], ref["beta"], rtol=1e-6, atol=1e-9)
    k = len(ref["beta"])
    V = np.asarray(ref["vcov"], dtype=float).reshape(k, k)
    assert_allclose(res["coefficients"]["se"], np.sqrt(np.diag(V)), rtol=1e-6)
    tests = res["tests"]
    assert_allclose(tests.loc["overall", "chisq"], ref["overall_chisq"], rtol=1e-6)
    assert_allclose(tests.loc["nonlinear", "chisq"], ref["nonlinear_chisq"], rtol=1e-6)
    assert tests.loc["overall", "df"] == ref["overall_df"] and tests.loc["nonlinear", "df"] == ref["nonlinear_df"]
    assert res["reference"] == pytest.approx(ref["reference"])
    curve = res["curve"]
    assert_allclose(curve["log_hr"], ref["log_hr"], rtol=1e-6, atol=1e-9)
    assert_allclose(curve["ci_lower"], ref["ci_lower"], rtol=1e-6, atol=1e-9)
    assert_allclose(curve["ci_upper"], ref["ci_upper"], rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("ref", GOLDEN["hr_per_iqr"], ids=lambda r: f"{r['dataset']}-{r['covariate']}")
def test_hr_per_iqr_matches_rms_summary(ref):
    df, t, e = DATA[ref["dataset"]]
    row = hr_per_iqr(df, t, e, [ref["covariate"]]).loc[ref["covariate"]]
    assert (row["q1"], row["q3"]) == pytest.approx((ref["q1"], ref["q3"]))
    assert_allclose([row["hr_per_iqr"], row["ci_lower"], row["ci_upper"]],
                    [ref["hr"], ref["ci_lower"], ref["ci_upper"]], rtol=1e-7)
    assert row["hr_per_iqr"] == pytest.approx(row["hr_per_unit"] ** row["iqr"])


@pytest.mark.parametrize("knots", [[0.1, 0.3, 0.9], [-1.0, 0.0, 0.5, 2.0], [1, 2, 4, 8, 16]])
def test_basis_is_a_restricted_cubic_spline(knots):
    """Zero left of the first knot, linear right of the last, C2 at every knot."""
    kn = np.asarray(knots, dtype=float)
    coef = np.random.default_rng(len(knots)).normal(size=kn.size - 1)

    def f(x):
        return rcs_basis(np.atleast_1d(x), kn).to_numpy() @ coef

    span = kn[-1] - kn[0]
    left = np.linspace(kn[0] - span, kn[0], 7)
    assert_allclose(f(left), coef[0] * left, atol=1e-12)  # only the linear term below t_1
    right = np.linspace(kn[-1], kn[-1] + 3 * span, 9)
    second = np.diff(f(right), 2)
    assert_allclose(second, 0, atol=1e-9 * max(1, np.abs(f(right)).max()))  # linear beyond t_k
    h = 1e-4 * span
    for t in kn:
        lo, hi = f(t - np.array([2 * h, h, 0])), f(t + np.array([0, h, 2 * h]))
        assert hi[0] == pytest.approx(lo[2], abs=1e-12)  # continuous
        d1l, d1r = (lo[2] - lo[1]) / h, (hi[1] - hi[0]) / h
        assert d1r == pytest.approx(d1l, abs=1e-3 * (1 + abs(d1l)))  # first derivative continuous
        d2l, d2r = (lo[2] - 2 * lo[1] + lo[0]) / h**2, (hi[2] - 2 * hi[1] + hi[0]) / h**2
        assert d2r == pytest.approx(d2l, abs=1e-2 * (1 + abs(d2l)))  # second derivative continuous


def test_spline_curve_is_zero_at_reference_and_linear_model_is_nested():
    df, t, e = DATA["cohort60"]
    res = cox_spline(df, t, e, "x", n_knots=3, grid=[-1.0, float(np.median(df["x"])), 1.0])
    mid = res["curve"].iloc[1]
    assert mid["log_hr"] == pytest.approx(0, abs=1e-12) and mid["se"] == pytest.approx(0, abs=1e-12)
    assert res["loglik"] >= res["loglik_linear"] - 1e-9
    assert (res["curve"]["ci_lower"] <= res["curve"]["log_hr"]).all()


def test_knot_errors():
    with pytest.raises(StatisticsError):
        rcs_knots([1, 2, 3], 3)
    with pytest.raises(StatisticsError):
        rcs_knots(range(20), 9)
    with pytest.raises(StatisticsError):
        rcs_basis([1.0], [1.0, 1.0, 2.0])

"""mibgkit.stats.assumptions against R (survival 3.5 cox.zph, coxphf) and by its properties.

Golden values: tests/reference/golden_robustness.json, written by
tests/reference/make_golden_robustness.R (breast.csv: Heinze & Schemper 2001's breast-cancer
data with monotone likelihood, as shipped with coxphf).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

from mibgkit.errors import QCWarning, StatisticsError
from mibgkit.stats import cox_univariate
from mibgkit.stats.assumptions import events_per_variable, firth_cox, ph_test, separation
from reference_data import DATA, golden

GOLDEN = golden("golden_robustness.json")


def _list(v):
    """R's jsonlite writes length-1 vectors as scalars."""
    return v if isinstance(v, list) else [v]


@pytest.mark.parametrize("ref", GOLDEN["ph_test"],
                         ids=lambda r: f"{r['dataset']}-{'+'.join(_list(r['covariates']))}-{r['ties']}-{r['transform']}")
def test_ph_test_matches_r_cox_zph(ref):
    df, t, e = DATA[ref["dataset"]]
    ref = {**ref, "covariates": _list(ref["covariates"])}
    res = ph_test(df, t, e, ref["covariates"], transform=ref["transform"], ties=ref["ties"])
    tab = res["table"]
    assert list(tab.index) == _list(ref["rows"])
    assert_allclose(tab["chisq"], ref["chisq"], rtol=1e-8)
    assert_allclose(tab["p"], ref["p"], rtol=1e-7, atol=1e-12)
    assert tab["df"].tolist() == _list(ref["df"])
    assert_allclose(res["beta"], ref["beta"], rtol=1e-7)
    resid = res["residuals"]
    assert_allclose(resid["time"], ref["time"])
    assert_allclose(resid["g"], ref["g"], rtol=1e-10, atol=1e-12)
    expected = np.asarray(ref["residuals"], dtype=float).reshape(len(resid), len(ref["covariates"]))
    assert_allclose(resid[ref["covariates"]].to_numpy(), expected, rtol=1e-7, atol=1e-9)


def test_ph_test_detects_a_time_varying_effect():
    # hazard ratio 2 before t = 1, 1/5 after: a crossing effect the test must flag
    rng = np.random.default_rng(0)
    n = 300
    x = rng.integers(0, 2, n)
    early = rng.exponential(np.where(x == 1, 0.5, 1.0))
    late = 1.0 + rng.exponential(np.where(x == 1, 5.0, 1.0))
    time = np.where(early < 1.0, early, late)
    cens = rng.uniform(1, 5, n)
    df = pd.DataFrame({"t": np.minimum(time, cens), "e": (time <= cens).astype(int), "x": x})
    assert ph_test(df, "t", "e", ["x"])["table"].loc["x", "p"] < 1e-3
    # the same patients with proportional hazards (HR 2 throughout): no alarm
    t_ph = rng.exponential(np.where(x == 1, 0.5, 1.0))
    df_ph = pd.DataFrame({"t": np.minimum(t_ph, cens), "e": (t_ph <= cens).astype(int), "x": x})
    assert ph_test(df_ph, "t", "e", ["x"])["table"].loc["x", "p"] > 0.05


def test_events_per_variable():
    df = pd.DataFrame({"e": [1] * 11 + [0] * 39})
    with pytest.warns(QCWarning, match="events per variable"):
        r = events_per_variable(df, "e", ["a", "b", "c"])
    assert r["events"] == 11 and r["n_variables"] == 3 and not r["adequate"]
    assert r["epv"] == pytest.approx(11 / 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert events_per_variable(pd.DataFrame({"e": [1] * 30}), "e", 3)["adequate"]
    with pytest.raises(StatisticsError):
        events_per_variable(df, "e", [])


def test_separation_flags_the_breast_grade():
    df, t, e = DATA["breast"]
    sep = separation(df, t, e, ["T", "N", "G", "CD"])
    assert sep.loc["G", "monotone"] and sep.loc["G", "direction"] == 1
    assert sep.loc["G", "events_low"] == 0
    assert not sep.loc[["T", "N", "CD"], "monotone"].any()
    # the public Cox function refuses the same covariate
    with pytest.raises(StatisticsError, match="separation"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", QCWarning)
            cox_univariate(df, t, e, ["G"])


def test_separation_continuous_monotone():
    # every event has the largest value of its risk set: beta -> +inf
    df = pd.DataFrame({"t": [1, 2, 3, 4, 5, 6], "e": [1, 1, 0, 1, 0, 0], "x": [9.0, 8.0, 1.0, 7.0, 2.0, 3.0]})
    assert separation(df, "t", "e", ["x"]).loc["x", "direction"] == 1
    df["x"] = -df["x"]
    assert separation(df, "t", "e", ["x"]).loc["x", "direction"] == -1


@pytest.mark.parametrize("ref", GOLDEN["firth"],
                         ids=lambda r: f"{r['dataset']}-{'+'.join(_list(r['covariates']))}-{'pl' if r['pl'] else 'wald'}")
def test_firth_matches_r_coxphf(ref):
    df, t, e = DATA[ref["dataset"]]
    ref = {**ref, "covariates": _list(ref["covariates"])}
    res = firth_cox(df, t, e, ref["covariates"], profile=ref["pl"])
    assert_allclose(res["beta"], ref["beta"], rtol=1e-7, atol=1e-9)
    assert_allclose(res["se"], ref["se"], rtol=1e-7)
    assert_allclose(np.log(res["ci_lower"]), np.log(ref["ci_lower"]), rtol=1e-6, atol=1e-8)
    assert_allclose(np.log(res["ci_upper"]), np.log(ref["ci_upper"]), rtol=1e-6, atol=1e-8)
    assert_allclose(res["p"], ref["p"], rtol=1e-6, atol=1e-12)
    # coxphf's log-likelihood differs by a constant (it standardises the covariates inside the
    # penalty); estimates, intervals and tests do not depend on it


def test_firth_finite_where_ordinary_cox_diverges():
    df, t, e = DATA["breast"]
    ref = next(r for r in GOLDEN["firth"] if _list(r["covariates"]) == ["G"])
    assert ref["ordinary_beta"] > 15  # R's coxph stops at a huge coefficient
    res = firth_cox(df, t, e, ["G"])
    assert np.isfinite(res.loc["G", "hr"]) and 1 < res.loc["G", "beta"] < 5
    assert res.loc["G", "ci_upper"] > 100 * res.loc["G", "hr"]  # the profile interval is very skewed


def test_firth_close_to_ordinary_cox_without_separation():
    # with 40+ events and no separation the O(1/n) bias correction is small
    df, t, e = DATA["cohort60"]
    ordinary = cox_univariate(df, t, e, ["bin"], ties="breslow").loc["bin", "beta"]
    firth = firth_cox(df, t, e, ["bin"]).loc["bin", "beta"]
    assert firth == pytest.approx(ordinary, rel=0.05)
    assert firth != pytest.approx(ordinary, rel=1e-6)


def test_firth_score_is_zero_at_the_estimate():
    # the penalised log-likelihood is maximal: numerical gradient of l + 0.5 log det I is 0
    from mibgkit.stats import _coxfast

    df, t, e = DATA["breast"]
    covs = ["T", "N", "G", "CD"]
    res = firth_cox(df, t, e, covs, profile=False)
    data = _coxfast.CoxData(df[t].to_numpy(float), df[e].to_numpy(float), "breslow")
    Xs = data.sorted_x(df[covs].to_numpy(float))

    def pl(b):
        ll, _, info = data.derivatives(Xs, b)
        return ll + 0.5 * np.linalg.slogdet(info)[1]

    b = res["beta"].to_numpy()
    h = 1e-5
    grad = [(pl(b + h * np.eye(4)[j]) - pl(b - h * np.eye(4)[j])) / (2 * h) for j in range(4)]
    assert_allclose(grad, 0, atol=1e-6)

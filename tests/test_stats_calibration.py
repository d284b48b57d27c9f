"""mibgkit.stats.calibration against R (survival 3.5: ``coxph`` on a frozen lp, ``survfit`` of a
Cox model with the lp as offset, ``anova`` of nested models) and properties.

Golden values: tests/reference/golden_validation.json (make_golden_validation.R).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose

from mibgkit.errors import QCWarning, StatisticsError
from mibgkit.stats._coxcore import fit_cox
from mibgkit.stats.calibration import calibration_at_horizon, calibration_slope, lr_test_nested
from mibgkit.stats.kaplan_meier import km_table
from reference_data import DATA, golden

GOLDEN = golden("golden_validation.json")


def frozen_lp(dataset: str) -> np.ndarray:
    df = DATA[dataset][0]
    return sum(coef * df[var].to_numpy(float) for var, coef in GOLDEN["frozen"][dataset].items())


def _rel(a, b):
    return abs(a - b) / abs(b) if b != 0 else abs(a)


# ----------------------------------------------------------------------------- calibration slope

@pytest.mark.parametrize("ref", GOLDEN["calibration_slope"], ids=lambda r: f"{r['dataset']}-{r['ties']}")
def test_slope_matches_r_coxph(ref):
    df, t, e = DATA[ref["dataset"]]
    res = calibration_slope(df[t], df[e], frozen_lp(ref["dataset"]), ties=ref["ties"])
    for key in ("slope", "ci_lower", "ci_upper"):
        assert_allclose(res[key], ref[key], rtol=1e-9, err_msg=key)
    assert_allclose(res["se"], ref["se"], rtol=1e-8)
    assert_allclose([res["p"], res["p_zero"]], [ref["p"], ref["p_zero"]], rtol=1e-8)
    assert res["n"] == ref["n"] and res["events"] == ref["events"]


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from(["efron", "breslow"]))
def test_slope_of_an_lp_fitted_on_the_same_data_is_one(seed, ties):
    rng = np.random.default_rng(seed)
    n = 60
    X = np.column_stack([rng.normal(size=n), rng.integers(0, 2, n)])
    t = np.ceil(rng.exponential(20 * np.exp(-0.7 * X[:, 0] - 0.5 * X[:, 1]))).astype(float)
    e = (rng.random(n) < 0.75).astype(float)
    fit = fit_cox(t, e, X, ["a", "b"], ties)
    res = calibration_slope(t, e, X @ fit.beta, ties=ties)
    assert_allclose(res["slope"], 1.0, rtol=1e-7)
    assert res["p"] > 0.999


def test_slope_scales_inversely_with_the_lp_and_ignores_shifts():
    df, t, e = DATA["cohort60"]
    lp = frozen_lp("cohort60")
    a = calibration_slope(df[t], df[e], lp)
    b = calibration_slope(df[t], df[e], 2 * lp + 5)
    assert_allclose(b["slope"], a["slope"] / 2, rtol=1e-8)
    assert_allclose(b["se"], a["se"] / 2, rtol=1e-7)


def test_slope_not_estimable():
    t, e = [1, 2, 3, 4, 5], [1, 0, 1, 1, 0]
    with pytest.raises(StatisticsError, match="linear predictor is constant"):
        calibration_slope(t, e, [0.4] * 5)
    with pytest.raises(StatisticsError, match="no events"):
        calibration_slope(t, [0] * 5, [0.1, 0.2, 0.3, 0.4, 0.5])
    with pytest.raises(StatisticsError, match="calibration slope not estimable.*separation"):
        calibration_slope(t, e, [1, 0, 1, 1, 0])   # all events at lp = 1: monotone likelihood
    with pytest.raises(StatisticsError, match="differ in length"):
        calibration_slope(t, e, [0.1, 0.2])
    with pytest.raises(StatisticsError, match="ties must be"):
        calibration_slope(t, e, [0.1, 0.2, 0.3, 0.4, 0.5], ties="exact")


# ----------------------------------------------------------------------------- calibration at a horizon

def _horizon_id(ref):
    return f"{ref['dataset']}-h{ref['horizon']}-g{ref['groups']}-{ref['ties']}"


@pytest.mark.parametrize("ref", GOLDEN["calibration_horizon"], ids=_horizon_id)
def test_calibration_at_horizon_matches_r(ref):
    df, t, e = DATA[ref["dataset"]]
    tab = calibration_at_horizon(df[t], df[e], frozen_lp(ref["dataset"]), ref["horizon"], ref["groups"],
                                 ties=ref["ties"])
    assert_allclose(tab.attrs["baseline_survival"], ref["baseline_survival"], rtol=1e-9)
    assert len(tab) == len(ref["rows"]) + 1 and tab["group"].iloc[-1] == "overall"
    for (_, mine), theirs in zip(tab.iterrows(), ref["rows"]):
        assert mine["group"] == theirs["group"]
        for key in ("n", "events", "n_at_risk"):
            assert mine[key] == theirs[key], key
        for key in ("lp_mean", "predicted", "observed", "observed_ci_lower", "observed_ci_upper"):
            assert _rel(mine[key], theirs[key]) <= 1e-9, (key, mine[key], theirs[key])
    overall = tab.iloc[-1]
    for key, val in ref["overall"].items():
        assert _rel(overall[key], val) <= 1e-9, key
    assert (tab["reason"] == "").all()


def test_horizon_beyond_the_last_follow_up_is_an_error():
    df, t, e = DATA["cohort60"]
    with pytest.raises(StatisticsError, match="beyond the last follow-up"):
        calibration_at_horizon(df[t], df[e], frozen_lp("cohort60"), df[t].max() + 1)
    with pytest.raises(StatisticsError, match="horizon must be"):
        calibration_at_horizon(df[t], df[e], frozen_lp("cohort60"), 0)
    with pytest.raises(StatisticsError, match="no events"):
        calibration_at_horizon(df[t], 0 * df[e], frozen_lp("cohort60"), 10)


def test_group_followed_up_short_of_the_horizon_is_nan_with_a_reason():
    # the high-lp group's last patient is censored at 4, before the horizon 6
    t = [1, 2, 4, 3, 5, 8, 9, 10]
    e = [1, 1, 0, 1, 0, 1, 0, 0]
    lp = [2.0, 2.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    tab = calibration_at_horizon(t, e, lp, horizon=6, groups=2)
    high = tab.iloc[1]
    assert high["group"] == 2 and np.isnan(high["observed"]) and np.isnan(high["oe_ratio"])
    assert "follow-up ends at 4 days" in high["reason"]
    assert np.isfinite(tab.iloc[0]["observed"]) and tab.iloc[0]["reason"] == ""


def test_predicted_risk_ignores_a_shift_of_the_lp():
    """With the baseline re-estimated, only differences in lp matter."""
    df, t, e = DATA["rossi"]
    lp = frozen_lp("rossi")
    a = calibration_at_horizon(df[t], df[e], lp, 30)
    b = calibration_at_horizon(df[t], df[e], lp + 3.0, 30)
    assert_allclose(a["predicted"], b["predicted"], rtol=1e-12)
    assert_allclose(b.attrs["baseline_survival"], a.attrs["baseline_survival"] ** np.exp(-3.0), rtol=1e-12)


def test_observed_is_the_package_km():
    df, t, e = DATA["cohort60"]
    tab = calibration_at_horizon(df[t], df[e], frozen_lp("cohort60"), 12)  # an event and a censoring at 12
    km = km_table(df[t], df[e]).set_index("time").loc[12]
    overall = tab.iloc[-1]
    assert overall["observed"] == pytest.approx(1 - km["survival"], rel=1e-14)
    assert overall["observed_ci_lower"] == pytest.approx(1 - km["ci_upper"], rel=1e-14)
    assert overall["n_at_risk"] == int((df[t] >= 12).sum())


def test_horizon_before_the_first_event():
    tab = calibration_at_horizon([3, 4, 5, 6], [1, 0, 1, 0], [0.1, 0.2, 0.3, 0.4], horizon=2, groups=2)
    assert (tab["predicted"] == 0).all() and (tab["observed"] == 0).all()
    assert np.isnan(tab["oe_ratio"]).all() and tab.attrs["baseline_survival"] == 1.0


def test_few_distinct_lp_values_give_one_group_each():
    df, t, e = DATA["rossi"]
    lp = -0.35 * df["fin"].to_numpy(float)
    tab = calibration_at_horizon(df[t], df[e], lp, 26, groups=3)
    assert tab["group"].tolist() == [1, 2, "overall"]
    assert tab["n"].tolist()[:2] == [int((lp == -0.35).sum()), int((lp == 0).sum())]


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10_000), st.integers(2, 5))
def test_groups_never_split_tied_lp_and_follow_lp_order(seed, groups):
    rng = np.random.default_rng(seed)
    n = 40
    lp = rng.integers(0, 6, n) * 0.3
    t = rng.integers(1, 30, n).astype(float)
    t[0] = 40.0
    e = (rng.random(n) < 0.6).astype(float)
    e[1] = 1.0
    tab = calibration_at_horizon(t, e, lp, 20, groups)
    body = tab.iloc[:-1]
    assert body["n"].sum() == n and len(body) <= max(groups, 1)
    assert (body["lp_max"].to_numpy()[:-1] < body["lp_min"].to_numpy()[1:]).all()


def test_permuting_rows_changes_nothing():
    df, t, e = DATA["breast"]
    lp = frozen_lp("breast")
    perm = np.random.default_rng(2).permutation(len(df))
    a = calibration_at_horizon(df[t], df[e], lp, 48)
    b = calibration_at_horizon(df[t].to_numpy()[perm], df[e].to_numpy()[perm], lp[perm], 48)
    num = a.columns.drop(["group", "reason"])
    assert_allclose(a[num].to_numpy(float), b[num].to_numpy(float), rtol=1e-12)


# ----------------------------------------------------------------------------- LR test of nested models

def _lr_frame(ref):
    name = ref["dataset"]
    df, t, e = DATA["rossi" if name == "rossi_na" else name]
    df = df.copy()
    if name == "rossi_na":
        for var, rows in GOLDEN["na_rows"].items():
            df[var] = df[var].astype(float)
            df.loc[np.asarray(rows) - 1, var] = np.nan
    return df, t, e


def _lr_id(ref):
    return f"{ref['dataset']}-{'+'.join(ref['base']) or 'null'}-{'+'.join(ref['added'])}-{ref['ties']}"


@pytest.mark.parametrize("ref", GOLDEN["lr_test"], ids=_lr_id)
def test_lr_test_matches_r_anova(ref):
    df, t, e = _lr_frame(ref)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = lr_test_nested(df, t, e, ref["base"], ref["added"], ties=ref["ties"])
    dropped = [w for w in caught if issubclass(w.category, QCWarning) and "dropped" in str(w.message)]
    assert bool(dropped) == (ref["dataset"] == "rossi_na")
    assert res["df"] == ref["df"] and res["n"] == ref["n"] and res["events"] == ref["events"]
    assert res["n_dropped"] == len(df) - ref["n"]
    for key in ("statistic", "loglik_base", "loglik_full"):
        assert_allclose(res[key], ref[key], rtol=1e-9, err_msg=key)
    assert_allclose(res["p"], ref["p"], rtol=1e-8)


def test_lr_test_errors():
    df, t, e = DATA["rossi"]
    with pytest.raises(StatisticsError, match="no covariates added"):
        lr_test_nested(df, t, e, ["age"], [])
    with pytest.raises(StatisticsError, match="in both"):
        lr_test_nested(df, t, e, ["age"], ["age", "fin"])
    with pytest.raises(StatisticsError, match="not in the table"):
        lr_test_nested(df, t, e, ["age"], ["asphericity"])
    with pytest.raises(StatisticsError, match="not estimable.*constant"):
        lr_test_nested(df.assign(k=1.0), t, e, ["age"], ["k"])
    with pytest.raises(StatisticsError, match="no events"):
        lr_test_nested(df.assign(none=0), t, "none", ["age"], ["fin"])


def test_lr_test_accepts_a_single_name():
    df, t, e = DATA["cohort60"]
    a = lr_test_nested(df, t, e, "x", "bin")
    b = lr_test_nested(df, t, e, ["x"], ["bin"])
    assert a == b and isinstance(pd.Series(a)["statistic"], float)

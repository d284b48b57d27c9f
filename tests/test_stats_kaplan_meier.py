"""mibgkit.stats.kaplan_meier against R (survival 3.5 ``survfit``, ``survdiff``) and by hand.

Golden values: tests/reference/golden.json, written by tests/reference/make_golden.R from the
CSV data sets beside it (rossi.csv: Rossi et al. 1980 recidivism data; cohort60.csv: seeded,
from make_data.py).
"""

from __future__ import annotations


import numpy as np
import pytest
from numpy.testing import assert_allclose

from mibgkit.errors import StatisticsError
from mibgkit.stats import kaplan_meier, km_mean, km_table, logrank
from reference_data import DATA, golden

GOLDEN = golden("golden.json")

# the agreement target is 1e-6 relative for KM; we hold a tighter one
KM_RTOL = 1e-9


# ----------------------------------------------------------------------------- Kaplan–Meier, log-rank vs R

def _km_case_id(ref):
    return f"{ref['dataset']}-{ref.get('group') or 'all'}"


def _label(df, group, label):
    if group is None:
        return "all"
    return type(df[group].iloc[0].item() if hasattr(df[group].iloc[0], "item") else df[group].iloc[0])(label)


@pytest.mark.parametrize("ref", GOLDEN["km"], ids=_km_case_id)
def test_kaplan_meier_matches_r_survfit(ref):
    df, t, e = DATA[ref["dataset"]]
    group = ref.get("group")
    res = kaplan_meier(df[t], df[e], None if group is None else df[group])
    for theirs in ref["km"]["summary"]:
        mine = res.summary.loc[_label(df, group, theirs["group"])]
        assert mine["n"] == theirs["n"] and mine["events"] == theirs["events"]
        assert_allclose(mine["mean"], theirs["mean"], rtol=KM_RTOL)
        assert_allclose(mine["se"], theirs["se"], rtol=KM_RTOL)
        assert_allclose([mine["ci_lower"], mine["ci_upper"]],
                        [theirs["mean"] - 1.959963984540054 * theirs["se"],
                         theirs["mean"] + 1.959963984540054 * theirs["se"]], rtol=KM_RTOL)
        for col in ("median", "median_ci_lower", "median_ci_upper"):
            if theirs[col] is None:
                assert np.isnan(mine[col]), col
            else:
                assert_allclose(mine[col], theirs[col], rtol=1e-12, err_msg=col)
    curve = ref["km"]["curve"]
    first = res.table[res.table["group"] == res.table["group"].iloc[0]]
    for col in ("time", "n_risk", "n_event", "survival", "std_err", "ci_lower", "ci_upper"):
        theirs = np.array([np.nan if v is None else v for v in curve[col]], dtype=float)
        assert_allclose(first[col].to_numpy(float), theirs, rtol=1e-10, err_msg=col)
    if "logrank" in ref:
        lr = logrank(df[t], df[e], df[group])
        assert_allclose(lr["statistic"], ref["logrank"]["statistic"], rtol=1e-10)
        assert_allclose(lr["p"], ref["logrank"]["p"], rtol=1e-8)
        assert lr["df"] == ref["logrank"]["df"]
        assert_allclose(lr["groups"]["observed"].to_numpy(), ref["logrank"]["observed"])
        assert_allclose(lr["groups"]["expected"].to_numpy(), ref["logrank"]["expected"], rtol=1e-10)
        assert_allclose(res.logrank["statistic"], lr["statistic"])


def test_km_mean_by_hand():
    """Times 1, 2+, 3, 4 (+ censored): S = 3/4 on [1, 3), 3/8 on [3, 4); mean = 1 + 1.5 + 0.375."""
    r = km_mean([1, 2, 3, 4], [1, 0, 1, 0])
    assert_allclose(r["mean"], 1 + 0.75 * 2 + 0.375 * 1)
    # A(1) = 0.75*2 + 0.375 = 1.875, h = 1/(4*3); A(3) = 0.375, h = 1/(2*1)
    assert_allclose(r["se"], np.sqrt(1.875**2 / 12 + 0.375**2 / 2))
    assert r["median"] == 3 and r["end_time"] == 4
    assert np.isnan(km_mean([1, 2, 3, 4], [1, 0, 0, 0])["median"])  # not reached


def test_km_table_and_at_risk():
    tab = km_table([2, 2, 3, 5, 5, 8], [1, 0, 1, 1, 1, 0])
    assert tab["time"].tolist() == [2, 3, 5, 8]
    assert tab["n_risk"].tolist() == [6, 4, 3, 1]
    res = kaplan_meier([2, 2, 3, 5, 5, 8], [1, 0, 1, 1, 1, 0], ["a", "a", "b", "b", "a", "b"])
    assert res.at_risk([0, 3, 6]).loc["a"].tolist() == [3, 1, 0]
    assert res.at_risk([0, 3, 6]).loc["b"].tolist() == [3, 3, 1]
    assert res.curve("a")["time"].iloc[0] == 0 and res.curve("a")["survival"].iloc[0] == 1
    with pytest.raises(StatisticsError, match="two groups"):
        logrank([1, 2], [1, 1], ["a", "a"])

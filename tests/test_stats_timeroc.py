"""mibgkit.stats.timeroc against R (riskRegression::Score, the estimator of timeROC with
weighting = "marginal"), a hand-worked case and a brute-force IPCW computation.

Golden values: tests/reference/golden_robustness.json (make_golden_robustness.R).
"""

from __future__ import annotations


import numpy as np
import pytest
from numpy.testing import assert_allclose

from mibgkit.errors import StatisticsError
from mibgkit.stats.timeroc import DAYS_PER_YEAR, censoring_survival, time_dependent_auc
from reference_data import DATA, golden

GOLDEN = golden("golden_robustness.json")


@pytest.mark.parametrize("ref", GOLDEN["time_auc"], ids=lambda r: f"{r['dataset']}-{r['marker']}")
def test_auc_matches_riskregression(ref):
    df, t, e = DATA[ref["dataset"]]
    res = time_dependent_auc(df[t], df[e], df[ref["marker"]], ref["times"])
    assert_allclose(res["auc"], ref["auc"], rtol=1e-10)


def test_hand_worked_case():
    # cases by 4.5: t=2 (M .9, G(2-)=1) and t=4 (M .2, G(4-)=4/5, censoring at 3 among 5);
    # controls t>4.5: M .4, .1, .3. AUC = (1*3 + 1.25*1) / (2.25 * 3) = 0.6296...
    res = time_dependent_auc([2, 5, 3, 8, 9, 4], [1, 1, 0, 0, 1, 1], [0.9, 0.4, 0.5, 0.1, 0.3, 0.2], [4.5])
    assert res.loc[4.5, "auc"] == pytest.approx(4.25 / 6.75, rel=1e-14)
    assert res.loc[4.5, ["n_cases", "n_controls", "n_censored"]].tolist() == [2, 3, 1]


def _brute_force(t, e, m, horizon):
    """Double sum over all case-control pairs with explicit reverse-KM weights."""
    def G(s, strict):
        out = 1.0
        for u in np.unique(t):
            if u < s or (u == s and not strict):
                c = np.sum((t == u) & (e == 0))
                at_risk = np.sum(t >= u) - np.sum((t == u) & (e == 1))
                if c:
                    out *= 1 - c / at_risk
        return out
    num = den = 0.0
    for i in range(t.size):
        if not (t[i] <= horizon and e[i] == 1):
            continue
        for j in range(t.size):
            if t[j] <= horizon:
                continue
            w = 1 / (G(t[i], True) * G(horizon, False))
            num += w * ((m[i] > m[j]) + 0.5 * (m[i] == m[j]))
            den += w
    return num / den


def test_matches_brute_force_with_ties():
    rng = np.random.default_rng(3)
    n = 40
    t = np.ceil(rng.exponential(10, n))
    e = rng.integers(0, 2, n)
    m = np.round(rng.normal(size=n), 1)
    res = time_dependent_auc(t, e, m, [5, 10])
    for h in (5, 10):
        assert res.loc[h, "auc"] == pytest.approx(_brute_force(t, e, m, h), rel=1e-12)


def test_censoring_survival_without_ties_is_kaplan_meier_of_censorings():
    t = np.array([1.0, 2, 3, 4, 5])
    e = np.array([1, 0, 1, 0, 1])
    assert_allclose(censoring_survival(t, e, [0.5, 2, 2.5, 4, 6]), [1, 0.75, 0.75, 0.75 * 0.5, 0.375])
    assert_allclose(censoring_survival(t, e, [2, 4], left=True), [1, 0.75])


def test_perfect_and_reversed_markers_and_bootstrap():
    rng = np.random.default_rng(1)
    t = rng.exponential(2 * DAYS_PER_YEAR, 80)
    e = np.ones(80, dtype=int)
    years = [DAYS_PER_YEAR * k for k in (1, 2, 3)]
    assert_allclose(time_dependent_auc(t, e, -t, years)["auc"], 1.0)
    assert_allclose(time_dependent_auc(t, e, t, years)["auc"], 0.0)
    res = time_dependent_auc(t, e, -t + rng.normal(0, 300, 80), years, n_boot=50, seed=2)
    assert (res["ci_lower"] <= res["auc"]).all() and (res["auc"] <= res["ci_upper"]).all()
    assert res.index.tolist() == years


def test_beyond_follow_up_is_nan_and_bad_input():
    res = time_dependent_auc([1, 2, 3], [1, 0, 1], [3, 2, 1], [10])
    assert np.isnan(res.loc[10, "auc"]) and res.loc[10, "n_controls"] == 0
    with pytest.raises(StatisticsError):
        time_dependent_auc([1, 2, 3], [1, 0, 1], [3, 2], [1])
    with pytest.raises(StatisticsError):
        time_dependent_auc([1, 2, 3], [1, 0, 1], [3, 2, np.nan], [1])

"""mibgkit.stats.decision against R (survival 3.5: Kaplan–Meier risks from
``summary(survfit(...), times = h, extend = TRUE)`` in Vickers' net-benefit formula), by hand and
properties.

Golden values: tests/reference/golden_validation.json (make_golden_validation.R).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose

from mibgkit.errors import StatisticsError
from mibgkit.stats.decision import net_benefit
from mibgkit.stats.kaplan_meier import km_table
from reference_data import DATA, golden

GOLDEN = golden("golden_validation.json")


@pytest.mark.parametrize("ref", GOLDEN["net_benefit"], ids=lambda r: f"{r['dataset']}-h{r['horizon']}")
def test_matches_r_km_net_benefit(ref):
    df, t, e = DATA[ref["dataset"]]
    positive = df.eval(ref["positive"])
    res = net_benefit(df[t], df[e], positive, ref["horizon"], ref["thresholds"])
    assert list(res.columns) == ["threshold", "net_benefit", "treat_all"]
    assert_allclose(res["threshold"], ref["thresholds"], rtol=0)
    assert_allclose(res["net_benefit"], ref["net_benefit"], rtol=1e-9)
    assert_allclose(res["treat_all"], ref["treat_all"], rtol=1e-9)


def test_golden_covers_a_horizon_beyond_the_positives_follow_up():
    beyond = [r for r in GOLDEN["net_benefit"] if r["horizon"] > r["last_followup_positive"]]
    assert any(r["horizon"] < r["last_followup_all"] for r in beyond)   # only the positives run out
    assert any(r["horizon"] > r["last_followup_all"] for r in beyond)   # everybody runs out


def test_threshold_zero_is_the_event_risk():
    df, t, e = DATA["cohort60"]
    h = 12
    km = km_table(df[t], df[e]).set_index("time")["survival"]
    res = net_benefit(df[t], df[e], df["bin"], h, [0.0])
    assert res["treat_all"].iloc[0] == pytest.approx(1 - km.loc[h], rel=1e-14)
    pos = df["bin"] == 1
    km_pos = km_table(df.loc[pos, t], df.loc[pos, e]).set_index("time")["survival"]
    r_pos = 1 - km_pos[km_pos.index <= h].iloc[-1]
    assert res["net_benefit"].iloc[0] == pytest.approx(r_pos * pos.mean(), rel=1e-14)


def test_by_hand_with_an_event_exactly_at_the_horizon():
    # positives: events at 2 and 5 (= horizon), censored at 9: KM(5) = 2/3 * 1/2 = 1/3
    t, e, pos = [2, 5, 9, 4, 8, 10], [1, 1, 0, 0, 0, 0], [True, True, True, False, False, False]
    res = net_benefit(t, e, pos, 5, [0.0, 0.25])
    r_pos, p = 2 / 3, 0.5
    r_all = 1 - (5 / 6) * (3 / 4)            # events at 2 (6 at risk) and 5 (4 at risk); censoring at 4
    assert_allclose(res["net_benefit"], [r_pos * p, r_pos * p - (1 - r_pos) * p / 3], rtol=1e-14)
    assert_allclose(res["treat_all"], [r_all, r_all - (1 - r_all) / 3], rtol=1e-14)


def test_nobody_or_everybody_positive():
    df, t, e = DATA["breast"]
    th = [0.0, 0.1, 0.3]
    none = net_benefit(df[t], df[e], np.zeros(len(df), bool), 48, th)
    assert (none["net_benefit"] == 0).all() and not np.signbit(none["net_benefit"]).any()
    everybody = net_benefit(df[t], df[e], np.ones(len(df)), 48, th)
    assert_allclose(everybody["net_benefit"], everybody["treat_all"], rtol=1e-14)


def test_bool_and_zero_one_agree_and_scalar_threshold():
    df, t, e = DATA["rossi"]
    a = net_benefit(df[t], df[e], df["prio"] >= 3, 26, 0.2)
    b = net_benefit(df[t], df[e], (df["prio"] >= 3).astype(int), 26, [0.2])
    assert len(a) == 1 and a.equals(b)


def test_beyond_the_last_follow_up_keeps_the_last_km_value():
    df, t, e = DATA["rossi"]
    far = net_benefit(df[t], df[e], df["fin"], 500, [0.1])
    last = net_benefit(df[t], df[e], df["fin"], df[t].max(), [0.1])
    assert far.equals(last)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.floats(1, 30))
def test_permuting_rows_changes_nothing(seed, horizon):
    rng = np.random.default_rng(seed)
    n = 30
    t = rng.integers(1, 25, n).astype(float)
    e = (rng.random(n) < 0.6).astype(float)
    pos = rng.random(n) < 0.4
    perm = rng.permutation(n)
    th = [0, 0.1, 0.4]
    a = net_benefit(t, e, pos, horizon, th)
    b = net_benefit(t[perm], e[perm], pos[perm], horizon, th)
    assert_allclose(a.to_numpy(), b.to_numpy(), rtol=1e-12, atol=1e-15)
    # treating everybody never beats knowing the event risk, and NB falls with the threshold
    assert (np.diff(a["treat_all"]) <= 1e-15).all() and (np.diff(a["net_benefit"]) <= 1e-15).all()


@pytest.mark.parametrize("kwargs, match", [
    ({"thresholds": [0.1, 1.0]}, r"\[0, 1\)"),
    ({"thresholds": [-0.1]}, r"\[0, 1\)"),
    ({"thresholds": []}, "no thresholds"),
    ({"positive": [1, 2, 0, 1]}, "0/1"),
    ({"positive": [1, np.nan, 0, 1]}, "missing"),
    ({"positive": [1, 0, 1]}, "one value per patient"),
    ({"horizon": 0}, "horizon must be"),
    ({"horizon": "three years"}, "horizon must be"),
    ({"events": [1, 0, 2, 0]}, "0 \\(censored\\) / 1"),
])
def test_clear_errors(kwargs, match):
    args = {"durations": [1, 2, 3, 4], "events": [1, 0, 1, 0], "positive": [1, 0, 1, 0],
            "horizon": 3, "thresholds": [0.1], **kwargs}
    with pytest.raises(StatisticsError, match=match):
        net_benefit(**args)

"""mibgkit.stats.concordance against R (survival 3.5 ``concordance(..., reverse = TRUE)``), a
brute-force double loop over all pairs, and properties.

Golden values: tests/reference/golden_validation.json, written by
tests/reference/make_golden_validation.R (rossi, cohort60 with tied times, breast with tied
scores; frozen linear predictors from fixed coefficients stored in the JSON).
"""

from __future__ import annotations


import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose

from mibgkit.errors import StatisticsError
from mibgkit.stats.concordance import concordance, delta_concordance, harrell_c
from reference_data import DATA, golden

GOLDEN = golden("golden_validation.json")


def frozen_lp(dataset: str) -> np.ndarray:
    df = DATA[dataset][0]
    return sum(coef * df[var].to_numpy(float) for var, coef in GOLDEN["frozen"][dataset].items())


def score_of(dataset: str, name: str) -> np.ndarray:
    return frozen_lp(dataset) if name == "lp" else DATA[dataset][0][name].to_numpy(float)


# ----------------------------------------------------------------------------- against R

def _case_id(ref):
    return f"{ref['dataset']}-{ref['score']}-{ref['method']}-tau{ref['tau']}"


@pytest.mark.parametrize("ref", GOLDEN["concordance"], ids=_case_id)
def test_matches_r_concordance(ref):
    df, t, e = DATA[ref["dataset"]]
    res = concordance(df[t], df[e], score_of(ref["dataset"], ref["score"]), ref["method"], ref["tau"])
    assert_allclose(res["c"], ref["c"], rtol=1e-9)
    assert_allclose(res["se"], ref["se"], rtol=1e-8)
    for key in ("concordant", "discordant", "tied", "comparable"):
        assert_allclose(res[key], ref[key], rtol=1e-9, err_msg=key)
    assert res["n_pairs"] == res["comparable"]
    assert res["n"] == len(df) and res["events"] == int(df[e].sum())


def test_golden_cases_exercise_ties_and_tau():
    """The reference set really holds what the tests rely on (guards a regenerated JSON)."""
    cases = GOLDEN["concordance"]
    assert any(c["tied"] > 0 for c in cases) and any(c["tied_time"] > 0 for c in cases)
    cohort = DATA["cohort60"][0]
    tau = GOLDEN["tau"]["cohort60"]
    assert ((cohort["time"] == tau) & (cohort["event"] == 1)).any()       # an event exactly at tau
    # Uno differs from Harrell where there is censoring before the last event
    by = {(c["dataset"], c["score"], c["method"], c["tau"]): c["c"] for c in cases}
    assert by[("cohort60", "lp", "uno", None)] != pytest.approx(by[("cohort60", "lp", "harrell", None)], abs=1e-6)


# ----------------------------------------------------------------------------- brute force

def _brute(t, e, s, method="harrell", tau=None):
    """Every ordered pair by hand, with the documented definitions written out literally."""
    n = t.size

    def G_left(u):  # reverse KM just before u, events before censorings at tied times
        out = 1.0
        for v in np.unique(t[t < u]):
            c = np.sum((t == v) & (e == 0))
            at = np.sum(t >= v) - np.sum((t == v) & (e == 1))
            out *= 1.0 - c / at
        return out

    use_uno = method == "uno" and e.sum() >= 2
    Ck, Dk, Tk = np.zeros(n), np.zeros(n), np.zeros(n)
    for i in range(n):
        if e[i] != 1 or (tau is not None and t[i] > tau):
            continue
        w = 1.0 / G_left(t[i]) ** 2 if use_uno else 1.0
        for j in range(n):
            if not (t[j] > t[i] or (t[j] == t[i] and e[j] == 0)):
                continue
            target = Ck if s[i] > s[j] else Dk if s[i] < s[j] else Tk
            target[i] += w
            target[j] += w
    C, D, T = Ck.sum() / 2, Dk.sum() / 2, Tk.sum() / 2
    N = C + D + T
    d = (Ck - Dk) / N - (C - D) / N**2 * (Ck + Dk + Tk)
    return {"c": (C + T / 2) / N, "se": np.sqrt(np.sum(d**2) / 4), "concordant": C, "discordant": D, "tied": T}


@st.composite
def survival_data(draw, min_n=3, max_n=25, distinct_scores=False):
    n = draw(st.integers(min_n, max_n))
    t = np.array(draw(st.lists(st.integers(1, 8), min_size=n, max_size=n)), dtype=float)
    e = np.array(draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)), dtype=float)
    if e.sum() == 0:
        e[0] = 1.0
    if distinct_scores:
        s = np.array(draw(st.permutations(list(range(n)))), dtype=float) * 0.37 - 2.0
    else:
        s = np.array(draw(st.lists(st.integers(-3, 3), min_size=n, max_size=n)), dtype=float) / 2
    return t, e, s


def _has_pairs(t, e, tau=None):
    return any(e[i] == 1 and (tau is None or t[i] <= tau) and ((t > t[i]) | ((t == t[i]) & (e == 0))).any()
               for i in range(t.size))


@settings(max_examples=60, deadline=None)
@given(survival_data(), st.sampled_from(["harrell", "uno"]), st.sampled_from([None, 3.0, 5.0]))
def test_matches_brute_force(data, method, tau):
    t, e, s = data
    if not _has_pairs(t, e, tau):
        with pytest.raises(StatisticsError, match="not estimable"):
            concordance(t, e, s, method, tau)
        return
    mine = concordance(t, e, s, method, tau)
    ref = _brute(t, e, s, method, tau)
    # Uno's counts are sums of inverse-censoring weights: a count that is exactly 0 may come out
    # as rounding of the others' size, so the absolute tolerance scales with the largest count.
    scale = max([1.0] + [abs(float(v)) for v in ref.values() if np.isfinite(v)])
    for key, val in ref.items():
        assert_allclose(mine[key], val, rtol=1e-12, atol=1e-13 * scale, err_msg=key)


def test_the_cox_tables_c_is_this_c():
    """Cox tables and the bootstrap use harrell_c: the same number as concordance(), bit for bit."""
    df, t, e = DATA["cohort60"]
    s = df["score"].to_numpy(float)
    assert concordance(df[t], df[e], s)["c"] == harrell_c(df[t].to_numpy(float), df[e].to_numpy(float), s)


# ----------------------------------------------------------------------------- properties

@settings(max_examples=40, deadline=None)
@given(survival_data(min_n=4, distinct_scores=True))
def test_reversed_score_gives_one_minus_c(data):
    t, e, s = data
    if not _has_pairs(t, e):
        return
    a, b = concordance(t, e, s), concordance(t, e, -s)
    assert_allclose(a["c"] + b["c"], 1.0, rtol=1e-12)
    assert_allclose(a["se"], b["se"], rtol=1e-12)


@settings(max_examples=40, deadline=None)
@given(survival_data(min_n=4), st.sampled_from(["harrell", "uno"]))
def test_monotone_transform_changes_nothing(data, method):
    t, e, s = data
    if not _has_pairs(t, e):
        return
    a, b = concordance(t, e, s, method), concordance(t, e, np.exp(3 * s) + 7, method)
    for key in ("c", "se", "concordant", "discordant", "tied"):
        assert_allclose(a[key], b[key], rtol=1e-12, err_msg=key)


@settings(max_examples=40, deadline=None)
@given(survival_data(min_n=4), st.sampled_from(["harrell", "uno"]), st.randoms(use_true_random=False))
def test_permuting_rows_changes_nothing(data, method, rnd):
    t, e, s = data
    if not _has_pairs(t, e):
        return
    perm = np.array(rnd.sample(range(t.size), t.size))
    a, b = concordance(t, e, s, method), concordance(t[perm], e[perm], s[perm], method)
    for key in ("c", "se", "concordant", "discordant", "tied", "comparable"):
        assert_allclose(a[key], b[key], rtol=1e-12, atol=1e-12, err_msg=key)  # Uno weights sum in another order


def test_tau_keeps_an_event_exactly_at_tau():
    df, t, e = DATA["cohort60"]
    tt, ee, s = df[t].to_numpy(float), df[e].to_numpy(float), df["score"].to_numpy(float)
    tau = GOLDEN["tau"]["cohort60"]
    at, before = concordance(tt, ee, s, tau=tau), concordance(tt, ee, s, tau=tau - 0.5)
    extra = sum(((tt > ti) | ((tt == ti) & (ee == 0))).sum() for ti in tt[(ee == 1) & (tt == tau)])
    assert at["comparable"] == before["comparable"] + extra > before["comparable"]
    # a tau at or beyond the last time is no truncation at all
    assert concordance(tt, ee, s, tau=tt.max())["c"] == concordance(tt, ee, s)["c"]


def test_uno_falls_back_to_harrell_with_one_event():
    t, e, s = [1, 2, 3, 4, 5], [0, 1, 0, 0, 0], [0.3, 0.9, 0.1, 0.5, 0.4]
    assert concordance(t, e, s, "uno") == {**concordance(t, e, s, "harrell"), "method": "uno"}


def test_all_scores_tied():
    res = concordance([1, 2, 3, 4], [1, 1, 0, 1], [2.0, 2.0, 2.0, 2.0])
    assert res["c"] == 0.5 and res["se"] == 0.0 and res["tied"] == res["comparable"] == 5


def test_large_n_runs_in_blocks():
    rng = np.random.default_rng(3)
    n = 3000
    t = rng.integers(1, 2000, n).astype(float)
    e = (rng.random(n) < 0.6).astype(float)
    s = rng.normal(size=n) - 0.001 * t
    res = concordance(t, e, s, "uno")
    assert 0.5 < res["c"] < 1 and res["se"] > 0


# ----------------------------------------------------------------------------- errors

@pytest.mark.parametrize("kwargs, match", [
    ({"events": [0, 0, 0, 0]}, "no events"),
    ({"events": [0, 0, 0, 1]}, "no comparable pair"),          # the only event is the last time
    ({"tau": 0.5}, "no comparable pair"),
    ({"score": [1.0, 2.0, 3.0]}, "differ in length"),
    ({"score": [1.0, np.nan, 3.0, 4.0]}, "missing or infinite"),
    ({"method": "gonen"}, "method must be"),
    ({"tau": -1}, "tau must be"),
    ({"durations": [1, 2, 0, 4]}, "> 0"),
])
def test_clear_errors(kwargs, match):
    args = {"durations": [1, 2, 3, 4], "events": [1, 0, 1, 0], "score": [0.9, 0.1, 0.5, 0.7], **kwargs}
    with pytest.raises(StatisticsError, match=match):
        concordance(**args)


# ----------------------------------------------------------------------------- delta_concordance

def test_delta_concordance_on_rossi():
    df, t, e = DATA["rossi"]
    base, full = df["prio"].to_numpy(float), frozen_lp("rossi")
    res = delta_concordance(df[t], df[e], base, full, n_boot=200, seed=11)
    assert res["c_base"] == concordance(df[t], df[e], base)["c"]
    assert res["c_full"] == concordance(df[t], df[e], full)["c"]
    assert res["delta"] == pytest.approx(res["c_full"] - res["c_base"], abs=1e-15)
    assert res["n_boot"] == 200 and res["n_failed"] == 0 and res["deltas"].shape == (200,)
    assert res["ci_lower"] < res["delta"] < res["ci_upper"]
    assert_allclose([res["ci_lower"], res["ci_upper"]], np.quantile(res["deltas"], [0.025, 0.975]))
    again = delta_concordance(df[t], df[e], base, full, n_boot=200, seed=11)
    assert_allclose(again["deltas"], res["deltas"], rtol=0, atol=0)


def test_delta_resamples_do_not_depend_on_n_boot():
    df, t, e = DATA["cohort60"]
    args = (df[t], df[e], df["bin"], frozen_lp("cohort60"))
    short = delta_concordance(*args, method="uno", n_boot=15, seed=5)
    long = delta_concordance(*args, method="uno", n_boot=40, seed=5)
    assert_allclose(long["deltas"][:15], short["deltas"], rtol=0, atol=0)


def test_delta_of_identical_scores_is_zero():
    df, t, e = DATA["cohort60"]
    res = delta_concordance(df[t], df[e], df["score"], df["score"], n_boot=30)
    assert res["delta"] == 0 and res["ci_lower"] == 0 and res["ci_upper"] == 0


@pytest.mark.parametrize("kwargs, match", [({"n_boot": 0}, "n_boot"), ({"conf_level": 1.0}, "conf_level"),
                                           ({"score_full": [1, 2]}, "score_full")])
def test_delta_errors(kwargs, match):
    args = {"durations": [1, 2, 3, 4], "events": [1, 0, 1, 0], "score_base": [0.9, 0.1, 0.5, 0.7],
            "score_full": [0.8, 0.2, 0.5, 0.1], **kwargs}
    with pytest.raises(StatisticsError, match=match):
        delta_concordance(**args)

"""mibgkit.stats.roc against R pROC 1.18 / binom.test, and by its conventions.

Golden values: tests/reference/golden.json (``roc``), from tests/reference/make_golden.R.
"""

from __future__ import annotations


import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose

from mibgkit.errors import QCWarning, StatisticsError
from mibgkit.stats import auc_delong, clopper_pearson, confusion_at, roc_curve, roc_cutoff
from reference_data import DATA as REFERENCE_DATA, golden

GOLDEN = golden("golden.json")
DATA = {k: v[0] for k, v in REFERENCE_DATA.items() if k in ("rossi", "cohort60")}


@pytest.mark.parametrize("ref", GOLDEN["roc"], ids=lambda r: f"{r['dataset']}-{r['score']}-{r['positive']}")
def test_roc_cutoff_matches_proc(ref):
    df = DATA[ref["dataset"]]
    res = roc_cutoff(df[ref["score"]], df[ref["positive"]], return_curve=True)
    # AUC and its DeLong interval: pROC ci.auc(method = "delong")
    assert_allclose(res["auc"], ref["auc"], rtol=0, atol=1e-9)
    assert_allclose([res["auc_ci_lower"], res["auc_ci_upper"]], [ref["auc_ci_lower"], ref["auc_ci_upper"]],
                    rtol=0, atol=1e-9)
    # Youden cutoff: pROC prints the midpoint threshold, we report the observed score above it
    youden = ref["youden"]
    best = max(youden, key=lambda y: y["observed_cutoff"])  # our tie rule: the highest cutoff
    assert res["n_optimal"] == len(youden)
    assert res["cutoff"] == best["observed_cutoff"]
    assert res["cutoff"] in set(df[ref["score"]])
    assert_allclose(res["midpoint_threshold"], best["threshold"], rtol=1e-12)
    assert_allclose([res["sensitivity"], res["specificity"]], [best["sensitivity"], best["specificity"]], rtol=1e-12)
    for key in ("tp", "fp", "tn", "fn"):
        assert res[key] == best[key], key
    assert_allclose([res["ppv"], res["npv"]], [best["ppv"], best["npv"]], rtol=1e-12)
    # exact Clopper-Pearson intervals: R binom.test
    for name in ("sensitivity", "specificity", "ppv", "npv"):
        assert_allclose([res[f"{name}_ci_lower"], res[f"{name}_ci_upper"]], best[f"{name}_ci"], rtol=1e-8,
                        atol=1e-12, err_msg=name)
    # the whole curve: the same (sensitivity, specificity) points as pROC coords("all")
    curve = res["curve"]
    mine = sorted(zip(curve["sensitivity"].round(12), curve["specificity"].round(12)))
    theirs = sorted(zip(np.round(ref["curve"]["sensitivity"], 12), np.round(ref["curve"]["specificity"], 12)))
    assert mine == theirs


def test_cutoff_rule_is_score_at_least_cutoff():
    score = np.array([0.1, 0.2, 0.3, 0.3, 0.5, 0.9])
    positive = np.array([0, 0, 0, 1, 1, 1])
    r = roc_cutoff(score, positive)
    # cutoff 0.3 calls 0.3, 0.3, 0.5, 0.9 positive: TP 3, FP 1 (J = 2/3); cutoff 0.5: TP 2, FP 0 (J = 2/3)
    # -> tie, resolved to the higher cutoff (more specific)
    assert r["n_optimal"] == 2
    assert r["cutoff"] == 0.5
    assert (r["tp"], r["fp"], r["tn"], r["fn"]) == (2, 0, 3, 1)
    assert r["specificity"] == 1.0
    assert_allclose(r["youden"], 2 / 3)


def test_unique_optimum_and_counts():
    score = [1, 2, 3, 4, 5, 6, 7, 8]
    positive = [0, 1, 0, 0, 1, 1, 1, 0]
    r = roc_cutoff(score, positive)
    assert r["cutoff"] == 5 and r["n_optimal"] == 1
    assert (r["tp"], r["fp"], r["tn"], r["fn"]) == (3, 1, 3, 1)
    assert r["tp"] + r["fn"] == r["n_positive"] == 4


def test_clopper_pearson_edges():
    assert clopper_pearson(0, 10)[0] == 0.0
    assert clopper_pearson(10, 10)[1] == 1.0
    assert_allclose(clopper_pearson(0, 10)[1], 1 - 0.025 ** (1 / 10))
    assert all(np.isnan(clopper_pearson(0, 0)))


def test_auc_delong_by_hand():
    # positives 3, 4; negatives 1, 3: psi = (1, .5, 1, 1) -> AUC 0.875
    r = auc_delong([3, 4, 1, 3], [1, 1, 0, 0])
    assert_allclose(r["auc"], 0.875)
    v10 = np.array([0.75, 1.0])  # placements of the positives
    v01 = np.array([1.0, 0.75])  # of the negatives
    assert_allclose(r["se"], np.sqrt(v10.var(ddof=1) / 2 + v01.var(ddof=1) / 2))


def test_curve_layout():
    c = roc_curve([0.2, 0.4, 0.4, 0.9], [0, 1, 0, 1])
    assert list(c.columns) == ["cutoff", "tp", "fp", "tn", "fn", "sensitivity", "specificity", "fpr", "youden"]
    assert np.isinf(c["cutoff"].iloc[0]) and c["sensitivity"].iloc[0] == 0
    assert c["cutoff"].iloc[1:].tolist() == [0.9, 0.4, 0.2]
    assert c["sensitivity"].iloc[-1] == 1 and c["specificity"].iloc[-1] == 0


def test_errors_and_missing():
    with pytest.raises(StatisticsError, match="both positive and negative"):
        roc_cutoff([1, 2, 3], [1, 1, 1])
    with pytest.raises(StatisticsError, match="0/1"):
        roc_cutoff([1, 2, 3], [0, 1, 2])
    with pytest.raises(StatisticsError, match="equal length"):
        roc_cutoff([1, 2, 3], [0, 1])
    with pytest.warns(QCWarning, match="1 of 5 cases dropped"):
        r = roc_cutoff([1, 2, np.nan, 4, 5], [0, 0, 1, 1, 1])
    assert r["tp"] + r["fn"] + r["tn"] + r["fp"] == 4


@settings(max_examples=25, deadline=None)
@given(st.integers(min_value=0, max_value=10_000))
def test_permutation_and_monotone_transform(seed):
    rng = np.random.default_rng(seed)
    score = np.round(rng.normal(size=40), 1)  # ties
    positive = rng.integers(0, 2, 40)
    if positive.min() == positive.max():
        return
    r = roc_cutoff(score, positive)
    perm = rng.permutation(40)
    p = roc_cutoff(score[perm], positive[perm])
    assert {k: p[k] for k in ("cutoff", "tp", "fp")} == {k: r[k] for k in ("cutoff", "tp", "fp")}
    assert_allclose([p["auc"], p["auc_ci_lower"]], [r["auc"], r["auc_ci_lower"]], rtol=1e-12)
    # a strictly increasing transform maps the cutoff and keeps everything else
    e = roc_cutoff(np.exp(score), positive)
    assert_allclose(e["cutoff"], np.exp(r["cutoff"]))
    assert (e["tp"], e["fp"]) == (r["tp"], r["fp"])
    assert_allclose(e["auc"], r["auc"], rtol=1e-12)
    # swapping the classes and negating the score gives the same AUC
    s = roc_cutoff(-score, 1 - positive)
    assert_allclose(s["auc"], r["auc"], rtol=1e-12)


def test_confusion_at_counts_by_brute_force():
    rng = np.random.default_rng(3)
    s = rng.normal(size=80).round(1)
    y = rng.integers(0, 2, 80)
    for c in (-0.5, 0.0, 0.3, s[5]):
        r = confusion_at(s, y, c)
        assert r["tp"] == sum(1 for a, b in zip(s, y) if a >= c and b == 1)
        assert r["fp"] == sum(1 for a, b in zip(s, y) if a >= c and b == 0)
        assert r["tn"] + r["fp"] == (y == 0).sum() and r["tp"] + r["fn"] == (y == 1).sum()
        assert r["sensitivity"] == r["tp"] / (r["tp"] + r["fn"])
    # at the Youden cutoff it reproduces roc_cutoff's table
    best = roc_cutoff(s, y)
    at = confusion_at(s, y, best["cutoff"])
    assert all(at[k] == best[k] for k in ("tp", "fp", "tn", "fn", "ppv", "npv_ci_lower"))


def test_confusion_at_an_empty_cohort_or_one_class_counts_zeros_and_leaves_rates_nan():
    empty = confusion_at([], [], 0.3)
    assert (empty["tp"], empty["fp"], empty["tn"], empty["fn"]) == (0, 0, 0, 0)
    assert all(np.isnan(empty[k]) for k in ("sensitivity", "specificity", "ppv", "npv", "ppv_ci_lower"))
    none_positive = confusion_at([0.1, 0.5, 0.9], [0, 0, 0], 0.5)
    assert (none_positive["fp"], none_positive["tn"]) == (2, 1) and np.isnan(none_positive["sensitivity"])
    assert none_positive["specificity"] == 1 / 3

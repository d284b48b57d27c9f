"""mibgkit.stats.maxstat against R (maxstat 0.7 ``maxstat.test``, ``smethod = "LogRank"``).

Golden values: tests/reference/golden.json, written by tests/reference/make_golden.R from the
CSV data sets beside it (rossi.csv: Rossi et al. 1980 recidivism data; cohort60.csv: seeded,
from make_data.py).
"""

from __future__ import annotations


import pytest
from numpy.testing import assert_allclose

from mibgkit.errors import StatisticsError
from mibgkit.stats import maxstat_cutoff
from reference_data import DATA, golden

GOLDEN = golden("golden.json")


# ----------------------------------------------------------------------------- maxstat vs R

@pytest.mark.parametrize(
    "ref", GOLDEN["maxstat"], ids=lambda r: f"{r['dataset']}-{r['score']}-{r['method']}"
)
def test_maxstat_matches_r(ref):
    df, t, e = DATA[ref["dataset"]]
    if ref["p"] is None:  # R's exact HL computation overflows for large N; mibgkit refuses it
        with pytest.raises(StatisticsError, match="Lau92"):
            maxstat_cutoff(df[t], df[e], df[ref["score"]], method=ref["method"])
        return
    res = maxstat_cutoff(df[t], df[e], df[ref["score"]], method=ref["method"])
    assert res["cutpoint"] == ref["cutpoint"]
    assert_allclose(res["statistic"], ref["statistic"], rtol=1e-10)
    assert_allclose(res["p"], ref["p"], rtol=1e-8)
    assert_allclose(res["cuts"]["cutpoint"].to_numpy(), ref["cuts"])
    assert_allclose(res["cuts"]["statistic"].to_numpy(), ref["stats"], rtol=1e-10)
    high = df[ref["score"]] > res["cutpoint"]
    assert res["n_high"] == int(high.sum())

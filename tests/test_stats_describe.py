"""mibgkit.stats.describe: Table 1 in the paper's layout."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mibgkit.errors import StatisticsError
from mibgkit.stats import Variable, describe, describe_styler


@pytest.fixture
def clinical():
    return pd.DataFrame(
        {
            "age_months": [1, 12, 37, 60, 102, 20, 44, np.nan],
            "sex": ["M", "F", "M", "F", "M", "F", "M", "F"],
            "mycn": ["normal", "amplified", None, "normal", "normal", None, "normal", "normal"],
            "bone_mets": [1, 0, 0, 1, 0, 0, 1, 0],
        }
    )


def test_continuous_median_iqr_range_spss_quartiles(clinical):
    t = describe(clinical, [Variable("age_months", label="Age", unit="months", digits=1)])
    row = t.iloc[0]
    x = np.sort(clinical["age_months"].dropna().to_numpy())  # 1 12 20 37 44 60 102, n = 7
    # SPSS HAVERAGE: position (n + 1) p = 2 and 6 -> exact order statistics
    assert (row["q1"], row["median"], row["q3"]) == (x[1], x[3], x[5]) == (12, 37, 60)
    assert (row["min"], row["max"], row["n"], row["n_missing"]) == (1, 102, 7, 1)
    assert row["variable"] == "Age (months)"
    assert row["summary"] == "37.0 (12.0–60.0); range 1.0–102.0"


def test_r_quartiles_on_request(clinical):
    t = describe(clinical, {"age_months": "continuous"}, quantile_method="linear")
    x = clinical["age_months"].dropna()
    assert t.loc[0, "q1"] == pytest.approx(np.percentile(x, 25)) == pytest.approx(16.0)


def test_categorical_counts_with_missing(clinical):
    t = describe(clinical, [Variable("mycn", kind="categorical", levels=["normal", "amplified", "unknown"])])
    assert t["level"].tolist() == ["normal", "amplified", "unknown", "missing"]
    assert t["count"].tolist() == [5, 1, 0, 2]
    assert t["percent"].sum() == pytest.approx(100.0)
    assert (t["n"] == 6).all()
    assert t["summary"].tolist()[0] == "5 (62.5%)"


def test_level_labels_and_sorted_levels(clinical):
    t = describe(clinical, [Variable("bone_mets", label="Bone/BM metastasis", kind="categorical",
                                     level_labels={0: "no", 1: "yes"}), Variable("sex", kind="categorical")])
    assert t["level"].tolist() == ["no", "yes", "F", "M"]
    assert t["count"].tolist() == [5, 3, 4, 4]
    assert "missing" not in t["level"].tolist()


def test_spec_errors(clinical):
    with pytest.raises(StatisticsError, match="not in the table"):
        describe(clinical, ["nope"])
    with pytest.raises(StatisticsError, match="declare it categorical"):
        describe(clinical, [Variable("sex")])
    with pytest.raises(StatisticsError, match="not among its levels"):
        describe(clinical, [Variable("sex", kind="categorical", levels=["M"])])


def test_styler_renders_html(clinical):
    t = describe(clinical, [Variable("age_months", label="Age"), Variable("sex", kind="categorical")])
    html = describe_styler(t, flags={("sex", "M"): "paper: 25 M"}).to_html()
    assert "Table 1" in html and "37.0" in html and "paper: 25 M" in html

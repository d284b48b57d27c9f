"""Report tables: SPSS-style formatting, the paper's numbers, side-by-side comparisons."""

import numpy as np
import pandas as pd
import pytest

from mibgkit import paper, tables
from mibgkit.stats import describe
from mibgkit.variables import TABLE2_VARIABLES, age_group, covariates, table1_variables


def test_formatting_as_the_paper_prints():
    assert tables.fmt_p(0.0842) == ".084"
    assert tables.fmt_p(0.00049) == "< .001"
    assert tables.fmt_p(0.001) == ".001"
    assert tables.fmt_p(float("nan")) == ""
    assert tables.fmt_hr(1.4416, 1.1021, 1.886) == "1.442 (1.102–1.886)"
    assert tables.fmt_pct(0.5454) == "54.5 %"


def test_published_table3_is_internally_consistent():
    """Sensitivity, specificity, PPV and NPV as printed follow from the printed 2×2 counts."""
    for _, r in paper.TABLE3.iterrows():
        assert r.tp + r.fn == paper.N_EVENTS and r.fp + r.tn == paper.N_PATIENTS - paper.N_EVENTS
        assert r.sensitivity == pytest.approx(r.tp / (r.tp + r.fn), abs=6e-4)
        assert r.specificity == pytest.approx(r.tn / (r.tn + r.fp), abs=6e-4)
        assert r.ppv == pytest.approx(r.tp / (r.tp + r.fp), abs=6e-4)
        assert r.npv == pytest.approx(r.tn / (r.tn + r.fn), abs=6e-4)


def test_published_table1_counts_add_up_to_the_cohort():
    for var, levels in paper.TABLE1_COUNTS.items():
        assert sum(levels.values()) == paper.N_PATIENTS, var
    assert sum(paper.EVENT_TYPES.values()) == paper.N_EVENTS


def test_published_hr_lies_inside_its_ci():
    for t in (paper.TABLE2_UNIVARIATE, paper.TABLE2_MULTIVARIATE):
        assert (t.ci_lower < t.hr).all() and (t.hr < t.ci_upper).all()
    assert set(paper.TABLE2_UNIVARIATE.index) == {v.name for v in TABLE2_VARIABLES}


def test_cox_side_by_side_flags_disagreement():
    ours = paper.TABLE2_UNIVARIATE[["hr", "ci_lower", "ci_upper", "p"]].copy()
    ours.loc["tmean_lmean", "p"] = 0.01  # now significant here, not in the paper
    ours.loc["tmax_lmax", "hr"] = 0.8  # significant but protective here
    side = tables.cox_side_by_side(ours, paper.TABLE2_UNIVARIATE)
    assert not side.loc["Tmean/Lmean", "agrees"] and not side.loc["Tmax/Lmax", "agrees"]
    assert side.loc["ASP", "agrees"] and side.loc["Curie score", "agrees"]
    assert side.loc["ASP", "p, paper"] == "< .001"
    multi = tables.cox_side_by_side(ours.loc[["tmax_lmax", "curie_score"]], paper.TABLE2_MULTIVARIATE)
    assert list(multi.index) == ["Bone/BM metastasis", "Tmax/Lmax", "ASP", "curie_score"]
    assert multi.loc["curie_score", "HR (95 % CI), paper"] == "not in model"


def _clinical(n=8):
    return pd.DataFrame({
        "efs_days": np.arange(1, n + 1) * 100.0, "efs_event": [1, 0] * (n // 2),
        "sex": ["M", "F"] * (n // 2), "age_months": [5, 17.9, 18, 30, 59.9, 60, 80, None][:n],
        "uptake_extent": ["above_liver", "muscle_to_liver"] * (n // 2),
        "bone_marrow_metastasis": ["yes", "no", "no", None, "yes", "no", "no", "no"][:n],
        "histology": ["NB"] * n, "max_diameter_mm": [55.0] * n, "asphericity": np.linspace(0.1, 0.8, n),
    })


def test_age_groups_follow_table1_limits():
    g = age_group(pd.Series([5, 17.9, 18, 30, 59.9, 60, 80, None]))
    assert g.tolist() == ["<18 mo", "<18 mo", "18 mo–5 y", "18 mo–5 y", "18 mo–5 y", "≥5 y", "≥5 y", None]


def test_covariate_coding():
    x = covariates(_clinical())
    assert x["age_group"].tolist()[:3] == [0.0, 0.0, 1.0] and np.isnan(x["age_group"].iloc[-1])
    assert x["uptake_extent"].tolist()[:2] == [1.0, 0.0]
    assert x["bone_marrow_metastasis"].tolist()[:4][:3] == [1.0, 0.0, 0.0] and np.isnan(x["bone_marrow_metastasis"].iloc[3])
    assert (x["max_diameter_cm"] == 5.5).all()  # HR per cm, as the paper's


def test_table1_side_by_side_compares_counts():
    t = _clinical()
    t1 = describe(t, [v for v in table1_variables() if v.column in ("sex", "age_months")])
    side = tables.table1_side_by_side(t1, table1_variables(), {"sex": {"M": 4, "F": 5}},
                                      {"age_months": {"median": 37, "min": 1, "max": 102, "n": 7}}, {"age_months": "note"})
    sex = side[side.variable == "Sex"].set_index("level")
    assert bool(sex.at["M", "equal"]) and not bool(sex.at["F", "equal"])
    age = side[side.level == ""].iloc[0]
    assert age["equal"] and age["note"] == "note" and age["paper"] == "37; range 1–102"
    html = tables.style_side_by_side(side).to_html()
    assert "differs" in html


def test_cox_side_by_side_says_not_estimable_and_does_not_score_it():
    ours = paper.TABLE2_UNIVARIATE[["hr", "ci_lower", "ci_upper", "p"]].copy()
    ours.loc["asphericity", ["hr", "ci_lower", "ci_upper", "p"]] = np.nan  # separation in this run
    ours.loc["tmax_lmax", "hr"] = 0.8  # and one row that does disagree
    side = tables.cox_side_by_side(ours, paper.TABLE2_UNIVARIATE)
    assert side.loc["ASP", "HR (95 % CI), this run"] == tables.NOT_ESTIMABLE
    assert side.loc["ASP", "p, this run"] == "" and side.loc["ASP", "agrees"] is None
    assert side.loc["Curie score", "agrees"]
    html = tables.highlight_disagreement(side).to_html()
    row = html[html.index(">ASP<"):].split("</tr>")[0]
    assert "—" in row and "differs" not in row
    style = html.split("</style>")[0]  # the shaded cells' ids: the ASP row is not among them
    assert "#fde2d4" in style and f"_row{list(side.index).index('ASP')}_col0" not in style

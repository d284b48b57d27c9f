"""The frozen published model: the packaged JSON equals the paper, PI and cutoff groups, clear errors."""

import copy
import json
import math

import numpy as np
import pandas as pd
import pytest

from mibgkit import paper
from mibgkit.frozen_model import DEFAULT_MODEL, FrozenModel, FrozenModelError, load_model


def test_packaged_model_is_the_papers():
    m = load_model()
    pub = paper.TABLE2_MULTIVARIATE
    assert m.variables == list(pub.index)
    for t in m.terms:
        assert t.hr == pub.at[t.variable, "hr"]
        assert (t.ci_lower, t.ci_upper) == (pub.at[t.variable, "ci_lower"], pub.at[t.variable, "ci_upper"])
        assert t.x  # the coding is stated
    for c in m.cutoffs:
        assert c.cutoff == paper.TABLE3.at[c.variable, "cutoff"]
        assert c.rule == ">="
        for k in ("sensitivity", "specificity", "ppv", "npv", "tp", "fn", "fp", "tn"):
            assert c.published[k] == paper.TABLE3.at[c.variable, k]
    asp = next(t for t in m.terms if t.variable == "asphericity")
    assert asp.coding == "continuous" and asp.scale == 1.0  # ASP as a fraction, HR per 1.0
    bm = next(t for t in m.terms if t.variable == "bone_marrow_metastasis")
    assert bm.coding == "binary" and bm.level == "yes"


def test_predict_is_sum_of_log_hr_times_x():
    m = load_model()
    t = pd.DataFrame({"bone_marrow_metastasis": ["yes", "no", None], "tmax_lmax": [6.278, 2.0, 5.0],
                      "asphericity": [0.1, 0.342, 0.3]}, index=["A", "B", "C"])
    pi = m.predict(t)
    expect_a = math.log(4.419) + 6.278 * math.log(1.252) + 0.1 * math.log(26.755)
    expect_b = 2.0 * math.log(1.252) + 0.342 * math.log(26.755)
    assert pi["A"] == pytest.approx(expect_a, rel=1e-12)
    assert pi["B"] == pytest.approx(expect_b, rel=1e-12)
    assert np.isnan(pi["C"])  # a missing x gives a missing PI
    groups = m.classify(t)
    assert groups.loc["A"].tolist() == ["high", "low"]   # exactly at the cutoff is high (score >= cutoff)
    assert groups.loc["B"].tolist() == ["low", "high"]
    assert list(groups.index) == ["A", "B", "C"]


def test_missing_value_in_cutoff_column_is_not_classified():
    m = load_model()
    t = pd.DataFrame({"bone_marrow_metastasis": ["no"], "tmax_lmax": [np.nan], "asphericity": [0.5]})
    g = m.classify(t)
    assert g.at[0, "tmax_lmax"] is None and g.at[0, "asphericity"] == "high"


def test_missing_column_is_an_error_naming_it():
    with pytest.raises(FrozenModelError, match="tmax_lmax"):
        load_model().predict(pd.DataFrame({"bone_marrow_metastasis": ["no"], "asphericity": [0.2]}))


def _raw():
    return json.loads(DEFAULT_MODEL.read_text())


def _write(tmp_path, data, name="model.json"):
    p = tmp_path / name
    p.write_text(data if isinstance(data, str) else json.dumps(data))
    return p


def test_another_model_of_the_same_schema(tmp_path):
    raw = {"schema": "mibgkit-frozen-model/1", "name": "diameter model",
           "terms": [{"variable": "max_diameter_cm", "hr": 1.5,
                      "coding": {"type": "continuous", "column": "max_diameter_mm", "scale": 0.1}}],
           "cutoffs": [{"variable": "max_diameter_mm", "cutoff": 50.0, "rule": ">"}]}
    m = load_model(_write(tmp_path, raw))
    t = pd.DataFrame({"max_diameter_mm": [50.0, 80.0]})
    assert m.predict(t).tolist() == pytest.approx([5.0 * math.log(1.5), 8.0 * math.log(1.5)])
    assert m.classify(t)["max_diameter_mm"].tolist() == ["low", "high"]  # rule ">"
    assert FrozenModel.from_dict(raw).terms == m.terms


def _mutate(fn):
    raw = _raw()
    fn(raw)
    return raw


BAD = [
    ("not json", "{ nope", "not valid JSON"),
    ("not an object", "[1, 2]", "top level"),
    ("schema", _mutate(lambda r: r.update(schema="other/2")), "'schema'"),
    ("no name", _mutate(lambda r: r.pop("name")), "'name'"),
    ("no terms", _mutate(lambda r: r.update(terms=[])), "'terms'"),
    ("hr missing", _mutate(lambda r: r["terms"][1].pop("hr")), r"'terms\[1\]\.hr': is missing"),
    ("hr negative", _mutate(lambda r: r["terms"][0].update(hr=-2.0)), r"'terms\[0\]\.hr': must be > 0"),
    ("hr text", _mutate(lambda r: r["terms"][2].update(hr="26.8")), r"'terms\[2\]\.hr': must be a number"),
    ("hr outside CI", _mutate(lambda r: r["terms"][1].update(hr=2.0)), r"'terms\[1\]\.hr'.*outside its own CI"),
    ("coding type", _mutate(lambda r: r["terms"][1]["coding"].update(type="spline")), r"coding\.type"),
    ("binary level", _mutate(lambda r: r["terms"][0]["coding"].pop("level")), r"coding\.level"),
    ("no coding", _mutate(lambda r: r["terms"][0].pop("coding")), r"'terms\[0\]\.coding': is missing"),
    ("scale zero", _mutate(lambda r: r["terms"][1]["coding"].update(scale=0)), r"coding\.scale"),
    ("duplicate", _mutate(lambda r: r["terms"].append(copy.deepcopy(r["terms"][0]))), "repeated: bone_marrow"),
    ("rule", _mutate(lambda r: r["cutoffs"][0].update(rule="=>")), r"'cutoffs\[0\]\.rule'"),
    ("cutoff text", _mutate(lambda r: r["cutoffs"][1].update(cutoff="0.342")), r"'cutoffs\[1\]\.cutoff'"),
    ("proportion", _mutate(lambda r: r["cutoffs"][0]["published"].update(sensitivity=54.5)),
     r"published\.sensitivity'.*proportion"),
    ("count", _mutate(lambda r: r["cutoffs"][0]["published"].update(tp=6.5)), r"published\.tp'"),
    ("unknown published", _mutate(lambda r: r["cutoffs"][0]["published"].update(auc=0.8)), r"published\.auc'"),
]


@pytest.mark.parametrize("name,data,message", BAD, ids=[b[0] for b in BAD])
def test_bad_model_file_names_file_and_field(tmp_path, name, data, message):
    p = _write(tmp_path, data, "bad_model.json")
    with pytest.raises(FrozenModelError, match=message) as exc:
        load_model(p)
    assert "bad_model.json" in str(exc.value)


def test_missing_file(tmp_path):
    with pytest.raises(FrozenModelError, match="not found") as exc:
        load_model(tmp_path / "nowhere.json")
    assert "nowhere.json" in str(exc.value)

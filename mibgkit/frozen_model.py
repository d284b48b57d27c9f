r"""A published prognostic model, frozen: its hazard ratios and cutoffs, applied to a new cohort.

External validation applies a published model exactly as printed, never refitted. A
model is a JSON file (schema ``mibgkit-frozen-model/1``); the one shipped,
``mibgkit/data/zhou2025_model.json``, holds Zhou et al. 2025's multivariate Cox model (Table 2)
and its ROC cutoffs (Table 3). Another published model is given as a file of the same schema::

    {
      "schema": "mibgkit-frozen-model/1",
      "name": "...",                      # shown in reports
      "citation": "...",                  # optional
      "terms": [                          # at least one
        {"variable": "tmax_lmax",         # name of x_i (unique)
         "label": "Tmax/Lmax",            # optional, as the paper prints it
         "hr": 1.252,                     # published hazard ratio (> 0)
         "ci_lower": 1.074, "ci_upper": 1.459, "p": 0.004,   # optional
         "coding": {"type": "continuous", "column": "tmax_lmax", "scale": 1.0},
         "x": "what x_i is, in words"},   # optional
        {"variable": "bone_marrow_metastasis", "hr": 4.419,
         "coding": {"type": "binary", "column": "bone_marrow_metastasis", "level": "yes"}}
      ],
      "cutoffs": [                        # optional
        {"variable": "asphericity", "cutoff": 0.342, "rule": ">=",
         "published": {"sensitivity": 0.636, "specificity": 0.897, "ppv": 0.636, "npv": 0.897,
                       "tp": 7, "fn": 4, "fp": 4, "tn": 35}}     # optional
      ]
    }

Coding of :math:`x_i` from a column of the analysis table (:func:`mibgkit.cohort.analysis_table`):
``binary``: :math:`x = 1` where the column equals ``level``, else 0; ``continuous``:
:math:`x = \text{scale} \cdot \text{column}` (e.g. ``scale`` 0.1 for an HR per cm of a column in
mm). A missing value gives a missing :math:`x`, and a missing prognostic index.

Prognostic index (linear predictor): :math:`\mathrm{PI} = \sum_i \ln(\mathrm{HR}_i)\, x_i`, not
centred. Cutoff groups: ``high`` where the cutoff's column satisfies ``column >= cutoff`` (rule
``">="``, the paper's) or ``column > cutoff`` (``">"``), else ``low``.

Errors (:class:`FrozenModelError`) name the file and the field that is wrong (``terms[1].hr``).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from .errors import InputError

__all__ = ["SCHEMA", "DEFAULT_MODEL", "FrozenModel", "Term", "Cutoff", "FrozenModelError", "load_model"]

#: Schema tag a model file must carry.
SCHEMA = "mibgkit-frozen-model/1"

#: The packaged model: Zhou et al. 2025, Table 2 (multivariate) and Table 3.
DEFAULT_MODEL = Path(__file__).resolve().parent / "data" / "zhou2025_model.json"

_RULES = (">=", ">")
_PUBLISHED_RATES = ("sensitivity", "specificity", "ppv", "npv")
_PUBLISHED_COUNTS = ("tp", "fn", "fp", "tn")


class FrozenModelError(InputError):
    """A frozen-model file that cannot be used: not JSON, wrong schema, a field missing or invalid."""


@dataclass(frozen=True)
class Term:
    """One term :math:`\\ln(\\mathrm{HR}) \\cdot x` of the prognostic index."""

    variable: str
    hr: float
    coding: str            # "binary" or "continuous"
    column: str            # analysis-table column x is computed from
    level: str | None = None   # binary: the level coded 1
    scale: float = 1.0         # continuous: x = scale * column
    label: str = ""
    ci_lower: float | None = None
    ci_upper: float | None = None
    p: float | None = None
    x: str = ""            # the coding in words

    @property
    def coefficient(self) -> float:
        """:math:`\\ln(\\mathrm{HR})`."""
        return math.log(self.hr)

    def describe(self) -> str:
        """The coding of x in words (the file's ``x``, or one made from the coding)."""
        if self.x:
            return self.x
        if self.coding == "binary":
            return f"1 = {self.column} is {self.level!r}, 0 = otherwise"
        return f"{self.column}" + ("" if self.scale == 1.0 else f" × {self.scale:g}") + "; HR per 1 unit"


@dataclass(frozen=True)
class Cutoff:
    """A published cutoff: ``column >= cutoff`` (or ``>``) is high."""

    variable: str
    cutoff: float
    rule: str = ">="
    label: str = ""
    published: Mapping[str, float] = field(default_factory=dict)

    def high(self, values) -> np.ndarray:
        """Boolean high/low of ``values`` (NaN is low; mask it with :func:`numpy.isnan`)."""
        x = np.asarray(values, dtype=float)
        with np.errstate(invalid="ignore"):
            return x >= self.cutoff if self.rule == ">=" else x > self.cutoff


@dataclass(frozen=True)
class FrozenModel:
    """A published Cox model with its cutoffs, applied as printed (never refitted).

    Examples
    --------
    >>> import pandas as pd
    >>> m = load_model()
    >>> [t.variable for t in m.terms]
    ['bone_marrow_metastasis', 'tmax_lmax', 'asphericity']
    >>> t = pd.DataFrame({"bone_marrow_metastasis": ["yes", "no"], "tmax_lmax": [7.0, 3.0],
    ...                   "asphericity": [0.5, 0.2]}, index=["P1", "P2"])
    >>> m.predict(t).round(3).tolist()  # ln 4.419 + 7 ln 1.252 + 0.5 ln 26.755; 3 ln 1.252 + 0.2 ln 26.755
    [4.702, 1.332]
    >>> m.classify(t).to_dict("list")
    {'tmax_lmax': ['high', 'low'], 'asphericity': ['high', 'low']}
    """

    name: str
    terms: tuple[Term, ...]
    cutoffs: tuple[Cutoff, ...] = ()
    citation: str = ""
    path: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    # -- construction ----------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Mapping, *, path: str | os.PathLike | None = None) -> "FrozenModel":
        """Validate a parsed model file (``path`` only names it in errors)."""
        where = "" if path is None else os.fspath(path)
        return _parse(data, where)

    # -- the model's parts ----------------------------------------------------------------------

    @property
    def variables(self) -> list[str]:
        return [t.variable for t in self.terms]

    @property
    def columns(self) -> list[str]:
        """Analysis-table columns the prognostic index and the cutoffs read."""
        cols = [t.column for t in self.terms] + [c.variable for c in self.cutoffs]
        return list(dict.fromkeys(cols))

    def coefficients(self) -> pd.Series:
        """:math:`\\ln(\\mathrm{HR}_i)` indexed by variable."""
        return pd.Series({t.variable: t.coefficient for t in self.terms}, name="coefficient")

    def cutoff(self, variable: str) -> Cutoff:
        for c in self.cutoffs:
            if c.variable == variable:
                return c
        raise KeyError(f"model {self.name!r} has no cutoff for {variable!r}")

    def terms_table(self) -> pd.DataFrame:
        """One row per term: label, HR (CI), ln HR and the coding of x, for a report."""
        return pd.DataFrame([{
            "variable": t.variable, "label": t.label or t.variable, "hr": t.hr, "ci_lower": t.ci_lower,
            "ci_upper": t.ci_upper, "p": t.p, "ln_hr": t.coefficient, "x": t.describe()} for t in self.terms])

    # -- applying it -----------------------------------------------------------------------------

    def design(self, table: pd.DataFrame) -> pd.DataFrame:
        """The coded :math:`x_i` of each patient (one column per term; NaN where the source is missing).

        Raises :class:`FrozenModelError` when ``table`` lacks a column a term reads.
        """
        out = {}
        for t in self.terms:
            if t.column not in table:
                raise FrozenModelError(
                    f"model {self.name!r}: term {t.variable!r} reads column {t.column!r}, which the cohort "
                    f"table does not have (columns: {', '.join(map(str, table.columns[:30]))})", path=self.path or None)
            src = table[t.column]
            if t.coding == "binary":
                known = src.notna()
                x = (src.astype(object) == t.level).astype(float)
                out[t.variable] = x.where(known)
            else:
                out[t.variable] = pd.to_numeric(src, errors="coerce").astype(float) * t.scale
        return pd.DataFrame(out, index=table.index)

    def predict(self, table: pd.DataFrame) -> pd.Series:
        """Prognostic index :math:`\\sum_i \\ln(\\mathrm{HR}_i) x_i` per patient (NaN if any x is missing)."""
        x = self.design(table)
        pi = x.to_numpy(float) @ self.coefficients().reindex(x.columns).to_numpy(float)
        return pd.Series(pi, index=table.index, name="pi")

    def classify(self, table: pd.DataFrame) -> pd.DataFrame:
        """``"high"`` / ``"low"`` per published cutoff (one column per cutoff; None where missing)."""
        out = {}
        for c in self.cutoffs:
            if c.variable not in table:
                raise FrozenModelError(f"model {self.name!r}: cutoff on {c.variable!r}, which the cohort table "
                                       "does not have", path=self.path or None)
            v = pd.to_numeric(table[c.variable], errors="coerce").to_numpy(float)
            lab = np.where(c.high(v), "high", "low").astype(object)
            lab[np.isnan(v)] = None
            out[c.variable] = lab
        return pd.DataFrame(out, index=table.index)


def load_model(path: str | os.PathLike | None = None) -> FrozenModel:
    """Read and validate a frozen-model JSON file (default: the packaged Zhou 2025 model).

    Raises
    ------
    FrozenModelError
        The file is missing, is not JSON, or a field is missing or invalid (the message names
        the file and the field).
    """
    p = DEFAULT_MODEL if path is None else Path(path)
    name = p.name if path is None else os.fspath(path)
    if not p.is_file():
        raise FrozenModelError("model file not found", path=name)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise FrozenModelError(f"not a text file ({exc.reason})", path=name) from None
    except json.JSONDecodeError as exc:
        raise FrozenModelError(f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}",
                               path=name) from None
    return _parse(data, name)


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------


def _fail(where: str, fld: str, problem: str):
    raise FrozenModelError(f"field {fld!r}: {problem}", path=where or None)


def _number(value, where: str, fld: str, *, positive: bool = False, optional: bool = False):
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        _fail(where, fld, f"must be a number, got {value!r}" if value is not None else "is missing")
    v = float(value)
    if not math.isfinite(v):
        _fail(where, fld, f"must be finite, got {value!r}")
    if positive and v <= 0:
        _fail(where, fld, f"must be > 0, got {value!r}")
    return v


def _text(value, where: str, fld: str, *, optional: bool = False) -> str:
    if value is None and optional:
        return ""
    if not isinstance(value, str) or not value.strip():
        _fail(where, fld, "is missing" if value is None else f"must be a non-empty string, got {value!r}")
    return value


def _parse(data, where: str) -> FrozenModel:
    if not isinstance(data, Mapping):
        _fail(where, "(top level)", f"must be a JSON object, got {type(data).__name__}")
    schema = data.get("schema")
    if schema != SCHEMA:
        _fail(where, "schema", f"must be {SCHEMA!r}, got {schema!r}")
    name = _text(data.get("name"), where, "name")
    raw_terms = data.get("terms")
    if not isinstance(raw_terms, list) or not raw_terms:
        _fail(where, "terms", "must be a non-empty list of terms")
    terms = []
    for i, t in enumerate(raw_terms):
        f = f"terms[{i}]"
        if not isinstance(t, Mapping):
            _fail(where, f, "must be an object")
        var = _text(t.get("variable"), where, f"{f}.variable")
        hr = _number(t.get("hr"), where, f"{f}.hr", positive=True)
        coding = t.get("coding")
        if not isinstance(coding, Mapping):
            _fail(where, f"{f}.coding", "is missing" if coding is None else "must be an object")
        kind = coding.get("type")
        if kind not in ("binary", "continuous"):
            _fail(where, f"{f}.coding.type", f"must be 'binary' or 'continuous', got {kind!r}")
        column = _text(coding.get("column"), where, f"{f}.coding.column")
        level, scale = None, 1.0
        if kind == "binary":
            lv = coding.get("level")
            if isinstance(lv, bool) or not isinstance(lv, (str, int, float)):
                _fail(where, f"{f}.coding.level", "is missing (the level coded 1)" if lv is None
                      else f"must be a string or number, got {lv!r}")
            level = lv
        else:
            scale = _number(coding.get("scale", 1.0), where, f"{f}.coding.scale")
            if scale == 0:
                _fail(where, f"{f}.coding.scale", "must not be 0")
        lo = _number(t.get("ci_lower"), where, f"{f}.ci_lower", positive=True, optional=True)
        hi = _number(t.get("ci_upper"), where, f"{f}.ci_upper", positive=True, optional=True)
        if lo is not None and hi is not None and not lo <= hr <= hi:
            _fail(where, f"{f}.hr", f"{hr:g} lies outside its own CI {lo:g}–{hi:g}")
        p = _number(t.get("p"), where, f"{f}.p", optional=True)
        if p is not None and not 0 <= p <= 1:
            _fail(where, f"{f}.p", f"must lie in [0, 1], got {p!r}")
        terms.append(Term(var, hr, kind, column, level, scale, _text(t.get("label"), where, f"{f}.label", optional=True),
                          lo, hi, p, _text(t.get("x"), where, f"{f}.x", optional=True)))
    names = [t.variable for t in terms]
    dup = sorted({v for v in names if names.count(v) > 1})
    if dup:
        _fail(where, "terms", f"variables must be unique; repeated: {', '.join(dup)}")
    raw_cuts = data.get("cutoffs", [])
    if not isinstance(raw_cuts, list):
        _fail(where, "cutoffs", "must be a list")
    cutoffs = []
    for i, c in enumerate(raw_cuts):
        f = f"cutoffs[{i}]"
        if not isinstance(c, Mapping):
            _fail(where, f, "must be an object")
        var = _text(c.get("variable"), where, f"{f}.variable")
        cut = _number(c.get("cutoff"), where, f"{f}.cutoff")
        rule = c.get("rule", ">=")
        if rule not in _RULES:
            _fail(where, f"{f}.rule", f"must be one of {', '.join(_RULES)}, got {rule!r}")
        pub = c.get("published", {})
        if not isinstance(pub, Mapping):
            _fail(where, f"{f}.published", "must be an object")
        published = {}
        for k, v in pub.items():
            if k in _PUBLISHED_RATES:
                published[k] = _number(v, where, f"{f}.published.{k}")
                if not 0 <= published[k] <= 1:
                    _fail(where, f"{f}.published.{k}", f"is a proportion in [0, 1], got {v!r}")
            elif k in _PUBLISHED_COUNTS:
                if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                    _fail(where, f"{f}.published.{k}", f"must be a count (integer ≥ 0), got {v!r}")
                published[k] = int(v)
            else:
                _fail(where, f"{f}.published.{k}",
                      f"unknown; allowed: {', '.join(_PUBLISHED_RATES + _PUBLISHED_COUNTS)}")
        cutoffs.append(Cutoff(var, cut, rule, _text(c.get("label"), where, f"{f}.label", optional=True), published))
    cnames = [c.variable for c in cutoffs]
    dup = sorted({v for v in cnames if cnames.count(v) > 1})
    if dup:
        _fail(where, "cutoffs", f"one cutoff per variable; repeated: {', '.join(dup)}")
    return FrozenModel(name, tuple(terms), tuple(cutoffs), _text(data.get("citation"), where, "citation", optional=True),
                       where, dict(data))

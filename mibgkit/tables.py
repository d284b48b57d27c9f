"""Tables for reports: numbers formatted as the paper prints them, and this run beside the paper.

Formatting follows SPSS as the paper shows it: HR with three decimals, "(lower–upper)", p with
three decimals without the leading zero and "< .001" below that.
"""

from __future__ import annotations

import html
import math
from typing import Mapping

import numpy as np
import pandas as pd


#: What a table cell says where this run could not estimate the number (the reason is listed below it).
NOT_ESTIMABLE = "not estimable"


def fmt_p(p: float) -> str:
    """SPSS-style p: ``.084``, ``< .001``; empty for NaN.

    >>> fmt_p(0.0842), fmt_p(0.0004), fmt_p(1.0)
    ('.084', '< .001', '1.000')
    """
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return ""
    if p < 0.001:
        return "< .001"
    s = f"{p:.3f}"
    return s[1:] if s.startswith("0") else s


def fmt_hr(hr: float, lo: float, hi: float, digits: int = 3) -> str:
    """``1.442 (1.102–1.886)``."""
    if any(v is None or not np.isfinite(v) for v in (hr, lo, hi)):
        return ""
    return f"{hr:.{digits}f} ({lo:.{digits}f}–{hi:.{digits}f})"


def fmt_pct(x: float, digits: int = 1) -> str:
    return "" if x is None or not np.isfinite(x) else f"{100 * x:.{digits}f} %"


def cox_side_by_side(ours: pd.DataFrame, published: pd.DataFrame, labels: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Cox table of this run beside the paper's, one row per variable of ``published``.

    ``ours`` and ``published`` are indexed by variable with ``hr, ci_lower, ci_upper, p``.
    ``agrees`` is True when both are significant at 0.05 with HR on the same side of 1, or both
    are not significant. Variables of ``ours`` that the paper does not list follow, marked
    "not in model" (they disagree by construction). A variable of ``ours`` whose HR or p is NaN
    was not estimable in this run: its cell says so and ``agrees`` is None (no comparison).
    """
    rows = []
    for var, pub in published.iterrows():
        mine = ours.loc[var] if var in ours.index else None
        estimable = mine is not None and bool(np.isfinite([mine.hr, mine.p]).all())
        sig_pub = pub.p <= 0.05 if not pub.get("p_is_upper_bound", False) else True
        row = {
            "variable": (labels or {}).get(var, pub.get("label", var)),
            "HR (95 % CI), this run": ("" if mine is None else
                                       fmt_hr(mine.hr, mine.ci_lower, mine.ci_upper) if estimable else NOT_ESTIMABLE),
            "p, this run": fmt_p(mine.p) if estimable else "",
            "HR (95 % CI), paper": fmt_hr(pub.hr, pub.ci_lower, pub.ci_upper),
            "p, paper": ("< .001" if pub.get("p_is_upper_bound", False) else fmt_p(pub.p)),
        }
        if mine is None:
            row["agrees"] = False
        elif not estimable:
            row["agrees"] = None
        else:
            sig = mine.p < 0.05
            row["agrees"] = bool(sig == sig_pub and (not sig or (mine.hr > 1) == (pub.hr > 1)))
        rows.append(row)
    for var in ours.index.difference(published.index, sort=False):  # in this run's model, not in the paper's
        mine = ours.loc[var]
        rows.append({"variable": (labels or {}).get(var, var),
                     "HR (95 % CI), this run": fmt_hr(mine.hr, mine.ci_lower, mine.ci_upper),
                     "p, this run": fmt_p(mine.p), "HR (95 % CI), paper": "not in model", "p, paper": "",
                     "agrees": False})
    return pd.DataFrame(rows).set_index("variable")


def highlight_disagreement(df: pd.DataFrame, column: str = "agrees"):
    """A pandas Styler that shades rows where ``column`` is False and shows it as ✓ / differs
    (None, nothing to compare: "—", unshaded)."""
    shown = df.copy()
    shown[column] = shown[column].map(lambda v: "—" if v is None or v is np.nan else ("✓" if v else "differs"))

    def shade(row):
        bad = row[column] == "differs"
        return ["background-color: #fde2d4" if bad else "" for _ in row]

    return _escaped(shown.style).apply(shade, axis=1)


def _escaped(styler):
    """Every cell and header of a Styler HTML-escaped (data strings are never markup)."""
    return styler.format(escape="html").format_index(escape="html", axis=0).format_index(escape="html", axis=1)


def compare_counts(ours: Mapping[str, float], published: Mapping[str, float]) -> pd.DataFrame:
    """Two columns (this run, paper) and ``equal`` for matching keys."""
    keys = list(published)
    out = pd.DataFrame({"this run": [ours.get(k, np.nan) for k in keys], "paper": [published[k] for k in keys]},
                       index=keys, dtype=object)
    out["equal"] = [bool(np.isclose(a, b)) if pd.notna(a) else False for a, b in zip(out["this run"], out["paper"])]
    return out


def table1_side_by_side(table1: pd.DataFrame, variables, counts: Mapping, continuous: Mapping,
                        flags: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Table 1 of this run (:func:`mibgkit.stats.describe`) with the paper's column beside it.

    ``counts`` maps column → {level: n} (level ``None`` = missing) and ``continuous`` maps column →
    {median, q1, q3, min, max, n} as printed (:mod:`mibgkit.paper`). ``equal``: the level's count, or
    for a continuous variable its non-missing n, equals the paper's; ``note`` carries the flag of a
    printed cell that the data cannot reproduce (e.g. a mean printed as a median).
    """
    column_of = {v.display: v.column for v in variables}
    rows = []
    for _, r in table1.iterrows():
        col = column_of[r.variable]
        level = None if r.level == "missing" else r.level
        if r.level == "":
            pub = continuous.get(col)
            if pub:
                iqr = f" ({pub['q1']:g}–{pub['q3']:g})" if "q1" in pub else ""
                paper_text = f"{pub['median']:g}{iqr}; range {pub['min']:g}–{pub['max']:g}"
                equal = int(pub["n"]) == int(r.n)
            else:
                paper_text, equal = "", None
        else:
            pub = counts.get(col, {})
            if level in pub:
                paper_text = f"{pub[level]}"
                equal = int(pub[level]) == int(r["count"])
            else:
                paper_text, equal = "", None
        rows.append({"variable": r.variable, "level": r.level, "n": int(r.n), "this run": r.summary,
                     "paper": paper_text, "equal": equal, "note": (flags or {}).get(col, "") if r.level == "" else ""})
    return pd.DataFrame(rows)


def style_side_by_side(df: pd.DataFrame, caption: str | None = None):
    """Styler for :func:`table1_side_by_side`: variable names once, differing cells shaded."""
    shown = df.copy()
    repeat = shown["variable"].eq(shown["variable"].shift())
    shown.loc[repeat, "variable"] = ""
    shown["n"] = shown["n"].astype(str)
    shown.loc[repeat, "n"] = ""
    shown["equal"] = shown["equal"].map({True: "✓", False: "differs", None: ""})

    def shade(row):
        colour = "background-color: #fde2d4" if row["equal"] == "differs" else (
            "background-color: #fff3cd" if row["note"] else "")
        return [colour] * len(row)

    styler = _escaped(shown.style).hide(axis="index").apply(shade, axis=1)
    return styler.set_caption(html.escape(caption)) if caption else styler

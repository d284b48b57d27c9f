"""Tables for reports: numbers formatted as the paper prints them, and this run beside the paper.

Formatting follows SPSS as the paper shows it: HR with three decimals, "(lower–upper)", p with
three decimals without the leading zero and "< .001" below that.
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np
import pandas as pd


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
    are not significant.
    """
    rows = []
    for var, pub in published.iterrows():
        mine = ours.loc[var] if var in ours.index else None
        sig_pub = pub.p <= 0.05 if not pub.get("p_is_upper_bound", False) else True
        row = {
            "variable": (labels or {}).get(var, pub.get("label", var)),
            "HR (95 % CI), this run": "" if mine is None else fmt_hr(mine.hr, mine.ci_lower, mine.ci_upper),
            "p, this run": "" if mine is None else fmt_p(mine.p),
            "HR (95 % CI), paper": fmt_hr(pub.hr, pub.ci_lower, pub.ci_upper),
            "p, paper": ("< .001" if pub.get("p_is_upper_bound", False) else fmt_p(pub.p)),
        }
        if mine is None:
            row["agrees"] = False
        else:
            sig = mine.p < 0.05
            row["agrees"] = bool(sig == sig_pub and (not sig or (mine.hr > 1) == (pub.hr > 1)))
        rows.append(row)
    return pd.DataFrame(rows).set_index("variable")


def highlight_disagreement(df: pd.DataFrame, column: str = "agrees"):
    """A pandas Styler that shades rows where ``column`` is False."""
    def shade(row):
        bad = not bool(row[column])
        return ["background-color: #fde2d4" if bad else "" for _ in row]

    return df.style.apply(shade, axis=1)


def compare_counts(ours: Mapping[str, float], published: Mapping[str, float]) -> pd.DataFrame:
    """Two columns (this run, paper) and ``equal`` for matching keys."""
    keys = list(published)
    out = pd.DataFrame({"this run": [ours.get(k, np.nan) for k in keys], "paper": [published[k] for k in keys]},
                       index=keys)
    out["equal"] = [bool(np.isclose(a, b)) if pd.notna(a) else False for a, b in zip(out["this run"], out["paper"])]
    return out

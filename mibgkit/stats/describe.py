"""Table 1: descriptive statistics of a clinical table in the paper's layout.

Continuous variables are summarised as median (IQR) and range with the number of patients
that are not missing; categorical variables as n (%) per level, with missing values shown as
their own row. Percentages use the total number of patients as denominator (the paper's
convention: "25 M / 25 F" of n = 50), so that a missing row completes the column to 100 %.

Quantiles default to SPSS's definition (``HAVERAGE``, the weighted average at
:math:`(n + 1)p`, Hyndman–Fan type 6, numpy ``method="weibull"``); pass
``quantile_method="linear"`` for R's default (type 7).

References
----------
.. [1] Hyndman RJ, Fan Y. Sample quantiles in statistical packages. *Am Stat*
   1996;50:361–365.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Literal, Mapping, Sequence

import numpy as np
import pandas as pd

from mibgkit.errors import StatisticsError

__all__ = ["Variable", "describe", "describe_styler"]

Kind = Literal["continuous", "categorical"]


@dataclass(frozen=True)
class Variable:
    """One Table 1 entry.

    Attributes
    ----------
    column : str
        Column of the clinical table.
    label : str, optional
        Text shown in the table (default: the column name).
    kind : {"continuous", "categorical"}
        How it is summarised.
    levels : sequence, optional
        Categorical levels in display order (default: sorted observed levels). Levels listed
        but not observed are shown with 0 (0.0 %).
    level_labels : mapping, optional
        Display text per level (e.g. ``{0: "no", 1: "yes"}``).
    digits : int
        Decimals of a continuous variable's summary.
    unit : str
        Appended to the label in parentheses (e.g. ``"months"``).
    """

    column: str
    label: str | None = None
    kind: Kind = "continuous"
    levels: Sequence | None = None
    level_labels: Mapping = field(default_factory=dict)
    digits: int = 1
    unit: str = ""

    @property
    def display(self) -> str:
        text = self.label or self.column
        return f"{text} ({self.unit})" if self.unit else text


TABLE1_COLUMNS = [
    "variable", "level", "n", "summary",
    "count", "percent", "median", "q1", "q3", "min", "max", "n_missing",
]


def _spec(variables) -> list[Variable]:
    if isinstance(variables, Mapping):
        return [Variable(col, kind=kind) for col, kind in variables.items()]
    out = []
    for v in variables:
        if isinstance(v, Variable):
            out.append(v)
        elif isinstance(v, Mapping):
            out.append(Variable(**v))
        elif isinstance(v, str):
            out.append(Variable(v))
        else:
            raise StatisticsError(f"cannot read variable spec {v!r}; use Variable(...), a dict or a column name")
    return out


def _fmt(x: float, digits: int) -> str:
    return f"{x:.{digits}f}"


def describe(
    df: pd.DataFrame,
    variables: Iterable[Variable] | Mapping[str, Kind],
    quantile_method: str = "weibull",
    percent_digits: int = 1,
) -> pd.DataFrame:
    r"""Build Table 1 from a clinical table and a variable spec.

    Parameters
    ----------
    df : pandas.DataFrame
        One row per patient.
    variables : iterable of Variable (or dicts with its fields, or column names), or mapping
        ``{column: "continuous" | "categorical"}``
        What to summarise, in display order.
    quantile_method : str
        numpy quantile method for the quartiles: ``"weibull"`` (SPSS, default) or ``"linear"`` (R).
    percent_digits : int
        Decimals of percentages.

    Returns
    -------
    pandas.DataFrame
        Columns ``variable, level, n, summary`` (display) and the numbers behind them
        ``count, percent, median, q1, q3, min, max, n_missing``. A continuous variable is one
        row (``level`` empty; ``summary`` = "median (q1–q3); range min–max"); a categorical one is
        a row per level plus ``level = "missing"`` when values are missing. ``n`` is the number
        of non-missing values of the variable.

    Notes
    -----
    Quartiles :math:`Q_p` for p = 0.25, 0.75 with the chosen definition; for SPSS's:
    :math:`Q_p = x_{(k)} + g\,(x_{(k+1)} - x_{(k)})`, :math:`k = \lfloor (n+1)p \rfloor`,
    :math:`g = (n+1)p - k`, clamped to the sample range.

    Examples
    --------
    >>> d = pd.DataFrame({"age": [1, 12, 37, 60, 102, None], "sex": ["M", "F", "M", "F", "M", None]})
    >>> t = describe(d, [Variable("age", unit="months"), Variable("sex", kind="categorical")])
    >>> t.loc[0, "summary"]
    '37.0 (6.5–81.0); range 1.0–102.0'
    >>> t[t.variable == "sex"][["level", "n", "summary"]].values.tolist()
    [['F', 5, '2 (33.3%)'], ['M', 5, '3 (50.0%)'], ['missing', 5, '1 (16.7%)']]
    """
    rows: list[dict] = []
    total = len(df)
    for var in _spec(variables):
        if var.column not in df.columns:
            raise StatisticsError(f"Table 1: column {var.column!r} is not in the table")
        col = df[var.column]
        n_missing = int(col.isna().sum())
        present = col.dropna()
        n = int(present.size)
        if var.kind == "continuous":
            try:
                x = present.astype(float).to_numpy()
            except (TypeError, ValueError):
                raise StatisticsError(
                    f"Table 1: {var.column!r} is declared continuous but is not numeric; declare it categorical"
                ) from None
            if n:
                q1, med, q3 = np.quantile(x, [0.25, 0.5, 0.75], method=quantile_method)
                lo, hi = float(x.min()), float(x.max())
                f = lambda v: _fmt(v, var.digits)  # noqa: E731
                text = f"{f(med)} ({f(q1)}–{f(q3)}); range {f(lo)}–{f(hi)}"
            else:
                q1 = med = q3 = lo = hi = float("nan")
                text = "—"
            rows.append({"variable": var.display, "level": "", "n": n, "summary": text, "count": np.nan,
                         "percent": np.nan, "median": float(med), "q1": float(q1), "q3": float(q3),
                         "min": lo, "max": hi, "n_missing": n_missing})
        elif var.kind == "categorical":
            counts = present.value_counts()
            if var.levels is not None:
                levels = list(var.levels)
                unknown = [lev for lev in counts.index if lev not in levels]
                if unknown:
                    raise StatisticsError(
                        f"Table 1: {var.column!r} has values {unknown[:5]} that are not among its levels {levels}"
                    )
            else:
                try:
                    levels = sorted(counts.index)
                except TypeError:
                    levels = list(counts.index)
            entries = [(var.level_labels.get(lev, str(lev)), int(counts.get(lev, 0))) for lev in levels]
            if n_missing:
                entries.append(("missing", n_missing))
            for level, k in entries:
                pct = 100.0 * k / total if total else float("nan")
                rows.append({"variable": var.display, "level": level, "n": n,
                             "summary": f"{k} ({pct:.{percent_digits}f}%)", "count": k, "percent": pct,
                             "median": np.nan, "q1": np.nan, "q3": np.nan, "min": np.nan, "max": np.nan,
                             "n_missing": n_missing})
        else:
            raise StatisticsError(f"Table 1: kind of {var.column!r} must be 'continuous' or 'categorical'")
    out = pd.DataFrame(rows, columns=TABLE1_COLUMNS)
    out["n"] = out["n"].astype(int)
    out["n_missing"] = out["n_missing"].astype(int)
    return out


def describe_styler(table: pd.DataFrame, caption: str | None = "Table 1. Patient characteristics",
                    flags: Mapping[tuple[str, str], str] | None = None):
    """Render a :func:`describe` table as a pandas ``Styler`` for HTML reports.

    Parameters
    ----------
    table : pandas.DataFrame
        Output of :func:`describe`.
    caption : str, optional
        Table caption.
    flags : mapping ``{(variable, level): note}``, optional
        Cells to highlight with a note (e.g. a published value that the data cannot give);
        the note becomes the cell's tooltip.

    Returns
    -------
    pandas.io.formats.style.Styler
    """
    shown = table[["variable", "level", "n", "summary"]].copy()
    # show each variable's name and n once
    repeat = shown["variable"].eq(shown["variable"].shift())
    shown.loc[repeat, ["variable"]] = ""
    shown["n"] = shown["n"].astype(str)
    shown.loc[repeat, "n"] = ""
    shown.columns = ["Variable", "Level", "n", "Value"]
    styler = shown.style.hide(axis="index")
    if caption:
        styler = styler.set_caption(caption)
    if flags:
        tips = pd.DataFrame("", index=shown.index, columns=shown.columns)
        colors = pd.DataFrame("", index=shown.index, columns=shown.columns)
        for (variable, level), note in flags.items():
            hit = (table["variable"] == variable) & (table["level"] == level)
            tips.loc[hit, "Value"] = note
            colors.loc[hit, "Value"] = "background-color: #fff3cd"
        styler = styler.set_tooltips(tips).apply(lambda _: colors, axis=None)
    return styler.set_table_styles([{"selector": "td, th", "props": "text-align: left; padding: 2px 8px;"}])

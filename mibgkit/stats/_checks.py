"""Input checks shared by the survival statistics (private).

:mod:`mibgkit.stats.cox`, :mod:`mibgkit.stats.kaplan_meier`, :mod:`mibgkit.stats.maxstat` and the
robustness modules (``validation``, ``assumptions``, ``splines``, ``timeroc``) validate survival
outcomes and covariate tables here, so that a bad input fails with the same
:class:`~mibgkit.errors.StatisticsError` message everywhere:

``_as_float``
    A one-dimensional float array, or an error naming the argument.
``_check_outcome``
    Survival times (finite, > 0) and event indicators (0/1) of equal length, no missing values.
``check_binary_scores``
    Scores and positive/negative classes of an ROC analysis (both classes present).
``_complete_cases``
    The numeric columns of a DataFrame restricted to complete rows, with a
    :class:`~mibgkit.errors.QCWarning` that counts the rows dropped.
``check_horizon``
    A time horizon in days (finite, > 0), or an error saying so.
``names_list``
    Up to 20 names for a message ("a, b, … (3 more)"), as the agreement statistics name what they drop.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
import pandas as pd

from mibgkit.errors import QCWarning, StatisticsError


def _as_float(values, what: str) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as exc:
        raise StatisticsError(f"{what} must be numeric ({exc})") from None
    if arr.ndim != 1:
        raise StatisticsError(f"{what} must be one-dimensional, got shape {arr.shape}")
    return arr


def _check_outcome(durations, events) -> tuple[np.ndarray, np.ndarray]:
    """Validate survival times (finite, > 0) and event indicators (0/1); return float arrays."""
    t = _as_float(durations, "durations")
    e = _as_float(events, "events")
    if t.shape != e.shape:
        raise StatisticsError(f"durations ({t.size}) and events ({e.size}) differ in length")
    if np.isnan(t).any() or np.isnan(e).any():
        raise StatisticsError(
            f"{int(np.isnan(t).sum())} missing durations and {int(np.isnan(e).sum())} missing "
            "event indicators; drop or fill them before the analysis"
        )
    if not np.isfinite(t).all() or (t <= 0).any():
        bad = np.flatnonzero(~np.isfinite(t) | (t <= 0))
        raise StatisticsError(
            f"survival times must be finite and > 0; {bad.size} are not "
            f"(first at position {int(bad[0])}: {t[bad[0]]!r})"
        )
    if not np.isin(e, (0.0, 1.0)).all():
        bad = np.unique(e[~np.isin(e, (0.0, 1.0))])
        raise StatisticsError(f"events must be coded 0 (censored) / 1 (event); found {bad[:5].tolist()}")
    if t.size == 0:
        raise StatisticsError("no observations")
    return t, e


def _complete_cases(df: pd.DataFrame, columns: Sequence[str], context: str) -> pd.DataFrame:
    missing_cols = [c for c in columns if c not in df.columns]
    if missing_cols:
        raise StatisticsError(f"{context}: columns not in the table: {missing_cols}")
    sub = df.loc[:, list(dict.fromkeys(columns))]
    for col in sub.columns:
        if sub[col].dtype == bool:
            sub[col] = sub[col].astype(float)
        elif not pd.api.types.is_numeric_dtype(sub[col]):
            raise StatisticsError(
                f"{context}: column {col!r} is not numeric (dtype {sub[col].dtype}); "
                "encode categories as 0/1 indicators or ordered integers first"
            )
    empty = [c for c in sub.columns if sub[c].isna().all()]
    if empty:
        raise StatisticsError(f"{context}: {', '.join(repr(c) for c in empty)} has no value for any patient")
    keep = sub.notna().all(axis=1)
    dropped = int((~keep).sum())
    if dropped:
        warnings.warn(
            f"{context}: {dropped} of {len(sub)} rows dropped for missing values "
            f"(complete-case analysis on {list(sub.columns)})",
            QCWarning,
            stacklevel=3,
        )
    return sub.loc[keep].astype(float)


def check_binary_scores(score, positive, *, both_classes: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Scores (finite floats) and classes (bool) of an ROC analysis; pairs with a missing score or
    class are dropped with a QC warning that counts them. ``both_classes``: both must be present."""
    s = np.asarray(score, dtype=float)
    y = pd.Series(np.asarray(positive, dtype=object).ravel())
    if s.ndim != 1 or s.size != len(y):
        raise StatisticsError(f"score ({s.size}) and positive ({len(y)}) must be 1-D of equal length")
    missing = np.isnan(s) | y.isna().to_numpy()
    if missing.any():
        warnings.warn(f"ROC: {int(missing.sum())} of {s.size} cases dropped for a missing score or outcome",
                      QCWarning, stacklevel=3)
        s, y = s[~missing], y[~missing]
    if not np.isfinite(s).all():
        raise StatisticsError("ROC: scores must be finite")
    vals = set(pd.unique(y))
    if not vals <= {0, 1, True, False}:
        raise StatisticsError(f"ROC: positive must be 0/1 or boolean, found {sorted(map(str, vals))[:5]}")
    yb = y.astype(float).to_numpy() == 1.0
    if both_classes and (yb.all() or not yb.any()):
        raise StatisticsError(f"ROC needs both positive and negative cases ({int(yb.sum())} of {yb.size} positive)")
    return s, yb


def names_list(values, limit: int = 20) -> str:
    """``values`` as a comma-separated list of at most ``limit`` names, and how many more."""
    values = [str(v) for v in values]
    shown = ", ".join(values[:limit])
    return shown + (f", … ({len(values) - limit} more)" if len(values) > limit else "")


def check_horizon(horizon) -> float:
    """A prediction horizon as a float number of days (finite, > 0)."""
    try:
        h = float(horizon)
    except (TypeError, ValueError):
        raise StatisticsError(f"horizon must be a time in days, got {horizon!r}") from None
    if not np.isfinite(h) or h <= 0:
        raise StatisticsError(f"horizon must be a finite time > 0 (days), got {horizon!r}")
    return h

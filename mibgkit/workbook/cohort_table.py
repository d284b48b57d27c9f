"""Notebook 02: Table 1 (patient characteristics) and the outcome, beside the paper's.

Follow-up is summarised over the patients without an event (the paper's convention), in months of
:data:`mibgkit.stats.timeroc.DAYS_PER_MONTH` days (a twelfth of a Julian year).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import paper, tables
from ..stats import describe
from ..stats.timeroc import DAYS_PER_MONTH
from ..variables import age_group, table1_variables
from . import Missing

__all__ = ["table1", "outcome", "follow_up_months"]


def table1(table: pd.DataFrame) -> pd.DataFrame:
    """Table 1 of the analysis table beside the paper's (:func:`mibgkit.tables.table1_side_by_side`)."""
    t = table.copy()
    t["age_group"] = age_group(t["age_months"])
    spec = table1_variables()
    return tables.table1_side_by_side(describe(t, spec), spec, paper.TABLE1_COUNTS, paper.TABLE1_CONTINUOUS,
                                      paper.PAPER_FLAGS)


def follow_up_months(table: pd.DataFrame) -> pd.Series:
    """EFS times in months (``efs_days`` / :data:`DAYS_PER_MONTH`)."""
    return table["efs_days"] / DAYS_PER_MONTH


def outcome(table: pd.DataFrame, missing: Missing | None = None) -> pd.DataFrame:
    """Patients, events by type and follow-up (median over the censored; range over all), beside
    the paper's (:func:`mibgkit.tables.compare_counts`)."""
    missing = Missing() if missing is None else missing
    months = follow_up_months(table)
    censored = months[table.efs_event == 0]
    if censored.empty:
        missing.add("median follow-up", "every patient had an event, so no follow-up is censored")
    median = round(float(censored.median()), 1) if not censored.empty else np.nan
    ours = {"patients": len(table), "events": int(table.efs_event.sum()),
            **{f"event: {k}": int((table.get("event_type") == k).sum()) for k in paper.EVENT_TYPES},
            "follow-up median (months)": median,
            "follow-up min (months)": round(float(months.min()), 1),
            "follow-up max (months)": round(float(months.max()), 1)}
    pub = {"patients": paper.N_PATIENTS, "events": paper.N_EVENTS,
           **{f"event: {k}": v for k, v in paper.EVENT_TYPES.items()},
           "follow-up median (months)": paper.FOLLOW_UP_MONTHS["median"],
           "follow-up min (months)": paper.FOLLOW_UP_MONTHS["min"],
           "follow-up max (months)": paper.FOLLOW_UP_MONTHS["max"]}
    return tables.compare_counts(ours, pub)

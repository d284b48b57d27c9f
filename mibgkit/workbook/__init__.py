"""The workbook's analyses, one module per notebook: the tables and numbers each report shows.

Notebooks hold the narrative and the figures; what they compute lives here, where it is tested.
Every function takes the analysis cohort's tables (:class:`mibgkit.cohort.Cohort`) and plain
parameters and returns DataFrames and mappings. A number the cohort cannot give (too few
patients, no events, nobody above a cutoff, separation) is not an exception: it comes back as a
:class:`NotEstimable` with its reason, and the table shows "not estimable: <reason>" in its place.
A real failure (a bug, an unreadable file) still raises.

Modules: :mod:`.data_qc` (00), :mod:`.feature_extraction` (01), :mod:`.cohort_table` (02),
:mod:`.cox_regression` (03), :mod:`.roc_cutoffs` (04), :mod:`.kaplan_meier` (05),
:mod:`.robustness` (06).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

from ..errors import StatisticsError

__all__ = ["NotEstimable", "Missing", "estimable"]


@dataclass(frozen=True)
class NotEstimable:
    """A number this cohort cannot give, and why (as R shows NA with a warning)."""

    what: str
    reason: str

    def cell(self) -> str:
        """The text a table shows in the number's place."""
        return f"not estimable: {self.reason}"


class Missing(list):
    """The :class:`NotEstimable` items of one analysis, in the order they arose."""

    def add(self, what: str, reason: str) -> NotEstimable:
        item = NotEstimable(what, str(reason))
        if item not in self:
            self.append(item)
        return item


@contextmanager
def estimable(missing: Missing, what: str):
    """Run a block; a :class:`~mibgkit.errors.StatisticsError` in it is recorded as not estimable.

    Anything else (a bug, an unreadable file) propagates. Use ``with estimable(missing, "AUC of
    ASP") as ok:`` and test ``ok`` afterwards (``ok.value`` is False when it failed).
    """
    flag = _Flag()
    try:
        yield flag
    except StatisticsError as exc:
        flag.value = False
        flag.reason = exc.reason
        missing.add(what, exc.reason)


class _Flag:
    def __init__(self):
        self.value = True
        self.reason = ""

    def __bool__(self) -> bool:
        return self.value

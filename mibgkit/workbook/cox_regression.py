"""Notebook 03: Table 2, univariate Cox models and the SPSS forward stepwise model.

Each variable of :data:`mibgkit.variables.TABLE2_VARIABLES` present in the cohort is fitted alone
(a variable that cannot be fitted — constant, separated, no values, no events — gets a row of NaN
and a not-estimable note); the candidates with univariate p ≤ ``screen_p`` enter the stepwise
selection (:func:`mibgkit.stats.cox_forward_stepwise`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import pandas as pd

from .. import paper, tables
from ..stats import StepwiseResult, cox_forward_stepwise, cox_univariate
from ..stats._coxcore import COX_COLUMNS
from ..stats.stepwise import univariate_screen
from ..variables import LABELS, TABLE2_VARIABLES
from . import Missing, estimable

__all__ = ["Table2", "table2", "covariate_names"]


def covariate_names(covariates: pd.DataFrame) -> list[str]:
    """Table 2's variables that the cohort has, in the paper's order."""
    return [v.name for v in TABLE2_VARIABLES if v.name in covariates]


@dataclass
class Table2:
    """Univariate table, its side-by-side with the paper, the candidates and the stepwise model."""

    univariate: pd.DataFrame
    side_by_side: pd.DataFrame
    candidates: list[str]
    stepwise: StepwiseResult | None
    model_warnings: list[str] = field(default_factory=list)
    missing: Missing = field(default_factory=Missing)

    def multivariate_side_by_side(self) -> pd.DataFrame | None:
        """The final model beside the paper's multivariate HRs (None without a model)."""
        if self.stepwise is None or not self.stepwise.selected:
            return None
        return tables.cox_side_by_side(self.stepwise.table, paper.TABLE2_MULTIVARIATE, LABELS)


def table2(covariates: pd.DataFrame, *, ties: str = "efron", screen_p: float = 0.05) -> Table2:
    """Univariate and stepwise Cox models of EFS on the cohort's Cox covariates.

    Parameters
    ----------
    covariates : DataFrame
        :func:`mibgkit.variables.covariates` of the analysis table (``efs_days``, ``efs_event``,
        one numeric column per variable).
    ties : {"efron", "breslow"}
    screen_p : float
        Univariate p at or below which a variable is a stepwise candidate (the paper: 0.05).
    """
    missing = Missing()
    names = covariate_names(covariates)
    rows, caught_all = [], []
    for name in names:  # one model per variable: a variable with no usable values is its own row
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with estimable(missing, f"univariate HR of {LABELS[name]}") as ok:
                rows.append(cox_univariate(covariates, "efs_days", "efs_event", [name], ties=ties, errors="warn"))
            if not ok:
                rows.append(_empty_row(name, covariates))
        caught_all += caught
    uni = pd.concat(rows) if rows else pd.DataFrame(columns=COX_COLUMNS, index=pd.Index([], name="covariate"))
    uni[["n", "events"]] = uni[["n", "events"]].astype(int)
    uni.index.name = "covariate"
    messages = sorted({str(w.message) for w in caught_all})
    for m in messages:
        if "not estimable:" in m:
            what, _, reason = m.partition(" not estimable: ")
            missing.add(what.replace("Cox model for", "univariate HR of"), reason)
    problems = [m for m in messages if "events per variable" not in m and "not estimable" not in m]
    if len(problems) < len(messages) and any("events per variable" in m for m in messages):
        problems.append(f"{int(covariates.efs_event.sum())} events: fewer than 10 events per variable, "
                        "so every estimate is unstable")
    side = tables.cox_side_by_side(uni, paper.TABLE2_UNIVARIATE, LABELS)
    side.insert(0, "unit", [next(v.unit for v in TABLE2_VARIABLES if v.name == k)
                            for k in paper.TABLE2_UNIVARIATE.index])
    candidates = univariate_screen({n: uni.at[n, "p"] for n in names if n in uni.index}, screen_p)
    step = None
    if not candidates:
        missing.add("stepwise model", f"no variable has univariate p ≤ {screen_p:g}")
    else:
        with estimable(missing, "stepwise model"):
            step = cox_forward_stepwise(covariates, "efs_days", "efs_event", candidates, ties=ties)
        if step is not None and not step.selected:
            missing.add("stepwise model", "no candidate entered (score-test p ≥ 0.05); candidates: "
                        + ", ".join(LABELS[c] for c in candidates))
    return Table2(uni, side, candidates, step, problems, missing)


def _empty_row(name: str, covariates: pd.DataFrame) -> pd.DataFrame:
    row = pd.DataFrame({c: [float("nan")] for c in COX_COLUMNS}, index=pd.Index([name], name="covariate"))
    ok = covariates[["efs_days", "efs_event", name]].notna().all(axis=1) if name in covariates else []
    return row.assign(n=int(sum(ok)), events=int(covariates.loc[ok, "efs_event"].sum()) if len(ok) else 0)

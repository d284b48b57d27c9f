"""Statistics of the paper (SPEC §3): Table 1, Cox regression, ROC cutoffs, Kaplan–Meier.

The public names are fixed by the SPEC; the modules hold one idea each:

- :mod:`mibgkit.stats.describe` — Table 1 (medians (IQR), ranges, n (%)).
- :mod:`mibgkit.stats.survival` — univariate and forward-stepwise Cox, Kaplan–Meier with the
  SPSS mean survival, log-rank, maximally selected log-rank cutpoints.
- :mod:`mibgkit.stats.roc` — Youden cutoffs with exact CIs and the DeLong AUC interval.

Every function takes DataFrames or arrays and returns DataFrames or plain mappings; results
agree with R (``survival``, ``pROC``, ``maxstat``) — see ``tests/reference/make_golden.R``.
"""

from mibgkit.stats.describe import Variable, describe, describe_styler
from mibgkit.stats.roc import auc_delong, clopper_pearson, confusion_at, roc_curve, roc_cutoff
from mibgkit.stats.survival import (
    KaplanMeierResult,
    StepwiseResult,
    cox_forward_stepwise,
    cox_univariate,
    kaplan_meier,
    km_mean,
    km_table,
    logrank,
    maxstat_cutoff,
)

__all__ = [
    "cox_univariate",
    "cox_forward_stepwise",
    "StepwiseResult",
    "roc_cutoff",
    "roc_curve",
    "confusion_at",
    "auc_delong",
    "clopper_pearson",
    "km_mean",
    "km_table",
    "kaplan_meier",
    "KaplanMeierResult",
    "logrank",
    "maxstat_cutoff",
    "describe",
    "describe_styler",
    "Variable",
]

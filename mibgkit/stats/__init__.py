"""Statistics of the paper: Table 1, Cox regression, ROC cutoffs, Kaplan–Meier, and beyond.

The public names are a stable interface the notebooks use; the modules hold one idea each:

- :mod:`mibgkit.stats.describe` — Table 1 (medians (IQR), ranges, n (%)).
- :mod:`mibgkit.stats.cox` — univariate and SPSS forward-stepwise Cox regression.
- :mod:`mibgkit.stats.kaplan_meier` — Kaplan–Meier curves with the SPSS mean survival, log-rank.
- :mod:`mibgkit.stats.maxstat` — maximally selected log-rank cutpoints.
- :mod:`mibgkit.stats.roc` — Youden cutoffs with exact CIs and the DeLong AUC interval.
- :mod:`mibgkit.stats.validation` — bootstrap optimism of the selected Cox model (Harrell),
  bootstrap distribution of the Youden cutoff.
- :mod:`mibgkit.stats.assumptions` — proportional-hazards test (``cox.zph``), events per
  variable, separation, Firth-penalised Cox.
- :mod:`mibgkit.stats.timeroc` — cumulative/dynamic time-dependent AUC with IPCW.
- :mod:`mibgkit.stats.splines` — restricted cubic splines in Cox models, HR per IQR.
- :mod:`mibgkit.stats.concordance` — Harrell's and Uno's C with the infinitesimal-jackknife SE,
  ΔC with a bootstrap CI (external validation of a frozen score).
- :mod:`mibgkit.stats.calibration` — calibration slope of a frozen linear predictor, calibration
  at a horizon, likelihood-ratio test of nested Cox models.
- :mod:`mibgkit.stats.decision` — decision-curve net benefit with Kaplan–Meier risks.
- :mod:`mibgkit.stats.icc` — ICC (Shrout & Fleiss) as psych::ICC, Koo & Li grades;
  :mod:`mibgkit.stats.agreement` — reader agreement:
  Bland–Altman limits, Cohen's and Fleiss' kappa (R ``psych``, ``irr``; see
  ``tests/reference/make_golden_agreement.R``).

Every function takes DataFrames or arrays and returns DataFrames or plain mappings; results
agree with R (``survival``, ``pROC``, ``maxstat``; ``rms``, ``Hmisc``, ``coxphf``,
``riskRegression`` for the robustness functions) — see ``tests/reference/make_golden.R`` and
``tests/reference/make_golden_robustness.R`` and ``make_golden_validation.R``.
"""

from mibgkit.stats.agreement import (
    bland_altman,
    cohen_kappa,
    fleiss_kappa,
)
from mibgkit.stats.icc import icc, koo_li
from mibgkit.stats.assumptions import (
    events_per_variable,
    firth_cox,
    ph_test,
    separation,
)
from mibgkit.stats.calibration import (
    calibration_at_horizon,
    calibration_slope,
    lr_test_nested,
)
from mibgkit.stats.concordance import concordance, delta_concordance
from mibgkit.stats.cox import StepwiseResult, cox_forward_stepwise, cox_univariate
from mibgkit.stats.decision import net_benefit
from mibgkit.stats.describe import Variable, describe, describe_styler
from mibgkit.stats.kaplan_meier import (
    KaplanMeierResult,
    kaplan_meier,
    km_mean,
    km_table,
    logrank,
)
from mibgkit.stats.maxstat import maxstat_cutoff
from mibgkit.stats.roc import (
    auc_delong,
    clopper_pearson,
    confusion_at,
    roc_curve,
    roc_cutoff,
)
from mibgkit.stats.splines import cox_spline, hr_per_iqr, rcs_basis, rcs_knots
from mibgkit.stats.timeroc import time_dependent_auc
from mibgkit.stats.validation import (
    OptimismResult,
    bootstrap_cutoff,
    bootstrap_optimism,
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
    "bootstrap_optimism",
    "OptimismResult",
    "bootstrap_cutoff",
    "ph_test",
    "events_per_variable",
    "separation",
    "firth_cox",
    "time_dependent_auc",
    "rcs_knots",
    "rcs_basis",
    "cox_spline",
    "hr_per_iqr",
    "concordance",
    "delta_concordance",
    "calibration_slope",
    "calibration_at_horizon",
    "lr_test_nested",
    "net_benefit",
    "icc",
    "koo_li",
    "bland_altman",
    "cohen_kappa",
    "fleiss_kappa",
]

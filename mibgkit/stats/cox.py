"""Cox proportional-hazards regression as the paper used it: univariate and SPSS forward stepwise.

Everything here takes a DataFrame and returns DataFrames or a result object that a notebook
prints directly. The numbers agree with R's ``survival::coxph`` and therefore with SPSS 27
``COXREG`` where the two agree (SPSS uses Breslow ties: pass ``ties="breslow"``). Fitting is
Newton–Raphson through ``statsmodels`` ``PHReg``, with clear errors for a constant covariate,
separation (monotone likelihood), collinearity and non-convergence.

Functions
---------
cox_univariate
    One Cox model per covariate: HR, 95 % Wald CI, Wald/LR/score p, n, events, C-index.
cox_forward_stepwise
    SPSS ``Forward: LR`` selection with a step log (:class:`StepwiseResult`).

The fitter is :mod:`mibgkit.stats._coxcore` (shared with the robustness modules) and the selection
loop :mod:`mibgkit.stats.stepwise` (shared with the bootstrap's fast engine).

References
----------
.. [1] Therneau TM, Grambsch PM. *Modeling Survival Data: Extending the Cox Model*.
   Springer, 2000.
.. [2] IBM SPSS Statistics 27 Algorithms, "COXREG".
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from mibgkit.errors import QCWarning, StatisticsError
from mibgkit.stats._checks import _check_outcome, _complete_cases
from mibgkit.stats._coxcore import (COX_COLUMNS, CoxFit, Ties, check_ties, fit_cox, null_loglik,
                                    score_test, table_rows, warn_epv)
from mibgkit.stats.concordance import harrell_c
from mibgkit.stats.stepwise import ForwardLR

__all__ = [
    "cox_univariate",
    "cox_forward_stepwise",
    "StepwiseResult",
]


def cox_univariate(
    df: pd.DataFrame,
    duration: str,
    event: str,
    covariates: Sequence[str],
    ties: Ties = "efron",
    errors: Literal["raise", "warn"] = "raise",
) -> pd.DataFrame:
    r"""Fit one Cox proportional-hazards model per covariate.

    Parameters
    ----------
    df : pandas.DataFrame
        One row per patient.
    duration, event : str
        Columns with the time to event or censoring (> 0, any unit) and the event indicator
        (1 = event, 0 = censored).
    covariates : sequence of str
        Numeric columns (binary covariates coded 0/1; the HR is then for 1 vs 0).
    ties : {"efron", "breslow"}
        Handling of tied event times. ``"efron"`` is R's default; ``"breslow"`` reproduces SPSS.
    errors : {"raise", "warn"}
        What a covariate that cannot be fitted (constant, separation, non-convergence) does:
        raise :class:`~mibgkit.errors.StatisticsError`, or give a row of NaN and a
        :class:`~mibgkit.errors.QCWarning`.

    Returns
    -------
    pandas.DataFrame
        Indexed by covariate, columns ``hr, ci_lower, ci_upper, p, n, events, beta, se, z,
        lr_p, score_p, concordance``. Each covariate uses its own complete cases (``n``).

    Notes
    -----
    For coefficient :math:`\hat\beta` with standard error :math:`s` (inverse observed information
    of the partial likelihood):

    .. math::
        \mathrm{HR} = e^{\hat\beta}, \quad
        \mathrm{CI}_{95} = e^{\hat\beta \pm z_{0.975}\, s}, \quad
        p_\mathrm{Wald} = 2\,\{1 - \Phi(|\hat\beta| / s)\},

    with :math:`z_{0.975} = 1.959964`. ``lr_p`` is the likelihood-ratio test
    :math:`2\{\ell(\hat\beta) - \ell(0)\} \sim \chi^2_1` and ``score_p`` the score (log-rank)
    test :math:`U(0)^2 / I(0) \sim \chi^2_1`, as R ``summary(coxph)`` prints them.
    ``concordance`` is Harrell's C of the linear predictor.

    A QC warning is issued when a covariate has fewer than 10 events (events per variable
    < 10) and when rows are dropped for missing values.

    References
    ----------
    .. [1] Cox DR. Regression models and life-tables. *J R Stat Soc B* 1972;34:187–220.
    .. [2] Efron B. The efficiency of Cox's likelihood function for censored data.
       *J Am Stat Assoc* 1977;72:557–565.
    .. [3] Harrell FE et al. Evaluating the yield of medical tests. *JAMA* 1982;247:2543–2546.

    Examples
    --------
    >>> import pandas as pd
    >>> d = pd.DataFrame({"t": [5, 8, 3, 9, 12, 4, 7, 10, 6, 11], "e": [1, 0, 1, 1, 0, 1, 0, 1, 1, 0],
    ...                   "x": [2.0, 1.0, 1.2, 1.5, 0.5, 2.5, 3.0, 0.2, 0.4, 1.1]})
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     tab = cox_univariate(d, "t", "e", ["x"])
    >>> [str(w.message)[:40] for w in caught]  # 6 events for 1 covariate: a QC warning
    ["Cox model for 'x': 6 events for 1 covari"]
    >>> tab.loc["x", ["hr", "ci_lower", "ci_upper", "p"]].round(3).tolist()
    [1.423, 0.543, 3.733, 0.473]
    """
    ties = check_ties(ties)
    if isinstance(covariates, str):
        covariates = [covariates]
    rows = []
    for cov in covariates:
        sub = _complete_cases(df, [duration, event, cov], f"Cox model for {cov!r}")
        t, e = _check_outcome(sub[duration], sub[event])
        x = sub[[cov]].to_numpy()
        try:
            if e.sum() == 0:
                raise StatisticsError(f"covariate {cov!r}: no events among the {t.size} patients analysed")
            fit = fit_cox(t, e, x, [cov], ties)
        except StatisticsError as exc:
            if errors == "raise":
                raise
            warnings.warn(f"Cox model for {cov!r} not estimable: {exc}", QCWarning, stacklevel=2)
            rows.append(pd.DataFrame({c: [np.nan] for c in COX_COLUMNS}, index=pd.Index([cov], name="covariate"))
                        .assign(n=t.size, events=int(e.sum())))
            continue
        warn_epv(fit.events, 1, f"Cox model for {cov!r}")
        lr = 2.0 * (fit.loglik - fit.loglik0)
        sc = score_test(t, e, x, np.zeros(1), ties)
        c = harrell_c(t, e, x[:, 0] * fit.beta[0])
        rows.append(table_rows(fit, [stats.chi2.sf(lr, 1)], [stats.chi2.sf(sc, 1)], c))
    out = pd.concat(rows) if rows else pd.DataFrame(columns=COX_COLUMNS)
    out[["n", "events"]] = out[["n", "events"]].astype(int)
    out.index.name = "covariate"
    return out


# ---------------------------------------------------------------------------------------------
# forward stepwise (SPSS "Forward: LR")
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class StepwiseResult:
    """Outcome of :func:`cox_forward_stepwise`.

    Attributes
    ----------
    selected : list of str
        Covariates in the final model, in their order of entry.
    table : pandas.DataFrame
        Final model, one row per selected covariate, with the columns of :func:`cox_univariate`
        (``lr_p`` = LR test for dropping that covariate; ``score_p`` = score test for adding it
        to the others; ``concordance`` = C-index of the final model, repeated).
    steps : pandas.DataFrame
        Step log with columns ``step, variable, action, statistic, df, p, model``: ``action`` is
        ``"enter"`` (statistic = score χ²), ``"remove"`` (statistic = LR χ²) or ``"stop"``.
    candidates : pandas.DataFrame
        The score statistic and p of every candidate not in the model at every step
        (``step, variable, statistic, p``), for reports that show why a variable stayed out.
    n, events, n_dropped : int
        Patients analysed, their events, rows dropped for missing values.
    loglik : float
        Partial log-likelihood of the final model (``-2 loglik`` is SPSS's "-2 Log Likelihood").
    concordance : float
        Harrell's C of the final model's linear predictor.
    ties : str
        Tie handling used.
    """

    selected: list[str]
    table: pd.DataFrame
    steps: pd.DataFrame
    candidates: pd.DataFrame
    n: int
    events: int
    n_dropped: int
    loglik: float
    concordance: float
    ties: str = "efron"
    stopped_by_cycle: bool = False

    def _repr_html_(self) -> str:  # pragma: no cover - notebook display
        return self.steps.to_html() + self.table.to_html()


def cox_forward_stepwise(
    df: pd.DataFrame,
    duration: str,
    event: str,
    candidates: Sequence[str],
    p_enter: float = 0.05,
    p_remove: float = 0.10,
    ties: Ties = "efron",
    max_steps: int | None = None,
) -> StepwiseResult:
    r"""Forward stepwise Cox regression as SPSS ``COXREG /METHOD=FSTEP(LR)`` does it.

    Parameters
    ----------
    df : pandas.DataFrame
        One row per patient.
    duration, event : str
        Time (> 0) and event indicator (0/1) columns.
    candidates : sequence of str
        Numeric covariates that may enter (the paper: univariate p ≤ 0.05).
    p_enter : float
        A covariate enters when its score-test p is below ``p_enter`` (SPSS PIN, 0.05).
    p_remove : float
        A covariate in the model leaves when its likelihood-ratio p exceeds ``p_remove``
        (SPSS POUT, 0.10). Must be ≥ ``p_enter``.
    ties : {"efron", "breslow"}
        ``"breslow"`` reproduces SPSS, ``"efron"`` R.
    max_steps : int, optional
        Safety limit on the number of entries and removals (default ``4 × len(candidates) + 4``).

    Returns
    -------
    StepwiseResult
        ``.selected``, ``.table``, ``.steps`` (and more; see :class:`StepwiseResult`).

    Notes
    -----
    The analysis is complete-case on ``candidates`` so that every model compares the same
    patients; the number dropped is reported (QC warning and ``n_dropped``). The algorithm
    (score-test entry at :math:`(\hat\beta_M, 0)`, LR removal, cycling guard, tie-breaking by
    candidate order) is :class:`mibgkit.stats.stepwise.ForwardLR`, run here on the
    ``statsmodels`` fitter. A QC warning is issued when the final model has fewer than 10 events
    per covariate.

    References
    ----------
    .. [1] IBM SPSS Statistics 27 Algorithms, "COXREG: Stepwise selection".
    .. [2] Hosmer DW, Lemeshow S, May S. *Applied Survival Analysis*, 2nd ed. Wiley, 2008, ch. 5.
    """
    ties = check_ties(ties)
    if isinstance(candidates, str):
        candidates = [candidates]
    candidates = list(dict.fromkeys(candidates))
    if not candidates:
        raise StatisticsError("no candidate covariates for stepwise selection")
    if not 0 < p_enter <= p_remove < 1:
        raise StatisticsError(f"need 0 < p_enter ≤ p_remove < 1, got {p_enter}, {p_remove}")
    n_all = len(df)
    sub = _complete_cases(df, [duration, event, *candidates], "stepwise Cox")
    t, e = _check_outcome(sub[duration], sub[event])
    if e.sum() == 0:
        raise StatisticsError("stepwise Cox: no events among the patients analysed")
    X = sub[candidates].to_numpy()
    col = {c: i for i, c in enumerate(candidates)}

    def columns(names) -> np.ndarray:
        return X[:, [col[c] for c in names]]

    engine = ForwardLR(candidates,
                       fit=lambda names: fit_cox(t, e, columns(names), names, ties),
                       null_loglik=lambda: null_loglik(t, e, ties),
                       score=lambda names, beta: score_test(t, e, columns(names), beta, ties))
    trace = engine.run(p_enter, p_remove, max_steps)
    model = trace.selected
    steps = pd.DataFrame(trace.steps, columns=["step", "variable", "action", "statistic", "df", "p", "model"])
    cand = pd.DataFrame(trace.candidates, columns=["step", "variable", "statistic", "p"])
    n_dropped = n_all - t.size
    if not model:
        table = pd.DataFrame(columns=COX_COLUMNS, index=pd.Index([], name="covariate"))
        return StepwiseResult([], table, steps, cand, t.size, int(e.sum()), n_dropped,
                              engine.loglik([]), float("nan"), ties, trace.cycled)
    final = engine.fit(model)
    order = [final.names.index(c) for c in model]
    final = CoxFit(tuple(model), final.beta[order], final.cov[np.ix_(order, order)],
                   final.loglik, final.loglik0, final.n, final.events)
    lr_p = [stats.chi2.sf(engine.lr_for(model, c), 1) for c in model]
    sc_p = [stats.chi2.sf(engine.score_for([m for m in model if m != c], c), 1) for c in model]
    lp = columns(model) @ final.beta
    conc = harrell_c(t, e, lp)
    warn_epv(final.events, len(model), "stepwise Cox final model")
    table = table_rows(final, lr_p, sc_p, conc)
    return StepwiseResult(list(model), table, steps, cand, t.size, final.events, n_dropped,
                          final.loglik, conc, ties, trace.cycled)

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

The private helpers (``_fit_cox``, ``_score_test``, ``_concordance``, ``_check_ties``) are
shared with :mod:`mibgkit.stats.validation`, :mod:`mibgkit.stats.assumptions` and
:mod:`mibgkit.stats.splines`; :mod:`mibgkit.stats._coxfast` mirrors them for the bootstrap.

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

__all__ = [
    "Z975",
    "cox_univariate",
    "cox_forward_stepwise",
    "StepwiseResult",
]

#: The 0.975 quantile of the standard normal distribution, used for every 95 % Wald interval.
Z975: float = float(stats.norm.ppf(0.975))

Ties = Literal["efron", "breslow"]

#: Columns every Cox table carries, in this order.
COX_COLUMNS = [
    "hr", "ci_lower", "ci_upper", "p", "n", "events",
    "beta", "se", "z", "lr_p", "score_p", "concordance",
]

_MIN_EPV = 10


# ---------------------------------------------------------------------------------------------
# Cox model core (statsmodels PHReg does the fitting)
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _CoxFit:
    names: tuple[str, ...]
    beta: np.ndarray
    cov: np.ndarray
    loglik: float
    loglik0: float
    n: int
    events: int


def _phreg(time, event, X, ties: Ties):
    from statsmodels.duration.hazard_regression import PHReg

    return PHReg(time, X, status=event, ties=ties)


def _check_ties(ties: str) -> Ties:
    if ties not in ("efron", "breslow"):
        raise StatisticsError(f"ties must be 'efron' or 'breslow', got {ties!r}")
    return ties  # type: ignore[return-value]


def _check_separation(x: np.ndarray, event: np.ndarray, name: str) -> None:
    """Monotone likelihood for a binary covariate: all events on one side."""
    levels = np.unique(x)
    if levels.size == 2:
        for lev in levels:
            on = x == lev
            if event[on].sum() == 0:
                raise StatisticsError(
                    f"covariate {name!r}: no events where it equals {lev:g} "
                    f"({int(on.sum())} patients) — the Cox likelihood is monotone (separation) and "
                    "the HR is infinite; merge categories or use Firth's penalised Cox model"
                )


def _fit_cox(time, event, X: np.ndarray, names: Sequence[str], ties: Ties) -> _CoxFit:
    """Fit a Cox model by Newton–Raphson (statsmodels), with clear failure messages."""
    names = tuple(names)
    n = time.size
    k = X.shape[1]
    for j, name in enumerate(names):
        if np.ptp(X[:, j]) == 0:
            raise StatisticsError(f"covariate {name!r} is constant ({X[0, j]:g}) in the {n} patients analysed")
        _check_separation(X[:, j], event, name)
    if k > 1 and np.linalg.matrix_rank(X - X.mean(axis=0)) < k:
        raise StatisticsError(f"covariates {list(names)} are linearly dependent (collinear)")
    model = _phreg(time, event, X, ties)
    loglik0 = float(model.loglike(np.zeros(k)))
    # centre and scale for a well-conditioned Newton iteration; transform back afterwards
    centre, scale = X.mean(axis=0), X.std(axis=0)
    Xs = (X - centre) / scale
    model_s = _phreg(time, event, Xs, ties)
    tol_grad = 1e-5 * max(1.0, np.sqrt(event.sum()))

    def fitted(res) -> tuple[np.ndarray, np.ndarray, bool]:
        b = np.asarray(res.params, dtype=float)
        g = np.asarray(model_s.score(b), dtype=float) if np.isfinite(b).all() else np.full(k, np.nan)
        return b, g, bool(np.isfinite(b).all() and np.all(np.abs(g) < tol_grad))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bs, grad, converged = fitted(model_s.fit(method="newton", maxiter=100, tol=1e-12))
        if not converged:
            # Newton from β = 0 can overshoot on skewed covariates (no step halving in statsmodels):
            # approach the optimum by BFGS, then polish with Newton from there.
            start = np.asarray(model_s.fit(method="bfgs", maxiter=500, disp=False).params, dtype=float)
            if np.isfinite(start).all():
                bs, grad, converged = fitted(model_s.fit(method="newton", start_params=start, maxiter=100, tol=1e-12))
    if not converged or np.any(np.abs(bs) > 25):
        raise StatisticsError(
            f"Cox model on {list(names)} did not converge (scaled coefficients {np.round(bs, 2).tolist()}, "
            f"|score| {np.abs(grad).max():.2g}); this usually means monotone likelihood (separation) "
            "or too few events for the number of covariates"
            + (f" [{'; '.join(str(w.message) for w in caught[:2])}]" if caught else "")
        )
    beta = bs / scale
    hess = np.asarray(model.hessian(beta), dtype=float)
    cov = np.linalg.inv(-hess)
    return _CoxFit(names, beta, cov, float(model.loglike(beta)), loglik0, n, int(event.sum()))


def _score_test(time, event, X: np.ndarray, beta: np.ndarray, ties: Ties) -> float:
    """Efficient score statistic U' I^{-1} U of the model with covariates X evaluated at ``beta``."""
    model = _phreg(time, event, X, ties)
    u = np.asarray(model.score(beta), dtype=float)
    info = -np.asarray(model.hessian(beta), dtype=float)
    return float(u @ np.linalg.solve(info, u))


def _concordance(time, event, risk) -> float:
    """Harrell's C: share of usable pairs in which the higher risk has the earlier event.

    A pair is usable when the shorter time is an event; a censoring at the same time as an event
    counts as surviving longer; pairs with tied event times are not usable; tied risks count 1/2
    (R ``survival::concordance`` conventions).
    """
    order = np.argsort(time, kind="stable")
    t, e, r = time[order], event[order], risk[order]
    conc = disc = tied = 0.0
    for i in np.flatnonzero(e == 1):
        later = (t > t[i]) | ((t == t[i]) & (e == 0))
        if not later.any():
            continue
        rl = r[later]
        conc += np.sum(r[i] > rl)
        disc += np.sum(r[i] < rl)
        tied += np.sum(r[i] == rl)
    total = conc + disc + tied
    return float((conc + 0.5 * tied) / total) if total else float("nan")


def _table_rows(fit: _CoxFit, lr_p: Sequence[float], score_p: Sequence[float], concordance: float) -> pd.DataFrame:
    se = np.sqrt(np.diag(fit.cov))
    z = fit.beta / se
    return pd.DataFrame(
        {
            "hr": np.exp(fit.beta),
            "ci_lower": np.exp(fit.beta - Z975 * se),
            "ci_upper": np.exp(fit.beta + Z975 * se),
            "p": 2.0 * stats.norm.sf(np.abs(z)),
            "n": fit.n,
            "events": fit.events,
            "beta": fit.beta,
            "se": se,
            "z": z,
            "lr_p": list(lr_p),
            "score_p": list(score_p),
            "concordance": concordance,
        },
        index=pd.Index(list(fit.names), name="covariate"),
    )[COX_COLUMNS]


def _warn_epv(events: int, k: int, context: str) -> None:
    if k and events / k < _MIN_EPV:
        warnings.warn(
            f"{context}: {events} events for {k} covariate(s) = {events / k:.1f} events per variable "
            f"(< {_MIN_EPV}); estimates may be biased and unstable",
            QCWarning,
            stacklevel=3,
        )


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
    ties = _check_ties(ties)
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
            fit = _fit_cox(t, e, x, [cov], ties)
        except StatisticsError as exc:
            if errors == "raise":
                raise
            warnings.warn(f"Cox model for {cov!r} not estimable: {exc}", QCWarning, stacklevel=2)
            rows.append(pd.DataFrame({c: [np.nan] for c in COX_COLUMNS}, index=pd.Index([cov], name="covariate"))
                        .assign(n=t.size, events=int(e.sum())))
            continue
        _warn_epv(fit.events, 1, f"Cox model for {cov!r}")
        lr = 2.0 * (fit.loglik - fit.loglik0)
        sc = _score_test(t, e, x, np.zeros(1), ties)
        c = _concordance(t, e, x[:, 0] * fit.beta[0])
        rows.append(_table_rows(fit, [stats.chi2.sf(lr, 1)], [stats.chi2.sf(sc, 1)], c))
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
    patients; the number dropped is reported (QC warning and ``n_dropped``). Algorithm:

    1. Start from the empty model :math:`M`.
    2. **Entry.** For each candidate :math:`x \notin M` compute the efficient score statistic of
       adding it, evaluated at the fitted coefficients of :math:`M` and zero for :math:`x`:
       :math:`S = U^\top I^{-1} U` with :math:`U, I` the score vector and observed information
       of :math:`M \cup \{x\}` at :math:`(\hat\beta_M, 0)`; :math:`S \sim \chi^2_1`. Enter the
       candidate with the smallest p if it is below ``p_enter``; otherwise stop.
    3. **Removal.** For each :math:`x \in M`, the LR statistic
       :math:`2\{\ell(\hat\beta_M) - \ell(\hat\beta_{M\setminus x})\} \sim \chi^2_1`; remove the
       one with the largest p if it exceeds ``p_remove`` and repeat step 3; otherwise go to 2.
    4. An entry that would recreate a model already visited ends the procedure (cycling
       guard: the variable just removed would re-enter), logged as ``"stop (cycle)"``;
       ``max_steps`` is a further safety limit.

    Ties between equal p (to 1e-12) are broken by the order of ``candidates``.
    A QC warning is issued when the final model has fewer than 10 events per covariate.

    References
    ----------
    .. [1] IBM SPSS Statistics 27 Algorithms, "COXREG: Stepwise selection".
    .. [2] Hosmer DW, Lemeshow S, May S. *Applied Survival Analysis*, 2nd ed. Wiley, 2008, ch. 5.
    """
    ties = _check_ties(ties)
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
    max_steps = 4 * len(candidates) + 4 if max_steps is None else max_steps

    fits: dict[tuple[str, ...], _CoxFit] = {}

    def fit(model: tuple[str, ...]) -> _CoxFit:
        key = tuple(sorted(model, key=col.get))
        if key not in fits:
            fits[key] = _fit_cox(t, e, X[:, [col[c] for c in key]], key, ties)
        return fits[key]

    def loglik(model: Sequence[str]) -> float:
        if not model:
            return float(_phreg(t, e, X[:, :1], ties).loglike(np.zeros(1)))
        return fit(tuple(model)).loglik

    def score_for(model: list[str], x: str) -> float:
        if model:
            f = fit(tuple(model))
            coef = dict(zip(f.names, f.beta))
            beta = np.array([coef[c] for c in model] + [0.0])
        else:
            beta = np.zeros(1)
        return _score_test(t, e, X[:, [col[c] for c in [*model, x]]], beta, ties)

    model: list[str] = []
    visited = {frozenset()}
    log: list[dict] = []
    cand_log: list[dict] = []
    step = 0
    cycled = False
    while step < max_steps:
        # --- entry
        outside = [c for c in candidates if c not in model]
        if not outside:
            break
        scores = []
        for c in outside:
            try:
                s = score_for(model, c)
            except np.linalg.LinAlgError:
                s = np.nan  # collinear with the current model: cannot enter
            scores.append((c, s, stats.chi2.sf(s, 1) if np.isfinite(s) else np.nan))
            cand_log.append({"step": step + 1, "variable": c, "statistic": s, "p": scores[-1][2]})
        usable = [s for s in scores if np.isfinite(s[2])]
        if not usable:
            break
        best_p = min(s[2] for s in usable)
        best = next(s for s in usable if s[2] <= best_p + 1e-12)
        if best[2] >= p_enter:
            break
        new_model = [*model, best[0]]
        if frozenset(new_model) in visited:
            cycled = True
            log.append({"step": step + 1, "variable": best[0], "action": "stop (cycle)",
                        "statistic": best[1], "df": 1, "p": best[2], "model": ", ".join(model)})
            break
        fit(tuple(new_model))  # raises a clear error on separation / non-convergence
        model = new_model
        visited.add(frozenset(model))
        step += 1
        log.append({"step": step, "variable": best[0], "action": "enter", "statistic": best[1],
                    "df": 1, "p": best[2], "model": ", ".join(model)})
        # --- removal, repeated while something leaves
        while len(model) > 0 and step < max_steps:
            ll_full = loglik(model)
            lrs = []
            for c in model:
                rest = [m for m in model if m != c]
                lr = max(2.0 * (ll_full - loglik(rest)), 0.0)
                lrs.append((c, lr, stats.chi2.sf(lr, 1)))
            worst_p = max(s[2] for s in lrs)
            worst = next(s for s in lrs if s[2] >= worst_p - 1e-12)
            if worst[2] <= p_remove:
                break
            reduced = [m for m in model if m != worst[0]]
            model = reduced
            visited.add(frozenset(model))
            step += 1
            log.append({"step": step, "variable": worst[0], "action": "remove", "statistic": worst[1],
                        "df": 1, "p": worst[2], "model": ", ".join(model)})

    steps = pd.DataFrame(log, columns=["step", "variable", "action", "statistic", "df", "p", "model"])
    cand = pd.DataFrame(cand_log, columns=["step", "variable", "statistic", "p"])
    n_dropped = n_all - t.size
    if not model:
        table = pd.DataFrame(columns=COX_COLUMNS, index=pd.Index([], name="covariate"))
        return StepwiseResult([], table, steps, cand, t.size, int(e.sum()), n_dropped,
                              loglik([]), float("nan"), ties, cycled)
    final = fit(tuple(model))
    order = [final.names.index(c) for c in model]
    final = _CoxFit(tuple(model), final.beta[order], final.cov[np.ix_(order, order)],
                    final.loglik, final.loglik0, final.n, final.events)
    lr_p, sc_p = [], []
    for c in model:
        rest = [m for m in model if m != c]
        lr_p.append(stats.chi2.sf(max(2.0 * (final.loglik - loglik(rest)), 0.0), 1))
        sc_p.append(stats.chi2.sf(score_for(rest, c), 1))
    lp = X[:, [col[c] for c in model]] @ final.beta
    conc = _concordance(t, e, lp)
    _warn_epv(final.events, len(model), "stepwise Cox final model")
    table = _table_rows(final, lr_p, sc_p, conc)
    return StepwiseResult(list(model), table, steps, cand, t.size, final.events, n_dropped,
                          final.loglik, conc, ties, cycled)

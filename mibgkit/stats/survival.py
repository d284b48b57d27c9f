"""Survival statistics as the paper used them: Cox regression, Kaplan–Meier, log-rank.

Everything here takes plain arrays or a DataFrame and returns DataFrames or mappings that a
notebook prints directly. The numbers agree with R's ``survival`` package (``coxph``,
``survfit``, ``survdiff``) and therefore with SPSS 27 ``COXREG``/``KM`` where the two agree
(SPSS uses Breslow ties: pass ``ties="breslow"``).

Functions
---------
cox_univariate
    One Cox model per covariate: HR, 95 % Wald CI, Wald/LR/score p, n, events, C-index.
cox_forward_stepwise
    SPSS ``Forward: LR`` selection with a step log.
km_table, km_mean, kaplan_meier
    Product-limit estimate, SPSS/R restricted mean survival with its SE, median with CI,
    per-group summaries and numbers at risk.
logrank
    The (Mantel–Haenszel) log-rank test for two or more groups, as R ``survdiff`` gives it.
maxstat_cutoff
    Maximally selected log-rank statistic (R ``maxstat.test(..., smethod="LogRank")``).

References
----------
.. [1] Therneau TM, Grambsch PM. *Modeling Survival Data: Extending the Cox Model*.
   Springer, 2000.
.. [2] Klein JP, Moeschberger ML. *Survival Analysis*, 2nd ed. Springer, 2003.
.. [3] IBM SPSS Statistics 27 Algorithms, "COXREG" and "KM".
.. [4] Hothorn T, Lausen B. On the exact distribution of maximally selected rank statistics.
   *Comput Stat Data Anal* 2003;43:121–137.
.. [5] Lausen B, Schumacher M. Maximally selected rank statistics. *Biometrics*
   1992;48:73–85.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Literal, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from mibgkit.errors import QCWarning, StatisticsError

__all__ = [
    "Z975",
    "cox_univariate",
    "cox_forward_stepwise",
    "StepwiseResult",
    "km_table",
    "km_mean",
    "kaplan_meier",
    "KaplanMeierResult",
    "logrank",
    "maxstat_cutoff",
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
# input checks
# ---------------------------------------------------------------------------------------------

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
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = model_s.fit(method="newton", maxiter=100, tol=1e-12)
    bs = np.asarray(res.params, dtype=float)
    grad = np.asarray(model_s.score(bs), dtype=float)
    converged = np.isfinite(bs).all() and np.all(np.abs(grad) < 1e-5 * max(1.0, np.sqrt(event.sum())))
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
    >>> tab = cox_univariate(d, "t", "e", ["x"])  # 6 events: also a QC warning (EPV < 10)
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


# ---------------------------------------------------------------------------------------------
# Kaplan–Meier
# ---------------------------------------------------------------------------------------------

def km_table(durations, events, conf_level: float = 0.95) -> pd.DataFrame:
    r"""Kaplan–Meier product-limit table, one row per distinct observed time.

    Parameters
    ----------
    durations : array_like of float
        Times to event or censoring, > 0.
    events : array_like of {0, 1}
        1 = event, 0 = censored.
    conf_level : float
        Level of the pointwise interval.

    Returns
    -------
    pandas.DataFrame
        Columns ``time, n_risk, n_event, n_censor, survival, std_err, ci_lower, ci_upper``, as
        R ``summary(survfit(..., conf.type="log"), censored=TRUE)``.

    Notes
    -----
    :math:`\hat S(t) = \prod_{t_j \le t} (1 - d_j / n_j)`; Greenwood
    :math:`\widehat{\mathrm{Var}}\{\log \hat S(t)\} = \sum_{t_j \le t} d_j / \{n_j (n_j - d_j)\}`;
    ``std_err`` is the SE of :math:`\hat S` (Greenwood) and the interval is
    :math:`\hat S \exp(\pm z\, \mathrm{se}(\log \hat S))`, upper bound capped at 1, undefined
    (NaN) where :math:`\hat S = 0`.
    """
    t, e = _check_outcome(durations, events)
    z = float(stats.norm.ppf(0.5 + conf_level / 2))
    times, inv = np.unique(t, return_inverse=True)
    d = np.bincount(inv, weights=e, minlength=times.size)
    c = np.bincount(inv, weights=1 - e, minlength=times.size)
    at_risk = t.size - np.concatenate([[0], np.cumsum(d + c)[:-1]])
    surv = np.cumprod(1.0 - d / at_risk)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = np.where(at_risk - d > 0, d / (at_risk * (at_risk - d)), np.where(d > 0, np.inf, 0.0))
        se_log = np.sqrt(np.cumsum(h))
        lower = np.where(surv > 0, surv * np.exp(-z * se_log), np.nan)
        upper = np.where(surv > 0, np.minimum(surv * np.exp(z * se_log), 1.0), np.nan)
        std_err = np.where(np.isfinite(se_log), surv * se_log, np.nan)
    return pd.DataFrame(
        {
            "time": times,
            "n_risk": at_risk.astype(int),
            "n_event": d.astype(int),
            "n_censor": c.astype(int),
            "survival": surv,
            "std_err": std_err,
            "ci_lower": lower,
            "ci_upper": upper,
        }
    )


def _first_below_half(y: np.ndarray, x: np.ndarray) -> float:
    """First time a step curve reaches 0.5 (midpoint rule on an exact 0.5 plateau), as R."""
    tol = np.finfo(float).eps ** 0.5
    keep = ~np.isnan(y) & (y < 0.5 + tol)
    if not keep.any():
        return float("nan")
    x, y = x[keep], y[keep]
    if abs(y[0] - 0.5) < tol and (y < y[0]).any():
        return float((x[0] + x[np.flatnonzero(y < y[0])[0]]) / 2)
    return float(x[0])


def km_mean(durations, events, conf_level: float = 0.95) -> dict:
    r"""Restricted mean survival time as SPSS prints "Mean" and R ``rmean="individual"``.

    Parameters
    ----------
    durations : array_like of float
        Times to event or censoring, > 0.
    events : array_like of {0, 1}
        1 = event, 0 = censored.
    conf_level : float
        Level of the mean's and the median's interval (0.95 gives z = 1.959964).

    Returns
    -------
    dict
        ``mean, se, ci_lower, ci_upper`` (restricted mean), ``end_time`` (the restriction
        :math:`\tau`, largest observed time), ``median, median_ci_lower, median_ci_upper``
        (NaN where not reached), ``n, events``.

    Notes
    -----
    With distinct observed times :math:`t_1 < \dots < t_m`, :math:`t_0 = 0` and
    :math:`\tau = t_m`:

    .. math::
        \hat\mu = \int_0^\tau \hat S(t)\,dt = \sum_{j=1}^{m} \hat S(t_{j-1})(t_j - t_{j-1}),
        \qquad
        \widehat{\mathrm{Var}}(\hat\mu) = \sum_{j} A_j^2 \frac{d_j}{n_j (n_j - d_j)},
        \quad A_j = \int_{t_j}^{\tau} \hat S(t)\,dt,

    terms with :math:`n_j = d_j` set to 0 (``survival:::survmean``). The interval is
    :math:`\hat\mu \pm z\,\widehat{\mathrm{se}}`. When the largest time is an event the curve
    drops to 0 there and :math:`\hat\mu` is the unrestricted mean. The median is the first
    time with :math:`\hat S \le 0.5` (midpoint to the next event time on an exact 0.5 plateau);
    its CI are the times where the log-type pointwise limits reach 0.5 (R ``survfit``).

    References
    ----------
    .. [1] Klein JP, Moeschberger ML. *Survival Analysis*, 2nd ed. 2003, §4.5.
    .. [2] Brookmeyer R, Crowley J. A confidence interval for the median survival time.
       *Biometrics* 1982;38:29–41.
    """
    t, e = _check_outcome(durations, events)
    z = float(stats.norm.ppf(0.5 + conf_level / 2))
    tab = km_table(t, e, conf_level)
    times = tab["time"].to_numpy()
    surv = tab["survival"].to_numpy()
    d = tab["n_event"].to_numpy().astype(float)
    nr = tab["n_risk"].to_numpy().astype(float)
    end = float(times[-1])
    with np.errstate(divide="ignore", invalid="ignore"):
        h = np.where(nr - d == 0, 0.0, d / (nr * (nr - d)))
    left = np.concatenate([[0.0], times])
    height = np.concatenate([[1.0], surv])
    rect = np.diff(np.concatenate([left, [end]])) * height  # last rectangle has zero width
    mean = float(rect.sum())
    area_after = np.cumsum(rect[::-1])[::-1][1:]  # A_j = area from t_j to tau
    var = float(np.sum(area_after ** 2 * h))
    se = float(np.sqrt(var))
    return {
        "mean": mean,
        "se": se,
        "ci_lower": mean - z * se,
        "ci_upper": mean + z * se,
        "end_time": end,
        "median": _first_below_half(surv, times),
        "median_ci_lower": _first_below_half(tab["ci_lower"].to_numpy(), times),
        "median_ci_upper": _first_below_half(tab["ci_upper"].to_numpy(), times),
        "n": int(t.size),
        "events": int(e.sum()),
    }


def logrank(durations, events, groups) -> dict:
    r"""Log-rank test of equal survival in two or more groups (R ``survdiff``, rho = 0).

    Parameters
    ----------
    durations, events : array_like
        Times (> 0) and event indicators (0/1).
    groups : array_like
        Group labels (any hashable values; missing labels are an error).

    Returns
    -------
    dict
        ``statistic`` (χ²), ``df``, ``p``, and ``groups`` (a DataFrame indexed by group with
        ``n, observed, expected``).

    Notes
    -----
    At each distinct event time :math:`t_j` with :math:`d_j` events among :math:`n_j` at risk
    (:math:`n_{gj}` in group g), :math:`E_g = \sum_j d_j n_{gj}/n_j` and

    .. math::
        V_{gh} = \sum_j \frac{d_j (n_j - d_j)}{n_j - 1} \frac{n_{gj}}{n_j}
                 \Bigl(\delta_{gh} - \frac{n_{hj}}{n_j}\Bigr),
        \qquad \chi^2 = (O - E)^\top V^{-} (O - E),

    with :math:`V^{-}` a generalised inverse; df = rank of V (groups − 1).

    References
    ----------
    .. [1] Mantel N. Evaluation of survival data and two new rank order statistics arising
       in its consideration. *Cancer Chemother Rep* 1966;50:163–170.
    """
    t, e = _check_outcome(durations, events)
    g = pd.Series(np.asarray(groups, dtype=object))
    if len(g) != t.size:
        raise StatisticsError(f"groups ({len(g)}) and durations ({t.size}) differ in length")
    if g.isna().any():
        raise StatisticsError(f"{int(g.isna().sum())} missing group labels; drop those patients first")
    labels, codes = np.unique(g.astype(str).to_numpy(), return_inverse=True)
    # keep the caller's labels (not their string forms) for the output
    first = {lab: g.iloc[np.flatnonzero(codes == i)[0]] for i, lab in enumerate(labels)}
    k = labels.size
    if k < 2:
        raise StatisticsError("log-rank test needs at least two groups")
    ev_times = np.unique(t[e == 1])
    O = np.bincount(codes, weights=e, minlength=k)
    E = np.zeros(k)
    V = np.zeros((k, k))
    for tj in ev_times:
        at = t >= tj
        n_g = np.bincount(codes[at], minlength=k).astype(float)
        nj = n_g.sum()
        dj = float(e[(t == tj)].sum())
        E += dj * n_g / nj
        if nj > 1:
            w = dj * (nj - dj) / (nj - 1)
            p = n_g / nj
            V += w * (np.diag(p) - np.outer(p, p))
    diff = O - E
    stat = float(diff @ np.linalg.pinv(V) @ diff)
    df = int(np.linalg.matrix_rank(V))
    table = pd.DataFrame(
        {"n": np.bincount(codes, minlength=k), "observed": O, "expected": E},
        index=pd.Index([first[lab] for lab in labels], name="group"),
    )
    return {"statistic": stat, "df": df, "p": float(stats.chi2.sf(stat, df)), "groups": table}


@dataclass(frozen=True)
class KaplanMeierResult:
    """Kaplan–Meier curves for one or more groups (see :func:`kaplan_meier`).

    Attributes
    ----------
    table : pandas.DataFrame
        :func:`km_table` rows with a leading ``group`` column.
    summary : pandas.DataFrame
        Per group: ``n, events, mean, se, ci_lower, ci_upper, end_time, median,
        median_ci_lower, median_ci_upper`` (:func:`km_mean`).
    logrank : dict or None
        :func:`logrank` result when there are two or more groups.
    """

    table: pd.DataFrame
    summary: pd.DataFrame
    logrank: dict | None = None
    _data: pd.DataFrame = field(default=None, repr=False)  # type: ignore[assignment]

    def at_risk(self, times) -> pd.DataFrame:
        """Numbers at risk (time ≥ t) per group at each of ``times``, for a plot's risk table."""
        times = np.atleast_1d(np.asarray(times, dtype=float))
        out = {
            grp: [(int((sub["time"] >= tt).sum())) for tt in times]
            for grp, sub in self._data.groupby("group", sort=False)
        }
        return pd.DataFrame(out, index=pd.Index(times, name="time")).T.rename_axis("group")

    def curve(self, group=None) -> pd.DataFrame:
        """Step-function coordinates (starting at time 0, S = 1) for plotting one group."""
        tab = self.table if group is None else self.table[self.table["group"] == group]
        start = pd.DataFrame({"time": [0.0], "survival": [1.0], "ci_lower": [1.0], "ci_upper": [1.0]})
        return pd.concat([start, tab[["time", "survival", "ci_lower", "ci_upper"]]], ignore_index=True)


def kaplan_meier(durations, events, groups=None, conf_level: float = 0.95) -> KaplanMeierResult:
    """Kaplan–Meier curves, SPSS mean/median summaries and (for ≥ 2 groups) the log-rank test.

    Parameters
    ----------
    durations, events : array_like
        Times (> 0) and event indicators (0/1).
    groups : array_like, optional
        Group labels; ``None`` gives one curve labelled ``"all"``. Groups appear in sorted order.
    conf_level : float
        Level of all intervals.

    Returns
    -------
    KaplanMeierResult
        ``.table`` (survival table per group), ``.summary`` (one row per group, see
        :func:`km_mean`), ``.logrank`` and ``.at_risk(times)`` for risk tables under plots.
    """
    t, e = _check_outcome(durations, events)
    if groups is None:
        g = pd.Series(["all"] * t.size, dtype=object)
    else:
        g = pd.Series(np.asarray(groups, dtype=object))
        if len(g) != t.size:
            raise StatisticsError(f"groups ({len(g)}) and durations ({t.size}) differ in length")
        if g.isna().any():
            raise StatisticsError(f"{int(g.isna().sum())} missing group labels; drop those patients first")
    data = pd.DataFrame({"time": t, "event": e, "group": g.to_numpy()})
    try:
        order = sorted(data["group"].unique())
    except TypeError:
        order = list(data["group"].unique())
    tables, rows = [], []
    for grp in order:
        sub = data[data["group"] == grp]
        tables.append(km_table(sub["time"], sub["event"], conf_level).assign(group=grp))
        rows.append(pd.Series(km_mean(sub["time"], sub["event"], conf_level), name=grp))
    table = pd.concat(tables, ignore_index=True)
    table = table[["group", *[c for c in table.columns if c != "group"]]]
    summary = pd.DataFrame(rows)
    summary.index.name = "group"
    summary = summary[["n", "events", "mean", "se", "ci_lower", "ci_upper", "end_time",
                       "median", "median_ci_lower", "median_ci_upper"]]
    summary[["n", "events"]] = summary[["n", "events"]].astype(int)
    lr = logrank(t, e, g.to_numpy()) if len(order) >= 2 else None
    return KaplanMeierResult(table, summary, lr, data)


# ---------------------------------------------------------------------------------------------
# maximally selected log-rank statistic
# ---------------------------------------------------------------------------------------------

def _logrank_scores(t: np.ndarray, e: np.ndarray) -> np.ndarray:
    r"""Log-rank (Savage) scores :math:`a_i = \delta_i - \sum_{k:\, r_k \le r_i} \delta_k/(N - r_k + 1)`.

    :math:`r_i` is the number of observations with time ≤ :math:`t_i` (tied times share the
    largest rank), as ``exactRankTests::cscores.Surv``.
    """
    n = t.size
    order = np.argsort(t, kind="stable")
    rank = np.searchsorted(np.sort(t), t, side="right")  # number of times <= t_i
    fact = e / (n - rank + 1.0)
    cum = np.cumsum(fact[order])
    return e - cum[rank - 1]


def _hl_lower_bound(b: float, scores: np.ndarray, msample: np.ndarray) -> float:
    """Hothorn–Lausen (2003) p-value of a maximally selected rank statistic (R ``maxstat:::pmaxstat``).

    ``scores`` are non-negative integers; the exact permutation distribution of the sum of every
    subset size is computed by dynamic programming (the shift algorithm of Streitberg & Röhmel),
    in probabilities rather than counts.
    """
    s = np.asarray(scores, dtype=np.int64)
    s = s - s.min()
    n = s.size
    total = int(s.sum())
    if n * n * (total + 1) > 4e9:
        raise StatisticsError(
            f"the Hothorn–Lausen p-value needs the exact permutation distribution, too large here "
            f"(N = {n}, score total {total}); use method='Lau92'"
        )
    # P[k, v] = probability that a random k-subset of the scores sums to v
    P = np.zeros((n + 1, total + 1))
    P[0, 0] = 1.0
    for j, a in enumerate(s, start=1):
        k = np.arange(1, j + 1)[:, None]
        shifted = np.zeros((j, total + 1))
        shifted[:, a:] = P[0:j, : total + 1 - a]
        P[1 : j + 1] = ((j - k) / j) * P[1 : j + 1] + (k / j) * shifted
    m = np.arange(1, n)
    E = m / n * total
    V = m * (n - m) / (n**2 * (n - 1)) * (n * np.sum(s.astype(float) ** 2) - float(total) ** 2)
    H = P[1:n, 1:]  # rows: subset sizes 1..N-1; columns: sums 1..total
    sums = np.arange(1, total + 1)
    S = np.abs((sums[None, :] - E[:, None]) / np.sqrt(V[:, None]))
    S[H == 0] = 0.0
    H = np.where(S <= b, 0.0, H)
    sH = H.sum(axis=1)
    smax, smin = int(s.max()), int(s.min())
    for i in range(int(msample.min()), n - 1):  # R rows i = min(msample) .. N-2 (1-based)
        row = H[i - 1]
        idx = np.flatnonzero(row > 0) + 1  # column numbers = sums
        if idx.size == 0:
            continue
        for side, shift in ((idx[idx < E[i - 1]], smax), (idx[idx > E[i - 1]], smin)):
            cols = side + shift
            ok = cols <= total
            keep = side[ok][S[i, cols[ok] - 1] > b]
            if keep.size:
                sH[i] -= row[keep - 1].sum()
    return float(min(sH[msample - 1].sum(), 1.0))


def _lausen92(b: float, minprop: float, maxprop: float) -> float:
    if b < 1:
        return 1.0
    db = stats.norm.pdf(b)
    p = 4 * db / b + db * (b - 1 / b) * np.log((maxprop * (1 - minprop)) / ((1 - maxprop) * minprop))
    return float(max(p, 0.0))


def maxstat_cutoff(durations, events, score, minprop: float = 0.1, maxprop: float = 0.9,
                   method: Literal["HL", "Lau92"] = "HL") -> dict:
    r"""Cutpoint of a continuous score by the maximally selected log-rank statistic.

    Parameters
    ----------
    durations, events : array_like
        Times (> 0) and event indicators (0/1).
    score : array_like of float
        The marker to dichotomise.
    minprop, maxprop : float
        Only cutpoints leaving at least ``minprop`` and at most ``maxprop`` of the patients in the
        low group are searched (R's defaults 0.1, 0.9).
    method : {"HL", "Lau92"}
        p-value: ``"HL"`` Hothorn & Lausen (2003), from the exact conditional distribution of
        integer-rounded scores (as R computes it, the statistic then also uses those scores);
        ``"Lau92"`` the asymptotic approximation of Lausen & Schumacher (1992).

    Returns
    -------
    dict
        ``cutpoint`` (an observed score; the high group is ``score > cutpoint``), ``statistic``,
        ``p``, ``method``, ``n_low``, ``n_high`` and ``cuts`` (DataFrame ``cutpoint, statistic``
        of every candidate, for plots).

    Notes
    -----
    With log-rank scores :math:`a_i` (see ``_logrank_scores``) ordered by the marker, for each
    candidate cut leaving :math:`m` patients in the low group,
    :math:`T_m = \sum_{i \le m} a_{(i)}`, :math:`E_m = m \bar a N / N`,
    :math:`V_m = \frac{m (N - m)}{N^2 (N - 1)} \{N \sum a_i^2 - (\sum a_i)^2\}` and
    :math:`M = \max_m |T_m - E_m| / \sqrt{V_m}` — R ``maxstat.test(Surv(t, e) ~ x,
    smethod = "LogRank")``. ``"Lau92"``:
    :math:`p \approx 4\varphi(M)/M + \varphi(M)(M - 1/M)
    \log\frac{\text{maxprop}(1 - \text{minprop})}{(1 - \text{maxprop})\,\text{minprop}}`.
    For ``"HL"`` the scores are first mapped to integers
    :math:`\mathrm{round}\{(a - \min a) N / \max(a - \min a)\}` (R's ``iscores``).
    """
    t, e = _check_outcome(durations, events)
    x = _as_float(score, "score")
    if x.size != t.size:
        raise StatisticsError(f"score ({x.size}) and durations ({t.size}) differ in length")
    if np.isnan(x).any():
        raise StatisticsError(f"{int(np.isnan(x).sum())} missing scores; drop those patients first")
    if method not in ("HL", "Lau92"):
        raise StatisticsError(f"method must be 'HL' or 'Lau92', got {method!r}")
    if not 0 < minprop < maxprop < 1:
        raise StatisticsError(f"need 0 < minprop < maxprop < 1, got {minprop}, {maxprop}")
    n = t.size
    a = _logrank_scores(t, e)
    if method == "HL" and np.any(a != np.floor(a)):
        frac = a - np.floor(a)
        if np.all(frac[frac != 0] == 0.5):
            a = 2 * a
        else:
            a = a - a.min()
            a = np.round(a * n / a.max())
    order = np.argsort(x, kind="stable")
    y, xs = a[order], x[order]
    first = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])  # first index of each distinct value
    m = first.copy()  # patients strictly below each distinct value
    lo, hi = max(1, int(np.floor(n * minprop))), int(np.floor(n * maxprop))
    m = m[(m >= lo) & (m <= hi)]
    if m.size == 0:
        raise StatisticsError("no cutpoint leaves between minprop and maxprop of the patients in the low group")
    ss = y.sum()
    E = m / n * ss
    V = m * (n - m) / (n**2 * (n - 1)) * (n * np.sum(y**2) - ss**2)
    if np.any(V <= 0):
        raise StatisticsError("log-rank scores are constant (no events?): the statistic is undefined")
    test = np.abs((np.cumsum(y)[m - 1] - E) / np.sqrt(V))
    best = int(np.flatnonzero(test == test.max())[0])
    stat = float(test[best])
    cut = float(xs[m[best] - 1])
    if method == "Lau92":
        p = _lausen92(stat, minprop, maxprop)
    else:
        p = _hl_lower_bound(stat, y, m)
    return {
        "cutpoint": cut,
        "statistic": stat,
        "p": p,
        "method": method,
        "n_low": int(m[best]),
        "n_high": int(n - m[best]),
        "cuts": pd.DataFrame({"cutpoint": xs[m - 1], "statistic": test}),
    }

r"""Checks of the Cox model's assumptions and its small-sample remedies.

Functions
---------
ph_test
    Proportional-hazards test per covariate and global, as R ``survival::cox.zph`` (≥ 3.0).
events_per_variable
    Events per candidate variable, with the usual warning below 10.
separation
    Monotone likelihood (separation) per covariate: the cases where ordinary Cox diverges.
firth_cox
    Firth-penalised Cox regression (Heinze & Schemper 2001), finite under separation, with
    profile penalised-likelihood intervals and penalised LR tests as R ``coxphf``.

References
----------
.. [1] Grambsch PM, Therneau TM. Proportional hazards tests and diagnostics based on weighted
   residuals. *Biometrika* 1994;81:515–526.
.. [2] Therneau TM, Grambsch PM. *Modeling Survival Data*. Springer, 2000, ch. 6.
.. [3] Heinze G, Schemper M. A solution to the problem of monotone likelihood in Cox
   regression. *Biometrics* 2001;57:114–119.
.. [4] Firth D. Bias reduction of maximum likelihood estimates. *Biometrika* 1993;80:27–38.
.. [5] Peduzzi P et al. Importance of events per independent variable in proportional hazards
   regression analysis. II. Accuracy and precision of regression estimates.
   *J Clin Epidemiol* 1995;48:1503–1510.
"""

from __future__ import annotations

import warnings
from typing import Literal, Sequence

import numpy as np
import pandas as pd
from scipy import optimize, stats

from mibgkit.errors import QCWarning, StatisticsError
from mibgkit.stats import _coxfast
from mibgkit.stats._checks import _check_outcome, _complete_cases
from mibgkit.stats._coxcore import check_ties, fit_cox, monotone_direction
from mibgkit.stats.kaplan_meier import km_table

__all__ = ["ph_test", "events_per_variable", "separation", "firth_cox"]


def _prepare(df, duration, event, covariates, context):
    covariates = list(dict.fromkeys([covariates] if isinstance(covariates, str) else covariates))
    if not covariates:
        raise StatisticsError(f"{context}: no covariates")
    sub = _complete_cases(df, [duration, event, *covariates], context)
    t, e = _check_outcome(sub[duration], sub[event])
    if e.sum() == 0:
        raise StatisticsError(f"{context}: no events among the patients analysed")
    return covariates, t, e, sub[covariates].to_numpy(dtype=float)


# ---------------------------------------------------------------------------------------------
# proportional hazards
# ---------------------------------------------------------------------------------------------

def _time_transform(t: np.ndarray, e: np.ndarray, transform: str) -> np.ndarray:
    if transform == "km":
        tab = km_table(t, e)
        idx = np.searchsorted(tab["time"].to_numpy(), t, side="left")  # times strictly before t
        surv_before = np.concatenate([[1.0], tab["survival"].to_numpy()])[idx]
        return 1.0 - surv_before
    if transform == "identity":
        return t.copy()
    if transform == "rank":
        return stats.rankdata(t)
    if transform == "log":
        return np.log(t)
    raise StatisticsError(f"transform must be 'km', 'identity', 'rank' or 'log', got {transform!r}")


def ph_test(df: pd.DataFrame, duration: str, event: str, covariates: Sequence[str],
            transform: Literal["km", "identity", "rank", "log"] = "km", ties: str = "efron") -> dict:
    r"""Test of proportional hazards from Schoenfeld residuals, per covariate and global.

    Parameters
    ----------
    df : pandas.DataFrame
        One row per patient (complete cases on the columns used are analysed).
    duration, event : str
        Time (> 0) and event (0/1) columns.
    covariates : sequence of str
        Covariates of one multivariable Cox model (one for a univariate check).
    transform : {"km", "identity", "rank", "log"}
        Time scale :math:`g(t)` against which a trend of the coefficient is tested; ``"km"``
        (R's default) is :math:`1 - \hat S(t^-)`, the Kaplan–Meier estimate over all patients.
    ties : {"efron", "breslow"}
        Ties of the Cox fit.

    Returns
    -------
    dict
        ``table``: DataFrame indexed by covariate plus ``GLOBAL`` with ``chisq, df, p``
        (R ``cox.zph(fit)$table``); ``residuals``: DataFrame of the scaled Schoenfeld residuals
        (one row per event: ``time``, ``g`` (transformed time), one column per covariate =
        :math:`\hat\beta_j(t)` estimates for a plot against ``g``); ``beta``: the fitted
        coefficients; ``transform``.

    Notes
    -----
    This is the test of survival ≥ 3.0 (Therneau, 2019), a **score test**, not the older
    correlation test of survival < 3 (Grambsch & Therneau 1994's approximation, which
    ``lifelines``' ``proportional_hazard_test`` also computes); the two differ noticeably in
    small samples. Extend the fitted model by the time-varying terms
    :math:`x_j\,\tilde g(t)` with :math:`\tilde g = g - \bar g` centred at the mean of
    :math:`g` over the event times. At :math:`(\hat\beta, \gamma = 0)` the score of
    :math:`\beta` is 0 and that of :math:`\gamma` is
    :math:`u = \sum_k \tilde g(t_k)\,\{x_k - m(t_k)\}`; with the per-event risk-set
    covariance :math:`V_k` (Efron-weighted, as in the fit) the information of the extended
    model is

    .. math::
        \mathcal I = \sum_k \begin{pmatrix} V_k & \tilde g_k V_k \\ \tilde g_k V_k &
        \tilde g_k^2 V_k \end{pmatrix}.

    For covariate j the statistic is :math:`(0, u_j)\,\mathcal I_{[\beta, \gamma_j]}^{-1}
    (0, u_j)^\top \sim \chi^2_1`; the global one uses all of :math:`\gamma`
    (:math:`\chi^2_p`). Scaled residuals: :math:`\hat\beta + D\,\mathcal I_{\beta\beta}^{-1}
    r_k` with :math:`r_k = x_k - m(t_k)` (tied events share the average of their Efron means)
    and D the number of events. A small p means the effect changes over time (check the plot).

    References
    ----------
    .. [1] Grambsch PM, Therneau TM. *Biometrika* 1994;81:515–526.
    .. [2] Therneau T. ``survival`` 3.0 NEWS and vignette "The cox.zph function", 2019.
    """
    ties = check_ties(ties)
    covariates, t, e, X = _prepare(df, duration, event, covariates, "PH test")
    fit = fit_cox(t, e, X, covariates, ties)
    data = _coxfast.CoxData(t, e, ties)
    Xs = data.sorted_x(X)
    xe, m, v, group = _coxfast.event_moments(data, Xs, fit.beta)
    g_all = _time_transform(t, e, transform)
    g = g_all[data.order][data.ev_pos]
    g = g - g.mean()
    p = X.shape[1]
    r = xe - m
    u = (g[:, None] * r).sum(axis=0)
    i11 = v.sum(axis=0)
    i12 = (g[:, None, None] * v).sum(axis=0)
    i22 = (g[:, None, None] ** 2 * v).sum(axis=0)
    full = np.block([[i11, i12], [i12, i22]])
    rows = []
    for j in range(p):
        kk = list(range(p)) + [p + j]
        uu = np.concatenate([np.zeros(p), [u[j]]])
        chisq = float(uu @ np.linalg.solve(full[np.ix_(kk, kk)], uu))
        rows.append((covariates[j], chisq, 1, float(stats.chi2.sf(chisq, 1))))
    uu = np.concatenate([np.zeros(p), u])
    chisq = float(uu @ np.linalg.solve(full, uu))
    rows.append(("GLOBAL", chisq, p, float(stats.chi2.sf(chisq, p))))
    table = pd.DataFrame(rows, columns=["covariate", "chisq", "df", "p"]).set_index("covariate")
    # scaled Schoenfeld residuals (tied events share the mean of their Efron means)
    n_grp = group.max() + 1
    mbar = np.zeros((n_grp, p))
    np.add.at(mbar, group, m)
    mbar /= np.bincount(group, minlength=n_grp)[:, None]
    rs = xe - mbar[group]
    scaled = fit.beta + e.sum() * rs @ np.linalg.inv(i11)
    resid = pd.DataFrame(scaled, columns=covariates)
    resid.insert(0, "g", g_all[data.order][data.ev_pos])
    resid.insert(0, "time", t[data.order][data.ev_pos])
    return {"table": table, "residuals": resid, "beta": pd.Series(fit.beta, index=covariates),
            "transform": transform}


# ---------------------------------------------------------------------------------------------
# events per variable, separation
# ---------------------------------------------------------------------------------------------

def events_per_variable(df: pd.DataFrame, event: str, covariates: Sequence[str] | int,
                        threshold: float = 10.0, warn: bool = True) -> dict:
    r"""Events per variable (EPV) of a Cox model, with a QC warning below ``threshold``.

    Parameters
    ----------
    df : pandas.DataFrame
        One row per patient.
    event : str
        Event indicator column (0/1).
    covariates : sequence of str or int
        The candidate variables (every candidate screened counts, not only those selected) or
        their number of degrees of freedom.
    threshold : float
        The rule-of-thumb minimum (10, Peduzzi et al. 1995).
    warn : bool
        Issue a :class:`~mibgkit.errors.QCWarning` when EPV < threshold.

    Returns
    -------
    dict
        ``events, n, n_variables, epv, threshold, adequate`` and ``max_variables`` (the largest
        number of variables with EPV ≥ threshold).

    Notes
    -----
    :math:`\mathrm{EPV} = D / p` with D events and p candidate degrees of freedom. Below 10
    coefficients are biased away from zero and their CIs undercover; the paper's 3-variable
    model on 11 events (13 candidates screened) has EPV 3.7 (0.8 for the candidates).

    Examples
    --------
    >>> import pandas as pd
    >>> d = pd.DataFrame({"e": [1] * 11 + [0] * 39})
    >>> r = events_per_variable(d, "e", 3, warn=False)
    >>> round(r["epv"], 2), r["adequate"], r["max_variables"]
    (3.67, False, 1)
    """
    if event not in df.columns:
        raise StatisticsError(f"events per variable: column {event!r} not in the table")
    ev = pd.to_numeric(df[event], errors="coerce").dropna()
    d = int((ev == 1).sum())
    k = int(covariates) if isinstance(covariates, (int, np.integer)) else len(list(covariates))
    if k <= 0:
        raise StatisticsError("events per variable: need at least one variable")
    epv = d / k
    out = {"events": d, "n": int(ev.size), "n_variables": k, "epv": epv, "threshold": float(threshold),
           "adequate": bool(epv >= threshold), "max_variables": int(d // threshold)}
    if warn and epv < threshold:
        warnings.warn(f"{d} events for {k} variables: {epv:.1f} events per variable (< {threshold:g}); "
                      "coefficients will be biased away from 0 and CIs too narrow", QCWarning, stacklevel=2)
    return out


def separation(df: pd.DataFrame, duration: str, event: str, covariates: Sequence[str]) -> pd.DataFrame:
    r"""Detect monotone likelihood (separation) for each covariate alone.

    Parameters
    ----------
    df : pandas.DataFrame
        One row per patient.
    duration, event : str
        Time (> 0) and event (0/1) columns.
    covariates : sequence of str
        Numeric covariates.

    Returns
    -------
    pandas.DataFrame
        Indexed by covariate: ``monotone`` (bool), ``direction`` (+1: the ML estimate of β is
        +∞, −1: −∞, 0: finite), ``binary``, and for binary covariates ``events_low``,
        ``events_high`` (events in the lower and upper level), ``n``, ``events``.

    Notes
    -----
    For one covariate the Cox partial likelihood is monotone in β (no finite maximum) exactly
    when, at every event time, each event has the largest covariate value of its risk set
    (β → +∞) — or at every event time the smallest (β → −∞); ties with the extreme count as
    extreme. For a binary covariate this includes "no events in one level" (and more: the
    events of the upper level all precede every censoring of the lower level). Multivariable
    separation (a combination of covariates) is not detected here; it shows as a
    non-converging ordinary fit, where :func:`firth_cox` still gives finite estimates.

    References
    ----------
    .. [1] Heinze G, Schemper M. *Biometrics* 2001;57:114–119, §2.
    """
    covariates, t, e, X = _prepare(df, duration, event, covariates, "separation check")
    rows = []
    for j, c in enumerate(covariates):
        x = X[:, j]
        direction = monotone_direction(t, e, x)
        levels = np.unique(x)
        binary = levels.size == 2
        rows.append({
            "covariate": c, "monotone": direction != 0, "direction": direction, "binary": binary,
            "events_low": int(e[x == levels[0]].sum()) if binary else np.nan,
            "events_high": int(e[x == levels[1]].sum()) if binary else np.nan,
            "n": int(t.size), "events": int(e.sum()),
        })
    return pd.DataFrame(rows).set_index("covariate")


# ---------------------------------------------------------------------------------------------
# Firth
# ---------------------------------------------------------------------------------------------

def _penalised(data, Xs, beta):
    ll, u, info = data.derivatives(Xs, beta)
    sign, logdet = np.linalg.slogdet(info)
    if sign <= 0:
        return -np.inf, u, info, None
    d3 = _coxfast.third_derivative(data, Xs, beta)
    inv = np.linalg.inv(info)
    u_star = u + 0.5 * np.einsum("ab,bac->c", inv, d3)
    return ll + 0.5 * logdet, u_star, info, ll


def _firth_newton(data, Xs, beta0, free: np.ndarray, maxiter: int = 200, tol: float = 1e-10):
    """Maximise the penalised likelihood over the coordinates ``free`` (others held fixed)."""
    beta = np.asarray(beta0, dtype=float).copy()
    pl, u, info, ll = _penalised(data, Xs, beta)
    converged = False
    for _ in range(maxiter):
        if not free.any():
            converged = True
            break
        step = np.zeros_like(beta)
        step[free] = np.linalg.solve(info[np.ix_(free, free)], u[free])
        big = np.max(np.abs(step))
        if big > 5:  # cap the step as coxphf's maxstep does
            step *= 5 / big
        new = beta + step
        pl_new, u_new, info_new, ll_new = _penalised(data, Xs, new)
        halvings = 0
        while (not np.isfinite(pl_new) or pl_new < pl - 1e-12) and halvings < 40:
            step /= 2
            new = beta + step
            pl_new, u_new, info_new, ll_new = _penalised(data, Xs, new)
            halvings += 1
        beta, pl, u, info, ll = new, pl_new, u_new, info_new, ll_new
        if np.max(np.abs(step)) < 1e-9 and np.max(np.abs(u[free])) < 1e-6:
            converged = True
            break
    return beta, pl, info, ll, converged


def firth_cox(df: pd.DataFrame, duration: str, event: str, covariates: Sequence[str],
              ties: str = "breslow", conf_level: float = 0.95, profile: bool = True) -> pd.DataFrame:
    r"""Firth-penalised Cox regression: finite, less biased HRs for small or separated data.

    Parameters
    ----------
    df : pandas.DataFrame
        One row per patient (complete cases on the columns used).
    duration, event : str
        Time (> 0) and event (0/1) columns.
    covariates : sequence of str
        Numeric covariates of one model.
    ties : {"breslow", "efron"}
        Tie handling of the partial likelihood. Breslow is the default because Heinze &
        Schemper's method and R ``coxphf`` are defined with it; Efron is available.
    conf_level : float
        Level of the intervals.
    profile : bool
        Profile penalised-likelihood intervals and penalised LR p-values (as ``coxphf``);
        ``False`` gives Wald intervals and Wald p from the penalised fit.

    Returns
    -------
    pandas.DataFrame
        Indexed by covariate: ``hr, ci_lower, ci_upper, p, beta, se, wald_p, method, n,
        events``; ``method`` is ``"profile"`` or ``"wald"``. Attributes (``.attrs``):
        ``loglik`` (unpenalised ℓ at the estimate), ``penalised_loglik``, ``ties``.

    Notes
    -----
    Firth's penalty is Jeffreys' prior: maximise

    .. math::
        \ell^*(\beta) = \ell(\beta) + \tfrac12 \log\det I(\beta),

    whose score is :math:`U^*_c = U_c + \tfrac12 \operatorname{tr}\{I^{-1}\,\partial I/\partial
    \beta_c\}`; Newton–Raphson :math:`\beta \leftarrow \beta + I^{-1}U^*` with step halving
    (and steps capped at 5). The estimate is finite even under monotone likelihood (a
    covariate that separates events), where ordinary Cox diverges. ``se`` is
    :math:`\sqrt{\{I(\hat\beta)^{-1}\}_{jj}}`. Profile interval: the :math:`b` with
    :math:`2\{\ell^*(\hat\beta) - \max_{\beta_{-j}} \ell^*(b, \beta_{-j})\} = \chi^2_{1,1-\alpha}`;
    ``p`` is the penalised LR test of :math:`\beta_j = 0` with the same profile. Wald
    intervals are unreliable under separation (the penalised likelihood is skewed).

    References
    ----------
    .. [1] Heinze G, Schemper M. A solution to the problem of monotone likelihood in Cox
       regression. *Biometrics* 2001;57:114–119.
    .. [2] Firth D. *Biometrika* 1993;80:27–38.
    .. [3] Heinze G, Ploner M. R package ``coxphf``.
    """
    ties = check_ties(ties)
    covariates, t, e, X = _prepare(df, duration, event, covariates, "Firth Cox")
    for j, c in enumerate(covariates):
        if np.ptp(X[:, j]) == 0:
            raise StatisticsError(f"Firth Cox: covariate {c!r} is constant")
    if X.shape[1] > 1 and np.linalg.matrix_rank(X - X.mean(axis=0)) < X.shape[1]:
        raise StatisticsError(f"Firth Cox: covariates {covariates} are collinear")
    data = _coxfast.CoxData(t, e, ties)
    Xs = data.sorted_x(X)
    p = X.shape[1]
    allfree = np.ones(p, dtype=bool)
    beta, pl, info, ll, ok = _firth_newton(data, Xs, np.zeros(p), allfree)
    if not ok:
        raise StatisticsError(f"Firth Cox on {covariates} did not converge")
    cov = np.linalg.inv(info)
    se = np.sqrt(np.diag(cov))
    z = float(stats.norm.ppf(0.5 + conf_level / 2))
    crit = float(stats.chi2.ppf(conf_level, 1))
    wald_p = 2 * stats.norm.sf(np.abs(beta / se))
    lo, hi, pv = beta - z * se, beta + z * se, wald_p.copy()
    if profile:
        for j in range(p):
            free = allfree.copy()
            free[j] = False
            warm = {"beta": beta.copy()}

            def prof(b, j=j, free=free, warm=warm):
                start = warm["beta"].copy()
                start[j] = b
                bb, plb, _, _, _ = _firth_newton(data, Xs, start, free)
                warm["beta"] = bb
                return 2.0 * (pl - plb)

            pv[j] = float(stats.chi2.sf(max(prof(0.0), 0.0), 1))
            lo[j] = _profile_root(lambda b: prof(b) - crit, beta[j], -se[j], warm, beta)
            hi[j] = _profile_root(lambda b: prof(b) - crit, beta[j], se[j], warm, beta)
    out = pd.DataFrame({
        "hr": np.exp(beta), "ci_lower": np.exp(lo), "ci_upper": np.exp(hi), "p": pv,
        "beta": beta, "se": se, "wald_p": wald_p, "method": "profile" if profile else "wald",
        "n": int(t.size), "events": int(e.sum()),
    }, index=pd.Index(covariates, name="covariate"))
    out.attrs.update(loglik=float(ll), penalised_loglik=float(pl), ties=ties)
    return out


def _profile_root(f, centre: float, step: float, warm: dict, beta_hat: np.ndarray) -> float:
    """Root of f on one side of ``centre``, bracketing outward by doubling steps."""
    warm["beta"] = beta_hat.copy()
    a = centre
    b = centre + step
    for _ in range(60):
        if f(b) > 0:
            break
        a = b
        step *= 2
        b = centre + step
    else:
        return float(np.sign(step) * np.inf)
    warm["beta"] = beta_hat.copy()
    return float(optimize.brentq(f, a, b, xtol=1e-10))

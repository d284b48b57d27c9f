r"""Calibration of a frozen Cox model in a new cohort, and the likelihood-ratio test of nested models.

A published Cox model gives hazard ratios, hence a linear predictor (prognostic index)
:math:`\mathrm{lp} = \sum_i \ln(\mathrm{HR}_i)\, x_i`, but no baseline hazard. Applied frozen to
a second centre's patients it can be checked in two ways:

calibration_slope
    Do the published effect sizes hold? The Cox coefficient of the outcome on the frozen lp
    (slope 1: they hold; below 1: they were optimistic, too extreme for these patients).
calibration_at_horizon
    Do predicted and observed risks at a horizon agree, per risk group and overall? The baseline
    survival is re-estimated on this cohort with the lp as an offset (the published model does
    not give it), so this checks the *shape* of the risk gradient, and the observed/expected
    ratio of the groups against the cohort's own baseline.
lr_test_nested
    Does adding a feature (ASP) to a model (Tmax/Lmax) improve the fit? The likelihood-ratio test
    of nested Cox models on the same complete cases, as R ``anova(fit_base, fit_full)``.

Times are in days. Everything that cannot be estimated as a whole (no events, constant lp,
a horizon beyond the last follow-up) raises :class:`~mibgkit.errors.StatisticsError` with the
reason; inside a table, a row that cannot be estimated is NaN with its reason in a ``reason``
column.

References
----------
.. [1] Cox DR. Two further applications of a model for binary regression. *Biometrika*
   1958;45:562–565.
.. [2] Miller ME, Hui SL, Tierney WM. Validation techniques for logistic regression models.
   *Stat Med* 1991;10:1213–1226; and Miller ME, Langefeld CD, Tierney WM, Hui SL, McDonald CJ.
   Validation of probabilistic predictions. *Med Decis Making* 1993;13:49–58.
.. [3] Van Calster B, McLernon DJ, van Smeden M, Wynants L, Steyerberg EW. Calibration: the
   Achilles heel of predictive analytics. *BMC Med* 2019;17:230.
.. [4] Royston P, Altman DG. External validation of a Cox prognostic model: principles and
   methods. *BMC Med Res Methodol* 2013;13:33.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from mibgkit.errors import StatisticsError
from mibgkit.stats._checks import _as_float, _check_outcome, _complete_cases, check_horizon
from mibgkit.stats._coxcore import Z975, Ties, check_ties, fit_cox, null_loglik
from mibgkit.stats.kaplan_meier import km_table

__all__ = ["calibration_slope", "calibration_at_horizon", "lr_test_nested"]


def _check_lp(lp, n: int) -> np.ndarray:
    x = _as_float(lp, "lp")
    if x.size != n:
        raise StatisticsError(f"lp ({x.size}) and durations ({n}) differ in length")
    if not np.isfinite(x).all():
        raise StatisticsError(f"lp has {int((~np.isfinite(x)).sum())} missing or infinite values; "
                              "drop those patients first")
    return x


def calibration_slope(durations, events, lp, ties: Ties = "efron") -> dict:
    r"""Calibration slope of a frozen Cox linear predictor: the Cox coefficient of the outcome on it.

    Parameters
    ----------
    durations : array_like of float
        Times to event or censoring (days, > 0).
    events : array_like of {0, 1}
        1 = event, 0 = censored.
    lp : array_like of float
        The frozen linear predictor (prognostic index) of each patient,
        :math:`\sum_i \ln(\mathrm{HR}_i) x_i` with the published HRs.
    ties : {"efron", "breslow"}
        Tie handling of the Cox fit (``"efron"``: R's default; ``"breslow"``: SPSS).

    Returns
    -------
    dict
        ``slope`` (:math:`\hat\gamma`), ``se`` (model-based), ``ci_lower``, ``ci_upper``
        (Wald 95 % on the coefficient scale), ``p`` (two-sided Wald test of slope = 1),
        ``p_zero`` (Wald test of slope = 0: does the lp predict at all), ``n``, ``events``.

    Raises
    ------
    StatisticsError
        Bad input, no events, a constant lp, or a lp whose Cox fit does not exist (a binary lp
        with all events on one side: monotone likelihood).

    Notes
    -----
    Fit :math:`h(t \mid \mathrm{lp}) = h_0(t) \exp(\gamma \cdot \mathrm{lp})` on the new cohort
    (Cox 1958 for the logistic analogue; Miller et al. for its use in validation; Van Calster
    et al. 2019). :math:`\gamma = 1`: the published effect sizes hold; :math:`\gamma < 1`: the
    predictions are too extreme (overfitting / optimism); :math:`\gamma > 1`: too modest. With
    :math:`s` the inverse observed information,

    .. math::
        \mathrm{CI} = \hat\gamma \pm z_{0.975}\, s, \qquad
        p = 2\{1 - \Phi(|\hat\gamma - 1| / s)\}, \qquad z_{0.975} = 1.959964,

    as R ``coxph(Surv(t, e) ~ lp)`` gives :math:`\hat\gamma` and :math:`s`. A lp fitted on the
    same data has slope exactly 1 (the score equation).

    Examples
    --------
    >>> t = [5, 8, 3, 9, 12, 4, 7, 10, 6, 11]
    >>> e = [1, 0, 1, 1, 0, 1, 0, 1, 1, 0]
    >>> lp = [0.9, 0.4, 0.2, 0.3, -0.4, 0.8, 0.6, -0.2, 0.5, 0.0]
    >>> r = calibration_slope(t, e, lp)  # R coxph(Surv(t, e) ~ lp): 3.321, se 1.794
    >>> round(r["slope"], 3), round(r["se"], 3), round(r["p"], 3)
    (3.321, 1.794, 0.196)
    """
    ties = check_ties(ties)
    t, e = _check_outcome(durations, events)
    x = _check_lp(lp, t.size)
    if e.sum() == 0:
        raise StatisticsError(f"calibration slope not estimable: no events among the {t.size} patients")
    if np.ptp(x) == 0:
        raise StatisticsError(
            f"calibration slope not estimable: the linear predictor is constant ({x[0]:g}) in all "
            f"{t.size} patients"
        )
    try:
        fit = fit_cox(t, e, x[:, None], ["lp"], ties)
    except StatisticsError as exc:
        raise StatisticsError(f"calibration slope not estimable: {exc.reason}") from None
    b = float(fit.beta[0])
    se = float(np.sqrt(fit.cov[0, 0]))
    return {
        "slope": b,
        "se": se,
        "ci_lower": b - Z975 * se,
        "ci_upper": b + Z975 * se,
        "p": float(2.0 * stats.norm.sf(abs(b - 1.0) / se)),
        "p_zero": float(2.0 * stats.norm.sf(abs(b) / se)),
        "n": int(t.size),
        "events": int(e.sum()),
    }


def _baseline_cumhaz(t: np.ndarray, e: np.ndarray, lp: np.ndarray, horizon: float, ties: Ties) -> float:
    r"""Cumulative baseline hazard :math:`\Lambda_0(h)` (at lp = 0) of a Cox model whose only term is
    the offset ``lp``: Breslow's estimator, with Efron's correction for tied events."""
    shift = float(np.mean(lp))
    r = np.exp(lp - shift)
    times = np.unique(t[(e == 1) & (t <= horizon)])
    cum = 0.0
    for u in times:
        risk = r[t >= u].sum()
        dead = (t == u) & (e == 1)
        d = int(dead.sum())
        if ties == "breslow" or d == 1:
            cum += d / risk
        else:
            cum += float(np.sum(1.0 / (risk - np.arange(d) / d * r[dead].sum())))
    return cum * np.exp(-shift)


def _risk_groups(lp: np.ndarray, groups: int) -> np.ndarray:
    """1-based risk groups (1 = lowest lp); see the Notes of :func:`calibration_at_horizon`."""
    levels = np.unique(lp)
    if levels.size <= groups:
        return np.searchsorted(levels, lp) + 1
    x = np.sort(lp)
    n = x.size
    # inverse-ECDF (type 1) quantiles in integer arithmetic: the ceil(k n / g)-th smallest lp
    edges = np.unique([x[-(-k * n // groups) - 1] for k in range(1, groups)])
    raw = np.searchsorted(edges, lp, side="left")  # number of edges strictly below lp
    return np.unique(raw, return_inverse=True)[1].ravel() + 1


def _km_risk_at(t: np.ndarray, e: np.ndarray, horizon: float, conf_level: float):
    """Observed risk 1 − KM(h) with its interval, patients at risk at h, and why it is missing."""
    tab = km_table(t, e, conf_level)
    at_risk = int((t >= horizon).sum())
    k = int(np.searchsorted(tab["time"].to_numpy(), horizon, side="right"))
    if k == 0:
        return 0.0, 0.0, 0.0, at_risk, ""
    row = tab.iloc[k - 1]
    if at_risk == 0 and row["survival"] > 0:
        return (np.nan, np.nan, np.nan, 0,
                f"follow-up ends at {t.max():g} days (censored), before the horizon: survival not estimable")
    return 1.0 - row["survival"], 1.0 - row["ci_upper"], 1.0 - row["ci_lower"], at_risk, ""


def calibration_at_horizon(durations, events, lp, horizon: float, groups: int = 3,
                           ties: Ties = "efron", conf_level: float = 0.95) -> pd.DataFrame:
    r"""Predicted against observed risk at a horizon, per risk group of a frozen linear predictor.

    Parameters
    ----------
    durations : array_like of float
        Times to event or censoring (days, > 0).
    events : array_like of {0, 1}
        1 = event, 0 = censored.
    lp : array_like of float
        Frozen linear predictor (published HRs), higher = higher risk.
    horizon : float
        Time at which risk is compared (days), e.g. ``3 * 365.25``.
    groups : int
        Number of risk groups (quantile groups of lp; fewer when lp has fewer distinct values).
    ties : {"efron", "breslow"}
        Ties of the baseline-hazard estimate (R ``survfit.coxph`` follows the fit's ties).
    conf_level : float
        Level of the Kaplan–Meier interval of the observed risk.

    Returns
    -------
    pandas.DataFrame
        One row per risk group (``group`` 1 = lowest lp) and a last row ``group = "overall"``,
        columns ``group, n, events, lp_mean, lp_min, lp_max, predicted, observed,
        observed_ci_lower, observed_ci_upper, n_at_risk, oe_ratio, reason``. ``events`` counts
        all events (any time), ``n_at_risk`` the patients followed to the horizon
        (:math:`t \ge h`). ``oe_ratio`` = observed / predicted; in the ``overall`` row it is the
        calibration-in-the-large ratio O/E. ``attrs["baseline_survival"]`` holds
        :math:`\hat S_0(h)` and ``attrs["horizon"]`` the horizon.

    Raises
    ------
    StatisticsError
        Bad input, no events, ``groups`` < 1, or a horizon beyond the last follow-up of the
        cohort (survival there is not estimable). A single group whose follow-up ends (censored)
        before the horizon gets NaN observed values and the reason in ``reason``.

    Notes
    -----
    *Baseline re-estimated here.* A published Cox model reports hazard ratios only, not its
    baseline hazard, so absolute risks need one: it is estimated on this cohort from the Cox
    model with the frozen lp as an offset (no coefficient fitted),

    .. math::
        \hat\Lambda_0(h) = \sum_{t_j \le h} \sum_{l=0}^{d_j - 1}
        \frac{1}{\sum_{i \in R_j} e^{\mathrm{lp}_i} - \tfrac{l}{d_j} \sum_{i \in D_j} e^{\mathrm{lp}_i}},
        \qquad \hat S_0(h) = e^{-\hat\Lambda_0(h)},

    (Efron; Breslow drops the :math:`l/d_j` term), which is R
    ``survfit(coxph(Surv(t, e) ~ offset(lp), ties = ties), newdata = data.frame(lp = 0))``.
    Each patient's predicted risk is :math:`1 - \hat S_0(h)^{\exp(\mathrm{lp}_i)}`, averaged in
    the group. Because the baseline comes from the same patients, the overall O/E is close to 1
    by construction; the groups show whether the published risk *gradient* holds (Royston &
    Altman 2013; Van Calster et al. 2019, "moderate calibration").

    Observed risk: :math:`1 - \hat S_{KM}(h)` in the group (right-continuous: an event at h
    counts), with the log-type Greenwood interval of :func:`mibgkit.stats.km_table`
    transformed to the risk scale.

    Groups: with at most ``groups`` distinct lp values, one group per value. Otherwise the
    quantile groups of lp with edges at the order statistics
    :math:`e_k = \mathrm{lp}_{(\lceil k n / g \rceil)}`, k = 1, …, g − 1 (inverse-ECDF quantiles,
    computed in integer arithmetic so that rounding never moves a patient), intervals closed on
    the right: group 1 is :math:`\mathrm{lp} \le e_1`, group 2 :math:`e_1 < \mathrm{lp} \le e_2`,
    and so on. Tied lp values are never split; equal edges merge groups (fewer groups result).
    In R: ``cut(lp, c(-Inf, unique(quantile(lp, (1:(g-1))/g, type = 1)), Inf), labels = FALSE)``,
    renumbered 1, 2, ….

    Examples
    --------
    >>> t = [5, 8, 3, 9, 12, 4, 7, 10, 6, 11, 2, 13]
    >>> e = [1, 0, 1, 1, 0, 1, 0, 1, 1, 0, 1, 0]
    >>> lp = [0.6, 0.2, 0.9, 0.3, -0.4, 0.8, 0.1, -0.2, 0.5, 0.0, 1.0, -0.5]
    >>> tab = calibration_at_horizon(t, e, lp, horizon=6, groups=2)
    >>> print(tab[["group", "n", "predicted", "observed", "oe_ratio"]].round(3).to_string(index=False))
      group  n  predicted  observed  oe_ratio
          1  6      0.313     0.000     0.000
          2  6      0.567     0.833     1.470
    overall 12      0.440     0.417     0.947
    """
    ties = check_ties(ties)
    t, e = _check_outcome(durations, events)
    x = _check_lp(lp, t.size)
    h = check_horizon(horizon)
    if int(groups) != groups or groups < 1:
        raise StatisticsError(f"groups must be a positive integer, got {groups!r}")
    if e.sum() == 0:
        raise StatisticsError(f"calibration not estimable: no events among the {t.size} patients")
    if h > t.max():
        raise StatisticsError(
            f"calibration at {h:g} days not estimable: the horizon is beyond the last follow-up "
            f"({t.max():g} days)"
        )
    s0 = float(np.exp(-_baseline_cumhaz(t, e, x, h, ties)))
    with np.errstate(over="ignore"):
        pred = 1.0 - s0 ** np.exp(x)
    g = _risk_groups(x, int(groups))
    rows = []
    for label, mask in [*((k, g == k) for k in np.unique(g)), ("overall", np.ones(t.size, bool))]:
        obs, lo, hi, at_risk, reason = _km_risk_at(t[mask], e[mask], h, conf_level)
        p = float(pred[mask].mean())
        rows.append({
            "group": label if label == "overall" else int(label),
            "n": int(mask.sum()),
            "events": int(e[mask].sum()),
            "lp_mean": float(x[mask].mean()),
            "lp_min": float(x[mask].min()),
            "lp_max": float(x[mask].max()),
            "predicted": p,
            "observed": float(obs),
            "observed_ci_lower": float(lo),
            "observed_ci_upper": float(hi),
            "n_at_risk": at_risk,
            "oe_ratio": float(obs / p) if p > 0 else np.nan,
            "reason": reason,
        })
    out = pd.DataFrame(rows)
    out.attrs["baseline_survival"] = s0
    out.attrs["horizon"] = h
    return out


def lr_test_nested(df: pd.DataFrame, duration: str, event: str, base: Sequence[str], added: Sequence[str],
                   ties: Ties = "efron") -> dict:
    r"""Likelihood-ratio test of nested Cox models (does ``added`` improve on ``base``?).

    Parameters
    ----------
    df : pandas.DataFrame
        One row per patient.
    duration, event : str
        Columns with the time (days, > 0) and the event indicator (0/1).
    base : sequence of str
        Covariates of the smaller model (may be empty: the null model).
    added : sequence of str
        Covariates added in the larger model (at least one, none of them in ``base``).
    ties : {"efron", "breslow"}
        Tie handling of both fits.

    Returns
    -------
    dict
        ``statistic`` (χ²), ``df`` (number of added covariates), ``p``, ``loglik_base``,
        ``loglik_full`` (partial log-likelihoods), ``n``, ``events``, ``n_dropped`` (rows left
        out for a missing value in any of the columns).

    Raises
    ------
    StatisticsError
        Missing or non-numeric columns, no events, or a model that cannot be fitted (constant,
        collinear or separated covariates, non-convergence).

    Notes
    -----
    Both models are fitted to the complete cases of *all* columns (so that they are nested on
    the same patients; a :class:`~mibgkit.errors.QCWarning` counts the rows dropped), and

    .. math::
        \chi^2 = 2\{\ell(\hat\beta_{full}) - \ell(\hat\beta_{base})\} \sim \chi^2_{k},

    k = ``len(added)``, as R ``anova(fit_base, fit_full)`` on ``na.omit`` data (Cox 1972;
    Therneau & Grambsch 2000, §3.4).

    Examples
    --------
    >>> import pandas as pd
    >>> d = pd.DataFrame({"t": [5, 8, 3, 9, 12, 4, 7, 10, 6, 11], "e": [1, 0, 1, 1, 0, 1, 0, 1, 1, 0],
    ...                   "x": [2.0, 1.0, 1.2, 1.5, 0.5, 2.5, 3.0, 0.2, 0.4, 1.1],
    ...                   "z": [0, 1, 1, 0, 0, 1, 0, 1, 1, 0]})
    >>> r = lr_test_nested(d, "t", "e", base=["x"], added=["z"])
    >>> r["df"], round(r["statistic"], 3), round(r["p"], 3)  # R anova(): Chisq 4.214, p 0.04009
    (1, 4.214, 0.04)
    """
    ties = check_ties(ties)
    base = [base] if isinstance(base, str) else list(base)
    added = [added] if isinstance(added, str) else list(added)
    if not added:
        raise StatisticsError("likelihood-ratio test: no covariates added to the base model")
    both = sorted(set(base) & set(added))
    if both:
        raise StatisticsError(f"likelihood-ratio test: {both} are in both the base and the added covariates")
    sub = _complete_cases(df, [duration, event, *base, *added], "likelihood-ratio test")
    t, e = _check_outcome(sub[duration], sub[event])
    if e.sum() == 0:
        raise StatisticsError(f"likelihood-ratio test: no events among the {t.size} patients analysed")
    full = [*base, *added]
    try:
        ll_base = (fit_cox(t, e, sub[base].to_numpy(), base, ties).loglik if base
                   else null_loglik(t, e, ties))
        ll_full = fit_cox(t, e, sub[full].to_numpy(), full, ties).loglik
    except StatisticsError as exc:
        raise StatisticsError(f"likelihood-ratio test not estimable: {exc.reason}") from None
    stat = max(2.0 * (ll_full - ll_base), 0.0)
    k = len(added)
    return {
        "statistic": float(stat),
        "df": k,
        "p": float(stats.chi2.sf(stat, k)),
        "loglik_base": float(ll_base),
        "loglik_full": float(ll_full),
        "n": int(t.size),
        "events": int(e.sum()),
        "n_dropped": int(len(df) - t.size),
    }

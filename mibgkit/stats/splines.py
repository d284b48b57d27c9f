r"""Continuous markers kept continuous: HR per IQR and restricted cubic splines in Cox models.

Dichotomising ASP or Tmax/Lmax at an "optimal" cutoff throws information away and
overstates the effect. The alternatives here: the HR for a change from the first to the
third quartile (a linear term), and a restricted cubic spline (Stone & Koo 1985; Harrell's
parameterisation, as R ``rms::rcs`` / ``Hmisc::rcspline.eval``) that shows the shape of the
log-hazard without assuming one.

Functions
---------
rcs_knots
    Knot positions at Harrell's default quantiles.
rcs_basis
    The restricted cubic spline design matrix (linear term + k − 2 non-linear terms).
hr_per_iqr
    Univariate Cox HR per interquartile-range increase, with 95 % CI and p.
cox_spline
    Cox model of one marker as a spline: coefficients, tests of association and
    non-linearity, and the log relative hazard curve with pointwise 95 % CI for plotting.

References
----------
.. [1] Stone CJ, Koo CY. Additive splines in statistics. *Proc Stat Comp Sect Am Stat Assoc*
   1985:45–48.
.. [2] Harrell FE. *Regression Modeling Strategies*, 2nd ed. Springer, 2015, §2.4.5–2.4.6.
.. [3] Royston P, Altman DG, Sauerbrei W. Dichotomizing continuous predictors in multiple
   regression: a bad idea. *Stat Med* 2006;25:127–141.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from mibgkit.errors import StatisticsError
from mibgkit.stats._checks import _check_outcome, _complete_cases
from mibgkit.stats._coxcore import Z975, check_ties, fit_cox

__all__ = ["rcs_knots", "rcs_basis", "hr_per_iqr", "cox_spline"]

#: Harrell's default knot quantiles for 3–7 knots (``Hmisc::rcspline.eval``: equally spaced from
#: 0.1 to 0.9 for 3 knots, 0.05 to 0.95 for 4–6, 0.025 to 0.975 for 7), for reference.
KNOT_QUANTILES = {
    3: (0.10, 0.50, 0.90),
    4: (0.05, 0.35, 0.65, 0.95),
    5: (0.05, 0.275, 0.50, 0.725, 0.95),
    6: (0.05, 0.23, 0.41, 0.59, 0.77, 0.95),
    7: (0.025, 0.1833, 0.3417, 0.50, 0.6583, 0.8167, 0.975),
}


def rcs_knots(x, n_knots: int = 4, fractied: float = 0.05) -> np.ndarray:
    r"""Knots of a restricted cubic spline at Harrell's quantiles (``Hmisc::rcspline.eval``).

    Parameters
    ----------
    x : array_like of float
        The covariate (missing values ignored).
    n_knots : int
        3 to 7 (3 or 4 for about 50 patients).
    fractied : float
        If the smallest (largest) value holds at least this share of the data, the first
        (last) knot is placed at the next distinct value and the other knots at the quantiles
        of the remaining data (R's rule for a point mass at an extreme).

    Returns
    -------
    numpy.ndarray
        Sorted distinct knots.

    Notes
    -----
    Quantiles (type 7, R's default) at :data:`KNOT_QUANTILES` (3 knots: 0.1, 0.5, 0.9; 4
    knots: 0.05, 0.35, 0.65, 0.95), except that with fewer than 100 values the outer knots
    are the 5th smallest and 5th largest value. With ≤ ``n_knots`` + 2 distinct values the
    interior distinct values are used.

    Examples
    --------
    >>> rcs_knots(range(1, 51), 3).tolist()
    [5.0, 25.5, 46.0]
    """
    xx = _as_1d(x, "x")
    xx = xx[~np.isnan(xx)]
    n = xx.size
    if n < 6:
        raise StatisticsError(f"rcs knots: need at least 6 non-missing values, got {n}")
    if n_knots not in KNOT_QUANTILES:
        raise StatisticsError(f"n_knots must be 3 to 7, got {n_knots}")
    xu = np.unique(xx)
    if xu.size - 2 <= n_knots:
        return xu[1:-1]
    nke = n_knots
    first: list[float] = []
    last: list[float] = []
    over_first = over_last = False
    if 0 < fractied < 1:
        vals, counts = np.unique(xx, return_counts=True)
        f = counts / n
        if f[1:-1].max() < fractied:
            if f[0] >= fractied:
                first = [float(xx[xx > xx.min()].min())]
                xx = xx[xx > first[0]]
                nke -= 1
                over_first = True
            if f[-1] >= fractied:
                last = [float(xx[xx < xx.max()].max())]
                xx = xx[xx < last[0]]
                nke -= 1
                over_last = True
    if nke == 1:
        knots = np.array([np.median(xx)])
    elif np.unique(xx).size <= nke:
        knots = np.unique(xx)
    else:
        outer = 0.05 if n_knots > 3 else 0.1
        if n_knots > 6:
            outer = 0.025
        probs = np.linspace(0.5, 1 - outer, nke) if nke == 2 else np.linspace(outer, 1 - outer, nke)
        knots = np.quantile(xx, probs)
        if np.unique(knots).size < min(nke, 3):
            raise StatisticsError("rcs knots: too many tied values for the default knots; give knots explicitly")
        if xx.size < 100:
            xs = np.sort(xx)
            if not over_first:
                knots[0] = xs[4]
            if not over_last:
                knots[-1] = xs[-5]
    knots = np.unique(np.concatenate([first, knots, last]))
    if knots.size < 3:
        raise StatisticsError("rcs: fewer than 3 distinct knots; the covariate has too few distinct values")
    return knots


def _as_1d(x, what) -> np.ndarray:
    try:
        arr = np.asarray(x, dtype=float).ravel()
    except (TypeError, ValueError) as exc:
        raise StatisticsError(f"{what} must be numeric ({exc})") from None
    return arr


def rcs_basis(x, knots, name: str = "x", norm: int = 2) -> pd.DataFrame:
    r"""Restricted cubic spline design matrix in Harrell's parameterisation (``rms::rcs``).

    Parameters
    ----------
    x : array_like of float
        Values to evaluate.
    knots : array_like of float
        k ≥ 3 increasing knots :math:`t_1 < \dots < t_k`.
    name : str
        Column prefix: columns are ``name``, ``name'``, ``name''``, … (as R names them).
    norm : {0, 1, 2}
        Scaling of the non-linear terms: 2 (R's default) divides by
        :math:`\tau = (t_k - t_1)^{2/3}` inside the cubes, 1 by :math:`t_k - t_{k-1}`, 0 none.

    Returns
    -------
    pandas.DataFrame
        k − 1 columns: x itself and the k − 2 non-linear terms.

    Notes
    -----
    With :math:`(u)_+ = \max(u, 0)`, for :math:`j = 1, \dots, k-2`:

    .. math::
        C_j(x) = \Bigl(\frac{x - t_j}{\tau}\Bigr)_+^3
        - \frac{t_k - t_j}{t_k - t_{k-1}} \Bigl(\frac{x - t_{k-1}}{\tau}\Bigr)_+^3
        + \frac{t_{k-1} - t_j}{t_k - t_{k-1}} \Bigl(\frac{x - t_k}{\tau}\Bigr)_+^3 .

    Each :math:`C_j` is a cubic spline with continuous first and second derivatives, 0 left of
    :math:`t_1` and linear right of :math:`t_k` (the cubic and quadratic terms cancel), so any
    combination :math:`\beta_0 x + \sum_j \beta_j C_j(x)` is linear in both tails.

    Examples
    --------
    >>> b = rcs_basis([0.0, 1.0, 2.0, 3.0], [0.0, 1.0, 2.0], norm=0)
    >>> b.round(3).to_numpy().tolist()
    [[0.0, 0.0], [1.0, 1.0], [2.0, 6.0], [3.0, 12.0]]
    """
    xv = _as_1d(x, "x")
    t = np.sort(_as_1d(knots, "knots"))
    k = t.size
    if k < 3 or np.unique(t).size < k:
        raise StatisticsError(f"rcs needs at least 3 distinct knots, got {t.tolist()}")
    if norm == 2:
        tau = (t[-1] - t[0]) ** (2.0 / 3.0)
    elif norm == 1:
        tau = t[-1] - t[-2]
    elif norm == 0:
        tau = 1.0
    else:
        raise StatisticsError(f"norm must be 0, 1 or 2, got {norm}")
    cols = {name: xv}
    for j in range(k - 2):
        c = (np.maximum((xv - t[j]) / tau, 0) ** 3
             + ((t[-2] - t[j]) * np.maximum((xv - t[-1]) / tau, 0) ** 3
                - (t[-1] - t[j]) * np.maximum((xv - t[-2]) / tau, 0) ** 3) / (t[-1] - t[-2]))
        cols[name + "'" * (j + 1)] = c
    return pd.DataFrame(cols)


def hr_per_iqr(df: pd.DataFrame, duration: str, event: str, covariates: Sequence[str],
               ties: str = "efron") -> pd.DataFrame:
    r"""Univariate Cox hazard ratio per interquartile-range increase of each covariate.

    Parameters
    ----------
    df : pandas.DataFrame
        One row per patient.
    duration, event : str
        Time (> 0) and event (0/1) columns.
    covariates : sequence of str
        Continuous covariates.
    ties : {"efron", "breslow"}

    Returns
    -------
    pandas.DataFrame
        Indexed by covariate: ``q1, q3, iqr, hr_per_iqr, ci_lower, ci_upper, p, hr_per_unit,
        n, events``.

    Notes
    -----
    With the linear Cox coefficient :math:`\hat\beta` (SE :math:`s`) and
    :math:`\mathrm{IQR} = Q_3 - Q_1` (quantile type 7, over the patients analysed):
    :math:`\mathrm{HR}_\mathrm{IQR} = e^{\hat\beta \cdot \mathrm{IQR}}`, CI
    :math:`e^{(\hat\beta \pm z_{0.975} s)\,\mathrm{IQR}}`, Wald p unchanged by the scaling —
    the effect ``rms::summary`` reports for a linear term. Unlike an HR per unit (ASP's 38 per
    unit is per change from a sphere to an extremely irregular shape) it compares typical
    patients.
    """
    ties = check_ties(ties)
    covariates = [covariates] if isinstance(covariates, str) else list(covariates)
    rows = []
    for c in covariates:
        sub = _complete_cases(df, [duration, event, c], f"HR per IQR of {c!r}")
        t, e = _check_outcome(sub[duration], sub[event])
        x = sub[c].to_numpy(dtype=float)
        q1, q3 = np.quantile(x, [0.25, 0.75])
        fit = fit_cox(t, e, x[:, None], [c], ties)
        b, se = float(fit.beta[0]), float(np.sqrt(fit.cov[0, 0]))
        iqr = float(q3 - q1)
        rows.append({"covariate": c, "q1": q1, "q3": q3, "iqr": iqr, "hr_per_iqr": np.exp(b * iqr),
                     "ci_lower": np.exp((b - Z975 * se) * iqr), "ci_upper": np.exp((b + Z975 * se) * iqr),
                     "p": 2 * stats.norm.sf(abs(b / se)), "hr_per_unit": np.exp(b),
                     "n": int(t.size), "events": int(e.sum())})
    return pd.DataFrame(rows).set_index("covariate")


def cox_spline(df: pd.DataFrame, duration: str, event: str, covariate: str, n_knots: int = 4,
               knots=None, ties: str = "efron", reference: float | None = None,
               grid=None, n_points: int = 101) -> dict:
    r"""Cox model of one covariate as a restricted cubic spline, with its log-hazard curve.

    Parameters
    ----------
    df : pandas.DataFrame
        One row per patient.
    duration, event : str
        Time (> 0) and event (0/1) columns.
    covariate : str
        The continuous marker.
    n_knots : int
        3 or 4 for cohorts of this size (more knots, more variance); ignored if ``knots``.
    knots : array_like, optional
        Explicit knots (default :func:`rcs_knots`).
    ties : {"efron", "breslow"}
    reference : float, optional
        Value where the log relative hazard is 0 (default: the median, as ``rms::Predict``
        with ``ref.zero = TRUE``).
    grid : array_like, optional
        Where to evaluate the curve (default ``n_points`` equally spaced values between the
        5th smallest and 5th largest observed value, as ``rms::Predict`` shows it).
    n_points : int
        Size of the default grid.

    Returns
    -------
    dict
        ``knots``; ``coefficients`` (DataFrame ``beta, se, z, p`` per basis column);
        ``tests`` (DataFrame indexed ``overall``, ``nonlinear`` with Wald ``chisq, df, p`` as
        ``anova(rms::cph)``, plus ``lr_nonlinear``: the likelihood-ratio test against the
        linear model); ``curve`` (DataFrame ``x, log_hr, se, ci_lower, ci_upper, hr``);
        ``reference``; ``loglik``, ``loglik_linear``; ``n``, ``events``.

    Notes
    -----
    The model is :math:`\log h(t \mid x) = \log h_0(t) + \beta_0 x + \sum_{j=1}^{k-2} \beta_j
    C_j(x)` (:func:`rcs_basis`). With :math:`b(x)` the basis row, the curve is
    :math:`\hat f(x) = \{b(x) - b(x_\mathrm{ref})\}^\top\hat\beta` with variance
    :math:`\{b(x) - b(x_\mathrm{ref})\}^\top \hat V \{b(x) - b(x_\mathrm{ref})\}` and pointwise
    CI :math:`\hat f \pm z_{0.975}\,\mathrm{se}`. Overall test: Wald
    :math:`\hat\beta^\top \hat V^{-1} \hat\beta \sim \chi^2_{k-1}`; non-linearity: the same for
    :math:`\beta_1, \dots, \beta_{k-2}` (:math:`\chi^2_{k-2}`).
    """
    ties = check_ties(ties)
    sub = _complete_cases(df, [duration, event, covariate], f"spline Cox of {covariate!r}")
    t, e = _check_outcome(sub[duration], sub[event])
    x = sub[covariate].to_numpy(dtype=float)
    kn = rcs_knots(x, n_knots) if knots is None else np.sort(_as_1d(knots, "knots"))
    B = rcs_basis(x, kn, covariate)
    names = list(B.columns)
    fit = fit_cox(t, e, B.to_numpy(), names, ties)
    lin = fit_cox(t, e, x[:, None], [covariate], ties)
    beta, V = fit.beta, fit.cov
    se = np.sqrt(np.diag(V))
    coef = pd.DataFrame({"beta": beta, "se": se, "z": beta / se, "p": 2 * stats.norm.sf(np.abs(beta / se))},
                        index=pd.Index(names, name="term"))
    chi_all = float(beta @ np.linalg.solve(V, beta))
    nl = slice(1, None)
    chi_nl = float(beta[nl] @ np.linalg.solve(V[nl, nl], beta[nl]))
    k1 = len(names)
    lr_nl = max(2.0 * (fit.loglik - lin.loglik), 0.0)
    tests = pd.DataFrame({"chisq": [chi_all, chi_nl, lr_nl], "df": [k1, k1 - 1, k1 - 1]},
                         index=pd.Index(["overall", "nonlinear", "lr_nonlinear"], name="test"))
    tests["p"] = stats.chi2.sf(tests["chisq"], tests["df"])
    ref = float(np.median(x)) if reference is None else float(reference)
    if grid is None:
        xs = np.sort(x)
        lo, hi = (xs[4], xs[-5]) if xs.size >= 10 else (xs[0], xs[-1])
        grid = np.linspace(lo, hi, n_points)
    g = _as_1d(grid, "grid")
    D = rcs_basis(g, kn, covariate).to_numpy() - rcs_basis([ref], kn, covariate).to_numpy()
    f = D @ beta
    fse = np.sqrt(np.einsum("ij,jk,ik->i", D, V, D))
    curve = pd.DataFrame({"x": g, "log_hr": f, "se": fse, "ci_lower": f - Z975 * fse,
                          "ci_upper": f + Z975 * fse, "hr": np.exp(f)})
    return {"knots": kn, "coefficients": coef, "tests": tests, "curve": curve, "reference": ref,
            "loglik": fit.loglik, "loglik_linear": lin.loglik, "n": int(t.size), "events": int(e.sum())}

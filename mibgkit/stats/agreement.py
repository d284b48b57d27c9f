r"""Reader agreement: intraclass correlation, Bland–Altman limits, Cohen's and Fleiss' kappa.

Do two nuclear-medicine physicians who draw the tumour ROI get the same Tmax/Lmax, the same MTV,
the same asphericity? This module answers for continuous features (ICC, Bland–Altman) and for
categorical reads (kappa); the image-space agreement of the ROIs themselves (Dice, Hausdorff
distance) is :mod:`mibgkit.overlap`.

Functions
---------
icc
    The six intraclass correlations of Shrout & Fleiss (1979) from a long table, with F tests and
    confidence intervals, as R ``psych::ICC(..., lmer = FALSE)`` (psych 2.2) gives them.
koo_li
    Koo & Li's (2016) words for an ICC: poor, moderate, good, excellent.
bland_altman
    Bias and 95 % limits of agreement of two readers with their confidence intervals (Bland &
    Altman 1999), on the original or the log scale, and a proportional-bias regression.
cohen_kappa
    Unweighted Cohen's kappa of two readers with the large-sample SE of Fleiss, Cohen & Everitt
    (1969), as R ``psych::cohen.kappa``.
fleiss_kappa
    Fleiss' (1971) kappa of m readers with the z test of R ``irr::kappam.fleiss`` (irr 0.84.1).

Conventions
-----------
- Every "not estimable" case (too few targets or readers, ratings that do not vary, a single
  category) raises :class:`~mibgkit.errors.StatisticsError` with the reason, as the other
  statistics modules do; a caller shows it as "not estimable" (:func:`koo_li` maps NaN so).
- Incomplete data (a target without a rating from every reader, a pair with a missing value)
  are dropped with a :class:`~mibgkit.errors.QCWarning` that names them.
- Two-sided intervals at 95 % (``alpha = 0.05``); p-values come from survival functions, so
  values far below 1e-16 stay exact.

References
----------
.. [1] Shrout PE, Fleiss JL. Intraclass correlations: uses in assessing rater reliability.
   *Psychol Bull* 1979;86:420–428.
.. [2] McGraw KO, Wong SP. Forming inferences about some intraclass correlation coefficients.
   *Psychol Methods* 1996;1:30–46.
.. [3] Koo TK, Li MY. A guideline of selecting and reporting intraclass correlation coefficients
   for reliability research. *J Chiropr Med* 2016;15:155–163.
.. [4] Bland JM, Altman DG. Measuring agreement in method comparison studies. *Stat Methods Med
   Res* 1999;8:135–160.
.. [5] Cohen J. A coefficient of agreement for nominal scales. *Educ Psychol Meas* 1960;20:37–46.
.. [6] Fleiss JL, Cohen J, Everitt BS. Large sample standard errors of kappa and weighted kappa.
   *Psychol Bull* 1969;72:323–327.
.. [7] Fleiss JL. Measuring nominal scale agreement among many raters. *Psychol Bull*
   1971;76:378–382.
.. [8] Fleiss JL, Nee JCM, Landis JR. Large sample variance of kappa in the case of different
   sets of raters. *Psychol Bull* 1979;86:974–977.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from scipy import stats as _st

from mibgkit.errors import QCWarning, StatisticsError

__all__ = ["ICC_TYPES", "bland_altman", "cohen_kappa", "fleiss_kappa", "icc", "koo_li"]

#: Row labels of :func:`icc`, in psych's order.
ICC_TYPES = ("ICC1", "ICC2", "ICC3", "ICC1k", "ICC2k", "ICC3k")

#: Columns of :func:`icc`.
ICC_COLUMNS = ("icc", "ci_lower", "ci_upper", "F", "df1", "df2", "p")

#: Two-sided 97.5 % standard normal quantile (95 % limits of agreement and intervals).
_Z = float(_st.norm.isf(0.025))


def _names(values, limit: int = 20) -> str:
    values = [str(v) for v in values]
    shown = ", ".join(values[:limit])
    return shown + (f", … ({len(values) - limit} more)" if len(values) > limit else "")


# --------------------------------------------------------------------------------------------
# intraclass correlation
# --------------------------------------------------------------------------------------------


def _wide_ratings(df: pd.DataFrame, target: str, rater: str, rating: str) -> pd.DataFrame:
    """The complete targets × raters table of a long table; incomplete targets dropped with a warning."""
    if not isinstance(df, pd.DataFrame):
        raise StatisticsError(f"icc needs a DataFrame in long format, got {type(df).__name__}")
    missing = [c for c in (target, rater, rating) if c not in df.columns]
    if missing:
        raise StatisticsError(f"icc: columns not in the table: {missing} (columns: {list(df.columns)})")
    sub = df[[target, rater, rating]].copy()
    if sub[target].isna().any() or sub[rater].isna().any():
        bad = int((sub[target].isna() | sub[rater].isna()).sum())
        raise StatisticsError(f"icc: {bad} rows have no {target!r} or no {rater!r}; fill or drop them")
    try:
        sub[rating] = pd.to_numeric(sub[rating], errors="raise").astype(float)
    except (TypeError, ValueError) as exc:
        raise StatisticsError(f"icc: column {rating!r} must be numeric ({exc})") from None
    dup = sub.duplicated([target, rater], keep=False)
    if dup.any():
        pairs = sub.loc[dup, [target, rater]].drop_duplicates().itertuples(index=False)
        raise StatisticsError(
            f"icc: more than one rating per {target} and {rater} for "
            f"{_names(f'{t} × {r}' for t, r in pairs)}; keep one row per pair"
        )
    wide = sub.pivot(index=target, columns=rater, values=rating)
    incomplete = wide.index[wide.isna().any(axis=1)]
    if len(incomplete):
        warnings.warn(
            f"icc: {len(incomplete)} {target}(s) without a rating from every {rater} "
            f"({wide.shape[1]}) dropped: {_names(incomplete)}",
            QCWarning, stacklevel=3,
        )
        wide = wide.drop(index=incomplete)
    if wide.shape[1] < 2:
        raise StatisticsError(f"icc not estimable: it needs at least 2 {rater}s, found {wide.shape[1]}")
    if wide.shape[0] < 2:
        raise StatisticsError(
            f"icc not estimable: it needs at least 2 {target}s rated by every {rater}, "
            f"found {wide.shape[0]}"
        )
    return wide


def _icc_table(x: np.ndarray, alpha: float) -> dict[str, tuple]:
    """psych::ICC's six rows from a complete n × k matrix (see :func:`icc` for the formulas)."""
    n, k = x.shape
    n_f, k_f = np.float64(n), np.float64(k)
    grand = x.mean()
    rows = x.mean(axis=1)
    cols = x.mean(axis=0)
    ssb = k_f * np.sum((rows - grand) ** 2)
    ssj = n_f * np.sum((cols - grand) ** 2)
    resid = x - rows[:, None] - cols[None, :] + grand
    sse = np.sum(resid**2)
    if ssb == 0 and sse == 0:
        raise StatisticsError(
            "icc not estimable: the ratings do not vary between targets, nor beyond a constant "
            "offset per rater (every target got the same rating from each rater)"
        )
    df_b, df_j, df_e, df_w = n - 1, k - 1, (n - 1) * (k - 1), n * (k - 1)
    msb, msj, mse = ssb / df_b, ssj / df_j, sse / df_e
    msw = (ssj + sse) / df_w
    q = 1.0 - alpha / 2.0

    def qf(d1, d2):
        return np.float64(_st.f.ppf(q, d1, d2))

    def single(F):  # (F − 1)/(F + k − 1), → 1 as F → ∞
        return np.float64(1.0) if np.isinf(F) and F > 0 else (F - 1.0) / (F + k_f - 1.0)

    with np.errstate(divide="ignore", invalid="ignore"):
        icc1 = (msb - msw) / (msb + (k_f - 1.0) * msw)
        icc2 = (msb - mse) / (msb + (k_f - 1.0) * mse + k_f * (msj - mse) / n_f)
        icc3 = (msb - mse) / (msb + (k_f - 1.0) * mse)
        icc1k = (msb - msw) / msb
        icc2k = (msb - mse) / (msb + (msj - mse) / n_f)
        icc3k = (msb - mse) / msb
        f1 = msb / msw
        f3 = msb / mse
        p1 = float(_st.f.sf(f1, df_b, df_w))
        p3 = float(_st.f.sf(f3, df_b, df_e))
        f1l, f1u = f1 / qf(df_b, df_w), f1 * qf(df_w, df_b)
        f3l, f3u = f3 / qf(df_b, df_e), f3 * qf(df_e, df_b)
        l1, u1 = single(f1l), single(f1u)
        l3, u3 = single(f3l), single(f3u)
        l1k, u1k = 1.0 - 1.0 / f1l, 1.0 - 1.0 / f1u
        l3k, u3k = 1.0 - 1.0 / f3l, 1.0 - 1.0 / f3u
        # ICC2: Satterthwaite df of the denominator (Shrout & Fleiss 1979, eq. 11); as the
        # residual mean square vanishes (Fj → ∞) v tends to k − 1.
        fj = msj / mse
        a = n_f * (1.0 + (k_f - 1.0) * icc2) - k_f * icc2
        if mse == 0:
            v = k_f - 1.0
        else:
            v = ((k_f - 1.0) * (n_f - 1.0) * (k_f * icc2 * fj + a) ** 2
                 / ((n_f - 1.0) * k_f**2 * icc2**2 * fj**2 + a**2))
        fs_u = qf(df_b, v)
        fs_l = qf(v, df_b)
        den = k_f * msj + (k_f * n_f - k_f - n_f) * mse
        l2 = n_f * (msb - fs_u * mse) / (fs_u * den + n_f * msb)
        u2 = n_f * (fs_l * msb - mse) / (den + n_f * fs_l * msb)
        l2k = l2 * k_f / (1.0 + l2 * (k_f - 1.0))
        u2k = u2 * k_f / (1.0 + u2 * (k_f - 1.0))
    return {
        "ICC1": (icc1, l1, u1, f1, df_b, df_w, p1),
        "ICC2": (icc2, l2, u2, f3, df_b, df_e, p3),
        "ICC3": (icc3, l3, u3, f3, df_b, df_e, p3),
        "ICC1k": (icc1k, l1k, u1k, f1, df_b, df_w, p1),
        "ICC2k": (icc2k, l2k, u2k, f3, df_b, df_e, p3),
        "ICC3k": (icc3k, l3k, u3k, f3, df_b, df_e, p3),
    }


def icc(df: pd.DataFrame, target: str, rater: str, rating: str, *, alpha: float = 0.05) -> pd.DataFrame:
    r"""The six intraclass correlations of Shrout & Fleiss (1979), as R ``psych::ICC(lmer = FALSE)``.

    Parameters
    ----------
    df : pandas.DataFrame
        Long format: one row per target × rater (e.g. patient × reader).
    target : str
        Column naming the rated object (patient).
    rater : str
        Column naming the rater (reader). Every distinct value is one rater.
    rating : str
        Column with the numeric rating (a feature value: Tmax/Lmax, MTV in ml, asphericity).
    alpha : float, default 0.05
        The intervals are ``1 - alpha`` (two-sided), psych's ``alpha``.

    Returns
    -------
    pandas.DataFrame
        Indexed ``ICC1, ICC2, ICC3, ICC1k, ICC2k, ICC3k`` (index name ``type``) with columns
        ``icc, ci_lower, ci_upper, F, df1, df2, p``. ``attrs`` holds ``n_targets``,
        ``n_raters``, ``dropped`` (the targets left out) and ``alpha``.

    Raises
    ------
    StatisticsError
        A column is missing or not numeric, a target × rater pair has more than one row, fewer
        than 2 complete targets or fewer than 2 raters remain, or the ratings do not vary.

    Warns
    -----
    QCWarning
        Targets without a rating from every rater (a missing row or a NaN rating) are dropped,
        named in the warning (psych refuses missing values; the R reference is the complete
        cases).

    Notes
    -----
    With n complete targets, k raters, :math:`x_{ij}` the rating of target i by rater j, and the
    two-way ANOVA mean squares between targets :math:`MSB = k\sum_i(\bar x_{i\cdot}-\bar x)^2/(n-1)`,
    between raters :math:`MSJ = n\sum_j(\bar x_{\cdot j}-\bar x)^2/(k-1)`, residual
    :math:`MSE = \sum_{ij}(x_{ij}-\bar x_{i\cdot}-\bar x_{\cdot j}+\bar x)^2/((n-1)(k-1))` and
    within targets :math:`MSW = (SSJ + SSE)/(n(k-1))`:

    ======  ==================================================  ===========================================
    psych   formula                                             McGraw & Wong (1996)
    ======  ==================================================  ===========================================
    ICC1    :math:`\frac{MSB-MSW}{MSB+(k-1)MSW}`                 ICC(1): one-way random, single rater
    ICC2    :math:`\frac{MSB-MSE}{MSB+(k-1)MSE+k(MSJ-MSE)/n}`    ICC(A,1): two-way random, absolute
                                                                agreement, single rater
    ICC3    :math:`\frac{MSB-MSE}{MSB+(k-1)MSE}`                 ICC(C,1): two-way mixed, consistency,
                                                                single rater
    ICC1k   :math:`\frac{MSB-MSW}{MSB}`                         ICC(k): one-way random, mean of k raters
    ICC2k   :math:`\frac{MSB-MSE}{MSB+(MSJ-MSE)/n}`             ICC(A,k): two-way random, absolute, mean
    ICC3k   :math:`\frac{MSB-MSE}{MSB}`                         ICC(C,k): two-way mixed, consistency, mean
    ======  ==================================================  ===========================================

    Shrout & Fleiss call them ICC(1,1), ICC(2,1), ICC(3,1), ICC(1,k), ICC(2,k), ICC(3,k). For
    readers drawn from a population of readers who should give the *same* value, ICC2/ICC2k is
    the usual choice; ICC3 ignores a constant offset between readers.

    F tests (as psych): ICC1/ICC1k use :math:`F = MSB/MSW` on :math:`(n-1, n(k-1))` df; the
    others :math:`F = MSB/MSE` on :math:`(n-1, (n-1)(k-1))` df; p is the upper tail of F
    (:func:`scipy.stats.f.sf`). Intervals, with :math:`F_L = F/F_{1-\alpha/2}(df_1, df_2)` and
    :math:`F_U = F\,F_{1-\alpha/2}(df_2, df_1)`: single-rater ICC1/ICC3 bounds
    :math:`(F_{L,U}-1)/(F_{L,U}+k-1)`, mean-rater ICC1k/ICC3k bounds :math:`1 - 1/F_{L,U}`.
    ICC2 uses the Satterthwaite df (Shrout & Fleiss 1979, eq. 11), not an integer:

    .. math::
        v = \frac{(k-1)(n-1)\,[k\rho F_J + n(1+(k-1)\rho) - k\rho]^2}
                 {(n-1)k^2\rho^2F_J^2 + [n(1+(k-1)\rho) - k\rho]^2},
        \quad \rho = \mathrm{ICC2},\ F_J = MSJ/MSE,

    :math:`F^* = F_{1-\alpha/2}(n-1, v)`, :math:`F_* = F_{1-\alpha/2}(v, n-1)`,
    lower :math:`n(MSB - F^*MSE)/(F^*[k\,MSJ + (kn-k-n)MSE] + n\,MSB)`, upper
    :math:`n(F_*MSB - MSE)/(k\,MSJ + (kn-k-n)MSE + nF_*MSB)`; the ICC2k bounds are the ICC2
    bounds through Spearman–Brown, :math:`k\,b/(1 + (k-1)b)`.

    Perfect consistency (MSE = 0) gives F = ∞, p = 0 and bounds at their limit 1 (Satterthwaite
    v at its limit k − 1).

    References
    ----------
    .. [1] Shrout PE, Fleiss JL. Intraclass correlations: uses in assessing rater reliability.
       *Psychol Bull* 1979;86:420–428.
    .. [2] McGraw KO, Wong SP. Forming inferences about some intraclass correlation
       coefficients. *Psychol Methods* 1996;1:30–46.
    .. [3] Revelle W. ``psych``: Procedures for Psychological, Psychometric, and Personality
       Research, function ``ICC`` (version 2.2).

    Examples
    --------
    Shrout & Fleiss's (1979) 6 targets rated by 4 judges:

    >>> wide = [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]]
    >>> long = pd.DataFrame([(t, j, v) for t, row in enumerate(wide) for j, v in enumerate(row)],
    ...                     columns=["target", "judge", "score"])
    >>> res = icc(long, "target", "judge", "score")
    >>> res["icc"].round(2).tolist()
    [0.17, 0.29, 0.71, 0.44, 0.62, 0.91]
    >>> koo_li(res.loc["ICC2", "icc"])
    'poor'
    """
    if not 0 < alpha < 1:
        raise StatisticsError(f"alpha must be between 0 and 1, got {alpha!r}")
    raw = df[target].unique() if isinstance(df, pd.DataFrame) and target in df.columns else []
    wide = _wide_ratings(df, target, rater, rating)
    table = _icc_table(wide.to_numpy(float), alpha)
    out = pd.DataFrame.from_dict(table, orient="index", columns=list(ICC_COLUMNS))
    out.index.name = "type"
    out = out.astype(float)
    out.attrs.update(
        n_targets=int(wide.shape[0]),
        n_raters=int(wide.shape[1]),
        dropped=[t for t in raw if t not in set(wide.index)],
        alpha=alpha,
    )
    return out


def koo_li(icc_value) -> str:
    """Koo & Li's (2016) words for an ICC value.

    Parameters
    ----------
    icc_value : float or None
        An ICC (any of the six), usually its point estimate.

    Returns
    -------
    str
        ``"poor"`` below 0.5, ``"moderate"`` from 0.5 to below 0.75, ``"good"`` from 0.75 to
        0.9 inclusive, ``"excellent"`` above 0.9, ``"not estimable"`` for NaN or None.

    Notes
    -----
    Koo & Li give the bands as "less than 0.5, between 0.5 and 0.75, between 0.75 and 0.9, and
    greater than 0.90"; the shared edges go to the upper band (0.5, 0.75) except 0.9, which is
    still "good" ("greater than 0.90" is excellent). They advise grading the 95 % interval, not
    only the estimate: ``koo_li(ci_lower)`` and ``koo_li(ci_upper)`` give its two ends.

    References
    ----------
    .. [1] Koo TK, Li MY. A guideline of selecting and reporting intraclass correlation
       coefficients for reliability research. *J Chiropr Med* 2016;15:155–163.

    Examples
    --------
    >>> [koo_li(v) for v in (0.3, 0.5, 0.8, 0.9, 0.95, float("nan"))]
    ['poor', 'moderate', 'good', 'good', 'excellent', 'not estimable']
    """
    if icc_value is None:
        return "not estimable"
    try:
        v = float(icc_value)
    except (TypeError, ValueError):
        raise StatisticsError(f"koo_li needs a number, got {icc_value!r}") from None
    if math.isnan(v):
        return "not estimable"
    if v < 0.5:
        return "poor"
    if v < 0.75:
        return "moderate"
    if v <= 0.9:
        return "good"
    return "excellent"


# --------------------------------------------------------------------------------------------
# Bland–Altman
# --------------------------------------------------------------------------------------------


def _paired(a, b, what: str, numeric: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Two equally long 1-d arrays with the pairs holding a missing value dropped (warned)."""
    if numeric:
        try:
            x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
        except (TypeError, ValueError) as exc:
            raise StatisticsError(f"{what}: the readings must be numeric ({exc})") from None
    else:
        x, y = np.asarray(a, dtype=object), np.asarray(b, dtype=object)
    if x.ndim != 1 or y.ndim != 1:
        raise StatisticsError(f"{what}: a and b must be one-dimensional, got shapes {x.shape} and {y.shape}")
    if x.size != y.size:
        raise StatisticsError(f"{what}: a ({x.size}) and b ({y.size}) differ in length")
    bad = np.asarray(pd.isna(x) | pd.isna(y), bool)
    if bad.any():
        warnings.warn(
            f"{what}: {int(bad.sum())} pair(s) with a missing value dropped (positions "
            f"{_names(np.flatnonzero(bad).tolist())})",
            QCWarning, stacklevel=3,
        )
        x, y = x[~bad], y[~bad]
    return x, y


def bland_altman(a, b, *, log: bool = False) -> dict:
    r"""Bias and 95 % limits of agreement of two readers (Bland & Altman), with their CIs.

    Parameters
    ----------
    a, b : array_like of float
        The same feature measured by reader A and reader B on the same patients (paired by
        position). Pairs with a missing value are dropped (with a warning).
    log : bool, default False
        Analyse :math:`\ln a - \ln b` and report bias and limits back-transformed as ratios a/b:
        for volumes (MTV), whose disagreement grows with their size. Needs a, b > 0.

    Returns
    -------
    dict
        ``bias``, ``sd`` (SD of the differences; on the log scale when ``log``),
        ``loa_lower``, ``loa_upper``, ``bias_ci_lower``, ``bias_ci_upper``,
        ``loa_lower_ci_lower``, ``loa_lower_ci_upper``, ``loa_upper_ci_lower``,
        ``loa_upper_ci_upper``, ``slope``, ``slope_se``, ``slope_p`` (proportional bias),
        ``n`` (pairs used), ``log``. With ``log`` every value but ``sd``, ``slope``,
        ``slope_se``, ``slope_p`` and ``n`` is a ratio a/b (bias 1.05: A reads 5 % higher).

    Raises
    ------
    StatisticsError
        Lengths differ, fewer than 3 complete pairs, non-positive values with ``log``.

    Notes
    -----
    With differences :math:`d_i = a_i - b_i` (``log``: :math:`\ln a_i - \ln b_i`), n pairs,
    :math:`\bar d` and :math:`s` their mean and SD (n − 1 denominator), z = 1.959964 and
    :math:`t = t_{0.975,\,n-1}`:

    - bias :math:`\bar d`, CI :math:`\bar d \pm t\, s/\sqrt n`;
    - limits :math:`\bar d \pm z s`, each with CI :math:`\pm t\, s\sqrt{3/n}` (the approximate
      SE :math:`\sqrt{3s^2/n}` of Bland & Altman 1999, section 2.3);
    - ``log``: all of these are computed on the log scale and reported as :math:`e^{(\cdot)}`.

    Proportional bias: the ordinary least-squares slope of :math:`d_i` on the pair means
    :math:`m_i = (a_i + b_i)/2` (``log``: :math:`(\ln a_i + \ln b_i)/2`, the log of the geometric
    mean), its SE, and the two-sided t-test p of slope = 0 on n − 2 df (Bland & Altman 1999,
    section 3.2). A slope that differs from 0 says the limits are not the same across the range
    (consider ``log=True``). NaN slope when all pair means are equal.

    References
    ----------
    .. [1] Bland JM, Altman DG. Measuring agreement in method comparison studies. *Stat Methods
       Med Res* 1999;8:135–160.
    .. [2] Bland JM, Altman DG. Statistical methods for assessing agreement between two methods
       of clinical measurement. *Lancet* 1986;i:307–310.

    Examples
    --------
    >>> r = bland_altman([10.0, 12.0, 9.0, 15.0, 11.0], [9.0, 12.5, 8.0, 14.0, 10.0])
    >>> round(r["bias"], 3), round(r["sd"], 3), round(r["loa_lower"], 3), round(r["loa_upper"], 3)
    (0.7, 0.671, -0.615, 2.015)
    """
    x, y = _paired(a, b, "bland_altman")
    if log:
        if (x <= 0).any() or (y <= 0).any():
            bad = int(((x <= 0) | (y <= 0)).sum())
            raise StatisticsError(f"bland_altman(log=True) needs values > 0; {bad} pair(s) are not")
        x, y = np.log(x), np.log(y)
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise StatisticsError("bland_altman: the readings must be finite")
    n = x.size
    if n < 3:
        raise StatisticsError(f"bland_altman not estimable: it needs at least 3 complete pairs, found {n}")
    d = x - y
    m = (x + y) / 2.0
    bias = float(d.mean())
    sd = float(d.std(ddof=1))
    t = float(_st.t.isf(0.025, n - 1))
    se_bias = sd / math.sqrt(n)
    se_loa = sd * math.sqrt(3.0 / n)
    lo, hi = bias - _Z * sd, bias + _Z * sd
    out = {
        "bias": bias, "sd": sd, "loa_lower": lo, "loa_upper": hi,
        "bias_ci_lower": bias - t * se_bias, "bias_ci_upper": bias + t * se_bias,
        "loa_lower_ci_lower": lo - t * se_loa, "loa_lower_ci_upper": lo + t * se_loa,
        "loa_upper_ci_lower": hi - t * se_loa, "loa_upper_ci_upper": hi + t * se_loa,
    }
    if log:
        out = {k: (v if k == "sd" else math.exp(v)) for k, v in out.items()}
    mc = m - m.mean()
    sxx = float(np.sum(mc**2))
    if sxx > 0:
        slope = float(np.sum(mc * (d - d.mean())) / sxx)
        resid = d - d.mean() - slope * mc
        slope_se = math.sqrt(float(np.sum(resid**2)) / (n - 2) / sxx)
        if slope_se > 0:
            slope_p = float(2.0 * _st.t.sf(abs(slope) / slope_se, n - 2))
        else:  # the differences lie exactly on a line
            slope_p = 1.0 if slope == 0 else 0.0
    else:
        slope = slope_se = slope_p = math.nan
    out.update(slope=slope, slope_se=slope_se, slope_p=slope_p, n=int(n), log=bool(log))
    return out


# --------------------------------------------------------------------------------------------
# kappa
# --------------------------------------------------------------------------------------------


def _category_codes(values: np.ndarray) -> tuple[np.ndarray, list]:
    codes, uniques = pd.factorize(pd.Series(values, dtype=object), sort=False)
    cats = list(uniques)
    try:
        order = sorted(range(len(cats)), key=lambda i: cats[i])
    except TypeError:
        order = sorted(range(len(cats)), key=lambda i: str(cats[i]))
    remap = np.empty(len(cats), int)
    remap[order] = np.arange(len(cats))
    return remap[codes], [cats[i] for i in order]


def cohen_kappa(a, b) -> dict:
    r"""Unweighted Cohen's kappa of two readers, with its SE and 95 % CI as R ``psych::cohen.kappa``.

    Parameters
    ----------
    a, b : array_like
        The category each reader gave each case (any labels: strings, integers), paired by
        position. Pairs with a missing label are dropped (with a warning).

    Returns
    -------
    dict
        ``kappa``, ``se`` (square root of psych's ``var.kappa``), ``ci_lower``, ``ci_upper``
        (psych's ``confid[1, ]``), ``observed`` (:math:`p_o`), ``expected`` (:math:`p_e`),
        ``n`` (cases), ``categories`` (the labels, sorted).

    Raises
    ------
    StatisticsError
        Lengths differ, no complete pair, or a single category for both readers (:math:`p_e = 1`:
        kappa not estimable; psych returns NA).

    Notes
    -----
    With :math:`p_{ij}` the share of cases A put in category i and B in j, :math:`p_{i\cdot}`,
    :math:`p_{\cdot j}` the margins, :math:`p_o = \sum_i p_{ii}`, :math:`p_e = \sum_i p_{i\cdot}p_{\cdot i}`:

    .. math::
        \kappa = \frac{p_o - p_e}{1 - p_e}

    (Cohen 1960) and the large-sample variance of Fleiss, Cohen & Everitt (1969), as psych:

    .. math::
        \widehat{\mathrm{var}}(\kappa) = \frac{1}{n(1-p_e)^4}\Big\{
        \sum_i p_{ii}\big[(1-p_e) - (p_{i\cdot}+p_{\cdot i})(1-p_o)\big]^2
        + (1-p_o)^2 \sum_{i\ne j} p_{ij}(p_{\cdot i}+p_{j\cdot})^2
        - (p_op_e - 2p_e + p_o)^2\Big\}.

    The CI is :math:`\kappa \pm z_{0.975}\sqrt{\widehat{\mathrm{var}}}`, clipped to [−1, 1] as psych
    clips it; a negative variance estimate (rounding, at perfect agreement) counts as 0, as in
    psych. This is psych's interval, not ``irr::kappa2`` (which gives a z test, no interval;
    irr is not the reference here).

    References
    ----------
    .. [1] Cohen J. A coefficient of agreement for nominal scales. *Educ Psychol Meas*
       1960;20:37–46.
    .. [2] Fleiss JL, Cohen J, Everitt BS. Large sample standard errors of kappa and weighted
       kappa. *Psychol Bull* 1969;72:323–327.
    .. [3] Revelle W. ``psych``, function ``cohen.kappa`` (version 2.2).

    Examples
    --------
    >>> r = cohen_kappa(["pos", "pos", "neg", "neg", "pos", "neg"],
    ...                 ["pos", "neg", "neg", "neg", "pos", "neg"])
    >>> round(r["kappa"], 4), round(r["observed"], 4), r["categories"]
    (0.6667, 0.8333, ['neg', 'pos'])
    """
    x, y = _paired(a, b, "cohen_kappa", numeric=False)
    n = x.size
    if n == 0:
        raise StatisticsError("cohen_kappa not estimable: no case has a category from both readers")
    codes, cats = _category_codes(np.concatenate([x, y]))
    q = len(cats)
    ca, cb = codes[:n], codes[n:]
    if q < 2:
        raise StatisticsError(
            f"cohen_kappa not estimable: both readers gave all {n} cases the same category {cats[0]!r}"
        )
    p = np.zeros((q, q))
    np.add.at(p, (ca, cb), 1.0)
    p /= n
    rs, cs = p.sum(axis=1), p.sum(axis=0)
    po = float(np.trace(p))
    pe = float(rs @ cs)
    if pe >= 1.0:
        raise StatisticsError("cohen_kappa not estimable: the expected agreement is 1")
    kappa = (po - pe) / (1.0 - pe)
    diag = np.diag(p)
    term1 = np.sum(diag * ((1.0 - pe) - (rs + cs) * (1.0 - po)) ** 2)
    off = ~np.eye(q, dtype=bool)
    term2 = (1.0 - po) ** 2 * np.sum((p * (cs[:, None] + rs[None, :]) ** 2)[off])
    var = (term1 + term2 - (po * pe - 2.0 * pe + po) ** 2) / (n * (1.0 - pe) ** 4)
    if not np.isfinite(var) or var < 0:
        var = 0.0
    se = math.sqrt(var)
    return {
        "kappa": float(kappa),
        "se": se,
        "ci_lower": float(max(-1.0, min(1.0, kappa - _Z * se))),
        "ci_upper": float(max(-1.0, min(1.0, kappa + _Z * se))),
        "observed": po,
        "expected": pe,
        "n": int(n),
        "categories": cats,
    }


def fleiss_kappa(ratings) -> dict:
    r"""Fleiss' kappa of m readers, with the z test of R ``irr::kappam.fleiss`` (irr 0.84.1).

    Parameters
    ----------
    ratings : array_like or pandas.DataFrame, shape (subjects, raters)
        The category each rater gave each subject (any labels). Subjects with a missing rating
        are dropped (with a warning naming them: DataFrame index labels, else row positions),
        as irr's ``na.omit``. The raters need not be the same people for every subject.

    Returns
    -------
    dict
        ``kappa``, ``se`` (its SE under the null hypothesis kappa = 0, for the z test only: not a
        basis for an interval), ``z``, ``p`` (two-sided), ``observed`` (:math:`\bar P`),
        ``expected`` (:math:`\bar P_e`), ``n_subjects``, ``n_raters``, ``categories``.

    Raises
    ------
    StatisticsError
        Not two-dimensional, fewer than 2 raters, no complete subject, or a single category
        (:math:`\bar P_e = 1`: kappa not estimable).

    Notes
    -----
    With N subjects, m raters, :math:`n_{ij}` the raters who put subject i in category j and
    :math:`p_j = \sum_i n_{ij}/(Nm)`, Fleiss (1971):

    .. math::
        \bar P = \frac{1}{N}\sum_i \frac{\sum_j n_{ij}^2 - m}{m(m-1)}, \quad
        \bar P_e = \sum_j p_j^2, \quad
        \kappa = \frac{\bar P - \bar P_e}{1 - \bar P_e}.

    The SE under kappa = 0 is that of Fleiss, Nee & Landis (1979), as irr 0.84.1 computes it
    (with :math:`q_j = 1 - p_j`):

    .. math::
        \mathrm{se}_0 = \frac{\sqrt{2}}{\sum_j p_jq_j\sqrt{Nm(m-1)}}
        \sqrt{\Big(\sum_j p_jq_j\Big)^2 - \sum_j p_jq_j(q_j - p_j)},

    :math:`z = \kappa/\mathrm{se}_0` and :math:`p = 2\,\Phi(-|z|)` (irr writes
    :math:`2(1-\Phi(|z|))`, which is 0 below about 1e-16; the value here stays exact).

    References
    ----------
    .. [1] Fleiss JL. Measuring nominal scale agreement among many raters. *Psychol Bull*
       1971;76:378–382.
    .. [2] Fleiss JL, Nee JCM, Landis JR. Large sample variance of kappa in the case of different
       sets of raters. *Psychol Bull* 1979;86:974–977.
    .. [3] Gamer M, Lemon J, Fellows I, Singh P. ``irr``: Various coefficients of interrater
       reliability and agreement, function ``kappam.fleiss`` (version 0.84.1).

    Examples
    --------
    >>> r = fleiss_kappa([["a", "a", "a"], ["a", "b", "b"], ["b", "b", "b"], ["a", "a", "b"]])
    >>> round(r["kappa"], 4), r["n_subjects"], r["n_raters"]
    (0.3333, 4, 3)
    """
    if isinstance(ratings, pd.DataFrame):
        labels = list(ratings.index)
        arr = ratings.to_numpy(dtype=object)
    else:
        arr = np.asarray(ratings, dtype=object)
        labels = list(range(arr.shape[0])) if arr.ndim >= 1 else []
    if arr.ndim != 2:
        raise StatisticsError(f"fleiss_kappa needs a subjects × raters table, got shape {arr.shape}")
    missing = np.asarray(pd.isna(arr), bool).any(axis=1)
    if missing.any():
        warnings.warn(
            f"fleiss_kappa: {int(missing.sum())} subject(s) without a rating from every rater dropped: "
            f"{_names([labels[i] for i in np.flatnonzero(missing)])}",
            QCWarning, stacklevel=2,
        )
        arr = arr[~missing]
    ns, nr = arr.shape
    if nr < 2:
        raise StatisticsError(f"fleiss_kappa not estimable: it needs at least 2 raters, found {nr}")
    if ns == 0:
        raise StatisticsError("fleiss_kappa not estimable: no subject has a rating from every rater")
    codes, cats = _category_codes(arr.ravel())
    if len(cats) < 2:
        raise StatisticsError(
            f"fleiss_kappa not estimable: every rater gave all {ns} subjects the same category {cats[0]!r}"
        )
    counts = np.zeros((ns, len(cats)))
    np.add.at(counts, (np.repeat(np.arange(ns), nr), codes), 1.0)
    observed = float(np.mean((np.sum(counts**2, axis=1) - nr) / (nr * (nr - 1.0))))
    pj = counts.sum(axis=0) / (ns * nr)
    qj = 1.0 - pj
    expected = float(np.sum(pj**2))
    kappa = (observed - expected) / (1.0 - expected)
    spq = float(np.sum(pj * qj))
    var0 = 2.0 / (spq**2 * ns * nr * (nr - 1.0)) * (spq**2 - float(np.sum(pj * qj * (qj - pj))))
    se0 = math.sqrt(var0)
    z = kappa / se0
    return {
        "kappa": float(kappa),
        "se": se0,
        "z": float(z),
        "p": float(2.0 * _st.norm.sf(abs(z))),
        "observed": observed,
        "expected": expected,
        "n_subjects": int(ns),
        "n_raters": int(nr),
        "categories": cats,
    }

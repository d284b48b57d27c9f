r"""Intraclass correlation: how far one reader's value can stand for another's.

:func:`icc` gives the six intraclass correlations of Shrout & Fleiss (1979) from a long table, with
F tests and confidence intervals, as R ``psych::ICC(..., lmer = FALSE)`` (psych 2.2) gives them;
:func:`koo_li` puts an ICC into Koo & Li's (2016) words. Conventions as :mod:`mibgkit.stats.agreement`
(not estimable → :class:`~mibgkit.errors.StatisticsError`; incomplete targets dropped with a
:class:`~mibgkit.errors.QCWarning` naming them).

References
----------
.. [1] Shrout PE, Fleiss JL. Intraclass correlations: uses in assessing rater reliability.
   *Psychol Bull* 1979;86:420–428.
.. [2] McGraw KO, Wong SP. Forming inferences about some intraclass correlation coefficients.
   *Psychol Methods* 1996;1:30–46.
.. [3] Koo TK, Li MY. A guideline of selecting and reporting intraclass correlation coefficients
   for reliability research. *J Chiropr Med* 2016;15:155–163.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from scipy import stats as _st

from mibgkit.errors import QCWarning, StatisticsError
from mibgkit.stats._checks import names_list as _names

__all__ = ["ICC_TYPES", "ICC_COLUMNS", "icc", "koo_li"]

#: Row labels of :func:`icc`, in psych's order.
ICC_TYPES = ("ICC1", "ICC2", "ICC3", "ICC1k", "ICC2k", "ICC3k")

#: Columns of :func:`icc`.
ICC_COLUMNS = ("icc", "ci_lower", "ci_upper", "F", "df1", "df2", "p")


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

r"""Reader agreement: Bland–Altman limits, Cohen's and Fleiss' kappa.

Do two nuclear-medicine physicians who draw the tumour ROI get the same Tmax/Lmax, the same MTV,
the same asphericity? This module answers for continuous features (ICC, Bland–Altman) and for
categorical reads (kappa); the image-space agreement of the ROIs themselves (Dice, Hausdorff
distance) is :mod:`mibgkit.overlap`.

Functions
---------
icc, koo_li
    In :mod:`mibgkit.stats.icc`: the six intraclass correlations of Shrout & Fleiss (1979) as R
    ``psych::ICC(..., lmer = FALSE)``, and Koo & Li's (2016) words for them.
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
.. [1] Bland JM, Altman DG. Measuring agreement in method comparison studies. *Stat Methods Med
   Res* 1999;8:135–160.
.. [2] Cohen J. A coefficient of agreement for nominal scales. *Educ Psychol Meas* 1960;20:37–46.
.. [3] Fleiss JL, Cohen J, Everitt BS. Large sample standard errors of kappa and weighted kappa.
   *Psychol Bull* 1969;72:323–327.
.. [4] Fleiss JL. Measuring nominal scale agreement among many raters. *Psychol Bull*
   1971;76:378–382.
.. [5] Fleiss JL, Nee JCM, Landis JR. Large sample variance of kappa in the case of different
   sets of raters. *Psychol Bull* 1979;86:974–977.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from scipy import stats as _st

from mibgkit.errors import QCWarning, StatisticsError
from mibgkit.stats._checks import names_list as _names

__all__ = ["bland_altman", "cohen_kappa", "fleiss_kappa"]

#: Two-sided 97.5 % standard normal quantile (95 % limits of agreement and intervals).
_Z = float(_st.norm.isf(0.025))


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

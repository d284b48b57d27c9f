"""ROC analysis for a prognostic score: Youden cutoff, exact CIs, DeLong AUC interval.

Conventions (as the paper): the event is the positive class and a higher score means positive; a
cutoff is always an *observed* score value, with ``score >= cutoff`` called positive. The AUC
and its DeLong interval agree with R ``pROC`` (``roc(..., direction = "<")`` and
``ci.auc(method = "delong")``).

References
----------
.. [1] Youden WJ. Index for rating diagnostic tests. *Cancer* 1950;3:32–35.
.. [2] DeLong ER, DeLong DM, Clarke-Pearson DL. Comparing the areas under two or more correlated
   receiver operating characteristic curves: a nonparametric approach. *Biometrics*
   1988;44:837–845.
.. [3] Clopper CJ, Pearson ES. The use of confidence or fiducial limits illustrated in the case
   of the binomial. *Biometrika* 1934;26:404–413.
.. [4] Robin X et al. pROC: an open-source package for R and S+ to analyze and compare ROC
   curves. *BMC Bioinformatics* 2011;12:77.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from mibgkit.stats._checks import check_binary_scores

__all__ = ["roc_cutoff", "roc_curve", "confusion_at", "auc_delong", "clopper_pearson", "youden_optimum"]


def clopper_pearson(k: int, n: int, conf_level: float = 0.95) -> tuple[float, float]:
    r"""Exact (Clopper–Pearson) confidence interval of a binomial proportion k/n.

    Notes
    -----
    With :math:`\alpha = 1 - \text{conf\_level}`:
    :math:`L = B^{-1}(\alpha/2;\, k,\, n-k+1)` (0 when k = 0) and
    :math:`U = B^{-1}(1-\alpha/2;\, k+1,\, n-k)` (1 when k = n), :math:`B^{-1}` the beta
    quantile function — the interval R ``binom.test`` reports. NaN for n = 0.

    Examples
    --------
    >>> [round(v, 4) for v in clopper_pearson(6, 11)]
    [0.2338, 0.8325]
    """
    if n == 0:
        return float("nan"), float("nan")
    a = 1.0 - conf_level
    lo = 0.0 if k == 0 else float(stats.beta.ppf(a / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(stats.beta.ppf(1 - a / 2, k + 1, n - k))
    return lo, hi


def auc_delong(score, positive, conf_level: float = 0.95) -> dict:
    r"""AUC with DeLong's variance and the normal-approximation interval of R ``pROC``.

    Returns
    -------
    dict
        ``auc, se, ci_lower, ci_upper`` (bounds clipped to [0, 1], as pROC does).

    Notes
    -----
    For m positives :math:`X_i` and n negatives :math:`Y_j`, with
    :math:`\psi(x, y) = 1, \tfrac12, 0` for :math:`x >, =, < y`:
    :math:`\hat A = \frac{1}{mn} \sum_{ij} \psi(X_i, Y_j)`,
    placements :math:`V_{10}(X_i) = \frac1n \sum_j \psi(X_i, Y_j)`,
    :math:`V_{01}(Y_j) = \frac1m \sum_i \psi(X_i, Y_j)`, and
    :math:`\widehat{\mathrm{Var}}(\hat A) = S_{10}/m + S_{01}/n` with :math:`S` the sample
    variances (denominator m − 1, n − 1) of the placements. CI: :math:`\hat A \pm z\,\mathrm{se}`.
    """
    s, y = check_binary_scores(score, positive)
    return _auc_delong(s[y], s[~y], conf_level)


def _auc_delong(x: np.ndarray, yneg: np.ndarray, conf_level: float) -> dict:
    m, n = x.size, yneg.size
    # psi via ranks: number of negatives below each positive + half the ties (O((m+n) log))
    yneg_sorted = np.sort(yneg)
    x_sorted = np.sort(x)
    v10 = (np.searchsorted(yneg_sorted, x, "left") + np.searchsorted(yneg_sorted, x, "right")) / (2.0 * n)
    v01 = ((m - np.searchsorted(x_sorted, yneg, "right")) + (m - np.searchsorted(x_sorted, yneg, "left"))) / (2.0 * m)
    auc = float(v10.mean())
    if m > 1 and n > 1:
        var = float(np.var(v10, ddof=1) / m + np.var(v01, ddof=1) / n)
        se = float(np.sqrt(var))
        z = float(stats.norm.ppf(0.5 + conf_level / 2))
        lo, hi = max(auc - z * se, 0.0), min(auc + z * se, 1.0)
    else:
        se = lo = hi = float("nan")
    return {"auc": auc, "se": se, "ci_lower": lo, "ci_upper": hi}


def roc_curve(score, positive) -> pd.DataFrame:
    """The empirical ROC curve at every observed score used as cutoff (``score >= cutoff``).

    Returns
    -------
    pandas.DataFrame
        One row per distinct observed score in decreasing order plus a final row with cutoff
        ``+inf`` (nothing positive) at the start; columns ``cutoff, tp, fp, tn, fn,
        sensitivity, specificity, fpr, youden``. Plot ``fpr`` against ``sensitivity``.
    """
    s, y = check_binary_scores(score, positive)
    return _curve(s, y)


def _curve(s: np.ndarray, y: np.ndarray) -> pd.DataFrame:
    cut = np.unique(s)[::-1]  # decreasing
    order = np.sort(s[y]), np.sort(s[~y])
    P, N = int(y.sum()), int((~y).sum())
    tp = P - np.searchsorted(order[0], cut, "left")  # positives with score >= cut
    fp = N - np.searchsorted(order[1], cut, "left")
    tp = np.concatenate([[0], tp])
    fp = np.concatenate([[0], fp])
    cut = np.concatenate([[np.inf], cut])
    sens = tp / P
    spec = (N - fp) / N
    return pd.DataFrame(
        {
            "cutoff": cut,
            "tp": tp.astype(int),
            "fp": fp.astype(int),
            "tn": (N - fp).astype(int),
            "fn": (P - tp).astype(int),
            "sensitivity": sens,
            "specificity": spec,
            "fpr": 1.0 - spec,
            "youden": sens + spec - 1.0,
        }
    )


def _youden(curve: pd.DataFrame, P: int, N: int) -> tuple[float, int, int]:
    """The Youden rule on a curve from :func:`_curve`: ``(cutoff, row among the finite cutoffs,
    number of cutoffs sharing the maximal J)``; J compared exactly as the integer TP·N + TN·P, ties
    to the highest cutoff (the curve is in decreasing cutoff order)."""
    finite = curve.iloc[1:]
    key = finite["tp"].to_numpy() * N + finite["tn"].to_numpy() * P  # ∝ J, exact
    best_rows = np.flatnonzero(key == key.max())
    i = int(best_rows[0])
    return float(finite["cutoff"].to_numpy()[i]), i, int(best_rows.size)


def youden_optimum(s: np.ndarray, y: np.ndarray) -> tuple[float, int]:
    """``(cutoff, n_optimal)`` of :func:`roc_cutoff` on arrays already checked (float scores, bool
    classes with both present): the rule in one place for the cutoff and its bootstrap."""
    cutoff, _, n_optimal = _youden(_curve(s, y), int(y.sum()), int((~y).sum()))
    return cutoff, n_optimal


def _diagnostics(tp: int, fp: int, tn: int, fn: int, conf_level: float) -> dict:
    """Sensitivity, specificity, PPV, NPV with exact CIs, and the four counts."""
    out: dict = {}
    for name, k, n in (("sensitivity", tp, tp + fn), ("specificity", tn, tn + fp),
                       ("ppv", tp, tp + fp), ("npv", tn, tn + fn)):
        lo, hi = clopper_pearson(k, n, conf_level)
        out[name] = k / n if n else float("nan")
        out[f"{name}_ci_lower"], out[f"{name}_ci_upper"] = lo, hi
    out.update(tp=int(tp), fp=int(fp), tn=int(tn), fn=int(fn))
    return out


def confusion_at(score, positive, cutoff: float, conf_level: float = 0.95) -> dict:
    """The 2 × 2 table and diagnostic values at a given cutoff (``score >= cutoff`` is positive).

    Used to classify a cohort with a published cutoff. Returns ``tp, fp, tn, fn``,
    ``sensitivity, specificity, ppv, npv`` with exact ``_ci_lower``/``_ci_upper``, and ``cutoff``.
    The counts exist for any cohort, an empty one included (all 0); a proportion whose denominator
    is 0 (no positives, nobody above the cutoff...) is NaN with a NaN interval.

    Examples
    --------
    >>> c = confusion_at([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1], 0.35)
    >>> c["tp"], c["fp"], c["tn"], c["fn"]
    (2, 1, 1, 0)
    """
    s, y = check_binary_scores(score, positive, both_classes=False)
    high = s >= cutoff
    out = {"cutoff": float(cutoff)}
    out.update(_diagnostics(int((high & y).sum()), int((high & ~y).sum()), int((~high & ~y).sum()),
                            int((~high & y).sum()), conf_level))
    return out


def roc_cutoff(score, positive, return_curve: bool = False, conf_level: float = 0.95) -> dict:
    r"""Optimal cutoff of a score by Youden's index, with its 2 × 2 table and exact CIs.

    Parameters
    ----------
    score : array_like of float
        The marker (higher = more likely positive).
    positive : array_like of {0, 1} or bool
        1/True = positive class (e.g. an event within follow-up).
    return_curve : bool
        Also return the full ROC curve (:func:`roc_curve`) under ``"curve"``.
    conf_level : float
        Level of every interval.

    Returns
    -------
    dict
        ``cutoff`` (an observed score; ``score >= cutoff`` is positive), ``youden``, ``auc``,
        ``auc_se``, ``auc_ci_lower``, ``auc_ci_upper``, ``sensitivity``, ``specificity``,
        ``ppv``, ``npv`` (each with ``_ci_lower``/``_ci_upper``, exact Clopper–Pearson),
        ``tp, fp, tn, fn``, ``n_positive, n_negative``, ``midpoint_threshold`` (the threshold
        R ``pROC::coords`` prints: halfway to the next lower observed score), ``n_optimal``
        (how many cutoffs share the maximal J) and ``curve`` if requested.

    Notes
    -----
    Candidate cutoffs are the distinct observed scores c, with
    :math:`\mathrm{sens}(c) = \#\{\text{pos}: s \ge c\}/P`,
    :math:`\mathrm{spec}(c) = \#\{\text{neg}: s < c\}/N` and
    :math:`J(c) = \mathrm{sens}(c) + \mathrm{spec}(c) - 1`. J is compared exactly (as the integer
    :math:`TP \cdot N + TN \cdot P`).

    **Tie rule:** when several cutoffs reach the maximal J, the *highest* one is reported —
    the most specific call, i.e. the fewest patients labelled high risk. ``n_optimal``
    says when this rule was needed.

    PPV = TP/(TP+FP) and NPV = TN/(TN+FN) are the sample's values (they depend on its
    prevalence). AUC and its CI: :func:`auc_delong`.

    Examples
    --------
    >>> r = roc_cutoff([0.1, 0.4, 0.35, 0.8, 0.7, 0.2], [0, 0, 1, 1, 1, 0])
    >>> r["cutoff"], r["tp"], r["fp"], round(r["auc"], 3)
    (0.7, 2, 0, 0.889)
    >>> r["n_optimal"]  # 0.35 (sens 1, spec 2/3) ties with 0.7 (sens 2/3, spec 1): the higher wins
    2
    """
    s, y = check_binary_scores(score, positive)
    curve = _curve(s, y)
    P, N = int(y.sum()), int((~y).sum())
    _, i, n_optimal = _youden(curve, P, N)
    row = curve.iloc[1:].iloc[i]
    tp, fp, tn, fn = (int(row[c]) for c in ("tp", "fp", "tn", "fn"))
    lower_scores = s[s < row["cutoff"]]
    midpoint = (row["cutoff"] + lower_scores.max()) / 2 if lower_scores.size else -np.inf
    out: dict = {"cutoff": float(row["cutoff"]), "youden": float(row["youden"])}
    a = _auc_delong(s[y], s[~y], conf_level)
    out.update(auc=a["auc"], auc_se=a["se"], auc_ci_lower=a["ci_lower"], auc_ci_upper=a["ci_upper"])
    out.update(_diagnostics(tp, fp, tn, fn, conf_level))
    out.update(n_positive=P, n_negative=N,
               midpoint_threshold=float(midpoint), n_optimal=n_optimal)
    if return_curve:
        out["curve"] = curve
    return out

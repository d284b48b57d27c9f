"""Maximally selected log-rank statistic: the optimal cutpoint of a continuous marker.

:func:`maxstat_cutoff` searches every cutpoint of a score for the largest standardised log-rank
statistic and corrects its p-value for the search, as R ``maxstat.test(Surv(t, e) ~ x,
smethod = "LogRank")`` does: exactly (Hothorn & Lausen 2003, ``pmethod = "HL"``) or by the
asymptotic approximation of Lausen & Schumacher (1992, ``pmethod = "Lau92"``).

References
----------
.. [1] Hothorn T, Lausen B. On the exact distribution of maximally selected rank statistics.
   *Comput Stat Data Anal* 2003;43:121–137.
.. [2] Lausen B, Schumacher M. Maximally selected rank statistics. *Biometrics*
   1992;48:73–85.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats

from mibgkit.errors import StatisticsError
from mibgkit.stats._checks import _as_float, _check_outcome

__all__ = ["maxstat_cutoff"]


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

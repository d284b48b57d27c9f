r"""A small, fast Cox partial-likelihood engine for resampling (bootstrap) work.

:mod:`mibgkit.stats.cox` fits Cox models through ``statsmodels`` with full checks and
tables; that costs milliseconds per fit, too slow for a thousand repetitions of a whole
variable-selection procedure. This module evaluates the same partial log-likelihood (Efron or
Breslow ties), its gradient and observed information in a few vectorised ``numpy`` operations
and maximises it by Newton–Raphson with step halving. It mirrors the failure rules of
``_coxcore.fit_cox`` (constant covariate, separation, collinearity, non-convergence) so
that a procedure built on it selects exactly what the public functions select; the tests check
this on many resamples.

Notes
-----
Sort the n observations by time. For the distinct event times :math:`t_j` let :math:`R_j`
be the risk set (:math:`t_i \ge t_j`), :math:`D_j` the :math:`d_j` events at :math:`t_j`,
:math:`r_i = \exp(x_i^\top\beta)` and
:math:`S^{(a)}_j = \sum_{R_j} r_i x_i^{\otimes a}`, :math:`E^{(a)}_j = \sum_{D_j} r_i x_i^{\otimes a}`.
For the l-th (l = 0, …, d_j − 1) event at :math:`t_j` Efron uses
:math:`S^{(a)}_{jl} = S^{(a)}_j - \tfrac{l}{d_j} E^{(a)}_j` (Breslow: l/d_j replaced by 0), and

.. math::
    \ell(\beta) = \sum_j \Bigl[\sum_{D_j} x_i^\top\beta - \sum_l \log S^{(0)}_{jl}\Bigr],\quad
    U = \sum_j \Bigl[\sum_{D_j} x_i - \sum_l \frac{S^{(1)}_{jl}}{S^{(0)}_{jl}}\Bigr],\quad
    I = \sum_{j,l} \Bigl[\frac{S^{(2)}_{jl}}{S^{(0)}_{jl}} - \frac{S^{(1)}_{jl} S^{(1)\top}_{jl}}
    {(S^{(0)}_{jl})^2}\Bigr].

References
----------
.. [1] Therneau TM, Grambsch PM. *Modeling Survival Data*. Springer, 2000, §3.3.
.. [2] Efron B. The efficiency of Cox's likelihood function for censored data.
   *J Am Stat Assoc* 1977;72:557–565.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mibgkit.errors import StatisticsError
from mibgkit.stats._coxcore import monotone_direction


class CoxData:
    """Time/event structure of one data set, precomputed once for many fits.

    Parameters
    ----------
    time, event : numpy.ndarray
        Times (> 0) and 0/1 event indicators, any order.
    ties : {"efron", "breslow"}
    """

    def __init__(self, time: np.ndarray, event: np.ndarray, ties: str = "efron"):
        time = np.asarray(time, dtype=float)
        event = np.asarray(event, dtype=float)
        self.order = np.argsort(time, kind="stable")
        self.time = time
        self.event = event
        self.n = time.size
        self.n_events = int(event.sum())
        ts, es = time[self.order], event[self.order]
        ev_idx = np.flatnonzero(es == 1)  # sorted positions of the events
        ev_t = ts[ev_idx]
        uniq, grp, d = np.unique(ev_t, return_inverse=True, return_counts=True)
        self.ev_pos = ev_idx
        self.group = grp  # tie group of each event
        self.first = np.searchsorted(ts, uniq, side="left")  # start of each risk set (sorted)
        # position l of each event within its tie group
        start = np.concatenate([[0], np.cumsum(d)[:-1]])
        rank_in = np.arange(ev_idx.size) - start[grp]
        if ties == "efron":
            self.frac = rank_in / d[grp]
        elif ties == "breslow":
            self.frac = np.zeros(ev_idx.size)
        else:
            raise StatisticsError(f"ties must be 'efron' or 'breslow', got {ties!r}")
        self.n_groups = uniq.size
        self.ties = ties

    def sorted_x(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(X, dtype=float)[self.order]

    def derivatives(self, Xs: np.ndarray, beta: np.ndarray, order: int = 2):
        """Log-likelihood, score and information at ``beta`` (``Xs`` already time-sorted).

        Far from the maximum (a trial Newton step) the values may be infinite or NaN; the
        optimisers treat that as "step too long" and halve it.
        """
        with np.errstate(all="ignore"):
            return self._derivatives(Xs, beta, order)

    def _derivatives(self, Xs: np.ndarray, beta: np.ndarray, order: int):
        eta = Xs @ beta
        shift = eta.max()
        r = np.exp(eta - shift)
        rev0 = np.cumsum(r[::-1])[::-1]
        S0 = rev0[self.first]
        E0 = np.bincount(self.group, weights=r[self.ev_pos], minlength=self.n_groups)
        s0 = S0[self.group] - self.frac * E0[self.group]
        xe = Xs[self.ev_pos]
        ll = float(eta[self.ev_pos].sum() - np.log(s0).sum() - shift * self.ev_pos.size)
        if order == 0:
            return ll, None, None
        rx = r[:, None] * Xs
        rev1 = np.cumsum(rx[::-1], axis=0)[::-1]
        S1 = rev1[self.first]
        E1 = np.zeros((self.n_groups, Xs.shape[1]))
        np.add.at(E1, self.group, rx[self.ev_pos])
        s1 = S1[self.group] - self.frac[:, None] * E1[self.group]
        m = s1 / s0[:, None]
        grad = xe.sum(axis=0) - m.sum(axis=0)
        if order == 1:
            return ll, grad, None
        rxx = rx[:, :, None] * Xs[:, None, :]
        rev2 = np.cumsum(rxx[::-1], axis=0)[::-1]
        S2 = rev2[self.first]
        E2 = np.zeros((self.n_groups, Xs.shape[1], Xs.shape[1]))
        np.add.at(E2, self.group, rxx[self.ev_pos])
        s2 = S2[self.group] - self.frac[:, None, None] * E2[self.group]
        info = (s2 / s0[:, None, None]).sum(axis=0) - np.einsum("ki,kj->ij", m, m)
        return ll, grad, info


@dataclass(frozen=True)
class FastFit:
    beta: np.ndarray
    loglik: float
    info: np.ndarray


def loglik0(data: CoxData) -> float:
    """Partial log-likelihood of the null model (β = 0)."""
    return data.derivatives(np.zeros((data.n, 1)), np.zeros(1), order=0)[0]


def newton(data: CoxData, Xs: np.ndarray, beta0: np.ndarray | None = None,
           maxiter: int = 100, tol: float = 1e-10) -> tuple[np.ndarray, float, np.ndarray, bool]:
    """Maximise the partial likelihood; returns (beta, loglik, information, converged)."""
    k = Xs.shape[1]
    beta = np.zeros(k) if beta0 is None else np.asarray(beta0, dtype=float).copy()
    ll, g, info = data.derivatives(Xs, beta)
    converged = False
    for _ in range(maxiter):
        try:
            step = np.linalg.solve(info, g)
        except np.linalg.LinAlgError:
            break
        new = beta + step
        ll_new, g_new, info_new = data.derivatives(Xs, new)
        halvings = 0
        while (not np.isfinite(ll_new) or ll_new < ll - 1e-12) and halvings < 30:
            step = step / 2
            new = beta + step
            ll_new, g_new, info_new = data.derivatives(Xs, new)
            halvings += 1
        done = abs(ll_new - ll) < tol * max(1.0, abs(ll)) and np.max(np.abs(step)) < 1e-7 * (1 + np.max(np.abs(new)))
        beta, ll, g, info = new, ll_new, g_new, info_new
        if done:
            converged = True
            break
    return beta, ll, info, converged


def fit(data: CoxData, X: np.ndarray, names) -> FastFit:
    """Fit with the checks of ``_coxcore.fit_cox``; ``X`` in the caller's (unsorted) row order.

    Raises
    ------
    StatisticsError
        Constant covariate, a covariate with monotone likelihood (separation),
        collinear covariates, or non-convergence (scaled |β| > 25 or a non-zero score).
    """
    X = np.asarray(X, dtype=float)
    n, k = X.shape
    e = data.event
    for j in range(k):
        col = X[:, j]
        if np.ptp(col) == 0:
            raise StatisticsError(f"covariate {names[j]!r} is constant")
        if monotone_direction(data.time, e, col) != 0:
            raise StatisticsError(f"covariate {names[j]!r}: separation")
    if k > 1 and np.linalg.matrix_rank(X - X.mean(axis=0)) < k:
        raise StatisticsError(f"covariates {list(names)} are collinear")
    centre, scale = X.mean(axis=0), X.std(axis=0)
    Zs = data.sorted_x((X - centre) / scale)
    bs, _, _, converged = newton(data, Zs)
    _, grad, _ = data.derivatives(Zs, bs, order=1)
    ok = converged and np.isfinite(bs).all() and np.all(np.abs(grad) < 1e-5 * max(1.0, np.sqrt(data.n_events)))
    if not ok or np.any(np.abs(bs) > 25):
        raise StatisticsError(f"Cox model on {list(names)} did not converge")
    beta = bs / scale
    ll, _, info = data.derivatives(data.sorted_x(X), beta)
    return FastFit(beta, ll, info)


def score_statistic(data: CoxData, X: np.ndarray, beta: np.ndarray) -> float:
    """Efficient score statistic :math:`U^\\top I^{-1} U` at ``beta`` (raises LinAlgError if singular)."""
    _, u, info = data.derivatives(data.sorted_x(X), np.asarray(beta, dtype=float))
    return float(u @ np.linalg.solve(info, u))


def event_moments(data: CoxData, Xs: np.ndarray, beta: np.ndarray):
    """Per event (time-sorted): covariates, Efron/Breslow risk-set mean and covariance.

    Returns ``(x_event, mean, cov, group)`` with shapes (D, p), (D, p), (D, p, p), (D,): the
    terms whose sums make the score and information (see the module notes).
    """
    eta = Xs @ beta
    r = np.exp(eta - eta.max())
    p = Xs.shape[1]
    rx = r[:, None] * Xs
    rxx = rx[:, :, None] * Xs[:, None, :]
    S0 = np.cumsum(r[::-1])[::-1][data.first]
    S1 = np.cumsum(rx[::-1], axis=0)[::-1][data.first]
    S2 = np.cumsum(rxx[::-1], axis=0)[::-1][data.first]
    E0 = np.bincount(data.group, weights=r[data.ev_pos], minlength=data.n_groups)
    E1 = np.zeros((data.n_groups, p))
    np.add.at(E1, data.group, rx[data.ev_pos])
    E2 = np.zeros((data.n_groups, p, p))
    np.add.at(E2, data.group, rxx[data.ev_pos])
    f = data.frac
    s0 = S0[data.group] - f * E0[data.group]
    s1 = S1[data.group] - f[:, None] * E1[data.group]
    s2 = S2[data.group] - f[:, None, None] * E2[data.group]
    m = s1 / s0[:, None]
    v = s2 / s0[:, None, None] - m[:, :, None] * m[:, None, :]
    return Xs[data.ev_pos], m, v, data.group


def third_derivative(data: CoxData, Xs: np.ndarray, beta: np.ndarray) -> np.ndarray:
    r""":math:`\partial I_{ab} / \partial \beta_c` of the information, shape (p, p, p).

    Per event term, with :math:`m = S^{(1)}/S^{(0)}`, :math:`M_2 = S^{(2)}/S^{(0)}`,
    :math:`M_3 = S^{(3)}/S^{(0)}`: :math:`\partial (M_2 - m m^\top)_{ab}/\partial\beta_c
    = M_{3,abc} - M_{2,ab} m_c - M_{2,ac} m_b - m_a M_{2,bc} + 2 m_a m_b m_c`.
    """
    eta = Xs @ beta
    r = np.exp(eta - eta.max())
    terms = []
    for a in range(4):
        if a == 0:
            w = r
        elif a == 1:
            w = r[:, None] * Xs
        elif a == 2:
            w = r[:, None, None] * Xs[:, :, None] * Xs[:, None, :]
        else:
            w = r[:, None, None, None] * Xs[:, :, None, None] * Xs[:, None, :, None] * Xs[:, None, None, :]
        S = np.cumsum(w[::-1], axis=0)[::-1][data.first]
        E = np.zeros((data.n_groups,) + w.shape[1:])
        np.add.at(E, data.group, w[data.ev_pos])
        f = data.frac.reshape((-1,) + (1,) * (w.ndim - 1))
        terms.append(S[data.group] - f * E[data.group])
    s0 = terms[0]
    m = terms[1] / s0[:, None]
    M2 = terms[2] / s0[:, None, None]
    M3 = terms[3] / s0[:, None, None, None]
    d = (M3
         - np.einsum("kab,kc->kabc", M2, m)
         - np.einsum("kac,kb->kabc", M2, m)
         - np.einsum("ka,kbc->kabc", m, M2)
         + 2 * np.einsum("ka,kb,kc->kabc", m, m, m))
    return d.sum(axis=0)

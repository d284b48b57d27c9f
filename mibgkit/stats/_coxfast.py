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
        self.event_first = self.first[grp]  # start of each event's risk set
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

    def risk_set_sums(self, w: np.ndarray) -> np.ndarray:
        """:math:`S_{jl}` of the rows of ``w`` for every event, shape (D,) + ``w.shape[1:]``.

        ``w`` (n, ...) holds per-subject terms in time order (e.g. :math:`r_i`, :math:`r_i x_i`);
        the result is, per event (in time order), the sum over its risk set less the Efron share
        of its tie group, :math:`S_j - \\tfrac{l}{d_j} E_j` (see the module notes). Every
        column is summed in the same order, so stacking terms in columns changes no value.
        """
        risk = np.cumsum(w[::-1], axis=0)[::-1][self.event_first]
        if self.ties == "breslow":  # no share of the tie group is taken out
            return risk
        tied = np.zeros((self.n_groups,) + w.shape[1:])
        np.add.at(tied, self.group, w[self.ev_pos])
        frac = self.frac.reshape((-1,) + (1,) * (w.ndim - 1))
        return risk - frac * tied[self.group]

    def derivatives(self, Xs: np.ndarray, beta: np.ndarray, order: int = 2):
        """Log-likelihood, score and information at ``beta`` (``Xs`` already time-sorted).

        Far from the maximum (a trial Newton step) the values may be infinite or NaN; the
        optimisers treat that as "step too long" and halve it.
        """
        with np.errstate(all="ignore"):
            return self._derivatives(Xs, beta, order)

    def _derivatives(self, Xs: np.ndarray, beta: np.ndarray, order: int):
        """:meth:`derivatives` without its floating-point error state (callers set it)."""
        eta = Xs @ beta
        shift = np.maximum.reduce(eta)
        r = np.exp(eta - shift)
        n, k = Xs.shape
        if order == 0:
            s0 = self.risk_set_sums(r)
        else:
            s = self.risk_set_sums(_moment_terms(r, Xs, order))
            s0 = s[:, 0]
        # np.add.reduce is what ndarray.sum calls (same values), without the method's Python layer
        ll = float(np.add.reduce(eta[self.ev_pos]) - np.add.reduce(np.log(s0)) - shift * self.ev_pos.size)
        if order == 0:
            return ll, None, None
        m = s[:, 1 : 1 + k] / s0[:, None]
        grad = np.add.reduce(Xs[self.ev_pos], axis=0) - np.add.reduce(m, axis=0)
        if order == 1:
            return ll, grad, None
        s2 = s[:, 1 + k :].reshape(-1, k, k)
        info = np.add.reduce(s2 / s0[:, None, None], axis=0) - np.einsum("ki,kj->ij", m, m)
        return ll, grad, info


def _moment_terms(r: np.ndarray, Xs: np.ndarray, order: int) -> np.ndarray:
    """Per subject, side by side: r, r x and (order 2) r x xᵀ flattened, shape (n, 1 + p [+ p²]).

    Their risk-set sums are :math:`S^{(0)}`, :math:`S^{(1)}`, :math:`S^{(2)}` in one pass
    (:meth:`CoxData.risk_set_sums`).
    """
    n, p = Xs.shape
    w = np.empty((n, 1 + p + (p * p if order == 2 else 0)))
    w[:, 0] = r
    rx = np.multiply(r[:, None], Xs, out=w[:, 1 : 1 + p])
    if order == 2:
        np.multiply(rx[:, :, None], Xs[:, None, :], out=w[:, 1 + p :].reshape(n, p, p))
    return w


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
    with np.errstate(all="ignore"):
        return _newton(data, Xs, beta, maxiter, tol)


def _newton(data: CoxData, Xs: np.ndarray, beta: np.ndarray, maxiter: int,
            tol: float) -> tuple[np.ndarray, float, np.ndarray, bool]:
    ll, g, info = data._derivatives(Xs, beta, 2)
    converged = False
    for _ in range(maxiter):
        if len(g) == 1:  # what the LAPACK solve computes for one covariate, without its set-up
            if info[0, 0] == 0.0:
                break
            step = g / info[0, 0]
        else:
            try:
                step = np.linalg.solve(info, g)
            except np.linalg.LinAlgError:
                break
        new = beta + step
        ll_new, g_new, info_new = data._derivatives(Xs, new, 2)
        halvings = 0
        while (not np.isfinite(ll_new) or ll_new < ll - 1e-12) and halvings < 30:
            step = step / 2
            new = beta + step
            ll_new, g_new, info_new = data._derivatives(Xs, new, 2)
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
    # X.mean(axis=0) and X.std(axis=0), written as numpy computes them (the same values, without
    # their set-up, which cost as much as a likelihood evaluation)
    centre = np.add.reduce(X, axis=0, keepdims=True) / n
    deviation = X - centre
    if k > 1 and np.linalg.matrix_rank(deviation) < k:
        raise StatisticsError(f"covariates {list(names)} are collinear")
    deviation *= deviation
    scale = np.sqrt(np.add.reduce(deviation, axis=0) / n)
    Zs = data.sorted_x((X - centre) / scale)
    with np.errstate(all="ignore"):
        bs, _, _, converged = _newton(data, Zs, np.zeros(k), 100, 1e-10)
        _, grad, _ = data._derivatives(Zs, bs, 1)
        ok = converged and np.isfinite(bs).all() and np.all(np.abs(grad) < 1e-5 * max(1.0, np.sqrt(data.n_events)))
        if not ok or np.any(np.abs(bs) > 25):
            raise StatisticsError(f"Cox model on {list(names)} did not converge")
        beta = bs / scale
        ll, _, info = data._derivatives(data.sorted_x(X), beta, 2)
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
    s = data.risk_set_sums(_moment_terms(r, Xs, 2))
    s0 = s[:, 0]
    m = s[:, 1 : 1 + p] / s0[:, None]
    v = s[:, 1 + p :].reshape(-1, p, p) / s0[:, None, None] - m[:, :, None] * m[:, None, :]
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
        terms.append(data.risk_set_sums(w))
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

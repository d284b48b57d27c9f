r"""The Cox model core shared by the statistics modules (internal).

One fitter and its companions, used by :mod:`~mibgkit.stats.cox` (univariate and stepwise tables),
:mod:`~mibgkit.stats.assumptions` (PH test, Firth), :mod:`~mibgkit.stats.splines`,
:mod:`~mibgkit.stats.calibration` and :mod:`~mibgkit.stats.stepwise`'s statsmodels engine:

``fit_cox(time, event, X, names, ties)`` → :class:`CoxFit`
    Newton–Raphson on the partial likelihood through ``statsmodels`` ``PHReg`` (Efron or Breslow
    ties), started on centred and scaled covariates, falling back to BFGS then Newton when plain
    Newton overshoots; raises :class:`~mibgkit.errors.StatisticsError` for a constant covariate,
    monotone likelihood (separation), collinearity and non-convergence, with a message that says so.
``score_test(time, event, X, beta, ties)``
    The efficient score statistic :math:`U^\top I^{-1} U` at ``beta``.
``null_loglik(time, event, ties)``
    The partial log-likelihood at β = 0.
``check_ties(ties)``, ``warn_epv(events, k, context)``, ``table_rows(fit, lr_p, score_p, c)``
    Argument check, the events-per-variable QC warning and the rows of a Cox table
    (:data:`COX_COLUMNS`).

:mod:`mibgkit.stats._coxfast` evaluates the same likelihood vectorised, for resampling.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from mibgkit.errors import QCWarning, StatisticsError

#: The 0.975 quantile of the standard normal distribution, used for every 95 % Wald interval.
Z975: float = float(stats.norm.ppf(0.975))

Ties = Literal["efron", "breslow"]

#: Columns every Cox table carries, in this order.
COX_COLUMNS = [
    "hr", "ci_lower", "ci_upper", "p", "n", "events",
    "beta", "se", "z", "lr_p", "score_p", "concordance",
]

MIN_EPV = 10


@dataclass(frozen=True)
class CoxFit:
    names: tuple[str, ...]
    beta: np.ndarray
    cov: np.ndarray
    loglik: float
    loglik0: float
    n: int
    events: int


def _phreg(time, event, X, ties: Ties):
    from statsmodels.duration.hazard_regression import PHReg

    return PHReg(time, X, status=event, ties=ties)


def check_ties(ties: str) -> Ties:
    if ties not in ("efron", "breslow"):
        raise StatisticsError(f"ties must be 'efron' or 'breslow', got {ties!r}")
    return ties  # type: ignore[return-value]


def monotone_direction(time: np.ndarray, event: np.ndarray, x: np.ndarray) -> int:
    """The direction in which one covariate's Cox partial likelihood is monotone: +1, −1 or 0.

    The likelihood in β has no finite maximum exactly when, at every event time, each event has
    the largest value of ``x`` in its risk set (:math:`t_i \\ge t_j`; then β̂ → +∞, returns +1) —
    or at every event time the smallest (β̂ → −∞, −1); ties with the extreme count as extreme.
    A constant ``x`` (flat likelihood) and a finite maximum give 0. It also implies monotone
    likelihood in any model that contains ``x`` (Heinze & Schemper, *Biometrics* 2001;57:114).
    """
    time = np.asarray(time, dtype=float)
    x = np.asarray(x, dtype=float)
    ev = np.asarray(event) == 1
    if not ev.any() or np.ptp(x) == 0:
        return 0
    order = np.argsort(time, kind="stable")
    ts, xs = time[order], x[order]
    at_risk_max = np.maximum.accumulate(xs[::-1])[::-1]  # over t >= ts[i]
    at_risk_min = np.minimum.accumulate(xs[::-1])[::-1]
    first = np.searchsorted(ts, time[ev], side="left")
    up = bool(np.all(x[ev] >= at_risk_max[first]))
    down = bool(np.all(x[ev] <= at_risk_min[first]))
    return 0 if up == down else (1 if up else -1)


def check_separation(time: np.ndarray, event: np.ndarray, x: np.ndarray, name: str) -> None:
    """Raise when the covariate's likelihood is monotone (:func:`monotone_direction`), saying why."""
    direction = monotone_direction(time, event, x)
    if direction == 0:
        return
    levels = np.unique(x)
    if levels.size == 2:
        for lev in levels:
            on = x == lev
            if event[on].sum() == 0:
                raise StatisticsError(
                    f"covariate {name!r}: no events where it equals {lev:g} "
                    f"({int(on.sum())} patients) — the Cox likelihood is monotone (separation) and "
                    "the HR is infinite; merge categories or use Firth's penalised Cox model"
                )
    side, hr = ("largest", "infinite") if direction > 0 else ("smallest", "zero")
    raise StatisticsError(
        f"covariate {name!r}: every event has the {side} value among the patients still at risk — "
        f"the Cox likelihood is monotone (separation) and the HR is {hr}; "
        "use Firth's penalised Cox model"
    )


def fit_cox(time, event, X: np.ndarray, names: Sequence[str], ties: Ties) -> CoxFit:
    """Fit a Cox model by Newton–Raphson (statsmodels), with clear failure messages."""
    names = tuple(names)
    n = time.size
    k = X.shape[1]
    if not np.sum(event) > 0:
        raise StatisticsError(f"Cox model on {list(names)}: no events among the {n} patients analysed")
    if n <= k:
        raise StatisticsError(f"Cox model on {list(names)}: {n} patients for {k} covariate(s)")
    for j, name in enumerate(names):
        if np.ptp(X[:, j]) == 0:
            raise StatisticsError(f"covariate {name!r} is constant ({X[0, j]:g}) in the {n} patients analysed")
        check_separation(time, event, X[:, j], name)
    if k > 1 and np.linalg.matrix_rank(X - X.mean(axis=0)) < k:
        raise StatisticsError(f"covariates {list(names)} are linearly dependent (collinear)")
    model = _phreg(time, event, X, ties)
    loglik0 = float(model.loglike(np.zeros(k)))
    # centre and scale for a well-conditioned Newton iteration; transform back afterwards
    centre, scale = X.mean(axis=0), X.std(axis=0)
    Xs = (X - centre) / scale
    model_s = _phreg(time, event, Xs, ties)
    tol_grad = 1e-5 * max(1.0, np.sqrt(event.sum()))

    def fitted(res) -> tuple[np.ndarray, np.ndarray, bool]:
        b = np.asarray(res.params, dtype=float)
        g = np.asarray(model_s.score(b), dtype=float) if np.isfinite(b).all() else np.full(k, np.nan)
        return b, g, bool(np.isfinite(b).all() and np.all(np.abs(g) < tol_grad))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            bs, grad, converged = fitted(model_s.fit(method="newton", maxiter=100, tol=1e-12))
            if not converged:
                # Newton from β = 0 can overshoot on skewed covariates (no step halving in statsmodels):
                # approach the optimum by BFGS, then polish with Newton from there.
                start = np.asarray(model_s.fit(method="bfgs", maxiter=500, disp=False).params, dtype=float)
                if np.isfinite(start).all():
                    bs, grad, converged = fitted(model_s.fit(method="newton", start_params=start, maxiter=100,
                                                             tol=1e-12))
        except (np.linalg.LinAlgError, ValueError, IndexError, FloatingPointError) as exc:  # degenerate data
            raise StatisticsError(f"Cox model on {list(names)} cannot be fitted ({type(exc).__name__}: {exc}); "
                                  "too few patients or events for the number of covariates") from None
    if not converged or np.any(np.abs(bs) > 25):
        raise StatisticsError(
            f"Cox model on {list(names)} did not converge (scaled coefficients {np.round(bs, 2).tolist()}, "
            f"|score| {np.abs(grad).max():.2g}); this usually means monotone likelihood (separation) "
            "or too few events for the number of covariates"
            + (f" [{'; '.join(str(w.message) for w in caught[:2])}]" if caught else "")
        )
    beta = bs / scale
    hess = np.asarray(model.hessian(beta), dtype=float)
    try:
        cov = np.linalg.inv(-hess)
    except np.linalg.LinAlgError:
        raise StatisticsError(f"Cox model on {list(names)}: the information matrix is singular") from None
    return CoxFit(names, beta, cov, float(model.loglike(beta)), loglik0, n, int(event.sum()))


def score_test(time, event, X: np.ndarray, beta: np.ndarray, ties: Ties) -> float:
    """Efficient score statistic U' I^{-1} U of the model with covariates X evaluated at ``beta``."""
    model = _phreg(time, event, X, ties)
    u = np.asarray(model.score(beta), dtype=float)
    info = -np.asarray(model.hessian(beta), dtype=float)
    return float(u @ np.linalg.solve(info, u))


def table_rows(fit: CoxFit, lr_p: Sequence[float], score_p: Sequence[float], concordance: float) -> pd.DataFrame:
    se = np.sqrt(np.diag(fit.cov))
    z = fit.beta / se
    return pd.DataFrame(
        {
            "hr": np.exp(fit.beta),
            "ci_lower": np.exp(fit.beta - Z975 * se),
            "ci_upper": np.exp(fit.beta + Z975 * se),
            "p": 2.0 * stats.norm.sf(np.abs(z)),
            "n": fit.n,
            "events": fit.events,
            "beta": fit.beta,
            "se": se,
            "z": z,
            "lr_p": list(lr_p),
            "score_p": list(score_p),
            "concordance": concordance,
        },
        index=pd.Index(list(fit.names), name="covariate"),
    )[COX_COLUMNS]


def warn_epv(events: int, k: int, context: str) -> None:
    if k and events / k < MIN_EPV:
        warnings.warn(
            f"{context}: {events} events for {k} covariate(s) = {events / k:.1f} events per variable "
            f"(< {MIN_EPV}); estimates may be biased and unstable",
            QCWarning,
            stacklevel=3,
        )


def null_loglik(time, event, ties: Ties) -> float:
    """Partial log-likelihood of the model without covariates (β = 0)."""
    return float(_phreg(time, event, np.zeros((np.size(time), 1)), ties).loglike(np.zeros(1)))

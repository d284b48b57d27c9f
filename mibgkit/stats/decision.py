r"""Decision-curve analysis for survival: net benefit of acting on a frozen positive/negative rule.

Would a second centre do better by treating (intensifying therapy for) the patients the
published rule calls positive (Tmax/Lmax ≥ 6.278, ASP ≥ 0.342) than by treating everybody or
nobody? Net benefit weighs the true positives against the false positives at the exchange rate
a threshold probability implies (Vickers & Elkin 2006), with the risks at a horizon taken from
Kaplan–Meier curves so that censored patients count correctly (Vickers et al. 2008).

Times are in days.

References
----------
.. [1] Vickers AJ, Elkin EB. Decision curve analysis: a novel method for evaluating prediction
   models. *Med Decis Making* 2006;26:565–574.
.. [2] Vickers AJ, Cronin AM, Elkin EB, Gonen M. Extensions to decision curve analysis, a novel
   method for evaluating diagnostic tests, prediction models and molecular markers.
   *BMC Med Inform Decis Mak* 2008;8:53.
.. [3] Vickers AJ, van Calster B, Steyerberg EW. A simple, step-by-step guide to interpreting
   decision curve analysis. *Diagn Progn Res* 2019;3:18.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mibgkit.errors import StatisticsError
from mibgkit.stats._checks import _as_float, _check_outcome, check_horizon
from mibgkit.stats.kaplan_meier import km_table

__all__ = ["net_benefit"]


def _check_positive(positive, n: int) -> np.ndarray:
    arr = np.asarray(positive)
    if arr.ndim != 1 or arr.size != n:
        raise StatisticsError(f"positive must be one-dimensional with one value per patient "
                              f"({n}), got shape {arr.shape}")
    if arr.dtype == bool:
        return arr
    try:
        x = arr.astype(float)
    except (TypeError, ValueError):
        raise StatisticsError("positive must be boolean or coded 0/1") from None
    if np.isnan(x).any():
        raise StatisticsError(f"positive has {int(np.isnan(x).sum())} missing values; drop those patients first")
    if not np.isin(x, (0.0, 1.0)).all():
        bad = np.unique(x[~np.isin(x, (0.0, 1.0))])
        raise StatisticsError(f"positive must be boolean or coded 0/1; found {bad[:5].tolist()}")
    return x == 1.0


def _km_survival_at(t: np.ndarray, e: np.ndarray, horizon: float) -> float:
    """Kaplan–Meier :math:`\\hat S(h)`, right-continuous, last value kept beyond the last time."""
    tab = km_table(t, e)
    k = int(np.searchsorted(tab["time"].to_numpy(), horizon, side="right"))
    return 1.0 if k == 0 else float(tab["survival"].iloc[k - 1])


def net_benefit(durations, events, positive, horizon: float, thresholds) -> pd.DataFrame:
    r"""Net benefit at a horizon of treating the patients a rule calls positive (and of treating all).

    Parameters
    ----------
    durations : array_like of float
        Times to event or censoring (days, > 0).
    events : array_like of {0, 1}
        1 = event, 0 = censored.
    positive : array_like of bool or {0, 1}
        The rule's call per patient (``True``/1 = positive = would be treated).
    horizon : float
        Time (days) at which the event risk is counted, e.g. ``3 * 365.25``.
    thresholds : float or array_like of float
        Threshold probabilities :math:`p_t`, each in [0, 1).

    Returns
    -------
    pandas.DataFrame
        One row per threshold, columns ``threshold, net_benefit, treat_all`` (treating nobody
        has net benefit 0 at every threshold).

    Raises
    ------
    StatisticsError
        Bad input: lengths, missing values, ``positive`` not 0/1, a threshold outside [0, 1),
        a horizon that is not a positive time.

    Notes
    -----
    With :math:`p` the share of positives, :math:`r_+ = 1 - \hat S_+(h)` the Kaplan–Meier risk
    by h among the positives and :math:`r = 1 - \hat S(h)` in everybody (Vickers et al. 2008):

    .. math::
        \mathrm{NB} = r_+\, p - (1 - r_+)\, p\, \frac{p_t}{1 - p_t}, \qquad
        \mathrm{NB}_{all} = r - (1 - r)\, \frac{p_t}{1 - p_t}.

    :math:`r_+ p` is the share of true positives and :math:`(1 - r_+) p` of false positives
    (both per patient of the cohort), :math:`p_t/(1 - p_t)` the harm of an unnecessary treatment
    relative to the benefit of a necessary one. The KM curve is right-continuous (an event
    exactly at h counts) and keeps its last value beyond a group's last follow-up, as R
    ``summary(survfit(...), times = h, extend = TRUE)``. Nobody positive: NB = 0; everybody
    positive: NB = NB\ :sub:`all`.

    References
    ----------
    .. [1] Vickers AJ et al. Extensions to decision curve analysis. *BMC Med Inform Decis Mak*
       2008;8:53.
    .. [2] Vickers AJ, van Calster B, Steyerberg EW. A simple, step-by-step guide to
       interpreting decision curve analysis. *Diagn Progn Res* 2019;3:18.

    Examples
    --------
    Six patients, three positive; by day 5 the KM risk is 2/3 among the positives and 1/2 overall:

    >>> nb = net_benefit([2, 3, 9, 4, 8, 10], [1, 1, 0, 1, 0, 0], [1, 1, 1, 0, 0, 0], 5, [0, 0.2])
    >>> nb.round(4).to_dict("list")
    {'threshold': [0.0, 0.2], 'net_benefit': [0.3333, 0.2917], 'treat_all': [0.5, 0.375]}
    """
    t, e = _check_outcome(durations, events)
    pos = _check_positive(positive, t.size)
    h = check_horizon(horizon)
    pt = _as_float(np.atleast_1d(np.asarray(thresholds, dtype=object)), "thresholds")
    if pt.size == 0:
        raise StatisticsError("no thresholds given")
    if not (np.isfinite(pt).all() and (pt >= 0).all() and (pt < 1).all()):
        raise StatisticsError(f"thresholds must lie in [0, 1); got {pt[~((pt >= 0) & (pt < 1))][:5].tolist()}")
    odds = pt / (1.0 - pt)
    r_all = 1.0 - _km_survival_at(t, e, h)
    p = float(pos.mean())
    if pos.any():
        r_pos = 1.0 - _km_survival_at(t[pos], e[pos], h)
        nb = r_pos * p - (1.0 - r_pos) * p * odds
    else:
        nb = np.zeros(pt.size)
    return pd.DataFrame({
        "threshold": pt,
        "net_benefit": nb,
        "treat_all": r_all - (1.0 - r_all) * odds,
    })

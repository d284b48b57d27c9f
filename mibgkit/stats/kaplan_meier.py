"""Kaplan–Meier estimation as the paper used it: curves, SPSS mean survival, log-rank.

Everything here takes plain arrays and returns DataFrames, mappings or a result object that a
notebook prints or plots directly. The numbers agree with R's ``survival`` package (``survfit``,
``survdiff``) and with SPSS 27 ``KM`` (its "Mean" is the restricted mean with its SE).

Functions
---------
km_table
    Product-limit table with Greenwood standard errors and log-type pointwise intervals.
km_mean
    SPSS/R restricted mean survival with its SE, and the median with its CI.
logrank
    The (Mantel–Haenszel) log-rank test for two or more groups, as R ``survdiff`` gives it.
kaplan_meier
    Per-group tables and summaries, the log-rank test and numbers at risk
    (:class:`KaplanMeierResult`).

References
----------
.. [1] Klein JP, Moeschberger ML. *Survival Analysis*, 2nd ed. Springer, 2003.
.. [2] IBM SPSS Statistics 27 Algorithms, "KM".
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from mibgkit.errors import StatisticsError
from mibgkit.stats._checks import _check_outcome

__all__ = [
    "km_table",
    "km_mean",
    "kaplan_meier",
    "KaplanMeierResult",
    "logrank",
]


def km_table(durations, events, conf_level: float = 0.95) -> pd.DataFrame:
    r"""Kaplan–Meier product-limit table, one row per distinct observed time.

    Parameters
    ----------
    durations : array_like of float
        Times to event or censoring, > 0.
    events : array_like of {0, 1}
        1 = event, 0 = censored.
    conf_level : float
        Level of the pointwise interval.

    Returns
    -------
    pandas.DataFrame
        Columns ``time, n_risk, n_event, n_censor, survival, std_err, ci_lower, ci_upper``, as
        R ``summary(survfit(..., conf.type="log"), censored=TRUE)``.

    Notes
    -----
    :math:`\hat S(t) = \prod_{t_j \le t} (1 - d_j / n_j)`; Greenwood
    :math:`\widehat{\mathrm{Var}}\{\log \hat S(t)\} = \sum_{t_j \le t} d_j / \{n_j (n_j - d_j)\}`;
    ``std_err`` is the SE of :math:`\hat S` (Greenwood) and the interval is
    :math:`\hat S \exp(\pm z\, \mathrm{se}(\log \hat S))`, upper bound capped at 1, undefined
    (NaN) where :math:`\hat S = 0`.
    """
    t, e = _check_outcome(durations, events)
    z = float(stats.norm.ppf(0.5 + conf_level / 2))
    times, inv = np.unique(t, return_inverse=True)
    d = np.bincount(inv, weights=e, minlength=times.size)
    c = np.bincount(inv, weights=1 - e, minlength=times.size)
    at_risk = t.size - np.concatenate([[0], np.cumsum(d + c)[:-1]])
    surv = np.cumprod(1.0 - d / at_risk)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = np.where(at_risk - d > 0, d / (at_risk * (at_risk - d)), np.where(d > 0, np.inf, 0.0))
        se_log = np.sqrt(np.cumsum(h))
        lower = np.where(surv > 0, surv * np.exp(-z * se_log), np.nan)
        upper = np.where(surv > 0, np.minimum(surv * np.exp(z * se_log), 1.0), np.nan)
        std_err = np.where(np.isfinite(se_log), surv * se_log, np.nan)
    return pd.DataFrame(
        {
            "time": times,
            "n_risk": at_risk.astype(int),
            "n_event": d.astype(int),
            "n_censor": c.astype(int),
            "survival": surv,
            "std_err": std_err,
            "ci_lower": lower,
            "ci_upper": upper,
        }
    )


def _first_below_half(y: np.ndarray, x: np.ndarray) -> float:
    """First time a step curve reaches 0.5 (midpoint rule on an exact 0.5 plateau), as R."""
    tol = np.finfo(float).eps ** 0.5
    keep = ~np.isnan(y) & (y < 0.5 + tol)
    if not keep.any():
        return float("nan")
    x, y = x[keep], y[keep]
    if abs(y[0] - 0.5) < tol and (y < y[0]).any():
        return float((x[0] + x[np.flatnonzero(y < y[0])[0]]) / 2)
    return float(x[0])


def km_mean(durations, events, conf_level: float = 0.95) -> dict:
    r"""Restricted mean survival time as SPSS prints "Mean" and R ``rmean="individual"``.

    Parameters
    ----------
    durations : array_like of float
        Times to event or censoring, > 0.
    events : array_like of {0, 1}
        1 = event, 0 = censored.
    conf_level : float
        Level of the mean's and the median's interval (0.95 gives z = 1.959964).

    Returns
    -------
    dict
        ``mean, se, ci_lower, ci_upper`` (restricted mean), ``end_time`` (the restriction
        :math:`\tau`, largest observed time), ``median, median_ci_lower, median_ci_upper``
        (NaN where not reached), ``n, events``.

    Notes
    -----
    With distinct observed times :math:`t_1 < \dots < t_m`, :math:`t_0 = 0` and
    :math:`\tau = t_m`:

    .. math::
        \hat\mu = \int_0^\tau \hat S(t)\,dt = \sum_{j=1}^{m} \hat S(t_{j-1})(t_j - t_{j-1}),
        \qquad
        \widehat{\mathrm{Var}}(\hat\mu) = \sum_{j} A_j^2 \frac{d_j}{n_j (n_j - d_j)},
        \quad A_j = \int_{t_j}^{\tau} \hat S(t)\,dt,

    terms with :math:`n_j = d_j` set to 0 (``survival:::survmean``). The interval is
    :math:`\hat\mu \pm z\,\widehat{\mathrm{se}}`. When the largest time is an event the curve
    drops to 0 there and :math:`\hat\mu` is the unrestricted mean. The median is the first
    time with :math:`\hat S \le 0.5` (midpoint to the next event time on an exact 0.5 plateau);
    its CI are the times where the log-type pointwise limits reach 0.5 (R ``survfit``).

    References
    ----------
    .. [1] Klein JP, Moeschberger ML. *Survival Analysis*, 2nd ed. 2003, §4.5.
    .. [2] Brookmeyer R, Crowley J. A confidence interval for the median survival time.
       *Biometrics* 1982;38:29–41.
    """
    t, e = _check_outcome(durations, events)
    z = float(stats.norm.ppf(0.5 + conf_level / 2))
    tab = km_table(t, e, conf_level)
    times = tab["time"].to_numpy()
    surv = tab["survival"].to_numpy()
    d = tab["n_event"].to_numpy().astype(float)
    nr = tab["n_risk"].to_numpy().astype(float)
    end = float(times[-1])
    with np.errstate(divide="ignore", invalid="ignore"):
        h = np.where(nr - d == 0, 0.0, d / (nr * (nr - d)))
    left = np.concatenate([[0.0], times])
    height = np.concatenate([[1.0], surv])
    rect = np.diff(np.concatenate([left, [end]])) * height  # last rectangle has zero width
    mean = float(rect.sum())
    area_after = np.cumsum(rect[::-1])[::-1][1:]  # A_j = area from t_j to tau
    var = float(np.sum(area_after ** 2 * h))
    se = float(np.sqrt(var))
    return {
        "mean": mean,
        "se": se,
        "ci_lower": mean - z * se,
        "ci_upper": mean + z * se,
        "end_time": end,
        "median": _first_below_half(surv, times),
        "median_ci_lower": _first_below_half(tab["ci_lower"].to_numpy(), times),
        "median_ci_upper": _first_below_half(tab["ci_upper"].to_numpy(), times),
        "n": int(t.size),
        "events": int(e.sum()),
    }


def logrank(durations, events, groups) -> dict:
    r"""Log-rank test of equal survival in two or more groups (R ``survdiff``, rho = 0).

    Parameters
    ----------
    durations, events : array_like
        Times (> 0) and event indicators (0/1).
    groups : array_like
        Group labels (any hashable values; missing labels are an error).

    Returns
    -------
    dict
        ``statistic`` (χ²), ``df``, ``p``, and ``groups`` (a DataFrame indexed by group with
        ``n, observed, expected``).

    Notes
    -----
    At each distinct event time :math:`t_j` with :math:`d_j` events among :math:`n_j` at risk
    (:math:`n_{gj}` in group g), :math:`E_g = \sum_j d_j n_{gj}/n_j` and

    .. math::
        V_{gh} = \sum_j \frac{d_j (n_j - d_j)}{n_j - 1} \frac{n_{gj}}{n_j}
                 \Bigl(\delta_{gh} - \frac{n_{hj}}{n_j}\Bigr),
        \qquad \chi^2 = (O - E)^\top V^{-} (O - E),

    with :math:`V^{-}` a generalised inverse; df = rank of V (groups − 1).

    References
    ----------
    .. [1] Mantel N. Evaluation of survival data and two new rank order statistics arising
       in its consideration. *Cancer Chemother Rep* 1966;50:163–170.
    """
    t, e = _check_outcome(durations, events)
    g = pd.Series(np.asarray(groups, dtype=object))
    if len(g) != t.size:
        raise StatisticsError(f"groups ({len(g)}) and durations ({t.size}) differ in length")
    if g.isna().any():
        raise StatisticsError(f"{int(g.isna().sum())} missing group labels; drop those patients first")
    labels, codes = np.unique(g.astype(str).to_numpy(), return_inverse=True)
    # keep the caller's labels (not their string forms) for the output
    first = {lab: g.iloc[np.flatnonzero(codes == i)[0]] for i, lab in enumerate(labels)}
    k = labels.size
    if k < 2:
        raise StatisticsError("log-rank test needs at least two groups")
    ev_times = np.unique(t[e == 1])
    O = np.bincount(codes, weights=e, minlength=k)
    E = np.zeros(k)
    V = np.zeros((k, k))
    for tj in ev_times:
        at = t >= tj
        n_g = np.bincount(codes[at], minlength=k).astype(float)
        nj = n_g.sum()
        dj = float(e[(t == tj)].sum())
        E += dj * n_g / nj
        if nj > 1:
            w = dj * (nj - dj) / (nj - 1)
            p = n_g / nj
            V += w * (np.diag(p) - np.outer(p, p))
    diff = O - E
    stat = float(diff @ np.linalg.pinv(V) @ diff)
    df = int(np.linalg.matrix_rank(V))
    table = pd.DataFrame(
        {"n": np.bincount(codes, minlength=k), "observed": O, "expected": E},
        index=pd.Index([first[lab] for lab in labels], name="group"),
    )
    return {"statistic": stat, "df": df, "p": float(stats.chi2.sf(stat, df)), "groups": table}


@dataclass(frozen=True)
class KaplanMeierResult:
    """Kaplan–Meier curves for one or more groups (see :func:`kaplan_meier`).

    Attributes
    ----------
    table : pandas.DataFrame
        :func:`km_table` rows with a leading ``group`` column.
    summary : pandas.DataFrame
        Per group: ``n, events, mean, se, ci_lower, ci_upper, end_time, median,
        median_ci_lower, median_ci_upper`` (:func:`km_mean`).
    logrank : dict or None
        :func:`logrank` result when there are two or more groups.
    """

    table: pd.DataFrame
    summary: pd.DataFrame
    logrank: dict | None = None
    _data: pd.DataFrame = field(default=None, repr=False)  # type: ignore[assignment]

    def at_risk(self, times) -> pd.DataFrame:
        """Numbers at risk (time ≥ t) per group at each of ``times``, for a plot's risk table."""
        times = np.atleast_1d(np.asarray(times, dtype=float))
        out = {
            grp: [(int((sub["time"] >= tt).sum())) for tt in times]
            for grp, sub in self._data.groupby("group", sort=False)
        }
        return pd.DataFrame(out, index=pd.Index(times, name="time")).T.rename_axis("group")

    def curve(self, group=None) -> pd.DataFrame:
        """Step-function coordinates (starting at time 0, S = 1) for plotting one group."""
        tab = self.table if group is None else self.table[self.table["group"] == group]
        start = pd.DataFrame({"time": [0.0], "survival": [1.0], "ci_lower": [1.0], "ci_upper": [1.0]})
        return pd.concat([start, tab[["time", "survival", "ci_lower", "ci_upper"]]], ignore_index=True)

    def censored(self, group=None) -> pd.DataFrame:
        """Times with a censoring and the curve's value there (``time, survival``), for censor marks."""
        tab = self.table if group is None else self.table[self.table["group"] == group]
        return tab.loc[tab["n_censor"] > 0, ["time", "survival"]].reset_index(drop=True)

    @property
    def groups(self) -> list:
        """The groups, in the order of :attr:`summary`."""
        return list(self.summary.index)


def kaplan_meier(durations, events, groups=None, conf_level: float = 0.95) -> KaplanMeierResult:
    """Kaplan–Meier curves, SPSS mean/median summaries and (for ≥ 2 groups) the log-rank test.

    Parameters
    ----------
    durations, events : array_like
        Times (> 0) and event indicators (0/1).
    groups : array_like, optional
        Group labels; ``None`` gives one curve labelled ``"all"``. Groups appear in sorted order.
    conf_level : float
        Level of all intervals.

    Returns
    -------
    KaplanMeierResult
        ``.table`` (survival table per group), ``.summary`` (one row per group, see
        :func:`km_mean`), ``.logrank`` and ``.at_risk(times)`` for risk tables under plots.
    """
    t, e = _check_outcome(durations, events)
    if groups is None:
        g = pd.Series(["all"] * t.size, dtype=object)
    else:
        g = pd.Series(np.asarray(groups, dtype=object))
        if len(g) != t.size:
            raise StatisticsError(f"groups ({len(g)}) and durations ({t.size}) differ in length")
        if g.isna().any():
            raise StatisticsError(f"{int(g.isna().sum())} missing group labels; drop those patients first")
    data = pd.DataFrame({"time": t, "event": e, "group": g.to_numpy()})
    try:
        order = sorted(data["group"].unique())
    except TypeError:
        order = list(data["group"].unique())
    tables, rows = [], []
    for grp in order:
        sub = data[data["group"] == grp]
        tables.append(km_table(sub["time"], sub["event"], conf_level).assign(group=grp))
        rows.append(pd.Series(km_mean(sub["time"], sub["event"], conf_level), name=grp))
    table = pd.concat(tables, ignore_index=True)
    table = table[["group", *[c for c in table.columns if c != "group"]]]
    summary = pd.DataFrame(rows)
    summary.index.name = "group"
    summary = summary[["n", "events", "mean", "se", "ci_lower", "ci_upper", "end_time",
                       "median", "median_ci_lower", "median_ci_upper"]]
    summary[["n", "events"]] = summary[["n", "events"]].astype(int)
    lr = logrank(t, e, g.to_numpy()) if len(order) >= 2 else None
    return KaplanMeierResult(table, summary, lr, data)

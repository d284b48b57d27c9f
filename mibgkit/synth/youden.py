"""Latent targets ordered so that the published split is Youden's optimum, and the check of it.

The cohort design (:mod:`mibgkit.synth.clinical`) gives every patient a class (above or below a
published cutoff) and an outcome; :func:`youden_targets` draws class-conditional targets and
orders them so that, once realised with the generator's measurement scatter, the cutoff between
the classes is the Youden-optimal observed cutoff of :func:`mibgkit.stats.roc_cutoff` (highest
cutoff on ties): false negatives sit among the low true negatives and the lowest of the high
class is a true positive. :func:`youden_robust` checks a set of targets against that rule for
every realisation within ``apart``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["youden_targets", "youden_robust"]

#: Extra true negatives above each false negative (true positives below each false positive),
#: beyond the least that keeps the published split the Youden optimum.
_YOUDEN_SLACK = 2


def _apart_below(y: float, apart: float, relative: bool) -> float:
    """The largest target whose realisation cannot reach that of a target ``y``."""
    return y * (1.0 - apart) / (1.0 + apart) if relative else y - 2.0 * apart


def _apart_above(y: float, apart: float, relative: bool) -> float:
    """The smallest target whose realisation cannot fall to that of a target ``y``."""
    return y * (1.0 + apart) / (1.0 - apart) if relative else y + 2.0 * apart


def youden_targets(rng, high, event, *, tn, fn_floor, tp, tp_floor, fp, apart, relative) -> np.ndarray:
    """Targets of one marker whose Youden-optimal cut-off splits the classes as designed.

    ``high`` (0/1) is each patient's class (above or below the published cut-off), ``event``
    the outcome. With ``P`` events and ``N`` event-free patients, Youden's J at a cut-off is
    proportional to ``TP·N + TN·P``, so the split between the classes is the (highest) optimum
    exactly when

    * going down into the low class, every false negative has more than ``j·N/P`` true negatives
      above it (``j`` = its rank among the false negatives, from the top), and
    * going up into the high class, every false positive has more than ``k·P/N`` true positives
      below it (``k`` = its rank among the false positives, from the bottom).

    The targets are placed so that this holds with :data:`_YOUDEN_SLACK` to spare for any
    realisation within ``apart`` of each target (relative or absolute).

    Parameters
    ----------
    rng : numpy.random.Generator
    high, event : array of 0/1
    tn, tp, fp : callable ``k -> k targets``
        Class-conditional draws for true negatives, true positives and false positives.
    fn_floor : float
        Lowest target of a false negative.
    tp_floor : (float, float)
        Range of the lowest true positive's target (just above the cut-off's margin).
    apart : float
        Realisation tolerance; ``relative`` says whether it is relative.

    Returns
    -------
    numpy.ndarray
        One target per patient.
    """
    high = np.asarray(high)
    event = np.asarray(event)
    out = np.empty(high.size)
    n_pos, n_neg = int(event.sum()), int((event == 0).sum())
    fn_idx = np.flatnonzero((high == 0) & (event == 1))
    tn_idx = np.flatnonzero((high == 0) & (event == 0))
    tp_idx = np.flatnonzero((high == 1) & (event == 1))
    fp_idx = np.flatnonzero((high == 1) & (event == 0))

    v = np.sort(tn(tn_idx.size))[::-1]
    x = np.empty(fn_idx.size)
    cap = np.inf
    for j in range(1, fn_idx.size + 1):
        need = (j * n_neg) // max(n_pos, 1) + 1 + _YOUDEN_SLACK
        ub = cap if v.size == 0 else min(cap, _apart_below(v[min(need, v.size) - 1], apart, relative))
        if not np.isfinite(ub):
            ub = fn_floor * 2.0
        x[j - 1] = fn_floor + (ub - fn_floor) * rng.uniform(0.1, 0.9) if ub > fn_floor else ub
        cap = x[j - 1]
    out[tn_idx] = rng.permutation(v)
    out[fn_idx] = rng.permutation(x)

    t = np.sort(tp(tp_idx.size))
    if t.size:
        t[0] = rng.uniform(*tp_floor)
        t = np.sort(t)
    f = np.sort(fp(fp_idx.size))
    for k in range(1, f.size + 1):
        need = (k * n_pos) // max(n_neg, 1) + 1 + (_YOUDEN_SLACK if k > 1 else 0)
        if t.size:
            f[k - 1] = max(f[k - 1], _apart_above(t[min(need, t.size) - 1], apart, relative) * 1.005)
        if k > 1:
            f[k - 1] = max(f[k - 1], f[k - 2])
    out[tp_idx] = rng.permutation(t)
    out[fp_idx] = rng.permutation(f)
    return out


def youden_robust(values, high, event, apart: float, relative: bool) -> bool:
    """Whether the split between the classes is the unique Youden optimum for every realisation
    of ``values`` within ``apart`` (relative or absolute) — with ``apart = 0``, for the values
    themselves (ties: the highest cut-off wins, as in :func:`mibgkit.stats.roc_cutoff`)."""
    x = np.asarray(values, float)
    high = np.asarray(high).astype(bool)
    event = np.asarray(event).astype(bool)
    n_pos, n_neg = int(event.sum()), int((~event).sum())
    lo = x * (1 - apart) if relative else x - apart
    hi = x * (1 + apart) if relative else x + apart
    # Down into the low class: at every false negative's highest realisation, the false
    # negatives that may lie above it against the true negatives that surely do.
    fn, tn = ~high & event, ~high & ~event
    for b in hi[fn]:
        if int((hi[fn] >= b).sum()) * n_neg - int((lo[tn] >= b).sum()) * n_pos >= 0:
            return False
    # Up into the high class: the lowest member must surely be a true positive, and above each
    # false positive's lowest realisation the true positives surely below must outweigh it.
    tp, fp = high & event, high & ~event
    if fp.any():
        if not tp.any() or hi[tp].min() >= lo[fp].min():
            return False
        for a in lo[fp]:
            if int((hi[tp] < a).sum()) * n_neg - int((lo[fp] <= a).sum()) * n_pos <= 0:
                return False
    return True

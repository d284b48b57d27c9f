"""The cohort design: clinical variables, outcome, latent imaging targets and fake identities.

A synthetic cohort is drawn in two stages. This module draws the first, cheap stage for every
patient at once — a table of a few dozen numbers per patient — and :mod:`mibgkit.synth.generate`
turns each row into images, one patient at a time.

The design copies the study's (Zhou et al. 2025, n = 50) as *cohort design parameters*: the
marginal counts of Table 1 and the cross-tabulation of outcome against the two published image
cut-offs (Table 3) are fixed numbers for n = 50, scaled to other ``n`` by largest remainders, and
assigned to patients by seeded (weighted) permutations. What a patient's images will measure is
not written down anywhere: the design only gives each patient a *latent class* (above or below the
Tmax/Lmax and ASP cut-offs) and a *target* drawn from a class-conditional distribution with a
margin away from the cut-off; the image generator then has to realise that target, as measured by
the imaging pipeline on the written files.

What drives what
----------------
* ``efs_event`` (11 of 50) is the root. Events get more bone/bone-marrow metastases (8 of 17),
  MYCN amplification, NB histology (10 of 11; one event in a GNB) and older age (one event under
  18 months), each through a (weighted) permutation, so the clinical Cox pattern of Table 2
  emerges rather than being set. IDRFs go with irregular (high-ASP) primaries and the Curie
  score with the metastases it counts, so both are prognostic on their own but add nothing once
  ASP and metastasis are known (the published stepwise model).
* Image classes: the joint counts of (event, Tmax/Lmax ≥ 6.278, ASP ≥ 0.342) reproduce Table 3's
  confusion matrices (TP 6 / FN 5 / FP 4 / TN 35 and TP 7 / FN 4 / FP 4 / TN 35), and the targets
  are *ordered* (:func:`youden_targets`) so that the published split is Youden's optimum: false
  negatives sit among the low true negatives, the lowest of the high class is a true positive.
* The tumour mean is set by heterogeneity (hot foci, necrosis): Tmax/Tmean grows with avidity,
  so Tmean/Lmean and Tmean/Mmean carry little prognostic signal; the visual uptake extent
  (19 of 50 between muscle and liver) is read off the lowest Tmean/Lmean targets.
* Tumour size (maximum diameter) is independent of outcome.
* Event times come from an exponential hazard whose rate grows with a latent risk score
  (metastasis, ASP, Tmax/Lmax), truncated to the patient's follow-up; the earliest event and the
  longest follow-up are pinned to the published 2.5 and 74 months.
* For n = 50 the whole draw is repeated (seeded) until the targets, widened by how closely the
  images realise them, show Table 2's univariate pattern and stepwise model and Youden optima at
  the designed splits; the cohort generator then verifies the confusion counts and Youden optima
  on what the pipeline measures.

All functions take a seeded :class:`numpy.random.Generator`; nothing is global.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from .. import paper
from ..errors import StatisticsError
from ..manifest import CLINICAL_COLUMNS as _CLINICAL_SCHEMA
from ..stats import _coxfast
from ..stats.timeroc import DAYS_PER_MONTH
from .identities import IDENTITY_COLUMNS, fake_identities
from .youden import youden_robust, youden_targets

__all__ = [
    "DEFAULT_SEED",
    "STUDY_N",
    "TMAX_LMAX_CUTOFF",
    "ASP_CUTOFF",
    "CLINICAL_COLUMNS",
    "IDENTITY_COLUMNS",
    "apportion",
    "design_cohort",
]

#: Seed of the calibrated cohort (the paper's publication date, 31 March 2025).
DEFAULT_SEED = 20250331

#: Size of the published cohort; the design counts below are for this n.
STUDY_N = paper.N_PATIENTS

#: Published ROC cut-offs (Table 3); ``score >= cutoff`` is positive.
TMAX_LMAX_CUTOFF = float(paper.TABLE3.at["tmax_lmax", "cutoff"])
ASP_CUTOFF = float(paper.TABLE3.at["asphericity", "cutoff"])

#: Columns of ``clinical.csv`` that a report may use: the clinical table's schema.
CLINICAL_COLUMNS = tuple(c.name for c in _CLINICAL_SCHEMA)

# --------------------------------------------------------------------------------------------
# The study's design (n = 50). Counts, not probabilities: they are scaled to other n.
# Published counts come from mibgkit.paper; the rest are design choices, stated here.
# --------------------------------------------------------------------------------------------

#: Event types among the 11 events (2 relapse, 2 progression, 7 deaths).
_EVENT_TYPES = {k: paper.EVENT_TYPES[k] for k in ("death", "relapse", "progression")}
_N_EVENTS = sum(_EVENT_TYPES.values())

#: (Tmax/Lmax high, ASP high) -> count, for events and for event-free patients (Table 3).
_IMAGE_CLASSES = {
    1: {(1, 1): 3, (1, 0): 3, (0, 1): 4, (0, 0): 1},
    0: {(1, 1): 1, (1, 0): 3, (0, 1): 3, (0, 0): 32},
}

#: Bone/bone-marrow metastasis among events (8 of the 17; the paper does not give the split).
_METASTASIS = {1: 8, 0: paper.TABLE1_COUNTS["bone_marrow_metastasis"]["yes"] - 8}


def _published(variable: str, rename: Mapping | None = None) -> dict[str, int]:
    """Table 1's counts of a variable with the design's level names ("" = not known)."""
    rename = dict(rename or {})
    return {rename.get(k, "" if k is None else k): v for k, v in paper.TABLE1_COUNTS[variable].items()}


def _known(variable: str) -> dict[str, int]:
    known = int(paper.TABLE1_CONTINUOUS[variable]["n"])
    return {"yes": known, "no": STUDY_N - known}


_MARGINS: dict[str, dict[str, int]] = {
    "sex": _published("sex"),
    "age_group": _published("age_group", {"<18 mo": "<18m", "18 mo–5 y": "18m-5y", "≥5 y": ">=5y"}),
    **{v: _published(v) for v in ("primary_site", "idrf", "uptake_extent", "histology")},
    "nse_known": _known("nse_ng_ml"),
    "ldh_known": _known("ldh_u_l"),
    **{v: _published(v) for v in ("mycn", "del_1p36", "del_11q23", "neoadjuvant_chemo", "surgery",
                                  "postoperative_chemo", "radiotherapy")},
}

#: Published ranges kept as design anchors (age 1–102 months, median 37; IDRF 0–7; Curie 0–28).
_AGE_RANGE = tuple(int(paper.TABLE1_CONTINUOUS["age_months"][k]) for k in ("min", "max"))
_AGE_MEDIAN = int(paper.TABLE1_CONTINUOUS["age_months"]["median"])
_IDRF_MAX = int(paper.TABLE1_CONTINUOUS["idrf_number"]["max"])
_CURIE_MAX = int(paper.TABLE1_CONTINUOUS["curie_score"]["max"])

#: Data cut-off (end of follow-up) and follow-up window, days (2.5–74 months of 30.4375 days).
_CUTOFF_DATE = _dt.date(2024, 12, 31)
_MIN_FOLLOW_UP_DAYS = int(paper.FOLLOW_UP_MONTHS["min"] * DAYS_PER_MONTH)
_MAX_FOLLOW_UP_DAYS = int(paper.FOLLOW_UP_MONTHS["max"] * DAYS_PER_MONTH)

# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def apportion(counts: Mapping, total: int) -> dict:
    """Scale design counts to a new total by largest remainders (Hamilton's method).

    Parameters
    ----------
    counts : mapping of label to non-negative number
        Counts for the study's n (any positive total).
    total : int
        The new total.

    Returns
    -------
    dict
        Same keys, non-negative integers summing to ``total``; identical to ``counts`` when
        ``total`` equals their sum. Ties in the remainders go to the label listed first.

    Examples
    --------
    >>> apportion({"a": 39, "b": 7, "c": 4}, 50)
    {'a': 39, 'b': 7, 'c': 4}
    >>> apportion({"a": 39, "b": 7, "c": 4}, 8)
    {'a': 6, 'b': 1, 'c': 1}
    """
    keys = list(counts)
    weights = np.array([float(counts[k]) for k in keys])
    if total <= 0 or weights.sum() <= 0:
        return {k: 0 for k in keys}
    exact = weights / weights.sum() * total
    base = np.floor(exact).astype(int)
    order = sorted(range(len(keys)), key=lambda i: (-(exact[i] - base[i]), i))
    for i in order[: total - int(base.sum())]:
        base[i] += 1
    return {k: int(b) for k, b in zip(keys, base)}


def _weighted_order(rng: np.random.Generator, weights: np.ndarray) -> np.ndarray:
    """Indices in the order of a weighted random permutation (Efraimidis–Spirakis keys)."""
    w = np.maximum(np.asarray(weights, dtype=float), 1e-12)
    keys = np.log(rng.random(w.size)) / w
    return np.argsort(-keys, kind="stable")


def _assign(rng: np.random.Generator, counts: Mapping[str, int], weights: Mapping[str, np.ndarray] | None = None,
            n: int | None = None) -> np.ndarray:
    """Give each of ``n`` individuals one label so that label ``k`` occurs ``counts[k]`` times.

    Labels are filled in the order of ``counts``; a label with a weight vector picks its members
    from the still unassigned individuals with probability proportional to the weights (weighted
    sampling without replacement), a label without one picks uniformly. The last label takes the rest.
    """
    labels = list(counts)
    n = int(sum(counts.values())) if n is None else n
    out = np.empty(n, dtype=object)
    free = np.ones(n, dtype=bool)
    for label in labels[:-1]:
        k = counts[label]
        idx = np.flatnonzero(free)
        w = np.ones(idx.size) if not weights or label not in weights else np.asarray(weights[label])[idx]
        chosen = idx[_weighted_order(rng, w)[:k]]
        out[chosen] = label
        free[chosen] = False
    out[free] = labels[-1]
    return out


def _assign_within(rng, groups: np.ndarray, counts_by_group: Mapping, weights=None) -> np.ndarray:
    """:func:`_assign` separately inside each group (e.g. events and event-free patients)."""
    out = np.empty(groups.size, dtype=object)
    for g, counts in counts_by_group.items():
        idx = np.flatnonzero(groups == g)
        w = None if weights is None else {k: np.asarray(v)[idx] for k, v in weights.items()}
        out[idx] = _assign(rng, apportion(counts, idx.size), w, n=idx.size)
    return out


def _scaled(name: str, n: int) -> dict[str, int]:
    return apportion(_MARGINS[name], n)


def _stratified_uniform(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` uniforms, one in each of ``n`` equal strata of (0, 1), in random order."""
    return (rng.permutation(n) + rng.random(n)) / max(n, 1)


# --------------------------------------------------------------------------------------------
# design
# --------------------------------------------------------------------------------------------


def _ages(rng: np.random.Generator, groups: np.ndarray) -> np.ndarray:
    """Age at diagnosis in months within each age group; anchors range and median for the study n."""
    n = groups.size
    ages = np.empty(n, dtype=int)
    bounds = {"<18m": (1, 17), "18m-5y": (18, 59), ">=5y": (60, 102)}
    for g, (lo, hi) in bounds.items():
        idx = np.flatnonzero(groups == g)
        u = _stratified_uniform(rng, idx.size)
        if g == "<18m":
            vals = lo + (hi - lo) * u**0.8
        elif g == ">=5y":
            vals = lo + (hi - lo) * u**1.6
        else:
            vals = lo + (hi - lo) * u**1.1
        ages[idx] = np.clip(np.rint(vals), lo, hi).astype(int)
        if idx.size >= 3:
            order = idx[np.argsort(ages[idx], kind="stable")]
            if g == "<18m":
                ages[order[0]] = _AGE_RANGE[0]
            if g == ">=5y":
                ages[order[-1]] = _AGE_RANGE[1]
    # Median anchor: for the study's proportions the two central order statistics fall in the
    # middle age group; pin them to the published median, keeping the order around them.
    if n >= 10:
        order = np.argsort(ages, kind="stable")
        mid = {order[(n - 1) // 2], order[n // 2]}
        if all(groups[i] == "18m-5y" for i in mid):
            ranks = np.empty(n, dtype=int)
            ranks[order] = np.arange(n)
            middle = groups == "18m-5y"
            ages[middle & (ranks < (n - 1) // 2)] = np.minimum(ages[middle & (ranks < (n - 1) // 2)], _AGE_MEDIAN)
            ages[middle & (ranks > n // 2)] = np.maximum(ages[middle & (ranks > n // 2)], _AGE_MEDIAN)
            ages[list(mid)] = _AGE_MEDIAN
    return ages


def _truncated_exponential(rng, rate: np.ndarray, lo: float, hi: np.ndarray) -> np.ndarray:
    """Draw from an exponential with ``rate`` (1/day) conditioned on ``lo <= t <= hi``."""
    span = np.maximum(hi - lo, 1.0)
    u = rng.random(rate.size)
    return lo - np.log1p(-u * (-np.expm1(-rate * span))) / rate


def design_cohort(n: int, rng: np.random.Generator, *, search: bool | None = None) -> pd.DataFrame:
    """Draw the clinical table, outcome and latent imaging targets of a synthetic cohort.

    Parameters
    ----------
    n : int
        Number of patients (≥ 1). For ``n = 50`` every Table 1 count and the outcome × cut-off
        cross-tabulation of Table 3 are the study's; other ``n`` scale them.
    rng : numpy.random.Generator
        Seeded generator; the table is a deterministic function of its state.
    search : bool, optional
        Redraw until the design shows the study's analysis pattern (see Notes). Default: for
        ``n = 50`` only. Without it the counts are the same, the pattern is left to chance.

    Returns
    -------
    pandas.DataFrame
        One row per patient, ``patient_id`` ``NB001``, ``NB002``, ... in order. Columns:

        * the clinical table (:data:`CLINICAL_COLUMNS`), blanks as ``""``;
        * outcome: ``scan_date`` (ISO), ``efs_days`` (days, > 0), ``efs_event`` (0/1);
        * latent image design (never written to disk): ``tl_high``, ``asp_high`` (0/1 classes),
          ``target_tmax_lmax``, ``target_tmean_lmean``, ``target_asp``, ``target_diameter_mm``
          (maximum tumour diameter, mm), ``target_mmax_lmax`` (muscle over liver maximum),
          ``liver_counts`` (mean reconstructed counts per voxel in liver), ``risk``
          (latent linear predictor of the hazard);
        * identity (:data:`IDENTITY_COLUMNS` plus ``accession_number`` and ``referring_physician``).

    Notes
    -----
    For the study's size the whole draw is repeated (same generator, so still deterministic)
    until the *design* — its targets, widened by how closely the images realise them — shows
    the study's analysis pattern: Table 2's univariate significance, the forward stepwise model
    (bone/BM metastasis, Tmax/Lmax, ASP) and Youden optima at the Table 3 splits
    (:func:`youden_robust`). The images are then generated and measured; nothing measured is
    fed back.
    """
    if n < 1:
        raise ValueError(f"a cohort needs at least one patient, got n={n}")
    ids = np.array([f"NB{i + 1:03d}" if n < 1000 else f"NB{i + 1:04d}" for i in range(n)])
    study = n == STUDY_N if search is None else bool(search) and n == STUDY_N
    best = (-math.inf, None)
    for _attempt in range(_STUDY_ATTEMPTS if study else 1):
        cols = _draw_design(n, rng, study=study)
        if cols is None:
            continue
        score = _study_pattern(cols, rng) if study else 1.0
        if score > best[0]:
            best = (score, cols)
        if score >= 1.0:
            break
    cols = best[1]
    if cols is None:  # pragma: no cover - every attempt failed the nuisance search
        cols = _draw_design(n, rng, study=False)
    design = pd.DataFrame({"patient_id": ids, **cols})
    identity = fake_identities(rng, design["sex"].to_numpy(), design["age_months"].to_numpy(),
                               [_dt.date.fromisoformat(s) for s in design["scan_date"]])
    return pd.concat([design, identity], axis=1)


#: Histology among events and event-free patients (one event in a GNB: HR ≈ 4.5, not significant).
_HISTOLOGY = {1: {"NB": 10, "GNB": 1}, 0: {"NB": 23, "GNB": 16}}

#: Age groups among events and event-free patients (older children tend to relapse: HR ≈ 4, p ≈ .08).
_AGE_GROUPS = {1: {"<18m": 1, "18m-5y": 6, ">=5y": 4}, 0: {"<18m": 17, "18m-5y": 12, ">=5y": 10}}

#: How closely the generator realises a target, as measured by the pipeline: relative for
#: Tmax/Lmax, absolute for ASP. The Youden design keeps ordered targets this far apart.
_TL_REALISED = 0.045
_ASP_REALISED = 0.032

#: Whole-design redraws allowed for the study's n.
_STUDY_ATTEMPTS = 400

#: Lmax/Lmean of a 30 ml liver sphere on noisy SPECT: log-normal, as measured on generated cohorts.
_LMAX_OVER_LMEAN_LOGSD = 0.092


def _draw_design(n: int, rng: np.random.Generator, *, study: bool) -> dict | None:
    """One draw of every design column except the identities (``None``: no nuisance draw fits)."""
    # --- outcome classes -------------------------------------------------------------------
    n_events = apportion({"event": _N_EVENTS, "none": STUDY_N - _N_EVENTS}, n)["event"]
    event = np.zeros(n, dtype=int)
    event[rng.permutation(n)[:n_events]] = 1
    event_type = np.full(n, "none", dtype=object)
    ev_idx = np.flatnonzero(event == 1)
    event_type[ev_idx] = _assign(rng, apportion(_EVENT_TYPES, ev_idx.size), n=ev_idx.size)

    classes = _assign_within(rng, event, {g: {f"{a}{b}": c for (a, b), c in cells.items()}
                                          for g, cells in _IMAGE_CLASSES.items()})
    tl_high = np.array([int(c[0]) for c in classes])
    asp_high = np.array([int(c[1]) for c in classes])
    metastasis = _assign_within(rng, event, {g: {"yes": k, "no": (_N_EVENTS if g else STUDY_N - _N_EVENTS) - k}
                                             for g, k in _METASTASIS.items()},
                                {"yes": 1.0 + 1.5 * (tl_high == 0)})
    bm = (metastasis == "yes").astype(int)

    # --- clinical variables, weighted towards the latent risk where the study saw a link -----
    sex = _assign(rng, _scaled("sex", n))
    age_group = _assign_within(rng, event, _AGE_GROUPS, {">=5y": 1.0 + 0.5 * bm})
    ages = _ages(rng, age_group)
    site = _assign(rng, _scaled("primary_site", n))
    # Image-defined risk factors go with irregular, invasive primaries (high ASP) more than with
    # the outcome itself.
    idrf = _assign(rng, _scaled("idrf", n), {"positive": 1.0 + 3.0 * asp_high + 0.5 * event})
    histology = _assign_within(rng, event, _HISTOLOGY, {"NB": 1.0 + 0.5 * bm})
    mycn = _assign(rng, _scaled("mycn", n), {"amplified": 1.0 + 8.0 * event})
    del1p = _assign(rng, _scaled("del_1p36", n), {"yes": 1.0 + 4.0 * event})
    del11q = _assign(rng, _scaled("del_11q23", n), {"yes": 1.0 + 2.0 * event})
    nse_known = _assign(rng, _scaled("nse_known", n)) == "yes"
    ldh_known = _assign(rng, _scaled("ldh_known", n)) == "yes"

    # IDRF number and Curie score follow the outcome only loosely (the study: HR 1.44 per IDRF,
    # 1.10 per Curie point); Curie's link runs mostly through the metastases it counts.
    idrf_number = np.zeros(n, dtype=int)
    pos = idrf == "positive"
    idrf_number[pos] = 1 + rng.binomial(_IDRF_MAX - 1, 0.14 + 0.16 * asp_high[pos] + 0.04 * event[pos])
    curie = np.zeros(n, dtype=int)
    curie[bm == 0] = rng.binomial(1, 0.12, size=int((bm == 0).sum()))
    mets = np.flatnonzero(bm == 1)
    median = np.full(mets.size, 5.5)
    curie[mets] = np.clip(np.rint(median * np.exp(0.5 * rng.standard_normal(mets.size))), 1, _CURIE_MAX)

    neoadjuvant = _assign(rng, _scaled("neoadjuvant_chemo", n),
                          {"yes": 1.0 + 3.0 * (idrf == "positive") + 1.0 * bm})
    surgery = _assign(rng, _scaled("surgery", n))
    postop = _assign(rng, _scaled("postoperative_chemo", n),
                     {"yes": 1.0 + 3.0 * bm + 1.0 * (histology == "NB") + 1.0 * event})
    # Radiotherapy: every patient given chemotherapy and radiotherapy stayed event-free in the study.
    rt_w = (1.0 + 2.0 * bm) * np.where(event == 1, 1e-6, 1.0)
    radiotherapy = _assign(rng, _scaled("radiotherapy", n), {"yes": rt_w})

    nse = np.exp(np.log(45.0) + 0.9 * bm + 0.7 * rng.standard_normal(n))
    nse = np.clip(np.round(nse, 1), 18.0, 830.0)
    ldh = np.exp(np.log(280.0) + 0.35 * bm + 0.35 * rng.standard_normal(n))
    ldh = np.clip(np.round(ldh), 191.0, 1870.0)

    # --- latent imaging classes and prognostic targets, ordered for Youden's optimum ----------
    tl = youden_targets(
        rng, tl_high, event,
        tn=lambda k: np.clip(np.exp(np.log(3.0) + 0.35 * rng.standard_normal(k)), 1.5, 5.8),
        fn_floor=1.7,
        tp=lambda k: rng.uniform(6.9, 13.0, k), tp_floor=(6.9, 7.2),
        fp=lambda k: rng.uniform(6.9, 9.5, k),
        apart=_TL_REALISED, relative=True)
    asp = youden_targets(
        rng, asp_high, event,
        tn=lambda k: 0.14 + 0.17 * rng.beta(1.6, 1.3, k),
        fn_floor=0.145,
        tp=lambda k: 0.42 + 0.9 * rng.beta(1.2, 2.2, k), tp_floor=(0.385, 0.41),
        fp=lambda k: rng.uniform(0.42, 0.66, k),
        apart=_ASP_REALISED, relative=False)

    # --- outcome times ---------------------------------------------------------------------
    risk = 1.0 * bm + 1.0 * np.minimum(asp, 1.2) + 0.45 * tl
    # Follow-up (scan to data cut-off), stratified separately among survivors and events so that
    # the survivors' median lands near the published 42 months.
    ev = event == 1
    q = np.empty(n)
    q[ev] = _stratified_uniform(rng, int(ev.sum()))
    q[~ev] = _stratified_uniform(rng, int((~ev).sum()))
    follow_up = _MIN_FOLLOW_UP_DAYS + 14 + (_MAX_FOLLOW_UP_DAYS - _MIN_FOLLOW_UP_DAYS - 14) * _beta_ppf(q)
    follow_up = np.floor(follow_up)
    efs_days = follow_up.copy()
    if ev.any():
        rate = 1.0 / 900.0 * np.exp(risk[ev] - risk[ev].mean())
        efs_days[ev] = np.floor(_truncated_exponential(rng, rate, _MIN_FOLLOW_UP_DAYS, follow_up[ev]))
    # Range anchors (2.5 and 74 months as published): the earliest event and the longest follow-up.
    if n >= 10:
        if ev.any():
            efs_days[np.flatnonzero(ev)[np.argmin(efs_days[ev])]] = _MIN_FOLLOW_UP_DAYS
        if (~ev).any():
            longest = np.flatnonzero(~ev)[np.argmax(follow_up[~ev])]
            follow_up[longest] = efs_days[longest] = _MAX_FOLLOW_UP_DAYS
    scan_dates = [_CUTOFF_DATE - _dt.timedelta(days=int(f)) for f in follow_up]

    # --- targets unrelated to outcome: uptake heterogeneity, muscle background, size ---------
    # For the study's design they are redrawn until they show Table 2's pattern (not prognostic)
    # with a margin; the images must then still realise every target, as measured.
    body_scale = _body_scale(ages)
    below = apportion(_MARGINS["uptake_extent"], n)["muscle_to_liver"]
    nuisance = extent = None
    outcome = _coxfast.CoxData(np.asarray(efs_days, float), np.asarray(event, float), "breslow") if study else None
    for _attempt in range(100 if study else 1):
        draw = _nuisance_targets(rng, tl, asp, body_scale, avid=tl_high == 1)
        # Visual extent of uptake: the tumours with the lowest mean uptake relative to the liver
        # are read as "between muscle and liver" (19 of 50), the others as "above the liver".
        ext = np.full(n, "above_liver", dtype=object)
        ext[np.argsort(draw["tmean_lmean"], kind="stable")[:below]] = "muscle_to_liver"
        if not study:
            nuisance, extent = draw, ext
            break
        feats = {**_predicted_features(draw), "uptake_extent": (ext == "above_liver").astype(float)}
        if all(_wald_p(efs_days, event, feats[k], data=outcome) >= 0.1  # every p at least twice 0.05
               for k in (*TABLE2_NOT_SIGNIFICANT, "uptake_extent")):
            nuisance, extent = draw, ext
            break
    if nuisance is None:
        return None
    liver_counts = np.exp(np.log(75.0) + 0.25 * rng.standard_normal(n))

    return {
        "sex": sex,
        "age_months": ages,
        "primary_site": site,
        "idrf": idrf,
        "idrf_number": idrf_number,
        "curie_score": curie,
        "uptake_extent": extent,
        "bone_marrow_metastasis": metastasis,
        "histology": histology,
        "nse_ng_ml": np.where(nse_known, nse, np.nan),
        "ldh_u_l": np.where(ldh_known, ldh, np.nan),
        "mycn": mycn,
        "del_1p36": del1p,
        "del_11q23": del11q,
        "neoadjuvant_chemo": neoadjuvant,
        "surgery": surgery,
        "postoperative_chemo": postop,
        "radiotherapy": radiotherapy,
        "event_type": event_type,
        "scan_date": [d.isoformat() for d in scan_dates],
        "efs_days": efs_days.astype(float),
        "efs_event": event,
        "tl_high": tl_high,
        "asp_high": asp_high,
        "target_tmax_lmax": nuisance["tmax_lmax"],
        "target_tmean_lmean": nuisance["tmean_lmean"],
        "target_asp": asp,
        "target_diameter_mm": nuisance["diameter_mm"],
        "target_mmax_lmax": nuisance["mmax_lmax"],
        "liver_counts": liver_counts,
        "risk": risk,
    }


def _study_pattern(cols: Mapping, rng: np.random.Generator, n_checks: int = 3) -> float:
    """How robustly a study-size design shows the published analysis pattern: -1 when it fails
    outright, else the share of realisations (up to the first failure) whose stepwise model is
    the published one; 1.0 = all.

    Checked on the targets, each realised ``n_checks`` times with the generator's measurement
    scatter (Tmax/Lmax ±3 %, ASP ±0.025, Lmax/Lmean of the liver sphere log-normal): Youden optima
    at the designed splits (:func:`youden_robust`), univariate Cox p < 0.02 for Table 2's
    significant variables and > 0.05 for age group and histology, and the forward stepwise model
    (the selection loop of :func:`mibgkit.stats.cox_forward_stepwise` on the fast engine,
    :func:`mibgkit.stats.validation.select_model`; candidates p ≤ 0.05) = bone/BM metastasis,
    Tmax/Lmax, ASP.
    """
    from ..stats.validation import select_model

    t = np.asarray(cols["efs_days"], float)
    e = np.asarray(cols["efs_event"], int)
    outcome = _coxfast.CoxData(t, np.asarray(e, float), "breslow")
    tl = np.asarray(cols["target_tmax_lmax"], float)
    asp = np.asarray(cols["target_asp"], float)
    if not (youden_robust(tl, cols["tl_high"], e, _TL_REALISED, True)
            and youden_robust(asp, cols["asp_high"], e, _ASP_REALISED, False)):
        return -1.0
    bm = (np.asarray(cols["bone_marrow_metastasis"]) == "yes").astype(float)
    fixed = {"bone_marrow_metastasis": bm, "curie_score": np.asarray(cols["curie_score"], float),
             "idrf_number": np.asarray(cols["idrf_number"], float)}
    for name, x in fixed.items():
        if not _wald_p(t, e, x, data=outcome) < 0.04:  # clinical variables are not measured: exact
            return -1.0
    age = (np.asarray(cols["age_months"]) >= 18).astype(float)
    nb = (np.asarray(cols["histology"]) == "NB").astype(float)
    if not (_wald_p(t, e, age, data=outcome) > 0.05 and _wald_p(t, e, nb, data=outcome) > 0.05):
        return -1.0
    n = t.size
    realised = []
    for _ in range(n_checks):
        r_tl = tl * np.exp(rng.uniform(-0.03, 0.03, n))
        r = {**fixed, "tmax_lmax": r_tl, "asphericity": asp + rng.uniform(-0.025, 0.025, n),
             "tmax_lmean": r_tl * _LMAX_OVER_LMEAN * np.exp(_LMAX_OVER_LMEAN_LOGSD * rng.standard_normal(n))}
        if not all(_wald_p(t, e, r[k], data=outcome) < 0.02 for k in ("tmax_lmax", "asphericity", "tmax_lmean")):
            return -1.0
        realised.append(r)
    order = list(TABLE2_SIGNIFICANT)
    for passed, r in enumerate(realised):
        try:
            sel, _ = select_model(t, e, np.column_stack([r[k] for k in order]), order, screen_p=None)
        except StatisticsError:  # a design the model cannot fit is simply not taken
            return passed / n_checks
        if set(sel) != {"bone_marrow_metastasis", "tmax_lmax", "asphericity"}:
            return passed / n_checks
    return 1.0


def _nuisance_targets(rng, tl, asp, body_scale, avid) -> dict[str, np.ndarray]:
    """Targets that should carry little prognostic information of their own.

    * Tmean/Lmean = Tmax/Lmax · Lmax/Lmean / h, with the heterogeneity ``h = Tmax/Tmean`` drawn
      between 1.6 and what the tumour's size allows (hot foci make the maximum, necrosis lowers the
      mean), higher for avid and aggressive tumours.
    * Mmax/Lmax: muscle background, loosely tied to tumour avidity (Tmax/Lmax^0.75), mostly noise.
    * Maximum diameter: log-normal around 62 mm, limited by the child's size; spiculated tumours
      need at least 40 mm to show their spicules on 3 mm voxels, and so do the roundest ones.
    """
    n = tl.size
    mmax_lmax = np.exp(np.log(0.33) + 0.75 * (np.log(tl) - np.log(3.5)) + 0.45 * rng.standard_normal(n))
    mmax_lmax = np.clip(mmax_lmax, 0.15, 0.9)
    diameter = np.exp(np.log(62.0) + 0.38 * rng.standard_normal(n)) * (0.75 + 0.35 * body_scale)
    diameter = np.clip(diameter, 24.0, 150.0 * np.minimum(body_scale, 1.0))
    # Spiculated tumours and very round ones (low ASP) need some size to show it on 3 mm voxels.
    diameter = np.where((asp >= ASP_CUTOFF) | (asp < 0.2), np.maximum(diameter, 40.0), diameter)
    # Small tumours cannot hide a hot focus: the blur spreads it over much of the ROI.
    h_max = np.clip(1.6 + 2.0 * (diameter / 40.0) ** 2, 2.6, _MAX_HETEROGENEITY)
    # Heterogeneity h = Tmax/Tmean within what a tumour of this size can show; aggressive (avid)
    # tumours are the heterogeneous ones, so Tmean/Lmean = (Tmax/Lmax)·(Lmax/Lmean)/h hardly
    # follows the outcome.
    u = np.where(avid, rng.beta(6.0, 1.2, n), rng.beta(1.2, 4.0, n))
    h = _MIN_HETEROGENEITY + (h_max - _MIN_HETEROGENEITY) * u
    tmean_lmean = tl * _LMAX_OVER_LMEAN / h
    return {"tmax_lmax": tl, "tmean_lmean": tmean_lmean, "mmax_lmax": mmax_lmax, "diameter_mm": diameter}


#: Range of Tmax/Tmean a tumour of this generator can show (smooth mass ... few hot foci).
_MIN_HETEROGENEITY = 1.6
_MAX_HETEROGENEITY = 7.0

#: Typical ratios between reference statistics on noisy SPECT (measured on generated cohorts):
#: Lmax/Lmean in a 30 ml liver sphere and Mmax/Mmean in a 10 ml muscle sphere.
_LMAX_OVER_LMEAN = 1.46
_MMAX_OVER_MMEAN = 1.8


def _predicted_features(nuisance: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The image features a design should produce once its targets are met."""
    tl = nuisance["tmax_lmax"]
    ml = nuisance["mmax_lmax"]
    return {
        "tmax_lmax": tl,
        "tmax_lmean": tl * _LMAX_OVER_LMEAN,
        "tmean_lmean": nuisance["tmean_lmean"],
        "tmax_mmax": tl / ml,
        "tmean_mmean": nuisance["tmean_lmean"] * _MMAX_OVER_MMEAN / (_LMAX_OVER_LMEAN * ml),
        "max_diameter_mm": nuisance["diameter_mm"],
    }


#: Table 2: univariate Cox p < 0.05 for these ...
TABLE2_SIGNIFICANT = ("bone_marrow_metastasis", "tmax_lmax", "tmax_lmean", "asphericity", "curie_score",
                      "idrf_number")
#: ... and not for these.
TABLE2_NOT_SIGNIFICANT = ("tmean_lmean", "tmean_mmean", "tmax_mmax", "max_diameter_mm")


def _wald_p(time, event, x, *, data: "_coxfast.CoxData | None" = None) -> float:
    """Wald p of a univariate Cox model (Breslow ties) on the package's partial likelihood.

    :mod:`mibgkit.stats._coxfast` fits it; 1.0 for a constant covariate or no events, 0.0 where
    the likelihood is monotone (separation, β → ∞: the design then certainly separates).
    ``data``: the ``CoxData`` of ``time`` and ``event`` (Breslow) when many covariates share them.
    """
    x = np.asarray(x, dtype=float)
    e = np.asarray(event, dtype=float)
    if np.ptp(x) == 0 or e.sum() == 0:
        return 1.0
    try:
        f = _coxfast.fit(data or _coxfast.CoxData(np.asarray(time, float), e, "breslow"), x[:, None], ["x"])
    except StatisticsError:
        return 0.0
    return math.erfc(abs(f.beta[0]) * math.sqrt(f.info[0, 0]) / math.sqrt(2.0))


def _beta_ppf(q: np.ndarray, a: float = 1.3, b: float = 1.1) -> np.ndarray:
    """Quantiles of a Beta(a, b) by bisection on its CDF (no SciPy import at design time)."""
    from scipy.special import betainc

    lo, hi = np.zeros_like(q), np.ones_like(q)
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        below = betainc(a, b, mid) < q
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
    return 0.5 * (lo + hi)


def _body_scale(age_months) -> np.ndarray:
    """Linear body size relative to a 5-year-old (height ratio; 1.0 at 60 months)."""
    a = np.asarray(age_months, dtype=float)
    height_cm = 50.0 + 25.0 * (a / 12.0) ** 0.544  # 56 cm at 1 mo, 75 at 1 y, 110 at 5 y, 130 at 8.5 y
    return height_cm / 110.0

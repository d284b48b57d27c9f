"""The cohort design: clinical variables, outcome, latent imaging targets and fake identities.

A synthetic cohort is drawn in two stages. This module draws the first, cheap stage for every
patient at once — a table of a few dozen numbers per patient — and :mod:`mibgkit.synth.cohort`
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
  more IDRFs, higher Curie scores, MYCN amplification, NB histology and older age, each through a
  weighted permutation, so the clinical Cox pattern of Table 2 emerges rather than being set.
* Image classes: the joint counts of (event, Tmax/Lmax ≥ 6.278, ASP ≥ 0.342) reproduce Table 3's
  confusion matrices (TP 6 / FN 5 / FP 4 / TN 35 and TP 7 / FN 4 / FP 4 / TN 35).
* The tumour mean is set by heterogeneity (hot foci, necrosis): Tmax/Tmean grows with avidity,
  so Tmean/Lmean and Tmean/Mmean carry little prognostic signal; the visual uptake extent
  (19 of 50 between muscle and liver) is read off the lowest Tmean/Lmean targets.
* Tumour size (maximum diameter) is independent of outcome.
* Event times come from an exponential hazard whose rate grows with a latent risk score
  (metastasis, ASP, Tmax/Lmax, Curie score, IDRF number), truncated to the patient's follow-up.

All functions take a seeded :class:`numpy.random.Generator`; nothing is global.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

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
STUDY_N = 50

#: Published ROC cut-offs (Table 3); ``score >= cutoff`` is positive.
TMAX_LMAX_CUTOFF = 6.278
ASP_CUTOFF = 0.342

#: Columns of ``clinical.csv`` that a report may use (Table 1 variables and the event type).
CLINICAL_COLUMNS = (
    "patient_id", "sex", "age_months", "primary_site", "idrf", "idrf_number", "curie_score",
    "uptake_extent", "bone_marrow_metastasis", "histology", "nse_ng_ml", "ldh_u_l", "mycn",
    "del_1p36", "del_11q23", "neoadjuvant_chemo", "surgery", "postoperative_chemo", "radiotherapy",
    "event_type",
)

#: Identity columns a hospital export carries; never meant for a report.
IDENTITY_COLUMNS = ("patient_name", "birth_date", "hospital_mrn")

# --------------------------------------------------------------------------------------------
# The study's design (n = 50). Counts, not probabilities: they are scaled to other n.
# --------------------------------------------------------------------------------------------

#: Event types among the 11 events (2 relapse, 2 progression, 7 deaths).
_EVENT_TYPES = {"death": 7, "relapse": 2, "progression": 2}
_N_EVENTS = sum(_EVENT_TYPES.values())

#: (Tmax/Lmax high, ASP high) -> count, for events and for event-free patients (Table 3).
_IMAGE_CLASSES = {
    1: {(1, 1): 4, (1, 0): 2, (0, 1): 3, (0, 0): 2},
    0: {(1, 1): 1, (1, 0): 3, (0, 1): 3, (0, 0): 32},
}

#: Bone/bone-marrow metastasis among events and among event-free patients (8 of 17 had events).
_METASTASIS = {1: 8, 0: 9}

_MARGINS: dict[str, dict[str, int]] = {
    "sex": {"M": 25, "F": 25},
    "age_group": {"<18m": 18, "18m-5y": 18, ">=5y": 14},
    "primary_site": {"abdomen": 39, "mediastinum": 7, "pelvis": 4},
    "idrf": {"positive": 30, "negative": 20},
    "uptake_extent": {"above_liver": 31, "muscle_to_liver": 19},
    "histology": {"NB": 33, "GNB": 17},
    "nse_known": {"yes": 37, "no": 13},
    "ldh_known": {"yes": 30, "no": 20},
    "mycn": {"normal": 33, "amplified": 4, "": 13},
    "del_1p36": {"no": 30, "yes": 2, "": 18},
    "del_11q23": {"no": 30, "yes": 5, "": 15},
    "neoadjuvant_chemo": {"yes": 23, "no": 27},
    "surgery": {"yes": 50, "no": 0},
    "postoperative_chemo": {"yes": 31, "no": 19},
    "radiotherapy": {"yes": 13, "no": 37},
}

#: Published ranges kept as design anchors (age 1–102 months, median 37; IDRF 0–7; Curie 0–28).
_AGE_RANGE = (1, 102)
_AGE_MEDIAN = 37
_IDRF_MAX = 7
_CURIE_MAX = 28

#: Data cut-off (end of follow-up) and follow-up window, days (2.5–74 months).
_CUTOFF_DATE = _dt.date(2024, 12, 31)
_MIN_FOLLOW_UP_DAYS = 76
_MAX_FOLLOW_UP_DAYS = 2250

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


def design_cohort(n: int, rng: np.random.Generator) -> pd.DataFrame:
    """Draw the clinical table, outcome and latent imaging targets of a synthetic cohort.

    Parameters
    ----------
    n : int
        Number of patients (≥ 1). For ``n = 50`` every Table 1 count and the outcome × cut-off
        cross-tabulation of Table 3 are the study's; other ``n`` scale them.
    rng : numpy.random.Generator
        Seeded generator; the table is a deterministic function of its state.

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
    """
    if n < 1:
        raise ValueError(f"a cohort needs at least one patient, got n={n}")
    ids = np.array([f"NB{i + 1:03d}" if n < 1000 else f"NB{i + 1:04d}" for i in range(n)])

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
                                             for g, k in _METASTASIS.items()})
    bm = (metastasis == "yes").astype(int)

    # --- clinical variables, weighted towards the latent risk where the study saw a link -----
    sex = _assign(rng, _scaled("sex", n))
    age_group = _assign(rng, _scaled("age_group", n), {
        ">=5y": 1.0 + 1.5 * event + 0.5 * bm, "18m-5y": 1.0 + 1.0 * event})
    ages = _ages(rng, age_group)
    site = _assign(rng, _scaled("primary_site", n))
    idrf = _assign(rng, _scaled("idrf", n), {"positive": 1.0 + 3.0 * event})
    histology = _assign(rng, _scaled("histology", n), {"NB": 1.0 + 3.0 * event + 0.5 * bm})
    mycn = _assign(rng, _scaled("mycn", n), {"amplified": 1.0 + 8.0 * event})
    del1p = _assign(rng, _scaled("del_1p36", n), {"yes": 1.0 + 4.0 * event})
    del11q = _assign(rng, _scaled("del_11q23", n), {"yes": 1.0 + 2.0 * event})
    nse_known = _assign(rng, _scaled("nse_known", n)) == "yes"
    ldh_known = _assign(rng, _scaled("ldh_known", n)) == "yes"

    idrf_number = np.zeros(n, dtype=int)
    pos = idrf == "positive"
    idrf_number[pos] = 1 + rng.binomial(_IDRF_MAX - 1, np.where(event[pos] == 1, 0.36, 0.15))
    curie = np.zeros(n, dtype=int)
    curie[bm == 0] = rng.binomial(1, 0.12, size=int((bm == 0).sum()))
    mets = np.flatnonzero(bm == 1)
    median = np.where(event[mets] == 1, 11.0, 4.0)
    curie[mets] = np.clip(np.rint(median * np.exp(0.6 * rng.standard_normal(mets.size))), 1, _CURIE_MAX)

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

    # --- latent imaging classes and prognostic targets (margins from the cut-offs) ----------
    tl = _class_targets(rng, tl_high, event, {
        (1, 1): lambda k: rng.uniform(7.2, 13.0, k),
        (1, 0): lambda k: rng.uniform(6.7, 9.0, k),
        (0, 1): lambda k: rng.uniform(3.6, 5.8, k),
        (0, 0): lambda k: np.exp(np.log(3.0) + 0.35 * rng.standard_normal(k)),
    })
    tl = np.where(tl_high == 1, tl, np.clip(tl, 1.4, 5.8))
    asp = _class_targets(rng, asp_high, event, {
        (1, 1): lambda k: 0.42 + 0.9 * rng.beta(1.2, 2.2, k),
        (1, 0): lambda k: rng.uniform(0.39, 0.62, k),
        (0, 1): lambda k: rng.uniform(0.20, 0.30, k),
        (0, 0): lambda k: 0.06 + 0.24 * rng.beta(2.0, 2.2, k),
    })

    # --- outcome times ---------------------------------------------------------------------
    risk = 0.9 * bm + 1.2 * np.minimum(asp, 1.2) + 0.10 * tl + 0.03 * curie + 0.12 * idrf_number
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
    scan_dates = [_CUTOFF_DATE - _dt.timedelta(days=int(f)) for f in follow_up]

    # --- targets unrelated to outcome: uptake heterogeneity, muscle background, size ---------
    # For the study's design they are redrawn until the design itself shows Table 2's pattern
    # with a margin; the images must then still realise every target, as measured.
    body_scale = _body_scale(ages)
    fixed = {"bone_marrow_metastasis": bm, "curie_score": curie, "idrf_number": idrf_number, "asphericity": asp}
    best = None
    for _attempt in range(300 if n == STUDY_N else 1):
        draw = _nuisance_targets(rng, tl, asp_high, body_scale, avid=(event == 1) | (tl_high == 1))
        if n != STUDY_N:
            best = (0.0, draw)
            break
        margin = table2_margin(efs_days, event, {**fixed, **_predicted_features(draw)})
        if best is None or margin > best[0]:
            best = (margin, draw)
        if margin >= math.log(3.0):  # every p at least 3x on the right side of 0.05
            break
    nuisance = best[1]
    liver_counts = np.exp(np.log(75.0) + 0.25 * rng.standard_normal(n))
    # Visual extent of uptake: the tumours with the lowest mean uptake relative to the liver are
    # read as "between muscle and liver" (19 of 50), the others as "above the liver".
    below = apportion(_MARGINS["uptake_extent"], n)["muscle_to_liver"]
    uptake_extent = np.full(n, "above_liver", dtype=object)
    uptake_extent[np.argsort(nuisance["tmean_lmean"], kind="stable")[:below]] = "muscle_to_liver"

    design = pd.DataFrame({
        "patient_id": ids,
        "sex": sex,
        "age_months": ages,
        "primary_site": site,
        "idrf": idrf,
        "idrf_number": idrf_number,
        "curie_score": curie,
        "uptake_extent": uptake_extent,
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
    })
    identity = fake_identities(rng, sex, ages, scan_dates)
    return pd.concat([design, identity], axis=1)


def _class_targets(rng, high: np.ndarray, event: np.ndarray, draws: Mapping) -> np.ndarray:
    """Draw a target per patient from the distribution of its (class, event) cell."""
    out = np.empty(high.size)
    for (h, e), draw in draws.items():
        idx = np.flatnonzero((high == h) & (event == e))
        out[idx] = draw(idx.size)
    return out


def _nuisance_targets(rng, tl, asp_high, body_scale, avid) -> dict[str, np.ndarray]:
    """Targets that should carry little prognostic information of their own.

    * Tmean/Lmean = Tmax/Lmax · Lmax/Lmean / h, with the heterogeneity ``h = Tmax/Tmean`` drawn
      between 1.6 and what the tumour's size allows (hot foci make the maximum, necrosis lowers the
      mean), higher for avid and aggressive tumours.
    * Mmax/Lmax: muscle background, loosely tied to tumour avidity (Tmax/Lmax^0.75), mostly noise.
    * Maximum diameter: log-normal around 62 mm, limited by the child's size; spiculated tumours
      need at least 40 mm to show their spicules on 3 mm voxels.
    """
    n = tl.size
    mmax_lmax = np.exp(np.log(0.33) + 0.75 * (np.log(tl) - np.log(3.5)) + 0.45 * rng.standard_normal(n))
    mmax_lmax = np.clip(mmax_lmax, 0.15, 0.9)
    diameter = np.exp(np.log(62.0) + 0.38 * rng.standard_normal(n)) * (0.75 + 0.35 * body_scale)
    diameter = np.clip(diameter, 24.0, 150.0 * np.minimum(body_scale, 1.0))
    diameter = np.where(asp_high == 1, np.maximum(diameter, 40.0), diameter)
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
_LMAX_OVER_LMEAN = 1.42
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


def cox_wald_p(time, event, x) -> float:
    """Wald p of a univariate Cox model (Breslow ties), by Newton–Raphson.

    A small, dependency-free check used while drawing the design; the statistics of the workbook
    live in :mod:`mibgkit.stats`.

    Parameters
    ----------
    time : array_like
        Follow-up times.
    event : array_like
        1 = event, 0 = censored.
    x : array_like
        Covariate (yes/no strings are read as 1/0).

    Returns
    -------
    float
        Two-sided Wald p for β = 0 (1.0 when the covariate is constant).
    """
    from math import erfc, sqrt

    t = np.asarray(time, float)
    d = np.asarray(event, float)
    x = np.asarray([1.0 if v == "yes" else 0.0 if v == "no" else float(v) for v in x])
    if x.std() == 0 or d.sum() == 0:
        return 1.0
    x = (x - x.mean()) / x.std()
    order = np.argsort(t, kind="stable")
    t, d, x = t[order], d[order], x[order]
    _, first = np.unique(t, return_index=True)
    start = np.repeat(first, np.diff(np.append(first, t.size)))  # first index of each tie group
    def derivatives(beta):
        w = np.exp(beta * x)
        s0 = np.cumsum(w[::-1])[::-1][start]
        s1 = np.cumsum((w * x)[::-1])[::-1][start]
        s2 = np.cumsum((w * x * x)[::-1])[::-1][start]
        mean = s1 / s0
        loglik = float(np.sum(d * (beta * x - np.log(s0))))
        return loglik, float(np.sum(d * (x - mean))), float(np.sum(d * (s2 / s0 - mean**2)))

    beta = 0.0
    loglik, score, info = derivatives(beta)
    for _ in range(100):
        if info <= 0:
            return 1.0
        step = score / info
        while True:  # step halving keeps the partial likelihood increasing
            new = derivatives(beta + step)
            if new[0] >= loglik - 1e-12 or abs(step) < 1e-12:
                break
            step /= 2.0
        beta += step
        loglik, score, info = new
        if abs(step) < 1e-10:
            break
        if abs(beta) > 30:
            return 0.0
    return erfc(abs(beta) * sqrt(info) / sqrt(2.0))


def table2_margin(time, event, features: Mapping[str, np.ndarray]) -> float:
    """Smallest log-distance of a univariate Cox p from 0.05 on Table 2's side (negative = wrong side)."""
    margins = [math.log(0.05) - math.log(max(cox_wald_p(time, event, features[k]), 1e-300))
               for k in TABLE2_SIGNIFICANT if k in features]
    margins += [math.log(cox_wald_p(time, event, features[k])) - math.log(0.05)
                for k in TABLE2_NOT_SIGNIFICANT if k in features]
    return min(margins)


def table2_pattern(time, event, features: Mapping[str, np.ndarray], *, sig_below: float = 0.05,
                   ns_above: float = 0.05) -> bool:
    """Whether univariate Cox p-values show Table 2's pattern (significant vs not)."""
    for name in TABLE2_SIGNIFICANT:
        if name in features and not cox_wald_p(time, event, features[name]) < sig_below:
            return False
    for name in TABLE2_NOT_SIGNIFICANT:
        if name in features and not cox_wald_p(time, event, features[name]) > ns_above:
            return False
    return True


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


# --------------------------------------------------------------------------------------------
# identities (fake, but shaped like a hospital's)
# --------------------------------------------------------------------------------------------

_SURNAMES = (
    "Albrechtsen", "Baranowska", "Castellanos", "Dragomirova", "Eriksdottir", "Fairbrother", "Gallardo",
    "Hollingsworth", "Ilievska", "Jaroszewicz", "Kettleborough", "Lindqvist", "Marchetti", "Nakashima",
    "Oyelaran", "Pemberton", "Quillfeldt", "Rasmussen", "Szczepanik", "Thorvaldsen", "Underwood",
    "Valderrama", "Wetherall", "Yamaguchi", "Zielinska", "Abernathy", "Bergstrand", "Cavendish",
    "Delacroix", "Esposito", "Fitzgerald", "Grimaldi", "Hargreaves", "Ivanisevic", "Kowalczyk",
    "Lancaster", "Montgomery", "Nieuwenhuis", "Ostrowska", "Pellegrini", "Rosenkranz", "Sandoval",
    "Tremblay", "Vasquez", "Wojciechowska", "Achterberg", "Blackwood", "Christiansen", "Dunmore",
    "Eversleigh", "Featherstone", "Goldsworthy", "Heathcote", "Ingleby", "Kinsella", "Lockhart",
    "Mirabelli", "Northcott", "Ormsby", "Penhaligon",
)
_GIVEN = {
    "F": ("Anneliese", "Birgitta", "Clementine", "Dagny", "Eleonora", "Florentyna", "Gwendolyn",
          "Henrietta", "Isadora", "Jacqueline", "Katarzyna", "Leocadia", "Marisol", "Nathalie",
          "Ottilie", "Philippa", "Rosalind", "Seraphina", "Theodora", "Valentina", "Wilhelmina",
          "Ximena", "Yolanda", "Zuzanna", "Annika", "Beatrix", "Cordelia", "Delphine", "Evangeline",
          "Felicity", "Georgiana", "Honorata", "Imogen", "Juliana", "Kristiina", "Ludmila",
          "Magdalena", "Noemi", "Octavia", "Perpetua"),
    "M": ("Aurelio", "Bartholomew", "Casimir", "Demetrius", "Emmerich", "Fridtjof", "Gottfried",
          "Horatio", "Ignatius", "Jaroslaw", "Konstantin", "Leopold", "Maximilian", "Nikodem",
          "Octavian", "Peregrine", "Quentin", "Rupert", "Sebastiano", "Thaddeus", "Ulrich",
          "Valentin", "Wenceslas", "Xavier", "Yannick", "Zbigniew", "Alaric", "Benedikt", "Cornelius",
          "Desmond", "Evander", "Florian", "Gregorius", "Hieronymus", "Isidor", "Joachim", "Kasimir",
          "Lysander", "Marcellus", "Norbert"),
}

#: Referring paediatric oncologists (fictitious), as DICOM person names.
_PHYSICIANS = ("Wrenfield^Margarethe^^Dr", "Okonkwo-Lindahl^Tobias^^Dr", "Sauveterre^Ines^^Dr",
               "Brackenridge^Aurelian^^Dr")

#: The fictitious hospital every synthetic file claims to come from.
INSTITUTION = "St. Aldric Children's Hospital"


def _birth_date(scan: _dt.date, age_months: int, back_days: int) -> _dt.date:
    """A birth date at which the child is ``age_months`` completed months old on ``scan``."""
    y, m = divmod(scan.year * 12 + (scan.month - 1) - int(age_months), 12)
    m += 1
    day = min(scan.day, [31, 29 if (y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)) else 28, 31, 30, 31, 30,
                         31, 31, 30, 31, 30, 31][m - 1])
    anchor = _dt.date(y, m, day)
    # Going back fewer days than the previous month has keeps the completed-month age.
    return anchor - _dt.timedelta(days=int(back_days))


def fake_identities(rng: np.random.Generator, sex: Sequence[str], age_months: Sequence[int],
                    scan_dates: Sequence[_dt.date]) -> pd.DataFrame:
    """Names, birth dates, hospital numbers and accession numbers, distinct per patient.

    Parameters
    ----------
    rng : numpy.random.Generator
    sex : sequence of {"M", "F"}
    age_months : sequence of int
        Completed months of age at the scan; birth dates are consistent with it.
    scan_dates : sequence of datetime.date

    Returns
    -------
    pandas.DataFrame
        ``patient_name`` (DICOM person name ``Family^Given``), ``birth_date`` (ISO),
        ``hospital_mrn`` (``SAC`` + 7 digits), ``accession_number`` (``A`` + year + 6 digits),
        ``referring_physician``.
    """
    n = len(sex)
    used: set[str] = set()
    names, births, mrns, accs, doctors = [], [], [], [], []
    mrn_numbers = rng.choice(9_000_000, size=n, replace=False) + 1_000_000
    acc_numbers = rng.choice(900_000, size=n, replace=False) + 100_000
    for i in range(n):
        given = _GIVEN[str(sex[i])]
        for attempt in range(100):
            name = f"{_SURNAMES[rng.integers(len(_SURNAMES))]}^{given[rng.integers(len(given))]}"
            if attempt >= 50:
                name += f" {given[rng.integers(len(given))]}"
            if name not in used:
                break
        used.add(name)
        names.append(name)
        births.append(_birth_date(scan_dates[i], int(age_months[i]), int(rng.integers(0, 28))).isoformat())
        mrns.append(f"SAC{int(mrn_numbers[i]):07d}")
        accs.append(f"A{scan_dates[i].year}{int(acc_numbers[i]):06d}")
        doctors.append(_PHYSICIANS[int(rng.integers(len(_PHYSICIANS)))])
    return pd.DataFrame({"patient_name": names, "birth_date": births, "hospital_mrn": mrns,
                         "accession_number": accs, "referring_physician": doctors})

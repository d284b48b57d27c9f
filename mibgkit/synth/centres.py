r"""Other departments: synthetic validation cohorts from another scanner, case mix and outcome design.

The default synthetic cohort is the paper's department (Siemens Symbia T16, 3.0 mm voxels, the
published counts). :func:`mibgkit.synth.generate.generate_cohort` with ``centre="B"`` (``mibgkit
synth OUT --centre B``) writes a cohort from a second department instead, through the same image
generator and its calibration by measurement; only what this module states differs. It is the
validation cohort of the external-validation report (notebook 08).

Centre B
--------
*Scanner.* GE Discovery NM/CT 670 (the ``ge`` layout of :mod:`mibgkit.synth.nm_layouts`: multi-frame NM
with the geometry also at the top level, Slice Thickness twice the spacing), 128 × 128 matrix at
zoom 1.0: 4.418 mm SPECT voxels (565.5 mm field of view / 128), medium-energy general-purpose
collimator (``MEGP``, parallel hole; written as Collimator/Grid Name in the NM Detector
Information Sequence, with Zoom Factor 1), OSEM reconstruction (Convolution Kernel
``OSEM 4i10s``), a coarser system resolution (14–17 mm FWHM) and more counts per (larger) voxel.
The CT headers name the same GE system.

*Case mix* (counts for n = 50, scaled to other n by largest remainders): fewer infants (age
< 18 months 8, 18 months–5 years 24, ≥ 5 years 18; the paper's 18 / 18 / 14); more stage 3 —
locoregional, IDRF-positive tumours without distant spread — so IDRF positive 38 of 50 (paper 30),
bone/bone-marrow metastasis 14 of 50 (paper 17); primary site abdomen 36, mediastinum 8, pelvis 6;
histology NB 38 / GNB 12. Sex, MYCN, 1p36, 11q23, NSE/LDH availability and treatments follow the
paper's margins.

*Image features* (latent targets the generator must realise, as measured by the pipeline):
Tmax/Lmax log-normal (median 4.0, log-SD 0.5, 1.5–14) and ASP = 0.15 + 0.6 · Beta(1.3, 3.2)
+ 0.03 for metastatic disease (about a third above 0.342), independent of outcome *given* the
design below; targets within 8 % of the Tmax/Lmax cutoff or 0.04 of the ASP cutoff are moved to
that margin's edge (the generator keeps every patient clearly on one side of a published
cutoff). Tumour size, heterogeneity and muscle background as in the default cohort.

*Outcome design: the published effects hold, but weaker.* With PI the published prognostic index
(:math:`\ln 4.419 \cdot \mathrm{BM} + \ln 1.252 \cdot \mathrm{Tmax/Lmax} + \ln 26.755 \cdot
\mathrm{ASP}`, Table 2's multivariate HRs, on the latent targets), each patient's time to an EFS
event is exponential with hazard

.. math::
    h_i = \lambda_0 \exp\{\gamma\,(\mathrm{PI}_i - \overline{\mathrm{PI}})\}, \qquad
    \gamma = 0.5, \quad \lambda_0 = 1/3000 \text{ per day},

so every published log hazard ratio holds in direction but at half its size (true HRs 2.10 for
metastasis, 1.12 per unit Tmax/Lmax, 5.17 per unit ASP): the published model is optimistic for
this centre, and its calibration slope, measured on what the pipeline reads from the files, is
expected near 0.5 (below 1; a little lower still, since the measured features scatter around the
targets). Administrative censoring: scans spread over the 7 years before the data cut-off
(follow-up 6–84 months, uniform); 10 % of patients are lost to follow-up at a uniform fraction
(30–100 %) of their follow-up. Event types: relapse 35 %, progression 25 %, death 40 %.

The centre's default seed (:attr:`Centre.seed`) gives a cohort on which the calibration slope
measured through the pipeline is below 1 (tests/test_external_validation.py).
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .. import paper
from . import clinical as _clin
from .clinical import ASP_CUTOFF, TMAX_LMAX_CUTOFF, apportion
from .identities import fake_identities

__all__ = ["Centre", "CENTRES", "get", "design_cohort", "finish_files"]


@dataclass(frozen=True)
class Centre:
    """A synthetic department: scanner, case mix and outcome design (module notes)."""

    code: str
    name: str
    vendor: str                       # SPECT layout of mibgkit.synth.nm_layouts (VENDORS)
    manufacturer: str
    model: str
    spect_pixel_mm: float             # SPECT voxel size (isotropic), mm
    zoom: str                         # acquisition zoom as the header gives it
    collimator: str                   # Collimator/Grid Name (NM Detector Information)
    collimator_type: str              # Collimator Type
    kernel: str                       # reconstruction as the header names it (Convolution Kernel)
    series_description: str
    ct_kernel: str
    fwhm_mm: tuple[float, float]      # system resolution range, mm
    liver_counts: float               # median reconstructed counts per voxel in liver
    effect_scale: float               # gamma: true log-HRs = gamma × published log-HRs
    baseline_hazard_per_day: float    # lambda_0
    id_prefix: str                    # two letters before the patient number
    seed: int                         # default seed of the centre's cohort


#: The departments :func:`mibgkit.synth.generate.generate_cohort` can write (``centre=``).
CENTRES: dict[str, Centre] = {
    "B": Centre(
        code="B", name="Centre B (GE Discovery NM/CT 670, MEGP, 4.4 mm)", vendor="ge",
        manufacturer="GE MEDICAL SYSTEMS", model="Discovery NM/CT 670", spect_pixel_mm=4.418, zoom="1",
        collimator="MEGP", collimator_type="PARA", kernel="OSEM 4i10s",
        series_description="SPECT MIBG 24h OSEM AC", ct_kernel="STANDARD", fwhm_mm=(14.0, 17.0),
        liver_counts=140.0, effect_scale=0.5, baseline_hazard_per_day=1.0 / 3000.0, id_prefix="CB",
        seed=20250402,
    ),
}

# Centre B's design counts for n = 50 (module notes).
_B_AGE_GROUPS = {"<18m": 8, "18m-5y": 24, ">=5y": 18}
_B_SITE = {"abdomen": 36, "mediastinum": 8, "pelvis": 6}
_B_IDRF = {"positive": 38, "negative": 12}
_B_METASTASIS = {"yes": 14, "no": 36}
_B_HISTOLOGY = {"NB": 38, "GNB": 12}
_B_EVENT_TYPES = (("relapse", 0.35), ("progression", 0.25), ("death", 0.40))
_TL_APART = 0.08   # relative distance of a Tmax/Lmax target from the cutoff
_ASP_APART = 0.04  # absolute distance of an ASP target from the cutoff


def get(code: str) -> Centre:
    """The centre called ``code`` (case-insensitive); ``ValueError`` naming the choices otherwise."""
    key = str(code).upper()
    if key not in CENTRES:
        raise ValueError(f"unknown centre {code!r}; choose one of {', '.join(CENTRES)}")
    return CENTRES[key]


def published_pi(bone_marrow_metastasis, tmax_lmax, asphericity) -> np.ndarray:
    """Table 2's multivariate prognostic index :math:`\\sum \\ln(\\mathrm{HR}) x` (BM: 1 = yes)."""
    hr = paper.TABLE2_MULTIVARIATE["hr"]
    return (np.log(hr["bone_marrow_metastasis"]) * np.asarray(bone_marrow_metastasis, float)
            + np.log(hr["tmax_lmax"]) * np.asarray(tmax_lmax, float)
            + np.log(hr["asphericity"]) * np.asarray(asphericity, float))


def _apart(values: np.ndarray, cutoff: float, width: float, relative: bool) -> np.ndarray:
    """Targets moved out of the band ``cutoff ± width`` to its nearer edge."""
    w = width * cutoff if relative else width
    v = values.copy()
    near = np.abs(v - cutoff) < w
    v[near & (v >= cutoff)] = cutoff + w
    v[near & (v < cutoff)] = cutoff - w
    return v


def design_cohort(centre: str | Centre, n: int, rng: np.random.Generator) -> pd.DataFrame:
    """The design table of a centre's cohort: the columns of :func:`mibgkit.synth.clinical.design_cohort`.

    Parameters
    ----------
    centre : str or Centre
        A key of :data:`CENTRES` (``"B"``).
    n : int
        Number of patients (≥ 1).
    rng : numpy.random.Generator
        Seeded generator; the table is a deterministic function of its state.

    Returns
    -------
    pandas.DataFrame
        One row per patient, ``patient_id`` ``CB001``, ... : clinical table, outcome
        (``scan_date``, ``efs_days``, ``efs_event``), latent image targets and classes, the true
        ``risk`` (γ · PI, the log hazard up to a constant) and fake identities.
    """
    c = centre if isinstance(centre, Centre) else get(centre)
    if n < 1:
        raise ValueError(f"a cohort needs at least one patient, got n={n}")
    ids = np.array([f"{c.id_prefix}{i + 1:03d}" if n < 1000 else f"{c.id_prefix}{i + 1:04d}" for i in range(n)])
    assign, margins = _clin._assign, _clin._MARGINS

    metastasis = assign(rng, apportion(_B_METASTASIS, n))
    bm = (metastasis == "yes").astype(int)
    age_group = assign(rng, apportion(_B_AGE_GROUPS, n), {">=5y": 1.0 + 0.5 * bm})
    ages = _clin._ages(rng, age_group)
    sex = assign(rng, apportion(margins["sex"], n))
    site = assign(rng, apportion(_B_SITE, n))

    # Image targets (latent), then moved clear of the published cutoffs.
    tl = np.clip(np.exp(np.log(4.0) + 0.5 * rng.standard_normal(n)), 1.5, 14.0)
    tl = _apart(tl, TMAX_LMAX_CUTOFF, _TL_APART, relative=True)
    asp = 0.15 + 0.6 * rng.beta(1.3, 3.2, n) + 0.03 * bm
    asp = _apart(asp, ASP_CUTOFF, _ASP_APART, relative=False)
    tl_high = (tl >= TMAX_LMAX_CUTOFF).astype(int)
    asp_high = (asp >= ASP_CUTOFF).astype(int)

    idrf = assign(rng, apportion(_B_IDRF, n), {"positive": 1.0 + 2.0 * asp_high + 1.0 * (bm == 0)})
    pos = idrf == "positive"
    idrf_number = np.zeros(n, dtype=int)
    idrf_number[pos] = 1 + rng.binomial(_clin._IDRF_MAX - 1, 0.18 + 0.12 * asp_high[pos])
    curie = np.zeros(n, dtype=int)
    curie[bm == 0] = rng.binomial(1, 0.12, size=int((bm == 0).sum()))
    mets = np.flatnonzero(bm == 1)
    curie[mets] = np.clip(np.rint(5.5 * np.exp(0.5 * rng.standard_normal(mets.size))), 1, _clin._CURIE_MAX)
    histology = assign(rng, apportion(_B_HISTOLOGY, n), {"NB": 1.0 + 0.5 * bm})
    mycn = assign(rng, apportion(margins["mycn"], n), {"amplified": 1.0 + 4.0 * bm})
    del1p = assign(rng, apportion(margins["del_1p36"], n), {"yes": 1.0 + 2.0 * bm})
    del11q = assign(rng, apportion(margins["del_11q23"], n), {"yes": 1.0 + 2.0 * bm})
    nse_known = assign(rng, apportion(margins["nse_known"], n)) == "yes"
    ldh_known = assign(rng, apportion(margins["ldh_known"], n)) == "yes"
    neoadjuvant = assign(rng, apportion(margins["neoadjuvant_chemo"], n), {"yes": 1.0 + 3.0 * pos + 1.0 * bm})
    surgery = assign(rng, apportion(margins["surgery"], n))
    postop = assign(rng, apportion(margins["postoperative_chemo"], n), {"yes": 1.0 + 3.0 * bm})
    radiotherapy = assign(rng, apportion(margins["radiotherapy"], n), {"yes": 1.0 + 2.0 * bm})
    nse = np.clip(np.round(np.exp(np.log(45.0) + 0.9 * bm + 0.7 * rng.standard_normal(n)), 1), 18.0, 830.0)
    ldh = np.clip(np.round(np.exp(np.log(280.0) + 0.35 * bm + 0.35 * rng.standard_normal(n))), 191.0, 1870.0)

    # Outcome: exponential hazard on the published PI at gamma times its size.
    pi = published_pi(bm, tl, asp)
    risk = c.effect_scale * (pi - pi.mean())
    t_event = rng.exponential(1.0 / (c.baseline_hazard_per_day * np.exp(risk)))
    follow_up = np.floor(rng.uniform(6.0, 84.0, n) * _clin.DAYS_PER_MONTH)
    lost = rng.random(n) < 0.10
    censor = np.where(lost, np.floor(follow_up * rng.uniform(0.3, 1.0, n)), follow_up)
    censor = np.maximum(censor, 30.0)
    event = (t_event <= censor).astype(int)
    efs_days = np.where(event == 1, np.maximum(np.floor(t_event), 1.0), censor)
    kinds = [k for k, _ in _B_EVENT_TYPES]
    event_type = np.where(event == 1, rng.choice(kinds, size=n, p=[p for _, p in _B_EVENT_TYPES]), "none")
    scan_dates = [_clin._CUTOFF_DATE - _dt.timedelta(days=int(f)) for f in follow_up]

    nuisance = _clin._nuisance_targets(rng, tl, asp, _clin._body_scale(ages), avid=tl_high == 1)
    extent = np.full(n, "above_liver", dtype=object)
    below = apportion(margins["uptake_extent"], n)["muscle_to_liver"]
    extent[np.argsort(nuisance["tmean_lmean"], kind="stable")[:below]] = "muscle_to_liver"
    liver_counts = np.exp(np.log(c.liver_counts) + 0.25 * rng.standard_normal(n))

    design = pd.DataFrame({
        "patient_id": ids, "sex": sex, "age_months": ages, "primary_site": site, "idrf": idrf,
        "idrf_number": idrf_number, "curie_score": curie, "uptake_extent": extent,
        "bone_marrow_metastasis": metastasis, "histology": histology,
        "nse_ng_ml": np.where(nse_known, nse, np.nan), "ldh_u_l": np.where(ldh_known, ldh, np.nan),
        "mycn": mycn, "del_1p36": del1p, "del_11q23": del11q, "neoadjuvant_chemo": neoadjuvant,
        "surgery": surgery, "postoperative_chemo": postop, "radiotherapy": radiotherapy,
        "event_type": event_type.astype(object), "scan_date": [d.isoformat() for d in scan_dates],
        "efs_days": efs_days.astype(float), "efs_event": event, "tl_high": tl_high, "asp_high": asp_high,
        "target_tmax_lmax": tl, "target_tmean_lmean": nuisance["tmean_lmean"], "target_asp": asp,
        "target_diameter_mm": nuisance["diameter_mm"], "target_mmax_lmax": nuisance["mmax_lmax"],
        "liver_counts": liver_counts, "risk": risk,
    })
    identity = fake_identities(rng, design["sex"].to_numpy(), design["age_months"].to_numpy(), scan_dates)
    return pd.concat([design, identity], axis=1)


def finish_files(centre: str | Centre, patient_folder: str | Path, compression: str) -> None:
    """Give a written patient's DICOM headers the centre's acquisition: collimator and zoom in the
    NM Detector Information Sequence, reconstruction kernel and series description of the SPECT,
    and the CT's equipment and kernel. Pixel data and geometry are untouched; UIDs are kept, and the
    files stay byte-for-byte reproducible."""
    import pydicom

    from .dicom import _save

    c = centre if isinstance(centre, Centre) else get(centre)
    folder = Path(patient_folder)
    spect = folder / "spect.dcm"
    paths = [spect] if spect.is_file() else sorted((folder / "spect").glob("*.dcm"))
    for p in paths:
        ds = pydicom.dcmread(p)
        for det in ds.get("DetectorInformationSequence", []):
            det.CollimatorGridName = c.collimator
            det.CollimatorType = c.collimator_type
            det.ZoomFactor = [c.zoom, c.zoom]
        ds.ConvolutionKernel = c.kernel
        ds.SeriesDescription = c.series_description
        _save(ds, p, compression)
    for p in sorted((folder / "ct").glob("*.dcm")):
        ds = pydicom.dcmread(p)
        ds.Manufacturer = c.manufacturer
        ds.ManufacturerModelName = c.model
        ds.ConvolutionKernel = c.ct_kernel
        ds.SeriesDescription = f"CT AC {float(ds.SliceThickness):.1f} {c.ct_kernel}"
        _save(ds, p, compression)

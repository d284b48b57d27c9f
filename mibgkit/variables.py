"""The analysis variables: how clinical columns and image features become Cox covariates.

One place states each coding, so Table 2, the stepwise model, the ROC and the Kaplan–Meier
notebooks all use the same numbers. Binary variables are coded 1 for the level the paper treats as
the risk level; continuous variables keep the unit stated here (HR is per one unit).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Covariate:
    name: str       # column in the analysis table
    label: str      # as the paper prints it
    unit: str       # HR is per one of these
    source: str     # column it is computed from


#: Table 2's variables in the paper's order.
TABLE2_VARIABLES: tuple[Covariate, ...] = (
    Covariate("age_group", "Age group", "≥ 18 months vs < 18 months", "age_months"),
    Covariate("idrf_number", "IDRF number", "per IDRF", "idrf_number"),
    Covariate("uptake_extent", "Extent of uptake", "above liver vs muscle–liver", "uptake_extent"),
    Covariate("curie_score", "Curie score", "per point", "curie_score"),
    Covariate("bone_marrow_metastasis", "Bone/BM metastasis", "yes vs no", "bone_marrow_metastasis"),
    Covariate("histology", "Histology", "NB vs GNB", "histology"),
    Covariate("max_diameter_cm", "Maximum diameter", "per cm", "max_diameter_mm"),
    Covariate("tmax_lmax", "Tmax/Lmax", "per unit of ratio", "tmax_lmax"),
    Covariate("tmean_lmean", "Tmean/Lmean", "per unit of ratio", "tmean_lmean"),
    Covariate("tmax_lmean", "Tmax/Lmean", "per unit of ratio", "tmax_lmean"),
    Covariate("tmax_mmax", "Tmax/Mmax", "per unit of ratio", "tmax_mmax"),
    Covariate("tmean_mmean", "Tmean/Mmean", "per unit of ratio", "tmean_mmean"),
    Covariate("asphericity", "ASP", "per unit of ASP (1.0 = 100 %)", "asphericity"),
)

LABELS = {v.name: v.label for v in TABLE2_VARIABLES}

_BINARY = {
    "uptake_extent": "above_liver",
    "bone_marrow_metastasis": "yes",
    "histology": "NB",
}


def age_group(age_months: pd.Series) -> pd.Series:
    """Table 1's age groups: ``<18 mo``, ``18 mo–5 y``, ``≥5 y`` (60 months)."""
    cats = pd.cut(age_months, [-np.inf, 18, 60, np.inf], right=False, labels=["<18 mo", "18 mo–5 y", "≥5 y"])
    return cats.astype(object).where(age_months.notna(), None)


def covariates(table: pd.DataFrame) -> pd.DataFrame:
    """Numeric covariates of :data:`TABLE2_VARIABLES` from an analysis table.

    ``table`` is :func:`mibgkit.cohort.analysis_table` output (outcome, clinical columns,
    features). Returns ``efs_days``, ``efs_event`` and one float column per variable (NaN where
    the source is missing). Maximum diameter is converted to cm (HR per cm).
    """
    out = table[["efs_days", "efs_event"]].astype(float).copy()
    for v in TABLE2_VARIABLES:
        if v.source not in table:
            continue
        src = table[v.source]
        if v.name == "age_group":
            out[v.name] = np.where(src.isna(), np.nan, (src.astype(float) >= 18).astype(float))
        elif v.name in _BINARY:
            out[v.name] = np.where(src.isna(), np.nan, (src == _BINARY[v.name]).astype(float))
        elif v.name == "max_diameter_cm":
            out[v.name] = src.astype(float) / 10.0
        else:
            out[v.name] = src.astype(float)
    return out


def table1_variables():
    """Table 1's rows as :class:`mibgkit.stats.Variable` specs, in the paper's order."""
    from .stats.describe import Variable

    yes_no = ("no", "yes")
    return [
        Variable("sex", "Sex", "categorical", ("M", "F")),
        Variable("age_months", "Age at diagnosis", unit="months"),
        Variable("age_group", "Age group", "categorical", ("<18 mo", "18 mo–5 y", "≥5 y")),
        Variable("primary_site", "Primary tumour site", "categorical", ("abdomen", "mediastinum", "pelvis")),
        Variable("idrf", "IDRF", "categorical", ("positive", "negative")),
        Variable("idrf_number", "IDRF number"),
        Variable("curie_score", "Curie score"),
        Variable("uptake_extent", "Extent of MIBG uptake", "categorical", ("muscle_to_liver", "above_liver")),
        Variable("bone_marrow_metastasis", "Bone/bone-marrow metastasis", "categorical", yes_no),
        Variable("histology", "Histology", "categorical", ("NB", "GNB")),
        Variable("nse_ng_ml", "NSE", unit="ng/ml"),
        Variable("ldh_u_l", "LDH", unit="U/l"),
        Variable("mycn", "MYCN", "categorical", ("normal", "amplified")),
        Variable("del_1p36", "1p36 aberration", "categorical", yes_no),
        Variable("del_11q23", "11q23 aberration", "categorical", yes_no),
        Variable("asphericity", "ASP", digits=2),
        Variable("neoadjuvant_chemo", "Neoadjuvant chemotherapy", "categorical", yes_no),
        Variable("surgery", "Surgery", "categorical", yes_no),
        Variable("postoperative_chemo", "Postoperative chemotherapy", "categorical", yes_no),
        Variable("radiotherapy", "Radiotherapy", "categorical", yes_no),
    ]

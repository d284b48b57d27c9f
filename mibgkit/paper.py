"""The published numbers of Zhou et al. 2025 (EJNMMI Research), as data.

Every report shows these beside this run's values. Variable names are the workbook's column names;
where the paper's summary is internally inconsistent (e.g. "median 1.8 (IQR 0, 3)" for the IDRF
number, a mean presented as a median), the value is kept as printed and flagged in ``PAPER_FLAGS``.

Reference: Zhou Z, Yang X, Wang G, et al. The prognostic significance of semi-quantitative metabolic
parameters and tumoral metabolic activity based on 123I-MIBG SPECT/CT in pretreatment neuroblastoma
patients. EJNMMI Research 2025.
"""

from __future__ import annotations

import pandas as pd

CITATION = (
    "Zhou Z, Yang X, Wang G, et al. Prognostic significance of semi-quantitative metabolic parameters and "
    "tumoral metabolic activity based on 123I-MIBG SPECT/CT in pretreatment neuroblastoma patients. "
    "EJNMMI Research 2025."
)

N_PATIENTS = 50
N_EVENTS = 11
EVENT_TYPES = {"relapse": 2, "progression": 2, "death": 7}
FOLLOW_UP_MONTHS = {"median": 42.0, "min": 2.5, "max": 74.0}

#: Table 1 counts: variable -> {level: n}. Missing ("no information") under the key None.
TABLE1_COUNTS: dict[str, dict] = {
    "sex": {"M": 25, "F": 25},
    "age_group": {"<18 mo": 18, "18 mo–5 y": 18, "≥5 y": 14},
    "primary_site": {"abdomen": 39, "mediastinum": 7, "pelvis": 4},
    "idrf": {"positive": 30, "negative": 20},
    "uptake_extent": {"above_liver": 31, "muscle_to_liver": 19},
    "bone_marrow_metastasis": {"yes": 17, "no": 33},
    "histology": {"NB": 33, "GNB": 17},
    "mycn": {"normal": 33, "amplified": 4, None: 13},
    "del_1p36": {"no": 30, "yes": 2, None: 18},
    "del_11q23": {"no": 30, "yes": 5, None: 15},
    "neoadjuvant_chemo": {"yes": 23, "no": 27},
    "surgery": {"yes": 50, "no": 0},
    "postoperative_chemo": {"yes": 31, "no": 19},
    "radiotherapy": {"yes": 13, "no": 37},
}

#: Table 1 continuous summaries as printed: (centre, q1, q3, min, max, n non-missing).
TABLE1_CONTINUOUS: dict[str, dict] = {
    "age_months": {"median": 37.0, "min": 1.0, "max": 102.0, "n": 50},
    "idrf_number": {"median": 1.8, "q1": 0.0, "q3": 3.0, "min": 0.0, "max": 7.0, "n": 50},
    "curie_score": {"median": 3.3, "q1": 0.0, "q3": 2.0, "min": 0.0, "max": 28.0, "n": 50},
    "nse_ng_ml": {"median": 89.1, "q1": 23.65, "q3": 58.6, "min": 18.0, "max": 830.0, "n": 37},
    "ldh_u_l": {"median": 361.57, "q1": 228.0, "q3": 345.0, "min": 191.0, "max": 1870.0, "n": 30},
}

#: Cells of Table 1 that cannot be right as printed (a "median" outside its own IQR is a mean).
PAPER_FLAGS = {
    "idrf_number": "printed 'median 1.8 (0, 3)': 1.8 is not an attainable median of counts; likely a mean",
    "curie_score": "printed '3.3 (0, 2)': centre above Q3, so it is a mean, not a median",
    "nse_ng_ml": "printed '89.1 (23.65, 58.6)': centre above Q3, so it is a mean, not a median",
    "ldh_u_l": "printed '361.57 (228, 345)': centre above Q3, so it is a mean, not a median",
}

#: Table 2. Variable -> (HR, CI lower, CI upper, p). p printed as "< .001" is stored as 0.001 with
#: ``p_is_upper_bound``.
TABLE2_UNIVARIATE = pd.DataFrame(
    [
        ("age_group", "Age group", 3.870, 0.834, 17.949, 0.084),
        ("idrf_number", "IDRF number", 1.442, 1.102, 1.886, 0.008),
        ("uptake_extent", "Extent of uptake", 2.337, 0.505, 10.825, 0.278),
        ("curie_score", "Curie score", 1.095, 1.029, 1.165, 0.004),
        ("bone_marrow_metastasis", "Bone/BM metastasis", 7.031, 1.852, 26.696, 0.004),
        ("histology", "Histology", 4.511, 0.564, 36.087, 0.156),
        ("max_diameter_cm", "Maximum diameter", 1.076, 0.924, 1.253, 0.347),
        ("tmax_lmax", "Tmax/Lmax", 1.323, 1.124, 1.558, 0.001),
        ("tmean_lmean", "Tmean/Lmean", 1.228, 0.806, 1.871, 0.338),
        ("tmax_lmean", "Tmax/Lmean", 1.191, 1.075, 1.320, 0.001),
        ("tmax_mmax", "Tmax/Mmax", 1.048, 0.977, 1.123, 0.189),
        ("tmean_mmean", "Tmean/Mmean", 0.954, 0.789, 1.140, 0.602),
        ("asphericity", "ASP", 37.992, 5.529, 261.054, 0.001),
    ],
    columns=["variable", "label", "hr", "ci_lower", "ci_upper", "p"],
).set_index("variable")
TABLE2_UNIVARIATE["p_is_upper_bound"] = TABLE2_UNIVARIATE.index == "asphericity"

TABLE2_MULTIVARIATE = pd.DataFrame(
    [
        ("bone_marrow_metastasis", "Bone/BM metastasis", 4.419, 1.051, 18.570, 0.043),
        ("tmax_lmax", "Tmax/Lmax", 1.252, 1.074, 1.459, 0.004),
        ("asphericity", "ASP", 26.755, 2.618, 273.477, 0.006),
    ],
    columns=["variable", "label", "hr", "ci_lower", "ci_upper", "p"],
).set_index("variable")

#: Table 3: ROC cutoffs (positive = event), rule ``score >= cutoff``.
TABLE3 = pd.DataFrame(
    [
        ("tmax_lmax", "Tmax/Lmax", 6.278, 0.545, 0.897, 0.600, 0.875, 6, 5, 4, 35),
        ("asphericity", "ASP", 0.342, 0.636, 0.897, 0.636, 0.897, 7, 4, 4, 35),
    ],
    columns=["variable", "label", "cutoff", "sensitivity", "specificity", "ppv", "npv", "tp", "fn", "fp", "tn"],
).set_index("variable")

#: Kaplan–Meier mean EFS in days (95 % CI) per group, and the log-rank p as printed.
KM_MEAN_EFS = pd.DataFrame(
    [
        ("asphericity", "high", 1011.0, 523.0, 1499.0),
        ("asphericity", "low", 2015.0, 1822.0, 2207.0),
        ("tmax_lmax", "high", 1117.0, 523.0, 1682.0),
        ("tmax_lmax", "low", 1954.0, 1760.0, 2149.0),
        ("bone_marrow_metastasis", "yes", 1241.0, 797.0, 1686.0),
        ("bone_marrow_metastasis", "no", 2012.0, 1816.0, 2208.0),
    ],
    columns=["variable", "group", "mean", "ci_lower", "ci_upper"],
)
KM_LOGRANK_P = {"asphericity": ("<", 0.001), "tmax_lmax": ("<", 0.001), "bone_marrow_metastasis": ("=", 0.001)}

#: Literature cutoffs for ASP (fractions), for the robustness notebook.
LITERATURE_ASP_CUTOFFS = {"Zhou 2025": 0.342, "Rogasch 2017": 0.32, "Yadgarov 2022": 0.65}

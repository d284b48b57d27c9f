"""Notebook 06: how much of each headline result survives honest validation.

Bootstrap optimism of the screened stepwise model, maxstat-corrected and bootstrapped cutoffs,
continuous effects (HR per IQR, restricted cubic splines with a 3-knot fallback), model
assumptions (EPV, proportional hazards, separation, Firth), time-dependent AUC, the MTV
definition, and the literature's ASP cutoffs. Everything that a small or odd cohort cannot give
comes back as a :class:`~mibgkit.workbook.NotEstimable`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from .. import paper, stats, tables
from ..errors import StatisticsError
from ..stats.timeroc import DAYS_PER_YEAR
from ..variables import LABELS
from . import Missing, estimable

__all__ = ["optimism", "cutoff_table", "spline_fit", "final_model", "assumptions", "time_auc", "mtv_definition_table",
           "literature_cutoffs", "MARKERS"]

#: The two image markers with published cutoffs.
MARKERS = ("tmax_lmax", "asphericity")


def optimism(X: pd.DataFrame, names: Sequence[str], *, n_boot: int, seed: int, n_jobs: int, ties: str,
             missing: Missing):
    """Harrell's bootstrap optimism of the screen + stepwise procedure
    (:func:`mibgkit.stats.bootstrap_optimism`), or None when not estimable."""
    with estimable(missing, "bootstrap optimism of the stepwise model"):
        return stats.bootstrap_optimism(X, "efs_days", "efs_event", list(names), n_boot=n_boot, seed=seed,
                                        n_jobs=n_jobs, progress=False, ties=ties)
    return None


def cutoff_table(X: pd.DataFrame, *, n_boot: int, seed: int, n_jobs: int, missing: Missing
                 ) -> tuple[pd.DataFrame, dict]:
    """maxstat (Lau92, HL), the bootstrap Youden cutoff with its percentile CI, and the paper's,
    per marker; returns the table and the bootstrap results by marker."""
    rows, boots = [], {}
    for var in MARKERS:
        d = X[[var, "efs_days", "efs_event"]].dropna()
        for method in ("Lau92", "HL"):
            row = {"variable": LABELS[var], "method": f"maxstat ({method})", "cutoff": np.nan,
                   "rule": "", "statistic": np.nan, "corrected p": np.nan}
            with estimable(missing, f"maxstat ({method}) cutoff of {LABELS[var]}") as ok:
                m = stats.maxstat_cutoff(d.efs_days, d.efs_event, d[var], method=method)
                row.update(cutoff=m["cutpoint"], rule="score > cutoff", statistic=m["statistic"], **{"corrected p": m["p"]})
            if not ok:
                row["rule"] = ok.reason[:80]
            rows.append(row)
        with estimable(missing, f"bootstrap Youden cutoff of {LABELS[var]}") as ok:
            b = stats.bootstrap_cutoff(d[var], d.efs_event, n_boot=n_boot, seed=seed, n_jobs=n_jobs)
            boots[var] = b
            rows.append({"variable": LABELS[var], "method": "Youden (bootstrap 95 % CI)", "cutoff": b["cutoff"],
                         "rule": f"score ≥ cutoff; CI {b['ci_lower']:.3f}–{b['ci_upper']:.3f}",
                         "statistic": np.nan, "corrected p": np.nan})
        if not ok:
            rows.append({"variable": LABELS[var], "method": "Youden (bootstrap 95 % CI)", "cutoff": np.nan,
                         "rule": ok.reason[:80], "statistic": np.nan, "corrected p": np.nan})
        rows.append({"variable": LABELS[var], "method": "paper (Youden)", "cutoff": paper.TABLE3.at[var, "cutoff"],
                     "rule": "score ≥ cutoff", "statistic": np.nan, "corrected p": np.nan})
    return pd.DataFrame(rows), boots


def spline_fit(X: pd.DataFrame, var: str, *, ties: str, missing: Missing) -> tuple[dict | None, int | None]:
    """A restricted cubic spline of the log hazard in ``var``: 4 knots, else 3 when the 4-knot fit
    has no finite maximum (sparse events); ``(fit, knots)`` or ``(None, None)`` with the reason."""
    d = X[[var, "efs_days", "efs_event"]].dropna()
    reasons = []
    for k in (4, 3):
        try:
            return stats.cox_spline(d, "efs_days", "efs_event", var, n_knots=k, ties=ties), k
        except StatisticsError as e:
            reasons.append(f"{k} knots: {e.reason}")
    missing.add(f"spline of {LABELS[var]}", "; ".join(reasons))
    return None, None


def final_model(selected: Sequence[str]) -> list[str]:
    """The model whose assumptions are checked: the apparent selection, else the paper's."""
    return list(dict.fromkeys(selected or ["bone_marrow_metastasis", "tmax_lmax", "asphericity"]))


def assumptions(X: pd.DataFrame, final: Sequence[str], names: Sequence[str], *, ties: str, missing: Missing) -> dict:
    """EPV, the PH test (``cox.zph``), separated covariates and Firth beside ordinary Cox.

    Returns ``epv`` (float or NaN), ``ph`` (table or None), ``separated`` (list) and ``firth``
    (the comparison table or None).
    """
    final = [f for f in final if f in X]
    out = {"epv": stats.events_per_variable(X, "efs_event", final, warn=False)["epv"] if final else np.nan,
           "ph": None, "separated": [], "firth": None}
    d = X[["efs_days", "efs_event", *final]].dropna()
    with estimable(missing, "proportional-hazards test"):
        out["ph"] = stats.ph_test(d, "efs_days", "efs_event", final, ties=ties)["table"]
    usable = [n for n in names if n in X and X[n].notna().any()]
    with estimable(missing, "separation check"):
        sep = stats.separation(X.dropna(subset=usable), "efs_days", "efs_event", usable)
        out["separated"] = list(sep.index[sep["monotone"]])
    with estimable(missing, "Firth's penalised Cox model"):
        ordinary = stats.cox_univariate(d, "efs_days", "efs_event", final, ties="breslow", errors="warn")
        firth = stats.firth_cox(d, "efs_days", "efs_event", final)
        out["firth"] = pd.DataFrame(
            {"ordinary Cox HR (95 % CI), univariate": [tables.fmt_hr(*ordinary.loc[v, ["hr", "ci_lower", "ci_upper"]])
                                                       for v in final],
             "Firth HR (95 % CI), joint model": [tables.fmt_hr(*firth.loc[v, ["hr", "ci_lower", "ci_upper"]])
                                                 for v in final],
             "Firth p": [tables.fmt_p(firth.at[v, "p"]) for v in final]}, index=[LABELS[v] for v in final])
    return out


def time_auc(X: pd.DataFrame, *, seed: int, years: Sequence[int] = (1, 2, 3), n_boot: int = 200,
             missing: Missing) -> pd.DataFrame:
    """Cumulative/dynamic AUC (IPCW) of each marker at 1, 2 and 3 years, with bootstrap CIs."""
    times = [DAYS_PER_YEAR * k for k in years]
    rows = []
    for var in MARKERS:
        d = X[[var, "efs_days", "efs_event"]].dropna()
        with estimable(missing, f"time-dependent AUC of {LABELS[var]}"):
            a = stats.time_dependent_auc(d.efs_days, d.efs_event, d[var], times, n_boot=n_boot, seed=seed)
            for (tt, r), k in zip(a.iterrows(), years):
                rows.append({"marker": LABELS[var], "year": k, "AUC": r.auc,
                             "95 % CI": f"{r.ci_lower:.3f}–{r.ci_upper:.3f}",
                             "cases": int(r.n_cases), "controls": int(r.n_controls)})
    return pd.DataFrame(rows, columns=["marker", "year", "AUC", "95 % CI", "cases", "controls"])


def mtv_definition_table(X: pd.DataFrame, asp: pd.DataFrame, *, ties: str, cutoff: float,
                         missing: Missing) -> pd.DataFrame:
    """Per MTV definition (columns of ``asp``): median ASP, Youden cutoff, AUC, univariate HR and
    the patients called high at ``cutoff``."""
    rows = []
    for label, a in asp.items():
        d = X[["efs_days", "efs_event"]].join(a.rename("asp")).dropna()
        row = {"MTV definition": label, "median ASP": d.asp.median(), "Youden cutoff": np.nan, "AUC": np.nan,
               "HR per unit (95 % CI)": "", "p": "", "high at 0.342": 0, "TP/FN/FP/TN at 0.342": ""}
        with estimable(missing, f"Youden cutoff of ASP ({label})"):
            r = stats.roc_cutoff(d.asp, d.efs_event)
            row.update({"Youden cutoff": r["cutoff"], "AUC": r["auc"]})
        with estimable(missing, f"HR of ASP ({label})"):
            hr = stats.cox_univariate(d, "efs_days", "efs_event", ["asp"], ties=ties).loc["asp"]
            row.update({"HR per unit (95 % CI)": tables.fmt_hr(hr.hr, hr.ci_lower, hr.ci_upper), "p": tables.fmt_p(hr.p)})
        at = stats.confusion_at(d.asp, d.efs_event, cutoff)
        row.update({"high at 0.342": int(at["tp"] + at["fp"]),
                    "TP/FN/FP/TN at 0.342": f"{at['tp']}/{at['fn']}/{at['fp']}/{at['tn']}"})
        rows.append(row)
    table = pd.DataFrame(rows)
    if cutoff != 0.342:
        table.columns = [c.replace("0.342", f"{cutoff:g}") for c in table.columns]
    return table


def literature_cutoffs(X: pd.DataFrame, cutoffs: Mapping[str, float] | None = None) -> pd.DataFrame:
    """Published ASP cutoffs applied to this cohort: the 2 × 2 table and the log-rank test."""
    rows = []
    d = X[["asphericity", "efs_days", "efs_event"]].dropna()
    for source, c in (paper.LITERATURE_ASP_CUTOFFS if cutoffs is None else cutoffs).items():
        at = stats.confusion_at(d.asphericity, d.efs_event, c)
        high = (d.asphericity >= c).map({True: "high", False: "low"})
        lr = stats.logrank(d.efs_days, d.efs_event, high) if high.nunique() == 2 else {"statistic": np.nan, "p": np.nan}
        rows.append({"source": source, "cutoff": c, "high": int(at["tp"] + at["fp"]), "TP": at["tp"], "FN": at["fn"],
                     "FP": at["fp"], "TN": at["tn"], "sensitivity": tables.fmt_pct(at["sensitivity"]),
                     "specificity": tables.fmt_pct(at["specificity"]), "log-rank p": tables.fmt_p(lr["p"])})
    return pd.DataFrame(rows)

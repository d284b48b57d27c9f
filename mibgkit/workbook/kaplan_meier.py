"""Notebook 05: Kaplan–Meier curves of EFS by the paper's groupings, mean EFS as SPSS prints it.

Groupings: ASP ≥ cutoff, Tmax/Lmax ≥ cutoff (high vs low) and bone/bone-marrow metastasis (yes vs
no). A grouping in which every patient falls in one group still has its curve and mean; its
log-rank test is not estimable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import paper, tables
from ..stats import KaplanMeierResult, kaplan_meier
from . import Missing

__all__ = ["Grouping", "groupings", "km_results", "km_means"]


@dataclass(frozen=True)
class Grouping:
    """One grouping of the patients: a label per patient (NaN where unknown) and its title."""

    variable: str
    title: str
    labels: pd.Series
    order: tuple

    def known(self) -> pd.Series:
        return self.labels.notna()


def groupings(table: pd.DataFrame, cutoff_asp: float, cutoff_tmax_lmax: float) -> dict[str, Grouping]:
    """The paper's three groupings of the analysis table (``score ≥ cutoff`` is high)."""
    def high_low(col: str) -> pd.Series:
        x = table[col]
        return pd.Series(np.where(x >= cutoff_asp if col == "asphericity" else x >= cutoff_tmax_lmax, "high", "low"),
                         index=table.index, dtype=object).where(x.notna())

    bm = table["bone_marrow_metastasis"] if "bone_marrow_metastasis" in table else pd.Series(np.nan, index=table.index)
    return {
        "asphericity": Grouping("asphericity", f"ASP ≥ {cutoff_asp:g}", high_low("asphericity"), ("high", "low")),
        "tmax_lmax": Grouping("tmax_lmax", f"Tmax/Lmax ≥ {cutoff_tmax_lmax:g}", high_low("tmax_lmax"),
                              ("high", "low")),
        "bone_marrow_metastasis": Grouping("bone_marrow_metastasis", "bone/BM metastasis",
                                           bm.astype(object).where(bm.notna()), ("yes", "no")),
    }


def km_results(table: pd.DataFrame, groups: dict[str, Grouping], missing: Missing | None = None
               ) -> dict[str, KaplanMeierResult]:
    """:func:`mibgkit.stats.kaplan_meier` per grouping, on the patients whose group is known."""
    missing = Missing() if missing is None else missing
    out = {}
    for var, g in groups.items():
        ok = g.known().to_numpy()
        if not ok.any():
            missing.add(f"Kaplan–Meier by {g.title}", "no patient has a known group")
            continue
        out[var] = kaplan_meier(table.efs_days[ok], table.efs_event[ok], g.labels[ok].to_numpy())
        if out[var].logrank is None:
            only = out[var].groups[0]
            missing.add(f"log-rank test by {g.title}", f"every patient is in the {only!r} group")
    return out


def km_means(results: dict[str, KaplanMeierResult], groups: dict[str, Grouping]) -> pd.DataFrame:
    """Mean EFS (95 % CI) and median per group beside the paper's, with the log-rank test."""
    rows = []
    for var, res in results.items():
        for grp, s in res.summary.iterrows():
            pub = paper.KM_MEAN_EFS[(paper.KM_MEAN_EFS.variable == var) & (paper.KM_MEAN_EFS.group == grp)]
            lr = res.logrank
            rows.append({"grouping": groups[var].title, "group": grp, "n": int(s.n), "events": int(s.events),
                         "mean EFS, days (95 % CI), this run": f"{s['mean']:.0f} ({s.ci_lower:.0f}–{s.ci_upper:.0f})",
                         "paper": "" if pub.empty else
                         f"{pub['mean'].iloc[0]:.0f} ({pub.ci_lower.iloc[0]:.0f}–{pub.ci_upper.iloc[0]:.0f})",
                         "median, days": "not reached" if not np.isfinite(s["median"]) else f"{s['median']:.0f}",
                         "log-rank χ²": "not estimable" if lr is None else f"{lr['statistic']:.2f}",
                         "p": "" if lr is None else tables.fmt_p(lr["p"]),
                         "p, paper": " ".join(str(x) for x in paper.KM_LOGRANK_P[var]).replace("= ", "")})
    return pd.DataFrame(rows)

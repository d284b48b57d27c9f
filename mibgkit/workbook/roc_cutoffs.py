"""Notebook 04: Table 3, ROC cutoffs by Youden's index and the 2 × 2 tables at the paper's cutoffs.

The event (within follow-up) is the positive class and ``score ≥ cutoff`` is positive
(:func:`mibgkit.stats.roc_cutoff`). A cohort without both events and event-free patients has no
ROC curve: its Youden rows are not estimable, the 2 × 2 tables at the published cutoffs still
count.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from .. import paper, tables
from ..stats import confusion_at, roc_cutoff
from . import Missing, estimable

__all__ = ["MARKERS", "youden_cutoffs", "table3", "at_cutoffs"]

#: The two markers of Table 3.
MARKERS = ("tmax_lmax", "asphericity")


def youden_cutoffs(covariates: pd.DataFrame, markers: Sequence[str] = MARKERS,
                   missing: Missing | None = None) -> dict[str, dict]:
    """:func:`mibgkit.stats.roc_cutoff` (with its curve) per marker; markers that cannot have one
    are left out and recorded in ``missing``."""
    missing = Missing() if missing is None else missing
    out = {}
    for var in markers:
        d = covariates[[var, "efs_event"]].dropna()
        with estimable(missing, f"Youden cutoff of {paper.TABLE3.at[var, 'label']}"):
            out[var] = roc_cutoff(d[var], d["efs_event"], return_curve=True)
    return out


def table3(results: Mapping[str, dict], markers: Sequence[str] = MARKERS,
           missing: Sequence = ()) -> pd.DataFrame:
    """Table 3: this run's Youden cutoff, AUC, diagnostic values with exact CIs, beside the paper's."""
    reasons = {m.what: m.cell() for m in missing}
    rows = []
    for var in markers:
        pub = paper.TABLE3.loc[var]
        r = results.get(var)
        if r is None:
            blank = reasons.get(f"Youden cutoff of {pub.label}", "not estimable")
            rows.append({"variable": pub.label, "source": "this run", "cutoff": blank, "AUC (95 % CI)": "",
                         "sensitivity": "", "specificity": "", "PPV": "", "NPV": "",
                         "TP": "", "FN": "", "FP": "", "TN": ""})
        else:
            def ci(k, r=r):
                return f"{100*r[k]:.1f} % ({100*r[k+'_ci_lower']:.1f}–{100*r[k+'_ci_upper']:.1f})"
            rows.append({"variable": pub.label, "source": "this run", "cutoff": f"{r['cutoff']:.3f}",
                         "AUC (95 % CI)": f"{r['auc']:.3f} ({r['auc_ci_lower']:.3f}–{r['auc_ci_upper']:.3f})",
                         "sensitivity": ci("sensitivity"), "specificity": ci("specificity"), "PPV": ci("ppv"),
                         "NPV": ci("npv"), "TP": r["tp"], "FN": r["fn"], "FP": r["fp"], "TN": r["tn"]})
        rows.append({"variable": pub.label, "source": "paper", "cutoff": f"{pub.cutoff:.3f}", "AUC (95 % CI)": "",
                     "sensitivity": tables.fmt_pct(pub.sensitivity), "specificity": tables.fmt_pct(pub.specificity),
                     "PPV": tables.fmt_pct(pub.ppv), "NPV": tables.fmt_pct(pub.npv),
                     "TP": pub.tp, "FN": pub.fn, "FP": pub.fp, "TN": pub.tn})
    return pd.DataFrame(rows)


def at_cutoffs(covariates: pd.DataFrame, cutoffs: Mapping[str, float] | None = None,
               markers: Sequence[str] = MARKERS) -> pd.DataFrame:
    """The 2 × 2 cells at given cutoffs (default: the paper's) beside the paper's cells.

    Indexed by ``(variable, cell)`` with columns ``this run, paper, equal``.
    """
    rows = []
    for var in markers:
        cut = paper.TABLE3.at[var, "cutoff"] if cutoffs is None else cutoffs[var]
        d = covariates[[var, "efs_event"]].dropna()
        c = confusion_at(d[var], d["efs_event"], cut)
        pub = paper.TABLE3.loc[var]
        for k in ("tp", "fn", "fp", "tn"):
            rows.append({"variable": pub.label, "cell": k.upper(), "this run": c[k], "paper": int(pub[k]),
                         "equal": c[k] == int(pub[k])})
    return pd.DataFrame(rows).set_index(["variable", "cell"])

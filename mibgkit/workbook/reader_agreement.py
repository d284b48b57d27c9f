"""Notebook 07: do readers agree, and is each feature robust enough to carry a cutoff?

Inter-reader ICC per feature (Shrout & Fleiss ICC(2,1) and ICC(3,1), read by Koo & Li 2016),
Bland–Altman limits against the first reader, Dice and HD95 of the ROIs, kappa of the cutoff
classification, and the perturbation study of :mod:`mibgkit.perturbation` summarised as ICC and as
the share of patients who change side at the published cutoffs. What a small cohort or a single
reader cannot give comes back as a :class:`~mibgkit.workbook.NotEstimable`.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from .. import paper, stats
from . import Missing, estimable

__all__ = ["FEATURES", "HEADLINE", "CUTOFFS", "measured_readers", "reader_icc_table", "bland_altman_table", "overlap_summary",
           "kappa_table", "verdicts"]

#: Features whose agreement the report shows (ratios, the uptakes behind them, volume, shape).
FEATURES = ("tmax", "lmax", "mmax", "tmax_lmax", "tmean_lmean", "tmax_mmax", "mtv_ml", "asphericity")

#: The two features that carry the paper's claim, with their published cutoffs.
HEADLINE = ("tmax_lmax", "asphericity")
CUTOFFS: Mapping[str, float] = {v: float(paper.TABLE3.at[v, "cutoff"]) for v in HEADLINE}

#: Features compared on the log scale (ratios a/b) in Bland–Altman: volumes.
LOG_SCALE = ("mtv_ml",)


def measured_readers(readers: pd.DataFrame, long: pd.DataFrame) -> list[str]:
    """The readers of ``readers`` (readers.csv, in its order) with at least one measured ROI in
    ``long`` (one row per patient × reader, failed measurements already left out). Agreement needs
    two of them; the first is the reference of the Bland–Altman comparisons."""
    measured = set(long["reader"])
    return [str(r) for r in dict.fromkeys(readers["reader"]) if r in measured]


def reader_icc_table(long: pd.DataFrame, features: Sequence[str], missing: Missing) -> pd.DataFrame:
    """Per feature: ICC(2,1) (absolute agreement) and ICC(3,1) (consistency), their 95 % CI
    (``lower``, ``upper``) and the Koo & Li reading of the estimate."""
    rows = []
    for feature in features:
        row = {"feature": feature}
        with estimable(missing, f"inter-reader ICC of {feature}") as ok:
            res = stats.icc(long, "patient_id", "reader", feature)
        for name, label in (("ICC2", "ICC(2,1)"), ("ICC3", "ICC(3,1)")):
            r = res.loc[name] if ok.value else {"icc": np.nan, "ci_lower": np.nan, "ci_upper": np.nan}
            row.update({label: r["icc"], f"{label} lower": r["ci_lower"], f"{label} upper": r["ci_upper"],
                        f"{label} reading": stats.koo_li(r["icc"])})
        rows.append(row)
    return pd.DataFrame(rows).set_index("feature")


def bland_altman_table(long: pd.DataFrame, features: Sequence[str], reference: str, missing: Missing
                       ) -> pd.DataFrame:
    """Bias and 95 % limits of agreement of every other reader against ``reference``, per feature
    (ratios a/b on the log scale for :data:`LOG_SCALE`): the keys of
    :func:`mibgkit.stats.bland_altman` as columns."""
    wide = {f: long.pivot(index="patient_id", columns="reader", values=f) for f in features}
    rows = []
    for feature in features:
        for reader in [r for r in wide[feature].columns if r != reference]:
            pair = wide[feature][[reader, reference]].dropna()
            row = {"feature": feature, "reader": reader, "reference": reference, "scale": "ratio" if
                   feature in LOG_SCALE else "difference"}
            with estimable(missing, f"Bland–Altman of {feature}, {reader} vs {reference}") as ok:
                res = stats.bland_altman(pair[reader], pair[reference], log=feature in LOG_SCALE)
            if ok.value:
                row.update(res)
            rows.append(row)
    return pd.DataFrame(rows)


def overlap_summary(overlaps: pd.DataFrame) -> pd.DataFrame:
    """Per reader pair: patients compared, mean (SD) and range of Dice, median and max HD95 (mm)."""
    ok = overlaps[overlaps["dice"].notna()] if "dice" in overlaps else overlaps.iloc[0:0]
    rows = []
    for (a, b), g in ok.groupby(["reader_a", "reader_b"], sort=False):
        rows.append({"pair": f"{a} vs {b}", "n": len(g), "Dice mean": g["dice"].mean(),
                     "Dice SD": g["dice"].std(ddof=1) if len(g) > 1 else np.nan, "Dice min": g["dice"].min(),
                     "HD95 median (mm)": g["hd95_mm"].median(), "HD95 max (mm)": g["hd95_mm"].max()})
    return pd.DataFrame(rows)


def kappa_table(long: pd.DataFrame, cutoffs: Mapping[str, float], missing: Missing) -> pd.DataFrame:
    """Agreement on the cutoff classification (high = value ≥ cutoff): Cohen's kappa per reader pair
    and Fleiss' kappa over all readers, per feature."""
    rows = []
    for feature, cut in cutoffs.items():
        wide = long.pivot(index="patient_id", columns="reader", values=feature).dropna()
        high = (wide >= cut).astype(int)
        for a, b in itertools.combinations(high.columns, 2):
            row = {"feature": feature, "cutoff": cut, "readers": f"{a} vs {b}", "method": "Cohen"}
            with estimable(missing, f"Cohen's kappa of {feature} ≥ {cut:g}, {a} vs {b}") as ok:
                res = stats.cohen_kappa(high[a], high[b])
            if ok.value:
                row.update(kappa=res["kappa"], ci_lower=res["ci_lower"], ci_upper=res["ci_upper"], n=res["n"],
                           agreement=res["observed"])
            rows.append(row)
        if high.shape[1] > 2:
            row = {"feature": feature, "cutoff": cut, "readers": ", ".join(high.columns), "method": "Fleiss"}
            with estimable(missing, f"Fleiss' kappa of {feature} ≥ {cut:g}") as ok:
                res = stats.fleiss_kappa(high)
            if ok.value:
                row.update(kappa=res["kappa"], n=res["n_subjects"], agreement=res["observed"], p=res["p"])
            rows.append(row)
    return pd.DataFrame(rows)


def verdicts(icc_table: pd.DataFrame | None, changed: pd.DataFrame, labels: Mapping[str, str]) -> list[str]:
    """One sentence per headline feature: does its agreement carry the paper's cutoff claim?

    The rule, stated in every sentence: robust when the lower 95 % bound of the inter-reader
    ICC(2,1) is at least 0.75 (good or excellent, Koo & Li) and at most 10 % of patients change
    side at the cutoff under any perturbation family; fragile when the lower bound is below 0.5 or
    more than 20 % change side; otherwise borderline. Without a second reader only the
    perturbations speak.
    """
    out = []
    for feature in HEADLINE:
        label, cut = labels.get(feature, feature), CUTOFFS[feature]
        part = changed[changed["feature"] == feature] if len(changed) else changed
        worst = part.loc[part["share_changed"].idxmax()] if len(part) and part["share_changed"].notna().any() else None
        lower = np.nan
        if icc_table is not None and feature in icc_table.index:
            lower = float(icc_table.at[feature, "ICC(2,1) lower"])
        flip = np.nan if worst is None else float(worst["share_changed"])
        if np.isnan(lower) and np.isnan(flip):
            out.append(f"{label}: neither reader agreement nor robustness could be estimated on this cohort.")
            continue
        robust = (np.isnan(lower) or lower >= 0.75) and (np.isnan(flip) or flip <= 0.10)
        fragile = (not np.isnan(lower) and lower < 0.5) or (not np.isnan(flip) and flip > 0.20)
        verdict = "robust enough to carry" if robust else "too fragile to carry" if fragile else "borderline for"
        parts = []
        if not np.isnan(lower):
            parts.append(f"inter-reader ICC(2,1) lower 95 % bound {lower:.2f} ({stats.koo_li(lower)})")
        else:
            parts.append("no second reader to compare")
        if worst is not None:
            parts.append(f"up to {flip:.0%} of patients change side at {cut:g} (perturbation: {worst['family']})")
        out.append(f"{label} is {verdict} the paper's cutoff claim: {'; '.join(parts)}.")
    return out

r"""Notebook 08: does the published result hold in another cohort? External validation of a frozen model.

The published model (:class:`mibgkit.frozen_model.FrozenModel`, by default Zhou et al. 2025's) is
applied as printed — its cutoffs and its prognostic index :math:`\mathrm{PI} = \sum \ln(\mathrm{HR}_i)
x_i` — and never refitted, except where a section says so (the likelihood-ratio tests ask whether
imaging adds information *in this cohort*, so they fit their models here). Times are in days;
horizons are given in years of 365.25 days.

Event status for the 2 × 2 tables. The paper's Table 3 classifies a patient as positive when an
EFS event occurred at any time during follow-up (the paper's "event (yes/no within
follow-up)"); its sensitivities and specificities are only comparable with that definition, which
is therefore the first row of each cutoff. Because follow-up differs between centres, the table
adds event status at each horizon h: event by h (positive), event-free and followed to h
(negative), censored before h without an event (excluded, and counted).

Every number that this cohort cannot give (no events, nobody above a cutoff, a horizon beyond
follow-up, three patients) is recorded in the :class:`~mibgkit.workbook.Missing` list with its
reason and shown as "not estimable" in its table; nothing here raises for a small or odd cohort.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import paper, stats, tables
from ..frozen_model import FrozenModel
from ..stats.kaplan_meier import KaplanMeierResult
from . import Missing, estimable
from .kaplan_meier import Grouping, km_results

__all__ = ["DAYS_PER_YEAR", "scored", "event_status", "diagnostics", "diagnostics_display", "km_by_groups",
           "km_summary", "discrimination", "calibration", "decision_curves", "incremental_value", "Claim",
           "claims", "closing_paragraph", "calibration_figure", "decision_figure"]

#: Days per year for the horizons.
DAYS_PER_YEAR = 365.25

_RATES = (("sensitivity", "tp", "fn", "events"), ("specificity", "tn", "fp", "event-free patients"),
          ("ppv", "tp", "fp", "patients called high"), ("npv", "tn", "fn", "patients called low"))


def _label(model: FrozenModel, variable: str) -> str:
    for c in model.cutoffs:
        if c.variable == variable and c.label:
            return c.label
    for t in model.terms:
        if t.variable == variable and t.label:
            return t.label
    return variable


def scored(table: pd.DataFrame, model: FrozenModel, missing: Missing | None = None) -> pd.DataFrame:
    """The cohort with the frozen model applied: outcome, the coded x, ``pi`` and a ``<variable>_group``
    (``"high"``/``"low"``) per published cutoff.

    Patients without every value the model needs keep NaN (``complete`` is False); their number is
    recorded in ``missing`` (they leave the analyses that need the PI).
    """
    missing = Missing() if missing is None else missing
    x = model.design(table)
    out = table[["efs_days", "efs_event"]].astype(float).join(x)
    out["pi"] = model.predict(table)
    for var, col in model.classify(table).items():
        out[f"{var}_group"] = col
    out["complete"] = out["pi"].notna()
    n_out = int((~out.complete).sum())
    if n_out:
        missing.add("prognostic index of some patients",
                    f"{n_out} of {len(out)} patients lack a value the model needs (failed extraction or missing "
                    "clinical variable) and are left out of the analyses of the PI")
    return out


def event_status(durations, events, horizon_days: float | None = None) -> pd.Series:
    """1 = positive, 0 = negative, NaN = excluded, as in the module notes.

    ``horizon_days`` None: the paper's definition, an event at any time during follow-up.
    Otherwise: event at or before the horizon = 1, follow-up reaching the horizon without an event
    = 0, censored before it = NaN.

    >>> event_status([100, 400, 900, 200], [1, 1, 0, 0], 365).tolist()
    [1.0, 0.0, 0.0, nan]
    """
    t = pd.Series(np.asarray(durations, float))
    e = pd.Series(np.asarray(events, float))
    if horizon_days is None:
        return e.astype(float)
    out = pd.Series(np.nan, index=t.index)
    out[(e == 1) & (t <= horizon_days)] = 1.0
    out[t >= horizon_days] = 0.0
    out[(e == 1) & (t <= horizon_days)] = 1.0
    return out


def _definitions(horizons_years) -> list[tuple[str, float | None]]:
    return [("event during follow-up (paper)", None)] + [
        (f"event by {y:g} years", y * DAYS_PER_YEAR) for y in horizons_years]


def diagnostics(table: pd.DataFrame, model: FrozenModel, horizons_years=(2, 3), missing: Missing | None = None
                ) -> pd.DataFrame:
    """Sensitivity, specificity, PPV and NPV at the published cutoffs, with exact (Clopper–Pearson)
    95 % CIs, per event definition (module notes), beside the published values.

    Returns one row per cutoff × definition × measure: ``cutoff_variable, label, cutoff, definition,
    n, excluded, tp, fp, tn, fn, measure, value, ci_lower, ci_upper, paper, paper_in_ci, reason``.
    A proportion whose denominator is zero is NaN with its reason (and in ``missing``).
    """
    missing = Missing() if missing is None else missing
    rows = []
    for cut in model.cutoffs:
        lab = _label(model, cut.variable)
        score = pd.to_numeric(table[cut.variable], errors="coerce").to_numpy(float)
        for name, h in _definitions(horizons_years):
            status = event_status(table.efs_days, table.efs_event, h).to_numpy()
            ok = np.isfinite(score) & np.isfinite(status)
            n, excluded = int(ok.sum()), int((np.isfinite(score) & ~np.isfinite(status)).sum())
            high = cut.high(score[ok])
            pos = status[ok] == 1
            counts = {"tp": int((high & pos).sum()), "fp": int((high & ~pos).sum()),
                      "tn": int((~high & ~pos).sum()), "fn": int((~high & pos).sum())}
            for measure, a, b, denominator in _RATES:
                k, m = counts[a], counts[a] + counts[b]
                value, (lo, hi) = (k / m, stats.clopper_pearson(k, m)) if m else (np.nan, (np.nan, np.nan))
                reason = ""
                if not m:
                    reason = f"no {denominator} ({name}; n = {n})"
                    missing.add(f"{measure} of {lab} ≥ {cut.cutoff:g}, {name}", reason)
                pub = cut.published.get(measure, np.nan) if h is None else np.nan
                rows.append({"cutoff_variable": cut.variable, "label": lab, "cutoff": cut.cutoff, "definition": name,
                             "n": n, "excluded": excluded, **counts, "measure": measure, "value": value,
                             "ci_lower": lo, "ci_upper": hi, "paper": pub,
                             "paper_in_ci": bool(lo <= pub <= hi) if np.isfinite(pub) and np.isfinite(lo) else None,
                             "reason": reason})
    return pd.DataFrame(rows)


def diagnostics_display(diag: pd.DataFrame) -> pd.DataFrame:
    """:func:`diagnostics` as the report prints it: one row per cutoff and definition."""
    rows = []
    for (lab, cutoff, definition), g in diag.groupby(["label", "cutoff", "definition"], sort=False):
        first = g.iloc[0]
        row = {"cutoff": f"{lab} ≥ {cutoff:g}", "event status": definition, "n": int(first.n),
               "excluded (censored before horizon)": int(first.excluded),
               "TP / FN / FP / TN": f"{first.tp} / {first.fn} / {first.fp} / {first.tn}"}
        for _, r in g.iterrows():
            row[r.measure] = ("not estimable: " + r.reason) if r.reason else (
                f"{tables.fmt_pct(r.value)} ({100 * r.ci_lower:.1f}–{100 * r.ci_upper:.1f})")
            if np.isfinite(r.paper):
                row[f"{r.measure}, paper"] = tables.fmt_pct(r.paper)
        rows.append(row)
    out = pd.DataFrame(rows)
    order = ["cutoff", "event status", "n", "excluded (censored before horizon)", "TP / FN / FP / TN"]
    for m, *_ in _RATES:
        order += [c for c in (m, f"{m}, paper") if c in out]
    return out[order].fillna("")


# --------------------------------------------------------------------------------------------
# Kaplan–Meier by the published groups
# --------------------------------------------------------------------------------------------


def km_by_groups(table: pd.DataFrame, model: FrozenModel, missing: Missing | None = None
                 ) -> tuple[dict[str, Grouping], dict[str, KaplanMeierResult]]:
    """Groupings by each published cutoff (and by bone/BM metastasis when the table has it) and their
    Kaplan–Meier results (:func:`mibgkit.workbook.kaplan_meier.km_results`, the curves of notebook 05)."""
    missing = Missing() if missing is None else missing
    groups = {}
    cls = model.classify(table)
    for cut in model.cutoffs:
        groups[cut.variable] = Grouping(cut.variable, f"{_label(model, cut.variable)} ≥ {cut.cutoff:g}",
                                        cls[cut.variable], ("high", "low"))
    if "bone_marrow_metastasis" in table:
        bm = table["bone_marrow_metastasis"]
        groups["bone_marrow_metastasis"] = Grouping("bone_marrow_metastasis", "bone/BM metastasis",
                                                    bm.astype(object).where(bm.notna()), ("yes", "no"))
    km = km_results(table, groups, missing)
    for var, res in list(km.items()):
        if res.logrank is not None and (int(res.summary["events"].sum()) == 0
                                        or not np.isfinite(res.logrank.get("p", np.nan))):
            km[var] = dataclasses.replace(res, logrank=None)
            missing.add(f"log-rank test by {groups[var].title}", "no events in this cohort")
    return groups, km


def km_summary(results: dict[str, KaplanMeierResult], groups: dict[str, Grouping]) -> pd.DataFrame:
    """Per group: n, events, mean EFS (95 % CI) beside the paper's, median, log-rank χ² and p."""
    rows = []
    for var, res in results.items():
        lr = res.logrank
        for grp, s in res.summary.iterrows():
            pub = paper.KM_MEAN_EFS[(paper.KM_MEAN_EFS.variable == var) & (paper.KM_MEAN_EFS.group == grp)]
            p_pub = paper.KM_LOGRANK_P.get(var)
            rows.append({
                "grouping": groups[var].title, "group": grp, "n": int(s.n), "events": int(s.events),
                "mean EFS, days (95 % CI)": f"{s['mean']:.0f} ({s.ci_lower:.0f}–{s.ci_upper:.0f})",
                "paper": "" if pub.empty else
                f"{pub['mean'].iloc[0]:.0f} ({pub.ci_lower.iloc[0]:.0f}–{pub.ci_upper.iloc[0]:.0f})",
                "median, days": "not reached" if not np.isfinite(s["median"]) else f"{s['median']:.0f}",
                "log-rank χ²": "not estimable" if lr is None else f"{lr['statistic']:.2f}",
                "p": "" if lr is None else tables.fmt_p(lr["p"]),
                "p, paper": "" if p_pub is None else " ".join(str(x) for x in p_pub).replace("= ", "")})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# discrimination, calibration, decision curves, incremental value
# --------------------------------------------------------------------------------------------


def _why(reason: str) -> str:
    """A StatisticsError's reason without its leading "<what> not estimable:"."""
    head, sep, tail = str(reason).partition("not estimable: ")
    return tail if sep else str(reason)


def _complete(sc: pd.DataFrame, cols) -> pd.DataFrame:
    return sc[["efs_days", "efs_event", *cols]].dropna()


def discrimination(sc: pd.DataFrame, model: FrozenModel, tau_years: float = 3.0, missing: Missing | None = None
                   ) -> pd.DataFrame:
    """Harrell's C (all follow-up) and Uno's C (truncated at ``tau_years``) with 95 % CIs (c ± 1.96 SE,
    R's infinitesimal-jackknife SE) of the PI, of each cutoff's high/low call and of each cutoff's
    continuous marker."""
    missing = Missing() if missing is None else missing
    scores = [("prognostic index (frozen model)", "pi")]
    for cut in model.cutoffs:
        scores.append((f"{_label(model, cut.variable)} (continuous)", cut.variable))
        scores.append((f"{_label(model, cut.variable)} ≥ {cut.cutoff:g}", f"{cut.variable}_group"))
    rows = []
    for name, col in scores:
        row = {"score": name}
        if col not in sc:
            continue
        d = sc[["efs_days", "efs_event", col]].dropna()
        s = (d[col] == "high").astype(float) if col.endswith("_group") else d[col].astype(float)
        row["n"], row["events"] = len(d), int(d.efs_event.sum())
        for method, tau, key in (("harrell", None, "Harrell C"), ("uno", tau_years * DAYS_PER_YEAR,
                                                                   f"Uno C (τ = {tau_years:g} y)")):
            with estimable(missing, f"{key} of {name}") as ok:
                r = stats.concordance(d.efs_days, d.efs_event, s, method=method, tau=tau)
            row[key] = r["c"] if ok else np.nan
            row[f"{key} CI"] = (f"{r['c'] - 1.959964 * r['se']:.3f}–{r['c'] + 1.959964 * r['se']:.3f}" if ok
                                else f"not estimable: {_why(ok.reason)}")
            if method == "harrell":
                row["_harrell_lo"] = r["c"] - 1.959964 * r["se"] if ok else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


@dataclass
class CalibrationResult:
    """The calibration slope and, per horizon, predicted vs observed risk by risk group."""

    slope: dict | None
    at_horizon: dict          # years -> DataFrame (calibration_at_horizon) or None
    n: int
    events: int


def calibration(sc: pd.DataFrame, horizons_years=(2, 3), groups: int = 3, ties: str = "efron",
                missing: Missing | None = None) -> CalibrationResult:
    """Calibration slope of the frozen PI (:func:`mibgkit.stats.calibration_slope`) and calibration per
    risk group at each horizon (:func:`mibgkit.stats.calibration_at_horizon`; the baseline hazard is
    re-estimated on this cohort with the PI as an offset, the published model having none)."""
    missing = Missing() if missing is None else missing
    d = _complete(sc, ["pi"])
    slope = None
    with estimable(missing, "calibration slope") as ok:
        if len(d) < 2:
            raise stats_error(f"{len(d)} patient(s) with a prognostic index")
        slope = stats.calibration_slope(d.efs_days, d.efs_event, d.pi, ties=ties)
    if not ok:
        slope = None
    at = {}
    for y in horizons_years:
        at[y] = None
        with estimable(missing, f"calibration at {y:g} years") as ok:
            if len(d) < 2:
                raise stats_error(f"{len(d)} patient(s) with a prognostic index")
            tab = stats.calibration_at_horizon(d.efs_days, d.efs_event, d.pi, y * DAYS_PER_YEAR, groups=groups,
                                               ties=ties)
            at[y] = tab
        for _, r in (at[y].iterrows() if at[y] is not None else []):
            if r.reason:
                missing.add(f"observed risk at {y:g} years, risk group {r.group}", r.reason)
    return CalibrationResult(slope, at, len(d), int(d.efs_event.sum()) if len(d) else 0)


def stats_error(reason: str):
    """A :class:`~mibgkit.errors.StatisticsError` for a number this cohort is too small for."""
    from ..errors import StatisticsError

    return StatisticsError(reason)


def decision_curves(sc: pd.DataFrame, model: FrozenModel, horizons_years=(2, 3),
                    thresholds=np.round(np.arange(0.0, 0.61, 0.01), 2), missing: Missing | None = None
                    ) -> pd.DataFrame:
    """Net benefit at each horizon of treating the patients each published rule calls high, both rules
    high, everybody and nobody (:func:`mibgkit.stats.net_benefit`, Kaplan–Meier risks).

    Returns a long table ``horizon_years, strategy, threshold, net_benefit``.
    """
    missing = Missing() if missing is None else missing
    cols = [f"{c.variable}_group" for c in model.cutoffs]
    d = sc[["efs_days", "efs_event", *cols]].dropna()
    rules = {f"high {_label(model, c.variable)}": (d[f"{c.variable}_group"] == "high").to_numpy()
             for c in model.cutoffs}
    if len(model.cutoffs) >= 2:
        rules["both high"] = np.logical_and.reduce(list(rules.values()))
    rows = []
    for y in horizons_years:
        h = y * DAYS_PER_YEAR
        with estimable(missing, f"decision curve at {y:g} years") as ok:
            if not len(d):
                raise stats_error("no patient with every published marker")
            if d.efs_days.max() < h:
                raise stats_error(f"the horizon ({h:g} days) is beyond the last follow-up ({d.efs_days.max():g} days)")
            for name, pos in rules.items():
                nb = stats.net_benefit(d.efs_days, d.efs_event, pos, h, thresholds)
                rows += [{"horizon_years": y, "strategy": name, "threshold": t, "net_benefit": v}
                         for t, v in zip(nb.threshold, nb.net_benefit)]
            rows += [{"horizon_years": y, "strategy": "treat all", "threshold": t, "net_benefit": v}
                     for t, v in zip(nb.threshold, nb.treat_all)]
            rows += [{"horizon_years": y, "strategy": "treat none", "threshold": t, "net_benefit": 0.0}
                     for t in nb.threshold]
        if not ok:
            continue
    return pd.DataFrame(rows, columns=["horizon_years", "strategy", "threshold", "net_benefit"])


def incremental_value(sc: pd.DataFrame, model: FrozenModel, base: str = "bone_marrow_metastasis",
                      n_boot: int = 1000, seed: int = 20250101, ties: str = "efron",
                      missing: Missing | None = None) -> dict:
    """What imaging adds to ``base`` (bone/BM metastasis) alone.

    ``delta_c``: Harrell's C of the frozen PI minus that of the base term alone (its frozen
    :math:`\\ln(\\mathrm{HR}) x`), percentile bootstrap 95 % CI (:func:`mibgkit.stats.delta_concordance`;
    frozen scores, never refitted). ``lr``: likelihood-ratio tests of nested Cox models fitted on this
    cohort (:func:`mibgkit.stats.lr_test_nested`): base → base + every imaging term, and each imaging
    term added to the others. Returns a dict ``delta_c`` (or None) and ``lr`` (DataFrame).
    """
    missing = Missing() if missing is None else missing
    imaging = [t.variable for t in model.terms if t.variable != base]
    have_base = base in model.variables
    out = {"delta_c": None, "lr": pd.DataFrame()}
    if not have_base:
        missing.add("incremental value of imaging", f"the model has no {base!r} term")
        return out
    d = _complete(sc, [*model.variables, "pi"])
    coef = model.coefficients()
    with estimable(missing, "ΔC (imaging added to bone/BM metastasis)") as ok:
        if len(d) < 2:
            raise stats_error(f"{len(d)} complete patient(s)")
        out["delta_c"] = stats.delta_concordance(d.efs_days, d.efs_event, coef[base] * d[base], d.pi,
                                                 n_boot=n_boot, seed=seed)
    tests = [(f"{_label(model, base)} → + {', '.join(_label(model, v) for v in imaging)}", [base], imaging)]
    if len(imaging) > 1:
        for v in imaging:
            rest = [base] + [w for w in imaging if w != v]
            tests.append((f"{_label(model, v)} added to {', '.join(_label(model, w) for w in rest)}", rest, [v]))
    rows = []
    for name, b, a in tests:
        row = {"comparison": name, "χ²": np.nan, "df": len(a), "p": np.nan, "n": len(d), "reason": ""}
        with estimable(missing, f"LR test {name}") as ok:
            if len(d) < 2:
                raise stats_error(f"{len(d)} complete patient(s)")
            r = stats.lr_test_nested(d, "efs_days", "efs_event", base=b, added=a, ties=ties)
            row.update({"χ²": r["statistic"], "p": r["p"], "n": r["n"]})
        if not ok:
            row["reason"] = ok.reason
        rows.append(row)
    out["lr"] = pd.DataFrame(rows)
    return out


# --------------------------------------------------------------------------------------------
# which published claims held
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    claim: str
    verdict: str      # "held", "did not hold", "partly held", "not testable"
    evidence: str


def claims(model: FrozenModel, diag: pd.DataFrame, km: dict, groups: dict, disc: pd.DataFrame,
           calib: CalibrationResult, incr: dict) -> list[Claim]:
    """The published claims, each judged on this cohort's numbers (95 % CIs, p < 0.05)."""
    out = []
    for var, g in groups.items():
        res = km.get(var)
        hi = g.order[0]
        text = f"{g.title}: worse EFS ({'high' if hi == 'high' else 'with'} vs {'low' if hi == 'high' else 'without'})"
        if res is None or res.logrank is None or hi not in res.summary.index:
            out.append(Claim(text, "not testable", "the groups cannot be compared here (see the not-estimable list)"))
            continue
        s = res.summary
        lo_grp = g.order[1]
        worse = s.at[hi, "mean"] < s.at[lo_grp, "mean"]
        p = res.logrank["p"]
        ev = (f"mean EFS {s.at[hi, 'mean']:.0f} vs {s.at[lo_grp, 'mean']:.0f} days, log-rank p {tables.fmt_p(p)}")
        out.append(Claim(text, "held" if (worse and p < 0.05) else ("partly held" if worse else "did not hold"), ev))
    for cut in model.cutoffs:
        sub = diag[(diag.cutoff_variable == cut.variable) & diag.paper.notna()]
        if sub.empty:
            continue
        parts, inside, tested = [], 0, 0
        for _, r in sub.iterrows():
            if not np.isfinite(r.value):
                parts.append(f"{r.measure} not estimable")
                continue
            tested += 1
            inside += bool(r.paper_in_ci)
            parts.append(f"{r.measure} {100 * r.value:.0f} % ({100 * r.ci_lower:.0f}–{100 * r.ci_upper:.0f}) vs "
                         f"{100 * r.paper:.0f} %")
        verdict = ("not testable" if tested < len(sub) else "held" if inside == tested else
                   "partly held" if inside else "did not hold")
        out.append(Claim(f"{_label(model, cut.variable)} ≥ {cut.cutoff:g}: the published sensitivity, specificity, "
                         "PPV and NPV (paper's value inside this cohort's 95 % CI)", verdict, "; ".join(parts)))
    pi = disc[disc.score.str.startswith("prognostic index")] if len(disc) else disc
    if len(pi) and np.isfinite(pi["Harrell C"].iloc[0]):
        c, lo = pi["Harrell C"].iloc[0], pi["_harrell_lo"].iloc[0]
        out.append(Claim("the model discriminates (Harrell C above 0.5)", "held" if lo > 0.5 else
                         ("partly held" if c > 0.5 else "did not hold"),
                         f"Harrell C {c:.3f} ({pi['Harrell C CI'].iloc[0]})"))
    else:
        out.append(Claim("the model discriminates (Harrell C above 0.5)", "not testable", "C not estimable"))
    s = calib.slope
    if s is None:
        out.append(Claim("the published effect sizes hold (calibration slope 1)", "not testable",
                         "calibration slope not estimable"))
    else:
        ev = f"slope {s['slope']:.2f} (95 % CI {s['ci_lower']:.2f}–{s['ci_upper']:.2f}), p for slope = 1 {tables.fmt_p(s['p'])}"
        if s["ci_lower"] <= 1 <= s["ci_upper"]:
            verdict = "held" if s["ci_lower"] > 0 else "partly held"
            ev += "; consistent with 1" + ("" if s["ci_lower"] > 0 else ", but also with no effect at all")
        elif s["slope"] < 1:
            verdict = "partly held" if s["ci_lower"] > 0 else "did not hold"
            ev += ("; the effects point the published way but are weaker (the published model is optimistic here)"
                   if s["ci_lower"] > 0 else "; no effect of the index in this cohort")
        else:
            verdict, ev = "partly held", ev + "; the effects are stronger here than published"
        out.append(Claim("the published effect sizes hold (calibration slope 1)", verdict, ev))
    lr = incr.get("lr", pd.DataFrame())
    dc = incr.get("delta_c")
    if len(lr) and np.isfinite(lr["p"].iloc[0]):
        p = lr["p"].iloc[0]
        ev = f"LR χ² {lr['χ²'].iloc[0]:.2f} (df {lr['df'].iloc[0]}), p {tables.fmt_p(p)}"
        gain = False
        if dc is not None:
            ev += f"; ΔC {dc['delta']:+.3f} (95 % CI {dc['ci_lower']:+.3f} to {dc['ci_upper']:+.3f})"
            gain = dc["ci_lower"] > 0
        verdict = "held" if p < 0.05 and (gain or dc is None) else ("partly held" if p < 0.05 or gain else "did not hold")
        out.append(Claim("imaging (Tmax/Lmax, ASP) adds to bone/BM metastasis", verdict, ev))
        for _, r in lr.iloc[1:].iterrows():
            if np.isfinite(r.p):
                out.append(Claim(f"independent predictor: {r.comparison}", "held" if r.p < 0.05 else "did not hold",
                                 f"LR χ² {r['χ²']:.2f}, p {tables.fmt_p(r.p)}"))
            else:
                out.append(Claim(f"independent predictor: {r.comparison}", "not testable", r.reason))
    else:
        out.append(Claim("imaging (Tmax/Lmax, ASP) adds to bone/BM metastasis", "not testable",
                         lr["reason"].iloc[0] if len(lr) else "not estimable"))
    return out


def closing_paragraph(items: list[Claim], n: int, events: int, model_name: str) -> str:
    """A paragraph, generated from the verdicts, saying which published claims held here and which did not."""
    by = {v: [c for c in items if c.verdict == v] for v in ("held", "partly held", "did not hold", "not testable")}

    def names(cs):
        return "; ".join(f"{c.claim} ({c.evidence})" for c in cs)

    parts = [f"Applied frozen to {n} patients with {events} events, {model_name}:"]
    if by["held"]:
        parts.append(f"held for {names(by['held'])}.")
    if by["partly held"]:
        parts.append(f"Partly held: {names(by['partly held'])}.")
    if by["did not hold"]:
        parts.append(f"Did not hold: {names(by['did not hold'])}.")
    if by["not testable"]:
        parts.append(f"Could not be tested on this cohort: {'; '.join(c.claim for c in by['not testable'])}.")
    if not by["held"] and not by["partly held"] and not by["did not hold"]:
        parts.append("no published claim could be tested on this cohort.")
    return " ".join(parts)


# --------------------------------------------------------------------------------------------
# figures (drawn from the tables above)
# --------------------------------------------------------------------------------------------


def calibration_figure(calib: CalibrationResult):
    """Observed Kaplan–Meier risk (95 % CI) against mean predicted risk per risk group, one panel per
    horizon, with the line of perfect calibration. Returns the Figure (None when nothing is estimable)."""
    import matplotlib.pyplot as plt

    from .. import plots

    panels = [(y, t) for y, t in calib.at_horizon.items() if t is not None]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4.2), squeeze=False)
    for ax, (y, tab) in zip(axes[0], panels):
        g = tab[tab.group != "overall"]
        ok = g.observed.notna()
        err = np.vstack([g.observed - g.observed_ci_lower, g.observed_ci_upper - g.observed])[:, ok.to_numpy()]
        ax.errorbar(g.predicted[ok], g.observed[ok], yerr=np.clip(err, 0, None), fmt="o", color=plots.THIS_RUN,
                    capsize=3, label="risk group (KM, 95 % CI)")
        for _, r in g[ok].iterrows():
            ax.annotate(f"{r.group}", (r.predicted, r.observed), textcoords="offset points", xytext=(6, -10), fontsize=8)
        top = float(np.nanmax([1e-3, *g.predicted, *g.observed_ci_upper.fillna(0)])) * 1.1
        top = min(max(top, 0.2), 1.0)
        ax.plot([0, top], [0, top], ls="--", color="0.5", lw=1, label="perfect calibration")
        ax.set_xlim(0, top); ax.set_ylim(0, top)
        ax.set_xlabel(f"predicted risk by {y:g} years (frozen PI,\nbaseline re-estimated here)")
        ax.set_ylabel(f"observed risk by {y:g} years (1 − KM)")
        ax.set_title(f"calibration at {y:g} years")
        ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


def decision_figure(curves: pd.DataFrame):
    """Decision curves (net benefit against threshold probability), one panel per horizon."""
    import matplotlib.pyplot as plt

    from .. import plots

    if curves.empty:
        return None
    years = list(dict.fromkeys(curves.horizon_years))
    fig, axes = plt.subplots(1, len(years), figsize=(5.2 * len(years), 4.0), squeeze=False)
    styles = {"treat all": dict(color="0.35", ls="-", lw=1.2), "treat none": dict(color="0.1", ls=":", lw=1.2)}
    for ax, y in zip(axes[0], years):
        d = curves[curves.horizon_years == y]
        colours = iter(plots.GROUP_COLOURS)
        for name, g in d.groupby("strategy", sort=False):
            style = styles[name] if name in styles else dict(color=next(colours, "0.6"), lw=1.8)
            ax.plot(g.threshold, g.net_benefit, label=name, **style)
        top = max(float(d.net_benefit.max()), 0.05)
        ax.set_ylim(-0.05, top * 1.15)
        ax.set_xlabel("threshold probability")
        ax.set_ylabel("net benefit")
        ax.set_title(f"decision curves at {y:g} years")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig

"""Notebook 00: the cohort's data and quality control — manifest, QC table, reference spheres.

Nothing here reads a DICOM header: what a report shows of a patient is the manifest's
pseudonymous ID, relative file names and measured numbers.
"""

from __future__ import annotations

import pandas as pd

from ..errors import ManifestError
from ..features import SPHERES
from ..provenance import relative_name

__all__ = ["status_counts", "manifest_view", "sphere_summary", "sphere_volumes", "patients_to_show"]


def status_counts(qc: pd.DataFrame) -> dict[str, int]:
    """Patients per QC status: ``ok``, ``warning`` (measured, read the message), ``error`` (not measured)."""
    counts = qc["status"].value_counts().reindex(["ok", "warning", "error"], fill_value=0)
    return {k: int(v) for k, v in counts.items()}


def manifest_view(manifest: pd.DataFrame, base) -> pd.DataFrame:
    """The manifest as a report shows it: ID, files relative to its folder, outcome; no dates."""
    show = manifest[["patient_id", "spect", "roi", "markups", "efs_days", "efs_event"]].copy()
    show["efs_days"] = show["efs_days"].map("{:.0f}".format)
    show["efs_event"] = show["efs_event"].astype(int)
    for col in ("spect", "roi", "markups"):
        show[col] = [relative_name(p, base) if p else "" for p in show[col]]
    return show


def sphere_summary(features: pd.DataFrame) -> pd.DataFrame:
    """Per reference sphere: median voxel count and realised volume, its range, and how many
    patients' spheres lie partly outside the image."""
    rows = {}
    for s in SPHERES:
        n, vol, inside = (features.get(f"{s}_{k}") for k in ("n_voxels", "volume_ml", "fraction_inside"))
        if n is None or vol is None or vol.dropna().empty:
            continue
        rows[s] = {"voxels (median)": n.median(), "realised volume, ml (median)": vol.median(),
                   "realised volume, ml (range)": f"{vol.min():.1f}–{vol.max():.1f}",
                   "patients with sphere partly outside": int((inside < 1).sum())}
    return pd.DataFrame(rows).T


def sphere_volumes(features: pd.DataFrame) -> pd.DataFrame:
    """Long table ``sphere, realised volume (ml)`` for a strip plot."""
    parts = [pd.DataFrame({"sphere": s, "realised volume (ml)": features[f"{s}_volume_ml"]})
             for s in SPHERES if f"{s}_volume_ml" in features]
    return pd.concat(parts) if parts else pd.DataFrame(columns=["sphere", "realised volume (ml)"])


def patients_to_show(qc: pd.DataFrame, features: pd.DataFrame, n: int) -> list[str]:
    """The first ``n`` measured patients and every measured patient with a QC warning."""
    warned = list(qc.loc[qc.status == "warning", "patient_id"])
    measured = list(features.index)
    return list(dict.fromkeys(measured[:n] + [p for p in warned if p in measured]))


def review_table(manifest_path, patients) -> tuple[pd.DataFrame | None, str]:
    """The analyst's review of the manifest's patients (``review.csv`` beside the manifest, written by
    the live viewer): ``(table, problem)``.

    ``table`` holds the rows of ``patients``, in their order; None when there is no review file or it
    cannot be used. ``problem`` is ``""``, or why the file cannot be used (not a CSV, an unknown flag,
    a repeated patient...: :func:`mibgkit.review.read_review` lists every row's problem), so that the
    report says so and goes on. Rows of other patients (a manifest of part of a cohort) are left out
    with a :class:`~mibgkit.errors.QCWarning` naming them."""
    from ..manifest import rows_of_patients
    from ..review import read_review, review_path_for

    path = review_path_for(manifest_path)
    if not path.is_file():
        return None, ""
    try:
        review = read_review(path)
    except ManifestError as e:
        return None, f"{path.name}: {e.reason}"
    review = rows_of_patients(review, patients, path).set_index("patient_id")
    order = [p for p in patients if p in review.index]
    return review.loc[order].reset_index(), ""

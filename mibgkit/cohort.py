"""Batch extraction over a manifest: one feature row per patient and a QC/error table beside it.

A failing patient does not stop the batch: its error (patient, file, what is wrong) goes into the
QC table and the run carries on.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import pandas as pd
from tqdm.auto import tqdm

from .errors import MibgkitError
from .features import FEATURE_COLUMNS, extract_patient

QC_COLUMNS = ("patient_id", "status", "error_type", "file", "message")


def _relative(path: str | None, base: Path) -> str:
    """A path as reports show it: relative to the manifest's folder, never the machine's layout."""
    if not path:
        return ""
    p = Path(path)
    try:
        return p.resolve().relative_to(base).as_posix()
    except ValueError:
        return p.name


def extract_cohort(
    manifest: pd.DataFrame,
    *,
    mtv_method: str = "roi",
    mtv_params: Mapping | None = None,
    native_shape: bool = False,
    progress: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Features for every patient of a validated manifest (see :func:`mibgkit.manifest.read_manifest`).

    Returns
    -------
    features : DataFrame
        One row per successfully measured patient, indexed by ``patient_id``; SPEC §1 columns
        first, then QC columns.
    qc : DataFrame
        One row per patient: ``status`` is ``ok``, ``warning`` (measured, but look at ``message``)
        or ``error`` (not measured); ``file`` is relative to the manifest's folder.
    """
    base = Path(manifest.attrs.get("manifest", ".")).resolve().parent
    rows, qc = [], []
    bar = tqdm(manifest.iterrows(), total=len(manifest), desc="extract", unit="patient", disable=not progress)
    for pid, row in bar:
        try:
            feat = extract_patient(row.to_dict(), mtv_method=mtv_method, mtv_params=mtv_params, native_shape=native_shape)
        except MibgkitError as e:
            qc.append({"patient_id": pid, "status": "error", "error_type": type(e).__name__,
                       "file": _relative(e.path, base), "message": e.reason})
            continue
        rows.append(feat)
        w = feat.get("qc_warnings", "")
        qc.append({"patient_id": pid, "status": "warning" if w else "ok", "error_type": "", "file": "", "message": w})
    features = pd.DataFrame(rows)
    if features.empty:
        features = pd.DataFrame(columns=["patient_id", *FEATURE_COLUMNS])
    lead = ["patient_id", *FEATURE_COLUMNS]
    features = features[lead + [c for c in features.columns if c not in lead]]
    features = features.set_index("patient_id", drop=False).rename_axis(None)
    return features, pd.DataFrame(qc, columns=QC_COLUMNS)


def qc_path_for(features_path: str | os.PathLike) -> Path:
    """Where the QC table of a features file goes: ``features.csv`` → ``features_qc.csv``."""
    p = Path(features_path)
    return p.with_name(p.stem + "_qc" + p.suffix)

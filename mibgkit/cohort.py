"""Batch extraction over a manifest: one feature row per patient and a QC/error table beside it.

A failing patient does not stop the batch: its error (patient, file, what is wrong) goes into the
QC table and the run carries on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
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
    native_shape: bool = True,
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


def extraction_inputs(manifest: pd.DataFrame) -> list[str]:
    """The files extraction reads: manifest, SPECT, ROI and markups of every patient."""
    files = [manifest.attrs.get("manifest")]
    for col in ("spect", "roi", "markups"):
        if col in manifest:
            files.extend(p for p in manifest[col] if p)
    return [f for f in files if f]


def cached_features(
    manifest: pd.DataFrame,
    workdir: str | os.PathLike,
    *,
    mtv_method: str = "roi",
    mtv_params: Mapping | None = None,
    progress: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`extract_cohort`, reusing a previous result when inputs and parameters are unchanged.

    The cache key is a SHA-256 over the bytes of every file extraction reads, the MTV parameters
    and the mibgkit version; results live in ``workdir`` as ``features-<key>.csv`` and
    ``features-<key>_qc.csv`` (written atomically).
    """
    import hashlib
    import json

    from . import __version__
    from .outputs import write_csv
    from .provenance import inputs_digest

    base = Path(manifest.attrs.get("manifest", ".")).resolve().parent
    digest, _ = inputs_digest(extraction_inputs(manifest), base)
    key_src = json.dumps({"inputs": digest, "mtv_method": mtv_method, "mtv_params": dict(mtv_params or {}),
                          "version": __version__}, sort_keys=True)
    key = hashlib.sha256(key_src.encode()).hexdigest()[:16]
    f_path = Path(workdir) / f"features-{key}.csv"
    q_path = qc_path_for(f_path)
    if not (f_path.is_file() and q_path.is_file()):
        features, qc = extract_cohort(manifest, mtv_method=mtv_method, mtv_params=mtv_params, progress=progress)
        write_csv(f_path, features)
        write_csv(q_path, qc)
    # Always return what is on disk, so a first run and a cached run give identical numbers.
    return read_features(f_path)


def read_features(path: str | os.PathLike) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A features table written by ``mibgkit extract`` and its QC table beside it."""
    f_path, q_path = Path(path), qc_path_for(path)
    features = pd.read_csv(f_path, dtype={"patient_id": str}, keep_default_na=False, na_values=[""],
                           float_precision="round_trip")
    qc = pd.read_csv(q_path, dtype=str, keep_default_na=False)
    features = features.set_index("patient_id", drop=False).rename_axis(None)
    if "qc_warnings" in features:
        features["qc_warnings"] = features["qc_warnings"].fillna("")
    return features, qc


@dataclass
class Cohort:
    """Everything the notebooks analyse, read and validated once.

    ``table`` joins outcome, clinical variables and features by ``patient_id`` (patients whose
    extraction failed keep NaN features); ``covariates`` codes it as Cox covariates
    (:func:`mibgkit.variables.covariates`); ``base`` is the manifest's folder.
    """

    manifest: pd.DataFrame
    clinical: pd.DataFrame
    features: pd.DataFrame
    qc: pd.DataFrame
    table: pd.DataFrame
    covariates: pd.DataFrame
    base: Path


def load_cohort(
    manifest: str | os.PathLike,
    *,
    clinical: str | os.PathLike | None = None,
    workdir: str | os.PathLike,
    mtv_method: str = "roi",
    mtv_params: Mapping | None = None,
    progress: bool = False,
) -> Cohort:
    """Read manifest and clinical table (default ``clinical.csv`` beside the manifest), extract
    or reuse the features, and assemble the analysis tables."""
    from .manifest import cohort_table, read_clinical, read_manifest
    from .variables import covariates

    m = read_manifest(manifest)
    base = Path(m.attrs["manifest"]).parent
    c = read_clinical(clinical if clinical else base / "clinical.csv")
    features, qc = cached_features(m, workdir, mtv_method=mtv_method, mtv_params=mtv_params, progress=progress)
    table = cohort_table(m, c, features)
    return Cohort(m, c, features, qc, table, covariates(table), base)

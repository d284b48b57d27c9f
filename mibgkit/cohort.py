"""The analysis cohort: manifest, clinical table and image features, read and joined once.

:func:`load_cohort` is what ``mibgkit report`` and every notebook call: it validates the manifest
and the clinical table (:mod:`mibgkit.manifest`), extracts or reuses the features
(:func:`mibgkit.extraction.extract`, cached per patient), and joins them into one analysis table
whose Cox coding is :func:`mibgkit.variables.covariates`.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import pandas as pd

from .errors import ManifestError
from .extraction import extract, qc_path_for, read_features

__all__ = ["Cohort", "load_cohort", "analysis_table", "cached_features"]


def analysis_table(manifest: pd.DataFrame, clinical: pd.DataFrame, features: pd.DataFrame | None = None) -> pd.DataFrame:
    """One analysis table: outcome from the manifest, clinical variables, and image features.

    Patients must match between manifest and clinical table (error listing the differences);
    patients whose extraction failed keep NaN features.
    """
    a, b = set(manifest.index), set(clinical.index)
    if a != b:
        only_m, only_c = sorted(a - b), sorted(b - a)
        raise ManifestError(
            "manifest and clinical table list different patients"
            + (f"; only in manifest: {', '.join(only_m)}" if only_m else "")
            + (f"; only in clinical table: {', '.join(only_c)}" if only_c else "")
        )
    out = manifest[["patient_id", "efs_days", "efs_event"]].join(clinical.drop(columns="patient_id"))
    if features is not None:
        out = out.join(features.drop(columns=[c for c in ("patient_id",) if c in features]), how="left")
    return out


def cached_features(
    manifest: pd.DataFrame,
    workdir: str | os.PathLike,
    *,
    mtv_method: str = "roi",
    mtv_params: Mapping | None = None,
    progress: bool = True,
    workers: int | None = None,
    scheduler: str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Features and QC tables of a validated manifest, reusing previous results.

    Per-patient results are kept as part files in ``workdir/features.parts`` (see
    :func:`mibgkit.extraction.extract`), so only new or changed patients are computed. The
    assembled tables are written atomically as ``features-<key>.csv`` and ``features-<key>_qc.csv``
    in ``workdir``, ``key`` being a digest over the patients' keys (their inputs' bytes and the
    parameters) in manifest order; what is returned is always read back from those files, so a
    first run and a cached run give identical tables.
    """
    from .outputs import write_text

    run = extract(manifest, parts_dir=Path(workdir) / "features.parts", mtv_method=mtv_method,
                  mtv_params=mtv_params, progress=progress, workers=workers, scheduler=scheduler)
    h = hashlib.sha256()
    for o in run.outcomes:
        h.update((Path(o["part"]).name if o["part"] else o["record"]).encode() + b"\0")
    key = h.hexdigest()[:16]
    f_path = Path(workdir) / f"features-{key}.csv"
    q_path = qc_path_for(f_path)
    if not (f_path.is_file() and q_path.is_file()):
        write_text(f_path, run.features_csv)
        write_text(q_path, run.qc_csv)
    return read_features(f_path)


@dataclass
class Cohort:
    """Everything the notebooks analyse, read and validated once.

    ``table`` joins outcome, clinical variables and features by ``patient_id`` (patients whose
    extraction failed keep NaN features); ``covariates`` codes it as Cox covariates
    (:func:`mibgkit.variables.covariates`); ``base`` is the manifest's folder and
    ``clinical_path`` the clinical table actually read.
    """

    manifest: pd.DataFrame
    clinical: pd.DataFrame
    features: pd.DataFrame
    qc: pd.DataFrame
    table: pd.DataFrame
    covariates: pd.DataFrame
    base: Path
    clinical_path: Path

    def inputs(self) -> list[str]:
        """Every file the analysis read: the extraction's inputs and the clinical table."""
        from .extraction import extraction_inputs

        return extraction_inputs(self.manifest) + [str(self.clinical_path)]


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
    or reuse the features, and assemble the analysis tables.

    Raises :class:`~mibgkit.errors.ManifestError` before any image is read when either table is
    invalid or they list different patients.
    """
    from .manifest import read_clinical, read_manifest
    from .variables import covariates

    m = read_manifest(manifest)
    base = Path(m.attrs["manifest"]).parent
    clinical_path = Path(clinical).resolve() if clinical else base / "clinical.csv"
    c = read_clinical(clinical_path)
    analysis_table(m, c)  # the two tables must agree before any image is read
    features, qc = cached_features(m, workdir, mtv_method=mtv_method, mtv_params=mtv_params, progress=progress)
    table = analysis_table(m, c, features)
    return Cohort(m, c, features, qc, table, covariates(table), base, clinical_path)

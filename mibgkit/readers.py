"""Several readers: every reader's ROI measured exactly as the manifest's is, and how their ROIs overlap.

``readers.csv`` (:data:`mibgkit.manifest.READER_COLUMNS`, read by
:func:`mibgkit.manifest.read_readers`) gives, per patient and reader, that reader's tumour ROI and
optionally their own sphere markups. The survival analysis keeps using the manifest's ROI; the
agreement analysis measures each reader through :func:`mibgkit.extraction.extract` on a manifest in
which the reader's files replace the manifest's (:func:`reader_manifest`), so the part cache holds
one part per patient × reader × parameters and a re-run measures nothing twice.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from collections.abc import Mapping

import pandas as pd

from .errors import MibgkitError
from .extraction import extract
from .features import load_roi
from .manifest import read_readers
from .overlap import mask_agreement

__all__ = ["READERS_FILE", "find_readers", "reader_manifest", "extract_readers", "roi_overlaps"]

#: File name of the readers table looked for beside the manifest.
READERS_FILE = "readers.csv"

#: The columns a reader's row replaces in the manifest's row (markups only when the reader gives one).
_READER_FILES = ("roi", "roi_segment", "roi_label")


def find_readers(manifest: pd.DataFrame, readers: str | os.PathLike | None = None) -> pd.DataFrame | None:
    """The validated readers table: ``readers`` if given, else ``readers.csv`` beside the manifest, else None."""
    if readers is None:
        beside = Path(manifest.attrs.get("manifest", ".")).resolve().parent / READERS_FILE
        if not beside.is_file():
            return None
        readers = beside
    return read_readers(readers, manifest)


def reader_manifest(manifest: pd.DataFrame, readers: pd.DataFrame, reader: str) -> pd.DataFrame:
    """The manifest of the patients ``reader`` read, with that reader's ROI (and markups, when given).

    A reader's empty ``markups`` keeps the manifest's sphere centres (markups file or columns).
    The result keeps the manifest's ``attrs`` (relative paths in the QC table stay relative to it).
    """
    own = readers[readers["reader"] == reader].set_index("patient_id")
    out = manifest.loc[[p for p in manifest.index if p in own.index]].copy()
    for c in _READER_FILES:
        out[c] = [own.at[p, c] if c in own else None for p in out.index]
    if "markups" in own:
        given = own["markups"].reindex(out.index)
        if "markups" not in out:
            out["markups"] = None
        out["markups"] = [g if g is not None and not pd.isna(g) else m for g, m in zip(given, out["markups"])]
    out.attrs = dict(manifest.attrs)
    return out


def extract_readers(manifest: pd.DataFrame, readers: pd.DataFrame, *, parts_dir: str | os.PathLike | None,
                    mtv_method: str = "roi", mtv_params: Mapping | None = None, progress: bool = True,
                    workers: int | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Features and QC of every reader, long format: one row per patient × reader (column ``reader``).

    Each reader is one :func:`mibgkit.extraction.extract` run over :func:`reader_manifest` with the
    shared ``parts_dir``; a patient whose reader ROI cannot be read is a QC row, not a stop.
    """
    features, qc = [], []
    for reader in dict.fromkeys(readers["reader"]):
        run = extract(reader_manifest(manifest, readers, reader), parts_dir=parts_dir, mtv_method=mtv_method,
                      mtv_params=mtv_params, progress=progress, workers=workers)
        f, q = run.tables()
        features.append(f.assign(reader=reader))
        qc.append(q.assign(reader=reader))
    return pd.concat(features, ignore_index=True), pd.concat(qc, ignore_index=True)


def roi_overlaps(manifest: pd.DataFrame, readers: pd.DataFrame) -> pd.DataFrame:
    """Dice and Hausdorff distances (mm) of every pair of readers' ROIs, per patient.

    Columns ``patient_id, reader_a, reader_b`` and those of :func:`mibgkit.overlap.mask_agreement`
    (each pair compared on reader a's grid), or ``error`` where a ROI could not be read.
    """
    rows = []
    for pid, group in readers.groupby("patient_id", sort=False):
        masks, errors = {}, {}
        for _, r in group.iterrows():
            row = {**manifest.loc[pid].to_dict(), **{c: r[c] for c in _READER_FILES if c in r}}
            try:
                masks[r["reader"]] = load_roi(row, patient=pid)
            except MibgkitError as e:
                errors[r["reader"]] = str(e)
        for a, b in itertools.combinations(list(group["reader"]), 2):
            row = {"patient_id": pid, "reader_a": a, "reader_b": b}
            try:
                if a not in masks or b not in masks:
                    raise MibgkitError(errors.get(a) or errors.get(b))
                row.update(mask_agreement(masks[a], masks[b], patient=pid))
            except MibgkitError as e:
                row["error"] = str(e)
            rows.append(row)
    return pd.DataFrame(rows)

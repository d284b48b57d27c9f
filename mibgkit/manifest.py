"""``data_manifest.csv`` and the clinical table: their schemas and validated readers.

The manifest has one row per patient, keyed by a pseudonymous ``patient_id``; it points at the
images and gives the outcome. The clinical table (``clinical.csv`` beside the manifest by default)
holds the Table 1 variables, keyed by the same ``patient_id``. Both are validated before any work
starts; relative paths resolve against the manifest's folder and may not leave it.

Columns not in the schemas (names, birth dates, hospital numbers a hospital export may carry) are
dropped on reading, so they can never reach a table, figure or report.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import ManifestError, QCWarning

#: The alphabet of IDs (patient, reader): ASCII letters, digits, ``.``, ``_``, ``-``; 1–64 characters;
#: not starting with ``.`` or ``-``. IDs become file names, table cells and HTML, so nothing else.
SAFE_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}")


def check_id(value: str, *, column: str, row: int) -> str | None:
    """``None`` when ``value`` is a safe ID (:data:`SAFE_ID`), else what is wrong with it (naming the row)."""
    if SAFE_ID.fullmatch(value):
        return None
    return (f"row {row}: {column} {value[:80]!r} is not a valid ID (use 1–64 letters, digits, '.', '_' "
            "or '-', not starting with '.' or '-')")


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # "id", "path", "str", "float", "int", "binary", "date", or "cat"
    required: bool
    doc: str
    levels: tuple[str, ...] = ()


#: data_manifest.csv, one row per patient.
MANIFEST_COLUMNS: tuple[Column, ...] = (
    Column("patient_id", "id", True, "pseudonymous patient ID; the only identity that reaches a report"),
    Column("spect", "path", True, "SPECT: DICOM file (NM multi-frame) or folder, NIfTI or NRRD"),
    Column("ct", "path", False, "CT: DICOM folder, NIfTI or NRRD (display, native-grid shape, the grid of an RTSTRUCT ROI in its "
           "Frame of Reference)"),
    Column("roi", "path", True, "tumour ROI: 3D Slicer .seg.nrrd, a labelmap (NIfTI/NRRD), DICOM SEG or RTSTRUCT"),
    Column("roi_segment", "str", False, "exact segment name (.seg.nrrd), Segment Label (SEG) or ROI Name (RTSTRUCT)"),
    Column("roi_label", "int", False, "label value (labelmap; default: all non-zero), Segment Number (SEG) or ROI Number (RTSTRUCT)"),
    Column("markups", "path", False, "3D Slicer .mrk.json with control points liver, muscle_left, muscle_right"),
    Column("organs", "path", False, "organ segmentation (.seg.nrrd with segments liver, muscle_left/muscle_right or "
           "muscle): a sphere leaving its organ is a QC warning"),
    *(
        Column(f"{p}_{a}_mm", "float", False, f"{p} sphere centre, LPS {a} in mm (used when there is no markups file)")
        for p in ("liver", "muscle_left", "muscle_right")
        for a in ("x", "y", "z")
    ),
    Column("scan_date", "date", False, "date of the SPECT/CT, ISO YYYY-MM-DD"),
    Column("efs_days", "float", True, "days from the scan to event or censoring (> 0)"),
    Column("efs_event", "binary", True, "1 = event (relapse, progression or death), 0 = censored"),
)

_YES_NO = ("no", "yes")

#: clinical.csv, one row per patient (Table 1 variables). Blank = not known.
CLINICAL_COLUMNS: tuple[Column, ...] = (
    Column("patient_id", "id", True, "pseudonymous patient ID, as in the manifest"),
    Column("sex", "cat", False, "M or F", ("M", "F")),
    Column("age_months", "float", False, "age at diagnosis, months"),
    Column("primary_site", "cat", False, "site of the primary tumour", ("abdomen", "mediastinum", "pelvis")),
    Column("idrf", "cat", False, "image-defined risk factors present", ("negative", "positive")),
    Column("idrf_number", "int", False, "number of IDRFs"),
    Column("curie_score", "int", False, "modified Curie score"),
    Column("uptake_extent", "cat", False, "MIBG uptake of the primary", ("muscle_to_liver", "above_liver")),
    Column("bone_marrow_metastasis", "cat", False, "bone/bone-marrow metastasis", _YES_NO),
    Column("histology", "cat", False, "NB (neuroblastoma) or GNB (ganglioneuroblastoma)", ("NB", "GNB")),
    Column("nse_ng_ml", "float", False, "neuron-specific enolase, ng/ml"),
    Column("ldh_u_l", "float", False, "lactate dehydrogenase, U/l"),
    Column("mycn", "cat", False, "MYCN status", ("normal", "amplified")),
    Column("del_1p36", "cat", False, "1p36 aberration", _YES_NO),
    Column("del_11q23", "cat", False, "11q23 aberration", _YES_NO),
    Column("neoadjuvant_chemo", "cat", False, "neoadjuvant chemotherapy", _YES_NO),
    Column("surgery", "cat", False, "surgery", _YES_NO),
    Column("postoperative_chemo", "cat", False, "postoperative chemotherapy", _YES_NO),
    Column("radiotherapy", "cat", False, "radiotherapy", _YES_NO),
    Column("event_type", "cat", False, "type of EFS event", ("none", "relapse", "progression", "death")),
)


#: readers.csv (optional), one row per patient and reader: each reader's own ROI and, optionally, markups.
READER_COLUMNS: tuple[Column, ...] = (
    Column("patient_id", "id", True, "pseudonymous patient ID, as in the manifest"),
    Column("reader", "id", True, "reader's pseudonymous ID (e.g. R1, R2)"),
    Column("roi", "path", True, "this reader's tumour ROI (any format the manifest's roi accepts)"),
    Column("roi_segment", "str", False, "as in the manifest"),
    Column("roi_label", "int", False, "as in the manifest"),
    Column("markups", "path", False, "this reader's sphere markups; empty: the manifest's"),
)


def schema_markdown(columns: tuple[Column, ...]) -> str:
    """The schema as a Markdown table (used in the README)."""
    rows = ["| column | required | type | meaning |", "|---|---|---|---|"]
    for c in columns:
        kind = c.kind + (f" ({' / '.join(c.levels)})" if c.levels else "")
        rows.append(f"| `{c.name}` | {'yes' if c.required else ''} | {kind} | {c.doc} |")
    return "\n".join(rows)


def _blank(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or (isinstance(v, str) and not v.strip())


def _validate(df: pd.DataFrame, columns: tuple[Column, ...], path: Path, key: tuple[str, ...] = ("patient_id",)
              ) -> pd.DataFrame:
    missing = [c.name for c in columns if c.required and c.name not in df.columns]
    if missing:
        raise ManifestError(f"missing required column(s): {', '.join(missing)}", path=path)
    if df.empty:
        raise ManifestError("the table has no rows", path=path)
    known = [c for c in columns if c.name in df.columns]
    out = pd.DataFrame(index=df.index)
    problems: list[str] = []
    ids = df["patient_id"].astype(str).str.strip()
    for row, (i, v) in enumerate(ids.items(), start=2):  # row 1 is the header
        for c in columns:
            if c.kind == "id" and c.name in df.columns and not _blank(df.at[i, c.name]):
                bad = check_id(str(df.at[i, c.name]).strip(), column=c.name, row=row)
                if bad:
                    problems.append(bad)
    if problems:
        raise ManifestError("; ".join(problems[:20]) + (f" (and {len(problems) - 20} more)" if len(problems) > 20 else ""),
                            path=path)
    for c in known:
        col = df[c.name]
        for i, v in col.items():
            pid = ids.get(i, "?")
            if _blank(v):
                if c.required:
                    problems.append(f"patient {pid}: {c.name} is empty")
                continue
            s = str(v).strip()
            if c.kind in ("float", "int"):
                try:
                    x = float(s)
                except ValueError:
                    problems.append(f"patient {pid}: {c.name} = {s!r} is not a number")
                    continue
                if not math.isfinite(x) or (c.kind == "int" and x != int(x)):
                    problems.append(f"patient {pid}: {c.name} = {s!r} is not a finite {'integer' if c.kind == 'int' else 'number'}")
            elif c.kind == "binary" and s not in ("0", "1", "0.0", "1.0"):
                problems.append(f"patient {pid}: {c.name} = {s!r} must be 0 or 1")
            elif c.kind == "cat" and s not in c.levels:
                problems.append(f"patient {pid}: {c.name} = {s!r} is not one of {', '.join(c.levels)}")
            elif c.kind == "date":
                try:
                    pd.Timestamp(_iso_date(s))
                except (ValueError, TypeError):
                    problems.append(f"patient {pid}: {c.name} = {s!r} is not an ISO date (YYYY-MM-DD)")
        if c.kind in ("float", "int", "binary"):
            out[c.name] = col.map(_number_or_nan).astype(float)
        elif c.kind == "date":
            out[c.name] = col.map(_date_or_none)
        else:
            out[c.name] = col.map(lambda v: None if _blank(v) else str(v).strip())
    keys = df[list(key)].astype(str).apply(lambda c: c.str.strip())
    dup = keys[keys.duplicated()].drop_duplicates()
    if len(dup):
        problems.append(f"duplicate {' × '.join(key)}: {', '.join(' × '.join(r) for r in dup.itertuples(index=False))}")
    if "efs_days" in out:
        for i, v in out["efs_days"].items():
            if pd.notna(v) and v <= 0:
                problems.append(f"patient {ids[i]}: efs_days = {v:g} must be > 0")
    if problems:
        more = f" (and {len(problems) - 20} more)" if len(problems) > 20 else ""
        raise ManifestError("; ".join(problems[:20]) + more, path=path)
    for c in known:  # every value is now known to be a finite integer where one is required
        if c.kind in ("int", "binary"):
            out[c.name] = out[c.name].astype("Int64")
    out["patient_id"] = ids
    if key != ("patient_id",):
        return out.reset_index(drop=True)
    return out.set_index("patient_id", drop=False).rename_axis(None)


def _iso_date(s: str) -> str:
    if len(s) != 10 or s[4] != "-" or s[7] != "-":
        raise ValueError(s)
    return pd.Timestamp(s).strftime("%Y-%m-%d")


def _number_or_nan(v) -> float:
    try:
        return math.nan if _blank(v) else float(str(v).strip())
    except ValueError:
        return math.nan


def _date_or_none(v) -> str | None:
    try:
        return None if _blank(v) else _iso_date(str(v).strip())
    except (ValueError, TypeError):
        return None


def _read_csv(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise ManifestError("file not found", path=path)
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as e:
        raise ManifestError(f"cannot be read as CSV: {e}", path=path) from e


def read_manifest(path: str | os.PathLike) -> pd.DataFrame:
    """Read and validate ``data_manifest.csv``.

    Returns a DataFrame indexed by ``patient_id`` with the schema's columns (others dropped) and
    the path columns resolved to absolute paths, which must stay inside the manifest's folder.
    A path to a file that does not exist is accepted here and reported per patient by extraction
    (one missing scan must not stop a cohort). ``df.attrs["manifest"]`` holds the manifest's
    absolute path.
    """
    path = Path(path).resolve()
    df = _validate(_read_csv(path), MANIFEST_COLUMNS, path)
    _resolve_paths(df, MANIFEST_COLUMNS, path, "manifest")
    problems = []
    has_markups = df["markups"].notna() if "markups" in df else pd.Series(False, index=df.index)
    coord_cols = [f"{p}_{a}_mm" for p in ("liver", "muscle_left", "muscle_right") for a in "xyz"]
    for pid in df.index[~has_markups]:
        if not all(c in df and pd.notna(df.at[pid, c]) for c in coord_cols):
            problems.append(f"patient {pid}: no markups file and incomplete sphere-centre columns")
    if problems:
        raise ManifestError("; ".join(problems), path=path)
    df.attrs["manifest"] = str(path)
    return df


def _resolve_paths(df: pd.DataFrame, columns: tuple[Column, ...], path: Path, what: str) -> None:
    """Path columns made absolute against the table's folder, in place; none may leave that folder.

    A path to a file that does not exist is accepted: that is the patient's problem, not the
    cohort's (extraction reports it in the QC table and carries on with the others).
    """
    base = path.parent
    problems = []
    for c in columns:
        if c.kind != "path" or c.name not in df:
            continue
        resolved = []
        for pid, rel in zip(df["patient_id"], df[c.name]):
            if rel is None:
                resolved.append(None)
                continue
            p = (base / rel).resolve()
            if base not in p.parents and p != base:
                problems.append(f"patient {pid}: {c.name} path {rel!r} leaves the {what}'s folder")
            resolved.append(str(p))
        df[c.name] = resolved
    if problems:
        raise ManifestError("; ".join(problems), path=path)


def rows_of_patients(df: pd.DataFrame, patients, path) -> pd.DataFrame:
    """The rows of ``df`` (a table read from ``path``, one ``patient_id`` per row, in file order)
    whose patient is one of ``patients``. The others (a manifest of part of a cohort beside the
    cohort's table) are left out with a :class:`~mibgkit.errors.QCWarning` naming them and their rows."""
    known = df["patient_id"].isin(list(patients))
    if known.all():
        return df
    rows = [f"{pid} (row {i + 2})" for i, pid in zip(np.flatnonzero(~known), df["patient_id"][~known])]
    more = f" and {len(rows) - 20} more" if len(rows) > 20 else ""
    warnings.warn(f"{Path(path).name}: rows of patients that are not in the manifest are left out: "
                  f"{', '.join(rows[:20])}{more}", QCWarning, stacklevel=3)
    return df[known].reset_index(drop=True)


def read_readers(path: str | os.PathLike, manifest: pd.DataFrame | None = None) -> pd.DataFrame:
    """Read and validate ``readers.csv`` (:data:`READER_COLUMNS`): one row per patient × reader.

    Paths resolve against the file's folder and must stay inside it, as in the manifest; IDs come
    from :data:`SAFE_ID`; a patient × reader pair appears once. With ``manifest``, every patient
    rows of patients it does not hold are left out with a :class:`~mibgkit.errors.QCWarning`
    naming them (a manifest of part of a cohort may sit beside the cohort's readers.csv). Returns a DataFrame with a plain index, in the file's row order;
    ``df.attrs["readers"]`` is its path. (How a row combines with the manifest's:
    :func:`mibgkit.readers.reader_manifest`.)
    """
    path = Path(path).resolve()
    df = _validate(_read_csv(path), READER_COLUMNS, path, key=("patient_id", "reader"))
    _resolve_paths(df, READER_COLUMNS, path, "readers table")
    if manifest is not None:
        df = rows_of_patients(df, manifest.index, path)
        if df.empty:
            raise ManifestError("no row of the readers table is a patient of the manifest", path=path)
    df.attrs["readers"] = str(path)
    return df


def read_clinical(path: str | os.PathLike) -> pd.DataFrame:
    """Read and validate the clinical table; identity columns outside the schema are dropped."""
    path = Path(path).resolve()
    return _validate(_read_csv(path), CLINICAL_COLUMNS, path)

"""An analyst's review of each patient: ``review.csv`` beside the manifest.

One row per patient, three columns:

``patient_id``
    as in the manifest (a safe ID, :data:`mibgkit.manifest.SAFE_ID`).
``review``
    one of :data:`REVIEW_CHOICES`: ``ok``, ``needs attention``, ``exclude``.
``note``
    free text (may be empty; at most :data:`MAX_NOTE_CHARS` characters, no control characters
    other than line breaks and tabs).

The file is deterministic: no timestamps, rows in a fixed order (the manifest's, when given, else
the order in which patients were first reviewed), written atomically (:mod:`mibgkit.outputs`) so a
reader never sees half a file. Cells are made inert for spreadsheets as every CSV mibgkit writes
(:func:`mibgkit.outputs.csv_safe`): a note starting with ``=``, ``+``, ``-`` or ``@`` is stored with
a leading ``'``, which :func:`read_review` removes again (so a note that itself began with ``'``
followed by one of those characters comes back without the ``'``).

Examples
--------
>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "review.csv"
>>> _ = set_review(path, "NB002", "exclude", "motion artefact")
>>> _ = set_review(path, "NB001", "ok", order=["NB001", "NB002"])
>>> read_review(path)[["patient_id", "review", "note"]].values.tolist()
[['NB001', 'ok', ''], ['NB002', 'exclude', 'motion artefact']]
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd

from .errors import InputError, ManifestError
from .manifest import check_id
from .outputs import write_csv

__all__ = ["REVIEW_CHOICES", "REVIEW_COLUMNS", "MAX_NOTE_CHARS", "REVIEW_FILE", "review_path_for",
           "read_review", "write_review", "set_review"]

#: The review flags an analyst can give a patient.
REVIEW_CHOICES = ("ok", "needs attention", "exclude")

#: The columns of ``review.csv``, in file order.
REVIEW_COLUMNS = ("patient_id", "review", "note")

#: Longest note accepted, in characters.
MAX_NOTE_CHARS = 2000

#: The file's name; it lives beside the manifest.
REVIEW_FILE = "review.csv"

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_INERT = re.compile(r"^'[=+\-@\t\r]")


def review_path_for(manifest_path: str | os.PathLike) -> Path:
    """``review.csv`` beside a manifest."""
    return Path(manifest_path).resolve().parent / REVIEW_FILE


def _problems(patient_id, review, note, where: str) -> list[str]:
    out = []
    bad = check_id(str(patient_id), column="patient_id", row=0)
    if bad:  # the manifest's message, placed at this file's row
        out.append(f"{where}: {bad.split(': ', 1)[1]}")
    if review not in REVIEW_CHOICES:
        out.append(f"{where}: review {str(review)[:80]!r} is not one of {', '.join(REVIEW_CHOICES)}")
    if not isinstance(note, str):
        out.append(f"{where}: note must be text")
    else:
        if len(note) > MAX_NOTE_CHARS:
            out.append(f"{where}: note is {len(note)} characters long (at most {MAX_NOTE_CHARS})")
        if _CONTROL.search(note):
            out.append(f"{where}: note contains control characters")
    return out


def _table(rows: Iterable[Sequence[str]]) -> pd.DataFrame:
    return pd.DataFrame([list(r) for r in rows], columns=list(REVIEW_COLUMNS), dtype=object)


def read_review(path: str | os.PathLike, *, patients: Iterable[str] | None = None) -> pd.DataFrame:
    """Read and validate ``review.csv``.

    Parameters
    ----------
    path : path
        The file.
    patients : iterable of str, optional
        The manifest's patient IDs; when given, a row for any other patient is an error.

    Returns
    -------
    DataFrame
        Columns :data:`REVIEW_COLUMNS` (all text, ``note`` ``""`` when blank), in file order.

    Raises
    ------
    ManifestError
        The file is missing, not a CSV, lacks a column, or a row has an unsafe patient ID, an
        unknown review flag, a note too long or with control characters, or repeats a patient
        (every problem is listed, naming its row).
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError("file not found", path=path)
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as e:
        raise ManifestError(f"cannot be read as CSV: {e}", path=path) from e
    missing = [c for c in REVIEW_COLUMNS if c not in df.columns]
    if missing:
        raise ManifestError(f"missing column(s): {', '.join(missing)} (a review.csv has "
                            f"{', '.join(REVIEW_COLUMNS)})", path=path)
    known = set(patients) if patients is not None else None
    problems: list[str] = []
    seen: dict[str, int] = {}
    rows = []
    for n, (pid, review, note) in enumerate(df[list(REVIEW_COLUMNS)].itertuples(index=False), start=2):
        pid, review = pid.strip(), review.strip()
        note = note[1:] if _INERT.match(note) else note
        where = f"row {n}"
        problems.extend(_problems(pid, review, note, where))
        if pid in seen:
            problems.append(f"{where}: patient {pid} is reviewed twice (also row {seen[pid]})")
        seen.setdefault(pid, n)
        if known is not None and pid not in known and not check_id(pid, column="patient_id", row=n):
            problems.append(f"{where}: patient {pid} is not in the manifest")
        rows.append((pid, review, note))
    if problems:
        more = f" (and {len(problems) - 20} more)" if len(problems) > 20 else ""
        raise ManifestError("; ".join(problems[:20]) + more, path=path)
    return _table(rows)


def write_review(path: str | os.PathLike, table: pd.DataFrame) -> Path:
    """Write a review table (columns :data:`REVIEW_COLUMNS`) atomically, after validating every row."""
    path = Path(path)
    problems: list[str] = []
    seen = set()
    for n, (pid, review, note) in enumerate(table[list(REVIEW_COLUMNS)].itertuples(index=False), start=1):
        note = "" if note is None or (isinstance(note, float) and note != note) else note
        problems.extend(_problems(pid, review, note, f"review {n}"))
        if pid in seen:
            problems.append(f"review {n}: patient {pid} appears twice")
        seen.add(pid)
    if problems:
        raise InputError("; ".join(problems[:20]), path=path)
    out = table[list(REVIEW_COLUMNS)].fillna("").astype(str)
    write_csv(path, out)
    return path


def set_review(path: str | os.PathLike, patient_id: str, review: str, note: str = "", *,
               order: Sequence[str] | None = None) -> pd.DataFrame:
    """Record one patient's review in ``path`` (created if missing; that patient's row replaced).

    Parameters
    ----------
    path : path
        ``review.csv`` (see :func:`review_path_for`).
    patient_id, review, note
        The row; ``review`` one of :data:`REVIEW_CHOICES`.
    order : sequence of str, optional
        Patient IDs in the order rows should have (the manifest's); patients not in it follow in
        the order they were first reviewed.

    Returns
    -------
    DataFrame
        The table as written.
    """
    path = Path(path)
    problems = _problems(patient_id, review, note, f"patient {patient_id}")
    if problems:
        raise InputError("; ".join(problems), path=path)
    table = read_review(path) if path.exists() else _table([])
    rows = {pid: (pid, r, n) for pid, r, n in table.itertuples(index=False)}
    rows[str(patient_id)] = (str(patient_id), review, note)
    if order is not None:
        rank = {pid: i for i, pid in enumerate(order)}
        first = list(rows)
        keys = sorted(rows, key=lambda pid: (rank.get(pid, len(rank)), first.index(pid)))
    else:
        keys = list(rows)
    out = _table(rows[k] for k in keys)
    write_review(path, out)
    return out

"""Batch extraction over a manifest: one feature row per patient and a QC/error table beside it.

:func:`extract` is the entry point (the ``mibgkit extract`` command, the analysis cohort of
:mod:`mibgkit.cohort` and the benchmarks all go through it); :func:`extract_part` is its unit of
work, one patient, in this process or on a Dask worker.

A failing patient does not stop the batch: its error (patient, file, what is wrong) goes into the
QC table and the run carries on.

Results stream to disk as each patient finishes: one small CSV part per patient,
``<features>.parts/<patient>-<key>.csv``, written atomically, where ``key`` is a digest of the
patient's input files (their bytes), the manifest fields extraction reads and the extraction
parameters. A re-run (after an interruption, or with more patients) reads the parts it finds and
computes only the rest; the features and QC tables are then assembled from the parts in manifest
order, so a resumed, a serial and a distributed run write the same bytes. Patients run one after
the other in this process by default, or on a Dask cluster (:mod:`mibgkit.cluster`).
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import math
import os
import re
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import pandas as pd
from tqdm.auto import tqdm

from .errors import MibgkitError, OutputError
from .outputs import csv_text, exclusive, write_text
from . import segment
from .features import FEATURE_COLUMNS, SPHERES, extract_patient

QC_COLUMNS = ("patient_id", "status", "error_type", "file", "message")

#: QC columns as a part file stores them beside the feature columns.
_PART_QC = {"status": "qc_status", "error_type": "qc_error_type", "file": "qc_file", "message": "qc_message"}

#: Manifest path columns whose files extraction reads (the CT is only displayed, never measured).
INPUT_ROLES = ("spect", "roi", "markups", "organs")

#: Manifest fields (other than file paths) that change what extraction computes.
_ROW_FIELDS = ("patient_id", "roi_segment", "roi_label",
               *(f"{s}_{a}_mm" for s in SPHERES for a in "xyz"))

#: File endings whose voxel data may live in a second file beside the header.
_DETACHED_HEADERS = (".nhdr", ".mhd", ".hdr")


def _relative(path: str | None, base: Path) -> str:
    """A path as reports show it: relative to the manifest's folder, never the machine's layout."""
    if not path:
        return ""
    p = Path(path)
    try:
        return p.resolve().relative_to(base).as_posix()
    except ValueError:
        return p.name


# --------------------------------------------------------------------------------------------
# one patient: key, extraction, part file
# --------------------------------------------------------------------------------------------


def _file_digest(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "blake2b").hexdigest()


def _detached_data_files(header: Path) -> list[Path]:
    """Files a detached header points to: NRRD ``data file:`` / MetaImage ``ElementDataFile``, and
    files beside it with the same stem (Analyze ``.hdr``/``.img``)."""
    named: list[Path] = []
    try:
        text = header.read_bytes()[:65536].decode("latin-1")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, sep, value = line.partition(":" if header.suffix.lower() == ".nhdr" else "=")
        key = key.strip().lower()
        if sep and key in ("data file", "datafile", "elementdatafile"):
            value = value.strip()
            if value and value.upper() not in ("LOCAL", "LIST") and "%" not in value:
                named.append((header.parent / value).resolve())
    stem = header.name.rsplit(".", 1)[0]
    named += [q for q in header.parent.glob(stem + ".*") if q != header]
    return sorted({q for q in named if q.is_file()})


def _input_digests(role: str, path) -> list[list[str]]:
    """``[role, name, digest]`` for every file behind one manifest path (a folder: each file in it)."""
    p = Path(path)
    if p.is_dir():
        files = sorted(q for q in p.rglob("*") if q.is_file())
        return [[role, q.relative_to(p).as_posix(), _file_digest(q)] for q in files]
    files = [p]
    if p.name.lower().endswith(_DETACHED_HEADERS):
        files += _detached_data_files(p)
    return [[role, q.name, _file_digest(q)] for q in files]


def _plain(value):
    """A manifest value as JSON can hold it (NaN and pandas NA become None)."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    return value.item() if hasattr(value, "item") else value


def patient_key(row: Mapping, parameters: Mapping) -> str:
    """Digest of everything one patient's features depend on.

    Parameters
    ----------
    row : mapping
        Manifest row with absolute paths (see :func:`mibgkit.manifest.read_manifest`).
    parameters : mapping
        Extraction parameters (MTV method and parameters, native shape), JSON-serialisable.

    Returns
    -------
    str
        32 hex digits: BLAKE2b over the bytes of the SPECT (every file of a DICOM folder), ROI,
        markups and organ-segmentation files, the manifest fields extraction reads (patient ID, segment name or label,
        sphere-centre columns), the parameters, the mibgkit version and the extraction code itself
        (:func:`extraction_code_digest`). Paths do not enter: a
        cohort moved to another folder keeps its keys.

    Raises
    ------
    OSError
        An input file is missing or unreadable (extraction then reports it).
    """
    from . import __version__

    inputs = []
    for role in INPUT_ROLES:
        if row.get(role):
            inputs += _input_digests(role, row[role])
    if row.get("ct") and row.get("roi") and Path(row["roi"]).is_file():
        from .rois import roi_format

        if roi_format(row["roi"]) == "rtstruct":  # rasterised on the CT: its grid decides the voxels
            inputs += _input_digests("ct", row["ct"])
    blob = json.dumps({"row": {k: _plain(row.get(k)) for k in _ROW_FIELDS}, "inputs": inputs,
                       "parameters": parameters, "version": __version__, "code": extraction_code_digest(),
                       "part_format": PART_FORMAT},
                      sort_keys=True, default=str)
    return hashlib.blake2b(blob.encode(), digest_size=16).hexdigest()


#: The modules whose code decides a patient's feature row (a change to any of them invalidates parts).
EXTRACTION_MODULES = ("io", "dicom_image", "nm", "geometry", "rois", "slicer", "dicom_seg", "rtstruct", "voi",
                      "segment", "shape", "features")

#: Version of the part-file layout (written and read here); part of every key.
PART_FORMAT = 1


@functools.lru_cache(maxsize=1)
def extraction_code_digest() -> str:
    """BLAKE2b of the source of :data:`EXTRACTION_MODULES`: cached results never outlive the code."""
    h = hashlib.blake2b(digest_size=16)
    here = Path(__file__).resolve().parent
    for name in EXTRACTION_MODULES:
        h.update(name.encode() + b"\0" + (here / f"{name}.py").read_bytes())
    return h.hexdigest()


def part_name(patient_id: str, key: str) -> str:
    """File name of a patient's part: ``<patient>-<key>.csv`` (unsafe characters replaced)."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", str(patient_id))[:80]
    return f"{safe}-{key}.csv"


def _record_csv(record: Mapping) -> str:
    """One record as a two-line CSV, cells formatted exactly as the assembled table formats them."""
    return csv_text(pd.DataFrame([record]))


def extract_part(
    row: Mapping,
    *,
    base: str,
    parts_dir: str | None,
    parameters: Mapping,
    dicom: str | None = None,
) -> dict:
    """Extract one patient and store the result as its part file; reuse the part when it exists.

    This is the unit of work of a batch, in this process or on a Dask worker (it takes and
    returns plain data).

    Parameters
    ----------
    row : mapping
        Manifest row with absolute paths.
    base : str
        The manifest's folder (QC file names are written relative to it).
    parts_dir : str or None
        Folder of part files; None keeps the result in memory only.
    parameters : mapping
        ``mtv_method``, ``mtv_params``, ``native_shape`` (as :func:`extract_patient` takes them).
    dicom : str, optional
        Folder of DICOM results: the patient's ``seg.dcm`` and ``sr.dcm`` are written into
        ``dicom/<patient_id>/`` (:func:`mibgkit.dicom_out.write_dicom_results`). A patient whose part
        exists but whose DICOM files do not is measured again. A failure to write them makes the
        outcome an error (QC table) while the features part is kept, so a re-run writes them.

    Returns
    -------
    dict
        ``patient_id``, ``status`` (``ok``, ``warning``, ``error``), ``cached`` (the part existed),
        ``seconds`` (time spent here), ``part`` (path of the part file, or None) and ``record``
        (the CSV text of the result when it has no part file: no parts folder, an input that could
        not be read for the key, or an unexpected error, which a re-run retries).
    """
    t0 = time.perf_counter()
    pid = str(row["patient_id"])
    try:
        key = patient_key(row, parameters)
    except OSError:
        key = None  # a missing or unreadable input: extraction names it, nothing is cached
    part = Path(parts_dir) / part_name(pid, key) if parts_dir and key else None
    dicom_dir = dicom_folder_for(dicom, pid) if dicom else None
    if part is not None and part.is_file():
        with open(part, newline="", encoding="utf-8") as fh:
            status = dict(zip(*csv.reader(fh)))["qc_status"]
        if dicom_dir is None or status == "error" or _dicom_written(dicom_dir):
            return {"patient_id": pid, "status": status, "cached": True, "seconds": time.perf_counter() - t0,
                    "part": str(part), "record": None}
    base_path = Path(base)
    keep = True
    masks: dict | None = None if dicom_dir is None else {}
    try:
        feat = extract_patient(row, mtv_method=parameters["mtv_method"], mtv_params=parameters["mtv_params"],
                               native_shape=parameters["native_shape"], masks=masks)
        w = _without_base(feat.get("qc_warnings", ""), base_path)
        feat["qc_warnings"] = w
        qc = {"status": "warning" if w else "ok", "error_type": "", "file": "", "message": w}
    except MibgkitError as e:
        feat = {"patient_id": pid}
        qc = {"status": "error", "error_type": type(e).__name__, "file": _relative(e.path, base_path),
              "message": _without_base(e.reason, base_path)}
    except Exception as e:  # a bug or an environment fault: record it, carry on, retry on a re-run
        keep = False
        feat = {"patient_id": pid}
        qc = _unexpected(e, base_path)
    record = {"patient_id": pid, **{_PART_QC[k]: v for k, v in qc.items()},
              **{k: v for k, v in feat.items() if k != "patient_id"}}
    text = _record_csv(record)
    stored = part is not None and keep
    if stored:
        write_text(part, text)
    outcome = {"patient_id": pid, "status": qc["status"], "cached": False, "seconds": 0.0,
               "part": str(part) if stored else None, "record": None if stored else text}
    if dicom_dir is not None and qc["status"] != "error":
        outcome.update(_write_dicom(row, masks, feat, dicom_dir, base_path))
    outcome["seconds"] = time.perf_counter() - t0
    return outcome


def dicom_folder_for(dicom: str | os.PathLike, patient_id: str) -> Path:
    """Where a patient's DICOM results go: ``dicom/<patient_id>/`` (unsafe characters replaced)."""
    return Path(dicom) / re.sub(r"[^A-Za-z0-9._-]", "_", str(patient_id))[:80]


def _dicom_written(folder: Path) -> bool:
    from .dicom_out import SEG_FILE, SR_FILE

    return (folder / SEG_FILE).is_file() and (folder / SR_FILE).is_file()


def _write_dicom(row: Mapping, masks: dict, feat: Mapping, folder: Path, base: Path) -> dict:
    """Write one patient's SEG and SR; ``{}`` on success, else the error outcome (QC cells, no features)."""
    from .dicom_out import write_dicom_results

    pid = str(row["patient_id"])
    try:
        write_dicom_results(row["spect"], masks, feat, folder, patient_id=pid)
        return {}
    except MibgkitError as e:
        where = Path(e.path) if e.path else folder
        try:
            shown = where.resolve().relative_to(folder.parent.parent.resolve()).as_posix()
        except ValueError:
            shown = _relative(e.path, base)
        qc = {"status": "error", "error_type": type(e).__name__, "file": shown,
              "message": _without_base(f"DICOM output: {e.reason}", base)}
    except Exception as e:  # a bug or an environment fault: record it, carry on
        qc = _unexpected(e, base)
        qc["message"] = f"DICOM output: {qc['message']}"
    record = {"patient_id": pid, **{_PART_QC[k]: v for k, v in qc.items()}}
    return {"status": "error", "part": None, "record": _record_csv(record)}


def _without_base(text: str, base: Path) -> str:
    """``text`` with the manifest folder's absolute path removed (QC tables show relative paths)."""
    return text.replace(str(base) + os.sep, "").replace(str(base), ".") if text else text


def _unexpected(exc: BaseException, base: Path) -> dict:
    """QC cells for a failure that is not a :class:`MibgkitError` (never cached: a re-run retries)."""
    message = _without_base(f"{type(exc).__name__}: {exc}", base)
    return {"status": "error", "error_type": "UnexpectedError", "file": "", "message": message}


def failed_part(row: Mapping, exc: BaseException, *, base: str) -> dict:
    """The outcome of a patient whose task failed outside :func:`extract_part` (a worker died)."""
    pid = str(row["patient_id"])
    qc = _unexpected(exc, Path(base))
    record = {"patient_id": pid, **{_PART_QC[k]: v for k, v in qc.items()}}
    return {"patient_id": pid, "status": "error", "cached": False, "seconds": 0.0, "part": None,
            "record": _record_csv(record)}


# --------------------------------------------------------------------------------------------
# a cohort: run every patient, assemble the tables
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Extraction:
    """A finished batch: the assembled tables as CSV text, and what happened per patient.

    ``features_csv`` and ``qc_csv`` are exactly the bytes ``mibgkit extract`` writes; ``outcomes``
    holds one dict per patient in manifest order (see :func:`extract_part`).
    """

    features_csv: str
    qc_csv: str
    outcomes: list

    def tables(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """``(features, qc)`` as :func:`read_features` reads them from disk."""
        return _parse_tables(io.StringIO(self.features_csv), io.StringIO(self.qc_csv))

    @property
    def n_errors(self) -> int:
        return sum(o["status"] == "error" for o in self.outcomes)

    @property
    def n_cached(self) -> int:
        return sum(bool(o["cached"]) for o in self.outcomes)


def _read_record(outcome: Mapping) -> dict[str, str]:
    if outcome["part"] is not None:
        with open(outcome["part"], newline="", encoding="utf-8") as fh:
            header, values = list(csv.reader(fh))
    else:
        header, values = list(csv.reader(io.StringIO(outcome["record"])))
    return dict(zip(header, values))


def assemble(outcomes: Iterable[Mapping]) -> tuple[str, str]:
    """Features and QC tables (CSV text) from per-patient outcomes, in the order given.

    Cells are copied as their part files hold them (full-precision floats), so the tables do not
    depend on which process computed a patient, nor on whether it was computed in this run.
    """
    features, qc = [], []
    for outcome in outcomes:
        record = _read_record(outcome)
        q = {"patient_id": record["patient_id"], **{k: record.pop(v) for k, v in _PART_QC.items()}}
        qc.append(q)
        if q["status"] != "error":
            features.append(record)
    lead = ["patient_id", *FEATURE_COLUMNS]
    f = pd.DataFrame(features, dtype=object) if features else pd.DataFrame(columns=lead)
    f = f[lead + [c for c in f.columns if c not in lead]]
    return csv_text(f), csv_text(pd.DataFrame(qc, columns=QC_COLUMNS))


def extract(
    manifest: pd.DataFrame,
    output: str | os.PathLike | None = None,
    *,
    parts_dir: str | os.PathLike | None = None,
    mtv_method: str = "roi",
    mtv_params: Mapping | None = None,
    native_shape: bool = True,
    progress: bool = True,
    workers: int | None = None,
    scheduler: str | None = None,
    lock_wait_s: float = 10.0,
    dicom: str | os.PathLike | None = None,
) -> Extraction:
    """Extract every patient of a validated manifest: the one entry point of batch extraction.

    Parameters
    ----------
    manifest : DataFrame
        From :func:`mibgkit.manifest.read_manifest` (absolute paths, ``attrs["manifest"]``).
    output : path, optional
        Features CSV to write; its QC table goes beside it (:func:`qc_path_for`) and, unless
        ``parts_dir`` says otherwise, the per-patient parts into :func:`parts_dir_for` ``(output)``.
        Both tables are written atomically once every patient is done. None: nothing is written
        but the parts.
    parts_dir : path, optional
        Folder of the part files (created). Patients whose part exists for the same inputs and
        parameters are not computed again. None (and no ``output``): nothing is written, nothing
        reused. A run owns this folder while it runs (temporaries left by a killed run are removed).
    mtv_method, mtv_params, native_shape
        As :func:`mibgkit.features.extract_patient` takes them.
    progress : bool
        Show a progress bar (patients/s and time left).
    workers : int, optional
        Run on a local Dask cluster of this many single-threaded worker processes.
    scheduler : str, optional
        Run on the existing Dask cluster at this address (``tcp://host:8786``); its workers must
        see the input files at the manifest's paths and the parts folder at ``parts_dir``.
    lock_wait_s : float
        A run holds the parts folder (:func:`mibgkit.outputs.exclusive`); a second run on the same
        folder waits this long for it, then stops with an :class:`~mibgkit.errors.OutputError`.
    dicom : path, optional
        Also write each measured patient's DICOM SEG and SR (:mod:`mibgkit.dicom_out`) into ``dicom/<patient_id>/``
        (``seg.dcm``, ``sr.dcm``; :func:`mibgkit.dicom_out.write_dicom_results`). Patients whose
        files are missing are measured even when their part exists; a patient whose files cannot be
        written is an error in the QC table and the batch goes on. A folder that cannot be created is
        an :class:`~mibgkit.errors.OutputError` before any patient runs.

    Returns
    -------
    Extraction
        The assembled tables (in manifest order; :meth:`Extraction.tables` parses them) and the
        per-patient outcomes.
    """
    segment.check_mtv(mtv_method, (mtv_params or {}).get("fraction"))
    if output is not None and parts_dir is None:
        parts_dir = parts_dir_for(output)
    if dicom is not None:
        try:
            Path(dicom).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create the DICOM output folder ({exc.strerror or type(exc).__name__})",
                              path=dicom) from None
    lock = nullcontext() if parts_dir is None else exclusive(
        parts_dir, what="extraction", wait_s=lock_wait_s, lock=lock_path_for(parts_dir))
    with lock:
        run = _extract(manifest, parts_dir, mtv_method=mtv_method, mtv_params=mtv_params, native_shape=native_shape,
                       progress=progress, workers=workers, scheduler=scheduler, dicom=dicom)
        if output is not None:
            write_text(output, run.features_csv)
            write_text(qc_path_for(output), run.qc_csv)
    return run


def _extract(manifest, parts_dir, *, mtv_method, mtv_params, native_shape, progress, workers, scheduler,
             dicom=None) -> Extraction:
    base = Path(manifest.attrs.get("manifest", ".")).resolve().parent
    parameters = {"mtv_method": mtv_method, "mtv_params": dict(mtv_params or {}), "native_shape": bool(native_shape)}
    if parts_dir is not None:
        Path(parts_dir).mkdir(parents=True, exist_ok=True)
        parts_dir = str(Path(parts_dir).resolve())
        for stale in Path(parts_dir).glob(".*.part"):  # temporaries of a run that was killed mid-write
            stale.unlink(missing_ok=True)
    rows = [row.to_dict() for _, row in manifest.iterrows()]
    task = {"base": str(base), "parts_dir": parts_dir, "parameters": parameters,
            "dicom": None if dicom is None else str(Path(dicom).resolve())}
    bar = tqdm(total=len(rows), desc="extract", unit="patient", disable=not progress, smoothing=0.1)
    done: dict[str, dict] = {}
    try:
        if workers is None and scheduler is None:
            results = (extract_part(row, **task) for row in rows)
        else:
            from .cluster import map_unordered

            results = map_unordered(extract_part, rows, task, workers=workers, scheduler=scheduler,
                                    on_error=lambda row, exc: failed_part(row, exc, base=str(base)))
        for outcome in results:
            done[outcome["patient_id"]] = outcome
            bar.update(1)
            errors = sum(o["status"] == "error" for o in done.values())
            if errors:
                bar.set_postfix(errors=errors, refresh=False)
    finally:
        bar.close()
    outcomes = [done[str(row["patient_id"])] for row in rows]
    return Extraction(*assemble(outcomes), outcomes)


def lock_path_for(parts_dir: str | os.PathLike) -> Path:
    """The lock a run holds on a parts folder: ``.features.parts.lock`` beside it (the folder holds parts only)."""
    p = Path(parts_dir)
    return p.with_name(f".{p.name}.lock")


def parts_dir_for(features_path: str | os.PathLike) -> Path:
    """Where the part files of a features file go: ``features.csv`` → ``features.parts/``."""
    p = Path(features_path)
    return p.with_name(p.stem + ".parts")


def qc_path_for(features_path: str | os.PathLike) -> Path:
    """Where the QC table of a features file goes: ``features.csv`` → ``features_qc.csv``."""
    p = Path(features_path)
    return p.with_name(p.stem + "_qc" + p.suffix)


def extraction_inputs(manifest: pd.DataFrame) -> list[str]:
    """The files extraction reads: manifest, and SPECT, ROI, markups and organs of every patient."""
    files = [manifest.attrs.get("manifest")]
    for col in INPUT_ROLES:
        if col in manifest:
            files.extend(p for p in manifest[col] if p)
    return [f for f in files if f]


def _parse_tables(features_file, qc_file) -> tuple[pd.DataFrame, pd.DataFrame]:
    features = pd.read_csv(features_file, dtype={"patient_id": str}, keep_default_na=False, na_values=[""],
                           float_precision="round_trip")
    qc = pd.read_csv(qc_file, dtype=str, keep_default_na=False)
    features = features.set_index("patient_id", drop=False).rename_axis(None)
    if "qc_warnings" in features:
        features["qc_warnings"] = features["qc_warnings"].fillna("")
    return features, qc


def read_features(path: str | os.PathLike) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A features table written by ``mibgkit extract`` and its QC table beside it."""
    return _parse_tables(Path(path), qc_path_for(path))

"""Provenance of a run: what produced a table or report, so a reader can reproduce it.

Paths are shown relative to a base folder (the manifest's), never as the machine's layout;
inputs are identified by SHA-256.
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Iterable, Mapping

import pandas as pd

from . import __version__

#: Packages whose versions every report lists.
PACKAGES = ("numpy", "scipy", "pandas", "SimpleITK", "scikit-image", "pydicom", "slicerio", "lifelines",
            "statsmodels", "matplotlib", "seaborn", "papermill", "nbconvert")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def files_under(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """The files named, with folders expanded recursively, sorted and without duplicates."""
    out: set[Path] = set()
    for p in paths:
        if p is None:
            continue
        p = Path(p)
        if p.is_dir():
            out.update(q for q in p.rglob("*") if q.is_file())
        elif p.is_file():
            out.add(p)
    return sorted(out)


def inputs_digest(paths: Iterable[str | os.PathLike], base: str | os.PathLike) -> tuple[str, pd.DataFrame]:
    """One SHA-256 over all input files (their relative names and bytes), and the per-file table."""
    base = Path(base).resolve()
    rows = []
    for f in files_under(paths):
        rows.append({"file": relative_name(f, base), "bytes": f.stat().st_size, "sha256": sha256_file(f)})
    table = pd.DataFrame(rows, columns=["file", "bytes", "sha256"])
    h = hashlib.sha256()
    for r in rows:
        h.update(f"{r['file']}\0{r['sha256']}\n".encode())
    return h.hexdigest(), table


def relative_name(path: str | os.PathLike, base: str | os.PathLike) -> str:
    """``path`` relative to ``base`` (POSIX form); just the file name when it lies elsewhere."""
    p = Path(path).resolve()
    try:
        return p.relative_to(Path(base).resolve()).as_posix()
    except ValueError:
        return p.name


def git_commit(start: str | os.PathLike | None = None) -> str:
    """The commit of the mibgkit checkout (with ``+dirty`` when it has changes), or ``"unknown"``."""
    where = Path(start or Path(__file__).resolve().parent)
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=where, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_versions(packages: Iterable[str] = PACKAGES) -> dict[str, str]:
    out = {"python": platform.python_version(), "mibgkit": __version__}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def provenance_table(
    parameters: Mapping | None = None,
    *,
    inputs: Iterable[str | os.PathLike] = (),
    base: str | os.PathLike = ".",
    started: datetime | None = None,
) -> pd.DataFrame:
    """A two-column table (item, value) for the foot of a report.

    ``parameters`` values that are paths are shown relative to ``base``. ``inputs`` (files or
    folders) are summarised by a single digest and a file count.
    """
    rows = [("mibgkit version", __version__), ("mibgkit commit", git_commit())]
    hashed = []
    for k, v in (parameters or {}).items():
        if isinstance(v, (str, os.PathLike)) and (os.sep in str(v) or "/" in str(v)):
            if Path(v).is_file():
                hashed.append((f"SHA-256 of {relative_name(v, base)}", sha256_file(v)))
            v = relative_name(v, base)
        rows.append((f"parameter: {k}", "" if v is None else str(v)))
    rows.extend(hashed)
    inputs = list(inputs)
    if inputs:
        digest, table = inputs_digest(inputs, base)
        rows.append(("input files", f"{len(table)} files, {table['bytes'].sum() / 1e6:.1f} MB"))
        rows.append(("input digest (SHA-256)", digest))
    for k, v in package_versions().items():
        rows.append((f"version: {k}", v))
    now = datetime.now(timezone.utc)
    rows.append(("run at (UTC)", now.strftime("%Y-%m-%d %H:%M:%S")))
    if started is not None:
        rows.append(("run time (s)", f"{(now - started).total_seconds():.1f}"))
    return pd.DataFrame(rows, columns=["item", "value"])

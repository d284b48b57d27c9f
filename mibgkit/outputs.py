"""Writing outputs: atomically, with ordinary file modes, inert in spreadsheets, one run at a time.

- **Atomic.** Each writer writes to a temporary file in the destination folder and renames it over
  the destination (``os.replace`` is atomic within one file system): a reader never sees a
  half-written file, and a failed write (full disk, no permission) leaves the previous file as it was.
- **Ordinary modes.** The result has the mode ``open()`` would give a new file (``0666`` less the
  umask, 0644 under umask 022); a file that existed keeps its mode. (A temporary file is created
  0600, so the mode is set explicitly.)
- **Inert CSV.** No text cell of a CSV that mibgkit writes starts with ``=``, ``+``, ``-``, ``@``
  (or a tab or carriage return) unless it is a number: such a cell gets a leading ``'`` so that a
  spreadsheet shows it as text instead of evaluating it (OWASP "CSV injection").
- **One run at a time.** :func:`exclusive` holds a lock file in an output folder; a second run on
  the same folder waits for it, or stops with a message naming the other run.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from .errors import OutputError

__all__ = ["atomic_path", "write_text", "write_bytes", "write_csv", "csv_text", "csv_safe", "exclusive"]

_UMASK_LOCK = threading.Lock()
_FORMULA = re.compile(r"^[=+\-@\t\r]")
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$|^[+-]?(inf|nan)$", re.IGNORECASE)


def _new_file_mode() -> int:
    """The mode ``open()`` gives a new file under the process's umask."""
    with _UMASK_LOCK:
        mask = os.umask(0)
        os.umask(mask)
    return 0o666 & ~mask


def _why(exc: OSError) -> str:
    return {errno.ENOSPC: "the disk is full", errno.EACCES: "permission denied",
            errno.EROFS: "the file system is read-only", errno.EDQUOT: "the disk quota is exceeded"}.get(
        exc.errno, exc.strerror or type(exc).__name__)


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on error it is removed.

    Raises
    ------
    OutputError
        The folder cannot be created or written, or the disk is full; ``path`` is unchanged.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise OutputError(f"cannot write here ({_why(exc)})", path=path) from None
    try:
        yield Path(tmp)
        mode = path.stat().st_mode & 0o7777 if path.exists() else _new_file_mode()
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise OutputError(f"cannot write ({_why(exc)}); the previous version, if any, is unchanged",
                          path=path) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def csv_safe(value):
    """A cell as a CSV mibgkit writes holds it: text that a spreadsheet would run as a formula gets
    a leading ``'``; numbers (also negative ones, as text) are left as they are.

    >>> csv_safe("=HYPERLINK(1)"), csv_safe("-0.25"), csv_safe("-x"), csv_safe(-3)
    ("'=HYPERLINK(1)", '-0.25', "'-x", -3)
    """
    if isinstance(value, str) and _FORMULA.match(value) and not _NUMBER.match(value.strip()):
        return "'" + value
    return value


def csv_text(df: pd.DataFrame, *, index: bool = False) -> str:
    """A table as CSV text: floats in full precision (``repr``), ``\\n`` line ends, cells made inert
    (:func:`csv_safe`, also the header and the index), so re-runs give identical bytes."""
    out = df.copy()
    for col in out.columns:
        if out[col].dtype == object:
            out[col] = out[col].map(csv_safe)
    out.columns = [csv_safe(c) if isinstance(c, str) else c for c in out.columns]
    if index and out.index.dtype == object:
        out.index = out.index.map(csv_safe)
    return out.to_csv(index=index, lineterminator="\n")


def write_csv(path: str | os.PathLike, df: pd.DataFrame, *, index: bool = False) -> None:
    """Write a table atomically as :func:`csv_text` gives it."""
    write_text(path, csv_text(df, index=index))


@contextmanager
def exclusive(folder: str | os.PathLike, *, what: str = "run", wait_s: float = 0.0, poll_s: float = 0.5,
              lock: str | os.PathLike | None = None):
    """Hold the lock of an output folder for the duration of a block.

    A second run on the same folder (another terminal, a notebook beside the command line) waits up
    to ``wait_s`` seconds for the first to finish, then stops with an :class:`OutputError` naming
    the other run's process ID. The lock is the file ``lock`` (default ``folder/.mibgkit.lock``),
    held with POSIX ``flock`` and so released when the process ends, however it ends.
    """
    folder = Path(folder)
    lock = folder / ".mibgkit.lock" if lock is None else Path(lock)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock.parent.mkdir(parents=True, exist_ok=True)
        handle = open(lock, "a+")
    except OSError as exc:
        raise OutputError(f"cannot write here ({_why(exc)})", path=folder) from None
    deadline = time.monotonic() + wait_s
    try:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    handle.seek(0)
                    other = handle.read().strip() or "unknown"
                    raise OutputError(f"another mibgkit {what} (process {other}) is writing to this folder; "
                                      "wait for it to finish, or choose another output folder", path=folder) from None
                time.sleep(poll_s)
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        handle.close()

"""The exceptions mibgkit raises.

Every error names what the user has to fix: the patient (a manifest ``patient_id``,
never a DICOM identity), the file, and what is wrong with it.

Hierarchy::

    MibgkitError
    ├── InputError          a file or table cannot be read or is not what it claims
    │   └── ManifestError   data_manifest.csv / clinical table violates its schema
    ├── GeometryError       images, masks or points do not line up in physical space
    ├── SegmentationError   an ROI/MTV is empty, missing, ambiguous or unusable
    ├── StatisticsError     a statistical method cannot be applied to the data
    ├── ParameterError      a run's parameter is outside what it can be (also a ValueError)
    └── OutputError         an output cannot be written (full disk, no permission, another run)
"""

from __future__ import annotations

import os


class MibgkitError(Exception):
    """Base class. ``patient`` and ``path`` are kept as attributes for QC tables."""

    def __init__(self, message: str, *, patient: str | None = None, path: str | os.PathLike | None = None):
        self.reason = message
        self.patient = patient
        self.path = None if path is None else os.fspath(path)
        super().__init__(self._compose())

    def _compose(self) -> str:
        where = []
        if self.patient is not None:
            where.append(f"patient {self.patient}")
        if self.path is not None:
            where.append(f"file {self.path}")
        return f"{', '.join(where)}: {self.reason}" if where else self.reason

    def for_patient(self, patient: str) -> "MibgkitError":
        """Return the same error, attributed to ``patient`` (used by batch extraction)."""
        if self.patient is None:
            self.patient = patient
            self.args = (self._compose(),)
        return self


class InputError(MibgkitError):
    """A file or table cannot be read, or its content is not what it should be."""


class ManifestError(InputError):
    """The manifest or clinical table does not follow its documented schema."""


class GeometryError(MibgkitError):
    """Images, masks or points do not line up in physical space (mm, LPS)."""


class SegmentationError(MibgkitError):
    """An ROI or MTV mask is empty, missing, ambiguous or otherwise unusable."""


class StatisticsError(MibgkitError):
    """A statistical method cannot be applied to the data as given."""


class ParameterError(MibgkitError, ValueError):
    """A parameter of a run (an MTV method, a threshold fraction...) is outside what it can be:
    checked before any patient is measured."""


class OutputError(MibgkitError):
    """An output cannot be written: the disk is full, the folder is not writable, or another run holds it."""


class QCWarning(UserWarning):
    """A measurement was made but needs a look (sphere outside FOV/organ, few events, ...)."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (library messages can run to pages), or its type."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__

"""The tumour ROI, whatever the workstation wrote: one door for masks, as :mod:`mibgkit.io` is for images.

:func:`read_roi` returns a binary ``SimpleITK.Image`` (uint8, 0/1) on the file's own grid, in LPS
mm, from a 3D Slicer segmentation (``.seg.nrrd``) or a labelmap (NIfTI, NRRD, MetaImage), read by
:mod:`mibgkit.slicer`. Everything downstream (resampling onto the SPECT grid, MTV, shape) is the
same whatever the format.
"""

from __future__ import annotations

import os
from typing import Sequence

import pandas as pd
import SimpleITK as sitk

from . import slicer

__all__ = ["read_roi", "list_rois", "segment_names"]


def read_roi(
    path: str | os.PathLike,
    *,
    segment: str | None = None,
    label: int | None = None,
    reference: sitk.Image | None = None,
    patient: str | None = None,
) -> sitk.Image:
    """Read one ROI as a binary mask in LPS.

    Parameters
    ----------
    path : str or os.PathLike
        The ROI file (see the module docstring for the formats).
    segment : str, optional
        Exact segment name.
    label : int, optional
        Label value.
    reference : SimpleITK.Image, optional
        The grid a contour-based format is rasterised on (unused by voxel formats).
    patient : str, optional
        Manifest ``patient_id``, named in errors.

    Returns
    -------
    SimpleITK.Image
        uint8 0/1 mask on the file's grid (or ``reference``'s, for contours).

    Raises
    ------
    InputError, GeometryError, SegmentationError
        As the format's reader raises them; the message names the file and the patient.
    """
    return slicer.read_segmentation(path, segment=segment, label=label, patient=patient)


def list_rois(path: str | os.PathLike, *, patient: str | None = None) -> pd.DataFrame:
    """The ROIs a file holds (one row each: ``name``, ``label_value``, and format-specific columns)."""
    return slicer.list_segments(path, patient=patient)


def segment_names(path: str | os.PathLike, *, patient: str | None = None) -> Sequence[str]:
    """The ROI names a file holds (an empty list for a plain labelmap)."""
    return [n for n in list_rois(path, patient=patient)["name"] if n is not None]

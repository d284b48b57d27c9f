"""The synthetic analyst's tumour ROI as another workstation exports it: a DICOM SEG or an RTSTRUCT.

``mibgkit synth --roi-format seg|rtstruct`` writes the tumour ROI as one of the DICOM objects that
:func:`mibgkit.rois.read_roi` reads (SPEC 6.1) instead of the 3D Slicer ``tumour.seg.nrrd``, so that
the readers can be tested end to end on a whole cohort. This is a writer of test data, not an export
feature of mibgkit (results go back to the clinic through :mod:`mibgkit.dicom_out`).

- :func:`write_roi_seg` — ``tumour_seg.dcm``: a BINARY Segmentation written by highdicom, one segment
  (Segment Label ``tumour``, Segment Number 1), on the lattice of the image the ROI was drawn on: it
  references the CT slices (the ROI drawn on the CT, 80 % of the synthetic patients) or the SPECT
  (the NM multi-frame file, or every file of a single-frame series; frames positioned by the NM rule,
  as :mod:`mibgkit.dicom_out` does). Frames are the slices that hold the ROI. The voxels are the
  ``.seg.nrrd``'s, so features from it equal the ``.seg.nrrd``'s exactly.
- :func:`write_roi_rtstruct` — ``tumour_rtstruct.dcm``: an RT Structure Set (written with pydicom;
  highdicom has no RTSTRUCT writer) with one ROI (ROI Name ``tumour``, ROI Number 1, RT ROI
  Interpreted Type ``GTV``) of ``CLOSED_PLANAR`` contours, one set per CT slice.

How the contours are computed, and why
--------------------------------------
A workstation contours what the analyst painted, slice by slice, on the image it was painted on.
The contours here are traced from the voxel mask on each slice with
:func:`skimage.measure.find_contours` at level 0.5 (the mask zero-padded by one voxel, so every
contour closes), i.e. through the midpoints between voxel centres inside and outside: every voxel
centre of the mask is inside its slice's polygons (even–odd: holes come out as inner contours) and
every other centre outside, at least ``0.5 / √2`` voxel from a line. Rasterised back on the same
grid by :mod:`mibgkit.rtstruct`'s rule (nearest slice, centre inside, even–odd) the contours give the
mask's voxels exactly; points are converted from ``(row, column)`` to LPS mm through the image's
affine and written to 0.0001 mm, far below that margin. The polygon has no more detail than the
voxels (a staircase): that *is* the ROI as drawn.

Which grid the contours lie on: the reader rasterises a manifest's RTSTRUCT on the ``ct`` when its
Frame of Reference UID is the structure set's, else on the SPECT (:func:`mibgkit.rois.rtstruct_reference`,
SPEC 6.1). The synthetic CT and SPECT of a patient share one Frame of Reference (one SPECT/CT
study), so the reader always takes the CT; the contours are therefore always on the CT slices, and
the structure set names that Frame of Reference. An ROI drawn on the SPECT grid (20 % of the
patients) is first resampled onto the CT grid, nearest neighbour (:func:`mibgkit.geometry.roi_on_grid`,
as a workstation resamples a SPECT-drawn ROI for a CT-based structure set), then contoured on the CT
slices. Its features then differ from the ``.seg.nrrd``'s by that resampling (SPECT → CT → SPECT,
5 mm CT slices against 3 mm SPECT slices): the rasterisation's own error, which
``tests/test_roi_formats.py`` measures. Only a CT in another Frame of Reference than the SPECT (not
in the synthetic cohort) gives contours on the SPECT slices, in the SPECT's Frame of Reference.

Determinism: every UID is derived from the source images' UIDs and the mask (``generate_uid`` with
entropy, as the cohort's other UIDs), dates and times are the source's, so the same cohort is
written byte for byte again.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian

from .. import io
from ..errors import GeometryError
from ..geometry import index_to_lps, lps_to_index, roi_on_grid

__all__ = ["ROI_FORMATS", "ROI_FILES", "ROI_NAME", "write_roi_seg", "write_roi_rtstruct", "write_tumour_roi"]

#: ``--roi-format`` choices (``nrrd``: the 3D Slicer ``tumour.seg.nrrd``, the default).
ROI_FORMATS = ("nrrd", "seg", "rtstruct")

#: File name of the tumour ROI per format.
ROI_FILES = {"nrrd": "tumour.seg.nrrd", "seg": "tumour_seg.dcm", "rtstruct": "tumour_rtstruct.dcm"}

#: Segment Label / ROI Name of the tumour.
ROI_NAME = "tumour"

RTSTRUCT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"
_SEG_SERIES_NUMBER, _RTSTRUCT_SERIES_NUMBER = 300, 301
_COPIED = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientAge", "PatientWeight",
           "StudyInstanceUID", "StudyDate", "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName",
           "StudyDescription", "InstitutionName")


# --------------------------------------------------------------------------------------------
# sources
# --------------------------------------------------------------------------------------------


def _headers(path) -> list[Dataset]:
    """The DICOM headers of an image: the file, or the files of a series folder in name order."""
    p = Path(path)
    files = sorted(q for q in p.iterdir() if q.is_file()) if p.is_dir() else [p]
    return [pydicom.dcmread(f, stop_before_pixels=True) for f in files]


def _on_lattice(mask: sitk.Image, image: sitk.Image) -> np.ndarray | None:
    """``mask`` placed into ``image``'s full grid (bool ``[k, j, i]``), or None when it is not on its lattice."""
    from ..dicom_out import _on_grid

    try:
        return _on_grid(mask, image, ROI_NAME, None)
    except GeometryError:
        return None


def _slice_of(image: sitk.Image, headers: list[Dataset]) -> dict[int, Dataset]:
    """Slice index ``k`` of ``image`` → the single-frame header lying on it."""
    out = {}
    for ds in headers:
        k = lps_to_index(image, [[float(v) for v in ds.ImagePositionPatient]])[0, 2]
        out[int(round(k))] = ds
    return out


def _uid(*parts) -> str:
    from ..dicom_out import _uid as derived

    return derived("synthetic ROI", *parts)


def _digest(mask: np.ndarray) -> str:
    return hashlib.blake2b(np.packbits(mask).tobytes() + str(mask.shape).encode(), digest_size=16).hexdigest()


# --------------------------------------------------------------------------------------------
# DICOM SEG
# --------------------------------------------------------------------------------------------


def write_roi_seg(path: str | os.PathLike, mask: sitk.Image, source: str | os.PathLike) -> Path:
    """Write ``mask`` as a BINARY DICOM SEG (segment ``tumour``) referencing ``source``.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write.
    mask : SimpleITK.Image
        0/1 mask on (a box of) the lattice of ``source``.
    source : str or os.PathLike
        The image the ROI was drawn on: a CT series folder, an NM multi-frame file or a folder of
        single-frame NM files.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    GeometryError
        ``mask`` is not on ``source``'s lattice.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    from ..dicom_out import (_encoded, _fix_clock_and_uids, _highdicom_sources, _plane_geometry,
                             _reference_slices, _when)

    image = io.load_image(source)
    full = _on_lattice(mask, image)
    if full is None:
        raise GeometryError("the ROI is not on the lattice of the image it references", path=source)
    headers = _headers(source)
    sop_uid = _uid("SEG", *(ds.SOPInstanceUID for ds in headers), _digest(full))
    description = hd.seg.SegmentDescription(
        segment_number=1, segment_label=ROI_NAME, segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Neoplasm, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
        tracking_uid=_uid(sop_uid, "segment"), tracking_id=ROI_NAME)
    date, time = _when(headers[0])
    common = dict(segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=[description],
                  series_instance_uid=_uid(sop_uid, "series"), series_number=_SEG_SERIES_NUMBER,
                  sop_instance_uid=sop_uid, instance_number=1, manufacturer="mibgkit synth",
                  manufacturer_model_name="synthetic analyst", software_versions="1", device_serial_number="none",
                  series_description="Tumour ROI", content_label="TUMOUR", content_description="Tumour ROI as drawn",
                  content_date=date, content_time=time, series_date=date, series_time=time)
    if str(headers[0].Modality) == "CT":  # single-frame CT slices: highdicom references each itself
        by_k = _slice_of(image, headers)
        order = sorted(by_k)
        seg = hd.seg.Segmentation(source_images=[by_k[k] for k in order],
                                  pixel_array=full[order].astype(np.uint8), **common)
    else:  # NM: frames placed by the NM rule, as mibgkit.dicom_out writes its SEG
        slices = np.flatnonzero(full.any(axis=(1, 2)))
        positions, orientation, measures = _plane_geometry(image, slices)
        seg = hd.seg.Segmentation(source_images=_highdicom_sources(headers, image, None, source),
                                  pixel_array=full[slices].astype(np.uint8), plane_positions=positions,
                                  plane_orientation=orientation, pixel_measures=measures, **common)
        if len(headers) > 1:
            _reference_slices(seg, headers)
    _fix_clock_and_uids(seg, sop_uid)
    path = Path(path)
    path.write_bytes(_encoded(seg))
    return path


# --------------------------------------------------------------------------------------------
# RTSTRUCT
# --------------------------------------------------------------------------------------------


def _ds_text(v: float) -> str:
    text = f"{float(v):.4f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def slice_contours(mask_kji: np.ndarray, image: sitk.Image) -> dict[int, list[np.ndarray]]:
    """Closed contours (n × 3, LPS mm, not repeating the first point) of a mask, per slice ``k``.

    Traced with :func:`skimage.measure.find_contours` at level 0.5 on each slice, zero-padded by one
    voxel (module notes: the polygons pass midway between inside and outside voxel centres).
    """
    from skimage.measure import find_contours

    a, o = index_to_lps(image)
    out: dict[int, list[np.ndarray]] = {}
    for k in np.flatnonzero(mask_kji.any(axis=(1, 2))):
        plane = np.pad(mask_kji[k].astype(float), 1)
        polygons = []
        for rc in find_contours(plane, 0.5):
            if len(rc) > 1 and np.allclose(rc[0], rc[-1]):
                rc = rc[:-1]
            ijk = np.column_stack([rc[:, 1] - 1.0, rc[:, 0] - 1.0, np.full(len(rc), float(k))])
            polygons.append(ijk @ a.T + o)
        out[int(k)] = polygons
    return out


def _item(**values) -> Dataset:
    ds = Dataset()
    for key, value in values.items():
        setattr(ds, key, value)
    return ds


def write_roi_rtstruct(path: str | os.PathLike, mask: sitk.Image, reference: str | os.PathLike) -> Path:
    """Write ``mask`` as an RT Structure Set (ROI ``tumour``) of contours on ``reference``'s slices.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write.
    mask : SimpleITK.Image
        0/1 mask in LPS; resampled nearest neighbour onto ``reference``'s grid when it is not on its
        lattice (module notes).
    reference : str or os.PathLike
        The image whose slices carry the contours (its Frame of Reference is the structure set's):
        a CT series folder (each contour references its CT slice) or an NM SPECT.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    image = io.load_image(reference)
    full = _on_lattice(mask, image)
    if full is None:
        full = sitk.GetArrayFromImage(roi_on_grid(mask, image)) != 0
    headers = _headers(reference)
    first = headers[0]
    by_k = _slice_of(image, headers) if len(headers) > 1 else {}
    contours = slice_contours(full, image)
    sop_uid = _uid("RTSTRUCT", *(ds.SOPInstanceUID for ds in headers), _digest(full))
    date, time = str(first.get("StudyDate", "")), str(first.get("StudyTime", ""))

    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = RTSTRUCT_SOP_CLASS
    ds.SOPInstanceUID = sop_uid
    for keyword in _COPIED:
        if keyword in first:
            setattr(ds, keyword, first.data_element(keyword).value)
    ds.Modality = "RTSTRUCT"
    ds.SeriesInstanceUID = _uid(sop_uid, "series")
    ds.SeriesNumber = _RTSTRUCT_SERIES_NUMBER
    ds.SeriesDescription = "Tumour ROI"
    ds.SeriesDate, ds.SeriesTime = date, time
    ds.Manufacturer = "mibgkit synth"
    ds.ManufacturerModelName = "synthetic analyst"
    ds.SoftwareVersions = "1"
    ds.InstanceNumber = 1
    ds.StructureSetLabel = "TUMOUR"
    ds.StructureSetName = "Tumour ROI"
    ds.StructureSetDate, ds.StructureSetTime = date, time
    for_uid = str(first.FrameOfReferenceUID)
    images = [_item(ReferencedSOPClassUID=h.SOPClassUID, ReferencedSOPInstanceUID=h.SOPInstanceUID) for h in headers]
    series = _item(SeriesInstanceUID=first.SeriesInstanceUID, ContourImageSequence=DicomSequence(images))
    study = _item(ReferencedSOPClassUID="1.2.840.10008.3.1.2.3.1",  # Detached Study Management (retired; as exporters write)
                  ReferencedSOPInstanceUID=first.StudyInstanceUID, RTReferencedSeriesSequence=DicomSequence([series]))
    ds.ReferencedFrameOfReferenceSequence = DicomSequence([
        _item(FrameOfReferenceUID=for_uid, RTReferencedStudySequence=DicomSequence([study]))])
    ds.StructureSetROISequence = DicomSequence([_item(
        ROINumber=1, ReferencedFrameOfReferenceUID=for_uid, ROIName=ROI_NAME, ROIGenerationAlgorithm="MANUAL")])
    items = []
    for k in sorted(contours):
        for points in contours[k]:
            item = Dataset()
            if k in by_k:
                item.ContourImageSequence = DicomSequence([_item(ReferencedSOPClassUID=by_k[k].SOPClassUID,
                                                                 ReferencedSOPInstanceUID=by_k[k].SOPInstanceUID)])
            item.ContourGeometricType = "CLOSED_PLANAR"
            item.NumberOfContourPoints = len(points)
            item.ContourNumber = len(items) + 1
            item.ContourData = [_ds_text(v) for v in points.ravel()]
            items.append(item)
    ds.ROIContourSequence = DicomSequence([_item(ROIDisplayColor=[217, 102, 77], ReferencedROINumber=1,
                                                 ContourSequence=DicomSequence(items))])
    ds.RTROIObservationsSequence = DicomSequence([_item(ObservationNumber=1, ReferencedROINumber=1,
                                                        RTROIInterpretedType="GTV", ROIInterpreter="")])
    ds.ApprovalStatus = "UNAPPROVED"

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = RTSTRUCT_SOP_CLASS
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    path = Path(path)
    ds.save_as(path, enforce_file_format=True)
    return path


# --------------------------------------------------------------------------------------------
# the synthetic patient's ROI
# --------------------------------------------------------------------------------------------


def write_tumour_roi(folder: str | os.PathLike, roi_format: str, mask: sitk.Image, *, spect_path, ct_path) -> str:
    """Write a synthetic patient's tumour ROI as ``roi_format`` (``seg`` or ``rtstruct``) into ``folder``.

    ``mask`` is the analyst's mask on (a box of) the CT or the SPECT lattice. The SEG references
    the image whose lattice the mask is on; the RTSTRUCT's contours lie on the CT slices when the CT
    shares the SPECT's Frame of Reference (always, in the synthetic cohort), else on the SPECT's
    (module notes). Returns the file name written (:data:`ROI_FILES`).
    """
    from ..rois import frame_of_reference_uid

    folder = Path(folder)
    target = folder / ROI_FILES[roi_format]
    if roi_format == "seg":
        ct = io.load_image(ct_path)
        write_roi_seg(target, mask, ct_path if _on_lattice(mask, ct) is not None else spect_path)
    elif roi_format == "rtstruct":
        shared = frame_of_reference_uid(ct_path) == frame_of_reference_uid(spect_path)
        write_roi_rtstruct(target, mask, ct_path if shared else spect_path)
    else:
        raise ValueError(f"roi_format {roi_format!r}: choose one of {ROI_FORMATS[1:]} (nrrd is written by slicer_write)")
    return target.name

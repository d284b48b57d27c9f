"""Results back to the clinic: the measured VOIs as a DICOM SEG, the features as a DICOM SR.

:func:`write_dicom_results` writes, for one patient, ``seg.dcm`` and ``sr.dcm`` into a folder:

- ``seg.dcm`` — a BINARY Segmentation (highdicom ``hd.seg.Segmentation``) on the SPECT grid with the
  segments :data:`SEGMENT_LABELS` (``tumour MTV``, ``liver reference``, ``muscle left reference``,
  ``muscle right reference``), numbered 1..4 in that order (a sphere that was not measured is left out);
- ``sr.dcm`` — a Comprehensive 3D SR (``hd.sr.Comprehensive3DSR``) holding a TID 1500 Measurement
  Report with one TID 1411 Volumetric ROI Measurements group per segment; each group references its
  segment of ``seg.dcm`` and the source SPECT series, and holds that segment's values
  (:data:`MEASUREMENTS`), equal to the cells of FEATURES.csv (the same floats, stored exactly as
  Floating Point Value beside the 16-character Numeric Value).

Both go back to the archive that holds the source SPECT: they carry its patient and study identity
(Patient's Name, Patient ID, Birth Date, Sex, Study Instance UID, Accession Number, ... copied by
highdicom from the source), share its Frame of Reference, and reference its series. They never go into
a report.

Geometry
--------
The SEG's frames are SPECT slices: Plane Orientation = the SPECT's row and column cosines, Pixel
Measures = its pixel spacing and slice spacing (also the Slice Thickness: a SEG voxel is one slice
thick), one Plane Position per SPECT slice that holds any segment (frames of a slice where a segment is
empty are omitted). A mask given on a box of the SPECT lattice (what
:meth:`mibgkit.features.PatientData.measure` returns) is placed into the full grid first. An NM
multi-frame SPECT has no Plane Position Sequence (its geometry is in the Detector Information Sequence
and the Slice Vector, :mod:`mibgkit.nm`), which highdicom needs to relate the SEG to its source: the
source is handed to highdicom as an in-memory view with per-frame Plane Positions computed by the NM
rule, so that each SEG frame references the NM frame it lies on (Derivation Image Sequence,
Referenced Frame Number). The file on disk is never changed.

Codes
-----
Segments: ``tumour MTV`` = Morphologically abnormal structure (SCT 49755003) / Neoplasm (SCT
108369006); the spheres = Tissue (SCT 85756007) / Liver (SCT 10200004) or Skeletal muscle (SCT
127954009) with the laterality (Left SCT 7771000, Right SCT 24028007) as property type modifier. The
tumour is ``MANUAL`` when the MTV is the ROI as drawn (``mtv_method`` ``roi``) and ``SEMIAUTOMATIC``
(algorithm family Histogram Analysis, DCM 123105) for a threshold inside it; the spheres are
``SEMIAUTOMATIC`` (a reader places the centre, mibgkit draws a sphere of fixed volume; family Manual
Processing, DCM 123109). Every segment names the algorithm ``mibgkit`` and its version.

Measurements: uptake values are Nuclear Medicine Tomographic Activity (DCM 110821) with the
derivation Maximum (SCT 56851009) or Mean (SCT 373098007); the MTV is Volume (SCT 118565006) in mL.
Where DICOM has no code, mibgkit's private coding scheme :data:`PRIVATE_SCHEME` (``99MIBGKIT``,
declared in the SR's Coding Scheme Identification Sequence) names the concept: the five ratios,
asphericity, the MTV's method (mesh volume) and the derivation of Mmax and Mmean (the mean of the left
and right muscle spheres' maxima, resp. means). Units are UCUM: the SPECT's unit (``counts`` →
``{counts}``, ``Bq/ml`` → ``Bq/mL``, any other as given), ``mL``, and ``1`` (no units) for ratios
and asphericity. A value that is not a number (an empty cell in FEATURES.csv, e.g. a ratio over a
zero reference) is left out of its group: DICOM cannot encode NaN as a measured value.

Determinism
-----------
SOP Instance, Series Instance, tracking, observer and dimension-organisation UIDs are derived from a
hash of the inputs (source SOP Instance UIDs, the masks' voxels, the values, the mibgkit version) with
:func:`pydicom.uid.generate_uid` (``entropy_srcs``, under pydicom's UID root as the synthetic cohort's
UIDs; with ``prefix=None`` pydicom ignores the entropy and returns a random UUID). Content Date/Time are the source SPECT's Content
Date/Time (else its Series, Acquisition or Study Date/Time); what highdicom takes from the clock
(Instance Creation Date/Time, the Contribution DateTime of its own Contributing Equipment item, all
type 3) is not written. A re-run on the same inputs (and the same pydicom and highdicom) therefore
writes byte-identical files. A source without any date falls back to highdicom's clock.
"""

from __future__ import annotations

import copy
import hashlib
import math
import os
from pathlib import Path
from typing import Mapping

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.misc import is_dicom
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from .errors import GeometryError, InputError, MibgkitError, OutputError, first_line
from .geometry import index_to_lps, lps_to_index
from .outputs import write_bytes

__all__ = ["write_dicom_results", "SEGMENT_LABELS", "MEASUREMENTS", "PRIVATE_SCHEME", "SEG_FILE", "SR_FILE"]

#: File names written into a patient's folder.
SEG_FILE, SR_FILE = "seg.dcm", "sr.dcm"

#: The private coding scheme designator of concepts DICOM has no code for (PS3.16 8.2: "99" prefix).
PRIVATE_SCHEME = "99MIBGKIT"

#: Segment labels, in Segment Number order (1..4).
SEGMENT_LABELS = ("tumour MTV", "liver reference", "muscle left reference", "muscle right reference")

#: Series numbers of the two objects (fixed, so that re-runs write the same bytes).
_SEG_SERIES_NUMBER, _SR_SERIES_NUMBER = 901, 902


def _private(value: str, meaning: str):
    import highdicom as hd

    return hd.sr.CodedConcept(value=value, scheme_designator=PRIVATE_SCHEME, meaning=meaning)


def _segment_codes() -> dict:
    """Segment label → (property category, property type, laterality modifier or None)."""
    return {
        "tumour MTV": (codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.Neoplasm, None),
        "liver reference": (codes.SCT.Tissue, codes.SCT.Liver, None),
        "muscle left reference": (codes.SCT.Tissue, codes.SCT.SkeletalMuscle, codes.SCT.Left),
        "muscle right reference": (codes.SCT.Tissue, codes.SCT.SkeletalMuscle, codes.SCT.Right),
    }


#: Per segment: the FEATURES.csv columns its SR group holds, as (column, concept, derivation, unit),
#: concept/derivation being keys of :func:`_concepts` and unit ``uptake`` (the SPECT's), ``mL`` or ``1``.
MEASUREMENTS = {
    "tumour MTV": (
        ("tmax", "activity", "maximum", "uptake"),
        ("tmean", "activity", "mean", "uptake"),
        ("mtv_ml", "volume", None, "mL"),
        ("asphericity", "asphericity", None, "1"),
        ("tmax_lmax", "tmax_lmax", None, "1"),
        ("tmean_lmean", "tmean_lmean", None, "1"),
        ("tmax_lmean", "tmax_lmean", None, "1"),
        ("tmax_mmax", "tmax_mmax", None, "1"),
        ("tmean_mmean", "tmean_mmean", None, "1"),
        ("mmax", "activity", "muscle_mean_of_maxima", "uptake"),
        ("mmean", "activity", "muscle_mean_of_means", "uptake"),
    ),
    "liver reference": (
        ("lmax", "activity", "maximum", "uptake"),
        ("lmean", "activity", "mean", "uptake"),
    ),
    "muscle left reference": (
        ("muscle_left_max", "activity", "maximum", "uptake"),
        ("muscle_left_mean", "activity", "mean", "uptake"),
    ),
    "muscle right reference": (
        ("muscle_right_max", "activity", "maximum", "uptake"),
        ("muscle_right_mean", "activity", "mean", "uptake"),
    ),
}


def _concepts() -> dict:
    """Concept names, derivations and methods of :data:`MEASUREMENTS`."""
    return {
        "activity": codes.DCM.NuclearMedicineTomographicActivity,
        "maximum": codes.SCT.Maximum,
        "mean": codes.SCT.Mean,
        "volume": codes.SCT.Volume,
        "asphericity": _private("ASPHERICITY", "Asphericity of the MTV surface mesh"),
        "tmax_lmax": _private("TMAX_LMAX", "Tmax/Lmax ratio"),
        "tmean_lmean": _private("TMEAN_LMEAN", "Tmean/Lmean ratio"),
        "tmax_lmean": _private("TMAX_LMEAN", "Tmax/Lmean ratio"),
        "tmax_mmax": _private("TMAX_MMAX", "Tmax/Mmax ratio"),
        "tmean_mmean": _private("TMEAN_MMEAN", "Tmean/Mmean ratio"),
        "muscle_mean_of_maxima": _private("MEAN_OF_MUSCLE_MAXIMA",
                                          "Mean of the left and right muscle sphere maxima"),
        "muscle_mean_of_means": _private("MEAN_OF_MUSCLE_MEANS", "Mean of the left and right muscle sphere means"),
        "mesh_volume": _private("MESH_VOLUME", "Volume enclosed by the surface mesh"),
    }


def _unit(kind: str, uptake_unit: str):
    import highdicom as hd

    if kind == "mL":
        return hd.sr.CodedConcept("mL", "UCUM", "milliliter")
    if kind == "1":
        return hd.sr.CodedConcept("1", "UCUM", "no units")
    unit = str(uptake_unit or "counts")
    if unit == "counts":
        return hd.sr.CodedConcept("{counts}", "UCUM", "Counts")
    if unit.lower() == "bq/ml":
        return hd.sr.CodedConcept("Bq/mL", "UCUM", "becquerel per milliliter")
    return hd.sr.CodedConcept(unit, "UCUM", unit)


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------


def write_dicom_results(
    spect_path: str | os.PathLike,
    masks: Mapping[str, sitk.Image],
    features_row: Mapping | None,
    folder: str | os.PathLike,
    *,
    patient_id: str,
) -> dict[str, Path]:
    """Write one patient's ``seg.dcm`` (the VOIs) and ``sr.dcm`` (the feature values) into ``folder``.

    Parameters
    ----------
    spect_path : path
        The SPECT as the manifest names it: an NM multi-frame file, or a folder of single-frame NM
        files. Its datasets are the SEG's source images and the SR's evidence.
    masks : mapping
        As :meth:`mibgkit.features.PatientData.measure` fills ``masks=``: ``"spect"`` (the SPECT image
        :func:`mibgkit.io.load_image` read from ``spect_path``) and any of :data:`SEGMENT_LABELS`
        (uint8 0/1 images on the SPECT grid or on a box of its lattice).
    features_row : mapping or None
        The patient's feature row as written to FEATURES.csv (its columns of :data:`MEASUREMENTS`,
        ``uptake_unit`` and ``mtv_method``). None writes the SEG only.
    folder : path
        Created if needed; ``seg.dcm`` and ``sr.dcm`` are written atomically (temporary file and
        rename, :mod:`mibgkit.outputs`), after both have been built.
    patient_id : str
        Manifest ``patient_id``, named in errors (the files carry the source's DICOM identity).

    Returns
    -------
    dict
        ``{"seg": path, "sr": path}`` of the files written (no ``"sr"`` without a feature row).

    Raises
    ------
    InputError
        The SPECT is not DICOM, or no segment mask was given.
    GeometryError
        A mask is not on the SPECT lattice (or reaches outside its grid), or the NM file's geometry
        attributes are damaged (:mod:`mibgkit.nm` names the attribute).
    OutputError
        ``folder`` cannot be created or written (no permission, full disk), or highdicom refuses
        to build an object; files already there are left as they were.

    Examples
    --------
    ::

        masks = {}
        row = PatientData.load(manifest_row).measure(masks=masks)
        write_dicom_results(manifest_row["spect"], masks, row, "dicom/NB001", patient_id="NB001")
    """
    spect = masks.get("spect")
    if spect is None:
        raise InputError("no SPECT image among the masks (key 'spect')", patient=patient_id, path=spect_path)
    sources = _source_datasets(spect_path, patient_id)
    segments = {name: _on_grid(masks[name], spect, name, patient_id) for name in SEGMENT_LABELS if name in masks}
    if not any(m.any() for m in segments.values()):
        raise InputError("no segment to write: every mask is missing or empty", patient=patient_id)
    segments = {name: m for name, m in segments.items() if m.any()}
    mtv_method = str((features_row or {}).get("mtv_method") or "roi")
    folder = Path(folder)
    try:
        seg = _segmentation(sources, spect, segments, mtv_method=mtv_method, patient=patient_id, path=spect_path)
        files = {"seg": (folder / SEG_FILE, _encoded(seg))}
        if features_row is not None:
            sr = _report(sources, seg, features_row, patient=patient_id)
            files["sr"] = (folder / SR_FILE, _encoded(sr))
    except (ValueError, TypeError, AttributeError, KeyError) as exc:  # highdicom validates as it builds
        raise OutputError(f"cannot build the DICOM results: {first_line(exc)}", patient=patient_id,
                          path=folder) from exc
    for path, data in files.values():
        try:
            write_bytes(path, data)
        except MibgkitError as e:
            raise e.for_patient(patient_id)
    return {kind: path for kind, (path, _) in files.items()}


# --------------------------------------------------------------------------------------------
# sources and masks
# --------------------------------------------------------------------------------------------


def _source_datasets(spect_path, patient) -> list[Dataset]:
    """The SPECT's DICOM headers: the one NM file, or every DICOM file of its folder (one series)."""
    p = Path(spect_path)
    files = sorted(q for q in p.iterdir() if q.is_file()) if p.is_dir() else [p]
    datasets = []
    for f in files:
        try:
            if not is_dicom(f):
                continue
            ds = pydicom.dcmread(f, stop_before_pixels=True)
        except (OSError, ValueError, pydicom.errors.InvalidDicomError) as exc:
            raise InputError(f"cannot read the SPECT's DICOM header: {first_line(exc)}", patient=patient,
                             path=f) from None
        if "Rows" in ds and "SOPInstanceUID" in ds:
            datasets.append(ds)
    if not datasets:
        raise InputError("DICOM output needs a DICOM SPECT (the SEG and SR reference its series and carry its "
                         "patient and study); this SPECT is not DICOM", patient=patient, path=p)
    return datasets


def _on_grid(mask: sitk.Image, spect: sitk.Image, name: str, patient) -> np.ndarray:
    """A mask on (a box of) the SPECT lattice as a boolean array ``[k, j, i]`` of the full SPECT grid."""
    a_m, _ = index_to_lps(mask)
    a_s, _ = index_to_lps(spect)
    lo = lps_to_index(spect, [mask.GetOrigin()])[0]
    if not (np.allclose(a_m, a_s, atol=1e-4) and np.allclose(lo, np.rint(lo), atol=1e-3)):
        raise GeometryError(f"the {name!r} mask is not on the SPECT lattice", patient=patient)
    lo = np.rint(lo).astype(int)
    arr = sitk.GetArrayViewFromImage(mask) != 0
    size = np.asarray(spect.GetSize())
    hi = lo + np.asarray(mask.GetSize())
    if np.any(lo < 0) or np.any(hi > size):
        inside = arr[max(-lo[2], 0):arr.shape[0] - max(hi[2] - size[2], 0),
                     max(-lo[1], 0):arr.shape[1] - max(hi[1] - size[1], 0),
                     max(-lo[0], 0):arr.shape[2] - max(hi[0] - size[0], 0)]
        if inside.sum() != arr.sum():
            raise GeometryError(f"the {name!r} mask reaches outside the SPECT grid", patient=patient)
        arr = inside
        lo = np.maximum(lo, 0)
    full = np.zeros(tuple(size[::-1]), bool)
    full[lo[2]:lo[2] + arr.shape[0], lo[1]:lo[1] + arr.shape[1], lo[0]:lo[0] + arr.shape[2]] = arr
    return full


def _nm_view(ds: Dataset, path, patient) -> Dataset:
    """An NM multi-frame header as highdicom reads an enhanced multi-frame image (in memory only).

    Shared Pixel Measures and Plane Orientation, and per frame the Plane Position the NM rule gives
    (:mod:`mibgkit.nm`: frame with slice index ``s`` at ``IPP + (s - s1) × Spacing Between Slices ×
    (row × column)``).
    """
    import highdicom as hd

    from .dicom_image import _orientation_vectors, _pixel_spacing
    from .nm import _position_orientation, _slice_index, _slice_step

    n = int(ds.NumberOfFrames)
    index = _slice_index(ds, n, path, patient)
    ipp, iop = _position_orientation(ds, path, patient)
    row, col = _orientation_vectors(iop, path, patient)
    step = _slice_step(ds, path, patient)
    normal = np.cross(row, col)
    view = copy.copy(ds)
    shared = Dataset()
    shared.PixelMeasuresSequence = hd.PixelMeasuresSequence(
        pixel_spacing=[float(v) for v in _pixel_spacing(ds, path, patient)], slice_thickness=abs(step),
        spacing_between_slices=abs(step))
    shared.PlaneOrientationSequence = hd.PlaneOrientationSequence(hd.CoordinateSystemNames.PATIENT,
                                                                  [float(v) for v in iop])
    view.SharedFunctionalGroupsSequence = [shared]
    frames = []
    for s in index:
        item = Dataset()
        item.PlanePositionSequence = hd.PlanePositionSequence(
            hd.CoordinateSystemNames.PATIENT, [float(v) for v in ipp + (int(s) - int(index[0])) * step * normal])
        frames.append(item)
    view.PerFrameFunctionalGroupsSequence = frames
    return view


def _highdicom_sources(sources: list[Dataset], spect: sitk.Image, patient, path) -> list[Dataset]:
    """The source as highdicom takes it: one dataset, an enhanced-multi-frame view (:func:`_nm_view`).

    highdicom takes every NM image for a multi-frame one (the NM IOD allows frames) and so refuses a
    series of single-frame NM files; it is given a view of the first, and :func:`_reference_slices`
    then references every file of the series.
    """
    if len(sources) == 1:
        return [_nm_view(sources[0], path, patient)]
    return [_single_frame_view(sources[0], spect)]


def _single_frame_view(ds: Dataset, spect: sitk.Image) -> Dataset:
    """A single-frame image header as highdicom reads a one-frame enhanced image (in memory only)."""
    import highdicom as hd

    view = copy.copy(ds)
    thickness = abs(float(spect.GetSpacing()[2]))
    shared = Dataset()
    shared.PixelMeasuresSequence = hd.PixelMeasuresSequence(
        pixel_spacing=[float(v) for v in ds.PixelSpacing], slice_thickness=thickness,
        spacing_between_slices=thickness)
    shared.PlaneOrientationSequence = hd.PlaneOrientationSequence(
        hd.CoordinateSystemNames.PATIENT, [float(v) for v in ds.ImageOrientationPatient])
    frame = Dataset()
    frame.PlanePositionSequence = hd.PlanePositionSequence(
        hd.CoordinateSystemNames.PATIENT, [float(v) for v in ds.ImagePositionPatient])
    view.SharedFunctionalGroupsSequence = [shared]
    view.PerFrameFunctionalGroupsSequence = [frame]
    view.NumberOfFrames = 1
    return view


def _reference_slices(seg: Dataset, sources: list[Dataset]) -> None:
    """Reference every file of a single-frame series: the series' instances, and per SEG frame the
    file whose Image Position (Patient) is the frame's (within 1e-3 mm)."""
    refs = []
    for ds in sources:
        ref = Dataset()
        ref.ReferencedSOPClassUID = ds.SOPClassUID
        ref.ReferencedSOPInstanceUID = ds.SOPInstanceUID
        refs.append(ref)
    seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence = [copy.deepcopy(r) for r in refs]
    if "SourceImageSequence" in seg:
        seg.SourceImageSequence = [copy.deepcopy(r) for r in refs]
    positions = np.asarray([[float(v) for v in ds.ImagePositionPatient] for ds in sources])
    derivation = codes.DCM.Segmentation
    purpose = codes.DCM.SourceImageForImageProcessingOperation
    for item in seg.PerFrameFunctionalGroupsSequence:
        where = np.asarray([float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient])
        distance = np.linalg.norm(positions - where, axis=1)
        if distance.min() > 1e-3:
            item.pop("DerivationImageSequence", None)
            continue
        source = copy.deepcopy(refs[int(np.argmin(distance))])
        source.SpatialLocationsPreserved = "YES"
        source.PurposeOfReferenceCodeSequence = [_code_item(purpose)]
        step = Dataset()
        step.SourceImageSequence = [source]
        step.DerivationCodeSequence = [_code_item(derivation)]
        item.DerivationImageSequence = [step]


def _code_item(code) -> Dataset:
    import highdicom as hd

    return hd.sr.CodedConcept.from_code(code)


# --------------------------------------------------------------------------------------------
# the SEG
# --------------------------------------------------------------------------------------------


def _when(ds: Dataset) -> tuple[str | None, str | None]:
    """Content Date/Time for the outputs: the source's, else its Series, Acquisition or Study date/time."""
    for date_kw, time_kw in (("ContentDate", "ContentTime"), ("SeriesDate", "SeriesTime"),
                             ("AcquisitionDate", "AcquisitionTime"), ("StudyDate", "StudyTime")):
        date = str(ds.get(date_kw) or "")
        if date:
            return date, str(ds.get(time_kw) or "") or "000000"
    return None, None


def _uid(*parts) -> str:
    """A UID derived from ``parts`` (SHA-512 of their text, :func:`pydicom.uid.generate_uid` under pydicom's
    root, as the synthetic cohort's UIDs): the same inputs give the same UID. (``prefix=None`` would
    ignore the entropy and return a random ``2.25`` UUID.)"""
    return str(generate_uid(entropy_srcs=["\x1f".join(str(p) for p in parts)]))


def _mibgkit_version() -> str:
    from . import __version__

    return __version__


def _segment_description(number: int, name: str, mtv_method: str, uid: str):
    import highdicom as hd

    category, kind, laterality = _segment_codes()[name]
    version = _mibgkit_version()
    if name == "tumour MTV":
        manual = mtv_method == "roi"
        algorithm_type = hd.seg.SegmentAlgorithmTypeValues.MANUAL if manual else \
            hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC
        family = codes.DCM.ManualProcessing if manual else codes.DCM.HistogramAnalysis
    else:
        algorithm_type, family = hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC, codes.DCM.ManualProcessing
    algorithm = hd.AlgorithmIdentificationSequence(name="mibgkit", family=family, version=version,
                                                   parameters={"mtv_method": mtv_method} if number == 1 else None)
    description = hd.seg.SegmentDescription(
        segment_number=number, segment_label=name, segmented_property_category=category,
        segmented_property_type=kind, algorithm_type=algorithm_type, algorithm_identification=algorithm,
        tracking_uid=uid, tracking_id=name)
    if laterality is not None:
        description.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [
            hd.sr.CodedConcept.from_code(laterality)]
    return description


def _plane_geometry(image: sitk.Image, slices):
    """highdicom's plane positions (of ``slices``), orientation and pixel measures of an image's grid (LPS, mm).

    Given explicitly because highdicom takes them from the source images only for enhanced
    multi-frame objects, and an NM multi-frame file has no Plane Position Sequence.
    """
    import highdicom as hd

    direction = np.reshape(image.GetDirection(), (3, 3))
    spacing = np.asarray(image.GetSpacing(), float)
    origin = np.asarray(image.GetOrigin(), float)
    positions = [hd.PlanePositionSequence(hd.CoordinateSystemNames.PATIENT,
                                          [float(v) for v in origin + k * spacing[2] * direction[:, 2]])
                 for k in slices]
    orientation = hd.PlaneOrientationSequence(hd.CoordinateSystemNames.PATIENT,
                                              [float(v) for v in (*direction[:, 0], *direction[:, 1])])
    measures = hd.PixelMeasuresSequence(pixel_spacing=[float(spacing[1]), float(spacing[0])],
                                        slice_thickness=float(spacing[2]), spacing_between_slices=float(spacing[2]))
    return positions, orientation, measures


def _segmentation(sources, spect: sitk.Image, segments: dict[str, np.ndarray], *, mtv_method: str, patient, path):
    """The BINARY SEG of ``segments`` (full-grid ``[k, j, i]`` arrays) on the SPECT grid."""
    import highdicom as hd

    names = list(segments)
    pixels = np.stack([segments[n] for n in names], axis=-1).astype(np.uint8)  # (k, j, i, segment)
    slices = np.flatnonzero(pixels.any(axis=(1, 2, 3)))
    positions, orientation, measures = _plane_geometry(spect, slices)
    digest = hashlib.blake2b(np.packbits(pixels[slices]).tobytes(), digest_size=16).hexdigest()
    sop_uid = _uid("SEG", *(ds.SOPInstanceUID for ds in sources), *names, digest, mtv_method, _mibgkit_version())
    descriptions = [_segment_description(i, n, mtv_method, _uid(sop_uid, "segment", n))
                    for i, n in enumerate(names, start=1)]
    date, time = _when(sources[0])
    seg = hd.seg.Segmentation(
        source_images=_highdicom_sources(sources, spect, patient, path), pixel_array=pixels[slices],
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=descriptions,
        series_instance_uid=_uid(sop_uid, "series"), series_number=_SEG_SERIES_NUMBER, sop_instance_uid=sop_uid,
        instance_number=1, manufacturer="mibgkit",
        manufacturer_model_name="mibgkit", software_versions=_mibgkit_version(), device_serial_number="none",
        plane_positions=positions, plane_orientation=orientation, pixel_measures=measures,
        series_description="mibgkit MTV and reference spheres", content_label="MIBGKIT",
        content_description="MIBG SPECT: tumour MTV and liver/muscle reference spheres",
        content_date=date, content_time=time, series_date=date, series_time=time)
    if len(sources) > 1:
        _reference_slices(seg, sources)
    _fix_clock_and_uids(seg, sop_uid)
    return seg


def _fix_clock_and_uids(ds: Dataset, seed_uid: str) -> None:
    """Drop what highdicom takes from the clock (Instance Creation Date/Time, the Contribution DateTime of
    its own Contributing Equipment item: all type 3) and replace the random UIDs it made."""
    for keyword in ("InstanceCreationDate", "InstanceCreationTime"):
        if keyword in ds:
            delattr(ds, keyword)
    for item in ds.get("ContributingEquipmentSequence", []):
        if str(item.get("ManufacturerModelName", "")) == "highdicom" and "ContributionDateTime" in item:
            del item.ContributionDateTime
    dim_uid = _uid(seed_uid, "dimension organization")
    for item in ds.get("DimensionOrganizationSequence", []):
        item.DimensionOrganizationUID = dim_uid
    for item in ds.get("DimensionIndexSequence", []):
        if "DimensionOrganizationUID" in item:
            item.DimensionOrganizationUID = dim_uid


# --------------------------------------------------------------------------------------------
# the SR
# --------------------------------------------------------------------------------------------


def _number(value) -> float | None:
    """A feature cell as a float; None when it is empty or not a number."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _report(sources, seg, row: Mapping, *, patient):
    """The Comprehensive 3D SR (TID 1500) of ``row``'s values, one group per segment of ``seg``."""
    import highdicom as hd

    concepts = _concepts()
    uptake_unit = str(row.get("uptake_unit") or "counts")
    values = {col: _number(row.get(col)) for group in MEASUREMENTS.values() for col, *_ in group}
    sop_uid = _uid("SR", seg.SOPInstanceUID, *(f"{k}={v!r}" for k, v in sorted(values.items())), uptake_unit,
                   _mibgkit_version())
    source_series = hd.sr.SourceSeriesForSegmentation(sources[0].SeriesInstanceUID)
    version = _mibgkit_version()
    algorithm = hd.sr.AlgorithmIdentification(name="mibgkit", version=version)
    groups = []
    for item in seg.SegmentSequence:
        name, number = str(item.SegmentLabel), int(item.SegmentNumber)
        category, kind, laterality = _segment_codes()[name]
        measurements = []
        for col, concept, derivation, unit in MEASUREMENTS[name]:
            if values[col] is None:
                continue
            sites = [hd.sr.FindingSite(codes.SCT.SkeletalMuscle)] if derivation and derivation.startswith(
                "muscle_") else None
            measurements.append(hd.sr.Measurement(
                name=concepts[concept], value=values[col], unit=_unit(unit, uptake_unit),
                derivation=concepts[derivation] if derivation else None,
                method=concepts["mesh_volume"] if col == "mtv_ml" else None,
                finding_sites=sites, algorithm_id=algorithm))
        groups.append(hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=str(item.TrackingUID), identifier=name),
            referenced_segment=hd.sr.ReferencedSegment(sop_class_uid=seg.SOPClassUID,
                                                       sop_instance_uid=seg.SOPInstanceUID,
                                                       segment_number=number, source_series=source_series),
            finding_type=kind, finding_category=category,
            finding_sites=[hd.sr.FindingSite(kind, laterality=laterality)] if laterality is not None else None,
            measurements=measurements))
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=_uid("mibgkit device observer"), name="mibgkit",
            manufacturer_name="mibgkit", model_name=version))
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=codes.SCT.SPECT, imaging_measurements=groups)
    date, time = _when(sources[0])
    scheme = hd.coding_schemes.CodingSchemeIdentificationItem(
        designator=PRIVATE_SCHEME, name="mibgkit private codes", responsible_organization="mibgkit")
    sr = hd.sr.Comprehensive3DSR(
        evidence=[*sources, seg], content=report, series_instance_uid=_uid(sop_uid, "series"),
        series_number=_SR_SERIES_NUMBER, sop_instance_uid=sop_uid, instance_number=1, manufacturer="mibgkit",
        is_complete=True, series_description="mibgkit MIBG SPECT measurements", coding_schemes=[scheme],
        content_date=date, content_time=time, series_date=date, series_time=time)
    _fix_clock_and_uids(sr, sop_uid)
    return sr


def _encoded(ds: Dataset) -> bytes:
    """The object as the bytes of a DICOM file (Part 10, its own transfer syntax)."""
    buffer = DicomBytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()

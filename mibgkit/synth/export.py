"""Writing one synthetic patient's files as a hospital department would export them.

Per patient: the SPECT (an NM multi-frame file, or for the ``hermes`` layout a folder of single-frame
NM files) and the CT series (:mod:`mibgkit.synth.nm_layouts`, :mod:`mibgkit.synth.dicom`) with fake but realistic identities, the
analyst's tumour segmentation (``.seg.nrrd``; or a DICOM SEG or RTSTRUCT, :mod:`mibgkit.synth.roi_files`) and the reference-sphere markups (``.mrk.json``,
:mod:`mibgkit.slicer_write`). The SPECT's vendor layout and the DICOM compression are parameters; the
voxels, their positions and (but for ``quant``'s Bq/ml calibration) their values do not depend on them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from . import anatomy, identities
from .anatomy import Grid

__all__ = ["write_patient"]



_TERMINOLOGY = {
    "abdomen": "SCT^23451007^Adrenal gland",
    "mediastinum": "SCT^72410000^Mediastinum",
    "pelvis": "SCT^12921003^Pelvis",
}


def _dicom_date(iso: str) -> str:
    return iso.replace("-", "")


def write_patient(row, rng, out_dir: Path, body, spect: Grid, ct: Grid, spect_counts, seg_mask, seg_grid,
                   shape, ct_tumour, necrosis, refs, *, vendor: str = "siemens",
                   compression: str = "deflate", roi_format: str = "nrrd") -> dict:
    """Write one patient's files under ``out_dir/patients/<patient_id>/``; return its manifest row.

    ``vendor`` is the SPECT's layout (:data:`mibgkit.synth.nm_layouts.VENDORS`, default ``siemens``);
    ``compression`` the DICOM transfer syntax of SPECT and CT (``"deflate"`` default, ``"rle"``,
    ``"none"``; :data:`mibgkit.synth.dicom.COMPRESSIONS`). ``rng`` is consumed the same way whatever
    the two are, so the other files do not depend on them. ``roi_format`` is how the tumour ROI is
    written (:data:`mibgkit.synth.roi_files.ROI_FORMATS`): ``nrrd`` (default) the 3D Slicer
    ``tumour.seg.nrrd``, ``seg`` a DICOM SEG ``tumour_seg.dcm``, ``rtstruct`` an RT Structure Set
    ``tumour_rtstruct.dcm`` (:mod:`mibgkit.synth.roi_files`); it consumes no random numbers.
    """
    from ..slicer_write import write_markups, write_segmentation
    from .dicom import write_ct_series
    from .nm_layouts import write_spect

    pid = str(row["patient_id"])
    folder = out_dir / "patients" / pid
    folder.mkdir(parents=True, exist_ok=True)
    age = int(row["age_months"])
    weight = round(float(3.5 + 0.45 * age - 0.0012 * age**2) * float(np.exp(rng.normal(0, 0.08))), 1)
    hour, minute = int(rng.integers(8, 16)), int(rng.integers(0, 12)) * 5
    identity = {
        "PatientName": row["patient_name"],
        "PatientID": row["hospital_mrn"],
        "PatientBirthDate": _dicom_date(row["birth_date"]),
        "PatientSex": row["sex"],
        "PatientAge": f"{min(age, 999):03d}M",
        "PatientWeight": f"{weight:g}",
        "StudyDate": _dicom_date(row["scan_date"]),
        "StudyTime": f"{hour:02d}{minute:02d}00",
        "AccessionNumber": row["accession_number"],
        "InstitutionName": identities.INSTITUTION,
        "ReferringPhysicianName": row["referring_physician"],
        "StudyID": row["accession_number"][-6:],
    }
    # EANM paediatric dosage card (class B, baseline 28 MBq for 123I-MIBG), 37–400 MBq.
    dose = float(np.clip(28.0 * _eanm_multiple(weight), 80.0, 400.0))
    spect_path = write_spect(spect_counts, folder, spacing=spect.spacing, origin=spect.origin,
                             identity=identity, vendor=vendor, compression=compression,
                             series={"SeriesNumber": 3, "SeriesDescription": "SPECT MIBG 24h Flash3D AC",
                                     "RadionuclideTotalDose": round(dose, 1),
                                     "RadiopharmaceuticalStartTime": f"{(hour + 24 - 24) % 24:02d}0000"})

    labels = anatomy.label_map(body, ct)
    tum, lo = ct_tumour
    sub = ct.crop(lo, lo + np.asarray(tum.shape))
    box = tuple(slice(a, a + m) for a, m in zip(lo, tum.shape))
    lab_box = labels[box]
    lab_box[tum] = anatomy.TISSUES["tumour"]
    if necrosis > 0:
        q = (sub.points() - shape.centre) @ shape.rotation / shape.scale
        rho = np.sqrt(((q / shape.radii) ** 2).sum(axis=1)).reshape(sub.shape)
        lab_box[tum & (rho < necrosis * 0.9)] = anatomy.TISSUES["necrosis"]
    if str(row["histology"]) == "NB" or rng.random() < 0.4:  # stippled calcification, typical of NB
        speck = tum & (rng.random(sub.shape) < rng.uniform(0.002, 0.02))
        speck = ndimage.binary_dilation(speck, iterations=1) & tum
        lab_box[speck] = anatomy.TISSUES["calcification"]
    labels[box] = lab_box
    hu = anatomy.ct_numbers(labels, rng)
    del labels
    write_ct_series(hu, folder / "ct", spacing=ct.spacing, origin=ct.origin, identity=identity,
                    series={"SeriesNumber": 2, "SeriesDescription": f"CT LowDose {ct.spacing[2]:.1f} B08s"},
                    compression=compression)
    del hu

    site = str(row["primary_site"])
    term = ("Segmentation category and type - 3D Slicer General Anatomy list~SCT^49755003^Morphologically "
            f"Altered Structure~SCT^4147007^Mass~^^~Anatomic codes - DICOM master list~{_TERMINOLOGY[site]}~^^")
    roi_file = "tumour.seg.nrrd"
    if roi_format == "nrrd":
        write_segmentation(folder / roi_file, {"tumour": (seg_mask.astype(np.uint8), {
            "origin": seg_grid.origin, "spacing": seg_grid.spacing})},
            colors={"tumour": (0.85, 0.4, 0.3)}, terminology={"tumour": term}, status="completed")
    else:
        from .roi_files import write_tumour_roi

        mask = sitk.GetImageFromArray(seg_mask.astype(np.uint8))
        mask.SetSpacing(tuple(float(v) for v in seg_grid.spacing))
        mask.SetOrigin(tuple(float(v) for v in seg_grid.origin))
        roi_file = write_tumour_roi(folder, roi_format, mask, spect_path=spect_path, ct_path=folder / "ct")
    system = "RAS" if int(pid[2:]) % 2 == 0 else "LPS"
    write_markups(folder / "spheres.mrk.json", {k: [float(round(v, 3)) for v in p] for k, p in refs.items()},
                  coordinate_system=system)
    rel = f"patients/{pid}"
    return {"patient_id": pid, "spect": f"{rel}/{spect_path.name}", "ct": f"{rel}/ct", "roi": f"{rel}/{roi_file}",
            "roi_segment": "tumour", "markups": f"{rel}/spheres.mrk.json", "scan_date": row["scan_date"],
            "efs_days": f"{float(row['efs_days']):.1f}", "efs_event": int(row["efs_event"])}


def _eanm_multiple(weight_kg: float) -> float:
    """EANM dosage card multiple by body weight (class B), interpolated."""
    w = np.array([3, 4, 8, 10, 14, 18, 22, 26, 30, 34, 38, 42, 46, 50], float)
    m = np.array([1, 1.14, 1.71, 2.0, 2.57, 3.14, 3.71, 4.29, 4.86, 5.29, 5.71, 6.14, 6.57, 7.0])
    return float(np.interp(weight_kg, w, m))

"""Notebook 09: the reporting checklists of this run — IBSI, Radiomics Quality Score, TRIPOD+AI.

*IBSI* (Zwanenburg et al., Radiology 2020, reporting guidelines): the acquisition, reconstruction
and feature-computation items, filled from the SPECT/CT headers of the run's files and from the
run's parameters. Only acquisition attributes are read (manufacturer, model, software versions,
radiopharmaceutical, collimator, zoom, energy window, kernel, corrections, voxel geometry);
nothing that identifies a patient, a device or a site (names, IDs, dates, station, serial number,
institution) is read or shown.

*Radiomics Quality Score* (Lambin et al., Nat Rev Clin Oncol 2017): the 16 items with the points
this run earns (range −8 to 36) and why.

*TRIPOD+AI* (Collins et al., BMJ 2024): the items that concern an external validation of a
published model, each ``met`` / ``partly`` / ``not met``, with where in the reports it is.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd

__all__ = ["acquisition_headers", "summarise", "ibsi_items", "rqs_table", "tripod_items", "RunContext"]

_MTV = {
    "roi": "the tumour ROI as drawn (the paper's choice)",
    "percent_max": "voxels ≥ {f:.0%} of Tmax inside the dilated ROI",
    "adaptive": "background-adapted threshold bg + {f:.0%}·(Tmax − bg) inside the dilated ROI (ROVER)",
}
_MTV_DEFAULT_FRACTION = {"percent_max": 0.40, "adaptive": 0.50}


def _first(seq, attr, default=""):
    try:
        return getattr(seq[0], attr, default) if seq else default
    except (IndexError, TypeError):
        return default


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, (list, tuple)) or type(v).__name__ == "MultiValue":
        return " × ".join(_fmt(x) for x in v) if all(not isinstance(x, str) for x in v) else "\\".join(map(str, v))
    try:
        f = float(v)
        return f"{f:g}"
    except (TypeError, ValueError):
        return str(v)


def _dicom_file(path: Path) -> Path | None:
    if path.is_file():
        return path
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file())
        return files[0] if files else None
    return None


def acquisition_headers(manifest: pd.DataFrame, base: str | Path) -> pd.DataFrame:
    """Per patient (manifest ``patient_id``), the acquisition attributes of the SPECT and CT headers.

    Non-DICOM images (NIfTI, NRRD) give empty cells and ``format`` saying so. Only the attributes in
    the module notes are read.
    """
    import pydicom

    rows = []
    base = Path(base)
    for _, m in manifest.iterrows():
        row = {"patient_id": m["patient_id"]}
        for modality in ("spect", "ct"):
            value = m.get(modality)
            if not isinstance(value, str) or not value:
                continue
            f = _dicom_file(base / value)
            if f is None:
                continue
            try:
                ds = pydicom.dcmread(f, stop_before_pixels=True)
            except Exception:  # noqa: BLE001 - not DICOM: NIfTI / NRRD
                row[f"{modality}_format"] = Path(value).suffix.lstrip(".") or "folder"
                continue
            row[f"{modality}_format"] = "DICOM"
            row[f"{modality}_manufacturer"] = _fmt(ds.get("Manufacturer"))
            row[f"{modality}_model"] = _fmt(ds.get("ManufacturerModelName"))
            row[f"{modality}_software"] = _fmt(ds.get("SoftwareVersions"))
            row[f"{modality}_kernel"] = _fmt(ds.get("ConvolutionKernel"))
            row[f"{modality}_pixel_mm"] = _fmt(ds.get("PixelSpacing"))
            row[f"{modality}_slice_thickness_mm"] = _fmt(ds.get("SliceThickness"))
            row[f"{modality}_matrix"] = f"{ds.get('Rows', '')} × {ds.get('Columns', '')}"
            if modality == "spect":
                det = ds.get("DetectorInformationSequence")
                row["spect_spacing_between_slices_mm"] = _fmt(ds.get("SpacingBetweenSlices"))
                row["spect_frames"] = _fmt(ds.get("NumberOfFrames"))
                row["collimator"] = _fmt(_first(det, "CollimatorGridName"))
                row["collimator_type"] = _fmt(_first(det, "CollimatorType"))
                row["zoom"] = _fmt(_first(det, "ZoomFactor"))
                row["tracer"] = _fmt(_first(ds.get("RadiopharmaceuticalInformationSequence"), "Radiopharmaceutical"))
                win = ds.get("EnergyWindowInformationSequence")
                rng = _first(win, "EnergyWindowRangeSequence", None)
                row["energy_window_kev"] = (f"{_fmt(_first(rng, 'EnergyWindowLowerLimit'))}–"
                                            f"{_fmt(_first(rng, 'EnergyWindowUpperLimit'))}" if rng else "")
                row["corrections"] = _fmt(ds.get("CorrectedImage"))
                row["image_type"] = _fmt(ds.get("ImageType"))
            else:
                row["ct_kvp"] = _fmt(ds.get("KVP"))
        rows.append(row)
    return pd.DataFrame(rows).set_index("patient_id") if rows else pd.DataFrame()


def summarise(headers: pd.DataFrame, column: str) -> str:
    """The values of one header column over the patients, most frequent first, with counts."""
    if headers.empty or column not in headers:
        return "not in the files"
    counts = Counter(v for v in headers[column].fillna("") if v != "")
    if not counts:
        return "not in the files"
    n = len(headers)
    parts = [f"{v} ({k} of {n})" if len(counts) > 1 or k != n else f"{v} (all {n})" for v, k in counts.most_common()]
    return "; ".join(parts)


class RunContext:
    """What this run did, as the checklists need it (parameters, cohorts, readers, versions)."""

    def __init__(self, *, n_patients: int, n_events: int, mtv_method: str = "roi", mtv_fraction=None,
                 n_readers: int = 0, validation: bool = False, validation_n: int = 0, validation_events: int = 0,
                 derivation_given: bool = False, open_data: bool = False, versions: dict | None = None):
        self.n_patients, self.n_events = n_patients, n_events
        self.mtv_method, self.mtv_fraction = mtv_method, mtv_fraction
        self.n_readers = n_readers
        self.validation, self.validation_n, self.validation_events = validation, validation_n, validation_events
        self.derivation_given = derivation_given
        self.open_data = open_data
        self.versions = versions or {}


def _mtv_text(ctx: RunContext) -> str:
    f = ctx.mtv_fraction if ctx.mtv_fraction is not None else _MTV_DEFAULT_FRACTION.get(ctx.mtv_method, 0)
    return _MTV.get(ctx.mtv_method, ctx.mtv_method).format(f=f)


def ibsi_items(headers: pd.DataFrame, ctx: RunContext) -> pd.DataFrame:
    """IBSI reporting items of the run: item, value, where it comes from."""
    h = headers
    versions = ", ".join(f"{k} {v}" for k, v in ctx.versions.items()) or "see the provenance table"
    rows = [
        ("Tracer", summarise(h, "tracer"), "SPECT header: Radiopharmaceutical Information Sequence"),
        ("Imaging modality and image type", summarise(h, "image_type"), "SPECT header: Image Type"),
        ("Scanner manufacturer", summarise(h, "spect_manufacturer"), "SPECT header: Manufacturer"),
        ("Scanner model", summarise(h, "spect_model"), "SPECT header: Manufacturer's Model Name"),
        ("Acquisition / reconstruction software", summarise(h, "spect_software"), "SPECT header: Software Versions"),
        ("Collimator", summarise(h, "collimator") + " — type " + summarise(h, "collimator_type"),
         "SPECT header: Detector Information Sequence (Collimator/Grid Name, Collimator Type)"),
        ("Acquisition zoom", summarise(h, "zoom"), "SPECT header: Detector Information Sequence (Zoom Factor)"),
        ("Energy window, keV", summarise(h, "energy_window_kev"), "SPECT header: Energy Window Information Sequence"),
        ("Reconstruction (as the headers name it)", summarise(h, "spect_kernel"), "SPECT header: Convolution Kernel"),
        ("Image corrections", summarise(h, "corrections"), "SPECT header: Corrected Image"),
        ("SPECT matrix", summarise(h, "spect_matrix"), "SPECT header: Rows × Columns"),
        ("SPECT voxel size, mm (in-plane; slice spacing)",
         summarise(h, "spect_pixel_mm") + "; " + summarise(h, "spect_spacing_between_slices_mm"),
         "SPECT header: Pixel Spacing; Spacing Between Slices"),
        ("SPECT nominal slice thickness, mm", summarise(h, "spect_slice_thickness_mm"),
         "SPECT header: Slice Thickness (not used as spacing)"),
        ("CT scanner", summarise(h, "ct_manufacturer") + " " + summarise(h, "ct_model"), "CT header"),
        ("CT kernel, tube voltage (kV), slice thickness (mm)",
         f"{summarise(h, 'ct_kernel')}; {summarise(h, 'ct_kvp')}; {summarise(h, 'ct_slice_thickness_mm')}", "CT header"),
        ("Image values", "reconstructed counts (no SUV for MIBG; a Real World Value Mapping in Bq/ml is applied "
         "where present); ratios to liver and muscle are unit-free", "mibgkit.io.load_image"),
        ("Segmentation method", "primary tumour ROI drawn manually in 3D Slicer (.seg.nrrd or labelmap, DICOM SEG, "
         "RTSTRUCT), read by exact segment name", "manifest: roi, roi_segment"),
        ("Readers", f"{max(ctx.n_readers, 1)} reader(s)" + (" (readers.csv: agreement in report 07)" if ctx.n_readers > 1
                                                            else "; one ROI per patient (the manifest's)"),
         "readers.csv" if ctx.n_readers > 1 else "manifest"),
        ("MTV definition", _mtv_text(ctx), "parameter mtv_method / mtv_fraction"),
        ("Interpolation", "no image resampling; the ROI is resampled onto the SPECT grid by nearest neighbour in "
         "physical space (ties to the higher index); features are computed on the SPECT grid",
         "mibgkit.geometry.roi_on_grid"),
        ("Intensity discretisation", "none (only Tmax, Tmean and reference-sphere statistics; no texture features)",
         "mibgkit.features"),
        ("Reference regions", "30 ml sphere in normal liver; two 10 ml spheres beside L2 (voxel-centre rule)",
         "mibgkit.voi"),
        ("Morphology", "marching cubes at 0.5 on the binary MTV mask; volume by the divergence theorem; "
         "ASP = (S³/(36πV²))^(1/3) − 1 (IBSI asphericity), checked against the IBSI digital phantom",
         "mibgkit.shape"),
        ("Software versions", versions, "provenance"),
    ]
    return pd.DataFrame(rows, columns=["IBSI item", "this run", "source"])


def rqs_table(ctx: RunContext) -> pd.DataFrame:
    """Radiomics Quality Score items, the points this run earns and why."""
    val_pts = 3 if ctx.validation else 2
    rows = [
        ("1 Image protocol quality", "0 to +2", 1,
         "acquisition and reconstruction documented from the headers (IBSI table); no public protocol of its own"),
        ("2 Multiple segmentations", "0 / +1", 1 if ctx.n_readers > 1 else 0,
         f"{ctx.n_readers} readers in readers.csv (report 07)" if ctx.n_readers > 1 else "one ROI per patient"),
        ("3 Phantom study on all scanners", "0 / +1", 0,
         "no scanner phantom; the IBSI digital phantom checks the software only"),
        ("4 Imaging at multiple time points", "0 / +1", 0, "one pretherapeutic scan per patient"),
        ("5 Feature reduction or adjustment for multiple testing", "−3 / +3", 3,
         "univariate screen and forward stepwise selection (report 03); maxstat-corrected cutoff p (report 06)"),
        ("6 Multivariable analysis with non-radiomics features", "0 / +1", 1, "bone/BM metastasis in the model"),
        ("7 Biological correlates", "0 / +1", 0, "not studied"),
        ("8 Cut-off analyses", "0 / +1", 1, "published cutoffs applied; KM by the groups (reports 05, 08)"),
        ("9 Discrimination statistics", "0 to +2", 2,
         "C with CI (report 08) and resampling: bootstrap optimism (06), bootstrap ΔC (08)"),
        ("10 Calibration statistics", "0 to +2", 1,
         "calibration slope with CI and calibration plot (08); no resampling of calibration"),
        ("11 Prospective study", "0 / +7", 0, "retrospective (synthetic or registered cohort)"),
        ("12 Validation", "−5 to +5", val_pts,
         "external validation on one independent cohort (report 08)" if ctx.validation
         else "internal validation only (bootstrap, report 06)"),
        ("13 Comparison to 'gold standard'", "0 / +2", 2, "added to bone/BM metastasis: ΔC and LR test (08)"),
        ("14 Potential clinical utility", "0 / +2", 2, "decision curves at 2 and 3 years (08)"),
        ("15 Cost-effectiveness analysis", "0 / +1", 0, "not done"),
        ("16 Open science and data", "0 to +4", 1 + (3 if ctx.open_data else 0),
         "code open" + ("; images, segmentations and features of the (synthetic) cohort open" if ctx.open_data
                        else "; images, segmentations and features are the data owner's")),
    ]
    out = pd.DataFrame(rows, columns=["RQS item", "possible", "points", "why"])
    out.attrs["total"] = int(out.points.sum())
    out.attrs["maximum"] = 36
    return out


def tripod_items(ctx: RunContext) -> pd.DataFrame:
    """TRIPOD+AI items for the external validation of a published model: met / partly / not met, and where."""
    v = ctx.validation
    rows = [
        ("1 Title: identifies external validation", "partly", "report 08 title (a report, not a paper)"),
        ("3 Background: the model validated and why", "met", "08 §1: frozen model, its terms and coding"),
        ("5a Source of data (cohort, centre)", "met" if v else "partly",
         "manifest of the validation cohort; scanner and case mix in 09 (IBSI) and 08 (case mix)"),
        ("5b Dates of recruitment and follow-up", "partly", "follow-up range in 08; scan dates validated, not shown"),
        ("6a Eligibility and setting", "not met", "not recorded in the manifest; state it with the data"),
        ("6c Treatments received", "partly", "treatment columns in the clinical table (report 02)"),
        ("7 Data preparation, quality control", "met", "reports 00 and 01 (QC table, per-patient views)"),
        ("8a Outcome: definition and time of assessment", "met", "EFS from the scan (manifest); 08 §2 event status"),
        ("9a Predictors: definition, measurement, blinding", "partly",
         "definitions in 08 §1 and the IBSI table; blinding of readers to outcome not recorded"),
        ("10 Sample size", "partly", f"{ctx.validation_n if v else ctx.n_patients} patients, "
         f"{ctx.validation_events if v else ctx.n_events} events reported; no sample-size calculation"),
        ("11 Missing data", "met", "patients lacking a model value are counted and left out (08, not-estimable list)"),
        ("12c How predictions were calculated", "met", "PI = Σ ln(HR)·x as printed; baseline re-estimated, stated (08 §4)"),
        ("12e Performance measures", "met", "C (Harrell, Uno), calibration slope and plot, sens/spec/PPV/NPV, net benefit (08)"),
        ("12f Model updating", "met", "none: the model is applied frozen (08)"),
        ("12g Heterogeneity / fairness across groups", "not met", "performance by subgroup not reported"),
        ("18e Data availability", "met" if ctx.open_data else "partly",
         "synthetic cohort generated by the package" if ctx.open_data else "the data owner's"),
        ("18f Code availability", "met", "mibgkit, with its version and commit in every report's provenance"),
        ("20a Flow of participants", "partly", "patients measured vs failed in 00/01; exclusions in 08"),
        ("20b Characteristics vs development data", "met" if ctx.derivation_given else "partly",
         "case-mix table in 08" if ctx.derivation_given else "published Table 1 beside this cohort in 02"),
        ("23a Model performance with CIs", "met", "every estimate in 08 with its 95 % CI"),
        ("24 Model updating results", "met", "not applicable: no updating (08)"),
        ("26 Interpretation vs development", "met", "08 §7: which published claims held, from the numbers"),
        ("27 Limitations", "partly", "not-estimable list of each report; reasons stated where numbers are missing"),
    ]
    return pd.DataFrame(rows, columns=["TRIPOD+AI item", "status", "where"])

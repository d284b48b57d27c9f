"""The ``mibgkit`` command line.

Verbs::

    mibgkit shape MASK [--label N | --segment NAME] [--reference IMAGE] [--json]
    mibgkit extract MANIFEST -o FEATURES.csv [--mtv-method roi|percent_max|adaptive] [--strict]
                    [--workers N | --scheduler ADDRESS] [--dicom DIR]
    mibgkit synth OUT [--n 50] [--seed S] [--centre B] [--vendor siemens|ge|philips|hermes|quant|float|reversed]
                  [--compression deflate|rle|none] [--roi-format nrrd|seg|rtstruct]
    mibgkit report [--manifest M] [--validation MANIFEST] [--params FILE] [--out reports/]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import InputError, MibgkitError


def _cmd_shape(args) -> int:
    from .rois import read_roi, roi_format
    from .shape import shape_features

    reference = args.reference
    kind = roi_format(args.mask)
    if reference is not None and kind != "rtstruct":
        what = "a DICOM SEG" if kind == "seg" else "a voxel mask"
        print(f"mibgkit shape: note: --reference is only used to rasterise RT Structure Set contours; "
              f"ignored for {what}, which has its own grid", file=sys.stderr)
        reference = None
    mask = read_roi(args.mask, segment=args.segment, label=args.label, reference=reference)
    feats = shape_features(mask)
    if args.json:
        print(json.dumps({k: (float(v) if isinstance(v, float) else v) for k, v in feats.items()}, indent=2))
    else:
        width = max(map(len, feats))
        for k, v in feats.items():
            print(f"{k:<{width}}  {v:.6g}" if isinstance(v, float) else f"{k:<{width}}  {v}")
    return 0


def _cmd_extract(args) -> int:
    from .extraction import extract, parts_dir_for, qc_path_for
    from .manifest import read_manifest

    manifest = read_manifest(args.manifest)
    params = {}
    if args.fraction is not None:
        params["fraction"] = args.fraction
        if args.mtv_method == "roi":
            print("mibgkit extract: note: --fraction is only used by --mtv-method percent_max or adaptive; "
                  "ignored for the ROI as drawn", file=sys.stderr)
    if args.workers is not None and args.workers < 1:
        raise MibgkitError(f"--workers must be at least 1, got {args.workers}")
    out = Path(args.output)
    run = extract(manifest, out, mtv_method=args.mtv_method, mtv_params=params, progress=not args.quiet,
                  workers=args.workers, scheduler=args.scheduler, lock_wait_s=args.wait, dicom=args.dicom)
    features, qc = run.tables()
    bad = qc[qc.status == "error"]
    resumed = f" ({run.n_cached} reused from {parts_dir_for(out)})" if run.n_cached else ""
    print(f"{len(features)} of {len(qc)} patients measured{resumed} -> {out}; QC table -> {qc_path_for(out)}",
          file=sys.stderr)
    for _, r in bad.iterrows():
        print(f"  {r.patient_id}: {r.error_type}: {r.file + ': ' if r.file else ''}{r.message}", file=sys.stderr)
    return 1 if (args.strict and len(bad)) else 0


#: Where ``mibgkit report`` builds the synthetic cohort when no manifest is given.
DEFAULT_SYNTHETIC = Path("work") / "synthetic"

#: Where it builds the synthetic validation cohort (centre B) when neither manifest is given.
DEFAULT_VALIDATION = Path("work") / "synthetic_centre_b"


def _cmd_synth(args) -> int:
    import time

    from .synth.generate import DEFAULT_SEED, generate_cohort

    t0 = time.perf_counter()
    default_seed = DEFAULT_SEED if args.centre is None else None  # None: the centre's own seed
    manifest = generate_cohort(args.out, n=args.n, seed=default_seed if args.seed is None else args.seed,
                               progress=not args.quiet, vendor=args.vendor, compression=args.compression,
                               centre=args.centre, roi_format=args.roi_format)
    print(f"synthetic cohort of {args.n} patients -> {manifest} ({time.perf_counter() - t0:.1f} s)", file=sys.stderr)
    return 0


def _read_params(path) -> dict:
    """The notebook parameters of ``--params``: a JSON object."""
    try:
        params = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise InputError(f"cannot read the parameters ({e.strerror or type(e).__name__})", path=path) from None
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError(f"not a JSON file ({e})", path=path) from None
    if not isinstance(params, dict):
        raise InputError("the parameters must be a JSON object, e.g. {\"mtv_method\": \"adaptive\"}", path=path)
    return params


def _cmd_report(args) -> int:
    import time

    from .cohort import load_cohort
    from .report import run_report

    timings = []
    params = _read_params(args.params) if args.params else {}
    manifest = Path(args.manifest) if args.manifest else DEFAULT_SYNTHETIC / "data_manifest.csv"
    if args.manifest is None and not manifest.is_file():
        from .synth.generate import DEFAULT_SEED, generate_cohort

        t0 = time.perf_counter()
        print(f"[report] building the synthetic cohort in {DEFAULT_SYNTHETIC} ...", file=sys.stderr, flush=True)
        generate_cohort(DEFAULT_SYNTHETIC, seed=DEFAULT_SEED, progress=not args.quiet)
        timings.append(("synthetic cohort", time.perf_counter() - t0))
    # External validation (notebook 08): --validation, else centre B beside the default synthetic cohort
    # (built if absent) when no --manifest was given, else the run's own cohort.
    validation = Path(args.validation) if args.validation else (
        DEFAULT_VALIDATION / "data_manifest.csv" if args.manifest is None else None)
    if args.validation is None and validation is not None and not validation.is_file():
        from .synth.generate import generate_cohort

        t0 = time.perf_counter()
        print(f"[report] building the synthetic validation cohort (centre B) in {DEFAULT_VALIDATION} ...",
              file=sys.stderr, flush=True)
        generate_cohort(DEFAULT_VALIDATION, centre="B", progress=not args.quiet)
        timings.append(("synthetic validation cohort", time.perf_counter() - t0))
    out = Path(args.out)
    t0 = time.perf_counter()
    # Manifest and clinical table are validated, and the features extracted, before any notebook runs.
    mtv_params = {"fraction": params["mtv_fraction"]} if params.get("mtv_fraction") is not None else {}
    load_cohort(manifest, clinical=params.get("clinical"), workdir=out / "_work",
                mtv_method=params.get("mtv_method", "roi"), mtv_params=mtv_params, progress=not args.quiet)
    if validation is not None:
        load_cohort(validation, workdir=out / "_work", mtv_method=params.get("mtv_method", "roi"),
                    mtv_params=mtv_params, progress=not args.quiet)
    timings.append(("feature extraction (or cache)", time.perf_counter() - t0))
    runs = run_report(manifest, out_dir=out, parameters=params, progress=not args.quiet, lock_wait_s=args.wait,
                      validation_manifest=validation)
    timings.extend((f"notebook {r.name}", r.seconds) for r in runs.itertuples())
    width = max(len(k) for k, _ in timings)
    print("\ntiming breakdown:", file=sys.stderr)
    for k, v in timings:
        print(f"  {k:<{width}}  {v:7.1f} s", file=sys.stderr)
    print(f"  {'total':<{width}}  {sum(v for _, v in timings):7.1f} s", file=sys.stderr)
    n_missing = sum(len(r.not_estimable) for r in runs.itertuples())
    if n_missing:
        print(f"{n_missing} number(s) not estimable in this cohort; the index page lists them with the reasons",
              file=sys.stderr)
    print(f"reports -> {out / 'index.html'}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mibgkit", description="123I-MIBG SPECT/CT workbook: uptake ratios, asphericity, EFS")
    from . import __version__

    p.add_argument("--version", action="version", version=f"mibgkit {__version__}")
    sub = p.add_subparsers(dest="verb", required=True)

    s = sub.add_parser("shape", help="shape features (mesh volume, surface, asphericity...) of a mask")
    s.add_argument("mask", help="mask file: .seg.nrrd, labelmap NIfTI/NRRD, DICOM SEG or RTSTRUCT")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--label", type=int, help="label value in a labelmap; SEG Segment Number; RTSTRUCT ROI Number")
    g.add_argument("--segment", help="exact segment name in a .seg.nrrd; SEG Segment Label; RTSTRUCT ROI Name")
    s.add_argument("--reference", metavar="IMAGE",
                   help="image whose grid an RTSTRUCT's contours are rasterised on (required for an RTSTRUCT; "
                        "any image load_image reads; ignored for voxel formats)")
    s.add_argument("--json", action="store_true", help="print the features as JSON")
    s.set_defaults(func=_cmd_shape)

    e = sub.add_parser("extract", help="features of every patient in a manifest, with a QC table",
                       description="Features of every patient in a manifest, with a QC table. Each patient's "
                                   "result is kept in FEATURES.parts/ as it finishes; a re-run reuses them.")
    e.add_argument("manifest", help="data_manifest.csv")
    e.add_argument("-o", "--output", required=True, help="features CSV to write (QC table goes beside it)")
    e.add_argument("--mtv-method", default="roi", choices=("roi", "percent_max", "adaptive"))
    e.add_argument("--fraction", type=float, help="threshold fraction for percent_max / adaptive")
    e.add_argument("--strict", action="store_true", help="exit 1 when any patient failed")
    where = e.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, metavar="N",
                       help="run on a local Dask cluster of N single-threaded worker processes "
                            "(default: one patient after the other in this process)")
    where.add_argument("--scheduler", metavar="ADDRESS",
                       help="run on an existing Dask cluster, e.g. tcp://10.0.0.5:8786 (workers must see "
                            "the input files and the output folder at the same paths)")
    e.add_argument("--wait", type=float, default=10.0, metavar="S",
                   help="seconds to wait for another run writing the same output before giving up (default 10)")
    e.add_argument("--dicom", metavar="DIR",
                   help="also write DIR/<patient_id>/seg.dcm (DICOM SEG: tumour MTV, liver and muscle spheres on "
                        "the SPECT grid) and sr.dcm (DICOM SR TID 1500: the feature values), for the archive "
                        "holding the SPECT (they carry its patient and study)")
    e.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    e.set_defaults(func=_cmd_extract)

    y = sub.add_parser("synth", help="write a synthetic cohort (DICOM, Slicer files, clinical table, manifest)")
    y.add_argument("out", help="folder to write (created)")
    y.add_argument("--n", type=int, default=50, help="number of patients (default 50, the paper's cohort)")
    y.add_argument("--seed", type=int, help="random seed (default: the calibrated seed)")
    from .synth.dicom import COMPRESSIONS
    from .synth.nm_layouts import VENDORS

    y.add_argument("--vendor", choices=VENDORS, default=None,
                   help="layout of the SPECT files (default siemens, or the --centre's scanner; hermes writes a folder of single-frame "
                        "files, quant Bq/ml via Real World Value Mapping); the images read back the same")
    y.add_argument("--compression", choices=tuple(COMPRESSIONS), default="deflate",
                   help="DICOM transfer syntax of SPECT and CT (default deflate: Deflated Explicit VR Little "
                        "Endian, lossless, ~4.3 MB per patient; none: ~14.6 MB)")
    from .synth.centres import CENTRES

    y.add_argument("--centre", choices=tuple(CENTRES), type=str.upper, default=None,
                   help="write a second department's cohort instead of the paper's (B: GE Discovery NM/CT 670, "
                        "MEGP collimator, 4.4 mm voxels, another case mix, published effects at half their size)")
    y.add_argument("--roi-format", choices=("nrrd", "seg", "rtstruct"), default="nrrd",
                   help="how the analyst's tumour ROI is written: nrrd (default: 3D Slicer tumour.seg.nrrd), seg "
                        "(DICOM SEG tumour_seg.dcm on the CT or SPECT it was drawn on) or rtstruct (RT Structure Set "
                        "tumour_rtstruct.dcm, contours on the CT slices); the other files are the same")
    y.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    y.set_defaults(func=_cmd_synth)

    r = sub.add_parser("report", help="run the notebooks and render the HTML reports")
    r.add_argument("--manifest", help=f"data_manifest.csv (default: the synthetic cohort in {DEFAULT_SYNTHETIC}, built if absent)")
    r.add_argument("--validation", metavar="MANIFEST",
                   help="data_manifest.csv of the external-validation cohort of report 08 (default: the synthetic "
                        f"centre-B cohort in {DEFAULT_VALIDATION}, built if absent, when no --manifest is given; "
                        "else the --manifest cohort itself)")
    r.add_argument("--params", help="JSON file of notebook parameters, e.g. {\"mtv_method\": \"adaptive\"}")
    r.add_argument("--out", default="reports", help="output folder (default reports/)")
    r.add_argument("--wait", type=float, default=10.0, metavar="S",
                   help="seconds to wait for another report writing the same folder before giving up (default 10)")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    r.set_defaults(func=_cmd_report)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except MibgkitError as e:
        print(f"mibgkit {args.verb}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""Speed of the reader-agreement analysis (report 07) against the extraction it builds on, in one run.

Run from the repository root::

    python benchmarks/agreement_speed.py [COHORT]   # default: work/synthetic (built with `mibgkit synth`)

On a synthetic cohort with ``readers.csv`` (three readers per patient), one core, it times:

``reference``
    ``mibgkit extract`` of the manifest, no cache: one measurement per patient.
``readers``
    every reader's ROI and markups measured (:func:`mibgkit.readers.extract_readers`, a fresh part cache).
``overlap``
    Dice and HD95 of every pair of readers' ROIs (:func:`mibgkit.readers.roi_overlaps`).
``perturbation``
    the perturbation study of every patient (:func:`mibgkit.perturbation.perturb_cohort`: up to 18 variants a patient with the ROI as MTV).
``statistics``
    the ICC, Bland–Altman, kappa and robustness tables of report 07.

It prints seconds and the ratio to the reference. Target: the whole analysis ≤ 60 s for 50 patients.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import pandas as pd

from mibgkit import perturbation as pt
from mibgkit import readers as rd
from mibgkit.extraction import extract
from mibgkit.manifest import read_manifest
from mibgkit.workbook import Missing
from mibgkit.workbook import reader_agreement as ra


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cohort", nargs="?", default="work/synthetic", help="folder with data_manifest.csv and readers.csv")
    args = parser.parse_args(argv)
    manifest = read_manifest(Path(args.cohort) / "data_manifest.csv")
    readers = rd.find_readers(manifest)
    if readers is None:
        sys.exit(f"no readers.csv in {args.cohort}: write the cohort with `mibgkit synth`")
    print(f"machine: {platform.machine()}, {os.cpu_count()} logical CPUs; {len(manifest)} patients, "
          f"{readers['reader'].nunique()} readers")
    times = {}
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # QC warnings of the synthetic spheres are not what is measured
        t = time.perf_counter()
        extract(manifest, parts_dir=None, progress=False)
        times["reference"] = time.perf_counter() - t
        t = time.perf_counter()
        long, _ = rd.extract_readers(manifest, readers, parts_dir=Path(tmp) / "parts", progress=False)
        times["readers"] = time.perf_counter() - t
        t = time.perf_counter()
        rd.roi_overlaps(manifest, readers)
        times["overlap"] = time.perf_counter() - t
        t = time.perf_counter()
        meas, _ = pt.perturb_cohort(manifest, progress=False)
        times["perturbation"] = time.perf_counter() - t
        t = time.perf_counter()
        missing = Missing()
        ra.reader_icc_table(long, ra.FEATURES, missing)
        ra.bland_altman_table(long, ra.FEATURES, "R1", missing)
        ra.kappa_table(long, ra.CUTOFFS, missing)
        pt.robustness_table(meas)
        pd.concat([pt.changed_side(meas, f, c) for f, c in ra.CUTOFFS.items()])
        times["statistics"] = time.perf_counter() - t
    ref = times["reference"]
    for stage, s in times.items():
        print(f"{stage:14s} {s:7.1f} s  {s / ref:5.1f}x the reference")
    total = sum(v for k, v in times.items() if k != "reference")
    print(f"{'agreement':14s} {total:7.1f} s  {total / ref:5.1f}x the reference  "
          f"(target <= 60 s for 50 patients: {'met' if total <= 60 * len(manifest) / 50 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

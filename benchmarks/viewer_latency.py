"""Live viewer latency: from a trait change to updated numbers and images.

Run from the repository root::

    python benchmarks/viewer_latency.py [--cohort DIR] [--n 3] [--seed 11] [--repeats 15]

It builds a synthetic cohort in ``--cohort`` (default ``work/bench/viewer-n<N>-s<SEED>``) unless one
is there already, opens :class:`mibgkit.viewer.PatientViewer` on its first patient (no browser: the
widget works headless, and its observers run synchronously, so when an assignment returns the
numbers and the PNGs of every view it changes are up to date) and prints the median time of:

``MTV threshold change``
    ``mtv_fraction`` on ``percent_max`` (re-measure the MTV and its shape, redraw three slices
    and the MIP). Target ≤ 50 ms.
``sphere move``
    one voxel step of the liver sphere with the ROI as MTV (new reference spheres, redraw).
    Target ≤ 50 ms.
``slice change``
    the axial slice slider (redraw one view and the MIP's level line). Target ≤ 20 ms.
``patient switch``
    to a patient not in the viewer's cache (read SPECT, ROI and markups, measure, draw; the CT
    then arrives from a background thread and is not counted). Target ≤ 500 ms.

Reference, measured in the same run: :func:`mibgkit.features.extract_patient` of the same patient
(files read and every feature computed, as ``mibgkit extract`` does per patient); each figure is
also printed as a ratio to it. This is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

TARGETS_MS = {"MTV threshold change": 50.0, "sphere move": 50.0, "slice change": 20.0, "patient switch": 500.0}


def _median_ms(action, repeats: int) -> float:
    times = []
    for i in range(repeats):
        t0 = time.perf_counter()
        action(i)
        times.append(time.perf_counter() - t0)
    return 1000.0 * statistics.median(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohort", type=Path, default=None)
    parser.add_argument("--n", type=int, default=3)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args(argv)
    if args.n < 2:
        parser.error("--n must be at least 2 (the patient switch needs a second patient)")

    from mibgkit.features import extract_patient
    from mibgkit.manifest import read_manifest
    from mibgkit.synth.generate import generate_cohort
    from mibgkit.viewer import PatientViewer

    cohort = args.cohort or Path("work") / "bench" / f"viewer-n{args.n}-s{args.seed}"
    if not (cohort / "data_manifest.csv").is_file():
        print(f"building a {args.n}-patient synthetic cohort (seed {args.seed}) in {cohort} ...", flush=True)
        generate_cohort(cohort, n=args.n, seed=args.seed, progress=False, workers=1)
    manifest = read_manifest(cohort / "data_manifest.csv")
    ids = list(manifest.index)
    first = ids[0]
    row = manifest.loc[first].to_dict()

    extract_patient(row, native_shape=True)  # warm the file cache and the imports
    reference = _median_ms(lambda i: extract_patient(row, native_shape=True), args.repeats)

    viewer = PatientViewer(manifest, first)
    viewer.wait_for_ct()
    results = {}

    viewer.mtv_method = "percent_max"
    results["MTV threshold change"] = _median_ms(
        lambda i: setattr(viewer, "mtv_fraction", round(0.35 + 0.01 * (i % 10) + 0.001 * i, 4)), args.repeats)
    viewer.mtv_method = "roi"
    # one voxel along x each time, never back: every centre is new (the reference spheres are cached per centre set)
    results["sphere move"] = _median_ms(lambda i: viewer.move_sphere("liver", 0, 1), args.repeats)
    axial = viewer._w_slice["axial"]
    results["slice change"] = _median_ms(
        lambda i: setattr(axial, "value", axial.value + (1 if i % 2 == 0 else -1)), args.repeats)

    def switch(i):
        viewer._patients.clear()  # a patient not seen before: nothing cached
        viewer.patient_id = ids[1 + i % (len(ids) - 1)] if viewer.patient_id == first else first

    results["patient switch"] = _median_ms(switch, max(3, args.repeats // 3))
    viewer.wait_for_ct()

    print(f"mibgkit viewer latency — {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {sys.version.split()[0]}, {args.repeats} repeats, patient {first} of {cohort.name}")
    print(f"reference: extract_patient (read + all features) {reference:8.1f} ms")
    print(f"{'change':<22}{'median ms':>10}{'target ms':>11}{'ratio to reference':>20}  verdict")
    for name, ms in results.items():
        target = TARGETS_MS[name]
        print(f"{name:<22}{ms:>10.1f}{target:>11.0f}{ms / reference:>20.2f}  {'ok' if ms <= target else 'SLOW'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Per-patient feature extraction: where the time goes, stage by stage, on one core.

Run from the repository root::

    python benchmarks/extract_profile.py [--cohort DIR] [--n 20] [--seed 3] [--repeats 3]

It builds a synthetic cohort in ``--cohort`` (default ``work/bench/profile-n<N>-s<SEED>``) unless
one is there already, then extracts every patient ``--repeats`` times with
:func:`mibgkit.features.extract_patient` (``native_shape=True``, as ``mibgkit extract`` does) and
prints, per stage, the median over patients of the best of the repeats (a warm file cache, as in
a batch where each file is read once):

``spect_read``
    DICOM (NM multi-frame) read, geometry, NaN/negative-count checks.
``roi_read``
    Slicer ``.seg.nrrd`` read and segment selection.
``markups_read``
    ``.mrk.json`` sphere centres.
``resample``
    Nearest-neighbour resampling of the ROI onto the SPECT grid, over the ROI's bounding box only,
    and the matching SPECT crop.
``spheres``
    Liver and muscle sphere VOIs on the full SPECT image.
``mtv``
    Tmax/Tmean and the MTV mask (on the crop).
``shape``
    Marching-cubes mesh features of the MTV.
``native_shape``
    Shape of the ROI on its own (CT) grid.

With ``--full-grid`` it also times the reference computation on the whole SPECT grid
(``sitk.Resample`` of the ROI over every SPECT voxel, then MTV and shape on the full grid) and
checks that both give the same feature values.

The target is a median of at most 0.3 s per synthetic patient on one core.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

STAGES = ("spect_read", "roi_read", "markups_read", "resample", "spheres", "mtv", "shape", "native_shape")


def _single_thread() -> None:
    """One core: no threaded BLAS / ITK pools, so the figures are per core."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"):
        os.environ.setdefault(var, "1")


def _full_grid(row: dict) -> tuple[dict, dict]:
    """The reference computation over the whole SPECT grid, timed per stage."""
    import SimpleITK as sitk

    from mibgkit import io
    from mibgkit.errors import QCWarning
    from mibgkit.features import load_centres, load_roi
    from mibgkit.segment import mtv_mask
    from mibgkit.shape import shape_features
    from mibgkit.voi import reference_uptake

    t = {}
    t0 = time.perf_counter()
    spect = io.load_image(row["spect"])
    io.check_counts(spect)
    t1 = time.perf_counter()
    roi_native = load_roi(row)
    t2 = time.perf_counter()
    centres = load_centres(row)
    t3 = time.perf_counter()
    binary = sitk.Cast(roi_native != 0, sitk.sitkUInt8)
    roi = sitk.Resample(binary, spect, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    t4 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", QCWarning)
        ref = reference_uptake(spect, centres)
    t5 = time.perf_counter()
    roi_arr = sitk.GetArrayViewFromImage(roi) != 0
    values = sitk.GetArrayViewFromImage(spect)[roi_arr].astype(float)
    mtv, _ = mtv_mask(spect, roi, "roi")
    t6 = time.perf_counter()
    shape = shape_features(mtv)
    t7 = time.perf_counter()
    native = shape_features(roi_native)
    t8 = time.perf_counter()
    t.update(spect_read=t1 - t0, roi_read=t2 - t1, markups_read=t3 - t2, resample=t4 - t3, spheres=t5 - t4,
             mtv=t6 - t5, shape=t7 - t6, native_shape=t8 - t7)
    values = {"tmax": float(values.max()), "tmean": float(values.mean()), "lmax": ref["lmax"],
              "mmean": ref["mmean"], "mtv_ml": shape["mesh_volume_mm3"] / 1000.0,
              "asphericity": shape["asphericity"], "roi_native_asphericity": native["asphericity"]}
    return t, values


def _table(name: str, per_patient: list[dict]) -> float:
    med = {s: statistics.median(p.get(s, 0.0) for p in per_patient) for s in STAGES}
    totals = [sum(p.get(s, 0.0) for s in STAGES) for p in per_patient]
    print(f"\n{name}: median per patient over {len(per_patient)} patients (ms)")
    for s in STAGES:
        print(f"  {s:<14} {1000 * med[s]:8.2f}")
    print(f"  {'total':<14} {1000 * statistics.median(totals):8.2f}   (median of per-patient totals; "
          f"max {1000 * max(totals):.1f} ms)")
    return statistics.median(totals)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cohort", help="synthetic cohort folder (built if it has no data_manifest.csv)")
    p.add_argument("--n", type=int, default=20, help="patients to generate (default 20)")
    p.add_argument("--seed", type=int, default=3, help="seed of the generated cohort (default 3)")
    p.add_argument("--repeats", type=int, default=3, help="extractions per patient; the best is kept (default 3)")
    p.add_argument("--full-grid", action="store_true", help="also time the full-grid reference computation")
    args = p.parse_args(argv)
    _single_thread()

    from mibgkit.features import extract_patient
    from mibgkit.manifest import read_manifest

    cohort = Path(args.cohort or Path("work") / "bench" / f"profile-n{args.n}-s{args.seed}")
    manifest = cohort / "data_manifest.csv"
    if not manifest.is_file():
        from mibgkit.synth.generate import generate_cohort

        t0 = time.perf_counter()
        generate_cohort(cohort, n=args.n, seed=args.seed, progress=True)
        print(f"built a synthetic cohort of {args.n} patients in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    rows = [r.to_dict() for _, r in read_manifest(manifest).iterrows()]

    print(f"extract_patient stage profile: {len(rows)} patients, best of {args.repeats}, "
          f"python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} logical cores (1 used)")
    best: list[dict] = []
    rows_out: dict[str, dict] = {}
    for row in rows:
        runs = []
        for _ in range(args.repeats):
            t: dict = {}
            rows_out[row["patient_id"]] = extract_patient(row, native_shape=True, timings=t)
            runs.append(t)
        best.append(min(runs, key=lambda t: sum(t.values())))
    median = _table("bounding-box pipeline (mibgkit.features.extract_patient)", best)

    if args.full_grid:
        full, mismatches = [], 0
        for row in rows:
            runs = [_full_grid(row) for _ in range(args.repeats)]
            full.append(min((r[0] for r in runs), key=lambda t: sum(t.values())))
            got = rows_out[row["patient_id"]]
            mismatches += sum(not np.array_equal(v, got[k]) for k, v in runs[0][1].items())
        reference = _table("full-grid reference (resample, MTV and shape over the whole SPECT grid)", full)
        print(f"\nspeed-up {reference / median:.2f}x; feature values {'identical' if not mismatches else f'DIFFER ({mismatches})'}")
    print(f"\ntarget <= 300 ms median per patient: {'met' if median <= 0.3 else 'NOT met'} ({1000 * median:.0f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

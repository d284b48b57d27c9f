"""Time the generation of the synthetic study cohort (default: 50 patients, default seed).

Usage: ``python benchmarks/synth_speed.py [--n 50] [--seed S] [--workers W] [--out FOLDER]``.
Prints wall-clock seconds for the whole run, writing included, per patient, and the size on disk
(mean and largest patient). Without ``--out`` the cohort goes to a temporary folder that is
removed afterwards.

The machine's speed changes from hour to hour on a shared host, so the run is also given against
a fixed reference measured before and after it in the same process: the kind of work the
generator does, in library code it does not change (a 128³ Gaussian filter, 128³ Poisson draws,
a 4 MB deflate by ISA-L, 80 files written), run once on each core at the same time.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from mibgkit.synth.clinical import DEFAULT_SEED
from mibgkit.synth.generate import generate_cohort


def _reference_work(folder: str) -> float:
    from isal import isal_zlib
    from scipy import ndimage

    rng = np.random.default_rng(0)
    start = time.perf_counter()
    field = ndimage.gaussian_filter(rng.random((128, 128, 128)), 2.0)
    rng.poisson(20.0 * field)
    data = rng.integers(0, 64, 2 * 1024 * 1024, dtype=np.uint16).tobytes()
    packed = isal_zlib.compress(data, 3)
    out = Path(folder)
    for k in range(80):
        (out / f"{k}.bin").write_bytes(packed[:50_000])
    seconds = time.perf_counter() - start
    shutil.rmtree(out)
    return seconds


def reference_seconds(workers: int, repeats: int = 3) -> float:
    """Best of ``repeats``: the reference work on ``workers`` processes at once (seconds)."""
    best = float("inf")
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for _ in range(repeats):
            folders = [tempfile.mkdtemp(prefix="mibgkit-ref-") for _ in range(workers)]
            best = min(best, max(pool.map(_reference_work, folders)))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    ref_workers = args.workers or 2
    before = reference_seconds(ref_workers)
    out = args.out or Path(tempfile.mkdtemp(prefix="mibgkit-synth-"))
    try:
        start = time.perf_counter()
        generate_cohort(out, n=args.n, seed=args.seed, progress=False, workers=args.workers)
        seconds = time.perf_counter() - start
        sizes = [sum(p.stat().st_size for p in d.rglob("*") if p.is_file()) / 1e6
                 for d in sorted((out / "patients").iterdir())]
    finally:
        if args.out is None:
            shutil.rmtree(out, ignore_errors=True)
    after = reference_seconds(ref_workers)
    reference = min(before, after)
    print(f"synth: {args.n} patients in {seconds:.1f} s ({seconds / args.n:.2f} s/patient); on disk "
          f"{np.mean(sizes):.2f} MB per patient, largest {max(sizes):.2f} MB")
    print(f"reference work on {ref_workers} processes: {before:.3f} s before, {after:.3f} s after; "
          f"synth = {seconds / reference:.1f} x the reference")


if __name__ == "__main__":
    main()

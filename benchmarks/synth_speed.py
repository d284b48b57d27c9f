"""Time the generation of the synthetic study cohort (default: 50 patients, default seed).

Usage: ``python benchmarks/synth_speed.py [--n 50] [--seed S] [--workers W] [--out FOLDER]``.
Prints wall-clock seconds for the whole run, writing included, and per patient. Without ``--out``
the cohort goes to a temporary folder that is removed afterwards.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from mibgkit.synth.clinical import DEFAULT_SEED
from mibgkit.synth.generate import generate_cohort


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="mibgkit-synth-"))
    try:
        start = time.perf_counter()
        generate_cohort(out, n=args.n, seed=args.seed, progress=False, workers=args.workers)
        seconds = time.perf_counter() - start
        size_mb = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 1e6
    finally:
        if args.out is None:
            shutil.rmtree(out, ignore_errors=True)
    print(f"synth: {args.n} patients in {seconds:.1f} s ({seconds / args.n:.2f} s/patient), {size_mb:.0f} MB written "
          f"({size_mb / args.n:.1f} MB/patient)")


if __name__ == "__main__":
    main()

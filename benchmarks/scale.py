"""Batch extraction at scale: serial against Dask with 1, 2, ... workers.

Run from the repository root::

    python benchmarks/scale.py [--n 200] [--unique 40] [--workers 1 2 16] [--cohort DIR]

It builds (or reuses) a synthetic cohort of ``--unique`` distinct patients in ``--cohort``
(default ``work/bench/scale-u<UNIQUE>``), writes a manifest of ``--n`` patients that cycles over
them (patient ``S00001`` is synthetic patient 1, ``S00041`` patient 1 again with its own ID, ...),
and extracts it

- serially in this process (``mibgkit extract`` without flags; ITK held to one thread, so that it
  uses one core as a worker does), and
- on a local Dask cluster of each worker count in ``--workers`` (one thread per worker process,
  as ``mibgkit extract --workers N`` starts it).

Each run writes to a fresh folder (nothing is reused). For each it prints the wall time of the
extraction (the cluster is started and its workers have imported mibgkit before the clock starts;
the start-up time is printed beside it), throughput in patients/s, parallel efficiency
``T_serial / (N · T_N)``, the peak resident memory of each worker process (``ru_maxrss``) and
the client's resident memory before and after (it stays flat: results stream to disk).

With ``--unique`` smaller than ``--n`` the same files are read several times, so they come from the
page cache; on a cluster with a network file system reads cost more. ``--unique`` equal to ``--n``
generates every patient (about 1-3 s each; done once, then reused).

Targets: parallel efficiency >= 0.7 at 16 workers on a 16-core machine, <= 1 GB per worker.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd


def _peak_rss_mb() -> float:
    """Peak resident memory of the calling process, MB (Linux reports KB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / (1024 * 1024)


def _warm_worker() -> bool:
    import mibgkit.extraction  # noqa: F401  (imports SimpleITK, pydicom, scikit-image... once)

    return True


def _cohort(folder: Path, unique: int, seed: int) -> Path:
    manifest = folder / "data_manifest.csv"
    if not manifest.is_file():
        from mibgkit.synth.generate import generate_cohort

        t0 = time.perf_counter()
        generate_cohort(folder, n=unique, seed=seed, progress=True)
        print(f"built {unique} synthetic patients in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return manifest


def _scaled_manifest(base_manifest: Path, n: int) -> Path:
    """A manifest of ``n`` patients cycling over the base cohort's, beside it (paths stay relative)."""
    base = pd.read_csv(base_manifest, dtype=str, keep_default_na=False)
    rows = base.iloc[[i % len(base) for i in range(n)]].copy()
    rows["patient_id"] = [f"S{i + 1:05d}" for i in range(n)]
    path = base_manifest.with_name(f"scale_manifest_n{n}.csv")
    rows.to_csv(path, index=False)
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=200, help="patients in the extracted manifest (default 200)")
    p.add_argument("--unique", type=int, help="distinct synthetic patients to generate (default min(n, 40))")
    p.add_argument("--seed", type=int, default=3, help="seed of the generated cohort (default 3)")
    p.add_argument("--workers", type=int, nargs="+", help="Dask worker counts (default 1, 2 and all cores)")
    p.add_argument("--cohort", help="folder of the generated cohort (reused when it exists)")
    p.add_argument("--no-serial", action="store_true", help="skip the serial run (efficiency then vs 1 worker)")
    args = p.parse_args(argv)
    unique = args.unique or min(args.n, 40)
    cores = os.cpu_count() or 1
    counts = args.workers or sorted({1, 2, cores})

    from mibgkit.cluster import dask_client
    from mibgkit.extraction import extract
    from mibgkit.manifest import read_manifest

    folder = Path(args.cohort or Path("work") / "bench" / f"scale-u{unique}-s{args.seed}")
    base = _cohort(folder, unique, args.seed)
    scratch = Path(tempfile.mkdtemp(prefix="mibgkit-scale-"))
    try:
        manifest = read_manifest(_scaled_manifest(base, args.n))
        print(f"scale benchmark: {args.n} patients ({unique} distinct), {platform.machine()}, {cores} logical "
              f"cores, python {platform.python_version()}")
        results = []
        if not args.no_serial:
            import SimpleITK as sitk

            sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)  # one core, as one worker has
            rss0 = _rss_mb()
            t0 = time.perf_counter()
            run = extract(manifest, parts_dir=scratch / "serial.parts", progress=False)
            wall = time.perf_counter() - t0
            results.append({"run": "serial", "workers": 1, "startup_s": 0.0, "wall_s": wall,
                            "errors": run.n_errors, "worker_peak_mb": _peak_rss_mb(),
                            "client_mb_before": rss0, "client_mb_after": _rss_mb()})
        for n in counts:
            t0 = time.perf_counter()
            with dask_client(workers=n) as client:
                client.run(_warm_worker)
                startup = time.perf_counter() - t0
                rss0 = _rss_mb()
                t1 = time.perf_counter()
                run = extract(manifest, parts_dir=scratch / f"dask{n}.parts", progress=False,
                                     scheduler=client.scheduler.address)
                wall = time.perf_counter() - t1
                peaks = client.run(_peak_rss_mb)
            results.append({"run": f"dask {n}", "workers": n, "startup_s": startup, "wall_s": wall,
                            "errors": run.n_errors, "worker_peak_mb": max(peaks.values()),
                            "client_mb_before": rss0, "client_mb_after": _rss_mb()})
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    table = pd.DataFrame(results)
    reference = table.loc[0, "wall_s"] * (1 if table.loc[0, "run"] == "serial" else table.loc[0, "workers"])
    table["patients_per_s"] = args.n / table["wall_s"]
    table["efficiency"] = reference / (table["workers"] * table["wall_s"])
    table["ms_per_patient_core"] = 1000 * table["wall_s"] * table["workers"] / args.n
    cols = ["run", "workers", "startup_s", "wall_s", "patients_per_s", "ms_per_patient_core", "efficiency",
            "worker_peak_mb", "client_mb_before", "client_mb_after", "errors"]
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table[cols].to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    print("\nefficiency = T_serial / (workers x T_workers); worker_peak_mb = peak RSS of the worker process "
          "(for serial: this process)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Extraction on Dask: same bytes as the serial run, resumable, bounded number of tasks in flight."""

import os
import platform

import pandas as pd
import pytest

from mibgkit.cli import main
from mibgkit.cluster import map_unordered

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def cluster():
    """A local cluster of 2 single-threaded worker processes, shared by the tests of this module."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as c:
        yield c


@pytest.fixture(scope="module")
def small_cohort(tmp_path_factory):
    from test_cohort import write_patient

    root = tmp_path_factory.mktemp("cohort")
    rows = [write_patient(root, f"P{i:02d}", tumour_centre=(10.0 + i, 5.0 - i, 2.0 * i), radius=12.0 + 2 * i)
            for i in range(1, 6)]
    rows.append(write_patient(root, "P06", tumour_centre=(900.0, 0.0, 0.0)))  # fails: ROI outside the SPECT
    pd.DataFrame(rows).to_csv(root / "data_manifest.csv", index=False)
    return root / "data_manifest.csv"


def _tables(path):
    return path.read_bytes(), path.with_name(path.stem + "_qc.csv").read_bytes()


def test_scheduler_run_writes_the_serial_bytes_and_resumes(cluster, small_cohort, tmp_path, capsys):
    serial, dask = tmp_path / "serial" / "features.csv", tmp_path / "dask" / "features.csv"
    assert main(["extract", str(small_cohort), "-o", str(serial), "-q"]) == 0
    assert main(["extract", str(small_cohort), "-o", str(dask), "-q", "--scheduler", cluster.scheduler_address]) == 0
    assert _tables(dask) == _tables(serial)
    assert len(pd.read_csv(dask)) == 5 and len(list((dask.parent / "features.parts").glob("*.csv"))) == 6
    # a re-run on the cluster reuses every part and writes the same bytes again
    dask.unlink()
    assert main(["extract", str(small_cohort), "-o", str(dask), "-q", "--strict",
                 "--scheduler", cluster.scheduler_address]) == 1  # P06 failed
    assert "6 reused" in capsys.readouterr().err and _tables(dask) == _tables(serial)


def test_workers_flag_starts_a_local_cluster(small_cohort, tmp_path):
    serial, dask = tmp_path / "serial.csv", tmp_path / "dask.csv"
    assert main(["extract", str(small_cohort), "-o", str(serial), "-q"]) == 0
    assert main(["extract", str(small_cohort), "-o", str(dask), "-q", "--workers", "2"]) == 0
    assert _tables(dask) == _tables(serial)


def test_map_unordered_keeps_a_bounded_number_of_tasks_in_flight(cluster):
    consumed = []

    def items():
        for i in range(40):
            consumed.append(i)
            yield i

    with distributed.Client(cluster) as client:
        results = []
        for r in map_unordered(pow, items(), {"exp": 2}, client=client, in_flight=3):
            results.append(r)
            assert len(consumed) <= len(results) + 3
        assert sorted(results) == [i * i for i in range(40)]
        # several items per task: the same results, each once
        chunked = list(map_unordered(pow, list(range(40)), {"exp": 3}, client=client, in_flight=2, chunk=7))
        assert sorted(chunked) == [i**3 for i in range(40)]


def test_workers_must_be_positive(small_cohort, tmp_path, capsys):
    assert main(["extract", str(small_cohort), "-o", str(tmp_path / "f.csv"), "--workers", "0"]) == 2
    assert "--workers" in capsys.readouterr().err


def _dies_on_seven(item):
    if item == 7:
        os._exit(1)  # the worker process dies, as when it is killed for memory
    return item


@pytest.mark.parametrize("chunk", [1, 3])
def test_a_task_whose_worker_dies_is_reported_not_fatal(cluster, chunk):
    """Only the item that kills its worker is reported: not the others of its chunk, nor a task
    that waited on the same worker (it dies with it, up to the scheduler's allowed failures)."""
    with distributed.Client(cluster) as client:
        out = list(map_unordered(_dies_on_seven, list(range(10)), client=client, chunk=chunk,
                                 on_error=lambda item, exc: ("failed", item)))
    assert sorted(r for r in out if not isinstance(r, tuple)) == [0, 1, 2, 3, 4, 5, 6, 8, 9]
    assert [r for r in out if isinstance(r, tuple)] == [("failed", 7)]


_BUFFER_PROBE = """
import numpy as np, resource
from mibgkit.cluster import reuse_image_buffers
reuse_image_buffers()
faults = []
for _ in range(4):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    arrays = [np.ones(2 << 20) for _ in range(4)]  # four 16 MiB image buffers, written, then freed
    del arrays
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(*faults)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's allocator only")
def test_forked_workers_reuse_image_buffers():
    """After reuse_image_buffers() freed image buffers stay with the process: the next patient's
    buffers cost no page faults (glibc's defaults hand them back and fault them in again)."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", _BUFFER_PROBE], capture_output=True, text=True, check=True, env=env)
    first, *later = (int(v) for v in out.stdout.split())
    assert first > 1000 and sum(later) < first / 10, (first, later)

"""Statistics at scale: univariate Cox over all Table 2 features, forward stepwise selection and the
bootstrap optimism of the whole procedure, on a simulated multi-centre-sized cohort.

Prints seconds per step. Usage: ``python benchmarks/stats_scale.py [--n 2000] [--boot 200] [--jobs 2]``.
"""

import argparse
import time
import warnings

import numpy as np
import pandas as pd

from mibgkit.errors import QCWarning
from mibgkit.stats import bootstrap_optimism, cox_forward_stepwise, cox_univariate


def cohort(n: int, k: int = 13, seed: int = 1) -> pd.DataFrame:
    """k standard-normal features, two of them prognostic, exponential times, uniform censoring (days)."""
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(rng.normal(size=(n, k)), columns=[f"f{i:02d}" for i in range(k)])
    t = rng.exponential(1.0 / np.exp(0.5 * x.f00 + 0.3 * x.f01)) * 1000.0
    c = rng.uniform(0, 2000.0, n)
    x["days"], x["event"] = np.minimum(t, c), (t <= c).astype(int)
    return x


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--boot", type=int, default=200)
    ap.add_argument("--jobs", type=int, default=2)
    a = ap.parse_args()
    warnings.simplefilter("ignore", QCWarning)
    d = cohort(a.n)
    features = [c for c in d.columns if c.startswith("f")]
    print(f"n = {a.n}, {int(d.event.sum())} events, {len(features)} features")
    t0 = time.perf_counter()
    cox_univariate(d, "days", "event", features)
    t1 = time.perf_counter()
    step = cox_forward_stepwise(d, "days", "event", features)
    t2 = time.perf_counter()
    bootstrap_optimism(d, "days", "event", features, n_boot=a.boot, n_jobs=a.jobs, progress=False)
    t3 = time.perf_counter()
    print(f"univariate Cox, {len(features)} features   {t1 - t0:7.2f} s")
    print(f"forward stepwise (selected {len(step.selected)})   {t2 - t1:7.2f} s")
    print(f"bootstrap optimism, {a.boot} resamples, {a.jobs} processes   {t3 - t2:7.2f} s "
          f"({1000 * (t3 - t2) / a.boot:.0f} ms per resample)")


if __name__ == "__main__":
    main()

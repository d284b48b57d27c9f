"""Write the seeded input data sets of the golden-value tests (run from the repository root).

``cohort60.csv``: 60 patients, integer follow-up months (many tied event and censoring times),
a binary covariate ``bin``, a continuous ``x`` and ``score``, a three-level ``group``.
``stepwise.csv``: 200 patients built so that forward stepwise selection enters ``z`` (a noisy
sum of ``x2`` and ``x3``) first and removes it once ``x2`` and ``x3`` are in.
``rossi.csv``: the Rossi et al. (1980) recidivism data as shipped by lifelines, a subset of columns.

Run ``python tests/reference/make_data.py``, then ``Rscript tests/reference/make_golden.R``.
"""

import numpy as np
import pandas as pd


def cohort60(seed: int = 20250123) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = 60
    binary = rng.integers(0, 2, n)
    x = np.round(rng.normal(0.0, 1.0, n), 3)
    group = rng.choice(["a", "b", "c"], n)
    lp = 0.9 * binary + 0.5 * x + np.where(group == "c", 0.4, 0.0)
    t_event = rng.exponential(30.0 * np.exp(-lp))
    t_cens = rng.uniform(6.0, 60.0, n)
    time = np.ceil(np.minimum(t_event, t_cens))  # whole months: ties
    event = (t_event <= t_cens).astype(int)
    score = np.round(lp + rng.normal(0.0, 0.8, n), 2)
    score[rng.choice(n, 6, replace=False)] = np.round(score[0], 2)  # tied scores
    return pd.DataFrame({"time": time.astype(int), "event": event, "bin": binary, "x": x,
                         "score": score, "group": group})


def stepwise(seed: int = 6) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = 200
    x2 = np.round(rng.normal(0, 1, n), 3)
    x3 = np.round(rng.normal(0, 1, n), 3)
    z = np.round(x2 + x3 + rng.normal(0, 0.5, n), 3)
    noise = np.round(rng.normal(0, 1, n), 3)
    lp = 0.6 * x2 + 0.6 * x3
    t_event = rng.exponential(10 * np.exp(-lp))
    t_cens = rng.uniform(2, 20, n)
    time = np.round(np.minimum(t_event, t_cens), 2)
    time[time <= 0] = 0.01
    event = (t_event <= t_cens).astype(int)
    return pd.DataFrame({"time": time, "event": event, "z": z, "x2": x2, "x3": x3, "noise": noise})


def rossi() -> pd.DataFrame:
    from lifelines.datasets import load_rossi

    return load_rossi()[["week", "arrest", "fin", "age", "prio", "race", "wexp"]]


if __name__ == "__main__":
    from pathlib import Path

    here = Path(__file__).parent
    cohort60().to_csv(here / "cohort60.csv", index=False)
    stepwise().to_csv(here / "stepwise.csv", index=False)
    rossi().to_csv(here / "rossi.csv", index=False)

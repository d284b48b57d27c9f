"""The reference data sets and R golden values the statistics tests compare against.

The data sets are not the synthetic cohort: lifelines' Rossi recidivism data, seeded data with
tied times (``cohort60``), a stepwise case (``stepwise``) and Heinze & Schemper's breast-cancer data
with a separated covariate (``breast``). The golden values were produced by
``tests/reference/make_golden.R`` and ``make_golden_robustness.R``.
"""

import json
from pathlib import Path

import pandas as pd

REF = Path(__file__).parent / "reference"

#: name -> (table, time column, event column)
DATA = {
    "rossi": (pd.read_csv(REF / "rossi.csv"), "week", "arrest"),
    "cohort60": (pd.read_csv(REF / "cohort60.csv"), "time", "event"),
    "stepwise": (pd.read_csv(REF / "stepwise.csv"), "time", "event"),
    "breast": (pd.read_csv(REF / "breast.csv"), "TIME", "CENS"),
}


def golden(name: str) -> dict:
    """The golden values of ``tests/reference/<name>``."""
    return json.loads((REF / name).read_text())

"""Notebook 01: the feature table, its distributions, and how ASP depends on the MTV definition
and on the grid it is measured on.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from ..cohort import cached_features
from ..features import FEATURE_COLUMNS

__all__ = ["feature_summary", "MTV_DEFINITIONS", "asp_by_mtv_definition", "grid_effect"]

#: MTV definitions compared in the reports: label → (method, parameters of :func:`mibgkit.segment.mtv_mask`).
MTV_DEFINITIONS = {
    "ROI as drawn": ("roi", {}),
    "40 % of Tmax": ("percent_max", {"fraction": 0.4}),
    "50 % of Tmax": ("percent_max", {"fraction": 0.5}),
    "adaptive 50 %": ("adaptive", {"fraction": 0.5}),
}


def feature_summary(features: pd.DataFrame) -> pd.DataFrame:
    """count, mean, median, min, max of every feature column."""
    return (features[list(FEATURE_COLUMNS)].astype(float).describe().T[["count", "mean", "50%", "min", "max"]]
            .rename(columns={"50%": "median"}))


def asp_by_mtv_definition(manifest: pd.DataFrame, workdir, definitions: Mapping[str, tuple] | None = None,
                          ) -> pd.DataFrame:
    """ASP of every measured patient under each MTV definition (one column per definition).

    Extraction runs once per definition and patient and is cached in ``workdir`` like the
    report's own (:func:`mibgkit.cohort.cached_features`).
    """
    definitions = MTV_DEFINITIONS if definitions is None else definitions
    out = {}
    for label, (method, params) in definitions.items():
        features, _ = cached_features(manifest, workdir, mtv_method=method, mtv_params=params, progress=False)
        out[label] = features["asphericity"] if "asphericity" in features else pd.Series(dtype=float)
    return pd.DataFrame(out)


def grid_effect(features: pd.DataFrame) -> pd.DataFrame | None:
    """ASP and MTV on the SPECT grid beside the ROI's own grid (None when not measured)."""
    cols = ["asphericity", "roi_native_asphericity", "mtv_ml", "roi_native_mtv_ml"]
    if not all(c in features for c in cols):
        return None
    return features[cols].astype(float)

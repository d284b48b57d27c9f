"""Feature robustness: each patient measured again under small, plausible changes of the inputs.

As MIRP perturbs a ROI (Zwanenburg et al., Sci Rep 2019), then one step further: the changes a
second reader or a second scan would make, measured through :class:`mibgkit.features.PatientData`
(the same code as ``mibgkit extract``, reusing the patient's crops), and summarised in the number a
clinician reads: how many patients change side at a published cutoff.

Perturbations of one patient (family: variants):

``roi``
    The ROI on the SPECT grid eroded and dilated by one voxel (6-connected structuring element: one
    voxel across each face), 2 variants.
``liver sphere`` / ``muscle spheres``
    The liver sphere, or both muscle spheres together, moved ±``shift_mm`` (default 5 mm) along x,
    y and z (LPS), 6 variants each. Where the manifest gives organ masks, a centre that leaves its
    organ is not used (a reader would not put it there); the count of variants used is reported.
``threshold``
    For a thresholded MTV (``percent_max``, ``adaptive``) the threshold fraction f times 0.95 and
    1.05 (±5 %), 2 variants; not applicable when the MTV is the ROI as drawn.
``poisson``
    The SPECT counts resampled: each voxel's value v replaced by a Poisson draw of mean v (the
    noise of a repeated acquisition of the same count density; a simplification, since
    reconstruction correlates the noise of neighbouring voxels), ``poisson_draws`` variants
    (default 3) with a seed derived from the patient ID. Only for images in counts.

The unperturbed measurement is variant ``original`` of family ``none``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping

import numpy as np
import pandas as pd
import SimpleITK as sitk
from scipy import ndimage

from . import io
from .errors import MibgkitError
from .features import FEATURE_COLUMNS, PatientData, mtv_margin_vox
from .segment import DEFAULT_FRACTIONS

__all__ = ["FAMILIES", "perturb_patient", "perturb_cohort", "robustness_table", "changed_side"]

#: Perturbation families, in report order.
FAMILIES = ("roi", "liver sphere", "muscle spheres", "threshold", "poisson")

_AXES = {"x": 0, "y": 1, "z": 2}


def _seed(patient_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(patient_id.encode(), digest_size=8).digest(), "little")


def _morphed(data: PatientData, margin: np.ndarray, how: str) -> tuple[sitk.Image, tuple]:
    """The ROI on a box of the SPECT grid (one voxel more than ``margin``) eroded or dilated by one voxel."""
    box, start, _ = data.roi_box(np.asarray(margin) + 1)
    arr = sitk.GetArrayViewFromImage(box) != 0
    op = ndimage.binary_erosion if how == "eroded" else ndimage.binary_dilation
    out = sitk.GetImageFromArray(op(arr, structure=ndimage.generate_binary_structure(3, 1)).astype(np.uint8))
    out.CopyInformation(box)
    return out, start


def _inside_organ(data: PatientData, name: str, centre) -> bool:
    """Whether ``centre`` (LPS mm) lies in the organ mask of sphere ``name`` (True without masks)."""
    organs = data.organs or {}
    organ = organs.get(name)
    if organ is None:
        return True
    index = organ.TransformPhysicalPointToIndex(tuple(float(v) for v in centre))
    if not all(0 <= i < n for i, n in zip(index, organ.GetSize())):
        return False
    return bool(organ[index])


def _variants(data: PatientData, *, mtv_method: str, mtv_params: Mapping | None, shift_mm: float,
              poisson_draws: int) -> Iterator[tuple[str, str, dict]]:
    """``(family, variant, measure keyword arguments)`` of every perturbation of one patient."""
    params = dict(mtv_params or {})
    base = {"mtv_method": mtv_method, "mtv_params": params}
    yield "none", "original", base
    margin = mtv_margin_vox(data.spect.GetSpacing(), mtv_method, params)
    for how in ("eroded", "dilated"):
        yield "roi", f"{how} 1 voxel", {**base, "roi_box": _morphed(data, margin, how)}
    for family, names in (("liver sphere", ("liver",)), ("muscle spheres", ("muscle_left", "muscle_right"))):
        for axis, k in _AXES.items():
            for sign in (-1.0, 1.0):
                centres = dict(data.centres)
                for name in names:
                    moved = list(centres[name])
                    moved[k] += sign * shift_mm
                    centres[name] = tuple(moved)
                if all(_inside_organ(data, name, centres[name]) for name in names):
                    yield family, f"{axis} {sign * shift_mm:+g} mm", {**base, "centres": centres}
    if mtv_method in DEFAULT_FRACTIONS:
        f = float(params.get("fraction") or DEFAULT_FRACTIONS[mtv_method])
        for factor in (0.95, 1.05):
            yield "threshold", f"fraction × {factor:g}", {**base, "mtv_params": {**params, "fraction": f * factor}}


def _poisson_copies(data: PatientData, draws: int) -> Iterator[tuple[str, PatientData]]:
    if io.uptake_unit(data.spect) != "counts":
        return
    rng = np.random.default_rng(_seed(data.patient_id))
    values = sitk.GetArrayViewFromImage(data.spect)
    for d in range(draws):
        noisy = sitk.GetImageFromArray(rng.poisson(np.clip(values, 0, None)).astype(np.float32))
        noisy.CopyInformation(data.spect)
        noisy.SetMetaData(io.UNIT_KEY, "counts")
        yield f"draw {d + 1}", PatientData(data.patient_id, noisy, data.roi_native, data.centres, data.organs,
                                           roi_path=data.roi_path)


def perturb_patient(data: PatientData, *, mtv_method: str = "roi", mtv_params: Mapping | None = None,
                    shift_mm: float = 5.0, poisson_draws: int = 3) -> pd.DataFrame:
    """One row per perturbation of one patient: ``family, variant`` and the feature row."""
    rows = []
    for family, variant, kwargs in _variants(data, mtv_method=mtv_method, mtv_params=mtv_params,
                                             shift_mm=shift_mm, poisson_draws=poisson_draws):
        rows.append({"family": family, "variant": variant, **data.measure(**kwargs)})
    for variant, noisy in _poisson_copies(data, poisson_draws):
        rows.append({"family": "poisson", "variant": variant,
                     **noisy.measure(mtv_method=mtv_method, mtv_params=mtv_params)})
    return pd.DataFrame(rows)


def perturb_cohort(manifest: pd.DataFrame, *, mtv_method: str = "roi", mtv_params: Mapping | None = None,
                   shift_mm: float = 5.0, poisson_draws: int = 3, progress: bool = True
                   ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`perturb_patient` for every patient of a manifest: ``(measurements, problems)``.

    A patient whose files cannot be read or measured is a row of ``problems``
    (``patient_id, error``) and the others carry on.
    """
    from tqdm.auto import tqdm

    parts, problems = [], []
    for _, row in tqdm(list(manifest.iterrows()), desc="perturb", unit="patient", disable=not progress):
        pid = str(row["patient_id"])
        try:
            data = PatientData.load(row.to_dict())
            parts.append(perturb_patient(data, mtv_method=mtv_method, mtv_params=mtv_params, shift_mm=shift_mm,
                                         poisson_draws=poisson_draws))
        except MibgkitError as e:
            problems.append({"patient_id": pid, "error": str(e)})
    columns = ["family", "variant", "patient_id", *FEATURE_COLUMNS]
    measurements = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
    return measurements, pd.DataFrame(problems, columns=["patient_id", "error"])


def changed_side(measurements: pd.DataFrame, feature: str, cutoff: float) -> pd.DataFrame:
    """Per family: patients measured, and how many of them some variant puts on the other side of
    ``cutoff`` (``value ≥ cutoff`` is high, as the paper's groups) than their original measurement."""
    original = measurements[measurements["family"] == "none"].set_index("patient_id")[feature] >= cutoff
    rows = []
    for family in FAMILIES:
        part = measurements[measurements["family"] == family]
        if part.empty:
            continue
        high = (part[feature] >= cutoff).groupby(part["patient_id"]).agg(["min", "max"])
        flips = [(pid, bool(lo != hi or lo != original.get(pid, lo))) for pid, (lo, hi) in high.iterrows()]
        n_changed = sum(f for _, f in flips)
        rows.append({"family": family, "feature": feature, "cutoff": cutoff, "n_patients": len(flips),
                     "n_changed": n_changed, "share_changed": n_changed / len(flips) if flips else np.nan,
                     "patients_changed": ", ".join(p for p, f in flips if f)})
    return pd.DataFrame(rows)


def robustness_table(measurements: pd.DataFrame, features=("tmax_lmax", "asphericity", "mtv_ml")) -> pd.DataFrame:
    """ICC(2,1) of each feature over each family's variants plus the original (patients = targets).

    Columns ``feature, family, n_patients, n_variants, icc, ci_lower, ci_upper`` (or ``reason`` where
    the ICC is not estimable: fewer than two complete patients, or no spread).
    """
    from .errors import StatisticsError
    from .stats import icc

    rows = []
    original = measurements[measurements["family"] == "none"]
    for feature in features:
        for family in FAMILIES:
            part = measurements[measurements["family"] == family]
            if part.empty:
                continue
            long = pd.concat([original, part])[["patient_id", "variant", feature]]
            long = long[long["patient_id"].isin(part["patient_id"])]
            row = {"feature": feature, "family": family, "n_patients": int(part["patient_id"].nunique()),
                   "n_variants": int(part["variant"].nunique())}
            try:
                import warnings

                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    res = icc(long, "patient_id", "variant", feature).loc["ICC2"]
                row.update(icc=float(res["icc"]), ci_lower=float(res["ci_lower"]), ci_upper=float(res["ci_upper"]))
                if caught:
                    row["reason"] = "; ".join(str(w.message) for w in caught)
            except StatisticsError as e:
                row.update(icc=np.nan, ci_lower=np.nan, ci_upper=np.nan, reason=str(e))
            rows.append(row)
    return pd.DataFrame(rows)

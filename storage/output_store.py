"""Layout of the reconstruction store: the super-resolved field on the native grid, per-day QA."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pipeline.steps import DAILY, Cadence
from storage import cf
from storage.step_store import StaticVar, StepStore, StepVar

QA_VARIABLES = ("qa_rebin_rmse", "qa_rebin_bias")


def create_output_store(
    path: str,
    days: Sequence[dt.date],
    lat: np.ndarray,
    lon: np.ndarray,
    land_mask: np.ndarray,
    provenance: Mapping[str, Any],
    storage_options: dict[str, Any] | None = None,
    cadence: Cadence = DAILY,
) -> StepStore:
    """Create the reconstruction template on the (trimmed) native grid."""
    coords = {
        "lat": StaticVar(("lat",), np.asarray(lat, "float64"), cf.lat_attrs()),
        "lon": StaticVar(("lon",), np.asarray(lon, "float64"), cf.lon_attrs()),
    }
    sst = cf.sst_attrs("sea surface temperature reconstructed from sparse sensors")
    sst["ancillary_variables"] = "land_mask qa_rebin_rmse qa_rebin_bias status"
    sst["coverage_content_type"] = "modelResult"
    daily = {
        "sst": StepVar(("time", "lat", "lon"), "float32", np.nan, sst),
        "qa_rebin_rmse": StepVar(("time",), "float32", np.nan, {
            "long_name": "RMSE of the prediction re-binned to the LR grid against the sensor bin means "
                         "(seeded bins only); needs no truth",
            "units": "degree_Celsius", "units_metadata": "temperature: difference", "coverage_content_type": "qualityInformation"}),
        "qa_rebin_bias": StepVar(("time",), "float32", np.nan, {
            "long_name": "mean of (re-binned prediction − sensor bin mean) over seeded bins",
            "units": "degree_Celsius", "units_metadata": "temperature: difference",
            "coverage_content_type": "qualityInformation"}),
    }
    static = {"land_mask": StaticVar(("lat", "lon"), np.asarray(land_mask, "int8"), cf.land_mask_attrs())}
    attrs = cf.dataset_attrs(
        "seedfield reconstruction: sea surface temperature from sparse sensors",
        "Sea surface temperature reconstructed on the native grid by a neural network from the "
        "sparse sensors of the seedings store, land masked, with per-step QA against the sensors; "
        "a step counts only once its commit marker (_seedfield/commits/STEP.json) says status ok.",
        "reconstruction",
        lat,
        lon,
        keywords="sea surface temperature, super-resolution, sparse sensors, neural network reconstruction",
        seedfield_store="reconstruction",
        **dict(provenance),
    )
    return StepStore.create(path, days, coords, daily, static, attrs, storage_options, cadence)

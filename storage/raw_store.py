"""Layout of the raw store: the archive's field, step by step, on its native grid, plus a land mask."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pipeline.steps import DAILY, Cadence
from storage import cf
from storage.step_store import StaticVar, StepStore, StepVar

LAND_MASK = "land_mask"
_SUMMARY = (
    "Daily fields decoded from the source archive; a day counts only once its commit "
    "marker (_seedfield/commits/DAY.json) says status ok."
)


def create_raw_store(
    path: str,
    days: Sequence[dt.date],
    lat: np.ndarray,
    lon: np.ndarray,
    land_mask: np.ndarray,
    variable: str = "sst",
    variable_attrs: Mapping[str, Any] | None = None,
    attrs: Mapping[str, Any] | None = None,
    storage_options: dict[str, Any] | None = None,
    cadence: Cadence = DAILY,
) -> StepStore:
    """Create the raw store's template over ``days`` (steps of ``cadence``) on the grid (lat ascending)."""
    var_attrs = cf.sst_attrs()
    for key in ("standard_name", "long_name", "comment"):
        if variable_attrs and str(variable_attrs.get(key, "")).strip() not in ("", "unknown"):
            var_attrs[key] = str(variable_attrs[key])
    if variable != "sst" and var_attrs["standard_name"] == "sea_surface_temperature":
        del var_attrs["standard_name"]  # another quantity without a CF name of its own (ERA5 writes 'unknown')
    var_attrs["ancillary_variables"] = f"{LAND_MASK} status"
    if var_attrs.get("standard_name") != "sea_surface_temperature":
        var_attrs.pop("units_metadata", None)
    coords = {
        "lat": StaticVar(("lat",), np.asarray(lat, dtype="float64"), cf.lat_attrs()),
        "lon": StaticVar(("lon",), np.asarray(lon, dtype="float64"), cf.lon_attrs()),
    }
    static = {LAND_MASK: StaticVar(("lat", "lon"), np.asarray(land_mask, dtype="int8"), cf.land_mask_attrs())}
    daily = {variable: StepVar(("time", "lat", "lon"), "float32", np.nan, var_attrs)}
    summary = _SUMMARY if cadence == DAILY else _SUMMARY.replace("Daily fields", f"Fields (step {cadence.code})").replace("a day", "a step").replace("DAY", "STEP")
    global_attrs = cf.dataset_attrs(
        f"seedfield raw store: {var_attrs.get('long_name', variable)}",
        summary,
        "raw",
        lat,
        lon,
        seedfield_store="raw",
        seedfield_variable=variable,
        **dict(attrs or {}),
    )
    return StepStore.create(path, days, coords, daily, static, global_attrs, storage_options, cadence)


def raw_variable(store: StepStore) -> str:
    """Name of the field variable of a raw store."""
    return str(store.attrs.get("seedfield_variable", "sst"))

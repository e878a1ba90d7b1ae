"""Layout of the raw store: the archive's daily field on its native grid, plus a land mask."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from storage import cf
from storage.daily_store import DailyStore, DailyVar, StaticVar

LAND_MASK = "land_mask"


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
) -> DailyStore:
    """Create the raw store's template over ``days`` on the grid (lat ascending)."""
    var_attrs = cf.sst_attrs()
    for key in ("long_name", "comment"):
        if variable_attrs and key in variable_attrs:
            var_attrs[key] = str(variable_attrs[key])
    var_attrs["ancillary_variables"] = LAND_MASK
    coords = {
        "lat": StaticVar(("lat",), np.asarray(lat, dtype="float64"), cf.lat_attrs()),
        "lon": StaticVar(("lon",), np.asarray(lon, dtype="float64"), cf.lon_attrs()),
    }
    static = {LAND_MASK: StaticVar(("lat", "lon"), np.asarray(land_mask, dtype="int8"), cf.land_mask_attrs())}
    daily = {variable: DailyVar(("time", "lat", "lon"), "float32", np.nan, var_attrs)}
    global_attrs = cf.dataset_attrs(
        "seedfield raw store",
        seedfield_store="raw",
        seedfield_variable=variable,
        summary="Daily fields decoded from the source archive; a day counts only once its commit "
        "marker (_seedfield/commits/DAY.json) says status ok.",
        **dict(attrs or {}),
    )
    return DailyStore.create(path, days, coords, daily, static, global_attrs, storage_options)


def raw_variable(store: DailyStore) -> str:
    """Name of the field variable of a raw store."""
    return str(store.attrs.get("seedfield_variable", "sst"))

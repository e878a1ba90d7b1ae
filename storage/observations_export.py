"""Export an observations store as CF-1.11 discrete-sampling-geometry netCDF (featureType point).

The store's padded (step, slot) arrays are not a CF layout, so each exported file lists the good
observations of its committed steps along one ``obs`` dimension (a CF point feature: every
variable on ``obs``, with ``time``, ``lat`` and ``lon`` as its coordinates). The target grid is
not repeated (it is in the store: ``lat``, ``lon``, ``land_mask``); the grid's extent is in the
ACDD geospatial attributes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from pipeline.steps import Step, step_label
from storage import cf
from storage.observations_store import read_step_observations
from storage.step_store import StepStore


def observations_dataset(store: StepStore, steps: Sequence[Step], history: str) -> xr.Dataset:
    """The good observations of ``steps`` (committed ones only) as a CF point dataset."""
    tables = [read_step_observations(store, s) for s in steps]
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    value_attrs = {k: v for k, v in store.group["obs_value"].attrs.items()
                   if k in ("standard_name", "units", "units_metadata")}
    value_attrs["long_name"] = str(store.group["obs_value"].attrs.get("long_name", "observed value")).split(" at ")[0]
    data = {
        "value": ("obs", table["value"].to_numpy("float64"), {
            **value_attrs, "coordinates": "time lat lon", "ancillary_variables": "quality",
            "coverage_content_type": "physicalMeasurement"}),
        "platform": ("obs", table["platform"].astype(str).to_numpy(object), {
            "long_name": "platform id (empty: the source had none)", "coverage_content_type": "auxiliaryInformation"}),
        "quality": ("obs", table["quality"].to_numpy("int16"), {
            "standard_name": "quality_flag", "long_name": "quality flag as the source gave it; -1: none",
            "units": "1",
            "coverage_content_type": "qualityInformation"}),
    }
    coords = {
        "time": ("obs", table["time"].to_numpy("datetime64[ns]"), cf.time_attrs("time of the observation")),
        "lat": ("obs", table["lat"].to_numpy("float64"), {**cf.lat_attrs(), "coverage_content_type": "coordinate"}),
        "lon": ("obs", table["lon"].to_numpy("float64"), {**cf.lon_attrs(), "coverage_content_type": "coordinate"}),
    }
    if np.isfinite(table["depth"].to_numpy("float64")).any():
        coords["depth"] = ("obs", table["depth"].to_numpy("float64"), {
            "standard_name": "depth", "units": "m", "positive": "down", "axis": "Z",
            "coverage_content_type": "coordinate"})
        data["value"][2]["coordinates"] = "time lat lon depth"
    attrs = {k: _attr(v) for k, v in store.attrs.items() if not k.startswith("seedfield_markers")}
    attrs.update(cf.time_coverage_attrs(store.cadence, steps))
    if len(table):  # ACDD extents: those of the observations (the grid's are in the store)
        attrs.update({k: v for k, v in cf.geospatial_attrs(
            np.array([table["lat"].min(), table["lat"].max()]),
            np.array([table["lon"].min(), table["lon"].max()])).items() if not k.endswith("_resolution")})
    attrs.update({
        "featureType": "point", "cdm_data_type": "Point",
        "history": cf.append_history(attrs.get("history"), history),
        "id": f"{attrs.get('id', 'seedfield')}.{step_label(steps[0])}_{step_label(steps[-1])}",
        "date_modified": cf.utc_now(),
        "comment": "The good observations of the committed steps, one per element of obs (CF point feature); "
                   "refused rows are counted by reason in the store's commit markers, not exported.",
    })
    return xr.Dataset(data, coords=coords, attrs=attrs)


def _attr(value: Any) -> Any:
    import json

    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str | int | float | np.number):
        return value
    if isinstance(value, list | tuple) and value and all(isinstance(v, int | float) for v in value):
        return list(value)
    return json.dumps(value)


def write_observations_netcdf(ds: xr.Dataset, path: str, complevel: int = 4) -> str:
    """Write ``ds`` atomically (``.part`` then rename)."""
    enc: dict[str, dict[str, Any]] = {}
    for name, var in ds.variables.items():
        e: dict[str, Any] = {"zlib": True, "complevel": complevel, "shuffle": True}
        if name == "time":
            e.update(units="seconds since 1970-01-01 00:00:00", calendar="proleptic_gregorian", dtype="float64")
        e["_FillValue"] = None if name in ("time", "lat", "lon", "depth") or var.dtype.kind != "f" else np.nan
        if var.dtype == object:
            e = {"zlib": True, "complevel": complevel}
        enc[str(name)] = e
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    ds.to_netcdf(path + ".part", format="NETCDF4", engine="netcdf4", encoding=enc)
    os.replace(path + ".part", path)
    return path

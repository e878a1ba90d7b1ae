"""Layout of the observations store: each step's good observations, padded to a fixed width.

A :class:`~storage.step_store.StepStore` (template, one region write per step, commit marker
last) whose per-step variables have an ``obs`` dimension of ``max_per_step`` slots; slots past
the step's ``n_obs`` are padding (NaN, -1 or empty). Platform ids are fixed-width UTF-8 character
arrays (``obs_platform``, ``(time, obs, platform_char)`` of uint8, 0 = padding), which the Zarr v3
specification covers (its fixed-width string types are not yet specified). The target grid
(``lat``, ``lon``, ``land_mask``) is stored as static variables, so later stages read it from the
store alone. Each step's commit marker also records how many rows were refused, by reason.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from pipeline.observations import OBSERVATION_COLUMNS, PLATFORM_BYTES, empty_observations
from pipeline.steps import Cadence, Step
from storage import cf
from storage.step_store import StaticVar, StepStore, StepVar

STORE_KIND = "observations"
LAND_MASK = "land_mask"
TIME_UNITS = "seconds since 1970-01-01 00:00:00"
_EPOCH = np.datetime64("1970-01-01T00:00:00", "ns")
#: per-step variable → table column
STEP_VARIABLES = {"obs_time": "time", "obs_lat": "lat", "obs_lon": "lon", "obs_value": "value",
                  "obs_platform": "platform", "obs_quality": "quality", "obs_depth": "depth"}


def create_observations_store(
    path: str,
    steps: Sequence[Step],
    lat: np.ndarray,
    lon: np.ndarray,
    land_mask: np.ndarray,
    max_per_step: int,
    value_attrs: Mapping[str, Any] | None = None,
    attrs: Mapping[str, Any] | None = None,
    storage_options: dict[str, Any] | None = None,
    cadence: Cadence | None = None,
) -> StepStore:
    """Create the template over ``steps`` on the grid (latitude and longitude ascending)."""
    coords = {
        "lat": StaticVar(("lat",), np.asarray(lat, "float64"), cf.lat_attrs()),
        "lon": StaticVar(("lon",), np.asarray(lon, "float64"), cf.lon_attrs()),
        "obs": StaticVar(("obs",), np.arange(max_per_step, dtype="int32"),
                         {"long_name": "observation slot in the step", "units": "1"}),
        "platform_char": StaticVar(("platform_char",), np.arange(PLATFORM_BYTES, dtype="int32"),
                                   {"long_name": "byte of the platform id", "units": "1"}),
    }
    value = {"long_name": "observed value", "coverage_content_type": "physicalMeasurement",
             **{k: v for k, v in dict(value_attrs or {}).items() if k in ("standard_name", "long_name", "units")}}
    value.setdefault("units", "1")
    pad = "; padding past n_obs: "
    per_step = {
        "n_obs": StepVar(("time",), "int32", 0, {
            "long_name": "number of good observations stored in the step", "units": "1",
            "coverage_content_type": "auxiliaryInformation"}),
        "obs_time": StepVar(("time", "obs"), "float64", np.nan, {
            "long_name": "time of each observation" + pad + "NaN", "units": TIME_UNITS,
            "calendar": "proleptic_gregorian", "coverage_content_type": "coordinate"}),
        "obs_lat": StepVar(("time", "obs"), "float64", np.nan, cf.other_position_attrs(
            "latitude of each observation" + pad + "NaN", "degrees_north")),
        "obs_lon": StepVar(("time", "obs"), "float64", np.nan, cf.other_position_attrs(
            "longitude of each observation, as the source gives it" + pad + "NaN", "degrees_east")),
        "obs_value": StepVar(("time", "obs"), "float64", np.nan, {
            **value, "long_name": f"{value['long_name']} at obs_lat, obs_lon, obs_time" + pad + "NaN"}),
        "obs_platform": StepVar(("time", "obs", "platform_char"), "uint8", 0, {
            "long_name": "platform id, UTF-8 bytes padded with 0 (empty: the source has none)", "units": "1",
            "coverage_content_type": "auxiliaryInformation"}),
        "obs_quality": StepVar(("time", "obs"), "int16", -1, {
            "long_name": "quality flag as the source gives it; -1: none (or padding)", "units": "1",
            "coverage_content_type": "qualityInformation"}),
        "obs_depth": StepVar(("time", "obs"), "float64", np.nan, {
            "long_name": "depth of each observation; NaN: none (or padding)", "units": "m", "positive": "down",
            "coverage_content_type": "coordinate"}),
    }
    static = {LAND_MASK: StaticVar(("lat", "lon"), np.asarray(land_mask, "int8"), cf.land_mask_attrs())}
    global_attrs = cf.dataset_attrs(
        "seedfield observations store: scattered observations by step",
        "Per step: the observations that passed validation (time, position, value, platform, quality, depth), "
        "padded to max_per_step slots, on the target grid lat/lon/land_mask; a step counts only once its commit "
        "marker (_seedfield/commits/STEP.json) says status ok; the marker also counts the refused rows by reason.",
        STORE_KIND, lat, lon, keywords="in situ observations, drifting buoys, moorings, sparse sensors",
        seedfield_store=STORE_KIND, max_per_step=int(max_per_step), cdm_data_type="Point",
        **dict(attrs or {}),
    )
    kwargs = {"cadence": cadence} if cadence is not None else {}
    return StepStore.create(path, steps, coords, per_step, static, global_attrs, storage_options, **kwargs)


def is_observations_store(store: StepStore) -> bool:
    return store.attrs.get("seedfield_store") == STORE_KIND


def step_arrays(table: pd.DataFrame, max_per_step: int) -> dict[str, np.ndarray]:
    """A step's good rows (at most ``max_per_step``) as the store's padded per-step arrays."""
    n = len(table)
    if n > max_per_step:
        raise ValueError(f"{n} observations do not fit in the store's {max_per_step} slots")

    def padded(values: np.ndarray, fill: Any, dtype: str) -> np.ndarray:
        out = np.full(max_per_step, fill, dtype=dtype)
        out[:n] = values
        return out

    seconds = (table["time"].to_numpy("datetime64[ns]") - _EPOCH) / np.timedelta64(1, "s")
    platform = np.zeros((max_per_step, PLATFORM_BYTES), "uint8")
    for i, name in enumerate(table["platform"]):
        raw = str(name).encode()[:PLATFORM_BYTES]
        platform[i, :len(raw)] = np.frombuffer(raw, "uint8")
    return {
        "n_obs": np.asarray(n, "int32"),
        "obs_time": padded(seconds, np.nan, "float64"),
        "obs_lat": padded(table["lat"].to_numpy(), np.nan, "float64"),
        "obs_lon": padded(table["lon"].to_numpy(), np.nan, "float64"),
        "obs_value": padded(table["value"].to_numpy(), np.nan, "float64"),
        "obs_platform": platform,
        "obs_quality": padded(table["quality"].to_numpy(), -1, "int16"),
        "obs_depth": padded(table["depth"].to_numpy(), np.nan, "float64"),
    }


def arrays_digest(arrays: Mapping[str, np.ndarray]) -> str:
    """sha256 of a step's arrays: a re-run with the same rows writes nothing."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        h.update(name.encode())
        h.update(np.ascontiguousarray(arrays[name]).tobytes())
    return h.hexdigest()


def table_from_arrays(arrays: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """The table format from one step's stored arrays (padding dropped)."""
    n = int(arrays["n_obs"])
    if n == 0:
        return empty_observations()
    seconds = np.asarray(arrays["obs_time"][:n], "float64")
    time = _EPOCH + np.round(seconds * 1e9).astype("int64").astype("timedelta64[ns]")
    platform = [bytes(row).rstrip(b"\0").decode() for row in np.asarray(arrays["obs_platform"][:n], "uint8")]
    table = pd.DataFrame({
        "time": time, "lat": np.asarray(arrays["obs_lat"][:n], "float64"),
        "lon": np.asarray(arrays["obs_lon"][:n], "float64"), "value": np.asarray(arrays["obs_value"][:n], "float64"),
        "platform": pd.Series(platform, dtype="object"), "quality": np.asarray(arrays["obs_quality"][:n], "int16"),
        "depth": np.asarray(arrays["obs_depth"][:n], "float64")})
    return table[list(OBSERVATION_COLUMNS)]


def read_step_observations(store: StepStore, step: dt.date) -> pd.DataFrame:
    """The good observations of ``step`` (columns of :data:`pipeline.observations.OBSERVATION_COLUMNS`);
    an empty table when the step is not committed (its marker is not ``ok``)."""
    marker = store.marker(step)
    if not marker or marker.get("status") != "ok":
        return empty_observations()
    return table_from_arrays(store.read_step(step, ["n_obs", *STEP_VARIABLES]))


def read_observation_grid(store: StepStore) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The store's target grid: latitude, longitude (ascending) and the land mask (bool, (lat, lon))."""
    return store.read_static("lat"), store.read_static("lon"), store.read_static(LAND_MASK).astype(bool)

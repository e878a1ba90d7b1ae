"""Layout of the seedings store: per-day random sensors, LR bin means, HR sparse targets.

Grids (docs/architecture.md): the native grid trimmed to a multiple of ``bin_size``; the LR grid
of ``bin_size``-cell bins; the HR grid of ``bin_size // upsampling``-cell cells. Sensors are kept
as flat indices into the trimmed native grid, padded with -1 to a fixed count per day, and
as latitude/longitude (``sensor_lat``/``sensor_lon``, NaN padding) derived from them on write.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pipeline.steps import DAILY, Cadence, step_label
from storage import cf
from storage.step_store import StaticVar, StepStore, StepVar

NORM_VARIABLES = ("lr_norm_mean", "lr_norm_std", "hr_norm_mean", "hr_norm_std")


def block_centres(values: np.ndarray, factor: int) -> np.ndarray:
    """Coordinates of coarse cells: the mean of each run of ``factor`` fine-cell centres."""
    n = len(values) // factor
    return np.asarray(values[: n * factor], dtype="float64").reshape(n, factor).mean(axis=1)


def create_seedings_store(
    path: str,
    days: Sequence[dt.date],
    lat: np.ndarray,
    lon: np.ndarray,
    land_mask: np.ndarray,
    bin_size: int,
    hr_cell: int,
    max_sensors: int,
    params: Mapping[str, Any],
    attrs: Mapping[str, Any] | None = None,
    storage_options: dict[str, Any] | None = None,
    cadence: Cadence = DAILY,
    platforms: bool = False,
) -> StepStore:
    """Create the seedings template (steps of ``cadence``). ``lat``/``lon``/``land_mask`` are already trimmed.

    ``platforms``: the sensors are real observations; a per-sensor ``sensor_platform`` code is
    kept for leave-platform-out cross-validation (names in each step's commit marker)."""
    lat_lr, lon_lr = block_centres(lat, bin_size), block_centres(lon, bin_size)
    lat_hr, lon_hr = block_centres(lat, hr_cell), block_centres(lon, hr_cell)
    # One horizontal coordinate set: the native grid (lat, lon) is the only one with coordinate
    # variables. The LR and HR grids are plain index dimensions (y_lr …); their latitudes and
    # longitudes are variables named in each field's comment, so `ds.cf["longitude"]` is lon.
    coords = {
        "lat": StaticVar(("lat",), np.asarray(lat, "float64"), cf.lat_attrs()),
        "lon": StaticVar(("lon",), np.asarray(lon, "float64"), cf.lon_attrs()),
        "sensor": StaticVar(("sensor",), np.arange(max_sensors, dtype="int32"), {"long_name": "sensor slot", "units": "1"}),
    }
    units = "degree_Celsius"
    sst = {"standard_name": "sea_surface_temperature", "units": units, "units_metadata": "temperature: on_scale"}
    lr_where = "; bins centred at lat_lr(y_lr), lon_lr(x_lr)"
    hr_where = "; cells centred at lat_hr(y_hr), lon_hr(x_hr)"
    daily = {
        "sensor_index": StepVar(("time", "sensor"), "int32", -1, {
            "long_name": "flat index (row * nlon + col) of each sensor on the native grid; -1 = padding",
            "units": "1", "coverage_content_type": "auxiliaryInformation"}),
        "sensor_lat": StepVar(("time", "sensor"), "float32", np.nan, cf.other_position_attrs(
            "latitude of each sensor (native cell centre); NaN = padding", "degrees_north")),
        "sensor_lon": StepVar(("time", "sensor"), "float32", np.nan, cf.other_position_attrs(
            "longitude of each sensor (native cell centre); NaN = padding", "degrees_east")),
        "sensor_value": StepVar(("time", "sensor"), "float32", np.nan, {
            **sst, "long_name": "sensor reading (field value plus noise) at sensor_lat, sensor_lon",
            "coverage_content_type": "physicalMeasurement"}),
        "lr_mean": StepVar(("time", "y_lr", "x_lr"), "float32", np.nan, {
            **sst, "long_name": "mean of the sensors in each LR bin; NaN = no sensor",
            "comment": "LR grid" + lr_where, "ancillary_variables": "lr_count",
            "coverage_content_type": "physicalMeasurement"}),
        "lr_count": StepVar(("time", "y_lr", "x_lr"), "int16", 0, {
            "standard_name": "number_of_observations", "long_name": "number of sensors in each LR bin",
            "units": "1", "comment": "LR grid" + lr_where, "coverage_content_type": "auxiliaryInformation"}),
        "hr_mean": StepVar(("time", "y_hr", "x_hr"), "float32", np.nan, {
            **sst, "long_name": "mean of the sensors in each HR cell (sparse target); NaN = no sensor",
            "comment": "HR grid" + hr_where, "ancillary_variables": "hr_flag",
            "coverage_content_type": "physicalMeasurement"}),
        "hr_flag": StepVar(("time", "y_hr", "x_hr"), "int8", 0, {
            "standard_name": "status_flag", "long_name": "1 where at least one sensor fell in the HR cell",
            "flag_values": [0, 1], "flag_meanings": "empty seeded", "comment": "HR grid" + hr_where,
            "coverage_content_type": "qualityInformation"}),
    }
    if platforms:
        daily["sensor_platform"] = StepVar(("time", "sensor"), "int32", -1, {
            "long_name": "code of the platform whose observations the sensor averages",
            "comment": "a stable hash of the platform name (names in the step's commit marker); "
                       "-1 = no platform named, or padding; -2 = the cell mixes several platforms",
            "units": "1", "coverage_content_type": "auxiliaryInformation"})
    nan_lr = np.full((len(lat_lr), len(lon_lr)), np.nan, "float32")
    nan_hr = np.full((len(lat_hr), len(lon_hr)), np.nan, "float32")

    def stat(long_name: str, dims: tuple[str, str], values: np.ndarray) -> StaticVar:
        where = lr_where if dims[0] == "y_lr" else hr_where
        return StaticVar(dims, values, {"long_name": long_name, "units": units, "comment": where.lstrip("; "),
                                        "coverage_content_type": "auxiliaryInformation"})

    static = {
        "lat_lr": StaticVar(("y_lr",), lat_lr, cf.other_position_attrs("latitude of LR bin centres", "degrees_north")),
        "lon_lr": StaticVar(("x_lr",), lon_lr, cf.other_position_attrs("longitude of LR bin centres", "degrees_east")),
        "lat_hr": StaticVar(("y_hr",), lat_hr, cf.other_position_attrs("latitude of HR cell centres", "degrees_north")),
        "lon_hr": StaticVar(("x_hr",), lon_hr, cf.other_position_attrs("longitude of HR cell centres", "degrees_east")),
        "land_mask": StaticVar(("lat", "lon"), np.asarray(land_mask, "int8"), cf.land_mask_attrs()),
        "lr_norm_mean": stat("per-bin mean of lr_mean over the statistics period (weight: lr_count > 0)", ("y_lr", "x_lr"), nan_lr),
        "lr_norm_std": stat("per-bin population std of lr_mean over the statistics period", ("y_lr", "x_lr"), nan_lr),
        "hr_norm_mean": stat("flag-weighted per-cell mean of hr_mean over the statistics period", ("y_hr", "x_hr"), nan_hr),
        "hr_norm_std": stat("flag-weighted per-cell population std of hr_mean", ("y_hr", "x_hr"), nan_hr),
    }
    global_attrs = cf.dataset_attrs(
        "seedfield seedings store: sparse random sensors of sea surface temperature",
        "Per step: random sensors drawn from the raw store's field (positions as native-grid "
        "indices and as latitude/longitude, readings with noise), their means on the LR grid "
        "(model input) and on the HR grid (sparse target), and per-cell normalisation statistics; "
        "a step counts only once its commit marker (_seedfield/commits/STEP.json) says status ok.",
        "seedings",
        lat,
        lon,
        seedfield_store="seedings",
        **{f"seeding_{k}": v for k, v in params.items()},
        max_sensors=int(max_sensors),
        **dict(attrs or {}),
    )
    return StepStore.create(path, days, coords, daily, static, global_attrs, storage_options, cadence)


def seeding_params(store: StepStore) -> dict[str, Any]:
    """The seeding parameters a store was created with."""
    return {k.removeprefix("seeding_"): v for k, v in store.attrs.items() if k.startswith("seeding_")}


def write_norm_stats(store: StepStore, arrays: Mapping[str, np.ndarray], period: tuple[dt.date, dt.date], n_days: int) -> None:
    """Store the normalisation statistics and the period they cover."""
    for name in NORM_VARIABLES:
        values = np.asarray(arrays[name], dtype="float32")
        if not np.array_equal(store.group[name][...], values, equal_nan=True):  # unchanged: no byte written
            store.group[name][...] = values
    store.update_attrs(
        norm_period_start=step_label(period[0]), norm_period_end=step_label(period[1]), norm_n_days=int(n_days)
    )


def read_norm_stats(store: StepStore) -> dict[str, np.ndarray]:
    if "norm_period_start" not in store.attrs:
        raise KeyError(f"{store.path}: no normalisation statistics yet; run `seedfield prepare` first")
    return {name: store.read_static(name) for name in NORM_VARIABLES}


def has_platforms(store: StepStore) -> bool:
    """Whether the store's sensors are observations with platform codes."""
    return "sensor_platform" in store.group


def read_platform_sensors(store: StepStore, step: dt.date) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One step's sensors as ``(flat index int64, value float32, platform code int32)``, padding dropped."""
    s = store.read_step(step, ["sensor_index", "sensor_value", "sensor_platform"])
    keep = s["sensor_index"] >= 0
    return s["sensor_index"][keep].astype("int64"), s["sensor_value"][keep], s["sensor_platform"][keep].astype("int32")


def read_sensors(store: StepStore, steps: Sequence[dt.date]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each step's sensors as ``(flat native index int64, value float32)``, padding dropped."""
    out = []
    for step in steps:
        s = store.read_step(step, ["sensor_index", "sensor_value"])
        keep = s["sensor_index"] >= 0
        out.append((s["sensor_index"][keep].astype("int64"), s["sensor_value"][keep]))
    return out

"""Layout of the seedings store: per-day random sensors, LR bin means, HR sparse targets.

Grids (docs/architecture.md): the native grid trimmed to a multiple of ``bin_size``; the LR grid
of ``bin_size``-cell bins; the HR grid of ``bin_size // upsampling``-cell cells. Sensors are kept
as flat indices into the trimmed native grid, padded with -1 to a fixed count per day.
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
) -> StepStore:
    """Create the seedings template (steps of ``cadence``). ``lat``/``lon``/``land_mask`` are already trimmed."""
    lat_lr, lon_lr = block_centres(lat, bin_size), block_centres(lon, bin_size)
    lat_hr, lon_hr = block_centres(lat, hr_cell), block_centres(lon, hr_cell)
    coords = {
        "lat": StaticVar(("lat",), np.asarray(lat, "float64"), cf.lat_attrs()),
        "lon": StaticVar(("lon",), np.asarray(lon, "float64"), cf.lon_attrs()),
        "lat_lr": StaticVar(("lat_lr",), lat_lr, {**cf.lat_attrs(), "long_name": "latitude of LR bins"}),
        "lon_lr": StaticVar(("lon_lr",), lon_lr, {**cf.lon_attrs(), "long_name": "longitude of LR bins"}),
        "lat_hr": StaticVar(("lat_hr",), lat_hr, {**cf.lat_attrs(), "long_name": "latitude of HR cells"}),
        "lon_hr": StaticVar(("lon_hr",), lon_hr, {**cf.lon_attrs(), "long_name": "longitude of HR cells"}),
        "sensor": StaticVar(("sensor",), np.arange(max_sensors, dtype="int32"), {"long_name": "sensor slot"}),
    }
    units = "degree_Celsius"
    daily = {
        "sensor_index": StepVar(("time", "sensor"), "int32", -1, {
            "long_name": "flat index (row * nlon + col) of each sensor on the native grid; -1 = padding"}),
        "sensor_value": StepVar(("time", "sensor"), "float32", np.nan, {
            "long_name": "sensor reading (field value plus noise)", "units": units}),
        "lr_mean": StepVar(("time", "lat_lr", "lon_lr"), "float32", np.nan, {
            "long_name": "mean of the sensors in each LR bin; NaN = no sensor", "units": units}),
        "lr_count": StepVar(("time", "lat_lr", "lon_lr"), "uint16", 0, {
            "long_name": "number of sensors in each LR bin", "units": "1"}),
        "hr_mean": StepVar(("time", "lat_hr", "lon_hr"), "float32", np.nan, {
            "long_name": "mean of the sensors in each HR cell (sparse target); NaN = no sensor",
            "units": units}),
        "hr_flag": StepVar(("time", "lat_hr", "lon_hr"), "uint8", 0, {
            "long_name": "1 where at least one sensor fell in the HR cell", "units": "1",
            "flag_values": [0, 1], "flag_meanings": "empty seeded"}),
    }
    nan_lr = np.full((len(lat_lr), len(lon_lr)), np.nan, "float32")
    nan_hr = np.full((len(lat_hr), len(lon_hr)), np.nan, "float32")
    static = {
        "land_mask": StaticVar(("lat", "lon"), np.asarray(land_mask, "int8"), cf.land_mask_attrs()),
        "lr_norm_mean": StaticVar(("lat_lr", "lon_lr"), nan_lr, {
            "long_name": "per-bin mean of lr_mean over the statistics period (weight: lr_count > 0)", "units": units}),
        "lr_norm_std": StaticVar(("lat_lr", "lon_lr"), nan_lr, {
            "long_name": "per-bin population std of lr_mean over the statistics period", "units": units}),
        "hr_norm_mean": StaticVar(("lat_hr", "lon_hr"), nan_hr, {
            "long_name": "flag-weighted per-cell mean of hr_mean over the statistics period", "units": units}),
        "hr_norm_std": StaticVar(("lat_hr", "lon_hr"), nan_hr, {
            "long_name": "flag-weighted per-cell population std of hr_mean", "units": units}),
    }
    global_attrs = cf.dataset_attrs(
        "seedfield seedings store",
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
        store.group[name][...] = np.asarray(arrays[name], dtype="float32")
    store.update_attrs(
        norm_period_start=step_label(period[0]), norm_period_end=step_label(period[1]), norm_n_days=int(n_days)
    )


def read_norm_stats(store: StepStore) -> dict[str, np.ndarray]:
    if "norm_period_start" not in store.attrs:
        raise KeyError(f"{store.path}: no normalisation statistics yet; run `seedfield prepare` first")
    return {name: store.read_static(name) for name in NORM_VARIABLES}


def read_sensors(store: StepStore, steps: Sequence[dt.date]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each step's sensors as ``(flat native index int64, value float32)``, padding dropped."""
    out = []
    for step in steps:
        s = store.read_step(step, ["sensor_index", "sensor_value"])
        keep = s["sensor_index"] >= 0
        out.append((s["sensor_index"][keep].astype("int64"), s["sensor_value"][keep]))
    return out

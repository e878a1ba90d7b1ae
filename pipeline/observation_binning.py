"""Real observations onto the native, LR and HR grids, exactly as seeded sensors are binned.

An observation is snapped to the native cell whose centre is nearest (within half a cell; farther
ones, and those on land, are dropped with a count). The observations of one step that fall in
one cell become one *sensor*: their mean, at the cell's flat index, with the names of the
platforms that made them. The sensors then go through :func:`pipeline.binning.bin_mean` as
:func:`pipeline.seeding.seed_day`'s do, so a model trained on seeded sensors reads these the
same way. Nothing here reads a gridded field.

Platforms are kept per sensor so that cross-validation can withhold whole platforms
(:mod:`pipeline.platform_cv`). A sensor's platform *code* is a stable 31-bit number derived
from the name (the same name gets the same code in every step and every run); a sensor with no
platform gets :data:`NO_PLATFORM`, one whose cell mixes platforms :data:`MIXED_PLATFORMS`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.binning import bin_mean
from pipeline.seeding import SeededDay, SeedingParams, Sensors

__all__ = [
    "MIXED_PLATFORMS",
    "NO_PLATFORM",
    "ObservedStep",
    "bin_observations",
    "nearest_cells",
    "platform_code",
]

NO_PLATFORM = -1
"""Code of a sensor whose observations name no platform (also the padding value in the store)."""
MIXED_PLATFORMS = -2
"""Code of a sensor whose cell holds observations of more than one platform in that step."""


def platform_code(name: str) -> int:
    """Stable non-negative int32 code of a platform name; ``""`` (no platform) is :data:`NO_PLATFORM`."""
    if not name:
        return NO_PLATFORM
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big") & 0x7FFFFFFF


@dataclass
class ObservedStep:
    """One step of observations binned like a seeded snapshot.

    Attributes:
        seeded: sensors (sorted unique cell indices, mean values) and the LR/HR arrays,
            as :func:`pipeline.seeding.seed_day` gives them.
        platforms: per sensor, the sorted names of the platforms whose observations it averages
            (empty tuple: none named).
        platform: int32 (n,) per sensor: :func:`platform_code` of its one platform,
            :data:`NO_PLATFORM` or :data:`MIXED_PLATFORMS`.
        n_obs: int32 (n,) observations averaged in each sensor.
        dropped: observations left out, by reason (``outside``, ``land``).
    """

    seeded: SeededDay
    platforms: list[tuple[str, ...]]
    platform: np.ndarray
    n_obs: np.ndarray
    dropped: dict[str, int]


def _nearest_axis(values: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest centre along one monotonic axis, and whether it is within half a cell."""
    centres = np.asarray(centres, dtype=np.float64)
    order = np.argsort(centres, kind="stable")
    ordered = centres[order]
    half = 0.5 * (float(np.median(np.diff(ordered))) if len(ordered) > 1 else np.inf)
    right = np.clip(np.searchsorted(ordered, values), 1, max(len(ordered) - 1, 1))
    left = right - 1
    take_left = np.abs(values - ordered[left]) <= np.abs(ordered[right] - values)
    nearest = np.where(take_left, left, right) if len(ordered) > 1 else np.zeros(len(values), np.int64)
    inside = np.abs(values - ordered[nearest]) <= half * (1 + 1e-9)
    return order[nearest], inside


def nearest_cells(lat: np.ndarray, lon: np.ndarray, grid_lat: np.ndarray, grid_lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat row-major index of the nearest native cell centre of each position, and a mask of
    the positions within half a cell of the grid (the others' index is meaningless).

    Longitudes are brought into the grid's 360° window first (``-10`` on a 0…360 grid is 350).
    """
    grid_lon = np.asarray(grid_lon, dtype=np.float64)
    lon = np.asarray(lon, dtype=np.float64)
    west = float(grid_lon.min()) - 0.5 * (float(np.median(np.abs(np.diff(grid_lon)))) if len(grid_lon) > 1 else 0.0)
    lon = west + np.mod(lon - west, 360.0)
    rows, in_lat = _nearest_axis(np.asarray(lat, dtype=np.float64), grid_lat)
    cols, in_lon = _nearest_axis(lon, grid_lon)
    return rows.astype(np.int64) * len(grid_lon) + cols, in_lat & in_lon & np.isfinite(lat) & np.isfinite(lon)


def bin_observations(
    obs: pd.DataFrame, grid_lat: np.ndarray, grid_lon: np.ndarray, land: np.ndarray, params: SeedingParams
) -> ObservedStep:
    """Bin one step's observations (columns ``lat``, ``lon``, ``value``, ``platform``) onto the
    trimmed native grid ``(len(grid_lat), len(grid_lon))`` and its LR/HR grids.

    Args:
        obs: the step's good observations (:data:`pipeline.observations.OBSERVATION_COLUMNS`).
        grid_lat, grid_lon: native cell centres, already trimmed to multiples of ``bin_size``.
        land: bool (ny, nx), True on land (observations there are dropped).
        params: the LR/HR grid parameters (``bin_size``, ``upsampling``; the draw settings are unused).
    """
    shape = (len(grid_lat), len(grid_lon))
    land = np.asarray(land, dtype=bool)
    if land.shape != shape:
        raise ValueError(f"land mask {land.shape} and grid {shape} differ in shape")
    value = obs["value"].to_numpy(np.float64)
    finite = np.isfinite(value)
    index, inside = nearest_cells(obs["lat"].to_numpy(), obs["lon"].to_numpy(), grid_lat, grid_lon)
    inside &= finite
    on_land = np.zeros(len(index), bool)
    on_land[inside] = land.ravel()[index[inside]]
    keep = inside & ~on_land
    dropped = {"outside": int((~inside & finite).sum()), "land": int(on_land.sum())}
    if "platform" in obs:
        names = obs["platform"].fillna("").astype(str).to_numpy()
    else:
        names = np.full(len(obs), "", dtype=object)
    index, value, names = index[keep], value[keep], names[keep]
    cells, inverse, counts = np.unique(index, return_inverse=True, return_counts=True)
    means = np.bincount(inverse, weights=value, minlength=len(cells)) / np.maximum(counts, 1)
    platforms: list[tuple[str, ...]] = [() for _ in cells]
    for k, group in pd.Series(names).groupby(inverse, sort=True):
        platforms[int(k)] = tuple(sorted({n for n in group if n}))
    codes = np.array([
        MIXED_PLATFORMS if len(p) > 1 else platform_code(p[0]) if p else NO_PLATFORM for p in platforms
    ], dtype=np.int32)
    sensors = Sensors(index=cells.astype(np.int64), value=means.astype(np.float32))
    lr_mean, lr_count = bin_mean(sensors.index, sensors.value, shape, params.bin_size)
    hr_mean, hr_count = bin_mean(sensors.index, sensors.value, shape, params.hr_cell)
    seeded = SeededDay(sensors, lr_mean, lr_count, hr_mean, (hr_count > 0).astype(np.uint8))
    return ObservedStep(seeded, platforms, codes, counts.astype(np.int32), dropped)

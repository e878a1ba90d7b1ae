"""Random sensor seeding of a native-grid field (RaSeedGAN data preparation, DESIGN §2).

Every snapshot draws its own sensor positions, uniformly without replacement among the valid
(ocean and finite) native cells, from a generator seeded by ``(seed, day)`` alone, so any day is
reproducible on its own. The sensors are then binned into

* the **LR input**: the mean of the sensors in each ``bin_size × bin_size`` bin, with counts;
* the **HR sparse target**: the mean of the sensors in each ``hr_cell × hr_cell`` cell, with a
  0/1 flag where at least one sensor fell (``hr_cell = bin_size // upsampling``).

Reproducibility holds for a given NumPy version: the draw uses ``Generator.choice`` and
``Generator.normal`` on a PCG64 stream, whose output NumPy keeps stable in practice but does
not promise across releases (NEP 19).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipeline.binning import bin_mean

__all__ = [
    "SeededDay",
    "SeedingParams",
    "Sensors",
    "day_rng",
    "n_sensors",
    "seed_day",
    "seed_sensors",
    "trim_shape",
]


class SeedingParams(BaseModel):
    """Parameters of the random seeding and of the LR/HR grids."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sensors_per_bin: float = Field(10.0, gt=0)
    """Mean number of sensors per LR bin, over valid cells (paper: about 10)."""
    bin_size: int = Field(16, ge=1)
    """Native cells per LR bin side (paper, SST: 16, i.e. 4° bins at 0.25°)."""
    upsampling: int = Field(8, ge=1)
    """HR = LR × upsampling; must divide ``bin_size``."""
    noise_std: float = Field(0.0, ge=0)
    """Standard deviation of Gaussian sensor noise, in the field's units."""
    seed: int = Field(0, ge=0)
    """Global seed; each day's stream is derived from ``(seed, day)``."""

    @model_validator(mode="after")
    def _check_divisible(self) -> SeedingParams:
        if self.bin_size % self.upsampling:
            raise ValueError(
                f"bin_size ({self.bin_size}) must be divisible by upsampling ({self.upsampling})"
            )
        return self

    @property
    def hr_cell(self) -> int:
        """Native cells per HR cell side."""
        return self.bin_size // self.upsampling


def day_rng(seed: int, day: datetime.date) -> np.random.Generator:
    """Independent random stream for one ``(seed, step)``; no other step is involved.

    A date step (daily, monthly, climatology) keys the stream by its ordinal, as the daily-only
    releases did, so their seedings are unchanged; a sub-daily step (a ``datetime``) adds its
    second of the day, so the hours of one day draw different sensors.
    """
    key = [int(seed), day.toordinal()]
    if isinstance(day, datetime.datetime):
        key.append(day.hour * 3600 + day.minute * 60 + day.second)
    return np.random.default_rng(np.random.SeedSequence(key))


def n_sensors(n_valid: int, params: SeedingParams) -> int:
    """Sensors to draw on a day with ``n_valid`` valid cells.

    ``round(sensors_per_bin * n_valid / bin_size**2)``, at least 1 when ``n_valid > 0`` and at
    most ``n_valid``.
    """
    if n_valid <= 0:
        return 0
    n = round(params.sensors_per_bin * n_valid / params.bin_size**2)
    return int(min(max(n, 1), n_valid))


def trim_shape(shape: tuple[int, int], bin_size: int) -> tuple[int, int]:
    """Largest multiple of ``bin_size`` in each dimension.

    Domains are trimmed at the north/east edge, i.e. ``field[:ty, :tx]`` is kept.
    """
    if bin_size < 1:
        raise ValueError(f"bin_size must be >= 1, got {bin_size}")
    ny, nx = (int(s) for s in shape)
    return (ny // bin_size) * bin_size, (nx // bin_size) * bin_size


@dataclass
class Sensors:
    """Sensors of one snapshot.

    Attributes:
        index: int64 (n,), flat row-major indices into the (trimmed) native grid, sorted
            ascending, unique.
        value: float32 (n,), field value plus noise.
    """

    index: np.ndarray
    value: np.ndarray


@dataclass
class SeededDay:
    """One seeded snapshot: the sensors and their LR/HR aggregates.

    Attributes:
        sensors: the drawn sensors.
        lr_mean: float32 (ny/bin_size, nx/bin_size), NaN where the bin has no sensor.
        lr_count: uint16, same shape, sensors per bin.
        hr_mean: float32 (ny/hr_cell, nx/hr_cell), NaN where the cell has no sensor.
        hr_flag: uint8, same shape, 1 where at least one sensor fell.
    """

    sensors: Sensors
    lr_mean: np.ndarray
    lr_count: np.ndarray
    hr_mean: np.ndarray
    hr_flag: np.ndarray


def _check_inputs(field: np.ndarray, valid: np.ndarray, params: SeedingParams) -> None:
    if field.ndim != 2:
        raise ValueError(f"field must be 2-D, got shape {field.shape}")
    if valid.shape != field.shape:
        raise ValueError(f"valid {valid.shape} and field {field.shape} differ in shape")
    if trim_shape(field.shape, params.bin_size) != field.shape:
        raise ValueError(
            f"field shape {field.shape} is not a multiple of bin_size ({params.bin_size}); "
            "trim it with trim_shape first"
        )


def seed_sensors(
    field: np.ndarray, valid: np.ndarray, day: datetime.date, params: SeedingParams
) -> Sensors:
    """Draw the day's sensors.

    Args:
        field: float (ny, nx), already trimmed to multiples of ``bin_size``.
        valid: bool (ny, nx), ocean and finite.
        day: the snapshot's date; with ``params.seed`` it alone fixes the draw.
        params: seeding parameters.

    Returns:
        :class:`Sensors` with ``n_sensors(valid.sum(), params)`` positions drawn uniformly
        without replacement among the valid cells. Positions depend only on
        ``(params.seed, day, valid)``; noise (if any) is drawn after them from the same stream,
        so changing ``noise_std`` does not move the sensors.

    Raises:
        ValueError: on shape mismatch or when a drawn valid cell is not finite.
    """
    field = np.asarray(field)
    valid = np.asarray(valid, dtype=bool)
    _check_inputs(field, valid, params)
    candidates = np.flatnonzero(valid)
    k = n_sensors(candidates.size, params)
    rng = day_rng(params.seed, day)
    if k == 0:
        return Sensors(np.empty(0, np.int64), np.empty(0, np.float32))
    # choice(replace=False) does a partial Fisher–Yates over the candidates (or Floyd's
    # algorithm for small draws): exact uniform sampling, far cheaper than a permutation.
    picked = rng.choice(candidates.size, size=k, replace=False, shuffle=False)
    picked.sort()
    index = candidates[picked].astype(np.int64, copy=False)
    value = field.ravel()[index].astype(np.float64)
    bad = int(np.count_nonzero(~np.isfinite(value)))
    if bad:
        raise ValueError(f"{bad} sensors fell on non-finite field values marked valid")
    if params.noise_std > 0:
        value += rng.normal(0.0, params.noise_std, size=k)
    return Sensors(index=index, value=value.astype(np.float32))


def seed_day(
    field: np.ndarray, valid: np.ndarray, day: datetime.date, params: SeedingParams
) -> SeededDay:
    """Seed one snapshot and bin it to the LR input and HR sparse target grids.

    Args:
        field: float (ny, nx), trimmed to multiples of ``bin_size``.
        valid: bool (ny, nx), ocean and finite.
        day: the snapshot's date.
        params: seeding parameters.

    Returns:
        :class:`SeededDay` with LR arrays (ny/bin_size, nx/bin_size) and HR arrays
        (ny/hr_cell, nx/hr_cell).
    """
    sensors = seed_sensors(field, valid, day, params)
    shape = (int(field.shape[0]), int(field.shape[1]))
    lr_mean, lr_count = bin_mean(sensors.index, sensors.value, shape, params.bin_size)
    hr_mean, hr_count = bin_mean(sensors.index, sensors.value, shape, params.hr_cell)
    return SeededDay(
        sensors=sensors,
        lr_mean=lr_mean,
        lr_count=lr_count,
        hr_mean=hr_mean,
        hr_flag=(hr_count > 0).astype(np.uint8),
    )

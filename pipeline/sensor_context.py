"""What a position-aware network knows besides a step's own sensors, built from sensors alone.

:class:`SensorContext` is fitted on the training steps' sensor lists (never a full field) and
kept in the checkpoint:

* ``mean``/``std`` — scalar normalisation of the sensor values;
* ``climatology`` — per-cell mean of the (normalised) training sensors: where the field is
  usually warm or cold;
* ``residual`` — per-cell mean of the cross-validated interpolation residuals of the training
  sensors (:func:`pipeline.sensor_features.holdout_residuals`), overall and per phase group of
  the cycle (hour of day on a sub-daily axis, season otherwise): the fine structure that the
  neighbouring sensors of one step cannot explain (orography, coasts, fronts that sit still);
* ``land`` — the static land mask;
* ``base`` — the interpolant every step's base channel is built with (cubic, linear, nearest,
  or kriging with ``variogram``: a stable model fitted to the normalised training sensors).

:meth:`SensorContext.statics` gives the static and extra channels of one step from its phase in
the cycle (fraction of the day, or of the year); :meth:`SensorContext.channels` the normalised
per-step channels of a sensor list.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.sensor_features import (
    BaseMethod,
    Box,
    SensorClimatology,
    base_interpolant,
    holdout_residuals,
    step_channels,
)

__all__ = ["SensorContext", "cycle_phase", "fit_context"]

Sensors = Sequence[tuple[np.ndarray, np.ndarray]]
BASES: tuple[BaseMethod, ...] = ("linear", "nearest", "cubic", "kriging", "cubic_plane")  # codes kept in checkpoints


def cycle_phase(step: dt.date, sub_daily: bool) -> float:
    """Phase in [0, 1) of ``step`` in its cycle: the day for sub-daily steps, else the year."""
    if sub_daily:
        when = step if isinstance(step, dt.datetime) else dt.datetime(step.year, step.month, step.day)
        return (when.hour + when.minute / 60.0) / 24.0
    return (step.timetuple().tm_yday - 1) / 365.25


@dataclass
class SensorContext:
    """Statics fitted on training sensors (see the module doc). Arrays are float32 (…, ny, nx)."""

    mean: float
    std: float
    climatology: np.ndarray  # (ny, nx), normalised units
    residual: np.ndarray  # (1 + groups, ny, nx): overall, then per phase group
    land: np.ndarray  # (ny, nx) bool
    base: BaseMethod = "linear"
    variogram: np.ndarray | None = None  # stable model (var, len_scale, nugget, alpha), normalised units

    def covariance_model(self) -> Any:
        """The kriging base's GSTools model (None without a variogram)."""
        if self.variogram is None:
            return None
        import gstools as gs

        var, len_scale, nugget, alpha = (float(v) for v in self.variogram)
        return gs.Stable(dim=2, var=var, len_scale=len_scale, nugget=nugget, alpha=alpha)

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.land.shape[0]), int(self.land.shape[1]))

    @property
    def groups(self) -> int:
        return int(self.residual.shape[0]) - 1

    def normalise(self, value: np.ndarray) -> np.ndarray:
        return ((np.asarray(value, np.float64) - self.mean) / self.std).astype(np.float32)

    def channels(self, index: np.ndarray, value: np.ndarray, box: Box | None = None) -> np.ndarray:
        """(4, ny, nx) normalised channels of one step (value, mask, base, distance), or those
        of the cells of ``box = (row0, row1, col0, col1)`` (equal to the whole grid's cropped)."""
        r0, r1, c0, c1 = box if box is not None else (0, self.shape[0], 0, self.shape[1])
        if np.asarray(index).size == 0:  # a step without sensors (a gap): nothing known there
            out = np.zeros((4, r1 - r0, c1 - c0), np.float32)
            out[3] = max(self.shape)
            return out
        if self.base == "kriging" and not hasattr(self, "_model"):
            self._model = self.covariance_model()
        return step_channels(index, self.normalise(value), self.shape, self.base, box, getattr(self, "_model", None))

    def base_of(self, index: np.ndarray, normalised: np.ndarray, box: Box | None = None) -> np.ndarray:
        """The base channel (this context's interpolant) of sensors already normalised."""
        if self.base == "kriging" and not hasattr(self, "_model"):
            self._model = self.covariance_model()
        return base_interpolant(index, normalised, self.shape, self.base, box, getattr(self, "_model", None))

    def statics(self, phase: float, box: Box | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(static (1, ny, nx), extra (5, ny, nx))`` of a step at ``phase`` of its cycle:
        the value climatology; the residual climatology overall and of the phase's group, the
        land mask, and sin/cos of the phase (constant maps). Cropped to ``box`` when given."""
        r0, r1, c0, c1 = box if box is not None else (0, self.shape[0], 0, self.shape[1])
        group = int(phase * self.groups) % self.groups if self.groups else -1
        angle = 2.0 * np.pi * phase
        crop = (slice(r0, r1), slice(c0, c1))
        size = (r1 - r0, c1 - c0)
        extra = np.stack([
            self.residual[0][crop],
            (self.residual[1 + group] if group >= 0 else self.residual[0])[crop],
            self.land[crop].astype(np.float32),
            np.full(size, np.sin(angle), np.float32),
            np.full(size, np.cos(angle), np.float32),
        ])
        return self.climatology[None][(slice(None), *crop)], extra.astype(np.float32)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"mean_std": np.array([self.mean, self.std]), "climatology": self.climatology,
                "residual": self.residual, "land": self.land.astype(np.uint8),
                "base": np.array([BASES.index(self.base)], np.uint8),
                **({"variogram": self.variogram} if self.variogram is not None else {})}

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray]) -> SensorContext:
        mean, std = (float(v) for v in np.asarray(a["mean_std"]))
        base = BASES[int(np.asarray(a["base"])[0])] if "base" in a else "linear"  # older checkpoints: linear
        vario = np.asarray(a["variogram"], np.float64) if "variogram" in a else None
        return cls(mean, std, np.asarray(a["climatology"], np.float32), np.asarray(a["residual"], np.float32),
                   np.asarray(a["land"]).astype(bool), base, vario)


def fit_context(
    sensors: Sensors, phases: Sequence[float], land: np.ndarray, groups: int = 4, folds: int = 5,
    seed: int = 0, base: BaseMethod = "linear",
) -> SensorContext:
    """Fit the statics on training steps' sensor lists (and their phases); no full field.

    Args:
        sensors: per training step, ``(flat native index, value)``.
        phases: per step, :func:`cycle_phase`.
        land: bool (ny, nx) land mask.
        groups: phase groups of the residual climatology (4: six-hour blocks of the day or the
            seasons); 0 for the overall one only.
        folds: folds of the cross-validated residuals.
        base: the interpolant of every step's base channel, and of the residuals (the fine
            structure that this interpolant of the neighbouring sensors misses). For
            ``"kriging"`` a stable variogram is fitted to the (normalised) sensor pairs of up to
            100 of the steps, and the residuals use cubic interpolation (kriging every fold of
            hundreds of steps would cost minutes).
    """
    if not sensors:
        raise ValueError("no training step to fit the sensor context on")
    shape = (int(land.shape[0]), int(land.shape[1]))
    values = np.concatenate([np.asarray(v, np.float64) for _, v in sensors])
    if values.size < 2 or not np.isfinite(values).all():
        raise ValueError("the training sensors hold too few or non-finite values")
    mean, std = float(values.mean()), float(values.std()) or 1.0
    clim = SensorClimatology(shape)
    resid = SensorClimatology(shape, n_groups=max(groups, 1))
    rng = np.random.default_rng(seed + 1)
    for (index, value), phase in zip(sensors, phases, strict=True):
        norm = (np.asarray(value, np.float64) - mean) / std
        clim.add(index, norm)
        if np.asarray(index).size >= 2 * folds + 3:
            ri, rv = holdout_residuals(index, norm, shape, folds, rng, "cubic" if base == "kriging" else base)
            resid.add(ri, rv, group=int(phase * groups) % groups if groups else 0)
    overall = resid.mean()
    per_group = resid.finalize(shrink=4.0) if groups else np.empty((0, *shape), np.float32)
    vario = None
    if base == "kriging":
        from pipeline.kriging import fit_sensor_variogram

        every = max(1, len(sensors) // 100)
        model = fit_sensor_variogram([np.asarray(i) for i, _ in sensors[::every]],
                                     [(np.asarray(v, np.float64) - mean) / std for _, v in sensors[::every]], shape)
        vario = np.array([model.var, model.len_scale, model.nugget, model.alpha], np.float64)
    return SensorContext(mean, std, clim.mean(), np.concatenate([overall[None], per_group]).astype(np.float32),
                         np.asarray(land, bool), base, vario)

"""The classical baselines a scientist expects, fitted on a training period's sensors only.

:class:`FittedBaselines` holds what the baselines learn from the training steps' sensors (never
from a full field): the kriging variogram (GSTools fit, :mod:`pipeline.kriging`), the sensors'
own climatology (:mod:`pipeline.anomaly`) and DINEOF's spatial EOFs (:mod:`pipeline.dineof`).
:meth:`FittedBaselines.reconstruct` then gives every baseline's field for one step from that
step's sensors, with its cost in milliseconds, so the evaluate and compare flows score them on
exactly the same seedings as the model.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.anomaly import interpolate_anomaly, sensor_climatology
from pipeline.baselines import bicubic_from_bins, interpolate_scattered, nearest_from_bins
from pipeline.dineof import DineofResult, dineof, project_sensors
from pipeline.kriging import fit_sensor_variogram, ordinary_kriging

__all__ = ["SCATTERED", "FittedBaselines", "fit_baselines", "timed"]

#: baselines that need only the step's sensors (and the LR bins)
SCATTERED = ("cubic", "linear", "nearest", "bicubic_lr", "lr_bins")


def timed(fn: Callable[[], np.ndarray]) -> tuple[np.ndarray, float]:
    """``fn()`` and its wall time in milliseconds."""
    t0 = time.perf_counter()
    out = fn()
    return out, (time.perf_counter() - t0) * 1e3


@dataclass
class FittedBaselines:
    """What the fitted baselines learned from the training sensors.

    Attributes:
        shape: the (trimmed) native grid.
        variogram: GSTools covariance model for ordinary kriging (None: not fitted).
        climatology: float (ny, nx) per-cell mean of the training sensors (never-sensed cells
            take the nearest sensed cell's mean).
        eofs: DINEOF result on the last training steps (None: not fitted).
        fit_seconds: time spent fitting each part.
    """

    shape: tuple[int, int]
    variogram: Any | None
    climatology: np.ndarray | None
    eofs: DineofResult | None
    fit_seconds: dict[str, float]

    def describe(self) -> dict[str, Any]:
        """JSON-able summary for reports."""
        out: dict[str, Any] = {"fit_seconds": {k: round(v, 2) for k, v in self.fit_seconds.items()}}
        if self.variogram is not None:
            v = self.variogram
            out["variogram"] = {"model": type(v).__name__, "var": float(v.var), "len_scale_cells": float(v.len_scale),
                                "nugget": float(v.nugget)}
        if self.eofs is not None:
            out["dineof"] = {"n_eofs": self.eofs.n_eofs, "n_steps": self.eofs.n_steps}
        return out

    def reconstruct(
        self, index: np.ndarray, value: np.ndarray, lr_mean: np.ndarray | None = None,
        bin_size: int | None = None, periodic_lon: bool = False,
    ) -> dict[str, tuple[np.ndarray, float]]:
        """``{method: (field (ny, nx) float32, ms)}`` for one step's sensors."""
        shape = self.shape
        out = {
            "cubic": timed(lambda: interpolate_scattered(index, value, shape, "cubic", periodic_lon)),
            "linear": timed(lambda: interpolate_scattered(index, value, shape, "linear", periodic_lon)),
            "nearest": timed(lambda: interpolate_scattered(index, value, shape, "nearest", periodic_lon)),
        }
        if lr_mean is not None and bin_size:
            out["bicubic_lr"] = timed(lambda: bicubic_from_bins(lr_mean, bin_size, periodic_lon))
            out["lr_bins"] = timed(lambda: nearest_from_bins(lr_mean, bin_size, periodic_lon))
        if self.variogram is not None:
            out["kriging"] = timed(lambda: ordinary_kriging(index, value, shape, self.variogram))
        if self.climatology is not None:
            clim = self.climatology
            out["cubic_anomaly"] = timed(lambda: interpolate_anomaly(index, value, shape, clim, "cubic", periodic_lon))
        if self.eofs is not None:
            eofs = self.eofs
            out["dineof"] = timed(lambda: project_sensors(eofs, index, value))
        return out


def fit_baselines(
    index_list: Sequence[np.ndarray],
    value_list: Sequence[np.ndarray],
    shape: tuple[int, int],
    dineof_steps: int = 120,
    dineof_max_eofs: int = 12,
    kriging: bool = True,
    variogram_steps: int = 100,
) -> FittedBaselines:
    """Fit the variogram, the sensor climatology and DINEOF's EOFs on training sensors.

    Args:
        index_list, value_list: per training step, the sensors' flat indices and values.
        shape: (ny, nx).
        dineof_steps: EOFs are learned on the last this many training steps (0: no DINEOF).
            DINEOF's cost grows with steps × cells × EOFs; a few hundred steps capture the
            leading modes of a season or two.
        dineof_max_eofs: most EOFs tried (chosen by cross-validation, as DINEOF does).
        kriging: fit the kriging variogram.
        variogram_steps: the variogram pools the sensor pairs of this many training steps,
            evenly spread (pairs grow with the square of the sensors: a few hundred steps give
            millions of pairs per lag bin, and all of a decade would take minutes).
    """
    if not index_list:
        raise ValueError("no training step to fit the baselines on")
    seconds: dict[str, float] = {}
    variogram = None
    if kriging:
        t0 = time.perf_counter()
        every = max(1, len(index_list) // variogram_steps)
        variogram = fit_sensor_variogram(index_list[::every], value_list[::every], shape)
        seconds["kriging"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    climatology = sensor_climatology(index_list, value_list, shape)
    seconds["climatology"] = time.perf_counter() - t0
    eofs = None
    if dineof_steps > 0 and len(index_list) >= 8:
        t0 = time.perf_counter()
        last = list(zip(index_list, value_list, strict=True))[-dineof_steps:]
        stack = np.full((len(last), shape[0] * shape[1]), np.nan, np.float32)
        for row, (index, value) in zip(stack, last, strict=True):
            row[np.asarray(index, np.int64)] = value
        eofs = dineof(stack.reshape(len(last), *shape), max_eofs=min(dineof_max_eofs, len(last) - 2))
        eofs.filled = np.empty((0, *shape), np.float32)  # the filled training series is not needed
        seconds["dineof"] = time.perf_counter() - t0
    return FittedBaselines(tuple(shape), variogram, climatology, eofs, seconds)

"""Interpolation of anomalies from the sensors' own climatology.

A climatology built from the sensors of a training period (per cell, so it keeps structure at
the grid scale that one step's sensors cannot resolve: coasts, orography) is subtracted at the
sensors, the anomalies are interpolated with :func:`pipeline.baselines.interpolate_scattered`
and the climatology is added back. No full field is ever used.

:func:`sensor_climatology` is a deliberately small accumulator for this baseline (in-memory
lists of steps); the streaming, store-backed statistics live elsewhere in the pipeline.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.baselines import Method, fill_nearest, interpolate_scattered

__all__ = ["interpolate_anomaly", "sensor_climatology"]


def sensor_climatology(
    index_list: Sequence[np.ndarray],
    value_list: Sequence[np.ndarray],
    shape: tuple[int, int],
    groups: Sequence[int] | np.ndarray | None = None,
) -> np.ndarray:
    """Per-cell mean of the sensor values over many steps.

    Args:
        index_list: per step, int (n,) flat row-major indices into ``shape``.
        value_list: per step, float (n,) sensor values.
        shape: ``(ny, nx)``.
        groups: optional int label per step in ``[0, G)`` (e.g. hour of day): one climatology
            per label.

    Returns:
        float64 ``(ny, nx)``, or ``(G, ny, nx)`` with ``groups``. Cells never sensed (in the
        group) take the value of the nearest sensed cell.

    Raises:
        ValueError: on mismatched lengths, no sensor at all, or a group with no sensor.
    """
    if len(index_list) != len(value_list):
        raise ValueError("need as many value arrays as index arrays")
    ny, nx = (int(s) for s in shape)
    labels = np.zeros(len(index_list), np.int64) if groups is None else np.asarray(groups)
    if labels.shape != (len(index_list),) or (labels.size and labels.min() < 0):
        raise ValueError("groups must hold one non-negative int label per step")
    n_groups = int(labels.max()) + 1 if labels.size else 1
    total = np.zeros((n_groups, ny * nx))
    count = np.zeros((n_groups, ny * nx))
    for label, index, value in zip(labels, index_list, value_list, strict=True):
        index = np.asarray(index, dtype=np.int64).ravel()
        np.add.at(total[label], index, np.asarray(value, dtype=np.float64).ravel())
        np.add.at(count[label], index, 1.0)
    out = np.empty((n_groups, ny, nx))
    for g in range(n_groups):
        if not count[g].any():
            raise ValueError(f"no sensor in group {g}")
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = (total[g] / count[g]).reshape(ny, nx)
        out[g] = fill_nearest(mean)  # float32 inside; exact where sensed up to float32
        sensed = count[g].reshape(ny, nx) > 0
        out[g][sensed] = mean[sensed]
    return out[0] if groups is None else out


def interpolate_anomaly(
    index: np.ndarray,
    value: np.ndarray,
    shape: tuple[int, int],
    climatology: np.ndarray,
    method: Method = "cubic",
    periodic_lon: bool = False,
) -> np.ndarray:
    """Interpolate ``value − climatology`` at the sensors, then add the climatology back.

    Args:
        index: int (n,), flat row-major sensor indices into ``shape``.
        value: float (n,), sensor values.
        shape: ``(ny, nx)``.
        climatology: float (ny, nx), e.g. from :func:`sensor_climatology` on training steps.
        method, periodic_lon: as :func:`pipeline.baselines.interpolate_scattered`.

    Returns:
        float32 (ny, nx). With a constant climatology this is plain interpolation.
    """
    clim = np.asarray(climatology, dtype=np.float64)
    if clim.shape != tuple(shape):
        raise ValueError(f"climatology {clim.shape} does not match shape {tuple(shape)}")
    index = np.asarray(index, dtype=np.int64).ravel()
    anomaly = np.asarray(value, dtype=np.float64).ravel() - clim.ravel()[index]
    field = interpolate_scattered(index, anomaly, shape, method, periodic_lon)
    return (field.astype(np.float64) + clim).astype(np.float32)

"""Anomaly interpolation from the sensors' own climatology (pipeline.anomaly)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from pipeline.anomaly import interpolate_anomaly, sensor_climatology
from pipeline.baselines import interpolate_scattered

SHAPE = (48, 64)


def draw(fraction: float, seed: int) -> np.ndarray:
    n = SHAPE[0] * SHAPE[1]
    return np.sort(np.random.default_rng(seed).choice(n, round(fraction * n), replace=False))


def rms(a: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(a))))


def test_constant_climatology_is_plain_interpolation() -> None:
    yy, xx = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]]
    field = np.sin(xx / 6.0) * np.cos(yy / 9.0) + 0.02 * xx
    index = draw(0.1, seed=0)
    value = field.ravel()[index]
    for method in ("cubic", "linear"):
        plain = interpolate_scattered(index, value, SHAPE, method)
        anom = interpolate_anomaly(index, value, SHAPE, np.full(SHAPE, 12.5), method)
        np.testing.assert_allclose(anom, plain, atol=1e-5)


def test_fixed_pattern_plus_smooth_anomaly_beats_plain_interpolation() -> None:
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]]
    # a fixed pattern with structure at 1–2 cells (orography-like), finer than the sensors
    pattern = 3.0 * ndimage.gaussian_filter(rng.standard_normal(SHAPE), 1.0)

    def step(t: int) -> np.ndarray:
        kx, ky, ph = 2 * np.pi / 40, 2 * np.pi / 55, 0.3 * t
        return pattern + np.sin(kx * xx + ph) * np.cos(ky * yy - ph) + 0.2 * np.sin(t / 7.0)

    # ~45 sensor values per cell over 300 steps: the sensed climatology is the pattern to
    # about 0.1 (its own sampling noise limits the method)
    train_idx = [draw(0.15, seed=10 + t) for t in range(300)]
    train_val = [step(t).ravel()[i] for t, i in enumerate(train_idx)]
    clim = sensor_climatology(train_idx, train_val, SHAPE)
    for t in (330, 345):
        truth = step(t)
        index = draw(0.15, seed=t)
        value = truth.ravel()[index]
        for method in ("cubic", "linear"):
            plain = rms(interpolate_scattered(index, value, SHAPE, method) - truth)
            anom = interpolate_anomaly(index, value, SHAPE, clim, method)
            assert anom.dtype == np.float32
            np.testing.assert_allclose(anom.ravel()[index], value, atol=1e-4)
            assert rms(anom - truth) < 0.5 * plain, (method, rms(anom - truth), plain)


def test_sensor_climatology_means_fill_and_groups() -> None:
    shape = (4, 5)
    index_list = [np.array([0, 7]), np.array([0, 19]), np.array([7])]
    value_list = [np.array([1.0, 10.0]), np.array([3.0, 5.0]), np.array([20.0])]
    clim = sensor_climatology(index_list, value_list, shape)
    assert clim.shape == shape
    assert clim.ravel()[0] == 2.0 and clim.ravel()[7] == 15.0 and clim.ravel()[19] == 5.0
    assert clim.ravel()[1] == 2.0  # never sensed: nearest sensed cell (0)
    assert clim.ravel()[18] == 5.0  # nearest is cell 19
    by_group = sensor_climatology(index_list, value_list, shape, groups=[0, 1, 0])
    assert by_group.shape == (2, *shape)
    assert by_group[0].ravel()[0] == 1.0 and by_group[0].ravel()[7] == 15.0
    assert by_group[1].ravel()[0] == 3.0 and by_group[1].ravel()[7] == 3.0  # nearest: cell 0
    with pytest.raises(ValueError, match="no sensor in group"):
        sensor_climatology(index_list, value_list, shape, groups=[0, 2, 0])
    with pytest.raises(ValueError, match="does not match"):
        interpolate_anomaly(np.array([0]), np.array([1.0]), (3, 3), clim)

"""Ordinary kriging with a variogram fitted to the sensors (pipeline.kriging)."""

from __future__ import annotations

import gstools as gs
import numpy as np
import pytest

from pipeline.baselines import interpolate_scattered
from pipeline.kriging import (
    empirical_variogram,
    fit_sensor_variogram,
    fit_variogram,
    ordinary_kriging,
)

SHAPE = (40, 60)


def random_field(model: gs.CovModel, shape: tuple[int, int], seed: int) -> np.ndarray:
    srf = gs.SRF(model, seed=seed, mode_no=256)  # fewer Fourier modes than default: faster
    return np.asarray(srf.structured([np.arange(shape[0]), np.arange(shape[1])]), dtype=float)


def draw(shape: tuple[int, int], fraction: float, seed: int) -> np.ndarray:
    n = shape[0] * shape[1]
    return np.sort(np.random.default_rng(seed).choice(n, round(fraction * n), replace=False))


def rms(a: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(a))))


def test_exact_at_sensors_and_better_than_nearest_per_step_fit() -> None:
    truth = random_field(gs.Gaussian(dim=2, var=1.0, len_scale=10.0), SHAPE, seed=3)
    index = draw(SHAPE, 0.06, seed=0)
    value = truth.ravel()[index]
    out = ordinary_kriging(index, value, SHAPE, family="stable", nugget=False)
    assert out.shape == SHAPE and out.dtype == np.float32 and np.isfinite(out).all()
    np.testing.assert_allclose(out.ravel()[index], value, atol=1e-4)
    err = rms(out - truth)
    nearest = rms(interpolate_scattered(index, value, SHAPE, "nearest") - truth)
    linear = rms(interpolate_scattered(index, value, SHAPE, "linear") - truth)
    assert err < 0.5 * nearest
    assert err < linear  # a smooth field with the right covariance: kriging is the best guess


def test_exact_with_nugget_only_when_asked() -> None:
    truth = random_field(gs.Exponential(dim=2, var=1.0, len_scale=6.0), SHAPE, seed=4)
    index = draw(SHAPE, 0.1, seed=1)
    value = truth.ravel()[index]
    model = gs.Exponential(dim=2, var=1.0, len_scale=6.0, nugget=0.2)
    exact = ordinary_kriging(index, value, SHAPE, model, exact=True)
    smooth = ordinary_kriging(index, value, SHAPE, model, exact=False)
    np.testing.assert_allclose(exact.ravel()[index], value, atol=1e-4)
    assert np.abs(smooth.ravel()[index] - value).max() > 0.05
    # away from the sensors both estimates coincide: the nugget acts at zero lag only
    away = np.setdiff1d(np.arange(truth.size), index)
    assert np.abs(exact.ravel()[away] - smooth.ravel()[away]).max() < 1e-4


def test_matches_gstools_ordinary_kriging() -> None:
    shape = (16, 20)
    truth = random_field(gs.Stable(dim=2, var=2.0, len_scale=5.0, alpha=1.5), shape, seed=5)
    index = draw(shape, 0.15, seed=2)
    value = truth.ravel()[index] + 10.0
    model = gs.Stable(dim=2, var=2.0, len_scale=5.0, alpha=1.5, nugget=0.05)
    ours = ordinary_kriging(index, value, shape, model, exact=False)
    rows, cols = np.divmod(index, shape[1])
    krig = gs.krige.Ordinary(model, cond_pos=(rows, cols), cond_val=value, exact=False)
    ref, _ = krig.structured([np.arange(shape[0]), np.arange(shape[1])])
    np.testing.assert_allclose(ours, ref, atol=1e-4)


def test_constant_sensors_give_a_constant_field() -> None:
    index = draw(SHAPE, 0.05, seed=3)
    model = gs.Gaussian(dim=2, var=1.0, len_scale=8.0)
    out = ordinary_kriging(index, np.full(index.size, 7.5), SHAPE, model)
    np.testing.assert_allclose(out, 7.5, atol=1e-4)


@pytest.mark.parametrize(("family", "true_len"), [("exponential", 5.0), ("gaussian", 8.0)])
def test_pooled_fit_recovers_the_range(family: str, true_len: float) -> None:
    shape = (48, 72)
    cls = {"exponential": gs.Exponential, "gaussian": gs.Gaussian}[family]
    model = cls(dim=2, var=2.0, len_scale=true_len)
    idx, val = [], []
    for step in range(10):  # a training period: new field and new sensor draw each step
        truth = random_field(model, shape, seed=100 + step) + step  # the mean changes too
        index = draw(shape, 0.12, seed=step)
        idx.append(index)
        val.append(truth.ravel()[index])
    fitted = fit_sensor_variogram(idx, val, shape, model=family, nugget=True)
    assert true_len / 1.5 < fitted.len_scale < true_len * 1.5
    assert 2.0 / 1.5 < fitted.var + fitted.nugget < 2.0 * 1.5
    assert fitted.nugget < 0.2 * fitted.var
    # pooling sums the pairs of the steps, never pairs across steps
    one = empirical_variogram(idx[:1], val[:1], shape)
    two = empirical_variogram(idx[:2], val[:2], shape)
    other = empirical_variogram(idx[1:2], val[1:2], shape)
    np.testing.assert_array_equal(two.counts, one.counts + other.counts)
    both = one.gamma * one.counts + other.gamma * other.counts
    np.testing.assert_allclose(two.gamma, both / two.counts)
    # the fitted model is reused on a new step as is
    truth = random_field(model, shape, seed=999)
    index = draw(shape, 0.05, seed=99)
    out = ordinary_kriging(index, truth.ravel()[index], shape, fitted)
    near = interpolate_scattered(index, truth.ravel()[index], shape, "nearest")
    assert rms(out - truth) < rms(near - truth)


def test_fit_rejects_too_few_pairs() -> None:
    emp = empirical_variogram([np.array([0, 1])], [np.array([1.0, 2.0])], SHAPE)
    with pytest.raises(ValueError, match="lag bins"):
        fit_variogram(emp)
    with pytest.raises(ValueError, match="unknown model"):
        fit_variogram(emp, model="cubic")

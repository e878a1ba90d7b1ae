"""Streaming per-pixel normalisation statistics (pipeline.normalisation)."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.normalisation import (
    NormStats,
    StreamingStats,
    denormalise_output,
    finalize,
    normalise_input,
    normalise_target,
)

SHAPE = (6, 9)


def period(n_days: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Stacked SST-like values (n, ny, nx) and 0/1 flags, with a never-flagged pixel."""
    rng = np.random.default_rng(seed)
    clim = rng.uniform(0, 28, SHAPE)
    values = clim + rng.normal(0, 1.5, (n_days, *SHAPE))
    flags = (rng.random((n_days, *SHAPE)) < 0.3).astype(np.uint8)
    flags[:, 0, 0] = 0  # never observed (land)
    flags[:, 1, 1] = 0
    flags[5, 1, 1] = 1  # observed once: std 0
    values[flags == 0] = np.nan  # as in hr_mean: NaN where no sensor
    return values, flags


def direct(values: np.ndarray, flags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flag-weighted mean Σx/Σflag and population std, over the stacked period."""
    f = flags.astype(np.float64)
    x = np.nan_to_num(values)
    n = f.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (x * f).sum(axis=0) / n
        std = np.sqrt(((x - mean * f) ** 2 * f).sum(axis=0) / n)
    return mean, std


def accumulate(values: np.ndarray, flags: np.ndarray) -> StreamingStats:
    s = StreamingStats(SHAPE)
    for v, f in zip(values, flags, strict=True):
        s.update(v, f)
    return s


def test_streaming_matches_direct_computation() -> None:
    values, flags = period()
    s = accumulate(values, flags)
    mean, std = direct(values, flags)
    np.testing.assert_array_equal(s.count, flags.sum(axis=0))
    assert s.mean.dtype == np.float32 and s.std.dtype == np.float32
    np.testing.assert_allclose(s.mean, mean, rtol=1e-6, equal_nan=True)
    np.testing.assert_allclose(s.std, std, rtol=1e-5, atol=1e-6, equal_nan=True)
    assert np.isnan(s.mean[0, 0]) and np.isnan(s.std[0, 0])
    assert s.std[1, 1] == 0


def test_reference_target_std_formula() -> None:
    """The reference's sqrt(Σ(x − μ·flag)²/Σflag) with x = 0 where empty is the weighted std."""
    values, flags = period(seed=5)
    s = accumulate(values, flags)
    x = np.nan_to_num(values)
    f = flags.astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        mu = x.sum(axis=0) / f.sum(axis=0)
        ref = np.sqrt(((x - np.nan_to_num(mu) * f) ** 2).sum(axis=0) / f.sum(axis=0))
    np.testing.assert_allclose(s.std, ref, rtol=1e-5, atol=1e-6, equal_nan=True)


def test_merge_of_two_halves_equals_one_pass() -> None:
    values, flags = period(n_days=41)
    whole = accumulate(values, flags)
    a = accumulate(values[:17], flags[:17])
    b = accumulate(values[17:], flags[17:])
    merged = a.merge(b)
    for key, arr in whole.to_arrays().items():
        np.testing.assert_allclose(merged.to_arrays()[key], arr, rtol=1e-10, atol=1e-9)
    # merge does not modify its operands, and is symmetric
    np.testing.assert_array_equal(a.count, flags[:17].sum(axis=0))
    np.testing.assert_allclose(b.merge(a).mean, whole.mean, rtol=1e-6, equal_nan=True)
    # merging an empty state is the identity
    empty = StreamingStats(SHAPE)
    np.testing.assert_allclose(empty.merge(whole).std, whole.std, equal_nan=True)
    np.testing.assert_allclose(whole.merge(empty).mean, whole.mean, equal_nan=True)


def test_nan_values_are_ignored_even_when_weighted() -> None:
    s = StreamingStats((1, 2))
    s.update(np.array([[1.0, np.nan]]), np.array([[1, 1]]))
    s.update(np.array([[3.0, 5.0]]), np.array([[1, 1]]))
    np.testing.assert_array_equal(s.count, [[2, 1]])
    np.testing.assert_allclose(s.mean, [[2.0, 5.0]])
    np.testing.assert_allclose(s.std, [[1.0, 0.0]])


def test_fractional_weights() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(20, *SHAPE))
    w = rng.random((20, *SHAPE))
    s = StreamingStats(SHAPE)
    for xi, wi in zip(x, w, strict=True):
        s.update(xi, wi)
    mean = (w * x).sum(0) / w.sum(0)
    std = np.sqrt((w * (x - mean) ** 2).sum(0) / w.sum(0))
    np.testing.assert_allclose(s.mean, mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(s.std, std, rtol=1e-5)


def test_state_roundtrip() -> None:
    values, flags = period()
    s = accumulate(values[:10], flags[:10])
    restored = StreamingStats.from_arrays(s.to_arrays())
    for v, f in zip(values[10:], flags[10:], strict=True):
        restored.update(v, f)
    whole = accumulate(values, flags)
    np.testing.assert_allclose(restored.std, whole.std, rtol=1e-6, equal_nan=True)


def test_update_rejects_bad_shape() -> None:
    with pytest.raises(ValueError, match="match"):
        StreamingStats(SHAPE).update(np.zeros((2, 2)), np.ones((2, 2)))


def make_stats() -> tuple[NormStats, np.ndarray, np.ndarray]:
    values, flags = period()
    hr = accumulate(values, flags)
    lr_values, lr_flags = period(seed=1)
    lr = accumulate(lr_values, lr_flags)
    return finalize(lr, hr, std_floor=1e-3), values, flags


def test_finalize_is_nan_free_with_global_fill_and_floor() -> None:
    stats, values, flags = make_stats()
    for arr in (stats.lr_mean, stats.lr_std, stats.hr_mean, stats.hr_std):
        assert arr.dtype == np.float32 and arr.shape == SHAPE
        assert np.isfinite(arr).all()
    f = flags.astype(float)
    x = np.nan_to_num(values)
    global_mean = (x * f).sum() / f.sum()
    mean, std = direct(values, flags)
    n = f.sum(axis=0)
    pooled = np.sqrt(np.nansum(std**2 * n) / n.sum())
    assert stats.hr_mean[0, 0] == pytest.approx(global_mean, rel=1e-5)
    assert stats.hr_std[0, 0] == pytest.approx(pooled, rel=1e-5)
    assert stats.hr_std[1, 1] == pytest.approx(pooled, rel=1e-5)  # one sample: pooled std, not 0
    hr = accumulate(values, flags)
    floored = finalize(hr, hr, std_floor=1e-3, min_count=1)
    assert floored.hr_std[1, 1] == pytest.approx(1e-3)  # with min_count 1 its std 0 meets the floor
    assert stats.hr_std.min() >= 1e-3
    np.testing.assert_allclose(stats.hr_mean[2:, 2:], mean[2:, 2:], rtol=1e-6)


def test_finalize_requires_samples() -> None:
    with pytest.raises(ValueError, match="no samples"):
        finalize(StreamingStats(SHAPE), StreamingStats(SHAPE))


def test_normalise_input_zero_where_empty() -> None:
    stats, _, _ = make_stats()
    x = stats.lr_mean + 2 * stats.lr_std
    x[0, :3] = np.nan
    z = normalise_input(x, stats)
    assert z.dtype == np.float32
    assert np.all(z[0, :3] == 0)
    ref = (x.astype(np.float64) - stats.lr_mean) / stats.lr_std
    np.testing.assert_allclose(z[1:], ref[1:], rtol=1e-5)
    assert np.abs(z[1:] - 2.0).max() < 1e-2  # float32 rounding at the floored pixel


def test_normalise_target_and_denormalise() -> None:
    stats, values, flags = make_stats()
    day_values, day_flags = values[3], flags[3]
    z = normalise_target(day_values, day_flags, stats)
    assert z.dtype == np.float32 and np.isfinite(z).all()
    on = day_flags == 1
    assert np.all(z[~on] == 0)
    ref = (day_values - stats.hr_mean * day_flags) / stats.hr_std
    np.testing.assert_allclose(z[on], ref[on], rtol=1e-5, atol=1e-5)
    back = denormalise_output(z, stats)
    np.testing.assert_allclose(back[on], day_values[on], rtol=1e-5, atol=1e-4)
    # dense output: zero maps to the climatology; batch axes broadcast
    np.testing.assert_allclose(denormalise_output(np.zeros(SHAPE), stats), stats.hr_mean)
    assert denormalise_output(np.zeros((2, 1, *SHAPE)), stats).shape == (2, 1, *SHAPE)

"""Random seeding and binning (pipeline.seeding, pipeline.binning)."""

from __future__ import annotations

import datetime as dt
import itertools

import numpy as np
import pydantic
import pytest

from pipeline.binning import bin_mean, block_mean
from pipeline.seeding import (
    SeedingParams,
    day_rng,
    n_sensors,
    seed_day,
    seed_sensors,
    trim_shape,
)

DAY = dt.date(2010, 3, 14)


def smooth_field(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    ny, nx = shape
    y, x = np.mgrid[0:ny, 0:nx]
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 2 * np.pi, 2)
    return (
        15
        + 10 * np.cos(np.pi * (y - ny / 2) / ny)
        + np.sin(x / 9 + phase[0]) * np.cos(y / 7 + phase[1])
    ).astype(np.float32)


def land_mask(shape: tuple[int, int]) -> np.ndarray:
    """True on land: a rectangle continent and a round island."""
    ny, nx = shape
    y, x = np.mgrid[0:ny, 0:nx]
    land = (y > ny // 4) & (y < ny // 2) & (x > nx // 5) & (x < nx // 3)
    land |= (y - 3 * ny // 4) ** 2 + (x - 2 * nx // 3) ** 2 < (ny // 8) ** 2
    return land


@pytest.fixture
def grid() -> tuple[np.ndarray, np.ndarray]:
    shape = (128, 256)
    return smooth_field(shape), ~land_mask(shape)


# --------------------------------------------------------------------------- parameters


def test_params_defaults_and_hr_cell() -> None:
    p = SeedingParams()
    assert (p.sensors_per_bin, p.bin_size, p.upsampling, p.noise_std, p.seed) == (
        10.0,
        16,
        8,
        0.0,
        0,
    )
    assert p.hr_cell == 2
    assert SeedingParams(bin_size=16, upsampling=16).hr_cell == 1


def test_params_divisibility_message_names_both_keys() -> None:
    with pytest.raises(pydantic.ValidationError) as err:
        SeedingParams(bin_size=16, upsampling=3)
    msg = str(err.value)
    assert "bin_size" in msg and "16" in msg
    assert "upsampling" in msg and "3" in msg


@pytest.mark.parametrize(
    ("key", "bad"),
    [("noise_std", -0.1), ("sensors_per_bin", 0.0), ("bin_size", 0), ("seed", -1)],
)
def test_params_validation_names_the_key(key: str, bad: float) -> None:
    with pytest.raises(pydantic.ValidationError, match=key):
        SeedingParams(**{key: bad})


def test_params_forbid_extra_and_frozen() -> None:
    with pytest.raises(pydantic.ValidationError, match="sensor_per_bin"):
        SeedingParams(sensor_per_bin=5)  # type: ignore[call-arg]
    p = SeedingParams()
    with pytest.raises(pydantic.ValidationError):
        p.seed = 3  # type: ignore[misc]


# --------------------------------------------------------------------------- helpers


def test_trim_shape() -> None:
    assert trim_shape((720, 1440), 16) == (720, 1440)
    assert trim_shape((89, 180), 16) == (80, 176)
    assert trim_shape((15, 17), 16) == (0, 16)
    with pytest.raises(ValueError):
        trim_shape((10, 10), 0)


def test_n_sensors() -> None:
    p = SeedingParams()
    assert n_sensors(0, p) == 0
    assert n_sensors(1, p) == 1  # at least one
    assert n_sensors(720 * 1440, p) == 40500
    assert n_sensors(693_636, p) == round(10 * 693_636 / 256)
    dense = SeedingParams(sensors_per_bin=1000, bin_size=16, upsampling=8)
    assert n_sensors(100, dense) == 100  # at most n_valid


def test_day_rng_is_per_seed_and_day() -> None:
    a = day_rng(0, DAY).random(5)
    assert np.array_equal(a, day_rng(0, DAY).random(5))
    assert not np.array_equal(a, day_rng(0, DAY + dt.timedelta(days=1)).random(5))
    assert not np.array_equal(a, day_rng(1, DAY).random(5))


# --------------------------------------------------------------------------- seeding


def test_seeding_deterministic_and_independent_of_other_days(grid) -> None:
    field, valid = grid
    p = SeedingParams(seed=7)
    days = [DAY + dt.timedelta(days=i) for i in range(5)]
    in_sequence = [seed_sensors(field, valid, d, p) for d in days]
    alone = seed_sensors(field, valid, days[3], p)  # regenerated without the days before
    assert np.array_equal(alone.index, in_sequence[3].index)
    assert np.array_equal(alone.value, in_sequence[3].value)
    # positions change from day to day and with the seed
    for a, b in itertools.pairwise(in_sequence):
        assert not np.array_equal(a.index, b.index)
    other_seed = seed_sensors(field, valid, days[3], SeedingParams(seed=8))
    assert not np.array_equal(other_seed.index, alone.index)


def test_sensors_on_valid_cells_sorted_unique(grid) -> None:
    field, valid = grid
    s = seed_sensors(field, valid, DAY, SeedingParams())
    assert s.index.dtype == np.int64 and s.value.dtype == np.float32
    assert s.index.size == n_sensors(int(valid.sum()), SeedingParams())
    assert np.all(np.diff(s.index) > 0)  # sorted, unique
    assert valid.ravel()[s.index].all()
    np.testing.assert_array_equal(s.value, field.ravel()[s.index])


def test_sensor_count_per_bin_matches_sensors_per_bin() -> None:
    shape = (128, 256)
    field = smooth_field(shape)
    valid = np.ones(shape, dtype=bool)
    p = SeedingParams(sensors_per_bin=10, bin_size=16, upsampling=8)
    counts = np.stack(
        [seed_day(field, valid, DAY + dt.timedelta(days=i), p).lr_count for i in range(40)]
    ).astype(np.float64)
    # every day: exactly 10 per bin on average over an all-ocean grid
    assert np.allclose(counts.mean(axis=(1, 2)), 10.0)
    # uniform placement: each bin's mean over 40 days is close to 10 (sd ≈ sqrt(10/40) = 0.5)
    per_bin = counts.mean(axis=0)
    assert np.abs(per_bin - 10).max() < 2.5
    # and the spread per bin-day is Poisson/hypergeometric-like (variance ≈ 10)
    assert 7 < counts.var() < 12


def test_sensor_density_over_valid_cells_with_land(grid) -> None:
    field, valid = grid
    p = SeedingParams(sensors_per_bin=10)
    s = seed_sensors(field, valid, DAY, p)
    assert s.index.size / valid.sum() * p.bin_size**2 == pytest.approx(10, rel=1e-3)
    # sensors on land-free bins average ~10, on half-land bins proportionally fewer
    frac = bin_mean(np.arange(field.size), valid.ravel().astype(float), field.shape, 16)[0]
    counts = np.stack(
        [seed_day(field, valid, DAY + dt.timedelta(days=i), p).lr_count for i in range(30)]
    ).mean(axis=0)
    full = frac == 1
    assert counts[full].mean() == pytest.approx(10, rel=0.03)
    assert np.all(counts[frac == 0] == 0)


def test_noise(grid) -> None:
    field, valid = grid
    clean = seed_sensors(field, valid, DAY, SeedingParams())
    noisy = seed_sensors(field, valid, DAY, SeedingParams(noise_std=0.5))
    np.testing.assert_array_equal(clean.index, noisy.index)  # noise does not move sensors
    resid = noisy.value.astype(np.float64) - clean.value
    assert abs(resid.mean()) < 0.05
    assert resid.std() == pytest.approx(0.5, rel=0.05)
    again = seed_sensors(field, valid, DAY, SeedingParams(noise_std=0.5))
    np.testing.assert_array_equal(noisy.value, again.value)


def test_seed_day_consistency(grid) -> None:
    field, valid = grid
    p = SeedingParams(bin_size=16, upsampling=4)
    d = seed_day(field, valid, DAY, p)
    assert d.lr_mean.shape == d.lr_count.shape == (8, 16)
    assert d.hr_mean.shape == d.hr_flag.shape == (32, 64)
    assert d.lr_mean.dtype == np.float32 and d.lr_count.dtype == np.uint16
    assert d.hr_mean.dtype == np.float32 and d.hr_flag.dtype == np.uint8
    assert np.array_equal(d.hr_flag == 1, np.isfinite(d.hr_mean))
    assert set(np.unique(d.hr_flag)) <= {0, 1}
    assert np.array_equal(d.lr_count > 0, np.isfinite(d.lr_mean))
    assert int(d.lr_count.sum()) == d.sensors.index.size
    # HR cells with sensors, re-binned with their counts, give back the LR means
    hr_mean, hr_count = bin_mean(d.sensors.index, d.sensors.value, field.shape, p.hr_cell)
    w = hr_count.astype(float).reshape(8, 4, 16, 4)
    s = np.nan_to_num(hr_mean.astype(float)).reshape(8, 4, 16, 4) * w
    with np.errstate(invalid="ignore"):
        lr_from_hr = s.sum(axis=(1, 3)) / w.sum(axis=(1, 3))
    np.testing.assert_allclose(lr_from_hr, d.lr_mean, rtol=1e-6)


def test_seeding_rejects_bad_inputs(grid) -> None:
    field, valid = grid
    p = SeedingParams()
    with pytest.raises(ValueError, match="bin_size"):
        seed_sensors(field[:100], valid[:100], DAY, p)
    with pytest.raises(ValueError, match="shape"):
        seed_sensors(field, valid[:, :128], DAY, p)
    bad = field.copy()
    bad[valid] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        seed_sensors(bad, valid, DAY, p)


def test_no_valid_cells() -> None:
    field = np.full((32, 32), np.nan, dtype=np.float32)
    d = seed_day(field, np.zeros((32, 32), bool), DAY, SeedingParams())
    assert d.sensors.index.size == 0
    assert np.isnan(d.lr_mean).all() and not d.hr_flag.any()


# --------------------------------------------------------------------------- binning


def test_bin_mean_equals_loop_reference() -> None:
    rng = np.random.default_rng(3)
    shape, factor = (48, 64), 8
    index = np.sort(rng.choice(shape[0] * shape[1], 300, replace=False))
    value = rng.normal(20, 3, 300)
    mean, count = bin_mean(index, value, shape, factor)
    ref_sum = np.zeros((6, 8))
    ref_n = np.zeros((6, 8), dtype=int)
    for i, v in zip(index, value, strict=True):
        r, c = divmod(int(i), shape[1])
        ref_sum[r // factor, c // factor] += v
        ref_n[r // factor, c // factor] += 1
    assert mean.dtype == np.float32 and count.dtype == np.uint16
    np.testing.assert_array_equal(count, ref_n)
    with np.errstate(invalid="ignore"):
        ref = ref_sum / ref_n
    np.testing.assert_allclose(mean, ref, rtol=1e-6)
    assert np.array_equal(np.isnan(mean), ref_n == 0)


def test_bin_mean_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="divisible"):
        bin_mean(np.array([0]), np.array([1.0]), (10, 16), 4)
    with pytest.raises(ValueError, match="range"):
        bin_mean(np.array([160]), np.array([1.0]), (8, 20), 4)


def test_block_mean_matches_nanmean() -> None:
    rng = np.random.default_rng(4)
    field = rng.normal(size=(12, 20))
    field[rng.random(field.shape) < 0.5] = np.nan
    field[:4, :4] = np.nan  # an all-NaN block
    out = block_mean(field, 4)
    assert out.shape == (3, 5) and out.dtype == np.float32
    for i in range(3):
        for j in range(5):
            block = field[4 * i : 4 * i + 4, 4 * j : 4 * j + 4]
            if np.isnan(block).all():
                assert np.isnan(out[i, j])
            else:
                assert out[i, j] == pytest.approx(np.nanmean(block), rel=1e-6)

"""Observations binned onto the native/LR/HR grids as seeded sensors are, and the platform folds
of leave-platform-out cross-validation."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from pipeline.observation_binning import (
    MIXED_PLATFORMS,
    NO_PLATFORM,
    bin_observations,
    platform_code,
)
from pipeline.platform_cv import NOT_USED, ErrorSums, keep_outside_fold, platform_folds, split_fold
from pipeline.seeding import SeedingParams, seed_day

LAT = np.linspace(58.0, 50.25, 32)  # descending, as ERA5's
LON = np.arange(48) * 0.25 - 10.0
PARAMS = SeedingParams(bin_size=8, upsampling=4, sensors_per_bin=6, seed=3)


def frame(lat, lon, value, platform) -> pd.DataFrame:
    n = len(value)
    return pd.DataFrame({"time": pd.Timestamp("2019-03-01"), "lat": np.asarray(lat, float), "lon": np.asarray(lon, float),
                         "value": np.asarray(value, float), "platform": platform, "quality": np.full(n, -1, "int16"),
                         "depth": np.nan})


def test_observations_at_seeded_cells_bin_exactly_as_seed_day():
    rng = np.random.default_rng(0)
    field = rng.normal(10, 3, (32, 48)).astype("float32")
    land = np.zeros((32, 48), bool)
    land[:5, :7] = True
    seeded = seed_day(field, ~land, dt.date(2019, 3, 1), PARAMS)
    rows, cols = np.divmod(seeded.sensors.index, 48)
    # positions jittered inside their cell, longitudes on the 0…360 convention, shuffled order
    jitter = rng.uniform(-0.12, 0.12, (2, rows.size))
    order = rng.permutation(rows.size)
    obs = frame(LAT[rows][order] + jitter[0][order], (LON[cols][order] + jitter[1][order]) % 360,
                seeded.sensors.value[order], [f"ship{i % 5}" for i in order])
    got = bin_observations(obs, LAT, LON, land, PARAMS)
    np.testing.assert_array_equal(got.seeded.sensors.index, seeded.sensors.index)
    np.testing.assert_array_equal(got.seeded.sensors.value, seeded.sensors.value)
    for name in ("lr_mean", "lr_count", "hr_mean", "hr_flag"):
        np.testing.assert_array_equal(getattr(got.seeded, name), getattr(seeded, name), err_msg=name)
    assert got.dropped == {"outside": 0, "land": 0}


def test_one_cell_several_observations_mean_platforms_and_drops():
    land = np.zeros((32, 48), bool)
    land[0, 0] = True
    obs = frame(
        [57.0, 57.01, 56.99, 58.0, 40.0, 54.0, 54.0, 55.0],
        [-9.0, -9.0, -9.01, -10.0, 0.0, 0.0, 0.0, 1.0],
        [1.0, 2.0, 6.0, 9.0, 9.0, 4.0, 6.0, 7.0],
        ["a", "a", "a", "a", "a", "b", "c", ""],
    )
    got = bin_observations(obs, LAT, LON, land, PARAMS)
    assert got.dropped == {"outside": 1, "land": 1}
    # sensors in flat-index order: latitude descends, so 55°N comes before 54°N
    assert got.seeded.sensors.value.tolist() == [3.0, 7.0, 5.0]
    assert got.n_obs.tolist() == [3, 1, 2]
    assert got.platforms == [("a",), (), ("b", "c")]
    assert got.platform.tolist() == [platform_code("a"), NO_PLATFORM, MIXED_PLATFORMS]
    assert int(got.seeded.lr_count.sum()) == 3


def test_a_platform_is_never_both_input_and_withheld_in_any_step():
    rng = np.random.default_rng(1)
    names = [f"buoy{i}" for i in range(23)]
    codes = np.array([platform_code(n) for n in names] + [NO_PLATFORM, MIXED_PLATFORMS])
    for step in ("2019-03-01T00", "2019-03-01T01", "2019-03-02T05"):
        platform = rng.choice(codes, 300)
        index = rng.choice(32 * 48, 300, replace=False)
        value = rng.normal(size=300)
        folds = platform_folds(platform, index, step, 5, seed=7)
        assert set(np.unique(folds)) <= {NOT_USED, 0, 1, 2, 3, 4}
        assert (folds[platform == MIXED_PLATFORMS] == NOT_USED).all()
        withheld_total = 0
        for k in range(5):
            split = split_fold(index, value, platform, folds, k)
            named_in = set(split.keep_platform[split.keep_platform >= 0].tolist())
            named_out = set(split.held_platform[split.held_platform >= 0].tolist())
            assert not named_in & named_out, f"fold {k} of {step}: a platform on both sides"
            assert MIXED_PLATFORMS not in split.keep_platform and MIXED_PLATFORMS not in split.held_platform
            assert not set(split.keep_index.tolist()) & set(split.held_index.tolist())
            ki, _ = keep_outside_fold(index, value, platform, step, k, 5, 7)
            np.testing.assert_array_equal(ki, split.keep_index)  # context steps drop the same platforms
            withheld_total += split.held_index.size
        assert withheld_total == int((platform != MIXED_PLATFORMS).sum())  # every usable sensor scored once
    # a platform keeps its fold from one step to the next
    one = platform_folds(codes[:23], np.arange(23), "2019-03-01T00", 5, seed=7)
    two = platform_folds(codes[:23], np.arange(23) + 100, "2019-03-09T13", 5, seed=7)
    np.testing.assert_array_equal(one, two)
    assert len(set(one.tolist())) > 1


def test_error_sums_pool_rmse_mae_bias():
    acc = ErrorSums()
    acc.add(np.array([1.0, 2.0]), np.array([0.0, 0.0]), np.array([5, 5]))
    acc.add(np.array([-1.0, np.nan]), np.array([0.0, 0.0]), np.array([NO_PLATFORM, 6]))
    s = acc.scores()
    assert s["n"] == 3 and s["n_unnamed"] == 1 and s["n_platforms"] == 1
    assert np.isclose(s["rmse"], np.sqrt(6 / 3)) and np.isclose(s["mae"], 4 / 3) and np.isclose(s["bias"], 2 / 3)


def test_prepare_from_a_missing_observations_store_is_one_line_exit_2(tmp_path, prefect_server):
    from tests.helpers_flows import run_cli

    code, lines = run_cli("prepare", "--start", "2019-03-01", "--end", "2019-03-01", "--observations",
                          str(tmp_path / "nowhere.zarr"), "--seedings", str(tmp_path / "s.zarr"), cwd=tmp_path)
    assert code == 2, lines
    assert len(lines) == 1 and "nowhere.zarr" in lines[0] and "ingest-observations" in lines[0]
    assert not (tmp_path / "s.zarr").exists()

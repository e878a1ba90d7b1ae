"""The prepare flow: reproducible per-day seedings and streamed normalisation statistics."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
import xarray as xr

from flows.config import ConfigError
from flows.ingest import ingest_flow
from flows.prepare import prepare_flow
from flows.states import run_flow
from pipeline.sample_archive import write_sample_archive
from storage.step_store import StepStore
from tests.helpers_flows import TEST_REGION, flow_config, tree_digest

pytestmark = pytest.mark.usefixtures("prefect_server")
START = dt.date(2020, 1, 1)
END = dt.date(2020, 1, 6)
SEEDED = ["sensor_index", "sensor_value", "lr_mean", "lr_count", "hr_mean", "hr_flag"]


@pytest.fixture(scope="module")
def raw_store(tmp_path_factory, dask_cluster, prefect_server):
    root = tmp_path_factory.mktemp("prep")
    write_sample_archive(root / "archive", START, 6, region=TEST_REGION)
    cfg = flow_config(root, root / "archive", dask_cluster.scheduler_address)
    assert run_flow(ingest_flow, cfg, START, END)["ok"]
    return root


def cfg_for(raw_root, seedings, dask_cluster, **over):
    cfg = flow_config(raw_root, raw_root / "archive", dask_cluster.scheduler_address, **over)
    return cfg.model_copy(update={"stores": cfg.stores.model_copy(update={"seedings": str(seedings)})})


def test_twice_and_single_day_give_identical_seedings(raw_store, tmp_path, dask_cluster):
    cfg = cfg_for(raw_store, tmp_path / "a.zarr", dask_cluster, **{"seeding.sensors_per_bin": 10, "seeding.bin_size": 16, "seeding.upsampling": 8})
    assert run_flow(prepare_flow, cfg, START, END)["summary"]["ok"] == 6
    before = tree_digest(tmp_path / "a.zarr")
    assert run_flow(prepare_flow, cfg, START, END)["summary"]["unchanged"] == 6
    after = tree_digest(tmp_path / "a.zarr")
    assert after == before  # every file, the root zarr.json (attributes, consolidated metadata) included

    single = cfg.model_copy(update={"stores": cfg.stores.model_copy(update={"seedings": str(tmp_path / "b.zarr")})})
    day = dt.date(2020, 1, 4)
    run_flow(prepare_flow, single, day, day)
    a = StepStore(str(tmp_path / "a.zarr")).read_step(day, SEEDED)
    b = StepStore(str(tmp_path / "b.zarr")).read_step(day, SEEDED)
    for name in SEEDED:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)

    ds = xr.open_zarr(tmp_path / "a.zarr", consolidated=False)
    assert ds.attrs["seeding_sensors_per_bin"] == 10 and ds.attrs["seeding_upsampling"] == 8
    assert ds.sizes["y_lr"] == 8 and ds.sizes["x_lr"] == 16 and ds.sizes["y_hr"] == 64
    # about 10 sensors per ocean bin, on ocean cells only, differing from day to day
    land = ds.land_mask.values.astype(bool).ravel()
    idx = ds.sensor_index.values
    assert not land[idx[idx >= 0]].any()
    assert not np.array_equal(idx[0], idx[1])
    counts = ds.lr_count.values
    ocean_bins = counts.sum(0) > 0
    assert 7 < counts[:, ocean_bins].mean() < 13
    assert np.array_equal(ds.hr_flag.values == 1, np.isfinite(ds.hr_mean.values))


def test_statistics_match_a_direct_computation(raw_store, tmp_path, dask_cluster):
    cfg = cfg_for(raw_store, tmp_path / "s.zarr", dask_cluster)
    run_flow(prepare_flow, cfg, START, END)
    ds = xr.open_zarr(tmp_path / "s.zarr", consolidated=False)
    x = ds.hr_mean.values.astype("float64")
    w = ds.hr_flag.values.astype(bool)
    n = w.sum(0)
    mean = np.where(n > 0, np.nansum(np.where(w, x, 0), 0) / np.maximum(n, 1), np.nan)
    seen = n > 0
    np.testing.assert_allclose(ds.hr_norm_mean.values[seen], mean[seen], rtol=1e-5)
    assert np.isfinite(ds.hr_norm_std.values).all() and (ds.hr_norm_std.values > 0).all()
    assert ds.attrs["norm_period_start"] == "2020-01-01" and ds.attrs["norm_n_days"] == 6


def test_other_parameters_on_an_existing_store_are_refused(raw_store, tmp_path, dask_cluster):
    cfg = cfg_for(raw_store, tmp_path / "p.zarr", dask_cluster)
    run_flow(prepare_flow, cfg, START, START)
    other = cfg.model_copy(update={"seeding": cfg.seeding.model_copy(update={"sensors_per_bin": 5.0})})
    with pytest.raises(ConfigError, match=r"seeding.sensors_per_bin: store has 10.0, asked 5.0"):
        run_flow(prepare_flow, other, START, START)


def test_more_sensors_than_cells_warns_once_and_senses_every_valid_cell(raw_store, tmp_path, dask_cluster, caplog):
    cfg = cfg_for(raw_store, tmp_path / "many.zarr", dask_cluster,
                  **{"seeding.sensors_per_bin": 300, "seeding.bin_size": 16, "seeding.upsampling": 8})
    assert run_flow(prepare_flow, cfg, START, START + dt.timedelta(days=2))["summary"]["ok"] == 3
    lines = [r.getMessage() for r in caplog.records if "exceeds the 256 cells" in r.getMessage()]
    assert len(lines) == 1 and "seeding.sensors_per_bin = 300" in lines[0]
    ds = xr.open_zarr(tmp_path / "many.zarr", consolidated=False)
    ocean = ~ds.land_mask.values.astype(bool)
    idx = ds.sensor_index.values[0]
    assert (idx >= 0).sum() == ocean.sum()  # every valid (never-land) cell of the day is a sensor

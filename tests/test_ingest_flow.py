"""The ingest flow end to end: real OISST-layout files, a real Zarr store, a real Prefect server
and a real Dask cluster."""

from __future__ import annotations

import datetime as dt
import json
import shutil

import netCDF4
import numpy as np
import pytest
import xarray as xr

from flows.ingest import ingest_flow
from flows.states import run_flow
from pipeline.errors import ArchiveError
from pipeline.oisst import oisst_relpath
from pipeline.sample_archive import write_sample_archive
from storage.step_store import StepStore
from tests.helpers_flows import SMALL_REGION, TEST_REGION, days, flow_config, tree_digest

pytestmark = pytest.mark.usefixtures("prefect_server")
START = dt.date(2020, 1, 1)


@pytest.fixture(scope="module")
def archive10(tmp_path_factory):
    root = tmp_path_factory.mktemp("archive")
    write_sample_archive(root, START, 10, region=TEST_REGION)
    return root


def copy_archive(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_ten_days_land_mask_cf_and_idempotent_rerun(tmp_path, archive10, dask_cluster):
    cfg = flow_config(tmp_path, archive10, dask_cluster.scheduler_address)
    result = run_flow(ingest_flow, cfg, START, START + dt.timedelta(days=9), report=str(tmp_path / "r.json"))
    assert result["ok"] and result["summary"]["ok"] == 10

    ds = xr.open_zarr(cfg.stores.raw, consolidated=False)
    assert ds.sizes == {"time": 10, "lat": 128, "lon": 256, "bnds": 2}  # bnds: lat_bnds, lon_bnds
    assert ds.sst.attrs["standard_name"] == "sea_surface_temperature"
    assert ds.sst.attrs["units"] == "degree_Celsius"
    assert ds.lat.attrs["axis"] == "Y" and ds.lon.attrs["units"] == "degrees_east"
    assert ds.land_mask.attrs["standard_name"] == "land_binary_mask"
    land = ds.land_mask.values.astype(bool)
    assert 0.05 < land.mean() < 0.6  # the crop holds North America's and Europe's coasts
    sst = ds.sst.values
    assert np.isnan(sst[:, land]).all() and np.isfinite(sst[:, ~land]).all()
    # lat ascending, decoded from int16 × 0.01 exactly as the file says
    assert np.all(np.diff(ds.lat.values) > 0)
    with netCDF4.Dataset(archive10 / oisst_relpath(START)) as nc:
        src = nc["sst"][0, 0].filled(np.nan)
    np.testing.assert_allclose(sst[0], src, atol=1e-6)
    marker = StepStore(cfg.stores.raw).marker(START)
    assert marker["status"] == "ok" and len(marker["sha256"]) == 64 and marker["source"].endswith("20200101.nc")

    before = tree_digest(tmp_path / "raw.zarr")
    again = run_flow(ingest_flow, cfg, START, START + dt.timedelta(days=9))
    assert again["summary"]["unchanged"] == 10
    assert tree_digest(tmp_path / "raw.zarr") == before  # not one byte changed


def test_truncated_file_is_reported_and_the_other_days_stored(tmp_path, archive10, dask_cluster):
    archive = copy_archive(archive10, tmp_path / "archive")
    bad = archive / oisst_relpath(START + dt.timedelta(days=4))
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    cfg = flow_config(tmp_path, archive, dask_cluster.scheduler_address)
    state = ingest_flow(cfg, START, START + dt.timedelta(days=9), report=str(tmp_path / "r.json"), return_state=True)
    assert state.is_failed() and state.message == "1 of 10 steps failed or missing: 2020-01-05; the rest is stored"
    result = state.result(raise_on_failure=False)  # the run the UI shows red keeps its result
    assert not result["ok"] and result["failed_days"] == ["2020-01-05"]
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["summary"]["ok"] == 9 and report["summary"]["failed"] == 1
    entry = next(d for d in report["days"] if d["day"] == "2020-01-05")
    assert bad.name in entry["message"] and "netCDF" in entry["message"]
    store = StepStore(cfg.stores.raw)
    assert store.marker(START + dt.timedelta(days=4))["status"] == "failed"
    assert len(store.committed_steps()) == 9
    assert store.open_dataset().sizes["time"] == 9


def test_bad_inputs_each_named_and_the_rest_ingested(tmp_path, archive10, dask_cluster):
    """Missing variable, another grid, duplicated date, missing date, all-NaN and out-of-range."""
    archive = copy_archive(archive10, tmp_path / "archive")
    d = [START + dt.timedelta(days=i) for i in range(10)]
    # 1. missing variable
    with netCDF4.Dataset(archive / oisst_relpath(d[1]), "a") as nc:
        nc.renameVariable("sst", "temperature")
    # 2. another grid: a file for day 3 written on a different crop
    other = tmp_path / "other"
    write_sample_archive(other, d[2], 1, region=TEST_REGION.__class__(10.0, 30.0, 280.0, 300.0))
    shutil.copy(other / oisst_relpath(d[2]), archive / oisst_relpath(d[2]))
    # 3. duplicated date: a second final file for day 4 under another name
    shutil.copy(archive / oisst_relpath(d[3]), archive / "202001" / "copy-of-20200104.nc")
    # 4. missing date: day 5 removed
    (archive / oisst_relpath(d[4])).unlink()
    # 5. all-NaN day and 6. out-of-range values
    with netCDF4.Dataset(archive / oisst_relpath(d[5]), "a") as nc:
        nc["sst"][:] = np.ma.masked
    with netCDF4.Dataset(archive / oisst_relpath(d[6]), "a") as nc:
        v = nc["sst"][:]
        v[0, 0, 60, 100:110] = 80.0
        nc["sst"][:] = v

    cfg = flow_config(tmp_path, archive, dask_cluster.scheduler_address)
    result = run_flow(ingest_flow, cfg, d[0], d[9], report=str(tmp_path / "r.json"))
    report = {e["day"]: e for e in json.loads((tmp_path / "r.json").read_text())["days"]}
    assert [report[x.isoformat()]["status"] for x in d] == [
        "ok", "failed", "failed", "failed", "missing", "failed", "failed", "ok", "ok", "ok"]
    assert "variable 'sst' not found" in report["2020-01-02"]["message"]
    assert "20200102.nc" in report["2020-01-02"]["message"]
    assert "grid" in report["2020-01-03"]["message"].lower()
    assert "copy-of-20200104.nc" in report["2020-01-04"]["message"]
    assert "no file" in report["2020-01-05"]["message"]
    assert "20200106.nc" in report["2020-01-06"]["message"]
    assert "10 of" in report["2020-01-07"]["message"] and "max 80.000" in report["2020-01-07"]["message"]
    assert not result["ok"]
    assert StepStore(cfg.stores.raw).committed_steps() == [d[0], d[7], d[8], d[9]]


@pytest.mark.slow  # ~8-15 s: several ingest runs
def test_failed_rerun_keeps_stored_day_and_final_replaces_preliminary(tmp_path, dask_cluster):
    archive = tmp_path / "archive"
    write_sample_archive(archive, START, 3, region=TEST_REGION, preliminary_last=2)
    cfg = flow_config(tmp_path, archive, dask_cluster.scheduler_address)
    run_flow(ingest_flow, cfg, START, START + dt.timedelta(days=2))
    store = StepStore(cfg.stores.raw)
    assert [store.marker(x)["preliminary"] for x in days(START, 3)] == [False, True, True]
    day0 = store.read_step(START, ["sst"])["sst"]
    # the day-0 file gets corrupted; the stored day must survive a re-run untouched
    f0 = archive / oisst_relpath(START)
    f0.write_bytes(b"garbage" * 100)
    # final files arrive for the two preliminary days
    final = tmp_path / "final"
    write_sample_archive(final, START + dt.timedelta(days=1), 2, region=TEST_REGION)
    for x in days(START + dt.timedelta(days=1), 2):
        shutil.copy(final / oisst_relpath(x), archive / oisst_relpath(x))
    result = run_flow(ingest_flow, cfg, START, START + dt.timedelta(days=2))
    assert result["summary"]["failed"] == 1
    assert store.marker(START)["status"] == "ok"
    np.testing.assert_array_equal(store.read_step(START, ["sst"])["sst"], day0)
    for x in days(START + dt.timedelta(days=1), 2):
        m = store.marker(x)
        assert m["status"] == "ok" and m["preliminary"] is False and "_preliminary" not in m["source"]


@pytest.mark.slow  # ~5-10 s: several ingest runs
def test_a_gappy_first_file_and_a_daily_mask_lose_no_valid_value(tmp_path, dask_cluster):
    """Five days; the first has a 30 % gap over the ocean, every later one its own gaps (a mask
    that varies by day). Every valid value of every day is stored exactly as the file says,
    and the land mask is the cells valid on no day."""
    archive = tmp_path / "archive"
    d = [START + dt.timedelta(days=i) for i in range(5)]
    write_sample_archive(archive, d[0], 5, region=SMALL_REGION)
    rng = np.random.default_rng(5)
    expected = []
    for k, day in enumerate(d):
        with netCDF4.Dataset(archive / oisst_relpath(day), "a") as nc:
            v = nc["sst"][:]
            ocean = ~np.ma.getmaskarray(v[0, 0])
            gap = np.zeros(v.shape, bool)
            gap[0, 0] = ocean & (rng.random(ocean.shape) < (0.3 if k == 0 else 0.05))
            v[gap] = np.ma.masked
            nc["sst"][:] = v
        with netCDF4.Dataset(archive / oisst_relpath(day)) as nc:
            expected.append(nc["sst"][0, 0].filled(np.nan))
    expected = np.stack(expected)
    cfg = flow_config(tmp_path, archive, dask_cluster.scheduler_address)
    result = run_flow(ingest_flow, cfg, d[0], d[-1])
    assert result["ok"] and result["summary"]["ok"] == 5
    store = StepStore(cfg.stores.raw)
    got = np.stack([store.read_step(day, ["sst"])["sst"] for day in d])
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_allclose(got[np.isfinite(expected)], expected[np.isfinite(expected)], atol=1e-6)
    first_gap = np.isnan(expected[0]) & np.isfinite(expected[1:]).any(axis=0)
    assert first_gap.sum() > 100  # ocean cells the first file missed, kept on later days
    np.testing.assert_array_equal(store.read_static("land_mask").astype(bool), np.isnan(expected).all(axis=0))


def test_a_first_file_on_another_grid_is_named_and_cannot_set_the_store(tmp_path, dask_cluster):
    archive = tmp_path / "archive"
    d = [START + dt.timedelta(days=i) for i in range(3)]
    write_sample_archive(archive, d[0], 3, region=SMALL_REGION)
    other = tmp_path / "other"
    write_sample_archive(other, d[0], 1, region=SMALL_REGION.__class__(20.0, 32.0, 290.0, 314.0))
    shutil.copy(other / oisst_relpath(d[0]), archive / oisst_relpath(d[0]))
    cfg = flow_config(tmp_path, archive, dask_cluster.scheduler_address)
    with pytest.raises(ArchiveError, match=r"the first files disagree on the grid.*20200101\.nc has .*20200102\.nc"):
        run_flow(ingest_flow, cfg, d[0], d[-1])
    assert not StepStore.exists(cfg.stores.raw)


@pytest.mark.slow  # ~8-15 s: several ingest runs
def test_a_configured_grid_is_the_stores_and_a_file_on_another_is_refused_naming_it(tmp_path, dask_cluster):
    """``archive.grid_file``: the store takes that file's grid, whatever the archive's first file
    holds; a file on another grid fails with one line naming the store's grid and where it came
    from, and the other days are stored with every valid value."""
    from flows.config import ConfigError

    archive = tmp_path / "archive"
    d = [START + dt.timedelta(days=i) for i in range(3)]
    write_sample_archive(archive, d[0], 3, region=SMALL_REGION)
    grid_file = tmp_path / "grid.nc"
    shutil.copy(archive / oisst_relpath(d[1]), grid_file)  # any netCDF with the wanted lat/lon
    other = tmp_path / "other"
    write_sample_archive(other, d[0], 1, region=SMALL_REGION.__class__(20.0, 32.0, 290.0, 314.0))
    shutil.copy(other / oisst_relpath(d[0]), archive / oisst_relpath(d[0]))
    cfg = flow_config(tmp_path, archive, dask_cluster.scheduler_address, **{"archive.grid_file": str(grid_file)})
    result = run_flow(ingest_flow, cfg, d[0], d[-1])
    assert result["summary"]["ok"] == 2 and result["summary"]["failed"] == 1
    store = StepStore(cfg.stores.raw)
    assert "archive.grid_file" in store.attrs["grid_source"]
    marker = store.marker(d[0])
    assert marker["status"] == "failed" and "grid" in marker["error"] and "archive.grid_file" in marker["error"]
    with netCDF4.Dataset(grid_file) as ds:
        np.testing.assert_allclose(store.read_static("lat"), np.sort(ds["lat"][:]))
    for day in d[1:]:
        with netCDF4.Dataset(archive / oisst_relpath(day)) as ds:
            want = np.ma.filled(ds["sst"][0, 0].astype("float32"), np.nan)
        np.testing.assert_array_equal(store.read_step(day, ["sst"])["sst"], want)
    bad = tmp_path / "bad.nc"
    bad.write_text("not netCDF")
    cfg_bad = flow_config(tmp_path / "b", archive, dask_cluster.scheduler_address, **{"archive.grid_file": str(bad)})
    with pytest.raises(ConfigError, match=r"archive.grid_file.*bad\.nc: cannot open the grid file"):
        run_flow(ingest_flow, cfg_bad, d[1], d[-1])


def _write_mask(path, lat, lon, values, name, time_dim=False, descending=False):
    """A land-sea mask file as the field's data centres publish them."""
    if descending:
        lat, values = lat[::-1], values[::-1]
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("latitude", lat.size)
        ds.createDimension("longitude", lon.size)
        dims = ("latitude", "longitude")
        if time_dim:
            ds.createDimension("time", 1)
            ds.createVariable("time", "f8", ("time",))[:] = [0.0]
            dims = ("time", *dims)
        ds.createVariable("latitude", "f4", ("latitude",))[:] = lat
        ds.createVariable("longitude", "f4", ("longitude",))[:] = lon
        ds["latitude"].units, ds["longitude"].units = "degrees_north", "degrees_east"
        var = ds.createVariable(name, "f4", dims, fill_value=-1.0)
        var[:] = values[None] if time_dim else values


def test_read_land_mask_file_land_fraction_and_ocean_flag(tmp_path):
    from pipeline.grid import read_land_mask_file

    lat, lon = np.array([0.5, 1.5, 2.5]), np.array([10.5, 11.5])
    fraction = np.array([[0.9, 0.2], [0.6, 0.0], [np.nan, 0.4]])  # ERA5 lsm: land fraction, one time step
    _write_mask(tmp_path / "lsm.nc", lat, lon, np.nan_to_num(fraction, nan=-1.0), "lsm", time_dim=True, descending=True)
    grid, land = read_land_mask_file(str(tmp_path / "lsm.nc"), None, "land")
    np.testing.assert_allclose(grid.lat, lat)
    np.testing.assert_array_equal(land, [[True, False], [True, False], [True, False]])  # missing = land
    _write_mask(tmp_path / "lsmask.nc", lat, lon, np.array([[1, 0], [1, 1], [0, 1]], float), "lsmask")
    _, land = read_land_mask_file(str(tmp_path / "lsmask.nc"), "lsmask", "sea")  # NOAA: 1 = ocean
    np.testing.assert_array_equal(land, [[False, True], [False, False], [True, False]])
    with pytest.raises(ValueError, match=r"lsmask\.nc: no 2-D .* field named 'mask'; it has \['lsmask'\]"):
        read_land_mask_file(str(tmp_path / "lsmask.nc"), "mask", "sea")


@pytest.mark.slow  # ~8-15 s: two land-mask layouts ingested
def test_a_named_land_mask_file_is_the_stores_and_no_valid_value_is_dropped(tmp_path, dask_cluster):
    """``archive.land_mask_file``: the static land_mask is the file's (an ERA5-style land fraction
    on descending latitudes), kept as given after every run, while every valid value of every day
    is stored, also where the mask says land; a mask on another grid is one line naming the key."""
    from flows.config import ConfigError

    archive = tmp_path / "archive"
    d = [START + dt.timedelta(days=i) for i in range(3)]
    write_sample_archive(archive, d[0], 3, region=SMALL_REGION)
    with netCDF4.Dataset(archive / oisst_relpath(d[0])) as nc:
        lat, lon = nc["lat"][:].astype(float), nc["lon"][:].astype(float)
        first = nc["sst"][0, 0].filled(np.nan)
    mask = np.isnan(first).astype(float)
    mask[: lat.size // 3, : lon.size // 3] = 1.0  # an ocean corner the user counts as land (ice shelf, lake)
    assert np.isfinite(first[: lat.size // 3, : lon.size // 3]).sum() > 20
    _write_mask(tmp_path / "lsm.nc", lat, lon, mask, "lsm", time_dim=True, descending=True)
    cfg = flow_config(tmp_path, archive, dask_cluster.scheduler_address,
                      **{"archive.land_mask_file": str(tmp_path / "lsm.nc")})
    for _ in range(2):  # the second run (unchanged days) must not shrink the mask either
        result = run_flow(ingest_flow, cfg, d[0], d[-1])
        assert result["ok"] and result["summary"]["ok"] + result["summary"].get("unchanged", 0) == 3
        store = StepStore(cfg.stores.raw)
        np.testing.assert_array_equal(store.read_static("land_mask").astype(bool), mask > 0.5)
    assert "archive.land_mask_file" in store.attrs["land_mask_source"]
    for day in d:
        with netCDF4.Dataset(archive / oisst_relpath(day)) as nc:
            np.testing.assert_array_equal(store.read_step(day, ["sst"])["sst"], nc["sst"][0, 0].filled(np.nan))
    _write_mask(tmp_path / "other.nc", lat[1:], lon, mask[1:], "lsm")
    cfg_bad = flow_config(tmp_path / "b", archive, dask_cluster.scheduler_address,
                          **{"archive.land_mask_file": str(tmp_path / "other.nc")})
    with pytest.raises(ConfigError, match=r"archive.land_mask_file.*other\.nc: grid .* does not match"):
        run_flow(ingest_flow, cfg_bad, d[0], d[-1])
    assert not StepStore.exists(cfg_bad.stores.raw)


def test_a_preliminary_file_never_replaces_a_day_stored_from_its_final_file(tmp_path, dask_cluster):
    """docs/architecture.md: "a preliminary file never replaces a final day". The final file of a
    day is stored; later only a (different) preliminary file for that day is in the archive: the
    run reports the day unchanged and not one byte of the store changes."""
    archive = tmp_path / "archive"
    d = [START + dt.timedelta(days=i) for i in range(2)]
    write_sample_archive(archive, d[0], 2, region=SMALL_REGION)
    cfg = flow_config(tmp_path, archive, dask_cluster.scheduler_address)
    assert run_flow(ingest_flow, cfg, d[0], d[1])["ok"]
    store_dir = tmp_path / "raw.zarr"
    before = tree_digest(store_dir)
    final = archive / oisst_relpath(d[1])
    prelim = archive / oisst_relpath(d[1], preliminary=True)
    final.rename(prelim)
    with netCDF4.Dataset(prelim, "a") as nc:  # another version of the day: 0.5 °C warmer
        nc["sst"][:] = nc["sst"][:] + 0.5
    result = run_flow(ingest_flow, cfg, d[0], d[1])
    assert result["ok"] and result["summary"].get("unchanged") == 2, result["summary"]
    assert tree_digest(store_dir) == before
    marker = StepStore(cfg.stores.raw).marker(d[1])
    assert marker["preliminary"] is False and marker["source"].endswith(f"{d[1]:%Y%m%d}.nc")

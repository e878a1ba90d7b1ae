"""Archives of other cadences through the real ingest flow: the bundled hourly ERA5 file unchanged,
a monthly NetCDF-3 archive with gaps, a year-0 climatology, and a store of the daily-only release
that still opens and grows."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import netCDF4
import numpy as np
import pytest
import xarray as xr

from flows.config import ConfigError
from flows.ingest import ingest_flow
from flows.states import run_flow
from pipeline.steps import CLIMATOLOGY, DAILY, HOURLY, MONTHLY
from storage.raw_store import create_raw_store
from storage.step_store import StepStore
from tests.helpers_flows import flow_config, tree_digest

pytestmark = pytest.mark.usefixtures("prefect_server")
DATA = Path(__file__).resolve().parents[1] / "pipeline" / "data"
ERA5 = DATA / "era5_t2m_uk_2019-03-01_to_20_hourly.nc"
ERSST = DATA / "ersst_v5_monthly_2010-2020.nc"
T2M_RANGE = (-40.0, 50.0)


class _Lines(logging.Handler):
    """Collects the messages of Prefect's flow-run logger (the lines a user sees)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def flow_warnings():
    handler = _Lines()
    logger = logging.getLogger("prefect.flow_runs")
    logger.addHandler(handler)
    yield handler.lines
    logger.removeHandler(handler)


@pytest.mark.slow  # ~40-100 s: a month of ERA5 hours ingested and read back
def test_hourly_era5_file_ingests_unchanged_value_for_value(tmp_path, dask_cluster):
    cfg = flow_config(tmp_path, ERA5, dask_cluster.scheduler_address,
                      **{"archive.variable": "t2m", "archive.valid_range": T2M_RANGE})
    result = run_flow(ingest_flow, cfg, dt.date(2019, 3, 1), dt.date(2019, 3, 20))
    assert result["ok"] and result["summary"]["ok"] == 480

    store = StepStore(cfg.stores.raw)
    assert store.cadence == HOURLY and store.attrs["seedfield_step"] == "1h"
    assert len(store.steps) == 480 and store.steps[0] == dt.datetime(2019, 3, 1, 0)
    assert store.steps[-1] == dt.datetime(2019, 3, 20, 23)
    assert store.marker(dt.datetime(2019, 3, 7, 13))["status"] == "ok"
    ds = xr.open_zarr(cfg.stores.raw, consolidated=False)
    assert ds.t2m.attrs["units"] == "degree_Celsius" and ds.t2m.attrs["long_name"] == "2 metre temperature"
    assert "standard_name" not in ds.t2m.attrs  # ERA5 writes 'unknown': no SST name is made up
    assert ds.time.values[5] == np.datetime64("2019-03-01T05:00")
    with netCDF4.Dataset(ERA5) as nc:
        kelvin = nc["t2m"][:].filled(np.nan).astype(np.float32)
        lat = nc["latitude"][:]
    assert lat[0] > lat[-1]  # the file runs north → south; the store south → north
    expected = (kelvin - np.float32(273.15))[:, ::-1, :]
    np.testing.assert_array_equal(ds.t2m.values, expected)
    np.testing.assert_array_equal(ds.lat.values, lat[::-1])

    before = tree_digest(tmp_path / "raw.zarr")
    again = run_flow(ingest_flow, cfg, dt.date(2019, 3, 1), dt.date(2019, 3, 20))
    assert again["summary"]["unchanged"] == 480
    assert tree_digest(tmp_path / "raw.zarr") == before  # not one byte changed

    # the store keeps its step: another step asked for later is refused with the reason
    daily = cfg.model_copy(update={"archive": cfg.archive.model_copy(update={"step": "1D"})})
    with pytest.raises(ConfigError, match="has the step '1h', not '1D'"):
        run_flow(ingest_flow, daily, dt.date(2019, 3, 1), dt.date(2019, 3, 2))


def test_an_hourly_file_into_a_daily_store_is_refused_with_the_fix(tmp_path, dask_cluster):
    cfg = flow_config(tmp_path, ERA5, dask_cluster.scheduler_address,
                      **{"archive.variable": "t2m", "archive.valid_range": T2M_RANGE, "archive.step": "1D"})
    with pytest.raises(Exception, match=r"480 time steps fall into 20 1D steps \(e\.g\. 24 in 2019-03-01\).*set \[archive\] step \(e\.g\. '1h'\)"):
        run_flow(ingest_flow, cfg, dt.date(2019, 3, 1), dt.date(2019, 3, 1))


def _ersst_crop() -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dt.datetime]]:
    with netCDF4.Dataset(ERSST) as nc:
        lat = nc["lat"][:]
        lon = nc["lon"][:]
        rows = np.flatnonzero((lat >= 30) & (lat <= 50))
        cols = np.flatnonzero((lon >= 300) & (lon <= 340))
        sst = nc["sst"][:24, rows, cols].filled(np.nan).astype(np.float32)
        times = netCDF4.num2date(nc["time"][:24], nc["time"].units, only_use_cftime_datetimes=False)
    return sst.reshape(24, rows.size, cols.size), lat[rows], lon[cols], list(times)


def _write_cdf(path: Path, sst: np.ndarray, lat, lon, time_values, units: str) -> None:
    with netCDF4.Dataset(path, "w", format="NETCDF3_CLASSIC") as nc:
        nc.createDimension("time", None)
        nc.createDimension("lat", lat.size)
        nc.createDimension("lon", lon.size)
        t = nc.createVariable("time", "f8", ("time",))
        t.units = units
        nc.createVariable("lat", "f4", ("lat",))[:] = lat
        nc["lat"].units = "degrees_north"
        nc.createVariable("lon", "f4", ("lon",))[:] = lon
        nc["lon"].units = "degrees_east"
        v = nc.createVariable("sst", "f4", ("time", "lat", "lon"), fill_value=np.float32(-9.99e33))
        v.units = "degC"
        t[:] = time_values
        v[:] = np.where(np.isfinite(sst), sst, np.float32(-9.99e33))


def test_monthly_netcdf3_archive_one_step_per_month_and_one_line_per_gap(tmp_path, dask_cluster, flow_warnings):
    sst, lat, lon, times = _ersst_crop()
    archive = tmp_path / "monthly"
    archive.mkdir()
    gaps = {6, 7, 8, 15}  # 2010-07 … 2010-09 and 2011-04 were never delivered
    for i, when in enumerate(times):
        if i not in gaps:
            value = (dt.datetime(when.year, when.month, when.day) - dt.datetime(1800, 1, 1)).days
            _write_cdf(archive / f"ersst.v5.{when:%Y%m}.cdf", sst[i : i + 1], lat, lon, [value], "days since 1800-01-01")
    cfg = flow_config(tmp_path, archive, dask_cluster.scheduler_address)
    result = run_flow(ingest_flow, cfg, dt.date(2010, 1, 1), dt.date(2011, 12, 31))
    assert not result["ok"] and result["summary"] == {"ok": 20, "unchanged": 0, "skipped": 0, "failed": 0, "missing": 4}

    store = StepStore(cfg.stores.raw)
    assert store.cadence == MONTHLY and len(store.steps) == 24
    assert store.steps[:3] == [dt.date(2010, 1, 1), dt.date(2010, 2, 1), dt.date(2010, 3, 1)]
    ds = xr.open_zarr(cfg.stores.raw, consolidated=False)
    np.testing.assert_array_equal(ds.sst.values[0], sst[0][::-1])  # ERSST runs north → south
    assert np.isnan(ds.sst.values[6]).all()
    missing_lines = [line for line in flow_warnings if "missing" in line]
    assert missing_lines == [
        f"2010-07-01 … 2010-09-01: 3 steps missing (no file in {archive})",
        f"2011-04-01: 1 step missing (no file in {archive})",
    ]


def test_year_zero_climatology_is_a_twelve_step_store(tmp_path, dask_cluster):
    sst, lat, lon, _ = _ersst_crop()
    clim = np.stack([np.nanmean(sst[m::12], axis=0) for m in range(12)]).astype(np.float32)
    hours = [(dt.datetime(2000, m, 15) - dt.datetime(2000, 1, 1)).total_seconds() / 3600 for m in range(1, 13)]
    archive = tmp_path / "clim"
    archive.mkdir()
    _write_cdf(archive / "sst_climatology.cdf", clim, lat, lon, hours, "hour since 0000-01-01 00:00:00")
    cfg = flow_config(tmp_path, archive, dask_cluster.scheduler_address)
    result = run_flow(ingest_flow, cfg, dt.date(2000, 1, 1), dt.date(2000, 12, 31))
    assert result["ok"] and result["summary"]["ok"] == 12
    store = StepStore(cfg.stores.raw)
    assert store.cadence == CLIMATOLOGY and len(store.steps) == 12
    ds = xr.open_zarr(cfg.stores.raw, consolidated=False)
    np.testing.assert_array_equal(ds.sst.values, clim[:, ::-1])
    assert "nominal" in ds.time.attrs["long_name"]


def test_a_daily_store_of_the_daily_only_release_opens_and_grows(tmp_path, dask_cluster):
    from pipeline.sample_archive import write_sample_archive
    from tests.helpers_flows import SMALL_REGION

    archive = tmp_path / "archive"
    write_sample_archive(archive, dt.date(2020, 1, 1), 4, region=SMALL_REGION)
    cfg = flow_config(tmp_path, archive, dask_cluster.scheduler_address)
    # the daily-only release's layout: no step attribute, noon times in 'days since 1978-01-01 12:00'
    days = [dt.date(2020, 1, 1), dt.date(2020, 1, 2)]
    lat = np.arange(24.125, 36.0, 0.25)
    lon = np.arange(290.125, 314.0, 0.25)
    create_raw_store(cfg.stores.raw, days, lat, lon, np.zeros((lat.size, lon.size), bool))
    assert "seedfield_step" not in StepStore(cfg.stores.raw).attrs
    ds = xr.open_zarr(cfg.stores.raw, consolidated=False, decode_times=False)
    assert ds.time.attrs["units"].replace("T", " ") == "days since 1978-01-01 12:00:00"
    assert int(ds.time.values[0]) == 15340

    result = run_flow(ingest_flow, cfg, dt.date(2020, 1, 1), dt.date(2020, 1, 4))
    assert result["ok"] and result["summary"]["ok"] == 4
    store = StepStore(cfg.stores.raw)
    assert store.cadence == DAILY and store.steps == [dt.date(2020, 1, d) for d in range(1, 5)]
    assert sorted(p.name for p in (tmp_path / "raw.zarr" / "_seedfield" / "commits").iterdir())[0] == "2020-01-01.json"
    assert xr.open_zarr(cfg.stores.raw, consolidated=False).time.values[3] == np.datetime64("2020-01-04T12:00")

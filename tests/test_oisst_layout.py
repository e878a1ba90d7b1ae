"""The NOAA OISST v2.1 file layout, file names, and the ERSST-derived sample archive."""

from __future__ import annotations

import itertools
from datetime import date
from pathlib import Path

import netCDF4
import numpy as np
import pytest

from pipeline.grid import Region
from pipeline.oisst import (
    OISST_EPOCH,
    oisst_filename,
    oisst_global_grid,
    oisst_relpath,
    parse_oisst_filename,
    write_oisst_file,
)
from pipeline.sample_archive import (
    BUNDLED_ERSST,
    SAMPLE_FIRST_DAY,
    SAMPLE_LAST_DAY,
    derive_daily_sst,
    write_sample_archive,
)

DAY = date(2015, 3, 14)


# --- file names ------------------------------------------------------------------------------


def test_filenames_and_relpaths() -> None:
    assert oisst_filename(DAY) == "oisst-avhrr-v02r01.20150314.nc"
    assert oisst_filename(DAY, preliminary=True) == "oisst-avhrr-v02r01.20150314_preliminary.nc"
    assert oisst_relpath(DAY) == "201503/oisst-avhrr-v02r01.20150314.nc"
    assert oisst_relpath(DAY, True) == "201503/oisst-avhrr-v02r01.20150314_preliminary.nc"


def test_parse_filenames() -> None:
    assert parse_oisst_filename("oisst-avhrr-v02r01.20150314.nc") == (DAY, False)
    assert parse_oisst_filename("oisst-avhrr-v02r01.20150314_preliminary.nc") == (DAY, True)
    assert parse_oisst_filename("/a/201503/oisst-avhrr-v02r01.20150314.nc") == (DAY, False)
    assert parse_oisst_filename("https://h/x/oisst-avhrr-v02r01.20150314.nc") == (DAY, False)
    for bad in (
        "oisst-avhrr-v02r01.20150230.nc",  # no such date
        "oisst-avhrr-v02r01.2015031.nc",
        "oisst-avhrr-v02r01.20150314.nc4",
        "oisst-avhrr-v02r01.20150314_prelim.nc",
        "sst.20150314.nc",
    ):
        assert parse_oisst_filename(bad) is None, bad
    for day in (date(1981, 9, 1), date(2024, 2, 29)):
        for prelim in (False, True):
            assert parse_oisst_filename(oisst_filename(day, prelim)) == (day, prelim)


# --- exact layout ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    grid = oisst_global_grid()
    lat2d = np.broadcast_to(grid.lat[:, None], grid.shape)
    sst = (28.0 - np.abs(lat2d) * 0.33).astype(np.float32)
    sst[100:140, 200:300] = np.nan  # "land"
    fields = {
        "sst": sst,
        "anom": np.where(np.isnan(sst), np.nan, 0.37),
        "err": np.where(np.isnan(sst), np.nan, 0.25),
        "ice": np.where(sst <= -1.79, 1.0, np.nan),
    }
    path = tmp_path_factory.mktemp("layout") / oisst_relpath(DAY)
    write_oisst_file(path, DAY, lat=grid.lat, lon=grid.lon, history="unit test", **fields)
    return path, fields


def test_dimensions_and_coordinates(written: tuple[Path, dict]) -> None:
    path, _ = written
    with netCDF4.Dataset(path) as ds:
        assert ds.data_model == "NETCDF4"
        assert {n: len(d) for n, d in ds.dimensions.items()} == {
            "time": 1, "zlev": 1, "lat": 720, "lon": 1440,
        }
        assert ds.dimensions["time"].isunlimited()
        assert not ds.dimensions["lat"].isunlimited()
        assert set(ds.variables) == {"time", "zlev", "lat", "lon", "sst", "anom", "err", "ice"}
        time = ds["time"]
        assert time.dtype == np.float32 and time.dimensions == ("time",)
        assert time.units == f"days since {OISST_EPOCH}" == "days since 1978-01-01 12:00:00"
        assert time.long_name == "Center time of the day"
        assert time[0] == (DAY - date(1978, 1, 1)).days
        noon = netCDF4.num2date(time[0], time.units)
        assert (noon.year, noon.month, noon.day, noon.hour) == (2015, 3, 14, 12)
        zlev = ds["zlev"]
        assert zlev.dtype == np.float32 and zlev[:].tolist() == [0.0]
        assert zlev.units == "meters" and zlev.positive == "down"
        lat, lon = ds["lat"], ds["lon"]
        assert lat.dtype == np.float32 and lon.dtype == np.float32
        assert lat[0] == -89.875 and lat[-1] == 89.875 and np.allclose(np.diff(lat[:]), 0.25)
        assert lon[0] == 0.125 and lon[-1] == 359.875 and np.allclose(np.diff(lon[:]), 0.25)
        assert lat.units == "degrees_north" and lon.units == "degrees_east"
        assert lat.grids == "Uniform grid from -89.875 to 89.875 by 0.25"
        assert lon.grids == "Uniform grid from 0.125 to 359.875 by 0.25"


@pytest.mark.parametrize(
    ("name", "units", "vmin", "vmax"),
    [("sst", "Celsius", -300, 4500), ("anom", "Celsius", -1200, 1200),
     ("err", "Celsius", 0, 1000), ("ice", "%", 0, 100)],
)
def test_data_variable_encoding(written: tuple[Path, dict], name: str, units: str, vmin: int,
                                vmax: int) -> None:
    path, _ = written
    with netCDF4.Dataset(path) as ds:
        var = ds[name]
        assert var.dtype == np.int16
        assert var.dimensions == ("time", "zlev", "lat", "lon")
        assert var.chunking() == [1, 1, 720, 1440]
        filters = var.filters()
        assert filters["zlib"] is True and filters["shuffle"] is True
        assert filters["complevel"] == 4
        assert var._FillValue == -999 and var._FillValue.dtype == np.int16
        assert var.scale_factor.dtype == np.float32 and var.scale_factor == np.float32(0.01)
        assert var.add_offset.dtype == np.float32 and var.add_offset == 0
        assert var.valid_min == vmin and var.valid_max == vmax
        assert var.valid_min.dtype == np.int16
        assert var.units == units
        assert var.long_name


def test_values_and_fill(written: tuple[Path, dict]) -> None:
    path, fields = written
    with netCDF4.Dataset(path) as ds:
        ds.set_auto_maskandscale(False)
        raw = ds["sst"][0, 0]
        assert raw[120, 250] == -999  # land is fill
        assert np.all(ds["ice"][0, 0] == -999)  # no ice anywhere in this field
        ds.set_auto_maskandscale(True)
        decoded = ds["sst"][0, 0]
        assert decoded.mask[120, 250]
        expected = fields["sst"]
        ok = ~np.isnan(expected)
        assert np.max(np.abs(decoded.filled(np.nan)[ok] - expected[ok])) <= 0.005 + 1e-5
        assert np.allclose(ds["anom"][0, 0].compressed(), 0.37, atol=1e-6)


def test_global_attributes(written: tuple[Path, dict]) -> None:
    path, _ = written
    with netCDF4.Dataset(path) as ds:
        attrs = {k: ds.getncattr(k) for k in ds.ncattrs()}
    assert attrs["Conventions"] == "CF-1.6, ACDD-1.3"
    assert "ERSST" in attrs["source"] and "ERSST" in attrs["title"]
    assert "seedfield sample" in attrs["comment"] and "ERSSTv5" in attrs["comment"]
    assert "seedfield sample" in attrs["history"] and "unit test" in attrs["history"]
    assert attrs["title"].endswith("- Final")
    assert attrs["id"] == oisst_filename(DAY)
    assert attrs["time_coverage_start"] == "2015-03-14T00:00:00Z"


def test_writer_rejects_bad_input(tmp_path: Path) -> None:
    grid = oisst_global_grid()
    ok = np.zeros(grid.shape)
    with pytest.raises(ValueError, match="outside the OISST valid range"):
        write_oisst_file(tmp_path / "a.nc", DAY, ok + 50.0, ok, ok, ok, grid.lat, grid.lon)
    with pytest.raises(ValueError, match="shape"):
        write_oisst_file(tmp_path / "b.nc", DAY, ok[:10], ok, ok, ok, grid.lat, grid.lon)
    assert list(tmp_path.iterdir()) == []  # nothing half-written is left behind


# --- sample archive ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    root = tmp_path_factory.mktemp("sample")
    seen: list[int] = []
    paths = write_sample_archive(root, date(2013, 5, 30), 3, preliminary_last=1,
                                 progress=seen.append)
    assert seen == [1, 2, 3]
    return root, paths


def _decoded(path: Path, name: str) -> np.ndarray:
    with netCDF4.Dataset(path) as ds:
        return ds[name][0, 0].astype(np.float64).filled(np.nan)


def test_bundled_source_exists() -> None:
    assert BUNDLED_ERSST.is_file()
    assert (SAMPLE_FIRST_DAY, SAMPLE_LAST_DAY) == (date(2010, 1, 1), date(2020, 8, 31))


def test_sample_files_names_and_shape(sample: tuple[Path, list[Path]]) -> None:
    root, paths = sample
    assert [p.relative_to(root).as_posix() for p in paths] == [
        "201305/oisst-avhrr-v02r01.20130530.nc",
        "201305/oisst-avhrr-v02r01.20130531.nc",
        "201306/oisst-avhrr-v02r01.20130601_preliminary.nc",
    ]
    for path in paths:
        with netCDF4.Dataset(path) as ds:
            assert ds["sst"].shape == (1, 1, 720, 1440)
    with netCDF4.Dataset(paths[-1]) as ds:
        assert ds.title.endswith("- Preliminary")


def test_sample_values_are_plausible(sample: tuple[Path, list[Path]]) -> None:
    _, paths = sample
    ssts = [_decoded(p, "sst") for p in paths]
    land = np.isnan(ssts[0])
    assert 0.25 <= land.mean() <= 0.35
    for sst in ssts:
        assert np.array_equal(np.isnan(sst), land)  # static land mask
        assert -2.0 <= np.nanmin(sst) and np.nanmax(sst) <= 35.0
    # tropics warm, poles cold
    grid = oisst_global_grid()
    tropics = np.abs(grid.lat) < 10
    polar = np.abs(grid.lat) > 70
    assert np.nanmean(ssts[0][tropics]) > 25 > 5 > np.nanmean(ssts[0][polar])
    # consecutive days differ, slightly and smoothly (across a month boundary too)
    for a, b in itertools.pairwise(ssts):
        diff = np.abs(b - a)
        assert 0.001 < np.nanmean(diff) < 0.1
        assert np.nanmax(diff) < 0.5
    d1, d2 = ssts[1] - ssts[0], ssts[2] - ssts[1]
    assert np.nanmean(np.abs(d2 - d1)) < 0.05


def test_sample_anom_err_ice(sample: tuple[Path, list[Path]]) -> None:
    _, paths = sample
    sst = _decoded(paths[0], "sst")
    anom, err, ice = (_decoded(paths[0], n) for n in ("anom", "err", "ice"))
    ocean = ~np.isnan(sst)
    assert np.array_equal(~np.isnan(anom), ocean) and np.array_equal(~np.isnan(err), ocean)
    assert np.nanmax(np.abs(anom)) < 12 and abs(np.nanmean(anom)) < 1.0
    assert 0.1 - 1e-6 <= np.nanmin(err) and np.nanmax(err) <= 2.0 + 1e-6
    has_ice = ~np.isnan(ice)
    assert has_ice.any() and np.all(ice[has_ice] == 1.0)
    assert np.all(sst[has_ice] <= -1.79 + 0.006)
    assert not np.any(has_ice & (sst > -1.78))


def test_region_crop_across_zero_and_dateline(tmp_path: Path) -> None:
    grid, values = derive_daily_sst([date(2012, 8, 1)], Region(-10, 10, -10, 10))
    assert grid.shape == (80, 80) and values.shape == (1, 80, 80)
    assert grid.lon[0] == -9.875 and grid.lon[-1] == 9.875
    assert values.dtype == np.float32
    full_grid, full = derive_daily_sst([date(2012, 8, 1)])
    lat0 = int(np.searchsorted(full_grid.lat, -9.875))
    # same numbers as the global derivation, rolled across 0°
    assert np.allclose(values[0, :, 40:], full[0, lat0:lat0 + 80, :40], equal_nan=True)
    assert np.allclose(values[0, :, :40], full[0, lat0:lat0 + 80, -40:], equal_nan=True)

    paths = write_sample_archive(tmp_path, date(2012, 8, 1), 2, region=Region(-5, 5, 170, -170))
    with netCDF4.Dataset(paths[0]) as ds:
        assert ds["sst"].shape == (1, 1, 40, 80)
        assert ds["sst"].chunking() == [1, 1, 40, 80]
        assert ds["lon"][0] == 170.125 and ds["lon"][-1] == 189.875


def test_out_of_range_dates() -> None:
    with pytest.raises(ValueError, match=r"2010-01-01 … 2020-08-31"):
        derive_daily_sst([date(2009, 12, 31)])
    with pytest.raises(ValueError, match="2020-09-01"):
        write_sample_archive(Path("/nonexistent"), date(2020, 8, 30), 3)
    with pytest.raises(ValueError, match="days"):
        write_sample_archive(Path("/nonexistent"), date(2015, 1, 1), 0)


def test_range_edges_are_supported() -> None:
    _grid, values = derive_daily_sst([SAMPLE_FIRST_DAY, SAMPLE_LAST_DAY], Region(0, 10, 0, 10))
    assert np.isfinite(values).any(axis=(1, 2)).all()

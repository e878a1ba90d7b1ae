"""Decoding archive files (OISST and generic CF, NetCDF-3/4), validation, and grids."""

from __future__ import annotations

import hashlib
from datetime import date
from pathlib import Path

import netCDF4
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from pipeline.errors import ArchiveError, GridMismatchError, SeedfieldError
from pipeline.grid import Grid, Region, align_to_grid, crop_indices
from pipeline.oisst import oisst_global_grid
from pipeline.readers import StepField, file_days, read_archive_file, validate_step
from pipeline.sample_archive import derive_daily_sst, write_sample_archive

LAT_DESC = np.array([30.0, 20.0, 10.0, 0.0, -10.0])
LON_180 = np.array([-170.0, -90.0, 0.0, 90.0, 170.0, 175.0])


def _field(t: int) -> np.ndarray:
    """Distinct values per cell and time step, in °C, on (LAT_DESC, LON_180)."""
    lat = LAT_DESC[:, None]
    lon = LON_180[None, :]
    return (15.0 + lat / 10.0 + lon / 100.0 + t).astype(np.float32)


def _write_nc3(path: Path, kelvin: bool = True, units: str | None = "K") -> Path:
    """NetCDF-3 classic: lat descending, lon -180..180, 3 daily steps, float with missing_value."""
    with netCDF4.Dataset(path, "w", format="NETCDF3_CLASSIC") as ds:
        ds.createDimension("time", None)
        ds.createDimension("latitude", LAT_DESC.size)
        ds.createDimension("longitude", LON_180.size)
        t = ds.createVariable("time", "f8", ("time",))
        t.units = "hours since 2020-01-01 00:00:00"
        t.calendar = "gregorian"
        t[:] = [12.0, 36.0, 60.0]
        la = ds.createVariable("latitude", "f4", ("latitude",))
        la.units = "degrees_north"
        la[:] = LAT_DESC
        lo = ds.createVariable("longitude", "f4", ("longitude",))
        lo.units = "degrees_east"
        lo[:] = LON_180
        v = ds.createVariable("analysed_sst", "f4", ("time", "latitude", "longitude"))
        v.missing_value = np.float32(-9999.0)
        if units is not None:
            v.units = units
        v.long_name = "analysed sea surface temperature"
        data = np.stack([_field(i) for i in range(3)]) + (273.15 if kelvin else 0.0)
        data[:, 0, 0] = -9999.0
        v[:] = data
        ds.title = "generic netcdf3"
    return path


def _write_nc4_regional(path: Path) -> Path:
    """NetCDF-4 through xarray: int16 packed, depth(1) axis, noon times, a regional domain."""
    lat = 40.125 + 0.25 * np.arange(20)
    lon = (-29.875 + 0.25 * np.arange(20))[::-1]  # descending lon, -180..180 convention
    times = pd.date_range("2019-06-01T12:00", periods=2, freq="D")
    data = 10.0 + np.arange(lat.size)[None, None, :, None] * 0.1 + np.zeros(
        (2, 1, lat.size, lon.size)
    )
    data[1] += 0.5
    data[:, :, 3, 4] = np.nan
    ds = xr.Dataset(
        {"sst": (("time", "depth", "lat", "lon"), data, {"units": "degC", "long_name": "SST"})},
        coords={"time": times, "depth": [0.0], "lat": lat, "lon": lon},
        attrs={"title": "regional", "source": "test"},
    )
    enc = {"sst": {"dtype": "int16", "scale_factor": 0.001, "add_offset": 10.0,
                   "_FillValue": -32768, "zlib": True}}
    ds.to_netcdf(path, format="NETCDF4", encoding=enc)
    return path


@pytest.fixture(scope="module")
def oisst_sample(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("oisst")
    return write_sample_archive(root, date(2018, 12, 31), 2, preliminary_last=1)


# --- OISST round trip -----------------------------------------------------------------------


def test_oisst_round_trip(oisst_sample: list[Path]) -> None:
    days = [date(2018, 12, 31), date(2019, 1, 1)]
    _, expected = derive_daily_sst(days)
    for i, path in enumerate(oisst_sample):
        data = path.read_bytes()
        decoded = read_archive_file(data, str(path), preliminary=(i == 1))
        assert decoded.url == str(path)
        assert decoded.sha256 == hashlib.sha256(data).hexdigest()
        assert decoded.preliminary is (i == 1)
        assert decoded.grid.matches(oisst_global_grid())
        assert decoded.grid.lon_convention == "0-360" and decoded.grid.is_global_lon
        assert [d.step for d in decoded.steps] == [days[i]]
        values = decoded.steps[0].values
        assert values.dtype == np.float32 and values.shape == (720, 1440)
        assert np.array_equal(np.isnan(values), np.isnan(expected[i]))
        assert np.nanmax(np.abs(values - expected[i])) <= 0.005 + 1e-5
        assert decoded.attrs["units"] == "Celsius"
        assert "ERSST" in decoded.attrs["source"]
        validate_step(decoded.steps[0], str(path))


def test_oisst_other_variables(oisst_sample: list[Path]) -> None:
    path = oisst_sample[0]
    anom = read_archive_file(path.read_bytes(), str(path), variable="anom")
    assert np.nanmax(np.abs(anom.steps[0].values)) < 12
    assert file_days(str(path)) == [date(2018, 12, 31)]


# --- generic files ------------------------------------------------------------------------


def test_netcdf3_kelvin_descending_lat_lon180_many_days(tmp_path: Path) -> None:
    path = _write_nc3(tmp_path / "generic.nc")
    decoded = read_archive_file(path.read_bytes(), "mem://generic.nc", variable="analysed_sst")
    assert [d.step for d in decoded.steps] == [date(2020, 1, 1), date(2020, 1, 2), date(2020, 1, 3)]
    assert np.array_equal(decoded.grid.lat, LAT_DESC[::-1])
    assert np.array_equal(decoded.grid.lon, LON_180)
    assert decoded.grid.lon_convention == "-180-180"
    for t, day in enumerate(decoded.steps):
        expected = _field(t)[::-1]
        expected[-1, 0] = np.nan  # the missing_value cell (lat 30, lon -170)
        assert day.values.dtype == np.float32
        np.testing.assert_allclose(day.values, expected, atol=1e-4)
    assert decoded.attrs["units"] == "degree_Celsius"
    assert decoded.attrs["original_units"] == "K"
    assert decoded.attrs["title"] == "generic netcdf3"
    assert file_days(str(path)) == [d.step for d in decoded.steps]


def test_netcdf4_regional_packed_with_level(tmp_path: Path) -> None:
    path = _write_nc4_regional(tmp_path / "regional.nc4")
    decoded = read_archive_file(path.read_bytes(), str(path))
    assert [d.step for d in decoded.steps] == [date(2019, 6, 1), date(2019, 6, 2)]
    grid = decoded.grid
    assert grid.shape == (20, 20)
    assert np.all(np.diff(grid.lon) > 0) and grid.lon[0] == -29.875 and not grid.is_global_lon
    first = decoded.steps[0].values
    assert np.isnan(first[3, 20 - 1 - 4])  # the NaN cell, after sorting lon ascending
    np.testing.assert_allclose(first[5, 0], 10.5, atol=1e-3)
    np.testing.assert_allclose(decoded.steps[1].values[5, 0], 11.0, atol=1e-3)
    assert decoded.attrs["units"] == "degC"


def test_no_time_axis_uses_date_in_name(tmp_path: Path) -> None:
    ds = xr.Dataset({"sst": (("lat", "lon"), np.full((2, 3), 12.0), {"units": "degC"})},
                    coords={"lat": [1.0, 2.0], "lon": [3.0, 4.0, 5.0]})
    path = tmp_path / "sst_20200315.nc"
    ds.to_netcdf(path)
    decoded = read_archive_file(path.read_bytes(), str(path))
    assert [d.step for d in decoded.steps] == [date(2020, 3, 15)]
    with pytest.raises(ArchiveError, match="no time coordinate"):
        read_archive_file(path.read_bytes(), "undated.nc")


def test_kelvin_without_units_is_an_error(tmp_path: Path) -> None:
    path = _write_nc3(tmp_path / "nounits.nc", units=None)
    with pytest.raises(ArchiveError, match="looks like Kelvin") as info:
        read_archive_file(path.read_bytes(), "s3://b/nounits.nc", variable="analysed_sst")
    assert str(info.value).startswith("s3://b/nounits.nc: ")
    celsius = _write_nc3(tmp_path / "c.nc", kelvin=False, units=None)
    decoded = read_archive_file(celsius.read_bytes(), "c.nc", variable="analysed_sst")
    assert np.nanmax(decoded.steps[0].values) < 40


# --- broken files -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["nc4", "nc3"])
def test_truncated_file(tmp_path: Path, oisst_sample: list[Path], kind: str) -> None:
    path = oisst_sample[0] if kind == "nc4" else _write_nc3(tmp_path / "g.nc")
    data = path.read_bytes()
    url = f"https://host/{path.name}"
    with pytest.raises(ArchiveError) as info:
        read_archive_file(data[: len(data) // 2], url, variable="sst" if kind == "nc4"
                          else "analysed_sst")
    assert url in str(info.value)
    assert isinstance(info.value, SeedfieldError)


def test_garbage_and_empty_files() -> None:
    with pytest.raises(ArchiveError, match="cannot be opened as netCDF") as info:
        read_archive_file(b"this is not a netCDF file at all\n" * 100, "/data/garbage.nc")
    assert info.value.source == "/data/garbage.nc"
    with pytest.raises(ArchiveError, match="empty"):
        read_archive_file(b"", "/data/empty.nc")


def test_missing_variable(tmp_path: Path) -> None:
    path = _write_nc3(tmp_path / "g.nc")
    with pytest.raises(ArchiveError, match=r"variable 'sst' not found; the file has: analysed_sst"):
        read_archive_file(path.read_bytes(), str(path))


def test_unexpected_dimensions(tmp_path: Path) -> None:
    ds = xr.Dataset(
        {"sst": (("time", "depth", "lat", "lon"), np.zeros((1, 3, 2, 2)), {"units": "degC"})},
        coords={"time": pd.date_range("2020-01-01", periods=1), "depth": [0.0, 5.0, 10.0],
                "lat": [0.0, 1.0], "lon": [0.0, 1.0]},
    )
    path = tmp_path / "depth.nc"
    ds.to_netcdf(path)
    with pytest.raises(ArchiveError, match=r"unexpected dimensions.*'depth' \(size 3\)"):
        read_archive_file(path.read_bytes(), str(path))


def test_undecodable_time(tmp_path: Path) -> None:
    path = tmp_path / "badtime.nc"
    with netCDF4.Dataset(path, "w", format="NETCDF4") as ds:
        ds.createDimension("time", 1)
        ds.createDimension("lat", 2)
        ds.createDimension("lon", 2)
        t = ds.createVariable("time", "f8", ("time",))
        t.units = "days since the beginning"
        t[:] = [1.0]
        ds.createVariable("lat", "f4", ("lat",))[:] = [0.0, 1.0]
        ds.createVariable("lon", "f4", ("lon",))[:] = [0.0, 1.0]
        v = ds.createVariable("sst", "f4", ("time", "lat", "lon"))
        v.units = "degC"
        v[:] = 1.0
    with pytest.raises(ArchiveError, match="time cannot be decoded") as info:
        read_archive_file(path.read_bytes(), str(path))
    assert str(path) in str(info.value)


# --- validation ---------------------------------------------------------------------------


def test_validate_step_problems() -> None:
    day = date(2020, 5, 1)
    ok = StepField(day, np.array([[1.0, np.nan], [30.0, 2.0]], dtype=np.float32))
    validate_step(ok, "f.nc")
    with pytest.raises(ArchiveError, match="every cell is NaN") as info:
        validate_step(StepField(day, np.full((2, 2), np.nan, np.float32)), "f.nc")
    assert str(info.value).startswith("f.nc [2020-05-01]: ") and info.value.day == day
    hot = StepField(day, np.array([[1.0, 50.0], [60.0, -5.0]], dtype=np.float32))
    with pytest.raises(ArchiveError, match=r"3 of 4 cells .*min -5\.000, max 60\.000"):
        validate_step(hot, "f.nc")
    validate_step(hot, "f.nc", valid_range=(-10.0, 100.0))
    inf = StepField(day, np.array([[1.0, np.inf]], dtype=np.float32))
    with pytest.raises(ArchiveError, match="non-finite"):
        validate_step(inf, "f.nc")


# --- errors and grids ---------------------------------------------------------------------


def test_archive_error_format() -> None:
    err = ArchiveError("a.nc", "broken")
    assert str(err) == "a.nc: broken" and err.day is None
    err = GridMismatchError("a.nc", "bad grid", date(2020, 1, 2))
    assert str(err) == "a.nc [2020-01-02]: bad grid"
    assert isinstance(err, ArchiveError)


def test_region_parse() -> None:
    assert Region.parse("-10, 30, 120, -100") == Region(-10, 30, 120, -100)
    for bad in ("1,2,3", "a,b,c,d", "30,-10,0,10", "0,10,5,5"):
        with pytest.raises(ValueError, match=r"S,N,W,E|south|width|region"):
            Region.parse(bad)
    with pytest.raises(ValueError, match="S,N,W,E"):
        Region.parse("1,2,3")
    assert Region(-90, 90, -180, 180).is_global_lon
    assert Region(0, 1, 170, -170).lon_span == 20.0


def test_grid_conventions_and_alignment() -> None:
    g360 = oisst_global_grid()
    assert g360.describe() == "720×1440, lat -89.875…89.875, lon 0.125…359.875"
    lon180 = np.sort((g360.lon + 180.0) % 360.0 - 180.0)
    g180 = Grid(g360.lat, lon180)
    assert g180.lon_convention == "-180-180" and g180.is_global_lon
    assert g360.matches(g180) and g180.matches(g360)
    values = np.broadcast_to(g180.lon[None, :], (2, 720, 1440)).astype(np.float32)
    aligned = align_to_grid(values, g180, g360, "x.nc")
    np.testing.assert_allclose(aligned[1, 5] % 360.0, g360.lon)
    assert align_to_grid(values, g180, g180, "x.nc") is values
    shifted = Grid(g360.lat, g360.lon + 0.01)
    assert not g360.matches(shifted)
    with pytest.raises(GridMismatchError, match=r"x\.nc: grid .*does not match.*720×1440"):
        align_to_grid(values, shifted, g360, "x.nc")
    lat_index, lon_index, crop = crop_indices(g360, Region(-1, 1, 359, 1))
    assert crop.lon.tolist() == [-0.875, -0.625, -0.375, -0.125, 0.125, 0.375, 0.625, 0.875]
    assert lat_index.size == 8 and np.array_equal(g360.lon[lon_index] % 360, crop.lon % 360)
    with pytest.raises(ValueError, match="ascending"):
        Grid(np.array([1.0, 0.0]), np.array([0.0]))

"""Readers, validation and the observations store, on real files: CSV, Parquet, and netCDF CF
discrete sampling geometries written by xarray/netCDF4 in each layout (no Prefect here)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from pipeline.errors import ArchiveError
from pipeline.observation_readers import list_observation_files, read_observation_file
from pipeline.observations import (
    OBSERVATION_COLUMNS,
    Domain,
    ObservationSettings,
    count_reasons,
    empty_observations,
    validate_observations,
)
from pipeline.steps import HOURLY
from storage.observations_store import (
    create_observations_store,
    read_observation_grid,
    read_step_observations,
    step_arrays,
)

TIMES = pd.to_datetime(["2019-03-01T00:10", "2019-03-01T00:40", "2019-03-01T01:10", "2019-03-01T01:20"])
LAT = np.array([50.5, 51.0, 51.5, 52.0])
LON = np.array([-5.0, -4.5, -4.0, -3.5])
VALUE = np.array([7.25, 8.5, 9.125, 10.0])
PLATFORM = np.array(["A", "A", "B", "B"], dtype=object)


def expected_table() -> pd.DataFrame:
    return pd.DataFrame({"time": TIMES.as_unit("ns"), "lat": LAT, "lon": LON, "value": VALUE,
                         "platform": pd.Series(PLATFORM, dtype=object), "quality": np.array([1, 1, 2, 1], "int16"), "depth": np.full(4, np.nan)})


def _coord_attrs(kind: str) -> dict[str, str]:
    return {"lat": {"standard_name": "latitude", "units": "degrees_north"},
            "lon": {"standard_name": "longitude", "units": "degrees_east"},
            "time": {"standard_name": "time"}}[kind]


def write_dsg(path: Path, layout: str) -> Path:
    """The four rows as a CF DSG file of ``layout``."""
    q = np.array([1, 1, 2, 1], "int16")
    if layout == "point":
        ds = xr.Dataset({"sst": ("obs", VALUE), "qc": ("obs", q), "buoy": ("obs", PLATFORM)},
                        coords={"t": ("obs", TIMES, _coord_attrs("time")), "y": ("obs", LAT, _coord_attrs("lat")),
                                "x": ("obs", LON, _coord_attrs("lon"))}, attrs={"featureType": "point"})
    elif layout == "contiguous":  # trajectory, rowSize
        ds = xr.Dataset({"sst": ("obs", VALUE), "qc": ("obs", q),
                         "buoy": ("traj", np.array(["A", "B"], object), {"cf_role": "trajectory_id"}),
                         "rowSize": ("traj", np.array([2, 2], "int32"), {"sample_dimension": "obs"})},
                        coords={"t": ("obs", TIMES, _coord_attrs("time")), "y": ("obs", LAT, _coord_attrs("lat")),
                                "x": ("obs", LON, _coord_attrs("lon"))}, attrs={"featureType": "trajectory"})
    elif layout == "indexed":  # timeSeries, station index; the stations move here only to test the mapping
        ds = xr.Dataset({"sst": ("obs", VALUE[[2, 0, 3, 1]]), "qc": ("obs", q[[2, 0, 3, 1]]),
                         "buoy": ("station", np.array(["A", "B"], object), {"cf_role": "timeseries_id"}),
                         "idx": ("obs", np.array([1, 0, 1, 0], "int32"), {"instance_dimension": "station"}),
                         "y": ("obs", LAT[[2, 0, 3, 1]], _coord_attrs("lat")),
                         "x": ("obs", LON[[2, 0, 3, 1]], _coord_attrs("lon"))},
                        coords={"t": ("obs", TIMES[[2, 0, 3, 1]], _coord_attrs("time"))},
                        attrs={"featureType": "timeSeries"})
    else:  # multidimensional: (station, element), station B has a padded third element
        pad = lambda a, fill: np.array([[a[0], a[1], fill], [a[2], a[3], fill]])  # noqa: E731
        times = np.array([[TIMES[0], TIMES[1], np.datetime64("NaT")], [TIMES[2], TIMES[3], np.datetime64("NaT")]],
                         "datetime64[ns]")
        ds = xr.Dataset({"sst": (("station", "el"), pad(VALUE, np.nan)), "qc": (("station", "el"), pad(q, -1)),
                         "buoy": ("station", np.array(["A", "B"], object), {"cf_role": "timeseries_id"}),
                         "y": (("station", "el"), pad(LAT, np.nan), _coord_attrs("lat")),
                         "x": (("station", "el"), pad(LON, np.nan), _coord_attrs("lon"))},
                        coords={"t": (("station", "el"), times, _coord_attrs("time"))},
                        attrs={"featureType": "timeSeries"})
    ds.to_netcdf(path, engine="netcdf4", format="NETCDF4")
    return path


SETTINGS = ObservationSettings(columns={"value": "sst", "quality": "qc", "platform": "buoy"})


@pytest.mark.parametrize("layout", ["point", "contiguous", "indexed", "multidimensional"])
def test_dsg_layouts_read_to_the_same_table(tmp_path, layout):
    table = read_observation_file(str(write_dsg(tmp_path / f"{layout}.nc", layout)), SETTINGS)
    assert list(table.columns) == list(OBSERVATION_COLUMNS)
    got = table.sort_values("time").reset_index(drop=True)
    pd.testing.assert_frame_equal(got, expected_table())


def test_csv_and_parquet_with_mapped_columns(tmp_path):
    frame = pd.DataFrame({"when": [t.isoformat() + "Z" for t in TIMES], "la": LAT, "lo": LON, "sst": VALUE,
                          "buoy": PLATFORM, "qc": [1, 1, 2, 1]})
    frame.to_csv(tmp_path / "obs.csv", index=False)
    frame.to_parquet(tmp_path / "obs.parquet")
    cols = {"time": "when", "lat": "la", "lon": "lo", "value": "sst", "platform": "buoy", "quality": "qc"}
    settings = ObservationSettings(columns=cols)
    assert list_observation_files(str(tmp_path)) == [str(tmp_path / "obs.csv"), str(tmp_path / "obs.parquet")]
    for name in ("obs.csv", "obs.parquet"):
        pd.testing.assert_frame_equal(read_observation_file(str(tmp_path / name), settings), expected_table())
    with pytest.raises(ArchiveError, match=r"obs\.csv: no column 'latitude' for 'lat'.*observations\.columns\.lat"):
        read_observation_file(str(tmp_path / "obs.csv"), ObservationSettings(columns={**cols, "lat": "latitude"}))


def test_a_file_without_feature_type_is_refused_by_name(tmp_path):
    xr.Dataset({"sst": ("obs", VALUE)}).to_netcdf(tmp_path / "plain.nc")
    with pytest.raises(ArchiveError, match=r"plain\.nc: global attribute featureType"):
        read_observation_file(str(tmp_path / "plain.nc"), SETTINGS)


def domain(land: np.ndarray | None = None) -> Domain:
    lat, lon = np.arange(50.0, 54.01, 0.5), np.arange(-6.0, -1.99, 0.5)
    return Domain(lat, lon, np.zeros((lat.size, lon.size), bool) if land is None else land)


def test_each_bad_row_gets_its_reason_and_the_good_rows_stay():
    rows = expected_table()
    bad = pd.DataFrame({
        "time": pd.to_datetime(["2019-03-01T00:20", pd.NaT, "2018-01-01T00:00", "2019-03-01T00:30", "2019-03-01T00:30",
                                "2019-03-01T00:30", "2019-03-01T00:30", "2019-03-01T00:10"]),
        "lat": [51.0, 51.0, 51.0, 51.0, 40.0, 53.0, 51.0, 50.5],
        "lon": [-5.0, -5.0, -5.0, -5.0, -5.0, -2.0, -5.0, -5.0],
        "value": [99.0, 5.0, 5.0, np.inf, 5.0, 5.0, 5.0, 9.0],
        "platform": ["C", "C", "C", "C", "C", "C", "C", "A"],
        "quality": np.array([1, 1, 1, 1, 1, 1, 4, 1], "int16"), "depth": np.nan})
    land = np.zeros((9, 9), bool)
    land[6, 8] = True  # 53.0 N, -2.0 E
    settings = ObservationSettings(valid_range=(-5, 40), bad_quality_flags=[3, 4],
                                   time_range=("2019-01-01", "2019-12-31T23:59"))
    table, reasons = validate_observations(pd.concat([rows, bad], ignore_index=True), settings, domain(land))
    assert count_reasons(reasons) == {"time_invalid": 1, "time_outside_range": 1, "not_finite": 1,
                                      "outside_domain": 1, "on_land": 1, "out_of_range": 1, "bad_quality": 1,
                                      "duplicate": 1}
    good = table[reasons == ""].reset_index(drop=True)[list(OBSERVATION_COLUMNS)]
    pd.testing.assert_frame_equal(good, expected_table())  # of two rows at one place and time, the smaller value is kept
    assert reasons[(table["platform"] == "A") & (table["value"] == 9.0)].tolist() == ["duplicate"]


def test_longitudes_are_compared_modulo_360():
    _, _, inside = domain().cell_of(np.array([51.0, 51.0, 51.0]), np.array([-5.0, 355.0, 5.0]))
    assert inside.tolist() == [True, True, False]


def test_store_round_trip_and_grid(tmp_path):
    steps = HOURLY.steps(dt.datetime(2019, 3, 1, 0), dt.datetime(2019, 3, 1, 1))
    d = domain()
    store = create_observations_store(str(tmp_path / "o.zarr"), steps, d.lat, d.lon, d.land, 4, cadence=HOURLY)
    table = expected_table()
    store.write_step(steps[0], step_arrays(table.iloc[:2], 4))
    assert read_step_observations(store, steps[0]).empty  # not committed yet: not visible
    store.commit(steps[0], {"status": "ok"})
    pd.testing.assert_frame_equal(read_step_observations(store, steps[0]), table.iloc[:2])
    pd.testing.assert_frame_equal(read_step_observations(store, steps[1]), empty_observations())
    lat, lon, land = read_observation_grid(store)
    assert np.array_equal(lat, d.lat) and np.array_equal(lon, d.lon) and not land.any()
    with pytest.raises(ValueError, match="do not fit"):
        step_arrays(table, 3)

"""A sample archive of scattered observations, derived from the bundled ERA5 hourly 2 m temperature.

Moorings (fixed stations, reporting on the hour) and drifter-like tracks (moving a few grid cells
a day with a smooth random velocity, reporting once an hour at their own minute, leaving and
entering the domain) sample the real field at their own times and places: linear in time between
the hourly fields, bilinear in space, plus Gaussian noise. A few rows of every bad kind are
mixed in. Everything is drawn from one seed, so the archive is the same on every machine.

Written as CSV (one file per day) and as CF-1.11 discrete-sampling-geometry netCDF (drifters:
trajectory, contiguous ragged array; moorings: timeSeries, indexed ragged array), the same rows
in both, plus ``grid.nc``: the grid of origin (latitude, longitude, land mask), used as
``[observations] grid_file``. The field itself (the truth to score against) is
:func:`sample_truth`, read from the bundled file. See docs/sample-data.md.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

ERA5 = Path(__file__).resolve().parent / "data" / "era5_t2m_uk_2019-03-01_to_20_hourly.nc"
#: The sample's column names (as a user's archive would have its own): map them in the config.
COLUMNS = {"time": "obs_time", "platform": "platform_id", "lat": "latitude", "lon": "longitude",
           "value": "temperature", "quality": "qc_flag"}
GOOD, BAD = 1, 4  # quality flags: 1 good, 4 bad (the Argo/IOOS QARTOD convention)
BAD_KINDS = ("nan_value", "out_of_range", "outside_domain", "duplicate", "bad_quality", "time_outside_range")


@dataclass(frozen=True)
class Truth:
    """The field the sample is drawn from: (time, lat, lon) °C, latitude and longitude ascending."""

    time: np.ndarray  # datetime64[ns]
    lat: np.ndarray
    lon: np.ndarray
    values: np.ndarray


def sample_truth(path: Path = ERA5) -> Truth:
    """The bundled ERA5 t2m field in °C (K − 273.15), latitude ascending: the truth for scoring."""
    with xr.open_dataset(path) as ds:
        t2m = ds["t2m"].sortby("latitude").sortby("longitude").transpose("time", "latitude", "longitude")
        return Truth(ds["time"].values.astype("datetime64[ns]"), t2m["latitude"].values.astype("float64"),
                     t2m["longitude"].values.astype("float64"), t2m.values.astype("float64") - 273.15)


def sample_at(truth: Truth, time: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """The field at each (time, lat, lon): linear in time, bilinear in space (inside the grid)."""
    hours = (np.asarray(time, "datetime64[ns]") - truth.time[0]) / np.timedelta64(1, "h")
    t0 = np.clip(np.floor(hours).astype(int), 0, truth.time.size - 2)
    wt = np.clip(hours - t0, 0.0, 1.0)

    def frac(axis: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        i = np.clip(np.searchsorted(axis, x, side="right") - 1, 0, axis.size - 2)
        return i, np.clip((x - axis[i]) / (axis[i + 1] - axis[i]), 0.0, 1.0)

    i, wy = frac(truth.lat, np.asarray(lat, "float64"))
    j, wx = frac(truth.lon, np.asarray(lon, "float64"))

    def plane(t: np.ndarray) -> np.ndarray:
        f = truth.values
        return ((1 - wy) * (1 - wx) * f[t, i, j] + (1 - wy) * wx * f[t, i, j + 1]
                + wy * (1 - wx) * f[t, i + 1, j] + wy * wx * f[t, i + 1, j + 1])

    return (1 - wt) * plane(t0) + wt * plane(t0 + 1)


def _inside(truth: Truth, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    return ((lat >= truth.lat[0]) & (lat <= truth.lat[-1]) & (lon >= truth.lon[0]) & (lon <= truth.lon[-1]))


def _moorings(truth: Truth, rng: np.random.Generator, n: int) -> pd.DataFrame:
    lat = np.round(rng.uniform(truth.lat[0], truth.lat[-1], n), 4)
    lon = np.round(rng.uniform(truth.lon[0], truth.lon[-1], n), 4)
    times = truth.time
    return pd.DataFrame({
        "platform": np.repeat([f"M{k + 1:03d}" for k in range(n)], times.size),
        "time": np.tile(times, n), "lat": np.repeat(lat, times.size), "lon": np.repeat(lon, times.size),
        "kind": "mooring"})


def _drifters(truth: Truth, rng: np.random.Generator, n: int) -> pd.DataFrame:
    """Tracks with an Ornstein-Uhlenbeck velocity (std 0.03°/h ≈ 3 cells a day, memory 1 day),
    starting up to 0.5° outside the domain; only their positions inside the grid are reported."""
    hours = truth.time.size
    tau, sigma = 24.0, 0.03
    keep = np.exp(-1.0 / tau)
    frames = []
    for k in range(n):
        minute = int(rng.integers(0, 60))
        lat = rng.uniform(truth.lat[0] - 0.5, truth.lat[-1] + 0.5)
        lon = rng.uniform(truth.lon[0] - 0.5, truth.lon[-1] + 0.5)
        u, v = rng.normal(0.0, sigma, 2)
        track = np.empty((hours, 2))
        for h in range(hours):
            track[h] = lat, lon
            u = keep * u + np.sqrt(1 - keep**2) * rng.normal(0.0, sigma)
            v = keep * v + np.sqrt(1 - keep**2) * rng.normal(0.0, sigma)
            lat, lon = lat + v, lon + u / np.cos(np.radians(lat))
        times = truth.time + np.timedelta64(minute, "m")
        frame = pd.DataFrame({"platform": f"D{k + 1:03d}", "time": times, "lat": np.round(track[:, 0], 4),
                              "lon": np.round(track[:, 1], 4), "kind": "drifter"})
        inside = _inside(truth, frame["lat"].to_numpy(), frame["lon"].to_numpy())
        inside &= frame["time"].to_numpy() <= truth.time[-1]
        frames.append(frame[inside])
    return pd.concat(frames, ignore_index=True)


def make_sample_rows(n_moorings: int = 40, n_drifters: int = 60, noise_std: float = 0.15,
                     seed: int = 2019, bad_per_kind: int = 3) -> tuple[pd.DataFrame, dict[str, int]]:
    """Every row of the sample (good and bad, columns of the table format plus ``kind``) and the
    number of bad rows of each kind mixed in."""
    truth = sample_truth()
    rng = np.random.default_rng(seed)
    rows = pd.concat([_moorings(truth, rng, n_moorings), _drifters(truth, rng, n_drifters)], ignore_index=True)
    clean = sample_at(truth, rows["time"].to_numpy(), rows["lat"].to_numpy(), rows["lon"].to_numpy())
    rows["value"] = np.round(clean + rng.normal(0.0, noise_std, len(rows)), 3)
    rows["quality"] = np.int16(GOOD)
    rows["nominal_time"] = rows["time"]  # which daily CSV a row goes to (a clock error keeps its file)
    picks = rng.choice(len(rows), size=len(BAD_KINDS) * bad_per_kind, replace=False)
    drifter_rows = np.flatnonzero(rows["kind"].to_numpy() == "drifter")
    outside = rng.choice(np.setdiff1d(drifter_rows, picks), size=bad_per_kind, replace=False)
    counts = {}
    for n, kind in enumerate(BAD_KINDS):
        chosen = outside if kind == "outside_domain" else picks[n * bad_per_kind:(n + 1) * bad_per_kind]
        counts[kind] = len(chosen)
        col = rows.columns
        if kind == "nan_value":
            rows.loc[chosen, "value"] = np.nan
        elif kind == "out_of_range":
            rows.loc[chosen, "value"] = 99.0
        elif kind == "outside_domain":
            rows.loc[chosen, "lat"] = 45.0
        elif kind == "bad_quality":
            rows.loc[chosen, "quality"] = np.int16(BAD)
        elif kind == "time_outside_range":
            rows.loc[chosen, "time"] = rows.loc[chosen, "time"] - pd.Timedelta(days=400)
        elif kind == "duplicate":
            rows = pd.concat([rows, rows.loc[chosen, list(col)]], ignore_index=True)
    rows = rows.sort_values(["kind", "platform", "nominal_time"], kind="mergesort").reset_index(drop=True)
    return rows, counts


def _iso(times: pd.Series) -> pd.Series:
    return pd.to_datetime(times).dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def write_sample_csv(rows: pd.DataFrame, out: Path) -> list[Path]:
    """One CSV per day (of each row's nominal time), in the sample's column names."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for day, part in rows.groupby(rows["nominal_time"].dt.date, sort=True):
        table = pd.DataFrame({
            COLUMNS["time"]: _iso(part["time"]), COLUMNS["platform"]: part["platform"],
            COLUMNS["lat"]: part["lat"].map("{:.4f}".format), COLUMNS["lon"]: part["lon"].map("{:.4f}".format),
            COLUMNS["value"]: part["value"].map(lambda v: "" if np.isnan(v) else f"{v:.3f}"),
            COLUMNS["quality"]: part["quality"].astype(int)})
        path = out / f"observations_{day:%Y%m%d}.csv"
        table.to_csv(path, index=False)
        paths.append(path)
    return paths


def _global_attrs(feature: str, title: str) -> dict[str, str]:
    return {
        "Conventions": "CF-1.11", "featureType": feature, "title": title,
        "source": "derived by seedfield (pipeline/sample_observations.py) from ECMWF ERA5 hourly 2 m temperature",
        "comment": "NOT real observations: synthetic platforms sampling the ERA5 field (linear in time, bilinear "
                   "in space) plus Gaussian noise, with deliberately bad rows. Contains modified Copernicus "
                   "Climate Change Service information 2019.",
        "history": "written by seedfield sample-observations",
    }


def _value_attrs() -> dict[str, str]:
    return {"standard_name": "air_temperature", "long_name": "2 m air temperature", "units": "degree_Celsius",
            "units_metadata": "temperature: on_scale", "ancillary_variables": COLUMNS["quality"]}


def _time_encoding() -> dict[str, object]:
    return {"units": "seconds since 1970-01-01 00:00:00", "calendar": "proleptic_gregorian", "dtype": "int64"}


def write_drifters_netcdf(rows: pd.DataFrame, path: Path) -> Path:
    """The drifters as a CF trajectory file, contiguous ragged array (``rowSize``)."""
    part = rows[rows["kind"] == "drifter"]
    ids, counts = np.unique(part["platform"].to_numpy(), return_counts=True)
    order = np.argsort(pd.Categorical(part["platform"], categories=ids).codes, kind="stable")
    part = part.iloc[order]
    c = COLUMNS
    ds = xr.Dataset({
        c["platform"]: ("trajectory", ids.astype(object), {"cf_role": "trajectory_id", "long_name": "drifter id"}),
        "rowSize": ("trajectory", counts.astype("int32"), {"sample_dimension": "obs",
                                                           "long_name": "number of observations of each drifter"}),
        c["time"]: ("obs", part["time"].to_numpy(), {"standard_name": "time", "axis": "T"}),
        c["lat"]: ("obs", part["lat"].to_numpy(), {"standard_name": "latitude", "units": "degrees_north", "axis": "Y"}),
        c["lon"]: ("obs", part["lon"].to_numpy(), {"standard_name": "longitude", "units": "degrees_east", "axis": "X"}),
        c["value"]: ("obs", part["value"].to_numpy(), {**_value_attrs(), "coordinates": f"{c['time']} {c['lat']} {c['lon']}"}),
        c["quality"]: ("obs", part["quality"].to_numpy().astype("int16"), _quality_attrs()),
    }, attrs=_global_attrs("trajectory", "seedfield sample: drifter-like tracks (derived from ERA5)"))
    return _write(ds, path)


def write_moorings_netcdf(rows: pd.DataFrame, path: Path) -> Path:
    """The moorings as a CF timeSeries file, indexed ragged array (``stationIndex``)."""
    part = rows[rows["kind"] == "mooring"]
    first = part.groupby("platform", sort=True)[["lat", "lon"]].first()
    ids = first.index.to_numpy()
    c = COLUMNS
    ds = xr.Dataset({
        c["platform"]: ("station", ids.astype(object), {"cf_role": "timeseries_id", "long_name": "mooring id"}),
        c["lat"]: ("station", first["lat"].to_numpy(), {"standard_name": "latitude", "units": "degrees_north", "axis": "Y"}),
        c["lon"]: ("station", first["lon"].to_numpy(), {"standard_name": "longitude", "units": "degrees_east", "axis": "X"}),
        "stationIndex": ("obs", np.searchsorted(ids, part["platform"].to_numpy()).astype("int32"),
                         {"instance_dimension": "station", "long_name": "which station each observation belongs to"}),
        c["time"]: ("obs", part["time"].to_numpy(), {"standard_name": "time", "axis": "T"}),
        c["value"]: ("obs", part["value"].to_numpy(), {**_value_attrs(), "coordinates": f"{c['time']} {c['lat']} {c['lon']}"}),
        c["quality"]: ("obs", part["quality"].to_numpy().astype("int16"), _quality_attrs()),
    }, attrs=_global_attrs("timeSeries", "seedfield sample: fixed moorings (derived from ERA5)"))
    return _write(ds, path)


def _quality_attrs() -> dict[str, object]:
    return {"standard_name": "status_flag", "long_name": "quality flag", "flag_values": np.array([1, 4], "int16"),
            "flag_meanings": "good bad"}


def _write(ds: xr.Dataset, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    enc = {name: {"_FillValue": None} for name in ds.variables}
    enc[COLUMNS["time"]] = {**_time_encoding(), "_FillValue": None}
    enc[COLUMNS["value"]] = {"_FillValue": np.nan}
    ds.to_netcdf(path, format="NETCDF4", engine="netcdf4", encoding=enc)
    return path


def write_grid_file(path: Path, truth: Truth | None = None) -> Path:
    """The grid of origin: latitude, longitude and a land mask (all water: 2 m temperature is
    defined over land and sea alike, so no observation is refused for being on land)."""
    truth = truth or sample_truth()
    ds = xr.Dataset(
        {"land_mask": (("lat", "lon"), np.zeros((truth.lat.size, truth.lon.size), "int8"),
                       {"standard_name": "land_binary_mask", "units": "1", "flag_values": np.array([0, 1], "int8"),
                        "flag_meanings": "water land"})},
        coords={"lat": ("lat", truth.lat, {"standard_name": "latitude", "units": "degrees_north", "axis": "Y"}),
                "lon": ("lon", truth.lon, {"standard_name": "longitude", "units": "degrees_east", "axis": "X"})},
        attrs={"Conventions": "CF-1.11", "title": "grid of the seedfield sample observations (ERA5 0.25°, British Isles)"})
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.to_netcdf(path, format="NETCDF4", engine="netcdf4", encoding={n: {"_FillValue": None} for n in ds.variables})
    return path


def sample_settings(out: Path, fmt: str) -> dict[str, object]:
    """The ``[observations]`` settings that read the sample at ``out`` in format ``fmt``."""
    t = sample_truth()
    first, last = pd.Timestamp(t.time[0]), pd.Timestamp(t.time[-1]) + pd.Timedelta(minutes=59)
    return {"source": str(out / ("csv" if fmt == "csv" else "netcdf")), "format": fmt, "columns": dict(COLUMNS),
            "valid_range": [-40.0, 45.0], "bad_quality_flags": [3, BAD], "grid_file": str(out / "grid.nc"),
            "units": "degree_Celsius", "standard_name": "air_temperature", "land_mask_file": str(out / "grid.nc"),
            "step": "1h", "time_range": [first.isoformat(), last.isoformat()], "max_per_step": 256}


def write_sample_observations(out: Path, n_moorings: int = 40, n_drifters: int = 60, noise_std: float = 0.15,
                              seed: int = 2019) -> dict[str, object]:
    """Write the whole sample under ``out``: ``csv/``, ``netcdf/``, ``grid.nc`` and one TOML
    snippet per format (``observations-csv.toml``, ``observations-netcdf.toml``). Returns a summary."""
    out = Path(out)
    rows, bad = make_sample_rows(n_moorings, n_drifters, noise_std, seed)
    csvs = write_sample_csv(rows, out / "csv")
    nc = [write_drifters_netcdf(rows, out / "netcdf" / "drifters_trajectory.nc"),
          write_moorings_netcdf(rows, out / "netcdf" / "moorings_timeseries.nc")]
    write_grid_file(out / "grid.nc")
    for fmt in ("csv", "netcdf"):
        s = sample_settings(out, fmt)
        cols = s.pop("columns")
        text = "[observations]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in s.items())
        text += "\n[observations.columns]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in cols.items())
        (out / f"observations-{fmt}.toml").write_text(text)
    hours = sample_truth().time.size
    return {"rows": len(rows), "bad_rows": bad, "csv_files": len(csvs), "netcdf_files": [str(p) for p in nc],
            "moorings": n_moorings, "drifters": n_drifters, "rows_per_hour": round(len(rows) / hours, 1),
            "period": [str(dt.date(2019, 3, 1)), str(dt.date(2019, 3, 20))]}

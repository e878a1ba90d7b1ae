"""Read raw observation files into the table format of :mod:`pipeline.observations`.

Formats:

* **CSV** (``.csv``, ``.csv.gz``, ``.txt``) and **Parquet** (``.parquet``, ``.pq``): one row per
  observation; ``[observations] columns`` maps the table's columns onto the file's.
* **netCDF** (``.nc``, ``.nc4``, ``.cdf``, ``.netcdf``) in CF discrete sampling geometries
  (CF-1.11 chapter 9): ``featureType`` point, timeSeries or trajectory, as a contiguous ragged
  array (a count variable with ``sample_dimension``), an indexed ragged array (an index variable
  with ``instance_dimension``) or a multidimensional array (instance × element).

Sources are found as for gridded archives (:mod:`pipeline.sources`): a local directory (searched
recursively), a glob, one file, or any fsspec URL of a directory, glob or file.
"""

from __future__ import annotations

import glob
import io
import os
from typing import Any, Literal

import fsspec
import numpy as np
import pandas as pd
import xarray as xr

from pipeline.errors import ArchiveError
from pipeline.observations import (
    OBSERVATION_COLUMNS,
    REQUIRED_COLUMNS,
    ObservationSettings,
    as_observations,
)
from pipeline.sources import read_bytes

Format = Literal["csv", "parquet", "netcdf"]
SUFFIXES: dict[Format, tuple[str, ...]] = {
    "csv": (".csv", ".csv.gz", ".txt"),
    "parquet": (".parquet", ".pq"),
    "netcdf": (".nc", ".nc4", ".cdf", ".netcdf"),
}
_GLOB_CHARS = frozenset("*?[")


def file_format(url: str, asked: str = "auto") -> Format | None:
    """The format of ``url``: ``asked`` unless it is ``auto``, else by suffix (None: not an
    observation file)."""
    if asked != "auto":
        return asked  # type: ignore[return-value]
    name = os.path.basename(url.rstrip("/")).lower()
    for fmt, suffixes in SUFFIXES.items():
        if name.endswith(suffixes):
            return fmt
    return None


def list_observation_files(source: str, fmt: str = "auto", storage_options: dict | None = None) -> list[str]:
    """The observation files of ``source`` (sorted). Raises ArchiveError when there are none."""
    wanted = (lambda u: file_format(u, "auto") == fmt) if fmt != "auto" else (lambda u: file_format(u) is not None)
    remote = "://" in source and not source.startswith("file://")
    try:
        if not remote:
            path = source.removeprefix("file://")
            if os.path.isdir(path):
                urls = []
                for root, dirs, files in os.walk(path):
                    dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                    urls += [os.path.join(root, f) for f in files if not f.startswith(".")]
            elif _GLOB_CHARS & set(path):
                urls = [p for p in glob.glob(path, recursive=True) if os.path.isfile(p)]
            elif os.path.isfile(path):
                return [path]
            else:
                raise ArchiveError(source, "does not exist (expected a directory, a glob, a file or a URL)")
        else:
            fs, path = fsspec.core.url_to_fs(source, **(storage_options or {}))
            if _GLOB_CHARS & set(path):
                paths = fs.glob(path)
            elif source.endswith("/") or fs.isdir(path):
                paths = fs.find(path)
            elif fs.exists(path):
                return [source]
            else:
                raise ArchiveError(source, "does not exist")
            urls = [p if "://" in p else fs.unstrip_protocol(p) for p in paths]
    except ArchiveError:
        raise
    except Exception as exc:
        raise ArchiveError(source, f"cannot be listed: {exc}") from exc
    urls = sorted(u for u in set(urls) if wanted(u))
    if not urls:
        kinds = ", ".join(s for f, ss in SUFFIXES.items() if fmt in ("auto", f) for s in ss)
        raise ArchiveError(source, f"no observation files found there (expected names ending in {kinds})")
    return urls


def read_observation_file(url: str, settings: ObservationSettings, data: bytes | None = None) -> pd.DataFrame:
    """The observations of one file as a table (every row, good or bad: validation is separate).

    ``data`` are the file's bytes (read from ``url`` when None). Raises ArchiveError naming the
    file when it cannot be read or lacks a required column.
    """
    fmt = file_format(url, settings.format)
    if fmt is None:
        raise ArchiveError(url, "unknown observation file type; set [observations] format")
    if data is None:
        data = read_bytes(url, settings.storage_options or None)
    if fmt == "netcdf":
        return read_dsg(data, url, settings)
    try:
        if fmt == "csv":
            compression = "gzip" if url.lower().endswith(".gz") else None
            raw = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False, compression=compression,
                              skipinitialspace=True)
        else:
            raw = pd.read_parquet(io.BytesIO(data))
    except Exception as exc:
        raise ArchiveError(url, f"cannot be read as {fmt}: {exc}") from exc
    return _mapped(raw, url, settings)


def _mapped(raw: pd.DataFrame, url: str, settings: ObservationSettings) -> pd.DataFrame:
    """The table's columns taken from the file's, by ``settings.columns`` or by their own names."""
    picked: dict[str, Any] = {}
    for col in OBSERVATION_COLUMNS:
        name = settings.columns.get(col, col)
        if name in raw.columns:
            values = raw[name]
            if values.dtype == object:
                values = values.replace("", np.nan)
            picked[col] = values
        elif col in REQUIRED_COLUMNS or col in settings.columns:
            raise ArchiveError(url, f"no column {name!r} for {col!r} (config key observations.columns.{col}); "
                                    f"the file has {list(raw.columns)}")
    return as_observations(pd.DataFrame(picked))


# -- netCDF discrete sampling geometries ----------------------------------------------------------
# cf_xarray (0.11) decodes CF geometries (shapely) but not DSG ragged arrays, and xarray has no DSG
# reader, so the three layouts are decoded here: each variable is brought onto the observation
# (sample) dimension through its instance dimension, with the count or index variable CF names.

_FEATURES = ("point", "timeseries", "trajectory")


def _open_dsg(data: bytes, url: str) -> xr.Dataset:
    import netCDF4

    try:
        nc = netCDF4.Dataset(os.path.basename(url) or "memory.nc", mode="r", memory=data)
        return xr.open_dataset(xr.backends.NetCDF4DataStore(nc), decode_timedelta=False)
    except Exception as exc:
        raise ArchiveError(url, f"cannot be opened as netCDF: {exc} (truncated, corrupt or not netCDF?)") from exc


def _find(ds: xr.Dataset, col: str, settings: ObservationSettings, url: str) -> str | None:
    """The variable for table column ``col``: the mapped name, else its own name, else by CF."""
    mapped = settings.variable if col == "value" and settings.variable else settings.columns.get(col)
    if mapped is not None:
        if mapped not in ds.variables:
            key = "observations.variable" if col == "value" and settings.variable else f"observations.columns.{col}"
            raise ArchiveError(url, f"no variable {mapped!r} for {col!r} (config key {key}); "
                                    f"the file has {sorted(map(str, ds.variables))}")
        return mapped
    if col in ds.variables:
        return col
    for name, var in ds.variables.items():
        attrs = var.attrs
        if col == "time" and (attrs.get("standard_name") == "time" or attrs.get("axis") == "T"):
            return str(name)
        if col == "lat" and attrs.get("standard_name") == "latitude":
            return str(name)
        if col == "lon" and attrs.get("standard_name") == "longitude":
            return str(name)
        if col == "depth" and attrs.get("standard_name") == "depth":
            return str(name)
        if col == "platform" and attrs.get("cf_role") in ("timeseries_id", "trajectory_id"):
            return str(name)
    return None


def read_dsg(data: bytes, url: str, settings: ObservationSettings) -> pd.DataFrame:
    """A CF DSG netCDF file (point, timeSeries or trajectory; ragged or multidimensional) as a table."""
    ds = _open_dsg(data, url)
    try:
        feature = str(ds.attrs.get("featureType", "")).strip()
        if feature.lower() not in _FEATURES:
            raise ArchiveError(url, f"global attribute featureType is {feature or 'absent'!r}; expected point, "
                                    "timeSeries or trajectory (CF discrete sampling geometry)")
        names = {col: _find(ds, col, settings, url) for col in OBSERVATION_COLUMNS}
        missing = [c for c in REQUIRED_COLUMNS if names[c] is None]
        if missing:
            raise ArchiveError(url, f"no variable found for {missing}: map them with [observations] columns "
                                    "(or variable), or give them CF standard_name/axis attributes")
        value = ds[names["value"]]
        columns = {col: _on_samples(ds, name, value, url) for col, name in names.items() if name is not None}
    finally:
        ds.close()
    table = pd.DataFrame(columns)
    if value.ndim > 1:  # a multidimensional array pads short features: no time and no value is no row
        table = table[~(pd.isna(table["time"]) & pd.isna(table["value"]))]
    return as_observations(table.reset_index(drop=True))


def _instance_index(ds: xr.Dataset, sample_dim: str, url: str) -> tuple[str, np.ndarray] | None:
    """For a ragged array: the instance dimension and each sample's instance number."""
    for var in ds.variables.values():
        if "sample_dimension" in var.attrs and var.attrs["sample_dimension"] == sample_dim:
            counts = np.asarray(var.values, dtype="int64")  # contiguous: instance i holds counts[i] samples
            if counts.sum() != ds.sizes[sample_dim]:
                raise ArchiveError(url, f"the counts of {var.name!r} add up to {int(counts.sum())}, but "
                                        f"{sample_dim!r} has {ds.sizes[sample_dim]} samples")
            return var.dims[0], np.repeat(np.arange(counts.size), counts)
        if "instance_dimension" in var.attrs and var.dims == (sample_dim,):
            inst = str(var.attrs["instance_dimension"])
            index = np.asarray(var.values, dtype="int64")  # indexed: each sample names its instance
            if index.size and (index.min() < 0 or index.max() >= ds.sizes.get(inst, 0)):
                raise ArchiveError(url, f"{var.name!r} holds instance numbers outside 0…{ds.sizes.get(inst, 0) - 1}")
            return inst, index
    return None


def _on_samples(ds: xr.Dataset, name: str, value: xr.DataArray, url: str) -> np.ndarray:
    """Variable ``name`` as one value per observation (the elements of ``value``, flattened)."""
    var = ds[name]
    if value.ndim == 1:
        sample_dim = value.dims[0]
        if var.dims == value.dims:
            return np.asarray(var.values)
        ragged = _instance_index(ds, sample_dim, url)
        if ragged is not None and var.dims == (ragged[0],):
            return np.asarray(var.values)[ragged[1]]
        if var.ndim == 0:
            return np.repeat(np.asarray(var.values), value.size)
        raise ArchiveError(url, f"variable {name!r} has dimensions {var.dims}, which are neither the samples "
                                f"{value.dims} of {value.name!r} nor their instances")
    if not set(var.dims) <= set(value.dims):  # multidimensional: (instance, element)
        raise ArchiveError(url, f"variable {name!r} has dimensions {var.dims}, not within {value.dims}")
    return np.asarray(var.broadcast_like(value).transpose(*value.dims).values).ravel()

"""Decode and validate one archive file (NetCDF-3 or NetCDF-4) from its bytes.

:func:`read_archive_file` turns any CF-style gridded SST file — NOAA OISST v2.1 or a generic
product — into float32 °C fields on the file's own :class:`~pipeline.grid.Grid` (latitude
ascending, longitude ascending in the file's convention), one :class:`StepField` per time step, keyed by the store step (daily unless told).
Every problem raises :class:`~pipeline.errors.ArchiveError` naming the file.
"""

from __future__ import annotations

import hashlib
import os
import re
import warnings
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import cftime
import netCDF4
import numpy as np
import xarray as xr

from pipeline.errors import ArchiveError
from pipeline.grid import Grid
from pipeline.steps import CLIMATOLOGY_YEAR, DAILY, Cadence, Step, step_label

LAT_NAMES = frozenset({"lat", "latitude", "lats", "y", "nav_lat", "ylat", "lat_0", "latitudes"})
LON_NAMES = frozenset({"lon", "longitude", "lons", "x", "nav_lon", "xlon", "lon_0", "longitudes"})
TIME_NAMES = frozenset({"time", "t", "times", "date", "valid_time", "time_counter"})

# units as reduced by _norm_units (no spaces, underscores, dots or degree signs)
_LAT_UNITS = frozenset({"degreesnorth", "degreenorth", "degreesn", "degreen", "degn"})
_LON_UNITS = frozenset({"degreeseast", "degreeeast", "degreese", "degreee", "dege"})
_CELSIUS = frozenset({
    "c", "degc", "degreec", "degreesc", "celsius", "degreecelsius", "degreescelsius",
    "celsiusdegree", "celsiusdegrees",
})
_KELVIN = frozenset({"k", "kelvin", "degk", "degreek", "degreesk", "degreekelvin", "degreeskelvin"})
_FAHRENHEIT = frozenset({"f", "degf", "degreef", "degreesf", "fahrenheit", "degreefahrenheit"})
_KEPT_VAR_ATTRS = ("units", "long_name", "standard_name")
_KEPT_GLOBAL_ATTRS = ("title", "source", "institution", "Conventions", "id")
_DATE_IN_NAME = re.compile(r"(?<!\d)(\d{4})(\d{2})(\d{2})(?!\d)")


@dataclass
class StepField:
    """One time step of one file: ``values`` float32 ``(nlat, nlon)`` in °C, NaN = no data/land.

    ``time`` is the decoded time stamp (naive UTC); ``step`` the store step it belongs to.
    """

    step: Step
    values: np.ndarray
    time: datetime | None = None


@dataclass
class DecodedFile:
    """A decoded archive file: its grid, its steps, and the attributes worth keeping."""

    url: str
    sha256: str
    grid: Grid
    preliminary: bool
    steps: list[StepField]
    attrs: dict[str, Any] = field(default_factory=dict)
    climatology: bool = False


def _norm_units(units: Any) -> str:
    """Units text reduced for comparison: lower case, no spaces, '_', '°' or '.'."""
    return re.sub(r"[\s_°.]", "", str(units or "")).lower()


def _attr(var: Any, name: str) -> Any:
    attrs = var.attrs if hasattr(var, "attrs") else {k: var.getncattr(k) for k in var.ncattrs()}
    return attrs.get(name)


def is_lat(name: str, var: Any) -> bool:
    if name.lower() in LAT_NAMES or str(_attr(var, "standard_name") or "") == "latitude":
        return True
    return _norm_units(_attr(var, "units")) in _LAT_UNITS


def is_lon(name: str, var: Any) -> bool:
    if name.lower() in LON_NAMES or str(_attr(var, "standard_name") or "") == "longitude":
        return True
    return _norm_units(_attr(var, "units")) in _LON_UNITS


def _is_time(name: str, var: Any) -> bool:
    if name.lower() in TIME_NAMES or str(_attr(var, "standard_name") or "") == "time":
        return True
    return str(_attr(var, "axis") or "").upper() == "T" or " since " in str(_attr(var, "units") or "")


def _year_zero_units(units: str) -> bool:
    """True for units whose reference date is in year 0 (climatologies: ``hours since 0000-01-01``)."""
    match = re.search(r"since\s+(-?\d+)-", units)
    return bool(match) and int(match.group(1)) <= 0


def decode_times(
    values: np.ndarray, units: Any, calendar: Any, url: str
) -> tuple[list[datetime], bool]:
    """Time stamps of CF time values (naive UTC, rounded to the minute) and a climatology flag.

    Units with a reference date in year 0 (``hours since 0000-01-01``, as climatologies are
    written) are decoded with a year zero; their stamps carry no real year, so they are returned
    in the nominal year :data:`~pipeline.steps.CLIMATOLOGY_YEAR` with the flag set.  Non-standard
    calendars (``noleap``, ``360_day``, ``julian`` …) are decoded by cftime; a date that has no
    equivalent in the standard calendar (30 February) is reported.  Raises ArchiveError.
    """
    values = np.atleast_1d(np.ma.asarray(values).astype(np.float64).filled(np.nan))
    if not units or " since " not in str(units):
        raise ArchiveError(url, f"time cannot be decoded: units {units!r} are not '<unit> since <date>'")
    if np.isnan(values).any():
        raise ArchiveError(url, "time cannot be decoded: the time coordinate has missing values")
    units, calendar = str(units), str(calendar or "standard")
    year_zero = _year_zero_units(units)
    try:
        if year_zero:
            cal = "proleptic_gregorian" if calendar in ("standard", "gregorian") else calendar
            stamps = cftime.num2date(values, units, cal, only_use_cftime_datetimes=True, has_year_zero=True)
        else:
            stamps = cftime.num2date(values, units, calendar, only_use_cftime_datetimes=True)
    except (ValueError, TypeError, OverflowError) as exc:
        raise ArchiveError(
            url,
            f"time cannot be decoded: units {units!r} with calendar {calendar!r} are not understood "
            f"({exc}); CF time units look like 'days since 1978-01-01'",
        ) from exc
    stamps = list(np.atleast_1d(stamps))
    # a climatology has no real year: year 0 in its units, or stamps in year 1 of 'since 0001-01-01'
    no_year = year_zero or (
        re.search(r"since\s+0*1-", units) is not None and all(s.year <= 1 for s in stamps)
    )
    out: list[datetime] = []
    for stamp in stamps:
        rounded = stamp + timedelta(seconds=30)
        year = CLIMATOLOGY_YEAR if no_year else rounded.year
        try:
            out.append(datetime(year, rounded.month, rounded.day, rounded.hour, rounded.minute))
        except ValueError as exc:
            raise ArchiveError(
                url,
                f"time {stamp} (calendar {calendar!r}) has no date in the standard calendar "
                f"({exc}); seedfield stores real calendar dates",
            ) from exc
    return out, no_year


def decode_days(values: np.ndarray, units: Any, calendar: Any, url: str) -> list[date]:
    """Calendar days of CF time values (the day each stamp falls in, noon times included)."""
    return [stamp.date() for stamp in decode_times(values, units, calendar, url)[0]]


def date_from_name(url: str) -> date | None:
    """The single ``YYYYMMDD`` date in the file name, or None (none, invalid, or several)."""
    found: list[date] = []
    for match in _DATE_IN_NAME.finditer(os.path.basename(str(url).rstrip("/"))):
        try:
            found.append(date(int(match.group(1)), int(match.group(2)), int(match.group(3))))
        except ValueError:
            continue
    return found[0] if len(set(found)) == 1 else None


def _open_memory(data: bytes, url: str) -> netCDF4.Dataset:
    if not data:
        raise ArchiveError(url, "cannot be opened as netCDF: the file is empty")
    try:
        return netCDF4.Dataset(os.path.basename(url) or "memory.nc", mode="r", memory=data)
    except Exception as exc:  # netCDF-C reports corrupt input as OSError or RuntimeError
        raise ArchiveError(
            url, f"cannot be opened as netCDF: {exc} (truncated, corrupt or not netCDF?)"
        ) from exc


def file_times(url: str, data: bytes | None = None) -> tuple[list[datetime], bool]:
    """Time stamps held by a file and its climatology flag, from its time coordinate only.

    ``data`` are the file's bytes; without them ``url`` is opened as a local path.  A
    ``valid_time`` coordinate (as ECMWF's GRIB conversion writes it beside a scalar ``time``) is
    preferred to a scalar reference time: a dimension coordinate first, then any 1-D time.
    """
    try:
        nc = _open_memory(data, url) if data is not None else netCDF4.Dataset(url, mode="r")
    except ArchiveError:
        raise
    except Exception as exc:
        raise ArchiveError(
            url, f"cannot be opened as netCDF: {exc} (truncated, corrupt or not netCDF?)"
        ) from exc
    try:
        found = [
            (name not in nc.dimensions, -var.ndim, name)
            for name, var in nc.variables.items()
            if var.ndim <= 1 and _is_time(name, var) and " since " in str(getattr(var, "units", ""))
        ]
        if found:
            var = nc.variables[min(found)[2]]
            try:
                raw = var[:]
            except Exception as exc:
                raise ArchiveError(url, f"cannot be read (truncated or corrupt?): {exc}") from exc
            return decode_times(raw, var.units, getattr(var, "calendar", None), url)
    finally:
        nc.close()
    raise ArchiveError(url, "the file has no time coordinate and no YYYYMMDD date in its name")


def file_days(url: str, data: bytes | None = None) -> list[date]:
    """Days held by a file (the day of each of its time stamps)."""
    return [stamp.date() for stamp in file_times(url, data)[0]]


def _axis_coordinate(ds: xr.Dataset, dim: str, kind: str) -> str | None:
    """Name of the 1-D variable giving the ``kind`` (lat/lon/time) values along ``dim``."""
    test = {"lat": is_lat, "lon": is_lon, "time": _is_time}[kind]
    candidates = [dim] if dim in ds.variables else []
    candidates += [n for n, v in ds.variables.items() if v.dims == (dim,) and n != dim]
    for name in candidates:
        if test(str(name), ds.variables[name]):
            return str(name)
    return None


def _classify_dims(ds: xr.Dataset, da: xr.DataArray, url: str) -> dict[str, str]:
    """Map ``lat``/``lon``/``time`` to the variable's dims; reject unexpected dims."""
    found: dict[str, str] = {}
    for dim in da.dims:
        dim = str(dim)
        kind = None
        for candidate in ("time", "lat", "lon"):
            if candidate not in found and _axis_coordinate(ds, dim, candidate) is not None:
                kind = candidate
                break
        if kind is None and dim.lower() in LAT_NAMES | LON_NAMES:
            raise ArchiveError(url, f"dimension '{dim}' has no coordinate values")
        if kind is not None:
            found[kind] = dim
        elif da.sizes[dim] != 1:
            raise ArchiveError(
                url,
                f"unexpected dimensions {tuple(map(str, da.dims))} for '{da.name}': "
                f"'{dim}' (size {da.sizes[dim]}) is neither time, latitude, longitude nor "
                "a length-1 level",
            )
    for kind in ("lat", "lon"):
        if kind not in found:
            raise ArchiveError(
                url,
                f"variable '{da.name}' has dimensions {tuple(map(str, da.dims))}; "
                f"no {'latitude' if kind == 'lat' else 'longitude'} dimension found",
            )
    return found


def _to_celsius(values: np.ndarray, units: Any, url: str, variable: str) -> tuple[np.ndarray, bool]:
    """Convert Kelvin to °C; refuse Fahrenheit and Kelvin-looking data without units."""
    norm = _norm_units(units)
    if norm in _KELVIN:
        return values - np.float32(273.15), True
    if norm in _FAHRENHEIT:
        raise ArchiveError(url, f"variable '{variable}' is in {units!r}; only °C or K are supported")
    if not norm:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = float(np.nanmean(values)) if values.size else float("nan")
        if np.isfinite(mean) and mean >= 100.0:
            raise ArchiveError(
                url,
                f"variable '{variable}' has no units and a mean of {mean:.1f}: looks like Kelvin, "
                "but seedfield does not guess; set its units attribute ('K' or 'degC')",
            )
    return values, False


def read_archive_file(
    data: bytes, url: str, variable: str = "sst", preliminary: bool = False, cadence: Cadence = DAILY
) -> DecodedFile:
    """Decode one archive file held in memory (NetCDF-3 or NetCDF-4).

    CF decoding (``scale_factor``, ``add_offset``, ``_FillValue``/``missing_value``, times) is
    applied; a length-1 level axis is squeezed; latitude is made ascending and longitude sorted
    ascending in the file's own convention; Kelvin becomes °C.  A file without a time axis takes
    its day from a ``YYYYMMDD`` in its name.  Raises :class:`ArchiveError` naming ``url``.
    """
    sha256 = hashlib.sha256(data).hexdigest()
    nc = _open_memory(data, url)
    try:
        try:
            ds = xr.open_dataset(
                xr.backends.NetCDF4DataStore(nc), decode_times=False, decode_timedelta=False
            )
        except Exception as exc:
            raise ArchiveError(url, f"cannot be decoded as CF netCDF: {exc}") from exc
        return _decode(ds, data_sha=sha256, url=url, variable=variable, preliminary=preliminary, cadence=cadence)
    finally:
        nc.close()


def _decode(
    ds: xr.Dataset, data_sha: str, url: str, variable: str, preliminary: bool, cadence: Cadence
) -> DecodedFile:
    if variable not in ds.data_vars:
        names = ", ".join(sorted(map(str, ds.data_vars))) or "(no data variables)"
        raise ArchiveError(url, f"variable '{variable}' not found; the file has: {names}")
    da = ds[variable]
    dims = _classify_dims(ds, da, url)
    lat_name = _axis_coordinate(ds, dims["lat"], "lat")
    lon_name = _axis_coordinate(ds, dims["lon"], "lon")
    assert lat_name is not None and lon_name is not None

    climatology = False
    if "time" in dims:
        time_name = _axis_coordinate(ds, dims["time"], "time")
        assert time_name is not None
        tvar = ds.variables[time_name]
        stamps, climatology = decode_times(tvar.values, tvar.attrs.get("units"), tvar.attrs.get("calendar"), url)
    else:
        scalar = [n for n, v in ds.variables.items() if v.ndim == 0 and _is_time(str(n), v)]
        if scalar:
            tvar = ds.variables[scalar[0]]
            stamps, climatology = decode_times(tvar.values, tvar.attrs.get("units"), tvar.attrs.get("calendar"), url)
        else:
            named = date_from_name(url)
            if named is None:
                raise ArchiveError(url, "no time coordinate and no YYYYMMDD date in the file name")
            stamps = [datetime(named.year, named.month, named.day)]
        da = da.expand_dims("__time__")
        dims["time"] = "__time__"
    steps = [cadence.step_of(stamp) for stamp in stamps]
    if len(set(steps)) != len(steps):
        twice = sorted({s for s in steps if steps.count(s) > 1})
        raise ArchiveError(
            url,
            f"{len(steps)} time steps fall into {len(set(steps))} {cadence.code} steps (e.g. "
            f"{len(stamps) // max(len(set(steps)), 1)} in {step_label(twice[0])}): the file's step is "
            f"finer than the store's ({cadence.code}); set [archive] step (e.g. '1h') for a new store",
        )

    squeeze = [d for d in da.dims if d not in dims.values()]
    da = da.squeeze(squeeze, drop=True).transpose(dims["time"], dims["lat"], dims["lon"])
    try:
        values = np.asarray(da.values, dtype=np.float32)
        lat = np.asarray(ds.variables[lat_name].values, dtype=np.float64)
        lon = np.asarray(ds.variables[lon_name].values, dtype=np.float64)
    except ArchiveError:
        raise
    except Exception as exc:
        raise ArchiveError(url, f"cannot be read (truncated or corrupt?): {exc}") from exc

    units = da.attrs.get("units")
    values, converted = _to_celsius(values, units, url, variable)

    lat_order = np.argsort(lat, kind="stable")
    lon_order = np.argsort(lon, kind="stable")
    try:
        grid = Grid(lat[lat_order], lon[lon_order])
    except ValueError as exc:
        raise ArchiveError(url, f"unusable coordinates: {exc}") from exc
    if not np.array_equal(lat_order, np.arange(lat.size)):
        values = values[:, lat_order, :]
    if not np.array_equal(lon_order, np.arange(lon.size)):
        values = values[:, :, lon_order]
    values = np.ascontiguousarray(values, dtype=np.float32)

    attrs: dict[str, Any] = {k: da.attrs[k] for k in _KEPT_VAR_ATTRS if k in da.attrs}
    attrs.update({k: ds.attrs[k] for k in _KEPT_GLOBAL_ATTRS if k in ds.attrs})
    if converted:
        attrs["original_units"] = units
        attrs["units"] = "degree_Celsius"
    fields = [StepField(step, values[i], stamp) for i, (step, stamp) in enumerate(zip(steps, stamps, strict=True))]
    return DecodedFile(url, data_sha, grid, preliminary, fields, attrs, climatology)


def validate_step(
    field: StepField, url: str, valid_range: tuple[float, float] = (-3.0, 45.0)
) -> None:
    """Check one day: some data, no ±inf, every value inside ``valid_range`` (°C).

    Raises :class:`ArchiveError` ``(url, problem, day)`` for the first problem found.
    """
    values = np.asarray(field.values)
    infinite = np.isinf(values)
    if infinite.any():
        raise ArchiveError(
            url, f"{int(infinite.sum())} cells hold non-finite values (±inf) other than NaN", field.step
        )
    finite = np.isfinite(values)
    if not finite.any():
        raise ArchiveError(url, "no valid values: every cell is NaN", field.step)
    low, high = valid_range
    data = values[finite]
    outside = (data < low) | (data > high)
    if outside.any():
        raise ArchiveError(
            url,
            f"{int(outside.sum())} of {data.size} cells are outside the valid range "
            f"{low:g}…{high:g} °C (min {float(data.min()):.3f}, max {float(data.max()):.3f})",
            field.step,
        )

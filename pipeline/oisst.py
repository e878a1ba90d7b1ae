"""The NOAA OISST v2.1 daily file layout: file names and an exact-layout writer.

NOAA publishes one NetCDF-4 file per day, ``YYYYMM/oisst-avhrr-v02r01.YYYYMMDD.nc`` (recent days
first as ``…YYYYMMDD_preliminary.nc``).  :func:`write_oisst_file` writes files with the same
dimensions, variables, data types, attributes and encoding as NOAA's, so every reader and test
in seedfield works on the real archive and on the bundled sample alike.  The global attributes
say honestly that a file written here is a seedfield sample derived from ERSSTv5.
"""

from __future__ import annotations

import os
import re
from datetime import date
from pathlib import Path

import netCDF4
import numpy as np

from pipeline.grid import Grid

OISST_EPOCH = "1978-01-01 12:00:00"
OISST_TIME_UNITS = f"days since {OISST_EPOCH}"
OISST_PREFIX = "oisst-avhrr-v02r01"
OISST_VARIABLES = ("sst", "anom", "err", "ice")
OISST_STEP = 0.25
FILL_VALUE = -999
SCALE_FACTOR = 0.01

_EPOCH_DAY = date(1978, 1, 1)
_NAME_RE = re.compile(rf"^{re.escape(OISST_PREFIX)}\.(\d{{8}})(_preliminary)?\.nc$")

# (long_name, units, valid_min, valid_max) exactly as in NOAA's v2.1 files; valid_* are raw int16.
_VARIABLE_ATTRS: dict[str, tuple[str, str, int, int]] = {
    "sst": ("Daily sea surface temperature", "Celsius", -300, 4500),
    "anom": ("Daily sea surface temperature anomalies", "Celsius", -1200, 1200),
    "err": ("Estimated error standard deviation of analysed_sst", "Celsius", 0, 1000),
    "ice": ("Sea ice concentration", "%", 0, 100),
}

_SAMPLE_NOTE = (
    "seedfield sample file derived from NOAA ERSSTv5 monthly means (2 degree), interpolated to "
    "the OISST 0.25 degree grid and to daily values by seedfield. It is NOT a NOAA OISST "
    "analysis: it only reproduces the OISST v2.1 file layout, for testing pipelines. "
    "See docs/sample-data.md."
)


def oisst_filename(day: date, preliminary: bool = False) -> str:
    """``oisst-avhrr-v02r01.YYYYMMDD.nc`` or ``…YYYYMMDD_preliminary.nc``."""
    suffix = "_preliminary" if preliminary else ""
    return f"{OISST_PREFIX}.{day:%Y%m%d}{suffix}.nc"


def oisst_relpath(day: date, preliminary: bool = False) -> str:
    """Path under NOAA's ``…/v2.1/access/avhrr/`` directory: ``"YYYYMM/<filename>"``."""
    return f"{day:%Y%m}/{oisst_filename(day, preliminary)}"


def parse_oisst_filename(name: str) -> tuple[date, bool] | None:
    """``(day, preliminary)`` for an OISST v2.1 daily file name (a path is fine), else None."""
    match = _NAME_RE.match(os.path.basename(str(name).rstrip("/")))
    if match is None:
        return None
    stamp = match.group(1)
    try:
        day = date(int(stamp[:4]), int(stamp[4:6]), int(stamp[6:]))
    except ValueError:
        return None
    return day, match.group(2) is not None


def oisst_global_grid() -> Grid:
    """The global OISST 0.25° grid: 720 × 1440 cell centres, lon 0.125…359.875."""
    lat = -89.875 + OISST_STEP * np.arange(720)
    lon = 0.125 + OISST_STEP * np.arange(1440)
    return Grid(lat, lon)


def oisst_time_value(day: date) -> float:
    """The time coordinate of ``day``: days since 1978-01-01 12:00 (the day's noon)."""
    return float((day - _EPOCH_DAY).days)


def _encode(name: str, values: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Pack °C (or ice) values into NOAA's int16 with scale 0.01; NaN → _FillValue."""
    values = np.asarray(values)
    if values.size != shape[0] * shape[1]:
        raise ValueError(f"{name} has shape {values.shape}, expected {shape}")
    raw = values.reshape(shape).astype(np.float64)  # always a fresh array, modified in place
    np.divide(raw, SCALE_FACTOR, out=raw)
    np.rint(raw, out=raw)
    missing = np.isnan(raw)
    if missing.all():
        return np.full(shape, FILL_VALUE, dtype=np.int16)
    _, _, vmin, vmax = _VARIABLE_ATTRS[name]
    low, high = np.nanmin(raw), np.nanmax(raw)
    if low < vmin or high > vmax:
        bad = ~missing & ((raw < vmin) | (raw > vmax))
        raise ValueError(
            f"{name}: {int(bad.sum())} values outside the OISST valid range "
            f"{vmin * SCALE_FACTOR:g}…{vmax * SCALE_FACTOR:g} "
            f"(found {low * SCALE_FACTOR:.3f}…{high * SCALE_FACTOR:.3f})"
        )
    raw[missing] = FILL_VALUE
    return raw.astype(np.int16)


def _grids_text(values: np.ndarray) -> str:
    """NOAA's ``grids`` attribute, e.g. ``"Uniform grid from -89.875 to 89.875 by 0.25"``."""
    first, last = float(values[0]), float(values[-1])
    steps = np.diff(values)
    step = float(steps[0]) if steps.size else OISST_STEP
    kind = "Uniform grid" if steps.size == 0 or np.allclose(steps, step) else "Grid"
    return f"{kind} from {first:g} to {last:g} by {step:g}"


def _global_attrs(day: date, preliminary: bool, history: str, filename: str, grid: Grid) -> dict:
    kind = "Preliminary" if preliminary else "Final"
    step = float(np.diff(grid.lat).mean()) if grid.lat.size > 1 else OISST_STEP
    lines = ["seedfield sample archive: derived from NOAA ERSSTv5 monthly means"]
    if history:
        lines.append(history)
    return {
        "Conventions": "CF-1.6, ACDD-1.3",
        "title": (
            "seedfield sample SST in the NOAA OISST v2.1 daily layout "
            f"(derived from ERSSTv5, not an OISST analysis) - {kind}"
        ),
        "source": "NOAA ERSSTv5 monthly means (in situ), interpolated in space and time by seedfield",
        "id": filename,
        "summary": _SAMPLE_NOTE,
        "comment": _SAMPLE_NOTE,
        "history": "\n".join(lines),
        "references": (
            "Huang et al. 2017, Extended Reconstructed Sea Surface Temperatures Version 5 "
            "(ERSSTv5), J. Climate, https://doi.org/10.1175/JCLI-D-16-0836.1"
        ),
        "license": "No constraints on data access or use (ERSSTv5)",
        "cdm_data_type": "Grid",
        "product_version": "seedfield sample, OISST Version v02r01 layout",
        "processing_level": "seedfield sample (derived)",
        "geospatial_lat_min": np.float32(grid.lat[0] - step / 2),
        "geospatial_lat_max": np.float32(grid.lat[-1] + step / 2),
        "geospatial_lon_min": np.float32(grid.lon[0] - step / 2),
        "geospatial_lon_max": np.float32(grid.lon[-1] + step / 2),
        "geospatial_lat_units": "degrees_north",
        "geospatial_lat_resolution": np.float32(step),
        "geospatial_lon_units": "degrees_east",
        "geospatial_lon_resolution": np.float32(step),
        "time_coverage_start": f"{day.isoformat()}T00:00:00Z",
        "time_coverage_end": f"{day.isoformat()}T23:59:59Z",
    }


def write_oisst_file(
    path: str | os.PathLike[str],
    day: date,
    sst: np.ndarray,
    anom: np.ndarray,
    err: np.ndarray,
    ice: np.ndarray,
    lat: np.ndarray,
    lon: np.ndarray,
    preliminary: bool = False,
    history: str = "",
) -> None:
    """Write one day in NOAA's exact OISST v2.1 layout (NetCDF-4, int16, scale 0.01, zlib 4).

    ``sst``, ``anom``, ``err`` are °C and ``ice`` is NOAA's decoded ice value (the file's raw
    range is 0…100 with scale 0.01, so full ice is 1.0), each ``(nlat, nlon)`` on ``lat``/``lon``
    (the global grid or any subset of it); NaN becomes ``_FillValue`` −999 (land / no ice).  The
    file is written next to ``path`` and renamed into place, so readers never see half a file.
    Raises ValueError for values outside NOAA's ``valid_min``/``valid_max``.
    """
    grid = Grid(lat, lon)
    shape = grid.shape
    packed = {
        name: _encode(name, values, shape)
        for name, values in zip(OISST_VARIABLES, (sst, anom, err, ice), strict=True)
    }
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        _write(tmp, day, packed, grid, preliminary, history, target.name)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def _write(
    path: Path,
    day: date,
    packed: dict[str, np.ndarray],
    grid: Grid,
    preliminary: bool,
    history: str,
    filename: str,
) -> None:
    nlat, nlon = grid.shape
    with netCDF4.Dataset(path, "w", format="NETCDF4") as ds:
        ds.createDimension("time", None)
        ds.createDimension("zlev", 1)
        ds.createDimension("lat", nlat)
        ds.createDimension("lon", nlon)

        time = ds.createVariable("time", "f4", ("time",))
        time.long_name = "Center time of the day"
        time.units = OISST_TIME_UNITS
        time[0] = oisst_time_value(day)

        zlev = ds.createVariable("zlev", "f4", ("zlev",))
        zlev.long_name = "Sea surface height"
        zlev.units = "meters"
        zlev.positive = "down"
        zlev.actual_range = "0, 0"
        zlev[:] = 0.0

        for name, values, units, long_name in (
            ("lat", grid.lat, "degrees_north", "Latitude"),
            ("lon", grid.lon, "degrees_east", "Longitude"),
        ):
            coord = ds.createVariable(name, "f4", (name,))
            coord.long_name = long_name
            coord.units = units
            coord.grids = _grids_text(values)
            coord[:] = values.astype(np.float32)

        for name in OISST_VARIABLES:
            long_name, units, vmin, vmax = _VARIABLE_ATTRS[name]
            var = ds.createVariable(
                name,
                "i2",
                ("time", "zlev", "lat", "lon"),
                zlib=True,
                complevel=4,
                shuffle=True,
                chunksizes=(1, 1, nlat, nlon),
                fill_value=np.int16(FILL_VALUE),
            )
            var.set_auto_maskandscale(False)
            var.long_name = long_name
            var.units = units
            var.add_offset = np.float32(0.0)
            var.scale_factor = np.float32(SCALE_FACTOR)
            var.valid_min = np.int16(vmin)
            var.valid_max = np.int16(vmax)
            var[0, 0, :, :] = packed[name]

        ds.setncatts(_global_attrs(day, preliminary, history, filename, grid))

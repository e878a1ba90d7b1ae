"""Daily OISST-layout sample files derived from the bundled ERSSTv5 monthly means.

How the fields are derived is documented in ``docs/sample-data.md``.  In short: monthly means
are taken as valid at mid-month and interpolated linearly in time to each day (at noon); in
space the 2° field, with land filled from the nearest ocean cell, is interpolated by a bicubic
spline (periodic in longitude) to the 0.25° OISST cell centres; the land mask is ERSST's 2° mask
sampled by nearest neighbour.  Work streams one day at a time; at most a few 0.25° monthly
fields are cached, so memory stays bounded however many days are written.
"""

from __future__ import annotations

import calendar
import functools
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import cftime
import netCDF4
import numpy as np
from scipy.interpolate import CubicSpline
from scipy.ndimage import distance_transform_edt

from pipeline.grid import Grid, Region, crop_indices
from pipeline.oisst import oisst_global_grid, oisst_relpath, write_oisst_file

BUNDLED_ERSST = Path(__file__).resolve().parent / "data" / "ersst_v5_monthly_2010-2020.nc"
SAMPLE_FIRST_DAY = date(2010, 1, 1)
SAMPLE_LAST_DAY = date(2020, 8, 31)

CLIMATOLOGY_YEARS = (2010, 2019)
ICE_SST = -1.8  # ERSST marks sea ice with -1.8 °C
ICE_THRESHOLD = -1.79
FULL_ICE = 1.0  # NOAA's decoded ice value for raw 100 (the file's valid_max), see oisst.py
ERR_FLOOR, ERR_SCALE, ERR_CAP = 0.1, 0.5, 2.0
_MONTH_CACHE = 3  # 0.25° monthly fields kept per kind: two bracket a day, one spare


@dataclass(frozen=True)
class _Day:
    """One derived day on the target grid (NaN on land; ice NaN where there is none)."""

    day: date
    sst: np.ndarray
    anom: np.ndarray
    err: np.ndarray
    ice: np.ndarray
    note: str


class _MonthlySource:
    """The monthly 2° ERSST fields, land-filled, plus their climatology and spread."""

    def __init__(self, path: Path) -> None:
        with netCDF4.Dataset(path) as ds:
            lat = np.asarray(ds["lat"][:], dtype=np.float64)
            lon = np.asarray(ds["lon"][:], dtype=np.float64)
            tvar = ds["time"]
            stamps = cftime.num2date(
                tvar[:], tvar.units, getattr(tvar, "calendar", "standard"),
                only_use_cftime_datetimes=True,
            )
            sst = np.ma.filled(ds["sst"][:].astype(np.float32), np.nan)
        order = np.argsort(lat)
        lat, sst = lat[order], sst[:, order, :]
        grid = Grid(lat, lon)
        if not grid.is_global_lon:
            raise ValueError(f"{path}: the monthly source must be global in longitude")
        self.path = path
        self.grid = grid
        self.months: list[tuple[int, int]] = [(int(t.year), int(t.month)) for t in stamps]
        self.index = {key: i for i, key in enumerate(self.months)}
        self.land = np.isnan(sst).any(axis=0)
        sst = self._fill_land(sst)
        self.sst = sst
        self.clim, self.err = self._climatology(sst)
        first_y, first_m = self.months[0]
        last_y, last_m = self.months[-1]
        self.first_day = date(first_y, first_m, 1)
        self.last_day = date(last_y, last_m, calendar.monthrange(last_y, last_m)[1])

    def _fill_land(self, sst: np.ndarray) -> np.ndarray:
        """Copy the nearest ocean value into every land cell (periodic in longitude)."""
        nlon = self.grid.shape[1]
        pad = nlon // 2
        padded = np.concatenate([self.land[:, -pad:], self.land, self.land[:, :pad]], axis=1)
        _, (iy, ix) = distance_transform_edt(padded, return_indices=True)
        iy = iy[:, pad:pad + nlon]
        ix = (ix[:, pad:pad + nlon] - pad) % nlon
        return sst[:, iy, ix]

    def _climatology(self, sst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per calendar month: mean over CLIMATOLOGY_YEARS and the derived error proxy."""
        first, last = CLIMATOLOGY_YEARS
        clim = np.empty((12, *sst.shape[1:]), dtype=np.float32)
        err = np.empty_like(clim)
        for month in range(1, 13):
            sel = [i for i, (y, m) in enumerate(self.months) if m == month and first <= y <= last]
            if not sel:
                sel = [i for i, (_, m) in enumerate(self.months) if m == month]
            stack = sst[sel]
            clim[month - 1] = stack.mean(axis=0)
            spread = stack.std(axis=0) if len(sel) > 1 else np.zeros(stack.shape[1:])
            err[month - 1] = np.clip(ERR_FLOOR + ERR_SCALE * spread, ERR_FLOOR, ERR_CAP)
        return clim, err


@functools.lru_cache(maxsize=2)
def _load_source(path: str, mtime_ns: int) -> _MonthlySource:
    del mtime_ns  # part of the cache key only: a changed file is re-read
    return _MonthlySource(Path(path))


def _source(path: Path) -> _MonthlySource:
    resolved = Path(path).resolve()
    if not resolved.is_file():
        raise FileNotFoundError(f"monthly SST source not found: {resolved}")
    return _load_source(str(resolved), resolved.stat().st_mtime_ns)


def _spline_matrix(src: np.ndarray, dst: np.ndarray, periodic: bool) -> np.ndarray:
    """Matrix W with ``W @ f(src) = cubic spline of f at dst`` (clamped to the src range)."""
    eye = np.eye(src.size)
    if periodic:
        knots = np.append(src, src[0] + 360.0)
        spline = CubicSpline(knots, np.vstack([eye, eye[:1]]), bc_type="periodic", axis=0)
        where = src[0] + (dst - src[0]) % 360.0
    else:
        spline = CubicSpline(src, eye, bc_type="not-a-knot", axis=0)
        where = np.clip(dst, src[0], src[-1])
    return spline(where).astype(np.float32)


def _nearest_index(src: np.ndarray, dst: np.ndarray, periodic: bool) -> np.ndarray:
    """Index of the nearest ``src`` point for each ``dst`` point."""
    diff = dst[:, None] - src[None, :]
    if periodic:
        diff = (diff + 180.0) % 360.0 - 180.0
    return np.argmin(np.abs(diff), axis=1)


def _month_middle(year: int, month: int) -> datetime:
    """The instant a monthly mean is taken to be valid: the middle of the month."""
    days = calendar.monthrange(year, month)[1]
    return datetime(year, month, 1) + timedelta(days=days / 2)


class _Deriver:
    """Daily fields on the (cropped) OISST grid, streamed, with a small monthly cache."""

    def __init__(self, region: Region | None, source: Path) -> None:
        self.src = _source(source)
        grid = oisst_global_grid()
        if region is not None:
            _, _, grid = crop_indices(grid, region)
        self.grid = grid
        src_grid = self.src.grid
        self.wy = _spline_matrix(src_grid.lat, grid.lat, periodic=False)
        self.wx_t = _spline_matrix(src_grid.lon, grid.lon, periodic=True).T.copy()
        iy = _nearest_index(src_grid.lat, grid.lat, periodic=False)
        ix = _nearest_index(src_grid.lon, grid.lon, periodic=True)
        self.land = self.src.land[np.ix_(iy, ix)]
        self._cache: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()
        self.middles = [_month_middle(y, m) for y, m in self.src.months]

    def check_range(self, days: list[date]) -> None:
        first, last = self.src.first_day, self.src.last_day
        bad = [d for d in days if not first <= d <= last]
        if bad:
            raise ValueError(
                f"sample data can be derived for {first.isoformat()} … {last.isoformat()} only "
                f"(monthly means in {self.src.path.name}); {bad[0].isoformat()} is outside"
            )

    def _fine(self, kind: str, index: int) -> np.ndarray:
        """A 2° monthly field (``kind`` sst/clim/err) interpolated to the target grid, cached."""
        key = (kind, index)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        coarse = getattr(self.src, kind)[index]
        fine = self.wy @ coarse @ self.wx_t
        self._cache[key] = fine
        per_kind = [k for k in self._cache if k[0] == kind]
        if len(per_kind) > _MONTH_CACHE:
            del self._cache[per_kind[0]]
        return fine

    def _bracket(self, day: date) -> tuple[int, int, float]:
        """Indices of the monthly means around the day's noon and the weight of the second."""
        noon = datetime(day.year, day.month, day.day, 12)
        middles = self.middles
        if noon <= middles[0]:
            return 0, 0, 0.0
        if noon >= middles[-1]:
            last = len(middles) - 1
            return last, last, 0.0
        hi = next(i for i, m in enumerate(middles) if m > noon)
        lo = hi - 1
        weight = (noon - middles[lo]) / (middles[hi] - middles[lo])
        return lo, hi, float(weight)

    def day(self, day: date) -> _Day:
        lo, hi, w = self._bracket(day)
        cal_lo, cal_hi = self.src.months[lo][1] - 1, self.src.months[hi][1] - 1
        sst = (1.0 - w) * self._fine("sst", lo) + w * self._fine("sst", hi)
        clim = (1.0 - w) * self._fine("clim", cal_lo) + w * self._fine("clim", cal_hi)
        err = (1.0 - w) * self._fine("err", cal_lo) + w * self._fine("err", cal_hi)
        # the spline may over/undershoot a little near sharp edges: keep values physical
        np.clip(sst, ICE_SST, 40.0, out=sst)
        np.clip(clim, ICE_SST, 40.0, out=clim)
        np.clip(err, ERR_FLOOR, ERR_CAP, out=err)
        anom = np.clip(sst - clim, -12.0, 12.0)
        ice = np.where(sst <= ICE_THRESHOLD, np.float32(FULL_ICE), np.float32(np.nan))
        for field in (sst, anom, err, ice):
            field[self.land] = np.nan
        (y0, m0), (y1, m1) = self.src.months[lo], self.src.months[hi]
        note = (
            f"{day.isoformat()}: ERSSTv5 {y0:04d}-{m0:02d} x {1.0 - w:.4f} + "
            f"{y1:04d}-{m1:02d} x {w:.4f}"
        )
        return _Day(day, sst, anom, err.astype(np.float32), ice, note)

    def stream(self, days: list[date]) -> Iterator[_Day]:
        self.check_range(days)
        for day in days:
            yield self.day(day)


def derive_daily_sst(
    days: list[date], region: Region | None = None, source: Path = BUNDLED_ERSST
) -> tuple[Grid, np.ndarray]:
    """Derived daily SST (°C) for ``days``: ``(grid, float32 array (ndays, nlat, nlon))``.

    The grid is the OISST 0.25° grid, or its crop to ``region``; land is NaN.  These are exactly
    the ``sst`` values :func:`write_sample_archive` writes (before int16 packing).  Raises
    ValueError for days outside the range the monthly source supports.
    """
    deriver = _Deriver(region, Path(source))
    days = list(days)
    deriver.check_range(days)
    out = np.empty((len(days), *deriver.grid.shape), dtype=np.float32)
    for i, derived in enumerate(deriver.stream(days)):
        out[i] = derived.sst
    return deriver.grid, out


def write_sample_archive(
    out_dir: Path,
    start: date,
    days: int,
    region: Region | None = None,
    preliminary_last: int = 0,
    progress: Callable[[int], None] | None = None,
) -> list[Path]:
    """Write ``days`` consecutive daily files from ``start`` in the NOAA OISST v2.1 layout.

    Files go to ``out_dir/YYYYMM/oisst-avhrr-v02r01.YYYYMMDD.nc``; the last ``preliminary_last``
    days get ``_preliminary`` names, like NOAA's most recent files.  ``progress`` is called with
    the number of files written so far after each file.  Returns the paths in date order.
    """
    if days < 1:
        raise ValueError(f"days must be at least 1, got {days}")
    if not 0 <= preliminary_last <= days:
        raise ValueError(f"preliminary_last must be within 0…{days}, got {preliminary_last}")
    wanted = [start + timedelta(days=i) for i in range(days)]
    deriver = _Deriver(region, BUNDLED_ERSST)
    deriver.check_range(wanted)
    out_dir = Path(out_dir)
    first_preliminary = days - preliminary_last
    grid = deriver.grid
    paths: list[Path] = []
    for i, derived in enumerate(deriver.stream(wanted)):
        preliminary = i >= first_preliminary
        path = out_dir / oisst_relpath(derived.day, preliminary)
        write_oisst_file(
            path,
            derived.day,
            derived.sst,
            derived.anom,
            derived.err,
            derived.ice,
            grid.lat,
            grid.lon,
            preliminary=preliminary,
            history=derived.note,
        )
        paths.append(path)
        if progress is not None:
            progress(i + 1)
    return paths

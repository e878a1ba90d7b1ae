"""A Zarr v3 store with a daily time axis, written one day at a time.

The rules (docs/architecture.md, "Storage"):

* the store is created once from a template that covers the requested days
  (``to_zarr(compute=False)``): metadata and coordinates only, no chunk of data;
* each day is written by a region write of exactly one time chunk, so writers of different
  days never touch the same object and re-writing a day overwrites it (idempotent);
* a per-day commit marker (``_seedfield/commits/YYYY-MM-DD.json``) is written last; readers
  and resumable flows trust only days whose marker says ``"status": "ok"``;
* the time axis grows at its end when later days are asked for; it never moves its start.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr
import zarr

from storage import fs
from storage.cf import TIME_CALENDAR, TIME_UNITS, time_attrs

EPOCH = dt.date(1978, 1, 1)
MARKER_DIR = "_seedfield/commits"


class StoreError(Exception):
    """A store cannot be created, opened or written as asked. The message names the store."""


@dataclass(frozen=True)
class DailyVar:
    """A variable with a leading ``time`` axis, chunked one day per chunk."""

    dims: tuple[str, ...]
    dtype: str
    fill_value: float | int
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StaticVar:
    """A variable without a time axis, written in full when the store is created."""

    dims: tuple[str, ...]
    data: np.ndarray
    attrs: dict[str, Any] = field(default_factory=dict)


def day_number(day: dt.date) -> int:
    """Whole days since the store epoch (1978-01-01 noon)."""
    return (day - EPOCH).days


def noon(days: Sequence[dt.date]) -> pd.DatetimeIndex:
    return pd.DatetimeIndex([pd.Timestamp(d) + pd.Timedelta(hours=12) for d in days])


def date_range(start: dt.date, end: dt.date) -> list[dt.date]:
    """Every day from start to end, both included."""
    if end < start:
        raise ValueError(f"end date {end} is before start date {start}")
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


def _codec() -> dict[str, Any]:
    """Blosc LZ4 with byte shuffle: on a global SST day it writes 1.6× and reads 1.7× faster than
    zstd-1, at 1.2 MiB instead of 0.7 MiB a day (benchmarks/ingest.py)."""
    return {"compressors": [zarr.codecs.BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")]}


class DailyStore:
    """A daily Zarr v3 store at ``path`` (a local path or an fsspec URL)."""

    def __init__(self, path: str, storage_options: dict[str, Any] | None = None) -> None:
        self.path = str(path)
        self.storage_options = storage_options or None
        self._group: zarr.Group | None = None

    # -- creation -------------------------------------------------------------------------
    @staticmethod
    def exists(path: str, storage_options: dict[str, Any] | None = None) -> bool:
        return fs.read_bytes_or_none(fs.join(str(path), "zarr.json"), storage_options) is not None

    @classmethod
    def create(
        cls,
        path: str,
        days: Sequence[dt.date],
        coords: Mapping[str, StaticVar],
        daily: Mapping[str, DailyVar],
        static: Mapping[str, StaticVar] | None = None,
        attrs: Mapping[str, Any] | None = None,
        storage_options: dict[str, Any] | None = None,
    ) -> DailyStore:
        """Write the template: coordinates, static variables and the metadata of daily ones."""
        if cls.exists(path, storage_options):
            raise StoreError(f"{path}: a store already exists here; open it instead of creating it")
        if not days:
            raise StoreError(f"{path}: a store needs at least one day")
        days = sorted(days)
        ntime = len(days)
        ds = xr.Dataset(attrs=dict(attrs or {}))
        ds.coords["time"] = ("time", noon(days), time_attrs())
        for name, var in coords.items():
            ds.coords[name] = (var.dims, var.data, var.attrs)
        encoding: dict[str, dict[str, Any]] = {
            "time": {"units": TIME_UNITS, "calendar": TIME_CALENDAR, "dtype": "int32", "chunks": (ntime,)}
        }
        for name, var in (static or {}).items():
            ds[name] = (var.dims, var.data, var.attrs)
            encoding[name] = {**_codec()}
        for name, var in daily.items():
            if var.dims[0] != "time":
                raise StoreError(f"{path}: daily variable {name!r} must have 'time' first, got {var.dims}")
            shape = (ntime, *(ds.sizes[d] for d in var.dims[1:]))
            chunks = (1, *shape[1:])
            ds[name] = (var.dims, da.full(shape, var.fill_value, dtype=var.dtype, chunks=chunks), var.attrs)
            if np.issubdtype(np.dtype(var.dtype), np.floating):
                fill = {"_FillValue": var.fill_value}
            else:  # counts, flags, indices: a zarr fill value, but no CF mask (0 must stay 0)
                fill = {"_FillValue": None, "fill_value": var.fill_value}
            encoding[name] = {"chunks": chunks, **fill, **_codec()}
        ds.to_zarr(
            path,
            mode="w-",
            compute=False,
            zarr_format=3,
            consolidated=False,
            encoding=encoding,
            storage_options=storage_options,
        )
        store = cls(path, storage_options)
        store.group.create_group("_seedfield")
        return store

    # -- metadata -------------------------------------------------------------------------
    @property
    def group(self) -> zarr.Group:
        if self._group is None:
            try:
                self._group = zarr.open_group(self.path, mode="r+", storage_options=self.storage_options)
            except FileNotFoundError as exc:
                raise StoreError(f"{self.path}: no Zarr store here") from exc
        return self._group

    def refresh(self) -> None:
        """Forget cached metadata (after another process changed the store)."""
        self._group = None
        self._arrays: dict[str, zarr.Array] = {}
        self._axis: tuple[dt.date, int] | None = None

    def array(self, name: str) -> zarr.Array:
        """The zarr array ``name``, opened once per store object."""
        arrays = self.__dict__.setdefault("_arrays", {})
        if name not in arrays:
            arrays[name] = self.group[name]
        return arrays[name]

    def _time_axis(self) -> tuple[dt.date, int]:
        axis = self.__dict__.get("_axis")
        if axis is None:
            arr = self.group["time"]
            axis = (EPOCH + dt.timedelta(days=int(arr[0])), int(arr.shape[0]))
            self._axis = axis
        return axis

    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self.group.attrs)

    def update_attrs(self, **attrs: Any) -> None:
        self.group.attrs.update(attrs)

    @property
    def days(self) -> list[dt.date]:
        numbers = np.asarray(self.group["time"][:])
        return [EPOCH + dt.timedelta(days=int(n)) for n in numbers]

    def index(self, day: dt.date) -> int:
        """Position of ``day`` on the time axis (re-read once if another process grew it)."""
        first, n = self._time_axis()
        i = (day - first).days
        if 0 <= i < n:
            return i
        self.refresh()
        first, n = self._time_axis()
        if not 0 <= i < n:
            last = first + dt.timedelta(days=n - 1)
            raise StoreError(f"{self.path}: day {day} is outside the store's time axis {first}…{last}")
        return i

    def daily_names(self) -> list[str]:
        names = []
        for name, arr in self.group.arrays():
            dims = arr.metadata.dimension_names or ()
            if dims and dims[0] == "time" and name != "time":
                names.append(name)
        return sorted(names)

    def extend(self, days: Iterable[dt.date]) -> None:
        """Grow the time axis so that it covers ``days`` (only at its end)."""
        days = list(days)
        if not days:
            return
        have = self.days
        first, last = have[0], have[-1]
        if min(days) < first:
            raise StoreError(
                f"{self.path}: the store starts on {first} and cannot grow backwards to {min(days)}; "
                "write the earlier period to a new store"
            )
        new_last = max(days)
        if new_last <= last:
            return
        n = (new_last - first).days + 1
        for name in self.daily_names():
            arr = self.group[name]
            arr.resize((n, *arr.shape[1:]))
        time = self.group["time"]
        old = time.shape[0]
        time.resize((n,))
        time[old:] = np.arange(day_number(last) + 1, day_number(new_last) + 1, dtype="int32")
        self.refresh()

    # -- day data -------------------------------------------------------------------------
    def write_day(self, day: dt.date, arrays: Mapping[str, np.ndarray]) -> None:
        """Region-write one day of each named daily variable (exactly one chunk each)."""
        i = self.index(day)
        for name, values in arrays.items():
            arr = self.array(name)
            values = np.asarray(values)
            if values.shape != arr.shape[1:]:
                raise StoreError(
                    f"{self.path}: {name} for {day} has shape {values.shape}, the store expects {arr.shape[1:]}"
                )
            arr[i] = values.astype(arr.dtype, copy=False)

    def read_day(self, day: dt.date, names: Iterable[str]) -> dict[str, np.ndarray]:
        i = self.index(day)
        return {name: np.asarray(self.array(name)[i]) for name in names}

    def read_static(self, name: str) -> np.ndarray:
        return np.asarray(self.group[name][...])

    # -- commit markers -------------------------------------------------------------------
    def _marker_path(self, day: dt.date) -> str:
        return fs.join(self.path, MARKER_DIR, f"{day.isoformat()}.json")

    def marker(self, day: dt.date) -> dict[str, Any] | None:
        raw = fs.read_bytes_or_none(self._marker_path(day), self.storage_options)
        return None if raw is None else json.loads(raw)

    def commit(self, day: dt.date, payload: Mapping[str, Any]) -> bool:
        """Write the day's marker last. Returns False (and writes nothing) when unchanged."""
        body = {"day": day.isoformat(), **payload}
        old = self.marker(day)
        if old is not None and {k: v for k, v in old.items() if k != "written_at"} == body:
            return False
        body["written_at"] = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
        data = json.dumps(body, indent=1, sort_keys=True).encode()
        fs.write_bytes_atomic(self._marker_path(day), data, self.storage_options)
        return True

    def markers(self) -> dict[dt.date, dict[str, Any]]:
        out = {}
        for name in fs.list_names(fs.join(self.path, MARKER_DIR), self.storage_options):
            if name.endswith(".json"):
                day = dt.date.fromisoformat(name.removesuffix(".json"))
                marker = self.marker(day)
                if marker is not None:
                    out[day] = marker
        return out

    def committed_days(self) -> list[dt.date]:
        return sorted(d for d, m in self.markers().items() if m.get("status") == "ok")

    # -- reading --------------------------------------------------------------------------
    def open_dataset(self, committed_only: bool = True) -> xr.Dataset:
        """The store as an xarray Dataset (lazy); by default only committed days."""
        ds = xr.open_zarr(self.path, consolidated=False, storage_options=self.storage_options)
        if committed_only:
            ok = set(self.committed_days())
            keep = [i for i, d in enumerate(self.days) if d in ok]
            ds = ds.isel(time=keep)
        return ds

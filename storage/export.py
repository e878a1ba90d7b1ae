"""Export the committed steps of a store to CF-1.11 / ACDD-1.3 netCDF4 files (zlib-compressed).

``export_netcdf`` is what ``seedfield export STORE --netcdf OUT`` runs. An observations store
is written as CF point files instead (:mod:`storage.observations_export`). Each file holds the
static variables (grid, bounds, land mask …) and the committed steps of one step, one calendar
month or the whole selection; its ACDD time coverage is that of the steps it holds, and a line
of ``history`` says what was exported.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import xarray as xr

from pipeline.steps import Step, parse_step, step_label
from storage import cf, fs
from storage.step_store import StepStore, StoreError

Per = Literal["step", "month", "all"]


def export_netcdf(
    store_path: str,
    out: str,
    start: dt.date | dt.datetime | str | None = None,
    end: dt.date | dt.datetime | str | None = None,
    per: Per = "month",
    storage_options: dict[str, Any] | None = None,
    complevel: int = 4,
) -> list[str]:
    """Write the committed steps of the store at ``store_path`` between ``start`` and ``end``
    (both included; None = the store's first/last step) as netCDF4 files; returns their paths.

    ``out`` is a local directory (created if absent) that receives ``<store>_<period>.nc`` files;
    with ``per="all"`` it may instead name the single ``.nc`` file. Steps whose marker is not
    ``ok`` are left out (their values are fill values). No committed step selected: no file.
    """
    if per not in ("step", "month", "all"):
        raise ValueError(f"per must be 'step', 'month' or 'all', got {per!r}")
    if not StepStore.exists(store_path, storage_options):
        raise StoreError(f"{store_path}: no complete seedfield store here")
    store = StepStore(store_path, storage_options)
    axis = store.steps
    first = axis[0] if start is None else parse_step(start) if isinstance(start, str) else start
    last = axis[-1] if end is None else parse_step(end) if isinstance(end, str) else end
    steps = store.committed_between(first, last)
    if not steps:
        return []
    if store.attrs.get("seedfield_store") == "observations":
        return _export_observations(store, steps, out, per, store_path)
    ds = xr.open_zarr(store_path, consolidated=False, storage_options=storage_options)
    position = {s: i for i, s in enumerate(axis)}  # the time axis read once
    stem = os.path.basename(str(store_path).rstrip("/")).removesuffix(".zarr") or "seedfield"
    single = per == "all" and out.endswith(".nc")
    if not single:
        os.makedirs(out, exist_ok=True)
    written = []
    for label, group in _groups(steps, per):
        path = out if single else os.path.join(out, f"{stem}_{label}.nc")
        part = _prepared(ds.isel(time=[position[s] for s in group]), store, group, store_path)
        part.to_netcdf(path + ".part", format="NETCDF4", engine="netcdf4",
                       encoding=_encoding(part, complevel))
        os.replace(path + ".part", path)
        written.append(path)
    return written


def _export_observations(store: StepStore, steps: Sequence[Step], out: str, per: Per, store_path: str) -> list[str]:
    """An observations store: one CF point (discrete sampling geometry) file per group of steps."""
    from storage.observations_export import observations_dataset, write_observations_netcdf

    stem = os.path.basename(str(store_path).rstrip("/")).removesuffix(".zarr") or "seedfield"
    single = per == "all" and out.endswith(".nc")
    written = []
    for label, group in _groups(steps, per):
        path = out if single else os.path.join(out, f"{stem}_{label}.nc")
        what = (f"exported the committed steps {step_label(group[0])}..{step_label(group[-1])} of "
                f"{fs_redacted(store_path)} to netCDF")
        written.append(write_observations_netcdf(observations_dataset(store, group, what), path))
    return written


def _groups(steps: Sequence[Step], per: Per) -> list[tuple[str, list[Step]]]:
    if per == "all":
        return [(f"{step_label(steps[0])}_{step_label(steps[-1])}", list(steps))]
    if per == "step":
        return [(step_label(s).replace(":", ""), [s]) for s in steps]
    months: dict[str, list[Step]] = {}
    for s in steps:
        months.setdefault(f"{s.year:04d}-{s.month:02d}", []).append(s)
    return list(months.items())


def _attr_value(value: Any) -> Any:
    """A value netCDF can hold as an attribute (numbers, strings, numeric lists)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str | int | float | np.number):
        return value
    if isinstance(value, list | tuple) and value and all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in value):
        return list(value)
    return json.dumps(value)


def _prepared(part: xr.Dataset, store: StepStore, steps: Sequence[Step], store_path: str) -> xr.Dataset:
    """The selection with netCDF-ready types and attributes: signed integers, flag values of
    the variable's own type, discovery attributes of the exported steps."""
    part = part.copy()
    for name in list(part.variables):
        var = part[name].variable
        if var.dtype.kind == "u":  # stores made before signed types: CF-1.8+ readers may reject unsigned
            signed = np.dtype(f"int{min(var.dtype.itemsize * 16, 64)}")
            part[name] = var.astype(signed)
            var = part[name].variable
        attrs = {k: _attr_value(v) for k, v in var.attrs.items()}
        if "flag_values" in attrs:
            attrs["flag_values"] = np.asarray(var.attrs["flag_values"], dtype=var.dtype)
        part[name].attrs = attrs
    attrs = {k: _attr_value(v) for k, v in part.attrs.items()}
    attrs.update(cf.time_coverage_attrs(store.cadence, steps))
    attrs["history"] = cf.append_history(
        attrs.get("history"),
        f"exported the committed steps {step_label(steps[0])}..{step_label(steps[-1])} of "
        f"{fs_redacted(store_path)} to netCDF",
    )
    attrs["id"] = f"{attrs.get('id', 'seedfield')}.{step_label(steps[0])}_{step_label(steps[-1])}"
    attrs["date_modified"] = cf.utc_now()
    part.attrs = attrs
    return part


def fs_redacted(path: str) -> str:
    from pipeline.secrets import redact_url

    return redact_url(str(path)) if not fs.is_local(str(path)) else str(path)


def _encoding(part: xr.Dataset, complevel: int) -> dict[str, dict[str, Any]]:
    enc: dict[str, dict[str, Any]] = {}
    for name, var in part.variables.items():
        e: dict[str, Any] = {}
        if name == "time":
            e = {"units": var.encoding.get("units"), "calendar": var.encoding.get("calendar"), "dtype": "int32"}
        elif var.dims and name not in part.dims:
            e = {"zlib": True, "complevel": complevel, "shuffle": True}
        is_coord_like = name in part.dims or name.endswith("_bnds") or name == "time"
        if is_coord_like or var.dtype.kind != "f":
            e["_FillValue"] = None  # CF: no fill on coordinates; integers keep every value
        else:
            e["_FillValue"] = var.encoding.get("_FillValue", np.float32(np.nan))
        enc[name] = {k: v for k, v in e.items() if v is not None or k == "_FillValue"}
    return enc

"""A Zarr v3 store with a time axis of one fixed step, written one step at a time.

The rules (docs/architecture.md, "Storage"):

* the store's step (daily by default, every N hours, monthly, or a 12-month climatology; see
  :class:`pipeline.steps.Cadence`) is recorded in its ``seedfield_step`` attribute when it is
  created; a store without the attribute (made by a daily-only release) is daily;
* the store is created once from a template that covers the requested steps
  (``to_zarr(compute=False)``): metadata and coordinates only, no chunk of data;
* each step is written by a region write of exactly one time chunk, so writers of different
  steps never touch the same object and re-writing a step overwrites it (idempotent);
* a per-step commit marker (``_seedfield/commits/<label>.json``, ``2019-03-01`` for a day,
  ``2019-03-01T05`` for an hour) is written last; readers and resumable flows trust only steps
  whose marker says ``"status": "ok"``;
* the time axis grows at its end when later steps are asked for; it never moves its start;
* a per-step ``status`` variable (CF flags) repeats what each marker says, written just before it;
* the metadata is consolidated (root ``zarr.json``) whenever it changes: creation, growth,
  attribute updates; the store's own code never reads the consolidated copy, so a copy left
  stale by a killed run misleads no writer, and the next change rewrites it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr
import zarr

from pipeline.secrets import redact_options
from pipeline.steps import DAILY, Cadence, Step, parse_step, step_label
from storage import cf, fs
from storage.cf import STATUS_VARIABLE
from storage.template import StaticVar, StepVar, template

__all__ = ["StaticVar", "StepStore", "StepVar", "StoreError", "creating_note", "date_range"]

MARKER_DIR = "_seedfield/commits"
#: Suffix of the note written beside a store (``raw.zarr`` → ``raw.zarr.creating.json``) before
#: its template and removed once the template is complete.
CREATING = ".creating.json"
STEP_ATTR = "seedfield_step"


class StoreError(Exception):
    """A store cannot be created, opened or written as asked. The message names the store."""


def _same_attr(stored: Any, value: Any) -> bool:
    """Whether an attribute already stored (as JSON) equals ``value`` once written as JSON."""
    try:
        return json.loads(json.dumps(stored, default=str)) == json.loads(json.dumps(value, default=_json_default))
    except (TypeError, ValueError):
        return False


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def creating_note(path: str) -> str:
    """Where :meth:`StepStore.create` notes that it is creating the store at ``path``."""
    return str(path).rstrip("/") + CREATING


def date_range(start: dt.date, end: dt.date) -> list[dt.date]:
    """Every day from start to end, both included."""
    if end < start:
        raise ValueError(f"end date {end} is before start date {start}")
    return DAILY.steps(start, end)


class StepStore:
    """A Zarr v3 store with one fixed time step at ``path`` (a local path or an fsspec URL)."""

    def __init__(self, path: str, storage_options: dict[str, Any] | None = None) -> None:
        self.path = str(path)
        self.storage_options = storage_options or None
        self._group: zarr.Group | None = None

    # -- creation -------------------------------------------------------------------------
    @staticmethod
    def exists(path: str, storage_options: dict[str, Any] | None = None) -> bool:
        """True when a complete store is at ``path`` (one whose creation was interrupted is not:
        :meth:`create` replaces it)."""
        return (fs.read_bytes_or_none(fs.join(str(path), "zarr.json"), storage_options) is not None
                and not StepStore.interrupted(path, storage_options))

    @staticmethod
    def interrupted(path: str, storage_options: dict[str, Any] | None = None) -> bool:
        """True when :meth:`create` began a store at ``path`` and was stopped before it finished
        (its :data:`CREATING` note is still there). Such a store holds no committed step."""
        return fs.read_bytes_or_none(creating_note(path), storage_options) is not None

    @classmethod
    def create(
        cls,
        path: str,
        steps: Sequence[Step],
        coords: Mapping[str, StaticVar],
        daily: Mapping[str, StepVar],
        static: Mapping[str, StaticVar] | None = None,
        attrs: Mapping[str, Any] | None = None,
        storage_options: dict[str, Any] | None = None,
        cadence: Cadence = DAILY,
    ) -> StepStore:
        """Write the template: coordinates, static variables and the metadata of per-step ones.

        Crash-safe: a :data:`CREATING` note is written before anything else and removed last, so
        a run killed at any moment in between leaves a store that :meth:`exists` does not
        accept and that the next ``create`` removes and writes again. The note is only written
        where nothing is stored yet, so a store made by anything else is never removed.
        """
        if not steps:
            raise StoreError(f"{path}: a store needs at least one step")
        if cls.interrupted(path, storage_options):
            fs.remove_tree(path, storage_options)
        elif fs.read_bytes_or_none(fs.join(str(path), "zarr.json"), storage_options) is not None:
            raise StoreError(f"{path}: a store already exists here; open it instead of creating it")
        elif fs.list_names(path, storage_options):
            raise StoreError(f"{path}: holds other files; a new store needs an empty or absent location")
        fs.write_bytes_atomic(creating_note(path), b'{"creating": true}\n', storage_options)
        first, last = min(steps), max(steps)
        steps = [cadence.shift(first, k) for k in range(cadence.offset(first, last) + 1)]
        attrs = redact_options(dict(attrs or {}))  # a store never holds a credential
        if cadence != DAILY:  # a daily store keeps the attributes of the daily-only releases
            attrs[STEP_ATTR] = cadence.code
        for name, var in daily.items():
            if var.dims[0] != "time":
                raise StoreError(f"{path}: per-step variable {name!r} must have 'time' first, got {var.dims}")
        ds, encoding = template(steps, coords, daily, static or {}, attrs, cadence)
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
        store.consolidate()
        fs.remove_file(creating_note(path), storage_options)
        return store

    # -- metadata -------------------------------------------------------------------------
    @property
    def group(self) -> zarr.Group:
        if self._group is None:
            try:
                self._group = zarr.open_group(self.path, mode="r+", storage_options=self.storage_options,
                                              use_consolidated=False)
            except FileNotFoundError as exc:
                raise StoreError(f"{self.path}: no Zarr store here") from exc
        return self._group

    def refresh(self) -> None:
        """Forget cached metadata (after another process changed the store)."""
        self._group = None
        self._arrays: dict[str, zarr.Array] = {}
        self._axis: tuple[Step, int] | None = None
        self._cadence: Cadence | None = None
        self._step_names: list[str] | None = None

    @property
    def cadence(self) -> Cadence:
        """The store's time step (daily for stores made before steps were recorded)."""
        if self.__dict__.get("_cadence") is None:
            try:
                self._cadence = Cadence.parse(self.group.attrs.get(STEP_ATTR, "1D"))
            except ValueError as exc:
                raise StoreError(f"{self.path}: attribute {STEP_ATTR}: {exc}") from exc
        return self._cadence

    def array(self, name: str) -> zarr.Array:
        """The zarr array ``name``, opened once per store object."""
        arrays = self.__dict__.setdefault("_arrays", {})
        if name not in arrays:
            arrays[name] = self.group[name]
        return arrays[name]

    def _time_axis(self) -> tuple[Step, int]:
        axis = self.__dict__.get("_axis")
        if axis is None:
            try:
                arr = self.group["time"]
            except KeyError as exc:
                raise StoreError(
                    f"{self.path}: the store has no time axis (its creation was interrupted by a release "
                    "without crash-safe creation); remove the store and run again"
                ) from exc
            axis = (self.cadence.from_time_number(int(arr[0])), int(arr.shape[0]))
            self._axis = axis
        return axis

    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self.group.attrs)

    def update_attrs(self, **attrs: Any) -> None:
        """Set attributes; writes nothing when they already have these values, so an
        unchanged re-run changes no byte of ``zarr.json``."""
        attrs = redact_options(attrs)
        current = self.attrs
        if all(k in current and _same_attr(current[k], v) for k, v in attrs.items()):
            return
        self.group.attrs.update(attrs)
        self.consolidate()

    def consolidate(self) -> None:
        """Rewrite the consolidated metadata (root ``zarr.json``) from the arrays' own, so that
        ``xr.open_zarr(path)`` opens the store in one read and without a warning."""
        with warnings.catch_warnings():  # zarr notes that v3 has no consolidated metadata in its spec
            warnings.simplefilter("ignore", UserWarning)
            zarr.consolidate_metadata(self.group.store)
        self._group = None  # re-open: attributes and shapes as now stored

    def record_run(self, what: str) -> None:
        """After a run that changed the store: append a line to ``history`` and set the ACDD time
        coverage (and ``date_modified``) to the committed steps. Called once per run by the flow
        (one process), never by the per-step writers, so attribute writes never race. Nothing is
        written when the commit markers are what they were at the last recorded run."""
        attrs = self.attrs
        markers = self.markers()
        # a run that changed no marker (an unchanged re-run, a failure reported again) changes no byte
        digest = hashlib.sha256(json.dumps(
            {step_label(d): {k: v for k, v in m.items() if k != "written_at"} for d, m in sorted(markers.items())},
            sort_keys=True, default=str).encode()).hexdigest()
        if attrs.get("seedfield_markers_sha256") == digest:
            return
        self.group.attrs.update({
            "history": cf.append_history(attrs.get("history"), what),
            "date_modified": cf.utc_now(),
            "seedfield_markers_sha256": digest,
            **cf.time_coverage_attrs(self.cadence, sorted(d for d, m in markers.items() if m.get("status") == "ok")),
        })
        self.consolidate()

    @property
    def steps(self) -> list[Step]:
        numbers = np.asarray(self.group["time"][:])
        return [self.cadence.from_time_number(int(n)) for n in numbers]

    def steps_between(self, start: dt.date, end: dt.date) -> list[Step]:
        """The store's steps from ``start`` to ``end`` (dates or date-times), both included."""
        return self.cadence.steps(start, end)

    def index(self, step: Step) -> int:
        """Position of ``step`` on the time axis (re-read once if another process grew it)."""
        first, n = self._time_axis()
        i = self.cadence.offset(first, step)
        if 0 <= i < n:
            return i
        self.refresh()
        first, n = self._time_axis()
        if not 0 <= i < n:
            last = self.cadence.shift(first, n - 1)
            raise StoreError(
                f"{self.path}: step {step_label(step)} is outside the store's time axis "
                f"{step_label(first)}…{step_label(last)}"
            )
        return i

    def step_names(self) -> list[str]:
        names = []
        for name, arr in self.group.arrays():
            dims = arr.metadata.dimension_names or ()
            if dims and dims[0] == "time" and name != "time":
                names.append(name)
        return sorted(names)

    def extend(self, steps: Iterable[Step]) -> None:
        """Grow the time axis so that it covers ``steps`` (only at its end).

        The per-step arrays are resized before the time coordinate, and the coordinate's values
        are checked against the cadence on every call, so a run killed anywhere in between (the
        coordinate resized but its new chunk not written, which reads as fill values) is
        finished by the next call, even when the axis is already long enough.
        """
        steps = list(steps)
        if not steps:
            return
        cad = self.cadence
        time = self.group["time"]
        first = cad.from_time_number(int(time[0]))
        if cad.offset(first, min(steps)) < 0:
            raise StoreError(
                f"{self.path}: the store starts at {step_label(first)} and cannot grow backwards to "
                f"{step_label(min(steps))}; write the earlier period to a new store"
            )
        n = max(int(time.shape[0]), cad.offset(first, max(steps)) + 1)
        for name in self.step_names():
            arr = self.group[name]
            if arr.shape[0] < n:
                arr.resize((n, *arr.shape[1:]))
        if time.shape[0] < n:
            time.resize((n,))
        expected = np.array([cad.time_number(cad.shift(first, k)) for k in range(n)], dtype="int32")
        wrong = np.flatnonzero(np.asarray(time[:]) != expected)
        if wrong.size:
            time[int(wrong[0]):] = expected[int(wrong[0]):]
        self.refresh()
        self.consolidate()

    # -- step data ------------------------------------------------------------------------
    def write_step(self, step: Step, arrays: Mapping[str, np.ndarray]) -> None:
        """Region-write one step of each named per-step variable (exactly one chunk each).

        A step whose marker says ``ok`` is first marked ``rewriting``: a run killed while it
        replaces the step's chunks leaves the step invisible to readers (never a mix of the old
        and the new version shown as good), and the next run writes it again.
        """
        i = self.index(step)
        if "sensor_index" in arrays and "sensor_lat" in self.step_names_cached() and "sensor_lat" not in arrays:
            positions = cf.sensor_positions(arrays["sensor_index"], self.read_static("lat"), self.read_static("lon"))
            arrays = {**arrays, "sensor_lat": positions[0], "sensor_lon": positions[1]}
        old = self.marker(step)
        if old is not None and old.get("status") == "ok":
            body = {"day": step_label(step), "status": "rewriting", "replacing": old.get("written_at")}
            self._write_status(i, body)
            fs.write_bytes_atomic(self._marker_path(step), json.dumps(body, indent=1, sort_keys=True).encode(),
                                  self.storage_options)
        for name, values in arrays.items():
            arr = self.array(name)
            values = np.asarray(values)
            if values.shape != arr.shape[1:]:
                raise StoreError(
                    f"{self.path}: {name} for {step_label(step)} has shape {values.shape}, the store expects {arr.shape[1:]}"
                )
            arr[i] = values.astype(arr.dtype, copy=False)

    def read_step(self, step: Step, names: Iterable[str]) -> dict[str, np.ndarray]:
        i = self.index(step)
        return {name: np.asarray(self.array(name)[i]) for name in names}

    def read_static(self, name: str) -> np.ndarray:
        return np.asarray(self.group[name][...])

    def write_static(self, name: str, values: np.ndarray) -> None:
        """Overwrite a static variable (same shape; one region write per chunk)."""
        arr = self.group[name]
        values = np.asarray(values)
        if values.shape != arr.shape:
            raise StoreError(f"{self.path}: {name} has shape {arr.shape}, got {values.shape}")
        arr[...] = values.astype(arr.dtype, copy=False)

    # -- commit markers -------------------------------------------------------------------
    def _marker_path(self, step: Step) -> str:
        return fs.join(self.path, MARKER_DIR, f"{step_label(step)}.json")

    def marker(self, step: Step) -> dict[str, Any] | None:
        raw = fs.read_bytes_or_none(self._marker_path(step), self.storage_options)
        return None if raw is None else json.loads(raw)

    def commit(self, step: Step, payload: Mapping[str, Any]) -> bool:
        """Write the step's marker last. Returns False (and writes nothing) when unchanged.

        The marker's ``"day"`` key holds the step's label (its name since the daily-only
        releases, kept so that their markers stay valid and unchanged re-runs write nothing).
        """
        body = redact_options({"day": step_label(step), **payload})  # markers never hold a credential
        old = self.marker(step)
        if old is not None and {k: v for k, v in old.items() if k != "written_at"} == body:
            return False
        body["written_at"] = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
        data = json.dumps(body, indent=1, sort_keys=True).encode()
        self._write_status(self.index(step), body)
        fs.write_bytes_atomic(self._marker_path(step), data, self.storage_options)
        return True

    def _write_status(self, i: int, marker: Mapping[str, Any]) -> None:
        """The ``status`` flag of the step at position ``i`` (stores made before it had none)."""
        if STATUS_VARIABLE in self.step_names_cached():
            self.array(STATUS_VARIABLE)[i] = cf.status_code(marker)

    def step_names_cached(self) -> list[str]:
        names = self.__dict__.get("_step_names")
        if names is None:
            names = self._step_names = self.step_names()
        return names

    def markers(self) -> dict[Step, dict[str, Any]]:
        out = {}
        for name in fs.list_names(fs.join(self.path, MARKER_DIR), self.storage_options):
            if name.endswith(".json"):
                step = parse_step(name.removesuffix(".json"))
                marker = self.marker(step)
                if marker is not None:
                    out[step] = marker
        return out

    def committed_steps(self) -> list[Step]:
        return sorted(d for d, m in self.markers().items() if m.get("status") == "ok")

    def committed_between(self, start: dt.date, end: dt.date) -> list[Step]:
        """Committed steps from ``start`` to ``end`` (dates or date-times), both included."""
        inside = set(self.steps_between(start, end))
        return [d for d in self.committed_steps() if d in inside]

    # -- reading --------------------------------------------------------------------------
    def open_dataset(self, committed_only: bool = True) -> xr.Dataset:
        """The store as an xarray Dataset (lazy); by default only committed steps."""
        ds = xr.open_zarr(self.path, consolidated=False, storage_options=self.storage_options)
        if committed_only:
            ok = set(self.committed_steps())
            keep = [i for i, d in enumerate(self.steps) if d in ok]
            ds = ds.isel(time=keep)
        return ds

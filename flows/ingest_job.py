"""Ingest one archive file into the raw store. Runs inside a Dask worker process; no Prefect.

Order of writes for each step: data (region write of the step's chunk), then the commit marker.
A step whose stored version came from the same bytes (same sha256) is left untouched, so a
re-run changes nothing on disk; a final file replaces a preliminary day; a bad file never
overwrites a day that is already stored.
"""

from __future__ import annotations

import functools
import hashlib
import json
from typing import Any

import numpy as np

from flows.reports import StepOutcome
from pipeline.errors import ArchiveError
from pipeline.grid import Grid, align_to_grid
from pipeline.readers import read_archive_file, validate_step
from pipeline.secrets import redact_text, redact_url
from pipeline.sources import ArchiveFile, read_bytes
from pipeline.steps import parse_step, step_label
from storage.raw_store import LAND_MASK, raw_variable
from storage.step_store import StepStore


@functools.lru_cache(maxsize=8)
def _static(path: str, created: str, options: str) -> tuple[Grid, np.ndarray]:
    store = StepStore(path, json.loads(options) or None)
    grid = Grid(lat=store.read_static("lat"), lon=store.read_static("lon"))
    return grid, store.read_static(LAND_MASK).astype(bool)


def static_fields(store: StepStore) -> tuple[Grid, np.ndarray]:
    """The store's grid and land mask, read once per worker process and store."""
    created = str(store.attrs.get("date_created", ""))
    return _static(store.path, created, json.dumps(store.storage_options or {}, sort_keys=True))


def _is_ok(marker: dict[str, Any] | None) -> bool:
    return bool(marker) and marker.get("status") == "ok"


def record_failure(store: StepStore, day_iso: str, status: str, source: str, message: str) -> StepOutcome:
    """Mark a step failed/missing, unless a good version is stored: that one is kept."""
    day = parse_step(day_iso)
    source, message = redact_url(source), redact_text(message)
    old = store.marker(day)
    if _is_ok(old):
        message += f" (kept the version stored from {old.get('source')})"
    else:
        try:
            store.commit(day, {"status": status, "source": source, "error": message})
        except OSError as exc:  # a full disk or a read-only store: the outcome is still reported
            message += f" (not recorded in the store: {exc})"
    return StepOutcome(day_iso, status, source, message)  # type: ignore[arg-type]


def stored_since(store: StepStore, day_iso: str, source: str, since: str) -> bool:
    """True when ``store`` committed the step ``ok`` from ``source`` at or after ``since`` (an
    ISO time): a task that crashed after storing some of its steps did store those."""
    marker = store.marker(parse_step(day_iso))
    return _is_ok(marker) and marker.get("source") == redact_url(source) and str(marker.get("written_at", "")) >= since


def ingest_file_job(
    file: ArchiveFile,
    store_path: str,
    valid_range: tuple[float, float],
    source_options: dict[str, Any] | None = None,
    store_options: dict[str, Any] | None = None,
    variable: str | None = None,
) -> list[StepOutcome]:
    """Read, validate and store every requested step of ``file``; one outcome per step."""
    store = StepStore(store_path, store_options)
    variable = variable or raw_variable(store)
    wanted = {step_label(d) for d in file.steps}
    shown = redact_url(file.url)  # what messages, markers and reports name; file.url is only read
    try:
        data = read_bytes(file.url, source_options)
        sha = hashlib.sha256(data).hexdigest()
        old = {d: store.marker(d) for d in file.steps}
        if all(_is_ok(m) and m.get("sha256") == sha for m in old.values()):
            return [StepOutcome(step_label(d), "unchanged", shown) for d in file.steps]
        decoded = read_archive_file(
            data, shown, variable=variable, preliminary=file.preliminary, cadence=store.cadence
        )
    except ArchiveError as exc:
        return [record_failure(store, d, "failed", file.url, str(exc)) for d in sorted(wanted)]

    grid, _ = static_fields(store)
    outcomes = []
    for day_field in decoded.steps:
        iso = step_label(day_field.step)
        if iso not in wanted:
            continue
        wanted.discard(iso)
        try:
            validate_step(day_field, shown, valid_range)
            values = align_to_grid(day_field.values, decoded.grid, grid,
                                   f"{shown} (the store's grid came from {store.attrs.get('grid_source', 'its first file')})")
        except ArchiveError as exc:
            outcomes.append(record_failure(store, iso, "failed", file.url, str(exc)))
            continue
        before = old.get(day_field.step)
        if _is_ok(before) and not before.get("preliminary") and file.preliminary:
            outcomes.append(StepOutcome(iso, "unchanged", shown, "a final version is stored"))
            continue
        values = np.asarray(values, dtype="float32")  # as the file says: a cell valid today is kept
        try:
            store.write_step(day_field.step, {variable: values})
            store.commit(
                day_field.step,
                {"status": "ok", "source": shown, "sha256": sha, "preliminary": file.preliminary},
            )
        except OSError as exc:  # full disk, read-only store: this step fails, the others go on
            outcomes.append(record_failure(store, iso, "failed", file.url, f"cannot write the store: {exc}"))
            continue
        outcomes.append(StepOutcome(iso, "ok", shown))
    held = [step_label(f.step) for f in decoded.steps]
    holds = f"{held[0]} … {held[-1]} ({len(held)} steps)" if len(held) > 3 else ", ".join(held) or "no step"
    for iso in sorted(wanted):
        outcomes.append(record_failure(store, iso, "failed", file.url,
                                       f"{shown} holds no data for {iso}; it holds {holds}"))
    return outcomes


def ingest_files_job(files: list[ArchiveFile], **job: Any) -> list[StepOutcome]:
    """Several files in one job (a backfill chunk): the same as one job per file, in order."""
    return [o for f in files for o in ingest_file_job(f, **job)]


def refresh_land_mask(store: StepStore, steps: list[Any]) -> int:
    """Clear the static land mask wherever one of ``steps`` (committed) has a valid value.

    The land mask means "never valid in any ingested step": it starts as the cells without data
    in the store's first file and only shrinks (a mask from ``archive.land_mask_file`` is kept as
    given). It is recomputed from the stored steps (not
    from what the run's jobs saw), so a run killed before this point is repaired by the next
    run of the same range. Returns the number of cells cleared.
    """
    if store.attrs.get("land_mask_file"):  # the user named the land: it stays as given
        return 0
    land = store.read_static(LAND_MASK).astype(bool)
    if not land.any():
        return 0
    variable = raw_variable(store)
    seen = np.zeros_like(land)
    for step in steps:  # committed: each was stored ("ok") or already stored ("unchanged") by the run
        seen |= np.isfinite(store.read_step(step, [variable])[variable])
    new = land & ~seen
    cleared = int(land.sum() - new.sum())
    if cleared:
        store.write_static(LAND_MASK, new.astype("int8"))
    return cleared

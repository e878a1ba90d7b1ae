"""Ingest flow: validate archive files and write their time steps into the raw Zarr store."""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

import numpy as np
from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.config import ConfigError, SeedfieldConfig
from flows.dask_runtime import dask_client, on_dask
from flows.ingest_job import ingest_files_job, record_failure, refresh_land_mask, stored_since
from flows.prefect_flow import flow
from flows.progress import RunProgress
from flows.reports import StepOutcome, any_failed, summarise, write_report
from flows.states import finish
from flows.windowed import run_windowed
from pipeline.errors import ArchiveError
from pipeline.readers import read_archive_file, validate_step
from pipeline.secrets import redact_url
from pipeline.sources import ArchiveFile, ArchiveIndex, read_bytes, resolve_archive
from pipeline.steps import DAILY, Cadence, describe_runs, parse_step, step_label
from storage.raw_store import create_raw_store
from storage.step_store import StepStore


def files_label(files: list[ArchiveFile]) -> str:
    """Task-run label: ``ingest-2024-05-01`` for one step, ``ingest-2024-05-01-to-2024-05-08`` else."""
    steps = sorted(d for f in files for d in f.steps)
    if len(steps) == 1:
        return f"ingest-{step_label(steps[0])}"
    return f"ingest-{step_label(steps[0])}-to-{step_label(steps[-1])}"


def store_cadence(config: SeedfieldConfig) -> Cadence | None:
    """The raw store's step, checked against ``[archive] step``; None = detect from the files."""
    path, opts = config.stores.raw, config.stores.storage_options or None
    asked = Cadence.parse(config.archive.step) if config.archive.step else None
    if not StepStore.exists(path, opts):
        return asked
    have = StepStore(path, opts).cadence
    if asked is not None and asked != have:
        raise ConfigError(
            f"config key 'archive.step': the store {path} has the step {have.code!r}, not "
            f"{asked.code!r}; a store keeps the step it was created with (use a new store)"
        )
    return have


def known_cadence(config: SeedfieldConfig) -> Cadence:
    """The raw store's step; before there is one, ``[archive] step``, else days.

    A first run over a sub-daily archive without ``[archive] step`` is planned in whole days:
    its ingest finds the archive's own step, and every step of those days is done.
    """
    return store_cadence(config) or DAILY


def open_or_create_store(
    config: SeedfieldConfig, index: ArchiveIndex, start: dt.datetime | dt.date, end: dt.date
) -> StepStore:
    """Open the raw store and grow it to the range, or create it from the first readable file."""
    path, opts = config.stores.raw, config.stores.storage_options or None
    cadence = index.cadence
    days = cadence.steps(start, end)
    if StepStore.exists(path, opts):
        store = StepStore(path, opts)
        have = store.attrs.get("seedfield_variable")
        if have and have != config.archive.variable:
            raise ConfigError(
                f"config key 'archive.variable': the store {path} holds {have!r}, not "
                f"{config.archive.variable!r}"
            )
        store.extend(days)
        return store
    problems = []
    for file in index.files:
        try:
            data = read_bytes(file.url, config.archive.storage_options or None)
            decoded = read_archive_file(data, file.url, config.archive.variable, file.preliminary, cadence)
            validate_step(decoded.steps[0], file.url, config.archive.valid_range)
        except ArchiveError as exc:
            problems.append(str(exc))  # ArchiveError messages are redacted already
            continue
        first = decoded.steps[0].values
        if config.archive.grid_file:  # the grid is chosen, not inherited from a file of the archive
            grid = _configured_grid(config.archive.grid_file)
            land = np.ones((grid.lat.size, grid.lon.size), bool)  # land until a step has a value there
            origin = {"grid_source": f"{config.archive.grid_file} (config key archive.grid_file)",
                      "land_mask_source": "cells where no ingested step has a valid value"}
        else:
            _check_first_grids_agree(index, file, decoded.grid, config, cadence)
            grid, land = decoded.grid, ~(first == first)  # NaN in the first good day = land
            origin = {"grid_source": file.url, "land_mask_sha256": hashlib.sha256(data).hexdigest(),
                      "land_mask_source": f"{file.url} (cells without data), then cleared where an "
                                          "ingested step has a valid value"}
        if config.archive.land_mask_file:  # the land is named, not inferred from the data
            land = _configured_land(config, grid)
            origin = {**origin, "land_mask_file": config.archive.land_mask_file,
                      "land_mask_source": f"{config.archive.land_mask_file} (config key archive.land_mask_file; a "
                                          f"value above 0.5 means {config.archive.land_mask_means})"}
            origin.pop("land_mask_sha256", None)
        return create_raw_store(
            path,
            days,
            grid.lat,
            grid.lon,
            land_mask=land,
            variable=config.archive.variable,
            variable_attrs=decoded.attrs,  # units and names from the first readable file
            attrs={**config.metadata.attrs(), "source_archive": str(config.archive.source), **origin},  # the store redacts credentials
            storage_options=opts,
            cadence=cadence,
        )
    detail = "\n  ".join(problems[:5]) or "no file in the range"
    raise ArchiveError(str(config.archive.source), f"no readable file to build the store from:\n  {detail}")


def _configured_grid(path: str) -> Any:
    """The grid of ``archive.grid_file``; a ConfigError naming the key and the file otherwise."""
    from pipeline.grid import read_grid_file

    try:
        return read_grid_file(path)
    except ValueError as exc:
        raise ConfigError(f"config key 'archive.grid_file': {exc}") from None


def _configured_land(config: SeedfieldConfig, grid: Any) -> np.ndarray:
    """``archive.land_mask_file`` on the store's ``grid``; a ConfigError naming the key otherwise."""
    from pipeline.errors import GridMismatchError
    from pipeline.grid import align_to_grid, read_land_mask_file

    a = config.archive
    try:
        mask_grid, land = read_land_mask_file(a.land_mask_file, a.land_mask_variable, a.land_mask_means)
        return align_to_grid(land, mask_grid, grid, a.land_mask_file)
    except (ValueError, GridMismatchError) as exc:
        raise ConfigError(f"config key 'archive.land_mask_file': {exc}") from None


def _check_first_grids_agree(index: ArchiveIndex, first: ArchiveFile, grid: Any, config: SeedfieldConfig,
                             cadence: Cadence) -> None:
    """The store's grid is taken from its first readable file only when one of the next readable
    files (up to five) has the same grid; when none does, one line names the first file, its
    grid and the others', so a first file on an odd grid cannot make every good file fail."""
    from pipeline.grid import align_to_grid

    disagree = []
    for file in [f for f in index.files if f.url != first.url][:5]:
        try:
            data = read_bytes(file.url, config.archive.storage_options or None)
            other = read_archive_file(data, file.url, config.archive.variable, file.preliminary, cadence)
            align_to_grid(other.steps[0].values, other.grid, grid, file.url)
            return
        except ArchiveError as exc:
            if "grid" in exc.problem:
                disagree.append(str(exc))
    if disagree:
        raise ArchiveError(
            str(config.archive.source),
            f"the first files disagree on the grid, so a new store cannot take it from them: "
            f"{first.url} has {grid.describe()}, but {disagree[0]}. Remove or fix the odd file and run again",
        )


def _day_table(outcomes: list[StepOutcome], limit: int = 500) -> list[dict[str, str]]:
    rows = sorted(outcomes, key=lambda o: o.day)
    return [{"day": o.day, "status": o.status, "source": o.source.rsplit("/", 1)[-1], "message": o.message} for o in rows[:limit]]


@flow(name="ingest", flow_run_name="ingest-{start}-{end}")
def ingest_flow(
    config: SeedfieldConfig,
    start: dt.datetime | dt.date,
    end: dt.datetime | dt.date,
    report: str | None = None,
    progress_bar: bool = False,
) -> dict[str, Any]:
    """Validate each archive file and write its days into the raw store (idempotent).

    Returns a summary ``{"summary": counts, "store": path, "failed_days": [...]}``; the flow run
    itself only fails for problems that stop every day (no archive, unreadable store).
    """
    logger = get_run_logger()
    source = config.archive.source
    if not source:
        raise ConfigError("config key 'archive.source': not set; pass --archive or set [archive] source")
    index = resolve_archive(source, start, end, config.archive.storage_options or None, store_cadence(config))
    logger.info(
        "archive %s: %d files for %s…%s, step %s, %d steps missing, %d duplicated",
        source, len(index.files), start, end, index.cadence.code, len(index.missing), len(index.duplicates),
    )
    store = open_or_create_store(config, index, start, end)
    started = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()  # the markers' resolution
    outcomes: list[StepOutcome] = []
    for step in index.missing:
        label = step_label(step)
        outcomes.append(record_failure(store, label, "missing", source, f"no file for {label} in {source}"))
    for step, urls in sorted(index.duplicates.items()):
        msg = f"{len(urls)} files hold this step, refusing to guess: {', '.join(urls)}"
        outcomes.append(record_failure(store, step_label(step), "failed", urls[0], msg))

    job = {
        "store_path": config.stores.raw,
        "valid_range": tuple(config.archive.valid_range),
        "source_options": config.archive.storage_options or None,
        "store_options": config.stores.storage_options or None,
        "variable": config.archive.variable,
    }
    window = 2 * (config.dask.n_workers * config.dask.threads_per_worker)
    n = config.ingest.files_per_task
    groups = [index.files[i : i + n] for i in range(0, len(index.files), n)]
    with dask_client(config.dask, len(groups)), RunProgress(
        len(index.files), f"ingest {start}…{end}", key="ingest-progress", show_bar=progress_bar
    ) as progress:
        for group, result in run_windowed(
            lambda g: on_dask.submit(files_label(g), ingest_files_job, {"files": g, **job}),
            groups,
            window,
        ):
            if isinstance(result, Exception):
                msg = f"ingest crashed after retries: {type(result).__name__}: {result}"
                result = [StepOutcome(step_label(d), "ok", redact_url(f.url), "stored before the task crashed")
                          if stored_since(store, step_label(d), f.url, started)
                          else record_failure(store, step_label(d), "failed", f.url, msg) for f in group for d in f.steps]
            outcomes.extend(result)
            progress.advance(len(group))

    mask_error = None
    try:
        cleared = refresh_land_mask(store, [parse_step(o.day) for o in outcomes if o.status in ("ok", "unchanged")])
    except OSError as exc:  # full disk, read-only store: the next run refreshes it from the same steps
        cleared, mask_error = 0, f"land mask not refreshed: {exc}"
        logger.error("%s; re-run the ingest once the store is writable", mask_error)
    if cleared:
        logger.info("land mask: %d cells had a valid value in an ingested step and are ocean now", cleared)
    for o in outcomes:
        if o.status == "failed":
            logger.warning("%s %s: %s", o.day, o.status, o.message)
    missing = [store.cadence.coerce(parse_step(o.day)) for o in outcomes if o.status == "missing"]
    for line in describe_runs(missing, store.cadence):  # one line per run of missing steps
        logger.warning("%s missing (no file in %s)", line, source)
    counts = summarise(outcomes)
    logger.info("ingest %s…%s into %s: %s", start, end, config.stores.raw, counts)
    create_table_artifact(_day_table(outcomes), key="ingest-days", description=f"ingest {start}…{end}")
    create_markdown_artifact(
        f"## Ingest {start} … {end}\n\nStore: `{config.stores.raw}`\n\n"
        + "| status | days |\n|---|---|\n"
        + "".join(f"| {k} | {v} |\n" for k, v in counts.items()),
        key="ingest-summary",
    )
    try:  # history and time coverage, once per run that changed or tried a step
        if counts.get("ok") or counts.get("failed") or counts.get("missing"):
            store.record_run(f"ingest {start}..{end}: " + ", ".join(f"{v} {k}" for k, v in counts.items() if v))
    except OSError as exc:  # a full disk or a read-only store: the run's outcome is still reported
        logger.warning("%s: history not recorded: %s", store.path, exc)
    if report:
        write_report(report, "ingest", outcomes, store=config.stores.raw, source=source, start=str(start), end=str(end))
    return finish({
        "store": config.stores.raw,
        "summary": counts,
        "failed_days": [o.day for o in outcomes if o.status in ("failed", "missing")],
        "ok": not any_failed(outcomes) and mask_error is None,
        **({"error": mask_error} if mask_error else {}),
    })

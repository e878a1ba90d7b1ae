"""Ingest flow: validate daily archive files and write them into the raw Zarr store."""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.config import ConfigError, SeedfieldConfig
from flows.dask_runtime import dask_client, on_dask
from flows.ingest_job import ingest_files_job, record_failure
from flows.progress import RunProgress
from flows.reports import DayOutcome, any_failed, summarise, write_report
from flows.windowed import run_windowed
from pipeline.errors import ArchiveError
from pipeline.readers import read_archive_file, validate_day
from pipeline.sources import ArchiveFile, ArchiveIndex, read_bytes, resolve_archive
from storage.daily_store import DailyStore, date_range
from storage.raw_store import create_raw_store


def files_label(files: list[ArchiveFile]) -> str:
    """Task-run label: ``ingest-2024-05-01`` for one day, ``ingest-2024-05-01-to-2024-05-08`` else."""
    days = sorted(d for f in files for d in f.days)
    if len(days) == 1:
        return f"ingest-{days[0].isoformat()}"
    return f"ingest-{days[0].isoformat()}-to-{days[-1].isoformat()}"


def open_or_create_store(
    config: SeedfieldConfig, index: ArchiveIndex, start: dt.date, end: dt.date
) -> DailyStore:
    """Open the raw store and grow it to the range, or create it from the first readable file."""
    path, opts = config.stores.raw, config.stores.storage_options or None
    days = date_range(start, end)
    if DailyStore.exists(path, opts):
        store = DailyStore(path, opts)
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
            decoded = read_archive_file(data, file.url, config.archive.variable, file.preliminary)
            validate_day(decoded.days[0], file.url, config.archive.valid_range)
        except ArchiveError as exc:
            problems.append(str(exc))
            continue
        first = decoded.days[0].values
        return create_raw_store(
            path,
            days,
            decoded.grid.lat,
            decoded.grid.lon,
            land_mask=~(first == first),  # NaN in the first good day = land
            variable=config.archive.variable,
            variable_attrs=decoded.attrs,
            attrs={
                "source_archive": str(config.archive.source),
                "land_mask_source": f"{file.url} (cells without data)",
                "land_mask_sha256": hashlib.sha256(data).hexdigest(),
            },
            storage_options=opts,
        )
    detail = "\n  ".join(problems[:5]) or "no file in the range"
    raise ArchiveError(str(config.archive.source), f"no readable file to build the store from:\n  {detail}")


def _day_table(outcomes: list[DayOutcome], limit: int = 500) -> list[dict[str, str]]:
    rows = sorted(outcomes, key=lambda o: o.day)
    return [{"day": o.day, "status": o.status, "source": o.source.rsplit("/", 1)[-1], "message": o.message} for o in rows[:limit]]


@flow(name="ingest", flow_run_name="ingest-{start}-{end}")
def ingest_flow(
    config: SeedfieldConfig,
    start: dt.date,
    end: dt.date,
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
    index = resolve_archive(source, start, end, config.archive.storage_options or None)
    logger.info(
        "archive %s: %d files for %s…%s, %d days missing, %d duplicated",
        source, len(index.files), start, end, len(index.missing), len(index.duplicates),
    )
    store = open_or_create_store(config, index, start, end)
    outcomes: list[DayOutcome] = []
    for day in index.missing:
        outcomes.append(record_failure(store, day.isoformat(), "missing", source, f"no file for {day} in {source}"))
    for day, urls in sorted(index.duplicates.items()):
        msg = f"{len(urls)} files hold this day, refusing to guess: {', '.join(urls)}"
        outcomes.append(record_failure(store, day.isoformat(), "failed", urls[0], msg))

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
    with dask_client(config.dask), RunProgress(
        len(index.files), f"ingest {start}…{end}", key="ingest-progress", show_bar=progress_bar
    ) as progress:
        for group, result in run_windowed(
            lambda g: on_dask.submit(files_label(g), ingest_files_job, {"files": g, **job}),
            groups,
            window,
        ):
            if isinstance(result, Exception):
                msg = f"ingest crashed after retries: {type(result).__name__}: {result}"
                result = [record_failure(store, d.isoformat(), "failed", f.url, msg) for f in group for d in f.days]
            outcomes.extend(result)
            progress.advance(len(group))

    for o in outcomes:
        if o.status in ("failed", "missing"):
            logger.warning("%s %s: %s", o.day, o.status, o.message)
    counts = summarise(outcomes)
    logger.info("ingest %s…%s into %s: %s", start, end, config.stores.raw, counts)
    create_table_artifact(_day_table(outcomes), key="ingest-days", description=f"ingest {start}…{end}")
    create_markdown_artifact(
        f"## Ingest {start} … {end}\n\nStore: `{config.stores.raw}`\n\n"
        + "| status | days |\n|---|---|\n"
        + "".join(f"| {k} | {v} |\n" for k, v in counts.items()),
        key="ingest-summary",
    )
    if report:
        write_report(report, "ingest", outcomes, store=config.stores.raw, source=source, start=str(start), end=str(end))
    return {
        "store": config.stores.raw,
        "summary": counts,
        "failed_days": [o.day for o in outcomes if o.status in ("failed", "missing")],
        "ok": not any_failed(outcomes),
    }

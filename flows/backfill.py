"""Backfill flow: a long period, chunk by chunk, each chunk ingest → prepare → infer as subflows.

Open-source Prefect has no backfill feature and its scheduler never catches up missed slots, so
a backfill is this parent flow over chunks of ``chunk_days`` days. Each chunk is three subflow
runs, so the task runs and results a flow run holds stay bounded whatever the period.

* **Resumable.** A day is done when its reconstruction commit marker says ``ok`` for the same
  model (the model is resolved once, at the start, so a new CURRENT mid-way changes nothing).
  Chunks whose days are all done are skipped; in a partly done chunk only the span of days not
  done is run again (and inside it, ingest, prepare and infer skip what they already hold).
  A backfill killed at any point and started again ends with every day written once.
  ``force`` recomputes every day.
* **Locked.** The days of the raw, seedings and reconstruction stores are locked for the whole
  run (flows/locks.py): a second backfill (or daily run) over overlapping days fails at once
  with a message naming the holder; a lock left by a killed run is taken over.
* **Visible.** A progress artifact (``backfill-progress``) advances as chunks finish; a table
  artifact (``backfill-chunks``) lists each chunk's outcome, also when the run fails part way.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run as runtime_flow_run

from flows.config import ConfigError, SeedfieldConfig
from flows.daily_observations import ingest_and_prepare, observation_cadence, uses_observations
from flows.dask_runtime import shared_dask
from flows.infer import infer_flow, written_by
from flows.ingest import ingest_flow, known_cadence
from flows.locks import pipeline_locks
from flows.prefect_flow import flow
from flows.prepare import prepare_flow
from flows.progress import RunProgress
from flows.reports import StepOutcome, any_failed, summarise
from flows.states import finish, run_flow
from pipeline.steps import DAILY, Cadence, parse_step, step_label
from storage.model_registry import ModelRegistry
from storage.step_store import StepStore


def chunk_ranges(
    start: dt.datetime | dt.date, end: dt.datetime | dt.date, chunk_days: int, cadence: Cadence = DAILY
) -> list[tuple[dt.date, dt.date]]:
    """[start, end] cut into consecutive ranges of ``chunk_days`` steps (the last may be shorter)."""
    if chunk_days < 1:
        raise ConfigError(f"chunk_days must be at least 1, got {chunk_days}")
    days = cadence.steps(start, end)
    return [(days[i], days[min(i + chunk_days, len(days)) - 1]) for i in range(0, len(days), chunk_days)]


def done_days(config: SeedfieldConfig, days: list[dt.date], model_id: str) -> set[dt.date]:
    """Days whose reconstruction is committed ``ok`` by ``model_id`` as published now."""
    path, opts = config.stores.output, config.stores.storage_options or None
    if not StepStore.exists(path, opts):
        return set()
    out = StepStore(path, opts)
    model_sha = ModelRegistry(config.stores.registry, config.stores.storage_options).fingerprint(model_id)
    return {d for d in days if written_by(out.marker(d), model_id, model_sha)}


def _chunk_summary_md(start: dt.datetime | dt.date, end: dt.datetime | dt.date, model_id: str, store: str,
                      counts: dict[str, int], chunks: list[dict[str, Any]], n_chunks: int) -> str:
    return (
        f"## Backfill {start} … {end}\n\nModel `{model_id}` → `{store}`; "
        f"{len(chunks)} of {n_chunks} chunk(s) handled.\n\n| days | count |\n|---|---|\n"
        + "".join(f"| {k} | {v} |\n" for k, v in counts.items() if v)
    )


def run_backfill(
    config: SeedfieldConfig, start: dt.datetime | dt.date, end: dt.datetime | dt.date, chunk_days: int = 30, force: bool = False,
    model_id: str | None = None, progress_bar: bool = False,
) -> dict[str, Any]:
    """The body of the backfill flow (also used by the deployment's entry flow); needs a flow run."""
    logger = get_run_logger()
    observed = uses_observations(config)  # scattered observations in place of the gridded archive
    if not config.archive.source and not observed:
        raise ConfigError("config key 'archive.source' (or 'observations.source'): not set; the backfill needs one")
    cadence = observation_cadence(config) if observed else known_cadence(config)
    ranges = chunk_ranges(start, end, chunk_days, cadence)
    registry = ModelRegistry(config.stores.registry, config.stores.storage_options)
    model_id = registry.resolve(model_id)
    status: dict[dt.date, StepOutcome] = {}
    chunk_rows: list[dict[str, Any]] = []
    purpose = f"backfill {start}…{end} (flow run {runtime_flow_run.id or 'local'})"
    logger.info("backfill %s…%s with %s: %d chunk(s) of up to %d days", start, end, model_id, len(ranges), chunk_days)
    with pipeline_locks(config, start, end, purpose) as held:
        took_over = [f"{lock.store}: {who}" for lock in held for who in lock.took_over]
        for who in took_over:
            logger.warning("took over a stale lock of %s", who)
        n_days = len(cadence.steps(start, end))
        try:
            with shared_dask(config) as cfg, RunProgress(
                n_days, f"backfill {start}…{end}", "backfill-progress", progress_bar
            ) as progress:
                for i, (a, b) in enumerate(ranges, 1):
                    days = cadence.steps(a, b)
                    done = set() if force else done_days(cfg, days, model_id)
                    todo = [d for d in days if d not in done]
                    row: dict[str, Any] = {"chunk": i, "start": step_label(a), "end": step_label(b),
                                           "days": len(days), "already_done": len(done)}
                    for d in done:
                        status[d] = StepOutcome(step_label(d), "skipped", cfg.stores.output, "done before")
                    if not todo:
                        chunk_rows.append({**row, "outcome": "skipped (all days done)", "seconds": 0.0})
                        progress.advance(len(days))
                        continue
                    t0 = time.perf_counter()
                    lo, hi = todo[0], todo[-1]
                    try:
                        if observed:
                            ingest_and_prepare(cfg, lo, hi, force=force)
                        else:
                            run_flow(ingest_flow, cfg, lo, hi)
                            run_flow(prepare_flow, cfg, lo, hi, force=force)
                        result = run_flow(infer_flow, cfg, lo, hi, model_id, force=force)
                    except Exception as exc:
                        chunk_rows.append({**row, "outcome": f"crashed: {type(exc).__name__}: {exc}"[:300],
                                           "seconds": round(time.perf_counter() - t0, 1)})
                        logger.error("chunk %d (%s…%s) crashed; stopping. Re-run to resume: %s", i, lo, hi, exc)
                        raise
                    for r in result["days"]:
                        d = cadence.coerce(parse_step(r["day"]))
                        if d in todo:
                            status[d] = StepOutcome(r["day"], r["status"], cfg.stores.output, r.get("message", ""))
                    counts = summarise(status[d] for d in todo if d in status)
                    bad = counts["failed"] + counts["missing"]
                    chunk_rows.append({**row, "outcome": "partial" if bad else "done",
                                       **{k: v for k, v in counts.items() if k != "skipped"},
                                       "seconds": round(time.perf_counter() - t0, 1)})
                    logger.info("chunk %d/%d %s…%s: %s", i, len(ranges), a, b, counts)
                    progress.advance(len(days))
        finally:
            counts = summarise(status.values())
            create_table_artifact(chunk_rows, key="backfill-chunks",
                                  description=f"backfill {start}…{end}: one row per chunk, model {model_id}")
            create_markdown_artifact(
                _chunk_summary_md(start, end, model_id, config.stores.output, counts, chunk_rows, len(ranges)),
                key="backfill-summary",
            )
    outcomes = sorted(status.values(), key=lambda o: o.day)
    for o in outcomes:
        if o.status in ("failed", "missing"):
            logger.warning("%s %s: %s", o.day, o.status, o.message)
    logger.info("backfill %s…%s into %s: %s", start, end, config.stores.output, counts)
    return {"store": config.stores.output, "model_id": model_id, "summary": counts, "chunks": chunk_rows,
            "failed_days": [o.day for o in outcomes if o.status in ("failed", "missing")],
            "ok": not any_failed(outcomes), "took_over_locks": took_over}


@flow(name="backfill", flow_run_name="backfill-{start}-{end}")
def backfill_flow(
    config: SeedfieldConfig,
    start: dt.datetime | dt.date,
    end: dt.datetime | dt.date,
    chunk_days: int = 30,
    force: bool = False,
    model_id: str | None = None,
    progress_bar: bool = False,
) -> dict[str, Any]:
    """Ingest, prepare and reconstruct [start, end] chunk by chunk; resumable, locked."""
    return finish(run_backfill(config, start, end, chunk_days, force, model_id, progress_bar))

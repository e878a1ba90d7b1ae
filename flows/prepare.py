"""Prepare flow: random sensors, LR bin means and HR sparse targets for each time step, plus the
normalisation statistics over a period, into the seedings store (same step as the raw store)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact

from flows.config import ConfigError, SeedfieldConfig
from flows.dask_runtime import dask_client, on_dask
from flows.prefect_flow import flow
from flows.prepare_job import params_digest, prepare_days_job, stats_partial_job
from flows.progress import RunProgress
from flows.reports import StepOutcome, any_failed, summarise, write_report
from flows.states import finish
from flows.windowed import run_windowed
from pipeline.normalisation import NormStats, StreamingStats, finalize, finalize_seasonal
from pipeline.seeding import SeedingParams, n_sensors, trim_shape
from pipeline.steps import Cadence, parse_step, step_label
from storage.raw_store import LAND_MASK
from storage.seedings_store import create_seedings_store, seeding_params, write_norm_stats
from storage.step_store import StepStore, StoreError


def chunks(days: list[dt.date], size: int) -> list[list[dt.date]]:
    return [days[i : i + size] for i in range(0, len(days), size)]


def pipeline_cadence(config: SeedfieldConfig) -> Cadence:
    """The step of the seedings store, or else of the raw store it is made from."""
    opts = config.stores.storage_options or None
    for path in (config.stores.seedings, config.stores.raw):
        if StepStore.exists(path, opts):
            return StepStore(path, opts).cadence
    raise StoreError(f"{config.stores.raw}: no raw store; run `seedfield ingest` first")


def open_or_create_seedings(config: SeedfieldConfig, days: list[dt.date]) -> StepStore:
    """Open the seedings store (checking its parameters) or create it from the raw store's grid."""
    params: SeedingParams = config.seeding
    path, opts = config.stores.seedings, config.stores.storage_options or None
    if StepStore.exists(path, opts):
        store = StepStore(path, opts)
        have = seeding_params(store)
        want = params.model_dump()
        diff = [f"seeding.{k}: store has {have.get(k)!r}, asked {v!r}" for k, v in want.items() if have.get(k) != v]
        if diff:
            raise ConfigError(
                f"the seedings store {path} was made with other parameters; use a new store or the "
                "same parameters:\n  " + "\n  ".join(diff)
            )
        store.extend(days)
        if StepStore.exists(config.stores.raw, opts):  # the raw land mask only shrinks: follow it
            seed_land = store.read_static("land_mask").astype(bool)
            raw_land = StepStore(config.stores.raw, opts).read_static(LAND_MASK).astype(bool)
            raw_land = raw_land[: seed_land.shape[0], : seed_land.shape[1]]
            if (seed_land & ~raw_land).any():
                store.write_static("land_mask", (seed_land & raw_land).astype("int8"))
        return store
    if not StepStore.exists(config.stores.raw, opts):
        raise StoreError(f"{config.stores.raw}: no raw store; run `seedfield ingest` first")
    raw = StepStore(config.stores.raw, opts)
    land = raw.read_static(LAND_MASK).astype(bool)
    ny, nx = trim_shape(land.shape, params.bin_size)
    if ny == 0 or nx == 0:
        raise ConfigError(
            f"config key 'seeding.bin_size': {params.bin_size} is larger than the domain {land.shape}"
        )
    land = land[:ny, :nx]
    max_sensors = n_sensors(int((~land).sum()), params)
    return create_seedings_store(
        path, days,
        raw.read_static("lat")[:ny], raw.read_static("lon")[:nx], land,
        bin_size=params.bin_size, hr_cell=params.hr_cell, max_sensors=max_sensors,
        params=params.model_dump(),
        attrs={**config.metadata.attrs(), "raw_store": config.stores.raw, "params_digest": params_digest(params),
               "domain_note": f"native grid {raw.read_static(LAND_MASK).shape} trimmed to ({ny}, {nx})"},
        storage_options=opts,
        cadence=raw.cadence,
    )


def stream_norm_stats(
    config: SeedfieldConfig, store: StepStore, days: list[dt.date], days_per_task: int = 8,
    seasonal: bool = False,
) -> NormStats:
    """Per-pixel statistics over ``days``, streamed: partial sums on the workers, merged here.
    ``seasonal`` gives (12, h, w) per-calendar-month arrays instead of annual (h, w) ones.

    Parts are merged in day order whatever order the tasks finish in (a part that arrives early
    waits, at most ``window`` of them), so the statistics, and a model trained on them, are the
    same bit for bit on every run."""
    if not days:
        raise StoreError(f"{store.path}: no prepared day to compute normalisation statistics from")
    merged: dict[str, StreamingStats] = {}
    job = {"seedings_path": store.path, "seedings_options": store.storage_options, "seasonal": seasonal}
    groups = chunks(days, 4 * days_per_task)
    order = {g[0]: i for i, g in enumerate(groups)}
    early: dict[int, dict[str, Any]] = {}
    next_part = 0
    for group, part in run_windowed(
        lambda g: on_dask.submit(f"stats-{step_label(g[0])}-{step_label(g[-1])}", stats_partial_job, {"days": g, **job}),
        groups,
        window=2 * config.dask.n_workers,
    ):
        if isinstance(part, Exception):
            raise part
        early[order[group[0]]] = part
        while next_part in early:
            part = early.pop(next_part)
            next_part += 1
            for name in sorted({k.rsplit("_", 1)[0] for k in part}):
                st = StreamingStats.from_arrays({k: part[f"{name}_{k}"] for k in ("count", "mean", "m2")})
                merged[name] = st if name not in merged else merged[name].merge(st)
    if not seasonal:
        return finalize(merged["lr"], merged["hr"])
    return finalize_seasonal(
        merged["lr"], merged["hr"],
        [merged[f"lr_m{m:02d}"] for m in range(1, 13)], [merged[f"hr_m{m:02d}"] for m in range(1, 13)],
    )


def compute_norm_stats(
    config: SeedfieldConfig, store: StepStore, period: tuple[dt.date, dt.date], days_per_task: int
) -> int:
    """Store the statistics over the committed days of ``period``; returns the day count."""
    inside = set(store.steps_between(*period))
    committed = [d for d in store.committed_steps() if d in inside]
    if not committed:
        raise StoreError(f"{store.path}: no prepared step in {period[0]}…{period[1]} for the statistics")
    norm = stream_norm_stats(config, store, committed, days_per_task)
    write_norm_stats(store, {
        "lr_norm_mean": norm.lr_mean, "lr_norm_std": norm.lr_std,
        "hr_norm_mean": norm.hr_mean, "hr_norm_std": norm.hr_std,
    }, period, len(committed))
    return len(committed)


@flow(name="prepare", flow_run_name="prepare-{start}-{end}")
def prepare_flow(
    config: SeedfieldConfig,
    start: dt.datetime | dt.date,
    end: dt.datetime | dt.date,
    force: bool = False,
    report: str | None = None,
    progress_bar: bool = False,
    days_per_task: int = 8,
) -> dict[str, Any]:
    """Seed every committed raw day of [start, end], then the normalisation statistics."""
    logger = get_run_logger()
    cells = config.seeding.bin_size**2
    if config.seeding.sensors_per_bin > cells:  # said once per run, not once per day
        logger.warning("seeding.sensors_per_bin = %g exceeds the %d cells of a %d×%d bin: every valid cell "
                       "becomes a sensor", config.seeding.sensors_per_bin, cells, config.seeding.bin_size,
                       config.seeding.bin_size)
    days = pipeline_cadence(config).steps(start, end)
    store = open_or_create_seedings(config, days)
    job = {
        "raw_path": config.stores.raw,
        "seedings_path": config.stores.seedings,
        "params": config.seeding,
        "raw_options": config.stores.storage_options or None,
        "seedings_options": config.stores.storage_options or None,
        "force": force,
    }
    outcomes: list[StepOutcome] = []
    groups = chunks(days, days_per_task)
    with dask_client(config.dask, len(groups)):
        with RunProgress(len(days), f"prepare {start}…{end}", "prepare-progress", progress_bar) as progress:
            for group, result in run_windowed(
                lambda g: on_dask.submit(
                    f"prepare-{step_label(g[0])}" if len(g) == 1 else f"prepare-{step_label(g[0])}-to-{step_label(g[-1])}",
                    prepare_days_job, {"days": g, **job},
                ),
                groups,
                window=2 * config.dask.n_workers,
            ):
                if isinstance(result, Exception):
                    msg = f"prepare crashed after retries: {type(result).__name__}: {result}"
                    result = [StepOutcome(step_label(d), "failed", config.stores.raw, msg) for d in group]
                outcomes.extend(result)
                progress.advance(len(group))
        s0 = parse_step(config.stats.start) if config.stats.start else start
        s1 = parse_step(config.stats.end) if config.stats.end else end
        n_stats = compute_norm_stats(config, store, (s0, s1), days_per_task)
    for o in outcomes:
        if o.status in ("failed", "missing"):
            logger.warning("%s %s: %s", o.day, o.status, o.message)
    counts = summarise(outcomes)
    logger.info("prepare %s…%s into %s: %s; statistics over %d days", start, end, store.path, counts, n_stats)
    create_markdown_artifact(
        f"## Prepare {start} … {end}\n\nSeedings store: `{store.path}`\n\n"
        f"Parameters: `{config.seeding.model_dump()}`\n\nNormalisation statistics over {s0} … {s1} "
        f"({n_stats} days).\n\n| status | days |\n|---|---|\n"
        + "".join(f"| {k} | {v} |\n" for k, v in counts.items()),
        key="prepare-summary",
    )
    try:  # history and time coverage, once per run that changed or tried a step
        if counts.get("ok") or counts.get("failed") or counts.get("missing"):
            store.record_run(f"prepare {start}..{end}: " + ", ".join(f"{v} {k}" for k, v in counts.items() if v))
    except OSError as exc:  # a full disk or a read-only store: the run's outcome is still reported
        logger.warning("%s: history not recorded: %s", store.path, exc)
    if report:
        write_report(report, "prepare", outcomes, store=store.path, start=str(start), end=str(end))
    return finish({"store": store.path, "summary": counts, "stats_days": n_stats, "ok": not any_failed(outcomes)})

"""Prepare from observations: the seedings store made from the observations store (real sensors)
instead of random sensors drawn in a gridded archive; the normalisation statistics as usual.

Train, infer and evaluate then run unchanged on it. Nothing here reads a gridded field: the
observations and their store's target grid (lat, lon, land mask) are the only inputs.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact

from flows.config import ConfigError, SeedfieldConfig
from flows.dask_runtime import dask_client, on_dask
from flows.prefect_flow import flow
from flows.prepare import chunks, compute_norm_stats
from flows.prepare_job import params_digest
from flows.prepare_observations_job import (
    count_sensors_job,
    prepare_observation_steps_job,
    target_grid,
)
from flows.progress import RunProgress
from flows.reports import StepOutcome, any_failed, summarise, write_report
from flows.states import finish
from flows.windowed import run_windowed
from pipeline.steps import parse_step, step_label
from storage.observations_store import is_observations_store
from storage.seedings_store import create_seedings_store, has_platforms, seeding_params
from storage.step_store import StepStore, StoreError


def observations_path(config: SeedfieldConfig, path: str | None = None) -> str:
    """The observations store to prepare from: ``path``, else ``[stores] observations``."""
    path = path or getattr(config.stores, "observations", None)
    if not path:
        raise ConfigError("no observations store: give --observations STORE or set [stores] observations")
    return path


def open_or_create_observed_seedings(config: SeedfieldConfig, obs: StepStore, days: list[dt.date]) -> StepStore:
    """Open the observation-made seedings store (checking it is one, with these parameters), or
    create it on the observations store's grid, sized for the busiest step of ``days``."""
    params = config.seeding
    path, opts = config.stores.seedings, config.stores.storage_options or None
    if StepStore.exists(path, opts):
        store = StepStore(path, opts)
        if not has_platforms(store):
            raise ConfigError(f"{path}: this seedings store holds random sensors drawn from a gridded archive; "
                              "prepare observations into a new [stores] seedings path")
        have, want = seeding_params(store), params.model_dump()
        diff = [f"seeding.{k}: store has {have.get(k)!r}, asked {v!r}" for k, v in want.items()
                if k in ("bin_size", "upsampling") and have.get(k) != v]
        if diff:
            raise ConfigError(f"the seedings store {path} was made with other parameters:\n  " + "\n  ".join(diff))
        store.extend(days)
        return store
    lat, lon, land = target_grid(obs, params.bin_size)
    if land.size == 0:
        raise ConfigError(f"config key 'seeding.bin_size': {params.bin_size} is larger than the observations grid")
    job = {"observations_path": obs.path, "params": params, "options": obs.storage_options}
    most = 0
    for _, n in run_windowed(lambda g: on_dask.submit(f"count-{step_label(g[0])}", count_sensors_job, {"days": g, **job}),
                             chunks(days, 32), window=2 * config.dask.n_workers):
        if isinstance(n, Exception):
            raise n
        most = max(most, n)
    if most == 0:
        raise StoreError(f"{obs.path}: no observation on the ocean cells of the grid in {days[0]}…{days[-1]}")
    return create_seedings_store(
        path, days, lat, lon, land, bin_size=params.bin_size, hr_cell=params.hr_cell, max_sensors=most,
        params=params.model_dump(),
        attrs={**config.metadata.attrs(), "observations_store": obs.path, "params_digest": params_digest(params),
               "sensors_from": "observations (real sensors; seeding_sensors_per_bin, _noise_std and _seed unused)"},
        storage_options=opts, cadence=obs.cadence, platforms=True,
    )


@flow(name="prepare-observations", flow_run_name="prepare-observations-{start}-{end}")
def prepare_observations_flow(
    config: SeedfieldConfig,
    start: dt.datetime | dt.date,
    end: dt.datetime | dt.date,
    observations: str | None = None,
    force: bool = False,
    report: str | None = None,
    progress_bar: bool = False,
    days_per_task: int = 24,
) -> dict[str, Any]:
    """Bin every committed observations step of [start, end], then the normalisation statistics."""
    logger = get_run_logger()
    if config.train.fresh_seedings:
        raise ConfigError("config key 'train.fresh_seedings' draws new sensors from a gridded field; "
                          "with observations it must be false")
    opts = config.stores.storage_options or None
    obs_path = observations_path(config, observations)
    if not StepStore.exists(obs_path, opts):
        raise StoreError(f"{obs_path}: no observations store; run `seedfield ingest-observations` first")
    obs = StepStore(obs_path, opts)
    if not is_observations_store(obs):
        raise StoreError(f"{obs_path}: not an observations store (made by `seedfield ingest-observations`)")
    days = obs.cadence.steps(start, end)
    outcomes: list[StepOutcome] = []
    with dask_client(config.dask):
        store = open_or_create_observed_seedings(config, obs, days)
        job = {"observations_path": obs_path, "seedings_path": store.path, "params": config.seeding,
               "observations_options": opts, "seedings_options": opts, "force": force}
        with RunProgress(len(days), f"prepare observations {start}…{end}", "prepare-progress", progress_bar) as progress:
            for group, result in run_windowed(
                lambda g: on_dask.submit(f"prepare-obs-{step_label(g[0])}-to-{step_label(g[-1])}",
                                         prepare_observation_steps_job, {"days": g, **job}),
                chunks(days, days_per_task), window=2 * config.dask.n_workers,
            ):
                if isinstance(result, Exception):
                    msg = f"prepare crashed after retries: {type(result).__name__}: {result}"
                    result = [StepOutcome(step_label(d), "failed", obs_path, msg) for d in group]
                outcomes.extend(result)
                progress.advance(len(group))
        s0 = parse_step(config.stats.start) if config.stats.start else start
        s1 = parse_step(config.stats.end) if config.stats.end else end
        n_stats = compute_norm_stats(config, store, (s0, s1), days_per_task)
    for o in outcomes:
        if o.status in ("failed", "missing") or o.message:
            logger.warning("%s %s: %s", o.day, o.status, o.message)
    counts = summarise(outcomes)
    logger.info("prepare from observations %s…%s into %s: %s; statistics over %d steps", start, end, store.path,
                counts, n_stats)
    create_markdown_artifact(
        f"## Prepare from observations {start} … {end}\n\nObservations: `{obs_path}`\n\nSeedings store: "
        f"`{store.path}` (up to {store.attrs['max_sensors']} sensors per step)\n\nNormalisation statistics over "
        f"{s0} … {s1} ({n_stats} steps).\n\n| status | steps |\n|---|---|\n"
        + "".join(f"| {k} | {v} |\n" for k, v in counts.items()),
        key="prepare-summary",
    )
    try:
        if counts.get("ok") or counts.get("failed") or counts.get("missing"):
            store.record_run(f"prepare-observations {start}..{end}: "
                             + ", ".join(f"{v} {k}" for k, v in counts.items() if v))
    except OSError as exc:
        logger.warning("%s: history not recorded: %s", store.path, exc)
    if report:
        write_report(report, "prepare-observations", outcomes, store=store.path, start=str(start), end=str(end))
    return finish({"store": store.path, "summary": counts, "stats_days": n_stats, "ok": not any_failed(outcomes)})

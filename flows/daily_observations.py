"""The daily and backfill runs from scattered observations: ingest-observations → prepare from
observations → infer → QA by leave-platform-out cross-validation (no truth needed).

With ``[observations] source`` set, these take the place of the gridded ingest and prepare; an
``[archive] source`` beside it is still ingested into the raw store (a truth kept for scoring
with ``seedfield evaluate``; nothing in the training or reconstruction path reads it).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from prefect import get_run_logger
from prefect.runtime import flow_run as runtime_flow_run

from flows.config import SeedfieldConfig
from flows.dask_runtime import shared_dask
from flows.infer import infer_flow
from flows.ingest import ingest_flow
from flows.locks import pipeline_locks
from flows.observations_ingest import ingest_observations_flow
from flows.prepare_observations import prepare_observations_flow
from flows.states import run_flow
from pipeline.steps import Cadence, step_label
from storage.step_store import StepStore


def uses_observations(config: SeedfieldConfig) -> bool:
    """Whether the pipeline's sensors come from the observations (``[observations] source``)."""
    return bool(config.observations.source)


def observation_cadence(config: SeedfieldConfig) -> Cadence:
    """The step of the observations store, or else of ``[observations] step``."""
    opts = config.stores.storage_options or None
    if StepStore.exists(config.stores.observations, opts):
        return StepStore(config.stores.observations, opts).cadence
    return config.observations.cadence


def ingest_and_prepare(cfg: SeedfieldConfig, lo: dt.date, hi: dt.date, force: bool = False) -> None:
    """Observations of [lo, hi] into the observations store, then into the seedings store; the
    gridded archive beside them, when configured, into the raw store (the truth, for scoring)."""
    logger = get_run_logger()
    if cfg.archive.source:
        try:
            run_flow(ingest_flow, cfg, lo, hi)
        except Exception as exc:  # the truth is optional here: the reconstruction goes on without it
            logger.warning("the gridded archive beside the observations was not ingested: %s", exc)
    run_flow(ingest_observations_flow, cfg, lo, hi)
    run_flow(prepare_observations_flow, cfg, lo, hi, force=force)


def daily_observation_steps(config: SeedfieldConfig, day: dt.date, model_id: str,
                            qa_threshold: float | None) -> tuple[list[dt.date], list[dict[str, Any]], StepStore]:
    """The day's steps through the pipeline: (steps reconstructed, one row per step, the
    observations store). Steps with no committed observations are rows ``missing``."""
    opts = config.stores.storage_options or None
    purpose = f"daily {day} from observations (flow run {runtime_flow_run.id or 'local'})"
    rows: list[dict[str, Any]] = []
    targets: list[dt.date] = []
    with pipeline_locks(config, day, day, purpose), shared_dask(config) as cfg:
        ingest_and_prepare(cfg, day, day)
        obs = StepStore(cfg.stores.observations, opts)
        steps = obs.steps_between(day, day)
        targets = [s for s in steps if (obs.marker(s) or {}).get("status") == "ok"]
        if targets:
            inferred = run_flow(infer_flow, cfg, targets[0], targets[-1], model_id, qa_threshold=qa_threshold,
                                cross_validate=True)
            wanted = {step_label(s) for s in targets}
            rows = [r for r in inferred["days"] if r["day"] in wanted]
    for s in steps:
        if s not in targets:
            m = obs.marker(s) or {}
            rows.append({"day": step_label(s), "status": m.get("status", "missing"),
                         "message": m.get("error") or "no observations stored for this step"})
    return targets, rows, obs

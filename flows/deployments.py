"""Deployments: the daily schedule, on-demand backfills and training, served by one process
(``seedfield serve``), plus training on a GPU host through a Prefect process work pool.

Deployment parameters must be JSON: the deployments take the **path of the TOML config file**
(made absolute when served), not the config itself. The entry flows below load it with
``flows.config.load_config`` at the start of every run, so

* an edit of the config file applies from the next run, without redeploying;
* secrets a config may hold (``storage_options`` keys) never land in the Prefect database or UI;
* the UI's "Custom run" form shows small typed parameters (dates, model id, QA threshold).

The entry flows share the names of the flows they run (``daily``, ``backfill``, ``train``) and
call the same bodies (``run_daily``, ``run_backfill``, ``train_flow.fn``) in their own flow run:
scheduled, manual and CLI runs appear under one flow in the UI, one run per day, with the same
run names (``daily-2024-05-01``) and artifacts. Entry points are module paths
(``flows.deployments.daily_deployment_flow``), so any host with seedfield installed can run them.

Work pool path for GPU training (docs/operations.md): ``prefect work-pool create gpu --type
process``, ``prefect worker start --pool gpu`` on the GPU host, and :func:`deploy_train_to_pool`
(``seedfield deploy-train --pool gpu``) registers ``train/train-gpu`` on that pool.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect import serve
from prefect.runtime import flow_run as runtime_flow_run
from prefect.schedules import Cron
from prefect.types.entrypoint import EntrypointType

from flows.backfill import run_backfill
from flows.config import load_config
from flows.daily import daily_run_name, resolve_day, run_daily
from flows.prefect_flow import flow
from flows.states import finish
from flows.train import train_flow

DEFAULT_CRON = "0 6 * * *"
TAGS = ["seedfield"]


class DailyRunIncomplete(RuntimeError):
    """A scheduled day (or a refreshed preliminary day) could not be produced."""


def _train_run_name() -> str:
    p = runtime_flow_run.parameters
    return f"train-{p.get('model_id') or 'new'}-{p.get('start')}-{p.get('end')}"


@flow(name="daily", flow_run_name=daily_run_name)
def daily_deployment_flow(
    config_path: str | None = None,
    day: dt.date | None = None,
    model_id: str | None = None,
    qa_threshold: float | None = None,
    lag_days: int = 1,
    preliminary_window: int = 21,
) -> dict[str, Any]:
    """Deployment entry of the daily flow: the run fails (red in the UI) when a day is missing or
    failed, after writing its artifacts; QA flags only warn."""
    result = run_daily(load_config(config_path), resolve_day(day, lag_days), model_id, qa_threshold,
                       preliminary_window)
    if not result["ok"]:
        raise DailyRunIncomplete(f"daily {result['day']}: failed or missing days {result['failed_days']}")
    return result


@flow(name="backfill", flow_run_name="backfill-{start}-{end}")
def backfill_deployment_flow(
    start: dt.datetime | dt.date,
    end: dt.datetime | dt.date,
    config_path: str | None = None,
    chunk_days: int = 30,
    force: bool = False,
    model_id: str | None = None,
) -> dict[str, Any]:
    """Deployment entry of the backfill flow: the run ends Failed (red in the UI) when days failed."""
    return finish(run_backfill(load_config(config_path), start, end, chunk_days, force, model_id))


@flow(name="train", flow_run_name=_train_run_name)
def train_deployment_flow(
    start: dt.datetime | dt.date,
    end: dt.datetime | dt.date,
    config_path: str | None = None,
    model_id: str | None = None,
) -> dict[str, Any]:
    """Deployment entry of the train flow (the body of ``flows.train.train_flow``, in this run)."""
    return train_flow.fn(load_config(config_path), start, end, model_id)


def _abs(config_path: str | Path | None) -> str | None:
    if config_path is None:
        return None
    path = Path(config_path).expanduser().resolve()
    load_config(path)  # fail now, with the key's name, rather than at 06:00
    return str(path)


def build_deployments(config_path: str | Path | None, cron: str = DEFAULT_CRON, tz: str = "UTC") -> list[Any]:
    """The ``daily/daily`` (scheduled), ``backfill/backfill`` and ``train/train`` deployments."""
    params = {"config_path": _abs(config_path)}
    module = EntrypointType.MODULE_PATH
    return [
        daily_deployment_flow.to_deployment(
            name="daily", schedules=[Cron(cron, timezone=tz)], parameters=params, tags=[*TAGS, "daily"],
            description=f"Ingest, prepare and reconstruct yesterday (UTC) at '{cron}' {tz}; refresh preliminary days.",
            entrypoint_type=module,
        ),
        backfill_deployment_flow.to_deployment(
            name="backfill", parameters=params, tags=[*TAGS, "backfill"],
            description="Chunked, resumable, locked ingest → prepare → infer over a period.",
            entrypoint_type=module,
        ),
        train_deployment_flow.to_deployment(
            name="train", parameters=params, tags=[*TAGS, "train"],
            description="Train RaSeedGAN on prepared days and publish it as the current model.",
            entrypoint_type=module,
        ),
    ]


def serve_deployments(config_path: str | Path | None, cron: str = DEFAULT_CRON, tz: str = "UTC",
                      limit: int | None = None) -> None:
    """Register the deployments and run them from this process until interrupted (needs a real
    ``prefect server``; the temporary server has no scheduler)."""
    serve(*build_deployments(config_path, cron, tz), limit=limit)


def deploy_train_to_pool(config_path: str | Path | None, work_pool_name: str = "gpu",
                         name: str = "train-gpu") -> UUID:
    """Register ``train/<name>`` on a process work pool; a ``prefect worker start --pool`` on a
    GPU host with seedfield installed runs it (the pool must exist)."""
    return train_deployment_flow.deploy(
        name=name, work_pool_name=work_pool_name, parameters={"config_path": _abs(config_path)},
        tags=[*TAGS, "train"], entrypoint_type=EntrypointType.MODULE_PATH,
        description="Train RaSeedGAN on a GPU worker of the process work pool.",
        build=False, push=False, print_next_steps=False, ignore_warnings=True,
    )

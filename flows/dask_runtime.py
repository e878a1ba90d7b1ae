"""The Dask cluster the per-day work runs on: a LocalCluster by default, or an existing one."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from distributed import Client, LocalCluster
from prefect import task
from prefect.cache_policies import NONE

from flows.config import DaskSettings, SeedfieldConfig

_ACTIVE: list[Client] = []
_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MALLOC_TRIM_THRESHOLD_")


def active_client() -> Client:
    """The client of the innermost ``dask_client`` block (tasks run in threads of the flow)."""
    if not _ACTIVE:
        raise RuntimeError("no Dask client is active: run inside flows.dask_runtime.dask_client()")
    return _ACTIVE[-1]


def _warm_up() -> None:
    """Import the job modules once in each fresh worker, at cluster start, not in the first job."""
    import flows.ingest_job
    import flows.prepare_job  # noqa: F401


@contextmanager
def dask_client(settings: DaskSettings) -> Iterator[Client]:
    """A client to ``settings.address``, or to a LocalCluster of worker processes closed on exit.

    NetCDF/HDF5 decoding holds a process-wide lock, so parallel work needs processes, not threads.
    """
    # Prefect's logging config would otherwise print every scheduler/nanny event at INFO.
    for name in ("distributed", "distributed.batched", "distributed.core", "distributed.nanny"):
        logging.getLogger(name).setLevel(logging.ERROR)
    cluster = None
    if settings.address:
        client = Client(settings.address, set_as_default=False)
    else:
        # The nanny writes its workers' thread limits (OMP_NUM_THREADS=1 …) into this process's
        # environment too; torch imported later would then run on one thread. Put them back.
        saved = {k: os.environ.get(k) for k in _THREAD_VARS}
        try:
            cluster = LocalCluster(
                n_workers=settings.n_workers,
                threads_per_worker=settings.threads_per_worker,
                processes=True,
                memory_limit=settings.memory_limit,
                dashboard_address=":0",
                silence_logs=logging.WARNING,
            )
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        client = Client(cluster, set_as_default=False)
        client.run(_warm_up)
    _ACTIVE.append(client)
    try:
        yield client
    finally:
        _ACTIVE.remove(client)
        client.close()
        if cluster is not None:
            cluster.close()


@contextmanager
def shared_dask(config: SeedfieldConfig) -> Iterator[SeedfieldConfig]:
    """A config whose subflows all use one Dask cluster: the configured one, or a LocalCluster
    started once here (instead of one per subflow)."""
    if config.dask.address:
        yield config
        return
    with dask_client(config.dask) as client:
        dask = config.dask.model_copy(update={"address": client.scheduler.address})
        yield config.model_copy(update={"dask": dask})


def _run_on_dask(label: str, fn: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    """Run ``fn(**kwargs)`` on a worker process of the active cluster and wait for the result."""
    return active_client().submit(fn, pure=False, **kwargs).result()


#: A Prefect task whose run is named by ``label`` (``ingest-2020-01-01`` …) and whose work runs on
#: Dask. Transient errors (network, a worker lost) are retried; bad input is reported by the job
#: itself, as outcomes, and does not fail the task.
on_dask = task(
    _run_on_dask,
    name="on-dask",
    task_run_name="{label}",
    retries=2,
    retry_delay_seconds=[2, 10],
    cache_policy=NONE,
)

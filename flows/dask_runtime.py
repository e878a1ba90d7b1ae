"""The Dask cluster the per-day work runs on: a LocalCluster by default, or an existing one; a
run of only a few jobs (``[dask] inline_max_jobs``) runs them in the flow's own process instead.

Starting a LocalCluster and importing the job modules in its workers costs seconds, more than a
one-day ingest or prepare itself. NetCDF/HDF5 decoding holds a process-wide lock, so worker
processes pay off only for many files; for a few, the jobs run in the flow's process, each still
its own Prefect task run (``on_dask`` runs the job in the task's thread, one job at a time).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from prefect import task
from prefect.cache_policies import NONE

from flows.config import DaskSettings, SeedfieldConfig

if TYPE_CHECKING:
    from distributed import Client

_ACTIVE: list[Client | None] = []  # None: jobs run in this process
_INLINE = threading.Lock()
_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MALLOC_TRIM_THRESHOLD_")


def active_client() -> Client | None:
    """The client of the innermost ``dask_client`` block (tasks run in threads of the flow);
    None when that block runs its jobs in this process."""
    if not _ACTIVE:
        raise RuntimeError("no Dask client is active: run inside flows.dask_runtime.dask_client()")
    return _ACTIVE[-1]


def runs_inline(settings: DaskSettings, jobs: int | None) -> bool:
    """No cluster is configured and the run has at most ``inline_max_jobs`` jobs."""
    return not settings.address and jobs is not None and jobs <= settings.inline_max_jobs


def _warm_up() -> None:
    """Import the job modules once in each fresh worker, at cluster start, not in the first job."""
    import flows.ingest_job
    import flows.prepare_job  # noqa: F401


@contextmanager
def dask_client(settings: DaskSettings, jobs: int | None = None) -> Iterator[Client | None]:
    """A client to ``settings.address``, or to a LocalCluster of worker processes closed on exit;
    None, and the jobs run in this process, when ``jobs`` (how many the block submits, if known)
    is at most ``settings.inline_max_jobs`` and no address is set.

    NetCDF/HDF5 decoding holds a process-wide lock, so parallel work needs processes, not threads.
    """
    if runs_inline(settings, jobs):
        _ACTIVE.append(None)
        try:
            yield None
        finally:
            _ACTIVE.pop()
        return
    # imported here: a run that needs no cluster does not pay for it
    from distributed import Client, LocalCluster

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
def shared_dask(config: SeedfieldConfig, jobs: int | None = None) -> Iterator[SeedfieldConfig]:
    """A config whose subflows all use one Dask cluster: the configured one, or a LocalCluster
    started once here (instead of one per subflow). ``jobs``: the most jobs one subflow submits
    (e.g. the days of a daily run); when that is few, no cluster starts and the subflows run
    their jobs in this process."""
    if config.dask.address or runs_inline(config.dask, jobs):
        yield config
        return
    with dask_client(config.dask) as client:
        dask = config.dask.model_copy(update={"address": client.scheduler.address})
        yield config.model_copy(update={"dask": dask})


def _run_on_dask(label: str, fn: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    """Run ``fn(**kwargs)`` on a worker process of the active cluster and wait for the result
    (or here, in the task's thread, when the block runs its jobs inline)."""
    client = active_client()
    if client is None:
        with _INLINE:  # one job at a time: the netCDF/HDF5 libraries are not thread-safe
            return fn(**kwargs)
    return client.submit(fn, pure=False, **kwargs).result()


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

"""What makes a one-step command quick: seedfield's local Prefect server, started once and reused
(:mod:`flows.local_server`), and a few jobs run in the flow's own process (:mod:`flows.dask_runtime`),
each still its own Prefect task run.

The local server's commands run as real ``seedfield`` processes with their own cache dir and
PREFECT_HOME: the local server is only ever chosen in a process that has not imported Prefect.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import psutil
import pytest

from pipeline.sample_archive import write_sample_archive
from tests.helpers_flows import SMALL_REGION

REPO = Path(__file__).resolve().parents[1]
DAY = dt.date(2020, 1, 1)


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    home = tmp / "prefect-home"
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    return {**env, "PYTHONPATH": str(REPO), "SEEDFIELD_CACHE_DIR": str(tmp / "cache"), "PREFECT_HOME": str(home),
            "PREFECT_LOGGING_LEVEL": "WARNING", **extra}


def seedfield(env: dict[str, str], *args: str) -> tuple[int, str]:
    proc = subprocess.run([sys.executable, "-m", "flows.cli", *args], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=600)
    return proc.returncode, proc.stdout + proc.stderr


def _state(tmp: Path) -> dict | None:
    path = tmp / "cache" / "prefect-server" / "server.json"
    return json.loads(path.read_text()) if path.exists() else None


def _flow_run_names(url: str) -> list[str]:
    request = urllib.request.Request(f"{url}/flow_runs/filter", data=b"{}", method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return [run["name"] for run in json.load(response)]


def _task_run_names(url: str) -> list[str]:
    request = urllib.request.Request(f"{url}/task_runs/filter", data=b"{}", method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return [run["name"] for run in json.load(response)]


@pytest.fixture
def stop_server(tmp_path, monkeypatch):
    """Stop the test's local server; the session's SEEDFIELD_CACHE_DIR is restored afterwards."""
    yield
    from flows import local_server

    monkeypatch.setenv("SEEDFIELD_CACHE_DIR", str(tmp_path / "cache"))
    local_server.stop()


@pytest.mark.slow  # starts a real Prefect server twice (15–40 s each on 2 shared cores)
def test_local_server_is_started_once_reused_recorded_and_stopped(tmp_path, stop_server):
    """The first ingest starts the local server, the second reuses it (same pid), both runs and
    their per-file task runs are in its database; one that died is replaced; ``server stop``
    stops it and ``server status`` says so."""
    write_sample_archive(tmp_path / "archive", DAY, 2, region=SMALL_REGION)
    env = _env(tmp_path)
    args = ["--archive", str(tmp_path / "archive")]
    rc, out = seedfield(env, "ingest", "--start", "2020-01-01", "--end", "2020-01-01", "--raw",
                        str(tmp_path / "a.zarr"), *args)
    assert rc == 0, out
    first = _state(tmp_path)
    assert first is not None and psutil.pid_exists(first["pid"])
    rc, out = seedfield(env, "ingest", "--start", "2020-01-02", "--end", "2020-01-02", "--raw",
                        str(tmp_path / "b.zarr"), *args)
    assert rc == 0, out
    assert _state(tmp_path)["pid"] == first["pid"]  # reused, not started again
    names = _flow_run_names(first["url"])
    assert sorted(names) == ["ingest-2020-01-01-2020-01-01", "ingest-2020-01-02-2020-01-02"]
    assert {"ingest-2020-01-01", "ingest-2020-01-02"} <= set(_task_run_names(first["url"]))
    assert Path(first["home"], "prefect.db").exists()

    rc, out = seedfield(env, "server", "status")
    assert rc == 0 and first["url"] in out and "prefect.db" in out, out

    os.killpg(first["pid"], signal.SIGKILL)  # a server that died is replaced by the next command
    psutil.Process(first["pid"]).wait(30) if psutil.pid_exists(first["pid"]) else None
    rc, out = seedfield(env, "server", "start")
    assert rc == 0, out
    second = _state(tmp_path)
    assert second["pid"] != first["pid"]
    assert len(_flow_run_names(second["url"])) == 2  # the same database

    rc, out = seedfield(env, "server", "stop")
    assert rc == 0 and f"pid {second['pid']}" in out, out
    assert not psutil.pid_exists(second["pid"]) or psutil.Process(second["pid"]).status() == psutil.STATUS_ZOMBIE
    assert _state(tmp_path) is None
    rc, out = seedfield(env, "server", "status")
    assert rc == 0 and "no local Prefect server runs" in out, out


def test_a_configured_server_or_the_opt_out_starts_no_local_server(tmp_path, stop_server):
    """PREFECT_API_URL in the environment or in the active Prefect profile is used as it is;
    SEEDFIELD_LOCAL_SERVER=0 leaves Prefect its temporary server; neither writes any state."""
    probe = ("from flows import local_server as s; import sys; "
             "print(s.configured_api_url(), s.begin(), 'prefect' in sys.modules)")

    def ask(env: dict[str, str]) -> str:
        return subprocess.run([sys.executable, "-c", probe], env=env, cwd=REPO, capture_output=True, text=True,
                              timeout=60, check=True).stdout.strip()

    assert ask(_env(tmp_path, PREFECT_API_URL="http://127.0.0.1:9/api")) == "http://127.0.0.1:9/api None False"
    (tmp_path / "prefect-home").mkdir(exist_ok=True)
    (tmp_path / "prefect-home" / "profiles.toml").write_text(
        'active = "team"\n[profiles.team]\nPREFECT_API_URL = "http://10.0.0.5:4200/api"\n')
    assert ask(_env(tmp_path)) == "http://10.0.0.5:4200/api None False"
    (tmp_path / "prefect-home" / "profiles.toml").unlink()
    assert ask(_env(tmp_path, SEEDFIELD_LOCAL_SERVER="0")) == "None None False"
    assert _state(tmp_path) is None
    rc, out = seedfield(_env(tmp_path, SEEDFIELD_LOCAL_SERVER="0"), "server", "start")
    assert rc == 2 and "SEEDFIELD_LOCAL_SERVER=0" in out, out


@pytest.mark.slow  # ~10-15 s: a seedfield process with its own Prefect server
@pytest.mark.usefixtures("prefect_server")
def test_a_one_day_ingest_runs_its_job_in_the_flow_process_and_records_its_task_run(tmp_path):
    """No LocalCluster for one file: the job runs in this process (its pid), one task run per
    file is still recorded; with inline_max_jobs 0 the same ingest starts a cluster (another pid)."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    import flows.ingest as ingest
    from flows.config import load_config

    write_sample_archive(tmp_path / "archive", DAY, 1, region=SMALL_REGION)
    pids: list[int] = []
    job = ingest.ingest_files_job

    def where(**kwargs):
        pids.append(os.getpid())
        return job(**kwargs)

    ingest.ingest_files_job = where  # the job itself is untouched; this notes where it ran
    try:
        for n, inline in (("inline", 2), ("cluster", 0)):
            cfg = load_config(None, {"archive.source": str(tmp_path / "archive"), "stores.raw": str(tmp_path / f"{n}.zarr"),
                                     "dask.n_workers": 1, "dask.inline_max_jobs": inline})
            state = ingest.ingest_flow(cfg, DAY, DAY, return_state=True)
            assert state.is_completed(), state

            async def task_runs(flow_run_id=state.state_details.flow_run_id):
                async with get_client() as client:
                    runs = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
                    return [r.name for r in runs]

            assert "ingest-2020-01-01" in asyncio.run(task_runs()), n
    finally:
        ingest.ingest_files_job = job
    assert pids[0] == os.getpid()
    assert len(pids) == 1  # in the cluster the wrapper ran in a worker, which recorded nothing here

"""The daily flow: in-process (preliminary days refreshed, QA flags, artifacts), and as a
deployment served by `seedfield serve` against a real `prefect server start` subprocess, run
through the API and read back through the API; plus the GPU work-pool deployment path."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.config import load_config
from flows.daily import daily_flow, resolve_day
from flows.ingest import ingest_flow
from flows.prepare import prepare_flow
from flows.states import run_flow
from flows.train import train_flow
from pipeline.sample_archive import write_sample_archive
from storage.step_store import StepStore
from tests.helpers_flows import SMALL_REGION, stores, write_toml

REPO = Path(__file__).resolve().parents[1]
PREFECT = str(Path(sys.executable).parent / "prefect")
START = dt.date(2015, 3, 1)
N_DAYS = 8
DAYS = [START + dt.timedelta(days=i) for i in range(N_DAYS)]
REGION = SMALL_REGION
runner = CliRunner()


def artifacts(client: Any, flow_run_id: Any, key: str) -> list[Any]:
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
    )

    return client.read_artifacts(artifact_filter=ArtifactFilter(
        flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]), key=ArtifactFilterKey(any_=[key])))


def _rebin_rmse(cfg: Any, day: dt.date) -> float:
    """The re-binning QA of a stored day, recomputed by hand: the reconstruction's block means
    over the seeded LR bins against the sensors' bin means (land cells left out of the blocks)."""
    import numpy as np

    recon = StepStore(cfg.stores.output).read_step(day, ["sst"])["sst"].astype("float64")
    seeded = StepStore(cfg.stores.seedings).read_step(day, ["lr_mean", "lr_count"])
    f = cfg.seeding.bin_size
    ny, nx = seeded["lr_mean"].shape
    blocks = recon[: ny * f, : nx * f].reshape(ny, f, nx, f)
    with np.errstate(invalid="ignore"):
        means = np.nanmean(blocks, axis=(1, 3))
    use = (seeded["lr_count"] > 0) & np.isfinite(means) & np.isfinite(seeded["lr_mean"])
    return float(np.sqrt(np.mean((means - seeded["lr_mean"])[use] ** 2)))


@pytest.fixture(scope="module")
def sample(tmp_path_factory, dask_cluster, prefect_server):
    """A regional archive whose last two days are preliminary files, and a tiny published model."""
    root = tmp_path_factory.mktemp("daily")
    write_sample_archive(root / "archive", START, N_DAYS, region=REGION, preliminary_last=2)
    common = {
        "archive.source": str(root / "archive"), "stores.registry": str(root / "models"),
        "dask.address": dask_cluster.scheduler_address,
        "seeding.bin_size": 8, "seeding.upsampling": 4, "seeding.sensors_per_bin": 6,
        "train.architecture": "raseedgan", "train.epochs": 1, "train.n_features": 8, "train.n_res_blocks": 1, "train.batch_size": 4,
    }
    cfg = load_config(None, {**common, **stores(root, "train")})
    assert run_flow(ingest_flow, cfg, DAYS[0], DAYS[3])["ok"]
    assert run_flow(prepare_flow, cfg, DAYS[0], DAYS[3])["ok"]
    train_flow(cfg, DAYS[0], DAYS[3], model_id="tiny")
    return root, common


def test_the_day_comes_from_the_scheduled_time_in_utc_minus_the_lag():
    at_six = dt.datetime(2024, 5, 2, 6, 0, tzinfo=dt.UTC)
    assert resolve_day(None, 1, scheduled=at_six) == dt.date(2024, 5, 1)
    assert resolve_day(None, 0, scheduled=at_six) == dt.date(2024, 5, 2)
    east = dt.datetime(2024, 5, 2, 1, 0, tzinfo=dt.timezone(dt.timedelta(hours=5)))  # 2024-05-01 20:00 UTC
    assert resolve_day(None, 1, scheduled=east) == dt.date(2024, 4, 30)
    assert resolve_day("2024-01-31", 3, scheduled=at_six) == dt.date(2024, 1, 31)


@pytest.mark.slow  # ~30-60 s: six daily runs and a CLI run, with a trained model
@pytest.mark.usefixtures("prefect_server")
def test_daily_refreshes_preliminary_days_flags_qa_and_shows_a_map(sample):
    from prefect.client.orchestration import get_client

    root, common = sample
    toml = write_toml(root / "d.toml", {**common, **stores(root, "d")})
    cfg = load_config(toml)
    r = runner.invoke(app, ["daily", "--date", str(DAYS[6]), "--config", str(toml)])  # a preliminary file
    assert r.exit_code == 0, r.output
    assert f"daily {DAYS[6]} with model tiny" in " ".join(r.output.split()) and "ok 1" in r.output
    raw = StepStore(cfg.stores.raw)
    assert raw.marker(DAYS[6])["preliminary"] is True
    old_output = StepStore(cfg.stores.output).marker(DAYS[6])

    write_sample_archive(root / "archive", DAYS[6], 1, region=REGION)  # its final file appears
    state = daily_flow(cfg, DAYS[7], qa_threshold=0.0, return_state=True)
    result = state.result()
    assert result["ok"] and result["reingested"] == [DAYS[6].isoformat()]
    assert [r["day"] for r in result["days"]] == [DAYS[6].isoformat(), DAYS[7].isoformat()]
    assert result["qa_flagged"] == [r["day"] for r in result["days"]]  # every RMSE > 0
    assert raw.marker(DAYS[6])["preliminary"] is False and raw.marker(DAYS[6])["source"].endswith("20150307.nc")
    new_output = StepStore(cfg.stores.output).marker(DAYS[6])
    assert new_output["seedings"] != old_output["seedings"]  # reconstructed from the final file

    with get_client(sync_client=True) as client:
        run_id = state.state_details.flow_run_id
        assert client.read_flow_run(run_id).name == f"daily-{DAYS[7]}"
        (table,) = artifacts(client, run_id, "daily-qa")
        rows = json.loads(table.data)
        assert [r["day"] for r in rows] == result["qa_flagged"]
        assert all(r["qa"].startswith("ABOVE") and r["status"] == "ok" for r in rows)
        # the QA numbers are the re-binning check recomputed here from the stores themselves
        assert [r["qa_rebin_rmse"] for r in rows] == pytest.approx(
            [_rebin_rmse(cfg, dt.date.fromisoformat(r["day"])) for r in rows], abs=5e-6)  # shown to 5 decimals
        assert rows[0]["preliminary"] is False and rows[1]["preliminary"] is True
        # QA without truth: cubic scored at withheld real sensors (an LR-bin model cannot be)
        assert all(0 < r["qa_cv_cubic_rmse"] < 5 and r["qa_cv_model_rmse"] is None for r in rows)
        (quicklook,) = artifacts(client, run_id, "daily-quicklook")
        uri = quicklook.data.split("](", 1)[1].split(")", 1)[0]
        png = base64.b64decode(uri.removeprefix("data:image/png;base64,"))
        assert png.startswith(b"\x89PNG") and 5_000 < len(png) <= 200_000
        (summary,) = artifacts(client, run_id, "daily-summary")
        assert str(DAYS[6]) in summary.data

    # a threshold between the two days' values flags the worse day and passes the other
    # (unchanged re-runs of each day: the QA comes from the stored day's marker)
    low, high = sorted(rows, key=lambda r: r["qa_rebin_rmse"])
    assert low["qa_rebin_rmse"] < high["qa_rebin_rmse"]
    middle = (low["qa_rebin_rmse"] + high["qa_rebin_rmse"]) / 2
    for row, flagged in ((high, [high["day"]]), (low, [])):
        again = daily_flow(cfg, dt.date.fromisoformat(row["day"]), qa_threshold=middle)
        assert again["ok"] and again["days"][0]["status"] == "unchanged" and again["qa_flagged"] == flagged

    # a day whose file is not in the archive: the run ends Failed (not a green Completed) naming
    # it, and the command exits 2 when nothing else was done, saying which day is missing
    missing = DAYS[-1] + dt.timedelta(days=1)
    state = daily_flow(cfg, missing, return_state=True)
    assert state.is_failed() and str(missing) in state.message, state
    r = runner.invoke(app, ["daily", "--date", str(missing), "--config", str(toml)])
    assert r.exit_code == 2 and "some days failed or were missing" in r.output and str(missing) in r.output, r.output
    # the last preliminary day's final file appears: the same run now re-ingests it (done) and
    # still misses its own day, so it exits 3 (some steps done, some not)
    write_sample_archive(root / "archive", DAYS[7], 1, region=REGION)
    r = runner.invoke(app, ["daily", "--date", str(missing), "--config", str(toml)])
    assert r.exit_code == 3 and str(missing) in r.output, r.output
    assert raw.marker(DAYS[7])["preliminary"] is False


# -- a real server ---------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen, grace: float = 15.0) -> None:
    """SIGTERM the process group this test started, then SIGKILL what is left."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


def _wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, f"prefect server exited ({proc.returncode}):\n{log.read_text()[-3000:]}"
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    return
        assert time.monotonic() < deadline, f"prefect server not healthy after {timeout} s:\n{log.read_text()[-3000:]}"
        time.sleep(0.5)


def _client_env(url: str, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    return {**env, "PREFECT_HOME": str(home), "PREFECT_API_URL": url, "PREFECT_LOGGING_LEVEL": "INFO",
            "PREFECT_RUNNER_POLL_FREQUENCY": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}


def _scheduled_runs(client: Any, deployment_id: Any, wait_s: float) -> list[Any]:
    """Future runs the scheduler created for the deployment (waits up to ``wait_s``)."""
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    deadline = time.monotonic() + wait_s
    while True:
        runs = client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))),
        )
        runs = [r for r in runs if r.expected_start_time and r.expected_start_time > dt.datetime.now(dt.UTC)]
        if runs or time.monotonic() > deadline:
            return runs
        time.sleep(1)


@pytest.fixture(scope="module")
def real_server(tmp_path_factory):
    """`prefect server start` on a free port with its own PREFECT_HOME (SQLite); launched here,
    waited for by the test (so the sample is built meanwhile), killed at the end."""
    home = tmp_path_factory.mktemp("prefect-home")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_UI_ENABLED="false",
               PREFECT_SERVER_LOGGING_LEVEL="WARNING")
    log = home / "server.log"
    with log.open("w") as fh:
        proc = subprocess.Popen([PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                                env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield f"http://127.0.0.1:{port}/api", home, proc, log
    finally:
        _stop(proc)


@pytest.mark.slow
def test_served_daily_deployment_runs_from_its_schedule_time_and_shows_artifacts(real_server, sample, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    url, home, server, server_log = real_server
    root, common = sample
    toml = write_toml(tmp_path / "seedfield.toml", {**common, **stores(root, "served")})
    _wait_healthy(url, server, server_log)
    env = _client_env(url, home)
    serve_log = tmp_path / "serve.log"
    with serve_log.open("w") as fh:
        serve = subprocess.Popen([sys.executable, "-m", "flows.cli", "serve", "--cron", "30 5 * * *",
                                  "--config", str(toml)], cwd=REPO, env=env, stdout=fh,
                                 stderr=subprocess.STDOUT, start_new_session=True)
        pool = subprocess.Popen([PREFECT, "work-pool", "create", "gpu", "--type", "process"], env=env,
                                stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        with temporary_settings(updates={PREFECT_API_URL: url}), get_client(sync_client=True) as client:
            deadline = time.monotonic() + 120
            while {d.name for d in client.read_deployments()} < {"daily", "backfill", "train"}:
                assert serve.poll() is None, f"serve exited:\n{serve_log.read_text()[-3000:]}"
                assert time.monotonic() < deadline, serve_log.read_text()[-3000:]
                time.sleep(0.5)
            daily = client.read_deployment_by_name("daily/daily")
            (schedule,) = daily.schedules
            assert schedule.schedule.cron == "30 5 * * *" and schedule.schedule.timezone == "UTC"
            assert daily.parameters == {"config_path": str(toml)}
            assert daily.entrypoint == "flows.deployments.daily_deployment_flow"

            # the slot of 2015-03-06 05:30 UTC: no day given, so the run processes 2015-03-05
            slot = dt.datetime(2015, 3, 6, 5, 30, tzinfo=dt.UTC)
            run = run_deployment(name="daily/daily", scheduled_time=slot, timeout=300, poll_interval=1,
                                 as_subflow=False)
            assert run.state is not None and run.state.is_completed(), (
                f"{run.state}\n{serve_log.read_text()[-4000:]}")
            assert run.name == "daily-2015-03-05"
            (table,) = artifacts(client, run.id, "daily-qa")
            rows = json.loads(table.data)
            assert rows[0]["day"] == "2015-03-05" and rows[0]["status"] == "ok"
            served = load_config(toml)
            assert rows[0]["qa_rebin_rmse"] == pytest.approx(_rebin_rmse(served, dt.date(2015, 3, 5)), abs=5e-6)
            assert "model tiny" in table.description
            (quicklook,) = artifacts(client, run.id, "daily-quicklook")
            assert "data:image/png;base64," in quicklook.data
            # a slot whose day has no file: the deployment's run ends Failed, naming the day
            late = run_deployment(name="daily/daily", scheduled_time=dt.datetime(2015, 3, 11, 5, 30, tzinfo=dt.UTC),
                                  timeout=300, poll_interval=1, as_subflow=False)
            assert late.state is not None and late.state.is_failed(), f"{late.state}\n{serve_log.read_text()[-4000:]}"
            assert "2015-03-10" in (late.state.message or ""), late.state.message
            assert StepStore(str(root / "served" / "recon.zarr")).marker(DAYS[4])["status"] == "ok"

            # the GPU work-pool path: the pool made by the documented command, train deployed on it
            assert pool.wait(timeout=120) == 0, serve_log.read_text()[-3000:]
            r = runner.invoke(app, ["deploy-train", "--pool", "gpu", "--config", str(toml)])
            assert r.exit_code == 0, r.output
            train = client.read_deployment_by_name("train/train-gpu")
            assert train.work_pool_name == "gpu" and train.entrypoint == "flows.deployments.train_deployment_flow"
            assert train.parameters == {"config_path": str(toml)}

            # the server's scheduler turns the cron into upcoming runs of daily/daily
            upcoming = _scheduled_runs(client, daily.id, wait_s=5)
            assert upcoming and all(r.expected_start_time.strftime("%H:%M") == "05:30" for r in upcoming)
    finally:
        _stop(serve)
        _stop(pool)

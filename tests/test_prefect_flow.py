"""seedfield's flows (:mod:`flows.prefect_flow`) serialise their parameters without FastAPI: the
same JSON as Prefect's own encoder for every kind of parameter they take, secrets still redacted,
and a flow command never imports FastAPI; and their runs end without joining the heartbeat
thread, which still sends its heartbeats."""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.encoders import jsonable_encoder  # the reference: what Prefect itself would store

from flows.config import load_config
from flows.prefect_flow import SeedfieldFlow, flow, jsonable_parameters

REPO = Path(__file__).resolve().parents[1]


class Colour(enum.Enum):
    RED = "red"


def _parameters() -> dict[str, object]:
    config = load_config(overrides={
        "archive.source": "https://ann:hunter2@data.example.org/sst/{date:%Y%m}/file_{date:%Y%m%d}.nc",
        "archive.storage_options": {"key": "AKIAEXAMPLE", "secret": "s3cr3t-key", "anon": False},
        "stores.raw": "s3://team:pa55word@bucket/raw.zarr",
    }, credentials=False)
    return {
        "config": config,
        "start": dt.date(2020, 1, 1),
        "end": dt.datetime(2020, 1, 2, 6, tzinfo=dt.UTC),
        "naive": dt.datetime(2020, 1, 2, 6, 30),
        "report": None,
        "progress_bar": False,
        "lag_days": 1,
        "qa_threshold": 0.75,
        "path": Path("/data/sst"),
        "paths": [Path("a.nc"), Path("b.nc")],
        "pair": (1, "two"),
        "nested": {"a": [1, 2.5, None], "b": {"c": "d"}},
        "colour": Colour.RED,
    }


def test_the_parameters_are_the_json_prefect_would_store():
    parameters = _parameters()
    ours = jsonable_parameters(parameters)
    assert ours == {key: jsonable_encoder(value) for key, value in parameters.items()}
    text = json.dumps(ours)
    for secret in ("hunter2", "s3cr3t-key", "AKIAEXAMPLE", "pa55word"):
        assert secret not in text
    assert ours["config"]["archive"]["source"] == "https://***@data.example.org/sst/{date:%Y%m}/file_{date:%Y%m%d}.nc"


def test_a_value_without_json_is_a_placeholder_and_the_flow_still_runs():
    class Opaque:
        __slots__ = ()

    assert jsonable_parameters({"thing": Opaque(), "n": 3}) == {"thing": "<Opaque>", "n": 3}

    @flow(name="probe", flow_run_name="probe-{n}")
    def probe(n: int) -> int:
        return n + 1

    assert isinstance(probe, SeedfieldFlow) and probe.name == "probe"
    assert probe.serialize_parameters({"n": 3}) == {"n": 3}


def test_the_heartbeat_thread_is_not_joined_by_the_synchronous_engine():
    """The wrapper is installed over the Prefect function it expects (a Prefect upgrade that
    changes its signature fails here, not silently), and always hands it join_on_exit=False."""
    import contextlib
    import inspect

    import prefect.flow_engine

    import flows.prefect_flow as module

    installed = prefect.flow_engine._send_heartbeats
    assert module.HEARTBEATS_NOT_JOINED and installed.seedfield_not_joined
    assert list(inspect.signature(installed.__wrapped__).parameters) == ["engine", "join_on_exit"]

    calls = []

    @contextlib.contextmanager
    def spy(engine, join_on_exit=True):  # stands in for Prefect's function
        calls.append(join_on_exit)
        yield

    prefect.flow_engine._send_heartbeats = spy
    try:
        assert module._heartbeats_not_joined()
        wrapper = prefect.flow_engine._send_heartbeats
        with wrapper(object()):
            pass
        with wrapper(object(), join_on_exit=True):
            pass
        assert module._heartbeats_not_joined() and prefect.flow_engine._send_heartbeats is wrapper  # once only
    finally:
        prefect.flow_engine._send_heartbeats = installed
    assert calls == [False, False]

    def unknown(engine):  # a Prefect whose function takes no join_on_exit: left as it is
        yield

    prefect.flow_engine._send_heartbeats = unknown
    try:
        assert not module._heartbeats_not_joined() and prefect.flow_engine._send_heartbeats is unknown
    finally:
        prefect.flow_engine._send_heartbeats = installed
    del prefect.flow_engine._send_heartbeats  # a Prefect without the function: importing still works
    try:
        assert not module._heartbeats_not_joined()
    finally:
        prefect.flow_engine._send_heartbeats = installed


@pytest.mark.slow  # 10-15 s: a one-day ingest in its own process (Prefect, xarray and Zarr imports)
@pytest.mark.usefixtures("prefect_server")
def test_a_flow_command_does_not_import_fastapi(tmp_path):
    """A one-day ingest through a real server, in its own process: its flow run is recorded with
    its parameters and its heartbeat, and FastAPI (0.3 s of imports) was never loaded."""
    from pipeline.sample_archive import write_sample_archive
    from tests.helpers_flows import SMALL_REGION

    write_sample_archive(tmp_path / "archive", dt.date(2020, 1, 1), 1, region=SMALL_REGION)
    script = (
        "import sys, datetime as dt, json\n"
        "from flows.config import load_config\n"
        "from flows.ingest import ingest_flow\n"
        f"config = load_config(overrides={{'archive.source': {str(tmp_path / 'archive')!r}, "
        f"'stores.raw': {str(tmp_path / 'raw.zarr')!r}}}, credentials=False)\n"
        "state = ingest_flow(config=config, start=dt.date(2020, 1, 1), end=dt.date(2020, 1, 1), return_state=True)\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'fastapi')\n"
        "print(json.dumps([str(state.state_details.flow_run_id), state.type.value, loaded]))\n"
    )
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PYTHONPATH": str(REPO), "PREFECT_API_URL": PREFECT_API_URL.value()}
    proc = subprocess.run([sys.executable, "-c", script], env=env, cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    flow_run_id, state, loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert state == "COMPLETED" and loaded == []

    from prefect.client.orchestration import get_client

    async def recorded() -> dict:
        async with get_client() as client:
            return (await client.read_flow_run(flow_run_id)).parameters

    parameters = asyncio.run(recorded())
    # the run still sent its heartbeat (its first is at the start), though its end did not wait for the thread
    sent = heartbeats(flow_run_id)
    assert sent and set(sent) == {"prefect.flow-run.heartbeat"}
    assert parameters["start"] == "2020-01-01" and parameters["end"] == "2020-01-01"
    assert parameters["config"]["stores"]["raw"] == str(tmp_path / "raw.zarr")


def heartbeats(flow_run_id: str) -> list[str]:
    """Heartbeat events of one flow run, as the server stored them (waits for the event persister)."""
    import time
    import urllib.request

    from prefect.settings import PREFECT_API_URL

    body = json.dumps({"filter": {"event": {"name": ["prefect.flow-run.heartbeat"]},
                                  "any_resource": {"id": [f"prefect.flow-run.{flow_run_id}"]}}, "limit": 10}).encode()
    deadline = time.monotonic() + 60
    while True:
        request = urllib.request.Request(f"{PREFECT_API_URL.value()}/events/filter", data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            events = json.load(response)["events"]
        if events or time.monotonic() > deadline:
            return [e["event"] for e in events]
        time.sleep(1)

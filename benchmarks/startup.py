"""Start-up cost of a one-step command: what a one-day ingest pays around the work itself.

Usage: python benchmarks/startup.py [--runs 2] [--dir DIR]

In one run, each as its own ``seedfield`` process (``python -m flows.cli``) with its own
PREFECT_HOME and seedfield cache dir, so nothing of the caller's setup leaks in:

1. ``seedfield --help``;
2. ``seedfield ingest`` of one day of the bundled sample (one global OISST-layout file derived
   from the bundled ERSSTv5 data) with **no** Prefect server configured (no PREFECT_API_URL),
   ``--runs`` times in a row (the first run may pay for starting what later runs reuse);
3. the same with a running ``prefect server start`` reached through PREFECT_API_URL;
4. the work itself: the flow body's own time, as the server recorded it (the flow run's
   ``total_run_time``), for each ingest of 3;
5. ``seedfield prepare`` of that one day (seed sensors, bin them, statistics) into a new
   seedings store, with the same running server, and its flow body's time.

Each line gives the best and the median wall time, each run's, and each run's CPU time (user +
system of the command and its children; a background server it started is not its child): on a
machine shared with other jobs the CPU time says more than the wall time.

Each ingest writes a new raw store, so every run does the same work. The overhead is the end-to-end
wall time over the work. Any seedfield-managed background server the runs start is stopped at
the end (``seedfield server stop``, where the command exists).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DAY = dt.date(2019, 1, 1)


def _env(home: Path, api_url: str | None) -> dict[str, str]:
    (home / "prefect").mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_") and k != "SEEDFIELD_CACHE_DIR"}
    env.update({"PYTHONPATH": str(REPO), "PREFECT_HOME": str(home / "prefect"),
                "SEEDFIELD_CACHE_DIR": str(home / "cache"), "PREFECT_LOGGING_LEVEL": "WARNING"})
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


#: CPU seconds (user + system) of each ``seedfield`` process and its children, by label: less
#: sensitive than wall time to other jobs on a shared machine.
CPU: dict[str, list[float]] = {}


def seedfield(args: list[str], env: dict[str, str], check: bool = True, label: str | None = None) -> float:
    """Wall time of one ``seedfield`` process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "flows.cli", *args], env=env, cwd=REPO,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if label:
        CPU.setdefault(label, []).append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    if check and proc.returncode != 0:
        raise SystemExit(f"seedfield {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return seconds


def ingest_args(work: Path, name: str) -> list[str]:
    return ["ingest", "--start", DAY.isoformat(), "--end", DAY.isoformat(), "--archive", str(work / "archive"),
            "--raw", str(work / "stores" / f"{name}.zarr")]


def prepare_args(work: Path, i: int) -> list[str]:
    return ["prepare", "--start", DAY.isoformat(), "--end", DAY.isoformat(), "--raw", str(work / "stores" / "served-0.zarr"),
            "--seedings", str(work / "stores" / f"seedings-{i}.zarr")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(home: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = _env(home, None)
    proc = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                             "--port", str(port)], env={**env, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("prefect server start did not answer within 180 s")


def flow_seconds(url: str, flow: str) -> list[float]:
    """``total_run_time`` of the server's runs of ``flow``, oldest first."""
    os.environ["PREFECT_API_URL"] = url
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.sorting import FlowRunSort

    async def read() -> list[float]:
        async with get_client() as client:
            runs = await client.read_flow_runs(sort=FlowRunSort.START_TIME_DESC, limit=50)
            return [r.total_run_time.total_seconds() for r in reversed(runs) if r.name.startswith(f"{flow}-")]

    return asyncio.run(read())


def show(label: str, times: list[float], cpu: str | None = None) -> None:
    each = ", ".join(f"{t:.1f}" for t in times)
    line = f"{label:<48} best {min(times):6.2f} s  median {statistics.median(times):6.2f} s  ({each})"
    if cpu in CPU:
        line += f"  cpu {', '.join(f'{t:.1f}' for t in CPU[cpu])} s"
    print(line)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=2, help="ingests per case")
    ap.add_argument("--dir", default=None, help="scratch directory (default: a temp dir)")
    args = ap.parse_args()
    work = Path(args.dir or tempfile.mkdtemp(prefix="seedfield-startup-"))
    print(f"scratch {work}; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")

    bare = _env(work / "bare", None)
    seedfield(["sample-archive", str(work / "archive"), "--start", DAY.isoformat(), "--days", "1"], bare)

    show("seedfield --help", [seedfield(["--help"], bare, label="help") for _ in range(args.runs)], "help")

    try:
        no_server = [seedfield(ingest_args(work, f"bare-{i}"), bare, label="bare") for i in range(args.runs)]
    finally:
        seedfield(["server", "stop"], bare, check=False)
    show("ingest 1 day, no server configured", no_server, "bare")

    proc, url = start_server(work / "served")
    try:
        served_env = _env(work / "served", url)
        served = [seedfield(ingest_args(work, f"served-{i}"), served_env, label="served") for i in range(args.runs)]
        work_s = flow_seconds(url, "ingest")[-args.runs:]
        prepared = [seedfield(prepare_args(work, i), served_env, label="prepare") for i in range(args.runs)]
        prepare_s = flow_seconds(url, "prepare")[-args.runs:]
    finally:
        proc.terminate()
        proc.wait(30)
    show("ingest 1 day, running server (PREFECT_API_URL)", served, "served")
    show("  the work itself (flow run total_run_time)", work_s)
    show("prepare 1 day, running server (PREFECT_API_URL)", prepared, "prepare")
    show("  the work itself (flow run total_run_time)", prepare_s)
    print(f"overhead (end to end / work): no server {statistics.median(no_server) / statistics.median(work_s):.1f}x, "
          f"running server {statistics.median(served) / statistics.median(work_s):.1f}x")


if __name__ == "__main__":
    main()

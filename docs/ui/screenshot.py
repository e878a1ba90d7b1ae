"""Screenshot of the Prefect UI showing a daily run's per-day QA table (docs/ui/daily-artifacts.png).

    .venv/bin/python docs/ui/screenshot.py                      # starts a server on a free port
    .venv/bin/python docs/ui/screenshot.py --api-url http://127.0.0.1:4200/api   # reuse `make server`

It builds a small regional sample (archive → ingest → prepare → a tiny model), runs the daily flow
for one day against that server so its artifacts exist, then captures the artifact page of the
``daily-qa`` table with headless Chromium (Debian: ``apt-get install -y chromium``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
START = dt.date(2019, 6, 1)
N_DAYS = 40
N_TRAIN = 36


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(api_url: str, proc: subprocess.Popen | None, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"prefect server exited with {proc.returncode}")
        with contextlib.suppress(OSError), urllib.request.urlopen(f"{api_url}/health", timeout=2) as r:
            if r.status == 200:
                return
        time.sleep(0.5)
    raise SystemExit(f"no healthy Prefect API at {api_url} after {timeout:.0f} s")


def start_server(home: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_SERVER_LOGGING_LEVEL="WARNING",
               # the UI calls the API at this address (its default is port 4200)
               PREFECT_UI_API_URL=f"http://127.0.0.1:{port}/api", PREFECT_UI_URL=f"http://127.0.0.1:{port}")
    log = (home / "server.log").open("w")
    proc = subprocess.Popen([str(Path(sys.executable).parent / "prefect"), "server", "start", "--host", "127.0.0.1",
                             "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    return proc, f"http://127.0.0.1:{port}/api"


def run_daily_on_sample(work: Path, epochs: int, args_qa: float) -> tuple[str, dict[str, str]]:
    """Sample → small model → three daily runs; returns the last run's id and its artifact ids by key."""
    from distributed import LocalCluster
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
    )

    from flows.config import load_config
    from flows.daily import daily_flow
    from flows.ingest import ingest_flow
    from flows.prepare import prepare_flow
    from flows.train import train_flow
    from pipeline.grid import Region
    from pipeline.sample_archive import write_sample_archive

    days = [START + dt.timedelta(days=i) for i in range(N_DAYS)]
    region = Region(south=20.0, north=52.0, west=280.0, east=344.0)  # North Atlantic, 128 × 256 cells
    write_sample_archive(work / "archive", START, N_DAYS, region=region, preliminary_last=2)
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0")
    try:
        common = {
            "archive.source": str(work / "archive"), "stores.registry": str(work / "models"),
            "dask.address": cluster.scheduler_address,
            "seeding.bin_size": 16, "seeding.upsampling": 8,
            "train.epochs": epochs, "train.n_features": 16, "train.n_res_blocks": 2, "train.batch_size": 4,
        }
        train = load_config(None, {**common, "stores.raw": str(work / "t/raw.zarr"),
                                   "stores.seedings": str(work / "t/seedings.zarr")})
        ingest_flow(train, days[0], days[N_TRAIN - 1])
        prepare_flow(train, days[0], days[N_TRAIN - 1])
        train_flow(train, days[0], days[N_TRAIN - 1], model_id="raseedgan-sample")
        cfg = load_config(None, {**common, "stores.raw": str(work / "d/raw.zarr"),
                                 "stores.seedings": str(work / "d/seedings.zarr"),
                                 "stores.output": str(work / "d/recon.zarr")})
        daily_flow(cfg, days[-3], qa_threshold=args_qa)
        daily_flow(cfg, days[-2], qa_threshold=args_qa)  # from its preliminary file
        write_sample_archive(work / "archive", days[-2], 1, region=region)  # its final file appears
        state = daily_flow(cfg, days[-1], qa_threshold=args_qa, return_state=True)
    finally:
        cluster.close()
    run_id = state.state_details.flow_run_id
    keys = ["daily-qa", "daily-quicklook", "daily-summary"]
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]), key=ArtifactFilterKey(any_=keys)))
    return str(run_id), {a.key: str(a.id) for a in found}


def screenshot(url: str, out: Path, chromium: str, budget_ms: int, size: str) -> None:
    profile = Path(tempfile.mkdtemp(prefix="seedfield-chromium-"))
    try:
        cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--hide-scrollbars", f"--user-data-dir={profile}", f"--window-size={size}",
               f"--virtual-time-budget={budget_ms}", f"--screenshot={out}", url]
        subprocess.run(cmd, check=True, timeout=180, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--api-url", help="an existing server's API, e.g. http://127.0.0.1:4200/api")
    ap.add_argument("--out", type=Path, default=HERE / "daily-artifacts.png",
                    help="the table's screenshot; the map's goes next to it as daily-quicklook.png")
    ap.add_argument("--page", choices=["artifact", "run"], default="artifact",
                    help="the artifact's page, or the flow run's Artifacts tab")
    ap.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    ap.add_argument("--budget-ms", type=int, default=20000, help="virtual time for the SPA to render")
    ap.add_argument("--size", default="1600,1200")
    ap.add_argument("--epochs", type=int, default=8, help="training epochs of the sample model")
    ap.add_argument("--qa-threshold", type=float, default=0.5, help="°C, for the QA column")
    ap.add_argument("--keep", action="store_true", help="leave the server running (prints its URL)")
    args = ap.parse_args()

    work: Path | None = Path(tempfile.mkdtemp(prefix="seedfield-ui-"))
    server = None
    api_url = args.api_url
    if api_url is None:
        (work / "home").mkdir()
        server, api_url = start_server(work / "home")
    try:
        wait_healthy(api_url, server)
        os.environ["PREFECT_API_URL"] = api_url
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
        sys.path.insert(0, str(REPO))
        run_id, artifact_ids = run_daily_on_sample(work, args.epochs, args.qa_threshold)
        ui = api_url.removesuffix("/api")
        shots = {args.out: f"{ui}/artifacts/artifact/{artifact_ids['daily-qa']}" if args.page == "artifact"
                 else f"{ui}/runs/flow-run/{run_id}?tab=Artifacts"}
        if "daily-quicklook" in artifact_ids:
            shots[args.out.with_name("daily-quicklook.png")] = f"{ui}/artifacts/artifact/{artifact_ids['daily-quicklook']}"
        for png, page in shots.items():
            screenshot(page, png, args.chromium, args.budget_ms, args.size)
            print(f"{page}\n  → {png} ({png.stat().st_size / 1024:.0f} KiB)")
        if args.keep and server is not None:
            print(f"server left running at {ui} (pid {server.pid}, files in {work}); "
                  f"stop it with: kill -- -{server.pid}")
            server = None
            work = None
    finally:
        if server is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

"""`seedfield demo --quick` as a user runs it: a fresh process, Prefect's temporary server, every
stage of the demo (sample archive, ingest, prepare, train, backfill, daily, evaluate) on ten weeks
of a small crop; the paths it prints exist and hold what they say."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flows.demo import QUICK
from storage.step_store import StepStore

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # ~3 min: every stage of the demo, in its own process with its own server
@pytest.mark.timeout(1200)
def test_the_quick_demo_runs_every_stage_and_says_where_the_results_are(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}  # the demo's own temporary server
    env.update({"PREFECT_HOME": str(tmp_path / "prefect"), "COLUMNS": "200"})
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "flows.cli", "demo", "--quick", "--out", str(out)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=1100)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    text = proc.stdout
    for stage in range(1, 8):
        assert f"{stage}/7" in text, text[-3000:]
    printed = dict(line.strip().split(": ", 1) for line in text.splitlines()
                   if ": " in line and line.strip().split(": ", 1)[1].startswith(str(out)))
    for what in ("raw store", "seedings store", "model", "reconstruction", "metrics"):
        assert Path(printed[what]).exists(), (what, printed)

    metrics = json.loads(Path(printed["metrics"]).read_text())
    assert {"model", "cubic", "kriging"} <= set(metrics["methods"]), metrics["methods"].keys()
    assert all(0 < metrics["methods"][m]["rmse"] < 5 for m in ("model", "cubic"))
    recon = StepStore(printed["reconstruction"])
    steps = [QUICK.test[0] + dt.timedelta(days=i) for i in range((QUICK.last - QUICK.test[0]).days + 1)]
    # the backfill wrote the test period and the daily run its last day
    assert all((recon.marker(d) or {}).get("status") == "ok" for d in steps), \
        {d: recon.marker(d) for d in steps if (recon.marker(d) or {}).get("status") != "ok"}

"""Long commands survive a lost Prefect API, and a killed training blocks nothing.

Every command runs as ``seedfield`` in its own process, the reference runs too (bitwise results
depend on torch's thread count), with no PREFECT_API_URL: each starts or reuses seedfield's local
Prefect server (:mod:`flows.local_server`) in its own cache dir. The API is lost by SIGKILLing
that server's process group on an observable event: the command's first finished ingest job, or
its training's first checkpoint, at which the command waits (a gate file) until the server is
dead. Then:

- the command ends with one line (no traceback) saying the API was lost and that re-running
  resumes, exit 3;
- the re-run (which starts a new local server) completes from where it stopped: the ingest
  finds its steps committed, the training resumes from its last checkpoint (it does not
  retrain: the second run trains no epoch), and ends value-identical to an uninterrupted run.

A training SIGKILLed itself at its first checkpoint leaves its training slot to a dead pid; the
re-run with Prefect's own temporary server (``SEEDFIELD_LOCAL_SERVER=0``, as ``make demo``
had) takes the slot over at once and ends with the same weights.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.sample_archive import write_sample_archive
from tests.helpers_flows import SMALL_REGION, write_toml

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]  # five local servers start: minutes on 2 cores

REPO = Path(__file__).resolve().parents[1]
START = dt.date(2020, 1, 1)
N_DAYS = 10
TRAIN_END = START + dt.timedelta(days=N_DAYS - 1)
EPOCHS = 3

#: ``seedfield`` whose first finished ingest job, or first training checkpoint, writes
#: ``$GATE.reached`` and then waits for ``$GATE`` to exist.
GATED = """
import os, sys, time
sys.path.insert(0, {repo!r})

def _wait():
    gate = os.environ["GATE"]
    if not os.path.exists(gate + ".reached"):
        open(gate + ".reached", "w").close()
        while not os.path.exists(gate):
            time.sleep(0.05)

import flows.ingest_job as _jobs
_ingest = _jobs.ingest_files_job
def _gated_ingest(**kw):
    out = _ingest(**kw)
    _wait()
    return out
_jobs.ingest_files_job = _gated_ingest

if "train" in sys.argv:
    import model.trainer as _trainer
    _save = _trainer.Trainer._save
    def _gated_save(self, *a, **k):
        _save(self, *a, **k)
        _wait()
    _trainer.Trainer._save = _gated_save

from flows.cli import main
sys.argv = ["seedfield", *sys.argv[1:]]
main()
"""


def _env(tmp: Path, name: str, **extra: str) -> dict[str, str]:
    home = tmp / f"prefect-home-{name}"
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    return {**env, "PYTHONPATH": str(REPO), "SEEDFIELD_CACHE_DIR": str(tmp / f"cache-{name}"),
            "PREFECT_HOME": str(home), "PREFECT_LOGGING_LEVEL": "WARNING", **extra}


def _server_pid(env: dict[str, str]) -> int:
    state = Path(env["SEEDFIELD_CACHE_DIR"]) / "prefect-server" / "server.json"
    return int(json.loads(state.read_text())["pid"])


def seedfield(env: dict[str, str], *args: str) -> tuple[int, str]:
    proc = subprocess.run([sys.executable, "-m", "flows.cli", *args], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=900)
    return proc.returncode, proc.stdout + proc.stderr


def gated(env: dict[str, str], gate: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", GATED.format(repo=str(REPO)), *args], cwd=REPO,
                            env={**env, "GATE": str(gate)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def wait_for(path: Path, proc: subprocess.Popen, timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert proc.poll() is None, f"the command ended before {path.name}: {proc.stdout.read()[-3000:]}"
        assert time.monotonic() < deadline, f"no {path.name} within {timeout_s} s"
        time.sleep(0.05)


def lose_api(env: dict[str, str], gate: Path, *args: str) -> tuple[int, str]:
    """Run ``args`` gated; at the gate SIGKILL its local Prefect server; open the gate; its end."""
    proc = gated(env, gate, *args)
    wait_for(Path(f"{gate}.reached"), proc)
    pid = _server_pid(env)
    os.killpg(pid, signal.SIGKILL)
    gate.touch()
    out, _ = proc.communicate(timeout=900)
    return proc.returncode, out


def assert_one_line_exit(rc: int, out: str, command: str) -> None:
    if os.environ.get("SEEDFIELD_TEST_SHOW"):
        Path(os.environ["SEEDFIELD_TEST_SHOW"]).write_text(out)
    lines = [line for line in out.splitlines() if line.strip()]
    assert rc == 3, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    assert lines[-1].startswith("error: lost the Prefect API at http://127.0.0.1:"), lines[-1]
    assert f"during `seedfield {command}`" in lines[-1] and "re-run the same command to resume" in lines[-1], lines[-1]


@pytest.fixture
def stop_servers(tmp_path, monkeypatch):
    """Stop every local server the test's commands started (each cache dir has its own); the
    session's SEEDFIELD_CACHE_DIR is restored afterwards (by monkeypatch)."""
    yield
    from flows import local_server

    for cache in tmp_path.glob("cache-*"):
        monkeypatch.setenv("SEEDFIELD_CACHE_DIR", str(cache))
        local_server.stop()


def _config(tmp: Path, name: str, **extra: object) -> Path:
    root = tmp / name
    return write_toml(tmp / f"{name}.toml", {
        "archive.source": str(tmp / "archive"), "stores.raw": str(root / "raw.zarr"),
        "stores.seedings": str(root / "seedings.zarr"), "stores.registry": str(root / "models"),
        "ingest.files_per_task": 1, "dask.inline_max_jobs": 100, "seeding.bin_size": 8, "seeding.upsampling": 4,
        "train.architecture": "raseedgan", "train.epochs": EPOCHS, "train.n_features": 8, "train.n_res_blocks": 1,
        "train.batch_size": 4, "train.checkpoint_every": 1, "train.device": "cpu", "split.slot_wait_s": 60, **extra})


def test_ingest_that_loses_its_api_says_so_in_one_line_and_its_rerun_completes(tmp_path, stop_servers):
    from tests.test_crash_safety import _chunks_and_markers

    write_sample_archive(tmp_path / "archive", START, N_DAYS, region=SMALL_REGION)
    period = ["--start", str(START), "--end", str(TRAIN_END)]
    ref_env = _env(tmp_path, "ref")
    rc, out = seedfield(ref_env, "ingest", *period, "--config", str(_config(tmp_path, "ref")))
    assert rc == 0, out[-3000:]

    env = _env(tmp_path, "lost")
    cfg = str(_config(tmp_path, "lost"))
    rc, out = lose_api(env, tmp_path / "gate", "ingest", *period, "--config", cfg)
    assert_one_line_exit(rc, out, "ingest")
    rc, out = seedfield(env, "ingest", *period, "--config", cfg)  # a new local server starts
    assert rc == 0, out[-3000:]
    got, want = (_chunks_and_markers(str(tmp_path / n / "raw.zarr")) for n in ("lost", "ref"))
    strip = lambda marks: {d: {k: v for k, v in m.items() if k != "source"} for d, m in marks.items()}  # noqa: E731
    assert got[0] == want[0]
    assert strip(got[1]) == strip(want[1])


def test_training_that_loses_its_api_keeps_training_and_its_rerun_resumes(tmp_path, stop_servers):
    from storage.model_registry import ModelRegistry
    from tests.test_crash_safety_ops import _same_weights, _weights

    write_sample_archive(tmp_path / "archive", START, N_DAYS, region=SMALL_REGION)
    period = ["--start", str(START), "--end", str(TRAIN_END)]
    setup = _env(tmp_path, "ref")
    ref = str(_config(tmp_path, "ref"))
    for command in ("ingest", "prepare"):
        rc, out = seedfield(setup, command, *period, "--config", ref)
        assert rc == 0, out[-3000:]
    import shutil

    for name in ("lost", "killed"):
        shutil.copytree(tmp_path / "ref", tmp_path / name)
    train = ["train", *period, "--model-id", "m"]
    rc, out = seedfield(setup, *train, "--config", ref)
    assert rc == 0, out[-3000:]
    expected = _weights(tmp_path / "ref" / "models", "m")

    # the API is lost after the first epoch's checkpoint: the training goes on to its last epoch
    env = _env(tmp_path, "lost")
    cfg = str(_config(tmp_path, "lost"))
    rc, out = lose_api(env, tmp_path / "gate-lost", *train, "--config", cfg)
    assert_one_line_exit(rc, out, "train")
    workdir = ModelRegistry(tmp_path / "lost" / "models").workdir("m")
    assert (workdir / f"epoch-{EPOCHS:04d}.pt").exists(), sorted(p.name for p in workdir.iterdir())
    assert not (tmp_path / "lost" / "models" / "m" / "model.pt").exists()  # nothing published yet
    last = (workdir / "last.pt").stat().st_mtime_ns
    rc, out = seedfield(env, *train, "--config", cfg)
    assert rc == 0, out[-3000:]
    assert (workdir / "last.pt").stat().st_mtime_ns == last  # resumed after its last epoch: trained none
    assert _same_weights(_weights(tmp_path / "lost" / "models", "m"), expected)

    # the training process SIGKILLed at its first checkpoint; the re-run with Prefect's temporary
    # server takes over the dead run's slot at once and resumes
    env = _env(tmp_path, "killed")
    cfg = str(_config(tmp_path, "killed"))
    gate = tmp_path / "gate-killed"
    proc = gated(env, gate, *train, "--config", cfg)
    wait_for(Path(f"{gate}.reached"), proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    slots = list((tmp_path / "killed" / "models" / ".seedfield-locks").glob("training*.lock"))
    assert slots, "the killed training left no slot behind: the re-run proves nothing"
    t0 = time.monotonic()
    rc, out = seedfield({**env, "SEEDFIELD_LOCAL_SERVER": "0"}, *train, "--config", cfg)
    assert rc == 0, out[-3000:]
    assert time.monotonic() - t0 < 600
    assert _same_weights(_weights(tmp_path / "killed" / "models", "m"), expected)

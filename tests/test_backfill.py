"""Backfills: killed with SIGKILL part way and started again, they end with every day written once
and byte-identical to an uninterrupted backfill; overlapping runs are refused by the lock."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from flows.backfill import backfill_flow, chunk_ranges
from flows.cli import EXIT_BAD_INPUT, app
from flows.config import ConfigError, load_config
from flows.ingest import ingest_flow
from flows.locks import LOCK_DIR, LockError, acquire
from flows.prepare import prepare_flow
from flows.states import run_flow
from flows.train import train_flow
from pipeline.sample_archive import write_sample_archive
from storage.step_store import StepStore
from tests.helpers_flows import SMALL_REGION, stores, tree_digest, write_toml

REPO = Path(__file__).resolve().parents[1]
START = dt.date(2015, 3, 1)
N_DAYS = 6
CHUNK = 2
DAYS = [START + dt.timedelta(days=i) for i in range(N_DAYS)]
REGION = SMALL_REGION
runner = CliRunner()


@pytest.fixture(scope="module")
def sample(tmp_path_factory, dask_cluster, prefect_server):
    """A regional sample archive and a tiny published model (trained on its own stores)."""
    root = tmp_path_factory.mktemp("backfill")
    write_sample_archive(root / "archive", START, N_DAYS, region=REGION)
    common = {
        "archive.source": str(root / "archive"), "stores.registry": str(root / "models"),
        "dask.address": dask_cluster.scheduler_address,
        "seeding.bin_size": 8, "seeding.upsampling": 4, "seeding.sensors_per_bin": 6,
        "train.architecture": "raseedgan", "train.epochs": 1, "train.n_features": 8, "train.n_res_blocks": 1, "train.batch_size": 4,
        # CPU kernels block a batch differently by its size (~1e-6 °C): one day per forward pass
        # makes each day's bytes independent of which other days a (resumed) run computes with it.
        "infer.batch_size": 1,
    }
    cfg = load_config(None, {**common, **stores(root, "train")})
    assert run_flow(ingest_flow, cfg, DAYS[0], DAYS[3])["ok"]
    assert run_flow(prepare_flow, cfg, DAYS[0], DAYS[3])["ok"]
    train_flow(cfg, DAYS[0], DAYS[3], model_id="tiny")
    return root, common


def day_chunks(path: str) -> dict[str, str]:
    """sha256 of every chunk of the store's daily variables (``sst/c/3/0/0`` …)."""
    names = set(StepStore(path).step_names())
    return {k: v for k, v in tree_digest(Path(path)).items() if k.split("/")[0] in names and "/c/" in k}


def markers(path: str) -> dict[str, dict[str, Any]]:
    """Commit markers without their time stamp and store-path fields."""
    return {d.isoformat(): {k: v for k, v in m.items() if k not in ("written_at", "source")}
            for d, m in StepStore(path).markers().items()}


def test_chunks_cover_the_period_in_order():
    assert chunk_ranges(DAYS[0], DAYS[-1], 4) == [(DAYS[0], DAYS[3]), (DAYS[4], DAYS[5])]
    with pytest.raises(ConfigError, match="chunk_days"):
        chunk_ranges(DAYS[0], DAYS[-1], 0)


#: ``seedfield backfill`` that, when its second chunk starts, says so in a file and waits to be killed.
PAUSE_AT_SECOND_CHUNK = """
import sys, time
import flows.backfill
_done_days, _calls, _paused = flows.backfill.done_days, [0], sys.argv[1]
def _pausing(*args, **kwargs):
    _calls[0] += 1
    if _calls[0] == 2:
        open(_paused, "w").write("paused")
        time.sleep(3600)
    return _done_days(*args, **kwargs)
flows.backfill.done_days = _pausing
from flows.cli import main
sys.argv = ["seedfield", *sys.argv[2:]]
main()
"""


@pytest.mark.slow  # three backfills of 9 days through the flows: about a minute
def test_killed_backfill_resumes_to_the_same_bytes_and_refuses_overlaps(sample, tmp_path):
    from prefect.settings import PREFECT_API_URL

    root, common = sample
    # 1. the reference: an uninterrupted backfill
    ref = load_config(None, {**common, **stores(root, "a")})
    result = run_flow(backfill_flow, ref, DAYS[0], DAYS[-1], chunk_days=CHUNK)
    assert result["ok"] and result["summary"]["ok"] == N_DAYS and len(result["chunks"]) == 3

    # 2. the same backfill in another process, SIGKILLed once its first chunk is committed: the
    #    child stops at the start of its second chunk (an observable event, not a deadline, so a
    #    fast machine cannot finish the backfill before the kill)
    cfg_b = {**common, **stores(root, "b")}
    toml = write_toml(tmp_path / "b.toml", cfg_b)
    out_b = StepStore(cfg_b["stores.output"])
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value()), "PREFECT_LOGGING_LEVEL": "WARNING"}
    log = tmp_path / "killed.log"
    args = ["backfill", "--start", str(DAYS[0]), "--end", str(DAYS[-1]), "--chunk-days", str(CHUNK), "--config", str(toml)]
    paused = tmp_path / "paused"
    with log.open("w") as fh:
        proc = subprocess.Popen([sys.executable, "-c", PAUSE_AT_SECOND_CHUNK, str(paused), *args], cwd=REPO, env=env,
                                stdout=fh, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 600  # a bound for a loaded machine; the kill itself waits on the event
        while not paused.exists():
            assert proc.poll() is None, f"backfill exited early ({proc.returncode}):\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"second chunk not reached in time:\n{log.read_text()[-3000:]}"
            time.sleep(0.1)
        assert all((out_b.marker(d) or {}).get("status") == "ok" for d in DAYS[:CHUNK])
        # 3. while it runs, a second backfill over overlapping days is refused, naming the holder
        r = runner.invoke(app, ["backfill", "--start", str(DAYS[1]), "--end", str(DAYS[3]), "--config", str(toml)])
        said = " ".join(r.output.split())
        assert r.exit_code == EXIT_BAD_INPUT, r.output
        assert "are locked by backfill" in said and f"pid {proc.pid} " in said, said
    finally:
        proc.kill()
        proc.wait(timeout=30)
    done_at_kill = [d for d in DAYS if (out_b.marker(d) or {}).get("status") == "ok"]
    assert len(done_at_kill) < N_DAYS, "the backfill finished before it could be killed"
    assert len(list((root / "b" / LOCK_DIR).glob("*.lock"))) == 3  # raw, seedings, reconstruction
    first = {d: out_b.marker(d)["written_at"] for d in DAYS[:CHUNK]}
    first_files = {p: p.stat().st_mtime_ns for p in (root / "b" / "recon.zarr" / "sst" / "c").rglob("*")
                   if p.is_file() and int(p.relative_to(root / "b" / "recon.zarr" / "sst" / "c").parts[0]) < CHUNK}

    # 4. started again: the dead run's locks are taken over, done chunks skipped, the rest written
    result = run_flow(backfill_flow, load_config(toml), DAYS[0], DAYS[-1], chunk_days=CHUNK)
    assert result["ok"], result
    assert len(result["took_over_locks"]) == 3 and all(f"pid {proc.pid} " in w for w in result["took_over_locks"])
    assert result["chunks"][0]["outcome"] == "skipped (all days done)"
    assert result["summary"]["skipped"] >= CHUNK and result["summary"]["ok"] + result["summary"]["skipped"] == N_DAYS
    assert not list((root / "b" / LOCK_DIR).glob("*.lock"))

    # every day once, and the same bytes as the uninterrupted run
    for name in ("raw.zarr", "seedings.zarr", "recon.zarr"):
        a, b = str(root / "a" / name), str(root / "b" / name)
        assert StepStore(b).steps == DAYS and StepStore(b).committed_steps() == DAYS
        assert day_chunks(b) == day_chunks(a) and len(day_chunks(a)) >= N_DAYS, name
        assert markers(b) == markers(a), name
    assert {d: out_b.marker(d)["written_at"] for d in DAYS[:CHUNK]} == first  # not rewritten
    assert {p: p.stat().st_mtime_ns for p in first_files} == first_files


def test_locks_refuse_overlaps_allow_disjoint_take_over_dead_holders(tmp_path):
    store = str(tmp_path / "recon.zarr")
    d = [START + dt.timedelta(days=i) for i in range(20)]
    held = acquire(store, d[0], d[4], "backfill one")
    with pytest.raises(LockError, match=r"locked by backfill one \(pid \d+ on "):
        acquire(store, d[4], d[8], "backfill two")
    disjoint = acquire(store, d[5], d[8], "backfill three")
    other_store = acquire(str(tmp_path / "other.zarr"), d[0], d[4], "other store")
    for lock in (disjoint, other_store, held):
        lock.release()
    again = acquire(store, d[0], d[8], "after release")
    again.release()

    # a holder that died without releasing: its lock is taken over with a note
    code = ("import datetime as dt, os; from flows.locks import acquire; "
            f"acquire({store!r}, dt.date.fromisoformat('{d[10]}'), dt.date.fromisoformat('{d[12]}'), 'crashed run'); "
            "os._exit(0)")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
    assert len(list((tmp_path / LOCK_DIR).glob("*.lock"))) == 1
    taken = acquire(store, d[11], d[11], "new run")
    assert len(taken.took_over) == 1 and "crashed run" in taken.took_over[0]
    taken.release()

    # a holder on another host cannot be checked from here: held, and the message says what to do
    foreign = acquire(store, d[15], d[16], "remote run")
    body = json.loads(foreign.path.read_text())
    foreign.path.write_text(json.dumps({**body, "hostname": "elsewhere"}))
    with pytest.raises(LockError, match="another host"):
        acquire(store, d[16], d[18], "local run")
    foreign.path.unlink()


def test_the_training_slot_waits_says_who_holds_it_gives_up_and_takes_over_a_dead_holder(tmp_path):
    """One training at a time per registry: a live holder makes the next wait (saying who holds it)
    and give up after the configured time; a holder that died (SIGKILL) is taken over at once —
    where a Prefect tag concurrency slot stayed held until its lease expired, for ever on a
    temporary server."""
    from flows.locks import slot

    said: list[str] = []
    with slot(tmp_path, "training", "train a", wait_s=0):
        t0 = time.monotonic()
        with pytest.raises(LockError, match=r"gave up after 1 s waiting for the training slot .* train a \(pid"):
            with slot(tmp_path, "training", "train b", wait_s=1.0, poll_s=0.2, on_wait=said.append):
                pass
        assert 1.0 <= time.monotonic() - t0 < 5
    assert len(said) == 1 and "held by train a" in said[0]
    with slot(tmp_path, "training", "after release", wait_s=0):
        pass

    code = (f"import os, signal; from flows.locks import slot; s = slot({str(tmp_path)!r}, 'training', 'killed run', 0); "
            "s.__enter__(); os.kill(os.getpid(), signal.SIGKILL)")
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == -9
    said.clear()
    t0 = time.monotonic()
    with slot(tmp_path, "training", "next run", wait_s=60, on_wait=said.append):
        assert time.monotonic() - t0 < 5
    assert len(said) == 1 and "took over the training slot from killed run" in said[0]

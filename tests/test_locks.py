"""Day-range locks under contention (flows/locks.py): processes racing for overlapping days
(exactly one wins), and a lock left by a pid that a later process reuses (taken over)."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flows.locks import LOCK_DIR, LockError, acquire

REPO = Path(__file__).resolve().parents[1]
DAY = dt.date(2020, 1, 1)

RACER = """
import datetime as dt, os, sys, time
from flows.locks import LockError, acquire
store, go, out = sys.argv[1:4]
while not os.path.exists(go):
    time.sleep(0.001)
try:
    lock = acquire(store, dt.date(2020, 1, 1), dt.date(2020, 1, 9), "racer " + out)
except LockError:
    open(out, "w").write("refused")
else:
    open(out, "w").write("won")
    time.sleep(3)  # hold it while the others try
    lock.release()
"""


@pytest.mark.slow  # ~7 s: six real processes start, race, and the winner holds the lock 3 s
def test_of_processes_racing_for_overlapping_days_exactly_one_wins(tmp_path):
    store, go = str(tmp_path / "recon.zarr"), tmp_path / "go"
    outs = [tmp_path / f"racer-{i}" for i in range(6)]
    procs = [subprocess.Popen([sys.executable, "-c", RACER, store, str(go), str(o)], cwd=REPO) for o in outs]
    time.sleep(4)  # every racer imported and spinning on the start line
    go.touch()
    for p in procs:
        assert p.wait(timeout=120) == 0
    results = sorted(o.read_text() for o in outs)
    assert results == ["refused"] * 5 + ["won"], results
    assert not list((tmp_path / LOCK_DIR).glob("*.lock"))  # the winner released it


def test_a_lock_whose_pid_was_reused_by_a_later_process_is_taken_over(tmp_path):
    """The lock names a pid that is running now, but a process that started after the lock was
    written: that is pid reuse, the holder is gone, the lock is taken over with a note."""
    store = str(tmp_path / "recon.zarr")
    held = acquire(store, DAY, DAY + dt.timedelta(days=3), "long gone run")
    body = json.loads(held.path.read_text())
    assert body["pid"] == os.getpid()
    held.path.write_text(json.dumps({**body, "process_started": body["process_started"] - 3600}))
    taken = acquire(store, DAY + dt.timedelta(days=2), DAY + dt.timedelta(days=5), "new run")
    assert len(taken.took_over) == 1 and "long gone run" in taken.took_over[0]
    assert not held.path.exists()
    taken.release()
    # the same lock with its true start time is a live holder: refused
    live = acquire(store, DAY, DAY, "live run")
    try:
        with pytest.raises(LockError, match="live run"):
            acquire(store, DAY, DAY, "second run")
    finally:
        live.release()

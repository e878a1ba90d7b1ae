"""Crash safety with real SIGKILLs: a process killed at a chosen write (store creation
included) leaves a state that the next run of the same command repairs by itself, ending
value-identical to an uninterrupted run, and no day is ever visible with wrong data.

The killed process is a real ``seedfield`` command (or a real store creation) in a child
process that SIGKILLs itself at its n-th write to a Zarr store (the hook counts the writes of
``zarr.storage.LocalStore.set`` in that process only; nothing of the store is replaced)."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from storage import cf
from storage.step_store import StaticVar, StepStore, StepVar, creating_note, date_range
from tests.helpers_flows import tree_digest

REPO = Path(__file__).resolve().parents[1]

#: Child-process prelude: SIGKILL this process at its KILL_AT-th Zarr write.
KILLER = """
import asyncio, os, signal, sys
import zarr.storage
_n = [0]
_set = zarr.storage.LocalStore.set
async def _killing_set(self, key, value):
    _n[0] += 1
    if _n[0] == int(os.environ["KILL_AT"]):
        os.kill(os.getpid(), signal.SIGKILL)
    return await _set(self, key, value)
zarr.storage.LocalStore.set = _killing_set
"""

CREATE = KILLER + """
import numpy as np
sys.path.insert(0, {repo!r})
from tests.test_crash_safety import make_store
make_store(sys.argv[1])
"""

COMMAND = KILLER + """
sys.path.insert(0, {repo!r})
from flows.cli import main
sys.argv = ["seedfield", *sys.argv[1:]]
main()
"""


def make_store(path: str) -> StepStore:
    days = date_range(dt.date(2020, 1, 1), dt.date(2020, 1, 4))
    rng = np.random.default_rng(0)
    return StepStore.create(
        path, days,
        {"lat": StaticVar(("lat",), np.arange(6.0)), "lon": StaticVar(("lon",), np.arange(8.0))},
        {"sst": StepVar(("time", "lat", "lon"), "float32", np.nan, {"units": "degree_Celsius"}),
         "count": StepVar(("time", "lat", "lon"), "int16", 0)},
        {"land_mask": StaticVar(("lat", "lon"), (rng.random((6, 8)) < 0.3).astype("int8"))},
        {"title": "crash test"},
    )


def run_killed(script: str, kill_at: int, *args: str, env: dict[str, str] | None = None) -> int:
    """Run ``script`` (formatted with the repo path) in a child that dies at write ``kill_at``."""
    proc = subprocess.run([sys.executable, "-c", script.format(repo=str(REPO)), *args], cwd=REPO,
                          env={**os.environ, **(env or {}), "KILL_AT": str(kill_at)}, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode in (0, -9), proc.stderr[-3000:]
    return proc.returncode


@pytest.mark.slow  # ~30-60 s: eleven killed processes and their re-runs
def test_store_creation_killed_at_every_write_is_repaired_by_the_next_create(tmp_path):
    """Killed at each of its writes in turn, an interrupted creation is never taken for a store
    (``exists`` is False, its note is there) and the next ``create`` ends byte-identical to an
    uninterrupted one; a store made by anything else is never removed."""
    ref = make_store(str(tmp_path / "ref.zarr"))
    expected = tree_digest(Path(ref.path))
    kills = 0
    for k in (1, 2, 3, 5, 7, 9, 11, 13, 15, 17, 19, 40):
        path = tmp_path / f"k{k}.zarr"
        if run_killed(CREATE, k, str(path)) == 0:
            assert k == 40  # this store's creation makes 19 writes
            continue
        kills += 1
        assert not StepStore.exists(str(path)) and Path(creating_note(str(path))).exists(), k
        make_store(str(path))  # the re-run
        assert StepStore.exists(str(path)) and not Path(creating_note(str(path))).exists()
        assert tree_digest(path) == expected, k
    assert kills == 11, kills
    foreign = tmp_path / "foreign.zarr"
    import zarr

    zarr.open_group(str(foreign), mode="w").create_array("x", shape=(2,), dtype="f4")
    from storage.step_store import StoreError

    with pytest.raises(StoreError, match="already exists"):
        make_store(str(foreign))
    assert (foreign / "x" / "zarr.json").exists()
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(StoreError, match="holds other files"):
        make_store(str(other))
    assert (other / "keep.txt").read_text() == "mine" and not Path(creating_note(str(other))).exists()


DAYS = [dt.date(2015, 3, 1) + dt.timedelta(days=i) for i in range(3)]


def _chunks_and_markers(path: str) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
    store = StepStore(path)
    chunks = {k: v for k, v in tree_digest(Path(path)).items() if "/c/" in k or k.endswith("/c")}
    marks = {str(d): {k: v for k, v in m.items() if k != "written_at"} for d, m in store.markers().items()}
    return chunks, marks


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_server")
def test_ingest_and_prepare_killed_while_creating_their_stores_are_repaired_by_the_rerun(tmp_path, dask_cluster):
    """``seedfield ingest`` and ``seedfield prepare`` SIGKILLed at several writes of their
    store's creation: the re-run of the same command exits 0 and the store equals an
    uninterrupted run's, chunk by chunk and marker by marker."""
    from prefect.settings import PREFECT_API_URL
    from typer.testing import CliRunner

    from flows.cli import app
    from pipeline.sample_archive import write_sample_archive
    from tests.helpers_flows import SMALL_REGION, write_toml

    write_sample_archive(tmp_path / "archive", DAYS[0], len(DAYS), region=SMALL_REGION)
    args = ["ingest", "--start", str(DAYS[0]), "--end", str(DAYS[-1])]

    def toml(name: str) -> Path:
        return write_toml(tmp_path / f"{name}.toml", {
            "archive.source": str(tmp_path / "archive"), "stores.raw": str(tmp_path / name / "raw.zarr"),
            "stores.seedings": str(tmp_path / name / "seedings.zarr"), "dask.address": dask_cluster.scheduler_address})

    runner = CliRunner()
    ref = runner.invoke(app, [*args, "--config", str(toml("ref"))])
    assert ref.exit_code == 0, ref.output
    expected = _chunks_and_markers(str(tmp_path / "ref" / "raw.zarr"))
    env = {"PREFECT_API_URL": str(PREFECT_API_URL.value()), "PREFECT_LOGGING_LEVEL": "WARNING"}
    for k in (1, 4, 9):
        cfg = toml(f"k{k}")
        assert run_killed(COMMAND, k, *args, "--config", str(cfg), env=env) == -9
        store = str(tmp_path / f"k{k}" / "raw.zarr")
        assert not StepStore.exists(store)
        again = runner.invoke(app, [*args, "--config", str(cfg)])
        assert again.exit_code == 0, again.output
        assert _chunks_and_markers(store)[0] == expected[0], k
        assert {d: {**m, "source": ""} for d, m in _chunks_and_markers(store)[1].items()} == \
            {d: {**m, "source": ""} for d, m in expected[1].items()}, k

    # prepare, killed while it creates the seedings store, from the reference raw store
    prep = ["prepare", "--start", str(DAYS[0]), "--end", str(DAYS[-1])]

    def prep_toml(name: str) -> Path:
        return write_toml(tmp_path / f"p{name}.toml", {
            "stores.raw": str(tmp_path / "ref" / "raw.zarr"), "stores.seedings": str(tmp_path / f"p{name}" / "s.zarr"),
            "seeding.bin_size": 8, "seeding.upsampling": 4, "dask.address": dask_cluster.scheduler_address})

    ref = runner.invoke(app, [*prep, "--config", str(prep_toml("ref"))])
    assert ref.exit_code == 0, ref.output
    expected = _chunks_and_markers(str(tmp_path / "pref" / "s.zarr"))
    assert len(expected[0]) > 3 * len(DAYS)
    for k in (1, 6):
        cfg = prep_toml(f"k{k}")
        assert run_killed(COMMAND, k, *prep, "--config", str(cfg), env=env) == -9
        assert not StepStore.exists(str(tmp_path / f"pk{k}" / "s.zarr"))
        again = runner.invoke(app, [*prep, "--config", str(cfg)])
        assert again.exit_code == 0, again.output
        assert _chunks_and_markers(str(tmp_path / f"pk{k}" / "s.zarr")) == expected, k


REWRITE = KILLER + """
import datetime as dt
import numpy as np
sys.path.insert(0, {repo!r})
from storage.step_store import StepStore
store = StepStore(sys.argv[1])
store.write_step(dt.date(2020, 1, 2), {{"sst": np.full((6, 8), 2.0, "f4"), "count": np.full((6, 8), 2, "i2")}})
store.commit(dt.date(2020, 1, 2), {{"status": "ok", "version": 2}})
"""


def test_a_day_killed_while_being_replaced_is_never_shown_half_written(tmp_path):
    """A committed day whose replacement is killed after its first chunk: readers no longer see
    the day (its marker says ``rewriting``), and the re-run commits the new version whole."""
    day = dt.date(2020, 1, 2)
    store = make_store(str(tmp_path / "s.zarr"))
    store.write_step(day, {"sst": np.full((6, 8), 1.0, "f4"), "count": np.full((6, 8), 1, "i2")})
    store.commit(day, {"status": "ok", "version": 1})
    # write 1: the step's status flag (rewriting), 2: sst, 3: count
    assert run_killed(REWRITE, 3, store.path) == -9
    store.refresh()
    half = store.read_step(day, ["sst", "count", "status"])
    assert (half["sst"] == 2.0).all() and (half["count"] == 1).all()  # the kill fell between the two
    assert store.marker(day)["status"] == "rewriting" and day not in store.committed_steps()
    assert half["status"] == cf.STATUS_CODES["rewriting"]
    assert store.open_dataset().sizes["time"] == 0
    assert run_killed(REWRITE, 99, store.path) == 0  # the re-run
    store.refresh()
    assert store.committed_steps() == [day] and store.marker(day)["version"] == 2
    assert (store.read_step(day, ["count"])["count"] == 2).all()
    assert store.read_step(day, ["status"])["status"] == cf.STATUS_CODES["ok"]


EXTEND = KILLER + """
import datetime as dt
sys.path.insert(0, {repo!r})
from storage.step_store import StepStore
StepStore(sys.argv[1]).extend([dt.date(2020, 1, 9)])
"""


@pytest.mark.slow  # ~10-20 s: six killed processes
def test_a_store_killed_while_growing_is_finished_by_the_next_growth(tmp_path):
    """``extend`` killed at each of its writes (the arrays' and the time coordinate's metadata,
    the coordinate's new values): the next ``extend`` of the same steps ends with the same time
    axis as an uninterrupted one, even when the killed run had already made the axis long
    enough (its new values unwritten, read as fill values)."""
    ref = make_store(str(tmp_path / "ref.zarr"))
    ref.extend([dt.date(2020, 1, 9)])
    want = np.asarray(ref.group["time"][:])
    assert ref.steps[-1] == dt.date(2020, 1, 9)
    killed_somewhere = 0
    for k in range(1, 7):
        path = str(tmp_path / f"k{k}.zarr")
        make_store(path)
        killed_somewhere += run_killed(EXTEND, k, path) == -9
        store = StepStore(path)
        store.extend([dt.date(2020, 1, 9)])
        np.testing.assert_array_equal(np.asarray(store.group["time"][:]), want, err_msg=f"killed at write {k}")
        assert store.steps == ref.steps and store.array("sst").shape == ref.array("sst").shape
    assert killed_somewhere >= 3  # the kills really landed inside extend

"""A full disk and a read-only store, on a real (tmpfs) file system: the command says so in one
line per day or one line in all, exits 3 (some days done) or 2 (none), shows no day with wrong
data, and the re-run once there is room ends value-identical to an uninterrupted store.

Mounting a tmpfs needs root (or CAP_SYS_ADMIN); where it is not allowed the test is skipped
and says why."""

from __future__ import annotations

import datetime as dt
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from flows.cli import EXIT_BAD_INPUT, EXIT_PARTIAL
from pipeline.sample_archive import write_sample_archive
from storage.step_store import StepStore
from tests.helpers_flows import SMALL_REGION, run_cli

pytestmark = [pytest.mark.usefixtures("prefect_server"), pytest.mark.slow]
START, DAYS = dt.date(2020, 1, 1), 6


def _mount(path: Path, options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    disk = tmp_path / "disk"
    disk.mkdir()
    proc = _mount(disk, "size=48k")
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip()}): needs root")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def _ingest(archive: Path, store: Path, dask: str) -> tuple[int, str]:
    """The real ``seedfield ingest`` in its own process, as an operator runs it."""
    end = START + dt.timedelta(days=DAYS - 1)
    code, lines = run_cli("ingest", "--archive", str(archive), "--raw", str(store), "--start", str(START),
                          "--end", str(end), "--dask-address", dask, cwd=archive.parent)
    return code, "\n".join(lines)


def test_a_full_disk_then_a_read_only_store_lose_nothing(tmp_path, small_disk, dask_cluster):
    archive = tmp_path / "archive"
    write_sample_archive(archive, START, DAYS, region=SMALL_REGION)
    reference = tmp_path / "reference.zarr"
    assert _ingest(archive, reference, dask_cluster.scheduler_address)[0] == 0
    ref = StepStore(str(reference))
    days = ref.steps_between(START, START + dt.timedelta(days=DAYS - 1))

    store = small_disk / "raw.zarr"
    code, output = _ingest(archive, store, dask_cluster.scheduler_address)
    assert code in (EXIT_PARTIAL, EXIT_BAD_INPUT), output
    assert "No space left on device" in output and "Traceback" not in output
    full = StepStore(str(store))
    stored = [d for d in days if (full.marker(d) or {}).get("status") == "ok"]
    assert len(stored) < DAYS
    for d in stored:  # what is committed is right; what is not is not shown as data
        np.testing.assert_array_equal(full.read_step(d, ["sst"])["sst"], ref.read_step(d, ["sst"])["sst"])

    assert _mount(small_disk, "remount,size=64m").returncode == 0  # the operator frees room
    code, output = _ingest(archive, store, dask_cluster.scheduler_address)
    assert code == 0, output
    again = StepStore(str(store))
    for d in days:
        assert again.marker(d)["status"] == "ok"
        np.testing.assert_array_equal(again.read_step(d, ["sst"])["sst"], ref.read_step(d, ["sst"])["sst"])
    np.testing.assert_array_equal(again.read_static("land_mask"), ref.read_static("land_mask"))

    assert _mount(small_disk, "remount,ro").returncode == 0
    code, output = _ingest(archive, store, dask_cluster.scheduler_address)
    lines = output.splitlines()
    assert code == EXIT_BAD_INPUT and len(lines) == 1, output
    assert lines[0] == f"error: {store}: {store} is read-only; the store cannot be written"

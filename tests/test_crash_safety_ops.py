"""Crash safety of the operational commands with real SIGKILLs: ``seedfield train`` killed while
it trains and while it publishes to the registry, and ``seedfield daily`` killed at a spread of
its writes (the output store's creation and growth, a day's write, its marker). Each re-run of
the same command exits 0 and ends value-identical to an uninterrupted run: the same weights,
the same chunks and markers.

The killed command runs in a child process that SIGKILLs itself at a chosen call (a Zarr write
counted as in :mod:`tests.test_crash_safety`, an optimiser step, the registry's metadata write).
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from flows.cli import app
from pipeline.sample_archive import write_sample_archive
from storage.model_registry import ModelRegistry
from tests.helpers_flows import SMALL_REGION, write_toml
from tests.test_crash_safety import COMMAND, KILLER, _chunks_and_markers, run_killed

pytestmark = [pytest.mark.usefixtures("prefect_server"), pytest.mark.slow]
START = dt.date(2020, 1, 1)
N_DAYS = 12
TRAIN_END = START + dt.timedelta(days=8)
DAILY_DAY = START + dt.timedelta(days=N_DAYS - 1)
TINY = {"iterations": 6, "batch_size": 4, "features": 8, "depth": 1, "window_steps": 2, "val_every": 3}

#: SIGKILL at the KILL_AT-th optimiser step or at the registry's metadata write (after the
#: checkpoint itself was replaced), whichever the environment asks for.
TRAIN_KILLER = KILLER.replace("zarr.storage.LocalStore.set = _killing_set", "") + """
import torch
from storage.model_registry import ModelRegistry
if os.environ.get("KILL_WHERE") == "step":
    _step = torch.optim.AdamW.step
    def _killing_step(self, *a, **k):
        _n[0] += 1
        if _n[0] == int(os.environ["KILL_AT"]):
            os.kill(os.getpid(), signal.SIGKILL)
        return _step(self, *a, **k)
    torch.optim.AdamW.step = _killing_step
else:
    def _killing_meta(self, model_id, meta):
        os.kill(os.getpid(), signal.SIGKILL)
    ModelRegistry.write_meta = _killing_meta
""" + COMMAND[len(KILLER):]


def _config(tmp: Path, name: str, dask: str) -> Path:
    root = tmp / name
    return write_toml(tmp / f"{name}.toml", {
        "archive.source": str(tmp / "archive"), "stores.raw": str(root / "raw.zarr"),
        "stores.seedings": str(root / "seedings.zarr"), "stores.output": str(root / "recon.zarr"),
        "stores.registry": str(root / "models"), "dask.address": dask,
        "seeding.bin_size": 8, "seeding.upsampling": 4, "train.architecture": "sensornet",
        **{f"sensornet.{k}": v for k, v in TINY.items()}})


def _weights(registry: Path, model_id: str) -> dict[str, torch.Tensor]:
    raw = torch.load(ModelRegistry(registry).checkpoint(model_id), map_location="cpu", weights_only=True)
    return raw["state_dict"]


def _same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_train_and_daily_killed_are_repaired_by_the_rerun(tmp_path, dask_cluster):
    from prefect.settings import PREFECT_API_URL

    runner = CliRunner()
    write_sample_archive(tmp_path / "archive", START, N_DAYS, region=SMALL_REGION)
    ref = _config(tmp_path, "ref", dask_cluster.scheduler_address)
    period = ["--start", str(START), "--end", str(DAILY_DAY - dt.timedelta(days=1))]
    for command in ("ingest", "prepare"):
        r = runner.invoke(app, [command, *period, "--config", str(ref)])
        assert r.exit_code == 0, r.output
    before_train = tmp_path / "before-train"
    shutil.copytree(tmp_path / "ref", before_train)
    train = ["train", "--start", str(START), "--end", str(TRAIN_END), "--model-id", "m"]
    r = runner.invoke(app, [*train, "--config", str(ref)])
    assert r.exit_code == 0, r.output
    expected = _weights(tmp_path / "ref" / "models", "m")
    before_daily = tmp_path / "before-daily"
    shutil.copytree(tmp_path / "ref", before_daily)
    daily = ["daily", "--date", str(DAILY_DAY)]
    r = runner.invoke(app, [*daily, "--config", str(ref)])
    assert r.exit_code == 0, r.output
    stores = ("raw.zarr", "seedings.zarr", "recon.zarr")
    expected_stores = {s: _chunks_and_markers(str(tmp_path / "ref" / s)) for s in stores}

    env = {"PREFECT_API_URL": str(PREFECT_API_URL.value()), "PREFECT_LOGGING_LEVEL": "WARNING"}
    # train: killed at its 3rd optimiser step, and while publishing (model.pt replaced, meta.json not)
    for name, where in (("t-step", "step"), ("t-publish", "publish")):
        shutil.copytree(before_train, tmp_path / name)
        cfg = _config(tmp_path, name, dask_cluster.scheduler_address)
        assert run_killed(TRAIN_KILLER, 3, *train, "--config", str(cfg), env={**env, "KILL_WHERE": where}) == -9
        again = runner.invoke(app, [*train, "--config", str(cfg)])
        assert again.exit_code == 0, (name, again.output)
        registry = ModelRegistry(tmp_path / name / "models")
        assert _same_weights(_weights(tmp_path / name / "models", "m"), expected), name
        assert registry.meta("m")["checkpoint_sha256"] == registry.fingerprint("m")
        assert registry.current() == "m"

    # daily: killed at its 1st, 3rd and 6th Zarr write in the command's own process (the
    # output store's growth and the day's reconstruction; ingest and prepare write on Dask)
    for k in (1, 3, 6):
        name = f"d{k}"
        shutil.copytree(before_daily, tmp_path / name)
        cfg = _config(tmp_path, name, dask_cluster.scheduler_address)
        assert run_killed(COMMAND, k, *daily, "--config", str(cfg), env=env) == -9
        again = runner.invoke(app, [*daily, "--config", str(cfg)])
        assert again.exit_code == 0, (k, again.output)
        for s in stores:
            got = _chunks_and_markers(str(tmp_path / name / s))
            assert got[0] == expected_stores[s][0], (k, s)
            strip = lambda marks: {d: {key: v for key, v in m.items() if key not in ("source", "model_sha256")}  # noqa: E731
                                   for d, m in marks.items()}
            assert strip(got[1]) == strip(expected_stores[s][1]), (k, s)

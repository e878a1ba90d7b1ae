"""Crash safety of the operational commands with real SIGKILLs: ``seedfield train`` killed while
it trains and while it publishes to the registry, ``seedfield daily`` and ``seedfield infer``
killed at a spread of their writes (the output store's creation and growth, a day's write, its
marker), ``seedfield compare`` killed in each network's training, at a publish and at its report. Each re-run of
the same command exits 0 and ends value-identical to an uninterrupted run: the same weights,
the same chunks and markers.

The killed command runs in a child process that SIGKILLs itself at a chosen call (a Zarr write
counted as in :mod:`tests.test_crash_safety`, an optimiser step, the registry's metadata write).
"""

from __future__ import annotations

import datetime as dt
import json
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

pytestmark = [pytest.mark.usefixtures("prefect_server"), pytest.mark.slow,
              pytest.mark.timeout(1800)]  # each kills and re-runs commands many times: 5–10 min on 2 cores
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


def _config(tmp: Path, name: str, dask: str, **extra: object) -> Path:
    root = tmp / name
    return write_toml(tmp / f"{name}.toml", {
        "archive.source": str(tmp / "archive"), "stores.raw": str(root / "raw.zarr"),
        "stores.seedings": str(root / "seedings.zarr"), "stores.output": str(root / "recon.zarr"),
        "stores.registry": str(root / "models"), "dask.address": dask,
        "seeding.bin_size": 8, "seeding.upsampling": 4, "train.architecture": "sensornet",
        **{f"sensornet.{k}": v for k, v in TINY.items()}, **extra})


def _weights(registry: Path, model_id: str) -> dict[str, torch.Tensor]:
    raw = torch.load(ModelRegistry(registry).checkpoint(model_id), map_location="cpu", weights_only=True)
    return raw["state_dict"] if "state_dict" in raw else raw["generator"]["state_dict"]  # SensorNet; the zoo


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

    # infer over nine days into a new store: killed while creating it (write 1), inside the first
    # days (5, 12) and late (30); the re-run ends with the same chunks and markers
    # (each run in its own process: the same torch threads, so the same floating-point sums)
    infer = ["infer", "--start", str(START), "--end", str(TRAIN_END), "--model", "m"]
    assert run_killed(COMMAND, 10**9, *infer, "--output", str(tmp_path / "ref" / "infer.zarr"), "--config", str(ref),
                      env=env) == 0
    expected_infer = _chunks_and_markers(str(tmp_path / "ref" / "infer.zarr"))
    assert len(expected_infer[1]) == 9
    for k in (1, 5, 12, 30):
        out = tmp_path / "ref" / f"infer-k{k}.zarr"
        args = [*infer, "--output", str(out), "--config", str(ref)]
        assert run_killed(COMMAND, k, *args, env=env) == -9, k
        assert run_killed(COMMAND, 10**9, *args, env=env) == 0, k
        got = _chunks_and_markers(str(out))
        assert got[0] == expected_infer[0], k
        assert strip(got[1]) == strip(expected_infer[1]), k


#: SIGKILL at the KILL_AT-th optimiser step of any architecture (Adam or AdamW), at the registry's
#: metadata write, or in the middle of writing the comparison's JSON report.
COMPARE_KILLER = KILLER.replace("zarr.storage.LocalStore.set = _killing_set", "") + """
import torch
from storage.model_registry import ModelRegistry
where = os.environ["KILL_WHERE"]
if where == "step":
    def _counting(step):
        def _killing_step(self, *a, **k):
            _n[0] += 1
            if _n[0] == int(os.environ["KILL_AT"]):
                os.kill(os.getpid(), signal.SIGKILL)
            return step(self, *a, **k)
        return _killing_step
    torch.optim.Adam.step = _counting(torch.optim.Adam.step)
    if not issubclass(torch.optim.AdamW, torch.optim.Adam):  # else its steps are Adam's, counted once
        torch.optim.AdamW.step = _counting(torch.optim.AdamW.step)
elif where == "publish":
    def _killing_meta(self, model_id, meta):
        os.kill(os.getpid(), signal.SIGKILL)
    ModelRegistry.write_meta = _killing_meta
else:
    import flows.compare
    def _killing_report(path, data, storage_options=None):
        with open(path + ".partial", "wb") as fh:
            fh.write(data[: len(data) // 2])
        os.kill(os.getpid(), signal.SIGKILL)
    flows.compare.write_bytes_atomic = _killing_report
""" + COMMAND[len(KILLER):]

#: What a comparison's row must repeat exactly (its timings and model id may differ).
SCORED = ("method", "parameters", "kept_epoch", "rmse", "psnr", "ssim", "hfen", "mae", "error")


def test_compare_killed_is_repaired_by_the_rerun(tmp_path, dask_cluster):
    """``seedfield compare`` (SensorNet and RaSeedGAN) killed while SensorNet trains, while the
    zoo network trains after SensorNet was published, while publishing, and while writing its
    report: the re-run exits 0 with the same scores and weights as an uninterrupted run, does not
    train again a model published before the kill, and no half-written report is ever in place."""
    from prefect.settings import PREFECT_API_URL

    runner = CliRunner()
    write_sample_archive(tmp_path / "archive", START, N_DAYS, region=SMALL_REGION)

    def config(name: str) -> Path:
        return _config(tmp_path, name, dask_cluster.scheduler_address, **{
            "compare.architectures": ["sensornet", "raseedgan"], "compare.epochs": 2, "compare.pretrain_epochs": 1,
            "compare.max_batches_per_epoch": 2, "compare.paper_sizes": False, "evaluate.kriging": False,
            "evaluate.dineof_steps": 0, "train.n_features": 8, "train.n_res_blocks": 1, "train.batch_size": 2})

    ref = config("ref")
    period = ["--start", str(START), "--end", str(START + dt.timedelta(days=N_DAYS - 1))]
    for command in ("ingest", "prepare"):
        r = runner.invoke(app, [command, *period, "--config", str(ref)])
        assert r.exit_code == 0, r.output
    before = tmp_path / "before-compare"
    shutil.copytree(tmp_path / "ref", before)
    compare = ["compare", *period]
    env = {"PREFECT_API_URL": str(PREFECT_API_URL.value()), "PREFECT_LOGGING_LEVEL": "WARNING"}
    # every compare runs in its own process, as an operator's would: the same torch threads, so
    # the same floating-point sums (an in-process run may differ in the last bits)
    whole = {**env, "KILL_WHERE": "step"}
    assert run_killed(COMPARE_KILLER, 10**9, *compare, "--json", str(tmp_path / "ref" / "zoo.json"), "--config",
                      str(ref), env=whole) == 0
    expected = json.loads((tmp_path / "ref" / "zoo.json").read_text())["rows"]
    assert [row["method"] for row in expected][:2] == ["sensornet", "raseedgan"] and not any(
        row.get("error") for row in expected)
    expected_weights = {row["method"]: _weights(tmp_path / "ref" / "models", row["model_id"]) for row in expected[:2]}

    sensornet_steps = TINY["iterations"]
    kills = [("c-sensornet", "step", 3), ("c-zoo", "step", sensornet_steps + 3), ("c-publish", "publish", 1),
             ("c-report", "report", 1)]
    for name, where, at in kills:
        shutil.copytree(before, tmp_path / name)
        cfg = config(name)
        report = tmp_path / name / "zoo.json"
        args = [*compare, "--json", str(report), "--config", str(cfg)]
        assert run_killed(COMPARE_KILLER, at, *args, env={**env, "KILL_WHERE": where}) == -9, name
        assert not report.exists(), name  # never a half-written report in place
        published = {p: p.stat().st_mtime_ns for p in (tmp_path / name / "models").glob("*/model.pt")}
        if where == "report" or name == "c-zoo":
            assert published, name  # SensorNet was published before the kill
        assert run_killed(COMPARE_KILLER, 10**9, *args, env=whole) == 0, name
        rows = json.loads(report.read_text())["rows"]
        assert [{k: row.get(k) for k in SCORED} for row in rows] == [{k: row.get(k) for k in SCORED} for row in expected], name
        for row in rows[:2]:
            assert _same_weights(_weights(tmp_path / name / "models", row["model_id"]), expected_weights[row["method"]]), (name, row["method"])
        for path, mtime in published.items():  # a model published before the kill is not trained again
            assert path.stat().st_mtime_ns == mtime or where == "publish", (name, path)
        registry = ModelRegistry(tmp_path / name / "models")
        assert sorted(registry.list()) == sorted(row["model_id"] for row in rows[:2]), name  # no orphan model
        assert not [p for p in (tmp_path / name / "models").glob("*/work") if any(p.iterdir())], name

"""The operator commands (status, models, export), --help/--version and the store options, as a
user runs them: real archives, stores made by the real flows, a real registry and Prefect server."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import EXIT_BAD_INPUT, app
from pipeline.oisst import oisst_relpath
from tests.helpers_flows import run_cli

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("xarray", "dask", "zarr", "torch", "prefect", "numpy", "pandas", "fsspec")
runner = CliRunner()


def _python(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "COLUMNS": "100"})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_help_loads_no_heavy_module():
    """Building the help of the app, of a command and of a group imports none of the pipeline's
    heavy libraries (they load in the command bodies): ``seedfield --help`` stays quick."""
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom flows.cli import app\n"
        "for args in (['--help'], ['ingest', '--help'], ['status', '--help'], ['models', '--help'],"
        " ['models', 'list', '--help'], ['daily', '--help'], ['--version']):\n"
        "    r = CliRunner().invoke(app, args)\n"
        "    assert r.exit_code == 0, (args, r.output)\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))\n"
    )
    assert _python(code).strip() == "[]"


def test_version_and_help_through_the_module_entry_point():
    from importlib.metadata import version

    proc = subprocess.run([sys.executable, "-m", "flows.cli", "--version"], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == f"seedfield {version('seedfield')}"
    proc = subprocess.run([sys.executable, "-m", "flows.cli", "--help"], cwd=REPO, capture_output=True,
                          text=True, timeout=120, env={"PATH": "/usr/bin:/bin", "COLUMNS": "120"})
    assert proc.returncode == 0
    for command in ("ingest", "prepare", "status", "export", "models", "daily", "backfill", "serve"):
        assert f" {command} " in proc.stdout, command


def test_every_command_names_the_stores_alike():
    """--raw, --seedings, --output, --registry on every command that uses that store; --store is
    hidden; daily and backfill take the archive, store and Dask options of the other commands."""
    uses = {
        "ingest": {"--raw"}, "prepare": {"--raw", "--seedings"}, "train": {"--seedings", "--registry"},
        "infer": {"--seedings", "--output", "--registry"}, "evaluate": {"--seedings", "--raw", "--registry"},
        "compare": {"--seedings", "--raw", "--registry"},
        "daily": {"--archive", "--raw", "--seedings", "--output", "--registry", "--dask-address", "--workers"},
        "backfill": {"--archive", "--raw", "--seedings", "--output", "--registry", "--dask-address", "--workers"},
    }
    for command, options in uses.items():
        r = runner.invoke(app, [command, "--help"], terminal_width=200, env={"COLUMNS": "200"})
        assert r.exit_code == 0, r.output
        assert all(o in r.output for o in options), (command, options, r.output)
        assert "--store" not in r.output, command
    for group, command in (("models", "list"), ("models", "show"), ("models", "promote")):
        r = runner.invoke(app, [group, command, "--help"], env={"COLUMNS": "200"})
        assert "--registry" in r.output


@pytest.mark.slow  # ~5 s: a sample archive ingested through the deprecated option
def test_store_is_a_deprecated_alias_that_still_works(tmp_path):
    """``--store`` still names the raw store of ingest (here a file, so the error names it) and
    the seedings store of train, with a one-line warning; with a different --raw it is an error."""
    afile = tmp_path / "afile"
    afile.write_text("not a store")
    code, lines = run_cli("ingest", "--start", "2020-01-01", "--end", "2020-01-01", "--archive", str(tmp_path),
                          "--store", str(afile), cwd=tmp_path)
    assert code == EXIT_BAD_INPUT and lines == [
        "warning: --store is deprecated here; use --raw",
        f"error: {afile}: {afile} is a file; a Zarr store is a folder"], lines
    code, lines = run_cli("ingest", "--start", "2020-01-01", "--end", "2020-01-01", "--archive", str(tmp_path),
                          "--store", str(afile), "--raw", str(tmp_path / "other.zarr"), cwd=tmp_path)
    assert code == EXIT_BAD_INPUT and len(lines) == 1 and "pass only --raw" in lines[0], lines


@pytest.mark.usefixtures("prefect_server")
def test_train_store_alias_names_the_seedings(tmp_path):
    r = runner.invoke(app, ["train", "--store", str(tmp_path / "none.zarr"), "--start", "2020-01-01",
                            "--end", "2020-01-02", "--registry", str(tmp_path / "models")])
    assert r.exit_code == EXIT_BAD_INPUT, r.output
    assert "deprecated here; use --seedings" in r.output and "none.zarr" in r.output


def test_models_on_an_empty_registry_and_unknown_ids(tmp_path):
    reg = tmp_path / "models"
    r = runner.invoke(app, ["models", "list", "--registry", str(reg)])
    assert r.exit_code == 0 and f"no published model in {reg}" in r.output.replace("\n", "")
    for command in ("show", "promote"):
        code, lines = run_cli("models", command, "nope", "--registry", str(reg), cwd=tmp_path)
        assert code == EXIT_BAD_INPUT and len(lines) == 1, lines
        assert lines[0].startswith("error: ") and "'nope'" in lines[0] and str(reg) in lines[0]
    assert not (reg / "CURRENT").exists()


def test_status_of_a_path_that_is_no_store_exits_2(tmp_path):
    code, lines = run_cli("status", str(tmp_path / "none.zarr"), cwd=tmp_path)
    assert code == EXIT_BAD_INPUT and lines == [f"error: {tmp_path / 'none.zarr'}: no seedfield store here "
                                                "(expected a Zarr store written by ingest, prepare or infer)"]


@pytest.fixture
def ingested(tmp_path, dask_cluster, prefect_server):
    """A raw store of 2020-01-01 … 08 from a 6-day sample archive: 03 truncated (failed), 06
    preliminary, 07 and 08 not in the archive (missing); and its seedings (prepared 01 … 05)."""
    archive, raw, seed = tmp_path / "a", tmp_path / "raw.zarr", tmp_path / "seed.zarr"
    r = runner.invoke(app, ["sample-archive", str(archive), "--start", "2020-01-01", "--days", "6",
                            "--region", "24,36,290,314", "--preliminary-last", "1"])
    assert r.exit_code == 0, r.output
    bad = archive / oisst_relpath(dt.date(2020, 1, 3))
    bad.write_bytes(bad.read_bytes()[:1000])
    dask = ["--dask-address", dask_cluster.scheduler_address]
    r = runner.invoke(app, ["ingest", "--archive", str(archive), "--raw", str(raw), "--start", "2020-01-01",
                            "--end", "2020-01-08", *dask])
    assert r.exit_code == 3, r.output
    r = runner.invoke(app, ["prepare", "--raw", str(raw), "--seedings", str(seed), "--bin-size", "4",
                            "--upsampling", "2", "--start", "2020-01-01", "--end", "2020-01-05", *dask])
    assert r.exit_code == 3, r.output
    return tmp_path, archive, raw, seed


@pytest.mark.slow
def test_status_shows_runs_counts_and_errors(ingested):
    tmp_path, _archive, raw, seed = ingested
    r = runner.invoke(app, ["status", str(raw), "--json", str(tmp_path / "s.json")], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "s.json").read_text())
    runs = [(x["first"], x["last"], x["status"], x["preliminary"], x["count"]) for x in report["runs"]]
    assert runs[:4] == [("2020-01-01", "2020-01-02", "ok", False, 2), ("2020-01-03", "2020-01-03", "failed", False, 1),
                        ("2020-01-04", "2020-01-05", "ok", False, 2), ("2020-01-06", "2020-01-06", "ok", True, 1)]
    assert runs[4:] == [("2020-01-07", "2020-01-08", "missing", False, 2)]
    assert [(p["status"], p["first"], p["last"], p["distinct_errors"]) for p in report["problems"]] == [
        ("failed", "2020-01-03", "2020-01-03", 1), ("missing", "2020-01-07", "2020-01-08", 2)]
    assert report["counts"]["ok"] == 5 and report["counts"]["failed"] == 1 and report["preliminary"] == 1
    failed = next(p for p in report["problems"] if p["status"] == "failed")
    assert failed["first"] == "2020-01-03" and "20200103" in failed["error"]
    lines = r.output.splitlines()
    assert any(line.split() == ["2020-01-01", "…", "2020-01-02", "ok", "2"] for line in lines), r.output
    assert any(line.split()[:4] == ["2020-01-06", "ok", "(preliminary)", "1"] for line in lines), r.output
    assert any(line.startswith("failed 2020-01-03 (1): ") and "20200103" in line for line in lines), r.output

    # a period, and the seedings store (named from the config): prepare never wrote day 03
    r = runner.invoke(app, ["status", str(raw), "--start", "2020-01-04", "--end", "2020-01-06", "--json",
                            str(tmp_path / "p.json")])
    assert r.exit_code == 0, r.output
    assert [s["step"] for s in json.loads((tmp_path / "p.json").read_text())["steps"]] == [
        "2020-01-04", "2020-01-05", "2020-01-06"]
    toml = tmp_path / "c.toml"
    toml.write_text(f'[stores]\nseedings = "{seed}"\n')
    r = runner.invoke(app, ["status", "seedings", "--config", str(toml), "--json", str(tmp_path / "q.json")])
    assert r.exit_code == 0, r.output
    steps = {s["step"]: s["status"] for s in json.loads((tmp_path / "q.json").read_text())["steps"]}
    assert steps["2020-01-01"] == steps["2020-01-05"] == "ok" and steps.get("2020-01-03", "absent") == "absent"


@pytest.mark.slow
def test_export_writes_netcdf_of_the_committed_steps(ingested):
    pytest.importorskip("storage.export")
    import xarray as xr

    tmp_path, _archive, raw, _seed = ingested
    r = runner.invoke(app, ["export", str(raw), "--netcdf", str(tmp_path / "nc"), "--per", "step",
                            "--start", "2020-01-01", "--end", "2020-01-05"])
    assert r.exit_code == 0, r.output
    files = [line.strip() for line in r.output.splitlines() if line.strip().endswith(".nc")]
    assert len(files) == 4, r.output  # 01, 02, 04, 05: the failed 03 is not exported
    for f in files:
        with xr.open_dataset(f) as ds:
            assert ds.sizes["time"] == 1 and "sst" in ds
    r = runner.invoke(app, ["export", str(raw), "--netcdf", str(tmp_path / "x.nc"), "--per", "week"])
    assert r.exit_code == EXIT_BAD_INPUT and "--per" in r.output


ERA5 = REPO / "pipeline" / "data" / "era5_t2m_uk_2019-03-01_to_20_hourly.nc"
TINY = {"iterations": 6, "batch_size": 4, "features": 8, "depth": 1, "window_steps": 2, "val_every": 3}


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_server")
def test_models_list_show_promote_and_status_of_a_reconstruction(tmp_path, dask_cluster):
    """Two SensorNets trained by the CLI on the bundled ERA5 hours: listed oldest first with the
    current one marked, shown with their validation scores, promoted; then a reconstruction
    made with the promoted one, and its store's status."""
    from tests.helpers_flows import write_toml

    toml = write_toml(tmp_path / "c.toml", {
        "archive.source": str(ERA5), "archive.variable": "t2m", "archive.valid_range": [-40.0, 50.0],
        "stores.raw": str(tmp_path / "raw.zarr"), "stores.seedings": str(tmp_path / "seed.zarr"),
        "stores.output": str(tmp_path / "recon.zarr"), "stores.registry": str(tmp_path / "models"),
        "seeding.bin_size": 8, "seeding.upsampling": 4, "train.architecture": "sensornet",
        **{f"sensornet.{k}": v for k, v in TINY.items()}, "infer.days_per_task": 6,
        "dask.address": dask_cluster.scheduler_address,
    })
    cfg = ["--config", str(toml)]
    for command in ("ingest", "prepare"):
        r = runner.invoke(app, [command, "--start", "2019-03-01", "--end", "2019-03-02", *cfg])
        assert r.exit_code == 0, r.output
    for model_id in ("sn-1", "sn-2"):
        r = runner.invoke(app, ["train", "--start", "2019-03-01", "--end", "2019-03-02T11", "--model-id", model_id, *cfg])
        assert r.exit_code == 0, r.output

    r = runner.invoke(app, ["models", "list", *cfg], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    rows = [line.split() for line in r.output.splitlines() if "sn-" in line and "sensornet" in line]
    assert [row[:3] for row in rows] == [["sn-1", "sensornet", "2019-03-01T00"], ["*", "sn-2", "sensornet"]], r.output
    r = runner.invoke(app, ["models", "show", "sn-1", *cfg], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert "architecture: sensornet" in r.output and 'train_period: ["2019-03-01T00", "2019-03-02T04"]' in r.output
    assert "validation: " in r.output and "val_rmse" in r.output and "(current)" not in r.output.splitlines()[0]

    r = runner.invoke(app, ["models", "promote", "sn-1", *cfg])
    assert r.exit_code == 0 and "current model: sn-1 (was sn-2)" in r.output, r.output
    assert (tmp_path / "models" / "CURRENT").read_text().strip() == "sn-1"
    code, lines = run_cli("models", "promote", "sn-9", *cfg, cwd=tmp_path)
    assert code == EXIT_BAD_INPUT and len(lines) == 1 and "'sn-9'" in lines[0] and "sn-1, sn-2" in lines[0], lines
    assert (tmp_path / "models" / "CURRENT").read_text().strip() == "sn-1"

    r = runner.invoke(app, ["infer", "--start", "2019-03-02T12", "--end", "2019-03-02", *cfg])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["status", "output", "--json", str(tmp_path / "o.json"), *cfg])
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "o.json").read_text())
    assert report["step"] == "1h" and report["counts"]["ok"] == 12
    assert {"first": "2019-03-02T12", "last": "2019-03-02T23", "status": "ok", "preliminary": False,
            "count": 12} in report["runs"]


BUGGY_BACKFILL = """
import sys
import flows.backfill
def _buggy(*args, **kwargs):
    raise ValueError("an internal bug, not the user's input")
flows.backfill.run_backfill = _buggy
from flows.cli import main
sys.argv = ["seedfield", *sys.argv[1:]]
main()
"""


@pytest.mark.slow  # ~5-12 s: a CLI process with Prefect's temporary server
@pytest.mark.usefixtures("prefect_server")
def test_an_unexpected_error_exits_1_with_its_traceback_not_as_bad_input(tmp_path):
    """A bug (here a ValueError raised inside the backfill's body) is not the user's mistake: exit
    1 with the traceback, never the one-line exit 2 that bad input gets."""
    import subprocess
    import sys

    from prefect.settings import PREFECT_API_URL

    (tmp_path / "archive").mkdir()
    (tmp_path / "models" / "m").mkdir(parents=True)
    args = ["backfill", "--start", "2020-01-01", "--end", "2020-01-02", "--archive", str(tmp_path / "archive"),
            "--raw", str(tmp_path / "raw.zarr"), "--seedings", str(tmp_path / "s.zarr"),
            "--output", str(tmp_path / "o.zarr"), "--registry", str(tmp_path / "models")]
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value()), "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", BUGGY_BACKFILL, *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" in proc.stderr and "an internal bug" in proc.stderr


@pytest.mark.slow  # ~5-11 s: a CLI process
def test_serve_without_a_prefect_server_is_one_line_exit_2(tmp_path):
    """docs/operations.md: `serve` needs a real server; without PREFECT_API_URL it says how to
    start one instead of serving into a temporary server that has no scheduler."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_URL")}
    env.update(PYTHONPATH=str(REPO), PREFECT_HOME=str(tmp_path / "home"))
    proc = subprocess.run([sys.executable, "-m", "flows.cli", "serve"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, lines
    assert lines[0].startswith("error: PREFECT_API_URL is not set") and "make server" in lines[0]

"""The command line as a user runs it: real files, stores, Prefect server and Dask cluster."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import xarray as xr
from typer.testing import CliRunner

from flows.cli import EXIT_BAD_INPUT, EXIT_PARTIAL, app
from pipeline.oisst import oisst_relpath
from tests.helpers_flows import run_cli as _cli
from tests.helpers_flows import tree_digest

pytestmark = pytest.mark.usefixtures("prefect_server")
runner = CliRunner()


def test_sample_ingest_prepare_and_a_truncated_file(tmp_path, dask_cluster):
    archive, store, seed = tmp_path / "a", tmp_path / "s.zarr", tmp_path / "seed.zarr"
    r = runner.invoke(app, ["sample-archive", str(archive), "--start", "2020-01-01", "--days", "4",
                            "--region", "20,52,280,344"])
    assert r.exit_code == 0, r.output
    common = ["--start", "2020-01-01", "--end", "2020-01-04", "--dask-address", dask_cluster.scheduler_address]
    r = runner.invoke(app, ["ingest", "--archive", str(archive), "--raw", str(store), *common])
    assert r.exit_code == 0, r.output
    assert xr.open_zarr(store, consolidated=False).sizes["time"] == 4

    r = runner.invoke(app, ["prepare", "--raw", str(store), "--seedings", str(seed), "--bin-size", "8",
                            "--upsampling", "4", *common])
    assert r.exit_code == 0, r.output
    assert xr.open_zarr(seed, consolidated=False).attrs["seeding_bin_size"] == 8

    bad = archive / oisst_relpath(__import__("datetime").date(2020, 1, 3))
    bad.write_bytes(bad.read_bytes()[:1000])
    store2 = tmp_path / "s2.zarr"
    r = runner.invoke(app, ["ingest", "--archive", str(archive), "--raw", str(store2), *common,
                            "--json", str(tmp_path / "r.json")])
    assert r.exit_code == EXIT_PARTIAL, r.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["summary"] == {"ok": 3, "unchanged": 0, "skipped": 0, "failed": 1, "missing": 0}
    assert bad.name in next(d["message"] for d in report["days"] if d["status"] == "failed")
    before = tree_digest(store2)
    r = runner.invoke(app, ["ingest", "--archive", str(archive), "--raw", str(store2), *common])
    assert r.exit_code == EXIT_PARTIAL and tree_digest(store2) == before


def test_config_typo_exits_2_naming_the_key(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[seeding]\nbin_sise = 8\n")
    r = runner.invoke(app, ["prepare", "--start", "2020-01-01", "--end", "2020-01-02", "--config", str(cfg)])
    assert r.exit_code == EXIT_BAD_INPUT
    assert "seeding.bin_sise" in r.output and "seeding.bin_size" in r.output


def test_missing_archive_exits_2(tmp_path):
    r = runner.invoke(app, ["ingest", "--archive", str(tmp_path / "nope"), "--raw", str(tmp_path / "s.zarr"),
                            "--start", "2020-01-01", "--end", "2020-01-02"])
    assert r.exit_code == EXIT_BAD_INPUT
    assert "nope" in r.output


def test_unknown_architecture_and_perceptual_without_weights_exit_2(tmp_path):
    r = runner.invoke(app, ["train", "--start", "2020-01-01", "--end", "2020-01-02", "--architecture", "vdsr"])
    assert r.exit_code == EXIT_BAD_INPUT
    assert "train.architecture" in r.output and "edsr_baseline" in r.output
    cfg = tmp_path / "c.toml"
    cfg.write_text('[train]\narchitecture = "srgan"\nperceptual_weight = 1.0\n')
    r = runner.invoke(app, ["compare", "--start", "2020-01-01", "--end", "2020-01-02", "--json",
                            str(tmp_path / "z.json"), "--config", str(cfg)])
    assert r.exit_code == EXIT_BAD_INPUT
    assert "vgg_weights" in r.output and "never downloads" in r.output


def test_compare_without_a_seedings_store_exits_2(tmp_path):
    r = runner.invoke(app, ["compare", "--seedings", str(tmp_path / "none.zarr"), "--start", "2020-01-01",
                            "--end", "2020-01-02", "--json", str(tmp_path / "z.json")])
    assert r.exit_code == EXIT_BAD_INPUT
    assert "none.zarr" in r.output and "prepare" in r.output


@pytest.mark.slow  # ~10-20 s: many CLI processes
def test_user_mistakes_are_one_line_and_exit_2(tmp_path):
    """A period backwards, a store path that is a file (or lies under one), a message with
    brackets: one line each (no traceback, not wrapped), naming the thing, exit 2."""
    afile = tmp_path / "afile"
    afile.write_text("not a store")
    code, lines = _cli("ingest", "--start", "2020-01-10", "--end", "2020-01-01", "--archive", str(tmp_path),
                       "--raw", str(tmp_path / "s.zarr"), cwd=tmp_path)
    assert code == EXIT_BAD_INPUT and lines == ["error: --start 2020-01-10 is after --end 2020-01-01: expected start <= end"]
    for store in (afile, afile / "sub" / "s.zarr"):
        code, lines = _cli("ingest", "--start", "2020-01-01", "--end", "2020-01-01", "--archive", str(tmp_path),
                           "--raw", str(store), cwd=tmp_path)
        assert code == EXIT_BAD_INPUT and len(lines) == 1, lines
        assert lines[0] == f"error: {store}: {afile} is a file; a Zarr store is a folder"
    assert afile.read_text() == "not a store"
    code, lines = _cli("ingest", "--start", "2020-01-01", "--end", "2020-01-01", "--raw", str(tmp_path / "s.zarr"),
                       cwd=tmp_path)
    assert code == EXIT_BAD_INPUT and len(lines) == 1 and "set [archive] source" in lines[0], lines


@pytest.mark.slow  # ~10-20 s: CLI processes, each with Prefect's temporary server
def test_a_user_mistake_found_inside_a_flow_has_no_traceback(tmp_path):
    """A mistake the flow finds (a grid file that is not netCDF): Prefect's own failure lines
    lose their traceback, the last line is the error naming the key and the file, exit 2."""
    from pipeline.sample_archive import write_sample_archive
    from tests.helpers_flows import SMALL_REGION, write_toml

    write_sample_archive(tmp_path / "archive", dt.date(2020, 1, 1), 1, region=SMALL_REGION)
    (tmp_path / "grid.nc").write_text("not netCDF")
    toml = write_toml(tmp_path / "c.toml", {"archive.grid_file": str(tmp_path / "grid.nc")})
    args = ["ingest", "--start", "2020-01-01", "--end", "2020-01-01", "--archive", str(tmp_path / "archive"),
            "--raw", str(tmp_path / "s.zarr"), "--config", str(toml)]
    code, lines = _cli(*args, cwd=tmp_path)
    assert code == EXIT_BAD_INPUT and not any("Traceback" in line for line in lines), lines
    assert lines[-1].startswith("error: config key 'archive.grid_file': ") and "grid.nc: cannot open" in lines[-1]
    code, lines = _cli(*args, "--debug", cwd=tmp_path)  # --debug keeps Prefect's traceback
    assert code == EXIT_BAD_INPUT and any("Traceback" in line for line in lines)

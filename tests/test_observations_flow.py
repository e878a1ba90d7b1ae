"""The ingest-observations flow on the real sample archive (CSV and CF DSG netCDF), a real
Prefect server, real Zarr stores, real compliance-checker and real SIGKILLs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from flows.cli import app
from pipeline.sample_observations import COLUMNS, sample_settings, write_sample_observations
from pipeline.steps import parse_step
from storage.observations_store import read_step_observations
from storage.step_store import StepStore
from tests.helpers_flows import tree_digest, write_toml

pytestmark = pytest.mark.usefixtures("prefect_server")
DAY = ("2019-03-04T00", "2019-03-04T05")  # 6 hourly steps of the sample


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("obs") / "sample"
    write_sample_observations(out)
    return out


def config_file(tmp: Path, sample: Path, fmt: str, store: Path, **more: Any) -> Path:
    settings = sample_settings(sample, fmt)
    cols = settings.pop("columns")
    overrides = {f"observations.{k}": v for k, v in {**settings, **more}.items()}
    overrides["stores.observations"] = str(store)
    path = write_toml(tmp / f"{store.name}.toml", overrides)
    path.write_text(path.read_text() + "[observations.columns]\n"
                    + "".join(f"{k} = {json.dumps(v)}\n" for k, v in cols.items()))
    return path


def ingest(cfg: Path, start: str, end: str, report: Path | None = None) -> Any:
    args = ["ingest-observations", "--start", start, "--end", end, "--config", str(cfg)]
    return CliRunner().invoke(app, args + (["--json", str(report)] if report else []))


def chunks_and_markers(path: Path) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
    chunks = {k: v for k, v in tree_digest(path).items() if "/c/" in k}
    markers = {str(d): {k: v for k, v in m.items() if k not in ("written_at", "files")}
               for d, m in StepStore(str(path)).markers().items()}
    return chunks, markers


@pytest.mark.slow  # two ingests of the whole sample (480 hourly steps each): ~2 min on 2 busy cores
def test_the_sample_from_csv_and_from_netcdf_gives_the_same_store(tmp_path, sample):
    stores = {}
    for fmt in ("csv", "netcdf"):
        store = tmp_path / f"{fmt}.zarr"
        report = tmp_path / f"{fmt}.json"
        result = ingest(config_file(tmp_path, sample, fmt, store), "2019-03-01", "2019-03-20", report)
        assert result.exit_code == 0, result.output
        stores[fmt] = chunks_and_markers(store)
        body = json.loads(report.read_text())
        assert body["summary"] == {"ok": 480, "unchanged": 0, "failed": 0, "missing": 0}
        # the sample's bad rows, each with its reason (three of each kind)
        assert body["rejected"] == {"not_finite": 3, "outside_domain": 3, "out_of_range": 3, "bad_quality": 3,
                                    "duplicate": 3}
        assert body["unplaced"] == {"time_outside_range": 3}
    assert len(stores["csv"][0]) > 480 * 8
    assert stores["csv"] == stores["netcdf"]


@pytest.mark.slow  # ~10-20 s: two formats ingested, then re-run
def test_a_rerun_changes_no_byte_and_both_formats_agree(tmp_path, sample):
    digests, tables = {}, {}
    for fmt in ("csv", "netcdf"):
        store = tmp_path / f"{fmt}.zarr"
        cfg = config_file(tmp_path, sample, fmt, store)
        first = ingest(cfg, *DAY)
        assert first.exit_code == 0, first.output
        before = tree_digest(store)
        assert "zarr.json" in before and any("/c/" in k for k in before)
        again = ingest(cfg, *DAY)
        assert again.exit_code == 0, again.output
        assert "unchanged 6" in again.output
        assert tree_digest(store) == before  # every file, zarr.json and markers included
        digests[fmt] = chunks_and_markers(store)
        tables[fmt] = read_step_observations(StepStore(str(store)), parse_step("2019-03-04T05"))
    assert digests["csv"] == digests["netcdf"]
    assert 40 <= len(tables["csv"]) <= 110  # 40 moorings and the drifters inside the domain
    pd.testing.assert_frame_equal(tables["csv"], tables["netcdf"])


def test_a_file_with_bad_rows_keeps_its_good_rows_and_reports_each_reason(tmp_path, sample):
    c = COLUMNS
    good = [("2019-03-04T05:10:00Z", "G1", 52.0, -3.0, 7.5, 1), ("2019-03-04T05:20:00Z", "G2", 53.0, -2.0, 8.25, 1)]
    bad = [("2019-03-04T05:30:00Z", "B1", 52.0, -3.0, "", 1),         # not_finite
           ("2019-03-04T05:31:00Z", "B2", 52.0, -3.0, 60.0, 1),       # out_of_range
           ("2019-03-04T05:32:00Z", "B3", 45.0, -3.0, 7.0, 1),        # outside_domain
           ("2019-03-04T05:10:00Z", "G1", 52.0, -3.0, 7.75, 1),       # duplicate of G1 (a larger value)
           ("2019-03-04T05:33:00Z", "B5", 52.0, -3.0, 7.0, 4),        # bad_quality
           ("2017-03-04T05:34:00Z", "B6", 52.0, -3.0, 7.0, 1),        # time_outside_range
           ("not a time", "B7", 52.0, -3.0, 7.0, 1)]                  # time_invalid
    src = tmp_path / "src"
    src.mkdir()
    pd.DataFrame(good + bad, columns=[c["time"], c["platform"], c["lat"], c["lon"], c["value"], c["quality"]]) \
        .to_csv(src / "buoys_20190304.csv", index=False)
    store = tmp_path / "bad.zarr"
    cfg = config_file(tmp_path, sample, "csv", store, source=str(src))
    report = tmp_path / "report.json"
    result = ingest(cfg, "2019-03-04T05", "2019-03-04T06", report)
    assert result.exit_code == 3, result.output  # 05 is stored; 06 has no observation (missing)
    body = json.loads(report.read_text())
    step05 = next(s for s in body["steps"] if s["step"] == "2019-03-04T05")
    assert step05["status"] == "ok" and step05["n_obs"] == 2
    assert step05["rejected"] == {"not_finite": 1, "outside_domain": 1, "out_of_range": 1, "bad_quality": 1,
                                  "duplicate": 1}
    assert body["unplaced"] == {"time_invalid": 1, "time_outside_range": 1}
    by_row = {r["row"]: r["reason"] for r in body["bad_rows"]}
    assert by_row == {2: "not_finite", 3: "out_of_range", 4: "outside_domain", 5: "duplicate", 6: "bad_quality",
                      7: "time_outside_range", 8: "time_invalid"}
    assert all(r["file"] == "buoys_20190304.csv" for r in body["bad_rows"])
    stored = read_step_observations(StepStore(str(store)), parse_step("2019-03-04T05"))
    assert stored["platform"].tolist() == ["G1", "G2"] and stored["value"].tolist() == [7.5, 8.25]
    assert StepStore(str(store)).marker(parse_step("2019-03-04T06"))["status"] == "missing"
    status = CliRunner().invoke(app, ["status", str(store)])
    assert status.exit_code == 0 and "missing" in status.output
    # a store one observation wide keeps the first good row of the canonical order and counts the other
    narrow = tmp_path / "narrow.zarr"
    cfg = config_file(tmp_path, sample, "csv", narrow, source=str(src), max_per_step=1)
    assert ingest(cfg, "2019-03-04T05", "2019-03-04T05", report).exit_code == 0
    assert json.loads(report.read_text())["steps"][0]["rejected"]["over_max_per_step"] == 1
    assert read_step_observations(StepStore(str(narrow)), parse_step("2019-03-04T05"))["platform"].tolist() == ["G1"]


def test_sample_observations_command_writes_both_formats_and_their_configs(tmp_path):
    result = CliRunner().invoke(app, ["sample-observations", str(tmp_path / "s"), "--moorings", "2", "--drifters", "3"])
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "s" / "csv").glob("observations_2019*.csv"))) == 20
    for name in ("netcdf/drifters_trajectory.nc", "netcdf/moorings_timeseries.nc", "grid.nc",
                 "observations-csv.toml", "observations-netcdf.toml"):
        assert (tmp_path / "s" / name).is_file(), name
    from flows.config import load_config

    cfg = load_config(tmp_path / "s" / "observations-netcdf.toml")
    assert cfg.observations.format == "netcdf" and cfg.observations.columns["value"] == "temperature"


@pytest.mark.slow  # ~5-15 s: two ingest runs
def test_an_unreadable_file_fails_its_day_and_keeps_what_is_stored(tmp_path, sample):
    src = tmp_path / "src"
    src.mkdir()
    (src / "observations_20190304.csv").write_bytes((sample / "csv" / "observations_20190304.csv").read_bytes())
    store = tmp_path / "o.zarr"
    cfg = config_file(tmp_path, sample, "csv", store, source=str(src))
    assert ingest(cfg, "2019-03-04T00", "2019-03-04T01").exit_code == 0
    before = tree_digest(store)
    (src / "observations_20190304.csv").write_text("obs_time,latitude\n\"unterminated")
    result = ingest(cfg, "2019-03-04T00", "2019-03-04T01", tmp_path / "r.json")
    assert result.exit_code == 2, result.output  # no step done by this run
    steps = json.loads((tmp_path / "r.json").read_text())["steps"]
    assert [s["status"] for s in steps] == ["failed", "failed"]
    assert all("observations_20190304.csv: cannot be read as csv" in s["message"] for s in steps)
    assert all("kept the version stored" in s["message"] for s in steps)
    assert chunks_and_markers(store)[0] == {k: v for k, v in before.items() if "/c/" in k}  # nothing lost
    # a source that does not exist: one line naming it, exit 2, no store made
    nowhere = config_file(tmp_path, sample, "csv", tmp_path / "none.zarr", source=str(tmp_path / "nope"))
    result = ingest(nowhere, "2019-03-04T00", "2019-03-04T01")
    assert result.exit_code == 2 and "nope: does not exist" in result.output
    assert not (tmp_path / "none.zarr").exists()


@pytest.mark.slow  # ~5-15 s: an ingest, an export and compliance-checker
def test_export_is_a_cf_point_dsg_without_cf_errors(tmp_path, sample):
    import netCDF4

    from tests.test_cf_metadata import CF_SUITE, check, messages

    store = tmp_path / "o.zarr"
    assert ingest(config_file(tmp_path, sample, "netcdf", store), "2019-03-04T00", "2019-03-04T02").exit_code == 0
    out = CliRunner().invoke(app, ["export", str(store), "--netcdf", str(tmp_path / "o.nc"), "--per", "all"])
    assert out.exit_code == 0, out.output
    path = str(tmp_path / "o.nc")
    assert messages(check(path, CF_SUITE, tmp_path), "high_priorities") == []
    with netCDF4.Dataset(path) as nc:
        assert nc.featureType == "point" and nc["value"].coordinates == "time lat lon"
        assert nc["value"].standard_name == "air_temperature" and nc["value"].units == "degree_Celsius"
        stored = sum(len(read_step_observations(StepStore(str(store)), parse_step(f"2019-03-04T0{h}")))
                     for h in range(3))
        assert nc.dimensions["obs"].size == stored > 0
        assert np.isfinite(nc["value"][:]).all()


@pytest.mark.slow  # a reference ingest, three killed ones and their re-runs (real subprocesses): ~1-2 min
def test_a_killed_ingest_is_repaired_by_its_rerun(tmp_path, sample):
    """``seedfield ingest-observations`` SIGKILLed at its n-th Zarr write (while creating the
    store, in the middle of a step's arrays, between steps): the re-run of the same command exits 0
    and the store equals an uninterrupted run's, chunk by chunk and marker by marker, and
    its steps read back the same observations."""
    from prefect.settings import PREFECT_API_URL

    from tests.test_crash_safety import COMMAND, run_killed

    period = ("2019-03-04T00", "2019-03-04T05")  # 6 hourly steps
    ref = tmp_path / "ref.zarr"
    assert ingest(config_file(tmp_path, sample, "netcdf", ref), *period).exit_code == 0
    expected = chunks_and_markers(ref)
    env = {"PREFECT_API_URL": str(PREFECT_API_URL.value()), "PREFECT_LOGGING_LEVEL": "WARNING"}
    args = ["ingest-observations", "--start", period[0], "--end", period[1]]
    # this run makes ~101 Zarr writes: ~46 for the store's creation, then 9 a step (8 arrays, status)
    for k in (3, 50, 77):  # creating the store; inside the first step; inside the fourth
        store = tmp_path / f"k{k}.zarr"
        cfg = config_file(tmp_path, sample, "netcdf", store)
        assert run_killed(COMMAND, k, *args, "--config", str(cfg), env=env) == -9, k
        if k == 77:  # some steps are stored, the interrupted one is not visible
            assert 0 < len(StepStore(str(store)).committed_steps()) < 6, k
        again = ingest(cfg, *period)
        assert again.exit_code == 0, again.output
        assert chunks_and_markers(store) == expected, k
        for h in range(6):
            step = parse_step(f"2019-03-04T0{h}")
            pd.testing.assert_frame_equal(read_step_observations(StepStore(str(store)), step),
                                          read_step_observations(StepStore(str(ref)), step))


@pytest.mark.slow  # ~5-15 s: an ingest read back through the Prefect API
def test_the_ui_shows_the_refused_rows_per_step_and_reason(tmp_path, sample):
    """The flow's Prefect artifacts: a table with the good and refused rows of each step by reason,
    and a markdown summary; the flow called directly as part B's daily/backfill will."""
    import datetime as dt

    from flows.config import load_config
    from flows.observations_ingest import ingest_observations_flow
    from tests.test_model_flows import run_artifacts

    cfg = load_config(config_file(tmp_path, sample, "csv", tmp_path / "o.zarr"))
    state = ingest_observations_flow(cfg, dt.datetime(2019, 3, 4, 0), dt.datetime(2019, 3, 4, 5), return_state=True)
    assert state.is_completed()
    result = state.result()
    run_id = state.state_details.flow_run_id
    table, = run_artifacts(run_id, "ingest-observations-steps")
    rows = json.loads(table.data)
    assert [r["step"] for r in rows] == [f"2019-03-04T0{h}" for h in range(6)]
    assert [r["good"] for r in rows] == [s["n_obs"] for s in result["steps"]]
    refused = {k: sum(r.get(k, 0) for r in rows) for k in result["rejected"]}
    assert refused == result["rejected"] and sum(refused.values()) > 0  # this period holds bad rows
    summary, = run_artifacts(run_id, "ingest-observations-summary")
    assert "| refused because | rows |" in summary.data
    assert all(f"| {k} | {v} |" in summary.data for k, v in result["rejected"].items())

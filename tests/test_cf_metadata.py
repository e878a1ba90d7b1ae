"""CF-1.11 / ACDD-1.3 metadata of every store, checked with the real IOOS compliance-checker on
real netCDF exports of stores built by the real ingest and prepare flows (the reconstruction
store through the storage functions), plus consolidated metadata, cf_xarray and the status flag."""

from __future__ import annotations

import datetime as dt
import json
import warnings
from pathlib import Path

import cf_xarray  # noqa: F401  (registers the .cf accessor)
import netCDF4
import numpy as np
import pytest
import xarray as xr
from compliance_checker.runner import CheckSuite, ComplianceChecker

from flows.ingest import ingest_flow
from flows.prepare import prepare_flow
from flows.states import run_flow
from pipeline.oisst import oisst_relpath
from pipeline.sample_archive import write_sample_archive
from storage import cf
from storage.export import export_netcdf
from storage.output_store import create_output_store
from storage.step_store import StepStore
from tests.helpers_flows import SMALL_REGION, flow_config

pytestmark = pytest.mark.usefixtures("prefect_server")
START, N = dt.date(2020, 1, 1), 4
FAILED = START + dt.timedelta(days=2)
CF_SUITE = "cf:1.11"
ACDD_REQUIRED = ("title", "summary", "keywords", "Conventions")
ACDD_RECOMMENDED = (
    "id", "naming_authority", "history", "source", "processing_level", "date_created", "creator_name",
    "creator_type", "creator_url", "creator_email", "institution", "project", "publisher_name",
    "publisher_email", "publisher_url", "license", "geospatial_lat_min", "geospatial_lat_max",
    "geospatial_lat_units", "geospatial_lat_resolution", "geospatial_lon_min", "geospatial_lon_max",
    "geospatial_lon_units", "geospatial_lon_resolution", "time_coverage_start", "time_coverage_end",
    "time_coverage_duration", "time_coverage_resolution", "standard_name_vocabulary",
)


@pytest.fixture(scope="module")
def stores(tmp_path_factory, dask_cluster):
    """A raw store with one failed day, its seedings, and a reconstruction of two days."""
    root = tmp_path_factory.mktemp("cf")
    write_sample_archive(root / "archive", START, N, region=SMALL_REGION)
    bad = root / "archive" / oisst_relpath(FAILED)
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    cfg = flow_config(root, root / "archive", dask_cluster.scheduler_address, **{
        "metadata.license": "CC-BY-4.0", "metadata.creator_name": "Test Person",
        "metadata.creator_email": "test@example.org", "seeding.bin_size": 8, "seeding.upsampling": 4,
    })
    end = START + dt.timedelta(days=N - 1)
    assert not run_flow(ingest_flow, cfg, START, end)["ok"]  # the truncated day failed
    run_flow(prepare_flow, cfg, START, end)
    seed = StepStore(cfg.stores.seedings)
    out = create_output_store(
        str(root / "recon.zarr"), seed.steps, seed.read_static("lat"), seed.read_static("lon"),
        seed.read_static("land_mask"), {**cfg.metadata.attrs(), "model_id": "m-1"}, cadence=seed.cadence)
    for day in seed.committed_steps()[:2]:
        out.write_step(day, {"sst": np.full(out.array("sst").shape[1:], 15.0), "qa_rebin_rmse": 0.1,
                             "qa_rebin_bias": 0.0})
        out.commit(day, {"status": "ok", "model_id": "m-1"})
    out.record_run("infer (test)")
    return {"raw": cfg.stores.raw, "seedings": cfg.stores.seedings, "reconstruction": str(root / "recon.zarr"),
            "root": root}


def check(path: str, suite: str, tmp_path) -> dict:
    CheckSuite.load_all_available_checkers()
    report = tmp_path / f"{suite.replace(':', '_')}.json"
    ComplianceChecker.run_checker(path, [suite], 0, "normal", output_filename=str(report), output_format="json")
    return json.loads(report.read_text())[suite]


def messages(result: dict, priority: str) -> list[str]:
    return [f"{p['name']}: {m}" for p in result[priority] for m in p["msgs"]]


@pytest.mark.parametrize("kind", ["raw", "seedings", "reconstruction"])
def test_netcdf_export_has_no_cf_error_and_the_acdd_attributes(stores, kind, tmp_path):
    files = export_netcdf(stores[kind], str(tmp_path / "nc"), per="month")
    assert len(files) == 1
    cf_result = check(files[0], CF_SUITE, tmp_path)
    assert messages(cf_result, "high_priorities") == []  # errors
    acdd = check(files[0], "acdd:1.3", tmp_path)
    globals_missing = [m for p in acdd["high_priorities"] + acdd["medium_priorities"]
                       if p["name"] == "Global Attributes" for m in p["msgs"]]
    assert not [m for m in globals_missing if m.split(" ")[0] in ACDD_REQUIRED + ACDD_RECOMMENDED]
    with netCDF4.Dataset(files[0]) as nc:
        attrs = {k: nc.getncattr(k) for k in nc.ncattrs()}
        assert nc["lat"].filters()["zlib"] is False  # coordinates: plain
        data_var = {"raw": "sst", "seedings": "lr_mean", "reconstruction": "sst"}[kind]
        assert nc[data_var].filters()["zlib"] is True
        assert "_FillValue" not in nc["lat"].ncattrs() and nc["lat"].bounds == "lat_bnds"
        for name, var in nc.variables.items():
            assert var.dtype.kind != "u", name
            if "flag_values" in var.ncattrs():
                assert np.asarray(var.flag_values).dtype == var.dtype, name
            if var.dimensions and name not in nc.dimensions and not name.endswith("_bnds"):
                assert "coverage_content_type" in var.ncattrs(), name
    for key in ACDD_REQUIRED + ACDD_RECOMMENDED:
        assert str(attrs[key]).strip(), key
    assert attrs["Conventions"] == "CF-1.11, ACDD-1.3"
    assert attrs["license"] == "CC-BY-4.0" and attrs["creator_name"] == "Test Person"  # from [metadata]
    assert attrs["time_coverage_start"] == "2020-01-01T12:00:00Z"
    assert "exported the committed steps" in attrs["history"].splitlines()[-1]


@pytest.mark.parametrize("kind", ["raw", "seedings", "reconstruction"])
def test_stores_open_without_warning_with_one_longitude(stores, kind):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = xr.open_zarr(stores[kind])
        assert ds.cf["longitude"].name == "lon" and ds.cf["latitude"].name == "lat"
        assert ds.cf["time"].name == "time"
    root_meta = json.loads((Path(stores[kind]) / "zarr.json").read_text())
    assert root_meta["consolidated_metadata"]["metadata"]["status"]["shape"] == [N]


def test_status_variable_follows_the_markers_and_history_says_what_ran(stores):
    raw = StepStore(stores["raw"])
    ds = xr.open_zarr(stores["raw"])
    markers = raw.markers()
    assert markers[FAILED]["status"] == "failed"
    assert ds.status.attrs["flag_meanings"].split() == list(cf.STATUS_CODES)
    for step, value in zip(raw.steps, ds.status.values, strict=True):
        assert value == cf.status_code(markers.get(step)), step
    assert ds.status.values[(FAILED - START).days] == cf.STATUS_CODES["failed"]
    assert np.isnan(ds.sst.values[(FAILED - START).days]).all()
    history = ds.attrs["history"].splitlines()
    assert "created the raw store" in history[0] and "ingest 2020-01-01..2020-01-04" in history[-1]
    assert "3 ok, 1 failed" in history[-1]
    # the coverage is that of the committed steps
    assert ds.attrs["time_coverage_start"] == "2020-01-01T12:00:00Z"
    assert ds.attrs["time_coverage_end"] == "2020-01-04T12:00:00Z"


def test_sensor_positions_are_the_grid_cells_of_their_indices(stores):
    ds = xr.open_zarr(stores["seedings"])
    index = ds.sensor_index.values[0]
    keep = index >= 0
    assert keep.sum() > 0
    rows, cols = np.divmod(index[keep], ds.sizes["lon"])
    np.testing.assert_allclose(ds.sensor_lat.values[0][keep], ds.lat.values[rows], atol=1e-4)
    np.testing.assert_allclose(ds.sensor_lon.values[0][keep], ds.lon.values[cols], atol=1e-4)
    assert np.isnan(ds.sensor_lat.values[0][~keep]).all()


def test_consolidated_metadata_follows_growth_and_attribute_updates(stores, tmp_path):
    import shutil

    path = str(tmp_path / "copy.zarr")
    shutil.copytree(stores["reconstruction"], path)
    store = StepStore(path)
    n = len(store.steps)
    store.extend([store.steps[-1] + dt.timedelta(days=3)])
    store.update_attrs(model_id="m-2")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = xr.open_zarr(path)  # consolidated: reads only the root zarr.json
    assert ds.sizes["time"] == n + 3 and ds.sst.shape[0] == n + 3 and ds.status.shape == (n + 3,)
    assert ds.attrs["model_id"] == "m-2"
    assert (ds.status.values[n:] == cf.STATUS_CODES["absent"]).all()


def test_export_per_step_and_all_and_range(stores, tmp_path):
    raw = StepStore(stores["raw"])
    ok = raw.committed_steps()
    per_step = export_netcdf(stores["raw"], str(tmp_path / "steps"), per="step")
    assert len(per_step) == len(ok) == N - 1
    one = export_netcdf(stores["raw"], str(tmp_path / "all.nc"), start="2020-01-02", end=dt.date(2020, 1, 4), per="all")
    assert one == [str(tmp_path / "all.nc")]
    with xr.open_dataset(one[0]) as ds:
        assert [str(t)[:10] for t in ds.time.values] == ["2020-01-02", "2020-01-04"]  # the failed day left out
        assert ds.attrs["time_coverage_end"] == "2020-01-04T12:00:00Z"
    assert export_netcdf(stores["raw"], str(tmp_path / "none"), start="2021-01-01", end="2021-01-02") == []

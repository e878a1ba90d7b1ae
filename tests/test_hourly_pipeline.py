"""The bundled hourly ERA5 file through ingest → prepare → train → infer → evaluate on an hourly
axis, with a tiny network so the suite stays fast (accuracy is benchmarks/ and docs/model.md's
business): every store, marker, seeding and report is per hour."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from flows.evaluate import evaluate_flow
from flows.infer import infer_flow
from flows.ingest import ingest_flow
from flows.prepare import prepare_flow
from flows.states import run_flow
from flows.train import train_flow
from pipeline.steps import HOURLY
from storage.step_store import StepStore
from tests.helpers_flows import flow_config, tree_digest

pytestmark = pytest.mark.usefixtures("prefect_server")
ERA5 = Path(__file__).resolve().parents[1] / "pipeline" / "data" / "era5_t2m_uk_2019-03-01_to_20_hourly.nc"
H = dt.datetime


@pytest.mark.slow  # ~30-70 s: 480 ERA5 hours through every flow
def test_era5_hours_through_every_flow(tmp_path, dask_cluster):
    cfg = flow_config(tmp_path, ERA5, dask_cluster.scheduler_address, **{
        "archive.variable": "t2m", "archive.valid_range": (-40.0, 50.0),
        "stores.output": str(tmp_path / "recon.zarr"), "stores.registry": str(tmp_path / "models"),
        "seeding.bin_size": 8, "seeding.upsampling": 4, "seeding.sensors_per_bin": 10,
        "train.architecture": "edsr_baseline", "train.epochs": 1, "train.n_features": 8,
        "train.n_res_blocks": 1, "train.batch_size": 8, "train.checkpoint_every": 1,
        "infer.days_per_task": 12,
    })
    day1, day2 = dt.date(2019, 3, 1), dt.date(2019, 3, 2)
    assert run_flow(ingest_flow, cfg, day1, day2)["summary"]["ok"] == 48
    prepared = run_flow(prepare_flow, cfg, day1, day2)
    assert prepared["ok"] and prepared["summary"]["ok"] == 48 and prepared["stats_days"] == 48

    seedings = StepStore(cfg.stores.seedings)
    assert seedings.cadence == HOURLY and len(seedings.steps) == 48
    first, second = (seedings.read_step(H(2019, 3, 1, h), ["sensor_index"])["sensor_index"] for h in (0, 1))
    assert (first >= 0).sum() == 240  # 10 sensors per 8×8 bin on the 32×48 trimmed domain
    assert not np.array_equal(first, second)  # every hour draws its own sensors
    assert seedings.marker(H(2019, 3, 1, 23))["status"] == "ok"

    trained = train_flow(cfg, day1, H(2019, 3, 2, 11), model_id="hourly-1")  # 36 hours: 29 train, 7 validate
    assert trained["model_id"] == "hourly-1"

    inferred = run_flow(infer_flow, cfg, H(2019, 3, 2, 12), day2, "hourly-1")
    assert inferred["ok"] and inferred["summary"]["ok"] == 12
    assert [r["day"] for r in inferred["days"]][:2] == ["2019-03-02T12", "2019-03-02T13"]
    out = xr.open_zarr(cfg.stores.output, consolidated=False)
    assert out.sizes["time"] == 12 and out.time.values[0] == np.datetime64("2019-03-02T12:00")
    assert np.isfinite(out.sst.values).all()  # no land in this domain
    before = tree_digest(tmp_path / "recon.zarr" / "sst")
    assert run_flow(infer_flow, cfg, H(2019, 3, 2, 12), day2, "hourly-1")["summary"]["unchanged"] == 12
    assert tree_digest(tmp_path / "recon.zarr" / "sst") == before

    report = evaluate_flow(cfg, H(2019, 3, 2, 12), day2, str(tmp_path / "m.json"), "hourly-1")
    assert report["n_days"] == 12
    body = json.loads((tmp_path / "m.json").read_text())
    assert body["per_day"][0]["day"] == "2019-03-02T12" and len(body["per_day"]) == 12
    assert 0 < body["methods"]["cubic"]["rmse"] < 3

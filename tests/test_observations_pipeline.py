"""The sample observation archive end to end, through the real readers and flows: ingest (CSV and
CF-DSG netCDF give the same store) → prepare from observations → train → infer (QA by
leave-platform-out cross-validation) → evaluate against the grid of origin and by platform CV →
the daily run from observations. Nothing before evaluate reads a gridded field: the raw store
(the truth) does not exist until evaluate needs it."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flows.config import load_config
from flows.daily import daily_flow
from flows.evaluate import evaluate_flow
from flows.infer import infer_flow
from flows.ingest import ingest_flow
from flows.observations_ingest import ingest_observations_flow
from flows.prepare_observations import prepare_observations_flow
from flows.states import run_flow
from flows.train import train_flow
from pipeline.observation_binning import MIXED_PLATFORMS, NO_PLATFORM
from pipeline.sample_observations import ERA5, write_sample_observations
from storage.observations_store import read_step_observations
from storage.seedings_store import read_platform_sensors
from storage.step_store import StepStore
from tests.helpers_flows import tree_digest

pytestmark = [pytest.mark.usefixtures("prefect_server"),
              pytest.mark.slow(reason="five flows and a training on 48 hourly steps: about 3-4 min on 2 cores")]
H = dt.datetime
DAY1, DAY2, DAY3 = dt.date(2019, 3, 1), dt.date(2019, 3, 2), dt.date(2019, 3, 3)


def sample_config(sample: Path, fmt: str, root: Path, dask_address: str):
    return load_config(sample / f"observations-{fmt}.toml", {
        "stores.observations": str(root / f"observations-{fmt}.zarr"),
        "stores.seedings": str(root / "seedings.zarr"), "stores.raw": str(root / "truth.zarr"),
        "stores.output": str(root / "recon.zarr"), "stores.registry": str(root / "models"),
        "archive.variable": "t2m", "archive.valid_range": (-40.0, 50.0),
        "seeding.bin_size": 8, "seeding.upsampling": 4,
        "train.architecture": "sensornet", "sensornet.iterations": 30, "sensornet.val_every": 15,
        "sensornet.patch": 32, "sensornet.features": 8, "sensornet.window_steps": 2, "sensornet.base": "cubic",
        "evaluate.dineof_steps": 0, "evaluate.cv_folds": 4, "dask.address": dask_address,
    })


def test_sample_observations_to_scored_reconstructions(tmp_path, dask_cluster):
    sample = tmp_path / "sample"
    write_sample_observations(sample)
    addr = dask_cluster.scheduler_address
    cfg = sample_config(sample, "csv", tmp_path, addr)
    cfg_nc = sample_config(sample, "netcdf", tmp_path, addr)

    # 1. both formats through the real readers give the same observations, step by step
    assert run_flow(ingest_observations_flow, cfg, DAY1, DAY2)["summary"]["ok"] == 48
    assert run_flow(ingest_observations_flow, cfg_nc, DAY1, DAY2)["summary"]["ok"] == 48
    csv_store, nc_store = StepStore(cfg.stores.observations), StepStore(cfg_nc.stores.observations)
    for step in csv_store.steps_between(DAY1, DAY2):
        a, b = (read_step_observations(s, step).sort_values(["platform", "time"], ignore_index=True)
                for s in (csv_store, nc_store))
        assert len(a) > 20
        pd.testing.assert_frame_equal(a, b, check_exact=False, atol=1e-5)

    # 2. prepare from observations: real sensors with their platforms; a re-run changes no byte
    prepared = run_flow(prepare_observations_flow, cfg, DAY1, DAY2)
    assert prepared["ok"] and prepared["summary"]["ok"] == 48 and prepared["stats_days"] == 48
    seedings = StepStore(cfg.stores.seedings)
    index, value, platform = read_platform_sensors(seedings, H(2019, 3, 1, 5))
    assert 20 < index.size <= int(seedings.attrs["max_sensors"]) and np.isfinite(value).all()
    named = platform[(platform != NO_PLATFORM) & (platform != MIXED_PLATFORMS)]
    assert np.unique(named).size > 20  # moorings and drifters, each its own code
    marker = seedings.marker(H(2019, 3, 1, 5))
    assert {n[0] for n in marker["platforms"].values()} == {"M", "D"}  # moorings and drifters by name
    before = tree_digest(Path(cfg.stores.seedings))
    again = run_flow(prepare_observations_flow, cfg, DAY1, DAY2)
    assert again["summary"]["unchanged"] == 48
    assert tree_digest(Path(cfg.stores.seedings)) == before

    # 3. train and infer with no gridded field anywhere yet
    assert not StepStore.exists(cfg.stores.raw)
    train_flow(cfg, DAY1, H(2019, 3, 2, 5), model_id="obs-1")
    inferred = run_flow(infer_flow, cfg, H(2019, 3, 2, 12), DAY2, "obs-1", cross_validate=True)
    assert inferred["ok"] and inferred["summary"]["ok"] == 12
    row = inferred["days"][0]
    assert row["qa_cv_kind"] == "platform" and row["qa_cv_n"] > 0
    assert all(0 < row[f"qa_cv_{m}_rmse"] < 5 for m in ("model", "cubic", "linear", "kriging"))
    assert not StepStore.exists(cfg.stores.raw)

    # 4. the grid of origin, ingested into a raw store just for scoring; evaluate both ways
    truth_cfg = cfg.model_copy(update={"archive": cfg.archive.model_copy(update={"source": str(ERA5)})})
    assert run_flow(ingest_flow, truth_cfg, H(2019, 3, 2, 12), DAY2)["summary"]["ok"] == 12
    report = evaluate_flow(cfg, H(2019, 3, 2, 12), DAY2, str(tmp_path / "m.json"), "obs-1")
    body = json.loads((tmp_path / "m.json").read_text())
    assert body["n_days"] == 12 and {"model", "cubic", "kriging"} <= set(body["methods"])
    assert all(0 < body["methods"][m]["rmse"] < 3 for m in ("model", "cubic", "kriging"))
    cv = body["platform_cv"]["methods"]
    assert {"model", "cubic", "linear", "kriging"} <= set(cv)
    assert cv["model"]["n"] == cv["cubic"]["n"] > 100 and cv["cubic"]["n_platforms"] > 20
    assert report["platform_cv"]["n_folds"] == 4
    text = (tmp_path / "m.md").read_text()
    assert "Leave-platform-out" in text and "full-resolution truth" in text

    # 5. the daily run from observations (the gridded archive beside it: the truth, for scoring)
    daily = run_flow(daily_flow, truth_cfg, DAY3, "obs-1")
    assert daily["ok"] and daily["summary"]["ok"] == 24, daily["summary"]
    assert all(r["qa_cv_kind"] == "platform" and r["qa_cv_model_rmse"] > 0 for r in daily["days"])
    assert StepStore(cfg.stores.observations).marker(H(2019, 3, 3, 23))["status"] == "ok"
    assert StepStore(cfg.stores.output).marker(H(2019, 3, 3, 23))["status"] == "ok"

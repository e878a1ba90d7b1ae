"""Train → infer → evaluate through the real flows on a small real-derived domain, with a tiny
generator so the suite stays fast. Accuracy is the demo's business (docs/model.md); here the
wiring, the stores, the registry and the reports are checked."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import numpy as np
import pytest
import xarray as xr

import model.zoo
from flows.compare import TABLE_BEGIN, TABLE_END, compare_flow
from flows.evaluate import evaluate_flow
from flows.infer import infer_flow
from flows.ingest import ingest_flow
from flows.prepare import prepare_flow
from flows.states import run_flow
from flows.train import split_days, train_flow
from model.checkpoint import load_checkpoint
from model.config import ARCHITECTURES
from pipeline.grid import Region
from pipeline.sample_archive import write_sample_archive
from storage.model_registry import ModelRegistry, RegistryError
from storage.step_store import StepStore
from tests.helpers_flows import flow_config, tree_digest

pytestmark = pytest.mark.usefixtures("prefect_server")
START = dt.date(2015, 1, 1)
N_DAYS = 24
REGION = Region(south=24.0, north=40.0, west=280.0, east=312.0)  # 64 × 128 cells, with the US east coast


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, dask_cluster, prefect_server):
    root = tmp_path_factory.mktemp("modelflows")
    write_sample_archive(root / "archive", START, N_DAYS, region=REGION)
    cfg = flow_config(root, root / "archive", dask_cluster.scheduler_address, **{
        "seeding.bin_size": 8, "seeding.upsampling": 4, "seeding.sensors_per_bin": 6,
        "stores.registry": str(root / "models"), "stores.output": str(root / "recon.zarr"),
        "train.architecture": "raseedgan", "train.epochs": 2, "train.n_features": 8, "train.n_res_blocks": 1, "train.batch_size": 4,
        "train.checkpoint_every": 1, "infer.days_per_task": 5,
    })
    end = START + dt.timedelta(days=N_DAYS - 1)
    assert run_flow(ingest_flow, cfg, START, end)["ok"]
    assert run_flow(prepare_flow, cfg, START, end)["ok"]
    return cfg, root


def test_split_is_chronological_with_the_last_fifth_validating():
    days = [START + dt.timedelta(days=i) for i in range(10)]
    train, val = split_days(days, 0.2)
    assert train == days[:8] and val == days[8:]


def test_train_publishes_a_self_contained_model(prepared):
    cfg, _root = prepared
    result = train_flow(cfg, START, START + dt.timedelta(days=15), model_id="tiny-1")
    registry = ModelRegistry(cfg.stores.registry)
    assert registry.current() == "tiny-1"
    meta = registry.meta("tiny-1")
    assert meta["n_train_days"] == 13 and meta["n_val_days"] == 3
    assert meta["seeding"]["bin_size"] == 8 and len(meta["history"]) == 2
    # the reference early-stopping rule on the recorded validation losses: epoch 1 if the loss
    # rose at epoch 2, else epoch 2
    (e1, v1), (e2, v2) = [(h["epoch"], h["val_content"]) for h in meta["history"]]
    assert result["kept_epoch"] == (e1 if v2 > v1 else e2) and meta["kept_epoch"] == result["kept_epoch"]
    ckpt = load_checkpoint(registry.checkpoint("tiny-1"))
    assert ckpt.generator.upsampling == 4
    assert ckpt.norm.hr_mean.shape == (32, 64) and np.isfinite(ckpt.norm.hr_mean).all()
    with pytest.raises(RegistryError, match="no published model 'nope'"):
        registry.resolve("nope")


def run_artifacts(flow_run_id, key: str) -> list:
    """Every version of the artifact ``key`` that the flow run (or its tasks) created, oldest first."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
    )

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]), key=ArtifactFilterKey(any_=[key])))
    return sorted(found, key=lambda a: a.created)


@pytest.mark.slow
def test_training_shows_its_progress_and_publishes_its_loss_curve(prepared, capsys):
    cfg, _root = prepared
    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"epochs": 3})})
    state = train_flow(cfg, START, START + dt.timedelta(days=15), model_id="tiny-progress", progress_bar=True,
                       return_state=True)
    assert state.is_completed()
    run_id = state.state_details.flow_run_id
    batches = -(-13 // cfg.train.batch_size)  # 13 training days, a batch of 4: 4 steps an epoch
    # the bar: every step, the epoch and the loss, on the console
    shown = capsys.readouterr().out
    assert "train tiny-progress" in shown and f"{3 * batches}/{3 * batches}" in shown and "epoch 3" in shown
    # the progress artifact reached 100 %
    progress, = run_artifacts(run_id, "train-progress")
    assert progress.type == "progress" and float(progress.data) == 100.0
    # the table artifact gained a row per epoch while it trained: one version per epoch
    versions = run_artifacts(run_id, "train-epochs")
    rows = [json.loads(v.data) for v in versions]
    assert [len(r) for r in rows] == [1, 2, 3]
    assert [r["epoch"] for r in rows[-1]] == [1, 2, 3] and all(r["val_content"] > 0 for r in rows[-1])
    # the loss curve, a real PNG, beside the published model
    registry = ModelRegistry(cfg.stores.registry)
    png = registry.read_file("tiny-progress", "loss.png")
    assert png is not None and png.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert png[12:16] == b"IHDR" and width >= 300 and height >= 200
    assert registry.meta("tiny-progress")["files"] == ["loss.png"]
    if "tiny-1" in registry.list():  # the other tests infer with the model they trained
        registry.set_current("tiny-1")


def test_infer_writes_masked_days_with_qa_and_is_idempotent(prepared):
    cfg, root = prepared
    if ModelRegistry(cfg.stores.registry).current() is None:
        train_flow(cfg, START, START + dt.timedelta(days=15), model_id="tiny-1")
    a, b = START + dt.timedelta(days=16), START + dt.timedelta(days=N_DAYS - 1)
    result = run_flow(infer_flow, cfg, a, b)
    assert result["summary"]["ok"] == 8 and result["ok"]
    ds = xr.open_zarr(cfg.stores.output, consolidated=False)
    assert ds.sizes == {"time": 8, "lat": 64, "lon": 128, "bnds": 2}  # bnds: lat_bnds, lon_bnds
    assert (ds.status.values == 1).all()  # ok, as the markers say
    assert "infer" in ds.attrs["history"].splitlines()[-1] and "with model tiny-1: 8 ok" in ds.attrs["history"]
    land = ds.land_mask.values.astype(bool)
    assert np.isnan(ds.sst.values[:, land]).all() and np.isfinite(ds.sst.values[:, ~land]).all()
    assert ds.attrs["model_id"] == "tiny-1" and ds.attrs["seeding_bin_size"] == 8
    assert ds.sst.attrs["standard_name"] == "sea_surface_temperature"
    assert np.isfinite(ds.qa_rebin_rmse.values).all()
    before = tree_digest(root / "recon.zarr")
    assert run_flow(infer_flow, cfg, a, b)["summary"]["unchanged"] == 8
    assert tree_digest(root / "recon.zarr") == before  # every file, the root zarr.json included
    registry = ModelRegistry(cfg.stores.registry)
    assert StepStore(cfg.stores.output).marker(a)["model_id"] == "tiny-1"
    assert StepStore(cfg.stores.output).marker(a)["model_sha256"] == registry.fingerprint("tiny-1")


@pytest.mark.slow  # ~40-90 s: every baseline incl. kriging and DINEOF, and the plots
def test_evaluate_reports_every_method_and_draws(prepared, tmp_path):
    cfg, _root = prepared
    if ModelRegistry(cfg.stores.registry).current() is None:
        train_flow(cfg, START, START + dt.timedelta(days=15), model_id="tiny-1")
    a, b = START + dt.timedelta(days=18), START + dt.timedelta(days=N_DAYS - 1)
    report = evaluate_flow(cfg, a, b, str(tmp_path / "m.json"), plots_dir=str(tmp_path / "plots"))
    saved = json.loads((tmp_path / "m.json").read_text())
    # the baselines a scientist expects, fitted on the model's training sensors only
    assert set(saved["methods"]) >= {"model", "cubic", "linear", "nearest", "bicubic_lr", "kriging",
                                     "cubic_anomaly", "dineof"}
    assert saved["baselines_fitted_on"] == [str(START), str(START + dt.timedelta(days=12))]
    assert saved["baselines"]["variogram"]["len_scale_cells"] > 0 and saved["baselines"]["dineof"]["n_eofs"] >= 1
    for m in saved["methods"].values():
        assert set(m) == {"rmse", "mae", "bias", "psnr", "ssim", "hfen", "ms_per_field"}
        assert np.isfinite(list(m.values())).all() and m["ms_per_field"] > 0
    # cubic of exact sensors beats the 2°-bin field itself on this smooth field
    assert saved["methods"]["cubic"]["rmse"] < saved["methods"]["lr_bins"]["rmse"]
    assert (tmp_path / "plots" / "spectra.png").stat().st_size > 10_000
    assert any(p.name.startswith("maps-") for p in (tmp_path / "plots").iterdir())
    assert report["n_days"] == 6
    # the model is scored on exactly what the infer flow writes (coastal fill, land mask and all)
    run_flow(infer_flow, cfg, a, a)
    truth = StepStore(cfg.stores.raw).read_step(a, ["sst"])["sst"][:64, :128]
    stored = StepStore(cfg.stores.output).read_step(a, ["sst"])["sst"]
    ocean = np.isfinite(truth) & np.isfinite(stored)
    expected = float(np.sqrt(np.mean((stored[ocean] - truth[ocean]) ** 2)))
    assert saved["per_day"][0]["model_rmse"] == pytest.approx(expected, abs=2e-5)


def zoo_config(cfg, root, architectures):
    return cfg.model_copy(update={
        "stores": cfg.stores.model_copy(update={"registry": str(root / "zoo-models")}),
        "compare": cfg.compare.model_copy(update={
            "architectures": list(architectures), "epochs": 2, "pretrain_epochs": 1, "max_batches_per_epoch": 2,
            "paper_sizes": False}),
    })


@pytest.mark.slow  # ~1-3 min: trains all eight zoo architectures
def test_compare_trains_every_architecture_and_a_zoo_model_runs_in_the_infer_flow(prepared, tmp_path):
    cfg, _root = prepared
    cfg = zoo_config(cfg, tmp_path, ARCHITECTURES)
    md = tmp_path / "model-zoo.md"
    md.write_text(f"# Zoo\n\nprose before\n\n{TABLE_BEGIN}\nold table\n{TABLE_END}\n\nprose after\n")
    end = START + dt.timedelta(days=N_DAYS - 1)
    report = compare_flow(cfg, START, end, str(tmp_path / "zoo.json"), str(md))
    saved = json.loads((tmp_path / "zoo.json").read_text())
    assert saved["ok"] and saved["n_test_days"] == 5 and saved["n_val_days"] == 4 and saved["n_train_days"] == 15
    assert saved["test_period"] == [str(end - dt.timedelta(days=4)), str(end)]
    assert saved["train_period"][1] < saved["val_period"][0] <= saved["val_period"][1] < saved["test_period"][0]
    rows = {r["method"]: r for r in saved["rows"]}
    assert list(rows) == [*ARCHITECTURES, "cubic", "linear", "nearest", "kriging", "cubic_anomaly", "dineof",
                          "bicubic_lr", "lr_bins"]
    assert all(rows[b]["infer_ms_per_field"] > 0 for b in ("cubic", "kriging", "dineof"))
    for name in ARCHITECTURES:
        r = rows[name]
        assert r["parameters"] > 1000 and r["seconds_per_epoch"] > 0 and r["infer_ms_per_field"] > 0
        assert all(np.isfinite(r[k]) for k in ("rmse", "psnr", "ssim", "hfen"))
    assert len({rows[n]["parameters"] for n in ARCHITECTURES}) >= 6  # really different networks
    assert rows["cubic"]["rmse"] < rows["lr_bins"]["rmse"] and rows["cubic"]["parameters"] is None
    text = md.read_text()
    assert text.startswith("# Zoo\n\nprose before") and text.rstrip().endswith("prose after")
    assert "old table" not in text and text.count(TABLE_BEGIN) == 1
    assert "| esrgan |" in text and "| cubic |" in text
    registry = ModelRegistry(cfg.stores.registry)
    assert registry.current() is None  # published for use, never made current
    assert sorted(registry.meta(r["model_id"])["architecture"] for r in report["rows"] if r["kind"] == "model") == \
        sorted(ARCHITECTURES)
    ck = load_checkpoint(registry.checkpoint(rows["esrgan"]["model_id"]))
    assert ck.extra["interpolation"]["alpha"] == 0.8
    # a zoo model runs through the inference flow unchanged
    infer_cfg = cfg.model_copy(update={"stores": cfg.stores.model_copy(update={"output": str(tmp_path / "mdsr.zarr")})})
    a = START + dt.timedelta(days=20)
    result = run_flow(infer_flow, infer_cfg, a, end, rows["mdsr"]["model_id"])
    assert result["ok"] and result["summary"]["ok"] == 4
    out = xr.open_zarr(tmp_path / "mdsr.zarr", consolidated=False)
    assert out.attrs["model_id"] == rows["mdsr"]["model_id"]
    assert np.isfinite(out.sst.values[:, ~out.land_mask.values.astype(bool)]).all()


@pytest.mark.slow  # ~40-90 s: a compare run with its trainings
def test_compare_reports_a_failing_architecture_and_goes_on(prepared, tmp_path, monkeypatch):
    cfg, _root = prepared
    cfg = zoo_config(cfg, tmp_path, ["srresnet", "edsr_baseline"])

    def broken(*args):
        raise RuntimeError("injected failure\nsecond | line")

    monkeypatch.setitem(model.zoo.SPECS, "srresnet", dataclasses.replace(model.zoo.SPECS["srresnet"], generator=broken))
    report = compare_flow(cfg, START, START + dt.timedelta(days=N_DAYS - 1), str(tmp_path / "z.json"))
    rows = {r["method"]: r for r in report["rows"]}
    assert not report["ok"] and "injected failure" in rows["srresnet"]["error"]
    from flows.compare import markdown_table

    line = next(x for x in markdown_table(report["rows"]).splitlines() if x.startswith("| srresnet"))
    assert "injected failure second \\| line" in line  # one table row, separators escaped
    assert [p.name for p in (tmp_path / "zoo-models").iterdir() if p.name.startswith("zoo-srresnet")] == []
    assert "error" not in rows["edsr_baseline"] and np.isfinite(rows["edsr_baseline"]["rmse"])
    assert np.isfinite(rows["cubic"]["rmse"])


def test_compare_budget_is_shared_and_paper_sizes_reset_the_widths():
    from flows.compare import architecture_config
    from flows.config import ConfigError, load_config

    cfg = load_config(None, {"train.n_features": 8, "train.n_res_blocks": 1, "train.batch_size": 4,
                             "compare.epochs": 5, "compare.pretrain_epochs": 2})
    edsr = architecture_config(cfg, "edsr").train
    assert (edsr.architecture, edsr.n_features, edsr.n_res_blocks, edsr.epochs, edsr.pretrain_epochs) == (
        "edsr", None, None, 5, 2)
    assert edsr.batch_size == 4 and edsr.checkpoint_every == 1
    small = architecture_config(cfg.model_copy(update={"compare": cfg.compare.model_copy(update={"paper_sizes": False})}),
                                "edsr").train
    assert (small.n_features, small.n_res_blocks) == (8, 1)
    with pytest.raises(ConfigError, match=r"compare.pretrain_epochs \(2\) must be smaller than compare.epochs \(2\)"):
        load_config(None, {"compare.epochs": 2, "compare.pretrain_epochs": 2})


@pytest.mark.slow  # ~30-70 s: trains SensorNet and fits the baselines
def test_compare_scores_sensornet_beside_the_fitted_baselines(prepared, tmp_path):
    cfg, _root = prepared
    cfg = zoo_config(cfg, tmp_path, ["sensornet"])
    cfg = cfg.model_copy(update={"sensornet": cfg.sensornet.model_copy(update={
        "iterations": 4, "batch_size": 2, "features": 8, "depth": 1, "val_every": 2, "context_steps": 8})})
    report = compare_flow(cfg, START, START + dt.timedelta(days=N_DAYS - 1), str(tmp_path / "zoo.json"))
    rows = {r["method"]: r for r in report["rows"]}
    sn = rows["sensornet"]
    assert not sn.get("error") and sn["parameters"] > 1000 and sn["infer_ms_per_field"] > 0
    assert np.isfinite(sn["rmse"]) and sn["rmse"] < rows["lr_bins"]["rmse"]
    assert ModelRegistry(cfg.stores.registry).meta(sn["model_id"])["train"]["architecture"] == "sensornet"


# last in the module: it retrains the module's shared model on another period
@pytest.mark.slow  # ~4-6 s: a second training and inference of the module's model
def test_a_model_retrained_under_the_same_id_rewrites_the_days(prepared):
    """The markers record the checkpoint's SHA-256: the same id with new weights is not 'unchanged'
    (a re-run demo once kept the previous model's fields)."""
    cfg, _root = prepared
    registry = ModelRegistry(cfg.stores.registry)
    if registry.current() is None:
        train_flow(cfg, START, START + dt.timedelta(days=15), model_id="tiny-1")
    a, b = START + dt.timedelta(days=16), START + dt.timedelta(days=N_DAYS - 1)
    run_flow(infer_flow, cfg, a, b)
    first = registry.fingerprint("tiny-1")
    old_field = StepStore(cfg.stores.output).read_step(a, ["sst"])["sst"]
    # no need to clear the finished training's checkpoints: a published id is retrained afresh
    train_flow(cfg, START + dt.timedelta(days=1), START + dt.timedelta(days=15), model_id="tiny-1")
    assert registry.fingerprint("tiny-1") != first
    again = run_flow(infer_flow, cfg, a, b)
    assert again["summary"]["ok"] == 8 and again["summary"].get("unchanged", 0) == 0
    out = StepStore(cfg.stores.output)
    assert out.marker(a)["model_sha256"] == registry.fingerprint("tiny-1")
    assert not np.array_equal(out.read_step(a, ["sst"])["sst"], old_field, equal_nan=True)
    assert run_flow(infer_flow, cfg, a, b)["summary"]["unchanged"] == 8

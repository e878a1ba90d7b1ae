"""Normalisation statistics through the flows on more days than one statistics task holds (32),
so the merge of the parts runs: annual and per calendar month (``train.seasonal_norm``), the LR
and HR grids, against a float64 numpy reference; and the parts are merged in day order, bit for
bit, whatever order the Dask tasks finish in."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from prefect import flow

from flows.dask_runtime import dask_client
from flows.ingest import ingest_flow
from flows.prepare import stream_norm_stats
from flows.prepare_job import stats_partial_job
from flows.states import run_flow
from pipeline.normalisation import StreamingStats, finalize
from pipeline.sample_archive import write_sample_archive
from storage.step_store import StepStore
from tests.helpers_flows import SMALL_REGION, days, flow_config

pytestmark = [pytest.mark.usefixtures("prefect_server"), pytest.mark.slow]  # ~40 s: 70 days ingested and prepared
START = dt.date(2019, 1, 10)
N = 70  # three calendar months, three statistics tasks of 32 days


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, dask_cluster):
    from flows.prepare import prepare_flow

    root = tmp_path_factory.mktemp("stats")
    write_sample_archive(root / "archive", START, N, region=SMALL_REGION)
    cfg = flow_config(root, root / "archive", dask_cluster.scheduler_address,
                      **{"seeding.bin_size": 8, "seeding.upsampling": 4, "seeding.sensors_per_bin": 6})
    end = START + dt.timedelta(days=N - 1)
    assert run_flow(ingest_flow, cfg, START, end)["ok"] and run_flow(prepare_flow, cfg, START, end)["ok"]
    return cfg, StepStore(cfg.stores.seedings), days(START, N)


@flow(name="stats-test")
def _stats_flow(cfg, path: str, steps: list[dt.date], seasonal: bool = False):
    with dask_client(cfg.dask):
        return stream_norm_stats(cfg, StepStore(path), steps, seasonal=seasonal)


def _stats(cfg, store: StepStore, steps: list[dt.date], seasonal: bool = False):
    """The flows' statistics (the statistics tasks run on Dask inside a flow, as prepare/train do)."""
    return _stats_flow(cfg, store.path, steps, seasonal)


def _reference(store: StepStore, steps: list[dt.date], grid: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-pixel weighted mean and std in float64 over ``steps``, and the sample counts."""
    weight_name = "lr_count" if grid == "lr" else "hr_flag"
    stack = [store.read_step(d, [f"{grid}_mean", weight_name]) for d in steps]
    values = np.stack([s[f"{grid}_mean"] for s in stack]).astype("float64")
    weight = np.stack([s[weight_name] > 0 for s in stack])
    n = weight.sum(axis=0)
    mean = np.where(weight, np.nan_to_num(values), 0).sum(axis=0) / np.maximum(n, 1)
    var = np.where(weight, (np.nan_to_num(values) - mean) ** 2, 0).sum(axis=0) / np.maximum(n, 1)
    return mean, np.sqrt(var), n


def test_annual_statistics_over_three_tasks_match_numpy_for_both_grids(prepared):
    cfg, store, steps = prepared
    stats = _stats(cfg, store, steps)
    for grid in ("lr", "hr"):
        mean, std, n = _reference(store, steps, grid)
        well = n >= 5  # pixels with fewer samples take the pooled values (finalize's min_count)
        assert well.sum() > 0.5 * well.size
        np.testing.assert_allclose(getattr(stats, f"{grid}_mean")[well], mean[well], rtol=0, atol=1e-4)
        np.testing.assert_allclose(getattr(stats, f"{grid}_std")[well], np.maximum(std[well], 1e-3), rtol=1e-4, atol=1e-4)


def test_seasonal_statistics_are_each_months_own(prepared):
    cfg, store, steps = prepared
    stats = _stats(cfg, store, steps, seasonal=True)
    assert stats.lr_mean.shape[0] == 12 and stats.hr_mean.shape[0] == 12
    annual = _stats(cfg, store, steps)
    for month in (1, 2, 3):
        in_month = [d for d in steps if d.month == month]
        for grid in ("lr", "hr"):
            mean, _, n = _reference(store, in_month, grid)
            well = n >= 5
            assert well.any()
            np.testing.assert_allclose(getattr(stats, f"{grid}_mean")[month - 1][well], mean[well], rtol=0, atol=1e-4)
    # a month without data (June) takes the annual statistics
    np.testing.assert_array_equal(stats.hr_mean[5], annual.hr_mean)
    assert not np.array_equal(stats.hr_mean[0], stats.hr_mean[2])  # January is not March


def test_parts_merge_in_day_order_bit_for_bit(prepared):
    """The flow's statistics equal the parts (one per 32 days) merged in day order in this
    process, exactly."""
    cfg, store, steps = prepared
    stats = _stats(cfg, store, steps)
    groups = [steps[i : i + 32] for i in range(0, len(steps), 32)]
    assert len(groups) == 3
    parts = [stats_partial_job(g, store.path) for g in groups]

    def merged(order: list[int]) -> tuple[StreamingStats, StreamingStats]:
        out = []
        for grid in ("lr", "hr"):
            acc = None
            for i in order:
                st = StreamingStats.from_arrays({k: parts[i][f"{grid}_{k}"] for k in ("count", "mean", "m2")})
                acc = st if acc is None else acc.merge(st)
            out.append(acc)
        return out[0], out[1]

    in_order = finalize(*merged([0, 1, 2]))
    for name in ("lr_mean", "lr_std", "hr_mean", "hr_std"):
        np.testing.assert_array_equal(getattr(stats, name), getattr(in_order, name), err_msg=name)
    # the order is not free: another merge order changes the float64 sums in their last bits
    # (rounded to the float32 statistics it often does not show, which is why the day order is kept)
    a, b = merged([0, 1, 2]), merged([2, 0, 1])
    assert any(not np.array_equal(x.to_arrays()["m2"], y.to_arrays()["m2"]) for x, y in zip(a, b, strict=True))


def test_a_seasonal_checkpoint_through_train_and_infer_flows(prepared, tmp_path):
    """``train.seasonal_norm`` through the flows: the checkpoint carries 12 monthly statistics and
    the infer flow de-normalises each step with its own day of the year (a shifted day would
    give another field)."""
    from flows.infer import infer_flow
    from flows.train import train_flow
    from model.checkpoint import load_checkpoint
    from model.inference import InferenceEngine
    from pipeline.regrid import hr_to_native
    from storage.model_registry import ModelRegistry

    cfg, store, steps = prepared
    cfg = cfg.model_copy(update={
        "stores": cfg.stores.model_copy(update={"registry": str(tmp_path / "models"),
                                                "output": str(tmp_path / "recon.zarr")}),
        "train": cfg.train.model_copy(update={
            "architecture": "raseedgan", "seasonal_norm": True, "epochs": 1, "n_features": 8,
            "n_res_blocks": 1, "batch_size": 4}),
    })
    train_flow(cfg, steps[0], steps[49], model_id="seasonal")
    ckpt = load_checkpoint(ModelRegistry(cfg.stores.registry).checkpoint("seasonal"))
    assert ckpt.norm.seasonal and ckpt.norm.hr_mean.shape[0] == 12
    assert not np.array_equal(ckpt.norm.hr_mean[0], ckpt.norm.hr_mean[2])  # January's are not March's

    scored = steps[30:33]  # 9-11 February: between January's and February's own statistics
    assert run_flow(infer_flow, cfg, scored[0], scored[-1], "seasonal")["summary"]["ok"] == 3
    out = StepStore(cfg.stores.output)
    land = store.read_static("land_mask").astype(bool)
    hr_cell = cfg.seeding.bin_size // cfg.seeding.upsampling
    engine = InferenceEngine(ckpt.generator, ckpt.norm, device="cpu")
    lr = [store.read_step(d, ["lr_mean", "lr_count"]) for d in scored]
    lr_mean, lr_count = np.stack([r["lr_mean"] for r in lr]), np.stack([r["lr_count"] for r in lr])
    doy = np.array([d.timetuple().tm_yday for d in scored])
    for shift, same in ((0, True), (120, False)):  # June: no training data, the annual statistics
        hr = engine.predict(lr_mean, lr_count, day_of_year=doy + shift)
        for d, field in zip(scored, hr, strict=True):
            stored = out.read_step(d, ["sst"])["sst"][: land.shape[0], : land.shape[1]]
            expected = hr_to_native(field, hr_cell, land)
            ocean = ~land & np.isfinite(stored)
            assert ocean.sum() > 100
            gap = float(np.max(np.abs(stored[ocean] - expected[ocean])))
            assert (gap < 1e-4) if same else (gap > 1e-2), (d, shift, gap)

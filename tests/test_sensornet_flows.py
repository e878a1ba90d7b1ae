"""SensorNet through the real flows on the bundled ERA5 hours, and the proof that training reads
nothing but sensors: poisoned cells without sensors change no weight and no statistic."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
import torch

from flows.evaluate import evaluate_flow
from flows.infer import infer_flow
from flows.ingest import ingest_flow
from flows.prepare import prepare_flow
from flows.states import run_flow
from flows.train import train_flow
from model.config import SensorNetConfig
from model.data import SparseFieldDataset
from model.sensornet_fit import SensorSequence, fit_sensornet, load_engine
from model.sensornet_samples import uses_patches
from model.synthetic import SyntheticSource, estimate_norm
from model.trainer import TrainConfig, Trainer
from pipeline.normalisation import StreamingStats
from pipeline.sensor_context import fit_context
from storage.model_registry import ModelRegistry
from storage.seedings_store import read_sensors
from storage.step_store import StepStore
from tests.helpers_flows import flow_config

ERA5 = Path(__file__).resolve().parents[1] / "pipeline" / "data" / "era5_t2m_uk_2019-03-01_to_20_hourly.nc"
H = dt.datetime
TINY = {"iterations": 6, "batch_size": 4, "features": 8, "depth": 1, "window_steps": 2, "val_every": 3}


@pytest.mark.slow  # ~50-110 s: SensorNet trained, inferred and evaluated through the flows
@pytest.mark.usefixtures("prefect_server")
def test_sensornet_trains_infers_and_is_scored_through_the_flows(tmp_path, dask_cluster):
    cfg = flow_config(tmp_path, ERA5, dask_cluster.scheduler_address, **{
        "archive.variable": "t2m", "archive.valid_range": (-40.0, 50.0),
        "stores.output": str(tmp_path / "recon.zarr"), "stores.registry": str(tmp_path / "models"),
        "seeding.bin_size": 8, "seeding.upsampling": 4, "train.architecture": "sensornet",
        **{f"sensornet.{k}": v for k, v in TINY.items()}, "sensornet.window": "centred",
        "evaluate.dineof_steps": 24, "infer.days_per_task": 6,
    })
    day1, day2 = dt.date(2019, 3, 1), dt.date(2019, 3, 2)
    assert run_flow(ingest_flow, cfg, day1, day2)["ok"] and run_flow(prepare_flow, cfg, day1, day2)["ok"]
    trained = train_flow(cfg, day1, H(2019, 3, 2, 11), model_id="sn-1")
    meta = ModelRegistry(cfg.stores.registry).meta("sn-1")
    assert meta["sensornet"]["window"] == "centred" and meta["parameters"] > 0
    assert meta["train_period"] == ["2019-03-01T00", "2019-03-02T04"]  # 29 of 36 hours train, 7 validate
    assert all(np.isfinite(h["val_rmse"]) for h in meta["history"])
    assert ModelRegistry(cfg.stores.registry).read_file("sn-1", "loss.png").startswith(b"\x89PNG\r\n\x1a\n")
    engine = load_engine(trained["checkpoint"])
    assert engine.cfg.window == "centred" and engine.reach == (2, 2)  # the window travels with the model

    result = run_flow(infer_flow, cfg, H(2019, 3, 2, 12), day2, "sn-1")
    assert result["ok"] and result["summary"]["ok"] == 12
    seedings, out = StepStore(cfg.stores.seedings), StepStore(cfg.stores.output)
    step = H(2019, 3, 2, 15)
    field = out.read_step(step, ["sst"])["sst"]
    (index, value), = read_sensors(seedings, [step])
    assert np.isfinite(field).all()
    # every input sensor is honoured exactly: the correction is zero at the sensors
    np.testing.assert_allclose(field.ravel()[index], value, atol=1e-4)

    report = evaluate_flow(cfg, H(2019, 3, 2, 12), day2, str(tmp_path / "m.json"), "sn-1")
    assert {"model", "model_base", "cubic", "kriging", "dineof", "nearest"} <= set(report["methods"])
    # the network's own input base, scored beside it (what the network adds is the difference):
    # here an unpooled linear base, i.e. the linear baseline itself
    assert report["methods"]["model_base"]["rmse"] == pytest.approx(report["methods"]["linear"]["rmse"], rel=1e-4)
    assert report["methods"]["model_base"]["ms_per_field"] > 0
    assert report["methods"]["model"]["rmse"] < 3 and report["methods"]["model"]["ms_per_field"] > 0


def _sequence(field: np.ndarray, seed: int = 0, percent: int = 15) -> tuple[SensorSequence, list[np.ndarray]]:
    """Sensor lists of every step of ``field`` (T, ny, nx) at random cells (``percent`` %)."""
    rng = np.random.default_rng(seed)
    t, ny, nx = field.shape
    picks = [np.sort(rng.choice(ny * nx, ny * nx * percent // 100, replace=False)) for _ in range(t)]
    sensors = [(i.astype(np.int64), field[k].ravel()[i].astype(np.float32)) for k, i in enumerate(picks)]
    return SensorSequence(sensors, np.linspace(0, 1, t, endpoint=False)), picks


@pytest.mark.slow  # ~5-10 s per base, three bases
@pytest.mark.parametrize(("base", "patch", "pool_sigma"), [("linear", 0, 0.0), ("kriging", 8, 0.0), ("cubic", 8, 2.0)])
def test_sensornet_training_and_its_statistics_read_only_sensors(base, patch, pool_sigma):
    """Whole-domain samples with a linear base; patches with a kriging base (its variogram
    fitted to the sensors); patches with a cubic base pooled over the window's steps and an
    edge weight: poison in every cell without a sensor changes nothing."""
    rng = np.random.default_rng(1)
    ny, nx, t = 24, 32, 20
    yy, xx = np.mgrid[0:ny, 0:nx]
    clean = np.stack([np.sin(xx / 5.0 + k / 3) + np.cos(yy / 4.0) + 0.1 * rng.normal(size=(ny, nx))
                      for k in range(t)]).astype(np.float32)
    _, picks = _sequence(clean)
    cfg = SensorNetConfig(**{**TINY, "base": base, "patch": patch, "pool_sigma": pool_sigma,
                             "edge_weight": 4.0 if pool_sigma else 0.0})
    assert uses_patches((ny, nx), patch) == (patch > 0)
    land = np.zeros((ny, nx), bool)
    runs = []
    for poison in (None, np.nan, 1e9):
        field = clean.copy()
        if poison is not None:
            for k, i in enumerate(picks):  # every cell without a sensor holds poison
                keep = np.zeros(ny * nx, bool)
                keep[i] = True
                field[k].ravel()[~keep] = poison
        s, _ = _sequence(field)
        ctx = fit_context(s.sensors[:16], s.phases[:16], land, groups=2, base=base)
        net, history = fit_sensornet(s, list(range(16)), list(range(16, 20)), ctx, cfg)
        runs.append((ctx, net, history))
    (c0, n0, h0), *poisoned = runs
    for ctx, net, history in poisoned:
        assert ctx.mean == c0.mean and ctx.std == c0.std
        np.testing.assert_array_equal(ctx.climatology, c0.climatology)
        np.testing.assert_array_equal(ctx.residual, c0.residual)
        if base == "kriging":
            np.testing.assert_array_equal(ctx.variogram, c0.variogram)
        assert [h["val_rmse"] for h in history] == [h["val_rmse"] for h in h0]
        for a, b in zip(net.state_dict().values(), n0.state_dict().values(), strict=True):
            assert torch.equal(a, b)
        assert all(np.isfinite(h["train_rmse"]) for h in history if h["iteration"] > 0)
    # the untrained net is scored first; the kept weights are the best RMSE whose MAE at the
    # withheld sensors is no worse than the untrained net's
    untrained = h0[0]
    assert untrained["iteration"] == 0 and sum(h["kept"] for h in h0) == 1
    eligible = [h for h in h0 if h["val_mae"] <= untrained["val_mae"]]
    assert next(h for h in h0 if h["kept"]) == min(eligible, key=lambda h: h["val_rmse"])


class _Poisoned:
    """A sample source whose cells without sensors hold ``poison`` (in place of NaN)."""

    def __init__(self, source: SyntheticSource, poison: float) -> None:
        self.source, self.poison = source, poison

    def __len__(self) -> int:
        return len(self.source)

    def sample(self, i: int, epoch: int):
        s = dict(self.source.sample(i, epoch))
        s["lr_mean"] = np.where(s["lr_count"] > 0, s["lr_mean"], self.poison).astype(np.float32)
        s["hr_mean"] = np.where(s["hr_flag"] > 0, s["hr_mean"], self.poison).astype(np.float32)
        return s


def test_zoo_trainer_loss_and_statistics_never_read_empty_cells(tmp_path):
    train = SyntheticSource(8, hr_shape=(16, 32), upsampling=4, sensors_per_bin=4, seed=1)
    val = SyntheticSource(4, hr_shape=(16, 32), upsampling=4, sensors_per_bin=4, seed=1, offset=8)
    norm = estimate_norm(SyntheticSource(32, hr_shape=(16, 32), upsampling=4, sensors_per_bin=4, seed=1))
    config = TrainConfig(epochs=2, batch_size=4, lr_generator=1e-3, checkpoint_every=1, n_features=8,
                         n_res_blocks=1, device="cpu", seed=3, architecture="edsr_baseline")
    histories = []
    for poison in (None, 1e9, np.nan):
        tr = train if poison is None else _Poisoned(train, poison)
        va = val if poison is None else _Poisoned(val, poison)
        if poison is not None:  # the pipeline's streamed statistics of the poisoned source equal the clean ones
            for grid, flag in (("lr_mean", "lr_count"), ("hr_mean", "hr_flag")):
                clean, dirty = StreamingStats(train.sample(0, 0)[grid].shape), StreamingStats(train.sample(0, 0)[grid].shape)
                for i in range(len(train)):
                    a, b = train.sample(i, 0), tr.sample(i, 0)
                    clean.update(a[grid], a[flag] > 0)
                    dirty.update(b[grid], b[flag] > 0)
                for key, value in clean.to_arrays().items():
                    np.testing.assert_array_equal(dirty.to_arrays()[key], value)
        result = Trainer(config, SparseFieldDataset(tr, norm), SparseFieldDataset(va, norm), norm,
                         tmp_path / f"run-{poison}", upsampling=4).fit()
        histories.append([(r.train_content, r.val_content) for r in result.history])
    assert histories[1] == histories[0] and histories[2] == histories[0]
    assert all(np.isfinite(v).all() for v in histories[0])


def test_pooled_engine_starts_at_the_pooled_interpolant_and_keeps_every_sensor():
    """With ``pool_sigma`` an untrained net (zero last layer) returns the interpolant of the
    step's sensors pooled with its window's, drift-corrected: equal to the sensor values at the
    step's sensors, and different from the step's own interpolant between them."""
    from model.sensornet import SensorNet, input_channels
    from model.sensornet_fit import SensorNetEngine
    from model.sensornet_samples import offsets
    from pipeline.sensor_features import base_interpolant, drift_reference, pool_sensors

    ny, nx, t = 24, 32, 6
    yy, xx = np.mgrid[0:ny, 0:nx]
    field = np.stack([np.sin(xx / 5.0 + k / 4) + np.cos(yy / 4.0) for k in range(t)]).astype(np.float32)
    seq, _ = _sequence(field)
    ctx = fit_context(seq.sensors, seq.phases, np.zeros((ny, nx), bool), groups=2, base="cubic")
    cfg = SensorNetConfig(**{**TINY, "base": "cubic", "pool_sigma": 2.0})
    net = SensorNet(input_channels(len(offsets(cfg.window, cfg.window_steps)), 1, 5), features=8, depth=1)
    pred = SensorNetEngine(net, ctx, cfg, {}).predict(seq, [t - 1])[0]
    refs = [drift_reference(base_interpolant(i, ctx.normalise(v), (ny, nx), "cubic"), 2.0) for i, v in seq.sensors]
    index, value = seq.sensors[t - 1]
    others = [(seq.sensors[u][0], ctx.normalise(seq.sensors[u][1]), refs[u]) for u in (t - 2, t - 3)]
    pi, pv = pool_sensors(index, ctx.normalise(value), refs[t - 1], others)
    expected = base_interpolant(pi, pv, (ny, nx), "cubic") * ctx.std + ctx.mean
    np.testing.assert_allclose(pred, expected, atol=1e-4)
    np.testing.assert_allclose(pred.ravel()[index], value, atol=1e-4)
    alone = base_interpolant(index, value, (ny, nx), "cubic")
    assert np.abs(pred - alone).max() > 1e-3


def test_a_patch_pools_nearly_what_the_whole_grid_pools():
    """A training patch pools only the sensors near it (4 % of the cells per step, as the SST
    demo seeds): inside the patch its base is the whole grid's pooled base to within 2 % of the
    field's spread at 99 % of the cells. The rest are ties of the Delaunay triangulation of grid
    points (four sensors on one circle), which qhull breaks differently for another point set."""
    from model.sensornet_samples import StepChannels, offsets

    ny, nx, t = 60, 90, 5
    yy, xx = np.mgrid[0:ny, 0:nx]
    field = np.stack([np.sin(xx / 7.0 + k / 4) * np.cos(yy / 6.0) for k in range(t)]).astype(np.float32)
    seq, _ = _sequence(field, percent=4)
    ctx = fit_context(seq.sensors, seq.phases, np.zeros((ny, nx), bool), groups=2, base="cubic")
    chans = StepChannels(seq, ctx, sigma=3.0)
    offs = offsets("causal", 3)
    index, value = seq.sensors[t - 1]
    whole = chans.pooled_centre(t - 1, index, value, offs)
    for box in [(10, 42, 30, 62), (0, 32, 0, 32), (28, 60, 58, 90)]:
        part = chans.pooled_centre(t - 1, index, value, offs, box)
        crop = whole[:, box[0] : box[1], box[2] : box[3]]
        np.testing.assert_array_equal(part[[0, 1, 3]], crop[[0, 1, 3]])
        assert np.percentile(np.abs(part[2] - crop[2]), 99) < 0.02 * float(np.ptp(whole[2]))


def test_edge_weight_depends_on_the_position_only():
    """With ``edge = (extra, band)`` a withheld sensor within ``band`` cells of the domain's edge
    weighs ``1 + extra``, every other one 1; targets and inputs are those of the unweighted
    sample drawn with the same generator."""
    from model.sensornet_samples import StepChannels, make_sample, offsets

    ny, nx, t = 40, 60, 4
    yy, xx = np.mgrid[0:ny, 0:nx]
    field = np.stack([np.sin(xx / 7.0 + k / 4) * np.cos(yy / 6.0) for k in range(t)]).astype(np.float32)
    seq, _ = _sequence(field)
    ctx = fit_context(seq.sensors, seq.phases, np.zeros((ny, nx), bool), groups=2, base="cubic")
    chans, offs = StepChannels(seq, ctx), offsets("causal", 2)
    x0, y0, w0 = make_sample(t - 1, chans, offs, ctx, 0.4, np.random.default_rng(3), 0)
    x1, y1, w1 = make_sample(t - 1, chans, offs, ctx, 0.4, np.random.default_rng(3), 0, (9.0, 5))
    np.testing.assert_array_equal(x0, x1)
    np.testing.assert_array_equal(y0, y1)
    rr, cc = np.mgrid[0:ny, 0:nx]
    near = np.minimum(np.minimum(rr, ny - 1 - rr), np.minimum(cc, nx - 1 - cc)) < 5
    held = w0 > 0
    assert (held & near).any() and (held & ~near).any()
    assert (w1[held & near] == 10.0).all() and (w1[held & ~near] == 1.0).all() and (w1[~held] == 0).all()

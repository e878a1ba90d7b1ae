"""SensorNet settings on the SST sample's validation period (never the demo's held-back one).

    make demo                                                    # builds demo-output/
    .venv/bin/python benchmarks/sst_validation.py base=cubic patch=64 iterations=300

Trains SensorNet on the 2010–2016 sensors of the demo's seedings store exactly as the demo
does (the last 20 % of the days choose the checkpoint, the train flow's own split), then scores every 4th day of
2017-01-01 … 06-30 against the truth in the demo's raw store, beside cubic and linear
interpolation of the same sensors: RMSE, MAE, SSIM, HFEN (pipeline.metrics) and the RMSE by
distance to the domain's edge and to the coast. Arguments are SensorNetConfig fields (key=value);
``tag=NAME`` keeps the fields in /tmp/NAME.npz. docs/model.md gives the results.
"""

import datetime as dt
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    from flows.sensornet import load_sequence
    from flows.train import split_days
    from model.config import SensorNetConfig
    from model.sensornet_fit import SensorNetEngine, fit_sensornet
    from pipeline import metrics
    from pipeline.baselines import interpolate_scattered
    from pipeline.sensor_context import fit_context
    from storage.step_store import StepStore

    over = dict(a.split("=", 1) for a in sys.argv[1:])
    tag = over.pop("tag", "run")
    cast = {
        k: (json.loads(v) if v[:1] in "0123456789[-" or v in ("true", "false") else v)
        for k, v in over.items()
    }
    cfg = SensorNetConfig(**cast)
    seed = StepStore(str(ROOT / "demo-output" / "seedings.zarr"))
    raw = StepStore(str(ROOT / "demo-output" / "raw.zarr"))
    t0d, t1d = dt.date(2010, 1, 1), dt.date(2016, 12, 31)
    days = seed.steps_between(t0d, t1d)
    train_days, val_days = split_days(days, 0.2)  # exactly the train flow's split
    k = cfg.window_steps
    seq, steps = load_sequence(seed, t0d, t1d, before=k, after=k)
    pos = {s: i for i, s in enumerate(steps)}
    train, val = [pos[d] for d in train_days], [pos[d] for d in val_days]
    land = seed.read_static("land_mask").astype(bool)
    T = time.perf_counter()
    spread = train[:: max(1, len(train) // cfg.context_steps)]
    ctx = fit_context(
        [seq.sensors[t] for t in spread],
        [seq.phases[t] for t in spread],
        land,
        groups=cfg.residual_groups,
        seed=cfg.seed,
        base=cfg.base,
    )
    tc = time.perf_counter() - T
    net, _ = fit_sensornet(seq, train, val, ctx, cfg, on_progress=lambda r: print(r, flush=True))
    tt = time.perf_counter() - T
    eng = SensorNetEngine(net, ctx, cfg, {})
    score = [dt.date(2017, 1, 1) + dt.timedelta(days=i) for i in range(0, 181, 4)]
    sq, st = load_sequence(seed, score[0], score[-1], before=k, after=k)
    p = {s: i for i, s in enumerate(st)}
    pred = eng.predict(sq, [p[d] for d in score])
    truth = np.stack([raw.read_step(d, ["sst"])["sst"] for d in score])
    ocean = ~land
    rng_ = float(np.nanmax(truth[:, ocean]) - np.nanmin(truth[:, ocean]))
    res = {"model": [], "cubic": [], "linear": []}
    for j, d in enumerate(score):
        idx, val_ = sq.sensors[p[d]]
        res["model"].append(metrics.evaluate(pred[j], truth[j], ocean, rng_))
        for m in ("cubic", "linear"):
            f = interpolate_scattered(idx, val_, land.shape, m)
            res[m].append(metrics.evaluate(f, truth[j], ocean, rng_))
    print(f"config {cast} context {tc:.0f}s total train {tt:.0f}s")
    from scipy import ndimage

    ny, nx = land.shape
    rr, cc = np.mgrid[0:ny, 0:nx]
    edge = np.minimum(np.minimum(rr, ny - 1 - rr), np.minimum(cc, nx - 1 - cc))
    coast = ndimage.distance_transform_edt(ocean)
    regions = {
        "edge<4": edge < 4,
        "edge4-12": (edge >= 4) & (edge < 12),
        "coast<4": (edge >= 12) & (coast < 4),
        "coast4-12": (edge >= 12) & (coast >= 4) & (coast < 12),
        "interior": (edge >= 12) & (coast >= 12),
    }
    fields = {"model": pred}
    fields["cubic"] = np.stack(
        [interpolate_scattered(*sq.sensors[p[d]], land.shape, "cubic") for d in score]
    )
    for m, rows in res.items():
        line = f"{m:8s} " + " ".join(
            f"{k}={np.mean([r[k] for r in rows]):.5f}" for k in ("rmse", "mae", "ssim", "hfen")
        )
        if m in fields:
            e2 = (fields[m] - truth) ** 2
            line += " | " + " ".join(
                f"{n}={np.sqrt(np.nanmean(e2[:, r & ocean])):.3f}" for n, r in regions.items()
            )
        print(line)

    np.savez_compressed(f"/tmp/{tag}.npz", pred=pred)


if __name__ == "__main__":
    main()

"""Inference: pipeline overhead against the bare model forward, memory against days, tiling cost.

Usage: python benchmarks/infer.py [--days 8,32,96] [--hr 64x128] [--device cpu]

Builds a random-weights RaSeedGAN generator (the reference size: 64 features, 16 blocks) at the
paper's ×8, and synthetic LR inputs stored in a real seedings store, then measures in one run:

* days/s of the whole pipeline step (read LR inputs from Zarr, normalise, batched forward,
  denormalise, HR → native interpolation, land mask, QA, region write, commit marker) against
  the bare ``InferenceEngine.forward_normalised`` on the same prepared inputs: the ratio is the
  pipeline's overhead (goal < 20 %);
* peak RSS of the process for growing day counts (it must not grow with the days);
* tiled against untiled forward time on the same inputs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _measure import measure


def build_stores(tmp: str, days: list[dt.date], hr_shape: tuple[int, int], bin_size: int, upsampling: int):
    from pipeline.seeding import SeedingParams, seed_day
    from storage.seedings_store import create_seedings_store

    hr_cell = bin_size // upsampling
    ny, nx = hr_shape[0] * hr_cell, hr_shape[1] * hr_cell
    rng = np.random.default_rng(0)
    land = np.zeros((ny, nx), bool)
    land[: ny // 5, : nx // 4] = True
    params = SeedingParams(bin_size=bin_size, upsampling=upsampling)
    lat = np.linspace(-60, 60, ny)
    lon = np.linspace(0, 360, nx, endpoint=False)
    store = create_seedings_store(f"{tmp}/seedings.zarr", days, lat, lon, land, bin_size, hr_cell,
                                  max_sensors=int(10 * (~land).sum() / bin_size**2) + 10, params=params.model_dump())
    base = 15 + 10 * np.cos(np.deg2rad(lat))[:, None] + 0 * lon[None, :]
    for d in days:
        field = (base + rng.normal(0, 0.5, base.shape)).astype("float32")
        field[land] = np.nan
        s = seed_day(field, ~land, d, params)
        n = len(s.sensors.index)
        idx = np.full(store.group["sensor_index"].shape[1], -1, "int32")
        val = np.full(idx.shape, np.nan, "float32")
        idx[:n], val[:n] = s.sensors.index, s.sensors.value
        store.write_day(d, {"lr_mean": s.lr_mean, "lr_count": s.lr_count, "hr_mean": s.hr_mean,
                            "hr_flag": s.hr_flag, "sensor_index": idx, "sensor_value": val})
        store.commit(d, {"status": "ok", "raw_sha256": "synthetic"})
    return store, params


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", default="8,32,96")
    ap.add_argument("--hr", default="64x128", help="HR grid, e.g. 360x720 for global 0.5°")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--tile", type=int, default=8, help="LR cells per tile for the tiled run")
    args = ap.parse_args()

    import torch

    from flows.config import InferSettings
    from flows.infer import predict_days, rebin_qa
    from model.data import Normalisation, make_input
    from model.generator import RaSeedGenerator
    from model.inference import InferenceEngine
    from pipeline.regrid import hr_to_native
    from storage.output_store import create_output_store

    hr_shape = tuple(int(v) for v in args.hr.split("x"))
    bin_size, upsampling = 16, 8
    lr_shape = (hr_shape[0] // upsampling, hr_shape[1] // upsampling)
    counts = [int(v) for v in args.days.split(",")]
    torch.manual_seed(0)
    gen = RaSeedGenerator(in_channels=2, out_channels=1, upsampling=upsampling)
    norm = Normalisation(
        lr_mean=np.full(lr_shape, 15, "f4"), lr_std=np.full(lr_shape, 5, "f4"),
        hr_mean=np.full(hr_shape, 15, "f4"), hr_std=np.full(hr_shape, 5, "f4"),
    )
    settings = InferSettings(batch_size=args.batch_size, device=args.device)
    print(f"generator {sum(p.numel() for p in gen.parameters()):,} parameters, LR {lr_shape} → HR {hr_shape}, "
          f"device {args.device}, batch {args.batch_size}, torch threads {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as tmp:
        all_days = [dt.date(2020, 1, 1) + dt.timedelta(days=i) for i in range(max(counts))]
        seedings, _ = build_stores(tmp, all_days, hr_shape, bin_size, upsampling)
        land = seedings.read_static("land_mask").astype(bool)
        engine = InferenceEngine(gen, norm, device=args.device, batch_size=args.batch_size)
        tiled = InferenceEngine(gen, norm, device=args.device, batch_size=args.batch_size, tile=args.tile, overlap=4)
        for n in counts:
            days = all_days[:n]
            out = create_output_store(f"{tmp}/out-{n}.zarr", days, seedings.read_static("lat"),
                                      seedings.read_static("lon"), land, {"model_id": "bench"})
            # warm-up (allocator, kernels) outside the timings
            predict_days(engine, seedings, days[:2])
            with measure() as pipe:
                for i in range(0, n, settings.batch_size * 2):
                    chunk = days[i : i + settings.batch_size * 2]
                    hr = predict_days(engine, seedings, chunk)
                    for d, f in zip(chunk, hr, strict=True):
                        native = hr_to_native(f, bin_size // upsampling, land)
                        lr = seedings.read_day(d, ["lr_mean", "lr_count"])
                        q = rebin_qa(native, lr["lr_mean"], lr["lr_count"], bin_size)
                        out.write_day(d, {"sst": native, "qa_rebin_rmse": np.float32(q[0]), "qa_rebin_bias": np.float32(q[1])})
                        out.commit(d, {"status": "ok", "model_id": "bench"})
            x = torch.from_numpy(np.stack([
                make_input(seedings.read_day(d, ["lr_mean"])["lr_mean"], seedings.read_day(d, ["lr_count"])["lr_count"], norm)
                for d in days]))
            t0 = time.perf_counter()
            with torch.inference_mode():
                for i in range(0, n, args.batch_size):
                    engine.forward_normalised(x[i : i + args.batch_size])
            bare = time.perf_counter() - t0
            print(f"{n:4d} days: pipeline {n / pipe.seconds:7.2f} days/s, bare forward {n / bare:7.2f} days/s, "
                  f"overhead {100 * (pipe.seconds / bare - 1):5.1f} %, peak RSS {pipe.peak_rss_mib:6.0f} MiB")
        n = counts[0]
        x = x[:n]
        for name, eng in (("untiled", engine), (f"tiled ({args.tile} LR cells + 4 overlap)", tiled)):
            t0 = time.perf_counter()
            with torch.inference_mode():
                for i in range(0, n, args.batch_size):
                    y = eng.forward_normalised(x[i : i + args.batch_size])
            print(f"{name:34s} {n / (time.perf_counter() - t0):7.2f} days/s")
        a = engine.forward_normalised(x[: args.batch_size])
        b = tiled.forward_normalised(x[: args.batch_size])
        print(f"max |tiled − untiled| = {float((a - b).abs().max()):.2e} (normalised units)")
        del y


if __name__ == "__main__":
    main()

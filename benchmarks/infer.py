"""Inference: pipeline overhead against the bare model forward, memory against days, tiling cost.

Usage: python benchmarks/infer.py [--days 8,32,96] [--hr 64x128] [--device cpu]

Builds a random-weights RaSeedGAN generator (the reference size: 64 features, 16 blocks) at the
paper's ×8, and synthetic LR inputs stored in a real seedings store, then measures in one run:

* days/s of the inference flow itself (Prefect tasks; read LR inputs from Zarr, normalise, batched forward,
  denormalise, HR → native interpolation, land mask, QA, region write, commit marker) against
  the bare ``InferenceEngine.forward_normalised`` on the same prepared inputs: the ratio is the
  pipeline's overhead (goal < 20 %);
* peak RSS of the process for growing day counts (it must not grow with the days);
* tiled against untiled forward time and difference on a global 0.5° grid (LR 45 × 90).
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
        store.write_step(d, {"lr_mean": s.lr_mean, "lr_count": s.lr_count, "hr_mean": s.hr_mean,
                            "hr_flag": s.hr_flag, "sensor_index": idx, "sensor_value": val})
        store.commit(d, {"status": "ok", "raw_sha256": "synthetic"})
    return store, params


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", default="8,32,96")
    ap.add_argument("--hr", default="64x128", help="HR grid, e.g. 360x720 for global 0.5°")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--tile", type=int, default=16, help="LR cells per tile for the tiled run")
    ap.add_argument("--overlap", type=int, default=12, help="LR cells of context around each tile")
    ap.add_argument("--tile-hr", default="360x720", help="HR grid of the tiling comparison (global 0.5°)")
    ap.add_argument("--tile-days", type=int, default=4)
    args = ap.parse_args()

    import torch
    from prefect.testing.utilities import prefect_test_harness

    from flows.config import load_config
    from flows.infer import infer_flow
    from model.checkpoint import save_checkpoint
    from model.data import Normalisation, make_input
    from model.generator import RaSeedGenerator
    from model.inference import InferenceEngine
    from storage.model_registry import ModelRegistry

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
    print(f"generator {sum(p.numel() for p in gen.parameters()):,} parameters, LR {lr_shape} → HR {hr_shape}, "
          f"device {args.device}, batch {args.batch_size}, torch threads {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as tmp, prefect_test_harness(server_startup_timeout=120):
        all_days = [dt.date(2020, 1, 1) + dt.timedelta(days=i) for i in range(max(counts))]
        seedings, _ = build_stores(tmp, all_days, hr_shape, bin_size, upsampling)
        engine = InferenceEngine(gen, norm, device=args.device, batch_size=args.batch_size)

        # a published random-weights model, so the pipeline is the real infer flow
        registry = ModelRegistry(f"{tmp}/models")
        ckpt = Path(tmp) / "bench.pt"
        save_checkpoint(ckpt, generator=gen, epoch=0, norm=norm, config={"time_features": False}, history=[])
        registry.publish("bench", ckpt, {"note": "random weights"})

        def pipeline_run(days: list[dt.date], n_run: int) -> None:
            cfg = load_config(None, {
                "stores.seedings": seedings.path, "stores.output": f"{tmp}/out-{len(days)}-{n_run}.zarr",
                "stores.registry": registry.root.as_posix(), "infer.batch_size": args.batch_size,
                "infer.device": args.device, "infer.days_per_task": args.batch_size * 2,
            })
            result = infer_flow(cfg, days[0], days[-1], "bench")
            assert result["summary"]["ok"] == len(days), result["summary"]

        def bare_run(x: torch.Tensor) -> None:
            with torch.inference_mode():
                for i in range(0, len(x), args.batch_size):
                    engine.forward_normalised(x[i : i + args.batch_size])

        pipeline_run(all_days[:2], -1)  # warm-up (server, allocator, cached engine) outside the timings
        print("pipeline = the infer flow: read LR from Zarr, normalise, forward, denormalise, regrid, mask, "
              "QA, write, commit; Prefect tasks of 2 batches, 2 in flight")
        for n in counts:
            days = all_days[:n]
            x = torch.from_numpy(np.stack([
                make_input(*(seedings.read_step(d, ["lr_mean", "lr_count"])[k] for k in ("lr_mean", "lr_count")), norm)
                for d in days]))
            pipe_t, bare_t, peak = [], [], 0.0
            for rep in range(3):  # alternate, keep the best of three: robust to other load
                t0 = time.perf_counter()
                bare_run(x)
                bare_t.append(time.perf_counter() - t0)
                with measure() as m:
                    pipeline_run(days, rep)
                pipe_t.append(m.seconds)
                peak = max(peak, m.peak_rss_mib)
            p, b = min(pipe_t), min(bare_t)
            print(f"{n:4d} days: pipeline {n / p:7.2f} days/s, bare forward {n / b:7.2f} days/s, "
                  f"overhead {100 * (p / b - 1):5.1f} %, peak RSS {peak:6.0f} MiB")

    # Tiling matters on big domains: compare on a global 0.5° HR grid (LR 45 × 90 at ×8).
    th, tw = (int(v) for v in args.tile_hr.split("x"))
    tlr = (th // upsampling, tw // upsampling)
    tnorm = Normalisation(lr_mean=np.full(tlr, 15, "f4"), lr_std=np.full(tlr, 5, "f4"),
                          hr_mean=np.full((th, tw), 15, "f4"), hr_std=np.full((th, tw), 5, "f4"))
    untiled = InferenceEngine(gen, tnorm, device=args.device, batch_size=2)
    tiled = InferenceEngine(gen, tnorm, device=args.device, batch_size=2, tile=args.tile, overlap=args.overlap)
    xg = torch.randn(args.tile_days, 2, *tlr)
    xg[:, 1] = (torch.rand(args.tile_days, *tlr) > 0.2).float()
    with torch.inference_mode():
        a = untiled.forward_normalised(xg[:1])
        b = tiled.forward_normalised(xg[:1])
        times = {}
        for name, eng in (("untiled", untiled), ("tiled", tiled)):
            t0 = time.perf_counter()
            for i in range(0, args.tile_days, 2):
                eng.forward_normalised(xg[i : i + 2])
            times[name] = time.perf_counter() - t0
    print(f"tiling on LR {tlr} → HR {(th, tw)}: untiled {args.tile_days / times['untiled']:.2f} days/s, "
          f"tiled ({args.tile} LR cells + {args.overlap} overlap) {args.tile_days / times['tiled']:.2f} days/s "
          f"({times['tiled'] / times['untiled']:.2f}x the time); max |tiled − untiled| = "
          f"{float((a - b).abs().max()):.2e}, i.e. {float((a - b).abs().max() / a.std()):.1e} of the output std")


if __name__ == "__main__":
    main()

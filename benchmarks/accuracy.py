"""Accuracy of the recommended network against every baseline, through the real flows.

    .venv/bin/python benchmarks/accuracy.py era5 --phase val     # choose settings here
    .venv/bin/python benchmarks/accuracy.py era5 --phase test    # score once, held-back days
    .venv/bin/python benchmarks/accuracy.py era5 --phase test --sensors-per-bin 2 5 10 20

``era5``: the bundled ERA5 hourly 2 m temperature (2019-03-01 … 20, 0.25°), 10 sensors per
8×8-cell bin redrawn every hour. ``--phase val`` trains on days 1–12 and scores days 13–15
(settings are chosen on these); ``--phase test`` trains on days 1–15 and scores days 16–20, the
held-back period, once. In both, the network's own early stopping uses the last 20 % of its
training days, and the kriging variogram, the sensor climatology and DINEOF's EOFs are fitted
on the training sensors only. The table is evaluate's: every method on the same seedings, its
RMSE/MAE/bias/PSNR/SSIM/HFEN and its cost in ms per field. (The SST sample's table comes from
``make demo``, which scores the demo's held-back period the same way.)
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ERA5 = Path(__file__).resolve().parents[1] / "pipeline" / "data" / "era5_t2m_uk_2019-03-01_to_20_hourly.nc"
PHASES = {  # (train first, train last, score first, score last)
    "val": (dt.date(2019, 3, 1), dt.date(2019, 3, 12), dt.date(2019, 3, 13), dt.date(2019, 3, 15)),
    "test": (dt.date(2019, 3, 1), dt.date(2019, 3, 15), dt.date(2019, 3, 16), dt.date(2019, 3, 20)),
}


def run(phase: str, sensors_per_bin: float, window: str, root: Path, extra: dict) -> dict:
    from flows.config import load_config
    from flows.evaluate import evaluate_flow
    from flows.ingest import ingest_flow
    from flows.prepare import prepare_flow
    from flows.train import train_flow

    t0, t1, s0, s1 = PHASES[phase]
    cfg = load_config(None, {
        "archive.source": str(ERA5), "archive.variable": "t2m", "archive.valid_range": (-40.0, 50.0),
        "stores.raw": str(root / "raw.zarr"), "stores.seedings": str(root / f"seedings-{sensors_per_bin}.zarr"),
        "stores.output": str(root / "recon.zarr"), "stores.registry": str(root / "models"),
        "seeding.bin_size": 8, "seeding.upsampling": 4, "seeding.sensors_per_bin": sensors_per_bin,
        "stats.start": t0.isoformat(), "stats.end": t1.isoformat(),
        "train.architecture": "sensornet", "sensornet.window": window, "evaluate.dineof_steps": 400,
        **extra,
    })
    ingest_flow(cfg, PHASES["test"][0], PHASES["test"][3])
    prepare_flow(cfg, PHASES["test"][0], PHASES["test"][3])
    start = time.perf_counter()
    model = train_flow(cfg, t0, t1, model_id=f"sensornet-{window}-{phase}-{sensors_per_bin}")
    train_s = time.perf_counter() - start
    report = evaluate_flow(cfg, s0, s1, str(root / f"metrics-{phase}-{window}-{sensors_per_bin}.json"), model["model_id"])
    return {"report": report, "train_seconds": train_s, "model": model}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", choices=["era5"])
    parser.add_argument("--phase", choices=sorted(PHASES), default="val")
    parser.add_argument("--sensors-per-bin", type=float, nargs="+", default=[10.0])
    parser.add_argument("--windows", nargs="+", default=["causal", "centred"], choices=["causal", "centred"])
    parser.add_argument("--out", type=Path, default=None, help="keep the stores here (default: a temporary dir)")
    parser.add_argument("--set", nargs="*", default=[], help="extra dotted config keys, e.g. sensornet.iterations=600")
    args = parser.parse_args()
    extra = {k: _value(v) for k, v in (s.split("=", 1) for s in args.set)}
    from flows.evaluate import markdown_table

    root = args.out or Path(tempfile.mkdtemp(prefix="seedfield-accuracy-"))
    root.mkdir(parents=True, exist_ok=True)
    print(f"phase {args.phase}: train {PHASES[args.phase][0]}…{PHASES[args.phase][1]}, "
          f"scored {PHASES[args.phase][2]}…{PHASES[args.phase][3]}; stores under {root}")
    vs_sensors = []
    for spb in args.sensors_per_bin:
        for window in args.windows:
            out = run(args.phase, spb, window, root, extra)
            methods = out["report"]["methods"]
            print(f"\n### {spb:g} sensors per bin, {window} window: trained in {out['train_seconds']:.0f} s "
                  f"(network {out['model'].get('seconds', float('nan')):.0f} s)\n")
            print(markdown_table(methods))
            vs_sensors.append((spb, window, methods))
    if len(args.sensors_per_bin) > 1:
        print("\n| sensors per bin | window | model RMSE | cubic | kriging | linear | model / cubic |\n|---|---|---|---|---|---|---|")
        for spb, window, m in vs_sensors:
            print(f"| {spb:g} | {window} | {m['model']['rmse']:.3f} | {m['cubic']['rmse']:.3f} | "
                  f"{m.get('kriging', {}).get('rmse', float('nan')):.3f} | {m['linear']['rmse']:.3f} | "
                  f"{m['model']['rmse'] / m['cubic']['rmse']:.2f} |")


def _value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


if __name__ == "__main__":
    main()

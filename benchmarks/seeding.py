"""Seeding and binning speed on global 720×1440 days at 10 sensors per LR bin.

Usage: python benchmarks/seeding.py [--days 20]

Prints days/s of ``pipeline.seeding.seed_day`` (draw sensors, LR bin means and counts, HR sparse
target and flags) on real-derived global days held in memory, beside a straightforward baseline
in the same run (a full random permutation of the valid cells and ``np.add.at`` binning), and the
end-to-end prepare engine (read raw store day, seed, region-write the seedings store, commit)
on one process.
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


def naive_seed_day(field: np.ndarray, valid: np.ndarray, day: dt.date, params) -> tuple:
    rng = np.random.default_rng([params.seed, day.toordinal()])
    cells = np.flatnonzero(valid)
    n = round(params.sensors_per_bin * len(cells) / params.bin_size**2)
    idx = rng.permutation(cells)[:n]
    out = []
    for f in (params.bin_size, params.hr_cell):
        ny, nx = field.shape[0] // f, field.shape[1] // f
        r, c = np.divmod(idx, field.shape[1])
        b = (r // f) * nx + c // f
        s = np.zeros(ny * nx)
        k = np.zeros(ny * nx)
        np.add.at(s, b, field.ravel()[idx])
        np.add.at(k, b, 1)
        with np.errstate(invalid="ignore"):
            out.append((s / k).reshape(ny, nx))
    return tuple(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=20)
    args = ap.parse_args()

    from flows.config import load_config
    from flows.prepare import open_or_create_seedings
    from flows.prepare_job import prepare_days_job
    from pipeline.sample_archive import derive_daily_sst
    from pipeline.seeding import SeedingParams, seed_day
    from storage.raw_store import create_raw_store
    from storage.step_store import date_range

    params = SeedingParams(sensors_per_bin=10, bin_size=16, upsampling=8)
    days = date_range(dt.date(2019, 1, 1), dt.date(2019, 1, 1) + dt.timedelta(days=args.days - 1))
    grid, fields = derive_daily_sst(days)
    land = ~np.isfinite(fields[0])
    print(f"{len(days)} global days {fields.shape[1:]}, {int((~land).sum())} ocean cells")

    t0 = time.perf_counter()
    for day, f in zip(days, fields, strict=True):
        seeded = seed_day(f, ~land & np.isfinite(f), day, params)
    t_seed = time.perf_counter() - t0
    print(f"seed_day:                {len(days) / t_seed:7.1f} days/s  ({len(seeded.sensors.index)} sensors/day, "
          f"{float((seeded.lr_count > 0).mean()):.0%} of LR bins seeded)")

    t0 = time.perf_counter()
    for day, f in zip(days, fields, strict=True):
        naive_seed_day(f, ~land & np.isfinite(f), day, params)
    t_naive = time.perf_counter() - t0
    print(f"naive permutation+add.at:{len(days) / t_naive:7.1f} days/s")
    print(f"speed-up: {t_naive / t_seed:.2f}x")

    with tempfile.TemporaryDirectory() as tmp:
        raw_path, seed_path = f"{tmp}/raw.zarr", f"{tmp}/seedings.zarr"
        raw = create_raw_store(raw_path, days, grid.lat, grid.lon, land)
        for day, f in zip(days, fields, strict=True):
            raw.write_step(day, {"sst": f})
            raw.commit(day, {"status": "ok", "sha256": str(day)})
        cfg = load_config(None, {"stores.raw": raw_path, "stores.seedings": seed_path})
        open_or_create_seedings(cfg, days)
        t0 = time.perf_counter()
        res = prepare_days_job(days, raw_path, seed_path, params)
        t_job = time.perf_counter() - t0
        assert all(o.status == "ok" for o in res), res
        print(f"prepare engine (read+seed+write+commit, 1 process): {len(days) / t_job:7.1f} days/s")


if __name__ == "__main__":
    main()

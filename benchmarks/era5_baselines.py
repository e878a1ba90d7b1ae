"""Classical sensor-only baselines on real ERA5 hourly 2 m temperature (British Isles, 0.25°).

Usage: python benchmarks/era5_baselines.py [--data PATH] [--family stable] [--blas-threads 1]

Data: ``pipeline/data/era5_t2m_uk_2019-03-01_to_20_hourly.nc`` (480 hourly steps), °C, latitude
flipped to ascending, trimmed to 32×48. Sensors: 10 per 8×8 bin per hour (240 of 1536 cells),
drawn as :func:`pipeline.seeding.seed_sensors` draws them (uniform without replacement, sorted)
from ``default_rng(SeedSequence([0, hour_index]))``. Everything that is fitted (variogram, EOFs,
climatology) sees the sensors of hours 0–359 only, except the row marked "whole series", where
DINEOF runs over the sensors of all 480 hours (legitimate: it never sees a full field). Scores:
:func:`pipeline.metrics.evaluate` on hours 360–479 against the full ERA5 field, all cells,
``data_range`` = max − min of the truth over the test hours; the table shows the mean over the
test hours. "ms/field" is the reconstruction of one hour from its sensors; one-off fits are
printed below the table.

BLAS threads default to 1 (set before numpy is imported): on a shared 2-core machine a
multi-threaded OpenBLAS made small factorisations ~10× slower.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

_ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
_ap.add_argument("--data", default=None, help="ERA5 file (default: the bundled pipeline/data/ copy)")
_ap.add_argument("--family", default="stable", help="variogram family for kriging")
_ap.add_argument("--blas-threads", default="1")
ARGS = _ap.parse_args()
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, ARGS.blas_threads)

import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.anomaly import interpolate_anomaly, sensor_climatology  # noqa: E402
from pipeline.baselines import interpolate_scattered  # noqa: E402
from pipeline.dineof import dineof, project_sensors  # noqa: E402
from pipeline.kriging import fit_sensor_variogram, ordinary_kriging  # noqa: E402
from pipeline.metrics import evaluate  # noqa: E402
from pipeline.seeding import SeedingParams, n_sensors, trim_shape  # noqa: E402

N_TRAIN, N_STEPS = 360, 480
FILE = "era5_t2m_uk_2019-03-01_to_20_hourly.nc"


def load(path: Path) -> np.ndarray:
    """float64 (480, 32, 48) in °C, rows south → north."""
    with xr.open_dataset(path) as ds:
        t2m = ds["t2m"].transpose("time", "latitude", "longitude").values - 273.15
        if ds["latitude"].values[0] > ds["latitude"].values[-1]:
            t2m = t2m[:, ::-1, :]
    ty, tx = trim_shape(t2m.shape[1:], 8)
    return np.ascontiguousarray(t2m[:, :ty, :tx], dtype=np.float64)


def draw_sensors(
    field: np.ndarray, hour: int, params: SeedingParams
) -> tuple[np.ndarray, np.ndarray]:
    """The seed_sensors draw (all cells valid), with a per-hour stream."""
    candidates = np.arange(field.size)
    k = n_sensors(candidates.size, params)
    rng = np.random.default_rng(np.random.SeedSequence([0, hour]))
    picked = np.sort(rng.choice(candidates.size, size=k, replace=False, shuffle=False))
    index = candidates[picked].astype(np.int64)
    return index, field.ravel()[index].astype(np.float32).astype(np.float64)


def main() -> None:
    default = Path(__file__).resolve().parents[1] / "pipeline" / "data" / FILE
    fields = load(Path(ARGS.data) if ARGS.data else default)
    shape = fields.shape[1:]
    params = SeedingParams(sensors_per_bin=10, bin_size=8, upsampling=8)
    sensors = [draw_sensors(fields[h], h, params) for h in range(N_STEPS)]
    train, test = range(N_TRAIN), range(N_TRAIN, N_STEPS)
    truth_test = fields[N_TRAIN:]
    data_range = float(truth_test.max() - truth_test.min())
    mask = np.ones(shape, dtype=bool)
    notes: list[str] = [
        f"grid {shape}, {sensors[0][0].size} sensors/hour, test data_range {data_range:.2f} °C"
    ]

    t0 = time.perf_counter()
    vario = fit_sensor_variogram(
        [sensors[h][0] for h in train], [sensors[h][1] for h in train], shape, ARGS.family
    )
    notes.append(f"training variogram: {vario} ({time.perf_counter() - t0:.1f} s)")

    t0 = time.perf_counter()
    clim = sensor_climatology([sensors[h][0] for h in train], [sensors[h][1] for h in train], shape)
    clim_hour = sensor_climatology(
        [sensors[h][0] for h in train],
        [sensors[h][1] for h in train],
        shape,
        groups=[h % 24 for h in train],
    )
    notes.append(
        f"sensor climatologies (all hours, per hour of day): {time.perf_counter() - t0:.2f} s"
    )

    def gappy(hours: range) -> np.ndarray:
        stack = np.full((len(hours), *shape), np.nan)
        for i, h in enumerate(hours):
            stack[i].ravel()[sensors[h][0]] = sensors[h][1]
        return stack

    t0 = time.perf_counter()
    eof_train = dineof(gappy(train))
    notes.append(
        f"DINEOF on training sensors: {eof_train.n_eofs} EOFs, {eof_train.iterations} iterations, "
        f"{time.perf_counter() - t0:.1f} s; CV rms {_fmt(eof_train.cv_rms)}"
    )
    t0 = time.perf_counter()
    eof_all = dineof(gappy(range(N_STEPS)))
    t_all = time.perf_counter() - t0
    notes.append(
        f"DINEOF on all 480 hours of sensors: {eof_all.n_eofs} EOFs, {eof_all.iterations} "
        f"iterations, {t_all:.1f} s"
    )

    methods = {
        "cubic": lambda i, v, h: interpolate_scattered(i, v, shape, "cubic"),
        "linear": lambda i, v, h: interpolate_scattered(i, v, shape, "linear"),
        "nearest": lambda i, v, h: interpolate_scattered(i, v, shape, "nearest"),
        f"kriging, per-step {ARGS.family} fit": lambda i, v, h: ordinary_kriging(
            i, v, shape, family=ARGS.family
        ),
        "kriging, training variogram": lambda i, v, h: ordinary_kriging(i, v, shape, vario),
        "DINEOF, projection on training EOFs": lambda i, v, h: project_sensors(eof_train, i, v),
        "cubic anomaly (training sensor clim.)": lambda i, v, h: interpolate_anomaly(
            i, v, shape, clim, "cubic"
        ),
        "linear anomaly (training sensor clim.)": lambda i, v, h: interpolate_anomaly(
            i, v, shape, clim, "linear"
        ),
        "cubic anomaly (hour-of-day clim.)": lambda i, v, h: interpolate_anomaly(
            i, v, shape, clim_hour[h % 24], "cubic"
        ),
    }
    rows = []
    for name, fn in methods.items():
        scores, elapsed = [], 0.0
        for h in test:
            index, value = sensors[h]
            t0 = time.perf_counter()
            pred = fn(index, value, h)
            elapsed += time.perf_counter() - t0
            scores.append(evaluate(pred, fields[h], mask, data_range))
        rows.append((name, scores, 1e3 * elapsed / len(test)))
    whole = [evaluate(eof_all.filled[h], fields[h], mask, data_range) for h in test]
    rows.append(("DINEOF, whole series incl. test-hour sensors", whole, 1e3 * t_all / N_STEPS))

    print("| method | RMSE °C | MAE °C | SSIM | HFEN | ms/field |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, scores, ms in rows:
        m = {k: float(np.mean([s[k] for s in scores])) for k in ("rmse", "mae", "ssim", "hfen")}
        print(
            f"| {name} | {m['rmse']:.3f} | {m['mae']:.3f} | {m['ssim']:.4f} | "
            f"{m['hfen']:.3f} | {ms:.1f} |"
        )
    print()
    for note in notes:
        print(f"- {note}")
    print("- DINEOF whole-series ms/field = its total time / 480 hours")


def _fmt(cv: dict[int, float]) -> str:
    return ", ".join(f"{k}:{v:.3f}" for k, v in cv.items())


if __name__ == "__main__":
    main()

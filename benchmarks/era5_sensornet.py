"""SensorNet vs interpolation on real ERA5 t2m (British Isles, hourly, 2019-03-01..20).

Usage:
    python benchmarks/era5_sensornet.py --phase val     # validation tables (used to choose)
    python benchmarks/era5_sensornet.py --phase test    # the test, scored once, chosen settings
    python benchmarks/era5_sensornet.py --quick         # ~1-minute smoke run (validation, 30 its)
    python benchmarks/era5_sensornet.py --phase test --windows centred \
        --sensors-per-bin 2 5 10 20                     # error vs sensor count
    --save DIR writes each trained SensorNet (model.sensornet.load_sensornet rebuilds it).

Defaults are the chosen settings: K = 3 steps each side (centred) or 3 past (causal), U-Net
16/32/64 features (~121 k parameters), 300 iterations of batch 12, AdamW one-cycle lr 2e-3,
20-50 % of the centre sensors withheld, MSE at the withheld cells, static channels = sensor
value climatology (relative to the base) + holdout-residual climatology (all hours and per
6-hour group of the day) + sin/cos hour of day.

Protocol: 32×48 grid (latitude flipped to ascending, ``field[:32, :48]``), 10 sensors per 8×8
bin redrawn every hour from ``SeedSequence([seed, hours since 1970-01-01])``. Hours 0..359 are
training+validation (validation = the last ``--val-hours``, used to choose settings), hours
360..479 are the test, scored once. The network is trained self-supervised from sensor lists
only (withheld-sensor loss); full fields are read only to score.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from dataclasses import field as dfield
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DATA = Path(__file__).resolve().parents[1] / "pipeline" / "data" / "era5_t2m_uk_2019-03-01_to_20_hourly.nc"
SensorList = list[tuple[np.ndarray, np.ndarray]]


# ---------------------------------------------------------------- data and seeding protocol
def load_field(path: Path = DATA) -> tuple[np.ndarray, np.ndarray]:
    """(T, 32, 48) float32 °C with ascending latitude, and the int64 hour keys."""
    import xarray as xr

    from pipeline.seeding import trim_shape

    with xr.open_dataset(path) as ds:
        t2m = ds["t2m"].sortby("latitude").transpose("time", "latitude", "longitude")
        field = t2m.values.astype(np.float64) - 273.15
        hours = ds["time"].values.astype("datetime64[h]").astype(np.int64)
    ty, tx = trim_shape(field.shape[1:], 8)
    return field[:, :ty, :tx].astype(np.float32), hours


def seed_sensors_key(field: np.ndarray, valid: np.ndarray, key: int, params) -> tuple[np.ndarray, np.ndarray]:
    """As :func:`pipeline.seeding.seed_sensors`, with an integer key (hours since epoch) in place
    of ``day.toordinal()``, so that each hour has its own reproducible draw."""
    from pipeline.seeding import n_sensors

    cand = np.flatnonzero(valid)
    k = n_sensors(cand.size, params)
    rng = np.random.default_rng(np.random.SeedSequence([int(params.seed), int(key)]))
    picked = rng.choice(cand.size, size=k, replace=False, shuffle=False)
    picked.sort()
    index = cand[picked].astype(np.int64)
    value = field.ravel()[index].astype(np.float64)
    if params.noise_std > 0:
        value += rng.normal(0.0, params.noise_std, size=k)
    return index, value.astype(np.float32)


# ---------------------------------------------------------------- features from sensors only
@dataclass
class Config:
    window: str = "centred"  # "causal" (K past) or "centred" (K past + K future)
    k: int = 3
    features: int = 16
    depth: int = 2
    iters: int = 300
    batch: int = 12
    lr: float = 2e-3
    withhold: tuple[float, float] = (0.2, 0.5)
    loss: str = "mse"
    hod_shrink: float = 4.0
    hod_clim: bool = False  # per-hour-of-day value climatology (noisy with ~12 days)
    resid_groups: int = 4  # hour-of-day groups of the holdout-residual climatology (0: none)
    resid_folds: int = 5
    seed: int = 0
    extra: dict = dfield(default_factory=dict)

    def offsets(self) -> list[int]:
        past = list(range(-self.k, 0))
        return past if self.window == "causal" else past + list(range(1, self.k + 1))


@dataclass
class Features:
    """Everything the net needs, built from sensor lists only."""

    mean: float
    std: float
    steps: np.ndarray  # (T, 4, ny, nx), normalised, all sensors
    static_hod: np.ndarray  # (24, S, ny, nx): value climatologies (relative to the centre base)
    extra_hod: np.ndarray  # (24, E, ny, nx): residual climatologies, sin/cos of the hour
    hod: np.ndarray  # (T,) hour of day


def neighbour_index(t: int, d: int, n: int) -> int:
    """Step ``t + d``, reflected to ``t − d`` when outside ``[0, n)`` (never ``t`` itself)."""
    j = t + d
    return j if 0 <= j < n else t - d


def build_features(sensors: SensorList, hod: np.ndarray, shape: tuple[int, int], cfg: Config,
                   clim_steps: int, mean: float | None = None, std: float | None = None) -> Features:
    """Normalise with scalar stats of the first ``clim_steps`` steps' sensors, build every step's
    channels and the sensor climatology of those steps (per cell, and per hour of day)."""
    from pipeline.sensor_features import SensorClimatology, holdout_residuals, step_channels

    vals = np.concatenate([v for _, v in sensors[:clim_steps]]).astype(np.float64)
    mean = float(vals.mean()) if mean is None else mean
    std = float(vals.std()) if std is None else std
    clim = SensorClimatology(shape, n_groups=24)
    for t in range(clim_steps):
        i, v = sensors[t]
        clim.add(i, (v - mean) / std, group=int(hod[t]))
    overall = clim.mean()
    per_hod = clim.finalize(shrink=cfg.hod_shrink)
    static_hod = np.stack([np.stack([overall, per_hod[h]] if cfg.hod_clim else [overall])
                           for h in range(24)]).astype(np.float32)
    ang = 2 * np.pi * np.arange(24) / 24
    extra = [[np.full(shape, np.sin(a)), np.full(shape, np.cos(a))] for a in ang]
    if cfg.resid_groups:
        g_of = np.arange(24) * cfg.resid_groups // 24
        rclim = SensorClimatology(shape, n_groups=cfg.resid_groups)
        rrng = np.random.default_rng(cfg.seed + 1)
        for t in range(clim_steps):
            i, v = sensors[t]
            ri, rv = holdout_residuals(i, (v - mean) / std, shape, cfg.resid_folds, rrng)
            rclim.add(ri, rv, group=int(g_of[hod[t]]))
        r_all, r_grp = rclim.mean(), rclim.finalize(shrink=4.0)
        extra = [[r_all, r_grp[g_of[h]], *extra[h]] for h in range(24)]
    extra_hod = np.stack([np.stack(e) for e in extra]).astype(np.float32)
    steps = np.stack([step_channels(i, (v - mean) / std, shape) for i, v in sensors])
    return Features(mean, std, steps, static_hod, extra_hod, hod)


def window(feat: Features, t: int, cfg: Config) -> np.ndarray:
    n = feat.steps.shape[0]
    return feat.steps[[neighbour_index(t, d, n) for d in cfg.offsets()]]


def n_in(cfg: Config, feat: Features) -> int:
    from model.sensornet import input_channels

    return input_channels(len(cfg.offsets()), feat.static_hod.shape[1], feat.extra_hod.shape[1])


# ---------------------------------------------------------------- training (sensors only)
def train_sensornet(sensors: SensorList, valid: np.ndarray, hod: np.ndarray, cfg: Config,
                    log_every: int = 50):
    """Self-supervised training. Receives ONLY the per-step sensor lists ``(index, value)`` of
    the training steps, their hour of day and the static land mask: no full field exists here.
    Returns ``(net, features_stats)``."""
    import torch

    from model.sensornet import SensorNet, masked_loss, training_input

    assert valid.all(), "t2m has no land; a land mask would be applied to every channel"
    shape = valid.shape
    feat = build_features(sensors, hod, shape, cfg, clim_steps=len(sensors))
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    net = SensorNet(n_in(cfg, feat), features=cfg.features, depth=cfg.depth)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.iters, pct_start=0.1)
    T = len(sensors)
    t0 = time.perf_counter()
    run = 0.0
    for it in range(cfg.iters):
        xs, ys, ws = [], [], []
        for t in rng.integers(0, T, size=cfg.batch):
            i, v = sensors[t]
            frac = rng.uniform(*cfg.withhold)
            x, y, w = training_input(i, (v - feat.mean) / feat.std, shape, window(feat, t, cfg),
                                     feat.static_hod[hod[t]], feat.extra_hod[hod[t]], frac, rng)
            xs.append(x), ys.append(y), ws.append(w)
        x = torch.from_numpy(np.stack(xs))
        loss = masked_loss(net(x), torch.from_numpy(np.stack(ys)), torch.from_numpy(np.stack(ws)), cfg.loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        run = 0.95 * run + 0.05 * loss.item() if it else loss.item()
        if log_every and (it + 1) % log_every == 0:
            print(f"  it {it + 1:5d}  loss {run:.4f}  ({time.perf_counter() - t0:.0f} s)", flush=True)
    return net.eval(), feat


def predict(net, sensors: SensorList, hod: np.ndarray, steps: range, cfg: Config, stats: Features,
            shape: tuple[int, int]) -> tuple[np.ndarray, float]:
    """Reconstruct ``steps`` (all sensors as input); returns (fields °C, ms per field). The
    climatology and normalisation are those of training; every step's channels are rebuilt
    from ``sensors`` and counted in the timing."""
    import torch

    from model.sensornet import build_input
    from pipeline.sensor_features import step_channels

    t0 = time.perf_counter()
    steps_ch = np.stack([step_channels(i, (v - stats.mean) / stats.std, shape) for i, v in sensors])
    per_step_ms = (time.perf_counter() - t0) * 1e3 / len(sensors)
    t0 = time.perf_counter()
    feat = Features(stats.mean, stats.std, steps_ch, stats.static_hod, stats.extra_hod, hod)
    xs = np.stack([build_input(steps_ch[t], window(feat, t, cfg), feat.static_hod[hod[t]],
                               feat.extra_hod[hod[t]]) for t in steps])
    with torch.no_grad():
        out = net(torch.from_numpy(xs))[:, 0].numpy()
    # each field pays one step's channels (neighbours' are shared) + assembly + forward
    ms = per_step_ms + (time.perf_counter() - t0) * 1e3 / len(steps)
    return out * stats.std + stats.mean, ms


# ---------------------------------------------------------------- scoring
def score(preds: dict[str, tuple[np.ndarray, float]], truth: np.ndarray) -> tuple[str, float, dict]:
    from pipeline.metrics import evaluate

    dr = float(truth.max() - truth.min())
    mask = np.ones(truth.shape[1:], dtype=bool)
    rows = ["| method | RMSE °C | MAE °C | SSIM | HFEN | ms/field |", "|---|---|---|---|---|---|"]
    summary = {}
    for name, (pred, ms) in preds.items():
        m = [evaluate(p, t, mask, dr) for p, t in zip(pred, truth, strict=True)]
        avg = {k: float(np.mean([r[k] for r in m])) for k in ("rmse", "mae", "ssim", "hfen")}
        summary[name] = avg
        rows.append(f"| {name} | {avg['rmse']:.3f} | {avg['mae']:.3f} | {avg['ssim']:.4f} | "
                    f"{avg['hfen']:.3f} | {ms:.1f} |")
    return "\n".join(rows), dr, summary


def baselines(sensors: SensorList, steps: range, shape, stats: Features, hod) -> dict:
    from pipeline.baselines import interpolate_scattered

    out = {}
    for method in ("cubic", "linear", "nearest"):
        t0 = time.perf_counter()
        p = np.stack([interpolate_scattered(*sensors[t], shape, method) for t in steps])
        out[method] = (p, (time.perf_counter() - t0) * 1e3 / len(steps))
    # climatology-anomaly interpolation: clim + linear interp of (sensor − clim), no network
    t0 = time.perf_counter()
    ps = []
    for t in steps:
        i, v = sensors[t]
        c = stats.static_hod[hod[t], -1] * stats.std + stats.mean
        ps.append(c + interpolate_scattered(i, v - c.ravel()[i], shape, "linear"))
    out["clim+linear (no net)"] = (np.stack(ps), (time.perf_counter() - t0) * 1e3 / len(steps))
    if stats.extra_hod.shape[1] > 2:  # linear + residual climatology of the hour group
        lin = out["linear"][0]
        r = np.stack([stats.extra_hod[hod[t], 1] * stats.std for t in steps])
        out["linear+resid clim (no net)"] = (lin + r, out["linear"][1])
    return out


def experiment(field, hours, spb: float, cfgs: dict[str, Config], train_end: int, eval_steps: range,
               label: str, save: Path | None = None) -> dict:
    """Seed, train each config on steps [0, train_end) from sensors only, score eval_steps."""
    from pipeline.seeding import SeedingParams

    params = SeedingParams(sensors_per_bin=spb, bin_size=8, upsampling=4, seed=0)
    valid = np.ones(field.shape[1:], dtype=bool)
    shape = valid.shape
    sensors = [seed_sensors_key(field[t], valid, int(hours[t]), params) for t in range(len(field))]
    hod = (hours % 24).astype(np.int64)
    n_s = sensors[0][0].size
    print(f"\n## {label}: {spb:g} sensors per 8×8 bin ({n_s} sensors, {100 * n_s / valid.size:.1f}% of cells)")
    preds: dict[str, tuple[np.ndarray, float]] = {}
    base_stats = None
    for name, cfg in cfgs.items():
        t0 = time.perf_counter()
        net, stats = train_sensornet(sensors[:train_end], valid, hod[:train_end], cfg)
        train_s = time.perf_counter() - t0
        n_par = sum(p.numel() for p in net.parameters())
        print(f"- {name}: {cfg}\n  params {n_par:,}, training {train_s:.0f} s wall")
        pred, ms = predict(net, sensors, hod, eval_steps, cfg, stats, shape)
        preds[f"sensornet {name}"] = (pred, ms)
        base_stats = stats
        if save is not None:
            from model.sensornet import save_sensornet

            save.mkdir(parents=True, exist_ok=True)
            save_sensornet(save / f"sensornet_{label.lower()}_{name}_spb{spb:g}.pt", net,
                           {"mean": stats.mean, "std": stats.std, "config": repr(cfg),
                            "offsets": cfg.offsets(), "train_hours": [0, train_end]})
    rows = baselines(sensors, eval_steps, shape, base_stats, hod)
    table, dr, summary = score({**rows, **preds}, field[eval_steps.start:eval_steps.stop])
    print(f"\n{label} (hours {eval_steps.start}..{eval_steps.stop - 1}, data_range {dr:.2f} °C):\n")
    print(table, flush=True)
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="~1-minute smoke run")
    ap.add_argument("--phase", choices=["val", "test", "both"], default="both")
    ap.add_argument("--windows", nargs="+", default=["causal", "centred"])
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--features", type=int, default=16)
    ap.add_argument("--depth", type=int, default=2)
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--batch", type=int, default=12)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--withhold", type=float, nargs=2, default=(0.2, 0.5))
    ap.add_argument("--loss", default="mse")
    ap.add_argument("--resid-groups", type=int, default=4)
    ap.add_argument("--hod-clim", action="store_true")
    ap.add_argument("--val-hours", type=int, default=60)
    ap.add_argument("--sensors-per-bin", type=float, nargs="+", default=[10.0])
    ap.add_argument("--save", type=Path, default=None, help="folder for SensorNet checkpoints")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(2)
    field, hours = load_field()
    iters = 30 if args.quick else args.iters
    phase = "val" if args.quick else args.phase
    cfgs = {w: Config(window=w, k=args.k, features=args.features, depth=args.depth, iters=iters,
                      batch=args.batch, lr=args.lr, withhold=tuple(args.withhold), loss=args.loss,
                      resid_groups=args.resid_groups, hod_clim=args.hod_clim)
            for w in (args.windows[:1] if args.quick else args.windows)}
    sweep: dict[tuple[str, float], dict] = {}
    for spb in args.sensors_per_bin:
        if phase in ("val", "both"):
            sweep["VALIDATION", spb] = experiment(
                field, hours, spb, cfgs, 360 - args.val_hours, range(360 - args.val_hours, 360),
                "VALIDATION", args.save)
        if phase in ("test", "both"):
            sweep["TEST", spb] = experiment(field, hours, spb, cfgs, 360, range(360, 480), "TEST", args.save)
    if len(args.sensors_per_bin) > 1:
        for label in ("VALIDATION", "TEST"):
            runs = {spb: r for (lab, spb), r in sweep.items() if lab == label}
            if not runs:
                continue
            names = list(next(iter(runs.values())))
            print(f"\n{label}: RMSE °C vs sensors per 8×8 bin\n")
            print("| sensors/bin | % cells | " + " | ".join(names) + " |")
            print("|---|---|" + "---|" * len(names))
            for spb, r in runs.items():
                print(f"| {spb:g} | {100 * spb / 64:.1f} | " + " | ".join(f"{r[n]['rmse']:.3f}" for n in names) + " |")

if __name__ == "__main__":
    main()

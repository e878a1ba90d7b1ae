"""Evaluation flow: the model against cubic, linear, bicubic-of-bins and the LR bins themselves,
on days held back from training, with maps and spectra."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np
from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.config import SeedfieldConfig
from flows.dask_runtime import dask_client, on_dask
from flows.evaluate_job import evaluate_days_job, reconstructions
from flows.infer import engine_for, predict_days
from flows.platform_cv import cv_markdown_table
from flows.prefect_flow import flow
from flows.prepare import chunks
from flows.progress import RunProgress
from flows.windowed import run_windowed
from pipeline.baselines import nearest_from_bins
from pipeline.fitted_baselines import FittedBaselines, fit_baselines
from pipeline.plots import comparison_maps, spectra_plot
from pipeline.steps import parse_step, step_label
from storage.model_registry import ModelRegistry
from storage.raw_store import raw_variable
from storage.seedings_store import has_platforms, read_sensors
from storage.step_store import StepStore, StoreError

METRICS = ("rmse", "mae", "bias", "psnr", "ssim", "hfen")


def period_range(raw: StepStore, days: list[dt.date], shape: tuple[int, int], land: np.ndarray) -> float:
    """max − min of the truth over the ocean and the whole period (one range for every day)."""
    var = raw_variable(raw)
    lo, hi = np.inf, -np.inf
    for d in days:
        t = raw.read_step(d, [var])[var][: shape[0], : shape[1]][~land]
        lo, hi = min(lo, float(np.nanmin(t))), max(hi, float(np.nanmax(t)))
    return hi - lo


def markdown_table(methods: dict[str, dict[str, float]]) -> str:
    """One row per method: the metrics, and its cost in ms per field where measured."""
    head = "| method | " + " | ".join(METRICS) + " | ms/field |\n|---|" + "---|" * (len(METRICS) + 1) + "\n"
    body = "".join(
        f"| {name} | " + " | ".join(f"{m[k]:.4f}" for k in METRICS)
        + (f" | {m['ms_per_field']:.1f} |\n" if "ms_per_field" in m else " | — |\n")
        for name, m in methods.items()
    )
    return head + body


def fit_period_baselines(config: SeedfieldConfig, seedings: StepStore, period: list[str | None]) -> FittedBaselines | bool:
    """Kriging, sensor climatology and DINEOF fitted on the sensors of the model's training
    steps (``period`` = [first, last] labels); plain interpolations alone without a period."""
    if not period or not period[0] or not period[1]:
        return True
    steps = seedings.committed_between(parse_step(period[0]), parse_step(period[1]))
    if not steps:
        return True
    sensors = read_sensors(seedings, steps)
    return fit_baselines([i for i, _ in sensors], [v for _, v in sensors], seedings.read_static("land_mask").shape,
                         dineof_steps=config.evaluate.dineof_steps, kriging=config.evaluate.kriging)


@flow(name="evaluate", flow_run_name="evaluate-{start}-{end}")
def evaluate_flow(
    config: SeedfieldConfig, start: dt.datetime | dt.date, end: dt.datetime | dt.date, json_path: str, model_id: str | None = None,
    plots_dir: str | None = None, progress_bar: bool = False, days_per_task: int = 8,
) -> dict[str, Any]:
    """Metrics per method (mean over days) to ``json_path``; maps and spectra to ``plots_dir``."""
    logger = get_run_logger()
    opts = config.stores.storage_options or None
    registry = ModelRegistry(config.stores.registry, config.stores.storage_options)
    model_id = registry.resolve(model_id)
    meta = registry.meta(model_id)
    seedings = StepStore(config.stores.seedings, opts)
    days = seedings.committed_between(start, end)
    if not days:
        raise StoreError(f"{seedings.path}: no prepared day in {start}…{end} to evaluate")
    trained = meta.get("train_period", [None, None])[1], meta.get("val_period", [None, None])[1]
    overlap = [d for d in days if trained[1] and step_label(d) <= trained[1]]
    if overlap:
        logger.warning("%d evaluated days fall inside the model's training/validation period (up to %s)",
                       len(overlap), trained[1])
    observed = has_platforms(seedings)
    has_truth = StepStore.exists(config.stores.raw, opts)
    if not has_truth and not observed:
        raise StoreError(f"{config.stores.raw}: no raw store with the truth to evaluate against")
    ckpt = str(registry.checkpoint(model_id))
    baselines = fit_period_baselines(config, seedings, meta.get("train_period"))
    if isinstance(baselines, FittedBaselines):
        logger.info("baselines fitted on the training sensors %s: %s", meta.get("train_period"), baselines.describe())
    report: dict[str, Any] = {
        "model_id": model_id, "period": [step_label(days[0]), step_label(days[-1])], "n_days": len(days),
        "train_period": meta.get("train_period"), "val_period": meta.get("val_period"), "plots": {},
        "baselines_fitted_on": meta.get("train_period"),
        "baselines": baselines.describe() if isinstance(baselines, FittedBaselines) else {},
    }
    text = ""
    if has_truth:
        rows, methods, data_range = score_against_truth(config, seedings, StepStore(config.stores.raw, opts), days,
                                                        ckpt, baselines, progress_bar, days_per_task)
        report.update({
            "truth_store": config.stores.raw, "data_range": data_range,
            "data_range_note": "PSNR/SSIM range in °C: truth max−min over the ocean and the period",
            "methods": methods,
            "per_day": [{"day": r["day"], **{f"{m}_rmse": round(r["metrics"][m]["rmse"], 5) for m in r["metrics"]}}
                        for r in rows],
        })
        text += f"### Against the full-resolution truth (`{config.stores.raw}`)\n\n" + markdown_table(methods)
        table = [{"method": n, **{k: round(v, 4) for k, v in m.items()}} for n, m in methods.items()]
        create_table_artifact(table, key="evaluate-metrics", description=f"{model_id} vs baselines, {days[0]}…{days[-1]}")
    if observed:
        cv = run_platform_cv(config, seedings, days, model_id, baselines)
        report["platform_cv"] = cv
        text += (f"\n### Leave-platform-out cross-validation ({cv['n_folds']} folds, {cv['n_steps']} steps; "
                 "scored at the withheld platforms' sensors)\n\n" + cv_markdown_table(cv["methods"]))
        create_table_artifact([{"method": n, **{k: round(v, 4) if isinstance(v, float) else v for k, v in m.items()}}
                               for n, m in cv["methods"].items()], key="evaluate-platform-cv",
                              description=f"{model_id} vs baselines at withheld platforms, {days[0]}…{days[-1]}")
    if plots_dir and has_truth:
        report["plots"] = make_plots(config, Path(plots_dir), rows, model_id, seedings, StepStore(config.stores.raw, opts),
                                     baselines)
    Path(json_path).parent.mkdir(parents=True, exist_ok=True)
    Path(json_path).write_text(json.dumps(report, indent=1))
    Path(json_path).with_suffix(".md").write_text(f"## Evaluation of `{model_id}` over {days[0]} … {days[-1]}\n\n{text}")
    create_markdown_artifact(
        f"## Evaluation of `{model_id}` over {days[0]} … {days[-1]} ({len(days)} days)\n\n{text}"
        + "".join(f"\n![{k}]({v})\n" for k, v in report["plots"].items()),
        key="evaluate-summary",
    )
    logger.info("evaluation over %d days:\n%s", len(days), text)
    return report


def run_platform_cv(config: SeedfieldConfig, seedings: StepStore, days: list[dt.date], model_id: str,
                    baselines: FittedBaselines | bool) -> dict[str, Any]:
    """Leave-platform-out scores of the model and every baseline (no truth needed)."""
    from flows.platform_cv import platform_cv_scores

    engine, _ = engine_for(ModelRegistry(config.stores.registry, config.stores.storage_options), model_id,
                           config.infer.model_copy(update={"device": "cpu"}))
    fitted = baselines if isinstance(baselines, FittedBaselines) else None
    return platform_cv_scores(engine, seedings, days, config.evaluate.cv_folds, config.evaluate.cv_seed, fitted)


def score_against_truth(
    config: SeedfieldConfig, seedings: StepStore, raw: StepStore, days: list[dt.date], ckpt: str,
    baselines: FittedBaselines | bool, progress_bar: bool, days_per_task: int,
) -> tuple[list[dict[str, Any]], dict[str, dict[str, float]], float]:
    """Per-step rows, mean metrics per method and the PSNR/SSIM data range, against the raw store."""
    land = seedings.read_static("land_mask").astype(bool)
    for name, n in (("lat", land.shape[0]), ("lon", land.shape[1])):
        theirs = raw.read_static(name)[:n]
        if theirs.shape != (n,) or not np.allclose(theirs, seedings.read_static(name), atol=1e-6):
            raise StoreError(f"{raw.path}: its {name} differs from the seedings store's grid; the truth must be "
                             "on the grid the sensors were binned to")
    data_range = config.evaluate.data_range or period_range(raw, days, land.shape, land)
    job = {"raw_path": raw.path, "seedings_path": seedings.path, "checkpoint": ckpt,
           "infer_settings_json": config.infer.model_copy(update={"device": "cpu"}).model_dump_json(),
           "data_range": data_range, "storage_options": raw.storage_options, "baselines": baselines}
    rows: list[dict[str, Any]] = []
    start, end = days[0], days[-1]
    with dask_client(config.dask), RunProgress(len(days), f"evaluate {start}…{end}", "evaluate-progress", progress_bar) as progress:
        for group, result in run_windowed(
            lambda g: on_dask.submit(f"evaluate-{step_label(g[0])}-to-{step_label(g[-1])}", evaluate_days_job, {"days": g, **job}),
            chunks(days, days_per_task), window=2 * config.dask.n_workers,
        ):
            if isinstance(result, Exception):
                raise result
            rows.extend(result)
            progress.advance(len(group))
    rows.sort(key=lambda r: r["day"])
    methods = {
        name: {k: float(np.mean([r["metrics"][name][k] for r in rows])) for k in METRICS}
        for name in rows[0]["metrics"]
    }
    for name, m in methods.items():
        costs = [r["ms"][name] for r in rows if name in r.get("ms", {})]
        if costs:
            m["ms_per_field"] = float(np.mean(costs))
    return rows, methods, data_range


def make_plots(config: SeedfieldConfig, out: Path, rows: list[dict[str, Any]], model_id: str,
               seedings: StepStore, raw: StepStore, baselines: FittedBaselines | bool = True) -> dict[str, str]:
    """Maps for one day (config evaluate.plot_day, else the first) and the mean spectra."""
    day = parse_step(config.evaluate.plot_day or rows[0]["day"])
    engine, _ = engine_for(ModelRegistry(config.stores.registry, config.stores.storage_options), model_id,
                           config.infer.model_copy(update={"device": "cpu"}))
    hr = predict_days(engine, seedings, [day])[0]
    truth, land, fields, s, _ = reconstructions(day, seedings, raw, hr, baselines)
    params = {k: int(v) for k, v in seedings.attrs.items() if k in ("seeding_bin_size",)}
    lr_native = nearest_from_bins(s["lr_mean"], params["seeding_bin_size"])
    lat, lon = seedings.read_static("lat"), seedings.read_static("lon")
    shown = {k: fields[k] for k in ("model", "cubic", "kriging") if k in fields}
    maps = comparison_maps(out / f"maps-{step_label(day)}.png", f"{step_label(day)}: truth, sensors, LR bins, model ({model_id}), cubic, kriging",
                           lat, lon, truth, shown, (s["sensor_index"], s["sensor_value"]), lr_native, land)
    k = np.asarray(rows[0]["wavenumber"])
    spectra = {name: (k, np.mean([np.asarray(r["spectra"][name]) for r in rows], axis=0))
               for name in rows[0]["spectra"]}
    dx = float(np.median(np.diff(lon)))
    spec = spectra_plot(out / "spectra.png", f"mean radial spectra over {len(rows)} days", spectra, dx)
    return {"maps": str(maps), "spectra": str(spec)}

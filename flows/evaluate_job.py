"""Score the model and the classical baselines against the full-resolution truth for a chunk of
days. Runs in a Dask worker process; no Prefect."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import numpy as np

from pipeline.fitted_baselines import FittedBaselines
from pipeline.metrics import evaluate
from pipeline.regrid import hr_to_native
from pipeline.spectra import radial_power_spectrum
from pipeline.steps import step_label
from storage.raw_store import raw_variable
from storage.seedings_store import seeding_params
from storage.step_store import StepStore

METHODS = ("model", "model_base", "cubic", "linear", "nearest", "bicubic_lr", "lr_bins", "kriging", "cubic_anomaly", "dineof")


def is_global(lon: np.ndarray) -> bool:
    step = float(np.median(np.diff(lon))) if len(lon) > 1 else 0.0
    return abs(len(lon) * step - 360.0) < 1e-3


def reconstructions(
    day: dt.date, seedings: StepStore, raw: StepStore, model_hr: np.ndarray | None,
    baselines: FittedBaselines | bool = True,
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray], dict[str, float]]:
    """(truth, land, {method: field}, seeded step arrays, {method: ms}) on the trimmed native grid.

    ``baselines``: fitted baselines (kriging, anomaly, DINEOF beside the interpolations), True
    for the interpolations alone, False for none. ``model_hr`` is the model's HR field (an LR→HR
    network, regridded as the infer flow writes it) or its native field (a sensor network).
    """
    params = seeding_params(seedings)
    bin_size = int(params["bin_size"])
    hr_cell = bin_size // int(params["upsampling"])
    land = seedings.read_static("land_mask").astype(bool)
    ny, nx = land.shape
    var = raw_variable(raw)
    truth = raw.read_step(day, [var])[var][:ny, :nx]
    s = seedings.read_step(day, ["sensor_index", "sensor_value", "lr_mean", "lr_count"])
    keep = s["sensor_index"] >= 0
    idx, val = s["sensor_index"][keep].astype("int64"), s["sensor_value"][keep]
    periodic = is_global(seedings.read_static("lon"))
    fields: dict[str, np.ndarray] = {}
    ms: dict[str, float] = {}
    if baselines is not False:
        fit = baselines if isinstance(baselines, FittedBaselines) else FittedBaselines((ny, nx), None, None, None, {})
        for name, (field, cost) in fit.reconstruct(idx, val, s["lr_mean"], bin_size, periodic).items():
            fields[name], ms[name] = field, cost
    if model_hr is not None:
        native = model_hr if model_hr.shape == (ny, nx) else hr_to_native(model_hr, hr_cell, land)
        fields = {"model": native, **fields}  # as the infer flow writes it
    return truth, land, fields, {**s, "sensor_index": idx, "sensor_value": val}, ms


def evaluate_days_job(
    days: list[dt.date], raw_path: str, seedings_path: str, checkpoint: str | None,
    infer_settings_json: str, data_range: float, storage_options: dict[str, Any] | None = None,
    baselines: FittedBaselines | bool = True,
) -> list[dict[str, Any]]:
    """Per-step metrics of every method, their cost, and the per-step spectra for averaging."""
    import torch

    torch.set_num_threads(1)  # one worker process per core
    seedings = StepStore(seedings_path, storage_options)
    raw = StepStore(raw_path, storage_options)
    hr = None
    model_ms = None
    extra: dict[str, tuple[np.ndarray, float]] = {}
    if checkpoint:
        from flows.infer import load_engine, predict_days

        engine, _ = load_engine(checkpoint, 0.0, infer_settings_json)
        t0 = time.perf_counter()
        hr = predict_days(engine, seedings, days)
        model_ms = (time.perf_counter() - t0) * 1e3 / max(len(days), 1)
        if getattr(engine, "needs_sensors", False):  # a SensorNet: also its input base, without the network
            from flows.sensornet import predict_steps

            t0 = time.perf_counter()
            base = predict_steps(engine, seedings, days, base_only=True)
            extra["model_base"] = (base, (time.perf_counter() - t0) * 1e3 / max(len(days), 1))
    return score_days(days, seedings, raw, hr, data_range, baselines, model_ms, extra)


def score_days(
    days: list[dt.date], seedings: StepStore, raw: StepStore, model_hr: np.ndarray | None, data_range: float,
    baselines: FittedBaselines | bool = True, model_ms: float | None = None,
    extra: dict[str, tuple[np.ndarray, float]] | None = None,
) -> list[dict[str, Any]]:
    """Per-step metrics, cost (ms per field) and spectra of the baselines (see
    :func:`reconstructions`) and, given its (T, H, W) predictions, the model; ``extra`` adds
    more native (T, ny, nx) fields and their ms per field by name (a SensorNet's base: ``model_base``)."""
    dx = float(np.median(np.diff(seedings.read_static("lon"))))
    out = []
    for i, day in enumerate(days):
        truth, land, fields, _, ms = reconstructions(day, seedings, raw, None if model_hr is None else model_hr[i],
                                                     baselines)
        if model_ms is not None:
            ms = {"model": model_ms, **ms}
        if extra:  # listed right after the model they belong to
            model = {k: v for k, v in fields.items() if k == "model"}
            fields = {**model, **{n: stack[i] for n, (stack, _) in extra.items()}, **fields}
            ms = {**ms, **{n: cost for n, (_, cost) in extra.items()}}
        mask = ~land & np.isfinite(truth)
        row: dict[str, Any] = {"day": step_label(day), "metrics": {}, "spectra": {}, "ms": ms}
        k, p = radial_power_spectrum(truth, mask, dx=dx)
        row["spectra"]["truth"] = p
        row["wavenumber"] = k
        for name, field in fields.items():
            row["metrics"][name] = evaluate(np.where(mask, field, np.nan), truth, mask, data_range)
            row["spectra"][name] = radial_power_spectrum(field, mask, dx=dx)[1]
        out.append(row)
    return out

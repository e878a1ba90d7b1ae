"""Score the model and the classical baselines against the full-resolution truth for a chunk of
days. Runs in a Dask worker process; no Prefect."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np

from pipeline.baselines import bicubic_from_bins, interpolate_scattered, nearest_from_bins
from pipeline.metrics import evaluate
from pipeline.regrid import hr_to_native
from pipeline.spectra import radial_power_spectrum
from pipeline.steps import step_label
from storage.raw_store import raw_variable
from storage.seedings_store import seeding_params
from storage.step_store import StepStore

METHODS = ("model", "cubic", "linear", "bicubic_lr", "lr_bins")


def is_global(lon: np.ndarray) -> bool:
    step = float(np.median(np.diff(lon))) if len(lon) > 1 else 0.0
    return abs(len(lon) * step - 360.0) < 1e-3


def reconstructions(
    day: dt.date, seedings: StepStore, raw: StepStore, model_hr: np.ndarray | None,
    baselines: bool = True,
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(truth, land, {method: field}, seeded day arrays) on the trimmed native grid; the
    classical baselines among the fields unless ``baselines`` is False."""
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
    fields = {} if not baselines else {
        "cubic": interpolate_scattered(idx, val, (ny, nx), "cubic", periodic_lon=periodic),
        "linear": interpolate_scattered(idx, val, (ny, nx), "linear", periodic_lon=periodic),
        "bicubic_lr": bicubic_from_bins(s["lr_mean"], bin_size, periodic_lon=periodic),
        "lr_bins": nearest_from_bins(s["lr_mean"], bin_size, periodic_lon=periodic),
    }
    if model_hr is not None:
        fields = {"model": hr_to_native(model_hr, hr_cell, land), **fields}  # as the infer flow writes it
    return truth, land, fields, {**s, "sensor_index": idx, "sensor_value": val}


def evaluate_days_job(
    days: list[dt.date], raw_path: str, seedings_path: str, checkpoint: str | None,
    infer_settings_json: str, data_range: float, storage_options: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Per-day metrics of every method, and the per-day spectra for averaging."""
    import torch

    torch.set_num_threads(1)  # one worker process per core
    seedings = StepStore(seedings_path, storage_options)
    raw = StepStore(raw_path, storage_options)
    hr = None
    if checkpoint:
        from flows.infer import load_engine, predict_days

        engine, _ = load_engine(checkpoint, 0.0, infer_settings_json)
        hr = predict_days(engine, seedings, days)
    return score_days(days, seedings, raw, hr, data_range)


def score_days(
    days: list[dt.date], seedings: StepStore, raw: StepStore, model_hr: np.ndarray | None, data_range: float,
    baselines: bool = True,
) -> list[dict[str, Any]]:
    """Per-day metrics and spectra of the baselines (unless ``baselines`` is False) and, given its
    (T, H, W) HR predictions, the model."""
    dx = float(np.median(np.diff(seedings.read_static("lon"))))
    out = []
    for i, day in enumerate(days):
        truth, land, fields, _ = reconstructions(day, seedings, raw, None if model_hr is None else model_hr[i],
                                                 baselines)
        mask = ~land & np.isfinite(truth)
        row: dict[str, Any] = {"day": step_label(day), "metrics": {}, "spectra": {}}
        k, p = radial_power_spectrum(truth, mask, dx=dx)
        row["spectra"]["truth"] = p
        row["wavenumber"] = k
        for name, field in fields.items():
            row["metrics"][name] = evaluate(np.where(mask, field, np.nan), truth, mask, data_range)
            row["spectra"][name] = radial_power_spectrum(field, mask, dx=dx)[1]
        out.append(row)
    return out

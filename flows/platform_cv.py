"""Leave-platform-out cross-validation of the model and the baselines on a seedings store made
from observations (no truth needed). Fold logic and scoring: :mod:`pipeline.platform_cv`.

For each scored step and fold, the fold's platforms are withheld from the input — also from the
neighbouring steps a SensorNet reads as context — the step is reconstructed from the rest by the
model and by every baseline, and each is scored at the withheld sensors' cells. An LR→HR network
reads the LR bins re-made from the kept sensors (:func:`pipeline.binning.bin_mean`), as prepare
would have made them had those platforms not reported.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np

from pipeline.binning import bin_mean
from pipeline.fitted_baselines import FittedBaselines
from pipeline.platform_cv import ErrorSums, keep_outside_fold, platform_folds, split_fold
from pipeline.regrid import hr_to_native
from pipeline.steps import step_label
from storage.seedings_store import read_platform_sensors, seeding_params
from storage.step_store import StepStore

MIN_INPUT = 4
"""A fold is scored only when at least this many sensors remain as input (cubic needs a triangle)."""


def _window(seedings: StepStore, day: dt.date, reach: tuple[int, int]) -> list[dt.date]:
    cad = seedings.cadence
    return seedings.steps_between(cad.shift(cad.coerce(day), -reach[0]), cad.shift(cad.coerce(day), reach[1]))


def _sensornet_field(engine: Any, seedings: StepStore, day: dt.date, keep: tuple[np.ndarray, np.ndarray], k: int,
                     n_folds: int, seed: int) -> np.ndarray:
    """A SensorNet's field for ``day`` with fold ``k``'s platforms withheld from every step it reads."""
    from model.sensornet_fit import SensorSequence
    from pipeline.sensor_context import cycle_phase

    steps = _window(seedings, day, engine.reach)
    sensors = []
    for s in steps:
        if s == day:
            sensors.append(keep)
        elif (seedings.marker(s) or {}).get("status") == "ok":
            i, v, p = read_platform_sensors(seedings, s)
            sensors.append(keep_outside_fold(i, v, p, step_label(s), k, n_folds, seed))
        else:
            sensors.append((np.empty(0, np.int64), np.empty(0, np.float32)))
    phases = np.array([cycle_phase(s, seedings.cadence.sub_daily) for s in steps])
    seq = SensorSequence(sensors, phases, [step_label(s) for s in steps])
    return engine.predict(seq, [steps.index(day)])[0]


def platform_cv_scores(
    engine: Any | None, seedings: StepStore, days: list[dt.date], n_folds: int = 5, seed: int = 0,
    baselines: FittedBaselines | None = None,
) -> dict[str, Any]:
    """Pooled leave-platform-out scores ``{"methods": {method: {rmse, mae, bias, n, …}},
    "per_step": {label: {method_rmse…}}}`` over ``days``; ``engine`` None scores the baselines alone."""
    params = seeding_params(seedings)
    bin_size = int(params["bin_size"])
    hr_cell = bin_size // int(params["upsampling"])
    land = seedings.read_static("land_mask").astype(bool)
    shape = land.shape
    fit = baselines or FittedBaselines(shape, None, None, None, {})
    pooled: dict[str, ErrorSums] = {}
    per_step: dict[str, dict[str, float]] = {}
    for day in days:
        if (seedings.marker(day) or {}).get("status") != "ok":
            continue
        label = step_label(day)
        index, value, platform = read_platform_sensors(seedings, day)
        folds = platform_folds(platform, index, label, n_folds, seed)
        step_sums: dict[str, ErrorSums] = {}
        for k in range(n_folds):
            split = split_fold(index, value, platform, folds, k)
            if split.held_index.size == 0 or split.keep_index.size < MIN_INPUT:
                continue
            lr_mean, lr_count = bin_mean(split.keep_index, split.keep_value, shape, bin_size)
            fields = {name: f for name, (f, _) in fit.reconstruct(split.keep_index, split.keep_value, lr_mean,
                                                                  bin_size).items()}
            if engine is not None:
                if getattr(engine, "needs_sensors", False):
                    model = _sensornet_field(engine, seedings, day, (split.keep_index, split.keep_value), k,
                                             n_folds, seed)
                else:
                    doy = np.array([day.timetuple().tm_yday])
                    hr = engine.predict(lr_mean[None], lr_count[None], day_of_year=doy)[0]
                    model = hr_to_native(hr, hr_cell, land)
                fields = {"model": model, **fields}
            for name, field in fields.items():
                pred = np.asarray(field).ravel()[split.held_index]
                for sums in (pooled.setdefault(name, ErrorSums()), step_sums.setdefault(name, ErrorSums())):
                    sums.add(pred, split.held_value, split.held_platform)
        if step_sums:
            per_step[label] = {f"{n}_rmse": round(float(s.scores()["rmse"]), 5) for n, s in step_sums.items()}
            per_step[label]["n"] = next(iter(step_sums.values())).n
    return {"methods": {n: s.scores() for n, s in pooled.items()}, "per_step": per_step,
            "n_folds": n_folds, "seed": seed, "n_steps": len(per_step)}


def cv_markdown_table(methods: dict[str, dict[str, float]]) -> str:
    """One row per method: RMSE, MAE, bias at the withheld platforms' sensors, and the counts."""
    head = "| method | rmse | mae | bias | n | platforms |\n|---|---|---|---|---|---|\n"
    return head + "".join(
        f"| {name} | {m['rmse']:.4f} | {m['mae']:.4f} | {m['bias']:+.4f} | {m['n']} | {m['n_platforms']} |\n"
        for name, m in methods.items()
    )


def qa_baselines(config: Any, seedings: StepStore, model_id: str) -> FittedBaselines | None:
    """Kriging's variogram fitted on the model's training steps' sensors (None when unknown)."""
    from pipeline.fitted_baselines import fit_baselines
    from pipeline.steps import parse_step
    from storage.model_registry import ModelRegistry
    from storage.seedings_store import read_sensors

    period = ModelRegistry(config.stores.registry, config.stores.storage_options).meta(model_id).get("train_period")
    if not config.evaluate.kriging or not period or not period[0] or not period[1]:
        return None
    steps = seedings.committed_between(parse_step(period[0]), parse_step(period[1]))
    if not steps:
        return None
    sensors = read_sensors(seedings, steps[:: max(1, len(steps) // 50)])
    fit = fit_baselines([i for i, _ in sensors], [v for _, v in sensors], seedings.read_static("land_mask").shape,
                        dineof_steps=0, kriging=True, variogram_steps=50)
    return FittedBaselines(fit.shape, fit.variogram, None, None, fit.fit_seconds)


def platform_qa(config: Any, engine: Any, seedings: StepStore, days: list[dt.date],
                model_id: str) -> dict[dt.date, dict[str, float]]:
    """The daily QA's per-step leave-platform-out RMSEs: ``{step: {qa_cv_model_rmse,
    qa_cv_cubic_rmse, qa_cv_linear_rmse, qa_cv_kriging_rmse, qa_cv_n, …}}``."""
    fitted = qa_baselines(config, seedings, model_id)
    scores = platform_cv_scores(engine, seedings, days, config.evaluate.cv_folds, config.evaluate.cv_seed, fitted)
    out: dict[dt.date, dict[str, float]] = {}
    for day in days:
        row = scores["per_step"].get(step_label(day))
        if row:
            out[day] = {**{f"qa_cv_{k}": v for k, v in row.items() if k != "n"}, "qa_cv_n": int(row["n"]),
                        "qa_cv_kind": "platform"}
    return out

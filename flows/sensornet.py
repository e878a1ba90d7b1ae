"""Wiring of the position-aware SensorNet: sensor sequences out of the seedings store, the
training task, and the per-step predictions the infer and evaluate flows write and score.

This is the seam between the stores and torch for SensorNet (as flows/training_data.py is for
the LR→HR networks): it reads each step's sensor list (``storage.seedings_store.read_sensors``)
and hands ``model.sensornet_fit`` plain arrays; nothing here reads a full field.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import numpy as np
from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NONE

from flows.config import SeedfieldConfig
from flows.train_progress import SENSORNET_KEY, TrainingProgress, rounded
from pipeline.sensor_context import cycle_phase, fit_context
from pipeline.steps import step_label
from storage.seedings_store import read_sensors
from storage.step_store import StepStore

TRAIN_TAG = "training"  # a label for the UI; one training at a time is flows.train.training_slot


def load_sequence(seedings: StepStore, first: dt.date, last: dt.date, before: int = 0, after: int = 0) -> tuple[Any, list[dt.date]]:
    """Every step from ``before`` steps ahead of ``first`` to ``after`` steps past ``last``, with
    the sensors of the committed ones (a step not committed is a gap: no sensors)."""
    from model.sensornet_fit import SensorSequence

    cad = seedings.cadence
    steps = seedings.steps_between(cad.shift(cad.coerce(first), -before), cad.shift(cad.coerce(last), after))
    # only the window's own markers: listing every marker of a decade-long store per chunk is slow
    have = [s for s in steps if (seedings.marker(s) or {}).get("status") == "ok"]
    found = dict(zip(have, read_sensors(seedings, have), strict=True))
    empty = (np.empty(0, np.int64), np.empty(0, np.float32))
    sensors = [found.get(s, empty) for s in steps]
    phases = np.array([cycle_phase(s, cad.sub_daily) for s in steps])
    return SensorSequence(sensors, phases, [step_label(s) for s in steps]), steps


@task(name="train-sensornet", task_run_name="train-{model_id}", tags=[TRAIN_TAG], cache_policy=NONE)
def train_sensornet_task(
    config: SeedfieldConfig, model_id: str, train_days: list[dt.date], val_days: list[dt.date], workdir: str,
    show_bar: bool = False,
) -> dict[str, Any]:
    """Fit the context and the network on the training steps' sensors; validate at withheld
    sensors of the validation steps; save one self-contained checkpoint. Progress: a bar when
    ``show_bar``, the artifacts ``train-progress`` and ``train-sensornet-curve`` (a row per
    validation score, while it trains)."""
    from model.sensornet_fit import fit_sensornet, save

    logger = get_run_logger()
    cfg = config.sensornet
    seedings = StepStore(config.stores.seedings, config.stores.storage_options or None)
    k = cfg.window_steps
    seq, steps = load_sequence(seedings, train_days[0], val_days[-1], before=k, after=k)
    pos = {s: i for i, s in enumerate(steps)}
    train, val = [pos[d] for d in train_days], [pos[d] for d in val_days]
    t0 = time.perf_counter()
    spread = train[:: max(1, len(train) // cfg.context_steps)]
    land = seedings.read_static("land_mask").astype(bool)
    ctx = fit_context([seq.sensors[t] for t in spread], [seq.phases[t] for t in spread], land,
                      groups=cfg.residual_groups, seed=cfg.seed, base=cfg.base)
    logger.info("sensor context from %d training steps in %.1f s", len(spread), time.perf_counter() - t0)
    device = "cuda" if config.train.device != "cpu" and _cuda() else "cpu"

    with TrainingProgress(model_id, show_bar, table_key=SENSORNET_KEY, unit="iteration",
                          description=f"{model_id}: RMSE at withheld sensors") as progress:
        net, history = fit_sensornet(seq, train, val, ctx, cfg, device=device, on_progress=progress.on_record,
                                     on_step=progress.on_step)
    seconds = time.perf_counter() - t0
    path = Path(workdir) / "sensornet.pt"
    save(path, net, ctx, cfg, {"model_id": model_id, "context_steps": len(spread)})
    # the final table says which scored weights were kept
    create_table_artifact([rounded(h) for h in history], key=SENSORNET_KEY,
                          description=f"{model_id}: RMSE at withheld sensors")
    kept = next((h["iteration"] for h in history if h.get("kept")), history[-1]["iteration"])
    return {"kept_checkpoint": str(path), "last_checkpoint": str(path), "kept_epoch": kept,
            "history": history, "seconds": seconds, "processes": 1,
            "parameters": sum(p.numel() for p in net.parameters())}


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def predict_steps(engine: Any, seedings: StepStore, days: list[dt.date], base_only: bool = False) -> np.ndarray:
    """(T, ny, nx) SensorNet fields of ``days`` (consecutive or not), with their neighbours'
    sensors read from the store (gaps and steps outside it are 'nothing known'); with
    ``base_only``, the network's input base alone."""
    before, after = engine.reach
    seq, steps = load_sequence(seedings, min(days), max(days), before=before, after=after)
    pos = {s: i for i, s in enumerate(steps)}
    return engine.predict(seq, [pos[d] for d in days], base_only=base_only)


def withheld_scores(engine: Any, seedings: StepStore, days: list[dt.date], fraction: float = 0.2,
                    seed: int = 0) -> dict[dt.date, dict[str, float]]:
    """QA without truth: for each step, ``fraction`` of its real sensors are withheld (a draw
    fixed by ``(seed, step)``), the step is reconstructed from the others — by the model when it
    reads sensors (SensorNet), and by cubic interpolation — and both are scored at the withheld
    sensors: ``{step: {"qa_cv_model_rmse", "qa_cv_cubic_rmse", "qa_cv_n"}}``."""
    from model.sensornet import withhold
    from pipeline.baselines import interpolate_scattered
    from pipeline.seeding import day_rng

    shape = seedings.read_static("land_mask").shape
    uses_sensors = getattr(engine, "needs_sensors", False)
    before, after = engine.reach if uses_sensors else (0, 0)
    seq, steps = load_sequence(seedings, min(days), max(days), before=before, after=after)
    pos = {s: i for i, s in enumerate(steps)}
    out: dict[dt.date, dict[str, float]] = {}
    for day in days:
        t = pos[day]
        index, value = seq.sensors[t]
        if index.size < 8:
            continue
        ki, kv, hi, hv = withhold(index, value, fraction, day_rng(seed, day))
        cubic = interpolate_scattered(ki, kv, shape, "cubic").ravel()[hi]
        row = {"qa_cv_cubic_rmse": float(np.sqrt(np.mean((cubic - hv) ** 2))), "qa_cv_n": int(hi.size)}
        if uses_sensors:
            seq.sensors[t] = (ki, kv)
            pred = engine.predict(seq, [t])[0].ravel()[hi]
            seq.sensors[t] = (index, value)
            row["qa_cv_model_rmse"] = float(np.sqrt(np.mean((pred - hv) ** 2)))
        out[day] = row
    return out

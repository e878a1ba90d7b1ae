"""Seed and bin days of the raw store into the seedings store. Runs in Dask workers; no Prefect.

A day is (re)seeded when its seedings marker is missing, or was made from other raw bytes
(a preliminary day replaced by its final file) or other parameters; otherwise it is left as is.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

import numpy as np

from flows.reports import StepOutcome
from pipeline.normalisation import StreamingStats
from pipeline.seeding import SeedingParams, seed_day
from pipeline.steps import step_label
from storage.raw_store import raw_variable
from storage.step_store import StepStore


def params_digest(params: SeedingParams) -> str:
    return hashlib.sha256(json.dumps(params.model_dump(), sort_keys=True).encode()).hexdigest()[:16]


def prepare_days_job(
    days: list[dt.date],
    raw_path: str,
    seedings_path: str,
    params: SeedingParams,
    raw_options: dict[str, Any] | None = None,
    seedings_options: dict[str, Any] | None = None,
    force: bool = False,
) -> list[StepOutcome]:
    raw = StepStore(raw_path, raw_options)
    out = StepStore(seedings_path, seedings_options)
    variable = raw_variable(raw)
    land = out.read_static("land_mask").astype(bool)
    ny, nx = land.shape
    max_sensors = int(out.attrs["max_sensors"])
    digest = params_digest(params)
    outcomes = []
    for day in days:
        iso = step_label(day)
        src = raw.marker(day)
        if not src or src.get("status") != "ok":
            why = (src or {}).get("error") or "not ingested"
            outcomes.append(StepOutcome(iso, "missing", raw_path, f"raw day unavailable: {why}"))
            continue
        old = out.marker(day)
        if (
            not force
            and old
            and old.get("status") == "ok"
            and old.get("raw_sha256") == src.get("sha256")
            and old.get("params") == digest
        ):
            outcomes.append(StepOutcome(iso, "unchanged", raw_path))
            continue
        field = raw.read_step(day, [variable])[variable][:ny, :nx]
        valid = np.isfinite(field) & ~land
        seeded = seed_day(field, valid, day, params)
        n = len(seeded.sensors.index)
        index = np.full(max_sensors, -1, "int32")
        value = np.full(max_sensors, np.nan, "float32")
        index[:n] = seeded.sensors.index[:max_sensors]
        value[:n] = seeded.sensors.value[:max_sensors]
        out.write_step(day, {
            "sensor_index": index,
            "sensor_value": value,
            "lr_mean": seeded.lr_mean,
            "lr_count": seeded.lr_count,
            "hr_mean": seeded.hr_mean,
            "hr_flag": seeded.hr_flag,
        })
        out.commit(day, {
            "status": "ok", "raw_sha256": src.get("sha256"), "params": digest,
            "n_sensors": int(min(n, max_sensors)), "source": raw_path,
        })
        outcomes.append(StepOutcome(iso, "ok", raw_path))
    return outcomes


def stats_partial_job(
    days: list[dt.date], seedings_path: str, seedings_options: dict[str, Any] | None = None,
    seasonal: bool = False,
) -> dict[str, np.ndarray]:
    """Partial normalisation sums over ``days`` (merged by the caller): one day in RAM at a time.

    Keys ``lr_count``/``lr_mean``/``lr_m2`` and ``hr_…`` (annual); with ``seasonal`` also
    ``lr_mNN_…``/``hr_mNN_…`` for each calendar month NN = 01…12.
    """
    store = StepStore(seedings_path, seedings_options)
    lr_shape = store.array("lr_mean").shape[1:]
    hr_shape = store.array("hr_mean").shape[1:]
    acc = {"lr": StreamingStats(lr_shape), "hr": StreamingStats(hr_shape)}
    if seasonal:
        for m in range(1, 13):
            acc[f"lr_m{m:02d}"] = StreamingStats(lr_shape)
            acc[f"hr_m{m:02d}"] = StreamingStats(hr_shape)
    for day in days:
        d = store.read_step(day, ["lr_mean", "lr_count", "hr_mean", "hr_flag"])
        for grid, values, weight in (("lr", d["lr_mean"], d["lr_count"] > 0), ("hr", d["hr_mean"], d["hr_flag"] > 0)):
            acc[grid].update(values, weight)
            if seasonal:
                acc[f"{grid}_m{day.month:02d}"].update(values, weight)
    return {f"{name}_{k}": v for name, st in acc.items() for k, v in st.to_arrays().items()}

"""Bin steps of the observations store into the seedings store. Runs in Dask workers; no Prefect.

The seedings store made here has the layout :mod:`flows.prepare_job` writes from a gridded
archive (sensors, LR bin means, HR sparse targets), plus ``sensor_platform``; train, infer and
evaluate read it unchanged. Nothing here opens a gridded field: the only inputs are the
observations and the target grid the observations store holds.

A step is (re)binned when its seedings marker is missing, was made from other observations (the
observations step's commit marker changed) or with other parameters; otherwise it is left as is.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

import numpy as np
import pandas as pd

from flows.prepare_job import params_digest
from flows.reports import StepOutcome
from pipeline.observation_binning import bin_observations
from pipeline.seeding import SeedingParams, trim_shape
from pipeline.steps import step_label
from storage.observations_store import read_observation_grid, read_step_observations
from storage.step_store import StepStore


def observations_fingerprint(marker: dict[str, Any]) -> str:
    """What the observations step holds: its content digest (``sha256`` of the stored rows), else
    a digest of its marker without the write time."""
    if marker.get("sha256"):
        return str(marker["sha256"])
    body = {k: v for k, v in marker.items() if k != "written_at"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:32]


def read_observations(store: StepStore, step: dt.date) -> pd.DataFrame:
    """The step's good observations, as the observations store holds them."""
    return read_step_observations(store, step)


def target_grid(store: StepStore, bin_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The observations store's target grid (lat, lon, land bool) trimmed to multiples of ``bin_size``."""
    lat, lon, land = read_observation_grid(store)
    ny, nx = trim_shape(land.shape, bin_size)
    return lat[:ny], lon[:nx], land[:ny, :nx]


def count_sensors_job(days: list[dt.date], observations_path: str, params: SeedingParams,
                      options: dict[str, Any] | None = None) -> int:
    """The most sensors (occupied ocean cells) any committed step of ``days`` bins to."""
    obs = StepStore(observations_path, options)
    lat, lon, land = target_grid(obs, params.bin_size)
    most = 0
    for day in days:
        if (obs.marker(day) or {}).get("status") != "ok":
            continue
        most = max(most, len(bin_observations(read_observations(obs, day), lat, lon, land, params).seeded.sensors.index))
    return most


def prepare_observation_steps_job(
    days: list[dt.date],
    observations_path: str,
    seedings_path: str,
    params: SeedingParams,
    observations_options: dict[str, Any] | None = None,
    seedings_options: dict[str, Any] | None = None,
    force: bool = False,
) -> list[StepOutcome]:
    obs = StepStore(observations_path, observations_options)
    out = StepStore(seedings_path, seedings_options)
    lat, lon, _ = target_grid(obs, params.bin_size)
    land = out.read_static("land_mask").astype(bool)
    max_sensors = int(out.attrs["max_sensors"])
    digest = params_digest(params)
    outcomes = []
    for day in days:
        iso = step_label(day)
        src = obs.marker(day)
        if not src or src.get("status") != "ok":
            why = (src or {}).get("error") or "not ingested"
            outcomes.append(StepOutcome(iso, "missing", observations_path, f"observations unavailable: {why}"))
            continue
        fingerprint = observations_fingerprint(src)
        old = out.marker(day)
        if (not force and old and old.get("status") == "ok" and old.get("raw_sha256") == fingerprint
                and old.get("params") == digest):
            outcomes.append(StepOutcome(iso, "unchanged", observations_path))
            continue
        step = bin_observations(read_observations(obs, day), lat, lon, land, params)
        n = len(step.seeded.sensors.index)
        kept = min(n, max_sensors)  # a later step busier than the store was sized for: the first cells
        index = np.full(max_sensors, -1, "int32")
        value = np.full(max_sensors, np.nan, "float32")
        platform = np.full(max_sensors, -1, "int32")
        index[:kept] = step.seeded.sensors.index[:kept]
        value[:kept] = step.seeded.sensors.value[:kept]
        platform[:kept] = step.platform[:kept]
        out.write_step(day, {
            "sensor_index": index, "sensor_value": value, "sensor_platform": platform,
            "lr_mean": step.seeded.lr_mean, "lr_count": step.seeded.lr_count,
            "hr_mean": step.seeded.hr_mean, "hr_flag": step.seeded.hr_flag,
        })
        names = {str(int(c)): p[0] for c, p in zip(step.platform[:kept], step.platforms[:kept], strict=True)
                 if len(p) == 1}
        marker = {"status": "ok", "raw_sha256": fingerprint, "params": digest, "n_sensors": int(kept),
                  "n_observations": int(step.n_obs.sum()), "dropped": step.dropped, "source": observations_path,
                  "platforms": dict(sorted(names.items()))}
        if kept < n:
            marker["truncated"] = f"{n} sensors, the store holds {max_sensors} per step"
        out.commit(day, marker)
        outcomes.append(StepOutcome(iso, "ok", observations_path, marker.get("truncated", "")))
    return outcomes

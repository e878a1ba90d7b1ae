"""`seedfield demo --observations`: scattered observations in, full fields out, no gridded truth in
the path — the sample observation archive (moorings and drifters sampling the bundled ERA5 hourly
2 m temperature) through the real readers and every flow.

Timeline (hourly, 2019-03-01 … 20, 32 × 48 cells at 0.25° over the British Isles):
  sample archive (CSV and CF-DSG netCDF, the same rows) → ingest both formats (the two stores hold
  the same steps) → prepare from the CSV store → train SensorNet on 03-01 … 03-13 → infer
  03-19 … 03-20, QA'd by leave-platform-out cross-validation → the grid of origin ingested into a
  raw store kept aside → evaluate 03-19 … 03-20 against it and by platform CV, beside cubic,
  linear and kriging.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

from rich.console import Console

from flows.config import SeedfieldConfig, load_config
from flows.evaluate import evaluate_flow, markdown_table
from flows.infer import infer_flow
from flows.ingest import ingest_flow
from flows.observations_ingest import ingest_observations_flow
from flows.platform_cv import cv_markdown_table
from flows.prepare_observations import prepare_observations_flow
from flows.states import run_flow
from flows.train import train_flow
from pipeline.sample_observations import ERA5, write_sample_observations
from storage.step_store import StepStore

H = dt.datetime
FIRST, LAST = dt.date(2019, 3, 1), dt.date(2019, 3, 20)
TRAIN = (H(2019, 3, 1, 0), H(2019, 3, 13, 23))
TEST = (H(2019, 3, 19, 0), H(2019, 3, 20, 23))


def observations_demo_config(out: Path, fmt: str = "csv") -> SeedfieldConfig:
    """The demo's configuration: the sample's ``[observations]`` snippet for ``fmt``, stores under ``out``."""
    return load_config(out / "sample" / f"observations-{fmt}.toml", {
        "stores.observations": str(out / f"observations-{fmt}.zarr"), "stores.seedings": str(out / "seedings.zarr"),
        "stores.raw": str(out / "origin.zarr"), "stores.output": str(out / "reconstruction.zarr"),
        "stores.registry": str(out / "models"), "archive.variable": "t2m", "archive.valid_range": (-40.0, 50.0),
        "seeding.bin_size": 8, "seeding.upsampling": 4,
        "stats.start": TRAIN[0].isoformat(), "stats.end": TRAIN[1].isoformat(),
        "train.architecture": "sensornet", "sensornet.window": "causal", "sensornet.window_steps": 3,
        # chosen on the validation period by leave-platform-out CV (docs/observations.md)
        "sensornet.base": "kriging", "sensornet.iterations": 150, "sensornet.context_steps": 100,
        "evaluate.dineof_steps": 0,
        "dask.n_workers": 2,
    })


def same_steps(a: StepStore, b: StepStore) -> bool:
    """Whether two observations stores hold the same rows in every step (their content digests)."""
    return all((a.marker(s) or {}).get("sha256") == (b.marker(s) or {}).get("sha256") for s in a.steps)


def run_observations_demo(out: Path, console: Console | None = None) -> dict[str, str]:
    """Run the observations demo under ``out`` and return where everything is."""
    console = console or Console()
    out = out.resolve()
    t0 = time.perf_counter()

    def stage(text: str) -> None:
        console.rule(f"[bold]{text}[/]  ({time.perf_counter() - t0:.0f} s)")

    stage("1/6 sample observation archive (CSV + CF-DSG netCDF) from the bundled ERA5 hourly field")
    if not (out / "sample" / "grid.nc").exists():
        write_sample_observations(out / "sample")
    cfg, cfg_nc = observations_demo_config(out, "csv"), observations_demo_config(out, "netcdf")
    stage("2/6 ingest-observations, both formats, through the real readers")
    run_flow(ingest_observations_flow, cfg, FIRST, LAST, progress_bar=True)
    run_flow(ingest_observations_flow, cfg_nc, FIRST, LAST, progress_bar=True)
    same = same_steps(StepStore(cfg.stores.observations), StepStore(cfg_nc.stores.observations))
    console.print(f"CSV and netCDF stores hold the same rows in every step: [bold]{same}[/]")
    stage("3/6 prepare from observations: sensors on the native, LR and HR grids, statistics")
    run_flow(prepare_observations_flow, cfg, FIRST, LAST, progress_bar=True)
    stage(f"4/6 train SensorNet on {TRAIN[0]} … {TRAIN[1]} (observations only)")
    model = train_flow(cfg, *TRAIN, model_id="demo-observations")
    stage(f"5/6 infer {TEST[0]} … {TEST[1]}, QA by leave-platform-out cross-validation")
    run_flow(infer_flow, cfg, *TEST, "demo-observations", cross_validate=True, progress_bar=True)
    stage("6/6 the grid of origin (kept aside, for scoring only) and evaluate")
    truth = cfg.model_copy(update={"archive": cfg.archive.model_copy(update={"source": str(ERA5)})})
    run_flow(ingest_flow, truth, *TEST)
    report = evaluate_flow(cfg, *TEST, str(out / "metrics.json"), "demo-observations", progress_bar=True)
    console.print("Against the grid of origin:\n" + markdown_table(report["methods"]))
    console.print("Leave-platform-out cross-validation:\n" + cv_markdown_table(report["platform_cv"]["methods"]))
    where = {
        "sample archive": str(out / "sample"),
        "observations": cfg.stores.observations,
        "seedings store": cfg.stores.seedings,
        "model": model["checkpoint"],
        "reconstruction": cfg.stores.output,
        "grid of origin": cfg.stores.raw,
        "metrics": str(out / "metrics.json"),
        "tables": str(out / "metrics.md"),
    }
    stage(f"done in {time.perf_counter() - t0:.0f} s")
    for k, v in where.items():
        console.print(f"{k:>15}: [bold]{v}[/]")
    return where


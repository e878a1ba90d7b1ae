"""`seedfield demo`: the main job end to end on the embedded defaults — bundled real data (a
sample archive derived from NOAA ERSSTv5 in the OISST v2.1 layout), local Zarr stores, Prefect's
temporary local server, a local Dask cluster.

Timeline (a North-Atlantic crop, 128 × 256 cells at 0.25°):
  archive 2010-01-01 … 2017-12-31 → ingest and prepare all but the last day
  → train on 2010 … 2016 (the last 20 % validate) → backfill 2017-07-01 … 2017-12-30
  → the daily flow for 2017-12-31 (ingests, prepares, infers it) → evaluate 2017-07 … 2017-12
  against cubic, linear, nearest, kriging, sensor-climatology anomalies, DINEOF and the LR bins.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from rich.console import Console

from flows.backfill import backfill_flow
from flows.config import SeedfieldConfig, load_config
from flows.daily import daily_flow
from flows.evaluate import evaluate_flow, markdown_table
from flows.ingest import ingest_flow
from flows.prepare import prepare_flow
from flows.states import run_flow
from flows.train import train_flow
from pipeline.grid import Region
from pipeline.sample_archive import write_sample_archive

DEMO_REGION = Region(south=20.0, north=52.0, west=280.0, east=344.0)
FIRST = dt.date(2010, 1, 1)
LAST = dt.date(2017, 12, 31)
TRAIN = (dt.date(2010, 1, 1), dt.date(2016, 12, 31))
TEST = (dt.date(2017, 7, 1), dt.date(2017, 12, 31))


@dataclass(frozen=True)
class DemoPlan:
    """The demo's domain and timeline, and settings over the embedded configuration."""

    region: Region
    first: dt.date
    last: dt.date
    train: tuple[dt.date, dt.date]
    test: tuple[dt.date, dt.date]
    backfill_chunk_days: int
    overrides: dict[str, Any] = field(default_factory=dict)


#: `seedfield demo`: eight years of a North-Atlantic crop, the embedded settings as they are.
FULL = DemoPlan(DEMO_REGION, FIRST, LAST, TRAIN, TEST, 92)
#: `seedfield demo --quick`: the same stages on ten weeks of a small crop with a token training
#: budget (a few minutes): it shows the pipeline working, not the model's skill.
QUICK = DemoPlan(
    Region(south=30.0, north=46.0, west=300.0, east=332.0), dt.date(2017, 5, 1), dt.date(2017, 7, 9),
    (dt.date(2017, 5, 1), dt.date(2017, 6, 20)), (dt.date(2017, 6, 25), dt.date(2017, 7, 8)), 7,
    {"sensornet.iterations": 15, "sensornet.val_every": 5, "evaluate.dineof_steps": 20, "dask.n_workers": 1},
)


def demo_config(out: Path, plan: DemoPlan = FULL) -> SeedfieldConfig:
    """The embedded demo configuration with every store under ``out``."""
    with resources.as_file(resources.files("flows") / "demo.toml") as path:
        return load_config(path, {
            "archive.source": str(out / "archive"),
            "stores.raw": str(out / "raw.zarr"),
            "stores.seedings": str(out / "seedings.zarr"),
            "stores.output": str(out / "reconstruction.zarr"),
            "stores.registry": str(out / "models"),
            "stats.start": plan.train[0].isoformat(),
            "stats.end": plan.train[1].isoformat(),
            **plan.overrides,
        })


def run_demo(out: Path, console: Console | None = None, plan: DemoPlan = FULL) -> dict[str, str]:
    """Run the demo under ``out`` and return where everything is."""
    console = console or Console()
    out = out.resolve()
    cfg = demo_config(out, plan)
    first, last, train, test = plan.first, plan.last, plan.train, plan.test
    t0 = time.perf_counter()
    step = dt.timedelta(days=1)

    def stage(text: str) -> None:
        console.rule(f"[bold]{text}[/]  ({time.perf_counter() - t0:.0f} s)")

    stage(f"1/7 sample archive {first} … {last} (OISST v2.1 layout, derived from bundled ERSSTv5)")
    archive = out / "archive"
    if not archive.exists():
        write_sample_archive(archive, first, (last - first).days + 1, region=plan.region)
    stage("2/7 ingest")
    run_flow(ingest_flow, cfg, first, last - step, report=str(out / "ingest-report.json"), progress_bar=True)
    stage("3/7 prepare: random sensors, LR bins, HR sparse targets, statistics")
    run_flow(prepare_flow, cfg, first, last - step, report=str(out / "prepare-report.json"), progress_bar=True)
    stage(f"4/7 train {cfg.train.architecture} on {train[0]} … {train[1]}")
    model = train_flow(cfg, train[0], train[1], model_id="demo")
    stage(f"5/7 backfill {test[0]} … {last - step}")
    run_flow(backfill_flow, cfg, test[0], last - step, chunk_days=plan.backfill_chunk_days)
    stage(f"6/7 daily run for {last}")
    run_flow(daily_flow, cfg, last)
    stage(f"7/7 evaluate {test[0]} … {test[1]} against the full-resolution truth")
    report = evaluate_flow(cfg, test[0], test[1], str(out / "metrics.json"), plots_dir=str(out / "plots"),
                           progress_bar=True)
    console.print(markdown_table(report["methods"]))
    where = {
        "sample archive": str(archive),
        "raw store": cfg.stores.raw,
        "seedings store": cfg.stores.seedings,
        "model": model["checkpoint"],
        "reconstruction": cfg.stores.output,
        "metrics": str(out / "metrics.json"),
        **report["plots"],
    }
    stage(f"done in {time.perf_counter() - t0:.0f} s; model trained in {model['seconds']:.0f} s")
    for k, v in where.items():
        console.print(f"{k:>15}: [bold]{v}[/]")
    console.print(f"open the reconstruction with: xarray.open_zarr({cfg.stores.output!r})")
    return where

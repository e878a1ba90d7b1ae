"""`seedfield demo`: the main job end to end on the embedded defaults (bundled real data,
local Zarr stores, Prefect's temporary local server, a local Dask cluster)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from rich.console import Console

from flows.config import load_config
from flows.ingest import ingest_flow
from flows.prepare import prepare_flow
from pipeline.sample_archive import write_sample_archive

DEMO_START = dt.date(2019, 1, 1)
DEMO_DAYS = 30


def run_demo(out: Path, days: int = DEMO_DAYS, console: Console | None = None) -> dict[str, str]:
    """Sample archive → ingest → prepare, under ``out``. Returns where everything is."""
    console = console or Console()
    out = out.resolve()
    archive = out / "archive"
    end = DEMO_START + dt.timedelta(days=days - 1)
    console.rule(f"seedfield demo: {DEMO_START} … {end}, global 0.25° OISST layout")
    if not archive.exists():
        console.print(f"writing the sample archive (derived from bundled ERSSTv5) to {archive}")
        write_sample_archive(archive, DEMO_START, days)
    cfg = load_config(None, {
        "archive.source": str(archive),
        "stores.raw": str(out / "raw.zarr"),
        "stores.seedings": str(out / "seedings.zarr"),
    })
    ingest_flow(cfg, DEMO_START, end, report=str(out / "ingest-report.json"), progress_bar=True)
    prepare_flow(cfg, DEMO_START, end, report=str(out / "prepare-report.json"), progress_bar=True)
    where = {
        "sample archive": str(archive),
        "raw store": cfg.stores.raw,
        "seedings store": cfg.stores.seedings,
        "ingest report": str(out / "ingest-report.json"),
        "prepare report": str(out / "prepare-report.json"),
    }
    console.rule("results")
    for k, v in where.items():
        console.print(f"{k:>15}: [bold]{v}[/]")
    console.print(f"open a store with: xarray.open_zarr({cfg.stores.raw!r})")
    return where

"""The ``seedfield`` command line. Each command loads one validated config (defaults < --config
TOML < options) and runs a Prefect flow. Exit status: 0 all days done, 3 some days failed or were
missing (see the log and --json report), 2 bad configuration or input, 1 unexpected error."""

from __future__ import annotations

import datetime as dt
import json
import os
import sys

# The temporary server Prefect starts when no PREFECT_API_URL is set races its own telemetry
# insert against start-up ("database is locked"); a pipeline needs no telemetry.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from flows.config import SeedfieldConfig, load_config
from pipeline.errors import SeedfieldError
from storage.daily_store import StoreError
from storage.model_registry import RegistryError

app = typer.Typer(
    name="seedfield",
    help="Reconstruct high-resolution SST from sparse random sensors (RaSeedGAN) — a Prefect pipeline over Zarr.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
err = Console(stderr=True)
out = Console()

EXIT_PARTIAL = 3
EXIT_BAD_INPUT = 2

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="TOML config file", exists=False)]
DateArg = Annotated[dt.datetime, typer.Option(formats=["%Y-%m-%d"], help="YYYY-MM-DD")]


def _config(path: Path | None, **overrides: Any) -> SeedfieldConfig:
    return load_config(path, overrides)


def _fail(exc: Exception) -> None:
    err.print(f"[bold red]error:[/] {exc}")
    raise typer.Exit(EXIT_BAD_INPUT)


def _finish(result: dict[str, Any]) -> None:
    counts = ", ".join(f"{k} {v}" for k, v in result["summary"].items() if v)
    out.print(f"[bold]{result['store']}[/]: {counts}")
    if not result["ok"]:
        days = result.get("failed_days", [])
        err.print(f"[yellow]some days failed or were missing[/] {days[:10]}{' …' if len(days) > 10 else ''}")
        raise typer.Exit(EXIT_PARTIAL)


@app.command("sample-archive")
def sample_archive(
    out_dir: Annotated[Path, typer.Argument(help="directory to write the daily files into")],
    start: DateArg,
    days: Annotated[int, typer.Option(min=1, help="number of days")] = 10,
    region: Annotated[str | None, typer.Option(help="S,N,W,E in degrees, e.g. 20,50,-80,-30")] = None,
    preliminary_last: Annotated[int, typer.Option(help="write the last N days as _preliminary files")] = 0,
) -> None:
    """Write a daily archive in the exact NOAA OISST v2.1 layout, derived from the bundled ERSSTv5 data."""
    from rich.progress import track

    from pipeline.grid import Region
    from pipeline.sample_archive import write_sample_archive

    try:
        reg = Region.parse(region) if region else None
        bar = track(range(days), description="writing sample days", console=err, transient=True)
        it = iter(bar)
        paths = write_sample_archive(
            out_dir, start.date(), days, region=reg, preliminary_last=preliminary_last,
            progress=lambda _n: next(it, None),
        )
        for _ in it:
            pass
    except (ValueError, SeedfieldError) as exc:
        _fail(exc)
    out.print(f"wrote {len(paths)} OISST-layout files under [bold]{out_dir}[/]")


@app.command()
def ingest(
    start: DateArg,
    end: DateArg,
    archive: Annotated[str | None, typer.Option(help="directory, glob or URL pattern of the daily files")] = None,
    store: Annotated[str | None, typer.Option(help="raw Zarr store (path or URL)")] = None,
    variable: Annotated[str | None, typer.Option(help="variable to read (default sst)")] = None,
    dask_address: Annotated[str | None, typer.Option(help="existing Dask scheduler; default a LocalCluster")] = None,
    workers: Annotated[int | None, typer.Option(help="LocalCluster worker processes")] = None,
    json_report: Annotated[Path | None, typer.Option("--json", help="write a JSON report here")] = None,
    config: ConfigOpt = None,
) -> None:
    """Validate the archive's daily files and write them into the raw Zarr store (idempotent)."""
    from flows.ingest import ingest_flow

    try:
        cfg = _config(
            config, **{"archive.source": archive, "stores.raw": store, "archive.variable": variable,
                       "dask.address": dask_address, "dask.n_workers": workers},
        )
        result = ingest_flow(cfg, start.date(), end.date(), str(json_report) if json_report else None, progress_bar=True)
    except (SeedfieldError, StoreError) as exc:
        _fail(exc)
    _finish(result)


@app.command()
def prepare(
    start: DateArg,
    end: DateArg,
    store: Annotated[str | None, typer.Option(help="raw Zarr store to read")] = None,
    seedings: Annotated[str | None, typer.Option(help="seedings Zarr store to write")] = None,
    sensors_per_bin: Annotated[float | None, typer.Option(help="mean sensors per LR bin (paper: 10)")] = None,
    bin_size: Annotated[int | None, typer.Option(help="native cells per LR bin side (paper: 16)")] = None,
    upsampling: Annotated[int | None, typer.Option(help="HR = LR × upsampling (paper: 8)")] = None,
    noise_std: Annotated[float | None, typer.Option(help="sensor noise std, °C")] = None,
    seed: Annotated[int | None, typer.Option(help="global random seed")] = None,
    stats_start: Annotated[str | None, typer.Option(help="normalisation period start (default: --start)")] = None,
    stats_end: Annotated[str | None, typer.Option(help="normalisation period end (default: --end)")] = None,
    force: Annotated[bool, typer.Option(help="re-seed days already prepared")] = False,
    dask_address: Annotated[str | None, typer.Option(help="existing Dask scheduler")] = None,
    workers: Annotated[int | None, typer.Option(help="LocalCluster worker processes")] = None,
    json_report: Annotated[Path | None, typer.Option("--json", help="write a JSON report here")] = None,
    config: ConfigOpt = None,
) -> None:
    """Seed random sensors per day, bin them into LR inputs and HR sparse targets, and compute
    the normalisation statistics, into the seedings store."""
    from flows.prepare import prepare_flow

    try:
        cfg = _config(
            config, **{
                "stores.raw": store, "stores.seedings": seedings,
                "seeding.sensors_per_bin": sensors_per_bin, "seeding.bin_size": bin_size,
                "seeding.upsampling": upsampling, "seeding.noise_std": noise_std, "seeding.seed": seed,
                "stats.start": stats_start, "stats.end": stats_end,
                "dask.address": dask_address, "dask.n_workers": workers,
            },
        )
        result = prepare_flow(cfg, start.date(), end.date(), force=force,
                              report=str(json_report) if json_report else None, progress_bar=True)
    except (SeedfieldError, StoreError) as exc:
        _fail(exc)
    _finish(result)


@app.command()
def train(
    start: DateArg,
    end: DateArg,
    store: Annotated[str | None, typer.Option(help="seedings Zarr store to train on")] = None,
    epochs: Annotated[int | None, typer.Option(help="epochs (reference: 100)")] = None,
    device: Annotated[str | None, typer.Option(help="auto | cpu | cuda")] = None,
    model_id: Annotated[str | None, typer.Option("--model-id", help="id in the registry (default: timestamped)")] = None,
    registry: Annotated[str | None, typer.Option(help="model registry directory")] = None,
    processes: Annotated[int | None, typer.Option(help="DDP processes via torchrun (0 = one per GPU)")] = None,
    config: ConfigOpt = None,
) -> None:
    """Train RaSeedGAN on the prepared days of [start, end] (the last 20 % validate) and publish it."""
    from flows.train import train_flow

    try:
        cfg = _config(config, **{"stores.seedings": store, "train.epochs": epochs, "train.device": device,
                                 "stores.registry": registry, "split.processes": processes})
        result = train_flow(cfg, start.date(), end.date(), model_id)
    except (SeedfieldError, StoreError, RegistryError) as exc:
        _fail(exc)
    out.print(f"model [bold]{result['model_id']}[/] (epoch {result['kept_epoch']}) published to "
              f"{result['checkpoint']} after {result['seconds']:.0f} s")


@app.command()
def infer(
    start: DateArg,
    end: DateArg,
    store: Annotated[str | None, typer.Option(help="seedings Zarr store (LR inputs)")] = None,
    model: Annotated[str | None, typer.Option(help="model id, 'current' (default) or 'latest'")] = None,
    output: Annotated[str | None, typer.Option(help="reconstruction Zarr store to write")] = None,
    registry: Annotated[str | None, typer.Option(help="model registry directory")] = None,
    tile: Annotated[int | None, typer.Option(help="tile size in LR cells (default: whole domain)")] = None,
    batch_size: Annotated[int | None, typer.Option(help="fields per forward pass")] = None,
    device: Annotated[str | None, typer.Option(help="auto | cpu | cuda")] = None,
    force: Annotated[bool, typer.Option(help="recompute days already written by this model")] = False,
    config: ConfigOpt = None,
) -> None:
    """Reconstruct every prepared day of [start, end] into the output Zarr store."""
    from flows.infer import infer_flow

    try:
        cfg = _config(config, **{"stores.seedings": store, "stores.output": output, "stores.registry": registry,
                                 "infer.tile": tile, "infer.batch_size": batch_size, "infer.device": device})
        result = infer_flow(cfg, start.date(), end.date(), model, force=force, progress_bar=True)
    except (SeedfieldError, StoreError, RegistryError) as exc:
        _fail(exc)
    _finish(result)


@app.command()
def evaluate(
    start: DateArg,
    end: DateArg,
    json_out: Annotated[Path, typer.Option("--json", help="where to write the metrics JSON")],
    store: Annotated[str | None, typer.Option(help="seedings Zarr store")] = None,
    raw: Annotated[str | None, typer.Option(help="raw Zarr store (the truth)")] = None,
    model: Annotated[str | None, typer.Option(help="model id, 'current' (default) or 'latest'")] = None,
    registry: Annotated[str | None, typer.Option(help="model registry directory")] = None,
    plots: Annotated[Path | None, typer.Option(help="directory for maps and spectra PNGs")] = None,
    config: ConfigOpt = None,
) -> None:
    """Score the model against cubic, linear, bicubic-of-bins and the LR bins over [start, end]."""
    from flows.evaluate import evaluate_flow, markdown_table

    try:
        cfg = _config(config, **{"stores.seedings": store, "stores.raw": raw, "stores.registry": registry})
        report = evaluate_flow(cfg, start.date(), end.date(), str(json_out), model,
                               str(plots) if plots else None, progress_bar=True)
    except (SeedfieldError, StoreError, RegistryError) as exc:
        _fail(exc)
    out.print(markdown_table(report["methods"]))
    out.print(f"metrics: [bold]{json_out}[/]" + "".join(f"\n{k}: [bold]{v}[/]" for k, v in report["plots"].items()))


@app.command()
def demo(
    out_dir: Annotated[Path, typer.Option("--out", help="where the demo writes everything")] = Path("demo-output"),
    days: Annotated[int, typer.Option(min=2, help="days of sample data")] = 30,
) -> None:
    """Run the main job end to end on the bundled sample and say where the results are."""
    from flows.demo import run_demo

    try:
        run_demo(out_dir, days, console=out)
    except (SeedfieldError, StoreError) as exc:
        _fail(exc)


@app.command("show-config")
def show_config(config: ConfigOpt = None) -> None:
    """Print the effective configuration as JSON (defaults merged with --config)."""
    try:
        cfg = _config(config)
    except SeedfieldError as exc:
        _fail(exc)
    out.print_json(json.dumps(cfg.model_dump(mode="json")))


# ---- operations: daily runs, backfills, deployments (flows/daily.py, backfill.py, deployments.py) ----
# (commands below this line are registered by the operations modules' authors)


# ---- end of operations commands ----


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()

"""Data commands: sample-archive, ingest, prepare (the raw and seedings stores), status and
export (any store)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from flows.cli.common import (
    ArchiveOpt,
    ConfigOpt,
    DaskOpt,
    DateArg,
    OptDateArg,
    RawOpt,
    StoreAlias,
    WorkersOpt,
    app,
    err,
    fail,
    finish,
    load,
    needs_archive,
    optional_period,
    out,
    pair,
    period,
    run,
    store_option,
    user_errors,
    writable,
)

JsonOpt = Annotated[Path | None, typer.Option("--json", help="write a JSON report here")]


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

    from pipeline.errors import SeedfieldError
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
        fail(exc)
    out.print(f"wrote {len(paths)} OISST-layout files under [bold]{escape(str(out_dir))}[/]")


@app.command()
def ingest(
    start: DateArg,
    end: DateArg,
    archive: ArchiveOpt = None,
    raw: Annotated[str | None, typer.Option(help="raw Zarr store to write, path or URL (default: stores.raw)")] = None,
    variable: Annotated[str | None, typer.Option(help="variable to read (default sst)")] = None,
    step: Annotated[str | None, typer.Option(help="time step of a new store: 1D, 1h, 3h, 1MS, climatology (default: detected)")] = None,
    valid_range: Annotated[str | None, typer.Option(help="physical range LOW,HIGH in °C (default -3,45)")] = None,
    dask_address: DaskOpt = None,
    workers: WorkersOpt = None,
    json_report: JsonOpt = None,
    config: ConfigOpt = None,
    store: StoreAlias = None,
) -> None:
    """Validate the archive's files and write their time steps into the raw Zarr store (idempotent)."""
    try:
        cfg = load(
            config, **{"archive.source": archive, "stores.raw": store_option(raw, store, "raw"),
                       "archive.variable": variable, "archive.step": step,
                       "archive.valid_range": pair(valid_range, "--valid-range"),
                       "dask.address": dask_address, "dask.n_workers": workers},
        )
        needs_archive(cfg)
        writable(cfg, "raw")
        from flows.ingest import ingest_flow

        result = run(ingest_flow, cfg, *period(start, end), str(json_report) if json_report else None, progress_bar=True)
    except user_errors() as exc:
        fail(exc)
    finish(result)


@app.command()
def prepare(
    start: DateArg,
    end: DateArg,
    raw: RawOpt = None,
    seedings: Annotated[str | None, typer.Option(help="seedings Zarr store to write (default: stores.seedings)")] = None,
    sensors_per_bin: Annotated[float | None, typer.Option(help="mean sensors per LR bin (paper: 10)")] = None,
    bin_size: Annotated[int | None, typer.Option(help="native cells per LR bin side (paper: 16)")] = None,
    upsampling: Annotated[int | None, typer.Option(help="HR = LR × upsampling (paper: 8)")] = None,
    noise_std: Annotated[float | None, typer.Option(help="sensor noise std, °C")] = None,
    seed: Annotated[int | None, typer.Option(help="global random seed")] = None,
    stats_start: Annotated[str | None, typer.Option(help="normalisation period start (default: --start)")] = None,
    stats_end: Annotated[str | None, typer.Option(help="normalisation period end (default: --end)")] = None,
    force: Annotated[bool, typer.Option(help="re-seed days already prepared")] = False,
    observations: Annotated[str | None, typer.Option(
        help="bin the real observations of this observations store (from `seedfield ingest-observations`) "
             "instead of drawing random sensors from the raw store")] = None,
    dask_address: DaskOpt = None,
    workers: WorkersOpt = None,
    json_report: JsonOpt = None,
    config: ConfigOpt = None,
    store: StoreAlias = None,
) -> None:
    """Seed random sensors per day (or, with --observations, bin the observations of each step),
    bin them into LR inputs and HR sparse targets, and compute the normalisation statistics,
    into the seedings store."""
    try:
        cfg = load(
            config, **{
                "stores.raw": store_option(raw, store, "raw"), "stores.seedings": seedings,
                "seeding.sensors_per_bin": sensors_per_bin, "seeding.bin_size": bin_size,
                "seeding.upsampling": upsampling, "seeding.noise_std": noise_std, "seeding.seed": seed,
                "stats.start": stats_start, "stats.end": stats_end,
                "dask.address": dask_address, "dask.n_workers": workers,
            },
        )
        writable(cfg, "seedings")
        if observations:
            from flows.prepare_observations import prepare_observations_flow
            from storage.step_store import StepStore, StoreError

            if not StepStore.exists(observations, cfg.stores.storage_options or None):  # before any flow starts
                raise StoreError(f"{observations}: no observations store; run `seedfield ingest-observations` first")

            result = run(prepare_observations_flow, cfg, *period(start, end), observations, force=force,
                         report=str(json_report) if json_report else None, progress_bar=True)
        else:
            from flows.prepare import prepare_flow

            result = run(prepare_flow, cfg, *period(start, end), force=force,
                         report=str(json_report) if json_report else None, progress_bar=True)
    except user_errors() as exc:
        fail(exc)
    finish(result)


StoreArg = Annotated[
    str, typer.Argument(help="a store's path or URL, or raw | seedings | output | observations for the configured one")
]


def _store_path(name: str, config: Path | None) -> tuple[str, dict | None]:
    """``STORE`` as a path and the configured fsspec options (``raw`` etc. name configured stores)."""
    cfg = load(config)
    path = getattr(cfg.stores, name) if name in ("raw", "seedings", "output", "observations") else name
    return path, cfg.stores.storage_options or None


@app.command()
def status(
    store: StoreArg,
    start: OptDateArg = None,
    end: OptDateArg = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="write the whole status as JSON here")] = None,
    config: ConfigOpt = None,
) -> None:
    """Which steps of a raw, seedings or reconstruction store are written: a table of runs of
    steps with the same status, counts per status, and the failed and missing steps' errors."""
    from flows.cli.store_status import print_status, store_status

    try:
        path, options = _store_path(store, config)
        report = store_status(path, options, *optional_period(start, end))
    except user_errors() as exc:
        fail(exc)
    print_status(report, out)
    if json_out is not None:
        import json

        json_out.write_text(json.dumps(report, indent=1) + "\n")
        out.print(f"status: [bold]{escape(str(json_out))}[/]")


@app.command()
def export(
    store: StoreArg,
    netcdf: Annotated[str, typer.Option("--netcdf", help="netCDF file, or folder when --per splits the period")],
    start: OptDateArg = None,
    end: OptDateArg = None,
    per: Annotated[str, typer.Option(help="one file per step | month | all")] = "month",
    config: ConfigOpt = None,
) -> None:
    """Write a store's committed steps as CF netCDF (one file per step, per month or one in all)."""
    if per not in ("step", "month", "all"):
        fail(ValueError(f"--per: expected step, month or all, got {per!r}"))
    try:
        path, options = _store_path(store, config)
        try:
            from storage.export import export_netcdf
        except ModuleNotFoundError as exc:
            if exc.name not in ("storage.export", "storage"):
                raise
            fail(RuntimeError("export: this build has no storage.export module"))

        bounds = optional_period(start, end)
        files = export_netcdf(path, netcdf, start=bounds[0], end=bounds[1], per=per, storage_options=options)
    except user_errors() as exc:
        fail(exc)
    for name in files:
        typer.echo(str(name))  # one path per line, never wrapped: scripts read them
    out.print(f"wrote {len(files)} netCDF file(s)")

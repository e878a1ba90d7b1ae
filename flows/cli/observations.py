"""Observation commands: sample-observations (a derived sample archive) and ingest-observations
(raw observation files into the observations store)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from flows.cli.common import (
    ConfigOpt,
    DateArg,
    app,
    fail,
    finish,
    load,
    out,
    period,
    run,
    user_errors,
    writable,
)


@app.command("sample-observations")
def sample_observations(
    out_dir: Annotated[Path, typer.Argument(help="directory to write csv/, netcdf/, grid.nc and the TOML snippets into")],
    moorings: Annotated[int, typer.Option(min=0, help="fixed stations (timeSeries), reporting every hour")] = 40,
    drifters: Annotated[int, typer.Option(min=0, help="drifter-like tracks (trajectory), reporting every hour")] = 60,
    noise_std: Annotated[float, typer.Option(min=0.0, help="Gaussian noise added to each reading, °C")] = 0.15,
    seed: Annotated[int, typer.Option(help="random seed (the same seed writes the same archive)")] = 2019,
) -> None:
    """Write a sample observation archive derived from the bundled ERA5 hourly 2 m temperature
    (2019-03-01 … 03-20, British Isles): CSV per day and CF DSG netCDF, with a few bad rows."""
    from pipeline.sample_observations import write_sample_observations

    if moorings + drifters == 0:
        fail(ValueError("--moorings and --drifters: expected at least one platform"))
    summary = write_sample_observations(out_dir, moorings, drifters, noise_std, seed)
    out.print(f"wrote {summary['rows']} observations ({summary['rows_per_hour']} per hour; bad rows "
              f"{sum(summary['bad_rows'].values())}) under [bold]{escape(str(out_dir))}[/]; "
              f"configs: observations-csv.toml, observations-netcdf.toml")


@app.command("ingest-observations")
def ingest_observations(
    start: DateArg,
    end: DateArg,
    source: Annotated[str | None, typer.Option(help="directory, glob, file or URL of the observation files "
                                                    "(default: observations.source)")] = None,
    observations: Annotated[str | None, typer.Option(
        "--observations", help="observations Zarr store to write (default: stores.observations)")] = None,
    fmt: Annotated[str | None, typer.Option("--format", help="csv | parquet | netcdf | auto (default: auto)")] = None,
    grid_file: Annotated[str | None, typer.Option(help="netCDF file of the target grid (default: observations.grid_file)")] = None,
    step: Annotated[str | None, typer.Option(help="step of a new store: 1h, 3h, 1D, 1MS (default: observations.step)")] = None,
    json_report: Annotated[Path | None, typer.Option("--json", help="write a JSON report here")] = None,
    config: ConfigOpt = None,
) -> None:
    """Validate scattered observations (CSV, Parquet, CF DSG netCDF) and store each step's good rows
    in the observations store; bad rows are counted by reason (idempotent, crash-safe)."""
    try:
        cfg = load(config, **{"observations.source": source, "stores.observations": observations,
                              "observations.format": fmt, "observations.grid_file": grid_file,
                              "observations.step": step})
        writable(cfg, "observations")
        from flows.observations_ingest import ingest_observations_flow

        result = run(ingest_observations_flow, cfg, *period(start, end),
                     report=str(json_report) if json_report else None, progress_bar=True)
    except user_errors() as exc:
        fail(exc)
    refused = ", ".join(f"{k} {v}" for k, v in result.get("rejected", {}).items())
    if refused:
        out.print(f"refused rows: {escape(refused)}", highlight=False)
    finish(result)

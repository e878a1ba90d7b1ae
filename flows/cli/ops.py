"""Operations commands: daily runs, backfills, serving and deploying (flows/daily.py,
backfill.py, deployments.py), the demo and show-config."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from flows.cli.common import (
    ArchiveOpt,
    ConfigOpt,
    DaskOpt,
    DateArg,
    ModelOpt,
    OutputOpt,
    RawOpt,
    RegistryOpt,
    SeedingsOpt,
    WorkersOpt,
    api_ready,
    app,
    err,
    exit_if_partial,
    fail,
    load,
    needs_archive,
    out,
    period,
    run,
    user_errors,
    writable,
)


def _pipeline_config(config: Path | None, archive: str | None, raw: str | None, seedings: str | None,
                     output: str | None, registry: str | None, dask_address: str | None,
                     workers: int | None) -> Any:
    """The config of a command that runs the whole chain: archive → raw → seedings → output."""
    cfg = load(config, **{"archive.source": archive, "stores.raw": raw, "stores.seedings": seedings,
                          "stores.output": output, "stores.registry": registry,
                          "dask.address": dask_address, "dask.n_workers": workers})
    needs_archive(cfg)
    writable(cfg, "raw", "seedings", "output")
    return cfg


@app.command()
def daily(
    date: Annotated[dt.datetime | None, typer.Option("--date", formats=["%Y-%m-%d"],
                    help="day to process (default: today UTC minus --lag-days)")] = None,
    model: ModelOpt = None,
    qa_threshold: Annotated[float | None, typer.Option(help="flag days whose re-binned QA RMSE exceeds this, °C")] = None,
    lag_days: Annotated[int, typer.Option(min=0, help="days between the run date and the day processed")] = 1,
    preliminary_window: Annotated[int, typer.Option(min=0, help="days back to look for preliminary days to refresh")] = 21,
    archive: ArchiveOpt = None,
    raw: RawOpt = None,
    seedings: SeedingsOpt = None,
    output: OutputOpt = None,
    registry: RegistryOpt = None,
    dask_address: DaskOpt = None,
    workers: WorkersOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Ingest, prepare and reconstruct one day, refresh preliminary days, QA, artifacts."""
    try:
        cfg = _pipeline_config(config, archive, raw, seedings, output, registry, dask_address, workers)
        from flows.daily import daily_flow

        result = run(daily_flow, cfg, date.date() if date else None, model, qa_threshold, lag_days, preliminary_window)
    except user_errors() as exc:
        fail(exc)
    counts = ", ".join(f"{k} {v}" for k, v in result["summary"].items() if v)
    out.print(f"daily [bold]{result['day']}[/] with model {result['model_id']} → {escape(str(result['store']))}: {counts}")
    if result["reingested"]:
        out.print(f"refreshed preliminary days: {', '.join(result['reingested'])}")
    if result["qa_flagged"]:
        err.print(f"[yellow]QA above {qa_threshold} °C[/]: {', '.join(result['qa_flagged'])}")
    exit_if_partial(result)


@app.command()
def backfill(
    start: DateArg,
    end: DateArg,
    chunk_days: Annotated[int, typer.Option(min=1, help="days per chunk (one ingest/prepare/infer subflow each)")] = 30,
    force: Annotated[bool, typer.Option(help="recompute days already reconstructed by this model")] = False,
    model: ModelOpt = None,
    archive: ArchiveOpt = None,
    raw: RawOpt = None,
    seedings: SeedingsOpt = None,
    output: OutputOpt = None,
    registry: RegistryOpt = None,
    dask_address: DaskOpt = None,
    workers: WorkersOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Ingest, prepare and reconstruct a period chunk by chunk (resumable, locked).

    Re-run the same command to resume after an interruption; a run over days another run holds
    stops at once, naming it."""
    try:
        cfg = _pipeline_config(config, archive, raw, seedings, output, registry, dask_address, workers)
        from flows.backfill import backfill_flow

        result = run(backfill_flow, cfg, *period(start, end), chunk_days, force, model, progress_bar=True)
    except user_errors() as exc:  # not ValueError: a bug must not look like bad input (exit 1)
        fail(exc)
    counts = ", ".join(f"{k} {v}" for k, v in result["summary"].items() if v)
    skipped = sum(1 for c in result["chunks"] if str(c["outcome"]).startswith("skipped"))
    out.print(f"backfill {start.date()}…{end.date()} with model {result['model_id']} → "
              f"[bold]{escape(str(result['store']))}[/]: {counts}; {len(result['chunks'])} chunk(s), {skipped} already done")
    exit_if_partial(result)


@app.command()
def serve(
    cron: Annotated[str, typer.Option(help="schedule of the daily deployment")] = "0 6 * * *",
    timezone: Annotated[str, typer.Option("--tz", help="time zone of the cron schedule")] = "UTC",
    limit: Annotated[int | None, typer.Option(help="most flow runs at once from this process")] = None,
    config: ConfigOpt = None,
) -> None:
    """Serve the daily (scheduled), backfill and train deployments from this process.

    Needs a Prefect server: `make server`, then PREFECT_API_URL=http://127.0.0.1:4200/api."""
    from prefect.settings import PREFECT_API_URL

    from flows.deployments import serve_deployments
    from pipeline.errors import SeedfieldError

    if not PREFECT_API_URL.value():
        fail(ValueError("PREFECT_API_URL is not set: Prefect's temporary server has no scheduler and no UI. "
                        "Start one (`make server`) and export PREFECT_API_URL=http://127.0.0.1:4200/api"))
    try:
        serve_deployments(str(config) if config else None, cron=cron, tz=timezone, limit=limit)
    except (SeedfieldError, ValueError) as exc:
        fail(exc)


@app.command("deploy-train")
def deploy_train(
    pool: Annotated[str, typer.Option(help="process work pool with a worker on a GPU host")] = "gpu",
    name: Annotated[str, typer.Option(help="deployment name")] = "train-gpu",
    config: ConfigOpt = None,
) -> None:
    """Register the train deployment on a (GPU) process work pool.

    Create the pool first (prefect work-pool create gpu --type process) and run a worker on the
    GPU host (prefect worker start --pool gpu)."""
    from flows.deployments import deploy_train_to_pool
    from pipeline.errors import SeedfieldError

    try:
        deployment_id = deploy_train_to_pool(str(config) if config else None, pool, name)
    except (SeedfieldError, ValueError) as exc:
        fail(exc)
    out.print(f"deployment [bold]train/{name}[/] ({deployment_id}) on work pool {pool!r}; start a worker with "
              f"`prefect worker start --pool {pool}` and run it with "
              f"`prefect deployment run train/{name} -p start=YYYY-MM-DD -p end=YYYY-MM-DD`")


@app.command()
def demo(
    out_dir: Annotated[Path, typer.Option("--out", help="where the demo writes everything")] = Path("demo-output"),
    quick: Annotated[bool, typer.Option("--quick", help="ten weeks of a small crop, a token training: "
                                        "every stage in a few minutes, no skill to speak of")] = False,
    observations: Annotated[bool, typer.Option(
        "--observations", help="scattered observations in (the sample observation archive, through the real "
        "readers), full fields out; scored against the sample's grid of origin and by leave-platform-out CV")] = False,
) -> None:
    """Run the main job end to end on the bundled sample and say where the results are."""
    try:
        api_ready()
        if observations:
            from flows.demo_observations import run_observations_demo

            run_observations_demo(out_dir, console=out)
        else:
            from flows.demo import FULL, QUICK, run_demo

            run_demo(out_dir, console=out, plan=QUICK if quick else FULL)
    except user_errors() as exc:
        fail(exc)


@app.command("show-config")
def show_config(config: ConfigOpt = None) -> None:
    """Print the effective configuration as JSON (defaults merged with --config)."""
    import json

    try:
        cfg = load(config)
    except user_errors() as exc:
        fail(exc)
    out.print_json(json.dumps(cfg.model_dump(mode="json")))

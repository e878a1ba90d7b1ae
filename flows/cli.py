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
from rich.markup import escape

from flows.config import SeedfieldConfig, load_config
from pipeline.errors import SeedfieldError
from pipeline.secrets import redact_text
from storage.model_registry import RegistryError
from storage.step_store import StoreError

app = typer.Typer(
    name="seedfield",
    help="Reconstruct high-resolution SST from sparse random sensors (RaSeedGAN) — a Prefect pipeline over Zarr.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
err = Console(stderr=True, soft_wrap=True)
out = Console()

EXIT_PARTIAL = 3
EXIT_BAD_INPUT = 2

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="TOML config file", exists=False)]
DateArg = Annotated[
    dt.datetime,
    typer.Option(
        formats=["%Y-%m-%d", "%Y-%m-%dT%H", "%Y-%m-%dT%H:%M"],
        help="YYYY-MM-DD (a whole day on an hourly store) or YYYY-MM-DDTHH",
    ),
]


def _step(value: dt.datetime) -> dt.date:
    """A command-line date as a step bound: a plain date, or a date-time when it has an hour."""
    return value.date() if value.time() == dt.time(0) else value


def _run(flow: Any, *args: Any, **kwargs: Any) -> Any:
    """:func:`flows.states.run_flow` (imported here: Prefect loads only for commands that run flows)."""
    from flows.states import run_flow

    return run_flow(flow, *args, **kwargs)


def _period(start: dt.datetime, end: dt.datetime) -> tuple[dt.date, dt.date]:
    """``--start`` and ``--end`` as step bounds; a ConfigError when the period is empty."""
    if end < start:
        from flows.config import ConfigError

        raise ConfigError(f"--start {_step(start)} is after --end {_step(end)}: expected start <= end")
    return _step(start), _step(end)


def _needs_archive(cfg: SeedfieldConfig) -> None:
    """A ConfigError before any flow starts when the command needs the archive and has none."""
    if not cfg.archive.source:
        from flows.config import ConfigError

        raise ConfigError("config key 'archive.source': not set; pass --archive or set [archive] source")


def _writable(cfg: SeedfieldConfig, *names: str) -> None:
    """A StoreError (one line naming the store) when a store the command writes cannot be."""
    from storage.fs import check_store_location

    for name in names:
        why = check_store_location(getattr(cfg.stores, name), cfg.stores.storage_options or None)
        if why:
            raise StoreError(why)


def _config(path: Path | None, **overrides: Any) -> SeedfieldConfig:
    return load_config(path, overrides)


def _pair(text: str | None, option: str) -> list[float] | None:
    """``"LOW,HIGH"`` as two numbers; a ConfigError naming ``option`` otherwise."""
    if text is None:
        return None
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        from flows.config import ConfigError

        raise ConfigError(f"{option}: expected LOW,HIGH (two numbers, e.g. -40,50), got {text!r}") from None
    return [low, high]


def _fail(exc: Exception) -> None:
    err.print(f"[bold red]error:[/] {escape(redact_text(str(exc)))}")
    raise typer.Exit(EXIT_BAD_INPUT)


def _finish(result: dict[str, Any]) -> None:
    counts = ", ".join(f"{k} {v}" for k, v in result["summary"].items() if v)
    out.print(f"[bold]{result['store']}[/]: {counts}")
    _exit_if_partial(result)


def _exit_if_partial(result: dict[str, Any]) -> None:
    """Exit 3 when some steps failed and others are done, 2 when none is done."""
    if result["ok"]:
        return
    days = result.get("failed_days", [])
    if days:
        err.print(f"[yellow]some days failed or were missing[/] {escape(str(days[:10]))}{' …' if len(days) > 10 else ''}")
    if result.get("error"):
        err.print(f"[bold red]error:[/] {escape(redact_text(str(result['error'])))}")
    summary = result.get("summary", {})
    done = sum(summary.get(k, 0) for k in ("ok", "unchanged", "skipped"))
    raise typer.Exit(EXIT_PARTIAL if done or not summary else EXIT_BAD_INPUT)


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
    step: Annotated[str | None, typer.Option(help="time step of a new store: 1D, 1h, 3h, 1MS, climatology (default: detected)")] = None,
    valid_range: Annotated[str | None, typer.Option(help="physical range LOW,HIGH in °C (default -3,45)")] = None,
    dask_address: Annotated[str | None, typer.Option(help="existing Dask scheduler; default a LocalCluster")] = None,
    workers: Annotated[int | None, typer.Option(help="LocalCluster worker processes")] = None,
    json_report: Annotated[Path | None, typer.Option("--json", help="write a JSON report here")] = None,
    config: ConfigOpt = None,
) -> None:
    """Validate the archive's files and write their time steps into the raw Zarr store (idempotent)."""
    from flows.ingest import ingest_flow

    try:
        cfg = _config(
            config, **{"archive.source": archive, "stores.raw": store, "archive.variable": variable,
                       "archive.step": step, "archive.valid_range": _pair(valid_range, "--valid-range"),
                       "dask.address": dask_address, "dask.n_workers": workers},
        )
        _needs_archive(cfg)
        _writable(cfg, "raw")
        result = _run(ingest_flow, cfg, *_period(start, end), str(json_report) if json_report else None, progress_bar=True)
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
        _writable(cfg, "seedings")
        result = _run(prepare_flow, cfg, *_period(start, end), force=force,
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
    architecture: Annotated[str | None, typer.Option(help="sensornet (recommended) | raseedgan | srresnet | srgan | edsr_baseline | edsr | mdsr | esrgan | autoencoder")] = None,
    config: ConfigOpt = None,
) -> None:
    """Train a model (the [train] architecture: RaSeedGAN by default, SensorNet in the demo) on the prepared days from --start to --end
    (the last 20 % validate) and publish it."""
    from flows.train import train_flow

    try:
        cfg = _config(config, **{"stores.seedings": store, "train.epochs": epochs, "train.device": device,
                                 "stores.registry": registry, "split.processes": processes,
                                 "train.architecture": architecture})
        result = train_flow(cfg, *_period(start, end), model_id)
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
    """Reconstruct every prepared day from --start to --end into the output Zarr store."""
    from flows.infer import infer_flow

    try:
        cfg = _config(config, **{"stores.seedings": store, "stores.output": output, "stores.registry": registry,
                                 "infer.tile": tile, "infer.batch_size": batch_size, "infer.device": device})
        _writable(cfg, "output")
        result = _run(infer_flow, cfg, *_period(start, end), model, force=force, progress_bar=True)
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
    """Score the model against cubic, linear, bicubic-of-bins and the LR bins from --start to --end."""
    from flows.evaluate import evaluate_flow, markdown_table

    try:
        cfg = _config(config, **{"stores.seedings": store, "stores.raw": raw, "stores.registry": registry})
        report = evaluate_flow(cfg, *_period(start, end), str(json_out), model,
                               str(plots) if plots else None, progress_bar=True)
    except (SeedfieldError, StoreError, RegistryError) as exc:
        _fail(exc)
    out.print(markdown_table(report["methods"]))
    out.print(f"metrics: [bold]{json_out}[/]" + "".join(f"\n{k}: [bold]{v}[/]" for k, v in report["plots"].items()))


@app.command()
def compare(
    start: DateArg,
    end: DateArg,
    json_out: Annotated[Path, typer.Option("--json", help="where to write the comparison JSON")],
    store: Annotated[str | None, typer.Option(help="seedings Zarr store (its raw store is the truth)")] = None,
    raw: Annotated[str | None, typer.Option(help="raw Zarr store (default: the one the seedings came from)")] = None,
    registry: Annotated[str | None, typer.Option(help="model registry directory (the zoo models are published there)")] = None,
    architectures: Annotated[str | None, typer.Option(help="comma-separated subset, e.g. raseedgan,edsr_baseline")] = None,
    epochs: Annotated[int | None, typer.Option(help="epochs for every architecture")] = None,
    batches: Annotated[int | None, typer.Option("--batches-per-epoch", help="batches per epoch for every architecture")] = None,
    markdown: Annotated[Path | None, typer.Option(help="Markdown file for the table (e.g. docs/model-zoo.md)")] = None,
    config: ConfigOpt = None,
) -> None:
    """Train every architecture of the zoo on the same seedings and budget; score them with the
    baselines on the last 20 % of --start … --end (held back) and write the table."""
    from flows.compare import compare_flow, markdown_table

    try:
        cfg = _config(config, **{
            "stores.seedings": store, "stores.raw": raw, "stores.registry": registry,
            "compare.architectures": [a.strip() for a in architectures.split(",") if a.strip()] if architectures else None,
            "compare.epochs": epochs, "compare.max_batches_per_epoch": batches,
        })
        report = compare_flow(cfg, *_period(start, end), str(json_out),
                              str(markdown) if markdown else None, progress_bar=True)
    except (SeedfieldError, StoreError, RegistryError) as exc:
        _fail(exc)
    out.print(markdown_table(report["rows"]))
    out.print(f"table: [bold]{json_out}[/]" + (f" and [bold]{markdown}[/]" if markdown else ""))
    if not report["ok"]:
        err.print("[yellow]some architectures failed[/] (see their rows)")
        raise typer.Exit(EXIT_PARTIAL)


@app.command()
def demo(
    out_dir: Annotated[Path, typer.Option("--out", help="where the demo writes everything")] = Path("demo-output"),
) -> None:
    """Run the main job end to end on the bundled sample and say where the results are."""
    from flows.demo import run_demo

    try:
        run_demo(out_dir, console=out)
    except (SeedfieldError, StoreError, RegistryError) as exc:
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


@app.command()
def daily(
    date: Annotated[dt.datetime | None, typer.Option("--date", formats=["%Y-%m-%d"],
                    help="day to process (default: today UTC minus --lag-days)")] = None,
    model: Annotated[str | None, typer.Option(help="model id, 'current' (default) or 'latest'")] = None,
    qa_threshold: Annotated[float | None, typer.Option(help="flag days whose re-binned QA RMSE exceeds this, °C")] = None,
    lag_days: Annotated[int, typer.Option(min=0, help="days between the run date and the day processed")] = 1,
    preliminary_window: Annotated[int, typer.Option(min=0, help="days back to look for preliminary days to refresh")] = 21,
    dask_address: Annotated[str | None, typer.Option(help="existing Dask scheduler; default a LocalCluster")] = None,
    workers: Annotated[int | None, typer.Option(help="LocalCluster worker processes")] = None,
    config: ConfigOpt = None,
) -> None:
    """Ingest, prepare and reconstruct one day, refresh preliminary days, QA, artifacts."""
    from flows.daily import daily_flow

    try:
        cfg = _config(config, **{"dask.address": dask_address, "dask.n_workers": workers})
        _needs_archive(cfg)
        _writable(cfg, "raw", "seedings", "output")
        result = _run(daily_flow, cfg, date.date() if date else None, model, qa_threshold, lag_days, preliminary_window)
    except (SeedfieldError, StoreError, RegistryError) as exc:
        _fail(exc)
    counts = ", ".join(f"{k} {v}" for k, v in result["summary"].items() if v)
    out.print(f"daily [bold]{result['day']}[/] with model {result['model_id']} → {result['store']}: {counts}")
    if result["reingested"]:
        out.print(f"refreshed preliminary days: {', '.join(result['reingested'])}")
    if result["qa_flagged"]:
        err.print(f"[yellow]QA above {qa_threshold} °C[/]: {', '.join(result['qa_flagged'])}")
    _exit_if_partial(result)


@app.command()
def backfill(
    start: DateArg,
    end: DateArg,
    chunk_days: Annotated[int, typer.Option(min=1, help="days per chunk (one ingest/prepare/infer subflow each)")] = 30,
    force: Annotated[bool, typer.Option(help="recompute days already reconstructed by this model")] = False,
    model: Annotated[str | None, typer.Option(help="model id, 'current' (default) or 'latest'")] = None,
    dask_address: Annotated[str | None, typer.Option(help="existing Dask scheduler; default a LocalCluster")] = None,
    workers: Annotated[int | None, typer.Option(help="LocalCluster worker processes")] = None,
    config: ConfigOpt = None,
) -> None:
    """Ingest, prepare and reconstruct a period chunk by chunk (resumable, locked).

    Re-run the same command to resume after an interruption; a run over days another run holds
    stops at once, naming it."""
    from flows.backfill import backfill_flow

    try:
        cfg = _config(config, **{"dask.address": dask_address, "dask.n_workers": workers})
        _needs_archive(cfg)
        _writable(cfg, "raw", "seedings", "output")
        result = _run(backfill_flow, cfg, *_period(start, end), chunk_days, force, model, progress_bar=True)
    except (SeedfieldError, StoreError, RegistryError, ValueError) as exc:
        _fail(exc)
    counts = ", ".join(f"{k} {v}" for k, v in result["summary"].items() if v)
    skipped = sum(1 for c in result["chunks"] if str(c["outcome"]).startswith("skipped"))
    out.print(f"backfill {start.date()}…{end.date()} with model {result['model_id']} → [bold]{result['store']}[/]: "
              f"{counts}; {len(result['chunks'])} chunk(s), {skipped} already done")
    _exit_if_partial(result)


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

    if not PREFECT_API_URL.value():
        _fail(ValueError("PREFECT_API_URL is not set: Prefect's temporary server has no scheduler and no UI. "
                         "Start one (`make server`) and export PREFECT_API_URL=http://127.0.0.1:4200/api"))
    try:
        serve_deployments(str(config) if config else None, cron=cron, tz=timezone, limit=limit)
    except (SeedfieldError, ValueError) as exc:
        _fail(exc)


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

    try:
        deployment_id = deploy_train_to_pool(str(config) if config else None, pool, name)
    except (SeedfieldError, ValueError) as exc:
        _fail(exc)
    out.print(f"deployment [bold]train/{name}[/] ({deployment_id}) on work pool {pool!r}; start a worker with "
              f"`prefect worker start --pool {pool}` and run it with "
              f"`prefect deployment run train/{name} -p start=YYYY-MM-DD -p end=YYYY-MM-DD`")

# ---- end of operations commands ----


def main() -> None:
    """Console-script entry point. ``--debug`` anywhere on the line keeps the traceback of an
    unexpected error; without it a filesystem error (a store path that is a file, a missing
    bucket, a full disk, a read-only store) is one line naming the path, exit 2."""
    debug = "--debug" in sys.argv[1:]
    if debug:
        sys.argv.remove("--debug")
    else:
        from flows.redaction import quiet_user_error_tracebacks

        quiet_user_error_tracebacks((SeedfieldError, OSError))
    try:
        app(prog_name="seedfield")
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except OSError as exc:
        if debug:
            raise
        where = exc.filename or "a store or archive"
        err.print(f"[bold red]error:[/] {escape(str(where))}: {escape(exc.strerror or str(exc) or type(exc).__name__)}")
        sys.exit(EXIT_BAD_INPUT)


if __name__ == "__main__":
    main()

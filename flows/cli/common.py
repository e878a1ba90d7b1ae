"""What every command group shares: the Typer app, the consoles, exit codes, the option types
and the helpers that turn options into one validated config.

Kept cheap to import: ``seedfield --help`` loads typer and rich only. Everything heavy (Prefect,
Dask, xarray, Zarr, torch, pydantic's config models) is imported inside the commands' bodies.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from pipeline.secrets import redact_text

if TYPE_CHECKING:
    from flows.config import SeedfieldConfig

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
OptDateArg = Annotated[
    dt.datetime | None,
    typer.Option(formats=["%Y-%m-%d", "%Y-%m-%dT%H", "%Y-%m-%dT%H:%M"], help="YYYY-MM-DD or YYYY-MM-DDTHH"),
]

# One name per store on every command (config keys stores.raw, .seedings, .output, .registry).
RawOpt = Annotated[str | None, typer.Option("--raw", help="raw Zarr store, path or URL (default: stores.raw)")]
SeedingsOpt = Annotated[
    str | None, typer.Option("--seedings", help="seedings Zarr store, path or URL (default: stores.seedings)")
]
OutputOpt = Annotated[
    str | None, typer.Option("--output", help="reconstruction Zarr store, path or URL (default: stores.output)")
]
RegistryOpt = Annotated[str | None, typer.Option("--registry", help="model registry directory (default: stores.registry)")]
#: ``--store``: the name earlier releases used (the raw store of ingest/prepare, the seedings
#: store of train/infer/evaluate/compare). Hidden; still works, with a warning.
StoreAlias = Annotated[str | None, typer.Option("--store", hidden=True)]
ArchiveOpt = Annotated[str | None, typer.Option(help="directory, glob or URL pattern of the daily files")]
DaskOpt = Annotated[str | None, typer.Option(help="existing Dask scheduler; default a LocalCluster")]
WorkersOpt = Annotated[int | None, typer.Option(help="LocalCluster worker processes")]
ModelOpt = Annotated[str | None, typer.Option(help="model id, 'current' (default) or 'latest'")]


def user_errors() -> tuple[type[Exception], ...]:
    """The user's mistakes a command turns into ``error: …``, exit 2. A function, so that the
    modules defining them (Zarr, fsspec) load only when an ``except`` clause needs them."""
    from pipeline.errors import SeedfieldError
    from storage.model_registry import RegistryError
    from storage.step_store import StoreError

    return (SeedfieldError, StoreError, RegistryError)


def config_error(message: str) -> Exception:
    from flows.config import ConfigError

    return ConfigError(message)


def store_option(new: str | None, old: str | None, name: str) -> str | None:
    """The value of ``--<name>``, or of the deprecated ``--store`` that meant it here."""
    if old is None:
        return new
    if new is not None and new != old:
        raise config_error(f"--store and --{name} name different stores: --store is the old name of "
                           f"--{name} here; pass only --{name}")
    err.print(f"warning: --store is deprecated here; use --{name}", markup=False, highlight=False)
    return old


def step_bound(value: dt.datetime) -> dt.date:
    """A command-line date as a step bound: a plain date, or a date-time when it has an hour."""
    return value.date() if value.time() == dt.time(0) else value


#: The commands that run flows: they need a Prefect API (:func:`start_api`, :func:`api_ready`).
FLOW_COMMANDS = frozenset({"ingest", "ingest-observations", "prepare", "train", "infer", "evaluate", "compare", "daily",
                           "backfill", "demo"})
#: The API this command uses once :func:`start_api` ran: (URL, True when it is seedfield's local server).
API: list[tuple[str, bool]] = []


def start_api() -> None:
    """Before a flow command imports anything heavy: use the configured Prefect server, or start
    (without waiting) or reuse seedfield's local one (:mod:`flows.local_server`)."""
    from flows import local_server

    url = local_server.begin()
    configured = None if url else local_server.configured_api_url()
    API[:] = [(url, True)] if url else [(configured, False)] if configured else []


def api_ready() -> None:
    """Right before the first flow: wait for the local server to answer; a configured server that
    does not answer is one line, exit 2 (nothing was started)."""
    from flows import local_server

    if not API:
        return
    url, local = API[-1]
    try:
        if local:
            local_server.ready(url)
        elif not local_server.healthy(url, 10.0):
            raise local_server.ServerError(f"cannot reach the Prefect API at {url} (PREFECT_API_URL): "
                                           "is the server running?")
    except local_server.ServerError as exc:
        fail(exc)


def run(flow: Any, *args: Any, **kwargs: Any) -> Any:
    """:func:`flows.states.run_flow` (imported here: Prefect loads only for commands that run flows)."""
    from flows.states import run_flow

    api_ready()
    return run_flow(flow, *args, **kwargs)


def period(start: dt.datetime, end: dt.datetime) -> tuple[dt.date, dt.date]:
    """``--start`` and ``--end`` as step bounds; a ConfigError when the period is empty (an
    ``--end`` without an hour is the whole of that day: 2019-03-02T12 … 2019-03-02 is 12 hours)."""
    last = end if end.time() != dt.time(0) else end + dt.timedelta(days=1, microseconds=-1)
    if last < start:
        raise config_error(f"--start {step_bound(start)} is after --end {step_bound(end)}: expected start <= end")
    return step_bound(start), step_bound(end)


def optional_period(start: dt.datetime | None, end: dt.datetime | None) -> tuple[dt.date | None, dt.date | None]:
    """Like :func:`period`, either bound may be left open."""
    if start is not None and end is not None:
        return period(start, end)
    return (step_bound(start) if start else None), (step_bound(end) if end else None)


def needs_archive(cfg: SeedfieldConfig) -> None:
    """A ConfigError before any flow starts when the command needs the archive and has none."""
    if not cfg.archive.source:
        raise config_error("config key 'archive.source': not set; pass --archive or set [archive] source")


def writable(cfg: SeedfieldConfig, *names: str) -> None:
    """A StoreError (one line naming the store) when a store the command writes cannot be."""
    from storage.fs import check_store_location
    from storage.step_store import StoreError

    for name in names:
        why = check_store_location(getattr(cfg.stores, name), cfg.stores.storage_options or None)
        if why:
            raise StoreError(why)


def load(path: Path | None, **overrides: Any) -> SeedfieldConfig:
    """The validated config: defaults < ``--config`` TOML < options (dotted keys; None = unset)."""
    from flows.config import load_config

    return load_config(path, overrides)


def pair(text: str | None, option: str) -> list[float] | None:
    """``"LOW,HIGH"`` as two numbers; a ConfigError naming ``option`` otherwise."""
    if text is None:
        return None
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise config_error(f"{option}: expected LOW,HIGH (two numbers, e.g. -40,50), got {text!r}") from None
    return [low, high]


def fail(exc: Exception) -> None:
    """Print the user's mistake as one redacted line and exit 2."""
    err.print(f"[bold red]error:[/] {escape(redact_text(str(exc)))}")
    raise typer.Exit(EXIT_BAD_INPUT)


def finish(result: dict[str, Any]) -> None:
    counts = ", ".join(f"{k} {v}" for k, v in result["summary"].items() if v)
    out.print(f"[bold]{escape(result['store'])}[/]: {counts}")
    exit_if_partial(result)


def exit_if_partial(result: dict[str, Any]) -> None:
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

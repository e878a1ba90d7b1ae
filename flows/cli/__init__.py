"""The ``seedfield`` command line. Each command loads one validated config (defaults < --config
TOML < options) and runs a Prefect flow. Exit status: 0 all days done, 3 some days failed or were
missing (see the log and --json report), 2 bad configuration or input, 1 unexpected error.

One module per command group: :mod:`flows.cli.data` (sample-archive, ingest, prepare, status,
export), :mod:`flows.cli.model` (train, infer, evaluate, compare, models), :mod:`flows.cli.observations`
(sample-observations, ingest-observations), :mod:`flows.cli.ops`
(daily, backfill, serve, deploy-train, demo, show-config); shared pieces in
:mod:`flows.cli.common`. Importing this package loads typer and rich only, so ``--help`` is
quick; each command imports what it needs (Prefect, Dask, Zarr, torch) in its body.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

# The temporary server Prefect starts when no PREFECT_API_URL is set races its own telemetry
# insert against start-up ("database is locked"); a pipeline needs no telemetry.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
# Prefect retries a refused connection 5 times with doubling waits (about a minute per call) in
# case the server restarts; a command whose server is gone would take minutes to say so. Two
# retries still ride out a busy server (429/503) and a restart of a few seconds.
os.environ.setdefault("PREFECT_CLIENT_MAX_RETRIES", "2")

import typer
from rich.markup import escape

from flows.cli import data, model, observations, ops, server  # noqa: F401  (each registers its commands on app)
from flows.cli.common import (
    API,
    EXIT_BAD_INPUT,
    EXIT_PARTIAL,
    FLOW_COMMANDS,
    app,
    err,
    out,
    start_api,
)

__all__ = ["EXIT_BAD_INPUT", "EXIT_PARTIAL", "app", "main"]


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            number = version("seedfield")
        except PackageNotFoundError:
            number = "unknown (not installed)"
        out.print(f"seedfield {number}", highlight=False)
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="print the version and exit")] = False,
) -> None:
    """Reconstruct high-resolution SST from sparse random sensors (RaSeedGAN) — a Prefect pipeline over Zarr."""
    if ctx.invoked_subcommand in FLOW_COMMANDS and not {"--help", "-h"} & set(sys.argv[1:]):
        start_api()  # the local server starts while the command imports what it needs


def main() -> None:
    """Console-script entry point. ``--debug`` anywhere on the line keeps the traceback of an
    unexpected error; without it a filesystem error (a store path that is a file, a missing
    bucket, a full disk, a read-only store) is one line naming the path, exit 2.

    A command that ran flows ends with :func:`_leave`: the exit handlers run (Prefect sends its
    last logs and events), then the process ends without tearing down the thousands of modules
    it imported, which takes a second or two and does nothing for the results."""
    try:
        _main()
    except SystemExit as exc:
        if not API:
            raise
        code = exc.code
        if not isinstance(code, int):
            if code is not None:
                print(code, file=sys.stderr)
            code = 0 if code is None else 1
        _leave(code)


def _leave(code: int) -> None:
    import atexit

    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)


def _main() -> None:
    import logging

    from pipeline.errors import SeedfieldError

    logging.raiseExceptions = False  # a log record the API can no longer take is not the command's error
    debug = "--debug" in sys.argv[1:]
    if debug:
        sys.argv.remove("--debug")
    else:
        from flows.api_loss import quiet_event_errors
        from flows.redaction import quiet_user_error_tracebacks

        quiet_user_error_tracebacks((SeedfieldError, OSError), api_errors=True)
        quiet_event_errors()
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
    except Exception as exc:
        _exit_if_api_lost(exc, debug)
        raise


def _exit_if_api_lost(exc: Exception, debug: bool) -> None:
    """A run that lost its Prefect API: one line, exit 3 (see :mod:`flows.api_loss`)."""
    from flows.api_loss import api_lost, lost_api_message

    cause = api_lost(exc)
    if cause is None or debug:
        return
    command = next((a for a in sys.argv[1:] if not a.startswith("-")), "")
    url = API[-1][0] if API else os.environ.get("PREFECT_API_URL")
    rerun = ""
    model_id = getattr(sys.modules.get("flows.train"), "TRAINING", {}).get("model_id")
    if command == "train" and model_id and "--model-id" not in sys.argv:
        rerun = f"--model-id {model_id}"  # without it the re-run would train a new, timestamped id
    err.print(f"[bold red]error:[/] {escape(lost_api_message(url, command, cause, rerun))}")
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    # Not sys.exit: the exit handlers would wait on Prefect's queues of logs and events for an
    # API that is gone, and say so after this line. What the command wrote is on disk already.
    os._exit(EXIT_PARTIAL)


if __name__ == "__main__":
    main()

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

import typer
from rich.markup import escape

from flows.cli import data, model, observations, ops  # noqa: F401  (each registers its commands on app)
from flows.cli.common import EXIT_BAD_INPUT, EXIT_PARTIAL, app, err, out

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
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="print the version and exit")] = False,
) -> None:
    """Reconstruct high-resolution SST from sparse random sensors (RaSeedGAN) — a Prefect pipeline over Zarr."""


def main() -> None:
    """Console-script entry point. ``--debug`` anywhere on the line keeps the traceback of an
    unexpected error; without it a filesystem error (a store path that is a file, a missing
    bucket, a full disk, a read-only store) is one line naming the path, exit 2."""
    from pipeline.errors import SeedfieldError

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

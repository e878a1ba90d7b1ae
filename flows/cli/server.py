"""``seedfield server start|status|stop``: the local Prefect server seedfield reuses between
commands when no server is configured (:mod:`flows.local_server`)."""

from __future__ import annotations

import typer
from rich.markup import escape

from flows.cli.common import app, fail, out

server_app = typer.Typer(help="The local Prefect server seedfield starts once and reuses (no PREFECT_API_URL set).",
                         no_args_is_help=True)
app.add_typer(server_app, name="server")


def _show(state: dict, what: str) -> None:
    ui = state["url"].removesuffix("/api")
    out.print(f"{what} at [bold]{escape(state['url'])}[/] (pid {state['pid']}, since {state['started']}); "
              f"UI {escape(ui)}; database {escape(state['home'])}/prefect.db; log {escape(state['log'])}",
              highlight=False)


@server_app.command("start")
def start() -> None:
    """Start the local server now (the next flow command would), and wait until it answers."""
    from flows import local_server

    url = local_server.begin()
    if url is None:
        fail(ValueError(f"a Prefect server is configured ({local_server.configured_api_url()}) or "
                        f"{local_server.OPT_OUT}=0: seedfield starts none"))
    try:
        local_server.ready(url)
    except local_server.ServerError as exc:
        fail(exc)
    _show(local_server.read_state() or {}, "local Prefect server running")


@server_app.command("status")
def status() -> None:
    """Say whether the local server runs, where, and where its database is."""
    from flows import local_server

    state = local_server.alive()
    if state is None:
        out.print(f"no local Prefect server runs (state in {escape(str(local_server.state_dir()))})", highlight=False)
        return
    _show(state, "local Prefect server " + ("running" if local_server.healthy(state["url"]) else "starting"))


@server_app.command("stop")
def stop() -> None:
    """Stop the local server (its database stays, for the next one)."""
    from flows import local_server

    state = local_server.stop()
    out.print(f"stopped the local Prefect server (pid {state['pid']})" if state else "no local Prefect server runs",
              highlight=False)

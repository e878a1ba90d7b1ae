"""The local Prefect server seedfield starts once and reuses, when no server is configured.

Without ``PREFECT_API_URL`` Prefect starts a temporary server inside every command (about 20 s
on a small machine) and stops it at the end, so every command paid that start, and a run's
history vanished with it. Instead, the first command that runs a flow starts one background
server (``python -m uvicorn … prefect.server.api.server:create_app``, as ``prefect server start
--background`` does) and records it; every later command that finds it alive and healthy just
uses it (``PREFECT_API_URL`` pointed at it), so it pays only its own imports. The server's
start overlaps the command's imports: :func:`begin` launches it, :func:`ready` waits for it right
before the first flow runs.

Where: ``$SEEDFIELD_CACHE_DIR/prefect-server`` (default ``~/.cache/seedfield/prefect-server``):
``server.json`` (its URL, pid, start time), ``server.log``, and ``home/`` — its own
``PREFECT_HOME`` with its SQLite database (``home/prefect.db``), apart from the user's Prefect
profile. Its UI is at the URL without ``/api``. ``seedfield server stop`` stops it;
``seedfield server status`` shows it. Opting out: ``SEEDFIELD_LOCAL_SERVER=0`` gives Prefect's
own temporary server per command again. A configured server (``PREFECT_API_URL`` in the
environment or in the active Prefect profile) is always used as it is.

Imports only the standard library and psutil: it runs before Prefect is imported.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

OPT_OUT = "SEEDFIELD_LOCAL_SERVER"
START_TIMEOUT_S = 180.0


class ServerError(RuntimeError):
    """The local server could not be started or did not answer."""


def state_dir() -> Path:
    root = os.environ.get("SEEDFIELD_CACHE_DIR") or Path.home() / ".cache" / "seedfield"
    return Path(root) / "prefect-server"


def _state_file() -> Path:
    return state_dir() / "server.json"


def configured_api_url() -> str | None:
    """``PREFECT_API_URL`` as the command will see it: the environment, Prefect's settings when
    Prefect is already imported (a test harness), else the active profile in ``profiles.toml``."""
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    if "prefect.settings" in sys.modules:
        from prefect.settings import PREFECT_API_URL

        return PREFECT_API_URL.value() or None  # Prefect read its settings already
    home = Path(os.environ.get("PREFECT_HOME") or Path.home() / ".prefect")
    path = Path(os.environ.get("PREFECT_PROFILES_PATH") or home / "profiles.toml")
    try:
        profiles = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return None
    name = os.environ.get("PREFECT_PROFILE") or profiles.get("active") or "ephemeral"
    return (profiles.get("profiles", {}).get(name, {}) or {}).get("PREFECT_API_URL") or None


def read_state() -> dict[str, Any] | None:
    try:
        return json.loads(_state_file().read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _running(state: dict[str, Any]) -> bool:
    try:
        proc = psutil.Process(int(state["pid"]))
        return proc.status() != psutil.STATUS_ZOMBIE and abs(proc.create_time() - float(state["process_started"])) < 1.0
    except (psutil.Error, KeyError, ValueError, TypeError):
        return False


def healthy(url: str, timeout_s: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout_s) as response:
            return response.status == 200
    except OSError:
        return False


def alive() -> dict[str, Any] | None:
    """The recorded server when its process runs (it may still be starting)."""
    state = read_state()
    return state if state is not None and _running(state) else None


@contextlib.contextmanager
def _exclusive() -> Iterator[None]:
    """Two commands started together start one server, not two."""
    state_dir().mkdir(parents=True, exist_ok=True)
    with open(state_dir() / "server.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch() -> dict[str, Any]:
    folder = state_dir()
    home = folder / "home"
    home.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    prefect_dir = Path(importlib.util.find_spec("prefect").submodule_search_locations[0])  # type: ignore[index, union-attr]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update({"PREFECT_HOME": str(home), "PREFECT__SERVER_FINAL": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "PREFECT_SERVER_LOGGING_LEVEL": "WARNING", "PREFECT_UI_API_URL": f"http://127.0.0.1:{port}/api"})
    with open(folder / "server.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--app-dir", str(prefect_dir.parent), "--factory",
             "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(port),
             "--log-level", "warning"],
            env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, cwd=folder,
        )
    state = {"url": f"http://127.0.0.1:{port}/api", "pid": proc.pid,
             "process_started": psutil.Process(proc.pid).create_time(),
             "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "home": str(home),
             "log": str(folder / "server.log")}
    tmp = _state_file().with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=1))
    tmp.replace(_state_file())
    return state


def begin() -> str | None:
    """Point this process at the local server, starting it (without waiting) when none runs.
    None, and nothing changed, when a server is configured or ``SEEDFIELD_LOCAL_SERVER=0``."""
    if configured_api_url() or os.environ.get(OPT_OUT, "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    if "prefect.settings" in sys.modules:  # too late to point Prefect elsewhere: its temporary server
        return None
    with _exclusive():
        state = alive()
        if state is not None and not healthy(state["url"], 0.5) and time.time() - psutil.Process(state["pid"]).create_time() > START_TIMEOUT_S:
            _terminate(state)  # runs, but has not answered for minutes: a wedged server
            state = None
        if state is None:
            state = _launch()
    os.environ["PREFECT_API_URL"] = state["url"]
    return state["url"]


def ready(url: str, timeout_s: float = START_TIMEOUT_S) -> None:
    """Wait until the server at ``url`` answers; a ServerError naming its log otherwise."""
    deadline = time.monotonic() + timeout_s
    while not healthy(url):
        state = read_state()
        if state is None or state.get("url") != url or not _running(state):
            raise ServerError(f"the local Prefect server for {url} exited while starting; see {state_dir() / 'server.log'}")
        if time.monotonic() > deadline:
            raise ServerError(f"the local Prefect server at {url} did not answer within {timeout_s:.0f} s; "
                              f"see {state_dir() / 'server.log'}")
        time.sleep(0.2)


def _terminate(state: dict[str, Any]) -> None:
    with contextlib.suppress(psutil.Error, KeyError, ValueError):
        proc = psutil.Process(int(state["pid"]))
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except psutil.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(15)


def stop() -> dict[str, Any] | None:
    """Stop the recorded server (its whole process group); what was stopped, None if none ran."""
    with _exclusive():
        state = alive()
        if state is not None:
            _terminate(state)
        with contextlib.suppress(FileNotFoundError):
            _state_file().unlink()
    return state

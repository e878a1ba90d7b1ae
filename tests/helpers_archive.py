"""Shared helpers for the archive tests: tiny OISST files, generic CF files, an HTTP server."""

from __future__ import annotations

import base64
import contextlib
import functools
import threading
from collections.abc import Iterator
from datetime import date
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

from pipeline.oisst import oisst_relpath, write_oisst_file

TINY_LAT = np.array([-0.375, -0.125, 0.125, 0.375])
TINY_LON = np.array([10.125, 10.375, 10.625])


def write_tiny_oisst(root: Path, day: date, preliminary: bool = False, offset: float = 0.0) -> Path:
    """A 4×3-cell OISST-layout file at ``root/YYYYMM/<OISST name>``; sst = 20 + day + offset."""
    path = Path(root) / oisst_relpath(day, preliminary)
    sst = np.full((TINY_LAT.size, TINY_LON.size), 20.0 + day.day / 10 + offset)
    sst[0, 0] = np.nan
    write_oisst_file(
        path, day, sst, sst - 20.0, np.full_like(sst, 0.2), np.full_like(sst, np.nan),
        TINY_LAT, TINY_LON, preliminary=preliminary,
    )
    return path


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


class _BasicAuthHandler(_QuietHandler):
    """Answers 401 unless the request carries HTTP basic auth with the server's credentials."""

    expected = ""

    def do_GET(self) -> None:
        if self.headers.get("Authorization") != self.expected:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="archive"')
            self.end_headers()
            return
        super().do_GET()

    do_HEAD = do_GET


@contextlib.contextmanager
def serve_directory(root: Path, credentials: tuple[str, str] | None = None) -> Iterator[str]:
    """Serve ``root`` over HTTP on 127.0.0.1 (a free port) in a thread; yields the base URL.
    With ``credentials = (user, password)`` every request needs them (HTTP basic auth)."""
    if credentials:
        token = base64.b64encode(f"{credentials[0]}:{credentials[1]}".encode()).decode()
        cls = type("_Auth", (_BasicAuthHandler,), {"expected": f"Basic {token}"})
        handler = functools.partial(cls, directory=str(root))
    else:
        handler = functools.partial(_QuietHandler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

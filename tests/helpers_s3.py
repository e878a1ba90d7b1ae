"""A real local S3 for tests: the keys it is reached with and fsspec options for it (the server
itself is the ``s3_endpoint`` fixture in tests/conftest.py)."""

from __future__ import annotations

import socket
from typing import Any

#: the keys the local S3 server is reached with: sentinels that the leak tests search for
S3_KEY = "AKIASENTINEL0000001"
S3_SECRET = "Sk-SENTINEL-93ab"
S3_BUCKET = "leaktest"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def s3_options(endpoint: str) -> dict[str, Any]:
    """fsspec ``storage_options`` that reach the local S3 server at ``endpoint``."""
    return {"key": S3_KEY, "secret": S3_SECRET,
            "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"}}

"""Session-wide real services: one Prefect test server, one Dask LocalCluster."""

from __future__ import annotations

import os
import tempfile
import urllib.request
import warnings

import pytest

from tests.helpers_s3 import S3_BUCKET, S3_KEY, S3_SECRET, free_port

os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "WARNING")
# Commands run without PREFECT_API_URL start seedfield's local Prefect server (flows.local_server):
# this session's own, in its own cache dir, stopped at the end (never the user's ~/.cache one).
os.environ.setdefault("SEEDFIELD_CACHE_DIR", tempfile.mkdtemp(prefix="seedfield-test-cache-"))
SESSION_CACHE_DIR = os.environ["SEEDFIELD_CACHE_DIR"]
warnings.filterwarnings("ignore", message=".*not recognized as a component of a Zarr hierarchy.*")


@pytest.fixture(scope="session", autouse=True)
def _stop_local_prefect_server():
    """Stop the local Prefect server a command of this session may have started."""
    yield
    from flows import local_server

    os.environ["SEEDFIELD_CACHE_DIR"] = SESSION_CACHE_DIR  # whatever a test left there
    local_server.stop()


@pytest.fixture(scope="session")
def prefect_server():
    """One temporary Prefect server (SQLite) for the whole session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def dask_cluster():
    """A real LocalCluster of two worker processes, shared by the flow tests."""
    from distributed import LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0")
    yield cluster
    cluster.close()


@pytest.fixture
def s3_endpoint():
    """A real S3 API (moto's server) on a free local port, with one bucket (``S3_BUCKET``):
    yields (endpoint URL, a boto3 client)."""
    moto_server = pytest.importorskip("moto.server")
    boto3 = pytest.importorskip("boto3")
    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    url = f"http://127.0.0.1:{port}"
    # moto keeps its buckets in this process, across servers: every test starts from none
    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST"), timeout=30).close()
    client = boto3.client("s3", endpoint_url=url, aws_access_key_id=S3_KEY, aws_secret_access_key=S3_SECRET,
                          region_name="us-east-1")
    client.create_bucket(Bucket=S3_BUCKET)
    try:
        yield url, client
    finally:
        server.stop()

"""No credential leaves the process: ingest from a real HTTP server that needs a password (in
the archive URL) into a real local S3 (moto) reached with keys, then search everything the run
left behind — its console output, its JSON report, every object of the store (data, metadata,
commit markers), `show-config` and Prefect's database — for the sentinels."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers_archive import serve_directory
from tests.helpers_flows import SMALL_REGION, write_toml
from tests.helpers_s3 import S3_KEY as KEY
from tests.helpers_s3 import S3_SECRET as SECRET

REPO = Path(__file__).resolve().parents[1]
PASSWORD = "Pw-SENTINEL-7c1e"
SENTINELS = (PASSWORD, KEY, SECRET)
DAYS = [dt.date(2015, 3, 1) + dt.timedelta(days=i) for i in range(3)]


def _found(blob: bytes | str, where: str) -> list[str]:
    data = blob.encode() if isinstance(blob, str) else blob
    return [f"{s} in {where}" for s in SENTINELS if s.encode() in data]


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_server")
@pytest.mark.parametrize("supplied", ["config", "secret-block"])
def test_no_credential_reaches_logs_reports_stores_or_prefect(tmp_path, dask_cluster, s3_endpoint, supplied):
    """The credentials come from the config (a password in the archive URL, keys in
    storage_options) or from Prefect Secret blocks the config names (archive.credentials_block
    with username/password, stores.credentials_block with key/secret)."""
    from prefect.blocks.system import Secret
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_DATABASE_CONNECTION_URL

    from pipeline.sample_archive import write_sample_archive

    endpoint, client = s3_endpoint
    write_sample_archive(tmp_path / "archive", DAYS[0], len(DAYS), region=SMALL_REGION)
    with serve_directory(tmp_path / "archive", ("reader", PASSWORD)) as base:
        settings = {"archive.source": base + "/", "stores.raw": "s3://leaktest/raw.zarr",
                    "stores.seedings": "s3://leaktest/seedings.zarr", "dask.address": dask_cluster.scheduler_address}
        if supplied == "config":
            settings["archive.source"] = base.replace("http://", f"http://reader:{PASSWORD}@") + "/"
            keys = f'key = "{KEY}"\nsecret = "{SECRET}"\n'
        else:
            Secret(value={"username": "reader", "password": PASSWORD}).save("leak-archive", overwrite=True)
            Secret(value={"key": KEY, "secret": SECRET}).save("leak-store", overwrite=True)
            settings.update({"archive.credentials_block": "leak-archive", "stores.credentials_block": "leak-store"})
            keys = ""
            from flows.config import ConfigError, load_config

            with pytest.raises(ConfigError, match=r"'stores.credentials_block': no Prefect Secret block named 'nope'"):
                load_config(None, {"stores.credentials_block": "nope"})
        toml = write_toml(tmp_path / "leak.toml", settings)
        toml.write_text(toml.read_text() + (
            f'[stores.storage_options]\n{keys}\n'
            f'[stores.storage_options.client_kwargs]\nendpoint_url = "{endpoint}"\nregion_name = "us-east-1"\n'))
        env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
        report = tmp_path / "report.json"
        run = subprocess.run(
            [sys.executable, "-m", "flows.cli", "ingest", "--start", str(DAYS[0]), "--end", str(DAYS[-1]),
             "--config", str(toml), "--json", str(report)],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        shown = subprocess.run([sys.executable, "-m", "flows.cli", "show-config", "--config", str(toml)],
                               cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    if supplied == "secret-block":  # the blocks' options are what the run used
        from flows.config import load_config

        loaded = load_config(toml)
        assert loaded.stores.storage_options["key"] == KEY and loaded.stores.storage_options["client_kwargs"]
        assert loaded.archive.storage_options["headers"]["Authorization"].startswith("Basic ")
    leaks = _found(run.stdout + run.stderr, "the console") + _found(report.read_bytes(), "the report")
    leaks += _found(shown.stdout + shown.stderr, "show-config")
    assert "***" in shown.stdout
    objects = [o["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket="leaktest")
               for o in page.get("Contents", [])]
    markers = [k for k in objects if "/_seedfield/commits/" in k]
    assert len(markers) == len(DAYS)  # the credentials worked: every day was read and stored
    for key in objects:
        leaks += _found(client.get_object(Bucket="leaktest", Key=key)["Body"].read(), f"s3://leaktest/{key}")
    if supplied == "config":
        assert "***@127.0.0.1" in client.get_object(Bucket="leaktest", Key=markers[0])["Body"].read().decode()
    db = Path(str(PREFECT_SERVER_DATABASE_CONNECTION_URL.value()).split("///", 1)[1])
    assert db.exists()
    for path in db.parent.glob(db.name + "*"):  # the database and its WAL
        leaks += _found(path.read_bytes(), f"Prefect's database ({path.name})")
    assert not leaks, leaks

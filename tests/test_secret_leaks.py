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


def _database_leaks() -> list[str]:
    """The sentinels in the session Prefect server's SQLite database and its WAL."""
    from prefect.settings import PREFECT_SERVER_DATABASE_CONNECTION_URL

    db = Path(str(PREFECT_SERVER_DATABASE_CONNECTION_URL.value()).split("///", 1)[1])
    assert db.exists(), db
    return [leak for path in db.parent.glob(db.name + "*") for leak in _found(path.read_bytes(),
                                                                            f"Prefect's database ({path.name})")]


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
    from prefect.settings import PREFECT_API_URL

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
    leaks += _database_leaks()
    assert not leaks, leaks


@pytest.mark.slow  # ~10-20 s: a seedfield process ingesting over HTTP, then show-config
@pytest.mark.usefixtures("prefect_server")
def test_no_password_of_an_observation_source_reaches_logs_reports_the_store_or_prefect(tmp_path):
    """The same search for a raw sensor archive read over HTTP with a password in its URL
    (`seedfield ingest-observations`): one CSV file, one good and one bad row."""
    import pandas as pd
    from prefect.settings import PREFECT_API_URL

    from pipeline.sample_observations import COLUMNS, write_grid_file

    c = COLUMNS
    src = tmp_path / "src"
    src.mkdir()
    pd.DataFrame([("2019-03-04T05:10:00Z", "G1", 52.0, -3.0, 7.5, 1), ("2019-03-04T05:30:00Z", "B1", 52.0, -3.0, 99.0, 1)],
                 columns=[c["time"], c["platform"], c["lat"], c["lon"], c["value"], c["quality"]]) \
        .to_csv(src / "buoys_20190304.csv", index=False)
    grid = write_grid_file(tmp_path / "grid.nc")
    store = tmp_path / "obs.zarr"
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    report = tmp_path / "report.json"
    with serve_directory(src, ("reader", PASSWORD)) as base:
        source = base.replace("http://", f"http://reader:{PASSWORD}@") + "/buoys_20190304.csv"
        toml = write_toml(tmp_path / "obs.toml", {
            "observations.source": source, "observations.format": "csv", "observations.grid_file": str(grid),
            "observations.step": "1h", "observations.valid_range": [-40.0, 45.0], "stores.observations": str(store)})
        toml.write_text(toml.read_text() + "[observations.columns]\n"
                        + "".join(f'{k} = "{v}"\n' for k, v in c.items()))
        run = subprocess.run(
            [sys.executable, "-m", "flows.cli", "ingest-observations", "--start", "2019-03-04T05",
             "--end", "2019-03-04T05", "--config", str(toml), "--json", str(report)],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        shown = subprocess.run([sys.executable, "-m", "flows.cli", "show-config", "--config", str(toml)],
                               cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    body = report.read_text()
    assert '"n_obs": 1' in body and "out_of_range" in body  # the file was read with the password
    leaks = _found(run.stdout + run.stderr, "the console") + _found(body, "the report")
    leaks += _found(shown.stdout + shown.stderr, "show-config")
    assert "***@127.0.0.1" in shown.stdout
    for path in sorted(p for p in store.rglob("*") if p.is_file()):
        leaks += _found(path.read_bytes(), str(path.relative_to(tmp_path)))
    leaks += _database_leaks()
    assert not leaks, leaks

import os
import subprocess
import sys

import pytest


@pytest.mark.slow  # ~8-16 s: starts its own LocalCluster
def test_local_cluster_leaves_this_process_thread_limits_alone():
    """Starting the cluster must not pin the flow process (and a later torch) to one thread."""
    code = (
        "import os\n"
        "from flows.config import DaskSettings\n"
        "from flows.dask_runtime import dask_client\n"
        "with dask_client(DaskSettings(n_workers=1)) as c:\n"
        "    inside = c.run(lambda: os.environ.get('OMP_NUM_THREADS'))\n"
        "print(repr(os.environ.get('OMP_NUM_THREADS')), list(inside.values()))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "None ['1']"  # workers limited, this process not


@pytest.mark.slow  # a fresh cluster and a Prefect server: ~40 s alone
@pytest.mark.usefixtures("prefect_server")
def test_ingest_and_prepare_workers_never_import_torch(tmp_path):
    """docs/benchmarks.md: the data path's Dask workers never import torch (2 s and 0.5 GiB
    each). A fresh cluster runs a real ingest and prepare, then its workers are asked."""
    code = (
        "import datetime as dt, sys\n"
        "from distributed import Client, LocalCluster\n"
        "from flows.config import load_config\n"
        "from flows.ingest import ingest_flow\n"
        "from flows.prepare import prepare_flow\n"
        "from pipeline.sample_archive import write_sample_archive\n"
        "from tests.helpers_flows import SMALL_REGION\n"
        "if __name__ == '__main__':\n"
        f"    root = {str(tmp_path)!r}\n"
        "    write_sample_archive(root + '/archive', dt.date(2020, 1, 1), 3, region=SMALL_REGION)\n"
        "    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=':0') as cluster, Client(cluster) as c:\n"
        "        cfg = load_config(None, {'archive.source': root + '/archive', 'stores.raw': root + '/raw.zarr',\n"
        "                                 'stores.seedings': root + '/s.zarr', 'dask.address': cluster.scheduler_address,\n"
        "                                 'seeding.bin_size': 8, 'seeding.upsampling': 4})\n"
        "        assert ingest_flow(cfg, dt.date(2020, 1, 1), dt.date(2020, 1, 3))['ok']\n"
        "        assert prepare_flow(cfg, dt.date(2020, 1, 1), dt.date(2020, 1, 3))['ok']\n"
        "        ran = c.run(lambda: sorted(m for m in ('flows.ingest_job', 'flows.prepare_job') if m in sys.modules))\n"
        "        print(sorted(c.run(lambda: 'torch' in sys.modules).values()), sorted(map(tuple, ran.values())))\n"
    )
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PYTHONPATH": repo, "PREFECT_LOGGING_LEVEL": "WARNING", "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    script = tmp_path / "probe.py"
    script.write_text(code)
    out = subprocess.run([sys.executable, str(script)], cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    torch_loaded, jobs = out.stdout.strip().splitlines()[-1].split("] ", 1)
    assert torch_loaded == "[False, False"  # no worker imported torch
    assert "flows.ingest_job" in jobs and "flows.prepare_job" in jobs  # …and the workers did the work

import os
import subprocess
import sys


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

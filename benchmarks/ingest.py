"""Ingest throughput: seedfield's ingest against the naive ``open_mfdataset(...).to_zarr()``.

Usage: python benchmarks/ingest.py [--files 30] [--workers 2] [--with-prefect]

Both sides read the same 30 global 720×1440 OISST-layout files and write a Zarr v3 store on the
same disk, in the same run. The naive side is what a user would write first:
``xr.open_mfdataset(files).to_zarr(path)`` with Dask's default threaded scheduler. seedfield's
side is the engine the ingest flow runs: one job per file on a LocalCluster of worker processes
(validation, decoding, region write, commit marker), timed without and with the cluster start;
``--with-prefect`` also times the whole Prefect flow against an already running test server.
Peak memory is the RSS of this process plus its children, sampled every 20 ms.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import xarray as xr

sys.path.insert(0, str(Path(__file__).parent))
from _measure import measure


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=30)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--with-prefect", action="store_true")
    ap.add_argument("--dir", default=None, help="scratch directory (default: a temp dir)")
    args = ap.parse_args()

    from flows.config import load_config
    from flows.dask_runtime import dask_client
    from flows.ingest import open_or_create_store
    from flows.ingest_job import ingest_file_job
    from pipeline.sample_archive import write_sample_archive
    from pipeline.sources import resolve_archive

    work = Path(args.dir or tempfile.mkdtemp(prefix="seedfield-bench-"))
    archive = work / "archive"
    start = dt.date(2019, 1, 1)
    end = start + dt.timedelta(days=args.files - 1)
    if not archive.exists():
        write_sample_archive(archive, start, args.files)
    files = sorted(str(p) for p in archive.rglob("*.nc"))
    print(f"{len(files)} files, {sum(Path(f).stat().st_size for f in files) / 2**20:.1f} MiB, in {archive}")

    # -- naive -------------------------------------------------------------------------------
    naive_store = work / "naive.zarr"
    shutil.rmtree(naive_store, ignore_errors=True)
    with measure() as naive:
        ds = xr.open_mfdataset(files, combine="by_coords")
        ds.to_zarr(naive_store, zarr_format=3, consolidated=False)
    print(f"naive open_mfdataset().to_zarr(): {naive.seconds:6.2f} s  {len(files) / naive.seconds:6.2f} files/s  peak {naive.peak_rss_mib:7.0f} MiB")

    # -- seedfield engine ----------------------------------------------------------------------
    store_path = str(work / "raw.zarr")
    shutil.rmtree(store_path, ignore_errors=True)
    cfg = load_config(None, {"archive.source": str(archive), "stores.raw": store_path, "dask.n_workers": args.workers})
    with measure() as with_start:
        with dask_client(cfg.dask) as client:  # the same runtime the flow uses (workers warmed up)
            with measure() as engine:
                index = resolve_archive(str(archive), start, end)
                open_or_create_store(cfg, index, start, end)
                futures = client.map(
                    ingest_file_job, index.files, store_path=store_path,
                    valid_range=cfg.archive.valid_range, variable="sst", pure=False,
                )
                results = [o for f in futures for o in f.result()]
    ok = sum(o.status == "ok" for o in results)
    print(f"seedfield engine ({args.workers} processes):    {engine.seconds:6.2f} s  {len(files) / engine.seconds:6.2f} files/s  peak {engine.peak_rss_mib:7.0f} MiB  ({ok} days ok)")
    print(f"  incl. cluster start:              {with_start.seconds:6.2f} s  {len(files) / with_start.seconds:6.2f} files/s")
    print(f"speed-up vs naive: {naive.seconds / engine.seconds:.2f}x (engine), {naive.seconds / with_start.seconds:.2f}x (incl. cluster start)")
    print(f"peak memory ratio (seedfield/naive): {engine.peak_rss_mib / naive.peak_rss_mib:.2f}")

    # same bytes?
    a = xr.open_zarr(naive_store, consolidated=False).sst.squeeze("zlev", drop=True)
    b = xr.open_zarr(store_path, consolidated=False).sst
    diff = float(np.nanmax(np.abs(a.sortby("lat").values - b.values)))
    print(f"max |naive - seedfield| over the stored field: {diff:.2e} °C")

    if args.with_prefect:
        from prefect.testing.utilities import prefect_test_harness

        from flows.ingest import ingest_flow

        store2 = str(work / "raw-prefect.zarr")
        shutil.rmtree(store2, ignore_errors=True)
        cfg2 = cfg.model_copy(update={"stores": cfg.stores.model_copy(update={"raw": store2})})
        with prefect_test_harness(server_startup_timeout=120):
            with measure() as flow_m:
                ingest_flow(cfg2, start, end)
        print(f"whole Prefect flow (cluster start included): {flow_m.seconds:6.2f} s  {len(files) / flow_m.seconds:6.2f} files/s  peak {flow_m.peak_rss_mib:7.0f} MiB  ({naive.seconds / flow_m.seconds:.2f}x naive)")


if __name__ == "__main__":
    main()

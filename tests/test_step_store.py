import datetime as dt

import numpy as np
import pytest
import xarray as xr

from storage.step_store import StaticVar, StepStore, StepVar, StoreError, date_range

D = dt.date


def make_store(path, days=None):
    days = days or date_range(D(2020, 1, 1), D(2020, 1, 3))
    return StepStore.create(
        str(path),
        days,
        {"lat": StaticVar(("lat",), np.arange(4.0)), "lon": StaticVar(("lon",), np.arange(5.0))},
        {"sst": StepVar(("time", "lat", "lon"), "float32", np.nan, {"units": "degree_Celsius"})},
        {"land_mask": StaticVar(("lat", "lon"), np.zeros((4, 5), "int8"))},
        {"title": "test"},
    )


def test_template_has_no_chunks_and_noon_times(tmp_path):
    store = make_store(tmp_path / "s.zarr")
    assert not (tmp_path / "s.zarr" / "sst" / "c").exists()  # metadata only
    ds = xr.open_zarr(tmp_path / "s.zarr", consolidated=False)
    assert ds.sizes["time"] == 3
    assert str(ds.time.values[0]) == "2020-01-01T12:00:00.000000000"
    assert ds.time.encoding["units"].replace("T", " ") == "days since 1978-01-01 12:00:00"
    assert int(store.group["time"][0]) == (D(2020, 1, 1) - D(1978, 1, 1)).days  # whole days, int32
    assert ds.time.attrs["axis"] == "T"
    assert store.steps == date_range(D(2020, 1, 1), D(2020, 1, 3))


def test_only_committed_days_are_visible_and_rewrites_are_idempotent(tmp_path):
    store = make_store(tmp_path / "s.zarr")
    store.write_step(D(2020, 1, 2), {"sst": np.full((4, 5), 7.0)})
    assert store.open_dataset().sizes["time"] == 0  # written but not committed
    assert store.commit(D(2020, 1, 2), {"status": "ok", "sha256": "x"})
    marker_file = tmp_path / "s.zarr" / "_seedfield" / "commits" / "2020-01-02.json"
    before = marker_file.read_bytes()
    assert not store.commit(D(2020, 1, 2), {"status": "ok", "sha256": "x"})
    assert marker_file.read_bytes() == before
    ds = store.open_dataset()
    assert ds.sizes["time"] == 1 and float(ds.sst.mean()) == 7.0


def test_extend_grows_at_the_end_only(tmp_path):
    store = make_store(tmp_path / "s.zarr")
    store.write_step(D(2020, 1, 1), {"sst": np.ones((4, 5))})
    store.extend([D(2020, 1, 6)])
    assert store.steps[-1] == D(2020, 1, 6) and len(store.steps) == 6
    store.write_step(D(2020, 1, 6), {"sst": np.full((4, 5), 2.0)})
    ds = store.open_dataset(committed_only=False)
    assert float(ds.sst[0].mean()) == 1.0 and float(ds.sst[5].mean()) == 2.0
    assert bool(ds.sst[3].isnull().all())
    with pytest.raises(StoreError, match="cannot grow backwards"):
        store.extend([D(2019, 12, 31)])


def test_errors_name_the_store(tmp_path):
    store = make_store(tmp_path / "s.zarr")
    with pytest.raises(StoreError, match=r"s\.zarr.*outside the store's time axis"):
        store.write_step(D(2021, 1, 1), {"sst": np.ones((4, 5))})
    with pytest.raises(StoreError, match="shape"):
        store.write_step(D(2020, 1, 1), {"sst": np.ones((3, 5))})
    with pytest.raises(StoreError, match="already exists"):
        make_store(tmp_path / "s.zarr")

"""Sample sources for the trainer: numpy dicts read from the stores (the torch side of the seam
is ``model.data.SparseFieldDataset``). Picklable: they open their stores lazily in each process.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np

from pipeline.seeding import SeedingParams, seed_day
from pipeline.steps import parse_step
from storage.raw_store import raw_variable
from storage.step_store import StepStore

SEEDED = ("lr_mean", "lr_count", "hr_mean", "hr_flag")


class _Lazy:
    """Opens its stores on first use in each process; drops them when pickled."""

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_stores"] = {}
        return state

    def _store(self, path: str, options: dict[str, Any] | None) -> StepStore:
        stores = self.__dict__.setdefault("_stores", {})
        if path not in stores:
            stores[path] = StepStore(path, options)
        return stores[path]


class StoredSeedings(_Lazy):
    """The seedings written by the prepare flow: the same sensors every epoch (the paper's setup).

    Samples read once are kept in memory up to ``cache_bytes`` (per process): a regional training
    set fits whole, so epochs after the first read no Zarr at all.
    """

    def __init__(
        self, path: str, days: list[dt.date], storage_options: dict[str, Any] | None = None,
        cache_bytes: int = 2 * 2**30,
    ) -> None:
        self.path, self.days, self.options = path, list(days), storage_options
        self.cache_bytes = cache_bytes

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.pop("_cache", None)
        state.pop("_cached_bytes", None)
        return state

    def __len__(self) -> int:
        return len(self.days)

    def sample(self, i: int, epoch: int) -> dict[str, Any]:
        cache = self.__dict__.setdefault("_cache", {})
        if i in cache:
            return dict(cache[i])
        day = self.days[i]
        out: dict[str, Any] = self._store(self.path, self.options).read_step(day, SEEDED)
        out["day_of_year"] = day.timetuple().tm_yday
        size = sum(v.nbytes for v in out.values() if isinstance(v, np.ndarray))
        used = self.__dict__.get("_cached_bytes", 0)
        if used + size <= self.cache_bytes:
            cache[i] = out
            self._cached_bytes = used + size
        return dict(out)


def epoch_seed(seed: int, epoch: int) -> int:
    """Epoch 0 reproduces the stored seedings; each later epoch draws new sensor positions."""
    if epoch == 0:
        return seed
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0] >> 1)


class FreshSeedings(_Lazy):
    """New random sensors every epoch, drawn from the raw field (a data-augmentation option)."""

    def __init__(
        self, raw_path: str, seedings_path: str, days: list[dt.date], params: dict[str, Any],
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        self.raw_path, self.seedings_path, self.days = raw_path, seedings_path, list(days)
        self.params, self.options = dict(params), storage_options

    def __len__(self) -> int:
        return len(self.days)

    def sample(self, i: int, epoch: int) -> dict[str, Any]:
        day = self.days[i]
        raw = self._store(self.raw_path, self.options)
        land = self.__dict__.get("_land")
        if land is None:
            land = self._store(self.seedings_path, self.options).read_static("land_mask").astype(bool)
            self.__dict__["_land"] = land
        field = raw.read_step(day, [raw_variable(raw)])[raw_variable(raw)][: land.shape[0], : land.shape[1]]
        params = SeedingParams(**{**self.params, "seed": epoch_seed(int(self.params["seed"]), epoch)})
        seeded = seed_day(field, np.isfinite(field) & ~land, day, params)
        return {
            "lr_mean": seeded.lr_mean, "lr_count": seeded.lr_count,
            "hr_mean": seeded.hr_mean, "hr_flag": seeded.hr_flag,
            "day_of_year": day.timetuple().tm_yday,
        }


def stored_seedings_source(path: str, days: list[str], storage_options: dict[str, Any] | None = None) -> StoredSeedings:
    """Factory by import path for ``model.train_entry`` (days as ISO strings, JSON-friendly)."""
    return StoredSeedings(path, [parse_step(d) for d in days], storage_options)


def fresh_seedings_source(
    raw_path: str, seedings_path: str, days: list[str], params: dict[str, Any],
    storage_options: dict[str, Any] | None = None,
) -> FreshSeedings:
    return FreshSeedings(raw_path, seedings_path, [parse_step(d) for d in days], params, storage_options)

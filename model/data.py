"""The one seam between numpy (whatever reads the stores) and torch.

A :class:`SampleSource` yields one day as numpy arrays (NaN where empty); a
:class:`SparseFieldDataset` turns it into the normalised tensors the networks see.
:func:`make_input` is the single code path that builds the generator input, shared by training
and inference.

Generator input channels (``C_in = input_channels(time_features)``):

0. normalised LR bin mean ``(x − μ_lr)/σ_lr``, 0 in empty bins;
1. 0/1 mask of seeded bins (the documented extra channel: it tells the network an empty bin from
   a bin whose value equals the mean);
2. 3. (``time_features``) sin and cos of ``2π·day_of_year/365.25``, constant over the domain.

HR target: ``(x − μ_hr·flag)/σ_hr`` on flagged cells, 0 elsewhere, with the 0/1 flag beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "Normalisation",
    "SampleSource",
    "SparseFieldDataset",
    "input_channels",
    "make_input",
    "make_target",
    "month_weights",
]

YEAR_DAYS = 365.25
_NORM_FIELDS = ("lr_mean", "lr_std", "hr_mean", "hr_std")


@runtime_checkable
class SampleSource(Protocol):
    """Yields training samples as numpy arrays.

    ``sample(i, epoch)`` returns ``{"lr_mean": float32 (h, w) NaN-empty, "lr_count": (h, w),
    "hr_mean": float32 (H, W) NaN-empty, "hr_flag": (H, W)}`` and optionally ``"day_of_year"``
    (int). ``epoch`` (0-based) lets a source draw new sensors each epoch; a source with fixed
    seedings ignores it. Implementations must be picklable (DataLoader worker processes) and
    open their files lazily.
    """

    def __len__(self) -> int: ...

    def sample(self, i: int, epoch: int) -> dict[str, Any]: ...


#: Mid-month day of year of a 365-day year: where monthly statistics are valid.
MONTH_CENTRES = np.cumsum([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30]) + np.array(
    [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]) / 2.0 + 0.5


def month_weights(day_of_year: float) -> tuple[int, int, float]:
    """(month a, month b, weight of b): linear interpolation between mid-months, cyclic."""
    d = float(day_of_year)
    b = int(np.searchsorted(MONTH_CENTRES, d, side="right")) % 12
    a = (b - 1) % 12
    ca, cb = MONTH_CENTRES[a], MONTH_CENTRES[b]
    span = (cb - ca) % 365.0
    w = ((d - ca) % 365.0) / span
    return a, b, float(w)


@dataclass(frozen=True)
class Normalisation:
    """Per-pixel statistics, float32 and NaN-free: annual ``(h, w)`` arrays (the reference) or
    seasonal ``(12, h, w)`` arrays, one per calendar month, interpolated linearly between
    mid-months by :meth:`at` (an extension: the network then sees anomalies from a seasonal
    full-resolution climatology).

    Attributes:
        lr_mean, lr_std: (h, w) or (12, h, w) statistics of the LR bin means.
        hr_mean, hr_std: (H, W) or (12, H, W) flag-weighted statistics of the sparse HR target;
            they also denormalise the generator output.
    """

    lr_mean: np.ndarray
    lr_std: np.ndarray
    hr_mean: np.ndarray
    hr_std: np.ndarray

    def __post_init__(self) -> None:
        ndims = set()
        for name in _NORM_FIELDS:
            arr = np.ascontiguousarray(np.asarray(getattr(self, name), dtype=np.float32))
            if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[0] != 12):
                raise ValueError(f"Normalisation.{name} must be (h, w) or (12, h, w), got shape {arr.shape}")
            if not np.isfinite(arr).all():
                raise ValueError(f"Normalisation.{name} has non-finite values")
            ndims.add(arr.ndim)
            object.__setattr__(self, name, arr)
        if len(ndims) != 1:
            raise ValueError("Normalisation arrays must be all annual (2-D) or all monthly (3-D)")
        if self.lr_mean.shape != self.lr_std.shape:
            raise ValueError(f"lr_mean {self.lr_mean.shape} and lr_std {self.lr_std.shape} differ")
        if self.hr_mean.shape != self.hr_std.shape:
            raise ValueError(f"hr_mean {self.hr_mean.shape} and hr_std {self.hr_std.shape} differ")
        if (self.lr_std <= 0).any() or (self.hr_std <= 0).any():
            raise ValueError("Normalisation standard deviations must be > 0")

    @property
    def seasonal(self) -> bool:
        return self.lr_mean.ndim == 3

    @property
    def lr_shape(self) -> tuple[int, int]:
        return self.lr_mean.shape[-2:]  # type: ignore[return-value]

    @property
    def hr_shape(self) -> tuple[int, int]:
        return self.hr_mean.shape[-2:]  # type: ignore[return-value]

    def at(self, day_of_year: int | None) -> Normalisation:
        """The annual statistics for a day: itself when annual, interpolated when seasonal."""
        if not self.seasonal:
            return self
        if day_of_year is None:
            raise ValueError("seasonal normalisation needs the day of year")
        a, b, w = month_weights(day_of_year)
        return Normalisation(**{k: (1 - w) * getattr(self, k)[a] + w * getattr(self, k)[b] for k in _NORM_FIELDS})

    def to_tensors(self) -> dict[str, Tensor]:
        """The four arrays as float32 CPU tensors (for checkpoints)."""
        return {name: torch.from_numpy(getattr(self, name).copy()) for name in _NORM_FIELDS}

    @classmethod
    def from_tensors(cls, tensors: dict[str, Tensor]) -> Normalisation:
        """Inverse of :meth:`to_tensors`."""
        missing = [k for k in _NORM_FIELDS if k not in tensors]
        if missing:
            raise ValueError(f"normalisation tensors miss {missing}")
        return cls(**{k: tensors[k].detach().cpu().float().numpy() for k in _NORM_FIELDS})

    def equals(self, other: Normalisation) -> bool:
        return all(np.array_equal(getattr(self, k), getattr(other, k)) for k in _NORM_FIELDS)


def input_channels(time_features: bool) -> int:
    """Generator input channels: mean + mask, plus sin/cos of the day of year."""
    return 4 if time_features else 2


def make_input(
    lr_mean: np.ndarray, lr_count: np.ndarray, norm: Normalisation, day_of_year: int | None = None,
    time_features: bool | None = None,
) -> np.ndarray:
    """Generator input for one day.

    lr_mean: (h, w) float, NaN (or anything) where empty; lr_count: (h, w) sensors per bin;
    day_of_year: needed by seasonal statistics and by the time channels; time_features: add the
    sin/cos channels (default: whenever ``day_of_year`` is given) → (C_in, h, w) float32.
    """
    lr_mean = np.asarray(lr_mean)
    lr_count = np.asarray(lr_count)
    if lr_mean.shape != norm.lr_shape or lr_count.shape != norm.lr_shape:
        raise ValueError(f"LR arrays {lr_mean.shape}/{lr_count.shape} do not match the "
                         f"normalisation grid {norm.lr_shape}")
    if time_features is None:
        time_features = day_of_year is not None
    n = norm.at(day_of_year)
    seeded = (np.nan_to_num(lr_count, nan=0.0) > 0) & np.isfinite(lr_mean)
    value = np.where(seeded, (np.where(seeded, lr_mean, 0.0) - n.lr_mean) / n.lr_std, 0.0)
    channels = [value.astype(np.float32), seeded.astype(np.float32)]
    if time_features:
        if day_of_year is None:
            raise ValueError("time features need the day of year")
        phase = 2.0 * np.pi * float(day_of_year) / YEAR_DAYS
        channels += [np.full(norm.lr_shape, np.sin(phase), np.float32),
                     np.full(norm.lr_shape, np.cos(phase), np.float32)]
    return np.stack(channels)


def make_target(
    hr_mean: np.ndarray, hr_flag: np.ndarray, norm: Normalisation, day_of_year: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Sparse HR target: hr_mean, hr_flag (H, W) → (target, flag), each (1, H, W) float32.

    The flag is 1 where at least one sensor fell and the mean is finite; the target is
    ``(x − μ_hr)/σ_hr`` there and 0 elsewhere (statistics of ``day_of_year`` when seasonal).
    """
    hr_mean = np.asarray(hr_mean)
    hr_flag = np.asarray(hr_flag)
    if hr_mean.shape != norm.hr_shape or hr_flag.shape != norm.hr_shape:
        raise ValueError(f"HR arrays {hr_mean.shape}/{hr_flag.shape} do not match the "
                         f"normalisation grid {norm.hr_shape}")
    n = norm.at(day_of_year)
    flag = (np.nan_to_num(hr_flag, nan=0.0) > 0) & np.isfinite(hr_mean)
    target = np.where(flag, (np.where(flag, hr_mean, 0.0) - n.hr_mean) / n.hr_std, 0.0)
    return target.astype(np.float32)[None], flag.astype(np.float32)[None]


class SparseFieldDataset(torch.utils.data.Dataset):
    """Normalised tensors from a :class:`SampleSource`.

    Args:
        source: the numpy sample source.
        norm: normalisation statistics (of the training period).
        time_features: append the day-of-year sin/cos channels (the source must provide
            ``"day_of_year"``).

    ``__getitem__(i)`` → ``{"lr": (C_in, h, w), "hr": (1, H, W), "flag": (1, H, W)}`` float32.
    Call :meth:`set_epoch` before each epoch (before the DataLoader iterator is created, so that
    worker processes get the new value).
    """

    def __init__(self, source: SampleSource, norm: Normalisation, time_features: bool = False) -> None:
        self.source = source
        self.norm = norm
        self.time_features = bool(time_features)
        self.epoch = 0

    @property
    def in_channels(self) -> int:
        return input_channels(self.time_features)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        s = self.source.sample(int(i), self.epoch)
        doy = s.get("day_of_year")
        if (self.time_features or self.norm.seasonal) and doy is None:
            raise ValueError("time features and seasonal statistics need a 'day_of_year' in every sample")
        doy = None if doy is None else int(doy)
        x = make_input(s["lr_mean"], s["lr_count"], self.norm, doy, time_features=self.time_features)
        hr, flag = make_target(s["hr_mean"], s["hr_flag"], self.norm, doy)
        return {"lr": torch.from_numpy(x), "hr": torch.from_numpy(hr), "flag": torch.from_numpy(flag)}

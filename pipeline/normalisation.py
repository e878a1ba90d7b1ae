"""Per-pixel normalisation statistics, streamed one day at a time (DESIGN §2).

The RaSeedGAN reference normalises per pixel over the training period with weighted
statistics: for the HR sparse target the weight is the 0/1 flag (mean Σx/Σflag, population std
over the flagged samples); for the LR input the weight is ``lr_count > 0``. The period is never
held in memory: :class:`StreamingStats` keeps, per pixel, the weight sum ``W``, the weighted mean
and the weighted sum of squared deviations ``M2`` in float64, and folds in one day at a time with
the pairwise (Chan et al.) update, which is also how two partial states are merged.

:func:`finalize` turns the two streams into a NaN-free :class:`NormStats`:

* pixels with no sample (``W == 0``, e.g. land) get the **global** statistics of that stream:
  the weighted mean of all samples, ``ΣWμ / ΣW``, and the pooled within-pixel std,
  ``sqrt(ΣM2 / ΣW)`` — the typical per-pixel scale, which is what the per-pixel normalised
  values are measured in (the std of all samples would also count the spatial spread of the
  means, e.g. the pole-to-equator SST contrast);
* every std is floored at ``std_floor`` (default 1e-3, field units) so that pixels with a
  single sample, or a constant value, do not divide by zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "NormStats",
    "StreamingStats",
    "denormalise_output",
    "finalize",
    "finalize_seasonal",
    "normalise_input",
    "normalise_target",
]


class StreamingStats:
    """Per-pixel weighted mean/std accumulated one day at a time (Chan/Welford merge, float64).

    Attributes (read-only views of the state):
        count: float64 (ny, nx), sum of weights seen (number of samples for 0/1 weights).
        mean: float32 (ny, nx), weighted mean, NaN where ``count == 0``.
        std: float32 (ny, nx), weighted population std, NaN where ``count == 0``.
    """

    def __init__(self, shape: tuple[int, int]):
        self.shape: tuple[int, int] = (int(shape[0]), int(shape[1]))
        self._w = np.zeros(self.shape, dtype=np.float64)
        self._mean = np.zeros(self.shape, dtype=np.float64)
        self._m2 = np.zeros(self.shape, dtype=np.float64)

    def _combine(self, w_b: np.ndarray, mean_b: np.ndarray, m2_b: np.ndarray) -> None:
        """Fold a second state (W_b, mean_b, M2_b) into this one, in place."""
        w_a = self._w
        w = w_a + w_b
        has = w > 0
        frac_b = np.zeros_like(w)
        np.divide(w_b, w, out=frac_b, where=has)
        delta = mean_b - self._mean
        self._mean += delta * frac_b
        self._m2 += m2_b + delta * delta * w_a * frac_b
        self._w = w

    def update(self, values: np.ndarray, weight: np.ndarray) -> None:
        """Fold in one day.

        Args:
            values: float (ny, nx); NaN values are ignored (weight 0), whatever the weight.
            weight: bool or 0–1 float (ny, nx), e.g. ``hr_flag`` or ``lr_count > 0``.
        """
        values = np.asarray(values, dtype=np.float64)
        weight = np.asarray(weight, dtype=np.float64)
        if values.shape != self.shape or weight.shape != self.shape:
            raise ValueError(
                f"values {values.shape} / weight {weight.shape} do not match {self.shape}"
            )
        if np.any(weight < 0):
            raise ValueError("weights must be non-negative")
        finite = np.isfinite(values)
        w_b = np.where(finite, weight, 0.0)
        mean_b = np.where(finite & (w_b > 0), values, self._mean)
        self._combine(w_b, mean_b, np.zeros(self.shape))

    def merge(self, other: StreamingStats) -> StreamingStats:
        """Parallel combine: a new state equal to one pass over both inputs' days."""
        if other.shape != self.shape:
            raise ValueError(f"cannot merge shapes {self.shape} and {other.shape}")
        out = StreamingStats.from_arrays(self.to_arrays())
        # Where ``other`` is empty its mean is a placeholder; replace it so delta is 0 there.
        mean_b = np.where(other._w > 0, other._mean, out._mean)
        out._combine(other._w, mean_b, other._m2)
        return out

    @property
    def count(self) -> np.ndarray:
        return self._w.copy()

    @property
    def mean(self) -> np.ndarray:
        return np.where(self._w > 0, self._mean, np.nan).astype(np.float32)

    @property
    def std(self) -> np.ndarray:
        var = np.full(self.shape, np.nan)
        np.divide(self._m2, self._w, out=var, where=self._w > 0)
        return np.sqrt(np.clip(var, 0.0, None)).astype(np.float32)

    def global_stats(self) -> tuple[float, float]:
        """``(ΣWμ/ΣW, sqrt(ΣM2/ΣW))``: weighted mean of all samples, pooled within-pixel std.

        NaN when no sample was seen.
        """
        total = float(self._w.sum())
        if total <= 0:
            return float("nan"), float("nan")
        return (
            float((self._w * self._mean).sum() / total),
            float(np.sqrt(self._m2.sum() / total)),
        )

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Full float64 state (``count``, ``mean``, ``m2``), for saving partial sums."""
        return {"count": self._w.copy(), "mean": self._mean.copy(), "m2": self._m2.copy()}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> StreamingStats:
        """Rebuild a state saved with :meth:`to_arrays`."""
        count = np.asarray(arrays["count"], dtype=np.float64)
        out = cls(count.shape)  # type: ignore[arg-type]
        out._w = count.copy()
        out._mean = np.nan_to_num(np.asarray(arrays["mean"], dtype=np.float64)).copy()
        out._m2 = np.asarray(arrays["m2"], dtype=np.float64).copy()
        if out._mean.shape != out.shape or out._m2.shape != out.shape:
            raise ValueError("count, mean and m2 must share one shape")
        return out


@dataclass(frozen=True)
class NormStats:
    """NaN-free per-pixel statistics, float32.

    Attributes:
        lr_mean, lr_std: (ny_lr, nx_lr), for the LR input.
        hr_mean, hr_std: (ny_hr, nx_hr), for the HR target and the generator's output.
    """

    lr_mean: np.ndarray
    lr_std: np.ndarray
    hr_mean: np.ndarray
    hr_std: np.ndarray


def _finalize_one(stats: StreamingStats, std_floor: float, min_count: float) -> tuple[np.ndarray, np.ndarray]:
    g_mean, g_std = stats.global_stats()
    if not np.isfinite(g_mean):
        raise ValueError("no samples were accumulated; cannot finalize normalisation stats")
    count = stats.count
    mean = np.where(count > 0, stats.mean, g_mean)
    # A std from a handful of samples is noise (one sample gives 0, which the floor would turn
    # into a huge normalised target): such pixels take the pooled within-pixel std instead.
    std = np.where(count >= min_count, stats.std, g_std)
    std = np.maximum(std, std_floor)
    return mean.astype(np.float32), std.astype(np.float32)


def finalize(
    lr: StreamingStats, hr: StreamingStats, std_floor: float = 1e-3, min_count: float = 5
) -> NormStats:
    """NaN-free statistics: empty pixels get the global mean; pixels with fewer than
    ``min_count`` samples get the pooled std; std floored at ``std_floor``."""
    if std_floor <= 0:
        raise ValueError(f"std_floor must be > 0, got {std_floor}")
    lr_mean, lr_std = _finalize_one(lr, std_floor, min_count)
    hr_mean, hr_std = _finalize_one(hr, std_floor, min_count)
    return NormStats(lr_mean=lr_mean, lr_std=lr_std, hr_mean=hr_mean, hr_std=hr_std)


def finalize_seasonal(
    lr: StreamingStats, hr: StreamingStats, lr_months: list[StreamingStats], hr_months: list[StreamingStats],
    std_floor: float = 1e-3, min_count: float = 5,
) -> NormStats:
    """Monthly statistics, arrays (12, ny, nx): each calendar month's per-pixel weighted mean and
    std; a pixel-month with fewer than ``min_count`` samples takes the annual statistics."""
    if len(lr_months) != 12 or len(hr_months) != 12:
        raise ValueError("seasonal statistics need 12 monthly accumulators per grid")
    annual = finalize(lr, hr, std_floor, min_count)
    out = {}
    for grid, months, a_mean, a_std in (
        ("lr", lr_months, annual.lr_mean, annual.lr_std), ("hr", hr_months, annual.hr_mean, annual.hr_std)
    ):
        means, stds = [], []
        for m in months:
            enough = m.count >= min_count
            means.append(np.where(enough, np.nan_to_num(m.mean), a_mean))
            stds.append(np.maximum(np.where(enough, np.nan_to_num(m.std), a_std), std_floor))
        out[f"{grid}_mean"] = np.stack(means).astype(np.float32)
        out[f"{grid}_std"] = np.stack(stds).astype(np.float32)
    return NormStats(**out)


def normalise_input(lr_mean: np.ndarray, stats: NormStats) -> np.ndarray:
    """LR input ``(x − μ)/σ``, 0 where the bin is empty (NaN). float32 (ny_lr, nx_lr)."""
    x = np.asarray(lr_mean, dtype=np.float32)
    z = (x - stats.lr_mean) / stats.lr_std
    return np.where(np.isfinite(x), z, 0.0).astype(np.float32)


def normalise_target(hr_mean: np.ndarray, hr_flag: np.ndarray, stats: NormStats) -> np.ndarray:
    """HR sparse target ``(x − μ·flag)/σ``, 0 where empty. float32 (ny_hr, nx_hr)."""
    flag = np.asarray(hr_flag) > 0
    x = np.asarray(hr_mean, dtype=np.float32)
    keep = flag & np.isfinite(x)
    z = (np.where(keep, x, 0.0) - stats.hr_mean * keep) / stats.hr_std
    return np.where(keep, z, 0.0).astype(np.float32)


def denormalise_output(y: np.ndarray, stats: NormStats) -> np.ndarray:
    """Generator output back to field units: ``y·σ_hr + μ_hr``. float32, shape of ``y``.

    ``y`` may carry leading batch/channel axes; the last two must be (ny_hr, nx_hr).
    """
    y = np.asarray(y, dtype=np.float32)
    return (y * stats.hr_std + stats.hr_mean).astype(np.float32)

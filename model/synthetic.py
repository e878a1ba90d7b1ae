"""A synthetic :class:`~model.data.SampleSource` for tests, demos and speed measurements.

Smooth random fields (a fixed "climatology" plus a few drifting Fourier modes, so consecutive
days are correlated) sampled by random point sensors placed on HR cells, binned exactly as the
pipeline bins real seedings: LR = mean of the sensors in each ``upsampling × upsampling`` block,
HR target = mean of the sensors in each HR cell with a 0/1 flag. numpy only, picklable, and every
sample is a pure function of (seed, index[, epoch]).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from model.data import Normalisation

__all__ = ["SyntheticSource", "estimate_norm", "synthetic_source"]


class SyntheticSource:
    """Synthetic sparse samples.

    Args:
        n_samples: number of days.
        hr_shape: (H, W) HR grid; both divisible by ``upsampling``.
        upsampling: HR cells per LR bin along each axis.
        sensors_per_bin: mean number of sensors per LR bin (the paper uses about 10).
        seed: fixes the field family and the sensor draws.
        fresh: draw new sensor positions every epoch (epoch 0 = the fixed draw).
        n_modes: Fourier modes of the anomaly.
        offset: index of the first day (so train/val sources can cover different days).
    """

    def __init__(
        self, n_samples: int, hr_shape: tuple[int, int] = (16, 32), upsampling: int = 4,
        sensors_per_bin: float = 4.0, seed: int = 0, fresh: bool = False, n_modes: int = 6,
        offset: int = 0,
    ) -> None:
        H, W = int(hr_shape[0]), int(hr_shape[1])
        if H % upsampling or W % upsampling:
            raise ValueError(f"hr_shape {hr_shape} is not divisible by upsampling {upsampling}")
        self.n_samples, self.hr_shape, self.upsampling = int(n_samples), (H, W), int(upsampling)
        self.lr_shape = (H // upsampling, W // upsampling)
        self.sensors_per_bin, self.seed, self.fresh = float(sensors_per_bin), int(seed), bool(fresh)
        self.offset = int(offset)
        rng = np.random.default_rng([self.seed, 7919])
        self._k = rng.integers(1, 4, size=(n_modes, 2)) * rng.choice([-1, 1], size=(n_modes, 2))
        self._amp = rng.uniform(0.5, 1.5, n_modes) / np.sqrt(n_modes) * 2.0
        self._phase = rng.uniform(0, 2 * np.pi, n_modes)
        self._omega = rng.uniform(0.05, 0.3, n_modes)

    def __len__(self) -> int:
        return self.n_samples

    def field(self, i: int) -> np.ndarray:
        """The full HR truth of day ``i``: (H, W) float32."""
        H, W = self.hr_shape
        y, x = np.meshgrid((np.arange(H) + 0.5) / H, (np.arange(W) + 0.5) / W, indexing="ij")
        day = self.offset + int(i)
        f = 20.0 - 10.0 * y + 1.5 * np.sin(2 * np.pi * x)
        for (ky, kx), a, p, w in zip(self._k, self._amp, self._phase, self._omega, strict=True):
            f = f + a * np.sin(2 * np.pi * (ky * y + kx * x) + p + w * day)
        return f.astype(np.float32)

    def sample(self, i: int, epoch: int) -> dict[str, Any]:
        H, W = self.hr_shape
        s = self.upsampling
        h, w = self.lr_shape
        truth = self.field(i)
        draw = epoch if self.fresh else 0
        rng = np.random.default_rng([self.seed, self.offset + int(i), 1, int(draw)])
        n = max(1, round(self.sensors_per_bin * h * w))
        pos = rng.integers(0, H * W, size=n)
        vals = truth.ravel()[pos].astype(np.float64)
        hr_count = np.bincount(pos, minlength=H * W).reshape(H, W)
        hr_sum = np.bincount(pos, weights=vals, minlength=H * W).reshape(H, W)
        py, px = np.divmod(pos, W)
        lr_index = (py // s) * w + px // s
        lr_count = np.bincount(lr_index, minlength=h * w).reshape(h, w)
        lr_sum = np.bincount(lr_index, weights=vals, minlength=h * w).reshape(h, w)
        with np.errstate(invalid="ignore", divide="ignore"):
            hr_mean = np.where(hr_count > 0, hr_sum / hr_count, np.nan).astype(np.float32)
            lr_mean = np.where(lr_count > 0, lr_sum / lr_count, np.nan).astype(np.float32)
        return {
            "lr_mean": lr_mean, "lr_count": lr_count.astype(np.int32),
            "hr_mean": hr_mean, "hr_flag": (hr_count > 0).astype(np.uint8),
            "day_of_year": (self.offset + int(i)) % 365 + 1,
        }


def synthetic_source(**kwargs: Any) -> SyntheticSource:
    """Factory by import path (``model.synthetic:synthetic_source``) for ``model.train_entry``."""
    if "hr_shape" in kwargs:
        kwargs["hr_shape"] = tuple(kwargs["hr_shape"])
    return SyntheticSource(**kwargs)


def estimate_norm(
    source: Any, n: int | None = None, std_floor: float = 1e-3, min_count: int = 5
) -> Normalisation:
    """Per-pixel statistics over the first ``n`` samples (epoch 0) of a source, as the pipeline
    computes them: LR over seeded bins, HR flag-weighted. Pixels seen fewer than ``min_count``
    times get the global mean and pooled std (a pixel seen once would otherwise get σ = the
    floor); stds floored at ``std_floor``."""
    n = len(source) if n is None else min(n, len(source))

    def stats(values: list[np.ndarray], weights: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        wt = np.stack(weights).astype(np.float64)
        v = np.where(wt > 0, np.stack(values).astype(np.float64), 0.0)
        if wt.sum() == 0:
            raise ValueError("no samples with data; cannot estimate the normalisation")
        sw = wt.sum(0)
        mean = (wt * v).sum(0) / np.maximum(sw, 1)
        var = (wt * (v - mean) ** 2).sum(0) / np.maximum(sw, 1)
        gmean = (wt * v).sum() / wt.sum()
        gstd = np.sqrt((wt * (v - mean) ** 2).sum() / wt.sum())  # pooled within-pixel std
        few = sw < min_count
        mean = np.where(few, gmean, mean)
        std = np.maximum(np.where(few, gstd, np.sqrt(var)), std_floor)
        return mean.astype(np.float32), std.astype(np.float32)

    samples = [source.sample(i, 0) for i in range(n)]
    lr_m, lr_s = stats([s["lr_mean"] for s in samples],
                       [(s["lr_count"] > 0) & np.isfinite(s["lr_mean"]) for s in samples])
    hr_m, hr_s = stats([s["hr_mean"] for s in samples],
                       [(s["hr_flag"] > 0) & np.isfinite(s["hr_mean"]) for s in samples])
    return Normalisation(lr_mean=lr_m, lr_std=lr_s, hr_mean=hr_m, hr_std=hr_s)

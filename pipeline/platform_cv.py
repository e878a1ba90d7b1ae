"""Leave-platform-out cross-validation: scoring reconstructions where no truth field exists.

Withholding single observations flatters every method: the neighbours of a withheld point along
the same ship track or drifter path are still in the input, a few kilometres and minutes away.
Here whole *platforms* are withheld. Each platform belongs to one of ``n_folds`` folds, drawn
from ``(seed, platform code)`` alone, so a platform sits in the same fold in every step of every
run: its observations an hour earlier or later (the context steps a sequence model reads) are
withheld together with the scored ones and cannot leak.

For fold ``k`` the input is every sensor not in fold ``k``; the scores are taken at the fold's
sensors. Sensors whose cell mixes platforms (:data:`~pipeline.observation_binning.MIXED_PLATFORMS`)
are neither input nor scored in any fold (their value is partly a withheld platform's). Sensors
with no platform name are folded one by one (a draw fixed by seed, step and cell): for them this
is ordinary point cross-validation, and reports count them apart (``n_unnamed``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from pipeline.observation_binning import MIXED_PLATFORMS, NO_PLATFORM

__all__ = ["ErrorSums", "FoldSplit", "fold_of_platform", "platform_folds", "split_fold"]

NOT_USED = -1
"""Fold of a sensor that is in no fold (a mixed-platform cell): never input, never scored."""


def _draw(n_folds: int, *key: object) -> int:
    digest = hashlib.sha256(":".join(str(k) for k in key).encode()).digest()
    return int.from_bytes(digest[:8], "big") % n_folds


def fold_of_platform(code: int, n_folds: int, seed: int) -> int:
    """The fold of a named platform: fixed by ``(seed, code)``, the same in every step."""
    if n_folds < 2:
        raise ValueError(f"n_folds must be >= 2, got {n_folds}")
    return _draw(n_folds, seed, "platform", int(code))


def platform_folds(platform: np.ndarray, index: np.ndarray, step_key: str, n_folds: int, seed: int) -> np.ndarray:
    """Fold of each sensor of one step (int64, :data:`NOT_USED` for mixed-platform cells).

    Args:
        platform: int (n,) platform codes (:func:`~pipeline.observation_binning.platform_code`).
        index: int (n,) the sensors' flat cell indices (for the unnamed sensors' draw).
        step_key: the step's label (for the unnamed sensors' draw).
    """
    platform = np.asarray(platform, dtype=np.int64)
    index = np.asarray(index, dtype=np.int64)
    folds = np.empty(platform.shape, dtype=np.int64)
    cache: dict[int, int] = {}
    for i, (code, cell) in enumerate(zip(platform.tolist(), index.tolist(), strict=True)):
        if code == MIXED_PLATFORMS:
            folds[i] = NOT_USED
        elif code == NO_PLATFORM:
            folds[i] = _draw(n_folds, seed, "cell", step_key, cell)
        else:
            if code not in cache:
                cache[code] = fold_of_platform(code, n_folds, seed)
            folds[i] = cache[code]
    return folds


@dataclass
class FoldSplit:
    """One fold of one step: the input sensors and the withheld ones (flat index, value, code)."""

    keep_index: np.ndarray
    keep_value: np.ndarray
    keep_platform: np.ndarray
    held_index: np.ndarray
    held_value: np.ndarray
    held_platform: np.ndarray


def split_fold(index: np.ndarray, value: np.ndarray, platform: np.ndarray, folds: np.ndarray, k: int) -> FoldSplit:
    """Sensors not in fold ``k`` (nor :data:`NOT_USED`) are input; fold ``k``'s are withheld."""
    held = folds == k
    keep = (folds != k) & (folds != NOT_USED)
    return FoldSplit(index[keep], value[keep], platform[keep], index[held], value[held], platform[held])


def keep_outside_fold(index: np.ndarray, value: np.ndarray, platform: np.ndarray, step_key: str, k: int,
                      n_folds: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A context step's sensors with fold ``k``'s platforms (and mixed cells) removed."""
    folds = platform_folds(platform, index, step_key, n_folds, seed)
    keep = (folds != k) & (folds != NOT_USED)
    return index[keep], value[keep]


@dataclass
class ErrorSums:
    """Running sums of prediction − observation at withheld sensors, pooled over folds and steps."""

    n: int = 0
    n_unnamed: int = 0
    sum_err: float = 0.0
    sum_abs: float = 0.0
    sum_sq: float = 0.0
    platforms: set[int] = field(default_factory=set)

    def add(self, pred: np.ndarray, obs: np.ndarray, platform: np.ndarray) -> None:
        err = np.asarray(pred, np.float64) - np.asarray(obs, np.float64)
        ok = np.isfinite(err)
        err = err[ok]
        self.n += int(err.size)
        self.n_unnamed += int((np.asarray(platform)[ok] == NO_PLATFORM).sum())
        self.sum_err += float(err.sum())
        self.sum_abs += float(np.abs(err).sum())
        self.sum_sq += float((err**2).sum())
        self.platforms.update(int(p) for p in np.unique(np.asarray(platform)[ok]) if p >= 0)

    def scores(self) -> dict[str, float | int]:
        """RMSE, MAE, bias (prediction − observation), points and platforms scored."""
        n = max(self.n, 1)
        nan = float("nan")
        return {
            "rmse": float(np.sqrt(self.sum_sq / n)) if self.n else nan,
            "mae": self.sum_abs / n if self.n else nan,
            "bias": self.sum_err / n if self.n else nan,
            "n": self.n,
            "n_unnamed": self.n_unnamed,
            "n_platforms": len(self.platforms),
        }

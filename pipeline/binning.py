"""Aggregation of scattered sensors and dense fields onto coarser grids.

Both functions work on flat row-major indices into a 2-D native grid of shape ``(ny, nx)`` and
coarsen by an integer ``factor`` that must divide both dimensions (callers trim the domain with
:func:`pipeline.seeding.trim_shape` first).
"""

from __future__ import annotations

import numpy as np

__all__ = ["bin_mean", "block_mean"]

_UINT16_MAX = int(np.iinfo(np.uint16).max)


def _coarse_shape(shape: tuple[int, int], factor: int) -> tuple[int, int]:
    ny, nx = (int(s) for s in shape)
    if factor < 1:
        raise ValueError(f"factor must be >= 1, got {factor}")
    if ny % factor or nx % factor:
        raise ValueError(
            f"shape {(ny, nx)} is not divisible by factor {factor}; trim the domain first"
        )
    return ny // factor, nx // factor


def bin_mean(
    index: np.ndarray, value: np.ndarray, shape: tuple[int, int], factor: int
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and count of scattered values in ``factor × factor`` bins.

    Args:
        index: int (n,), flat row-major indices into a native grid of ``shape``.
        value: float (n,), the value at each index. Accumulated in float64.
        shape: ``(ny, nx)`` of the native grid; both divisible by ``factor``.
        factor: native cells per bin side.

    Returns:
        ``(mean, count)``: mean float32 (ny/factor, nx/factor), NaN where the bin is empty;
        count uint16, same shape.
    """
    cy, cx = _coarse_shape(shape, factor)
    ny, nx = int(shape[0]), int(shape[1])
    index = np.asarray(index, dtype=np.int64).ravel()
    value = np.asarray(value, dtype=np.float64).ravel()
    if index.shape != value.shape:
        raise ValueError(f"index {index.shape} and value {value.shape} differ in length")
    if index.size and (index.min() < 0 or index.max() >= ny * nx):
        raise ValueError(f"index out of range for grid {(ny, nx)}")
    rows, cols = np.divmod(index, nx)
    bins = (rows // factor) * cx + cols // factor
    n_bins = cy * cx
    count = np.bincount(bins, minlength=n_bins)
    total = np.bincount(bins, weights=value, minlength=n_bins)
    if count.size and count.max() > _UINT16_MAX:
        raise ValueError(f"a bin holds {count.max()} values, more than uint16 can count")
    mean = np.full(n_bins, np.nan, dtype=np.float64)
    filled = count > 0
    mean[filled] = total[filled] / count[filled]
    return (
        mean.astype(np.float32).reshape(cy, cx),
        count.astype(np.uint16).reshape(cy, cx),
    )


def block_mean(field: np.ndarray, factor: int) -> np.ndarray:
    """NaN-aware mean over ``factor × factor`` blocks of a dense field (QA re-binning).

    Args:
        field: float (ny, nx), NaN (or inf) where missing; ny and nx divisible by ``factor``.
        factor: native cells per block side.

    Returns:
        float32 (ny/factor, nx/factor): mean of the finite cells of each block, NaN where the
        block has none. Accumulated in float64.
    """
    field = np.asarray(field)
    if field.ndim != 2:
        raise ValueError(f"field must be 2-D, got shape {field.shape}")
    cy, cx = _coarse_shape(field.shape, factor)
    finite = np.isfinite(field)
    data = np.where(finite, field, 0.0).astype(np.float64, copy=False)
    total = data.reshape(cy, factor, cx, factor).sum(axis=(1, 3))
    count = finite.reshape(cy, factor, cx, factor).sum(axis=(1, 3))
    out = np.full((cy, cx), np.nan, dtype=np.float64)
    np.divide(total, count, out=out, where=count > 0)
    return out.astype(np.float32)

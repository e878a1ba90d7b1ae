"""From the model's HR grid to the native grid, and land masking."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def hr_to_native(field: np.ndarray, factor: int, land: np.ndarray | None = None) -> np.ndarray:
    """Bilinear interpolation of a dense HR field to the native grid, then land → NaN.

    field: (H, W) on HR cells of ``factor`` × ``factor`` native cells; returns (H·factor, W·factor)
    float32. Cell centres are aligned (``grid_mode=True``); edges are held (``mode="nearest"``).
    Bilinear never overshoots the HR values, so a front cannot ring; ``factor == 1`` is a copy.
    """
    field = np.asarray(field, dtype=np.float32)
    if factor == 1:
        out = field.copy()
    else:
        out = ndimage.zoom(field, factor, order=1, mode="nearest", grid_mode=True).astype(np.float32)
    if land is not None:
        if land.shape != out.shape:
            raise ValueError(f"land mask {land.shape} does not match the native field {out.shape}")
        out[land] = np.nan
    return out

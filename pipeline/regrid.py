"""From the model's HR grid to the native grid, and land masking."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from pipeline.baselines import fill_nearest


def hr_to_native(field: np.ndarray, factor: int, land: np.ndarray | None = None) -> np.ndarray:
    """Bilinear interpolation of a dense HR field to the native grid, then land → NaN.

    field: (H, W) on HR cells of ``factor`` × ``factor`` native cells; returns (H·factor, W·factor)
    float32. Cell centres are aligned (``grid_mode=True``); edges are held (``mode="nearest"``).
    Bilinear never overshoots the HR values, so a front cannot ring; ``factor == 1`` is a copy.
    With ``land``, HR cells without any ocean cell carry no information (no sensor ever falls
    there), so they take the value of the nearest HR cell with ocean before interpolating: the
    coastal ocean cells are then interpolated from ocean values only.
    """
    field = np.asarray(field, dtype=np.float32)
    if land is not None and factor > 1:
        h, w = field.shape
        ocean_frac = (~land[: h * factor, : w * factor]).reshape(h, factor, w, factor).mean(axis=(1, 3))
        if (ocean_frac == 0).any() and (ocean_frac > 0).any():
            field = fill_nearest(np.where(ocean_frac > 0, field, np.nan))
    if factor == 1:
        out = field.copy()
    else:
        out = ndimage.zoom(field, factor, order=1, mode="nearest", grid_mode=True).astype(np.float32)
    if land is not None:
        if land.shape != out.shape:
            raise ValueError(f"land mask {land.shape} does not match the native field {out.shape}")
        out[land] = np.nan
    return out

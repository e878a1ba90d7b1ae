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


class NativeRegridder:
    """:func:`hr_to_native` for one fixed land mask, with the coastal fill precomputed.

    The nearest-ocean lookup of all-land HR cells depends only on the mask, so it is computed
    once here (one distance transform) and every day is then a gather plus a zoom.
    """

    def __init__(self, land: np.ndarray, factor: int) -> None:
        self.land = np.asarray(land, dtype=bool)
        self.factor = int(factor)
        h, w = self.land.shape[0] // factor, self.land.shape[1] // factor
        ocean = (~self.land[: h * factor, : w * factor]).reshape(h, factor, w, factor).any(axis=(1, 3))
        self._source: tuple[np.ndarray, np.ndarray] | None = None
        if factor > 1 and ocean.any() and not ocean.all():
            _, (ii, jj) = ndimage.distance_transform_edt(~ocean, return_indices=True)
            self._source = (ii, jj)

    def __call__(self, field: np.ndarray) -> np.ndarray:
        field = np.asarray(field, dtype=np.float32)
        if self._source is not None:
            field = field[self._source]
        return hr_to_native(field, self.factor, None) if self.factor > 1 else field.copy()

    def to_native(self, field: np.ndarray) -> np.ndarray:
        """The day on the native grid, land → NaN."""
        out = self(field)
        out[self.land] = np.nan
        return out

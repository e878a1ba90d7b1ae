"""Batched, optionally tiled inference of a trained generator.

Tiling (``tile`` and ``overlap`` in LR cells). Along each axis the LR domain is cut into cores of
``tile`` cells (the last one shorter); each core is run with ``overlap`` cells of real context on
both sides. All windows have one size, ``min(tile + 2·overlap, n)``: at the domain edges a window
slides inwards instead of shrinking, so the tiles of a batch share a shape and the model sees
zero padding only where the whole-domain pass sees it too (at the domain edge).

Blending. Each tile's HR output is weighted 1 inside its core and 0 outside, with a raised-cosine
ramp of half-width ``blend·overlap`` LR cells (default ``blend`` = ¼) centred on every internal
core boundary; the two ramps of neighbouring tiles sum to one, so the blend is continuous (no
seam). 2-D weights are products of 1-D ones and the result is divided by the weight sum. Keeping
the ramp in the middle of the overlap matters: every cell that receives weight still has at
least ``(1 − blend)·overlap`` cells of real context, whereas a ramp spread over the whole overlap
gives some weight to cells next to the window edge, where the tile's zero padding dominates
(reference generator, ×8, overlap 16: max difference 0.19 of the output's spread with a linear
ramp over the whole overlap, 1e-4 with this one).

Exactness. An output cell depends on the input cells within the generator's receptive-field
radius, :meth:`RaSeedGenerator.receptive_field_lr` = 4 + 2·n_res_blocks + 1 + Σ_k 2⁻ᵏ +
4/upsampling LR cells: 39.5 at ×4 and 39.25 at ×8 for the 16-block reference. Tiled and untiled
passes agree to float rounding once ``(1 − blend)·overlap ≥`` that radius (≈ 53 cells for the
reference). In practice the dependence decays much faster than the theoretical radius. On the
random-weights reference generator (×4, 48×48 LR, 16-cell tiles; tests/test_inference_engine.py)
the maximum difference relative to the output's standard deviation is about 1.2 at overlap 4,
0.07 at 8 and 0.004 at 12 (rms 4e-4); ×8 behaves the same (0.85, 0.06, 0.003). Use overlap ≥ 12
for a difference below 1 % of the output's spread; overlap 4 is not enough for this architecture.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from model.data import Normalisation, input_channels, make_input
from model.ensemble import self_ensemble

__all__ = ["BLEND", "InferenceEngine", "axis_plan", "axis_weights"]

BLEND = 0.25


def axis_plan(n: int, tile: int, overlap: int) -> list[tuple[int, int, int]]:
    """Tiles along one axis of ``n`` LR cells: ``(core_start, core_end, window_start)`` with a
    common window length ``min(tile + 2·overlap, n)``."""
    if tile >= n:
        return [(0, n, 0)]
    length = min(tile + 2 * overlap, n)
    plan = []
    for a in range(0, n, tile):
        b = min(a + tile, n)
        ws = min(max(a - overlap, 0), n - length)
        plan.append((a, b, ws))
    return plan


def axis_weights(n: int, core: tuple[int, int], window_start: int, length: int, half_width: float,
                 scale: int) -> np.ndarray:
    """Blend weights over the HR cells of one window: (length·scale,) float64.

    1 inside the core, 0 outside it, with a cosine ramp of ``half_width`` LR cells on each side
    of every internal core boundary (none at the domain edges; a hard cut for 0).
    """
    a, b = core
    t = window_start + (np.arange(length * scale) + 0.5) / scale  # HR cell centres, LR units
    if half_width > 0:
        left = np.ones_like(t) if a == 0 else np.clip((t - a + half_width) / (2 * half_width), 0, 1)
        right = np.ones_like(t) if b == n else np.clip((b + half_width - t) / (2 * half_width), 0, 1)
        ramp = np.minimum(left, right)
        return 0.5 - 0.5 * np.cos(np.pi * ramp)
    left = np.ones_like(t) if a == 0 else (t >= a).astype(float)
    right = np.ones_like(t) if b == n else (t < b).astype(float)
    return np.minimum(left, right)


class InferenceEngine:
    """Runs a generator over days of LR inputs and returns physical-unit HR fields.

    Args:
        generator: the trained generator (moved to ``device``, put in eval mode).
        norm: the normalisation of its training (LR inputs, HR denormalisation).
        device: "cpu", "cuda" or "cuda:N". On CUDA forwards run under bf16 autocast with
            channels-last tensors.
        batch_size: model inputs per forward (days untiled, tiles when tiled).
        tile: tile size in LR cells; None runs the whole domain in one pass.
        overlap: LR cells of context on each side of a tile (and half-width of the blend band).
        time_features: the generator takes day-of-year sin/cos channels (``predict`` then needs
            ``day_of_year``).
        blend: half-width of the blend ramp as a fraction of ``overlap`` (0 = hard cut).
        self_ensemble: average every forward over the 8 flips and transposes
            (:mod:`model.ensemble`; 8× the compute; off by default since flips break geography).

    Any zoo generator works: it needs ``in_channels``, ``out_channels`` and ``upsampling``.
    """

    def __init__(
        self,
        generator: nn.Module,
        norm: Normalisation,
        device: str = "cpu",
        batch_size: int = 8,
        tile: int | None = None,
        overlap: int = 4,
        time_features: bool = False,
        blend: float = BLEND,
        self_ensemble: bool = False,
    ) -> None:
        if not 0.0 <= blend <= 1.0:
            raise ValueError(f"blend must be in [0, 1], got {blend}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if tile is not None and tile < 1:
            raise ValueError(f"tile must be >= 1 LR cells, got {tile}")
        if overlap < 0:
            raise ValueError(f"overlap must be >= 0, got {overlap}")
        expected = input_channels(time_features)
        if generator.in_channels != expected:
            raise ValueError(f"the generator takes {generator.in_channels} input channels; "
                             f"time_features={time_features} gives {expected}")
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.generator = generator.to(self.device).eval()
        if self.cuda:
            self.generator.to(memory_format=torch.channels_last)
        self.norm = norm
        self.batch_size = int(batch_size)
        self.tile = tile
        self.overlap = int(overlap)
        self.blend = float(blend)
        self.time_features = bool(time_features)
        self.self_ensemble = bool(self_ensemble)
        self.upsampling = int(generator.upsampling)
        h, w = norm.lr_shape
        if norm.hr_shape != (h * self.upsampling, w * self.upsampling):
            raise ValueError(f"normalisation grids LR {norm.lr_shape} and HR {norm.hr_shape} do "
                             f"not differ by the generator's ×{self.upsampling}")

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.cuda:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _run(self, x: Tensor) -> Tensor:
        """Bare batched forward: x (N, C, h, w) on device → (N, C_out, h·s, w·s) float32."""
        outs = []
        for i in range(0, x.shape[0], self.batch_size):
            xb = x[i : i + self.batch_size]
            if self.cuda:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with self._autocast():
                if self.self_ensemble:
                    outs.append(self_ensemble(self.generator, xb))
                else:
                    outs.append(self.generator(xb).float())
        return torch.cat(outs) if len(outs) > 1 else outs[0]

    def forward_normalised(self, x: Tensor) -> Tensor:
        """The model on prepared inputs, tiled or not, without any numpy work.

        x: (B, C_in, h, w) normalised inputs (see :func:`model.data.make_input`) →
        (B, C_out, h·s, w·s) float32 in normalised units, on the engine's device.
        """
        with torch.inference_mode():
            x = x.to(self.device, dtype=torch.float32)
            if x.ndim != 4:
                raise ValueError(f"expected (B, C, h, w), got {tuple(x.shape)}")
            h, w = x.shape[-2:]
            if self.tile is None or (self.tile >= h and self.tile >= w):
                return self._run(x)
            return self._tiled(x)

    def _tiled(self, x: Tensor) -> Tensor:
        B, _, h, w = x.shape
        s = self.upsampling
        ys = axis_plan(h, self.tile, self.overlap)  # type: ignore[arg-type]
        xs = axis_plan(w, self.tile, self.overlap)  # type: ignore[arg-type]
        ly, lx = min(self.tile + 2 * self.overlap, h), min(self.tile + 2 * self.overlap, w)  # type: ignore[operator]
        hw = self.blend * self.overlap
        wy = [axis_weights(h, (a, b), ws, ly, hw, s) for a, b, ws in ys]
        wx = [axis_weights(w, (a, b), ws, lx, hw, s) for a, b, ws in xs]
        windows = [(iy, ix) for iy in range(len(ys)) for ix in range(len(xs))]
        tiles = torch.stack([
            x[:, :, ys[iy][2] : ys[iy][2] + ly, xs[ix][2] : xs[ix][2] + lx] for iy, ix in windows
        ], dim=1).flatten(0, 1)  # (B·n_tiles, C, ly, lx), day-major
        out_c = self.generator.out_channels
        acc = torch.zeros((B, out_c, h * s, w * s), dtype=torch.float32, device=self.device)
        wsum = torch.zeros((h * s, w * s), dtype=torch.float32, device=self.device)
        weights = [torch.from_numpy(np.outer(wy[iy], wx[ix])).float().to(self.device)
                   for iy, ix in windows]
        for iy, ix in windows:
            y0, x0 = ys[iy][2] * s, xs[ix][2] * s
            wsum[y0 : y0 + ly * s, x0 : x0 + lx * s] += weights[iy * len(xs) + ix]
        n_tiles = len(windows)
        for start in range(0, tiles.shape[0], self.batch_size):
            pred = self._run(tiles[start : start + self.batch_size])
            for j in range(pred.shape[0]):
                day, t = divmod(start + j, n_tiles)
                iy, ix = windows[t]
                y0, x0 = ys[iy][2] * s, xs[ix][2] * s
                acc[day, :, y0 : y0 + ly * s, x0 : x0 + lx * s] += pred[j] * weights[t]
        return acc / wsum

    def prepare(self, lr_mean: np.ndarray, lr_count: np.ndarray,
                day_of_year: np.ndarray | None = None) -> Tensor:
        """(T, h, w) LR days → (T, C_in, h, w) float32 model inputs (CPU), via ``make_input``."""
        lr_mean = np.asarray(lr_mean)
        lr_count = np.asarray(lr_count)
        if lr_mean.ndim == 2:
            lr_mean, lr_count = lr_mean[None], lr_count[None]
        if lr_mean.shape != lr_count.shape:
            raise ValueError(f"lr_mean {lr_mean.shape} and lr_count {lr_count.shape} differ")
        doy = self._days(day_of_year, lr_mean.shape[0])
        return torch.from_numpy(np.stack([
            make_input(m, c, self.norm, None if d is None else int(d), time_features=self.time_features)
            for m, c, d in zip(lr_mean, lr_count, doy, strict=True)
        ]))

    def _days(self, day_of_year: np.ndarray | None, n: int) -> list[int | None]:
        if self.time_features or self.norm.seasonal:
            if day_of_year is None:
                raise ValueError("this model uses time features or seasonal statistics: pass day_of_year")
            return [int(d) for d in np.broadcast_to(np.asarray(day_of_year), (n,))]
        return [None] * n

    def predict(self, lr_mean: np.ndarray, lr_count: np.ndarray,
                day_of_year: np.ndarray | None = None) -> np.ndarray:
        """LR days → HR fields in physical units.

        lr_mean: (T, h, w) NaN where empty; lr_count: (T, h, w); day_of_year: (T,) (needed with
        time features or seasonal statistics) → (T, H, W) float32, ``y·σ_hr + μ_hr`` with the
        day's statistics.
        Days go through the model ``batch_size`` at a time.
        """
        x = self.prepare(lr_mean, lr_count, day_of_year)
        days = self._days(day_of_year, x.shape[0])
        out = np.empty((x.shape[0], *self.norm.hr_shape), dtype=np.float32)
        chunk = self.batch_size
        for i in range(0, x.shape[0], chunk):
            y = self.forward_normalised(x[i : i + chunk])[:, 0].cpu().numpy()
            for j in range(y.shape[0]):
                n = self.norm.at(days[i + j])
                out[i + j] = y[j] * n.hr_std + n.hr_mean
        return out

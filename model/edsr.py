"""EDSR and MDSR (Lim et al. 2017, "Enhanced Deep Residual Networks for Single Image
Super-Resolution", CVPR workshops).

EDSR layout::

    x ─ conv3×3(F) ─┬─ B × ResBlock ─ conv3×3 ─(+)─ Upsampler(s) ─ conv3×3(out)
                    └──────────── skip ────────┘

    ResBlock:   y = x + res_scale · conv3×3(ReLU(conv3×3(x)))          (no batch normalisation)
    Upsampler:  s = 2**k: k × [conv3×3(F → 4F) → PixelShuffle(2)]
                s = 3:        conv3×3(F → 9F) → PixelShuffle(3)

MDSR layout (one network for several scales)::

                      ┌ pre[2]: 2 × ResBlock5×5 ┐                                       ┌ up[2] ┐
    x ─ conv3×3(F) ───┼ pre[4]: 2 × ResBlock5×5 ┼─┬─ B × ResBlock ─ conv3×3 ─(+)─ ─ ─ ─ ┼ up[4] ┼─ conv3×3(out)
                      └ pre[8]: 2 × ResBlock5×5 ┘ └─────────── skip ──────────┘         └ up[8] ┘

    head, body and tail are shared; the pre-processing blocks and the upsampler are chosen by the
    scale of the call.

Differences from the paper / EDSR-PyTorch:

* no MeanShift layers: seedfield's inputs are already normalised (per-pixel anomalies, see
  :mod:`model.data`), so there is no RGB mean to subtract. MeanShift has no trainable
  parameters, so the parameter counts equal the published ones;
* the input and output channel counts are free (the paper: 3 → 3).

The paper's two EDSR configurations are :data:`EDSR_BASELINE` (16 blocks × 64 features, no
residual scaling: 1.37 M parameters at ×2) and :data:`EDSR_FULL` (32 × 256, residual scaling
0.1: 43 M at ×4); the paper's MDSR is :data:`MDSR_PAPER` (80 blocks × 64 features, scales 2, 3,
4: 8.0 M). Every convolution uses 'same' zero padding, so any LR size is accepted.
"""

from __future__ import annotations

import math
from typing import Any

from torch import Tensor, nn

from model.layers import ZooModule, check_choice, same_conv
from model.registry import register_model

__all__ = [
    "EDSR",
    "EDSR_BASELINE",
    "EDSR_FULL",
    "MDSR",
    "MDSR_PAPER",
    "EDSRResBlock",
    "EDSRUpsampler",
]

EDSR_UPSAMPLING = (2, 3, 4, 8)

#: The paper's baseline EDSR: 16 residual blocks of 64 features, no residual scaling.
EDSR_BASELINE: dict[str, Any] = {"n_features": 64, "n_res_blocks": 16, "res_scale": 1.0}
#: The paper's full EDSR: 32 residual blocks of 256 features, residual scaling 0.1.
EDSR_FULL: dict[str, Any] = {"n_features": 256, "n_res_blocks": 32, "res_scale": 0.1}
#: The paper's MDSR: 80 residual blocks of 64 features for scales 2, 3 and 4.
MDSR_PAPER: dict[str, Any] = {"scales": (2, 3, 4), "upsampling": 4, "n_features": 64, "n_res_blocks": 80}


class EDSRResBlock(nn.Module):
    """conv k×k → ReLU → conv k×k, scaled by ``res_scale``, plus the identity (no BN).

    Args:
        n_features: channels in and out.
        kernel_size: 3 in the body, 5 in MDSR's scale-specific pre-processing.
        res_scale: factor on the residual branch (0.1 in the full EDSR).
    """

    def __init__(self, n_features: int, kernel_size: int = 3, res_scale: float = 1.0) -> None:
        super().__init__()
        self.body = nn.Sequential(
            same_conv(n_features, n_features, kernel_size), nn.ReLU(inplace=True),
            same_conv(n_features, n_features, kernel_size),
        )
        self.res_scale = float(res_scale)

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, F, h, w) → (B, F, h, w)"""
        res = self.body(x)
        if self.res_scale != 1.0:
            res = res * self.res_scale
        return x + res


class EDSRUpsampler(nn.Sequential):
    """Sub-pixel upsampler without activation: k × [conv3×3(F → 4F), PixelShuffle(2)] for
    ``scale = 2**k``, or conv3×3(F → 9F), PixelShuffle(3) for ``scale = 3``.

    Shapes: (B, F, h, w) → (B, F, h·scale, w·scale).
    """

    def __init__(self, scale: int, n_features: int) -> None:
        layers: list[nn.Module] = []
        if scale == 3:
            layers += [same_conv(n_features, 9 * n_features), nn.PixelShuffle(3)]
        elif scale >= 2 and scale & (scale - 1) == 0:
            for _ in range(int(math.log2(scale))):
                layers += [same_conv(n_features, 4 * n_features), nn.PixelShuffle(2)]
        else:
            raise ValueError(f"scale must be 3 or a power of two >= 2, got scale={scale!r}")
        super().__init__(*layers)
        self.scale = scale

    def receptive_field_lr(self) -> float:
        """Radius in LR cells: each conv3×3 runs at resolution 2**k (or at LR for ×3)."""
        if self.scale == 3:
            return 1.0
        return sum(1.0 / 2**k for k in range(int(math.log2(self.scale))))


@register_model
class EDSR(ZooModule):
    """Enhanced deep super-resolution network (single scale).

    Args:
        in_channels: input channels (seedfield: LR bin mean and mask, see :func:`model.data.make_input`).
        out_channels: output channels (1 for one field).
        upsampling: scale factor, one of 2, 3, 4, 8.
        n_features: channels F of the residual body (64 baseline, 256 full).
        n_res_blocks: residual blocks B (16 baseline, 32 full).
        res_scale: factor on each residual branch (1 baseline, 0.1 full); > 0.

    Use :meth:`baseline` / :meth:`full` (or :data:`EDSR_BASELINE` / :data:`EDSR_FULL`) for the
    paper's configurations.
    """

    def __init__(
        self,
        in_channels: int = 2,
        out_channels: int = 1,
        upsampling: int = 4,
        n_features: int = 64,
        n_res_blocks: int = 16,
        res_scale: float = 1.0,
    ) -> None:
        super().__init__()
        args = self._record_generator_args(
            in_channels, out_channels, upsampling, EDSR_UPSAMPLING,
            n_features=(n_features, 1), n_res_blocks=(n_res_blocks, 0),
        )
        if isinstance(res_scale, bool) or not isinstance(res_scale, (int, float)) or not res_scale > 0:
            raise ValueError(f"res_scale must be a number > 0, got res_scale={res_scale!r}")
        self._args["res_scale"] = float(res_scale)

        f = args["n_features"]
        self.head = same_conv(self.in_channels, f)
        self.body = nn.Sequential(
            *[EDSRResBlock(f, 3, float(res_scale)) for _ in range(args["n_res_blocks"])],
            same_conv(f, f),
        )
        self.upsample = EDSRUpsampler(self.upsampling, f)
        self.tail = same_conv(f, self.out_channels)

    @classmethod
    def baseline(cls, **kwargs: Any) -> EDSR:
        """The paper's baseline EDSR (16 × 64, no residual scaling); ``kwargs`` set the rest."""
        return cls(**{**EDSR_BASELINE, **kwargs})

    @classmethod
    def full(cls, **kwargs: Any) -> EDSR:
        """The paper's full EDSR (32 × 256, residual scaling 0.1); ``kwargs`` set the rest."""
        return cls(**{**EDSR_FULL, **kwargs})

    def receptive_field_lr(self) -> float:
        """Radius of the receptive field in LR cells.

        head 3×3: 1, each residual block: 2, body conv: 1, upsampler convolutions: 1/2**k at
        stage k (1 for ×3), tail 3×3 at HR: 1/upsampling. 35.75 LR cells for the ×4 baseline.
        """
        return 1 + 2 * self._args["n_res_blocks"] + 1 + self.upsample.receptive_field_lr() + 1 / self.upsampling

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, in_channels, h, w) → (B, out_channels, h·upsampling, w·upsampling)"""
        self._check_input(x)
        h = self.head(x)
        y = self.body(h) + h
        return self.tail(self.upsample(y))


@register_model
class MDSR(ZooModule):
    """Multi-scale deep super-resolution network: one network, several scale factors.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        scales: the scale factors served (distinct, each one of 2, 3, 4, 8); (2, 3, 4) in the paper.
        upsampling: the default scale of ``forward(x)``; must be one of ``scales``.
        n_features: channels F (64 in the paper).
        n_res_blocks: shared residual blocks B (80 in the paper).

    ``constructor_args()["scales"]`` is a list (JSON-friendly); the attribute ``scales`` is a tuple.
    The paper's MDSR has no residual scaling, so neither has this one.
    """

    def __init__(
        self,
        in_channels: int = 2,
        out_channels: int = 1,
        scales: tuple[int, ...] | list[int] = (2, 4, 8),
        upsampling: int = 8,
        n_features: int = 64,
        n_res_blocks: int = 16,
    ) -> None:
        super().__init__()
        if isinstance(scales, (str, bytes)) or not hasattr(scales, "__iter__"):
            raise ValueError(f"scales must be a sequence of distinct values from {EDSR_UPSAMPLING}, "
                             f"got scales={scales!r}")
        scale_list = [check_choice("scales", s, EDSR_UPSAMPLING) for s in scales]
        if not scale_list or len(set(scale_list)) != len(scale_list):
            raise ValueError(f"scales must be a non-empty sequence of distinct values from "
                             f"{EDSR_UPSAMPLING}, got scales={scales!r}")
        self.scales: tuple[int, ...] = tuple(scale_list)
        args = self._record_generator_args(
            in_channels, out_channels, upsampling, self.scales,
            n_features=(n_features, 1), n_res_blocks=(n_res_blocks, 0),
        )
        # recorded in signature order, scales before upsampling (as checkpoints have them)
        self._args = {"in_channels": self.in_channels, "out_channels": self.out_channels,
                      "scales": list(scale_list)} | args

        f = args["n_features"]
        self.head = same_conv(self.in_channels, f)
        self.pre_process = nn.ModuleDict({
            str(s): nn.Sequential(EDSRResBlock(f, 5), EDSRResBlock(f, 5)) for s in self.scales
        })
        self.body = nn.Sequential(*[EDSRResBlock(f, 3) for _ in range(args["n_res_blocks"])], same_conv(f, f))
        self.upsample = nn.ModuleDict({str(s): EDSRUpsampler(s, f) for s in self.scales})
        self.tail = same_conv(f, self.out_channels)

    def constructor_args(self) -> dict[str, Any]:
        """The keyword arguments that rebuild this architecture (stored in checkpoints)."""
        args = super().constructor_args()
        args["scales"] = list(args["scales"])
        return args

    def _scale(self, scale: int | None) -> int:
        if scale is None:
            return self.upsampling
        if isinstance(scale, bool) or scale not in self.scales:
            raise ValueError(f"scale must be one of this MDSR's scales {self.scales}, got scale={scale!r}")
        return int(scale)

    def receptive_field_lr(self, scale: int | None = None) -> float:
        """Radius of the receptive field in LR cells at ``scale`` (default: ``upsampling``).

        head 3×3: 1, two 5×5 residual blocks: 8, each body block: 2, body conv: 1, upsampler:
        1/2**k at stage k (1 for ×3), tail 3×3 at HR: 1/scale.
        """
        s = self._scale(scale)
        up = self.upsample[str(s)].receptive_field_lr()  # type: ignore[operator]
        return 1 + 8 + 2 * self._args["n_res_blocks"] + 1 + up + 1 / s

    def forward(self, x: Tensor, scale: int | None = None) -> Tensor:
        """x: (B, in_channels, h, w) → (B, out_channels, h·scale, w·scale); ``scale`` defaults to
        ``upsampling`` and must be one of ``scales``."""
        s = self._scale(scale)
        self._check_input(x)
        h = self.pre_process[str(s)](self.head(x))
        y = self.body(h) + h
        return self.tail(self.upsample[str(s)](y))

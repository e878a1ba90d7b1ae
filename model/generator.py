"""RaSeedGAN generator: SRGAN's residual generator without batch normalisation.

Layout (DESIGN §3, after eaplab/RaSeedGAN)::

    x ─ conv9×9(n_features) ─ PReLU ─┬─ n_res_blocks × ResBlock ─ conv3×3 ─(+)─ Upsample × log2(s) ─ conv9×9(out)
                                     └──────────────── skip ───────────────┘

    ResBlock:  y = x + conv3×3(PReLU(conv3×3(x)))
    Upsample:  conv3×3(upsample_features) → PixelShuffle(2) → PReLU

Every convolution uses 'same' padding (zeros), so any LR size is accepted and the output is exactly
``upsampling`` times larger. PReLU has one slope per channel, as Keras ``PReLU(shared_axes=[1, 2])``
in the reference. Weights use PyTorch's default initialisation (the reference used Keras'
Glorot-uniform; the scale is similar).
"""

from __future__ import annotations

import math
from typing import Any

from torch import Tensor, nn

from model.layers import same_conv
from model.registry import register_model

__all__ = ["RaSeedGenerator", "ResidualBlock", "count_parameters"]


class ResidualBlock(nn.Module):
    """conv3×3 → PReLU → conv3×3, plus the identity.

    Args:
        n_features: channels in and out.
    """

    def __init__(self, n_features: int) -> None:
        super().__init__()
        self.conv1 = same_conv(n_features, n_features, 3)
        self.act = nn.PReLU(n_features)
        self.conv2 = same_conv(n_features, n_features, 3)

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, F, h, w) → (B, F, h, w)"""
        return x + self.conv2(self.act(self.conv1(x)))


@register_model
class RaSeedGenerator(nn.Module):
    """Super-resolution generator of RaSeedGAN (SRGAN generator without batch-norm).

    Args:
        in_channels: input channels. seedfield's default input is 2 channels: the normalised LR
            bin mean (0 in empty bins) and the 0/1 mask of seeded bins; day-of-year sin/cos can be
            appended (4 channels). See :func:`model.data.make_input`.
        out_channels: output channels (1 for one field).
        upsampling: scale factor; a power of two ≥ 2 (one PixelShuffle(2) stage per factor 2).
        n_features: channels of the head and of the residual body (64 in the reference).
        n_res_blocks: residual blocks in the body (16 in the reference).
        upsample_features: channels of each upsampling convolution before PixelShuffle(2); must be
            divisible by 4 (256 in the reference, giving 64 channels after the shuffle).

    With ``in_channels=out_channels=1`` and the reference sizes the model has 1,525,697
    parameters at ×4 and 1,673,473 at ×8.
    """

    def __init__(
        self,
        in_channels: int = 2,
        out_channels: int = 1,
        upsampling: int = 8,
        n_features: int = 64,
        n_res_blocks: int = 16,
        upsample_features: int = 256,
    ) -> None:
        super().__init__()
        if (
            not isinstance(upsampling, int)
            or isinstance(upsampling, bool)
            or upsampling < 2
            or upsampling & (upsampling - 1)
        ):
            raise ValueError(f"upsampling must be a power of two >= 2, got upsampling={upsampling!r}")
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels),
                            ("n_features", n_features), ("upsample_features", upsample_features)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if n_res_blocks < 0:
            raise ValueError(f"n_res_blocks must be >= 0, got {n_res_blocks}")
        if upsample_features % 4:
            raise ValueError(f"upsample_features must be divisible by 4, got {upsample_features}")
        self._args: dict[str, Any] = {
            "in_channels": int(in_channels), "out_channels": int(out_channels),
            "upsampling": int(upsampling), "n_features": int(n_features),
            "n_res_blocks": int(n_res_blocks), "upsample_features": int(upsample_features),
        }
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.upsampling = int(upsampling)
        self.n_stages = int(math.log2(upsampling))

        self.head = nn.Sequential(same_conv(in_channels, n_features, 9), nn.PReLU(n_features))
        self.body = nn.Sequential(*[ResidualBlock(n_features) for _ in range(n_res_blocks)])
        self.body_tail = same_conv(n_features, n_features, 3)
        shuffled = upsample_features // 4
        stages: list[nn.Module] = []
        c = n_features
        for _ in range(self.n_stages):
            stages += [same_conv(c, upsample_features, 3), nn.PixelShuffle(2), nn.PReLU(shuffled)]
            c = shuffled
        self.upsample = nn.Sequential(*stages)
        self.tail = same_conv(c, out_channels, 9)

    def constructor_args(self) -> dict[str, Any]:
        """The keyword arguments that rebuild this architecture (stored in checkpoints)."""
        return dict(self._args)

    def receptive_field_lr(self) -> float:
        """Radius of the receptive field in LR cells (how far an input cell can reach an output).

        head 9×9: 4, each residual block two 3×3: 2, body tail: 1, the upsampling convolution of
        stage k runs at resolution 2**k: 1/2**k, the 9×9 tail at HR: 4/upsampling. For the
        reference (16 blocks) that is 39.25 LR cells at ×8 and 39.5 at ×4.
        """
        n_blocks = self._args["n_res_blocks"]
        stages = sum(1.0 / 2**k for k in range(self.n_stages))
        return 4 + 2 * n_blocks + 1 + stages + 4 / self.upsampling

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, in_channels, h, w) → (B, out_channels, h·upsampling, w·upsampling)"""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"expected input (B, {self.in_channels}, h, w), got {tuple(x.shape)}"
            )
        h = self.head(x)
        y = self.body_tail(self.body(h)) + h
        return self.tail(self.upsample(y))


def count_parameters(module: nn.Module) -> int:
    """Number of parameters of ``module``."""
    return sum(p.numel() for p in module.parameters())

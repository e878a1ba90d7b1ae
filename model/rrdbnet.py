"""ESRGAN's generator (RRDBNet) and its VGG-style relativistic discriminator (Wang et al. 2018,
"ESRGAN: Enhanced Super-Resolution Generative Adversarial Networks", ECCV workshops).

Generator layout::

    x ─ conv3×3(F) ─┬─ n_blocks × RRDB ─ conv3×3 ─(+)─ Upsample × log2(s) ─ conv3×3 ─ LReLU ─ conv3×3(out)
                    └──────────── skip ───────────┘

    Upsample:  nearest ×2 → conv3×3(F) → LReLU
    RRDB:      y = x + 0.2 · RDB(RDB(RDB(x)))
    RDB:       x0 = x;  x_i = LReLU(conv3×3([x0, …, x_{i-1}] → G)) for i = 1…4
               y  = x + 0.2 · conv3×3([x0, …, x4] → F)                 (dense block, G = growth)

No batch normalisation anywhere; LeakyReLU slope 0.2. As in the paper ("smaller
initialisation"), the dense-block convolutions start from Kaiming-normal weights scaled by 0.1
with zero biases; the other convolutions keep PyTorch's default initialisation.

Discriminator layout (ESRGAN's VGG-style D, globally pooled)::

    conv3×3(F) ─ LReLU ─ conv4×4/2(F) ─ BN ─ LReLU
      ─ for f in (2F, 4F, 8F, 8F): conv3×3(f) ─ BN ─ LReLU ─ conv4×4/2(f) ─ BN ─ LReLU
      ─ global average pool ─ linear(8F → 100) ─ LReLU ─ linear(100 → 1)  →  C(x), logits

Only the first convolution has a bias (the others are followed by BN). The global average pool
replaces the paper's flatten of a 128×128 crop (4×4×8F features), so any HR size of at least
32×32 passes. The raw logits C(x) are returned; the relativistic-average losses
``D_Ra(a, b) = σ(C(a) − E[C(b)])`` are computed by the training code.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from model.layers import ZooModule, same_conv
from model.registry import register_model

__all__ = ["RRDB", "RRDBNet", "RelativisticDiscriminator", "ResidualDenseBlock"]

RRDBNET_UPSAMPLING = (2, 4, 8)
_RESIDUAL_SCALE = 0.2
_INIT_SCALE = 0.1


def _halving_conv(c_in: int, c_out: int) -> nn.Conv2d:
    # 4×4, stride 2, padding 1: exact halving of even sizes (the discriminator's downsampling)
    return nn.Conv2d(c_in, c_out, kernel_size=4, stride=2, padding=1, bias=False)


class ResidualDenseBlock(nn.Module):
    """Five densely connected conv3×3; the output is scaled by 0.2 and added to the input.

    Args:
        n_features: channels in and out (F).
        growth: channels added by each of the first four convolutions (G).
    """

    def __init__(self, n_features: int, growth: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            [same_conv(n_features + i * growth, growth) for i in range(4)]
            + [same_conv(n_features + 4 * growth, n_features)]
        )
        self.act = nn.LeakyReLU(0.2, inplace=True)
        for conv in self.convs:
            nn.init.kaiming_normal_(conv.weight)
            with torch.no_grad():
                conv.weight.mul_(_INIT_SCALE)
            nn.init.zeros_(conv.bias)

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, F, h, w) → (B, F, h, w)"""
        feats = [x]
        for conv in self.convs[:-1]:
            feats.append(self.act(conv(torch.cat(feats, dim=1))))
        return x + _RESIDUAL_SCALE * self.convs[-1](torch.cat(feats, dim=1))


class RRDB(nn.Module):
    """Residual-in-residual dense block: three dense blocks, scaled by 0.2, plus the identity."""

    def __init__(self, n_features: int, growth: int) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*[ResidualDenseBlock(n_features, growth) for _ in range(3)])

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, F, h, w) → (B, F, h, w)"""
        return x + _RESIDUAL_SCALE * self.blocks(x)


@register_model
class RRDBNet(ZooModule):
    """ESRGAN's generator.

    Args:
        in_channels: input channels (seedfield: LR bin mean and mask, see :func:`model.data.make_input`).
        out_channels: output channels (1 for one field).
        upsampling: scale factor, one of 2, 4, 8 (one nearest-×2 + conv stage per factor 2).
        n_features: channels F of the trunk (64 in the paper).
        n_blocks: RRDB blocks (23 in the paper).
        growth: growth channels G of the dense blocks (32 in the paper).

    With ``in_channels=out_channels=3`` and the paper's sizes the model has 16,697,987
    parameters at ×4, as the published ESRGAN weights.
    """

    def __init__(
        self,
        in_channels: int = 2,
        out_channels: int = 1,
        upsampling: int = 4,
        n_features: int = 64,
        n_blocks: int = 23,
        growth: int = 32,
    ) -> None:
        super().__init__()
        args = self._record_generator_args(
            in_channels, out_channels, upsampling, RRDBNET_UPSAMPLING,
            n_features=(n_features, 1), n_blocks=(n_blocks, 0), growth=(growth, 1),
        )
        self.n_stages = int(math.log2(self.upsampling))

        f = args["n_features"]
        self.conv_first = same_conv(self.in_channels, f)
        self.body = nn.Sequential(*[RRDB(f, args["growth"]) for _ in range(args["n_blocks"])])
        self.conv_body = same_conv(f, f)
        self.conv_up = nn.ModuleList([same_conv(f, f) for _ in range(self.n_stages)])
        self.conv_hr = same_conv(f, f)
        self.conv_last = same_conv(f, self.out_channels)
        self.act = nn.LeakyReLU(0.2, inplace=True)

    def receptive_field_lr(self) -> float:
        """Radius of the receptive field in LR cells.

        conv_first: 1, each RRDB three dense blocks whose longest path is five 3×3: 15, trunk
        conv: 1, the conv of upsampling stage k runs after the ×2 interpolation, at resolution
        2**(k+1): 1/2**(k+1), HR conv and last conv: 2/upsampling. 348.25 LR cells at ×4 for the
        paper's 23 blocks (far more than any seedfield domain).
        """
        stages = sum(1.0 / 2 ** (k + 1) for k in range(self.n_stages))
        return 1 + 15 * self._args["n_blocks"] + 1 + stages + 2 / self.upsampling

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, in_channels, h, w) → (B, out_channels, h·upsampling, w·upsampling)"""
        self._check_input(x)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        for conv in self.conv_up:
            feat = self.act(conv(F.interpolate(feat, scale_factor=2, mode="nearest")))
        return self.conv_last(self.act(self.conv_hr(feat)))


@register_model
class RelativisticDiscriminator(ZooModule):
    """ESRGAN's VGG-style discriminator C(x), globally pooled, returning raw logits.

    Args:
        in_channels: channels of the HR fields it judges.
        n_features: width F of the first convolutions; the stages use F, 2F, 4F, 8F, 8F (64 in
            the paper).
    """

    #: Smallest HR side: five stride-2 4×4 convolutions halve (floor) the size.
    MIN_SIZE = 32

    def __init__(self, in_channels: int = 1, n_features: int = 64) -> None:
        super().__init__()
        f = self._record_args(in_channels=(in_channels, 1), n_features=(n_features, 1))["n_features"]
        layers: list[nn.Module] = [
            same_conv(self.in_channels, f, 3, bias=True), nn.LeakyReLU(0.2, inplace=True),
            _halving_conv(f, f), nn.BatchNorm2d(f), nn.LeakyReLU(0.2, inplace=True),
        ]
        c = f
        for width in (2 * f, 4 * f, 8 * f, 8 * f):
            layers += [
                same_conv(c, width, 3, bias=False), nn.BatchNorm2d(width), nn.LeakyReLU(0.2, inplace=True),
                _halving_conv(width, width), nn.BatchNorm2d(width), nn.LeakyReLU(0.2, inplace=True),
            ]
            c = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(c, 100), nn.LeakyReLU(0.2, inplace=True), nn.Linear(100, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, in_channels, H, W) with H, W ≥ 32 → logits C(x), (B, 1)

        (In training mode batch normalisation needs B ≥ 2 when both H and W are below 64: the
        last feature map is then 1×1.)
        """
        self._check_input(x, "H, W")
        if min(x.shape[-2:]) < self.MIN_SIZE:
            raise ValueError(f"RelativisticDiscriminator needs H, W >= {self.MIN_SIZE}, got {tuple(x.shape[-2:])}")
        return self.head(self.pool(self.features(x)))

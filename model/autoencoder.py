"""A convolutional encoder–decoder (U-Net-like) at the LR resolution followed by a learnt upsampler.

A simple non-residual baseline for the zoo, in the spirit of U-Net (Ronneberger et al. 2015)
and of the encoder–decoder super-resolution networks used for sparse-sensor field
reconstruction. Layout for ``depth = 2`` (``f_i = n_features · 2**i``)::

    x ─ pad ─ Enc0(f0) ─────────────────────────────────── skip ─────────────────────── Dec0(f0) ─┐
                 └ down(f1) ─ Enc1(f1) ─────────────── skip ──────────── Dec1(f1) ─ up(f0) ┘      │
                                └ down(f2) ─ Bottleneck(f2) ─ up(f1) ┘                            │
       ┌──────────────────────────────────────────────────────────────────────────────────────────┘
       └─ log2(s) × [ConvTranspose4×4/2(f0) ─ ReLU] ─ conv3×3(out) ─ crop

    Enc_i, Bottleneck:  conv3×3 ─ ReLU ─ conv3×3 ─ ReLU
    down:               conv3×3 stride 2 (f_i → f_{i+1}) ─ ReLU
    up:                 ConvTranspose2×2/2 (f_{i+1} → f_i)
    Dec_i:              concat(up, skip_i) ─ conv3×3 ─ ReLU ─ conv3×3 ─ ReLU   (2 f_i → f_i)

Upsampling to HR uses transposed convolutions (kernel 4, stride 2, padding 1: exactly ×2 per
stage) rather than PixelShuffle, so this baseline differs from the SRGAN/EDSR family in that
respect as well (transposed convolutions can leave checkerboard patterns early in training).

Input sizes: the LR input is zero-padded at the bottom and right to a multiple of ``2**depth``
inside :meth:`AutoencoderUpscaler.forward` and the output is cropped back, so any (h, w) gives
exactly (h·s, w·s). Zero padding is chosen because a 0 in every channel is how
:func:`model.data.make_input` encodes an empty bin (value 0, mask 0): the padding looks like
"no sensor here"; replicate padding would invent seeded cells in the mask channel.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from model.layers import ZooModule, same_conv
from model.registry import register_model

__all__ = ["AutoencoderUpscaler"]

AUTOENCODER_UPSAMPLING = (2, 4, 8)


def _double_conv(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        same_conv(c_in, c_out), nn.ReLU(inplace=True),
        same_conv(c_out, c_out), nn.ReLU(inplace=True),
    )


@register_model
class AutoencoderUpscaler(ZooModule):
    """U-Net-like encoder–decoder at LR resolution, then transposed-convolution upsampling.

    Args:
        in_channels: input channels (seedfield: LR bin mean and mask, see :func:`model.data.make_input`).
        out_channels: output channels (1 for one field).
        upsampling: scale factor, one of 2, 4, 8.
        n_features: channels of the first encoder level; level i has ``n_features · 2**i``.
        depth: number of stride-2 downsamplings (1 to 6); inputs are padded to a multiple of
            ``2**depth``.
    """

    def __init__(
        self,
        in_channels: int = 2,
        out_channels: int = 1,
        upsampling: int = 4,
        n_features: int = 64,
        depth: int = 2,
    ) -> None:
        super().__init__()
        args = self._record_generator_args(
            in_channels, out_channels, upsampling, AUTOENCODER_UPSAMPLING,
            n_features=(n_features, 1), depth=(depth, (1, 2, 3, 4, 5, 6)),
        )
        n_features = args["n_features"]
        self.depth = depth = args["depth"]
        self.n_stages = int(math.log2(self.upsampling))

        widths = [n_features * 2**i for i in range(depth + 1)]
        self.encoders = nn.ModuleList(
            [_double_conv(self.in_channels if i == 0 else widths[i], widths[i]) for i in range(depth)]
        )
        self.downs = nn.ModuleList([
            nn.Sequential(same_conv(widths[i], widths[i + 1], 3, stride=2), nn.ReLU(inplace=True))
            for i in range(depth)
        ])
        self.bottleneck = _double_conv(widths[depth], widths[depth])
        # ups[i] / decoders[i] bring level i+1 back to level i (applied for i = depth-1 … 0)
        self.ups = nn.ModuleList(
            [nn.ConvTranspose2d(widths[i + 1], widths[i], kernel_size=2, stride=2) for i in range(depth)]
        )
        self.decoders = nn.ModuleList([_double_conv(2 * widths[i], widths[i]) for i in range(depth)])
        stages: list[nn.Module] = []
        for _ in range(self.n_stages):
            stages += [nn.ConvTranspose2d(n_features, n_features, kernel_size=4, stride=2, padding=1),
                       nn.ReLU(inplace=True)]
        self.upsample = nn.Sequential(*stages)
        self.tail = same_conv(n_features, self.out_channels)

    def receptive_field_lr(self) -> float:
        """Radius of the receptive field in LR cells (an upper estimate along the deepest path).

        Level i works on cells of 2**i LR cells. Encoder level i: two 3×3 (2·2**i) plus the
        stride-2 3×3 (2**i); bottleneck: 2·2**depth; decoder level i: the 2×2/2 transposed conv
        (at most 2**i) plus two 3×3 (2·2**i); upsampling stage k: a 4×4/2 transposed conv reads
        ±1 cell of size 1/2**k; tail 3×3 at HR: 1/upsampling. Padding (bottom/right) only adds
        zeros. 27.75 LR cells at depth 2, ×4.
        """
        levels = sum(3 * 2**i + 3 * 2**i for i in range(self.depth))
        stages = sum(1.0 / 2**k for k in range(self.n_stages))
        return levels + 2 * 2**self.depth + stages + 1 / self.upsampling

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, in_channels, h, w), any h, w ≥ 1 → (B, out_channels, h·upsampling, w·upsampling)"""
        self._check_input(x)
        h, w = x.shape[-2:]
        m = 2**self.depth
        pad_h, pad_w = -h % m, -w % m
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))  # zeros = empty bins, see the module docstring
        skips: list[Tensor] = []
        y = x
        for enc, down in zip(self.encoders, self.downs, strict=True):
            y = enc(y)
            skips.append(y)
            y = down(y)
        y = self.bottleneck(y)
        for i in reversed(range(self.depth)):
            y = self.decoders[i](torch.cat([self.ups[i](y), skips[i]], dim=1))
        y = self.tail(self.upsample(y))
        s = self.upsampling
        return y[..., : h * s, : w * s]


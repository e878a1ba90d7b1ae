"""SRResNet generator and SRGAN discriminator (Ledig et al. 2017, "Photo-Realistic Single Image
Super-Resolution Using a Generative Adversarial Network", CVPR).

Generator layout (the paper's Fig. 4, with batch normalisation)::

    x ─ conv9×9(F) ─ PReLU ─┬─ B × ResBlock ─ conv3×3 ─ BN ─(+)─ Upsample × log2(s) ─ conv9×9(out)
                            └─────────────── skip ────────────┘

    ResBlock:  y = x + BN(conv3×3(PReLU(BN(conv3×3(x)))))
    Upsample:  conv3×3(F → 4F) → PixelShuffle(2) → PReLU(F)

Discriminator layout (the paper's Fig. 4, globally pooled)::

    conv3×3(F) ─ LReLU ─ 7 × [conv3×3(f_i, stride s_i) ─ BN ─ LReLU] ─ global average pool
               ─ dense(dense_features) ─ LReLU ─ dense(1)  →  logits

with (f_i, s_i) = (F,2) (2F,1) (2F,2) (4F,1) (4F,2) (8F,1) (8F,2) and LeakyReLU slope 0.2.

Conventions of this implementation (the paper leaves them open):

* every convolution uses 'same' zero padding, so any LR size is accepted and the generator output
  is exactly ``upsampling`` times larger;
* PReLU has one slope per channel (as :mod:`model.generator`);
* convolutions followed by batch normalisation have no bias (BN's shift replaces it);
* the discriminator's global average pool replaces the paper's flatten of a 96×96 crop, so any HR
  size passes, and it returns **logits** (the sigmoid lives in the loss).

Batch normalisation makes the generator's output depend on the batch in training mode; in eval
mode (running statistics) each sample is processed independently.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from model.layers import ZooModule, same_conv
from model.registry import register_model

__all__ = ["SRGANDiscriminator", "SRResNet", "SRResNetBlock"]

SRRESNET_UPSAMPLING = (2, 4, 8)

# (filters / F, stride) of the seven discriminator blocks after the head (the paper's Fig. 4).
_D_BLOCKS: tuple[tuple[int, int], ...] = ((1, 2), (2, 1), (2, 2), (4, 1), (4, 2), (8, 1), (8, 2))


class SRResNetBlock(nn.Module):
    """conv3×3 → BN → PReLU → conv3×3 → BN, plus the identity.

    Args:
        n_features: channels in and out.
    """

    def __init__(self, n_features: int) -> None:
        super().__init__()
        self.conv1 = same_conv(n_features, n_features, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(n_features)
        self.act = nn.PReLU(n_features)
        self.conv2 = same_conv(n_features, n_features, 3, bias=False)
        self.bn2 = nn.BatchNorm2d(n_features)

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, F, h, w) → (B, F, h, w)"""
        return x + self.bn2(self.conv2(self.act(self.bn1(self.conv1(x)))))


@register_model
class SRResNet(ZooModule):
    """SRGAN's generator (SRResNet, with batch normalisation).

    Args:
        in_channels: input channels (seedfield: LR bin mean and mask, see :func:`model.data.make_input`).
        out_channels: output channels (1 for one field).
        upsampling: scale factor, one of 2, 4, 8 (one PixelShuffle(2) stage per factor 2).
        n_features: channels F of the head, the residual body and the upsampling stages (64 in
            the paper).
        n_res_blocks: residual blocks B in the body (16 in the paper).

    With ``in_channels=out_channels=3`` and the paper's sizes the model has 1,548,547 parameters
    at ×4 (derivation in tests/test_zoo_architectures.py).
    """

    def __init__(
        self,
        in_channels: int = 2,
        out_channels: int = 1,
        upsampling: int = 4,
        n_features: int = 64,
        n_res_blocks: int = 16,
    ) -> None:
        super().__init__()
        args = self._record_generator_args(
            in_channels, out_channels, upsampling, SRRESNET_UPSAMPLING,
            n_features=(n_features, 1), n_res_blocks=(n_res_blocks, 0),
        )
        self.n_stages = int(math.log2(self.upsampling))

        f = args["n_features"]
        self.head = nn.Sequential(same_conv(self.in_channels, f, 9), nn.PReLU(f))
        self.body = nn.Sequential(*[SRResNetBlock(f) for _ in range(args["n_res_blocks"])])
        self.body_tail = nn.Sequential(same_conv(f, f, 3, bias=False), nn.BatchNorm2d(f))
        stages: list[nn.Module] = []
        for _ in range(self.n_stages):
            stages += [same_conv(f, 4 * f, 3), nn.PixelShuffle(2), nn.PReLU(f)]
        self.upsample = nn.Sequential(*stages)
        self.tail = same_conv(f, self.out_channels, 9)

    def receptive_field_lr(self) -> float:
        """Radius of the receptive field in LR cells (how far an input cell can reach an output).

        head 9×9: 4, each residual block two 3×3: 2, body tail: 1, the upsampling convolution of
        stage k runs at resolution 2**k: 1/2**k, the 9×9 tail at HR: 4/upsampling (sub-pixel
        offsets of PixelShuffle, below one LR cell, are ignored). 39.5 LR cells at ×4 for the
        paper's 16 blocks.
        """
        stages = sum(1.0 / 2**k for k in range(self.n_stages))
        return 4 + 2 * self._args["n_res_blocks"] + 1 + stages + 4 / self.upsampling

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, in_channels, h, w) → (B, out_channels, h·upsampling, w·upsampling)"""
        self._check_input(x)
        h = self.head(x)
        y = self.body_tail(self.body(h)) + h
        return self.tail(self.upsample(y))


@register_model
class SRGANDiscriminator(ZooModule):
    """SRGAN's discriminator with batch normalisation and a globally pooled head.

    Args:
        in_channels: channels of the HR fields it judges.
        n_features: width F of the first convolution; the blocks use F, 2F, 4F, 8F (64 in the
            paper).
        dense_features: width of the hidden dense layer (1024 in the paper).
    """

    def __init__(self, in_channels: int = 1, n_features: int = 64, dense_features: int = 1024) -> None:
        super().__init__()
        args = self._record_args(
            in_channels=(in_channels, 1), n_features=(n_features, 1), dense_features=(dense_features, 1),
        )
        n_features, dense_features = args["n_features"], args["dense_features"]
        layers: list[nn.Module] = [same_conv(self.in_channels, n_features, 3), nn.LeakyReLU(0.2)]
        c = n_features
        for mult, stride in _D_BLOCKS:
            out = n_features * mult
            layers += [same_conv(c, out, 3, stride=stride, bias=False), nn.BatchNorm2d(out), nn.LeakyReLU(0.2)]
            c = out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(c, dense_features), nn.LeakyReLU(0.2), nn.Linear(dense_features, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, in_channels, H, W), any H, W ≥ 1 → logits (B, 1)

        (In training mode batch normalisation needs more than one value per channel: B ≥ 2, or
        an HR side of at least 17 so that the last feature map, ceil(H/16)×ceil(W/16), is larger
        than 1×1.)
        """
        self._check_input(x, "H, W")
        return self.head(self.pool(self.features(x)))

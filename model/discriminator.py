"""RaSeedGAN discriminator (SRGAN's discriminator without batch-norm, globally pooled).

Layout (DESIGN §3)::

    conv3×3(F) ─ LReLU ─ 7 × [conv3×3(f_i, stride s_i) ─ LReLU] ─ global average pool
               ─ dense(dense_features) ─ LReLU ─ dense(1)  →  logits

with (f_i, s_i) = (F,4) (2F,1) (2F,2) (4F,1) (4F,2) (8F,1) (8F,2), F = n_features (64 in the
reference) and LeakyReLU slope 0.2. The global average pool replaces the reference's flatten, so
any HR size passes (the reference head was tied to one image size).

The forward returns **logits**: the reference's final sigmoid is folded into
``binary_cross_entropy_with_logits`` (see :mod:`model.losses`), which computes
``log(sigmoid(z))`` without the overflow/underflow of composing the two (numerically stable, and
safe under bf16 autocast).

The discriminator only ever sees masked fields: real = sparse target, fake = G(LR)⊙flag.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from model.registry import register_model

__all__ = ["RaSeedDiscriminator"]

# (filters / 64, stride) of the seven blocks after the head, as in the reference.
_BLOCKS: tuple[tuple[int, int], ...] = ((1, 4), (2, 1), (2, 2), (4, 1), (4, 2), (8, 1), (8, 2))


@register_model
class RaSeedDiscriminator(nn.Module):
    """Discriminator of RaSeedGAN.

    Args:
        in_channels: channels of the (masked) HR fields it judges.
        n_features: width F of the first convolution; the blocks use F, 2F, 4F, 8F.
        dense_features: width of the hidden dense layer (1024 in the reference).
    """

    def __init__(self, in_channels: int = 1, n_features: int = 64, dense_features: int = 1024) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("n_features", n_features),
                            ("dense_features", dense_features)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        self._args: dict[str, Any] = {
            "in_channels": int(in_channels), "n_features": int(n_features),
            "dense_features": int(dense_features),
        }
        self.in_channels = int(in_channels)
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, n_features, 3, padding=1), nn.LeakyReLU(0.2),
        ]
        c = n_features
        for mult, stride in _BLOCKS:
            layers += [nn.Conv2d(c, n_features * mult, 3, stride=stride, padding=1), nn.LeakyReLU(0.2)]
            c = n_features * mult
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(c, dense_features), nn.LeakyReLU(0.2), nn.Linear(dense_features, 1),
        )

    def constructor_args(self) -> dict[str, Any]:
        """The keyword arguments that rebuild this architecture (stored in checkpoints)."""
        return dict(self._args)

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, in_channels, H, W), any H, W ≥ 1 → logits (B, 1)"""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected input (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        return self.head(self.pool(self.features(x)))

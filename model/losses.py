"""RaSeedGAN losses (DESIGN §3).

* content: mean squared error over the flagged HR cells only (the target is sparse);
* adversarial: binary cross-entropy on discriminator **logits** (the sigmoid lives inside
  ``binary_cross_entropy_with_logits`` for numerical stability);
* one-sided-noisy label smoothing: real labels ~ U(0.8, 1), fake labels ~ U(0, 0.2), drawn anew
  on every call (the reference drew them once and reused them by accident).

All losses are computed in float32 even when the forwards ran under bf16 autocast.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["discriminator_loss", "generator_loss", "masked_mse", "smoothed_labels"]

REAL_RANGE = (0.8, 1.0)
FAKE_RANGE = (0.0, 0.2)


def masked_mse(pred: Tensor, target: Tensor, flag: Tensor) -> Tensor:
    """Σ flag·(pred − target)² / max(Σ flag, 1) over the whole batch.

    pred, target, flag: (B, C, H, W) (flag 0/1) → scalar. Unflagged cells contribute nothing,
    whatever ``pred`` and ``target`` hold there.
    """
    if pred.shape != target.shape or pred.shape != flag.shape:
        raise ValueError(f"shapes differ: pred {tuple(pred.shape)}, target {tuple(target.shape)}, "
                         f"flag {tuple(flag.shape)}")
    flag = flag.float()
    diff = (pred.float() - target.float()) * flag
    return (diff * diff).sum() / flag.sum().clamp_min(1.0)


def smoothed_labels(
    n: int, real: bool, generator: torch.Generator | None = None, device: torch.device | str | None = None
) -> Tensor:
    """(n, 1) float32 labels: real ~ U(0.8, 1), fake ~ U(0, 0.2), new draws on every call.

    Drawn on the generator's device (CPU for ``None``) and moved to ``device``.
    """
    lo, hi = REAL_RANGE if real else FAKE_RANGE
    gen_device = generator.device if generator is not None else "cpu"
    u = torch.rand((n, 1), generator=generator, device=gen_device, dtype=torch.float32)
    return (lo + (hi - lo) * u).to(device if device is not None else gen_device)


def generator_loss(
    pred: Tensor,
    target: Tensor,
    flag: Tensor,
    d_fake_logits: Tensor | None,
    adversarial_weight: float = 1e-3,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """L_G = masked_mse(G(LR), HR, flag) + w · BCE(D(G(LR)⊙flag), smoothed real labels).

    pred, target, flag: (B, C, H, W); d_fake_logits: (B, 1) or None (content only, for
    pretraining). Returns the loss and ``{"content", "adversarial", "total"}`` as floats
    (adversarial 0 without logits).
    """
    content = masked_mse(pred, target, flag)
    if d_fake_logits is None:
        c = float(content.detach())
        return content, {"content": c, "adversarial": 0.0, "total": c}
    labels = smoothed_labels(d_fake_logits.shape[0], True, generator, d_fake_logits.device)
    adversarial = F.binary_cross_entropy_with_logits(d_fake_logits.float(), labels)
    total = content + adversarial_weight * adversarial
    return total, {"content": float(content.detach()), "adversarial": float(adversarial.detach()),
                   "total": float(total.detach())}


def discriminator_loss(
    d_real_logits: Tensor, d_fake_logits: Tensor, generator: torch.Generator | None = None
) -> tuple[Tensor, dict[str, float]]:
    """L_D = ½[BCE(D(HR), smoothed real) + BCE(D(G⊙flag), smoothed fake)].

    d_real_logits, d_fake_logits: (B, 1). Returns the loss and ``{"real", "fake", "total"}``.
    """
    real_labels = smoothed_labels(d_real_logits.shape[0], True, generator, d_real_logits.device)
    fake_labels = smoothed_labels(d_fake_logits.shape[0], False, generator, d_fake_logits.device)
    real = F.binary_cross_entropy_with_logits(d_real_logits.float(), real_labels)
    fake = F.binary_cross_entropy_with_logits(d_fake_logits.float(), fake_labels)
    total = 0.5 * (real + fake)
    return total, {"real": float(real.detach()), "fake": float(fake.detach()),
                   "total": float(total.detach())}

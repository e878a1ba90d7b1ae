"""RaSeedGAN losses (DESIGN §3).

* content: mean squared error over the flagged HR cells only (the target is sparse);
* adversarial: binary cross-entropy on discriminator **logits** (the sigmoid lives inside
  ``binary_cross_entropy_with_logits`` for numerical stability);
* one-sided-noisy label smoothing: real labels ~ U(0.8, 1), fake labels ~ U(0, 0.2), drawn anew
  on every call (the reference drew them once and reused them by accident).

The model zoo adds (same masking rule: only flagged cells count):

* masked L1 (EDSR, MDSR, ESRGAN);
* the relativistic average GAN losses of ESRGAN on masked fields, with hard labels:
  D_Ra(a, b) = σ(C(a) − mean C(b)); L_D = −½[log D_Ra(real, fake) + log(1 − D_Ra(fake, real))],
  L_G the same with real and fake swapped;
* a perceptual loss: MSE (SRGAN) or L1 (ESRGAN) between VGG19 features of G(LR)⊙flag and of the sparse target (the
  network only ever compares masked fields, as RaSeedGAN's discriminator does);
* :func:`masked_pool`, the sparse target at a coarser HR grid (MDSR's ×2 and ×4 heads).

All losses are computed in float32 even when the forwards ran under bf16 autocast.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "adversarial_bce", "discriminator_loss", "generator_loss", "masked_l1", "masked_mse", "masked_pool", "perceptual_loss",
    "relativistic_d_loss", "relativistic_g_loss", "smoothed_labels",
]

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


def masked_l1(pred: Tensor, target: Tensor, flag: Tensor) -> Tensor:
    """Σ flag·|pred − target| / max(Σ flag, 1) over the whole batch (shapes as :func:`masked_mse`)."""
    if pred.shape != target.shape or pred.shape != flag.shape:
        raise ValueError(f"shapes differ: pred {tuple(pred.shape)}, target {tuple(target.shape)}, "
                         f"flag {tuple(flag.shape)}")
    flag = flag.float()
    return ((pred.float() - target.float()).abs() * flag).sum() / flag.sum().clamp_min(1.0)


def masked_pool(target: Tensor, flag: Tensor, factor: int) -> tuple[Tensor, Tensor]:
    """The sparse target on a grid ``factor`` times coarser: the mean of the flagged cells of
    each block (each flagged HR cell weighs one), flagged where any cell of the block was.

    target, flag: (B, C, H, W) with H, W divisible by ``factor`` → two (B, C, H/f, W/f).
    """
    if factor == 1:
        return target, flag
    if target.shape[-2] % factor or target.shape[-1] % factor:
        raise ValueError(f"HR size {tuple(target.shape[-2:])} is not divisible by {factor}")
    flag = flag.float()
    total = F.avg_pool2d(target.float() * flag, factor)
    weight = F.avg_pool2d(flag, factor)
    pooled_flag = (weight > 0).float()
    return torch.where(weight > 0, total / weight.clamp_min(1e-12), torch.zeros_like(total)), pooled_flag


def relativistic_d_loss(real_logits: Tensor, fake_logits: Tensor) -> tuple[Tensor, dict[str, float]]:
    """ESRGAN's relativistic average discriminator loss on raw critic outputs C(·), (B, 1) each."""
    real_rel = real_logits.float() - fake_logits.float().mean()
    fake_rel = fake_logits.float() - real_logits.float().mean()
    real = F.binary_cross_entropy_with_logits(real_rel, torch.ones_like(real_rel))
    fake = F.binary_cross_entropy_with_logits(fake_rel, torch.zeros_like(fake_rel))
    total = 0.5 * (real + fake)
    return total, {"real": float(real.detach()), "fake": float(fake.detach()), "total": float(total.detach())}


def relativistic_g_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """ESRGAN's relativistic average generator loss (the real critic outputs carry no gradient)."""
    real_logits = real_logits.detach().float()
    real_rel = real_logits - fake_logits.float().mean()
    fake_rel = fake_logits.float() - real_logits.mean()
    return 0.5 * (F.binary_cross_entropy_with_logits(real_rel, torch.zeros_like(real_rel))
                  + F.binary_cross_entropy_with_logits(fake_rel, torch.ones_like(fake_rel)))


def perceptual_loss(
    features: torch.nn.Module, pred: Tensor, target: Tensor, flag: Tensor, criterion: str = "mse"
) -> Tensor:
    """MSE (or L1, ``criterion="l1"``) between ``features(pred⊙flag)`` and ``features(target)``
    (the target is 0 off the flags).

    pred, target, flag: (B, 1, H, W); ``features`` maps (B, C, H, W) to a feature map (e.g.
    :class:`model.vgg.VGG19Features`). Only ``pred`` carries gradients.
    """
    with torch.no_grad():
        ref = features((target * flag).float())
    out = features((pred * flag).float())
    return F.l1_loss(out, ref) if criterion == "l1" else F.mse_loss(out, ref)


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
    adversarial = adversarial_bce(d_fake_logits, generator)
    total = content + adversarial_weight * adversarial
    return total, {"content": float(content.detach()), "adversarial": float(adversarial.detach()),
                   "total": float(total.detach())}


def adversarial_bce(d_fake_logits: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """G's adversarial term: BCE(D(G⊙flag), smoothed real labels); logits (B, 1) → scalar."""
    labels = smoothed_labels(d_fake_logits.shape[0], True, generator, d_fake_logits.device)
    return F.binary_cross_entropy_with_logits(d_fake_logits.float(), labels)


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

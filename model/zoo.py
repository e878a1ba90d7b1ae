"""The architecture zoo: every network of the source papers, chosen by name, with its recipe.

=============  ==========================================  ==================  =============
name           generator (paper default size)              discriminator       pixel loss
=============  ==========================================  ==================  =============
raseedgan      RaSeedGenerator, 64 features × 16 blocks    RaSeedDiscriminator MSE + 1e-3 BCE
srresnet       SRResNet (BN blocks, PReLU), 64 × 16        —                   MSE
srgan          SRResNet, 64 × 16                           SRGANDiscriminator  MSE + 1e-3 BCE
edsr_baseline  EDSR, 64 × 16, residual scale 1             —                   L1
edsr           EDSR, 256 × 32, residual scale 0.1          —                   L1
mdsr           MDSR, 64 × 80, heads ×2, ×4 … ×upsampling   —                   L1
esrgan         RRDBNet, 64 × 23 RRDB, growth 32            Relativistic (VGG)  L1, then RaGAN 5e-3
autoencoder    AutoencoderUpscaler, 64 features, depth 2   —                   MSE
=============  ==========================================  ==================  =============

Every generator takes the same inputs (:func:`model.data.make_input`), returns one HR field and
trains on the sparse targets with the masked losses of :mod:`model.losses`; a perceptual VGG19
loss joins any of them when ``perceptual_weight > 0`` and a weights file is given. ESRGAN trains
``pretrain_epochs`` with L1 alone (its PSNR-oriented model), then with the relativistic GAN
loss, and the published generator is the network interpolation (1 − α)·PSNR + α·GAN (only when
``0 < pretrain_epochs < epochs``: without pretraining there is no PSNR model, and without GAN
epochs nothing to blend; the recipe then records ``interpolation_alpha = None``).
The perceptual loss follows each paper: SRGAN compares VGG19 φ5,4 features after the ReLU with
MSE, ESRGAN before it with L1.
For the autoencoder, ``n_res_blocks`` is the number of encoder levels (its depth).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from model.autoencoder import AutoencoderUpscaler
from model.config import ARCHITECTURES, TrainConfig
from model.data import input_channels
from model.discriminator import RaSeedDiscriminator
from model.edsr import EDSR, MDSR
from model.generator import RaSeedGenerator
from model.rrdbnet import RelativisticDiscriminator, RRDBNet
from model.srresnet import SRGANDiscriminator, SRResNet

__all__ = ["ARCHITECTURES", "ArchitectureSpec", "Recipe", "build_discriminator", "build_generator",
           "recipe", "spec"]


@dataclass(frozen=True)
class ArchitectureSpec:
    """One architecture's builders and its paper's training recipe."""

    name: str
    paper: str
    n_features: int
    n_res_blocks: int
    content_loss: str  # "mse" | "l1"
    adversarial: str | None  # None | "bce" | "relativistic"
    adversarial_weight: float
    generator: Callable[[int, int, int, int, TrainConfig], nn.Module]  # (in, up, F, B, cfg)
    discriminator: Callable[[int], nn.Module] | None = None  # (F) → D
    multiscale: bool = False
    interpolation_alpha: float | None = None
    perceptual_criterion: str = "mse"  # SRGAN: MSE of φ5,4 after ReLU; ESRGAN: L1 before it
    perceptual_before_activation: bool = False


def _mdsr_scales(upsampling: int) -> tuple[int, ...]:
    if upsampling < 2 or upsampling & (upsampling - 1):
        raise ValueError(f"MDSR serves the powers of two up to the data's factor; seeding.upsampling="
                         f"{upsampling} is not a power of two")
    return tuple(2**k for k in range(1, upsampling.bit_length()))


SPECS: dict[str, ArchitectureSpec] = {s.name: s for s in (
    ArchitectureSpec(
        "raseedgan", "Güemes et al. 2022, Nat. Mach. Intell. (RaSeedGAN)", 64, 16, "mse", "bce", 1e-3,
        lambda c, s, f, b, cfg: RaSeedGenerator(c, 1, upsampling=s, n_features=f, n_res_blocks=b,
                                                upsample_features=4 * f),
        lambda f: RaSeedDiscriminator(1, n_features=f, dense_features=16 * f),
    ),
    ArchitectureSpec(
        "srresnet", "Ledig et al. 2017, CVPR (SRResNet)", 64, 16, "mse", None, 0.0,
        lambda c, s, f, b, cfg: SRResNet(c, 1, upsampling=s, n_features=f, n_res_blocks=b),
    ),
    ArchitectureSpec(
        "srgan", "Ledig et al. 2017, CVPR (SRGAN)", 64, 16, "mse", "bce", 1e-3,
        lambda c, s, f, b, cfg: SRResNet(c, 1, upsampling=s, n_features=f, n_res_blocks=b),
        lambda f: SRGANDiscriminator(1, n_features=f, dense_features=16 * f),
    ),
    ArchitectureSpec(
        "edsr_baseline", "Lim et al. 2017, CVPRW (EDSR baseline)", 64, 16, "l1", None, 0.0,
        lambda c, s, f, b, cfg: EDSR(c, 1, upsampling=s, n_features=f, n_res_blocks=b,
                                     res_scale=cfg.res_scale or 1.0),
    ),
    ArchitectureSpec(
        "edsr", "Lim et al. 2017, CVPRW (EDSR)", 256, 32, "l1", None, 0.0,
        lambda c, s, f, b, cfg: EDSR(c, 1, upsampling=s, n_features=f, n_res_blocks=b,
                                     res_scale=cfg.res_scale or 0.1),
    ),
    ArchitectureSpec(
        "mdsr", "Lim et al. 2017, CVPRW (MDSR)", 64, 80, "l1", None, 0.0,
        lambda c, s, f, b, cfg: MDSR(c, 1, scales=_mdsr_scales(s), upsampling=s, n_features=f,
                                     n_res_blocks=b),
        multiscale=True,
    ),
    ArchitectureSpec(
        "esrgan", "Wang et al. 2018, ECCVW (ESRGAN)", 64, 23, "l1", "relativistic", 5e-3,
        lambda c, s, f, b, cfg: RRDBNet(c, 1, upsampling=s, n_features=f, n_blocks=b, growth=f // 2),
        lambda f: RelativisticDiscriminator(1, n_features=f),
        interpolation_alpha=0.8, perceptual_criterion="l1", perceptual_before_activation=True,
    ),
    ArchitectureSpec(
        "autoencoder", "convolutional encoder–decoder upscaler with skip connections", 64, 2, "mse", None, 0.0,
        lambda c, s, f, b, cfg: AutoencoderUpscaler(c, 1, upsampling=s, n_features=f, depth=b),
    ),
)}
assert tuple(SPECS) == ARCHITECTURES, "model.config.ARCHITECTURES and the zoo disagree"


def spec(name: str) -> ArchitectureSpec:
    """The architecture called ``name`` (ValueError listing the known ones otherwise)."""
    try:
        return SPECS[name]
    except KeyError:
        raise ValueError(f"unknown architecture {name!r}; known: {', '.join(SPECS)}") from None


@dataclass(frozen=True)
class Recipe:
    """A config's training recipe with every paper default filled in."""

    architecture: str
    n_features: int
    n_res_blocks: int
    content_loss: str
    content_weight: float
    adversarial: str | None
    adversarial_weight: float
    perceptual_weight: float
    perceptual_criterion: str
    perceptual_before_activation: bool
    interpolation_alpha: float | None
    multiscale: bool


def recipe(config: TrainConfig) -> Recipe:
    """Resolve ``config`` against its architecture's paper defaults."""
    s = spec(config.architecture)
    perceptual = config.perceptual_weight
    if config.content_weight is not None:
        content_weight = config.content_weight
    else:  # ESRGAN's η = 1e-2 balances its L1 against a perceptual loss of weight 1
        content_weight = 1e-2 if (s.name == "esrgan" and perceptual > 0) else 1.0
    alpha = None
    if s.adversarial == "relativistic" and 0 < config.pretrain_epochs < config.epochs:
        # network interpolation needs a PSNR model (pretraining) and a GAN phase after it
        alpha = config.interpolation_alpha if config.interpolation_alpha is not None else s.interpolation_alpha
    return Recipe(
        architecture=s.name,
        n_features=config.n_features if config.n_features is not None else s.n_features,
        n_res_blocks=config.n_res_blocks if config.n_res_blocks is not None else s.n_res_blocks,
        content_loss=config.content_loss or s.content_loss,
        content_weight=content_weight,
        adversarial=s.adversarial,
        adversarial_weight=config.adversarial_weight if config.adversarial_weight is not None else s.adversarial_weight,
        perceptual_weight=perceptual,
        perceptual_criterion=s.perceptual_criterion,
        perceptual_before_activation=s.perceptual_before_activation,
        interpolation_alpha=alpha,
        multiscale=s.multiscale,
    )


def build_generator(config: TrainConfig, upsampling: int) -> nn.Module:
    """The generator ``config`` describes, for an HR/LR factor ``upsampling``."""
    r = recipe(config)
    return spec(r.architecture).generator(input_channels(config.time_features), int(upsampling),
                                          r.n_features, r.n_res_blocks, config)


def build_discriminator(config: TrainConfig) -> nn.Module | None:
    """The discriminator of ``config``'s architecture, or None for the non-adversarial ones."""
    s = spec(config.architecture)
    if s.discriminator is None:
        return None
    return s.discriminator(recipe(config).n_features)

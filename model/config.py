"""Training settings, importable without torch (the pipeline's config composes them)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["ARCHITECTURES", "Architecture", "SensorNetConfig", "TrainConfig"]

#: The architectures of the source papers, by the name the config uses (see :mod:`model.zoo`).
Architecture = Literal[
    "raseedgan", "srresnet", "srgan", "edsr_baseline", "edsr", "mdsr", "esrgan", "autoencoder",
]
ARCHITECTURES: tuple[str, ...] = Architecture.__args__  # type: ignore[attr-defined]
#: Every network ``train.architecture`` can name: the zoo, and the position-aware SensorNet
#: (:mod:`model.sensornet`), which reads the sensors on the native grid instead of bin means.
Network = Literal[Architecture, "sensornet"]


class SensorNetConfig(BaseModel):
    """The position-aware network (``train.architecture = "sensornet"``), trained on sensors only.

    Defaults were chosen on the ERA5 sample's validation hours (benchmarks/era5_sensornet.py,
    docs/model.md), never on its test hours.
    """

    model_config = ConfigDict(extra="forbid")

    window: Literal["causal", "centred"] = Field(
        "causal", description="neighbouring steps seen: past only (daily operations) or past and future (backfills)"
    )
    window_steps: int = Field(3, ge=0, le=12, description="neighbouring steps on each side used")
    base: Literal["cubic", "cubic_plane", "linear", "nearest", "kriging"] = Field(
        "linear", description="interpolant of the sensors that the network corrects (and that it starts from)"
    )
    patch: int = Field(
        0, ge=0, description="training samples are patches of this many cells a side (plus an 8-cell margin); "
        "0 or a patch wider than the domain trains on the whole domain"
    )
    pool_sigma: float = Field(
        0.0, ge=0, description="0: the base interpolates the step's own sensors; > 0: it also pools the window's "
        "neighbouring steps' sensors, each shifted by the drift between the steps' bases smoothed by a Gaussian "
        "of this many cells (for fields that change slowly from step to step)"
    )
    edge_weight: float = Field(
        0.0, ge=0, description="extra loss weight of withheld sensors within edge_band cells of the domain's edge, "
        "where interpolation extrapolates (0: every withheld sensor weighs the same)"
    )
    edge_band: int = Field(6, ge=1, description="cells from the domain's edge that edge_weight applies to")
    features: int = Field(16, ge=4, description="U-Net width at full resolution")
    activation: Literal["relu", "silu"] = Field(
        "relu", description="the U-Net's activation; silu has no dead zone that a large step can push units into"
    )
    tail_init: float = Field(
        0.0, ge=0, description="standard deviation of the last layer's initial weights (0: zeros, the untrained "
        "net is exactly its base but its other layers get no gradient until the last has grown)"
    )
    grad_clip: float = Field(
        0.0, ge=0, description="clip the gradient's norm to this before each step (0: no clipping)"
    )
    depth: int = Field(2, ge=0, le=4, description="U-Net levels")
    iterations: int = Field(300, ge=1, description="optimiser steps")
    batch_size: int = Field(12, ge=1)
    lr: float = Field(2e-3, gt=0, description="peak of the one-cycle learning rate (AdamW)")
    withhold: tuple[float, float] = Field((0.2, 0.5), description="fraction of a step's sensors withheld, drawn in this range")
    residual_groups: int = Field(4, ge=0, le=24, description="phase groups of the residual climatology (day or year)")
    context_steps: int = Field(600, ge=1, description="training steps (evenly spread) the residual climatology is built from")
    val_every: int = Field(50, ge=1, description="iterations between validation scores at withheld sensors")
    ema: float = Field(
        0.0, ge=0, lt=1, description="decay of an exponential moving average of the weights, which is what is "
        "scored and kept (0: the optimiser's own weights)"
    )
    loader_workers: int = Field(
        0, ge=0, le=64, description="processes that build the next training batches while the network steps "
        "(0: built in the training process)"
    )
    seed: int = 0

    @model_validator(mode="after")
    def _withhold_range(self) -> SensorNetConfig:
        lo, hi = self.withhold
        if not 0 < lo <= hi < 1:
            raise ValueError(f"sensornet.withhold must be [low, high] with 0 < low <= high < 1, got {list(self.withhold)}")
        return self


class TrainConfig(BaseModel):
    """Training settings (the reference's values are the defaults).

    ``architecture`` picks the network and its paper's training recipe (:mod:`model.zoo`).
    Settings left at ``None`` take that paper's value: ``n_features``/``n_res_blocks`` (the
    architecture's width and depth), ``content_loss`` (MSE for RaSeedGAN/SRResNet/SRGAN and the
    autoencoder, L1 for EDSR/MDSR/ESRGAN), ``adversarial_weight`` (1e-3 SRGAN/RaSeedGAN, 5e-3
    ESRGAN), ``content_weight`` and ``interpolation_alpha`` (ESRGAN's network interpolation, 0.8).
    """

    model_config = ConfigDict(extra="forbid")

    architecture: Network = "raseedgan"

    epochs: int = Field(100, ge=1)
    batch_size: int = Field(8, ge=1, description="per process under DDP")
    lr_generator: float = Field(1e-4, gt=0)
    lr_discriminator: float = Field(1e-4, gt=0)
    betas: tuple[float, float] = (0.9, 0.999)
    adversarial_weight: float | None = Field(None, ge=0, description="None = the paper's weight")
    content_loss: Literal["mse", "l1"] | None = Field(None, description="masked pixel loss; None = the paper's")
    content_weight: float | None = Field(
        None, gt=0, description="None = 1, or ESRGAN's 1e-2 in its GAN phase when a perceptual loss is on"
    )
    perceptual_weight: float = Field(0.0, ge=0, description="VGG19 feature loss on masked fields (needs vgg_weights)")
    vgg_weights: str | None = Field(None, description="torchvision VGG19 state-dict file; never downloaded")
    vgg_layer: Literal["conv2_2", "conv3_4", "conv4_4", "conv5_4"] = "conv5_4"
    res_scale: float | None = Field(None, gt=0, description="EDSR residual scaling; None = the paper's (0.1 full, 1 baseline)")
    interpolation_alpha: float | None = Field(
        None, ge=0, le=1, description="ESRGAN network interpolation (1−α)·PSNR + α·GAN; None = the paper's 0.8"
    )
    pretrain_epochs: int = Field(0, ge=0, description="content-only epochs first (PhIRE-GAN stabiliser)")
    checkpoint_every: int = Field(5, ge=1)
    seed: int = 0
    num_workers: int = Field(0, ge=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    n_features: int | None = Field(None, ge=1, description="None = the architecture's paper width")
    n_res_blocks: int | None = Field(None, ge=0, description="None = the architecture's paper depth (blocks)")
    time_features: bool = False
    seasonal_norm: bool = Field(
        False, description="per-calendar-month statistics (12, h, w) instead of the reference's annual ones"
    )
    fresh_seedings: bool = Field(False, description="new sensors every epoch (chosen by the sample source)")
    early_stopping: bool = Field(
        True, description="keep the checkpoint before the validation content loss first rises; else the last"
    )
    max_batches_per_epoch: int | None = Field(None, ge=1, description="budget knob for CPU demos")

    @model_validator(mode="after")
    def _perceptual_needs_weights(self) -> TrainConfig:
        if self.perceptual_weight > 0 and not self.vgg_weights:
            raise ValueError(
                "train.perceptual_weight > 0 needs train.vgg_weights: the path of torchvision's "
                "VGG19 state dict (vgg19-dcbb9e9d.pth); seedfield never downloads weights"
            )
        return self

"""Training settings, importable without torch (the pipeline's config composes them)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["TrainConfig"]


class TrainConfig(BaseModel):
    """Training settings (the reference's values are the defaults)."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(100, ge=1)
    batch_size: int = Field(8, ge=1, description="per process under DDP")
    lr_generator: float = Field(1e-4, gt=0)
    lr_discriminator: float = Field(1e-4, gt=0)
    betas: tuple[float, float] = (0.9, 0.999)
    adversarial_weight: float = Field(1e-3, ge=0)
    pretrain_epochs: int = Field(0, ge=0, description="content-only epochs first (PhIRE-GAN stabiliser)")
    checkpoint_every: int = Field(5, ge=1)
    seed: int = 0
    num_workers: int = Field(0, ge=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    n_features: int = Field(64, ge=1)
    n_res_blocks: int = Field(16, ge=0)
    time_features: bool = False
    seasonal_norm: bool = Field(
        False, description="per-calendar-month statistics (12, h, w) instead of the reference's annual ones"
    )
    fresh_seedings: bool = Field(False, description="new sensors every epoch (chosen by the sample source)")
    early_stopping: bool = Field(
        True, description="keep the checkpoint before the validation content loss first rises; else the last"
    )
    max_batches_per_epoch: int | None = Field(None, ge=1, description="budget knob for CPU demos")

"""RaSeedGAN in PyTorch: architectures, losses, data seam, trainer, checkpoints, inference.

Imports torch, numpy (and pydantic for :class:`TrainConfig`) only; nothing from the pipeline,
the stores or the flows. The names below load their submodule on first use, so that
``model.config`` (the training settings the pipeline's config composes) imports without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "FORMAT_VERSION": "model.checkpoint",
    "CheckpointError": "model.checkpoint",
    "LoadedCheckpoint": "model.checkpoint",
    "load_checkpoint": "model.checkpoint",
    "register_model": "model.checkpoint",
    "save_checkpoint": "model.checkpoint",
    "Normalisation": "model.data",
    "SampleSource": "model.data",
    "SparseFieldDataset": "model.data",
    "input_channels": "model.data",
    "make_input": "model.data",
    "make_target": "model.data",
    "RaSeedDiscriminator": "model.discriminator",
    "RaSeedGenerator": "model.generator",
    "InferenceEngine": "model.inference",
    "discriminator_loss": "model.losses",
    "generator_loss": "model.losses",
    "masked_mse": "model.losses",
    "smoothed_labels": "model.losses",
    "TrainConfig": "model.config",
    "EpochRecord": "model.trainer",
    "TrainResult": "model.trainer",
    "Trainer": "model.trainer",
    "select_kept_epoch": "model.trainer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'model' has no attribute {name!r}")

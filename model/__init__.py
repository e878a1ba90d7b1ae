"""RaSeedGAN in PyTorch: architectures, losses, data seam, trainer, checkpoints, inference.

Imports torch, numpy (and pydantic for :class:`TrainConfig`) only; nothing from the pipeline,
the stores or the flows.
"""

from model.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    LoadedCheckpoint,
    load_checkpoint,
    register_model,
    save_checkpoint,
)
from model.data import (
    Normalisation,
    SampleSource,
    SparseFieldDataset,
    input_channels,
    make_input,
    make_target,
)
from model.discriminator import RaSeedDiscriminator
from model.generator import RaSeedGenerator
from model.inference import InferenceEngine
from model.losses import discriminator_loss, generator_loss, masked_mse, smoothed_labels
from model.trainer import EpochRecord, TrainConfig, Trainer, TrainResult, select_kept_epoch

__all__ = [
    "FORMAT_VERSION",
    "CheckpointError",
    "EpochRecord",
    "InferenceEngine",
    "LoadedCheckpoint",
    "Normalisation",
    "RaSeedDiscriminator",
    "RaSeedGenerator",
    "SampleSource",
    "SparseFieldDataset",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "discriminator_loss",
    "generator_loss",
    "input_channels",
    "load_checkpoint",
    "make_input",
    "make_target",
    "masked_mse",
    "register_model",
    "save_checkpoint",
    "select_kept_epoch",
    "smoothed_labels",
]

"""The trainer's records and files: epoch records, the early-stopping rule, checkpoints
(writing, resuming) and the choice of the kept checkpoint at the end (see :mod:`model.trainer`)."""

from __future__ import annotations

import itertools
import math
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from model import distributed as mdist
from model.checkpoint import load_checkpoint, restore_rng, save_checkpoint
from model.interpolation import interpolate_checkpoints

if TYPE_CHECKING:
    from model.trainer import Trainer

LAST = "last.pt"
KEPT = "kept.pt"
PSNR = "psnr.pt"
GAN = "gan.pt"


@dataclass
class EpochRecord:
    """One epoch's numbers. Losses are means over the epoch's batches (all ranks);
    ``samples_per_s`` counts training samples over the training part of the epoch (all ranks),
    ``seconds`` is the epoch's training plus validation (checkpoint writing excluded)."""

    epoch: int
    train_content: float
    train_adversarial: float
    train_d: float
    val_content: float
    seconds: float
    samples_per_s: float
    train_perceptual: float = 0.0


@dataclass
class TrainResult:
    kept_checkpoint: Path
    last_checkpoint: Path
    history: list[EpochRecord]
    kept_epoch: int
    interpolation_alpha: float | None = None


def select_kept_epoch(val_losses: Sequence[tuple[int, float]]) -> int:
    """Reference early-stopping rule over (epoch, validation loss) at the checkpoint epochs, in
    epoch order: the epoch just before the loss first rises; the last epoch if it never rises.
    A NaN loss counts as +inf (a diverged run rises)."""
    if not val_losses:
        raise ValueError("no checkpoint epochs to choose from")
    ordered = sorted(val_losses, key=lambda t: t[0])

    def value(v: float) -> float:
        return math.inf if math.isnan(v) else v

    for (prev_epoch, prev), (_, cur) in itertools.pairwise(ordered):
        if value(cur) > value(prev):
            return prev_epoch
    return ordered[-1][0]


def _atomic_copy(src: Path, dst: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class CheckpointsMixin:
    """Checkpoint writing, resuming and the final choice, for :class:`model.trainer.Trainer`."""

    def _resume(self: Trainer, path: Path) -> None:
        ckpt = load_checkpoint(path, map_location="cpu", with_discriminator=self.discriminator is not None)
        want = self.generator.constructor_args()
        if ckpt.generator.constructor_args() != want:
            raise ValueError(
                f"{path}: resuming needs the same architecture; the checkpoint holds "
                f"{ckpt.generator.constructor_args()}, this config builds {want} "
                "(use a new workdir)"
            )
        if not ckpt.norm.equals(self.norm):
            raise ValueError(f"{path}: the normalisation statistics differ from this run's "
                             "(use a new workdir)")
        raw = ckpt.raw
        self.generator.load_state_dict(raw["generator"]["state_dict"])
        if self.discriminator is not None:
            self.discriminator.load_state_dict(raw["discriminator"]["state_dict"])
        if raw.get("g_optimizer") is not None:
            self.g_optimizer.load_state_dict(raw["g_optimizer"])
        if raw.get("d_optimizer") is not None and self.d_optimizer is not None:
            self.d_optimizer.load_state_dict(raw["d_optimizer"])
        self.start_epoch = ckpt.epoch
        self.history = [EpochRecord(**h) for h in ckpt.history]
        self.checkpoint_epochs = [int(e) for e in ckpt.extra.get("checkpoint_epochs", [])]
        restore_rng(raw.get("rng", {}))
        self.resumed = True

    def _checkpoint_path(self: Trainer, epoch: int) -> Path:
        return self.workdir / f"epoch-{epoch:04d}.pt"

    def _save(self: Trainer, epoch: int, numbered: bool) -> None:
        if numbered and epoch not in self.checkpoint_epochs:
            self.checkpoint_epochs.append(epoch)
        if not self.is_main:
            return
        extra = {**self.extra_meta, "upsampling": self.upsampling, "architecture": self.recipe.architecture,
                 "recipe": asdict(self.recipe), "checkpoint_epochs": list(self.checkpoint_epochs)}
        target = self._checkpoint_path(epoch) if numbered else self.workdir / LAST
        save_checkpoint(
            target, generator=self.generator, discriminator=self.discriminator,
            g_optimizer=self.g_optimizer, d_optimizer=self.d_optimizer, epoch=epoch, norm=self.norm,
            config=self.config.model_dump(mode="json"), history=[asdict(r) for r in self.history],
            extra=extra,
        )
        if numbered:
            _atomic_copy(target, self.workdir / LAST)
        if self.recipe.interpolation_alpha is not None and epoch == self.config.pretrain_epochs:
            _atomic_copy(self.workdir / LAST, self.workdir / PSNR)  # the PSNR-oriented generator

    def _finish(self: Trainer) -> TrainResult:
        if not self.checkpoint_epochs:
            raise RuntimeError(f"{self.workdir}: no checkpoint written (0 epochs trained)")
        val_by_epoch = {r.epoch: r.val_content for r in self.history}
        candidates = [(e, val_by_epoch[e]) for e in self.checkpoint_epochs if e in val_by_epoch]
        alpha = self.recipe.interpolation_alpha
        gan_phase = [c for c in candidates if c[0] > self.config.pretrain_epochs]
        interpolate = alpha is not None and bool(gan_phase) and (self.workdir / PSNR).exists()
        if interpolate:  # the GAN checkpoint to blend with the PSNR model
            candidates = gan_phase
        if self.config.early_stopping:
            kept_epoch = select_kept_epoch(candidates)
        else:
            kept_epoch = max(e for e, _ in candidates)
        kept = self.workdir / KEPT
        if self.is_main:
            if interpolate:
                _atomic_copy(self._checkpoint_path(kept_epoch), self.workdir / GAN)
                interpolate_checkpoints(self.workdir / PSNR, self.workdir / GAN, float(alpha), kept)  # type: ignore[arg-type]
            else:
                _atomic_copy(self._checkpoint_path(kept_epoch), kept)
        mdist.barrier()
        return TrainResult(kept_checkpoint=kept, last_checkpoint=self.workdir / LAST,
                           history=list(self.history), kept_epoch=kept_epoch,
                           interpolation_alpha=alpha if interpolate else None)

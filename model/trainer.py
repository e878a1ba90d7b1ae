"""RaSeedGAN training loop: seeded, resumable, DDP-aware, with the reference's early stopping.

One training step (adversarial phase)::

    fake   = G(lr)                                     (B, 1, H, W)
    masked = fake ⊙ flag                               the discriminator only sees masked fields
    D step: L_D = ½[BCE(D(hr), U(0.8,1)) + BCE(D(masked.detach()), U(0,0.2))]   → Adam(D)
    G step: L_G = masked_mse(fake, hr, flag) + w·BCE(D(masked), U(0.8,1))        → Adam(G)

The G step uses the discriminator just updated (the usual PyTorch GAN order; the TensorFlow
reference computed both losses from one forward pass before updating either net — a
second-order difference). During the first ``pretrain_epochs`` epochs only the content loss
trains G (PhIRE-GAN's stabiliser) and the discriminator is left untouched; their records show
``train_adversarial = train_d = 0``.

Reproducibility: ``torch.manual_seed(seed)`` before building the nets; the DataLoader shuffling
and the label-smoothing noise use ``torch.Generator`` objects seeded from (seed, epoch), so an
epoch's randomness does not depend on the epochs before it and a resumed run replays exactly
what an uninterrupted one would (bit-identical on CPU). The global torch RNG state is stored in
every checkpoint and restored on resume too.

Progress: ``on_epoch`` gets every epoch's record, ``on_progress`` every batch's step count and
loss (rank 0), plain callbacks for whoever draws bars (the model room knows nothing of Prefect).

Checkpoints (:mod:`model.trainer_checkpoints`: writing, resuming, the kept choice) go to ``workdir``: ``epoch-NNNN.pt`` every ``checkpoint_every`` epochs and at the
last epoch, and ``last.pt`` after every epoch (weights, optimizer states, history, RNG states).
If ``workdir/last.pt`` exists, :class:`Trainer` resumes from it.

Early stopping (reference rule): the validation content loss (masked MSE of G on the validation
set, normalised units) is recorded every epoch; among the checkpoint epochs, the kept one is the
last before the loss first rises (the last one if it never rises). Training always runs the
planned epochs and the choice is made afterwards (simple, and the curve past the minimum stays
visible in the history); the kept file is copied to ``kept.pt``.

Distributed data parallel: when ``torch.distributed`` is initialised (see
:mod:`model.distributed`), both nets are wrapped in ``DistributedDataParallel``, training data
is sharded with ``DistributedSampler`` (``batch_size`` is per process), every rank computes the
same validation loss (sums all-reduced) and only rank 0 writes files.

On CUDA the forwards run under bf16 autocast with channels-last tensors; losses are float32.

Other architectures (``config.architecture``, :mod:`model.zoo`) train through the same loop
with their paper's recipe: the masked pixel loss is MSE or L1; networks without a
discriminator train on the pixel loss alone (plus an optional perceptual VGG19 loss on masked
fields); ESRGAN's adversarial phase uses the relativistic average losses, and at the end of its
L1 pretraining the trainer keeps that PSNR-oriented generator (``psnr.pt``) so that the kept
checkpoint can be the network interpolation of the two (``gan.pt`` holds the uninterpolated
one). MDSR trains its heads in turn, batch by batch (×2, ×4 … ×upsampling), the coarser heads
against the sparse target pooled to their grid (:func:`model.losses.masked_pool`); it is
validated and published at the data's factor.
"""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, DistributedSampler, Subset

from model import distributed as mdist
from model.config import TrainConfig
from model.data import Normalisation, SparseFieldDataset
from model.losses import (
    adversarial_bce,
    discriminator_loss,
    masked_l1,
    masked_mse,
    masked_pool,
    perceptual_loss,
    relativistic_d_loss,
    relativistic_g_loss,
)
from model.trainer_checkpoints import (
    LAST,
    CheckpointsMixin,
    EpochRecord,
    TrainResult,
    select_kept_epoch,
)
from model.zoo import build_discriminator, build_generator, recipe

__all__ = [
    "EpochRecord",
    "ProgressHook",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "build_discriminator",
    "build_generator",
    "select_kept_epoch",
]

#: called after every training batch (on rank 0): (steps done, steps planned, numbers); the
#: numbers are ``epoch``, ``batch``, ``batches`` (of this epoch) and ``loss`` (this batch's content loss)
ProgressHook = Callable[[int, int, dict[str, float]], None]


def _stream_seed(*words: int) -> int:
    return int(np.random.SeedSequence([int(w) for w in words]).generate_state(1)[0])


def _resolve_device(device: str) -> torch.device:
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("TrainConfig.device='cuda' but CUDA is not available")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and mdist.is_distributed():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device(device)


class Trainer(CheckpointsMixin):
    """Trains a generator/discriminator pair on sparse fields (see the module docstring).

    Args:
        config: training settings.
        train, val: datasets of normalised samples (same ``time_features`` as ``config``).
        norm: the normalisation the datasets use (stored in every checkpoint).
        workdir: checkpoints go here; a ``last.pt`` found here is resumed.
        upsampling: HR/LR scale factor (power of two).
        extra_meta: JSON-able metadata stored in every checkpoint (e.g. the model id).
        on_epoch: called with each epoch's :class:`EpochRecord` (on every rank).
        on_progress: called after every training batch on rank 0 (:data:`ProgressHook`), for
            progress bars; steps count from the first epoch, so a resumed run starts part-way.
    """

    def __init__(
        self,
        config: TrainConfig,
        train: SparseFieldDataset,
        val: SparseFieldDataset,
        norm: Normalisation,
        workdir: Path,
        upsampling: int,
        extra_meta: dict[str, Any] | None = None,
        on_epoch: Callable[[EpochRecord], None] | None = None,
        on_progress: ProgressHook | None = None,
    ) -> None:
        for name, ds in (("train", train), ("val", val)):
            tf = getattr(ds, "time_features", config.time_features)
            if tf != config.time_features:
                raise ValueError(f"{name} dataset time_features={tf} but config.time_features="
                                 f"{config.time_features}")
        if len(train) == 0 or len(val) == 0:
            raise ValueError(f"empty dataset: {len(train)} training, {len(val)} validation samples")
        self.config = config
        self.train_ds = train
        self.val_ds = val
        self.norm = norm
        self.workdir = Path(workdir)
        self.upsampling = int(upsampling)
        self.extra_meta = dict(extra_meta or {})
        self.on_epoch = on_epoch
        self.on_progress = on_progress
        self.distributed = mdist.is_distributed()
        self.rank = mdist.rank()
        self.world_size = mdist.world_size()
        self.device = _resolve_device(config.device)
        self.cuda = self.device.type == "cuda"
        self.is_main = self.rank == 0
        if self.is_main:
            self.workdir.mkdir(parents=True, exist_ok=True)

        self.recipe = recipe(config)
        if config.architecture == "esrgan" and self.recipe.interpolation_alpha is None:
            warnings.warn(
                "esrgan without network interpolation: it needs 0 < pretrain_epochs < epochs (the L1 "
                f"PSNR model, then GAN epochs); got pretrain_epochs={config.pretrain_epochs}, "
                f"epochs={config.epochs}", stacklevel=2)
        torch.manual_seed(config.seed)
        self.generator = build_generator(config, self.upsampling).to(self.device)
        d = build_discriminator(config)
        self.discriminator: nn.Module | None = None if d is None else d.to(self.device)
        # MDSR: the heads in turn, the published one first (see _train_epoch)
        others = [sc for sc in getattr(self.generator, "scales", ()) if sc != self.upsampling]
        self.scales: tuple[int, ...] = (self.upsampling, *others)
        min_size = int(getattr(self.discriminator, "MIN_SIZE", 1))
        if min(norm.hr_shape) < min_size:
            raise ValueError(f"architecture {config.architecture!r}: its discriminator needs HR fields of at "
                             f"least {min_size}×{min_size} cells; this domain's HR grid is {norm.hr_shape}")
        # a batch of one would give a batch-norm discriminator a single value per channel
        self.drop_last = self.discriminator is not None and len(train) >= config.batch_size and any(
            isinstance(m, nn.modules.batchnorm._BatchNorm) for m in self.discriminator.modules())
        self.perceptual: nn.Module | None = None
        if self.recipe.perceptual_weight > 0:
            from model.vgg import load_vgg19_features

            self.perceptual = load_vgg19_features(
                config.vgg_weights, config.vgg_layer,  # type: ignore[arg-type]
                before_activation=self.recipe.perceptual_before_activation).to(self.device)
        if self.cuda:
            for net in (self.generator, self.discriminator):
                if net is not None:
                    net.to(memory_format=torch.channels_last)
        self.g_optimizer = torch.optim.Adam(self.generator.parameters(), lr=config.lr_generator,
                                            betas=config.betas)
        self.d_optimizer = None if self.discriminator is None else torch.optim.Adam(
            self.discriminator.parameters(), lr=config.lr_discriminator, betas=config.betas)
        self.history: list[EpochRecord] = []
        self.checkpoint_epochs: list[int] = []
        self.start_epoch = 0
        self.resumed = False
        if (self.workdir / LAST).exists():
            self._resume(self.workdir / LAST)
        self.g_train: nn.Module = self.generator
        self.d_train: nn.Module | None = self.discriminator
        if self.distributed:
            ids = [self.device.index] if self.cuda else None
            if self.cuda:  # batch norm over the global batch (SyncBatchNorm runs on CUDA only)
                self.generator = nn.SyncBatchNorm.convert_sync_batchnorm(self.generator)
                if self.discriminator is not None:
                    self.discriminator = nn.SyncBatchNorm.convert_sync_batchnorm(self.discriminator)
            # MDSR: the heads of the other scales get no gradient in a step
            self.g_train = nn.parallel.DistributedDataParallel(
                self.generator, device_ids=ids, find_unused_parameters=len(self.scales) > 1)
            if self.discriminator is not None:
                # real and fake go through D in two forwards before one backward: re-broadcasting
                # batch-norm buffers between them would break autograd (the stats stay per rank)
                self.d_train = nn.parallel.DistributedDataParallel(self.discriminator, device_ids=ids,
                                                                   broadcast_buffers=False)

    # ------------------------------------------------------------------ loops
    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.cuda:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _to_device(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        fmt = torch.channels_last if self.cuda else torch.contiguous_format
        return tuple(  # type: ignore[return-value]
            batch[k].to(self.device, non_blocking=True).contiguous(memory_format=fmt)
            for k in ("lr", "hr", "flag")
        )

    def _train_loader(self, epoch: int) -> DataLoader:
        cfg = self.config
        gen = torch.Generator().manual_seed(_stream_seed(cfg.seed, epoch, 0))
        common: dict[str, Any] = {"batch_size": cfg.batch_size, "num_workers": cfg.num_workers,
                                  "pin_memory": self.cuda, "generator": gen, "drop_last": self.drop_last}
        if self.distributed:
            sampler = DistributedSampler(self.train_ds, num_replicas=self.world_size, rank=self.rank,
                                         shuffle=True, seed=cfg.seed, drop_last=self.drop_last)
            sampler.set_epoch(epoch)
            return DataLoader(self.train_ds, sampler=sampler, **common)
        return DataLoader(self.train_ds, shuffle=True, **common)

    def _pixel_loss(self, pred: Tensor, target: Tensor, flag: Tensor) -> Tensor:
        fn = masked_l1 if self.recipe.content_loss == "l1" else masked_mse
        return fn(pred, target, flag)

    def _adversarial_step(
        self, hr: Tensor, masked: Tensor, labels: torch.Generator
    ) -> tuple[Tensor, float]:
        """Update D on (real = sparse target, fake = G⊙flag); return G's adversarial loss against
        the updated D (frozen: no D gradients, no DDP sync) and D's loss."""
        assert self.discriminator is not None and self.d_train is not None and self.d_optimizer is not None
        relativistic = self.recipe.adversarial == "relativistic"
        # real and fake in separate forwards: batch-norm discriminators (SRGAN, ESRGAN) must not
        # mix their statistics
        with self._autocast():
            d_real = self.d_train(hr).float()
            d_fake = self.d_train(masked.detach()).float()
        if relativistic:
            l_d, d_info = relativistic_d_loss(d_real, d_fake)
        else:
            l_d, d_info = discriminator_loss(d_real, d_fake, labels)
        self.d_optimizer.zero_grad(set_to_none=True)
        l_d.backward()
        self.d_optimizer.step()
        d_bare = self.discriminator
        d_bare.requires_grad_(False)
        try:
            with self._autocast():
                g_fake = d_bare(masked).float()
                g_real = d_bare(hr).float() if relativistic else None
        finally:
            d_bare.requires_grad_(True)
        adv = relativistic_g_loss(g_real, g_fake) if g_real is not None else adversarial_bce(g_fake, labels)
        return adv, d_info["total"]

    def _train_epoch(self, epoch: int) -> tuple[float, float, float, float, int, float]:
        cfg, r = self.config, self.recipe
        self.train_ds.set_epoch(epoch - 1)
        loader = self._train_loader(epoch)
        labels = torch.Generator().manual_seed(_stream_seed(cfg.seed, epoch, 1, self.rank))
        pretraining = epoch <= cfg.pretrain_epochs
        adversarial = not pretraining and self.discriminator is not None
        perceptual = not pretraining and self.perceptual is not None
        self.g_train.train()
        if self.d_train is not None:
            self.d_train.train()
        sums = torch.zeros(5, dtype=torch.float64)  # content, adversarial, d, perceptual, batches
        n_samples = 0
        per_epoch = len(loader) if cfg.max_batches_per_epoch is None else min(len(loader), cfg.max_batches_per_epoch)
        t0 = time.perf_counter()
        for b, batch in enumerate(loader):
            if cfg.max_batches_per_epoch is not None and b >= cfg.max_batches_per_epoch:
                break
            lr, hr, flag = self._to_device(batch)
            scale = self.scales[((epoch - 1) * per_epoch + b) % len(self.scales)]  # counted across epochs
            if scale != self.upsampling:  # an MDSR head of a coarser scale
                hr, flag = masked_pool(hr, flag, self.upsampling // scale)
            with self._autocast():
                fake = self.g_train(lr) if len(self.scales) == 1 else self.g_train(lr, scale=scale)
            fake = fake.float()
            content = self._pixel_loss(fake, hr, flag)
            loss = content if pretraining else r.content_weight * content
            adv_value = d_total = perc_value = 0.0
            if adversarial:
                adv, d_total = self._adversarial_step(hr, fake * flag, labels)
                loss = loss + r.adversarial_weight * adv
                adv_value = float(adv.detach())
            if perceptual:
                assert self.perceptual is not None
                perc = perceptual_loss(self.perceptual, fake, hr, flag, self.recipe.perceptual_criterion)
                loss = loss + r.perceptual_weight * perc
                perc_value = float(perc.detach())
            self.g_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.g_optimizer.step()
            content_value = float(content.detach())
            sums += torch.tensor([content_value, adv_value, d_total, perc_value, 1.0], dtype=torch.float64)
            n_samples += lr.shape[0]
            if self.on_progress is not None and self.is_main:
                self.on_progress((epoch - 1) * per_epoch + b + 1, cfg.epochs * per_epoch,
                                 {"epoch": epoch, "batch": b + 1, "batches": per_epoch, "loss": content_value})
        if self.cuda:
            torch.cuda.synchronize(self.device)
        train_seconds = time.perf_counter() - t0
        totals = torch.cat([sums, torch.tensor([float(n_samples)], dtype=torch.float64)])
        totals = self._all_reduce(totals)
        nb = max(float(totals[4]), 1.0)
        return (float(totals[0]) / nb, float(totals[1]) / nb, float(totals[2]) / nb,
                float(totals[3]) / nb, int(totals[5]), train_seconds)

    def _all_reduce(self, t: Tensor) -> Tensor:
        if not self.distributed:
            return t
        dev = self.device if self.cuda else torch.device("cpu")  # NCCL reduces on the GPU
        return mdist.all_reduce_sum(t.to(dev)).cpu()

    @torch.no_grad()
    def validate(self) -> float:
        """Masked MSE of the generator over the whole validation set (normalised units):
        Σ flag·(G(lr) − hr)² / Σ flag, the same value on every rank."""
        self.val_ds.set_epoch(0)  # the validation seedings never change
        indices = list(range(self.rank, len(self.val_ds), self.world_size))
        loader = DataLoader(Subset(self.val_ds, indices), batch_size=self.config.batch_size,
                            shuffle=False, num_workers=self.config.num_workers, pin_memory=self.cuda)
        self.generator.eval()
        sums = torch.zeros(2, dtype=torch.float64, device=self.device)
        for batch in loader:
            lr, hr, flag = self._to_device(batch)
            with self._autocast():
                pred = self.generator(lr)
            diff = (pred.float() - hr) * flag
            sums[0] += (diff * diff).sum(dtype=torch.float64)
            sums[1] += flag.sum(dtype=torch.float64)
        self.generator.train()
        sums = self._all_reduce(sums.cpu())
        return float(sums[0] / sums[1].clamp_min(1.0))

    def fit(self) -> TrainResult:
        """Train from the start (or the resumed epoch) to ``config.epochs``; choose the kept
        checkpoint; return where everything is."""
        cfg = self.config
        for epoch in range(self.start_epoch + 1, cfg.epochs + 1):
            t0 = time.perf_counter()
            content, adv, d_loss, perc, n_samples, train_seconds = self._train_epoch(epoch)
            val = self.validate()
            numbered = epoch % cfg.checkpoint_every == 0 or epoch == cfg.epochs
            record = EpochRecord(
                epoch=epoch, train_content=content, train_adversarial=adv, train_d=d_loss,
                val_content=val, seconds=time.perf_counter() - t0,
                samples_per_s=n_samples / train_seconds if train_seconds > 0 else 0.0,
                train_perceptual=perc,
            )
            self.history.append(record)
            self._save(epoch, numbered)
            mdist.barrier()
            if self.on_epoch is not None:
                self.on_epoch(record)
        return self._finish()

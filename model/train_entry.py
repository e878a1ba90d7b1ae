"""Training entry point for one process or a ``torchrun`` job.

    python -m model.train_entry --spec spec.json
    torchrun --standalone --nproc_per_node N -m model.train_entry --spec spec.json

``spec.json``::

    {
      "train":  {"factory": "package.module:function", "kwargs": {...}},   # → a SampleSource
      "val":    {"factory": "package.module:function", "kwargs": {...}},
      "norm":   "path/to/norm.npz",          # arrays lr_mean, lr_std, hr_mean, hr_std
      "config": {...},                        # TrainConfig fields
      "workdir": "path/to/workdir",
      "upsampling": 8,
      "extra_meta": {...},                    # optional, stored in the checkpoints
      "digests": false                        # optional: each rank writes digest-rank<r>.json
    }

The sample sources come from an import path so this module never imports the code that reads
the stores: any importable, picklable :class:`~model.data.SampleSource` factory works. Rank 0
writes ``workdir/result.json`` (kept and last checkpoints, kept epoch, history). With
``digests``, every rank writes the SHA-256 of its final generator and discriminator weights,
a cheap proof that DDP kept the replicas identical, and logs the training samples it read
(``samples-rank<r>.txt``: epoch and index per line), the proof that the ranks' shards are disjoint.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from model import distributed as mdist
from model.data import Normalisation, SampleSource, SparseFieldDataset
from model.trainer import EpochRecord, TrainConfig, Trainer

__all__ = ["load_factory", "main", "state_digest"]


def load_factory(path: str) -> Any:
    """Resolve ``"package.module:function"``."""
    module, sep, name = path.partition(":")
    if not sep or not module or not name:
        raise ValueError(f"factory must look like 'package.module:function', got {path!r}")
    obj: Any = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def build_source(entry: dict[str, Any]) -> SampleSource:
    return load_factory(entry["factory"])(**entry.get("kwargs", {}))


def load_norm(path: str | os.PathLike[str]) -> Normalisation:
    with np.load(path) as f:
        return Normalisation(**{k: f[k] for k in ("lr_mean", "lr_std", "hr_mean", "hr_std")})


def parameter_digest(module: nn.Module | None) -> str:
    """SHA-256 over a module's trainable parameters only (batch-norm running statistics are
    buffers and stay per process under DDP); "" for no module."""
    if module is None:
        return ""
    h = hashlib.sha256()
    for name, p in module.named_parameters():
        t = p.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def state_digest(module: nn.Module | None) -> str:
    """SHA-256 over a module's state dict (names, dtypes, shapes and bytes, in key order);
    "" for no module."""
    if module is None:
        return ""
    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _write_json(path: Path, data: Any) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=1)
    os.replace(tmp, path)


class SampleLog(torch.utils.data.Dataset):
    """A training dataset that appends ``"<epoch> <index>"`` to a file for every sample it
    serves (``digests`` runs only): the proof that DDP's ranks read disjoint shards."""

    def __init__(self, dataset: SparseFieldDataset, path: Path) -> None:
        self.dataset, self.path = dataset, path

    def __len__(self) -> int:
        return len(self.dataset)

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        with open(self.path, "a") as fh:
            fh.write(f"{self.dataset.epoch} {int(i)}\n")
        return self.dataset[i]


def run(spec: dict[str, Any]) -> dict[str, Any] | None:
    """Train as the spec says (inside a process group if torchrun started us)."""
    config = TrainConfig(**spec.get("config", {}))
    info = mdist.init_from_env(config.device)
    try:
        norm = load_norm(spec["norm"])
        train = SparseFieldDataset(build_source(spec["train"]), norm, time_features=config.time_features)
        val = SparseFieldDataset(build_source(spec["val"]), norm, time_features=config.time_features)
        workdir = Path(spec["workdir"])
        if spec.get("digests"):
            workdir.mkdir(parents=True, exist_ok=True)
            train = SampleLog(train, workdir / f"samples-rank{info.rank}.txt")  # type: ignore[assignment]

        def report(rec: EpochRecord) -> None:
            if info.rank == 0:
                print(
                    f"epoch {rec.epoch}: train content {rec.train_content:.4f} adv "
                    f"{rec.train_adversarial:.4f} D {rec.train_d:.4f} | val content "
                    f"{rec.val_content:.4f} | {rec.seconds:.1f} s, {rec.samples_per_s:.1f} samples/s",
                    flush=True,
                )

        trainer = Trainer(config, train, val, norm, workdir, upsampling=int(spec["upsampling"]),
                          extra_meta=spec.get("extra_meta"), on_epoch=report)
        result = trainer.fit()
        if spec.get("digests"):
            _write_json(workdir / f"digest-rank{info.rank}.json", {
                "rank": info.rank, "world_size": info.world_size,
                "generator": state_digest(trainer.generator),
                "discriminator": state_digest(trainer.discriminator),
                "generator_parameters": parameter_digest(trainer.generator),
                "discriminator_parameters": parameter_digest(trainer.discriminator),
            })
        out = {
            "kept_checkpoint": str(result.kept_checkpoint),
            "last_checkpoint": str(result.last_checkpoint),
            "kept_epoch": result.kept_epoch, "interpolation_alpha": result.interpolation_alpha,
            "history": [asdict(r) for r in result.history],
            "world_size": info.world_size,
        }
        if info.rank == 0:
            _write_json(workdir / "result.json", out)
        mdist.barrier()
        return out
    finally:
        mdist.cleanup()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m model.train_entry", description=__doc__.splitlines()[0])
    ap.add_argument("--spec", required=True, help="JSON file describing the run")
    args = ap.parse_args(argv)
    spec = json.loads(Path(args.spec).read_text())
    run(spec)
    return 0


if __name__ == "__main__":
    sys.exit(main())

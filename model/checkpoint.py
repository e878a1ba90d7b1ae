"""Self-contained checkpoints: a model rebuilds from the file alone.

File layout (a plain ``dict`` saved with ``torch.save``, loadable with ``weights_only=True``)::

    format_version     int (FORMAT_VERSION)
    torch_version      str
    generator          {"class": "RaSeedGenerator", "args": {...}, "state_dict": {...}}
    discriminator      same, or None
    g_optimizer        optimizer state dict, or None
    d_optimizer        optimizer state dict, or None
    epoch              int (epochs completed)
    norm               {"lr_mean", "lr_std", "hr_mean", "hr_std": float32 tensors}
    config             JSON string (the training configuration)
    history            JSON string (list of per-epoch dicts)
    extra              JSON string (free metadata, e.g. model id, upsampling)
    rng                {"torch": ByteTensor, "cuda": [ByteTensor, ...], ...extra states}

Model classes are looked up by name in :mod:`model.registry`; :mod:`model.zoo` registers every
built-in architecture (RaSeedGAN, SRResNet/SRGAN, EDSR, MDSR, RRDBNet/ESRGAN, the autoencoder),
so new ones are added without touching the loader. Writes are atomic (temp file in the
same folder, then ``os.replace``): a crash never leaves a half-written checkpoint under the
final name.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from model.data import Normalisation
from model.registry import MODEL_CLASSES, build_model, register_model

__all__ = [
    "FORMAT_VERSION",
    "MODEL_CLASSES",
    "CheckpointError",
    "LoadedCheckpoint",
    "build_model",
    "load_checkpoint",
    "register_model",
    "save_checkpoint",
    "unwrap",
    "write_payload",
]

FORMAT_VERSION = 1
SUPPORTED_VERSIONS = (1,)


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read back into models (names the file)."""


def unwrap(module: nn.Module) -> nn.Module:
    """The bare model inside DistributedDataParallel / DataParallel / torch.compile wrappers."""
    while True:
        if isinstance(module, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            module = module.module
        elif hasattr(module, "_orig_mod"):
            module = module._orig_mod  # type: ignore[assignment]
        else:
            return module


def _model_entry(module: nn.Module) -> dict[str, Any]:
    module = unwrap(module)
    return {
        "class": type(module).__name__,
        "args": module.constructor_args(),  # type: ignore[operator]
        "state_dict": {k: v.detach().cpu().clone() for k, v in module.state_dict().items()},
    }


def rng_snapshot() -> dict[str, Any]:
    """Global torch RNG states (CPU and every CUDA device)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of :func:`rng_snapshot` (CUDA states only where the devices exist)."""
    if "torch" in state:
        torch.set_rng_state(state["torch"].cpu())
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda])


def save_checkpoint(
    path: str | os.PathLike[str],
    *,
    generator: nn.Module,
    discriminator: nn.Module | None = None,
    g_optimizer: torch.optim.Optimizer | None = None,
    d_optimizer: torch.optim.Optimizer | None = None,
    epoch: int,
    norm: Normalisation,
    config: dict[str, Any],
    history: list[dict[str, Any]],
    extra: dict[str, Any] | None = None,
    rng: dict[str, Tensor] | None = None,
) -> None:
    """Write a self-contained checkpoint atomically.

    ``config``, ``history`` and ``extra`` must be JSON-serialisable (stored as JSON strings so
    the file loads under ``weights_only=True``). ``rng`` adds named generator states (tensors)
    to the global torch RNG states that are always recorded.
    """
    path = Path(path)
    payload: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "torch_version": str(torch.__version__),
        "generator": _model_entry(generator),
        "discriminator": _model_entry(discriminator) if discriminator is not None else None,
        "g_optimizer": g_optimizer.state_dict() if g_optimizer is not None else None,
        "d_optimizer": d_optimizer.state_dict() if d_optimizer is not None else None,
        "epoch": int(epoch),
        "norm": norm.to_tensors(),
        "config": json.dumps(config),
        "history": json.dumps(history),
        "extra": json.dumps(extra or {}),
        "rng": {**rng_snapshot(), **(rng or {})},
    }
    write_payload(path, payload)


def write_payload(path: str | os.PathLike[str], payload: dict[str, Any]) -> None:
    """``torch.save`` a checkpoint dict atomically (temp file in the folder, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass
class LoadedCheckpoint:
    """A checkpoint read back: rebuilt models plus everything else in the file (``raw``)."""

    generator: nn.Module
    discriminator: nn.Module | None
    norm: Normalisation
    config: dict[str, Any]
    epoch: int
    history: list[dict[str, Any]]
    raw: dict[str, Any] = field(repr=False)

    @property
    def extra(self) -> dict[str, Any]:
        return json.loads(self.raw.get("extra") or "{}")


def _rebuild(path: Path, entry: Any, what: str) -> nn.Module:
    if not isinstance(entry, dict) or not {"class", "args", "state_dict"} <= set(entry):
        raise CheckpointError(f"{path}: the {what} entry is malformed")
    try:
        model = build_model(entry["class"], dict(entry["args"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot rebuild the {what} {entry['class']}"
                              f"({entry['args']}): {exc}") from exc
    try:
        model.load_state_dict(entry["state_dict"], strict=True)
    except RuntimeError as exc:
        raise CheckpointError(
            f"{path}: the {what} weights do not match {entry['class']}({entry['args']}) "
            f"(strict loading): {exc}"
        ) from exc
    return model


def load_checkpoint(
    path: str | os.PathLike[str], map_location: str | torch.device = "cpu", with_discriminator: bool = False
) -> LoadedCheckpoint:
    """Read a checkpoint with ``torch.load(weights_only=True)`` and rebuild its models.

    The generator (and the discriminator when ``with_discriminator``) are rebuilt from their
    class name and constructor arguments alone, loaded strictly, put in eval mode and moved to
    ``map_location``. Raises :class:`CheckpointError` (a ``ValueError``) naming the file on an
    unknown format version, a malformed file or mismatched weights.
    """
    path = Path(path)
    try:
        raw = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # unpickling errors come in many types
        raise CheckpointError(f"{path}: not a readable seedfield checkpoint: {exc}") from exc
    if not isinstance(raw, dict) or "format_version" not in raw:
        raise CheckpointError(f"{path}: not a seedfield checkpoint (no format_version)")
    version = raw["format_version"]
    if version not in SUPPORTED_VERSIONS:
        raise CheckpointError(
            f"{path}: checkpoint format_version {version!r} is not supported; this code reads "
            f"version(s) {', '.join(map(str, SUPPORTED_VERSIONS))}"
        )
    missing = [k for k in ("generator", "norm", "epoch", "config", "history") if k not in raw]
    if missing:
        raise CheckpointError(f"{path}: checkpoint misses {missing}")
    generator = _rebuild(path, raw["generator"], "generator")
    discriminator = None
    if with_discriminator:
        if raw.get("discriminator") is None:
            raise CheckpointError(f"{path}: no discriminator stored in this checkpoint")
        discriminator = _rebuild(path, raw["discriminator"], "discriminator")
    device = map_location if isinstance(map_location, (str, torch.device)) else "cpu"
    generator.to(device).eval()
    if discriminator is not None:
        discriminator.to(device).eval()
    try:
        norm = Normalisation.from_tensors(raw["norm"])
    except ValueError as exc:
        raise CheckpointError(f"{path}: bad normalisation statistics: {exc}") from exc
    return LoadedCheckpoint(
        generator=generator,
        discriminator=discriminator,
        norm=norm,
        config=json.loads(raw["config"]),
        epoch=int(raw["epoch"]),
        history=json.loads(raw["history"]),
        raw=raw,
    )

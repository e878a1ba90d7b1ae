"""ESRGAN's network interpolation: θ = (1 − α)·θ_PSNR + α·θ_GAN, parameter by parameter.

The PSNR-oriented generator (the end of the L1 pretraining) and the GAN-trained one share an
architecture; blending their weights trades the smooth, low-error reconstruction (α = 0) for
the sharper, adversarially trained one (α = 1) without retraining (Wang et al. 2018, §3.4).
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch
from torch import Tensor

from model.checkpoint import CheckpointError, write_payload

__all__ = ["interpolate_checkpoints", "interpolate_state_dicts"]


def interpolate_state_dicts(psnr: dict[str, Tensor], gan: dict[str, Tensor], alpha: float) -> dict[str, Tensor]:
    """(1 − α)·psnr + α·gan for every floating-point entry; other entries (counters) from ``gan``."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if psnr.keys() != gan.keys():
        missing = sorted(set(psnr) ^ set(gan))[:3]
        raise ValueError(f"the two generators differ in their parameters (e.g. {missing})")
    out: dict[str, Tensor] = {}
    for key, g in gan.items():
        p = psnr[key]
        if p.shape != g.shape:
            raise ValueError(f"parameter {key}: shapes {tuple(p.shape)} and {tuple(g.shape)} differ")
        out[key] = torch.lerp(p, g, alpha) if g.is_floating_point() else g.clone()
    return out


def interpolate_checkpoints(
    psnr_path: str | os.PathLike[str], gan_path: str | os.PathLike[str], alpha: float,
    out_path: str | os.PathLike[str],
) -> None:
    """Write ``out_path``: the GAN checkpoint with its generator weights interpolated towards the
    PSNR checkpoint's. Both must hold the same generator architecture (CheckpointError otherwise).
    The interpolation is recorded in the checkpoint's ``extra["interpolation"]``."""
    psnr = torch.load(psnr_path, map_location="cpu", weights_only=True)
    gan = torch.load(gan_path, map_location="cpu", weights_only=True)
    for path, raw in ((psnr_path, psnr), (gan_path, gan)):
        if not isinstance(raw, dict) or "generator" not in raw:
            raise CheckpointError(f"{path}: not a seedfield checkpoint")
    gp, gg = psnr["generator"], gan["generator"]
    if (gp["class"], gp["args"]) != (gg["class"], gg["args"]):
        raise CheckpointError(f"{psnr_path} holds {gp['class']}({gp['args']}) but {gan_path} holds "
                              f"{gg['class']}({gg['args']}): network interpolation needs one architecture")
    try:
        weights = interpolate_state_dicts(gp["state_dict"], gg["state_dict"], alpha)
    except ValueError as exc:
        raise CheckpointError(f"{psnr_path} and {gan_path}: {exc}") from exc
    extra: dict[str, Any] = json.loads(gan.get("extra") or "{}")
    extra["interpolation"] = {"alpha": float(alpha), "psnr_epoch": int(psnr["epoch"]),
                              "gan_epoch": int(gan["epoch"])}
    payload = {**gan, "generator": {**gg, "state_dict": weights}, "extra": json.dumps(extra),
               "g_optimizer": None, "d_optimizer": None}
    write_payload(out_path, payload)

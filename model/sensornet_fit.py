"""Train and run :class:`~model.sensornet.SensorNet` on sequences of sensor lists (no full field).

:func:`fit_sensornet` trains self-supervised — at every sample a random part of the centre
step's sensors is withheld from every input channel and the loss is taken at the withheld cells
only (:mod:`model.sensornet_samples`) — and scores the validation steps the same way (the RMSE
at withheld real sensors, in the field's units), keeping the weights of the best validation
score. :class:`SensorNetEngine` reconstructs steps with every sensor as input.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from model.config import SensorNetConfig
from model.sensornet import SensorNet, input_channels, masked_loss
from model.sensornet_samples import (
    SensorSequence,
    StepChannels,
    assemble,
    make_batch,
    offsets,
    training_batches,
)
from pipeline.sensor_context import SensorContext

__all__ = ["SensorNetEngine", "SensorSequence", "fit_sensornet", "load_engine", "save"]

FORMAT = "seedfield-sensornet-1"


def fit_sensornet(
    seq: SensorSequence, train: Sequence[int], val: Sequence[int], ctx: SensorContext, cfg: SensorNetConfig,
    device: str = "cpu", on_progress: Callable[[dict[str, float]], None] | None = None,
    on_step: Callable[[int, int, dict[str, float]], None] | None = None,
) -> tuple[SensorNet, list[dict[str, float]]]:
    """Train on the centre steps ``train`` (positions in ``seq``), score ``val`` every
    ``cfg.val_every`` iterations at withheld sensors; returns the kept net and the curve (its
    record of the kept weights says ``"kept": True``; iteration 0 is the untrained net).
    ``on_progress`` gets each record of the curve as it is scored; ``on_step`` is called after
    every iteration with (iteration, iterations planned, ``{"train_rmse": running RMSE}``), for
    progress bars.
    Only sensor lists are read: a step's cells without sensors are never looked at."""
    usable = [t for t in train if np.asarray(seq.sensors[t][0]).size >= 4]
    if not usable:
        raise ValueError("no training step has the 4 sensors needed to withhold some")
    offs = offsets(cfg.window, cfg.window_steps)
    torch.manual_seed(cfg.seed)
    chans = StepChannels(seq, ctx, sigma=cfg.pool_sigma)
    net = SensorNet(input_channels(len(offs), 1, 5), features=cfg.features, depth=cfg.depth,
                    activation=cfg.activation, tail_init=cfg.tail_init).to(device)
    # the scored and kept weights: an exponential moving average of the steps' (cfg.ema > 0),
    # which smooths out the last steps' noise, or the steps' own
    averaged = AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema)) if cfg.ema > 0 else None
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.iterations, pct_start=0.1)
    val_ts = [t for t in val if np.asarray(seq.sensors[t][0]).size >= 4][:64]
    val_rng = np.random.default_rng(cfg.seed + 7)  # the same withheld sensors at every score
    val_batch = make_batch(val_ts, chans, offs, ctx, cfg, val_rng) if val_ts else None
    del chans  # the training batches keep their own steps
    history, running, t0, kept_it = [], 0.0, time.perf_counter(), cfg.iterations
    best, best_state, base_mae = float("inf"), None, float("inf")
    if val_batch is not None:  # the untrained net (its base, when the last layer starts at zero) is a candidate
        rmse, base_mae = _score(net.eval(), val_batch, device)
        best, best_state, kept_it = rmse * ctx.std, copy.deepcopy(net.state_dict()), 0
        history.append({"iteration": 0, "val_rmse": best, "val_mae": base_mae * ctx.std, "seconds": 0.0})
    batches = training_batches(seq, usable, ctx, cfg)
    for it, batch in enumerate(batches, 1):
        net.train()
        x, y, w = (a.to(device) for a in batch)
        loss = masked_loss(net(x), y, w)
        opt.zero_grad()
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
        opt.step()
        sched.step()
        if averaged is not None:
            averaged.update_parameters(net)
        running = loss.item() if it == 1 else 0.9 * running + 0.1 * loss.item()
        if on_step is not None:
            on_step(it, cfg.iterations, {"train_rmse": float(np.sqrt(running)) * ctx.std})
        if it % cfg.val_every == 0 or it == cfg.iterations:
            kept = net if averaged is None else averaged.module
            rec = {"iteration": it, "train_rmse": float(np.sqrt(running)) * ctx.std,
                   "seconds": time.perf_counter() - t0}
            if val_batch is not None:
                rmse, mae = _score(kept.eval(), val_batch, device)
                rec["val_rmse"], rec["val_mae"] = rmse * ctx.std, mae * ctx.std
                # kept: the best RMSE at withheld sensors among the weights whose MAE there is no
                # worse than the untrained net's, so that a correction learned for the few large
                # errors (edges, coasts) never costs the many small ones (cubic's MAE and SSIM)
                if mae <= base_mae and rec["val_rmse"] < best:
                    best, best_state, kept_it = rec["val_rmse"], copy.deepcopy(kept.state_dict()), it
            history.append(rec)
            if on_progress:
                on_progress(rec)
    if best_state is not None:
        net.load_state_dict(best_state)
    for rec in history:
        rec["kept"] = rec["iteration"] == kept_it
    return net.eval().cpu(), history


def _score(net: SensorNet, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor], device: str,
           chunk: int = 8) -> tuple[float, float]:
    """RMSE and MAE (normalised units) at the withheld cells of a whole-domain batch, in chunks."""
    x, y, w = batch
    se, ae, n = 0.0, 0.0, 0.0
    with torch.no_grad():
        for i in range(0, x.shape[0], chunk):
            pred = net(x[i : i + chunk].to(device))[:, 0].float().cpu()
            sel = w[i : i + chunk] > 0
            err = pred[sel] - y[i : i + chunk][sel]
            se += float((err**2).sum())
            ae += float(err.abs().sum())
            n += float(sel.sum())
    return float(np.sqrt(se / max(n, 1.0))), ae / max(n, 1.0)


def save(path: str | Path, net: SensorNet, ctx: SensorContext, cfg: SensorNetConfig, meta: dict[str, Any]) -> None:
    """One self-contained file: weights, constructor args, context arrays, settings, meta."""
    torch.save({
        "format": FORMAT, "args": net.constructor_args(), "state_dict": net.state_dict(),
        "context": {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in ctx.to_arrays().items()},
        "settings": cfg.model_dump(mode="json"), "meta": dict(meta),
    }, Path(path))


def is_sensornet(path: str | Path) -> bool:
    """True for a file written by :func:`save` (cheap: reads the pickle's top level)."""
    try:
        raw = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception:
        return False
    return isinstance(raw, dict) and raw.get("format") == FORMAT


class SensorNetEngine:
    """Reconstructs steps of a sequence with every sensor as input (float32 °C, land NaN)."""

    needs_sensors = True

    def __init__(self, net: SensorNet, ctx: SensorContext, cfg: SensorNetConfig, meta: dict[str, Any],
                 device: str = "cpu", batch_size: int = 8) -> None:
        self.net, self.ctx, self.cfg, self.meta = net.to(device).eval(), ctx, cfg, meta
        self.device, self.batch_size = device, batch_size
        self.offsets = offsets(cfg.window, cfg.window_steps)

    @property
    def reach(self) -> tuple[int, int]:
        """Steps needed before and after each target step."""
        return (max(0, -min(self.offsets, default=0)), max(0, max(self.offsets, default=0)))

    def predict(self, seq: SensorSequence, targets: Sequence[int], base_only: bool = False) -> np.ndarray:
        """(len(targets), ny, nx) fields for the positions ``targets`` of ``seq``; with
        ``base_only``, the network's input base (the interpolant, pooled when the model pools),
        without the network: what the network adds is the difference."""
        chans = StepChannels(seq, self.ctx, sigma=self.cfg.pool_sigma)
        out = np.full((len(targets), *self.ctx.shape), np.nan, np.float32)
        for start in range(0, len(targets), self.batch_size):
            part = list(targets[start : start + self.batch_size])
            xs, ok = [], []
            for j, t in enumerate(part):
                centre = chans.pooled_step(t, self.offsets) if chans.sigma > 0 else chans(t)
                if centre is not None:
                    xs.append(assemble(centre, t, chans, self.offsets, self.ctx, float(seq.phases[t])))
                    ok.append(start + j)
            if not xs:
                continue
            if base_only:
                y = np.stack(xs)[:, 0]  # build_input's channel 0: the centre base
            else:
                with torch.no_grad():
                    y = self.net(torch.from_numpy(np.stack(xs)).to(self.device))[:, 0].float().cpu().numpy()
            out[ok] = y * self.ctx.std + self.ctx.mean
        out[:, self.ctx.land] = np.nan
        return out


def load_engine(path: str | Path, device: str = "cpu", batch_size: int = 8) -> SensorNetEngine:
    raw = torch.load(Path(path), map_location="cpu", weights_only=True)
    if raw.get("format") != FORMAT:
        raise ValueError(f"{path}: not a SensorNet checkpoint")
    net = SensorNet(**raw["args"])
    net.load_state_dict(raw["state_dict"])
    ctx = SensorContext.from_arrays({k: v.numpy() for k, v in raw["context"].items()})
    return SensorNetEngine(net, ctx, SensorNetConfig.model_validate(raw["settings"]), raw["meta"], device, batch_size)

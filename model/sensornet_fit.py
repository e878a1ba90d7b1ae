"""Train and run :class:`~model.sensornet.SensorNet` on sequences of sensor lists (no full field).

A :class:`SensorSequence` is what the flows hand over: consecutive steps of the store's time
axis (gaps are steps without sensors), each step's sensors ``(flat native index, value)`` and
its phase in the cycle. :func:`fit_sensornet` trains self-supervised — at every sample a random
part of the centre step's sensors is withheld from every input channel and the loss is taken at
the withheld cells only — and scores the validation steps the same way (the RMSE at withheld
real sensors, in the field's units), keeping the weights of the best validation score.
:class:`SensorNetEngine` reconstructs steps with every sensor as input.

The input of one step (:func:`model.sensornet.build_input`): the centre step's channels, the
same channels of the ``window_steps`` neighbouring steps on each side (past only for a causal
window), the sensors' value climatology and the statics of :class:`pipeline.sensor_context.
SensorContext` (residual climatologies, land, phase).  A neighbour outside the sequence or
without sensors enters as "nothing known": mask 0, value 0, its base equal to the centre's.
"""

from __future__ import annotations

import copy
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.spatial import cKDTree

from model.config import SensorNetConfig
from model.sensornet import SensorNet, build_input, input_channels, masked_loss, withhold
from pipeline.sensor_context import SensorContext
from pipeline.sensor_features import Box, drift_reference, pool_sensors

__all__ = ["SensorNetEngine", "SensorSequence", "fit_sensornet", "load_engine", "save"]

FORMAT = "seedfield-sensornet-1"


@dataclass
class SensorSequence:
    """Consecutive steps: ``sensors[t] = (index int64, value float32)`` (empty for a gap)."""

    sensors: list[tuple[np.ndarray, np.ndarray]]
    phases: np.ndarray
    labels: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.sensors)


def offsets(window: str, k: int) -> list[int]:
    past = list(range(-k, 0))
    return past if window == "causal" else past + list(range(1, k + 1))


#: Memory for the whole-domain channels of steps kept between samples (the steps' neighbours
#: recur in many samples: a kept step costs nothing, a recomputed one a triangulation).
CACHE_BYTES = 1 << 30


class _Channels:
    """Per-step normalised whole-domain channels of a sequence, computed on demand and kept
    (least recently used first out, within :data:`CACHE_BYTES`)."""

    def __init__(self, seq: SensorSequence, ctx: SensorContext, size: int | None = None, sigma: float = 0.0) -> None:
        per_step = 4 * (5 if sigma > 0 else 4) * ctx.shape[0] * ctx.shape[1]
        self.seq, self.ctx, self.sigma = seq, ctx, float(sigma)
        self.size = size if size is not None else max(16, CACHE_BYTES // per_step)
        self.cache: OrderedDict[int, np.ndarray | None] = OrderedDict()

    def _get(self, t: int) -> np.ndarray | None:
        if not 0 <= t < len(self.seq):
            return None
        if t in self.cache:
            self.cache.move_to_end(t)
            return self.cache[t]
        index, value = self.seq.sensors[t]
        out = None if np.asarray(index).size == 0 else self.ctx.channels(index, value)
        if out is not None and self.sigma > 0:  # the step's drift reference rides along
            out = np.concatenate([out, drift_reference(out[2], self.sigma)[None]])
        self.cache[t] = out
        if len(self.cache) > self.size:
            self.cache.popitem(last=False)
        return out

    def __call__(self, t: int) -> np.ndarray | None:
        out = self._get(t)
        return None if out is None else out[:4]

    def others(self, t: int, offs: list[int], near: Box | None = None) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """The window's steps around ``t`` that have sensors, nearest in time first, as
        ``(index, normalised value, drift reference)`` for :func:`pool_sensors`; only their
        sensors inside ``near`` when given."""
        out = []
        for d in sorted(offs, key=lambda d: (abs(d), d)):
            whole = self._get(t + d)
            if whole is not None:
                index, value = (np.asarray(a) for a in self.seq.sensors[t + d])
                if near is not None:
                    inside = _inside(index, near, self.ctx.shape[1])
                    index, value = index[inside], value[inside]
                out.append((index, self.ctx.normalise(value), whole[4]))
        return out

    def pooled_step(self, t: int, offs: list[int]) -> np.ndarray | None:
        """Step ``t``'s kept channels with every one of its sensors, the base pooled with the
        window's (inference): the step's own channels and drift reference come from the cache."""
        whole = self._get(t)
        if whole is None:
            return None
        index, value = self.seq.sensors[t]
        pi, pv = pool_sensors(np.asarray(index), self.ctx.normalise(value), whole[4], self.others(t, offs))
        out = whole[:4].copy()
        out[2] = self.ctx.base_of(pi, pv)
        return out

    def pooled_centre(self, t: int, index: np.ndarray, value: np.ndarray, offs: list[int],
                      box: Box | None = None) -> np.ndarray:
        """Centre channels of step ``t`` from the sensors ``(index, value)`` (all of the step's, or
        the kept ones in training), whose base interpolates those sensors pooled with the
        window's (:func:`pipeline.sensor_features.pool_sensors`); cropped to ``box``.

        With a ``box`` (a training patch) only the sensors within :data:`POOL_REACH` cells of it
        are pooled, and the centre's drift reference is computed on a region just wide enough
        for its Gaussian to be exact there: the base inside the box then differs from the whole
        grid's only through the Clough–Tocher gradient estimates of far-away sensors, at a
        third of the cost of pooling the whole domain.
        """
        ny, nx = self.ctx.shape
        if box is None:
            whole = self.ctx.channels(index, value)
            ref, region, near = drift_reference(whole[2], self.sigma), (0, ny, 0, nx), None
        else:
            near = _grow(box, POOL_REACH, (ny, nx))
            region = _grow(near, int(4 * self.sigma + 0.5) + 1, (ny, nx))  # scipy's Gaussian reach
            whole = self.ctx.channels(index, value, region)
            ref = np.zeros((ny, nx), np.float32)
            ref[region[0] : region[1], region[2] : region[3]] = drift_reference(whole[2], self.sigma)
            inside = _inside(np.asarray(index), near, nx)
            index, value = np.asarray(index)[inside], np.asarray(value)[inside]
        pi, pv = pool_sensors(index, self.ctx.normalise(value), ref, self.others(t, offs, near))
        r0, r1, c0, c1 = box or (0, ny, 0, nx)
        out = whole[:, r0 - region[0] : r1 - region[0], c0 - region[2] : c1 - region[2]].copy()
        out[2] = self.ctx.base_of(pi, pv, box)
        return out


#: Cells around a training patch whose sensors a pooled base takes into account.
POOL_REACH = 16


def _grow(box: Box, by: int, shape: tuple[int, int]) -> Box:
    r0, r1, c0, c1 = box
    return max(0, r0 - by), min(shape[0], r1 + by), max(0, c0 - by), min(shape[1], c1 + by)


def _inside(index: np.ndarray, box: Box, nx: int) -> np.ndarray:
    rows, cols = np.divmod(np.asarray(index, np.int64), nx)
    return (rows >= box[0]) & (rows < box[1]) & (cols >= box[2]) & (cols < box[3])


NeighbourFn = Callable[[int], "np.ndarray | None"]

#: Cells around a training patch that its loss does not reach: there the U-Net sees the
#: patch's edge instead of the field beyond it (except where the patch edge is the domain's).
PATCH_MARGIN = 8


def _assemble(centre: np.ndarray, t: int, neighbour: NeighbourFn, offs: list[int], ctx: SensorContext,
              phase: float, box: Box | None = None) -> np.ndarray:
    neighbours = []
    for d in offs:
        n = neighbour(t + d)
        if n is None:  # nothing known there: its base is the centre's, so every relative channel is 0
            n = np.stack([np.zeros_like(centre[0]), np.zeros_like(centre[0]), centre[2],
                          np.full_like(centre[0], max(ctx.shape))])
        neighbours.append(n)
    static, extra = ctx.statics(phase, box)
    return build_input(centre, np.stack(neighbours) if neighbours else np.empty((0, *centre.shape)), static, extra)


def _patch_boxes(shape: tuple[int, int], patch: int, held: np.ndarray, kept: np.ndarray,
                 rng: np.random.Generator) -> tuple[Box, Box]:
    """A training patch around a withheld sensor: ``(box, scored)``, the cells the input is
    built on (the patch and a :data:`PATCH_MARGIN` around it, shifted inside the domain) and the
    part of them where the loss is taken (the box less its margin, except along the domain's
    own edges).

    The withheld sensor is drawn with a probability growing as the square of its distance to
    the nearest kept sensor: patches go where interpolation is least certain (gaps, coasts, the
    domain's edges, where every interpolant extrapolates) instead of the open interior where
    the base is already near exact. Which cells are scored depends on the inputs' geometry
    only, so the network still learns the expected field given its inputs.
    """
    rows, cols = np.divmod(np.asarray(held, np.int64), shape[1])
    krows, kcols = np.divmod(np.asarray(kept, np.int64), shape[1])
    dist, _ = cKDTree(np.column_stack([krows, kcols]).astype(float)).query(np.column_stack([rows, cols]).astype(float))
    pick = int(rng.choice(held.size, p=dist**2 / (dist**2).sum()))
    r, c = int(rows[pick]), int(cols[pick])

    def axis(pos: int, n: int) -> tuple[int, int, int, int]:
        size = min(patch + 2 * PATCH_MARGIN, n)
        lo = int(np.clip(pos - PATCH_MARGIN - rng.integers(0, patch), 0, n - size))
        hi = lo + size
        return lo, hi, lo + (PATCH_MARGIN if lo > 0 else 0), hi - (PATCH_MARGIN if hi < n else 0)

    r0, r1, sr0, sr1 = axis(r, shape[0])
    c0, c1, sc0, sc1 = axis(c, shape[1])
    return (r0, r1, c0, c1), (sr0, sr1, sc0, sc1)


def uses_patches(shape: tuple[int, int], patch: int) -> bool:
    """True when training samples are patches (the domain is wider than a patch and its margin)."""
    return patch > 0 and max(shape[0], shape[1]) > patch + 2 * PATCH_MARGIN


def _sample(t: int, chans: _Channels, offs: list[int], ctx: SensorContext, fraction: float,
            rng: np.random.Generator, patch: int = 0, edge: tuple[float, int] = (0.0, 0),
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One self-supervised sample: centre channels from the kept sensors only; target and weight
    at the withheld cells only. With ``patch`` (see :func:`uses_patches`) the sample is a patch
    around a withheld sensor, its channels computed from every sensor of each step.

    ``edge = (extra, band)``: a withheld sensor within ``band`` cells of the domain's edge
    weighs ``1 + extra`` in the loss. The weight depends on the cell's position only, so the best
    prediction for each input is unchanged; it makes the rare edge cells, where every
    interpolant extrapolates and most of its error lies, carry enough of the gradient."""
    seq = chans.seq
    index, value = seq.sensors[t]
    ki, kv, hi, hv = withhold(index, value, fraction, rng)
    if uses_patches(ctx.shape, patch):
        box, scored = _patch_boxes(ctx.shape, patch, hi, ki, rng)

        def neighbour(u: int) -> np.ndarray | None:  # the whole domain's channels (kept), cropped
            whole = chans(u)
            return None if whole is None else whole[:, box[0] : box[1], box[2] : box[3]]
    else:
        box, scored, neighbour = None, (0, ctx.shape[0], 0, ctx.shape[1]), chans
    r0, r1, c0, c1 = box or (0, ctx.shape[0], 0, ctx.shape[1])
    centre = chans.pooled_centre(t, ki, kv, offs, box) if chans.sigma > 0 else ctx.channels(ki, kv, box)
    x = _assemble(centre, t, neighbour, offs, ctx, float(seq.phases[t]), box)
    rows, cols = np.divmod(np.asarray(hi, np.int64), ctx.shape[1])
    sr0, sr1, sc0, sc1 = scored
    keep = (rows >= sr0) & (rows < sr1) & (cols >= sc0) & (cols < sc1)
    target = np.zeros((r1 - r0, c1 - c0), np.float32)
    weight = np.zeros_like(target)
    target[rows[keep] - r0, cols[keep] - c0] = ctx.normalise(np.asarray(hv)[keep])
    weight[rows[keep] - r0, cols[keep] - c0] = 1.0
    extra, band = edge
    if extra > 0 and band > 0:
        rr, cc = np.mgrid[r0:r1, c0:c1]
        near = np.minimum(np.minimum(rr, ctx.shape[0] - 1 - rr), np.minimum(cc, ctx.shape[1] - 1 - cc)) < band
        weight[near] *= 1.0 + extra
    return x, target, weight


def _batch(ts: Sequence[int], chans: _Channels, offs: list[int], ctx: SensorContext, cfg: SensorNetConfig,
           rng: np.random.Generator, patch: int = 0, edge: tuple[float, int] = (0.0, 0),
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    xs, ys, ws = zip(*(_sample(int(t), chans, offs, ctx, rng.uniform(*cfg.withhold), rng, patch, edge)
                       for t in ts), strict=True)
    return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys)), torch.from_numpy(np.stack(ws))


def fit_sensornet(
    seq: SensorSequence, train: Sequence[int], val: Sequence[int], ctx: SensorContext, cfg: SensorNetConfig,
    device: str = "cpu", on_progress: Callable[[dict[str, float]], None] | None = None,
) -> tuple[SensorNet, list[dict[str, float]]]:
    """Train on the centre steps ``train`` (positions in ``seq``), score ``val`` every
    ``cfg.val_every`` iterations at withheld sensors; returns the best-scoring net and the curve.
    Only sensor lists are read: a step's cells without sensors are never looked at."""
    usable = [t for t in train if np.asarray(seq.sensors[t][0]).size >= 4]
    if not usable:
        raise ValueError("no training step has the 4 sensors needed to withhold some")
    offs = offsets(cfg.window, cfg.window_steps)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    chans = _Channels(seq, ctx, sigma=cfg.pool_sigma)
    net = SensorNet(input_channels(len(offs), 1, 5), features=cfg.features, depth=cfg.depth).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.iterations, pct_start=0.1)
    val_ts = [t for t in val if np.asarray(seq.sensors[t][0]).size >= 4][:64]
    val_rng = np.random.default_rng(cfg.seed + 7)  # the same withheld sensors at every score
    val_batch = _batch(val_ts, chans, offs, ctx, cfg, val_rng) if val_ts else None
    best, best_state, history, running, t0 = float("inf"), None, [], 0.0, time.perf_counter()
    for it in range(1, cfg.iterations + 1):
        net.train()
        x, y, w = (a.to(device) for a in _batch(rng.choice(usable, cfg.batch_size), chans, offs, ctx, cfg, rng,
                                                 cfg.patch, (cfg.edge_weight, cfg.edge_band)))
        loss = masked_loss(net(x), y, w)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        running = loss.item() if it == 1 else 0.9 * running + 0.1 * loss.item()
        if it % cfg.val_every == 0 or it == cfg.iterations:
            rec = {"iteration": it, "train_rmse": float(np.sqrt(running)) * ctx.std,
                   "seconds": time.perf_counter() - t0}
            if val_batch is not None:
                net.eval()
                rec["val_rmse"] = _score(net, val_batch, device) * ctx.std
                if rec["val_rmse"] < best:
                    best, best_state = rec["val_rmse"], copy.deepcopy(net.state_dict())
            history.append(rec)
            if on_progress:
                on_progress(rec)
    if best_state is not None:
        net.load_state_dict(best_state)
    return net.eval().cpu(), history


def _score(net: SensorNet, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor], device: str,
           chunk: int = 8) -> float:
    """RMSE (normalised units) at the withheld cells of a whole-domain batch, run in chunks."""
    x, y, w = batch
    se, n = 0.0, 0.0
    with torch.no_grad():
        for i in range(0, x.shape[0], chunk):
            pred = net(x[i : i + chunk].to(device))[:, 0].float().cpu()
            sel = w[i : i + chunk] > 0
            se += float(((pred[sel] - y[i : i + chunk][sel]) ** 2).sum())
            n += float(sel.sum())
    return float(np.sqrt(se / max(n, 1.0)))


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

    def predict(self, seq: SensorSequence, targets: Sequence[int]) -> np.ndarray:
        """(len(targets), ny, nx) fields for the positions ``targets`` of ``seq``."""
        chans = _Channels(seq, self.ctx, sigma=self.cfg.pool_sigma)
        out = np.full((len(targets), *self.ctx.shape), np.nan, np.float32)
        for start in range(0, len(targets), self.batch_size):
            part = list(targets[start : start + self.batch_size])
            xs, ok = [], []
            for j, t in enumerate(part):
                centre = chans.pooled_step(t, self.offsets) if chans.sigma > 0 else chans(t)
                if centre is not None:
                    xs.append(_assemble(centre, t, chans, self.offsets, self.ctx, float(seq.phases[t])))
                    ok.append(start + j)
            if not xs:
                continue
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

"""Training samples and inputs of :class:`~model.sensornet.SensorNet` from sequences of sensor lists.

A :class:`SensorSequence` is what the flows hand over: consecutive steps of the store's time
axis (gaps are steps without sensors), each step's sensors ``(flat native index, value)`` and
its phase in the cycle. :class:`StepChannels` computes and keeps each step's whole-domain
channels; :func:`make_sample` draws one self-supervised sample (a random part of the centre
step's sensors withheld from every input channel, the target at the withheld cells only);
:class:`TrainingBatches` streams the training batches, built in worker processes when asked so
that the next batch is ready while the optimiser steps.

The input of one step (:func:`model.sensornet.build_input`): the centre step's channels, the
same channels of the ``window_steps`` neighbouring steps on each side (past only for a causal
window), the sensors' value climatology and the statics of :class:`pipeline.sensor_context.
SensorContext` (residual climatologies, land, phase).  A neighbour outside the sequence or
without sensors enters as "nothing known": mask 0, value 0, its base equal to the centre's.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.spatial import cKDTree

from model.config import SensorNetConfig
from model.sensornet import build_input, withhold
from pipeline.sensor_context import SensorContext
from pipeline.sensor_features import Box, drift_reference, pool_sensors

__all__ = ["PATCH_MARGIN", "POOL_REACH", "SensorSequence", "StepChannels", "TrainingBatches", "assemble",
           "make_batch", "make_sample", "offsets", "patch_boxes", "training_batches", "uses_patches"]


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


class StepChannels:
    """Per-step normalised whole-domain channels of a sequence, computed on demand and kept
    (least recently used first out, within :data:`CACHE_BYTES`)."""

    def __init__(self, seq: SensorSequence, ctx: SensorContext, size: int | None = None, sigma: float = 0.0,
                 cache_bytes: int = CACHE_BYTES) -> None:
        per_step = 4 * (5 if sigma > 0 else 4) * ctx.shape[0] * ctx.shape[1]
        self.seq, self.ctx, self.sigma = seq, ctx, float(sigma)
        self.size = size if size is not None else max(16, cache_bytes // per_step)
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


def assemble(centre: np.ndarray, t: int, neighbour: NeighbourFn, offs: list[int], ctx: SensorContext,
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


def patch_boxes(shape: tuple[int, int], patch: int, held: np.ndarray, kept: np.ndarray,
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


def make_sample(t: int, chans: StepChannels, offs: list[int], ctx: SensorContext, fraction: float,
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
        box, scored = patch_boxes(ctx.shape, patch, hi, ki, rng)

        def neighbour(u: int) -> np.ndarray | None:  # the whole domain's channels (kept), cropped
            whole = chans(u)
            return None if whole is None else whole[:, box[0] : box[1], box[2] : box[3]]
    else:
        box, scored, neighbour = None, (0, ctx.shape[0], 0, ctx.shape[1]), chans
    r0, r1, c0, c1 = box or (0, ctx.shape[0], 0, ctx.shape[1])
    centre = chans.pooled_centre(t, ki, kv, offs, box) if chans.sigma > 0 else ctx.channels(ki, kv, box)
    x = assemble(centre, t, neighbour, offs, ctx, float(seq.phases[t]), box)
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


def make_batch(ts: Sequence[int], chans: StepChannels, offs: list[int], ctx: SensorContext, cfg: SensorNetConfig,
           rng: np.random.Generator, patch: int = 0, edge: tuple[float, int] = (0.0, 0),
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    xs, ys, ws = zip(*(make_sample(int(t), chans, offs, ctx, rng.uniform(*cfg.withhold), rng, patch, edge)
                       for t in ts), strict=True)
    return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys)), torch.from_numpy(np.stack(ws))


class TrainingBatches(torch.utils.data.IterableDataset):  # type: ignore[type-arg]
    """The ``cfg.iterations`` training batches ``(x, target, weight)`` of :func:`fit_sensornet
    <model.sensornet_fit.fit_sensornet>`, centres drawn from ``centres``.

    In a :class:`torch.utils.data.DataLoader` worker, worker ``w`` of ``n`` builds batches
    ``w, w + n, …`` from its own random stream (``(seed, w)``) and its own share of the step
    cache, so the batches do not depend on timing; in the calling process (no worker) the
    stream is ``seed``'s.
    """

    def __init__(self, seq: SensorSequence, centres: Sequence[int], ctx: SensorContext, cfg: SensorNetConfig) -> None:
        super().__init__()
        self.seq, self.centres, self.ctx, self.cfg = seq, list(centres), ctx, cfg

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        info = torch.utils.data.get_worker_info()
        worker, n = (0, 1) if info is None else (info.id, info.num_workers)
        if info is not None:
            torch.set_num_threads(1)  # the training process's threads run the network
        cfg = self.cfg
        rng = np.random.default_rng(cfg.seed if info is None else [cfg.seed, worker])
        chans = StepChannels(self.seq, self.ctx, sigma=cfg.pool_sigma, cache_bytes=CACHE_BYTES // n)
        offs = offsets(cfg.window, cfg.window_steps)
        for _ in range(worker, cfg.iterations, n):
            yield make_batch(rng.choice(self.centres, cfg.batch_size), chans, offs, self.ctx, cfg, rng,
                             cfg.patch, (cfg.edge_weight, cfg.edge_band))


def training_batches(seq: SensorSequence, centres: Sequence[int], ctx: SensorContext, cfg: SensorNetConfig,
                     ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """The training batches, built by ``cfg.loader_workers`` spawned processes (0: here).

    Building a batch (triangulations of each sample's sensors) takes about three times as long
    as the network's step on 2 CPU cores; with workers the two overlap. Workers are spawned, not
    forked, so that no lock held by another thread of the caller (Prefect, Dask) is inherited.
    """
    stream = TrainingBatches(seq, centres, ctx, cfg)
    if cfg.loader_workers == 0:
        return iter(stream)
    loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=cfg.loader_workers,
                                         multiprocessing_context="spawn", prefetch_factor=2)
    return iter(loader)

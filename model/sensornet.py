"""SensorNet: a position-aware correction network trained without any full field (DESIGN §3b).

Inputs live on the native grid (see :mod:`pipeline.sensor_features`): for the centre step the
base interpolant, the sensor mask and the distance to the nearest sensor; for each neighbouring
step (a window of past, or past and future, steps) the same channels; static channels such as
the climatology that the sensors build up over the training period. The network predicts a
correction that is added to the centre step's base interpolant; its last layer starts at zero,
so an untrained net returns the interpolant itself.

Input layout of :func:`build_input` (``relative=True``, the default: every value-like channel
is expressed relative to the centre base, so the net sees anomalies, not absolute levels)::

    0  base_c              centre base interpolant (normalised units)
    1  mask_c              centre sensor mask
    2  dist_c              centre distance to nearest sensor / DIST_SCALE
    per neighbour n:       (v_n − base_c)·m_n,  m_n,  base_n − base_c,  dist_n / DIST_SCALE
    per static s:          s − base_c
    per extra e:           e as given (e.g. sin/cos of the hour of day, constant maps)

Self-supervised training (Noise2Self / masked-autoencoder style): :func:`withhold` removes a
random fraction of the centre step's sensors, :func:`training_input` rebuilds every centre
channel from the kept sensors only, and :func:`masked_loss` is taken at the withheld cells only.
At inference every sensor is input. With ``honour_sensors`` the correction is multiplied by
``1 − mask_c``, so the output equals the sensor value at every input sensor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.layers import ZooModule, check_int
from model.registry import register_model
from pipeline.sensor_features import BaseMethod, step_channels

__all__ = [
    "DIST_SCALE",
    "SensorNet",
    "build_input",
    "input_channels",
    "load_sensornet",
    "masked_loss",
    "save_sensornet",
    "training_input",
    "withhold",
]

#: Distances (cells) are divided by this before entering the net.
DIST_SCALE = 4.0


#: Activations a SensorNet may use. ``"relu"`` is what older checkpoints were built with;
#: ``"silu"`` (x·sigmoid(x)) has no dead zone: a unit pushed negative by one large step still
#: passes gradient, where a ReLU unit stops learning for good.
ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "silu": nn.SiLU}


def _block(c_in: int, c_out: int, padding_mode: str, act: type[nn.Module]) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, padding_mode=padding_mode), act(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, padding_mode=padding_mode), act(inplace=True),
    )


@register_model
class SensorNet(ZooModule):
    """Small U-Net that outputs ``base + correction`` on the native grid.

    Args:
        in_channels: input channels (see :func:`input_channels`).
        features: channels at full resolution; level ``k`` has ``features · 2**k``.
        depth: number of 2× downsamplings (0: a plain full-resolution CNN).
        base_channel: index of the base-interpolant channel the correction is added to.
        mask_channel: index of the centre sensor-mask channel, or -1; used when
            ``honour_sensors`` to zero the correction at input sensors.
        honour_sensors: output equals the base (hence the sensor value) at input sensors.
        padding_mode: ``"replicate"`` or ``"zeros"`` for every 3×3 convolution.
        activation: ``"relu"`` or ``"silu"`` (:data:`ACTIVATIONS`) after every convolution but
            the last.
        tail_init: standard deviation of the last convolution's initial weights (0: zeros).

    Layout: 1×1 stem (in → features, activation), then a U-Net of ``depth`` levels, each level
    two 3×3 conv + activation, average-pool down, nearest up + skip concatenation, 1×1 tail.

    Shapes: (B, in_channels, h, w) → (B, 1, h, w); any h, w (replicate-padded internally to a
    multiple of ``2**depth`` and cropped back). The last convolution starts at zero (or at ``tail_init``).
    """

    def __init__(
        self,
        in_channels: int,
        features: int = 32,
        depth: int = 2,
        base_channel: int = 0,
        mask_channel: int = 1,
        honour_sensors: bool = True,
        padding_mode: str = "replicate",
        activation: str = "relu",
        tail_init: float = 0.0,
    ) -> None:
        super().__init__()
        self._args = {
            "in_channels": check_int("in_channels", in_channels, 1),
            "features": check_int("features", features, 1),
            "depth": check_int("depth", depth, 0),
            "base_channel": check_int("base_channel", base_channel, 0),
            "mask_channel": check_int("mask_channel", mask_channel, -1),
            "honour_sensors": bool(honour_sensors),
            "padding_mode": str(padding_mode),
            "activation": str(activation),
            "tail_init": float(tail_init),
        }
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        act = ACTIVATIONS[activation]
        self.in_channels = in_channels
        if base_channel >= in_channels or mask_channel >= in_channels:
            raise ValueError("base_channel and mask_channel must index an input channel")
        if padding_mode not in ("replicate", "zeros"):
            raise ValueError(f"padding_mode must be 'replicate' or 'zeros', got {padding_mode!r}")
        pm = padding_mode
        widths = [features * 2**k for k in range(depth + 1)]
        self.stem = nn.Sequential(nn.Conv2d(in_channels, features, 1), act(inplace=True))
        self.enc = nn.ModuleList([_block(features, widths[0], pm, act)])
        self.enc.extend(_block(widths[k - 1], widths[k], pm, act) for k in range(1, depth + 1))
        self.dec = nn.ModuleList(
            _block(widths[k + 1] + widths[k], widths[k], pm, act) for k in reversed(range(depth))
        )
        self.tail = nn.Conv2d(widths[0], 1, 1)
        # zero: an untrained net returns its base exactly, but no gradient reaches the layers
        # before the tail until the tail has grown (tens of steps of noise under Adam);
        # tail_init > 0: normal weights of that standard deviation, the untrained net within
        # ~tail_init × features of its base, every layer learning from the first step
        nn.init.normal_(self.tail.weight, std=tail_init) if tail_init > 0 else nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)

    def correction(self, x: Tensor) -> Tensor:
        """The raw correction (B, 1, h, w), before the sensor mask is applied."""
        self._check_input(x)
        h, w = x.shape[-2:]
        m = 2 ** self._args["depth"]
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        skips: list[Tensor] = []
        y = self.stem(x)
        for k, enc in enumerate(self.enc):
            if k:
                y = F.avg_pool2d(y, 2)
            y = enc(y)
            skips.append(y)
        for dec, skip in zip(self.dec, reversed(skips[:-1]), strict=True):
            y = F.interpolate(y, size=skip.shape[-2:], mode="nearest")
            y = dec(torch.cat([y, skip], dim=1))
        return self.tail(y)[..., :h, :w]

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, in_channels, h, w) → (B, 1, h, w) = base + correction."""
        corr = self.correction(x)
        a = self._args
        if a["honour_sensors"] and a["mask_channel"] >= 0:
            corr = corr * (1.0 - x[:, a["mask_channel"] : a["mask_channel"] + 1])
        return x[:, a["base_channel"] : a["base_channel"] + 1] + corr


def input_channels(n_neighbours: int, n_static: int, n_extra: int = 0) -> int:
    """Channels of :func:`build_input` for the given window, static and extra counts."""
    return 3 + 4 * n_neighbours + n_static + n_extra


def build_input(
    centre: np.ndarray,
    neighbours: np.ndarray,
    static: np.ndarray,
    extra: np.ndarray | None = None,
    relative: bool = True,
) -> np.ndarray:
    """Assemble the network input of one step, float32 (C, ny, nx).

    Args:
        centre: (4, ny, nx) channels of the centre step (``value, mask, base, dist``), built
            from the INPUT sensors only (withheld ones removed in training).
        neighbours: (K, 4, ny, nx) channels of the neighbouring steps (K may be 0).
        static: (S, ny, nx) static fields in the same units as the values (climatologies).
        extra: (E, ny, nx) channels passed through unchanged (e.g. time of day), or None.
        relative: express value-like channels relative to the centre base (see module doc);
            False passes ``value, mask, base, dist`` of each neighbour and the statics as is.
    """
    _, mask_c, base_c, dist_c = centre
    parts = [base_c[None], mask_c[None], dist_c[None] / DIST_SCALE]
    for v, m, b, d in neighbours:
        if relative:
            parts.append(np.stack([(v - base_c) * m, m, b - base_c, d / DIST_SCALE]))
        else:
            parts.append(np.stack([v, m, b, d / DIST_SCALE]))
    if len(static):
        parts.append(static - base_c[None] if relative else static)
    if extra is not None and len(extra):
        parts.append(extra)
    return np.concatenate(parts, axis=0).astype(np.float32, copy=False)


def withhold(
    index: np.ndarray, value: np.ndarray, fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split one step's sensors into kept (input) and withheld (loss) sets.

    ``round(fraction · n)`` sensors are withheld, at least 1 and leaving at least 3 as input.

    Returns:
        ``(kept_index, kept_value, held_index, held_value)``.
    """
    n = int(np.asarray(index).size)
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    if n < 4:
        raise ValueError(f"need at least 4 sensors to withhold some, got {n}")
    k = int(min(max(round(fraction * n), 1), n - 3))
    held = np.zeros(n, dtype=bool)
    held[rng.choice(n, size=k, replace=False)] = True
    index, value = np.asarray(index), np.asarray(value)
    return index[~held], value[~held], index[held], value[held]


def training_input(
    index: np.ndarray,
    value: np.ndarray,
    shape: tuple[int, int],
    neighbours: np.ndarray,
    static: np.ndarray,
    extra: np.ndarray | None,
    fraction: float,
    rng: np.random.Generator,
    method: BaseMethod = "linear",
    relative: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One self-supervised sample from a step's sensor list (no full field involved).

    Withholds ``fraction`` of the centre sensors, builds every centre channel (value, mask,
    base, distance) from the kept ones, and returns ``(x, target, weight)``: x (C, ny, nx);
    target (ny, nx) float32 holding the withheld values at their cells and 0 elsewhere; weight
    (ny, nx) float32, 1 at the withheld cells only.
    """
    ki, kv, hi, hv = withhold(index, value, fraction, rng)
    centre = step_channels(ki, kv, shape, method)
    x = build_input(centre, neighbours, static, extra, relative)
    target = np.zeros(int(shape[0]) * int(shape[1]), dtype=np.float32)
    weight = np.zeros_like(target)
    target[hi] = hv
    weight[hi] = 1.0
    return x, target.reshape(shape), weight.reshape(shape)


def masked_loss(pred: Tensor, target: Tensor, weight: Tensor, kind: str = "mse") -> Tensor:
    """Mean loss over the cells where ``weight > 0`` only.

    pred (B, 1, h, w) or (B, h, w); target and weight (B, h, w). Cells with ``weight == 0`` are
    never read (they may hold NaN or anything), so the loss and its gradient depend on the
    withheld cells alone. ``kind``: ``"mse"``, ``"l1"`` or ``"huber"`` (δ = 0.1).
    """
    if pred.ndim == 4:
        pred = pred[:, 0]
    sel = weight > 0
    if not bool(sel.any()):
        raise ValueError("masked_loss: no cell has weight > 0")
    err = pred[sel] - target[sel]
    w = weight[sel]
    if kind == "mse":
        per = err**2
    elif kind == "l1":
        per = err.abs()
    elif kind == "huber":
        per = F.huber_loss(err, torch.zeros_like(err), reduction="none", delta=0.1)
    else:
        raise ValueError(f"unknown loss kind {kind!r}")
    return (per * w).sum() / w.sum()


def save_sensornet(path: str | Path, net: SensorNet, meta: dict[str, Any]) -> None:
    """Save weights, constructor args and JSON-able ``meta`` (normalisation, window, ...)."""
    torch.save(
        {"class": type(net).__name__, "args": net.constructor_args(),
         "state_dict": net.state_dict(), "meta": dict(meta)},
        Path(path),
    )


def load_sensornet(path: str | Path) -> tuple[SensorNet, dict[str, Any]]:
    """Rebuild a :class:`SensorNet` from a :func:`save_sensornet` file alone (eval mode)."""
    raw = torch.load(Path(path), map_location="cpu", weights_only=True)
    if raw.get("class") != SensorNet.__name__:
        raise ValueError(f"{path}: not a SensorNet checkpoint (class {raw.get('class')!r})")
    net = SensorNet(**raw["args"])
    net.load_state_dict(raw["state_dict"], strict=True)
    return net.eval(), dict(raw["meta"])

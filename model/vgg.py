"""Frozen VGG19 feature extractor for perceptual (content) losses (Simonyan & Zisserman 2015;
used as φ_{i,j} by SRGAN, Ledig et al. 2017, and, before the activation, by ESRGAN, Wang et al.
2018).

Layout (torchvision's ``vgg19().features``; index: module)::

    0 conv1_1  1 relu   2 conv1_2  3 relu   4 maxpool
    5 conv2_1  6 relu   7 conv2_2  8 relu   9 maxpool
    10 conv3_1 11 relu  12 conv3_2 13 relu  14 conv3_3 15 relu  16 conv3_4 17 relu  18 maxpool
    19 conv4_1 20 relu  21 conv4_2 22 relu  23 conv4_3 24 relu  25 conv4_4 26 relu  27 maxpool
    28 conv5_1 29 relu  30 conv5_2 31 relu  32 conv5_3 33 relu  34 conv5_4 35 relu  (36 maxpool)

:class:`VGG19Features` rebuilds exactly this ``features`` Sequential (same indices, so the state
dict keys are ``features.0.weight`` … ``features.34.bias``), truncated after the ReLU that
follows the named convolution (SRGAN's φ5,4 is ``layer="conv5_4"``: indices 0…35), or right
after the convolution with ``before_activation=True`` (ESRGAN's choice).

seedfield never downloads weights: :func:`load_vgg19_features` reads a local copy of
torchvision's ``vgg19-dcbb9e9d.pth`` state dict. The extractor applies no ImageNet mean/std
normalisation; callers decide how to map their (normalised) fields to VGG's input range.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["VGG19_LAYERS", "VGG19Features", "load_vgg19_features"]

# torchvision's configuration "E": channels of each conv, "M" for max pooling.
_CFG: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M",
)


def _conv_indices() -> dict[str, int]:
    """{"conv1_1": 0, …, "conv5_4": 34}: index of each convolution in ``features``."""
    names: dict[str, int] = {}
    index, block, conv = 0, 1, 1
    for item in _CFG:
        if item == "M":
            index += 1
            block, conv = block + 1, 1
        else:
            names[f"conv{block}_{conv}"] = index
            index += 2  # conv, ReLU
            conv += 1
    return names


#: Index in ``features`` of every VGG19 convolution, by name ("conv1_1" … "conv5_4").
VGG19_LAYERS: dict[str, int] = _conv_indices()


class VGG19Features(nn.Module):
    """The convolutional part of VGG19, truncated at ``layer``; frozen and in eval mode.

    Args:
        layer: the last convolution kept, one of :data:`VGG19_LAYERS` ("conv2_2", "conv3_4",
            "conv4_4", "conv5_4", …).
        before_activation: stop right after that convolution instead of after its ReLU.

    The weights are random (PyTorch's default initialisation) until loaded; use
    :func:`load_vgg19_features` for the pretrained ones.
    """

    def __init__(self, layer: str = "conv5_4", before_activation: bool = False) -> None:
        super().__init__()
        if layer not in VGG19_LAYERS:
            raise ValueError(f"layer must be one of {sorted(VGG19_LAYERS)}, got layer={layer!r}")
        self.layer = layer
        self.before_activation = bool(before_activation)
        last = VGG19_LAYERS[layer] + (0 if before_activation else 1)
        modules: list[nn.Module] = []
        c = 3  # VGG's RGB input
        for item in _CFG:
            if item == "M":
                modules.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                modules += [nn.Conv2d(c, int(item), kernel_size=3, padding=1), nn.ReLU(inplace=False)]
                c = int(item)
        self.features = nn.Sequential(*modules[: last + 1])
        conv = self.features[VGG19_LAYERS[layer]]
        assert isinstance(conv, nn.Conv2d)
        self.out_channels = int(conv.out_channels)
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, C, H, W), C in {1, 3} → features (B, out_channels, H / 2**p, W / 2**p), p the
        number of max-pools before ``layer`` (floor division). A 1-channel field is repeated to
        three channels."""
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"expected input (B, 1 or 3, H, W), got {tuple(x.shape)}")
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return self.features(x)


def load_vgg19_features(
    path: str | os.PathLike[str], layer: str = "conv5_4", before_activation: bool = False
) -> VGG19Features:
    """A frozen :class:`VGG19Features` with the weights of a local state-dict file.

    The file is torchvision's full ``vgg19`` state dict (``features.N.*`` and ``classifier.*``;
    the classifier and the features beyond ``layer`` are ignored) or one holding only
    ``features.*``. Loaded with ``torch.load(weights_only=True)``.

    Raises:
        FileNotFoundError: ``path`` does not exist (nothing is ever downloaded).
        ValueError: naming the file, when it is not a readable state dict or when a needed
            key is missing or has the wrong shape.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"VGG19 weights file {path} does not exist; seedfield never downloads weights: pass "
            f"the path of torchvision's vgg19 state dict (vgg19-dcbb9e9d.pth)"
        )
    try:
        raw: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        raise ValueError(f"VGG19 weights file {path} is not a readable state dict: {exc}") from exc
    if not isinstance(raw, dict):
        raise ValueError(f"VGG19 weights file {path} does not hold a state dict (got {type(raw).__name__})")
    model = VGG19Features(layer, before_activation=before_activation)
    wanted = model.state_dict()
    for key, ref in wanted.items():
        if key not in raw:
            raise ValueError(f"VGG19 weights file {path} misses the key {key!r} "
                             f"(expected torchvision's vgg19 state dict with features.N.* keys)")
        value = raw[key]
        if not isinstance(value, Tensor) or value.shape != ref.shape:
            got = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise ValueError(f"VGG19 weights file {path}: {key!r} has shape {got}, expected {tuple(ref.shape)}")
    model.load_state_dict({k: raw[k] for k in wanted}, strict=True)
    model.requires_grad_(False)
    return model.eval()

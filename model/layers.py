"""Pieces shared by the model zoo: argument checks, the 'same'-padding convolution and
:class:`ZooModule`, the base class that validates and records a network's constructor arguments.

A zoo network calls one of the ``_record_*`` helpers right after ``super().__init__()``; they
check each argument in the order given (so the first invalid one is the one reported), store the
checked values in ``self._args`` (what :meth:`ZooModule.constructor_args` returns and checkpoints
keep) and set ``in_channels`` (and, for generators, ``out_channels`` and ``upsampling``). They
add no submodules, so state-dict keys are those of the network itself.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

__all__ = ["SizeRule", "ZooModule", "check_choice", "check_int", "same_conv"]

#: How a size argument is checked: an ``int`` is the minimum (:func:`check_int`), a tuple the
#: allowed values (:func:`check_choice`).
SizeRule = int | tuple[int, ...]


def check_int(name: str, value: Any, minimum: int) -> int:
    """``value`` as an int; ValueError unless it is an integer (not a bool) ≥ ``minimum``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {name}={value!r}")
    return int(value)


def check_choice(name: str, value: Any, allowed: tuple[int, ...]) -> int:
    """``value`` as an int; ValueError unless it is one of ``allowed`` (bools never are)."""
    if isinstance(value, bool) or value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {name}={value!r}")
    return int(value)


def _check_size(name: str, value: Any, rule: SizeRule) -> int:
    if isinstance(rule, tuple):
        return check_choice(name, value, rule)
    return check_int(name, value, rule)


def same_conv(c_in: int, c_out: int, k: int = 3, stride: int = 1, bias: bool = True) -> nn.Conv2d:
    """k×k convolution with zero padding ``k // 2`` ('same' size for odd ``k`` at stride 1)."""
    return nn.Conv2d(c_in, c_out, kernel_size=k, stride=stride, padding=k // 2, bias=bias)


class ZooModule(nn.Module):
    """Base of the zoo networks: records the checked constructor arguments and returns them.

    Attributes set by the ``_record_*`` helpers: ``_args`` (the checked keyword arguments, in
    signature order), ``in_channels``; generators also ``out_channels`` and ``upsampling``.
    """

    _args: dict[str, Any]
    in_channels: int

    def constructor_args(self) -> dict[str, Any]:
        """The keyword arguments that rebuild this architecture (stored in checkpoints)."""
        return dict(self._args)

    def _record_args(self, **sizes: tuple[Any, SizeRule]) -> dict[str, Any]:
        """Check ``name=(value, rule)`` in order, record them as ``_args`` (``in_channels``
        among them) and return a copy of the checked values."""
        self._args = {name: _check_size(name, value, rule) for name, (value, rule) in sizes.items()}
        self.in_channels = self._args["in_channels"]
        return dict(self._args)

    def _record_generator_args(
        self,
        in_channels: Any,
        out_channels: Any,
        upsampling: Any,
        allowed_upsampling: tuple[int, ...],
        **sizes: tuple[Any, SizeRule],
    ) -> dict[str, Any]:
        """The common generator header: check ``upsampling`` (one of ``allowed_upsampling``),
        ``in_channels`` and ``out_channels`` (≥ 1), then ``sizes`` as ``name=(value, rule)``;
        record ``_args`` in the order in, out, upsampling, sizes; set ``in_channels``,
        ``out_channels`` and ``upsampling``; return a copy of the checked values."""
        upsampling = check_choice("upsampling", upsampling, allowed_upsampling)
        self._args = {
            "in_channels": check_int("in_channels", in_channels, 1),
            "out_channels": check_int("out_channels", out_channels, 1),
            "upsampling": upsampling,
        }
        for name, (value, rule) in sizes.items():
            self._args[name] = _check_size(name, value, rule)
        self.in_channels = self._args["in_channels"]
        self.out_channels: int = self._args["out_channels"]
        self.upsampling: int = upsampling
        return dict(self._args)

    def _check_input(self, x: Tensor, spatial: str = "h, w") -> None:
        """ValueError unless ``x`` is (B, in_channels, ``spatial``)."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected input (B, {self.in_channels}, {spatial}), got {tuple(x.shape)}")

"""Geometric self-ensemble (EDSR's "+"): average a model over the 8 flips and transposes.

For each element t of the dihedral group of the square (identity, flips along each axis, the
transpose and their compositions) the input is transformed, run through the model and the
output transformed back: ``ŷ = ⅛ Σ_t t⁻¹(G(t(x)))``. Each pass keeps the batch size (the 8
passes run one after another, so memory stays that of one forward). The result is exactly
equivariant: ``ensemble(t(x)) = t(ensemble(x))`` for every t, whatever G is.

For geophysical fields this is **off by default**: north–south and east–west are not
interchangeable (the Gulf Stream, the equatorial band, the land mask), so a model trained on
one orientation is asked about fields it never saw. It can still smooth out a network's
directional artefacts; measure it before use.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

__all__ = ["TRANSFORMS", "apply_transform", "invert_transform", "self_ensemble"]

#: (transpose, flip rows, flip columns): the 8 elements, the identity first.
TRANSFORMS: tuple[tuple[bool, bool, bool], ...] = tuple(
    (t, fy, fx) for t in (False, True) for fy in (False, True) for fx in (False, True)
)


def apply_transform(x: Tensor, transform: tuple[bool, bool, bool]) -> Tensor:
    """x: (B, C, h, w) → transposed (h ↔ w) first, then flipped as asked."""
    transpose, flip_y, flip_x = transform
    if transpose:
        x = x.transpose(-1, -2)
    dims = [d for d, f in ((-2, flip_y), (-1, flip_x)) if f]
    return x.flip(dims) if dims else x


def invert_transform(y: Tensor, transform: tuple[bool, bool, bool]) -> Tensor:
    """The inverse of :func:`apply_transform`: undo the flips, then the transpose."""
    transpose, flip_y, flip_x = transform
    dims = [d for d, f in ((-2, flip_y), (-1, flip_x)) if f]
    if dims:
        y = y.flip(dims)
    return y.transpose(-1, -2) if transpose else y


def self_ensemble(model: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """⅛ Σ_t t⁻¹(model(t(x))): x (B, C, h, w) → the model's output shape (B, C', H, W).

    ``model`` must accept transposed inputs (any fully convolutional generator does).
    """
    total: Tensor | None = None
    for t in TRANSFORMS:
        y = invert_transform(model(apply_transform(x, t)).float(), t)
        total = y if total is None else total + y
    assert total is not None
    return total / len(TRANSFORMS)


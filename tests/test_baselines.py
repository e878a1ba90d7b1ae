"""Classical baselines (pipeline.baselines)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from scipy.interpolate import griddata
from scipy.spatial import cKDTree

from pipeline.baselines import (
    BASELINES,
    bicubic_from_bins,
    extrapolate_plane,
    fill_nearest,
    interpolate_scattered,
    nearest_from_bins,
)
from pipeline.binning import bin_mean

SHAPE = (96, 192)


def sensors(
    shape: tuple[int, int], fraction: float, seed: int = 0, corners: bool = False
) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = shape[0] * shape[1]
    index = rng.choice(n, round(fraction * n), replace=False)
    if corners:
        ny, nx = shape
        index = np.union1d(index, [0, nx - 1, (ny - 1) * nx, ny * nx - 1])
    return np.sort(index)


def grid(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    return np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)


def test_linear_reproduces_a_linear_field() -> None:
    y, x = grid(SHAPE)
    field = 3.0 + 0.05 * y - 0.02 * x
    index = sensors(SHAPE, 0.04, corners=True)  # hull = the whole grid
    for method in ("linear", "cubic"):
        out = interpolate_scattered(index, field.ravel()[index], SHAPE, method=method)
        assert out.shape == SHAPE and out.dtype == np.float32
        np.testing.assert_allclose(out, field, atol=1e-4)


def test_cubic_reproduces_a_smooth_field() -> None:
    y, x = grid(SHAPE)
    field = np.sin(2 * np.pi * x / 64) * np.cos(2 * np.pi * y / 48)  # scales ≫ sensor spacing
    index = sensors(SHAPE, 0.04, seed=1)  # ~10 sensors per 16×16 bin
    value = field.ravel()[index]
    cubic = interpolate_scattered(index, value, SHAPE, "cubic")
    linear = interpolate_scattered(index, value, SHAPE, "linear")
    inner = (slice(8, -8), slice(8, -8))
    err_cubic = np.sqrt(np.mean((cubic - field)[inner] ** 2))
    err_linear = np.sqrt(np.mean((linear - field)[inner] ** 2))
    assert err_cubic < 0.02  # amplitude 1
    assert err_cubic < 0.5 * err_linear
    # interpolants pass through the data
    np.testing.assert_allclose(cubic.ravel()[index], value, atol=1e-5)


@pytest.mark.parametrize("method", ["cubic", "linear"])
def test_matches_griddata_inside_hull_and_nearest_outside(method: str) -> None:
    y, x = grid(SHAPE)
    field = np.sin(x / 7) * np.cos(y / 5)
    index = sensors(SHAPE, 0.03, seed=5)
    value = field.ravel()[index]
    points = np.column_stack(np.divmod(index, SHAPE[1])).astype(float)
    ref = griddata(points, value, (y, x), method=method)
    near = griddata(points, value, (y, x), method="nearest")
    ref = np.where(np.isnan(ref), near, ref)
    out = interpolate_scattered(index, value, SHAPE, method=method)  # type: ignore[arg-type]
    np.testing.assert_allclose(out, ref, atol=1e-6)


def test_outside_hull_is_nearest_and_nearest_method() -> None:
    index = np.array([10 * SHAPE[1] + 10, 10 * SHAPE[1] + 50, 40 * SHAPE[1] + 30])
    value = np.array([1.0, 2.0, 3.0])
    out = interpolate_scattered(index, value, SHAPE, "cubic")
    assert np.isfinite(out).all()
    assert out[0, 0] == 1.0 and out[-1, 0] == 3.0 and out[0, -1] == 2.0
    near = interpolate_scattered(index, value, SHAPE, "nearest")
    np.testing.assert_array_equal(near.ravel()[index], value)
    assert set(np.unique(near)) == {1.0, 2.0, 3.0}


def test_plane_extrapolation_carries_a_gradient_past_the_outermost_sensors() -> None:
    """Beyond the hull a plane through the nearest sensors continues a front that the nearest
    sensor's value stops; inside the hull the field is the cubic one, and the sensors exact."""
    y, x = grid(SHAPE)
    field = 10.0 + 0.08 * y - 0.05 * x + 0.5 * np.sin(x / 15)
    rng = np.random.default_rng(3)
    inner = np.flatnonzero(((y > 12) & (y < SHAPE[0] - 12) & (x > 12) & (x < SHAPE[1] - 12)).ravel())
    index = np.sort(rng.choice(inner, 700, replace=False))
    value = field.ravel()[index]
    cubic = interpolate_scattered(index, value, SHAPE, "cubic")
    plane = interpolate_scattered(index, value, SHAPE, "cubic", outside="plane")
    points = np.column_stack(np.divmod(index, SHAPE[1])).astype(float)
    outside = np.isnan(griddata(points, value, (y, x), method="linear"))
    assert outside.sum() > 3000
    np.testing.assert_array_equal(plane[~outside], cubic[~outside])
    np.testing.assert_allclose(plane.ravel()[index], value, atol=1e-5)
    err = {name: np.sqrt(np.mean((f - field)[outside] ** 2)) for name, f in (("nearest", cubic), ("plane", plane))}
    assert err["plane"] < 0.5 * err["nearest"], err
    # an exactly planar field is continued exactly (within the clamp to the neighbours' range)
    flat = 2.0 + 0.01 * y + 0.02 * x
    out = interpolate_scattered(index, flat.ravel()[index], SHAPE, "linear", outside="plane")
    near_hull = outside & (ndimage.distance_transform_edt(outside) <= 3)
    np.testing.assert_allclose(out[near_hull], flat[near_hull], atol=1e-4)


def test_plane_extrapolation_of_collinear_neighbours_is_the_nearest_value() -> None:
    points = np.array([[0.0, float(c)] for c in range(12)])
    value = np.arange(12.0)
    out = extrapolate_plane(points, value, np.array([[5.0, 3.0], [-2.0, 11.2]]))
    np.testing.assert_array_equal(out, [3.0, 11.0])
    # and the fit never leaves the neighbours' range widened by half of it
    rng = np.random.default_rng(0)
    pts = rng.uniform(0, 10, (40, 2))
    vals = rng.normal(size=40)
    far = extrapolate_plane(pts, vals, np.array([[200.0, -150.0]]))
    _, near = cKDTree(pts).query([[200.0, -150.0]], k=12)
    lo, hi = vals[near].min(), vals[near].max()
    assert lo - 0.5 * (hi - lo) - 1e-12 <= far[0] <= hi + 0.5 * (hi - lo) + 1e-12


def test_degenerate_inputs() -> None:
    with pytest.raises(ValueError, match="no sensors"):
        interpolate_scattered(np.array([], int), np.array([]), SHAPE)
    # collinear sensors: no triangulation, nearest fill
    index = np.array([5, 6, 7, 8])
    out = interpolate_scattered(index, np.arange(4.0), SHAPE, "cubic")
    assert np.isfinite(out).all()


def test_periodic_lon_removes_the_seam() -> None:
    shape = (64, 256)
    y, x = grid(shape)
    field = np.sin(2 * np.pi * x / shape[1] * 3) + 0.3 * np.cos(2 * np.pi * y / 64)
    index = sensors(shape, 0.04, seed=2)
    value = field.ravel()[index]
    plain = interpolate_scattered(index, value, shape, "cubic", periodic_lon=False)
    wrapped = interpolate_scattered(index, value, shape, "cubic", periodic_lon=True)
    edges = np.r_[0:3, shape[1] - 3 : shape[1]]
    rows = slice(4, -4)
    err_plain = np.abs(plain - field)[rows][:, edges].max()
    err_wrapped = np.abs(wrapped - field)[rows][:, edges].max()
    interior = np.abs(wrapped - field)[rows].max()
    assert err_wrapped < err_plain
    assert err_wrapped <= interior + 1e-6
    # the jump across the seam is the field's own jump
    seam = wrapped[rows, 0] - wrapped[rows, -1]
    true = field[rows, 0] - field[rows, -1]
    assert np.abs(seam - true).max() < 0.02


def test_bicubic_of_constant_is_constant() -> None:
    lr = np.full((6, 12), 17.5)
    lr[2, 3] = np.nan  # empty bin
    for periodic in (False, True):
        out = bicubic_from_bins(lr, 16, periodic_lon=periodic)
        assert out.shape == (96, 192) and out.dtype == np.float32
        np.testing.assert_allclose(out, 17.5, rtol=1e-6)


def test_bicubic_equals_2d_zoom_and_wraps() -> None:
    rng = np.random.default_rng(3)
    lr = ndimage.gaussian_filter(rng.normal(size=(6, 12)), 1.0, mode="wrap")
    ref = ndimage.zoom(lr, 8, order=3, mode="nearest", grid_mode=True)
    np.testing.assert_allclose(bicubic_from_bins(lr, 8), ref, rtol=1e-5, atol=1e-6)
    # periodic: shifting the bins along longitude shifts the output by whole bins
    a = bicubic_from_bins(lr, 8, periodic_lon=True)
    b = bicubic_from_bins(np.roll(lr, 1, axis=1), 8, periodic_lon=True)
    np.testing.assert_allclose(np.roll(a, 8, axis=1), b, atol=1e-5)


def test_bicubic_recovers_a_smooth_field_from_bins() -> None:
    y, x = grid(SHAPE)
    field = np.sin(2 * np.pi * x / 96) * np.cos(2 * np.pi * y / 96)
    index = np.arange(field.size)
    lr, _ = bin_mean(index, field.ravel(), SHAPE, 8)
    bic = bicubic_from_bins(lr, 8)
    rep = nearest_from_bins(lr, 8)
    inner = (slice(8, -8), slice(8, -8))
    assert np.abs(bic - field)[inner].max() < np.abs(rep - field)[inner].max()


def test_nearest_from_bins_is_block_repeat_with_fill() -> None:
    lr = np.array([[1.0, np.nan, 3.0], [4.0, 5.0, 6.0]])
    out = nearest_from_bins(lr, 4)
    assert out.shape == (8, 12) and out.dtype == np.float32
    np.testing.assert_array_equal(out[:4, :4], 1.0)
    np.testing.assert_array_equal(out[4:, 8:], 6.0)
    assert np.isfinite(out).all()
    assert out[0, 4] in (1.0, 3.0, 5.0)  # nearest valid bin, distance 1


def test_fill_nearest_periodic() -> None:
    field = np.array([[np.nan, np.nan, np.nan, 2.0, np.nan, np.nan, np.nan, 9.0]])
    assert fill_nearest(field)[0, 0] == 2.0
    assert fill_nearest(field, periodic_lon=True)[0, 0] == 9.0
    with pytest.raises(ValueError):
        fill_nearest(np.full((2, 2), np.nan))


def test_registry_runs_every_baseline() -> None:
    y, x = grid(SHAPE)
    field = 20 + np.sin(x / 10) * np.cos(y / 12)
    index = sensors(SHAPE, 0.04, seed=4)
    value = field.ravel()[index]
    lr, _ = bin_mean(index, value, SHAPE, 16)
    assert set(BASELINES) >= {"cubic", "linear", "bins", "bicubic"}
    for name, fn in BASELINES.items():
        out = fn(index=index, value=value, shape=SHAPE, lr_mean=lr, bin_size=16)
        assert out.shape == SHAPE and out.dtype == np.float32, name
        assert np.isfinite(out).all(), name
        assert np.sqrt(np.mean((out - field) ** 2)) < 0.6, name

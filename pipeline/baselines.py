"""Classical reconstructions on the native grid, the baselines of DESIGN §4.

* :func:`interpolate_scattered` — piecewise cubic (Clough–Tocher), linear or nearest
  interpolation of the scattered sensors at their exact positions (the paper's main baseline).
* :func:`nearest_from_bins` — the LR bin field itself, repeated onto the native grid.
* :func:`bicubic_from_bins` — cubic B-spline upsampling of the LR bin field.

Coordinates are native cell centres in (row, col) units: the grid is treated as isotropic in
index space, which for a regular lat/lon grid means isotropic in degrees. None of these
functions masks land; callers apply the land mask to every output.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import numpy as np
from scipy import ndimage
from scipy.interpolate import CloughTocher2DInterpolator, LinearNDInterpolator
from scipy.spatial import Delaunay, QhullError, cKDTree

__all__ = [
    "BASELINES",
    "bicubic_from_bins",
    "extrapolate_plane",
    "fill_nearest",
    "interpolate_scattered",
    "nearest_from_bins",
    "periodic_margin",
    "sensor_arrays",
]

Method = Literal["cubic", "linear", "nearest"]


def periodic_margin(n_points: int, shape: tuple[int, int]) -> int:
    """Columns replicated across the east/west edge for a periodic interpolation.

    Five mean sensor spacings (``sqrt(ny·nx/n)``), at least 16 columns and at most ``nx``: wide
    enough that the triangles and Clough–Tocher gradient estimates of cells near the seam see
    the same neighbours as they would in the interior.
    """
    ny, nx = shape
    spacing = math.sqrt(ny * nx / max(n_points, 1))
    return int(min(nx, max(16, math.ceil(5 * spacing))))


def sensor_arrays(index: np.ndarray, value: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Flat int64 indices and float64 values of one step's sensors, checked: same length, not
    empty (``what`` names the operation in the message)."""
    index = np.asarray(index, dtype=np.int64).ravel()
    value = np.asarray(value, dtype=np.float64).ravel()
    if index.shape != value.shape:
        raise ValueError(f"index {index.shape} and value {value.shape} differ in length")
    if index.size == 0:
        raise ValueError(f"no sensors to {what}")
    return index, value


def interpolate_scattered(
    index: np.ndarray,
    value: np.ndarray,
    shape: tuple[int, int],
    method: Method = "cubic",
    periodic_lon: bool = False,
    box: tuple[int, int, int, int] | None = None,
    outside: Literal["nearest", "plane"] = "nearest",
) -> np.ndarray:
    """Interpolate scattered sensors onto every native cell (or the cells of ``box``).

    Args:
        index: int (n,), flat row-major indices into a grid of ``shape``.
        value: float (n,), sensor values.
        shape: ``(ny, nx)`` of the native grid.
        method: ``"cubic"`` (C¹ Clough–Tocher on the Delaunay triangulation, as
            ``scipy.interpolate.griddata(method="cubic")``), ``"linear"`` (barycentric on the
            same triangulation) or ``"nearest"``.
        periodic_lon: the last axis wraps (global grid): sensors within
            :func:`periodic_margin` columns of either edge are replicated across the other edge
            before triangulating, so the field has no seam at the date line.
        box: ``(row0, row1, col0, col1)``: only these cells are computed (from every sensor,
            so the values equal the whole field's ``[row0:row1, col0:col1]``).

        outside: what cells outside the sensors' convex hull (where cubic/linear are undefined)
            take: ``"nearest"``, the nearest sensor's value (Euclidean in index space, replicated
            sensors included; the classical baselines), or ``"plane"``, :func:`extrapolate_plane`
            (the field's local gradient carried on past the outermost sensors).

    Returns:
        float32 (ny, nx), or the box's shape.
    """
    ny, nx = (int(s) for s in shape)
    index, value = sensor_arrays(index, value, "interpolate")
    if method not in ("cubic", "linear", "nearest"):
        raise ValueError(f"unknown method {method!r}; use 'cubic', 'linear' or 'nearest'")
    rows, cols = np.divmod(index, nx)
    points = np.column_stack([rows, cols]).astype(np.float64)
    if periodic_lon:
        margin = periodic_margin(index.size, (ny, nx))
        west = cols < margin  # replicated east of the grid
        east = cols >= nx - margin  # replicated west of the grid
        points = np.concatenate(
            [points, points[west] + [0.0, nx], points[east] - [0.0, nx]], axis=0
        )
        value = np.concatenate([value, value[west], value[east]])

    r0, r1, c0, c1 = box if box is not None else (0, ny, 0, nx)
    if not (0 <= r0 < r1 <= ny and 0 <= c0 < c1 <= nx):
        raise ValueError(f"box {box} is not inside the grid {shape}")
    grid_r, grid_c = np.mgrid[r0:r1, c0:c1]
    query = np.column_stack([grid_r.ravel(), grid_c.ravel()]).astype(np.float64)

    out = np.full(query.shape[0], np.nan)
    if method != "nearest" and points.shape[0] >= 3:
        try:
            tri = Delaunay(points)
        except QhullError:  # all sensors collinear: only nearest is defined
            tri = None
        if tri is not None:
            _preset_transform(tri)
            interp = (
                CloughTocher2DInterpolator(tri, value)
                if method == "cubic"
                else LinearNDInterpolator(tri, value)
            )
            inside = _inside_hull(tri, (ny, nx)).reshape(ny, nx)[r0:r1, c0:c1].ravel()
            out[inside] = interp(query[inside])
    missing = np.isnan(out)
    if missing.any() and outside == "plane" and method != "nearest":
        out[missing] = extrapolate_plane(points, value, query[missing])
    elif missing.any():
        _, nearest = cKDTree(points).query(query[missing])
        out[missing] = value[nearest]
    return out.reshape(r1 - r0, c1 - c0).astype(np.float32)


#: Sensors a plane extrapolation is fitted to (chosen on the SST sample's validation days, cells
#: outside the hull: 6 → 0.70 °C RMSE, 12 → 0.56, 24 → 0.60, against 1.08 for the nearest sensor).
PLANE_NEIGHBOURS = 12


def extrapolate_plane(points: np.ndarray, value: np.ndarray, query: np.ndarray,
                      k: int = PLANE_NEIGHBOURS) -> np.ndarray:
    """float64 (m,): at each query point, the plane fitted by weighted least squares (weight
    ``1 / (1 + distance)``) to its ``k`` nearest points, evaluated there and kept within the
    range of those points' values widened by half of it on each side.

    For cells beyond the outermost sensors a field's gradient usually goes on (a front, a
    coast's warm band); the nearest sensor's value stops it dead, which is most of an
    interpolant's error at a domain's edge. Where the neighbours are collinear (no plane is
    defined) the nearest point's value is taken.
    """
    points = np.asarray(points, np.float64)
    value = np.asarray(value, np.float64)
    query = np.asarray(query, np.float64).reshape(-1, 2)
    k = min(k, points.shape[0])
    dist, near = cKDTree(points).query(query, k=k)
    dist, near = dist.reshape(len(query), k), near.reshape(len(query), k)
    design = np.concatenate([np.ones((*near.shape, 1)), points[near] - query[:, None, :]], axis=2)  # (m, k, 3)
    weight = 1.0 / (1.0 + dist)
    normal = np.einsum("mki,mk,mkj->mij", design, weight, design)
    rhs = np.einsum("mki,mk,mk->mi", design, weight, value[near])
    nearest = value[near[:, 0]]
    ok = k >= 3
    if ok:
        ok_rows = np.linalg.cond(normal) < 1e8
        out = nearest.copy()
        if ok_rows.any():
            out[ok_rows] = np.linalg.solve(normal[ok_rows], rhs[ok_rows][..., None])[:, 0, 0]
        lo, hi = value[near].min(axis=1), value[near].max(axis=1)
        return np.clip(out, lo - 0.5 * (hi - lo), hi + 0.5 * (hi - lo))
    return nearest


def _barycentric_transforms(tri: Delaunay) -> np.ndarray:
    """``Delaunay.transform`` for a 2-D triangulation, computed with numpy.

    float64 (nsimplex, 3, 2): ``[:, :2, :2]`` is ``T⁻¹`` with ``T[i, j] = (r_j − r_2)_i`` and
    ``[:, 2, :]`` is ``r_2`` (vertex 2), so that ``c = T⁻¹ (x − r_2)``; triangles whose
    reciprocal 1-norm condition number is below ``1000·eps`` get NaN, as in scipy.
    """
    verts = tri.points[tri.simplices]  # (nsimplex, 3, 2)
    r2 = verts[:, 2, :]
    a = verts[:, 0, 0] - r2[:, 0]  # T = [[a, b], [c, d]]
    b = verts[:, 1, 0] - r2[:, 0]
    c = verts[:, 0, 1] - r2[:, 1]
    d = verts[:, 1, 1] - r2[:, 1]
    det = a * d - b * c
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.stack([np.stack([d, -b], -1), np.stack([-c, a], -1)], axis=1) / det[:, None, None]
        norm_t = np.maximum(np.abs(a) + np.abs(c), np.abs(b) + np.abs(d))
        norm_inv = np.abs(inv).sum(axis=1).max(axis=1)
        rcond = 1.0 / (norm_t * norm_inv)
    out = np.concatenate([inv, r2[:, None, :]], axis=1)
    singular = ~(rcond >= 1000 * np.finfo(np.float64).eps)
    out[singular] = np.nan
    return out


def _preset_transform(tri: Delaunay) -> None:
    """Fill ``tri.transform`` (lazily computed by scipy) with the numpy version above.

    scipy computes it with one tiny LAPACK call per triangle; with a multi-threaded OpenBLAS on
    a busy machine that took 0.05 to 5 s for a global day instead of ~10 ms. This relies on the
    private cache attribute ``_transform`` and does nothing when it is absent or already set,
    so a future scipy only loses the speed-up.
    """
    if tri.ndim == 2 and getattr(tri, "_transform", False) is None:
        tri._transform = _barycentric_transforms(tri)


def _inside_hull(tri: Delaunay, shape: tuple[int, int], tol: float = 1e-6) -> np.ndarray:
    """Flat bool (ny·nx,): grid cells inside (or on) the triangulation's convex hull.

    Per grid row the convex hull covers one interval of columns, found by intersecting the row
    with the hull edges. Only these cells are handed to the interpolator: Qhull's point location
    is fast inside the hull but can take a long walk for points outside it, which made the
    global-day cost swing between 0.2 and 7 s depending on the sensor draw.
    """
    ny, nx = shape
    edges = tri.points[tri.convex_hull]  # (E, 2 ends, (row, col))
    r0, c0 = edges[:, 0, 0], edges[:, 0, 1]
    r1, c1 = edges[:, 1, 0], edges[:, 1, 1]
    rows = np.arange(ny, dtype=np.float64)[:, None]
    dr = r1 - r0
    flat = np.abs(dr) < tol
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (rows - r0) / np.where(flat, 1.0, dr)
    crosses = ~flat & (t >= -tol) & (t <= 1 + tol)
    x_cross = c0 + np.clip(t, 0.0, 1.0) * (c1 - c0)
    on_flat = flat & (np.abs(rows - r0) < tol)
    lo = np.minimum(
        np.where(crosses, x_cross, np.inf).min(axis=1),
        np.where(on_flat, np.minimum(c0, c1), np.inf).min(axis=1),
    )
    hi = np.maximum(
        np.where(crosses, x_cross, -np.inf).max(axis=1),
        np.where(on_flat, np.maximum(c0, c1), -np.inf).max(axis=1),
    )
    cols = np.arange(nx, dtype=np.float64)[None, :]
    return ((cols >= lo[:, None] - tol) & (cols <= hi[:, None] + tol)).ravel()


def fill_nearest(field: np.ndarray, periodic_lon: bool = False) -> np.ndarray:
    """Replace NaN cells by the value of the nearest finite cell (Euclidean in index space).

    Args:
        field: float (ny, nx) with at least one finite cell.
        periodic_lon: distances wrap along the last axis.

    Returns:
        float32 (ny, nx), NaN-free.
    """
    field = np.asarray(field, dtype=np.float32)
    empty = ~np.isfinite(field)
    if not empty.any():
        return field.copy()
    if empty.all():
        raise ValueError("field has no finite cell to fill from")
    nx = field.shape[1]
    work = np.concatenate([field, field, field], axis=1) if periodic_lon else field
    work_empty = ~np.isfinite(work)
    _, (ii, jj) = ndimage.distance_transform_edt(work_empty, return_indices=True)
    filled = work[ii, jj]
    if periodic_lon:
        filled = filled[:, nx : 2 * nx]
    return filled.astype(np.float32)


def bicubic_from_bins(lr_mean: np.ndarray, factor: int, periodic_lon: bool = False) -> np.ndarray:
    """Cubic B-spline upsampling of the LR bin means onto the native grid.

    Empty bins (NaN) are first filled with the nearest valid bin; the filled field is then
    zoomed with ``scipy.ndimage.zoom(order=3, grid_mode=True)`` so that bin centres map to
    block centres. Boundary mode is ``"nearest"`` along latitude and, when ``periodic_lon``,
    ``"grid-wrap"`` along longitude (the zoom is separable, so it is done one axis at a time
    with the mode of that axis; the result equals the 2-D tensor-product zoom).

    Args:
        lr_mean: float (ny, nx) bin means, NaN where empty.
        factor: native cells per bin side.
        periodic_lon: the last axis wraps.

    Returns:
        float32 (ny·factor, nx·factor).
    """
    filled = fill_nearest(lr_mean, periodic_lon=periodic_lon).astype(np.float64)
    if factor == 1:
        return filled.astype(np.float32)
    out = ndimage.zoom(filled, (factor, 1), order=3, mode="nearest", grid_mode=True)
    out = ndimage.zoom(
        out, (1, factor), order=3, mode="grid-wrap" if periodic_lon else "nearest", grid_mode=True
    )
    return out.astype(np.float32)


def nearest_from_bins(lr_mean: np.ndarray, factor: int, periodic_lon: bool = False) -> np.ndarray:
    """The LR bin field itself on the native grid: each bin repeated over its block.

    Empty bins take the value of the nearest valid bin. Returns float32 (ny·factor, nx·factor).
    """
    filled = fill_nearest(lr_mean, periodic_lon=periodic_lon)
    return np.repeat(np.repeat(filled, factor, axis=0), factor, axis=1)


def _cubic(
    *,
    index: np.ndarray,
    value: np.ndarray,
    shape: tuple[int, int],
    periodic_lon: bool = False,
    **_: object,
) -> np.ndarray:
    return interpolate_scattered(index, value, shape, "cubic", periodic_lon)


def _linear(
    *,
    index: np.ndarray,
    value: np.ndarray,
    shape: tuple[int, int],
    periodic_lon: bool = False,
    **_: object,
) -> np.ndarray:
    return interpolate_scattered(index, value, shape, "linear", periodic_lon)


def _bins(
    *, lr_mean: np.ndarray, bin_size: int, periodic_lon: bool = False, **_: object
) -> np.ndarray:
    return nearest_from_bins(lr_mean, bin_size, periodic_lon)


def _bicubic(
    *, lr_mean: np.ndarray, bin_size: int, periodic_lon: bool = False, **_: object
) -> np.ndarray:
    return bicubic_from_bins(lr_mean, bin_size, periodic_lon)


BASELINES: dict[str, Callable[..., np.ndarray]] = {
    "cubic": _cubic,
    "linear": _linear,
    "bins": _bins,
    "bicubic": _bicubic,
}
"""Baselines by name, all called with keywords only and returning float32 (ny, nx) on the native
grid: ``index``, ``value`` (the day's sensors), ``shape`` (native grid), ``lr_mean`` (LR bin
means), ``bin_size`` and optionally ``periodic_lon``. Keywords a baseline does not use are
ignored, so one call site serves them all."""

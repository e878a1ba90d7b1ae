"""Regular latitude/longitude grids, geographic regions, and re-ordering between them.

Two longitude conventions occur in archives: 0..360 (OISST) and -180..180 (many regional
products).  A :class:`Grid` keeps the file's own convention; :func:`align_to_grid` re-orders data
onto another grid with the same cells, whichever convention either uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from pipeline.errors import GridMismatchError

LonConvention = Literal["0-360", "-180-180"]


def _fmt(value: float) -> str:
    """Short decimal text for a coordinate (no float noise, no trailing zeros)."""
    return np.format_float_positional(round(float(value), 4), trim="-")


def _circular_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Absolute longitude difference in degrees, taking the 360° wrap into account."""
    return np.abs((np.asarray(a) - np.asarray(b) + 180.0) % 360.0 - 180.0)


@dataclass(frozen=True)
class Region:
    """A latitude/longitude box in degrees.

    ``west``/``east`` may be given in either -180..180 or 0..360; ``west > east`` means the box
    crosses the antimeridian (e.g. ``west=170, east=-170``) or 0° (``west=350, east=10``).  A
    span of 360° or more (``0,360`` or ``-180,180``) is the whole globe in longitude.  Bounds are
    inclusive and apply to cell centres.
    """

    south: float
    north: float
    west: float
    east: float

    def __post_init__(self) -> None:
        for name in ("south", "north", "west", "east"):
            value = getattr(self, name)
            if not np.isfinite(value):
                raise ValueError(f"region {name} must be a finite number, got {value!r}")
            object.__setattr__(self, name, float(value))
        if not -90.0 <= self.south < self.north <= 90.0:
            raise ValueError(
                f"region needs -90 <= south < north <= 90, got south={self.south}, north={self.north}"
            )
        for name in ("west", "east"):
            if not -180.0 <= getattr(self, name) <= 360.0:
                raise ValueError(f"region {name} must lie in -180..360, got {getattr(self, name)}")
        if self.lon_span == 0.0:
            raise ValueError(f"region has zero longitude width (west = east = {self.west})")

    @classmethod
    def parse(cls, text: str) -> Region:
        """Parse ``"S,N,W,E"`` (degrees), e.g. ``"-10,30,120,-100"``."""
        parts = [p.strip() for p in str(text).split(",")]
        if len(parts) != 4:
            raise ValueError(
                f"region must be 'S,N,W,E' (four comma-separated degrees, e.g. '-10,30,120,250'), "
                f"got {text!r}"
            )
        try:
            south, north, west, east = (float(p) for p in parts)
        except ValueError:
            raise ValueError(
                f"region must be 'S,N,W,E' with numbers in degrees, got {text!r}"
            ) from None
        return cls(south, north, west, east)

    @property
    def lon_span(self) -> float:
        """Longitude width in degrees, 0 < span <= 360."""
        if self.east - self.west >= 360.0:
            return 360.0
        return float((self.east - self.west) % 360.0)

    @property
    def is_global_lon(self) -> bool:
        """True when the region covers every longitude."""
        return self.lon_span >= 360.0

    def contains_lat(self, lat: np.ndarray) -> np.ndarray:
        """Boolean mask of the latitudes inside the region."""
        lat = np.asarray(lat, dtype=np.float64)
        return (lat >= self.south) & (lat <= self.north)

    def contains_lon(self, lon: np.ndarray) -> np.ndarray:
        """Boolean mask of the longitudes inside the region (either convention)."""
        lon = np.asarray(lon, dtype=np.float64)
        if self.is_global_lon:
            return np.ones(lon.shape, dtype=bool)
        offset = (lon - self.west) % 360.0
        return offset <= self.lon_span + 1e-9

    def __str__(self) -> str:
        return f"{_fmt(self.south)},{_fmt(self.north)},{_fmt(self.west)},{_fmt(self.east)}"


@dataclass(frozen=True, eq=False)
class Grid:
    """A regular-enough lat/lon grid of cell centres.

    ``lat`` is float64 strictly ascending (south → north); ``lon`` is float64 strictly ascending
    within the file's own convention (0..360 or -180..180).  The arrays are copied and made
    read-only.
    """

    lat: np.ndarray
    lon: np.ndarray

    def __post_init__(self) -> None:
        for name, low, high in (("lat", -90.0, 90.0), ("lon", -180.0, 360.0)):
            arr = np.array(getattr(self, name), dtype=np.float64, copy=True)
            if arr.ndim != 1 or arr.size == 0:
                raise ValueError(f"grid {name} must be a non-empty 1-D array, got shape {arr.shape}")
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"grid {name} has non-finite values")
            if arr.size > 1 and not np.all(np.diff(arr) > 0):
                raise ValueError(f"grid {name} must be strictly ascending")
            if arr[0] < low - 1e-6 or arr[-1] > high + 1e-6:
                raise ValueError(f"grid {name} must lie in {low:g}..{high:g}, got {arr[0]}..{arr[-1]}")
            arr.flags.writeable = False
            object.__setattr__(self, name, arr)
        if self.lon[-1] - self.lon[0] >= 360.0:
            raise ValueError("grid lon spans 360° or more (duplicate cells)")

    @property
    def shape(self) -> tuple[int, int]:
        """``(nlat, nlon)``."""
        return (self.lat.size, self.lon.size)

    @property
    def lon_convention(self) -> LonConvention:
        """``"-180-180"`` if any longitude is negative, else ``"0-360"``."""
        return "-180-180" if self.lon[0] < 0.0 else "0-360"

    @property
    def is_global_lon(self) -> bool:
        """True when the longitudes are uniform and cover 360° at their spacing."""
        n = self.lon.size
        if n < 2:
            return False
        steps = np.diff(self.lon)
        step = float(steps.mean())
        uniform = float(np.ptp(steps)) <= max(1e-3 * step, 1e-4)  # float32 coordinates
        return uniform and abs(n * step - 360.0) <= 1e-3 * step

    def matches(self, other: Grid, atol: float = 1e-4) -> bool:
        """True when ``other`` has the same cells, in either longitude convention."""
        if self.shape != other.shape:
            return False
        if not np.allclose(self.lat, other.lat, rtol=0.0, atol=atol):
            return False
        return _lon_permutation(other.lon, self.lon, atol) is not None

    def describe(self) -> str:
        """Human summary, e.g. ``"720×1440, lat -89.875…89.875, lon 0.125…359.875"``."""
        nlat, nlon = self.shape
        return (
            f"{nlat}×{nlon}, lat {_fmt(self.lat[0])}…{_fmt(self.lat[-1])}, "
            f"lon {_fmt(self.lon[0])}…{_fmt(self.lon[-1])}"
        )

    def __repr__(self) -> str:
        return f"Grid({self.describe()})"


def _lon_permutation(src_lon: np.ndarray, dst_lon: np.ndarray, atol: float) -> np.ndarray | None:
    """Indices ``idx`` with ``src_lon[idx] ≈ dst_lon`` modulo 360, or None if no such bijection."""
    src_lon = np.asarray(src_lon, dtype=np.float64)
    dst_lon = np.asarray(dst_lon, dtype=np.float64)
    if src_lon.shape != dst_lon.shape:
        return None
    if np.allclose(src_lon, dst_lon, rtol=0.0, atol=atol):
        return np.arange(src_lon.size)
    wrapped = src_lon % 360.0
    order = np.argsort(wrapped, kind="stable")
    sorted_src = wrapped[order]
    target = dst_lon % 360.0
    right = np.searchsorted(sorted_src, target) % sorted_src.size
    left = (right - 1) % sorted_src.size
    d_right = _circular_distance(sorted_src[right], target)
    d_left = _circular_distance(sorted_src[left], target)
    nearest = np.where(d_left < d_right, left, right)
    if np.max(np.minimum(d_left, d_right)) > atol:
        return None
    idx = order[nearest]
    if np.unique(idx).size != idx.size:
        return None
    return idx


def align_to_grid(values: np.ndarray, src: Grid, dst: Grid, source: str) -> np.ndarray:
    """Return ``values`` (``(..., nlat, nlon)`` on ``src``) re-ordered onto ``dst``.

    Longitudes are rolled/re-ordered between conventions; no interpolation is done.  Raises
    :class:`GridMismatchError` naming ``source`` and both grids when the cells differ.
    """
    values = np.asarray(values)
    if values.ndim < 2 or values.shape[-2:] != src.shape:
        raise GridMismatchError(
            source, f"data shape {values.shape} does not fit its grid ({src.describe()})"
        )
    mismatch = GridMismatchError(
        source, f"grid {src.describe()} does not match the expected grid {dst.describe()}"
    )
    if src.shape != dst.shape or not np.allclose(src.lat, dst.lat, rtol=0.0, atol=1e-4):
        raise mismatch
    idx = _lon_permutation(src.lon, dst.lon, 1e-4)
    if idx is None:
        raise mismatch
    if np.array_equal(idx, np.arange(idx.size)):
        return values
    return values[..., idx]


def crop_indices(grid: Grid, region: Region) -> tuple[np.ndarray, np.ndarray, Grid]:
    """Cells of ``grid`` inside ``region``: ``(lat_index, lon_index, cropped_grid)``.

    ``values[..., lat_index, :][..., lon_index]`` gives the data on ``cropped_grid``.  The crop
    keeps the grid's longitude convention when its cells are contiguous in it; a global grid
    switches to the other convention when that makes a box across 0° (or across 180°)
    contiguous.  Raises ValueError when no cell centre falls inside the region.
    """
    lat_index = np.flatnonzero(region.contains_lat(grid.lat))
    inside = region.contains_lon(grid.lon)
    lon_index = np.flatnonzero(inside)
    if lat_index.size == 0 or lon_index.size == 0:
        raise ValueError(f"region {region} contains no cell centre of the grid {grid.describe()}")
    lon_values = grid.lon[lon_index]
    contiguous = lon_index[-1] - lon_index[0] + 1 == lon_index.size
    if not contiguous and grid.is_global_lon:
        if grid.lon_convention == "0-360":
            other = (grid.lon + 180.0) % 360.0 - 180.0
        else:
            other = grid.lon % 360.0
        order = np.argsort(other, kind="stable")
        positions = np.flatnonzero(inside[order])
        if positions[-1] - positions[0] + 1 == positions.size:
            lon_index = order[positions]
            lon_values = other[lon_index]
    return lat_index, lon_index, Grid(grid.lat[lat_index], lon_values)


def _open_netcdf(path: str, what: str) -> Any:
    import netCDF4

    try:
        return netCDF4.Dataset(path)
    except OSError as exc:
        raise ValueError(f"{path}: cannot open the {what} ({exc}); expected a netCDF file") from None


def _coordinates(ds: Any, path: str) -> dict[str, tuple[str, np.ndarray]]:
    """The file's 1-D latitude and longitude: ``{"lat": (dim name, values), "lon": …}``."""
    from pipeline.readers import is_lat, is_lon

    found: dict[str, tuple[str, np.ndarray]] = {}
    for name, var in ds.variables.items():
        if var.ndim != 1:
            continue
        kind = "lat" if is_lat(name, var) else "lon" if is_lon(name, var) else None
        if kind and kind not in found:
            found[kind] = (var.dimensions[0], np.asarray(var[:], np.float64))
    if set(found) != {"lat", "lon"}:
        raise ValueError(f"{path}: expected 1-D latitude and longitude coordinates, found {sorted(found) or 'none'}")
    return found


def read_grid_file(path: str) -> Grid:
    """The grid of a netCDF file: its 1-D latitude and longitude coordinates (recognised by name,
    ``standard_name`` or units, as the archive readers do), ascending. Raises ValueError naming
    the file and what was expected."""
    ds = _open_netcdf(path, "grid file")
    try:
        found = _coordinates(ds, path)
    finally:
        ds.close()
    try:
        return Grid(lat=np.sort(found["lat"][1]), lon=np.sort(found["lon"][1]))
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def read_land_mask_file(path: str, variable: str | None, means: Literal["land", "sea"]) -> tuple[Grid, np.ndarray]:
    """A land-sea mask file as ``(grid, land)``: ``land`` is a boolean ``(lat, lon)`` array on the
    ascending grid. A value above 0.5 is land when ``means == "land"`` (a land flag or an ERA5-style
    land fraction), sea when ``means == "sea"`` (NOAA's ``lsmask``); a missing value is land.
    ``variable`` None takes the file's only 2-D field (size-1 dimensions such as a time of one
    step are dropped). Raises ValueError naming the file and what was expected."""
    ds = _open_netcdf(path, "land mask file")
    try:
        coords = _coordinates(ds, path)
        dims = {coords["lat"][0]: "lat", coords["lon"][0]: "lon"}
        candidates = {name: var for name, var in ds.variables.items()
                      if sorted(dims.get(d, "") for d in var.dimensions if ds.dimensions[d].size > 1) == ["lat", "lon"]}
        if variable is None:
            if len(candidates) != 1:
                raise ValueError(f"{path}: expected one 2-D (latitude, longitude) field, found "
                                 f"{sorted(candidates) or 'none'}; name it with archive.land_mask_variable")
            variable = next(iter(candidates))
        if variable not in candidates:
            raise ValueError(f"{path}: no 2-D (latitude, longitude) field named {variable!r}; it has {sorted(candidates) or 'none'}")
        var = ds.variables[variable]
        var.set_auto_mask(True)
        data = np.ma.filled(np.ma.asarray(var[:], np.float64), np.nan)
        order = [d for d in var.dimensions if d in dims]
        data = data.reshape([ds.dimensions[d].size for d in order])  # drop the size-1 dimensions
    finally:
        ds.close()
    if order[0] != coords["lat"][0]:
        data = data.T
    lat, lon = coords["lat"][1], coords["lon"][1]
    data = data[np.argsort(lat)][:, np.argsort(lon)]
    above = np.nan_to_num(data, nan=0.0 if means == "sea" else 1.0) > 0.5
    land = above if means == "land" else ~above
    try:
        return Grid(lat=np.sort(lat), lon=np.sort(lon)), land
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None

"""Scattered observations (buoys, ships, gliders, stations): the table format, the ``[observations]``
settings and the validation that sorts each row into good or bad with a reason.

The table every reader returns and every consumer reads is a pandas DataFrame with the columns
of :data:`OBSERVATION_COLUMNS`, in that order:

===========  ====================================================================================
``time``     datetime64[ns], UTC without a time zone (NaT when the source's time is unreadable)
``lat``      float64, degrees_north
``lon``      float64, degrees_east, as the source gives it (-180…180 or 0…360)
``value``    float64, in the field's units, as the source gives it
``platform`` str, the platform (buoy, ship, station) id; ``""`` when the source has none
``quality``  int16, the source's quality flag as given; ``-1`` when the source has none
``depth``    float64, metres; NaN when the source has none
===========  ====================================================================================

The readers (CSV, Parquet, netCDF CF discrete sampling geometries) are in
:mod:`pipeline.observation_readers`; this module has no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_serializer,
    field_validator,
    model_validator,
)

from pipeline.secrets import redact_options, redact_url
from pipeline.steps import Cadence

OBSERVATION_COLUMNS: tuple[str, ...] = ("time", "lat", "lon", "value", "platform", "quality", "depth")
#: The columns a source must have (the others are optional).
REQUIRED_COLUMNS: tuple[str, ...] = ("time", "lat", "lon", "value")
#: Longest platform id kept, in UTF-8 bytes (the store holds ids as fixed-width characters).
PLATFORM_BYTES = 32

#: Why a row is bad, in the order the checks run: a row gets the first reason that applies.
REASONS: tuple[str, ...] = (
    "time_invalid",        # no time, or one that cannot be read
    "time_outside_range",  # outside [observations] time_range
    "not_finite",          # value, latitude or longitude missing, NaN or infinite
    "outside_domain",      # position outside the grid's cells
    "on_land",             # position in a land cell of the grid's land mask
    "out_of_range",        # value outside [observations] valid_range
    "bad_quality",         # quality flag listed in [observations] bad_quality_flags
    "platform_id_too_long",  # more than PLATFORM_BYTES bytes of UTF-8
    "duplicate",           # same platform, time and position as an earlier good row
    "over_max_per_step",   # more good rows in the step than [observations] max_per_step
)


def empty_observations() -> pd.DataFrame:
    """A table with no row and the columns and types of :data:`OBSERVATION_COLUMNS`."""
    return pd.DataFrame({
        "time": pd.Series([], dtype="datetime64[ns]"),
        "lat": pd.Series([], dtype="float64"),
        "lon": pd.Series([], dtype="float64"),
        "value": pd.Series([], dtype="float64"),
        "platform": pd.Series([], dtype="object"),
        "quality": pd.Series([], dtype="int16"),
        "depth": pd.Series([], dtype="float64"),
    })


def as_observations(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with exactly the columns and types of the format (missing optional ones filled)."""
    n = len(table)
    out = pd.DataFrame(index=pd.RangeIndex(n))
    time = pd.to_datetime(table["time"], errors="coerce", utc=True) if "time" in table else pd.Series([pd.NaT] * n)
    out["time"] = pd.DatetimeIndex(time).tz_convert(None).as_unit("ns") if n else pd.Series([], dtype="datetime64[ns]")
    for name in ("lat", "lon", "value"):
        out[name] = pd.to_numeric(table[name], errors="coerce").astype("float64").to_numpy() if n else []
    platform = table["platform"] if "platform" in table else pd.Series([""] * n)
    out["platform"] = [("" if p is None or (isinstance(p, float) and np.isnan(p)) else str(p).strip())
                       for p in platform]
    quality = pd.to_numeric(table["quality"], errors="coerce") if "quality" in table else pd.Series([-1] * n)
    out["quality"] = np.asarray(quality.fillna(-1), dtype="float64").astype("int16")
    depth = pd.to_numeric(table["depth"], errors="coerce") if "depth" in table else pd.Series([np.nan] * n)
    out["depth"] = np.asarray(depth, dtype="float64")
    out["platform"] = out["platform"].astype("object")
    return out[list(OBSERVATION_COLUMNS)]


def _ordered(v: tuple[float, float]) -> tuple[float, float]:
    if not v[0] < v[1]:
        raise ValueError(f"must be [low, high] with low < high, got {list(v)}")
    return v


#: A physical range ``[low, high]`` of values, validated ``low < high`` (the archive's and the
#: observations' ``valid_range``).
ValidRange = Annotated[tuple[float, float], AfterValidator(_ordered)]


class ObservationSettings(BaseModel):
    """The ``[observations]`` section: where the raw observation files are, how their columns
    map onto the table format, which rows are bad and how rows are grouped into steps."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    source: str | None = Field(None, description="directory, glob, file or fsspec URL of the observation files")
    format: Literal["auto", "csv", "parquet", "netcdf"] = Field(
        "auto", description="file format; auto = by suffix (.csv/.csv.gz, .parquet/.pq, .nc/.nc4/.cdf)")
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="time/lat/lon/value/platform/quality/depth -> the source's column (CSV, Parquet) or "
        "variable (netCDF) name; unmapped ones are looked up by their own name, and in netCDF by CF "
        "attributes (standard_name, axis, cf_role)")
    variable: str | None = Field(None, description="netCDF: the data variable (default: columns.value)")
    units: str = Field("degree_Celsius", description="units of the values (as the files give them; not converted)")
    standard_name: str | None = Field(None, description="CF standard name of the values, e.g. sea_surface_temperature")
    valid_range: ValidRange = Field((-3.0, 45.0), description="physical range of the values")
    bad_quality_flags: list[int] = Field(default_factory=list, description="quality flags that make a row bad")
    time_range: tuple[str, str] | None = Field(
        None, description="[first, last] ISO times of the archive; rows outside are bad (None = any time)")
    grid_file: str | None = Field(
        None, description="netCDF file whose 1-D latitude/longitude are the target grid and the domain")
    land_mask_file: str | None = Field(None, description="a netCDF land-sea mask on the grid (None = no land)")
    land_mask_variable: str | None = Field(None, description="the mask's variable; None = the file's only 2-D field")
    land_mask_means: Literal["land", "sea"] = Field("land", description="what a mask value above 0.5 means")
    step: str = Field("1h", description="observations are grouped into steps of this cadence: '1D', 'Nh', '1MS'")
    max_per_step: int = Field(1024, ge=1, description="most good observations a step holds (the store's width)")
    storage_options: dict[str, Any] = Field(default_factory=dict, description="fsspec options")
    credentials_block: str | None = Field(
        None, description="name of a Prefect Secret block whose JSON object is merged over storage_options")

    @field_serializer("source", when_used="json")
    def _shown_source(self, v: str | None) -> str | None:
        return None if v is None else redact_url(v)

    @field_serializer("storage_options", when_used="json")
    def _shown_options(self, v: dict[str, Any]) -> dict[str, Any]:
        return redact_options(v)

    @field_validator("step")
    @classmethod
    def _known_step(cls, v: str) -> str:
        cadence = Cadence.parse(v)
        if cadence.kind == "climatology":
            raise ValueError("observations need real times: expected '1D', 'Nh' or '1MS', not a climatology")
        return cadence.code

    @field_validator("columns")
    @classmethod
    def _known_columns(cls, v: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(v) - set(OBSERVATION_COLUMNS))
        if unknown:
            raise ValueError(f"unknown column(s) {unknown}: expected keys among {list(OBSERVATION_COLUMNS)}")
        return v

    @model_validator(mode="after")
    def _times(self) -> ObservationSettings:
        if self.time_range is not None:
            first, last = (pd.Timestamp(t) for t in self.time_range)
            if last < first:
                raise ValueError(f"time_range: {self.time_range[1]} is before {self.time_range[0]}")
        return self

    @property
    def cadence(self) -> Cadence:
        return Cadence.parse(self.step)


@dataclass(frozen=True)
class Domain:
    """The grid observations are checked against: cell centres (ascending) and land (lat, lon)."""

    lat: np.ndarray
    lon: np.ndarray
    land: np.ndarray

    def cell_of(self, lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Row and column of the cell holding each position, and whether it is inside the grid
        (between the outer cell edges; longitudes compared modulo 360)."""
        lat, lon = np.asarray(lat, "float64"), np.asarray(lon, "float64")
        lat_edges = _edges(self.lat)
        lon_edges = _edges(self.lon)
        # bring each longitude into the grid's 360° window starting at its western edge
        lon = lon_edges[0] + np.mod(lon - lon_edges[0], 360.0)
        row = np.searchsorted(lat_edges, lat, side="right") - 1
        col = np.searchsorted(lon_edges, lon, side="right") - 1
        inside = (row >= 0) & (row < self.lat.size) & (col >= 0) & (col < self.lon.size)
        inside &= np.isfinite(lat) & np.isfinite(lon)
        return np.where(inside, row, 0), np.where(inside, col, 0), inside


def _edges(centres: np.ndarray) -> np.ndarray:
    c = np.asarray(centres, "float64")
    if c.size == 1:
        return np.array([c[0] - 0.5, c[0] + 0.5])
    mid = (c[1:] + c[:-1]) / 2
    return np.concatenate([[c[0] - (mid[0] - c[0])], mid, [c[-1] + (c[-1] - mid[-1])]])


def sort_observations(table: pd.DataFrame) -> pd.DataFrame:
    """The rows in a canonical order (time, platform, position, value, quality, depth), so that
    the same observations read from different files or formats are stored identically."""
    keys = ["time", "platform", "lat", "lon", "value", "quality", "depth"]
    return table.sort_values(keys, kind="mergesort", na_position="last").reset_index(drop=True)


def validate_observations(
    table: pd.DataFrame,
    settings: ObservationSettings,
    domain: Domain,
) -> tuple[pd.DataFrame, pd.Series]:
    """Sort ``table`` canonically and give each row its reason for being bad (``""`` = good).

    Returns ``(sorted table, reason per row)``; columns beyond the format's (e.g. the file and
    row a row came from) are carried along. The checks run in the order of :data:`REASONS`
    and a row gets the first that applies; ``duplicate`` keeps the first of rows with the same
    platform, time and position among the rows that passed the other checks. ``over_max_per_step``
    depends on the store and is decided by the ingest flow, per step.
    """
    extra = table.drop(columns=[c for c in OBSERVATION_COLUMNS if c in table.columns]).reset_index(drop=True)
    table = sort_observations(pd.concat([as_observations(table.reset_index(drop=True)), extra], axis=1))
    n = len(table)
    reason = np.full(n, "", dtype=object)

    def mark(bad: np.ndarray, why: str) -> None:
        reason[(reason == "") & np.asarray(bad, bool)] = why

    time = table["time"]
    mark(time.isna().to_numpy(), "time_invalid")
    if settings.time_range is not None:
        first, last = (pd.Timestamp(t).tz_localize(None) if pd.Timestamp(t).tzinfo is None
                       else pd.Timestamp(t).tz_convert(None) for t in settings.time_range)
        mark(((time < first) | (time > last)).to_numpy(), "time_outside_range")
    lat, lon, value = (table[c].to_numpy() for c in ("lat", "lon", "value"))
    mark(~(np.isfinite(lat) & np.isfinite(lon) & np.isfinite(value)), "not_finite")
    row, col, inside = domain.cell_of(lat, lon)
    mark(~inside, "outside_domain")
    mark(inside & np.asarray(domain.land, bool)[row, col], "on_land")
    low, high = settings.valid_range
    mark((value < low) | (value > high), "out_of_range")
    if settings.bad_quality_flags:
        mark(table["quality"].isin(settings.bad_quality_flags).to_numpy(), "bad_quality")
    mark(np.array([len(p.encode()) > PLATFORM_BYTES for p in table["platform"]], bool), "platform_id_too_long")
    good = reason == ""
    dup = table[good].duplicated(subset=["platform", "time", "lat", "lon"], keep="first")
    reason[np.flatnonzero(good)[dup.to_numpy()]] = "duplicate"
    return table, pd.Series(reason, index=table.index, name="reason")


def count_reasons(reasons: pd.Series | np.ndarray) -> dict[str, int]:
    """Bad rows per reason (only reasons with at least one row), in the order of :data:`REASONS`."""
    values = pd.Series(np.asarray(reasons, dtype=object))
    counts = values[values != ""].value_counts()
    return {r: int(counts[r]) for r in REASONS if r in counts.index}

"""CF-1.11 and ACDD-1.3 metadata for the project's stores: coordinates, variables, discovery
attributes, provenance and the per-step status flag (docs/architecture.md, "Store metadata")."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from importlib import metadata
from typing import Any

import numpy as np

from pipeline.steps import Cadence, Step

CONVENTIONS = "CF-1.11, ACDD-1.3"
#: The table compliance-checker 6.1 checks names against.
STANDARD_NAME_VOCABULARY = "CF Standard Name Table v93"
#: OISST counts days from noon, so every daily time stamp is a whole number of days.
TIME_UNITS = "days since 1978-01-01 12:00:00"
TIME_CALENDAR = "proleptic_gregorian"

#: The per-step ``status`` variable: what the step's commit marker says (0: no marker yet).
STATUS_VARIABLE = "status"
STATUS_CODES: dict[str, int] = {
    "absent": 0, "ok": 1, "preliminary": 2, "failed": 3, "missing": 4, "rewriting": 5, "other": 6,
}

#: Defaults of the configurable discovery attributes (``[metadata]`` in the configuration). They
#: say plainly that nobody chose them rather than invent a licence or an author.
DEFAULT_METADATA: dict[str, str] = {
    "license": "not specified: set metadata.license in the seedfield configuration",
    "creator_name": "not specified: set metadata.creator_name in the seedfield configuration",
    "creator_type": "person",
    "creator_email": "not specified",
    "creator_url": "not specified",
    "institution": "not specified",
    "project": "seedfield",
    "publisher_name": "not specified",
    "publisher_email": "not specified",
    "publisher_url": "not specified",
    "naming_authority": "seedfield",
    "acknowledgement": "not specified",
}


def code_version() -> str:
    """The installed seedfield version, for provenance attributes."""
    try:
        return metadata.version("seedfield")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "unknown"


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def history_line(what: str) -> str:
    """One line of the ``history`` attribute: UTC time, then what ran."""
    return f"{utc_now()} seedfield {code_version()}: {what}"


def append_history(old: Any, what: str) -> str:
    return (str(old).rstrip("\n") + "\n" if old else "") + history_line(what)


def time_attrs(long_name: str = "time (noon UTC of each day)") -> dict[str, Any]:
    return {"standard_name": "time", "long_name": long_name, "axis": "T", "units_metadata": "leap_seconds: none"}


def lat_attrs() -> dict[str, Any]:
    return {"standard_name": "latitude", "long_name": "latitude", "units": "degrees_north", "axis": "Y"}


def lon_attrs() -> dict[str, Any]:
    return {"standard_name": "longitude", "long_name": "longitude", "units": "degrees_east", "axis": "X"}


def other_position_attrs(long_name: str, units: str) -> dict[str, Any]:
    """Latitudes or longitudes of another set of points than the store's grid (coarser grids,
    sensors): units but no ``standard_name``, so that ``ds.cf["longitude"]`` is the grid's."""
    return {"long_name": long_name, "units": units, "coverage_content_type": "coordinate"}


def sst_attrs(long_name: str = "sea surface temperature", coordinates: str = "time lat lon") -> dict[str, Any]:
    return {
        "standard_name": "sea_surface_temperature",
        "long_name": long_name,
        "units": "degree_Celsius",
        "units_metadata": "temperature: on_scale",
        "coordinates": coordinates,
        "coverage_content_type": "physicalMeasurement",
    }


def land_mask_attrs() -> dict[str, Any]:
    return {
        "standard_name": "land_binary_mask",
        "long_name": "land mask (1 = land, 0 = water)",
        "units": "1",
        "flag_values": [0, 1],
        "flag_meanings": "water land",
        "coverage_content_type": "auxiliaryInformation",
    }


def status_attrs() -> dict[str, Any]:
    return {
        "standard_name": "status_flag",
        "long_name": "state of the step, as its commit marker (_seedfield/commits) says",
        "flag_values": list(STATUS_CODES.values()),
        "flag_meanings": " ".join(STATUS_CODES),
        "coverage_content_type": "qualityInformation",
        "comment": "absent: never written; ok: committed; preliminary: committed from a preliminary "
                   "file; failed/missing: recorded as such (the step's values are fill values); "
                   "rewriting: being replaced; only ok and preliminary steps hold data",
    }


def status_code(marker: Mapping[str, Any] | None) -> int:
    """The ``status`` flag value for a commit marker (None: no marker)."""
    if marker is None:
        return STATUS_CODES["absent"]
    status = str(marker.get("status", "other"))
    if status == "ok" and marker.get("preliminary"):
        return STATUS_CODES["preliminary"]
    return STATUS_CODES.get(status, STATUS_CODES["other"])


def bounds(values: np.ndarray) -> np.ndarray:
    """``(n, 2)`` cell bounds of a 1-D grid of cell centres: midpoints, extrapolated at the ends."""
    v = np.asarray(values, dtype="float64")
    if v.size == 1:
        return np.array([[v[0] - 0.5, v[0] + 0.5]])
    mid = (v[1:] + v[:-1]) / 2
    edges = np.concatenate([[v[0] - (mid[0] - v[0])], mid, [v[-1] + (v[-1] - mid[-1])]])
    return np.stack([edges[:-1], edges[1:]], axis=1)


def sensor_positions(index: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Latitude and longitude of flat indices (row * nlon + col) into a (lat, lon) grid; NaN
    where the index is padding (negative)."""
    index = np.asarray(index)
    ok = index >= 0
    safe = np.where(ok, index, 0)
    rows, cols = np.divmod(safe, len(lon))
    la = np.where(ok, np.asarray(lat, "float64")[np.minimum(rows, len(lat) - 1)], np.nan)
    lo = np.where(ok, np.asarray(lon, "float64")[cols], np.nan)
    return la.astype("float32"), lo.astype("float32")


def iso_duration(cadence: Cadence) -> str:
    return {"daily": "P1D", "monthly": "P1M", "climatology": "P1M"}.get(cadence.kind, f"PT{cadence.hours}H")


def time_coverage_attrs(cadence: Cadence, steps: Sequence[Step]) -> dict[str, str]:
    """ACDD time coverage of ``steps``: from the time stamp of the first to that of the last (the
    values of the time coordinate, as ACDD checkers compare them); each step covers
    ``time_coverage_resolution`` from its stamp (a day: its noon, as OISST)."""
    out = {"time_coverage_resolution": iso_duration(cadence)}
    if not steps:
        return out
    start, end = cadence.time_stamp(min(steps)), cadence.time_stamp(max(steps))
    span = end - start
    days, seconds = span.days, span.seconds
    duration = f"P{days}D" + (f"T{seconds // 3600}H" if seconds else "") if days or not seconds else f"PT{seconds // 3600}H"
    return {**out, "time_coverage_start": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "time_coverage_end": end.strftime("%Y-%m-%dT%H:%M:%SZ"), "time_coverage_duration": duration}


def geospatial_attrs(lat: np.ndarray, lon: np.ndarray) -> dict[str, Any]:
    """ACDD horizontal coverage of a grid: its first and last cell centres (the coordinates'
    values, as ACDD checkers compare them; the cells' edges are in lat_bnds/lon_bnds)."""
    lat, lon = np.asarray(lat, "float64"), np.asarray(lon, "float64")
    lat_res = float(np.median(np.abs(np.diff(lat)))) if len(lat) > 1 else 0.0
    lon_res = float(np.median(np.abs(np.diff(lon)))) if len(lon) > 1 else 0.0
    south, north, west, east = float(lat.min()), float(lat.max()), float(lon.min()), float(lon.max())
    return {
        "geospatial_lat_min": south, "geospatial_lat_max": north, "geospatial_lat_units": "degrees_north",
        "geospatial_lat_resolution": f"{lat_res:g} degrees",
        "geospatial_lon_min": west, "geospatial_lon_max": east, "geospatial_lon_units": "degrees_east",
        "geospatial_lon_resolution": f"{lon_res:g} degrees",
        "geospatial_bounds": f"POLYGON(({south:g} {west:g}, {north:g} {west:g}, {north:g} {east:g}, "
                             f"{south:g} {east:g}, {south:g} {west:g}))",
        "geospatial_bounds_crs": "EPSG:4326",
        # a surface field: the sea surface, 0 m
        "geospatial_vertical_min": 0.0, "geospatial_vertical_max": 0.0,
        "geospatial_vertical_units": "m", "geospatial_vertical_positive": "up",
    }


def dataset_attrs(
    title: str,
    summary: str,
    store_kind: str,
    lat: np.ndarray,
    lon: np.ndarray,
    keywords: str = "sea surface temperature, super-resolution, sparse sensors",
    **extra: Any,
) -> dict[str, Any]:
    """Global attributes every seedfield store carries (CF and ACDD-1.3 discovery attributes).

    ``extra`` overrides them: the configurable ones (:data:`DEFAULT_METADATA`) come from the
    configuration's ``[metadata]`` section, passed by the flow that creates the store.
    """
    now = utc_now()
    attrs: dict[str, Any] = {
        "Conventions": CONVENTIONS,
        "title": title,
        "summary": summary,
        "keywords": keywords,
        **DEFAULT_METADATA,
        "source": "seedfield " + code_version(),
        "seedfield_version": code_version(),
        "processing_level": {"raw": "L4 field as decoded from the source archive (not reprocessed)",
                             "seedings": "simulated sparse sensor samples of a gridded field",
                             "reconstruction": "L4 field reconstructed from sparse sensors",
                             "observations": "in situ observations as given, validated (bad rows removed)"}[store_kind],
        "standard_name_vocabulary": STANDARD_NAME_VOCABULARY,
        "date_created": now,
        "date_modified": now,
        "cdm_data_type": "Grid",
        "comment": "Per-step state: the status variable (flag_meanings) repeats the commit markers "
                   "under _seedfield/commits; only steps with status ok or preliminary hold data.",
        "history": history_line(f"created the {store_kind} store"),
        **geospatial_attrs(lat, lon),
    }
    more_history = extra.pop("history", None)
    attrs.update({k: v for k, v in extra.items() if v is not None})
    if more_history:
        attrs["history"] += f" ({more_history})"
    attrs.setdefault("id", f"{attrs['naming_authority']}.{store_kind}.{now}")
    return attrs

"""CF-1.10 metadata for the project's stores: coordinates, variables, provenance."""

from __future__ import annotations

import datetime as dt
from importlib import metadata
from typing import Any

#: OISST counts days from noon, so every daily time stamp is a whole number of days.
TIME_UNITS = "days since 1978-01-01 12:00:00"
TIME_CALENDAR = "proleptic_gregorian"


def code_version() -> str:
    """The installed seedfield version, for provenance attributes."""
    try:
        return metadata.version("seedfield")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "unknown"


def time_attrs(long_name: str = "time (noon UTC of each day)") -> dict[str, Any]:
    return {"standard_name": "time", "long_name": long_name, "axis": "T"}


def lat_attrs() -> dict[str, Any]:
    return {"standard_name": "latitude", "long_name": "latitude", "units": "degrees_north", "axis": "Y"}


def lon_attrs() -> dict[str, Any]:
    return {"standard_name": "longitude", "long_name": "longitude", "units": "degrees_east", "axis": "X"}


def sst_attrs(long_name: str = "sea surface temperature") -> dict[str, Any]:
    return {
        "standard_name": "sea_surface_temperature",
        "long_name": long_name,
        "units": "degree_Celsius",
        "coordinates": "time lat lon",
    }


def land_mask_attrs() -> dict[str, Any]:
    return {
        "standard_name": "land_binary_mask",
        "long_name": "land mask (1 = land, 0 = water)",
        "units": "1",
        "flag_values": [0, 1],
        "flag_meanings": "water land",
    }


def dataset_attrs(title: str, **extra: Any) -> dict[str, Any]:
    """Global attributes every seedfield store carries."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
    attrs = {
        "Conventions": "CF-1.10",
        "title": title,
        "institution": "seedfield",
        "source": "seedfield " + code_version(),
        "seedfield_version": code_version(),
        "date_created": now,
    }
    attrs.update(extra)
    return attrs

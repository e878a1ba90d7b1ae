"""Find the archive files that hold each day: local directories, globs, URL patterns.

``source`` may be

* a local directory, searched recursively for ``*.nc``, ``*.nc4``, ``*.cdf`` and ``*.netcdf``;
* a local glob, e.g. ``/data/**/*.nc``, or a single file;
* a pattern with ``{date:…}`` placeholders (``strftime`` codes), local or remote, e.g.
  ``https://host/avhrr/{date:%Y%m}/oisst-avhrr-v02r01.{date:%Y%m%d}.nc``: for each day the
  pattern names the final file; when it does not exist and the name is an OISST one, the
  ``_preliminary`` name is tried;
* an ``http(s)://`` / ``s3://`` (any fsspec protocol) directory URL, listed through fsspec.

Days come from OISST names or a single ``YYYYMMDD`` in the file name; other files are opened
(time coordinate only) to read their time stamps, which is how multi-step files (an ERA5 month of
hours, a year of months, a climatology) are indexed.  The stamps are grouped into the steps of a
:class:`~pipeline.steps.Cadence`: the one asked for, or the one the stamps show.
"""

from __future__ import annotations

import glob
import os
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import fsspec

from pipeline.errors import ArchiveError
from pipeline.oisst import oisst_filename, parse_oisst_filename
from pipeline.readers import date_from_name, file_times
from pipeline.steps import DAILY, Cadence, Step, detect_cadence, step_label

ARCHIVE_SUFFIXES = (".nc", ".nc4", ".cdf", ".netcdf")
_GLOB_CHARS = frozenset("*?[")
_REMOTE_WORKERS = 16


@dataclass(frozen=True)
class ArchiveFile:
    """One file to ingest: ``steps`` are the steps in the requested range it is chosen for."""

    url: str
    steps: tuple[Step, ...]
    preliminary: bool = False


@dataclass
class ArchiveIndex:
    """Which file to read for each step of a range, and the archive's step."""

    files: list[ArchiveFile] = field(default_factory=list)
    missing: list[Step] = field(default_factory=list)
    duplicates: dict[Step, list[str]] = field(default_factory=dict)
    cadence: Cadence = DAILY


@dataclass(frozen=True)
class _Candidate:
    url: str
    stamps: tuple[datetime, ...]
    preliminary: bool
    climatology: bool = False


def _is_remote(source: str) -> bool:
    return "://" in source and not source.startswith("file://")


def _local_path(source: str) -> str:
    return source[len("file://"):] if source.startswith("file://") else source


def _is_archive_name(name: str) -> bool:
    base = os.path.basename(name.rstrip("/"))
    return base.lower().endswith(ARCHIVE_SUFFIXES) and not base.startswith(".")


def read_bytes(url: str, storage_options: dict | None = None) -> bytes:
    """The whole file at ``url`` (a local path, ``file://``, or any fsspec URL)."""
    try:
        if not _is_remote(url):
            with open(_local_path(url), "rb") as handle:
                return handle.read()
        fs, path = fsspec.core.url_to_fs(url, **(storage_options or {}))
        return fs.cat_file(path)
    except FileNotFoundError as exc:
        raise ArchiveError(url, "file not found") from exc
    except Exception as exc:
        raise ArchiveError(url, f"cannot be read: {exc}") from exc


def _header_stamps(url: str, storage_options: dict | None) -> tuple[tuple[datetime, ...], bool]:
    """Time stamps (and climatology flag) of a file, read from its time coordinate."""
    if _is_remote(url):
        stamps, clim = file_times(url, read_bytes(url, storage_options))
    else:
        stamps, clim = file_times(_local_path(url))
    return tuple(stamps), clim


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day)


def _candidates(
    urls: Iterable[str], storage_options: dict | None, cadence: Cadence | None
) -> list[_Candidate]:
    """Stamps and preliminary flag of each file, from its name or else its header.

    A date in the name stands for the file's time only on a daily (or coarser) axis: a
    sub-daily archive is always indexed from the files' time coordinates.
    """
    found = []
    for url in urls:
        name = os.path.basename(url.rstrip("/"))
        parsed = parse_oisst_filename(name)
        if parsed is not None:
            found.append(_Candidate(url, (_midnight(parsed[0]),), parsed[1]))
            continue
        preliminary = "preliminary" in name.lower()
        named = None if cadence is not None and cadence.sub_daily else date_from_name(name)
        if named is not None:
            found.append(_Candidate(url, (_midnight(named),), preliminary))
        else:
            stamps, clim = _header_stamps(url, storage_options)
            found.append(_Candidate(url, stamps, preliminary, clim))
    return found


def _list_local(source: str) -> list[str]:
    path = _local_path(source)
    if os.path.isdir(path):
        urls = []
        for root, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            urls += [os.path.join(root, f) for f in sorted(files) if _is_archive_name(f)]
        if not urls:
            raise ArchiveError(source, "the directory contains no .nc, .nc4, .cdf or .netcdf files")
        return urls
    if _GLOB_CHARS & set(path):
        urls = sorted(p for p in glob.glob(path, recursive=True) if os.path.isfile(p))
        if not urls:
            raise ArchiveError(source, "the glob matches no files")
        return urls
    if os.path.isfile(path):
        return [path]
    raise ArchiveError(source, "does not exist (expected a directory, a glob, a file or a pattern)")


def _list_remote(source: str, storage_options: dict | None) -> list[str]:
    try:
        fs, path = fsspec.core.url_to_fs(source, **(storage_options or {}))
        if _GLOB_CHARS & set(path):
            paths = fs.glob(path)
        elif source.endswith("/") or fs.isdir(path):
            paths = [p for p in fs.find(path) if _is_archive_name(p)]
        elif fs.exists(path):
            paths = [path]
        else:
            raise ArchiveError(source, "does not exist")
    except ArchiveError:
        raise
    except FileNotFoundError as exc:
        raise ArchiveError(source, "does not exist") from exc
    except Exception as exc:
        raise ArchiveError(source, f"cannot be listed: {exc}") from exc
    urls = sorted({p if "://" in p else fs.unstrip_protocol(p) for p in paths})
    if not urls:
        raise ArchiveError(source, "no .nc, .nc4, .cdf or .netcdf files found there")
    return urls


def _exists_function(source: str, storage_options: dict | None) -> Callable[[str], bool]:
    if not _is_remote(source):
        return lambda url: os.path.isfile(_local_path(url))
    fs, _ = fsspec.core.url_to_fs(source, **(storage_options or {}))

    def exists(url: str) -> bool:
        try:
            return bool(fs.exists(url))
        except Exception:
            return False

    return exists


def _preliminary_alternative(url: str) -> str | None:
    """The ``_preliminary`` sibling of a final OISST file URL, if the name is an OISST one."""
    base = url.rsplit("/", 1)[-1]
    parsed = parse_oisst_filename(base)
    if parsed is None or parsed[1]:
        return None
    return url[: len(url) - len(base)] + oisst_filename(parsed[0], preliminary=True)


def _resolve_pattern(
    source: str, days: list[date], storage_options: dict | None, cadence: Cadence | None
) -> list[_Candidate]:
    by_url: dict[str, list[date]] = defaultdict(list)
    for day in days:
        try:
            by_url[source.format(date=day)].append(day)
        except (KeyError, IndexError, ValueError) as exc:
            raise ArchiveError(
                source, f"bad pattern ({exc!r}); use placeholders like {{date:%Y%m%d}} only"
            ) from exc
    exists = _exists_function(source, storage_options)

    def locate(url: str) -> tuple[str, bool] | None:
        if exists(url):
            return url, False
        alternative = _preliminary_alternative(url)
        if alternative is not None and exists(alternative):
            return alternative, True
        return None

    urls = list(by_url)
    workers = min(_REMOTE_WORKERS, len(urls)) if _is_remote(source) else 1
    if workers > 1:
        with ThreadPoolExecutor(workers) as pool:
            located = list(pool.map(locate, urls))
    else:
        located = [locate(url) for url in urls]

    found = []
    sub_daily = cadence is not None and cadence.sub_daily
    for url, hit in zip(urls, located, strict=True):
        if hit is None:
            continue
        actual, preliminary = hit
        wanted = by_url[url]
        if len(wanted) > 1 or sub_daily:  # one file for several steps: ask it
            stamps, clim = _header_stamps(actual, storage_options)
            keep = set(wanted)
            stamps = tuple(s for s in stamps if s.date() in keep)
            if stamps:
                found.append(_Candidate(actual, stamps, preliminary, clim))
        else:
            found.append(_Candidate(actual, (_midnight(wanted[0]),), preliminary))
    if not found:
        raise ArchiveError(
            source,
            f"no file matches the pattern for any day {days[0].isoformat()}…{days[-1].isoformat()} "
            f"(first tried: {urls[0]})",
        )
    return found


def _select(candidates: list[_Candidate], steps: list[Step], cadence: Cadence) -> ArchiveIndex:
    """One file per step: a single final file beats preliminary ones; ties are duplicates."""
    offers: dict[Step, list[_Candidate]] = defaultdict(list)
    wanted = set(steps)
    for cand in candidates:
        for step in {cadence.step_of(stamp) for stamp in cand.stamps}:
            if step in wanted:
                offers[step].append(cand)
    index = ArchiveIndex(cadence=cadence)
    chosen: dict[str, list[Step]] = defaultdict(list)
    flags: dict[str, bool] = {}
    for step in steps:
        offered = offers.get(step, [])
        finals = sorted({c.url for c in offered if not c.preliminary})
        prelims = sorted({c.url for c in offered if c.preliminary})
        pick = finals or prelims
        if not pick:
            index.missing.append(step)
        elif len(pick) > 1:
            index.duplicates[step] = pick
        else:
            chosen[pick[0]].append(step)
            flags[pick[0]] = not finals
    index.files = sorted(
        (ArchiveFile(url, tuple(ds), flags[url]) for url, ds in chosen.items()),
        key=lambda f: (f.steps[0], f.url),
    )
    return index


def archive_cadence(candidates: list[_Candidate], source: str) -> Cadence:
    """The step the archive's time stamps show (daily when they cannot tell)."""
    """The step the archive's time stamps show (daily when they cannot tell).

    Files holding several stamps decide by the gaps inside them (a date taken from a file name
    has no time of day, so it never meets a header's stamp); otherwise the gaps between files do.
    """
    clim = any(c.climatology for c in candidates)
    try:
        inside = [detect_cadence(c.stamps, clim) for c in candidates if len(set(c.stamps)) > 1]
        found = min((c for c in inside if c), key=_step_hours, default=None)
        if found is None:
            found = detect_cadence([s for c in candidates for s in c.stamps], clim)
    except ValueError as exc:
        raise ArchiveError(source, str(exc)) from exc
    return found or DAILY


def _step_hours(cadence: Cadence) -> int:
    return {"daily": 24, "monthly": 24 * 28, "climatology": 24 * 28}.get(cadence.kind, cadence.hours)


def resolve_archive(
    source: str,
    start: date,
    end: date,
    storage_options: dict | None = None,
    cadence: Cadence | None = None,
) -> ArchiveIndex:
    """Index the files of ``source`` that cover ``start``…``end`` (inclusive).

    ``cadence`` is the store's step; without one it is detected from the files' time stamps
    (daily when a single stamp is found) and returned as ``index.cadence``.  Each covered step
    gets exactly one file: a final file beats a preliminary one.  Steps offered by two or more
    final files (or, lacking a final one, by two or more preliminary files) are ambiguous: they
    go to ``duplicates``, not ``files``.  Steps with no file go to ``missing``.  Raises
    :class:`ArchiveError` when the source does not exist or matches no file at all.
    """
    if datetime(end.year, end.month, end.day) < datetime(start.year, start.month, start.day):
        raise ValueError(f"end {end.isoformat()} is before start {start.isoformat()}")
    source = str(source)
    if "{date" in source:
        first, last = _day_of(start), _day_of(end)
        days = DAILY.steps(first, last)
        candidates = _resolve_pattern(source, days, storage_options, cadence)
    elif _is_remote(source):
        candidates = _candidates(_list_remote(source, storage_options), storage_options, cadence)
    else:
        candidates = _candidates(_list_local(source), storage_options, cadence)
    if cadence is None:
        cadence = archive_cadence(candidates, source)
    return _select(candidates, cadence.steps(start, end), cadence)


def _day_of(value: date) -> date:
    return value.date() if isinstance(value, datetime) else value


def describe_index(index: ArchiveIndex) -> dict[str, Any]:
    """A small JSON-able summary (counts and the first few problem steps) for logs and UIs."""
    return {
        "files": len(index.files),
        "preliminary": sum(f.preliminary for f in index.files),
        "missing": len(index.missing),
        "missing_first": [step_label(d) for d in index.missing[:10]],
        "duplicates": {step_label(d): urls for d, urls in list(index.duplicates.items())[:10]},
    }

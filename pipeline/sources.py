"""Find the archive files that hold each day: local directories, globs, URL patterns.

``source`` may be

* a local directory, searched recursively for ``*.nc`` / ``*.nc4``;
* a local glob, e.g. ``/data/**/*.nc``, or a single file;
* a pattern with ``{date:…}`` placeholders (``strftime`` codes), local or remote, e.g.
  ``https://host/avhrr/{date:%Y%m}/oisst-avhrr-v02r01.{date:%Y%m%d}.nc``: for each day the
  pattern names the final file; when it does not exist and the name is an OISST one, the
  ``_preliminary`` name is tried;
* an ``http(s)://`` / ``s3://`` (any fsspec protocol) directory URL, listed through fsspec.

Days come from OISST names or a single ``YYYYMMDD`` in the file name; other files are opened
(time coordinate only) to read their days, which is how multi-day generic files are indexed.
"""

from __future__ import annotations

import glob
import os
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import fsspec

from pipeline.errors import ArchiveError
from pipeline.oisst import oisst_filename, parse_oisst_filename
from pipeline.readers import date_from_name, file_days

ARCHIVE_SUFFIXES = (".nc", ".nc4")
_GLOB_CHARS = frozenset("*?[")
_REMOTE_WORKERS = 16


@dataclass(frozen=True)
class ArchiveFile:
    """One file to ingest: ``days`` are the days in the requested range it is chosen for."""

    url: str
    days: tuple[date, ...]
    preliminary: bool = False


@dataclass
class ArchiveIndex:
    """Which file to read for each day of a date range."""

    files: list[ArchiveFile] = field(default_factory=list)
    missing: list[date] = field(default_factory=list)
    duplicates: dict[date, list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class _Candidate:
    url: str
    days: tuple[date, ...]
    preliminary: bool


def _is_remote(source: str) -> bool:
    return "://" in source and not source.startswith("file://")


def _local_path(source: str) -> str:
    return source[len("file://"):] if source.startswith("file://") else source


def _day_range(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


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


def _header_days(url: str, storage_options: dict | None) -> tuple[date, ...]:
    """Days of a file without a date in its name, read from its time coordinate."""
    if _is_remote(url):
        return tuple(file_days(url, read_bytes(url, storage_options)))
    return tuple(file_days(_local_path(url)))


def _candidates(urls: Iterable[str], storage_options: dict | None) -> list[_Candidate]:
    """Days and preliminary flag of each file, from its name or else its header."""
    found = []
    for url in urls:
        name = os.path.basename(url.rstrip("/"))
        parsed = parse_oisst_filename(name)
        if parsed is not None:
            found.append(_Candidate(url, (parsed[0],), parsed[1]))
            continue
        preliminary = "preliminary" in name.lower()
        named = date_from_name(name)
        days = (named,) if named is not None else _header_days(url, storage_options)
        found.append(_Candidate(url, days, preliminary))
    return found


def _list_local(source: str) -> list[str]:
    path = _local_path(source)
    if os.path.isdir(path):
        urls = []
        for root, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            urls += [os.path.join(root, f) for f in sorted(files) if _is_archive_name(f)]
        if not urls:
            raise ArchiveError(source, "the directory contains no .nc or .nc4 files")
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
        raise ArchiveError(source, "no .nc or .nc4 files found there")
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
    source: str, days: list[date], storage_options: dict | None
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
    for url, hit in zip(urls, located, strict=True):
        if hit is None:
            continue
        actual, preliminary = hit
        wanted = by_url[url]
        if len(wanted) > 1:  # one file for several days (e.g. a {date:%Y} pattern): ask it
            held = set(_header_days(actual, storage_options))
            wanted = [d for d in wanted if d in held]
        if wanted:
            found.append(_Candidate(actual, tuple(wanted), preliminary))
    if not found:
        raise ArchiveError(
            source,
            f"no file matches the pattern for any day {days[0].isoformat()}…{days[-1].isoformat()} "
            f"(first tried: {urls[0]})",
        )
    return found


def _select(candidates: list[_Candidate], days: list[date]) -> ArchiveIndex:
    """One file per day: a single final file beats preliminary ones; ties are duplicates."""
    offers: dict[date, list[_Candidate]] = defaultdict(list)
    wanted = set(days)
    for cand in candidates:
        for day in cand.days:
            if day in wanted:
                offers[day].append(cand)
    index = ArchiveIndex()
    chosen: dict[str, list[date]] = defaultdict(list)
    flags: dict[str, bool] = {}
    for day in days:
        offered = offers.get(day, [])
        finals = sorted({c.url for c in offered if not c.preliminary})
        prelims = sorted({c.url for c in offered if c.preliminary})
        pick = finals or prelims
        if not pick:
            index.missing.append(day)
        elif len(pick) > 1:
            index.duplicates[day] = pick
        else:
            chosen[pick[0]].append(day)
            flags[pick[0]] = not finals
    index.files = sorted(
        (ArchiveFile(url, tuple(ds), flags[url]) for url, ds in chosen.items()),
        key=lambda f: (f.days[0], f.url),
    )
    return index


def resolve_archive(
    source: str, start: date, end: date, storage_options: dict | None = None
) -> ArchiveIndex:
    """Index the files of ``source`` that cover ``start``…``end`` (inclusive).

    Each covered day gets exactly one file: a final file beats a preliminary one.  Days offered
    by two or more final files (or, lacking a final one, by two or more preliminary files) are
    ambiguous: they go to ``duplicates``, not ``files``.  Days with no file go to ``missing``.
    Raises :class:`ArchiveError` when the source does not exist or matches no file at all.
    """
    if end < start:
        raise ValueError(f"end {end.isoformat()} is before start {start.isoformat()}")
    source = str(source)
    days = _day_range(start, end)
    if "{date" in source:
        candidates = _resolve_pattern(source, days, storage_options)
    elif _is_remote(source):
        candidates = _candidates(_list_remote(source, storage_options), storage_options)
    else:
        candidates = _candidates(_list_local(source), storage_options)
    return _select(candidates, days)


def describe_index(index: ArchiveIndex) -> dict[str, Any]:
    """A small JSON-able summary (counts and the first few problem days) for logs and UIs."""
    return {
        "files": len(index.files),
        "preliminary": sum(f.preliminary for f in index.files),
        "missing": len(index.missing),
        "missing_first": [d.isoformat() for d in index.missing[:10]],
        "duplicates": {d.isoformat(): urls for d, urls in list(index.duplicates.items())[:10]},
    }

"""fsspec helpers: one way to reach local paths and remote URLs (s3://, http://, memory://)."""

from __future__ import annotations

import os
import uuid
from typing import Any

import fsspec
from fsspec.core import url_to_fs


def is_local(path: str) -> bool:
    """True for plain paths and file:// URLs."""
    return "://" not in str(path) or str(path).startswith("file://")


def filesystem(path: str, storage_options: dict[str, Any] | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem that holds ``path`` and the path inside it."""
    return url_to_fs(str(path), **(storage_options or {}))


def join(base: str, *parts: str) -> str:
    """Join path parts with '/', for local paths and URLs alike."""
    return "/".join([str(base).rstrip("/"), *(p.strip("/") for p in parts)])


def write_bytes_atomic(path: str, data: bytes, storage_options: dict[str, Any] | None = None) -> None:
    """Write ``data`` so that a reader sees either the old object or the whole new one.

    Local files are written to a temporary sibling and renamed; object stores replace a key
    in a single PUT, which is atomic already.
    """
    if is_local(path):
        local = str(path).removeprefix("file://")
        os.makedirs(os.path.dirname(local) or ".", exist_ok=True)
        tmp = f"{local}.tmp-{uuid.uuid4().hex}"
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, local)
        return
    fs, inner = filesystem(path, storage_options)
    fs.pipe_file(inner, data)


def read_bytes_or_none(path: str, storage_options: dict[str, Any] | None = None) -> bytes | None:
    """The object's bytes, or None when it does not exist."""
    fs, inner = filesystem(path, storage_options)
    try:
        return fs.cat_file(inner)
    except FileNotFoundError:
        return None


def list_names(path: str, storage_options: dict[str, Any] | None = None) -> list[str]:
    """Base names of the objects directly under ``path`` (empty when it does not exist)."""
    fs, inner = filesystem(path, storage_options)
    try:
        entries = fs.ls(inner, detail=False)
    except FileNotFoundError:
        return []
    return sorted(e.rstrip("/").rsplit("/", 1)[-1] for e in entries)


def remove_file(path: str, storage_options: dict[str, Any] | None = None) -> None:
    """Remove one object or file; nothing happens when it does not exist."""
    fs, inner = filesystem(path, storage_options)
    try:
        fs.rm_file(inner)
    except FileNotFoundError:
        pass


def remove_tree(path: str, storage_options: dict[str, Any] | None = None) -> None:
    """Remove a directory (or every object under a prefix); nothing happens when it is absent."""
    fs, inner = filesystem(path, storage_options)
    try:
        fs.rm(inner, recursive=True)
    except FileNotFoundError:
        pass


def check_store_location(path: str, storage_options: dict[str, Any] | None = None) -> str | None:
    """Why a store cannot be written at ``path`` (one line naming it), or None when it can.

    Local: the path or one of its parents is a regular file, or the nearest existing folder is
    read-only. Remote: the bucket (the URL's first part) does not exist or cannot be listed.
    """
    if is_local(path):
        local = os.path.abspath(str(path).removeprefix("file://"))
        probe = local
        while not os.path.exists(probe):
            parent = os.path.dirname(probe)
            if parent == probe:
                break
            probe = parent
        if os.path.exists(probe) and not os.path.isdir(probe):
            return f"{path}: {probe} is a file; a Zarr store is a folder"
        if not os.access(probe, os.W_OK):
            return f"{path}: {probe} is read-only; the store cannot be written"
        return None
    try:
        fs, inner = filesystem(path, storage_options)
        bucket = inner.strip("/").split("/", 1)[0]
        if not fs.exists(bucket):
            return f"{path}: the bucket {bucket!r} does not exist (create it first, or fix the URL)"
    except (OSError, ValueError) as exc:  # unreachable endpoint, refused credentials
        return f"{path}: cannot reach the store's location ({type(exc).__name__}: {exc})"
    return None

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

"""Model registry: one folder per model id, a published checkpoint, metadata, a current pointer.

```
REGISTRY/                      a local path or any fsspec URL (s3://bucket/models, memory://…)
  CURRENT                      the model id that daily inference uses
  <model_id>/
    model.pt                   the published checkpoint (the early-stopping choice)
    meta.json                  seeding parameters, periods, training history, metrics, code version
    loss.png                   the training curve (and any other file given to publish)
    work/                      local registries: the trainer's checkpoints (epoch-0005.pt, last.pt, kept.pt)
```

The trainer writes plain local files, so a registry on an object store keeps each model's work
folder, and its downloaded checkpoints, in a local cache: ``$SEEDFIELD_CACHE_DIR`` or
``~/.cache/seedfield`` (``$XDG_CACHE_HOME/seedfield``), under ``registries/<16 hex digits of the
SHA-256 of the registry URL>/<model_id>/``: ``work/``, ``checkpoint/model-<version>.pt`` (the
published checkpoint, downloaded once per version) and ``published.sha256`` (written after this
host uploaded it). Resuming an interrupted
training therefore works on the host that ran it; another host starts that model afresh.

Publishing is crash-safe: the extra files, then ``model.pt`` replaced atomically (a rename
locally, one PUT or completed multipart upload on an object store), then ``meta.json``, then
``CURRENT``. The registry only moves files; the checkpoint format belongs to ``model.checkpoint``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.secrets import redact_url
from storage import fs as sfs
from storage.fs import write_bytes_atomic

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
#: remote registries: the local file written once this host uploaded a model (its mtime counts)
STAMP = "published.sha256"
_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class RegistryError(Exception):
    """A model id is unknown or invalid; the message names it and the registry."""


def cache_root() -> Path:
    """The local cache of remote registries: ``$SEEDFIELD_CACHE_DIR``, else ``~/.cache/seedfield``."""
    explicit = os.environ.get("SEEDFIELD_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "seedfield"


def local_dir(registry: str | Path) -> Path:
    """The local folder that holds a registry's host-local state (work folders, lock files):
    the registry itself when it is local, its cache folder (:func:`cache_root`) when remote."""
    url = str(registry)
    if sfs.is_local(url):
        return Path(url.removeprefix("file://")).resolve()
    key = hashlib.sha256(redact_url(url).rstrip("/").encode()).hexdigest()[:16]
    return cache_root() / "registries" / key


class ModelRegistry:
    """Models under ``root``: a local directory or an fsspec URL (with ``storage_options``)."""

    def __init__(self, root: str | Path, storage_options: Mapping[str, Any] | None = None) -> None:
        self.url = str(root).rstrip("/") or str(root)
        self.local = sfs.is_local(self.url)
        self.storage_options = dict(storage_options or {})
        #: local registries: the directory itself; remote ones: the local cache folder
        self.root = local_dir(self.url) if self.local else None
        self.cache = local_dir(self.url)
        self.shown = redact_url(self.url)  # for messages: never a password in a URL

    def __repr__(self) -> str:
        return f"ModelRegistry({self.shown!r})"

    @staticmethod
    def new_id(prefix: str = "raseedgan") -> str:
        return f"{prefix}-{dt.datetime.now(dt.UTC).strftime('%Y%m%dT%H%M%S')}"

    # ------------------------------------------------------------------ paths
    @staticmethod
    def _check(model_id: str) -> str:
        if not _ID.match(model_id):
            raise RegistryError(f"model id {model_id!r}: use letters, digits, '.', '_' and '-' only")
        return model_id

    def url_of(self, model_id: str, name: str = "") -> str:
        """The URL (or local path) of ``name`` in the model's folder (the folder when empty)."""
        self._check(model_id)
        return sfs.join(self.url, model_id, name) if name else sfs.join(self.url, model_id)

    def _fs(self, url: str) -> tuple[Any, str]:
        fsys, inner = sfs.filesystem(url, self.storage_options)
        if not self.local:
            fsys.invalidate_cache()  # another process may have published since
        return fsys, inner

    def _exists(self, url: str) -> bool:
        if self.local:
            return Path(url.removeprefix("file://")).exists()
        fsys, inner = self._fs(url)
        return bool(fsys.exists(inner))

    def _local_model_dir(self, model_id: str) -> Path:
        return self.cache / self._check(model_id)

    # ------------------------------------------------------------------ training side
    def workdir(self, model_id: str) -> Path:
        """Where the trainer keeps its checkpoints for ``model_id`` (created): ``<id>/work`` of a
        local registry, ``<cache>/<id>/work`` of a remote one (see the module docstring)."""
        path = self._local_model_dir(model_id) / "work"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def publish(self, model_id: str, checkpoint: Path, meta: dict[str, Any], make_current: bool = True,
                files: Mapping[str, bytes] | None = None) -> str:
        """Copy ``checkpoint`` in as the model's published file, write its metadata (with the
        file's SHA-256, :meth:`fingerprint`), point CURRENT at it; ``files`` (name → bytes, e.g.
        ``loss.png``) go in the model's folder first. Returns where model.pt now is."""
        target = self.url_of(model_id, "model.pt")
        for name, data in (files or {}).items():
            if not _FILE.match(name) or name in ("model.pt", "meta.json"):
                raise RegistryError(f"{name!r} cannot be published beside a model")
            write_bytes_atomic(self.url_of(model_id, name), data, self.storage_options)
        digest = _sha256(Path(checkpoint))
        if self.local:
            local = Path(target.removeprefix("file://"))
            local.parent.mkdir(parents=True, exist_ok=True)
            tmp = local.with_name(f"model.pt.tmp-{uuid.uuid4().hex}")
            try:
                shutil.copyfile(checkpoint, tmp)
                tmp.replace(local)
            finally:
                tmp.unlink(missing_ok=True)
        else:
            fsys, inner = self._fs(target)
            fsys.put_file(str(checkpoint), inner)  # an object appears whole, or not at all
            stamp = self._local_model_dir(model_id) / STAMP
            stamp.parent.mkdir(parents=True, exist_ok=True)
            stamp.write_text(digest)
        self.write_meta(model_id, {**meta, "checkpoint_sha256": digest,
                                   **({"files": sorted(files)} if files else {})})
        if make_current:
            self.set_current(model_id)
        return target

    def write_meta(self, model_id: str, meta: dict[str, Any]) -> None:
        body = {"model_id": model_id, **meta}
        write_bytes_atomic(self.url_of(model_id, "meta.json"), json.dumps(body, indent=1, default=str).encode(),
                           self.storage_options)

    def update_meta(self, model_id: str, **fields: Any) -> None:
        meta = self.meta(model_id)
        meta.update(fields)
        self.write_meta(model_id, meta)

    # ------------------------------------------------------------------ reading side
    def resolve(self, model_id: str | None) -> str:
        """``None``, "current" or "latest" → a concrete published id; otherwise check it exists."""
        if model_id in (None, "", "current"):
            current = self.current()
            if current is None:
                raise RegistryError(f"{self.shown}: no current model; train one or pass --model ID")
            return current
        if model_id == "latest":
            ids = self.list()
            if not ids:
                raise RegistryError(f"{self.shown}: the registry holds no model")
            return ids[-1]
        if not self._exists(self.url_of(model_id, "model.pt")):
            known = ", ".join(self.list()) or "none"
            raise RegistryError(f"{self.shown}: no published model {model_id!r} (known: {known})")
        return model_id

    def checkpoint(self, model_id: str | None) -> Path:
        """A local file holding the published checkpoint: the file itself in a local registry; in
        a remote one, a copy downloaded into the cache (once per published version)."""
        model_id = self.resolve(model_id)
        url = self.url_of(model_id, "model.pt")
        if self.local:
            return Path(url.removeprefix("file://"))
        fsys, inner = self._fs(url)
        try:
            version = hashlib.sha256(str(fsys.ukey(inner)).encode()).hexdigest()[:16]
        except FileNotFoundError:
            raise RegistryError(f"{self.shown}: no published model {model_id!r}") from None
        folder = self._local_model_dir(model_id) / "checkpoint"
        local = folder / f"model-{version}.pt"
        if not local.exists():
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / f".{local.name}.tmp-{uuid.uuid4().hex}"
            try:
                fsys.get_file(inner, str(tmp))
                tmp.replace(local)
            finally:
                tmp.unlink(missing_ok=True)
            for old in folder.glob("model-*.pt"):  # earlier versions of this id
                if old != local:
                    old.unlink(missing_ok=True)
        return local

    def meta(self, model_id: str | None) -> dict[str, Any]:
        raw = sfs.read_bytes_or_none(self.url_of(self.resolve(model_id), "meta.json"), self.storage_options)
        return json.loads(raw) if raw is not None else {}

    def read_file(self, model_id: str | None, name: str) -> bytes | None:
        """The bytes of a file published beside the model (e.g. ``loss.png``), or None."""
        return sfs.read_bytes_or_none(self.url_of(self.resolve(model_id), name), self.storage_options)

    def fingerprint(self, model_id: str | None) -> str:
        """SHA-256 of the published checkpoint: what a reconstruction's commit marker records, so
        that a model retrained under the same id never counts as the one that wrote a step.
        Hashed from the file itself (milliseconds), not read from meta.json, which a publish
        killed between its two writes leaves one model behind."""
        return _sha256(self.checkpoint(model_id))

    def list(self) -> list[str]:
        """Published model ids, oldest first."""
        if self.local:
            root = Path(self.url.removeprefix("file://"))
            if not root.exists():
                return []
            found = [p.parent for p in root.glob("*/model.pt")]
            return [p.name for p in sorted(found, key=lambda p: ((p / "model.pt").stat().st_mtime, p.name))]
        fsys, inner = self._fs(self.url)
        try:
            infos = fsys.glob(f"{inner.rstrip('/')}/*/model.pt", detail=True)
        except FileNotFoundError:
            return []
        ids = [(_modified(info), path.rstrip("/").rsplit("/", 2)[-2]) for path, info in infos.items()]
        return [name for _, name in sorted(ids) if _ID.match(name)]

    def current(self) -> str | None:
        raw = sfs.read_bytes_or_none(sfs.join(self.url, "CURRENT"), self.storage_options)
        return raw.decode().strip() if raw is not None else None

    def set_current(self, model_id: str) -> None:
        self._check(model_id)
        write_bytes_atomic(sfs.join(self.url, "CURRENT"), model_id.encode(), self.storage_options)

    # ------------------------------------------------------------------ clean-up
    def stale_workdir(self, model_id: str) -> bool:
        """True when ``model_id`` is published and its trainer's checkpoints are all older than
        the published file: they belong to the training that was published, not to a retraining
        that was interrupted (whose checkpoints are newer, and are resumed). For a remote
        registry "published" is the local stamp this host wrote after uploading (both times
        from this host's clock)."""
        work = self._local_model_dir(model_id) / "work"
        if self.local:
            published = work.parent / "model.pt"
        else:
            published = work.parent / STAMP
            if published.exists() and not self._exists(self.url_of(model_id, "model.pt")):
                return False
        if not published.exists() or not work.exists():
            return False
        done = published.stat().st_mtime
        return all(p.stat().st_mtime <= done for p in work.iterdir())

    def drop_workdir(self, model_id: str) -> None:
        """Delete the trainer's checkpoints of ``model_id`` (the published model.pt stays)."""
        shutil.rmtree(self._local_model_dir(model_id) / "work", ignore_errors=True)

    def discard_unpublished(self, model_id: str) -> None:
        """Delete everything of a model that was never published (a training that failed)."""
        if self._exists(self.url_of(model_id, "model.pt")):
            raise RegistryError(f"model {model_id!r} in {self.shown} is published; not discarding it")
        if not self.local:
            sfs.remove_tree(self.url_of(model_id), self.storage_options)
        shutil.rmtree(self._local_model_dir(model_id), ignore_errors=True)


def _modified(info: Mapping[str, Any]) -> float:
    """An object's modification time (seconds) from an fsspec info dict, whatever the backend."""
    for key in ("LastModified", "mtime", "last_modified", "updated", "created"):
        value = info.get(key)
        if isinstance(value, dt.datetime):
            return value.timestamp()
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, str):
            try:
                return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
            except ValueError:
                continue
    return 0.0


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

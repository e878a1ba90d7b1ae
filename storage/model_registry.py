"""Model registry: one folder per model id, a published checkpoint, metadata, a current pointer.

```
REGISTRY/
  CURRENT                      the model id that daily inference uses
  <model_id>/
    model.pt                   the published checkpoint (the early-stopping choice)
    meta.json                  seeding parameters, periods, training history, metrics, code version
    work/                      the trainer's checkpoints (epoch-0005.pt, last.pt, kept.pt)
```
The registry only moves files; the checkpoint format belongs to ``model.checkpoint``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Any

from storage.fs import write_bytes_atomic

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class RegistryError(Exception):
    """A model id is unknown or invalid; the message names it and the registry."""


class ModelRegistry:
    """Models under a local directory ``root``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @staticmethod
    def new_id(prefix: str = "raseedgan") -> str:
        return f"{prefix}-{dt.datetime.now(dt.UTC).strftime('%Y%m%dT%H%M%S')}"

    def _dir(self, model_id: str) -> Path:
        if not _ID.match(model_id):
            raise RegistryError(f"model id {model_id!r}: use letters, digits, '.', '_' and '-' only")
        return self.root / model_id

    def workdir(self, model_id: str) -> Path:
        """Where the trainer keeps its checkpoints for ``model_id`` (created)."""
        path = self._dir(model_id) / "work"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def publish(self, model_id: str, checkpoint: Path, meta: dict[str, Any], make_current: bool = True) -> Path:
        """Copy ``checkpoint`` in as the model's published file, write its metadata (with the
        file's SHA-256, :meth:`fingerprint`), point CURRENT at it."""
        target = self._dir(model_id) / "model.pt"
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".pt.tmp")
        shutil.copyfile(checkpoint, tmp)
        digest = _sha256(tmp)
        tmp.replace(target)
        self.write_meta(model_id, {**meta, "checkpoint_sha256": digest})
        if make_current:
            self.set_current(model_id)
        return target

    def write_meta(self, model_id: str, meta: dict[str, Any]) -> None:
        body = {"model_id": model_id, **meta}
        write_bytes_atomic(str(self._dir(model_id) / "meta.json"), json.dumps(body, indent=1, default=str).encode())

    def update_meta(self, model_id: str, **fields: Any) -> None:
        meta = self.meta(model_id)
        meta.update(fields)
        self.write_meta(model_id, meta)

    def resolve(self, model_id: str | None) -> str:
        """``None``, "current" or "latest" → a concrete published id; otherwise check it exists."""
        if model_id in (None, "", "current"):
            current = self.current()
            if current is None:
                raise RegistryError(f"{self.root}: no current model; train one or pass --model ID")
            return current
        if model_id == "latest":
            ids = self.list()
            if not ids:
                raise RegistryError(f"{self.root}: the registry holds no model")
            return ids[-1]
        if not (self._dir(model_id) / "model.pt").exists():
            known = ", ".join(self.list()) or "none"
            raise RegistryError(f"{self.root}: no published model {model_id!r} (known: {known})")
        return model_id

    def checkpoint(self, model_id: str | None) -> Path:
        return self._dir(self.resolve(model_id)) / "model.pt"

    def meta(self, model_id: str | None) -> dict[str, Any]:
        path = self._dir(self.resolve(model_id)) / "meta.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def fingerprint(self, model_id: str | None) -> str:
        """SHA-256 of the published checkpoint: what a reconstruction's commit marker records, so
        that a model retrained under the same id never counts as the one that wrote a step.
        Hashed from the file itself (milliseconds), not read from meta.json, which a publish
        killed between its two writes leaves one model behind."""
        return _sha256(self.checkpoint(model_id))

    def list(self) -> list[str]:
        """Published model ids, oldest first."""
        if not self.root.exists():
            return []
        found = [p.parent for p in self.root.glob("*/model.pt")]
        return [p.name for p in sorted(found, key=lambda p: (p / "model.pt").stat().st_mtime)]

    def stale_workdir(self, model_id: str) -> bool:
        """True when ``model_id`` is published and its trainer's checkpoints are all older than
        the published file: they belong to the training that was published, not to a retraining
        that was interrupted (whose checkpoints are newer, and are resumed)."""
        published = self._dir(model_id) / "model.pt"
        work = self._dir(model_id) / "work"
        if not published.exists() or not work.exists():
            return False
        done = published.stat().st_mtime
        return all(p.stat().st_mtime <= done for p in work.iterdir())

    def drop_workdir(self, model_id: str) -> None:
        """Delete the trainer's checkpoints of ``model_id`` (the published model.pt stays)."""
        shutil.rmtree(self._dir(model_id) / "work", ignore_errors=True)

    def discard_unpublished(self, model_id: str) -> None:
        """Delete everything of a model that was never published (a training that failed)."""
        if (self._dir(model_id) / "model.pt").exists():
            raise RegistryError(f"model {model_id!r} in {self.root} is published; not discarding it")
        shutil.rmtree(self._dir(model_id), ignore_errors=True)

    def current(self) -> str | None:
        path = self.root / "CURRENT"
        return path.read_text().strip() if path.exists() else None

    def set_current(self, model_id: str) -> None:
        self._dir(model_id)  # validates
        write_bytes_atomic(str(self.root / "CURRENT"), model_id.encode())


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

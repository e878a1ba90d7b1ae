"""Day-range locks on stores, so two runs never write the same days of a store at once.

A lock is a small JSON file ``<store name>.<digest>.<start>.<end>.lock`` in a ``.seedfield-locks``
folder next to the store (the store's parent directory; for a store on an object store, the
model registry's local folder: the registry itself, or its local cache folder when the registry
is remote too, :func:`storage.model_registry.local_dir`). It is created with
``os.open(O_CREAT | O_EXCL)`` and holds who took it: pid, hostname, process start time, when,
and what for. Taking a lock on ``[start, end]`` fails with :class:`LockError`, naming the holder,
when another live lock on the same store overlaps that range; disjoint ranges run side by side.

The check "no overlapping lock, then write mine" happens under a short per-store guard file
(also ``O_EXCL``), so of two runs racing for overlapping days exactly one wins.

A lock whose holder is gone — same host, and the pid is not running, or is a zombie, or is a
different process started after the lock was written (pid reuse) — is stale: it is taken over
with a warning. A lock held by another host cannot be checked from here and always counts as
held; the error says which file to delete once that run is known to be dead.

Why files and not (only) a Prefect global concurrency limit: a limit counts slots, it cannot say
"these days overlap", so it would serialise backfills of disjoint periods; a SIGKILLed holder
keeps its slot until a lease expires; and without ``PREFECT_API_URL`` every process starts its
own temporary server, so a limit would not be shared between two CLI runs at all.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import socket
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from pipeline.errors import SeedfieldError
from storage import fs
from storage.model_registry import local_dir

LOCK_DIR = ".seedfield-locks"
GUARD_TIMEOUT_S = 30.0

log = logging.getLogger(__name__)


class LockError(SeedfieldError):
    """Another live run holds days of this store; the message names it and its lock file
    (``holder``: who holds it and where, when the error is about a live holder)."""

    def __init__(self, message: str, holder: str | None = None) -> None:
        super().__init__(message)
        self.holder = holder


def lock_dir_for(store_path: str, fallback_dir: str | Path) -> Path:
    """Where the locks of ``store_path`` live: its parent directory, or ``fallback_dir`` if remote."""
    if fs.is_local(store_path):
        local = Path(str(store_path).removeprefix("file://")).resolve()
        return local.parent / LOCK_DIR
    return Path(fallback_dir).resolve() / LOCK_DIR


def _store_key(store_path: str) -> tuple[str, str]:
    """(readable name, digest) of a store: the digest tells apart stores with the same name."""
    canonical = str(Path(store_path).resolve()) if fs.is_local(store_path) else str(store_path).rstrip("/")
    name = canonical.rstrip("/").rsplit("/", 1)[-1] or "store"
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:60]
    return safe, hashlib.sha256(canonical.encode()).hexdigest()[:12]


def _process_start(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


def _me() -> dict[str, Any]:
    pid = os.getpid()
    return {
        "pid": pid,
        "hostname": socket.gethostname(),
        "process_started": _process_start(pid),
        "taken_at": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
    }


def holder_alive(holder: dict[str, Any]) -> bool | None:
    """True/False for a holder on this host; None when it is on another host (unknown)."""
    if holder.get("hostname") != socket.gethostname():
        return None
    pid = int(holder.get("pid", -1))
    if pid <= 0:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        started = proc.create_time()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.AccessDenied:
        return True
    recorded = holder.get("process_started")
    # another process that reused the pid started after the holder wrote its lock
    return not (recorded is not None and abs(started - float(recorded)) > 1.0)


def describe(holder: dict[str, Any]) -> str:
    if holder.get("unreadable"):
        return "an unreadable lock (torn by a crash?)"
    what = holder.get("purpose") or "a run"
    return (f"{what} (pid {holder.get('pid')} on {holder.get('hostname')}, since {holder.get('taken_at')}, "
            f"days {holder.get('start')}…{holder.get('end')})")


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError):
        # a lock being written right now, or a torn file left by a crash: describe it by its name
        return {"pid": -1, "hostname": "?", "unreadable": True}


def _create_exclusive(path: Path, body: dict[str, Any]) -> bool:
    """Write ``body`` to a new file at ``path``; False when the file already exists."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    try:
        os.write(fd, json.dumps(body, indent=1).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return True


@contextlib.contextmanager
def _guard(folder: Path, key: str) -> Iterator[None]:
    """A short mutex around "inspect the locks, then add mine" for one store."""
    guard = folder / f"{key}.guard"
    deadline = time.monotonic() + GUARD_TIMEOUT_S
    while not _create_exclusive(guard, _me()):
        holder = _read(guard)
        if holder is not None and holder_alive(holder) is False:
            log.warning("removing the stale lock guard %s left by pid %s", guard, holder.get("pid"))
            with contextlib.suppress(FileNotFoundError):
                guard.unlink()
            continue
        if time.monotonic() > deadline:
            raise LockError(f"could not take the lock guard {guard} within {GUARD_TIMEOUT_S:.0f} s; "
                            f"held by {holder}; delete it if that process is gone")
        time.sleep(0.05)
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            guard.unlink()


@dataclass
class DayRangeLock:
    """A held lock on days ``start``…``end`` of one store; ``release()`` removes it."""

    store: str
    start: dt.date
    end: dt.date
    path: Path
    took_over: list[str]

    def release(self) -> None:
        holder = _read(self.path)
        if holder is not None and holder.get("pid") == os.getpid() and holder.get("hostname") == socket.gethostname():
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()


def acquire(store_path: str, start: dt.datetime | dt.date, end: dt.datetime | dt.date, purpose: str,
            fallback_dir: str | Path = ".") -> DayRangeLock:
    """Lock days ``start``…``end`` of ``store_path`` for this process, or raise :class:`LockError`.

    Locks cover whole days: hours given as bounds lock the days they fall in.
    """
    start = start.date() if isinstance(start, dt.datetime) else start
    end = end.date() if isinstance(end, dt.datetime) else end
    folder = lock_dir_for(store_path, fallback_dir)
    folder.mkdir(parents=True, exist_ok=True)
    name, digest = _store_key(store_path)
    key = f"{name}.{digest}"
    mine = folder / f"{key}.{start.isoformat()}.{end.isoformat()}.lock"
    took_over: list[str] = []
    with _guard(folder, key):
        for other in sorted(folder.glob(f"{key}.*.lock")):
            parts = other.name.removesuffix(".lock").rsplit(".", 2)
            try:
                o_start, o_end = dt.date.fromisoformat(parts[1]), dt.date.fromisoformat(parts[2])
            except (IndexError, ValueError):
                continue
            if o_end < start or o_start > end:
                continue
            holder = _read(other)
            if holder is None:
                continue
            alive = holder_alive(holder)
            if alive is False:
                log.warning("taking over the stale lock %s: %s is no longer running", other, describe(holder))
                took_over.append(describe(holder))
                with contextlib.suppress(FileNotFoundError):
                    other.unlink()
                continue
            where = "" if alive else " (on another host: delete the file once that run is known to be dead)"
            held_by = f"{describe(holder)}; lock file {other}{where}"
            raise LockError(f"days {start}…{end} of {store_path} are locked by {held_by}", held_by)
        body = {**_me(), "store": str(store_path), "start": start.isoformat(), "end": end.isoformat(),
                "purpose": purpose}
        if not _create_exclusive(mine, body):  # defensive: the loop removed or refused any lock of this range
            raise LockError(f"lock file {mine} appeared while the guard was held")
    return DayRangeLock(str(store_path), start, end, mine, took_over)


@contextlib.contextmanager
def locked(stores: Sequence[str], start: dt.datetime | dt.date, end: dt.datetime | dt.date, purpose: str,
           fallback_dir: str | Path = ".") -> Iterator[list[DayRangeLock]]:
    """Lock the same days of several stores (all or none), released on exit, in a fixed order."""
    held: list[DayRangeLock] = []
    try:
        for store in sorted(dict.fromkeys(str(s) for s in stores)):
            held.append(acquire(store, start, end, purpose, fallback_dir))
        yield held
    finally:
        for lock in reversed(held):
            lock.release()


def pipeline_locks(config: Any, start: dt.datetime | dt.date, end: dt.datetime | dt.date, purpose: str) -> contextlib.AbstractContextManager[list[DayRangeLock]]:
    """Lock days ``start``…``end`` of the raw, seedings and reconstruction stores of ``config``."""
    stores = [config.stores.raw, config.stores.seedings, config.stores.output]
    return locked(stores, start, end, purpose, fallback_dir=local_dir(config.stores.registry))


#: The whole time axis: a slot is a lock that overlaps every other lock of its name.
_ALWAYS = (dt.date(1, 1, 1), dt.date(9999, 12, 31))


@contextlib.contextmanager
def slot(folder: str | Path, name: str, purpose: str, wait_s: float, poll_s: float = 5.0,
         on_wait: Any = None) -> Iterator[None]:
    """Hold the one slot ``name`` kept in ``folder`` (e.g. one training at a time per registry).

    Waits while a live run holds it, calling ``on_wait(message)`` whenever the holder changes
    (what it waits for, held by whom, since when), and raises :class:`LockError` after
    ``wait_s`` seconds. A holder that is no longer running (a SIGKILL, an out-of-memory) is
    taken over at once: unlike a Prefect concurrency slot, nothing waits for a lease to expire.
    """
    path = str(Path(folder).resolve() / name)
    deadline = time.monotonic() + wait_s
    said = None
    while True:
        try:
            lock = acquire(path, *_ALWAYS, purpose)
            break
        except LockError as exc:
            message = f"waiting for the {name} slot ({path}), held by {exc.holder or exc}"
            if time.monotonic() >= deadline:
                raise LockError(f"gave up after {wait_s:.0f} s {message}") from None
            if message != said and on_wait is not None:
                on_wait(message)
            said = message
            time.sleep(max(0.0, min(poll_s, deadline - time.monotonic())))
    for who in lock.took_over:
        if on_wait is not None:
            on_wait(f"took over the {name} slot from {who}, which is no longer running")
    try:
        yield
    finally:
        lock.release()

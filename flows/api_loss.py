"""Telling a lost Prefect API from other errors, and reporting it in one line.

When the Prefect server goes away in the middle of a run (a temporary server that died, a
restarted server), Prefect's client raises an ``httpx`` transport error (``ConnectError: All
connection attempts failed``, a dropped connection) from wherever it next talks to the API:
a task's state change, an artifact, the flow's end. The work itself needs no API: the stores'
commit markers and the training's checkpoints are written whatever Prefect knows, and a re-run
of the same command resumes from them. So:

- the CLI turns such an error into one line, exit 3 (:func:`lost_api_message`);
- what only *reports* progress (the progress artifacts, a training's table of epochs) stops
  reporting at the first such error, with one warning, and lets the work go on
  (:func:`reporting`): a training keeps training and checkpointing to its last epoch.

Imports httpx only when asked about an exception.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

__all__ = ["api_lost", "lost_api_message"]

log = logging.getLogger("seedfield")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo = [exc]
    while todo:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo.extend(x for x in (e.__cause__, e.__context__) if x is not None)
        if isinstance(e, BaseExceptionGroup):
            todo.extend(e.exceptions)


def api_lost(exc: BaseException) -> BaseException | None:
    """The transport error behind ``exc`` when it comes from losing the Prefect API, else None."""
    import httpx

    for e in _chain(exc):
        if isinstance(e, httpx.TransportError):
            return e
    return None


def lost_api_message(url: str | None, command: str, cause: BaseException, rerun: str = "") -> str:
    """The CLI's line; ``rerun``: what to add to the same command to resume (``--model-id …``)."""
    from pipeline.secrets import redact_text, redact_url

    where = redact_url(url) if url else "(unknown URL)"
    what = redact_text(str(cause).strip() or type(cause).__name__)
    again = f"the same command with {rerun}" if rerun else "the same command"
    return (f"lost the Prefect API at {where} during `seedfield {command}`: {type(cause).__name__}: {what}; "
            f"the committed steps and checkpoints are kept — re-run {again} to resume")


def warn_once(owner: object, what: str, exc: BaseException) -> None:
    """One warning per ``owner`` that its reporting stopped because the API is gone."""
    if getattr(owner, "_api_lost_said", False):
        return
    owner._api_lost_said = True  # type: ignore[attr-defined]
    log.warning("the Prefect API is gone (%s: %s): %s stops; the work goes on", type(exc).__name__, exc, what)


class _EventNoise:
    """Prefect reports every event it cannot send to a lost API as a warning and an error that
    repeats the whole event; the first "Unable to connect" says it all."""

    def __init__(self) -> None:
        self.said = False

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "failed to process item Event(" in message:
            return False
        if message.startswith("Unable to connect to"):
            if self.said:
                return False
            self.said = True
        return True


def quiet_event_errors() -> None:
    """Keep one line of Prefect's complaints about events a lost API cannot take (the CLI)."""
    noise = _EventNoise()
    for name in ("prefect.events.clients", "prefect._internal.concurrency"):
        logging.getLogger(name).addFilter(noise)

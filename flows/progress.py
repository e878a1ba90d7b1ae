"""Progress for long work: a Prefect progress artifact in the UI and, on a terminal, a bar."""

from __future__ import annotations

import time
from types import TracebackType

from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.context import FlowRunContext
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)


class RunProgress:
    """Counts finished units of work and shows them where someone is looking.

    ``completed``: units already done when it starts (a resumed training); ``min_interval_s``:
    the artifact is updated at most that often (a training's steps come many a second), and
    always when the work is complete; ``advance``/``update`` take an ``info`` text shown after
    the bar (e.g. the epoch and the loss).
    """

    def __init__(self, total: int, description: str, key: str, show_bar: bool = False,
                 completed: int = 0, min_interval_s: float = 0.0) -> None:
        self.total = max(total, 1)
        self.done = completed
        self.min_interval_s = min_interval_s
        self._artifact_id = None
        self._sent = -1.0
        self._sent_at = 0.0
        self._bar: Progress | None = None
        self._task = None
        if FlowRunContext.get() is not None:
            try:
                self._artifact_id = create_progress_artifact(
                    progress=self._percent(), key=key, description=description
                )
            except Exception as exc:
                self._lost(exc)
            self._sent, self._sent_at = self._percent(), time.monotonic()
        if show_bar:
            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(bar_width=20),
                MofNCompleteColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[info]}"),
                transient=False,
            )
            self._task = self._bar.add_task(description, total=self.total, completed=self.done, info="")

    def _percent(self) -> float:
        return min(100.0, 100.0 * self.done / self.total)

    def __enter__(self) -> RunProgress:
        if self._bar is not None:
            self._bar.start()
        return self

    def advance(self, n: int = 1, info: str | None = None) -> None:
        self.update(self.done + n, info)

    def update(self, done: int, info: str | None = None) -> None:
        """Set the count of finished units to ``done`` (and the text after the bar)."""
        self.done = done
        if self._bar is not None:
            fields = {} if info is None else {"info": info}
            self._bar.update(self._task, completed=self.done, **fields)
        if self._artifact_id is not None:
            now, percent = time.monotonic(), self._percent()
            due = now - self._sent_at >= self.min_interval_s or (percent >= 100.0 and self._sent < 100.0)
            if due and percent != self._sent:
                try:
                    update_progress_artifact(self._artifact_id, progress=percent)
                except Exception as exc:
                    self._lost(exc)
                self._sent, self._sent_at = percent, now

    def _lost(self, exc: Exception) -> None:
        """A lost Prefect API stops the artifact, not the work (:mod:`flows.api_loss`)."""
        from flows.api_loss import api_lost, warn_once

        if api_lost(exc) is None:
            raise exc
        self._artifact_id = None
        warn_once(self, "the progress artifact", exc)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._artifact_id is not None and exc_type is None and self._percent() != self._sent:
            try:
                update_progress_artifact(self._artifact_id, progress=self._percent())
            except Exception as exc:
                self._lost(exc)
        if self._bar is not None:
            self._bar.stop()

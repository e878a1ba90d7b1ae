"""Progress for long work: a Prefect progress artifact in the UI and, on a terminal, a bar."""

from __future__ import annotations

from types import TracebackType

from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.context import FlowRunContext
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


class RunProgress:
    """Counts finished units of work and shows them where someone is looking."""

    def __init__(self, total: int, description: str, key: str, show_bar: bool = False) -> None:
        self.total = max(total, 1)
        self.done = 0
        self._artifact_id = None
        self._bar: Progress | None = None
        self._task = None
        if FlowRunContext.get() is not None:
            self._artifact_id = create_progress_artifact(
                progress=0.0, key=key, description=description
            )
        if show_bar:
            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                transient=False,
            )
            self._task = self._bar.add_task(description, total=self.total)

    def __enter__(self) -> RunProgress:
        if self._bar is not None:
            self._bar.start()
        return self

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done)
        if self._artifact_id is not None:
            update_progress_artifact(self._artifact_id, progress=100.0 * self.done / self.total)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._bar.stop()

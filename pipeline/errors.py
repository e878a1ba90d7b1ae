"""User-facing error types of the pipeline.

Every error a user can act on derives from :class:`SeedfieldError`.  Problems with one archive
file (or one day inside it) raise :class:`ArchiveError`, whose message always names the file, so a
log line is enough to find the culprit.
"""

from __future__ import annotations

import datetime

from pipeline.secrets import redact_text


class SeedfieldError(Exception):
    """Base for all user-facing errors."""


class ArchiveError(SeedfieldError):
    """A problem with one archive file or one day. Message names the file and the problem.

    ``str(error)`` is ``"<source>: <problem>"``, or ``"<source> [<day>]: <problem>"`` when the
    problem concerns one day of the file.
    """

    def __init__(self, source: str, problem: str, day: datetime.date | None = None) -> None:
        self.source = redact_text(str(source))  # an error message never carries a credential
        self.problem = redact_text(str(problem))
        self.day = day
        where = self.source if day is None else f"{self.source} [{_label(day)}]"
        super().__init__(f"{where}: {self.problem}")

    def __reduce__(self) -> tuple[type, tuple[str, str, datetime.date | None]]:
        # keeps the error picklable (process pools, Prefect task results)
        return (type(self), (self.source, self.problem, self.day))


class GridMismatchError(ArchiveError):
    """A file's grid does not have the cells the pipeline expects."""


def _label(step: datetime.date) -> str:
    """``2019-03-01`` for a day, ``2019-03-01T05`` for an hour (as pipeline.steps.step_label)."""
    if isinstance(step, datetime.datetime):
        return step.strftime("%Y-%m-%dT%H")
    return step.isoformat()

"""Per-step outcomes of a run, and the JSON report written from them."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from pipeline.secrets import redact_text

Status = Literal["ok", "unchanged", "failed", "missing", "skipped"]
FAILED: frozenset[str] = frozenset({"failed", "missing"})


@dataclass(frozen=True)
class StepOutcome:
    """What happened to one time step (``day`` holds its label, ``2019-03-01`` or
    ``2019-03-01T05``; the key keeps its name for existing report readers): ``ok`` written, ``unchanged`` already stored identically,
    ``skipped`` not attempted (committed before), ``failed`` bad input, ``missing`` no input."""

    day: str
    status: Status
    source: str = ""
    message: str = ""


def summarise(outcomes: Iterable[StepOutcome]) -> dict[str, int]:
    counts = Counter(o.status for o in outcomes)
    return {s: counts.get(s, 0) for s in ("ok", "unchanged", "skipped", "failed", "missing")}


def write_report(path: str | Path, flow: str, outcomes: list[StepOutcome], **extra: Any) -> None:
    """Write the run's JSON report: a summary and one entry per day, sorted by day."""
    body = {
        "flow": flow,
        "finished_at": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        **extra,
        "summary": summarise(outcomes),
        "days": [asdict(o) for o in sorted(outcomes, key=lambda o: o.day)],
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(redact_text(json.dumps(body, indent=1)))  # a report never holds a credential


def any_failed(outcomes: Iterable[StepOutcome]) -> bool:
    return any(o.status in FAILED for o in outcomes)

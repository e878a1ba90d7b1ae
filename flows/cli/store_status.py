"""``seedfield status``: what a store's commit markers say, step by step, compressed into runs.

Read-only: opens the store's time axis and its ``_seedfield/commits`` markers (any store the
flows write: raw, seedings, reconstruction). A step on the axis with no marker is ``absent``
(not written yet); a marker's ``status`` is ok, failed, missing or rewriting (a write that was
interrupted or is under way); an ok step may be ``preliminary`` (a later file replaces it).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pipeline.secrets import redact_text, redact_url

PROBLEMS = ("failed", "missing", "rewriting")


def store_status(path: str, storage_options: dict[str, Any] | None = None,
                 start: dt.date | None = None, end: dt.date | None = None) -> dict[str, Any]:
    """The status of every step of the store at ``path`` from ``start`` to ``end`` (open bounds:
    the store's first and last step), as JSON-able dicts. A StoreError when no store is there."""
    from pipeline.steps import step_label
    from storage.step_store import StepStore, StoreError

    shown = redact_url(path)
    if not StepStore.exists(path, storage_options):
        if StepStore.interrupted(path, storage_options):
            raise StoreError(f"{shown}: its creation was interrupted; it holds no step (the next run replaces it)")
        raise StoreError(f"{shown}: no seedfield store here (expected a Zarr store written by ingest, prepare or infer)")
    store = StepStore(path, storage_options)
    cadence = store.cadence
    axis = store.steps
    markers = store.markers()
    steps = sorted(set(axis) | set(markers), key=cadence.ordinal)
    if steps and (start is not None or end is not None):
        inside = set(cadence.steps(start or steps[0], end or steps[-1]))
        steps = [s for s in steps if s in inside]
    rows = []
    for s in steps:
        marker = markers.get(s)
        rows.append({
            "step": step_label(s),
            "status": marker.get("status", "unknown") if marker else "absent",
            "preliminary": bool(marker and marker.get("preliminary")),
            "error": redact_text(str(marker.get("error") or marker.get("message") or "")) if marker else "",
            "written_at": marker.get("written_at") if marker else None,
        })
    ordinals = [cadence.ordinal(s) for s in steps]
    runs = _runs(rows, ordinals, ("status", "preliminary"))
    problems = [r for r in _runs(rows, ordinals, ("status",)) if r["status"] in PROBLEMS]
    for run in problems:  # the run's first error, and how many different ones it holds
        errors = [r["error"] for r in rows if run["first"] <= r["step"] <= run["last"] and r["status"] == run["status"]]
        run["error"], run["distinct_errors"] = errors[0], len(set(errors))
    counts = Counter(r["status"] for r in rows)
    return {
        "store": shown,
        "step": str(cadence),
        "axis": [step_label(axis[0]), step_label(axis[-1])] if axis else None,
        "period": [rows[0]["step"], rows[-1]["step"]] if rows else None,
        "counts": dict(sorted(counts.items())),
        "preliminary": sum(r["preliminary"] for r in rows),
        "runs": runs,
        "problems": problems,
        "steps": rows,
    }


def _runs(rows: list[dict[str, Any]], ordinals: list[int], keys: tuple[str, ...]) -> list[dict[str, Any]]:
    """Consecutive steps (adjacent on the time axis) that agree on ``keys``, as one run each."""
    runs: list[dict[str, Any]] = []
    for i, row in enumerate(rows):
        last = runs[-1] if runs else None
        if last and ordinals[i] == ordinals[i - 1] + 1 and all(last[k] == row[k] for k in keys):
            last["last"], last["count"] = row["step"], last["count"] + 1
        else:
            runs.append({"first": row["step"], "last": row["step"], **{k: row[k] for k in keys}, "count": 1})
    return runs


def _span(run: dict[str, Any]) -> str:
    return run["first"] if run["first"] == run["last"] else f"{run['first']} … {run['last']}"


def print_status(report: dict[str, Any], console: Console) -> None:
    """The report as a table of runs, the counts and the problems with their errors."""
    axis = report["axis"]
    console.print(f"[bold]{escape(report['store'])}[/] (step {report['step']}; time axis "
                  f"{' … '.join(axis) if axis else 'empty'})", highlight=False)
    if not report["steps"]:
        console.print("no step in this period")
        return
    table = Table(box=None, pad_edge=False, show_header=True)
    table.add_column("steps")
    table.add_column("status")
    table.add_column("count", justify="right")
    for run in report["runs"]:
        label = run["status"] + (" (preliminary)" if run["preliminary"] else "")
        table.add_row(_span(run), label, str(run["count"]))
    console.print(table, highlight=False)
    counts = ", ".join(f"{k} {v}" for k, v in report["counts"].items())
    extra = f" ({report['preliminary']} preliminary)" if report["preliminary"] else ""
    console.print(f"{len(report['steps'])} steps: {counts}{extra}", highlight=False)
    for run in report["problems"]:
        why = f": {run['error']}" if run["error"] else ""
        if run["distinct_errors"] > 1:
            why += f" (and {run['distinct_errors'] - 1} other message(s): --json lists every step's)"
        console.print(f"{run['status']} {_span(run)} ({run['count']}){escape(why)}", highlight=False, soft_wrap=True)

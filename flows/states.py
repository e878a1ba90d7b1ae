"""Flow results that the Prefect UI shows truthfully.

A run in which some steps failed or were missing still stores every step it could; its result
dict says so (``"ok": False``). :func:`finish` turns such a result into a ``Failed`` state whose
message counts the failed steps, so the UI shows the run red instead of a plain green
"Completed", while the result stays readable: :func:`run_flow` calls a flow and returns its
result dict whatever the state (and raises the exception of a run that really crashed). The CLI's
exit code is decided from the dict, as before (3 for some days failed).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect.states import Failed, State

__all__ = ["finish", "run_flow"]


def finish(result: dict[str, Any], what: str = "steps") -> dict[str, Any] | State:
    """``result`` itself when ``result["ok"]``, else a Failed state carrying it."""
    if result.get("ok", True):
        return result
    failed = result.get("failed_days") or [
        r["day"] for r in result.get("days", []) if r.get("status") in ("failed", "missing")]
    counts = result.get("summary", {})
    bad = counts.get("failed", 0) + counts.get("missing", 0) or len(failed)
    total = sum(counts.values()) if counts else bad
    shown = ", ".join(map(str, failed[:5])) + (" …" if len(failed) > 5 else "")
    message = f"{bad} of {total} {what} failed or missing" + (f": {shown}" if shown else "") + "; the rest is stored"
    return Failed(message=message, data=result)


def run_flow(flow: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run ``flow`` and return its result, also when :func:`finish` failed the run for some
    steps; the exception of a run that crashed is raised."""
    state = flow(*args, return_state=True, **kwargs)
    data = state.result(raise_on_failure=False)
    if isinstance(data, BaseException):
        raise data
    return data

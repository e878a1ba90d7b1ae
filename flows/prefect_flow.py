"""The decorator every seedfield flow is declared with: Prefect's own ``Flow``, with a parameter
serialiser that does not import FastAPI, and a flow run that ends without waiting for its
heartbeat thread.

Prefect records a flow run's parameters (shown in the UI) through FastAPI's ``jsonable_encoder``,
and importing it loads all of FastAPI and Starlette: about 0.3 s of CPU, a tenth of what a
one-day command spends before its work starts (docs/benchmarks.md). ``pydantic_core`` is loaded
by Prefect anyway and its encoder gives the same JSON for every kind of value seedfield passes to
a flow (strings, numbers, booleans, None, dates and datetimes, paths, lists, tuples, dicts,
pydantic models, enums; a datetime nested inside another value is written with a UTC offset
``Z`` rather than ``+00:00``); tests/test_prefect_flow.py holds the two encoders side by side.

A synchronous flow run sends a heartbeat event every ``PREFECT_FLOWS_HEARTBEAT_FREQUENCY``
seconds from a thread that sleeps in steps of one second, and at the end of the run Prefect joins
that thread: every flow run waits half a second on average (0.7 s measured for a one-day ingest)
for nothing. Prefect's asynchronous engine does not join it (``join_on_exit=False``), and
:func:`_heartbeats_not_joined` makes the synchronous one do the same: the thread is a daemon that
stops at its next step and sends no heartbeat for a run in a final state. Heartbeats are still
sent while the run lasts (tests/test_prefect_flow.py reads one back from the server). This wraps
a private function of Prefect 3.8: where it is missing or its signature differs, nothing is
changed and the test that checks the wrapping fails. (A heartbeat being sent as the run fails may
now be recorded just after the Failed state; heartbeats are 180 s apart by default.)
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import inspect
from collections.abc import Callable, Iterator
from typing import Any, ParamSpec, TypeVar

import prefect.flow_engine
from prefect import Flow
from prefect.futures import PrefectFuture
from prefect.states import State
from pydantic_core import PydanticSerializationError, to_jsonable_python

P = ParamSpec("P")
R = TypeVar("R")


def jsonable_parameters(parameters: dict[str, Any]) -> dict[str, Any]:
    """Each parameter as JSON-compatible data, or ``<TypeName>`` where it has none (as Prefect
    does: such a parameter is not stored in the backend, the run goes on)."""
    serialised: dict[str, Any] = {}
    for key, value in parameters.items():
        if isinstance(value, (PrefectFuture, State)):
            serialised[key] = f"<{type(value).__name__}>"
            continue
        if isinstance(value, (dt.date, dt.time)):  # pydantic writes UTC as "Z", Prefect "+00:00"
            serialised[key] = value.isoformat()
            continue
        try:
            serialised[key] = to_jsonable_python(value)
        except (PydanticSerializationError, TypeError, ValueError, RecursionError):
            serialised[key] = f"<{type(value).__name__}>"
    return serialised


class SeedfieldFlow(Flow[P, R]):
    """A Prefect flow whose parameters are serialised by :func:`jsonable_parameters`."""

    def serialize_parameters(self, parameters: dict[str, Any]) -> dict[str, Any]:
        return jsonable_parameters(parameters)


def flow(**options: Any) -> Callable[[Callable[P, R]], SeedfieldFlow[P, R]]:
    """``@flow(name=..., flow_run_name=...)`` as Prefect's decorator, making a :class:`SeedfieldFlow`."""

    def decorate(fn: Callable[P, R]) -> SeedfieldFlow[P, R]:
        return SeedfieldFlow(fn=fn, **options)

    return decorate


def _heartbeats_not_joined() -> bool:
    """Make the synchronous flow engine end a run without joining its heartbeat thread (see the
    module docstring); True when installed (or already), False when Prefect's function differs."""
    current = getattr(prefect.flow_engine, "_send_heartbeats", None)
    if getattr(current, "seedfield_not_joined", False):
        return True
    if current is None or "join_on_exit" not in inspect.signature(current).parameters:
        return False

    @functools.wraps(current)
    @contextlib.contextmanager
    def send_heartbeats(engine: Any, join_on_exit: bool = True) -> Iterator[None]:
        with current(engine, join_on_exit=False):
            yield

    send_heartbeats.seedfield_not_joined = True  # type: ignore[attr-defined]
    prefect.flow_engine._send_heartbeats = send_heartbeats
    return True


HEARTBEATS_NOT_JOINED = _heartbeats_not_joined()

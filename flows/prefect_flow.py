"""The decorator every seedfield flow is declared with: Prefect's own ``Flow``, with a parameter
serialiser that does not import FastAPI.

Prefect records a flow run's parameters (shown in the UI) through FastAPI's ``jsonable_encoder``,
and importing it loads all of FastAPI and Starlette: about 0.3 s of CPU, a tenth of what a
one-day command spends before its work starts (docs/benchmarks.md). ``pydantic_core`` is loaded
by Prefect anyway and its encoder gives the same JSON for every kind of value seedfield passes to
a flow (strings, numbers, booleans, None, dates and datetimes, paths, lists, tuples, dicts,
pydantic models, enums; a datetime nested inside another value is written with a UTC offset
``Z`` rather than ``+00:00``); tests/test_prefect_flow.py holds the two encoders side by side.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

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

"""Run many Prefect tasks with a bounded number in flight, so memory stays flat over long ranges."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from prefect.futures import PrefectFuture, as_completed

T = TypeVar("T")


def run_windowed(
    submit: Callable[[T], PrefectFuture[Any]], items: Iterable[T], window: int
) -> Iterator[tuple[T, Any]]:
    """Submit ``items`` one by one, at most ``window`` at a time; yield (item, result) as they end.

    A task that raised yields its exception as the result instead of stopping the others.
    """
    pending: dict[PrefectFuture[Any], T] = {}
    it = iter(items)
    exhausted = False
    while pending or not exhausted:
        while not exhausted and len(pending) < window:
            try:
                item = next(it)
            except StopIteration:
                exhausted = True
                break
            pending[submit(item)] = item
        if not pending:
            break
        done = next(as_completed(list(pending)))
        item = pending.pop(done)
        try:
            result = done.result()
        except Exception as exc:  # the task failed after its retries
            result = exc
        yield item, result

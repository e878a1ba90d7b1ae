"""Small measuring helpers shared by the benchmark scripts: wall time and peak RSS of a process tree."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psutil


@dataclass
class Measurement:
    seconds: float = 0.0
    peak_rss_mib: float = 0.0


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


@contextmanager
def measure(interval: float = 0.02) -> Iterator[Measurement]:
    """Wall time of the block and the peak RSS of this process and its children (sampled)."""
    m = Measurement()
    proc = psutil.Process(os.getpid())
    stop = threading.Event()
    peak = [tree_rss(proc)]

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], tree_rss(proc))
            stop.wait(interval)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    t0 = time.perf_counter()
    try:
        yield m
    finally:
        m.seconds = time.perf_counter() - t0
        stop.set()
        t.join()
        m.peak_rss_mib = peak[0] / 2**20

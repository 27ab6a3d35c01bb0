"""Shared timing helper for the benchmarks (run as scripts: this folder is on sys.path)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

R = TypeVar("R")


def best_of(fn: Callable[[], R], repeat: int) -> tuple[float, R]:
    """(seconds of the fastest of ``repeat`` runs of ``fn``, what the last run returned)."""
    times = []
    result: R
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), result

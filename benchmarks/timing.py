"""Shared timing helpers for the benchmarks (run as scripts: this folder is on sys.path).

:func:`best_of` times one function. :func:`rounds` times several side by side: each round runs
every function once, in turn, after an untimed ``settle`` step, so that a change in the
machine's state (load, page cache, writeback) hits the baseline and dlprep alike; the results
give the best and the median (the typical run) and the spread of the per-round ratios.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
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


@dataclass(frozen=True)
class Times:
    """Wall times of one function over the rounds (seconds, in round order)."""

    runs: tuple[float, ...]

    @property
    def best(self) -> float:
        return min(self.runs)

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    @property
    def worst(self) -> float:
        return max(self.runs)


@dataclass(frozen=True)
class Ratio:
    """``ours`` against ``base`` (a time ratio: below 1 means dlprep is faster)."""

    base: Times
    ours: Times

    @property
    def median(self) -> float:
        """Ratio of the medians: the typical run (the verdicts use this)."""
        return self.ours.median / self.base.median

    @property
    def best(self) -> float:
        """Ratio of the bests (what earlier reports gave)."""
        return self.ours.best / self.base.best

    @property
    def per_round(self) -> list[float]:
        return [o / b for o, b in zip(self.ours.runs, self.base.runs, strict=True)]

    @property
    def spread(self) -> tuple[float, float]:
        """Lowest and highest per-round ratio (each round runs both sides back to back)."""
        r = self.per_round
        return min(r), max(r)

    def text(self) -> str:
        lo, hi = self.spread
        return f"{self.median:.2f}x (best {self.best:.2f}x, rounds {lo:.2f}-{hi:.2f}x)"


def rounds(fns: Mapping[str, Callable[[], object]], repeat: int,
           settle: Callable[[str], None] | None = None) -> dict[str, Times]:
    """Run each function of ``fns`` once per round, ``repeat`` rounds, calling ``settle(name)``
    (untimed) before each run; the wall times by name."""
    out: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(max(1, repeat)):
        for name, fn in fns.items():
            if settle is not None:
                settle(name)
            t0 = time.perf_counter()
            fn()
            out[name].append(time.perf_counter() - t0)
    return {name: Times(tuple(ts)) for name, ts in out.items()}


def _dirty_bytes() -> int:
    """Dirty + under-writeback page-cache bytes, system-wide (0 where /proc is missing)."""
    try:
        text = Path("/proc/meminfo").read_text()
    except OSError:
        return 0
    total = 0
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("Dirty", "Writeback"):
            total += int(rest.split()[0]) * 1024
    return total


def quiesce_disk(limit: int = 16 << 20, timeout: float = 20.0) -> int:
    """``sync``, then wait (up to ``timeout`` s) until dirty and writeback pages are under
    ``limit`` bytes, so no run pays for the previous one's writes; the bytes left."""
    os.sync()
    deadline = time.monotonic() + timeout
    left = _dirty_bytes()
    while left > limit and time.monotonic() < deadline:
        time.sleep(0.05)
        os.sync()
        left = _dirty_bytes()
    return left


def warm(paths: Iterable[Path]) -> None:
    """Read ``paths`` once so that they are in the page cache (the inputs are already cached
    for every side, as after a download)."""
    buf = memoryview(bytearray(8 << 20))
    for p in paths:
        with open(p, "rb", buffering=0) as fh:
            while fh.readinto(buf):
                pass


def load_average() -> str:
    """The 1-, 5- and 15-minute load averages, for the report."""
    try:
        return "/".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "n/a"

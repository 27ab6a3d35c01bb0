"""Run an iterator on a background thread, a few items ahead of its consumer.

Used to overlap reading and inflating input (ISA-L, zlib and file reads release the GIL) with
decoding and writing. Exceptions raised by the iterator are re-raised in the consumer.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Generic, TypeVar

T = TypeVar("T")
_DONE = object()


class _Raised:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class Prefetch(Generic[T]):
    """Iterate ``source`` on a thread, at most ``depth`` items ahead. Use as a context
    manager (or call :meth:`close`) so the thread stops when the consumer stops early."""

    def __init__(self, source: Iterator[T], depth: int = 2, name: str = "dlprep-prefetch") -> None:
        self._source = source
        self._queue: queue.Queue[object] = queue.Queue(max(1, depth))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            for item in self._source:
                if not self._put(item):
                    return
            self._put(_DONE)
        except BaseException as exc:  # re-raised in the consumer
            self._put(_Raised(exc))

    def __iter__(self) -> Iterator[T]:
        return self.items()

    def items(self, idle: Callable[[], object] | None = None,
              every: float = 0.01) -> Iterator[T]:
        """The items; while waiting for the next one, call ``idle`` every ``every`` seconds
        (lets the consumer act on progress it can see elsewhere)."""
        while True:
            if idle is None:
                item = self._queue.get()
            else:
                while True:
                    try:
                        item = self._queue.get(timeout=every)
                        break
                    except queue.Empty:
                        idle()
            if item is _DONE:
                return
            if isinstance(item, _Raised):
                raise item.exc
            yield item  # type: ignore[misc]

    def ready(self) -> bool:
        """True when the next item is already waiting (the producer is ahead)."""
        return not self._queue.empty()

    def close(self) -> None:
        """Stop the thread and close the source iterator (its ``finally`` blocks run)."""
        self._stop.set()
        self._thread.join()
        close = getattr(self._source, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> Prefetch[T]:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

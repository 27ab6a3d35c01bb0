"""Inter-process locks on lock files.

On POSIX this is ``flock`` on the lock file: the same lock ``filelock.UnixFileLock`` takes (the
two interoperate), without its per-lock bookkeeping, which costs about a millisecond per lock
and shows with thousands of small files. Elsewhere it is ``filelock.FileLock``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import TracebackType

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


class PathLock:
    """An exclusive lock held through ``path`` (created if missing, never deleted)."""

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        self._fd: int | None = None
        self._fallback = None
        if fcntl is None:  # pragma: no cover - Windows
            from filelock import FileLock
            self._fallback = FileLock(self.path)

    def acquire(self, timeout: float | None = None, poll: float = 0.05) -> bool:
        """Take the lock; wait at most ``timeout`` seconds (forever when None, not at all
        when 0). Returns False when it timed out."""
        if self._fallback is not None:  # pragma: no cover - Windows
            from filelock import Timeout
            try:
                self._fallback.acquire(timeout=-1 if timeout is None else timeout)
                return True
            except Timeout:
                return False
        if self._fd is not None:
            raise RuntimeError(f"{self.path}: lock already held by this object")
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        try:
            if timeout is None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            else:
                deadline = time.monotonic() + timeout
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() >= deadline:
                            os.close(fd)
                            return False
                        time.sleep(poll)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fallback is not None:  # pragma: no cover - Windows
            self._fallback.release()
            return
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self) -> PathLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()

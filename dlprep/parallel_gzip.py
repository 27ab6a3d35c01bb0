"""Parallel inflate of big gzip files with ``rapidgzip`` (optional: the ``fast`` extra).

:func:`open_gzip` is what :func:`dlprep.limits.open_decompressed` uses for gzip: rapidgzip on
several threads when it is installed and :func:`gzip_threads` says it pays (enough usable
cores, a big file), else ISA-L's single stream (:mod:`dlprep.magic`). The bytes and the errors
are the same either way. The rule and the figures behind it are in docs/PERFORMANCE.md.
"""

from __future__ import annotations

import atexit
import io
import os
import threading
import weakref
from pathlib import Path
from typing import Any, BinaryIO

from .magic import open_compressed

try:  # optional: parallel inflate (pip install dlprep[fast])
    import rapidgzip as _rapidgzip
except ImportError:  # pragma: no cover - exercised by the no-rapidgzip test run
    _rapidgzip = None

__all__ = ["PARALLEL_GZIP", "PARALLEL_GZIP_MIN_BYTES", "PARALLEL_GZIP_MIN_CORES", "gzip_threads",
           "open_gzip", "usable_cores"]


def _mode_from_env() -> str:
    value = os.environ.get("DLPREP_PARALLEL_GZIP", "").strip().lower()
    return value if value in ("off", "on") else "auto"


PARALLEL_GZIP: str = _mode_from_env()
"""``"auto"``: inflate a gzip file in parallel when rapidgzip is installed, the process may use
:data:`PARALLEL_GZIP_MIN_CORES` cores or more and the file has :data:`PARALLEL_GZIP_MIN_BYTES`
or more; ``"off"``: never; ``"on"``: every gzip file (tests, benchmarks). Set by
``DLPREP_PARALLEL_GZIP``."""

PARALLEL_GZIP_MIN_BYTES = 64 << 20
"""Below this (compressed) size, starting rapidgzip's threads costs more than they win."""

PARALLEL_GZIP_MIN_CORES = 2
"""With one usable core there is nothing to run the threads on. On 2 quiet cores the 171 MB
CIFAR-like tar.gz converted 17 % faster with it; files of tens of MB ran slower, hence
:data:`PARALLEL_GZIP_MIN_BYTES` (docs/PERFORMANCE.md)."""


def usable_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def gzip_threads(packed_bytes: int) -> int:
    """How many threads inflate a gzip file of ``packed_bytes`` (see :data:`PARALLEL_GZIP`):
    1 means ISA-L's single stream."""
    if _rapidgzip is None or PARALLEL_GZIP == "off":
        return 1
    cores = min(usable_cores(), 16)
    if PARALLEL_GZIP == "on":
        return max(2, cores)
    if cores < PARALLEL_GZIP_MIN_CORES or packed_bytes < PARALLEL_GZIP_MIN_BYTES:
        return 1
    return cores


_OPEN_PARALLEL: weakref.WeakSet[_ParallelGzip] = weakref.WeakSet()


@atexit.register
def _close_parallel_readers() -> None:
    """rapidgzip aborts the interpreter when its threads outlive it: close what is left open."""
    for reader in list(_OPEN_PARALLEL):
        reader.close()


class _ParallelGzip(io.RawIOBase):
    """gzip inflated by rapidgzip on ``threads`` threads. On any rapidgzip error, or an end of
    stream that the gzip trailer does not confirm, reading goes on with ISA-L from the same
    decompressed position, so what is accepted (zero padding after the stream, several
    members) and what is refused (truncation, bad CRC or length, trailing garbage), with which
    error, is exactly what the single-stream path does."""

    def __init__(self, path: Path, threads: int) -> None:
        super().__init__()
        self.path = path
        self.pos = 0
        self._lock = threading.Lock()
        self._slow: BinaryIO | None = None
        self._fast: Any = None
        try:
            self._fast = _rapidgzip.RapidgzipFile(os.fspath(path), parallelization=threads)
        except (ValueError, RuntimeError, OSError, EOFError):
            self._slow = open_compressed(path, "gzip")
        _OPEN_PARALLEL.add(self)

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:  # type: ignore[override]
        with self._lock:
            if self.closed:
                raise ValueError("read from a closed file")
            if self._fast is not None:
                try:
                    n = self._fast.readinto(buf)
                except (ValueError, RuntimeError, OSError, EOFError):
                    self._hand_over()
                else:
                    if n or not len(buf) or self._ends_as_declared():
                        self.pos += n
                        return n
                    self._hand_over()  # rapidgzip may end a truncated file without an error
            assert self._slow is not None
            n = self._slow.readinto(buf)  # type: ignore[attr-defined]
            self.pos += n or 0
            return n or 0

    def _ends_as_declared(self) -> bool:
        """At rapidgzip's end of stream: the gzip trailer's length field (the last 4 bytes:
        the last member's size mod 2**32) matches what was read. A truncated file, zero
        padding or a multi-member file fails this and goes through ISA-L (the first raises,
        the others come out whole)."""
        try:
            with open(self.path, "rb") as fh:
                fh.seek(-4, os.SEEK_END)
                return int.from_bytes(fh.read(4), "little") == self.pos & 0xFFFFFFFF
        except OSError:
            return False

    def _hand_over(self) -> None:
        """Close rapidgzip and reopen with ISA-L past the ``pos`` bytes already returned
        (ISA-L's own error, if the file is bad, comes from here or from the next reads)."""
        self._close_fast()
        slow = open_compressed(self.path, "gzip")
        left = self.pos
        scratch = memoryview(bytearray(min(left, 1 << 20) or 1))
        try:
            while left:
                k = slow.readinto(scratch[:min(left, len(scratch))])  # type: ignore[attr-defined]
                if not k:
                    raise EOFError(f"{self.path}: gzip stream ended after {self.pos - left:,} "
                                   f"bytes, {self.pos:,} were read")
                left -= k
        except BaseException:
            slow.close()
            raise
        self._slow = slow

    def _close_fast(self) -> None:
        fast, self._fast = self._fast, None
        if fast is not None:
            fast.close()

    def close(self) -> None:
        if self.closed:
            return
        with self._lock:
            try:
                self._close_fast()
                if self._slow is not None:
                    self._slow.close()
            finally:
                super().close()


def open_gzip(path: Path, packed_bytes: int) -> BinaryIO:
    """The inflated stream of the gzip file ``path`` (``packed_bytes`` long): in parallel when
    :func:`gzip_threads` says so, else ISA-L. Unbounded: callers wrap it (dlprep.limits)."""
    threads = gzip_threads(packed_bytes)
    if threads > 1:
        return _ParallelGzip(path, threads)  # type: ignore[return-value]
    return open_compressed(path, "gzip")

"""Operating-system write helpers for the store: positional writes that start writeback early.

``pwrite_all`` writes a NumPy array's bytes at a file offset (the GIL is released while the
kernel copies) and then asks Linux to start writing them to disk (``sync_file_range``), so the
final ``fsync`` has little left to wait for. ``pwrite_direct`` sends the page-aligned part
straight to the disk (``O_DIRECT``): no copy into the page cache and no dirty pages, which
made the buffered write's CPU cost swing 3x from run to run (docs/PERFORMANCE.md).
"""

from __future__ import annotations

import ctypes
import os
import sys
from typing import Any

import numpy as np


def _load_sync_file_range() -> Any:
    """Linux ``sync_file_range`` (start writing dirty pages back now, without waiting), or
    None where it is not available."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    fn.restype = ctypes.c_int
    return fn


_SYNC_FILE_RANGE = _load_sync_file_range()
_SYNC_FILE_RANGE_WRITE = 2
HAVE_PWRITE = hasattr(os, "pwrite")


def pwrite_all(fd: int, data: np.ndarray, offset: int) -> None:
    """Write ``data``'s bytes at ``offset`` of ``fd``, then hint the kernel to start writeback."""
    view = memoryview(data.reshape(-1)).cast("B")
    done = 0
    while done < len(view):
        done += os.pwrite(fd, view[done:], offset + done)
    if _SYNC_FILE_RANGE is not None and done:
        _SYNC_FILE_RANGE(fd, offset, done, _SYNC_FILE_RANGE_WRITE)  # a hint; errors ignored


PAGE = 4096
"""Alignment of direct writes: the file offset, the length and the source buffer's address."""


def open_direct(path: Any) -> int | None:
    """A second write descriptor of ``path`` with ``O_DIRECT`` (writes go from the caller's
    buffer to the disk: no copy into the page cache, no dirty pages), or None where the
    platform or the file system does not offer it."""
    flag = getattr(os, "O_DIRECT", 0)
    if not flag:
        return None
    try:
        return os.open(path, os.O_WRONLY | flag | getattr(os, "O_CLOEXEC", 0))
    except OSError:  # e.g. EINVAL: the file system has no direct I/O
        return None


def aligned_empty(nbytes: int) -> np.ndarray:
    """An uninitialised uint8 buffer of ``nbytes`` whose first byte is page-aligned (so that
    :func:`pwrite_direct` can send it to the disk without a copy)."""
    raw = np.empty(nbytes + PAGE, np.uint8)
    skip = -raw.ctypes.data % PAGE
    return raw[skip:skip + nbytes]


def pwrite_direct(direct_fd: int, fd: int, data: np.ndarray, offset: int) -> None:
    """Write ``data``'s bytes at ``offset`` like :func:`pwrite_all`, sending the page-aligned
    middle through ``direct_fd`` (``O_DIRECT``) when the buffer's address lines up with the
    file offset, and the rest (or everything, when it does not line up) through ``fd``."""
    view = memoryview(data.reshape(-1)).cast("B")
    n = len(view)
    head = -offset % PAGE
    if (data.ctypes.data + head) % PAGE or head + PAGE > n:
        pwrite_all(fd, data, offset)
        return
    end = head + (n - head) // PAGE * PAGE
    done = head
    try:
        while done < end:
            k = os.pwrite(direct_fd, view[done:end], offset + done)
            if k <= 0 or k % PAGE:  # a short, unaligned write: finish through the cache
                done += max(k, 0)
                break
            done += k
    except OSError as exc:
        if exc.errno != getattr(os, "EINVAL", 22):  # EINVAL: not allowed here after all
            raise
    if head:
        pwrite_all(fd, np.frombuffer(view[:head], np.uint8), offset)
    if done < n:
        pwrite_all(fd, np.frombuffer(view[done:], np.uint8), offset + done)

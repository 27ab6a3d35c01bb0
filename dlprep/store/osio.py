"""Operating-system write helpers for the store: positional writes that start writeback early.

``pwrite_all`` writes a NumPy array's bytes at a file offset (the GIL is released while the
kernel copies) and then asks Linux to start writing them to disk (``sync_file_range``), so the
final ``fsync`` has little left to wait for.
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

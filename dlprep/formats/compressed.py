"""Open a file transparently through gzip/bz2/xz by its magic bytes."""

from __future__ import annotations

import bz2
import gzip
import lzma
import mmap
import os
from pathlib import Path
from typing import BinaryIO

from ..errors import FormatError


def open_maybe_compressed(path: Path) -> BinaryIO:
    """Return a binary stream of the decompressed content of ``path``."""
    with open(path, "rb") as fh:
        head = fh.read(6)
    if head[:2] == b"\x1f\x8b":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    if head[:3] == b"BZh":
        return bz2.open(path, "rb")  # type: ignore[return-value]
    if head[:6] == b"\xfd7zXZ\x00":
        return lzma.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def is_compressed(path: Path) -> bool:
    """True when ``path`` starts with a gzip, bz2 or xz magic number."""
    with open(path, "rb") as fh:
        head = fh.read(6)
    return head[:2] == b"\x1f\x8b" or head[:3] == b"BZh" or head[:6] == b"\xfd7zXZ\x00"


def map_file(path: Path) -> bytes | mmap.mmap:
    """A read-only memory map of ``path`` (zero-copy bytes-like); empty files give ``b""``."""
    with open(path, "rb") as fh:
        if os.fstat(fh.fileno()).st_size == 0:
            return b""
        return mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)


def read_all(path: Path) -> bytes | mmap.mmap:
    """The whole decompressed content of ``path`` as a bytes-like object (uncompressed files are
    memory-mapped, not copied); stream errors become FormatError."""
    try:
        if not is_compressed(path):
            return map_file(path)
        with open_maybe_compressed(path) as fh:
            return fh.read()
    except (OSError, EOFError, lzma.LZMAError) as exc:
        raise FormatError(path, -1, f"corrupt compressed stream: {exc}") from exc

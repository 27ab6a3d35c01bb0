"""Open a file transparently through gzip/bz2/xz by its magic bytes."""

from __future__ import annotations

import bz2
import gzip
import lzma
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


def read_all(path: Path) -> bytes:
    """Read and decompress a whole (small or medium) file, mapping stream errors to FormatError."""
    try:
        with open_maybe_compressed(path) as fh:
            return fh.read()
    except (OSError, EOFError, lzma.LZMAError) as exc:
        raise FormatError(path, -1, f"corrupt compressed stream: {exc}") from exc

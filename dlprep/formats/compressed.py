"""Open a file transparently through gzip/bz2/xz by its magic bytes, with the bomb limits of
:mod:`dlprep.limits` checked while the stream is read."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from ..limits import ExtractLimits, open_decompressed
from ..magic import DECOMPRESS_ERRORS, file_compression

__all__ = ["DECOMPRESS_ERRORS", "STREAM_ERRORS", "compression", "is_compressed",
           "open_maybe_compressed"]

STREAM_ERRORS: tuple[type[Exception], ...] = (OSError, EOFError, *DECOMPRESS_ERRORS)
"""Everything reading a corrupt, truncated or unreadable (compressed) file may raise."""


def compression(path: Path) -> str | None:
    """``"gzip"``, ``"bz2"`` or ``"xz"`` from the file's magic number; None when uncompressed."""
    return file_compression(path)


def is_compressed(path: Path) -> bool:
    """True when ``path`` starts with a gzip, bz2 or xz magic number."""
    return compression(path) is not None


def open_maybe_compressed(path: Path, *, limits: ExtractLimits | None = None,
                          max_bytes: int | None = None) -> BinaryIO:
    """A binary stream of the decompressed content of ``path`` (the file itself when it is not
    compressed). A compressed stream is bounded by ``limits`` (total size, ratio to the file's
    size) and by ``max_bytes`` when given; passing either raises ExtractionError on the read
    that crosses it (:func:`dlprep.limits.open_decompressed`)."""
    return open_decompressed(path, limits=limits, max_bytes=max_bytes)

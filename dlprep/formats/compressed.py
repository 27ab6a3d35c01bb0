"""Open a file transparently through gzip/bz2/xz by its magic bytes.

gzip goes through ISA-L (the ``isal`` package, a required dependency, about 2x faster than zlib);
the bytes are the same as the standard library's."""

from __future__ import annotations

import bz2
import gzip
import lzma
import mmap
import os
from pathlib import Path
from typing import BinaryIO

# ISA-L (a required dependency): the same formats, about twice zlib's decompression speed
from isal import igzip as _gzip
from isal import isal_zlib as _zlib

from ..errors import FormatError
from ..magic import file_compression, sniff_compression

DECOMPRESS_ERRORS: tuple[type[Exception], ...] = (_zlib.error, lzma.LZMAError, gzip.BadGzipFile)
"""What a corrupt gzip/xz stream raises besides ``OSError``/``EOFError``."""

def compression(path: Path) -> str | None:
    """``"gzip"``, ``"bz2"`` or ``"xz"`` from the file's magic number; None when uncompressed."""
    return file_compression(path)


def open_maybe_compressed(path: Path) -> BinaryIO:
    """Return a binary stream of the decompressed content of ``path``."""
    kind = compression(path)
    opener = {"gzip": _gzip.open, "bz2": bz2.open, "xz": lzma.open}.get(kind or "", open)
    return opener(path, "rb")  # type: ignore[no-any-return,operator]


def is_compressed(path: Path) -> bool:
    """True when ``path`` starts with a gzip, bz2 or xz magic number."""
    return compression(path) is not None


def gunzip_bytes(path: Path) -> bytes:
    """The whole decompressed content of a gzip file (every member), in one pass; a truncated
    stream raises ``EOFError`` (never silently short data)."""
    with open(path, "rb") as fh:
        data = fh.read()
    parts = []
    while data:
        d = _zlib.decompressobj(wbits=31)  # 31: gzip header and trailer
        parts.append(d.decompress(data))
        if not d.eof:
            raise EOFError("compressed stream ended before its end marker (truncated file?)")
        data = d.unused_data
        if data and sniff_compression(data[:2]) != "gzip":
            break  # trailing garbage after the last member is ignored, like gzip(1)
    return b"".join(parts)


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
        kind = compression(path)
        if kind is None:
            return map_file(path)
        if kind == "gzip":
            return gunzip_bytes(path)
        with open_maybe_compressed(path) as fh:
            return fh.read()
    except (OSError, EOFError, lzma.LZMAError, _zlib.error) as exc:
        raise FormatError(path, -1, f"corrupt compressed stream: {exc}") from exc

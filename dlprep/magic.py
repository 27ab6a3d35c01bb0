"""The one compression table: magic numbers, file-name suffixes, openers and stream errors of
gzip, bz2 and xz, shared by the fetch stage (verify, extract) and the parsers.

gzip goes through ISA-L (the ``isal`` package, a required dependency, about 2x faster than zlib);
the bytes are the same as the standard library's."""

from __future__ import annotations

import bz2
import gzip
import lzma
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

# ISA-L (a required dependency): the same formats, about twice zlib's decompression speed
from isal import igzip as _gzip
from isal import isal_zlib as zlib_impl

COMPRESSION_MAGIC: dict[str, bytes] = {"gzip": b"\x1f\x8b", "bz2": b"BZh",
                                       "xz": b"\xfd7zXZ\x00"}
COMPRESSION_SUFFIXES: dict[str, tuple[str, ...]] = {"gzip": (".gz", ".gzip"), "bz2": (".bz2",),
                                                    "xz": (".xz",)}
_OPENERS: dict[str, Callable[..., Any]] = {"gzip": _gzip.open, "bz2": bz2.open, "xz": lzma.open}
HEAD_BYTES = max(len(m) for m in COMPRESSION_MAGIC.values())

DECOMPRESS_ERRORS: tuple[type[Exception], ...] = (zlib_impl.error, lzma.LZMAError,
                                                  gzip.BadGzipFile)
"""What a corrupt gzip/xz stream raises besides ``OSError``/``EOFError`` (bz2 and truncated
streams raise those)."""


def sniff_compression(head: bytes) -> str | None:
    """``"gzip"``, ``"bz2"`` or ``"xz"`` when ``head`` (a file's first bytes) starts with that
    format's magic number; None otherwise."""
    return next((name for name, magic in COMPRESSION_MAGIC.items() if head.startswith(magic)),
                None)


def file_compression(path: Path) -> str | None:
    """:func:`sniff_compression` of the file at ``path``."""
    with open(path, "rb") as fh:
        return sniff_compression(fh.read(HEAD_BYTES))


def open_compressed(path: Path, kind: str) -> BinaryIO:
    """A binary stream of the decompressed content of ``path``, compressed as ``kind``
    (``"gzip"``, ``"bz2"`` or ``"xz"``). No size limit: see :mod:`dlprep.limits`."""
    return _OPENERS[kind](path, "rb")  # type: ignore[no-any-return]

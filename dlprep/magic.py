"""Magic numbers of the compressed stream formats, shared by the fetch stage (verify,
extract) and the parsers, so each stage stays independent of the others."""

from __future__ import annotations

from pathlib import Path

COMPRESSION_MAGIC: dict[str, bytes] = {"gzip": b"\x1f\x8b", "bz2": b"BZh",
                                       "xz": b"\xfd7zXZ\x00"}
HEAD_BYTES = max(len(m) for m in COMPRESSION_MAGIC.values())


def sniff_compression(head: bytes) -> str | None:
    """``"gzip"``, ``"bz2"`` or ``"xz"`` when ``head`` (a file's first bytes) starts with that
    format's magic number; None otherwise."""
    return next((name for name, magic in COMPRESSION_MAGIC.items() if head.startswith(magic)),
                None)


def file_compression(path: Path) -> str | None:
    """:func:`sniff_compression` of the file at ``path``."""
    with open(path, "rb") as fh:
        return sniff_compression(fh.read(HEAD_BYTES))

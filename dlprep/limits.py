"""Limits for everything that decompresses: archive extraction, compressed parsers (IDX, CIFAR
tarballs), image archives, content hashes.

:class:`ExtractLimits` holds the numbers; :class:`Budget` counts bytes that came out of a
compressed input against them; :class:`BoundedReader` wraps a decompressing stream and checks
while it is read, so a bomb stops after at most one read past the limit, never after
inflating it. :func:`check_declared` refuses a size that a header declares before anything is
inflated. Every refusal is an :class:`~dlprep.errors.ExtractionError` naming the input.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from .errors import ExtractionError
from .magic import file_compression, open_compressed
from .parallel_gzip import open_gzip


@dataclass(frozen=True)
class ExtractLimits:
    """Bomb guards. ``max_total_bytes``: all decompressed bytes of one input together.
    ``max_ratio``: decompressed bytes per compressed byte, enforced once ``ratio_grace_bytes``
    have come out (small, very compressible files stay fine). ``max_members``: entries in one
    archive."""

    max_total_bytes: int = 64 * 2**30
    max_ratio: float = 200.0
    ratio_grace_bytes: int = 64 * 2**20
    max_members: int = 1_000_000


DEFAULT_LIMITS = ExtractLimits()


def _over(source: object, out: int, packed: int, limits: ExtractLimits, what: str) -> str | None:
    """Why ``out`` decompressed bytes from ``packed`` compressed ones break ``limits``."""
    if out > limits.max_total_bytes:
        return (f"{what} passes the limit of {limits.max_total_bytes:,} bytes "
                f"(decompression bomb?)")
    if out > limits.ratio_grace_bytes and out > limits.max_ratio * max(1, packed):
        return (f"compression ratio above {limits.max_ratio:g}:1 ({out:,} bytes out of "
                f"{packed:,}; decompression bomb?)")
    return None


def check_declared(source: object, declared: int, packed: int,
                   limits: ExtractLimits = DEFAULT_LIMITS, what: str = "") -> None:
    """Refuse, before inflating anything, a decompressed size that a header declares
    (``declared`` bytes out of a ``packed``-byte compressed file) when it breaks ``limits``."""
    why = _over(source, declared, packed, limits, "declared size")
    if why:
        prefix = f"{what}: " if what else ""
        raise ExtractionError(f"{source}: {prefix}declares {declared:,} bytes: {why}")


class Budget:
    """Counts decompressed bytes and members of one compressed input (``packed`` bytes)
    against ``limits``; :meth:`add_bytes` / :meth:`add_member` raise ExtractionError."""

    def __init__(self, source: object, packed: int,
                 limits: ExtractLimits = DEFAULT_LIMITS) -> None:
        self.source = source
        self.packed = max(1, packed)
        self.limits = limits
        self.total = 0
        self.members = 0

    @classmethod
    def for_file(cls, path: Path, limits: ExtractLimits | None = None) -> Budget:
        """A budget for the compressed file at ``path`` (its size is the packed size)."""
        return cls(path, os.stat(path).st_size, limits or DEFAULT_LIMITS)

    def add_member(self, member: str) -> None:
        self.members += 1
        if self.members > self.limits.max_members:
            raise ExtractionError(f"{self.source}: {member}: more than "
                                  f"{self.limits.max_members:,} members (limit)")

    def add_bytes(self, member: str, n: int) -> None:
        self.total += n
        why = _over(self.source, self.total, self.packed, self.limits, "extracted size")
        if why:
            where = f"{self.source}: {member}" if member else f"{self.source}"
            raise ExtractionError(f"{where}: {why}")


class BoundedReader(io.RawIOBase):
    """A read-only stream over a decompressing stream ``raw`` that counts what comes out
    against ``budget`` and, when ``max_bytes`` is given, refuses to return more than that
    (a header's declared size plus what the caller needs to detect trailing data)."""

    def __init__(self, raw: BinaryIO, budget: Budget, max_bytes: int | None = None) -> None:
        super().__init__()
        self.raw = raw
        self.budget = budget
        self.max_bytes = max_bytes

    def readable(self) -> bool:
        return True

    def _count(self, n: int) -> None:
        self.budget.add_bytes("", n)
        if self.max_bytes is not None and self.budget.total > self.max_bytes:
            raise ExtractionError(f"{self.budget.source}: more than {self.max_bytes:,} "
                                  f"decompressed bytes (the size its header declares)")

    def readinto(self, buf: memoryview | bytearray) -> int:  # type: ignore[override]
        n = self.raw.readinto(buf)  # type: ignore[attr-defined]
        if n:
            self._count(n)
        return n or 0

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:  # read to the end, one bounded chunk at a time
            parts = []
            while chunk := self.read(1 << 20):
                parts.append(chunk)
            return b"".join(parts)
        data = self.raw.read(n)
        if data:
            self._count(len(data))
        return data

    def close(self) -> None:
        try:
            self.raw.close()
        finally:
            super().close()


def open_decompressed(path: Path, *, limits: ExtractLimits | None = None,
                      max_bytes: int | None = None) -> BinaryIO:
    """A binary stream of the content of ``path``: the file itself when it is not compressed,
    else its gzip/bz2/xz stream held to ``limits`` (and to ``max_bytes`` when given) by a
    :class:`BoundedReader`. Use this wherever a file may be compressed."""
    kind = file_compression(path)
    if kind is None:
        return open(path, "rb")
    budget = Budget.for_file(path, limits)
    # big gzip files may be inflated on several cores (dlprep.parallel_gzip, same bytes/errors)
    raw = open_gzip(path, budget.packed) if kind == "gzip" else open_compressed(path, kind)
    return BoundedReader(raw, budget, max_bytes)  # type: ignore[return-value]

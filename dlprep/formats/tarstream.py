"""Read a tar archive in one forward pass, member by member, from any binary stream.

Unlike :mod:`tarfile`'s stream mode, member data is read straight into the caller's buffer
(``readinto``), so a compressed archive can be inflated and consumed at the same time with
one copy. Handles ustar, GNU long names and pax ``path``/``size`` records; nothing is
extracted to disk. Errors are :class:`~dlprep.errors.FormatError` naming the archive and the
offset in the uncompressed stream.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..errors import FormatError
from ..limits import ExtractLimits

BLOCK = 512
_REGULAR = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE)
_SKIP_CHUNK = 1 << 20


@dataclass(frozen=True)
class StreamMember:
    """A regular file in the archive: its name, size and data offset in the tar stream."""

    name: str
    size: int
    offset_data: int


def _pad(size: int) -> int:
    return -size % BLOCK


def _pax_records(data: bytes) -> dict[str, str]:
    """``"%d key=value\\n"`` records of a pax extended header."""
    out: dict[str, str] = {}
    pos = 0
    while pos < len(data) and data[pos:pos + 1] != b"\0":
        space = data.find(b" ", pos)
        if space < 0 or not data[pos:space].isdigit():
            raise ValueError("malformed pax record")
        length = int(data[pos:space])
        record = data[space + 1:pos + length]
        if length <= 0 or not record.endswith(b"\n") or b"=" not in record:
            raise ValueError("malformed pax record")
        key, value = record[:-1].split(b"=", 1)
        out[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        pos += length
    return out


class TarStream:
    """Iterate regular members of the tar read from ``fh``; for each yielded member the caller
    may call :meth:`read_into` once (whatever it does not read is skipped)."""

    def __init__(self, fh: BinaryIO, source: object, *, seek: bool = False,
                 size: int | None = None) -> None:
        """``seek=True`` (a seekable plain file) skips member data by seeking: fast for
        listing, but a member cut short by the end of the file goes unnoticed. ``size``: the
        archive's length when known (a plain file; implied by ``seek``): a member declaring
        more than is left is refused at its header, naming it and its declared size."""
        self.fh = fh
        self.seek = seek
        self.source = source
        self.end = size
        if seek and size is None:  # a seekable input's length, from where it is now
            here = fh.tell()
            self.end = fh.seek(0, os.SEEK_END) - here
            fh.seek(here)
        self.pos = 0
        self._left = 0  # unread data bytes of the current member, then its padding
        self._current: StreamMember | None = None

    def _read(self, n: int) -> bytes:
        data = self.fh.read(n)
        self.pos += len(data)
        return data

    def _skip(self, n: int, member: str = "") -> None:
        if self.seek and n > 0:
            self.fh.seek(n, 1)
            self.pos += n
            return
        while n > 0:
            got = len(self._read(min(n, _SKIP_CHUNK)))
            if not got:
                what = f"member {member}" if member else "a member"
                raise FormatError(self.source, self.pos, f"tar archive truncated inside {what}")
            n -= got

    def _check_declared(self, name: str, size: int, start: int) -> None:
        """A member's declared size must fit in what is left of a plain archive."""
        if self.end is not None and self.pos + size > self.end:
            raise FormatError(self.source, start, f"member {name} declares {size:,} bytes, but "
                                                  f"only {self.end - self.pos:,} are left in "
                                                  f"the archive")

    def _exact(self, n: int, what: str) -> bytes:
        data = self._read(n)
        if len(data) != n:
            raise FormatError(self.source, self.pos, f"tar archive truncated in {what}")
        return data

    def read_into(self, buf: memoryview) -> None:
        """Fill ``buf`` (exactly the current member's size) with the member's data."""
        member = self._current
        if member is None or len(buf) != member.size or self._left != member.size:
            raise ValueError("read_into needs the whole current member, once")
        view = memoryview(buf).cast("B")
        done = 0
        while done < len(view):
            got = self.fh.readinto(view[done:])  # type: ignore[attr-defined]
            if not got:
                raise FormatError(self.source, self.pos + done,
                                  f"member {member.name} truncated ({done:,} of "
                                  f"{member.size:,} bytes)")
            done += got
        self.pos += done
        self._left = 0

    def __iter__(self) -> Iterator[StreamMember]:
        long_name: str | None = None
        pax: dict[str, str] = {}
        while True:
            start = self.pos
            header = self._read(BLOCK)
            if not header or header == b"\0" * BLOCK:
                return  # end-of-archive marker (or a stream without one, like tarfile allows)
            if len(header) < BLOCK:
                raise FormatError(self.source, start, "tar archive truncated in a header")
            try:
                info = tarfile.TarInfo.frombuf(header, "utf-8", "surrogateescape")
            except tarfile.HeaderError as exc:
                raise FormatError(self.source, start, f"bad tar header: {exc}") from exc
            size = info.size
            self._check_declared(info.name, size, start)
            if info.type == tarfile.GNUTYPE_LONGNAME:
                data = self._exact(size + _pad(size), "a long-name record")
                long_name = data[:size].rstrip(b"\0").decode("utf-8", "surrogateescape")
                continue
            if info.type in (tarfile.XHDTYPE, tarfile.SOLARIS_XHDTYPE):
                data = self._exact(size + _pad(size), "a pax header")
                try:
                    pax = _pax_records(data[:size])
                except ValueError as exc:
                    raise FormatError(self.source, start, f"bad pax header: {exc}") from exc
                continue
            if info.type in (tarfile.XGLTYPE, tarfile.GNUTYPE_LONGLINK):
                self._skip(size + _pad(size))
                continue
            if info.type == tarfile.GNUTYPE_SPARSE:
                raise FormatError(self.source, start, f"sparse member {info.name} unsupported")
            name = pax.get("path") or long_name or info.name
            if "size" in pax:
                try:
                    size = int(pax["size"])
                except ValueError as exc:
                    raise FormatError(self.source, start, "bad pax size") from exc
            long_name, pax = None, {}
            self._check_declared(name, size, start)
            if info.type in _REGULAR:
                member = StreamMember(name, size, self.pos)
                self._current, self._left = member, size
                yield member
                self._current = None
                self._skip(self._left + _pad(size), name)
                self._left = 0
            elif info.type not in tarfile.SUPPORTED_TYPES:
                self._skip(size + _pad(size), name)  # unknown types carry data, like tarfile


def read_members(archive: Path, wanted: Collection[str], max_member_bytes: int = 64 << 20,
                 limits: ExtractLimits | None = None) -> dict[str, bytes]:
    """The bytes of the ``wanted`` regular members of a (possibly compressed) tar, in one
    bounded pass: a wanted member over ``max_member_bytes`` is refused unread, and the stream
    is held to ``limits``. Members not found are simply absent from the result."""
    from .compressed import STREAM_ERRORS, open_maybe_compressed

    found: dict[str, bytes] = {}
    try:
        with open_maybe_compressed(archive, limits=limits) as fh:
            stream = TarStream(fh, archive)
            for member in stream:
                if member.name not in wanted:
                    continue
                if member.size > max_member_bytes:
                    raise FormatError(archive, member.offset_data,
                                      f"member {member.name} declares {member.size:,} bytes "
                                      f"(over {max_member_bytes:,}); refusing to read it")
                buf = bytearray(member.size)
                stream.read_into(memoryview(buf))
                found[member.name] = bytes(buf)
    except STREAM_ERRORS as exc:
        raise FormatError(archive, -1, f"corrupt archive: {exc}") from exc
    return found

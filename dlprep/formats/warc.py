"""WARC (1.0/1.1, plain or gzip, one member per record or one for the file) and ARC (v1) records.

:func:`read_records` yields :class:`Record` values one at a time: the record's headers and its
block (for a ``response``: the HTTP status line, headers and body). Every gzip member is
inflated under :mod:`dlprep.limits` (bomb guards), one member at a time. Damage is skipped and
counted, never fatal, except for a file that is not WARC/ARC at all (``FormatError``):

* a file cut mid-record: every complete record, then ``truncated`` in the :class:`ReadReport`;
* a record whose ``Content-Length`` is wrong (no ``CRLF CRLF`` where the block should end): the
  record is skipped and reading resumes at the next ``WARC/`` line;
* a ``WARC-Block-Digest`` that does not match (sha1/sha256/md5, base32 or hex): skipped.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import FormatError
from ..limits import DEFAULT_LIMITS, Budget, ExtractLimits

log = logging.getLogger("dlprep")

#: one gzip member (a record, or a whole-file gzip) inflated at most to this many bytes
MAX_MEMBER_BYTES = 1 << 30
_CHUNK = 1 << 20
_STEP = 16 << 20  # inflate at most this much before the limits are checked again
_NEXT_WARC = re.compile(rb"(?:^|\n)(WARC/1\.[01]\r?\n)")


@dataclass
class Record:
    """One archive record: ``headers`` (names lower-cased), ``block`` (the record content),
    ``offset`` (in the decompressed stream of its file) and ``kind`` (``warc`` or ``arc``)."""

    headers: dict[str, str]
    block: bytes
    offset: int
    kind: str = "warc"

    @property
    def type(self) -> str:
        return self.headers.get("warc-type", "response" if self.kind == "arc" else "")

    @property
    def url(self) -> str:
        return self.headers.get("warc-target-uri", "").strip("<>")

    @property
    def date(self) -> str:
        return self.headers.get("warc-date", "")

    @property
    def record_id(self) -> str:
        return self.headers.get("warc-record-id", "")


@dataclass
class ReadReport:
    """What was skipped while reading one file, for the one-line warnings."""

    records: int = 0
    truncated: bool = False
    bad_length: list[int] = field(default_factory=list)
    bad_digest: list[int] = field(default_factory=list)

    def warnings(self, name: str) -> list[str]:
        out = []
        if self.truncated:
            out.append(f"{name}: truncated (cut mid-record); kept the {self.records} complete "
                       f"record(s) before the cut")
        for what, where in (("a wrong Content-Length", self.bad_length),
                             ("a WARC-Block-Digest that does not match", self.bad_digest)):
            if where:
                out.append(f"{name}: skipped {len(where)} record(s) with {what} (first at "
                           f"byte {where[0]} of the decompressed stream)")
        return out


def _members(path: Path, limits: ExtractLimits) -> Iterator[tuple[bytes, bool]]:
    """``(inflated bytes, complete)`` per gzip member of ``path`` (the file itself when it is
    not gzip). ``complete`` is False for a member cut by the end of the file."""
    budget = Budget.for_file(path, limits)
    with open(path, "rb") as f:
        head = f.read(2)
        f.seek(0)
        if head != b"\x1f\x8b":
            data = f.read()
            budget.add_bytes("", len(data))
            yield data, True
            return
        pending = b""
        while True:
            d = zlib.decompressobj(31)
            out: list[bytes] = []
            size = 0
            data = pending or f.read(_CHUNK)
            if not data:
                return
            while True:
                try:
                    piece = d.decompress(data, min(_STEP, MAX_MEMBER_BYTES + 1 - size))
                except zlib.error as exc:
                    if size or out:  # damage inside a member: what came out is incomplete
                        yield b"".join(out), False
                        return
                    raise FormatError(path, -1, f"not a gzip stream ({exc})") from exc
                size += len(piece)
                budget.add_bytes("", len(piece))
                if size > MAX_MEMBER_BYTES:
                    raise FormatError(path, -1, f"a gzip member inflates past "
                                                f"{MAX_MEMBER_BYTES:,} bytes (a whole-file "
                                                f"gzip? decompress it first)")
                out.append(piece)
                if d.eof:
                    pending = d.unused_data
                    yield b"".join(out), True
                    break
                data = d.unconsumed_tail or f.read(_CHUNK)
                if not data and not piece:  # input exhausted, nothing left inside zlib
                    yield b"".join(out), False
                    return
            if not pending:
                pending = f.read(_CHUNK)
                if not pending:
                    return


def _headers(lines: list[bytes]) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in lines:
        key, sep, value = line.partition(b":")
        if sep:
            out[key.strip().decode("latin-1").lower()] = value.strip().decode("utf-8", "replace")
    return out


def _digest_ok(value: str, block: bytes) -> bool:
    algo, _, want = value.partition(":")
    algo = algo.strip().lower().replace("-", "")
    if algo not in ("sha1", "sha256", "md5") or not want:
        return True  # an algorithm we do not know: nothing to check
    raw = hashlib.new(algo, block).digest()
    want = want.strip()
    try:
        if len(want) == 2 * len(raw):
            return binascii.unhexlify(want) == raw
        return base64.b32decode(want.upper() + "=" * (-len(want) % 8)) == raw
    except (binascii.Error, ValueError):
        return False


def _parse_warc(buf: bytes, pos: int, base: int, complete: bool,
                report: ReadReport) -> Iterator[Record]:
    """Records in ``buf[pos:]`` (``base``: offset of ``buf`` in the decompressed stream)."""
    n = len(buf)
    while pos < n:
        if buf.startswith((b"\r\n", b"\n"), pos):  # padding between records
            pos += 1
            continue
        if not buf.startswith(b"WARC/", pos):
            m = _NEXT_WARC.search(buf, pos)
            if not m:
                return
            pos = m.start(1)
            continue
        end = buf.find(b"\r\n\r\n", pos)
        sep = 4
        if end < 0:
            end, sep = buf.find(b"\n\n", pos), 2
        if end < 0:
            report.truncated = True
            return
        headers = _headers(buf[pos:end].splitlines()[1:])
        try:
            length = int(headers.get("content-length", ""))
        except ValueError:
            length = -1
        start = end + sep
        if length < 0:
            report.bad_length.append(base + pos)
            pos = start
            continue
        stop = start + length
        if stop > n:
            if not complete or not _NEXT_WARC.search(buf, start):
                report.truncated = True
                return
            report.bad_length.append(base + pos)  # more declared than there is before the next
            pos = start
            continue
        if not (buf.startswith(b"\r\n\r\n", stop) or (stop + 4 > n and
                                                      buf[stop:].strip(b"\r\n") == b"")):
            if stop + 4 > n and not complete:
                report.truncated = True
                return
            report.bad_length.append(base + pos)
            pos = start
            continue
        block = buf[start:stop]
        digest = headers.get("warc-block-digest")
        if digest and not _digest_ok(digest, block):
            report.bad_digest.append(base + pos)
        else:
            report.records += 1
            yield Record(headers, block, base + pos)
        pos = stop + 4


_ARC_DATE = re.compile(r"^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})$")


def _arc_date(value: str) -> str:
    m = _ARC_DATE.match(value)
    return "{}-{}-{}T{}:{}:{}Z".format(*m.groups()) if m else value


def _parse_arc(buf: bytes, pos: int, base: int, complete: bool,
               report: ReadReport) -> Iterator[Record]:
    n = len(buf)
    while pos < n:
        if buf[pos:pos + 1] in (b"\n", b"\r"):
            pos += 1
            continue
        eol = buf.find(b"\n", pos)
        if eol < 0:
            report.truncated = True
            return
        fields = buf[pos:eol].decode("latin-1").split()
        try:
            length = int(fields[-1])
        except (ValueError, IndexError):
            report.bad_length.append(base + pos)
            return
        start, stop = eol + 1, eol + 1 + length
        if stop > n:
            report.truncated = True
            return
        if not fields[0].startswith("filedesc:") and len(fields) >= 5:
            report.records += 1
            headers = {"warc-type": "response", "warc-target-uri": fields[0],
                       "warc-date": _arc_date(fields[2]), "content-type": fields[3],
                       "warc-record-id": f"<arc:{fields[0]} {fields[2]}>"}
            yield Record(headers, buf[start:stop], base + pos, kind="arc")
        pos = stop


def read_records(path: Path, report: ReadReport | None = None,
                 limits: ExtractLimits = DEFAULT_LIMITS) -> Iterator[Record]:
    """The records of the WARC or ARC file ``path`` (see the module docstring).
    ``FormatError`` when the file is neither; damage is counted in ``report``."""
    report = report if report is not None else ReadReport()
    kind = None
    base = 0
    for data, complete in _members(Path(path), limits):
        if kind is None:
            head = data.lstrip(b"\r\n")[:16]
            if head.startswith(b"WARC/"):
                kind = "warc"
            elif head.startswith(b"filedesc://"):
                kind = "arc"
            else:
                raise FormatError(path, 0, "not a WARC or ARC file (no 'WARC/' or "
                                           "'filedesc://' record at the start)")
        parse = _parse_warc if kind == "warc" else _parse_arc
        yield from parse(data, 0, base, complete, report)
        if not complete:
            report.truncated = True
            return
        base += len(data)
    if kind is None:
        raise FormatError(path, 0, "empty file: not a WARC or ARC file")


def records_in(data: bytes) -> tuple[list[Record], ReadReport]:
    """The WARC records of one decompressed buffer, and what was wrong with it."""
    report = ReadReport()
    return list(_parse_warc(data, 0, 0, True, report)), report

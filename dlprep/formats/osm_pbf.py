"""The blob layout of an OSM PBF file, for blob-range shards (no libosmium needed).

A PBF file is a sequence of blobs: a 4-byte big-endian length, a ``BlobHeader`` protobuf
(``type`` ``OSMHeader`` or ``OSMData``, ``datasize``) and a ``Blob`` of that many bytes (raw or
zlib-compressed data; lzma, lz4 and zstd exist too). Each ``OSMData`` blob is one
``PrimitiveBlock`` whose groups hold nodes (plain or dense), ways or relations, and is
self-contained: the header blob followed by any subset of the data blobs is a valid PBF
file. :func:`blob_index` lists the blobs with what they hold, inflating only the first few KiB
of each (the group's kind follows the string table); :func:`write_subset` writes such a subset.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import FormatError

MAX_HEADER = 64 * 1024  # the PBF specification's limits
MAX_BLOB = 32 * 1024 * 1024
PEEK_BYTES = 1 << 16  # inflated bytes looked at per blob for the first group's kind
READ_BYTES = 1 << 17  # compressed bytes read per blob for that (never the whole blob)
# PrimitiveGroup field numbers -> what the group holds
_GROUP_KINDS = {1: "nodes", 2: "nodes", 3: "ways", 4: "relations", 5: "changesets"}


@dataclass(frozen=True)
class BlobInfo:
    """One blob: its byte ``offset`` in the file, ``length`` (length prefix, header and blob
    together) and ``kind``: ``header``, ``nodes``, ``ways``, ``relations``, ``empty`` (no
    group) or ``other`` (changesets, several kinds, or a compression not peeked at)."""

    offset: int
    length: int
    kind: str


def _varint(buf: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(buf) or shift > 63:
            raise ValueError("truncated varint")
        b = buf[at]
        at += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, at
        shift += 7


def _fields(buf: bytes) -> Iterable[tuple[int, int, bytes | int]]:
    """(field number, wire type, value) of a protobuf message: bytes for length-delimited
    fields (possibly cut short where ``buf`` ends), ints for varints; others skipped."""
    at = 0
    while at < len(buf):
        key, at = _varint(buf, at)
        num, wire = key >> 3, key & 7
        if wire == 0:
            value, at = _varint(buf, at)
            yield num, wire, value
        elif wire == 2:
            n, at = _varint(buf, at)
            yield num, wire, buf[at:at + n]
            at += n
        elif wire == 1:
            at += 8
        elif wire == 5:
            at += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")


def _blob_data(blob: bytes, limit: int = 0) -> bytes | None:
    """A ``Blob``'s data (raw or zlib), or its first ``limit`` bytes (from a blob that may be
    cut short); None for lzma, lz4 and zstd blobs (not decoded here: their kind is
    ``other``)."""
    for num, wire, value in _fields(blob):
        if wire != 2:
            continue
        assert isinstance(value, bytes)
        if num == 1:  # raw
            return value[:limit] if limit else value
        if num == 3:  # zlib_data
            return zlib.decompressobj().decompress(value, limit) if limit \
                else zlib.decompress(value)
        if num in (4, 5, 6, 7):
            return None
    return b""

def _block_kind(data: bytes, whole: bool) -> str:
    """What the groups of a (possibly cut) ``PrimitiveBlock`` hold, ``other`` when they hold
    several kinds (only the groups within the peeked bytes are seen); ``empty`` for a
    block without groups (``whole``: ``data`` is all of it)."""
    kinds: set[str] = set()
    try:
        for num, wire, value in _fields(data):
            if num == 2 and wire == 2:
                assert isinstance(value, bytes)
                for gnum, _, _ in _fields(value[:64]):
                    kinds.add(_GROUP_KINDS.get(gnum, "other"))
                    break
    except ValueError:  # the peek cut a field: what was seen stands
        pass
    if not kinds:
        return "empty" if whole and len(data) < PEEK_BYTES else "other"
    return kinds.pop() if len(kinds) == 1 else "other"


_INDEXED: dict[tuple[str, int, int], list[BlobInfo]] = {}


def blob_index(path: Path) -> list[BlobInfo]:
    """Every blob of the PBF file at ``path`` with its kind (kept for the file's size and
    mtime: the plan and the later stages of one build read it once). Raises ``FormatError``
    naming the file and the byte offset for a truncated file or a damaged blob header."""
    path = Path(path)
    st = path.stat()
    key = (str(path.absolute()), st.st_size, st.st_mtime_ns)
    if key not in _INDEXED:
        _INDEXED.clear()
        _INDEXED[key] = _blob_index(path)
    return list(_INDEXED[key])


def _blob_index(path: Path) -> list[BlobInfo]:
    out: list[BlobInfo] = []
    with open(path, "rb") as fh:
        size = fh.seek(0, 2)
        at = 0
        while at < size:
            fh.seek(at)
            prefix = fh.read(4)
            if len(prefix) < 4:
                raise FormatError(path, at, "truncated PBF (a cut blob length)")
            n = int.from_bytes(prefix, "big")
            if not 0 < n <= MAX_HEADER:
                raise FormatError(path, at, f"damaged PBF: a BlobHeader of {n} bytes")
            head = fh.read(n)
            try:
                fields = {num: value for num, _, value in _fields(head)}
            except ValueError as exc:
                raise FormatError(path, at, f"damaged PBF BlobHeader ({exc})") from None
            kind_b, datasize = fields.get(1), fields.get(3)
            if len(head) < n or not isinstance(kind_b, bytes) or not isinstance(datasize, int):
                raise FormatError(path, at, "truncated or damaged PBF BlobHeader")
            if datasize > MAX_BLOB:
                raise FormatError(path, at, f"damaged PBF: a blob of {datasize} bytes")
            end = at + 4 + n + datasize
            if end > size:
                raise FormatError(path, at, f"truncated PBF: the blob at byte {at} needs "
                                            f"{end - size} more bytes than the file has")
            if kind_b == b"OSMHeader":
                kind = "header"
            elif kind_b == b"OSMData":
                whole = datasize <= READ_BYTES
                try:
                    data = _blob_data(fh.read(min(datasize, READ_BYTES)), PEEK_BYTES)
                except (ValueError, zlib.error) as exc:
                    raise FormatError(path, at, f"damaged PBF blob ({exc})") from None
                kind = "other" if data is None else _block_kind(data, whole)
            else:
                kind = "other"
            out.append(BlobInfo(at, end - at, kind))
            at = end
    return out


def shardable(blobs: Sequence[BlobInfo]) -> bool:
    """True when ``blobs`` are one header, then node, way and relation blobs in that order
    (empty blobs anywhere): the layout of sorted extracts (Geofabrik, planet) that
    blob-range shards need. Anything else is read in one pass."""
    if not blobs or blobs[0].kind != "header":
        return False
    order = {"nodes": 0, "ways": 1, "relations": 2}
    last = 0
    for b in blobs[1:]:
        if b.kind == "empty":
            continue
        rank = order.get(b.kind)
        if rank is None or rank < last:
            return False
        last = rank
    return True


def write_subset(src: Path, blobs: Sequence[BlobInfo], dest: Path) -> int:
    """Copy the header blob and ``blobs`` (in the order given) of ``src`` into a new PBF file
    ``dest``; returns its size. The bytes are copied as they are (no re-encoding)."""
    total = 0
    with open(src, "rb") as fh, open(dest, "wb") as out:
        for b in blobs:
            fh.seek(b.offset)
            chunk = fh.read(b.length)
            if len(chunk) != b.length:
                raise FormatError(src, b.offset, "truncated PBF (changed while being read?)")
            out.write(chunk)
            total += len(chunk)
    return total


# --- node blobs decoded with NumPy (the locations only: ids, lon, lat) ---

def _packed_varints(buf: bytes) -> np.ndarray:
    """uint64 values of a packed varint field."""
    b = np.frombuffer(buf, np.uint8)
    if not len(b):
        return np.zeros(0, np.uint64)
    ends = np.flatnonzero(b < 0x80)
    if not len(ends) or ends[-1] != len(b) - 1:
        raise ValueError("truncated packed varint")
    starts = np.r_[0, ends[:-1] + 1]
    lens = ends - starts + 1
    if int(lens.max()) > 10:
        raise ValueError("varint longer than 10 bytes")
    shift = (np.arange(len(b)) - np.repeat(starts, lens)).astype(np.uint64) * np.uint64(7)
    vals = (b & 0x7F).astype(np.uint64) << shift
    return np.add.reduceat(vals, starts)


def _zigzag(v: np.ndarray) -> np.ndarray:
    return (v >> np.uint64(1)).astype(np.int64) ^ -(v & np.uint64(1)).astype(np.int64)


def _signed(v: int) -> int:
    return (v >> 1) ^ -(v & 1)


def _fixed(coord: np.ndarray, granularity: int, offset: int) -> np.ndarray:
    """int32 1e-7 degrees of PBF coordinates, as libosmium converts them:
    ``(c * granularity + offset) / 100`` truncated toward zero."""
    nano = coord * granularity + offset
    return (np.sign(nano) * (np.abs(nano) // 100)).astype(np.int32)


def node_locations(data: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids int64, lon int32, lat int32) of the nodes of one ``Blob`` (dense or plain), in
    the block's order; coordinates in 1e-7 degrees, as libosmium reads them."""
    block = _blob_data(data)
    if block is None:
        raise ValueError("lzma/lz4/zstd blob (only raw and zlib blobs are decoded here)")
    gran, lat_off, lon_off = 100, 0, 0
    groups: list[bytes] = []
    for num, _, value in _fields(block):
        if num == 2:
            groups.append(value)  # type: ignore[arg-type]
        elif num == 17:
            gran = int(value)  # type: ignore[arg-type]
        elif num == 19:
            lat_off = int(value)  # type: ignore[arg-type]
        elif num == 20:
            lon_off = int(value)  # type: ignore[arg-type]
    # int64 offsets are plain (not zigzag) varints; two's complement for negative values
    lat_off = lat_off - (1 << 64) if lat_off >= 1 << 63 else lat_off
    lon_off = lon_off - (1 << 64) if lon_off >= 1 << 63 else lon_off
    ids: list[np.ndarray] = []
    lons: list[np.ndarray] = []
    lats: list[np.ndarray] = []
    for group in groups:
        for num, _, value in _fields(group):
            if num == 2:  # DenseNodes: delta-coded packed sint64
                dense = {n: v for n, _, v in _fields(value)}  # type: ignore[arg-type]
                i = np.cumsum(_zigzag(_packed_varints(dense.get(1, b""))))
                la = np.cumsum(_zigzag(_packed_varints(dense.get(8, b""))))
                lo = np.cumsum(_zigzag(_packed_varints(dense.get(9, b""))))
                if not len(i) == len(la) == len(lo):
                    raise ValueError("DenseNodes with id, lat and lon of different lengths")
                ids.append(i)
                lats.append(la)
                lons.append(lo)
            elif num == 1:  # a plain Node
                node = {n: v for n, _, v in _fields(value)}  # type: ignore[arg-type]
                ids.append(np.array([_signed(int(node.get(1, 0)))], np.int64))
                lats.append(np.array([_signed(int(node.get(8, 0)))], np.int64))
                lons.append(np.array([_signed(int(node.get(9, 0)))], np.int64))
    if not ids:
        empty = np.zeros(0, np.int64)
        return empty, empty.astype(np.int32), empty.astype(np.int32)
    return (np.concatenate(ids), _fixed(np.concatenate(lons), gran, lon_off),
            _fixed(np.concatenate(lats), gran, lat_off))


def iter_blob_data(path: Path, start: int, end: int) -> Iterator[tuple[int, bytes]]:
    """(offset, ``Blob`` bytes) of the blobs in ``[start, end)`` of ``path`` (which must
    start and end on blob boundaries)."""
    with open(path, "rb") as fh:
        at = start
        while at < end:
            fh.seek(at)
            n = int.from_bytes(fh.read(4), "big")
            head = {num: v for num, _, v in _fields(fh.read(n))}
            size = int(head.get(3, 0))  # type: ignore[arg-type]
            data = fh.read(size)
            if len(data) != size:
                raise FormatError(path, at, "truncated PBF (changed while being read?)")
            yield at, data
            at += 4 + n + size

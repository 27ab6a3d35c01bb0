"""OpenStreetMap files: content sniffing and streaming reads with pyosmium.

``sniff_osm(path)`` tells PBF, XML ``.osm`` and ``.osm.bz2``/``.osm.gz`` apart by their bytes (not
their names) and refuses osmChange (``.osc``) files. ``read_features`` streams one file through
libosmium: the tag filter (``KeyFilter``) and the entity filter run inside libosmium, before any
Python callback; node locations come from libosmium's location index (in memory, or an on-disk
``sparse_file_array`` for large files); multipolygon relations and closed ways are assembled into
areas (with holes) by libosmium's area manager. Only the features that pass the filter reach
Python, as :class:`Feature` records (or ``read_feature_batches``: a batch of them in columns,
:mod:`dlprep.formats.osm_batch`) with integer coordinates (1e-7 degrees, the precision OSM
stores), so a ``.pbf`` and an ``.osm.bz2`` of the same data give identical features.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import FormatError, require
from ..limits import ExtractLimits
from ..magic import DECOMPRESS_ERRORS, sniff_compression

if TYPE_CHECKING:
    from . import osm_batch

log = logging.getLogger("dlprep")

UNDEFINED = 2147483647  # osmium's undefined coordinate (a node missing from the file)
_ROOT = re.compile(rb"<([A-Za-z_][\w.:-]*)")
SNIFF_BYTES = 1 << 16
# dlprep.magic's compression names -> osmium's file-format suffixes
_OSMIUM_COMPRESSION = {"bz2": ".bz2", "gzip": ".gz"}
# files from this size on keep node locations in an on-disk index (``--node-index auto``)
DISK_INDEX_MIN_BYTES = 64 << 20


def osmium_module() -> Any:
    """``import osmium`` or the one-line ``pip install dlprep[osm]`` error."""
    return require("osmium", "osm")


def _xml_root(head: bytes, path: Path, compression: str) -> str:
    """The osmium format for an XML head: ``osm`` documents pass, ``osmChange`` is refused."""
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    pos = 0
    while True:  # skip <?xml ...?>, comments and doctype
        m = _ROOT.search(text, pos)
        if m is None:
            raise FormatError(path, -1, "no XML root element in the first 64 KiB; expected an "
                                        "OpenStreetMap <osm> document (PBF, .osm or .osm.bz2)")
        root = m.group(1).decode("ascii", "replace")
        if root.startswith("!") or text[m.start() + 1:m.start() + 2] in (b"?", b"!"):
            pos = m.end()
            continue
        break
    if root == "osmChange":
        raise FormatError(path, 0, "is an osmChange (.osc) diff, not an OSM snapshot; pass a "
                                   "PBF, .osm or .osm.bz2 extract (e.g. from Geofabrik)")
    if root != "osm":
        raise FormatError(path, 0, f"XML root element <{root}> is not <osm>; expected an "
                                   f"OpenStreetMap extract (PBF, .osm or .osm.bz2)")
    return "osm" + compression


def sniff_osm(path: Path) -> str:
    """The osmium format of ``path`` judged by content: ``pbf``, ``osm``, ``osm.bz2``, ``osm.gz``.

    Raises ``FormatError`` naming the file for an osmChange file, other XML, or bytes that are
    none of these. Only the first 64 KiB (decompressed) are looked at.
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(SNIFF_BYTES)
    except OSError as exc:
        raise FormatError(path, -1, f"cannot read: {exc.strerror or exc}") from exc
    if not head:
        raise FormatError(path, 0, "empty file; expected an OSM extract (PBF, .osm, .osm.bz2)")
    if len(head) >= 8 and head[4] == 0x0A and b"OSMHeader" in head[:64]:
        size = int.from_bytes(head[:4], "big")
        if size >= 64 * 1024:
            raise FormatError(path, 0, f"PBF BlobHeader of {size} bytes (must be under 64 KiB)")
        return "pbf"
    if head[:4] == b"\x00\x00\x00\x00" or (len(head) >= 8 and head[4] == 0x0A
                                            and b"OSMData" in head[:64]):
        raise FormatError(path, 0, "PBF without an OSMHeader block first; not a valid extract")
    kind = sniff_compression(head)
    if kind is not None:
        if kind not in _OSMIUM_COMPRESSION:
            raise FormatError(path, 0, f"{kind}-compressed; libosmium reads .osm.bz2 and "
                                       f".osm.gz (or PBF), not {kind}")
        from ..limits import open_decompressed

        try:  # the shared bounded opener: a bomb cannot inflate even the sniffed head
            with open_decompressed(path, max_bytes=SNIFF_BYTES) as stream:
                inner = stream.read(SNIFF_BYTES)
        except (OSError, EOFError, ValueError, *DECOMPRESS_ERRORS) as exc:
            raise FormatError(path, 0, f"corrupt compressed stream: {exc}") from exc
        return _xml_root(inner, path, _OSMIUM_COMPRESSION[kind])
    if head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"<":
        return _xml_root(head, path, "")
    raise FormatError(path, 0, f"not an OSM file (starts {head[:8]!r}); expected PBF, .osm or "
                               f".osm.bz2")



@dataclass
class Feature:
    """One tagged way (a line) or area (closed way or multipolygon) with its geometry.

    ``rings``: int (n, 2) arrays of (lon, lat) in 1e-7 degrees (int32 from a file). A line
    has one ring (its nodes in order); an area has its outer rings, each followed by its inner rings
    (``outer[i]`` says which). ``osm_type`` is ``way`` or ``relation``.
    """

    osm_id: int
    osm_type: str
    area: bool
    tags: dict[str, str]
    rings: list[np.ndarray]
    outer: list[bool] = field(default_factory=list)

    def bounds(self) -> tuple[int, int, int, int]:
        """(min lon, min lat, max lon, max lat) in 1e-7 degrees."""
        mins = [r.min(axis=0) for r in self.rings]
        maxs = [r.max(axis=0) for r in self.rings]
        lo, hi = np.min(mins, axis=0), np.max(maxs, axis=0)
        return int(lo[0]), int(lo[1]), int(hi[0]), int(hi[1])


@dataclass
class ReadStats:
    """What a read skipped: ways with nodes missing from the file (clipped extracts)."""

    ways: int = 0
    areas: int = 0
    skipped_ways: int = 0
    skipped_ids: list[int] = field(default_factory=list)

    def skip(self, osm_id: int) -> None:
        self.skipped_ways += 1
        if len(self.skipped_ids) < 20:
            self.skipped_ids.append(osm_id)


def location_storage(path: Path, mode: str, index_dir: Path | None) -> str:
    """libosmium's index spec: ``flex_mem`` in memory, or ``sparse_file_array,<file>`` on disk
    (``mode`` ``disk``, or ``auto`` for files of ``DISK_INDEX_MIN_BYTES`` and more)."""
    disk = mode == "disk" or (mode == "auto" and path.stat().st_size >= DISK_INDEX_MIN_BYTES)
    if not disk:
        return "flex_mem"
    if index_dir is None:
        raise ValueError("an on-disk node index needs index_dir")
    index_dir.mkdir(parents=True, exist_ok=True)
    return f"sparse_file_array,{index_dir / 'nodes.idx'}"


def header_box(path: Path, fmt: str | None = None) -> tuple[float, float, float, float] | None:
    """The file header's bounding box as (S, W, N, E) degrees, or None when it has none."""
    osmium = osmium_module()
    fmt = fmt or sniff_osm(path)
    try:
        with osmium.io.Reader(osmium.io.File(str(path), fmt), osmium.osm.NOTHING) as reader:
            box = reader.header().box()
    except RuntimeError as exc:
        raise FormatError(path, -1, f"unreadable OSM header: {exc}") from exc
    if not box.valid():
        return None
    return (box.bottom_left.lat, box.bottom_left.lon, box.top_right.lat, box.top_right.lon)


def check_inflated_size(path: Path, limits: ExtractLimits | None = None) -> int:
    """Inflate compressed XML once through :func:`dlprep.limits.open_decompressed`, counting
    and discarding the bytes, and return how many came out; an ``ExtractionError`` (naming the
    file) when they break the budget. libosmium inflates ``.osm.bz2``/``.osm.gz`` itself,
    twice with areas (a relation pass, then the data pass), outside dlprep's budget and where
    no Python code runs; this pass first makes the same bytes keep to it."""
    from ..limits import open_decompressed

    total = 0
    try:
        with open_decompressed(path, limits=limits) as stream:
            while n := len(stream.read(1 << 20)):
                total += n
    except (OSError, EOFError, ValueError, *DECOMPRESS_ERRORS) as exc:
        raise FormatError(path, -1, f"corrupt compressed stream: {exc}") from exc
    return total


def read_features(path: Path, keys: Sequence[str], *, areas: bool, lines: bool = True,
                  node_index: str = "auto", index_dir: Path | None = None,
                  stats: ReadStats | None = None,
                  limits: ExtractLimits | None = None) -> Iterator[Feature]:
    """Stream the ways (``lines``) and areas (``areas``) of ``path`` that carry one of ``keys``.

    The key and entity filters run inside libosmium; a feature's ``tags`` hold only ``keys``.
    Compressed XML must inflate within ``limits`` (:func:`check_inflated_size`). Ways
    with a node missing from the file are skipped and counted in ``stats``. Raises
    ``FormatError`` (naming the file) for a truncated or corrupt file.

    Order: the ways' features (lines and areas of closed ways) in file order, then the areas of
    multipolygon relations in the order libosmium completes them (held back until the ways
    are read): the order blob-range shards give too (:mod:`dlprep.formats.osm_sharded`).
    """
    for batch in read_feature_batches(path, keys, areas=areas, lines=lines,
                                      node_index=node_index, index_dir=index_dir, stats=stats,
                                      limits=limits):
        yield from batch.features()


def read_feature_batches(path: Path, keys: Sequence[str], *, areas: bool, lines: bool = True,
                         node_index: str = "auto", index_dir: Path | None = None,
                         stats: ReadStats | None = None,
                         limits: ExtractLimits | None = None) -> Iterator[osm_batch.FeatureBatch]:
    """:func:`read_features` a :class:`~dlprep.formats.osm_batch.FeatureBatch` at a time (the
    same features, in the same order)."""
    from . import osm_batch

    osmium = osmium_module()
    path = Path(path)
    fmt = sniff_osm(path)
    queue_limits()
    stats = stats if stats is not None else ReadStats()
    if not keys:
        return
    keys = list(keys)
    if fmt in ("osm.bz2", "osm.gz"):
        check_inflated_size(path, limits)
    try:
        source = osmium.io.File(str(path), fmt)
        proc = processor(source, keys, areas=areas,
                         storage=location_storage(path, node_index, index_dir))
        yield from osm_batch.feature_batches(proc, keys, lines=lines, stats=stats,
                                   relations="defer" if areas else "drop")
    except RuntimeError as exc:  # libosmium: truncated PBF, bad XML, bad compression ...
        raise corrupt(path, fmt, exc) from exc
    finally:
        if index_dir is not None:
            (index_dir / "nodes.idx").unlink(missing_ok=True)
    warn_skipped(path, stats)


def corrupt(path: Path, fmt: str, exc: Exception) -> FormatError:
    """The one-line error for a file libosmium could not read."""
    what = " ".join(str(exc).split())
    return FormatError(path, -1, f"corrupt or truncated {fmt} file ({what})")


def warn_skipped(path: Path, stats: ReadStats) -> None:
    """Log the ways skipped for missing nodes (once per read)."""
    if stats.skipped_ways:
        shown = ", ".join(map(str, stats.skipped_ids[:5]))
        log.warning("%s: skipped %d way(s) with nodes missing from the file (clipped extract), "
                    "e.g. way %s", path.name, stats.skipped_ways, shown)


def processor(source: Any, keys: Sequence[str], *, areas: bool, storage: Any) -> Any:
    """A pyosmium ``FileProcessor`` over ``source`` (a path, ``osmium.io.File``) with node
    locations from ``storage`` (an index spec or a ``LocationTable``), areas of the
    features carrying ``keys`` (when ``areas``), and the entity and key filters."""
    osmium = osmium_module()
    kinds = osmium.osm.WAY | osmium.osm.AREA if areas else osmium.osm.WAY
    proc = osmium.FileProcessor(source, thread_pool=osmium.io.ThreadPool())
    proc.with_locations(storage)
    if areas:
        proc.with_areas(osmium.filter.KeyFilter(*keys))
    proc.with_filter(osmium.filter.EntityFilter(kinds))
    proc.with_filter(osmium.filter.KeyFilter(*keys))
    return proc


def release_freed_memory() -> None:
    """Hand memory freed by libosmium's buffers (and numpy temporaries) back to the system
    (glibc ``malloc_trim``; a no-op elsewhere), so later phases do not stack their peaks on
    top of the reader's high-water mark."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def queue_limits() -> None:
    """Keep libosmium's read-ahead queues short (its buffers otherwise grow with the file's
    speed, not its size): memory stays flat for large files at no measurable cost."""
    os.environ.setdefault("OSMIUM_MAX_INPUT_QUEUE_SIZE", "4")
    os.environ.setdefault("OSMIUM_MAX_OSMDATA_QUEUE_SIZE", "4")

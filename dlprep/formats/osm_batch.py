"""OSM features a batch at a time: pyosmium's objects -> :class:`FeatureBatch` columns.

Per object only its tag values (the filter keys), its id and its WKB (hex, written by
libosmium) are taken in Python; the WKB of a batch is decoded at once (one hex -> bytes ->
float64 -> int32 1e-7 degrees conversion). :func:`features_of` gives the same features as
:class:`~dlprep.formats.osm.Feature` records; the tiles' spill takes the batches as they are.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .osm import Feature, ReadStats, osmium_module

# WKB (hex) characters of read features decoded together: one hex -> bytes -> float -> int32
# conversion per batch instead of a few NumPy calls per feature. A batch's hex is held about
# three times over while it is decoded (the records, their points cut out, joined), at the
# reader's peak: 512 K characters (~16,000 points) keep that to a few MB.
WKB_BATCH_CHARS = 1 << 19
WKB_BATCH_FEATURES = 4096


def gather_ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The indices ``starts[0]:starts[0] + counts[0]``, then the next range ..., in one array."""
    counts = np.asarray(counts, np.int64)
    total = int(counts.sum())
    ends = np.cumsum(counts)
    return np.repeat(np.asarray(starts, np.int64) - (ends - counts), counts) + np.arange(total)


@dataclass
class FeatureBatch:
    """Features in columns: what :class:`Feature` holds, for a batch of them at once.

    Feature ``i``: ``ids[i]``, ``osm_types[i]``, ``areas[i]``, ``values[i]`` (the value of each
    of ``keys``, None where the feature lacks it), its rings
    ``ring_lens[ring_start[i]:ring_start[i + 1]]`` (point counts, negative for inner rings; a
    line has one positive ring) and its points ``points[point_start[i]:point_start[i + 1]]``
    (int32 (lon, lat) in 1e-7 degrees, the rings back to back).
    """

    keys: tuple[str, ...]
    ids: list[int]
    osm_types: list[str]
    areas: list[bool]
    values: list[tuple[str | None, ...]]
    points: np.ndarray
    ring_lens: np.ndarray
    ring_start: np.ndarray
    point_start: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    def bounds(self) -> np.ndarray:
        """int32 (n, 4): min lon, min lat, max lon, max lat of each feature."""
        if not len(self.ids):
            return np.zeros((0, 4), np.int32)
        firsts = self.point_start[:-1]
        return np.concatenate([np.minimum.reduceat(self.points, firsts),
                               np.maximum.reduceat(self.points, firsts)], axis=1)

    def geometry(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                    np.ndarray]:
        """The points, ring lengths, point counts and ring counts of the features ``index``
        (in that order; repeats allowed), back to back."""
        index = np.asarray(index, np.int64)
        npts = np.diff(self.point_start)[index]
        nrings = np.diff(self.ring_start)[index]
        return (self.points[gather_ranges(self.point_start[index], npts)],
                self.ring_lens[gather_ranges(self.ring_start[index], nrings)], npts, nrings)

    def take(self, index: np.ndarray) -> FeatureBatch:
        """The features ``index`` (in that order; repeats allowed) as a new batch."""
        points, ring_lens, npts, nrings = self.geometry(index)
        pick = np.asarray(index, np.int64).tolist()
        return FeatureBatch(
            self.keys, [self.ids[i] for i in pick], [self.osm_types[i] for i in pick],
            [self.areas[i] for i in pick], [self.values[i] for i in pick], points, ring_lens,
            np.r_[0, np.cumsum(nrings)], np.r_[0, np.cumsum(npts)])

    def features(self) -> Iterator[Feature]:
        """The batch as :class:`Feature` records (tags: the keys the feature has, in
        ``keys`` order)."""
        keys, pts = self.keys, self.points
        lens = self.ring_lens.tolist()
        ring_start, point_start = self.ring_start.tolist(), self.point_start.tolist()
        for i, (osm_id, osm_type, area, vals) in enumerate(zip(
                self.ids, self.osm_types, self.areas, self.values, strict=True)):
            tags = {k: v for k, v in zip(keys, vals, strict=True) if v is not None}
            at = point_start[i]
            if not area:
                yield Feature(osm_id, osm_type, False, tags, [pts[at:point_start[i + 1]]], [])
                continue
            rings, outer = [], []
            for n in lens[ring_start[i]:ring_start[i + 1]]:
                k = abs(n)
                rings.append(pts[at:at + k])
                outer.append(n > 0)
                at += k
            yield Feature(osm_id, osm_type, True, tags, rings, outer)

    @classmethod
    def of(cls, features: Iterable[Feature], keys: Sequence[str]) -> FeatureBatch:
        """A batch of ``features`` (their values of ``keys``)."""
        keys = tuple(keys)
        ids, types, areas, values = [], [], [], []
        rings: list[np.ndarray] = []
        lens: list[int] = []
        counts: list[int] = []
        for f in features:
            ids.append(f.osm_id)
            types.append(f.osm_type)
            areas.append(f.area)
            values.append(tuple(f.tags.get(k) for k in keys))
            outer = f.outer if f.area else [True]
            lens.extend(len(r) if o else -len(r) for r, o in zip(f.rings, outer, strict=True))
            counts.append(len(f.rings))
            rings.extend(f.rings)
        ring_lens = np.asarray(lens, np.int64)
        ring_start = np.r_[0, np.cumsum(counts, dtype=np.int64)]
        pts = (np.concatenate(rings).astype(np.int32) if rings else np.zeros((0, 2), np.int32))
        return cls(keys, ids, types, areas, values, pts, ring_lens, ring_start,
                   np.r_[0, np.cumsum(np.abs(ring_lens))][ring_start])


def batches_of(features: Iterable[Feature], keys: Sequence[str],
               size: int = WKB_BATCH_FEATURES) -> Iterator[FeatureBatch]:
    """``features`` in :class:`FeatureBatch` es of ``size``."""
    batch: list[Feature] = []
    for f in features:
        batch.append(f)
        if len(batch) >= size:
            yield FeatureBatch.of(batch, keys)
            batch = []
    if batch:
        yield FeatureBatch.of(batch, keys)


_Record = tuple[int, str, bool, tuple[str | None, ...], str]
# the WKB (hex) of a multipolygon of one polygon of one ring, up to its point count: byte
# order (little-endian), type 6, 1 polygon; byte order, type 3, 1 ring
_ONE_RING = "01" "06000000" "01000000" "01" "03000000" "01000000"
_LINE_HEAD, _AREA_HEAD = slice(18, None), slice(44, None)  # after the header and point count


def _decode_batch(keys: tuple[str, ...], pending: list[_Record],
                  stats: ReadStats) -> FeatureBatch:
    """The batch of ``(osm_id, osm_type, area, values, WKB hex)`` records (a linestring, or a
    multipolygon for an area), in order; an area without rings is dropped. Coordinates become
    int32 1e-7 degrees (``rint(deg * 1e7)``), all of a batch in one conversion."""
    if not pending:
        return _batch(keys, [[], [], [], []], [], np.zeros(0, np.int64), [])
    ids, types, areas, values, hexes = map(list, zip(*pending, strict=True))
    if all(h.startswith(_ONE_RING) for a, h in zip(areas, hexes, strict=True) if a):
        # lines and one-ring areas (every area of a closed way): a fixed header each
        heads = [_AREA_HEAD if a else _LINE_HEAD for a in areas]
        chunks = list(map(str.__getitem__, hexes, heads))
        size = np.fromiter(map(len, hexes), np.int64, len(hexes))
        lens = (size - np.where(np.asarray(areas, bool), 44, 18)) >> 5
        stats.areas += sum(areas)
        return _batch(keys, [ids, types, areas, values], chunks, lens, [1] * len(ids))
    chunks, ring_lens, counts, kept = [], [], [], []
    for i, (area, hexed) in enumerate(zip(areas, hexes, strict=True)):
        if not area:  # a line: byte order, type, point count (9 bytes), points
            chunks.append(hexed[18:])
            ring_lens.append((len(hexed) - 18) >> 5)
            counts.append(1)
            kept.append(i)
            continue
        raw = bytes.fromhex(hexed)
        n_polys = int.from_bytes(raw[5:9], "little")
        at = 9
        rings = 0
        for _ in range(n_polys):
            n_rings = int.from_bytes(raw[at + 5:at + 9], "little")
            at += 9
            for k in range(n_rings):
                n = int.from_bytes(raw[at:at + 4], "little")
                chunks.append(hexed[2 * at + 8:2 * (at + 4 + 16 * n)])
                ring_lens.append(n if k == 0 else -n)
                at += 4 + 16 * n
            rings += n_rings
        if rings:
            stats.areas += 1
            counts.append(rings)
            kept.append(i)
    columns = [[col[i] for i in kept] for col in (ids, types, areas, values)]
    return _batch(keys, columns, chunks, np.asarray(ring_lens, np.int64), counts)


def _batch(keys: tuple[str, ...], columns: list[list[Any]], chunks: list[str],
           ring_lens: np.ndarray, counts: list[int]) -> FeatureBatch:
    """A batch of ``columns`` (ids, types, areas, values) whose rings' points are the hex
    ``chunks`` (little-endian float64 lon, lat), ``ring_lens`` of them, ``counts`` rings
    per feature."""
    deg = np.frombuffer(bytes.fromhex("".join(chunks)), "<f8").reshape(-1, 2)
    pts = np.rint(deg * 1e7).astype(np.int32)
    ring_start = np.r_[0, np.cumsum(counts, dtype=np.int64)]
    point_start = np.r_[0, np.cumsum(np.abs(ring_lens))][ring_start]
    ids, types, areas, values = columns
    return FeatureBatch(keys, ids, types, areas, values, pts, ring_lens, ring_start,
                        point_start)


def features_of(objects: Iterable[Any], keys: Sequence[str], *, lines: bool, stats: ReadStats,
                relations: str = "defer") -> Iterator[Feature]:
    """:class:`Feature` records of the ways and areas pyosmium yields, in their order
    (:func:`feature_batches`, a feature at a time)."""
    for batch in feature_batches(objects, keys, lines=lines, stats=stats, relations=relations):
        yield from batch.features()


class _Public:
    """What :func:`feature_batches` calls on pyosmium's C++ objects, by the public API."""

    def __init__(self, obj: Any) -> None:
        self.obj = obj
        self.tags_get_value_by_key = obj.tags.get

    def id(self) -> int:
        return int(self.obj.id)

    def from_way(self) -> bool:
        return bool(self.obj.from_way())

    def orig_id(self) -> int:
        return int(self.obj.orig_id())


def feature_batches(objects: Iterable[Any], keys: Sequence[str], *, lines: bool,
                    stats: ReadStats, relations: str = "defer") -> Iterator[FeatureBatch]:
    """The ways and areas pyosmium yields, in their order, as :class:`FeatureBatch` es.

    ``relations``: what becomes of the areas of multipolygon relations: ``defer`` (after
    everything else, in the order they came), ``drop`` or ``only`` (nothing else is
    kept). Ways whose geometry fails (a node without location) are skipped and counted.
    Per object only its tag values (``keys``), its id and its WKB (hex, from libosmium) are
    taken; the WKB is decoded a batch at a time (:func:`_decode_batch`).
    """
    osmium = osmium_module()
    wkb = osmium.geom.WKBFactory()
    linestring, multipolygon = wkb.create_linestring, wkb.create_multipolygon
    all_nodes = osmium.geom.use_nodes.ALL
    area_type = osmium.osm.Area
    keys = tuple(keys)
    nones = (None,) * len(keys)
    pending: list[_Record] = []
    held: list[_Record] = []
    only, drop, defer = relations == "only", relations == "drop", relations == "defer"
    chars = 0
    for obj in objects:
        try:  # the C++ object: tag lookups, id and the rest without their Python wrappers
            data = obj._pyosmium_data
        except AttributeError:  # a pyosmium without it: its public API
            data = _Public(obj)
        get = data.tags_get_value_by_key
        if isinstance(obj, area_type):
            from_way = data.from_way()
            if (from_way and only) or (not from_way and drop):
                continue
            try:
                hexed = multipolygon(obj)
            except Exception:  # noqa: BLE001 - osmium: a bad area
                continue
            record = (data.orig_id(), "way" if from_way else "relation", True,
                      tuple(map(get, keys, nones)), hexed)
            if not from_way and defer:
                held.append(record)
                continue
            pending.append(record)
        else:
            if only:
                continue
            try:
                hexed = linestring(obj, all_nodes)
            except Exception:  # noqa: BLE001 - osmium: a node without location
                stats.skip(data.id())
                continue
            stats.ways += 1
            if not lines:
                continue
            pending.append((data.id(), "way", False, tuple(map(get, keys, nones)), hexed))
        chars += len(hexed)
        if chars >= WKB_BATCH_CHARS or len(pending) >= WKB_BATCH_FEATURES:
            yield _decode_batch(keys, pending, stats)
            pending, chars = [], 0
    if pending:
        yield _decode_batch(keys, pending, stats)
    for at in range(0, len(held), WKB_BATCH_FEATURES):
        yield _decode_batch(keys, held[at:at + WKB_BATCH_FEATURES], stats)

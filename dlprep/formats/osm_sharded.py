"""Reading a sorted PBF extract in blob-range shards, with libosmium doing the OSM work.

Three kinds of work, each on a small PBF file made of the header blob and a range of data
blobs (:func:`dlprep.formats.osm_pbf.write_subset`, bytes copied, nothing re-encoded):

- **nodes** (:func:`node_part`): the locations of a range of node blobs, as records of
  (id uint64, lon int32, lat int32) in 1e-7 degrees, the record layout of libosmium's
  ``sparse_file_array`` index, which libosmium writes itself. The parts, in file order, are
  joined into one sorted index (:func:`write_node_index`) that every later shard maps
  read-only.
- **ways** (:func:`way_features`): a range of way blobs, plus the relation blobs so that
  libosmium knows which closed ways belong to multipolygon relations (those make no area of
  their own, as in a one-pass read): its lines and the areas of its closed ways, in file
  order. Relations completed inside the range are left to the relation pass.
- **relations** (:func:`relation_features`): the relation blobs and every way blob, with
  only the relations' member ways let through to libosmium's area assembler: the areas of the
  multipolygon relations, in the order a one-pass read completes them.

Joined in plan order (ways, then relations) the features are those of
:func:`dlprep.formats.osm.read_features`, in its order, whatever the number of shards.
Shards never open a file another shard writes; the node index is written before the way and
relation shards start and only read by them.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import zlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FormatError
from .osm import (
    UNDEFINED,
    Feature,
    ReadStats,
    corrupt,
    osmium_module,
    processor,
    queue_limits,
)
from .osm_batch import features_of
from .osm_pbf import iter_blob_data, node_locations

#: libosmium's ``sparse_file_array`` record: node id, then its location (x = lon, y = lat)
NODE_RECORD = np.dtype([("id", "<u8"), ("x", "<i4"), ("y", "<i4")])
#: libosmium maps at least this many records (and fills any it adds): the index is padded
#: to it with records that sort last, so opening it never writes to it
MIN_INDEX_RECORDS = 1 << 20
PAD_ID = np.iinfo(np.uint64).max
#: feature kinds in a feature part
LINE, WAY_AREA, RELATION_AREA = 0, 1, 2


def node_part(pbf: Path, start: int, end: int, dest: Path) -> int:
    """Write the node locations of the node blobs in ``[start, end)`` of ``pbf`` to ``dest``
    as :data:`NODE_RECORD` records sorted by id (decoded with NumPy,
    :func:`dlprep.formats.osm_pbf.node_locations`); returns their number."""
    ids, xs, ys = [], [], []
    for at, data in iter_blob_data(pbf, start, end):
        try:
            i, x, y = node_locations(data)
        except (ValueError, zlib.error) as exc:
            raise FormatError(pbf, at, f"damaged PBF node blob ({exc})") from None
        ids.append(i)
        xs.append(x)
        ys.append(y)
    rec = np.zeros(sum(len(i) for i in ids), NODE_RECORD)
    if len(rec):
        rec["id"], rec["x"], rec["y"] = np.concatenate(ids), np.concatenate(xs), np.concatenate(ys)
    if len(rec) > 1 and not bool(np.all(rec["id"][1:] > rec["id"][:-1])):
        rec = rec[np.argsort(rec["id"], kind="stable")]
    with open(dest, "wb") as fh:
        fh.write(rec.tobytes())
    return len(rec)


def _id_at(path: Path, record: int) -> int:
    with open(path, "rb") as fh:
        fh.seek(record * NODE_RECORD.itemsize)
        return int.from_bytes(fh.read(8), "little")


def write_node_index(parts: Sequence[Path], dest: Path) -> int:
    """Join the node parts (each sorted) into one sorted index at ``dest``, padded to
    :data:`MIN_INDEX_RECORDS` with records that sort last; returns the number of nodes.
    Parts in id order (a file sorted by id, the usual case) are copied as they are, by the
    kernel; parts whose id ranges overlap are merged by a stable sort: for an id present
    twice the later one wins, as when libosmium reads the file in one pass."""
    sizes = [p.stat().st_size // NODE_RECORD.itemsize for p in parts]
    kept = [(p, n) for p, n in zip(parts, sizes, strict=True) if n]
    ordered = all(_id_at(a, na - 1) < _id_at(b, 0)
                  for (a, na), (b, _) in zip(kept, kept[1:], strict=False))
    tmp = dest.with_name(dest.name + ".tmp")
    with open(tmp, "wb") as out:
        if ordered:
            n = sum(sizes)
            for p, _ in kept:
                with open(p, "rb") as fh:
                    shutil.copyfileobj(fh, out, 1 << 22) if not hasattr(os, "copy_file_range") \
                        else _copy_range(fh, out)
        else:
            rec = np.concatenate([np.fromfile(p, NODE_RECORD) for p, _ in kept])
            rec = rec[np.argsort(rec["id"], kind="stable")]
            rec = rec[np.r_[rec["id"][1:] != rec["id"][:-1], True]]  # the last of equal ids
            n = len(rec)
            out.write(rec.tobytes())
        pad = np.zeros(max(0, MIN_INDEX_RECORDS - n), NODE_RECORD)
        pad["id"], pad["x"], pad["y"] = PAD_ID, UNDEFINED, UNDEFINED
        out.write(pad.tobytes())
    tmp.replace(dest)
    return n


def _copy_range(src: Any, dst: Any) -> None:
    """All of ``src`` appended to ``dst`` by ``copy_file_range`` (no user-space copy)."""
    dst.flush()
    left = os.fstat(src.fileno()).st_size
    while left > 0:
        done = os.copy_file_range(src.fileno(), dst.fileno(), min(left, 1 << 30))
        if done <= 0:
            raise OSError("copy_file_range copied nothing")
        left -= done


def _index(path: Path) -> Any:
    """libosmium's view of the node index written by :func:`write_node_index` (mapped, not
    copied; it is sorted and large enough, so libosmium neither sorts nor grows it)."""
    return osmium_module().index.create_map(f"sparse_file_array,{path}")


def way_features(pbf: Path, index: Path, keys: Sequence[str], *, areas: bool, lines: bool,
                 stats: ReadStats) -> Iterator[Feature]:
    """The lines and closed-way areas of ``pbf`` (header + way blobs + relation blobs)."""
    queue_limits()
    try:
        proc = processor(str(pbf), keys, areas=areas, storage=_index(index))
        yield from features_of(proc, keys, lines=lines, stats=stats, relations="drop")
    except RuntimeError as exc:
        raise corrupt(pbf, "pbf", exc) from exc


def relation_features(pbf: Path, index: Path, keys: Sequence[str],
                      stats: ReadStats) -> Iterator[Feature]:
    """The areas of the multipolygon relations of ``pbf`` (header + every way blob + the
    relation blobs): libosmium's two passes, with only the relations' member ways reaching
    its area assembler in the second."""
    osmium = osmium_module()
    queue_limits()
    members: set[int] = set()

    class Members:
        def relation(self, rel: Any) -> None:
            members.update(m.ref for m in rel.members if m.type == "w")

    manager = osmium.area.AreaManager()
    area_filter = osmium.filter.KeyFilter(*keys)  # referenced as long as ``areas`` is read
    areas = osmium.BufferIterator(area_filter)
    try:
        with osmium.io.Reader(str(pbf), osmium.osm.RELATION) as reader:
            osmium.apply(reader, osmium.filter.KeyFilter(*keys), manager.first_pass_handler(),
                         Members())
        # the index and every handler stay referenced while libosmium runs: it keeps plain
        # pointers to them (a handler or index collected early crashes the process)
        table = _index(index)
        locations = osmium.NodeLocationsForWays(table)
        locations.ignore_errors()
        handlers = [locations,
                    osmium.filter.IdFilter(members).enable_for(osmium.osm.WAY),
                    manager.second_pass_to_buffer(areas),
                    osmium.filter.EntityFilter(osmium.osm.NOTHING)]
        with osmium.io.Reader(str(pbf), osmium.osm.NODE | osmium.osm.WAY) as reader:
            it = osmium.OsmFileIterator(reader, *handlers)
            for _ in it:  # nothing reaches Python here; the areas collect in ``areas``
                pass
            yield from features_of(areas, keys, lines=False, stats=stats, relations="only")
            del it, handlers, locations, table, areas, area_filter
    except RuntimeError as exc:
        raise corrupt(pbf, "pbf", exc) from exc


# --- parts: a shard's results on disk (plain arrays; loaded without pickle) ---

def save_part(dest: Path, arrays: Mapping[str, np.ndarray], texts: Mapping[str, Any]) -> None:
    """Write a part: ``arrays`` and JSON ``texts`` in one ``.npz``, built in memory and
    written with plain I/O (a full disk is ``ENOSPC`` right there)."""
    encoded = {k: np.frombuffer(json.dumps(v, separators=(",", ":")).encode(), np.uint8)
               for k, v in texts.items()}
    buf = io.BytesIO()
    np.savez(buf, **arrays, **encoded)
    with open(dest, "wb") as fh:
        fh.write(buf.getbuffer())


def load_part(path: Path, arrays: Sequence[str], texts: Sequence[str]) -> dict[str, Any]:
    """The ``arrays`` and JSON ``texts`` :func:`save_part` wrote (never unpickled); a
    ``FormatError`` naming the part when it cannot be read."""
    try:
        with np.load(path, allow_pickle=False) as z:
            out: dict[str, Any] = {k: z[k] for k in arrays}
            out.update((k, json.loads(z[k].tobytes())) for k in texts)
    except (OSError, ValueError, KeyError) as exc:
        raise FormatError(path, -1, f"unreadable shard part ({exc})") from None
    return out


def write_features(features: Iterator[Feature], dest: Path) -> int:
    """Write ``features`` to ``dest`` (an ``.npz`` of plain arrays, tags as JSON); returns
    their number."""
    ids: list[int] = []
    kinds: list[int] = []
    n_rings: list[int] = []
    ring_lens: list[int] = []
    points: list[np.ndarray] = []
    tags: list[dict[str, str]] = []
    for f in features:
        ids.append(f.osm_id)
        kinds.append(LINE if not f.area else WAY_AREA if f.osm_type == "way" else RELATION_AREA)
        n_rings.append(len(f.rings))
        outer = f.outer if f.area else [True]
        ring_lens.extend(len(r) if o else -len(r) for r, o in zip(f.rings, outer, strict=True))
        points.extend(f.rings)
        tags.append(f.tags)
    save_part(dest, {"ids": np.asarray(ids, np.int64), "kinds": np.asarray(kinds, np.uint8),
                     "n_rings": np.asarray(n_rings, np.int32),
                     "ring_lens": np.asarray(ring_lens, np.int32),
                     "points": np.concatenate(points).astype(np.int32) if points
                     else np.zeros((0, 2), np.int32)}, {"tags": tags})
    return len(ids)


def read_features_part(path: Path) -> Iterator[Feature]:
    """The features :func:`write_features` wrote to ``path``, in order."""
    z = load_part(path, ("ids", "kinds", "n_rings", "ring_lens", "points"), ("tags",))
    ids, kinds, n_rings, ring_lens, points, tags = (
        z[k] for k in ("ids", "kinds", "n_rings", "ring_lens", "points", "tags"))
    ring_at = pt_at = 0
    for osm_id, kind, nr, tag in zip(ids.tolist(), kinds.tolist(), n_rings.tolist(), tags,
                                     strict=True):
        rings, outer = [], []
        for n in ring_lens[ring_at:ring_at + nr].tolist():
            rings.append(points[pt_at:pt_at + abs(n)])
            outer.append(n > 0)
            pt_at += abs(n)
        ring_at += nr
        yield Feature(osm_id, "relation" if kind == RELATION_AREA else "way", kind != LINE,
                      tag, rings, outer if kind != LINE else [])

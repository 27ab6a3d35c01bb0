"""Blob-range shards of the ``osm`` builder (issue 15): a sorted PBF extract read on
``--workers N`` processes or a Dask cluster, with the same output as one process.

Plan (:func:`plan_shards`, from the blob index of :mod:`dlprep.formats.osm_pbf`): the node
blobs in consecutive byte ranges (about :data:`TARGET_SHARDS`, at most
:data:`MAX_SHARD_BYTES` each). :func:`assemble` then joins their node locations into one index
(``nodes.idx`` in the parts folder), runs a second stage on the same executor (the way blobs
in byte ranges, and for tiles one pass over the relations; :mod:`dlprep.formats.osm_sharded`),
and hands their features, in plan order, to the tile or way builder as if they had been read in
one pass. Other inputs (``.osm``/``.osm.bz2``, Overpass replies, PBF files not laid out as
sorted nodes, ways, relations) and, by default, PBF files under :data:`SHARD_MIN_BYTES` or
outside Dask (:func:`wants_shards`) plan no shards and are read in one pass by ``build``: the
same features in the same order.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import DlprepError, FormatError
from ..formats.osm import ReadStats, sniff_osm
from ..formats.osm_pbf import BlobInfo, blob_index, shardable, write_subset
from ..formats.osm_sharded import (
    load_part,
    node_part,
    read_features_part,
    relation_features,
    save_part,
    way_features,
    write_features,
    write_node_index,
)
from ..scale import ShardJob, ShardSpec
from .core import PrepareContext

log = logging.getLogger("dlprep")

TARGET_SHARDS = 16  # shards per stage, about (a pure function of the file: never the workers)
MAX_SHARD_BYTES = 64 << 20  # compressed blob bytes per shard, at most (one blob at least)
INDEX_NAME = "nodes.idx"
#: when a sorted PBF extract is read in shards (``$DLPREP_OSM_SHARDS``): ``auto`` (default)
#: from :data:`SHARD_MIN_BYTES` on and only on Dask (``--workers N > 1`` or ``--scheduler``);
#: ``always`` (any sorted PBF, in this process too); ``never``. In one process the one-pass read
#: is faster (libosmium decodes nodes on its own threads, and nothing goes through parts;
#: docs/SCALING.md has the figures), so ``auto`` keeps it there.
SHARDS_ENV = "DLPREP_OSM_SHARDS"
SHARD_MIN_BYTES = 32 << 20


def shard_policy() -> str:
    """``$DLPREP_OSM_SHARDS``: ``auto`` (unset), ``always`` or ``never``."""
    value = os.environ.get(SHARDS_ENV, "").strip().lower() or "auto"
    if value not in ("auto", "always", "never"):
        raise DlprepError(f"${SHARDS_ENV}={value!r}: expected auto, always or never")
    return value


def wants_shards(ctx: PrepareContext, path: Path) -> bool:
    """Whether ``path`` (a PBF file) is read in shards under :func:`shard_policy`."""
    policy = shard_policy()
    if policy != "auto":
        return policy == "always"
    return (ctx.workers > 1 or ctx.scheduler is not None) and \
        path.stat().st_size >= SHARD_MIN_BYTES


def _runs(blobs: list[BlobInfo]) -> list[tuple[int, int]]:
    """Consecutive byte ranges ``[start, end)`` of ``blobs`` (contiguous in the file): about
    :data:`TARGET_SHARDS` of them, each at most :data:`MAX_SHARD_BYTES` (or one blob)."""
    if not blobs:
        return []
    total = blobs[-1].offset + blobs[-1].length - blobs[0].offset
    per = min(MAX_SHARD_BYTES, max(1, -(-total // TARGET_SHARDS)))
    out: list[tuple[int, int]] = []
    start = blobs[0].offset
    for b in blobs:
        end = b.offset + b.length
        if end - start >= per or b is blobs[-1]:
            out.append((start, end))
            start = end
    return out


def _span(blobs: list[BlobInfo]) -> list[int]:
    return [blobs[0].offset, blobs[-1].offset + blobs[-1].length] if blobs else [0, 0]


def plan_shards(ctx: PrepareContext) -> list[ShardSpec]:
    """Node shards of a sorted PBF extract when :func:`wants_shards`; none otherwise (read
    in one pass: the same features in the same order)."""
    from .osm import OsmCollected

    got = ctx.collected_as(OsmCollected)
    if got.overpass or sniff_osm(got.path) != "pbf":
        return []
    if not wants_shards(ctx, got.path):
        return []
    blobs = blob_index(got.path)
    if not shardable(blobs):
        log.info("%s: not laid out as sorted nodes, ways, relations; read in one pass",
                 got.path.name)
        return []
    return [ShardSpec.make(f"n{i:06d}", [got.path.absolute()], a, b, {"stage": "nodes"})
            for i, (a, b) in enumerate(_runs([x for x in blobs if x.kind == "nodes"]))]


def _feature_specs(ctx: PrepareContext, index: Path, keys: list[str], areas: bool
                   ) -> list[ShardSpec]:
    from .osm import OsmCollected

    path = ctx.collected_as(OsmCollected).path.absolute()
    blobs = blob_index(path)
    head = [blobs[0].offset, blobs[0].length]
    ways = [b for b in blobs if b.kind == "ways"]
    rels = _span([b for b in blobs if b.kind == "relations"]) if areas else [0, 0]
    common: dict[str, Any] = {"header": head, "relations": rels, "index": str(index),
                              "keys": keys, "areas": areas}
    if ctx.options["format"] == "ways":
        from .osm import _bbox

        common.update(sequences=True, normalize=bool(ctx.options["normalize"]),
                      bbox=list(_bbox(ctx) or ()))
    specs = [ShardSpec.make(f"w{i:06d}", [path], a, b, {**common, "stage": "ways"})
             for i, (a, b) in enumerate(_runs(ways))]
    if areas and rels[1] > rels[0]:
        w = _span(ways)
        specs.append(ShardSpec.make("r000000", [path], w[0], w[1],
                                    {**common, "stage": "relations"}))
    return specs


def _subset(spec: ShardSpec, dest: Path, *extra: list[int]) -> Path:
    """Write the header blob, ``[spec.start, spec.end)`` and the ``extra`` ranges of the
    spec's file as a PBF file at ``dest``."""
    head = spec.option("header")
    ranges = [BlobInfo(head[0], head[1], "header"),
              BlobInfo(spec.start, spec.end - spec.start, "data")]
    ranges += [BlobInfo(a, b - a, "data") for a, b in extra if b > a]
    write_subset(Path(spec.paths[0]), ranges, dest)
    return dest


def run_shard(spec: ShardSpec, part: Path | None) -> dict[str, Any]:
    """One shard: node locations (``stage`` nodes), or the features of way blobs (ways) or
    of the relations (relations) into a feature part."""
    assert part is not None
    stage = spec.option("stage")
    pbf = part.with_name(part.name + ".pbf")
    try:
        if stage == "nodes":
            return {"nodes": node_part(Path(spec.paths[0]), spec.start, spec.end, part)}
        keys = list(spec.option("keys"))
        stats = ReadStats()
        index = Path(spec.option("index"))
        _subset(spec, pbf, spec.option("relations"))
        if stage == "ways":
            feats = way_features(pbf, index, keys, areas=bool(spec.option("areas")),
                                 lines=True, stats=stats)
        else:
            feats = relation_features(pbf, index, keys, stats)
        if spec.option("sequences"):  # --format ways: the sequences themselves
            from .osm import within
            from .osm_ways import way_records

            bbox = spec.option("bbox")
            rec = way_records(within(feats, tuple(bbox) if bbox else None), keys[0],
                              bool(spec.option("normalize")))
            n = write_way_records(rec, part)
        else:
            n = write_features(feats, part)
        return {"features": n, "ways": stats.ways, "areas": stats.areas,
                "skipped_ways": stats.skipped_ways, "skipped_ids": stats.skipped_ids}
    except FormatError as exc:  # name the user's file and the blob range, not the subset
        if exc.file != str(pbf):
            raise
        raise FormatError(spec.paths[0], spec.start,
                          f"in the blobs up to byte {spec.end}: {exc.what}") from None
    finally:
        pbf.unlink(missing_ok=True)


def merged_stats(results: list[dict[str, Any]]) -> ReadStats:
    """One :class:`ReadStats` of the feature shards' stats, in plan order."""
    stats = ReadStats()
    for r in results:
        stats.ways += int(r.get("ways", 0))
        stats.areas += int(r.get("areas", 0))
        stats.skipped_ways += int(r.get("skipped_ways", 0))
        stats.skipped_ids.extend(int(i) for i in r.get("skipped_ids", ()))
    del stats.skipped_ids[20:]
    return stats


def assemble(ctx: PrepareContext, out: Path, job: ShardJob) -> None:
    """Node index from the node parts, then the feature stage, then ``build`` on them."""
    from .osm import OsmCollected, build, filter_keys

    if job.specs:
        index = job.parts_dir / INDEX_NAME
        nodes = write_node_index(job.parts, index)
        areas = ctx.options["format"] == "tiles"
        specs = _feature_specs(ctx, index, filter_keys(ctx), areas)
        run = job.map(specs, run_shard, stage="features", key=f"nodes={nodes}",
                      desc=f"{ctx.name} ways")
        job.executor.close_soon()  # no more shards: the workers stop while the file is made
        parts = tuple(str(p) for p in run_parts(job, specs))
        got = ctx.collected_as(OsmCollected)
        ctx.collected = replace(got, parts=parts, part_stats=tuple(run.stats))
        if ctx.options["format"] == "ways":
            from .osm_ways import build_ways

            build_ways(ctx, out, (read_way_records(Path(p)) for p in parts))
            return
    build(ctx, out)


def run_parts(job: ShardJob, specs: list[ShardSpec]) -> list[Path]:
    from ..scale.manifest import part_path

    return [part_path(job.parts_dir / "features", s.id) for s in specs]


WAY_ARRAYS = ("data", "lengths", "ids", "scales")


def write_way_records(rec: Any, dest: Path) -> int:
    """A ways shard's part: its :class:`~.osm_ways.WayRecords` (label values as JSON);
    returns the number of ways."""
    save_part(dest, {k: getattr(rec, k) for k in WAY_ARRAYS}, {"values": rec.values})
    return len(rec.lengths)


def read_way_records(path: Path) -> Any:
    """The :class:`~.osm_ways.WayRecords` of a ways shard's part."""
    from .osm_ways import WayRecords

    return WayRecords(**load_part(path, WAY_ARRAYS, ("values",)))


def iter_parts(parts: tuple[str, ...]) -> Any:
    """The features of the feature parts, in order."""
    for p in parts:
        yield from read_features_part(Path(p))

"""``--format ways``: each OSM way as float32 (T, 2) offsets in metres from its first node.

Offsets are east/north metres in the tangent plane at the way's first node
(``dx = R cos(lat0) dlon``, ``dy = R dlat``, radians, ``R = 6378137``), so they do not depend on
the area or the file. The label is the way's ``--label-key`` value; classes with fewer than
``--min-count`` ways are folded into ``other``. ``meta/osm_id`` keeps the way id.
"""

from __future__ import annotations

import logging
import math
import tempfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DlprepError
from ..formats.osm import Feature, ReadStats
from ..formats.osm_raster import EARTH_RADIUS_M, SCALE
from ..store import SequenceWriter
from .core import PrepareContext
from .osm import add_part_stats, iter_features, osm_attrs
from .splits import stratified_split

log = logging.getLogger("dlprep")

OTHER_CLASS = "other"
_M_PER_DEG = math.pi * EARTH_RADIUS_M / 180.0


def way_offsets(fixed: np.ndarray) -> np.ndarray:
    """int (T, 2) (lon, lat) in 1e-7 degrees -> float32 (T, 2) east/north metres from node 0."""
    deg = fixed.astype(np.float64) * SCALE
    lat0 = math.radians(deg[0, 1])
    out = np.empty(deg.shape, np.float64)
    out[:, 0] = (deg[:, 0] - deg[0, 0]) * _M_PER_DEG * math.cos(lat0)
    out[:, 1] = (deg[:, 1] - deg[0, 1]) * _M_PER_DEG
    return out.astype(np.float32)


@dataclass
class WayRecords:
    """Ways as sequences, back to back: ``data`` float32 (P, 2) metre offsets, ``lengths``,
    the label ``values``, ``ids`` and (``--normalize``) each way's ``scales``."""

    data: np.ndarray
    lengths: np.ndarray
    values: list[str]
    ids: np.ndarray
    scales: np.ndarray


def way_records(features: Iterable[Feature], key: str, normalize: bool) -> WayRecords:
    """The sequences of ``features`` (lines carrying ``key``; fewer than 2 nodes: left out),
    computed a batch at a time with the same float operations as :func:`way_offsets` (and,
    with ``normalize``, divided by each way's largest absolute offset), so the bytes are
    those of a way at a time."""
    rings: list[np.ndarray] = []
    values: list[str] = []
    ids: list[int] = []
    for feat in features:
        coords = feat.rings[0]
        if len(coords) < 2:
            continue
        rings.append(coords)
        values.append(feat.tags[key])
        ids.append(feat.osm_id)
    lengths = np.fromiter((len(r) for r in rings), np.int64, len(rings))
    if not rings:
        return WayRecords(np.zeros((0, 2), np.float32), lengths, values,
                          np.zeros(0, np.int64), np.zeros(0, np.float32))
    deg = np.concatenate(rings).astype(np.float64) * SCALE
    starts = np.r_[0, np.cumsum(lengths)[:-1]]
    first = np.repeat(deg[starts], lengths, axis=0)
    cos0 = np.repeat(np.array([math.cos(math.radians(v)) for v in deg[starts, 1].tolist()]),
                     lengths)
    out = np.empty(deg.shape, np.float64)
    out[:, 0] = (deg[:, 0] - first[:, 0]) * _M_PER_DEG * cos0
    out[:, 1] = (deg[:, 1] - first[:, 1]) * _M_PER_DEG
    data = out.astype(np.float32)
    scales = np.zeros(0, np.float32)
    if normalize:
        peak = np.maximum.reduceat(np.abs(data).max(axis=1), starts)
        scale64 = np.where(peak > 0, peak.astype(np.float64), 1.0)
        # float32 / Python float in a way-at-a-time loop divides in float32
        data = data / np.repeat(scale64.astype(np.float32), lengths)[:, None]
        scales = scale64.astype(np.float32)
    return WayRecords(data, lengths, values, np.asarray(ids, np.int64), scales)


def build_ways(ctx: PrepareContext, out: Path,
               parts: Iterable[WayRecords] | None = None) -> None:
    """Write the ways dataset at ``out`` from the collected source, or from ``parts`` (the
    way shards' records, in order) when given."""
    o = ctx.options
    key = o["label_key"] or "highway"
    stats = ReadStats()
    writer = SequenceWriter(out, features=2)
    try:
        values: list[str] = []
        ids: list[np.ndarray] = []
        scales: list[np.ndarray] = []
        with tempfile.TemporaryDirectory(prefix=".osm-", dir=out.parent) as tmp:
            if parts is None:
                feats = iter_features(ctx, [key], areas=False, lines=True, stats=stats,
                                      index_dir=Path(tmp) / "index")
                parts = [way_records(feats, key, bool(o["normalize"]))]
            else:
                add_part_stats(ctx, stats)
            for rec in parts:
                writer.extend_flat(rec.data, rec.lengths)
                values.extend(rec.values)
                ids.append(rec.ids)
                scales.append(rec.scales)
        if not values:
            raise DlprepError(f"dataset {ctx.name}: no OSM ways with a {key!r} tag in the area "
                              f"(empty area; check --bbox and --label-key)")
        counts = Counter(values)
        keep = sorted(c for c, k in counts.items() if k >= int(o["min_count"]))
        classes = keep + ([OTHER_CLASS] if len(keep) < len(counts) else [])
        index = {c: i for i, c in enumerate(classes)}
        other = index.get(OTHER_CLASS, 0)
        y = np.array([index.get(v, other) for v in values], np.int64)
        splits = stratified_split(y, {"test": float(o["test_fraction"])}, int(o["seed"]))
        meta: dict[str, np.ndarray] = {"osm_id": np.concatenate(ids).astype(np.int64)}
        if o["normalize"]:
            meta["scale_m"] = np.concatenate(scales).astype(np.float32)
        attrs = osm_attrs(ctx, stats, osm_format="ways", osm_label_key=key)
        writer.finish(splits=splits, labels=y, classes=classes, meta=meta, extra_attrs=attrs,
                      **ctx.finish_kwargs())
    except BaseException:
        writer.close()
        raise
    log.info("osm ways: %d ways, %d classes; %d ways skipped (missing nodes)", len(values),
             len(classes), stats.skipped_ways)

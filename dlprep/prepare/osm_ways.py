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
from pathlib import Path

import numpy as np

from ..errors import DlprepError
from ..formats.osm import ReadStats
from ..formats.osm_raster import EARTH_RADIUS_M, SCALE
from ..store import SequenceWriter
from .core import PrepareContext
from .osm import iter_features, osm_attrs
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


def build_ways(ctx: PrepareContext, out: Path) -> None:
    o = ctx.options
    key = o["label_key"] or "highway"
    stats = ReadStats()
    writer = SequenceWriter(out, features=2)
    try:
        values: list[str] = []
        ids: list[int] = []
        scales: list[float] = []
        with tempfile.TemporaryDirectory(prefix=".osm-", dir=out.parent) as tmp:
            for feat in iter_features(ctx, [key], areas=False, lines=True, stats=stats,
                                      index_dir=Path(tmp) / "index"):
                coords = feat.rings[0]
                if len(coords) < 2:
                    continue
                seq = way_offsets(coords)
                if o["normalize"]:
                    scale = float(np.abs(seq).max()) or 1.0
                    seq = (seq / scale).astype(np.float32)
                    scales.append(scale)
                writer.append(seq)
                values.append(feat.tags[key])
                ids.append(feat.osm_id)
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
        meta: dict[str, np.ndarray] = {"osm_id": np.asarray(ids, np.int64)}
        if o["normalize"]:
            meta["scale_m"] = np.asarray(scales, np.float32)
        attrs = osm_attrs(ctx, stats, osm_format="ways", osm_label_key=key)
        writer.finish(splits=splits, labels=y, classes=classes, meta=meta, extra_attrs=attrs,
                      **ctx.finish_kwargs())
    except BaseException:
        writer.close()
        raise
    log.info("osm ways: %d ways, %d classes; %d ways skipped (missing nodes)", len(values),
             len(classes), stats.skipped_ways)

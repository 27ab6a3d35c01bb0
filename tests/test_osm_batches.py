"""The batch read of OSM features (``feature_batches``: WKB decoded a batch at a time) and the
geometry spill's batch append, checked on the real Andorra sample against pyosmium's own node
locations and against the one-item-at-a-time paths."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from dlprep.formats.osm import ReadStats, processor, read_features
from dlprep.formats.osm_batch import FeatureBatch, feature_batches, gather_ranges
from dlprep.formats.osm_layers import load_layers
from dlprep.formats.osm_raster import GeometrySpill
from dlprep.prepare.osm import within

osmium = pytest.importorskip("osmium")  # the `osm` extra (in `all`, which CI installs)

KEYS = sorted(set(load_layers(None).keys()) | {"landuse"})


def _andorra(realdata: Path) -> Path:
    return realdata / "osm" / "example-test.pbf"


def _xy(nodes: object) -> list[tuple[int, int]]:
    return [(nd.location.x, nd.location.y) for nd in nodes]  # type: ignore[attr-defined]


def test_batches_hold_pyosmiums_own_node_locations_and_tags(realdata: Path) -> None:
    """Every feature's rings (lines, one-ring areas and areas with several rings) and tags
    equal what pyosmium gives for the same object through its node lists."""
    want: dict[tuple[str, int, bool], tuple[list[list[tuple[int, int]]], list[bool],
                                              dict[str, str]]] = {}

    def recorded(objects: object):  # noqa: ANN202 - the reference, taken as objects pass
        for obj in objects:  # type: ignore[attr-defined]
            tags = {k: obj.tags[k] for k in KEYS if k in obj.tags}
            if obj.is_area():
                rings, outer = [], []
                for ring in obj.outer_rings():
                    rings.append(_xy(ring))
                    outer.append(True)
                    for inner in obj.inner_rings(ring):
                        rings.append(_xy(inner))
                        outer.append(False)
                kind = "way" if obj.from_way() else "relation"
                want[(kind, obj.orig_id(), True)] = (rings, outer, tags)
            elif all(nd.location.valid() for nd in obj.nodes):
                want[("way", obj.id, False)] = ([_xy(obj.nodes)], [], tags)
            yield obj

    proc = processor(str(_andorra(realdata)), KEYS, areas=True, storage="flex_mem")
    stats = ReadStats()
    got = [f for b in feature_batches(recorded(proc), KEYS, lines=True, stats=stats)
           for f in b.features()]
    assert len(got) > 14_000 and stats.areas > 4_000
    several = 0
    for f in got:
        rings, outer, tags = want[(f.osm_type, f.osm_id, f.area)]
        assert [r.tolist() for r in f.rings] == [[list(p) for p in r] for r in rings]
        assert f.outer == outer and f.tags == tags
        several += len(f.rings) > 1
    assert several > 10  # areas with holes or several outer rings were decoded too


def test_batches_are_the_features_one_at_a_time(realdata: Path) -> None:
    """``FeatureBatch.of`` / ``features`` round-trip; ``take`` picks (and repeats) features;
    ``bounds`` are ``Feature.bounds``; the batch bbox cut keeps what ``within`` keeps."""
    feats = list(read_features(_andorra(realdata), KEYS, areas=True))
    batch = FeatureBatch.of(feats, KEYS)
    again = list(batch.features())
    assert [(f.osm_id, f.osm_type, f.area, f.tags, f.outer) for f in again] == \
        [(f.osm_id, f.osm_type, f.area, f.tags, f.outer) for f in feats]
    assert all(np.array_equal(a, b) for f, g in zip(feats, again, strict=True)
               for a, b in zip(f.rings, g.rings, strict=True))
    assert batch.bounds().tolist() == [list(f.bounds()) for f in feats]
    pick = np.array([5, 5, 0, len(feats) - 1, 17])
    picked = list(batch.take(pick).features())
    assert [f.osm_id for f in picked] == [feats[i].osm_id for i in pick.tolist()]
    assert all(np.array_equal(np.concatenate(f.rings), np.concatenate(feats[i].rings))
               for f, i in zip(picked, pick.tolist(), strict=True))
    assert gather_ranges(np.array([3, 0]), np.array([2, 0])).tolist() == [3, 4]
    box = (42.5, 1.5, 42.53, 1.55)
    kept = [f.osm_id for f in within(feats, box)]
    s, w, n, e = (round(v * 1e7) for v in box)
    b = batch.bounds()
    mask = (b[:, 2] >= w) & (b[:, 0] <= e) & (b[:, 3] >= s) & (b[:, 1] <= n)
    assert 0 < len(kept) < len(feats)
    assert batch.take(np.flatnonzero(mask)).ids == kept


def _spill_bytes(spill: GeometrySpill) -> tuple[bytes, ...]:
    spill.finish()
    return (os.pread(spill.fd, spill.pos, 0), spill.bounds.tobytes(), spill.layer.tobytes(),
            spill.label.tobytes(), spill.width.tobytes(), spill.ring_lens.tobytes(),
            spill.start.tobytes(), spill.ring_start.tobytes())


def test_spill_add_items_writes_what_add_writes(realdata: Path, tmp_path: Path) -> None:
    """Items appended a batch at a time (``add_items``, buffers of any size) give the spill
    files and arrays of :meth:`GeometrySpill.add` an item at a time."""
    feats = list(read_features(_andorra(realdata), KEYS, areas=True))[::3]
    one = GeometrySpill(tmp_path)
    meta = []
    for i, f in enumerate(feats):
        item = (i % 5 - 1, i % 300, 0.0 if f.area else 2.5 + i % 3)
        meta.append(item)
        one.add(f.rings, f.outer if f.area else [True], layer=item[0], label=item[1],
                width=item[2])
    batch = FeatureBatch.of(feats, KEYS)
    many = GeometrySpill(tmp_path)
    for a in range(0, len(feats), 777):
        idx = np.arange(a, min(a + 777, len(feats)))
        points, ring_lens, n_points, n_rings = batch.geometry(idx)
        layer, label, width = zip(*meta[a:a + 777], strict=True)
        many.add_items(points, ring_lens, n_points, n_rings, layer, label, width)
    try:
        assert len(one) == len(many) == len(feats)
        assert _spill_bytes(one) == _spill_bytes(many)
    finally:
        one.close()
        many.close()


def test_a_pyosmium_without_its_cpp_objects_reads_the_same(realdata: Path,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    """Objects without ``_pyosmium_data`` (the C++ object dlprep calls directly) are read
    through pyosmium's public API instead, to the same features. (pyosmium's geometry
    factory itself needs the real objects: it is given them.)"""

    class Hidden:
        def __init__(self, real: object) -> None:
            self.real = real

        @property
        def tags(self) -> object:
            return self.real.tags  # type: ignore[attr-defined]

        @property
        def id(self) -> int:
            return self.real.id  # type: ignore[attr-defined]

        def from_way(self) -> bool:
            return self.real.from_way()  # type: ignore[attr-defined]

        def orig_id(self) -> int:
            return self.real.orig_id()  # type: ignore[attr-defined]

    class HiddenArea(Hidden, osmium.osm.Area):
        pass

    class HiddenWay(Hidden, osmium.osm.Way):
        pass

    real_factory = osmium.geom.WKBFactory

    class Factory:
        def __init__(self) -> None:
            self.wkb = real_factory()

        def create_linestring(self, obj: Hidden, *args: object) -> str:
            return self.wkb.create_linestring(obj.real, *args)

        def create_multipolygon(self, obj: Hidden) -> str:
            return self.wkb.create_multipolygon(obj.real)

    def hidden(objects: object):  # noqa: ANN202
        for obj in objects:  # type: ignore[attr-defined]
            proxy = (HiddenArea if obj.is_area() else HiddenWay)(obj)
            with pytest.raises(AttributeError):
                proxy._pyosmium_data  # noqa: B018 - what dlprep looks for is not there
            yield proxy

    def read(wrap: bool) -> list[tuple]:
        proc = processor(str(_andorra(realdata)), KEYS, areas=True, storage="flex_mem")
        stats = ReadStats()
        out = [(f.osm_id, f.osm_type, f.tags, [r.tolist() for r in f.rings], f.outer)
               for b in feature_batches(hidden(proc) if wrap else proc, KEYS, lines=True,
                                        stats=stats) for f in b.features()]
        return [*out, (stats.ways, stats.areas, stats.skipped_ways)]

    plain = read(False)
    monkeypatch.setattr(osmium.geom, "WKBFactory", Factory)
    assert read(True) == plain and len(plain) > 14_000

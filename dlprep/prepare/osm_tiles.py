"""``--format tiles``: OSM features -> uint8 (N, size, size, layers) map tiles + land-use labels.

Pass 1 streams the features once (tag filter inside libosmium) into a :class:`GeometrySpill`
on disk. Pass 2 draws the grid block by block (``BLOCK`` x ``BLOCK`` tiles, only blocks that
some feature touches), keeps the tiles with at least ``--min-coverage`` of drawn pixels, and
appends them to a scratch file; the HDF5 file is written from it once the count is known.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from array import array
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DlprepError
from ..formats.osm import ReadStats
from ..formats.osm_layers import load_layers
from ..formats.osm_raster import (
    GeometrySpill,
    Grid,
    channel_counts,
    dominant_labels,
    gather_tiles,
    render_block,
)
from ..store import ImageTensorWriter
from .core import PrepareContext
from .osm import _bbox, iter_features, osm_attrs
from .splits import stratified_split

log = logging.getLogger("dlprep")

BLOCK = 16  # tiles per block side
NONE_CLASS = "none"
OTHER_CLASS = "other"
MAX_TILES = 20_000_000


def _spill_features(ctx: PrepareContext, spill: GeometrySpill, stats: ReadStats,
                    index_dir: Path) -> list[str]:
    """Pass 1: every feature that feeds a layer or the label raster goes into ``spill``;
    returns the label values by id (id 1 = index 0)."""
    o = ctx.options
    spec = load_layers(o["layers"])
    label_key = o["label_key"] or "landuse"
    keys = sorted(set(spec.keys()) | {label_key})
    label_ids: dict[str, int] = {}
    for feat in iter_features(ctx, keys, areas=True, lines=True, stats=stats,
                              index_dir=index_dir):
        bounds = feat.bounds()
        if feat.area:
            value = feat.tags.get(label_key)
            label = 0
            if value is not None:
                label = label_ids.setdefault(value, len(label_ids) + 1)
            for li, layer in enumerate(spec.layers):
                if layer.takes_area(feat.tags):
                    spill.add(feat.rings, feat.outer, bounds, layer=li, label=label, width=0.0)
                    label = 0  # the label is drawn with the first layer only
            if label:
                spill.add(feat.rings, feat.outer, bounds, layer=-1, label=label, width=0.0)
        else:
            for li, layer in enumerate(spec.layers):
                width = layer.line_width(feat.tags)
                if width is not None:
                    spill.add(feat.rings, [True], bounds, layer=li, label=0, width=width)
    spill.flush()
    if len(label_ids) > 65535:
        raise DlprepError(f"--label-key {label_key}: more than 65535 distinct values")
    return list(label_ids)


def _grid(ctx: PrepareContext, spill: GeometrySpill) -> Grid:
    bbox = _bbox(ctx)
    if bbox is None:
        b = spill.bounds_array()
        lo, hi = b[:, :2].min(axis=0) * 1e-7, b[:, 2:].max(axis=0) * 1e-7
        bbox = (float(lo[1]), float(lo[0]), float(hi[1]), float(hi[0]))
        if bbox[0] == bbox[2] or bbox[1] == bbox[3]:
            bbox = (bbox[0], bbox[1], bbox[2] + 1e-6, bbox[3] + 1e-6)
    grid = Grid(*bbox, meters_per_pixel=float(ctx.options["meters_per_pixel"]),
                tile_size=int(ctx.options["tile_size"]))
    if grid.cols * grid.rows > MAX_TILES:
        raise DlprepError(f"--bbox/--meters-per-pixel: the grid has {grid.cols * grid.rows:,} "
                          f"tiles (at most {MAX_TILES:,}); choose a smaller area or coarser "
                          f"resolution")
    return grid


def _blocks(grid: Grid, spill: GeometrySpill, all_blocks: bool
            ) -> list[tuple[int, int, np.ndarray]]:
    """(block row, block col, items) for every block some item's padded pixel bounds meet
    (every block of the grid with ``all_blocks``), in row-major order."""
    span = grid.tile_size * BLOCK
    ncols, nrows = math.ceil(grid.cols / BLOCK), math.ceil(grid.rows / BLOCK)
    ids = np.zeros(0, np.int64)
    items = np.zeros(0, np.int64)
    if len(spill):
        b = spill.bounds_array()
        pad = np.frombuffer(spill.width, np.float32) / grid.meters_per_pixel / 2 + 2
        x0 = (b[:, 0] * 1e-7 - grid.west) * grid.px_per_deg_lon - pad
        x1 = (b[:, 2] * 1e-7 - grid.west) * grid.px_per_deg_lon + pad
        y0 = (grid.north - b[:, 3] * 1e-7) * grid.px_per_deg_lat - pad
        y1 = (grid.north - b[:, 1] * 1e-7) * grid.px_per_deg_lat + pad
        c0 = np.clip(np.floor(x0 / span), 0, ncols - 1).astype(np.int64)
        c1 = np.clip(np.floor(x1 / span), -1, ncols - 1).astype(np.int64)
        r0 = np.clip(np.floor(y0 / span), 0, nrows - 1).astype(np.int64)
        r1 = np.clip(np.floor(y1 / span), -1, nrows - 1).astype(np.int64)
        nc, nr = np.maximum(c1 - c0 + 1, 0), np.maximum(r1 - r0 + 1, 0)
        per = nc * nr  # blocks each item touches
        items = np.repeat(np.arange(len(per)), per)
        k = np.arange(len(items)) - np.repeat(np.cumsum(per) - per, per)  # 0..per-1
        ids = (np.repeat(r0, per) + k // np.repeat(nc, per)) * ncols \
            + np.repeat(c0, per) + k % np.repeat(nc, per)
        order = np.argsort(ids, kind="stable")  # items keep file order within a block
        ids, items = ids[order], items[order]
    bounds = np.flatnonzero(np.diff(ids)) + 1
    groups = dict(zip(ids[np.r_[0, bounds]].tolist() if len(ids) else [],
                      np.split(items, bounds) if len(ids) else [], strict=True))
    wanted = range(nrows * ncols) if all_blocks else sorted(groups)
    return [(i // ncols, i % ncols, groups.get(i, np.zeros(0, np.int64))) for i in wanted]


def build_tiles(ctx: PrepareContext, out: Path) -> None:
    o = ctx.options
    spec = load_layers(o["layers"])
    size, channels = int(o["tile_size"]), len(spec.layers)
    if size < 4 or size > 1024:
        raise DlprepError(f"--tile-size {size}: expected 4..1024 pixels")
    if not 0.0 < float(o["meters_per_pixel"]) <= 10_000:
        raise DlprepError(f"--meters-per-pixel {o['meters_per_pixel']}: expected > 0")
    min_cov = float(o["min_coverage"])
    stats = ReadStats()
    with tempfile.TemporaryDirectory(prefix=".osm-", dir=out.parent) as tmp:
        spill = GeometrySpill(Path(tmp))
        try:
            label_values = _spill_features(ctx, spill, stats, Path(tmp) / "index")
            if not len(spill):
                raise DlprepError(f"dataset {ctx.name}: no OSM features with "
                                  f"{', '.join(sorted(spec.keys()))} in the area "
                                  f"(empty area; check --bbox)")
            grid = _grid(ctx, spill)
            scratch = Path(tmp) / "tiles.bin"
            kept = _render(grid, spill, scratch, size, channels, min_cov)
        finally:
            spill.close()
        if not len(kept):
            raise DlprepError(f"dataset {ctx.name}: no tile has --min-coverage {min_cov} of "
                              f"drawn pixels (empty area)")
        names = [NONE_CLASS] + label_values
        ids = np.frombuffer(kept.labels, np.int32)
        counts = np.bincount(ids, minlength=len(names))
        keep = sorted(names[k] for k in np.flatnonzero(counts >= int(o["min_count"])))
        folded = int((counts > 0).sum()) > len(keep)
        classes = keep + ([OTHER_CLASS] if folded else [])
        index = {c: i for i, c in enumerate(classes)}
        lut = np.array([index.get(v, index.get(OTHER_CLASS, 0)) for v in names], np.int64)
        y = lut[ids]
        _write(ctx, out, scratch, kept, y, classes, grid, spec.to_dict(), stats)


@dataclass
class Rendered:
    """What pass 2 kept: per tile its column, row, label id and per-channel drawn-pixel
    counts (compact arrays: a few bytes per tile)."""

    cols: array = field(default_factory=lambda: array("i"))
    rows: array = field(default_factory=lambda: array("i"))
    labels: array = field(default_factory=lambda: array("i"))
    counts: array = field(default_factory=lambda: array("i"))

    def __len__(self) -> int:
        return len(self.cols)


def _render(grid: Grid, spill: GeometrySpill, scratch: Path, size: int, channels: int,
            min_cov: float) -> Rendered:
    """Pass 2: draw every block and append the kept tiles to ``scratch``."""
    kept = Rendered()
    need = max(1, math.ceil(min_cov * size * size)) if min_cov > 0 else 0
    with open(scratch, "wb") as fh:
        for br, bc, items in _blocks(grid, spill, all_blocks=min_cov <= 0):
            tc0, tr0 = bc * BLOCK, br * BLOCK
            ncol, nrow = min(BLOCK, grid.cols - tc0), min(BLOCK, grid.rows - tr0)
            if not len(items):  # only with --min-coverage 0: empty tiles are kept
                stack = np.zeros((nrow * size, ncol * size, channels), np.uint8)
                lab = None
            else:
                stack, lab = render_block(grid, spill, items, tc0 * size,
                                          tr0 * size, ncol * size, nrow * size, channels)
            counts, union = channel_counts(stack, size)
            keep_r, keep_c = np.nonzero(union >= need)
            if not len(keep_r):
                continue
            tiles = gather_tiles(stack, size, keep_r, keep_c)
            fh.write(tiles.data)
            kept.cols.extend((tc0 + keep_c).astype(np.int32))
            kept.rows.extend((tr0 + keep_r).astype(np.int32))
            kept.labels.extend(dominant_labels(lab, size, (nrow, ncol))[keep_r, keep_c]
                               .astype(np.int32))
            kept.counts.extend(counts[keep_r, keep_c].astype(np.int32).ravel())
    return kept


def _write(ctx: PrepareContext, out: Path, scratch: Path, kept: Rendered, y: np.ndarray,
           classes: list[str], grid: Grid, layers: dict, stats: ReadStats) -> None:
    o = ctx.options
    size, channels = grid.tile_size, len(layers)
    n = len(kept)
    splits = stratified_split(y, {"test": float(o["test_fraction"])}, int(o["seed"]))
    in_train = np.zeros(n, bool)
    in_train[splits["train"]] = True
    counts = np.frombuffer(kept.counts, np.int32).reshape(n, channels).astype(np.uint64)
    writer = ImageTensorWriter(out, n, (size, size, channels))
    try:
        tile_bytes = size * size * channels
        step = max(1, (16 << 20) // tile_bytes)
        buf = np.empty(step * tile_bytes, np.uint8)  # one read buffer, reused
        with open(scratch, "rb", buffering=0) as fh:
            for start in range(0, n, step):
                k = min(step, n - start)
                view = buf[:k * tile_bytes]
                got = fh.readinto(memoryview(view))
                if got != k * tile_bytes:
                    raise OSError(f"{scratch}: short read ({got} of {k * tile_bytes} bytes)")
                # pixels are 0 or 255: the train rows' channel sums follow from the counts, so
                # the writer need not read the tiles back for mean/std (every batch is tagged
                # "train" with the sums of its train rows only)
                c = counts[start:start + k][in_train[start:start + k]].sum(axis=0)
                sums = (c * 255, c * 255 * 255, int(in_train[start:start + k].sum()) * size * size)
                writer.write(view.reshape(k, size, size, channels), y[start:start + k],
                             split="train", sums=sums)
        os.unlink(scratch)
        cols = np.frombuffer(kept.cols, np.int32).astype(np.int64)
        rws = np.frombuffer(kept.rows, np.int32).astype(np.int64)
        lon = grid.west + (cols + 0.5) * size / grid.px_per_deg_lon
        lat = grid.north - (rws + 0.5) * size / grid.px_per_deg_lat
        meta = {"col": cols, "row": rws, "lon": lon, "lat": lat}
        attrs = osm_attrs(ctx, stats, osm_format="tiles", osm_layers=json.dumps(layers),
                          osm_grid=json.dumps(grid.to_dict()),
                          osm_label_key=o["label_key"] or "landuse")
        writer.finish(splits=splits, classes=classes, meta=meta, extra_attrs=attrs,
                      **ctx.finish_kwargs())
    except BaseException:
        writer.close()
        raise
    log.info("osm tiles: %d tiles of %d px (%d layers), %d classes; %d ways skipped", n, size,
             channels, len(classes), stats.skipped_ways)

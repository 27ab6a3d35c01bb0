"""``--format tiles``: OSM features -> uint8 (N, size, size, layers) map tiles + land-use labels.

Pass 1 streams the features once (tag filter inside libosmium) into a :class:`GeometrySpill`
on disk. Then, at tile resolution (:mod:`dlprep.formats.osm_cover`), the tiles that some edge
or line comes near are marked *dirty*; every other tile is one value per layer, found at its
centre. Pass 2 goes over the grid in blocks of ``BLOCK`` x ``BLOCK`` tiles (row-major): only the
dirty tiles are drawn (OpenCV), packed into the file's layout (:mod:`dlprep.formats.osm_pack`:
one compiled pass), the tiles with at least ``--min-coverage`` of drawn pixels are kept
(row-major within the block) and go straight into the HDF5 file in compressed chunks
(:class:`TileWriter`); whole-tile values cost no drawing.
"""

from __future__ import annotations

import json
import logging
import math
import struct
import tempfile
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DlprepError
from ..formats.osm import ReadStats, release_freed_memory
from ..formats.osm_cover import clean_state, dirty_tiles
from ..formats.osm_draw import CANVAS_MARGIN, cv2_module, next_layer_value, render_block
from ..formats.osm_layers import load_layers
from ..formats.osm_pack import pack_labels, pack_tiles
from ..formats.osm_raster import GeometrySpill, Grid
from .core import PrepareContext
from .osm import _bbox, iter_feature_batches, osm_attrs
from .osm_stage import ProcessStage, Stage, can_fork
from .osm_store import ChunkEncoder, TileWriter
from .splits import stratified_split

log = logging.getLogger("dlprep")

BLOCK = 16  # tiles per block side (drawing) and per strip (rows)
CANVAS_PX = 1024  # the widest canvas drawn at once (a block of 64 px tiles; fewer large tiles)
CHUNK_TILES = 16  # tiles per compressed HDF5 chunk
LABEL_L_MAX = 255  # label ids up to this are drawn into a one-byte label raster (else two)
NONE_CLASS = "none"
OTHER_CLASS = "other"
MAX_TILES = 20_000_000
STAGE_DEPTH = 4  # drawn blocks waiting for the writing stage (memory: a few blocks of pixels)
# Where the writing stage runs: "process" (a forked child, Linux; else a thread), "thread",
# or "inline" (one thread; for measurements and tests)
STAGE = "process"
PROCESS_SLOTS = 8  # blocks in flight to the child process (shared memory; 3 measured slower)
# The writing stage's process draws a block itself while at most this many blocks wait for it
CHILD_DRAWS_PENDING = 0
MAX_SLOT_BYTES = 16 << 20  # larger blocks (packed tiles of 128 px and more) use the thread
# The GIL switch interval while both threads run (Python's default 5 ms): a thread back from
# OpenCV or deflate waits for the GIL until the other one's Python stretch ends or this
# interval passes, so the default let each thread stall the other by milliseconds at a time.
SWITCH_INTERVAL = 0.0002


def _spill_features(ctx: PrepareContext, spill: GeometrySpill, stats: ReadStats,
                    index_dir: Path) -> list[str]:
    """Pass 1: every feature that feeds a layer or the label raster goes into ``spill``;
    returns the label values by id (id 1 = index 0).

    A feature's items (layer, label, width) depend only on whether it is an area and on its
    values of the keys, so they are worked out once per distinct pair; the features come and
    go into the spill a batch at a time."""
    o = ctx.options
    spec = load_layers(o["layers"])
    label_key = o["label_key"] or "landuse"
    keys = sorted(set(spec.keys()) | {label_key})
    at_label = keys.index(label_key)
    label_ids: dict[str, int] = {}
    areas_of, lines_of = spec.area_matcher(), spec.line_matcher()

    def items_of(area: bool, values: tuple[str | None, ...]) -> list[tuple[int, int, float]]:
        tags = {k: v for k, v in zip(keys, values, strict=True) if v is not None}
        if not area:
            return [(li, 0, width) for li, width in lines_of(tags)]
        value, label = values[at_label], 0
        if value is not None:
            label = label_ids.setdefault(value, len(label_ids) + 1)
            if label > 65535:
                raise DlprepError(f"--label-key {label_key}: more than 65535 distinct values")
        out = []
        for li in areas_of(tags):
            out.append((li, label, 0.0))
            label = 0  # the label is drawn with the first layer only
        if label:
            out.append((-1, label, 0.0))
        return out

    known: dict[tuple[bool, tuple[str | None, ...]], list[tuple[int, int, float]]] = {}
    for batch in iter_feature_batches(ctx, keys, areas=True, lines=True, stats=stats,
                                      index_dir=index_dir):
        which: list[int] = []
        items: list[tuple[int, int, float]] = []
        for i, key in enumerate(zip(batch.areas, batch.values, strict=True)):
            got = known.get(key)
            if got is None:
                got = known[key] = items_of(*key)
            for item in got:
                which.append(i)
                items.append(item)
        if items:
            points, ring_lens, n_points, n_rings = batch.geometry(np.asarray(which))
            layer, label, width = zip(*items, strict=True)
            spill.add_items(points, ring_lens, n_points, n_rings, layer, label, width)
    spill.finish()
    release_freed_memory()
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


class BlockIndex:
    """Which items' padded pixel bounds meet which block (``BLOCK`` x ``BLOCK`` tiles):
    per item its block range (four int32), expanded one block row at a time; and the padded
    pixel bounds themselves (``px``: int32 (n, 4) x0, y0, x1, y1, what drawing it can
    touch)."""

    def __init__(self, grid: Grid, spill: GeometrySpill) -> None:
        span = grid.tile_size * BLOCK
        self.ncols = math.ceil(grid.cols / BLOCK)
        nrows = math.ceil(grid.rows / BLOCK)
        b = spill.bounds_array()
        pad = np.frombuffer(spill.width, np.float32) / grid.meters_per_pixel / 2 + 2
        x0 = (b[:, 0] * 1e-7 - grid.west) * grid.px_per_deg_lon - pad
        x1 = (b[:, 2] * 1e-7 - grid.west) * grid.px_per_deg_lon + pad
        y0 = (grid.north - b[:, 3] * 1e-7) * grid.px_per_deg_lat - pad
        y1 = (grid.north - b[:, 1] * 1e-7) * grid.px_per_deg_lat + pad
        self.c0 = np.clip(np.floor(x0 / span), 0, self.ncols - 1).astype(np.int32)
        self.c1 = np.clip(np.floor(x1 / span), -1, self.ncols - 1).astype(np.int32)
        self.r0 = np.clip(np.floor(y0 / span), 0, nrows - 1).astype(np.int32)
        self.r1 = np.clip(np.floor(y1 / span), -1, nrows - 1).astype(np.int32)
        lim = float(1 << 30)
        self.px = np.clip(np.stack([np.floor(x0), np.floor(y0), np.ceil(x1), np.ceil(y1)],
                                   axis=1), -lim, lim).astype(np.int32)

    def row(self, br: int) -> dict[int, np.ndarray]:
        """Block column -> the items (in file order) of the blocks in block row ``br``."""
        sel = np.flatnonzero((self.r0 <= br) & (self.r1 >= br) & (self.c1 >= self.c0))
        c0, nc = self.c0[sel].astype(np.int64), (self.c1[sel] - self.c0[sel] + 1).astype(np.int64)
        items = np.repeat(sel, nc)
        cols = np.repeat(c0, nc) + np.arange(len(items)) - np.repeat(np.cumsum(nc) - nc, nc)
        order = np.argsort(cols, kind="stable")  # items keep file order within a block
        cols, items = cols[order], items[order]
        cut = np.flatnonzero(np.diff(cols)) + 1
        if not len(cols):
            return {}
        return dict(zip(cols[np.r_[0, cut]].tolist(), np.split(items, cut), strict=True))


def build_tiles(ctx: PrepareContext, out: Path, *, exhaustive: bool = False) -> None:
    """Build the tile dataset at ``out``. ``exhaustive`` draws every tile pixel by pixel (no
    whole-tile shortcut): the same bytes, slower; kept for tests."""
    o = ctx.options
    spec = load_layers(o["layers"])
    size, channels = int(o["tile_size"]), len(spec.layers)
    if size < 4 or size > 1024:
        raise DlprepError(f"--tile-size {size}: expected 4..1024 pixels")
    if not 0.0 < float(o["meters_per_pixel"]) <= 10_000:
        raise DlprepError(f"--meters-per-pixel {o['meters_per_pixel']}: expected > 0")
    min_cov = float(o["min_coverage"])
    cv2_module()  # the drawing library, before anything is read
    stats = ReadStats()
    with tempfile.TemporaryDirectory(prefix=".osm-", dir=out.parent) as tmp:
        spill = GeometrySpill(Path(tmp))
        writer: TileWriter | None = None
        try:
            label_values = _spill_features(ctx, spill, stats, Path(tmp) / "index")
            if not len(spill):
                raise DlprepError(f"dataset {ctx.name}: no OSM features with "
                                  f"{', '.join(sorted(spec.keys()))} in the area "
                                  f"(empty area; check --bbox)")
            grid = _grid(ctx, spill)
            writer = TileWriter(out, (size, size, channels), chunk_rows=CHUNK_TILES)
            kept = _render(grid, spill, writer, channels, min_cov, exhaustive)
            spill.close()
            if not len(kept):
                raise DlprepError(f"dataset {ctx.name}: no tile has --min-coverage {min_cov} "
                                  f"of drawn pixels (empty area)")
            _finish(ctx, writer, kept, label_values, grid, spec.to_dict(), stats)
        except BaseException:
            if writer is not None:
                writer.close()
            raise
        finally:
            spill.close()


@dataclass
class Kept:
    """Per kept tile: its column, row, label id and per-channel drawn-pixel counts (compact
    arrays: a few bytes per tile)."""

    cols: array = field(default_factory=lambda: array("i"))
    rows: array = field(default_factory=lambda: array("i"))
    labels: array = field(default_factory=lambda: array("i"))
    counts: array = field(default_factory=lambda: array("i"))

    def __len__(self) -> int:
        return len(self.cols)


Drawn = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _draw_dirty(grid: Grid, spill: GeometrySpill, items: np.ndarray, dirty: np.ndarray,
                tr0: int, tc0: int, channels: int, cache: dict[int, list] | None = None,
                label_dtype: type = np.uint8, scratch: dict | None = None,
                bounds: np.ndarray | None = None, need: int | None = None,
                out: dict | None = None) -> Drawn:
    """Draw the dirty tiles of one block (``dirty``: its bool (rows, cols) mask; top-left tile
    (tr0, tc0)). The canvas is always the whole block (or, for tiles over ``CANVAS_PX /
    BLOCK`` pixels, fixed squares of ``CANVAS_PX // size`` tiles), whichever tiles are
    dirty: OpenCV clips lines and polygon outlines to the canvas in integer arithmetic, so
    a pixel near a clipped edge can depend on where the canvas ends; with fixed canvases a
    tile's pixels do not depend on which of its neighbours are drawn (the same bytes as
    drawing every tile). ``bounds`` (items' padded pixel bounds, :class:`BlockIndex`) let a
    smaller canvas skip the items that miss it. Returns, for the dirty tiles in row-major
    order (:func:`pack_block`): rows, cols (in the block), the tiles as written (k, s, s, C),
    drawn pixels per tile and channel (k, C) and in any channel (k,), label ids (k,); for a
    block drawn as one canvas, in the arrays of ``out`` if given (:func:`pack_block`)."""
    size = grid.tile_size
    r, c = np.nonzero(dirty)
    sub = max(1, CANVAS_PX // size)
    if not len(items):
        empty = _packed_arrays(out, len(r), size, channels)
        for a in empty:
            a[...] = 0
        return (r, c, *empty)
    if sub >= max(dirty.shape):  # one canvas: the whole block
        value = next_layer_value(scratch, channels, dirty.shape[1] * size,
                                 dirty.shape[0] * size)
        planes, lab = _draw_canvas(grid, spill, items, dirty, tr0, tc0, channels, cache,
                                   label_dtype, scratch, bounds, value)
        return (r, c, *pack_block(planes, lab, value, r, c, size, out, need))
    tiles = np.zeros((len(r), size, size, channels), np.uint8)
    per, union = np.zeros((len(r), channels), np.int64), np.zeros(len(r), np.int64)
    labels = np.zeros(len(r), np.int64)
    at = np.full(dirty.shape, -1, np.int64)
    at[r, c] = np.arange(len(r))  # each dirty tile's place in row-major order
    for sr in range(0, dirty.shape[0], sub):
        for sc in range(0, dirty.shape[1], sub):
            part = dirty[sr:sr + sub, sc:sc + sub]
            if not part.any():
                continue
            x0, y0 = (tc0 + sc) * size, (tr0 + sr) * size
            w, h = part.shape[1] * size, part.shape[0] * size
            these = items
            if bounds is not None:
                b = bounds[items]
                these = items[(b[:, 0] < x0 + w + 2) & (b[:, 2] >= x0 - 2)
                              & (b[:, 1] < y0 + h + 2) & (b[:, 3] >= y0 - 2)]
                if not len(these):
                    continue
            value = next_layer_value(scratch, channels, w, h)
            planes, lab = _draw_canvas(grid, spill, these, part, tr0 + sr, tc0 + sc,
                                       channels, cache, label_dtype, scratch, bounds, value)
            pr, pc = np.nonzero(part)
            where = at[pr + sr, pc + sc]
            got = pack_block(planes, lab, value, pr, pc, size, need=need)
            tiles[where], per[where], union[where], labels[where] = got
    return r, c, tiles, per, union, labels


def _draw_canvas(grid: Grid, spill: GeometrySpill, items: np.ndarray, part: np.ndarray,
                 tr0: int, tc0: int, channels: int, cache: dict[int, list] | None,
                 label_dtype: type, scratch: dict | None, bounds: np.ndarray | None,
                 value: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Draw ``items`` into the canvas of the tiles ``part`` (bool (rows, cols), top-left tile
    (tr0, tc0)) with ``value``: the whole canvases, margin included (layers (C, H, W), the
    label raster or None), from ``scratch`` (:func:`render_block`)."""
    size = grid.tile_size
    return render_block(grid, spill, items, tc0 * size, tr0 * size, part.shape[1] * size,
                        part.shape[0] * size, channels, cache, label_dtype, scratch,
                        _tile_rows(part, size), bounds, value, full=True)


def pack_block(planes: np.ndarray, label: np.ndarray | None, value: int, rows: np.ndarray,
               cols: np.ndarray, size: int, out: dict | None = None, need: int | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The tiles (rows, cols) of a drawn canvas (:func:`_draw_canvas`) as they are written:
    uint8 (k, s, s, C), drawn pixels per channel int64 (k, C), in any channel (k,) and label
    ids (k,) (:mod:`dlprep.formats.osm_pack`); in arrays kept in ``out`` (reused by the
    next call) if given."""
    tiles, per, union, labels = _packed_arrays(out, len(rows), size, planes.shape[0])
    pack_tiles(planes, CANVAS_MARGIN, value, rows, cols, size, tiles, per, union, need)
    if label is None:
        labels[...] = 0
    else:
        pack_labels(label, CANVAS_MARGIN, rows, cols, size, labels)
    return tiles, per, union, labels


def _packed_arrays(out: dict | None, k: int, size: int, channels: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """k tiles' packed arrays (tiles, per, union, labels): those kept in ``out`` (made or
    grown there when too small), or new ones."""
    if out is None:
        out = {}
    if out.get("k", -1) < k or out.get("shape") != (size, channels):
        out.update(k=k, shape=(size, channels),
                   tiles=np.empty((k, size, size, channels), np.uint8),
                   per=np.empty((k, channels), np.int64), union=np.empty(k, np.int64),
                   labels=np.empty(k, np.int64))
    return tuple(out[key][:k] for key in ("tiles", "per", "union", "labels"))  # type: ignore


def _tile_rows(dirty: np.ndarray, size: int) -> list[tuple[int, int]]:
    """The pixel rows (ranges y0, y1) of the tile rows of ``dirty`` (bool (rows, cols)) that
    hold a dirty tile: what is read back from the canvas."""
    has = np.zeros(len(dirty) + 2, bool)
    has[1:-1] = dirty.any(axis=1)
    edges = np.flatnonzero(has[1:] != has[:-1]) * size
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def _blocks(grid: Grid) -> Iterator[tuple[int, int]]:
    """The top-left tiles (row, col) of the blocks, row-major: the order tiles are kept in."""
    for tr0 in range(0, grid.rows, BLOCK):
        for tc0 in range(0, grid.cols, BLOCK):
            yield tr0, tc0


def _render(grid: Grid, spill: GeometrySpill, writer: TileWriter, channels: int,
            min_cov: float, exhaustive: bool) -> Kept:
    """Pass 2: block by block (row-major), draw the dirty tiles and write every kept tile
    (row-major within the block); memory stays within a few blocks of pixels. Two stages:
    this process draws; the writing stage finds the clean tiles' values, then keeps and
    deflates each block's tiles in the same order (:class:`_Keeper`). On Linux the writing
    stage is a forked child process (:data:`STAGE`): blocks of one canvas are drawn into
    its shared memory (:func:`_draw_into_slot`) and packed there (:func:`pack_block`); the
    two processes balance the work: this one packs a block itself when no slot is free
    (:func:`_hand_canvas`), the child draws one itself when it has caught up
    (:func:`_child_draws`). Larger tiles are drawn and packed here (:func:`_draw_dirty`)
    and handed over packed. Elsewhere the writing stage is a thread (at most
    ``STAGE_DEPTH`` packed blocks behind) or inline."""
    size = grid.tile_size
    need = max(1, math.ceil(min_cov * size * size)) if min_cov > 0 else 0
    kept = Kept()
    labels_used = np.frombuffer(spill.label, np.uint16)
    label_dtype = np.uint8 if not len(labels_used) or \
        int(labels_used.max()) <= LABEL_L_MAX else np.uint16
    # the writing stage's process takes whole block canvases (drawn in shared memory) when
    # a block is one canvas (tiles up to CANVAS_PX / BLOCK pixels); else packed tiles
    canvases = CANVAS_PX // size >= BLOCK
    mode, slot = STAGE, _slot_bytes(grid, channels, canvases)
    if mode == "process" and (not can_fork() or slot > MAX_SLOT_BYTES):
        mode = "thread"
    index = BlockIndex(grid, spill)
    spill.project(grid)  # before the fork: both processes draw from the projected points
    release_freed_memory()
    stage: Stage | ProcessStage | None = None
    if mode == "process":  # forked first: the child finds the clean tiles' values while
        try:  # this process finds the dirty ones
            stage = _fork_keeper(grid, spill, writer, kept, need, channels, slot,
                                 label_dtype, index)
        except OSError as exc:  # no fork here (memory, process limits): the thread instead
            log.debug("osm tiles: no writing stage process (%s); a thread instead", exc)
            mode = "thread"
    try:
        dirty = np.ones((grid.rows, grid.cols), bool) if exhaustive else \
            dirty_tiles(grid, spill)
        slots: dict[int, dict] = {}  # per shared-memory slot: its canvases' value cycle
        if isinstance(stage, ProcessStage):
            _send_dirty(stage, slots, dirty, slot)
        else:
            keeper = _Keeper(grid, spill, writer, dirty, need, channels, kept)
            stage = Stage(keeper.feed, start=keeper.start, end=keeper.end, depth=STAGE_DEPTH,
                          thread=mode == "thread", name="dlprep-osm-tiles",
                          switch_interval=SWITCH_INTERVAL)
    except BaseException:
        if stage is not None:
            stage.abort()
        raise
    try:
        blocks = _Blocks(grid, spill, index, channels, label_dtype)
        packed: dict = {}  # a block's packed tiles when this process packs them, reused
        for tr0, tc0 in _blocks(grid):
            sd = dirty[tr0:tr0 + BLOCK, tc0:tc0 + BLOCK]
            if not sd.any():
                continue
            if isinstance(stage, ProcessStage) and canvases and _child_draws(stage):
                meta, = stage.reserve([((_META,), np.int64)])  # the slot's canvases stay
                meta[:] = [0, 0, 0, 0, 0, tr0, tc0, _DRAW]
                stage.submit([meta])
                continue
            items, cache = blocks.items(tr0, tc0)
            if isinstance(stage, ProcessStage) and canvases and _hand_canvas(stage):
                _draw_into_slot(stage, slots, grid, spill, items, sd, tr0, tc0, channels,
                                cache, label_dtype, index.px)
            elif isinstance(stage, ProcessStage):  # packed here, then copied into a slot
                drawn = blocks.draw(items, sd, tr0, tc0, need, packed)
                slots.pop(stage.put([np.zeros(_META, np.int64), *drawn]), None)  # its
                # canvases are overwritten: the slot's value cycle starts again (zeroed)
            else:
                stage.put(blocks.draw(items, sd, tr0, tc0, need))
        if isinstance(stage, ProcessStage):
            crc, n = struct.unpack("<QQ", stage.close())
            if n != writer.n:
                raise DlprepError(f"osm tiles: {writer.n} tiles written of {n}")
            writer.crc = crc
        else:
            stage.close()  # waits for the writing stage; raises what it raised
    except BaseException:
        stage.abort()
        raise
    return kept


def _send_dirty(stage: ProcessStage, slots: dict[int, dict], dirty: np.ndarray,
                slot_bytes: int) -> None:
    """Hand the dirty-tile grid to the writing stage's process, in pieces of whole rows
    that fit a slot (its canvases are overwritten: the slot's value cycle starts again)."""
    room = slot_bytes - 8 * _META - 128 if DIRTY_PIECE_BYTES is None else DIRTY_PIECE_BYTES
    step = max(1, room // max(1, dirty.shape[1]))
    for r0 in range(0, len(dirty), step):
        r1 = min(len(dirty), r0 + step)
        meta = np.array([0, 0, 0, 0, 0, r0, r1, _DIRTY], np.int64)
        slots.pop(stage.put([meta, dirty[r0:r1].view(np.uint8)]), None)


class _Blocks:
    """What drawing a block needs, kept from block to block in one process: the items of
    the current block row (:class:`BlockIndex`), their pixel rings while later blocks of
    the row need them, and the canvases (``scratch``)."""

    def __init__(self, grid: Grid, spill: GeometrySpill, index: BlockIndex, channels: int,
                 label_dtype: type) -> None:
        self.grid, self.spill, self.index = grid, spill, index
        self.channels, self.label_dtype = channels, label_dtype
        self.scratch: dict = {}
        self.cache: dict[int, list] = {}
        self.row_items: dict[int, np.ndarray] = {}
        self.block_row = -1
        self.none = np.zeros(0, np.int64)

    def items(self, tr0: int, tc0: int) -> tuple[np.ndarray, dict[int, list]]:
        """The items of block (tr0, tc0) (blocks come in row-major order) and the cache."""
        br, bc = tr0 // BLOCK, tc0 // BLOCK
        if br != self.block_row:
            self.row_items, self.cache, self.block_row = self.index.row(br), {}, br
        c1 = self.index.c1
        for i in [i for i in self.cache if c1[i] < bc]:
            del self.cache[i]
        return self.row_items.get(bc, self.none), self.cache

    def draw(self, items: np.ndarray, dirty: np.ndarray, tr0: int, tc0: int,
             need: int | None, out: dict | None = None) -> Drawn:
        """:func:`_draw_dirty` of the block."""
        return _draw_dirty(self.grid, self.spill, items, dirty, tr0, tc0, self.channels,
                           self.cache, self.label_dtype, self.scratch, self.index.px, need,
                           out)


def _child_draws(stage: ProcessStage) -> bool:
    """Whether the writing stage's process draws the next block itself: when it has caught
    up (at most ``CHILD_DRAWS_PENDING`` blocks waiting for it; 1 measured slower than 0), it
    has time to spare, and this process, which draws the other blocks, bounds the run (the
    same bytes either way)."""
    return stage.free_slots() >= stage.slots - CHILD_DRAWS_PENDING


def _hand_canvas(stage: ProcessStage) -> bool:
    """Whether the next block goes to the child as canvases (it packs the tiles) rather
    than packed here: while a slot is free. When the child is behind, this process would
    wait for a slot anyway, so it packs the block meanwhile (a balance between the two
    processes; the same bytes either way)."""
    return stage.free_slots() > 0


_META = 8  # int64s heading a slot: value, height, width, label drawn, tiles, r0, r1, kind
# kinds: packed tiles, a block's canvases, dirty rows, a block the child draws itself
_PACKED, _CANVAS, _DIRTY, _DRAW = 0, 1, 2, 3
DIRTY_PIECE_BYTES: int | None = None  # the dirty grid's pieces (None: what fits a slot)


def _canvas_specs(grid: Grid, channels: int) -> list[tuple[tuple[int, ...], type]]:
    """A slot's arrays when it holds a block's canvases: meta, the layers' region (the
    largest block's canvas), the label raster's region (two bytes a pixel), rows, cols."""
    px = BLOCK * grid.tile_size + 2 * CANVAS_MARGIN
    return [((_META,), np.int64), ((channels * px * px,), np.uint8), ((2 * px * px,), np.uint8),
            ((BLOCK * BLOCK,), np.int64), ((BLOCK * BLOCK,), np.int64)]


def _draw_into_slot(stage: ProcessStage, slots: dict[int, dict], grid: Grid,
                    spill: GeometrySpill, items: np.ndarray, dirty: np.ndarray, tr0: int,
                    tc0: int, channels: int, cache: dict[int, list], label_dtype: type,
                    bounds: np.ndarray) -> None:
    """Draw one block into the canvases of a free shared-memory slot and hand it to the
    writing stage's process, which packs its dirty tiles (:func:`pack_block`). A slot's
    canvases are kept: each slot has its own value cycle (:func:`next_layer_value`), its
    whole layer region zeroed when the cycle starts again (blocks at the grid's edges use
    a smaller part of it, so what an earlier block left anywhere in it is never equal to
    the value drawn with)."""
    meta, region, lregion, rr, cc = stage.reserve(_canvas_specs(grid, channels))
    value = next_layer_value(slots.setdefault(stage.reserved_slot, {}), channels, 0, 0)
    if value == 1:
        region[...] = 0
    size, m = grid.tile_size, CANVAS_MARGIN
    h, w = dirty.shape[0] * size + 2 * m, dirty.shape[1] * size + 2 * m
    dt = np.dtype(label_dtype)
    planes = region[:channels * h * w].reshape(channels, h, w)
    label = lregion[:h * w * dt.itemsize].view(dt).reshape(h, w)
    scratch = {((channels, h, w), np.dtype(np.uint8).str): planes, ((h, w), dt.str): label}
    _, lab = _draw_canvas(grid, spill, items, dirty, tr0, tc0, channels, cache, label_dtype,
                          scratch, bounds, value)
    r, c = np.nonzero(dirty)
    rr[:len(r)], cc[:len(c)] = r, c
    meta[:] = [value, h, w, lab is not None, len(r), 0, 0, _CANVAS]
    stage.submit([meta, region, lregion, rr, cc])


def _slot_bytes(grid: Grid, channels: int, canvases: bool) -> int:
    """The most bytes one drawn block hands over: its canvases (:func:`_canvas_specs`), or
    its packed tiles (meta, rows, cols, tiles, counts per channel, union, label ids)."""
    if canvases:
        specs = _canvas_specs(grid, channels)
        return sum(int(np.prod(shape)) * np.dtype(dt).itemsize for shape, dt in specs) + \
            64 * len(specs)
    k, px = BLOCK * BLOCK, grid.tile_size ** 2
    return 8 * _META + 8 * k * (4 + channels) + channels * k * px + 64 * 7


class _SendingEncoder(ChunkEncoder):
    """Deflated chunks collected for the parent process, which writes them
    (:meth:`take`: rows and length, 4 bytes each, then the bytes, per chunk)."""

    def __init__(self, shape: tuple[int, int, int], chunk_rows: int) -> None:
        super().__init__(shape, chunk_rows)
        self._parts: list[bytes] = []

    def _write_chunk(self, data: bytes, rows: int) -> None:
        self._parts += [struct.pack("<II", rows, len(data)), data]
        self.n += rows

    def take(self) -> bytes:
        parts, self._parts = self._parts, []
        return b"".join(parts)


def _fork_keeper(grid: Grid, spill: GeometrySpill, writer: TileWriter, kept: Kept,
                 need: int, channels: int, slot: int, label_dtype: type, index: BlockIndex
                 ) -> ProcessStage:
    """The writing stage in a child process: it finds the clean tiles' values, takes the
    dirty-tile grid (:func:`_send_dirty`), then packs the drawn canvases' dirty tiles
    (:func:`pack_block`), keeps and deflates them (a :class:`_Keeper` over a
    :class:`_SendingEncoder`) and sends back, per drawn block, the kept tiles' records and
    the chunks completed; this process writes the chunks."""

    def child(get: Callable[[], list[np.ndarray] | None], send: Callable[[bytes], None]
              ) -> bytes:
        encoder = _SendingEncoder(writer.shape, writer.k)
        dirty = np.zeros((grid.rows, grid.cols), bool)  # filled in before the first block
        keeper = _Keeper(grid, spill, encoder, dirty, need, channels)  # type: ignore[arg-type]
        keeper.start()
        shipped = 0
        size, dt = grid.tile_size, np.dtype(label_dtype)
        bufs: dict = {}  # the packed tiles' arrays, reused
        blocks = _Blocks(grid, spill, index, channels, label_dtype)  # those drawn here

        def ship() -> None:
            nonlocal shipped
            got, n = keeper.kept, len(keeper.kept)
            parts = [memoryview(a)[shipped * w:n * w].tobytes() for a, w in
                     ((got.cols, 1), (got.rows, 1), (got.labels, 1), (got.counts, channels))]
            send(b"B" + struct.pack("<I", n - shipped) + b"".join(parts) + encoder.take())
            shipped = n

        while (item := get()) is not None:
            value, h, w, has_label, k, r0, r1, kind = item[0].tolist()
            if kind == _DIRTY:
                dirty[r0:r1] = item[1].view(bool)
                continue
            if kind == _DRAW:  # a block to draw here (:func:`_child_draws`)
                tr0, tc0 = r0, r1
                items, _ = blocks.items(tr0, tc0)
                keeper.feed(blocks.draw(items, dirty[tr0:tr0 + BLOCK, tc0:tc0 + BLOCK],
                                        tr0, tc0, need, bufs))
            elif kind == _CANVAS:  # a block's canvases (:func:`_draw_into_slot`)
                planes = item[1][:channels * h * w].reshape(channels, h, w)
                label = item[2][:h * w * dt.itemsize].view(dt).reshape(h, w) \
                    if has_label else None
                r, c = item[3][:k], item[4][:k]
                keeper.feed((r, c, *pack_block(planes, label, value, r, c, size, bufs, need)))
            else:  # packed tiles (:func:`_draw_dirty`)
                keeper.feed(tuple(item[1:]))
            ship()
        keeper.end()
        encoder.flush()
        ship()
        return struct.pack("<QQ", encoder.crc, encoder.n)

    def on_message(msg: bytes) -> None:
        body = memoryview(msg)[1:]
        m = int.from_bytes(body[:4], "little") * 4
        at = 4
        for a, w in ((kept.cols, 1), (kept.rows, 1), (kept.labels, 1), (kept.counts, channels)):
            a.frombytes(body[at:at + m * w])
            at += m * w
        while at < len(body):
            rows, size = struct.unpack_from("<II", body, at)
            writer.store_chunk(body[at + 8:at + 8 + size].tobytes(), rows)
            at += 8 + size

    return ProcessStage(child, on_message, slot, slots=PROCESS_SLOTS, name="writing stage")


class _Keeper:
    """The writing stage of :func:`_render`: :meth:`start` finds the clean tiles' values;
    each :meth:`feed` (the next drawn block) keeps the blocks up to that one, :meth:`end`
    the rest: their kept tiles into ``writer`` and :class:`Kept`."""

    def __init__(self, grid: Grid, spill: GeometrySpill, writer: TileWriter,
                 dirty: np.ndarray, need: int, channels: int, kept: Kept | None = None
                 ) -> None:
        self.grid, self.spill, self.writer, self.dirty = grid, spill, writer, dirty
        self.need, self.full = need, grid.tile_size ** 2
        self.shifts = np.arange(channels, dtype=np.uint32)
        self.kept = Kept() if kept is None else kept
        self.blocks = _blocks(grid)

    def start(self) -> None:
        self.clean = clean_state(self.grid, self.spill)

    def feed(self, drawn: tuple) -> None:
        for tr0, tc0 in self.blocks:
            if self.dirty[tr0:tr0 + BLOCK, tc0:tc0 + BLOCK].any():
                self._keep(tr0, tc0, drawn)
                return
            self._keep(tr0, tc0, None)
        raise RuntimeError("osm tiles: more drawn blocks than blocks with dirty tiles")

    def end(self) -> None:
        for tr0, tc0 in self.blocks:
            if self.dirty[tr0:tr0 + BLOCK, tc0:tc0 + BLOCK].any():
                raise RuntimeError("osm tiles: a block with dirty tiles was not drawn")
            self._keep(tr0, tc0, None)

    def _keep(self, tr0: int, tc0: int, drawn: tuple | None) -> None:
        block = (slice(tr0, tr0 + BLOCK), slice(tc0, tc0 + BLOCK))
        bits = self.clean.layers[block]
        need, full = self.need, self.full
        if drawn is None:  # clean tiles only: each layer is 0 or ``full`` pixels
            if need > full or (need and not bits.any()):
                return  # nothing drawn here
            kr, kc = np.nonzero(bits) if need else np.indices(bits.shape).reshape(2, -1)
            code = bits[kr, kc].astype(np.int64)
            at = np.full(len(kr), -1, np.int64)
            tiles = None
            counts = ((code[:, None] >> self.shifts) & 1) * full
            labels = self.clean.label[block][kr, kc]
        else:
            rr, cc, tiles, per, uni, lab = drawn
            union = np.where(bits != 0, full, 0)
            union[rr, cc] = uni
            where = np.full(bits.shape, -1, np.int64)
            where[rr, cc] = np.arange(len(rr))
            kr, kc = np.nonzero(union >= need)
            if not len(kr):
                return
            at = where[kr, kc]
            drawn_k = at >= 0
            code = np.where(drawn_k, -1, bits[kr, kc].astype(np.int64))
            counts = ((np.maximum(code, 0)[:, None] >> self.shifts) & 1) * full
            counts[drawn_k] = per[at[drawn_k]]
            labels = self.clean.label[block][kr, kc]
            labels[drawn_k] = lab[at[drawn_k]]
        if not len(kr):
            return
        self.writer.add_block(code, at, tiles)
        kept = self.kept
        kept.cols.frombytes((kc + tc0).astype(np.int32).tobytes())
        kept.rows.frombytes((kr + tr0).astype(np.int32).tobytes())
        kept.labels.frombytes(labels.astype(np.int32).tobytes())
        kept.counts.frombytes(counts.astype(np.int32).tobytes())


def _finish(ctx: PrepareContext, writer: TileWriter, kept: Kept, label_values: list[str],
            grid: Grid, layers: dict, stats: ReadStats) -> None:
    o = ctx.options
    size, channels = grid.tile_size, len(layers)
    n = len(kept)
    names = [NONE_CLASS] + label_values
    ids = np.frombuffer(kept.labels, np.int32)
    counts_per_class = np.bincount(ids, minlength=len(names))
    keep = sorted(names[k] for k in np.flatnonzero(counts_per_class >= int(o["min_count"])))
    folded = int((counts_per_class > 0).sum()) > len(keep)
    classes = keep + ([OTHER_CLASS] if folded else [])
    index = {c: i for i, c in enumerate(classes)}
    lut = np.array([index.get(v, index.get(OTHER_CLASS, 0)) for v in names], np.int64)
    y = lut[ids]
    splits = stratified_split(y, {"test": float(o["test_fraction"])}, int(o["seed"]))
    counts = np.frombuffer(kept.counts, np.int32).reshape(n, channels)
    cols = np.frombuffer(kept.cols, np.int32).astype(np.int64)
    rws = np.frombuffer(kept.rows, np.int32).astype(np.int64)
    lon = grid.west + (cols + 0.5) * size / grid.px_per_deg_lon
    lat = grid.north - (rws + 0.5) * size / grid.px_per_deg_lat
    meta = {"col": cols, "row": rws, "lon": lon, "lat": lat}
    attrs = osm_attrs(ctx, stats, osm_format="tiles", osm_layers=json.dumps(layers),
                      osm_grid=json.dumps(grid.to_dict()),
                      osm_label_key=o["label_key"] or "landuse")
    writer.finish(labels=y, channel_counts=counts, train=splits["train"], splits=splits,
                  classes=classes, meta=meta, extra_attrs=attrs, **ctx.finish_kwargs())
    log.info("osm tiles: %d tiles of %d px (%d layers), %d classes; %d ways skipped", n, size,
             channels, len(classes), stats.skipped_ways)

"""Which tiles need drawing, and what the others hold, computed at tile resolution.

A tile is *dirty* when some line, or some ring edge of an area, passes within a few pixels of
it (its drawn width and the rounding to whole pixels included): only dirty tiles are drawn
pixel by pixel. Every other tile is *clean*: no edge of any feature comes near it, so each
feature covers all of it or none of it, and every layer (and the label raster) is one value
over the whole tile. That value is found at the tile's centre with an even-odd crossing count
per ring, combined as the drawing combines them (an area's outer rings each filled, or with
holes even-odd over all its rings; a later label over an earlier one). The result is the same
bytes as drawing every tile (tested), at the cost of one pass over the geometry in numpy
instead of drawing and counting every pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .osm_pack import compiled
from .osm_raster import GeometrySpill, Grid

EDGE_PAD_PX = 2.0  # vertices are rounded to whole pixels; polygon outlines are drawn too
PIECE_PX = 32.0  # long segments are cut into pieces of at most this length before marking


def line_width_px(width_m: np.ndarray, mpp: float) -> np.ndarray:
    """Drawn line width in pixels of widths in metres: ``round(w / mpp)``, at least 1, and
    an even width one more (:func:`dlprep.formats.osm_draw.cv_thickness`)."""
    px = np.maximum(1, np.rint(np.asarray(width_m, np.float64) / mpp))
    return np.where(px % 2 == 0, px + 1, px)


def _expand(lo_c: np.ndarray, hi_c: np.ndarray, lo_r: np.ndarray, hi_r: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
    """Every (row, col) of the inclusive ranges [lo_r, hi_r] x [lo_c, hi_c] (empty ranges
    skipped)."""
    nc = np.maximum(hi_c - lo_c + 1, 0)
    nr = np.maximum(hi_r - lo_r + 1, 0)
    per = nc * nr
    total = int(per.sum())
    if total == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    k = np.arange(total) - np.repeat(np.cumsum(per) - per, per)
    ncr = np.repeat(nc, per)
    return np.repeat(lo_r, per) + k // ncr, np.repeat(lo_c, per) + k % ncr


def dirty_tiles(grid: Grid, spill: GeometrySpill, max_points: int = 1 << 15) -> np.ndarray:
    """bool (rows, cols): tiles that some segment or vertex of some item comes near (within
    half its line width plus :data:`EDGE_PAD_PX`)."""
    rows, cols, size = grid.rows, grid.cols, float(grid.tile_size)
    dirty = np.zeros((rows, cols), bool)
    widths = np.frombuffer(spill.width, np.float32)
    pads = np.where(widths > 0, line_width_px(widths, grid.meters_per_pixel) / 2, 0.0) \
        + EDGE_PAD_PX
    ring_lens = np.abs(np.frombuffer(spill.ring_lens, np.int32)).astype(np.int64)
    ring_start = np.frombuffer(spill.ring_start, np.int64)
    lib = compiled()
    for i0, i1, pts in spill.batches(max_points):
        px = grid.to_pixels(pts)
        lens = ring_lens[ring_start[i0]:ring_start[i1]]
        item_rings = np.diff(ring_start[i0:i1 + 1])
        pad = np.repeat(np.repeat(pads[i0:i1], item_rings), lens)
        # a segment joins two points of the same ring: not the last point of each ring
        last = np.cumsum(lens) - 1
        seg = np.ones(len(px), bool)
        seg[last] = False
        if lib is not None:  # the same boxes, marked in one compiled pass
            lib.mark(np.ascontiguousarray(px, np.float64), np.ascontiguousarray(pad, np.float64),
                     seg.view(np.uint8), len(px), rows, cols, size, PIECE_PX,
                     dirty.view(np.uint8))
            continue
        a = np.flatnonzero(seg)
        p0, p1, pp = px[a], px[a + 1], pad[a]
        n = np.maximum(1, np.ceil(np.hypot(*(p1 - p0).T) / PIECE_PX)).astype(np.int64)
        k = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
        nn = np.repeat(n, n)
        d = np.repeat(p1 - p0, n, axis=0)
        q0 = np.repeat(p0, n, axis=0) + d * (k / nn)[:, None]
        q1 = np.repeat(p0, n, axis=0) + d * ((k + 1) / nn)[:, None]
        qp = np.repeat(pp, n)
        # the pieces, and every vertex on its own (single-point rings, joints)
        xs0 = np.concatenate([np.minimum(q0[:, 0], q1[:, 0]), px[:, 0]]) - \
            np.concatenate([qp, pad])
        xs1 = np.concatenate([np.maximum(q0[:, 0], q1[:, 0]), px[:, 0]]) + \
            np.concatenate([qp, pad])
        ys0 = np.concatenate([np.minimum(q0[:, 1], q1[:, 1]), px[:, 1]]) - \
            np.concatenate([qp, pad])
        ys1 = np.concatenate([np.maximum(q0[:, 1], q1[:, 1]), px[:, 1]]) + \
            np.concatenate([qp, pad])
        c0 = np.clip(np.floor(xs0 / size), 0, cols).astype(np.int64)
        c1 = np.clip(np.floor(xs1 / size), -1, cols - 1).astype(np.int64)
        r0 = np.clip(np.floor(ys0 / size), 0, rows).astype(np.int64)
        r1 = np.clip(np.floor(ys1 / size), -1, rows - 1).astype(np.int64)
        rr, cc = _expand(c0, c1, r0, r1)
        dirty[rr, cc] = True
    return dirty


@dataclass
class CleanState:
    """What every clean tile holds: ``layers`` uint32 (rows, cols), bit k set when layer k
    is drawn over the whole tile; ``label`` int32 (rows, cols), the label id (0: none)."""

    layers: np.ndarray
    label: np.ndarray


def _ring_parity(px: np.ndarray, r_lo: int, r_hi: int, c_lo: int, c_hi: int, size: float
                 ) -> np.ndarray:
    """bool (r_hi - r_lo, c_hi - c_lo): tile centres inside the closed ring ``px`` (float
    (n, 2) pixels), by the even-odd rule (one compiled pass where the package's C kernels
    are built: the same arithmetic)."""
    lib = compiled()
    if lib is not None and px.dtype == np.float64 and px.flags.c_contiguous:
        w = c_hi - c_lo
        out = np.empty((r_hi - r_lo, w + 1), np.uint8)
        lib.parity(px, len(px), r_lo, r_hi, c_lo, c_hi, float(size), out)
        return out[:, :w].view(bool)
    return _ring_parity_numpy(px, r_lo, r_hi, c_lo, c_hi, size)


def _ring_parity_numpy(px: np.ndarray, r_lo: int, r_hi: int, c_lo: int, c_hi: int,
                       size: float) -> np.ndarray:
    """:func:`_ring_parity` in NumPy."""
    h, w = r_hi - r_lo, c_hi - c_lo
    x0, y0 = px[:-1, 0], px[:-1, 1]
    x1, y1 = px[1:, 0], px[1:, 1]
    if len(px) and (px[0] != px[-1]).any():  # close the ring as the drawing does
        x0, y0 = np.r_[x0, px[-1, 0]], np.r_[y0, px[-1, 1]]
        x1, y1 = np.r_[x1, px[0, 0]], np.r_[y1, px[0, 1]]
    lo, hi = np.minimum(y0, y1), np.maximum(y0, y1)
    # centre rows r with lo <= y_r < hi, y_r = (r + 0.5) * size
    first = np.maximum(np.ceil(lo / size - 0.5), r_lo).astype(np.int64)
    stop = np.minimum(np.ceil(hi / size - 0.5), r_hi).astype(np.int64)
    n = np.maximum(stop - first, 0)
    toggles = np.zeros((h, w + 1), np.int32)
    if n.sum():
        e = np.repeat(np.arange(len(n)), n)
        r = np.repeat(first, n) + np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
        yc = (r + 0.5) * size
        xc = x0[e] + (yc - y0[e]) * (x1[e] - x0[e]) / (y1[e] - y0[e])
        # the first centre strictly east of the crossing toggles
        c = np.clip(np.floor(xc / size - 0.5).astype(np.int64) + 1, c_lo, c_hi) - c_lo
        toggles += np.bincount((r - r_lo) * (w + 1) + c, minlength=h * (w + 1)).reshape(
            h, w + 1).astype(np.int32)
    return (np.cumsum(toggles[:, :w], axis=1) & 1).astype(bool)


def clean_state(grid: Grid, spill: GeometrySpill) -> CleanState:
    """Layers and label of the clean tiles (dirty tiles get some value too; ignore it)."""
    rows, cols, size = grid.rows, grid.cols, float(grid.tile_size)
    layers = np.zeros((rows, cols), np.uint32)
    label = np.zeros((rows, cols), np.int32)
    if not len(spill):
        return CleanState(layers, label)
    b = spill.bounds_array()
    widths = np.frombuffer(spill.width, np.float32)
    x0 = (b[:, 0] * 1e-7 - grid.west) * grid.px_per_deg_lon
    x1 = (b[:, 2] * 1e-7 - grid.west) * grid.px_per_deg_lon
    y0 = (grid.north - b[:, 3] * 1e-7) * grid.px_per_deg_lat
    y1 = (grid.north - b[:, 1] * 1e-7) * grid.px_per_deg_lat
    # only an area that holds some tile centre strictly inside can cover a clean tile
    c_lo = np.clip(np.ceil(x0 / size - 0.5), 0, cols).astype(np.int64)
    c_hi = np.clip(np.floor(x1 / size - 0.5) + 1, 0, cols).astype(np.int64)
    r_lo = np.clip(np.ceil(y0 / size - 0.5), 0, rows).astype(np.int64)
    r_hi = np.clip(np.floor(y1 / size - 0.5) + 1, 0, rows).astype(np.int64)
    labels = np.frombuffer(spill.label, np.uint16)
    layer = np.frombuffer(spill.layer, np.int8)
    big = np.flatnonzero((widths == 0) & (c_hi > c_lo) & (r_hi > r_lo)
                         & ((layer >= 0) | (labels > 0)))
    for i in big.tolist():  # file order: a later label is drawn over an earlier one
        rl, rh, cl, ch = int(r_lo[i]), int(r_hi[i]), int(c_lo[i]), int(c_hi[i])
        rings = spill.rings(i)
        holes = not all(is_outer for _, is_outer in rings)
        cover = np.zeros((rh - rl, ch - cl), bool)
        for pts, _ in rings:  # as drawn: outer rings each filled, or even-odd with holes
            if len(pts) < 3:
                continue
            inside = _ring_parity(grid.to_pixels(pts), rl, rh, cl, ch, size)
            if holes:
                cover ^= inside
            else:
                cover |= inside
        if layer[i] >= 0:
            layers[rl:rh, cl:ch] |= cover.astype(np.uint32) << np.uint32(layer[i])
        if labels[i]:
            label[rl:rh, cl:ch][cover] = labels[i]
    return CleanState(layers, label)

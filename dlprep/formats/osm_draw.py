"""Draw OSM features into one block of map tiles with OpenCV, and per-tile statistics.

OpenCV (``opencv-python-headless``, the ``osm`` extra) was chosen by measurement
(docs/PERFORMANCE.md): one C++ call fills a polygon with its holes (even-odd over the rings)
or draws a polyline with a width (round joints and caps), straight into a NumPy plane, so a
block needs no image objects, no masks and no channel merge of whole blocks. Each layer is its
own uint8 plane (0/255), the label raster another one; only the dirty tiles are gathered
out of the planes and interleaved (channels last) for the file.

Points are rounded to whole pixels first (:func:`pixel_rings`), so a feature is drawn the same
in every block it crosses, whatever the block's offset.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import MissingDependencyError
from .osm_raster import GeometrySpill, Grid

LANES = np.uint64(0x0101010101010101)  # one bit per byte: 0/255 bytes -> 0/1 lanes
# Pixels drawn around a block and dropped: without them OpenCV's polygon fill puts stray
# pixels on the canvas border (spans that lie beyond the canvas are clamped onto its first or
# last column, measured up to 37 px from any outline); with 2 pixels every pixel that differs
# from the same polygon drawn on a larger canvas lies within 1.5 px of its outline (random
# polygons, docs/OSM.md), inside the dirty-tile margin (osm_cover.EDGE_PAD_PX).
CANVAS_MARGIN = 2


def cv2_module() -> Any:
    """``import cv2`` or a one-line error naming the extra that installs it."""
    try:
        import cv2
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(
            "opencv-python-headless is not installed (OSM tiles are drawn with OpenCV): "
            "pip install 'dlprep[osm]' (or pip install opencv-python-headless)") from exc
    return cv2


def pixel_rings(grid: Grid, spill: GeometrySpill, i: int) -> list[tuple[np.ndarray, bool]]:
    """Item ``i``'s rings as int32 (n, 2) whole-pixel grid coordinates, with outer flags
    (the spill projects every point once, :meth:`GeometrySpill.project`)."""
    if spill.px_fd < 0:
        spill.project(grid)
    return spill.rings(i, pixels=True)


def cv_thickness(px: int) -> int:
    """OpenCV's ``thickness`` for a line ``px`` pixels wide. OpenCV draws a thick line
    symmetric about its centre pixels: ``thickness`` t >= 2 covers ``2 * (t // 2) + 1``
    pixels across, so odd widths are exact and an even width is drawn one pixel wider
    (2 -> 3, 4 -> 5); 1 is a one-pixel 8-connected line."""
    return 1 if px <= 1 else max(2, px - 1)


def render_block(grid: Grid, spill: GeometrySpill, items: np.ndarray, x0: int, y0: int,
                 width: int, height: int, channels: int,
                 cache: dict[int, list[tuple[np.ndarray, bool]]] | None = None,
                 label_dtype: Any = np.uint8, scratch: dict[Any, Any] | None = None,
                 reach: tuple[int, int, int, int] | None = None,
                 bounds: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Draw ``items`` of ``spill`` into a block whose top-left pixel is (x0, y0): uint8
    (C, H, W) layer planes (0 or 255) and a (H, W) label raster of ``label_dtype`` (None: no
    label drawn); both are views into canvases :data:`CANVAS_MARGIN` pixels larger on every
    side. Areas are filled (even-odd over an area's rings: holes cut out); lines get
    their width (``round(width / mpp)`` pixels, at least 1; see :func:`cv_thickness`).
    ``cache`` keeps items' :func:`pixel_rings` for the next blocks (the caller empties it);
    points of runs beyond the canvas are cut (:func:`outside_runs`), except for items whose
    ``bounds`` (int (n, 4) padded pixel bounds x0, y0, x1, y1 of every item) lie inside it;
    ``scratch`` keeps the canvases for the next block (not allocated again; only the part
    the last block's items could touch, ``reach``: x0, y0, x1, y1 pixels inclusive, is
    zeroed again): the planes returned are then valid until the next call."""
    cv2 = cv2_module()
    line8 = cv2.LINE_8
    m = CANVAS_MARGIN
    x0, y0, width, height = x0 - m, y0 - m, width + 2 * m, height + 2 * m
    used = (0, 0, width, height) if reach is None else \
        (max(0, reach[0] - x0), max(0, reach[1] - y0), min(width, reach[2] - x0 + 1),
         min(height, reach[3] - y0 + 1))
    planes = _canvas(scratch, (channels, height, width), np.uint8, used)
    label_plane: np.ndarray | None = None
    origin = np.array([x0, y0], np.int32)
    offset = (-x0, -y0)
    mpp = grid.meters_per_pixel
    if bounds is None:
        near = np.zeros(len(items), bool)  # unknown: every item is checked point by point
    else:  # padded bounds within the canvas: no point to cut
        b = bounds[items]
        near = (b[:, 0] >= x0) & (b[:, 1] >= y0) & (b[:, 2] < x0 + width) & \
            (b[:, 3] < y0 + height)
    for i, is_near in zip(items.tolist(), near.tolist(), strict=True):
        layer, label = int(spill.layer[i]), int(spill.label[i])
        line_w = float(spill.width[i])
        rings = cache.get(i) if cache is not None else None
        if rings is None:
            rings = pixel_rings(grid, spill, i)
            if cache is not None:
                cache[i] = rings
        if line_w > 0:  # a line
            thick = cv_thickness(max(1, int(round(line_w / mpp))))
            pts = rings[0][0] - origin
            if not is_near:
                pts = pts[outside_runs(pts, (width, height), thick / 2 + 2)]
            cv2.polylines(planes[layer], [pts], False, 255, thick, line8)
            continue
        if is_near:
            polys = [pts for pts, _ in rings if len(pts) >= 3]
            shift = offset
        else:
            polys = [p[outside_runs(p, (width, height), 2)]
                     for p in (pts - origin for pts, _ in rings if len(pts) >= 3)]
            shift = (0, 0)
        if not polys:
            continue
        if all(is_outer for _, is_outer in rings):
            groups = [[p] for p in polys]  # outer rings only: each filled on its own (union)
        else:
            groups = [polys]  # with holes: one even-odd fill over all its rings
        for group in groups:
            if layer >= 0:
                cv2.fillPoly(planes[layer], group, 255, line8, 0, shift)
            if label:
                if label_plane is None:
                    label_plane = _canvas(scratch, (height, width), label_dtype, used)
                cv2.fillPoly(label_plane, group, label, line8, 0, shift)
    inner = (slice(m, height - m), slice(m, width - m))
    return planes[(slice(None), *inner)], None if label_plane is None else label_plane[inner]


def _canvas(scratch: dict[Any, Any] | None, shape: tuple[int, ...], dtype: Any,
            used: tuple[int, int, int, int]) -> np.ndarray:
    """A zeroed (..., H, W) array: a new one, or the one kept in ``scratch`` with the part the
    previous block marked as used zeroed again; ``used`` (x0, y0, x1, y1, end-exclusive) is
    recorded as what this block may draw on."""
    if scratch is None:
        return np.zeros(shape, dtype)
    key = (shape, np.dtype(dtype).str)
    got = scratch.get(key)
    if got is None:
        got = np.zeros(shape, dtype)
    else:
        x0, y0, x1, y1 = got[1]
        if x1 > x0 and y1 > y0:
            got[0][..., y0:y1, x0:x1] = 0
        got = got[0]
    scratch[key] = (got, used)
    return got


def _tile_view(planes: np.ndarray, size: int) -> np.ndarray:
    """(..., rows, size, cols, size) view of (..., H, W) planes whose rows may be longer
    than W (a view into a larger canvas): no copy."""
    *lead, h, w = planes.shape
    *lead_strides, row, col = planes.strides
    return np.lib.stride_tricks.as_strided(
        planes, (*lead, h // size, size, w // size, size),
        (*lead_strides, row * size, row, col * size, col), writeable=False)


def outside_runs(px: np.ndarray, size: tuple[int, int], margin: float) -> np.ndarray:
    """bool mask of the points of a path or ring (int (n, 2) pixels) worth drawing into a
    canvas of ``size`` (W, H): all but the inner points of runs that lie beyond ``margin``
    on one and the same side (above, below, left, right). Dropping them changes nothing
    inside the canvas: the shortcut between a run's ends stays on that side, so it crosses
    each canvas row as often, modulo 2, as the run did (the even-odd fill inside is the
    same), and an edge or a line there (margin beyond half its width) draws no canvas pixel.
    OpenCV's polygon fill spends its time on the edges, wherever they lie (a 5,000-point
    ring around a 1024 px canvas: 1.3 ms; a 4-point one: 0.05 ms), so a large forest drawn
    into every block it crosses costs only its nearby edges."""
    w, h = size
    x, y = px[:, 0], px[:, 1]
    side = np.zeros(len(px), np.int8)  # 1 above, 2 below, 3 left, 4 right (first that holds)
    side[x > w + margin] = 4
    side[x < -margin] = 3
    side[y > h + margin] = 2
    side[y < -margin] = 1
    keep = side == 0
    change = side[1:] != side[:-1]
    keep[1:] |= change
    keep[:-1] |= change
    keep[0] = keep[-1] = True
    return keep


def gather_planes(planes: np.ndarray, size: int, rows: np.ndarray, cols: np.ndarray
                  ) -> np.ndarray:
    """C-contiguous (C, k, size, size): the tiles at (rows[i], cols[i]) of (C, H, W) planes
    (a view whose rows may be longer than W: no copy before the gather)."""
    c, h, w = planes.shape
    st = planes.strides
    view = np.lib.stride_tricks.as_strided(
        planes, (c, h // size, w // size, size, size), (st[0], st[1] * size, st[2] * size,
                                                         st[1], st[2]), writeable=False)
    out = np.empty((c, len(rows), size, size), planes.dtype)
    for j in range(c):  # plane by plane: one strided copy each, into planar order
        out[j] = view[j][rows, cols]
    return out


def interleave(tiles: np.ndarray) -> np.ndarray:
    """uint8 (k, s, s, C) channels-last tiles of planar (C, k, s, s) ones."""
    c, k, s, _ = tiles.shape
    if c == 1:
        return tiles.reshape(k, s, s, 1)
    if c <= 4:  # OpenCV interleaves up to 4 planes in one SIMD pass
        cv2 = cv2_module()
        return cv2.merge([t.reshape(k * s, s) for t in tiles]).reshape(k, s, s, c)
    return np.ascontiguousarray(tiles.transpose(1, 2, 3, 0))


def _count_255(tiles: np.ndarray) -> np.ndarray:
    """Per tile, the 255 bytes of uint8 (k, ...) 0/255 tiles: int64 (k,). Counted eight at
    a time as the set bits of uint64 words (NumPy >= 2), or as one-bit byte lanes of them."""
    k = len(tiles)
    flat = tiles.reshape(k, -1)
    n = flat.shape[1]
    if n % 8:
        return np.count_nonzero(flat, axis=1).astype(np.int64)
    words = flat.view(np.uint64)
    popcount = getattr(np, "bitwise_count", None)
    if popcount is not None and n < 1 << 28:
        return (popcount(words).sum(axis=1, dtype=np.uint32) >> 3).astype(np.int64)
    group = next(g for g in range(min(255, n // 8), 0, -1) if n % (8 * g) == 0)
    lanes = (words & LANES).reshape(k, -1, group).sum(axis=2, dtype=np.uint64)
    return lanes.view(np.uint8).reshape(k, -1).sum(axis=1, dtype=np.int64)


def planar_counts(tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drawn pixels of planar uint8 (C, k, s, s) 0/255 tiles: per tile and channel, int64
    (k, C), and in any channel, int64 (k,)."""
    c, k = tiles.shape[:2]
    per = _count_255(tiles.reshape(c * k, -1)).reshape(c, k).T
    union = tiles[0] if c == 1 else np.bitwise_or.reduce(tiles, axis=0)
    return np.ascontiguousarray(per), _count_255(union)


def gather_labels(label: np.ndarray, size: int, rows: np.ndarray, cols: np.ndarray
                  ) -> np.ndarray:
    """(k, size, size) label tiles at (rows[i], cols[i]) of a (H, W) label raster."""
    return _tile_view(label, size)[rows, :, cols, :]


def tile_labels(labels: np.ndarray) -> np.ndarray:
    """Per tile of unsigned int (k, s, s) label tiles, the id covering most pixels (0 when
    none is labelled; ties go to the smaller id): int64 (k,)."""
    k = len(labels)
    flat = labels.reshape(k, -1)
    top = flat.max(axis=1).astype(np.int64)
    # the smallest non-zero id: 0 wraps round to the dtype's largest value
    low = (flat - flat.dtype.type(1)).min(axis=1).astype(np.int64) + 1
    out = top.copy()  # one id (or none) in the tile: that id
    for t in np.flatnonzero((top > 0) & (low != top)).tolist():  # several ids: count them
        counts = np.bincount(flat[t])
        counts[0] = 0
        out[t] = int(np.argmax(counts))  # argmax takes the first (smallest) of equal counts
    return out

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

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import MissingDependencyError
from .osm_pack import compiled
from .osm_raster import GeometrySpill, Grid

# Pixels drawn around a block and dropped: without them OpenCV's polygon fill puts stray
# pixels on the canvas border (spans that lie beyond the canvas are clamped onto its first or
# last column, measured up to 37 px from any outline); with 2 pixels every pixel that differs
# from the same polygon drawn on a larger canvas lies within 1.5 px of its outline (random
# polygons, docs/OSM.md), inside the dirty-tile margin (osm_cover.EDGE_PAD_PX).
CANVAS_MARGIN = 2
# Rings and lines with more points than this lose the points of their runs beyond the canvas
# before OpenCV draws them (:func:`outside_runs`; the same pixels either way): for shorter
# ones the cut costs more than the edges it saves.
CUT_MIN_POINTS = 32
# Kept canvases are drawn with the values 1 .. LAYER_CYCLE in turn and zeroed when the cycle
# starts again, instead of zeroing what the last block drew (:func:`next_layer_value`).
LAYER_CYCLE = 254


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
                 read: Sequence[tuple[int, int]] | None = None,
                 bounds: np.ndarray | None = None, value: int = 255, full: bool = False
                 ) -> tuple[np.ndarray, np.ndarray | None]:
    """Draw ``items`` of ``spill`` into a block whose top-left pixel is (x0, y0): uint8
    (C, H, W) layer planes (0 or 255) and a (H, W) label raster of ``label_dtype`` (None: no
    label drawn); both are views into canvases :data:`CANVAS_MARGIN` pixels larger on every
    side. Areas are filled (even-odd over an area's rings: holes cut out); lines get
    their width (``round(width / mpp)`` pixels, at least 1; see :func:`cv_thickness`).
    ``cache`` keeps items' :func:`pixel_rings` for the next blocks (the caller empties it);
    points of runs beyond the canvas are cut from long rings and lines
    (:func:`outside_runs`), except for items whose ``bounds`` (int (n, 4) padded pixel
    bounds x0, y0, x1, y1 of every item) lie inside it. ``scratch`` keeps the canvases for
    the next block (not allocated again): the planes returned are then valid until the next
    call, and only their rows in ``read`` (ranges of rows y0, y1 of the block, end-exclusive;
    None: all) are zeroed first and may be read; drawing only sets pixels, so the other rows
    may keep an earlier block's pixels. With ``value`` below 255 the layers are drawn with
    that value and their kept canvases are not zeroed at all (only entirely when ``value``
    is 1): this block's pixels are those equal to ``value`` (the caller takes the values
    from :func:`next_layer_value`; :func:`dlprep.formats.osm_pack.pack_tiles` turns them into
    0/255). ``full`` returns the whole canvases instead, margin included (what
    :func:`dlprep.formats.osm_pack.pack_tiles` reads)."""
    cv2 = cv2_module()
    line8 = cv2.LINE_8
    m = CANVAS_MARGIN
    x0, y0, width, height = x0 - m, y0 - m, width + 2 * m, height + 2 * m
    rows = None if read is None else [(a + m, b + m) for a, b in read]
    if value == 255:
        planes = _canvas(scratch, (channels, height, width), np.uint8, rows)
    else:
        planes = _canvas(scratch, (channels, height, width), np.uint8, None if value == 1 else [])
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
    layers, labels, widths = spill.item_lists()
    if spill.px_fd < 0:
        spill.project(grid)
    rings_of = spill.rings
    layer_planes = list(planes)
    lines: dict[tuple[int, int], list[np.ndarray]] = {}  # (layer, thickness) -> paths
    thickness: dict[float, int] = {}
    for i, is_near in zip(items.tolist(), near.tolist(), strict=True):
        layer, label, line_w = layers[i], labels[i], widths[i]
        rings = cache.get(i) if cache is not None else None
        if rings is None:
            rings = rings_of(i, True)  # :func:`pixel_rings`
            if cache is not None:
                cache[i] = rings
        if line_w > 0:  # a line: drawn below, with the block's others of its layer and width
            thick = thickness.get(line_w)
            if thick is None:
                thick = thickness[line_w] = cv_thickness(max(1, int(round(line_w / mpp))))
            pts = rings[0][0] - origin
            if not is_near and len(pts) > CUT_MIN_POINTS:
                pts = cut_outside(pts, (width, height), thick / 2 + 2)
            lines.setdefault((layer, thick), []).append(pts)
            continue
        if is_near:
            polys = [pts for pts, _ in rings if len(pts) >= 3]
            shift = offset
        else:
            polys = [cut_outside(p, (width, height), 2) if len(p) > CUT_MIN_POINTS else p
                     for p in (pts - origin for pts, _ in rings if len(pts) >= 3)]
            shift = (0, 0)
        if not polys:
            continue
        if len(rings) == 1 or all(is_outer for _, is_outer in rings):
            groups = [[p] for p in polys]  # outer rings only: each filled on its own (union)
        else:
            groups = [polys]  # with holes: one even-odd fill over all its rings
        for group in groups:
            if layer >= 0:
                cv2.fillPoly(layer_planes[layer], group, value, line8, 0, shift)
            if label:
                if label_plane is None:
                    label_plane = _canvas(scratch, (height, width), label_dtype, rows)
                cv2.fillPoly(label_plane, group, label, line8, 0, shift)
    for (layer, thick), paths in lines.items():  # one value per layer: order does not matter
        cv2.polylines(layer_planes[layer], paths, False, value, thick, line8)
    if full:
        return planes, label_plane
    inner = (slice(m, height - m), slice(m, width - m))
    return planes[(slice(None), *inner)], None if label_plane is None else label_plane[inner]


def _canvas(scratch: dict[Any, Any] | None, shape: tuple[int, ...], dtype: Any,
            rows: Sequence[tuple[int, int]] | None) -> np.ndarray:
    """A (..., H, W) array, zeroed in ``rows`` (ranges y0, y1; None: everywhere): a new one,
    or the one kept in ``scratch``."""
    if scratch is None:
        return np.zeros(shape, dtype)
    key = (shape, np.dtype(dtype).str)
    got = scratch.get(key)
    if got is None:
        got = scratch[key] = np.zeros(shape, dtype)
    elif rows is None:
        got[...] = 0
    else:
        for a, b in rows:
            got[..., a:b, :] = 0
    return got


def next_layer_value(scratch: dict[Any, Any] | None, channels: int, width: int,
                     height: int) -> int:
    """The value to draw the layers of the next block of this size with on the canvas kept
    in ``scratch`` (:func:`render_block`): 1, 2, ..., :data:`LAYER_CYCLE` in turn, counted
    per canvas (blocks at the grid's edges have canvases of their own), the canvas zeroed
    whenever 1 comes round again; 255 without ``scratch`` (a new zeroed canvas)."""
    if scratch is None:
        return 255
    key = ("value", channels, width, height)
    n = scratch.get(key, 0)
    scratch[key] = n + 1
    return 1 + n % LAYER_CYCLE


def binarise(tiles: np.ndarray, value: int) -> np.ndarray:
    """uint8 ``tiles`` (any shape, C-contiguous) with 255 where they equal ``value``, else
    0, in place (one SIMD pass): the pixels a block drew with ``value``."""
    if value != 255:
        cv2 = cv2_module()
        flat = tiles.reshape(-1, tiles.shape[-1]) if tiles.ndim > 1 else tiles.reshape(1, -1)
        cv2.compare(flat, value, cv2.CMP_EQ, dst=flat)
    return tiles


def cut_outside(px: np.ndarray, size: tuple[int, int], margin: float) -> np.ndarray:
    """The points of ``px`` (int32 (n, 2)) that :func:`outside_runs` keeps: one compiled
    pass where the package's C kernels are built, else NumPy."""
    lib = compiled()
    if lib is None or px.dtype != np.int32 or not px.flags.c_contiguous:
        return px[outside_runs(px, size, margin)]
    out = np.empty_like(px)
    return out[:lib.cut(px, len(px), float(size[0]), float(size[1]), float(margin), out)]


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


def gather_planes(planes: np.ndarray, size: int, rows: np.ndarray, cols: np.ndarray,
                  out: np.ndarray | None = None) -> np.ndarray:
    """C-contiguous (C, k, size, size): the tiles at (rows[i], cols[i]) of (C, H, W) planes
    (a view whose rows may be longer than W: no copy before the gather), in ``out`` if
    given."""
    c, h, w = planes.shape
    st = planes.strides
    view = np.lib.stride_tricks.as_strided(
        planes, (c, h // size, w // size, size, size), (st[0], st[1] * size, st[2] * size,
                                                         st[1], st[2]), writeable=False)
    if out is None:
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


def _row_sums_255(rows: np.ndarray) -> np.ndarray:
    """The 255 bytes in each row of a uint8 (n, m) array of 0/255 bytes: int64 (n,), from
    OpenCV's row sums (one SIMD pass; exact in int32 for m < 2**23)."""
    n, m = rows.shape
    if not n or not m:
        return np.zeros(n, np.int64)
    if m >= 1 << 23:  # pragma: no cover - tiles are at most 1024 px (2**20 per channel)
        return np.count_nonzero(rows, axis=1).astype(np.int64)
    cv2 = cv2_module()
    sums = cv2.reduce(np.ascontiguousarray(rows), 1, cv2.REDUCE_SUM, dtype=cv2.CV_32S)
    return sums.reshape(n).astype(np.int64) // 255


def planar_counts(tiles: np.ndarray, need: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Drawn pixels of planar uint8 (C, k, s, s) 0/255 tiles: per tile and channel, int64
    (k, C), and in any channel, int64 (k,). With ``need`` the latter is only exact where
    every channel has fewer than ``need`` drawn pixels; elsewhere it is the largest channel's
    count (at least ``need``: enough to tell whether a tile has ``need`` pixels drawn)."""
    c, k = tiles.shape[:2]
    per = _row_sums_255(tiles.reshape(c * k, -1)).reshape(c, k).T
    if c == 1:
        return np.ascontiguousarray(per), per[:, 0].copy()
    union = per.max(axis=1)
    todo = np.arange(k) if need is None else np.flatnonzero(union < need)
    if len(todo):
        part = tiles[:, todo] if len(todo) < k else tiles
        u = np.bitwise_or(part[0], part[1])
        for plane in part[2:]:
            np.bitwise_or(u, plane, out=u)
        union[todo] = _row_sums_255(u.reshape(len(todo), -1))
    return np.ascontiguousarray(per), union


def gather_labels(label: np.ndarray, size: int, rows: np.ndarray, cols: np.ndarray,
                  out: np.ndarray | None = None) -> np.ndarray:
    """(k, size, size) label tiles at (rows[i], cols[i]) of a (H, W) label raster (a view
    whose rows may be longer than W), in ``out`` if given."""
    return gather_planes(label[None], size, rows, cols,
                         None if out is None else out[None])[0]


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

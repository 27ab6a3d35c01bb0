"""Rasterise OSM features into square map tiles, one block of tiles at a time (Pillow).

Projection: equirectangular around the area's middle latitude (a local metric projection):
``x = (lon - west) * k * cos(lat_mid)``, ``y = (north - lat) * k`` with ``k = pi R / 180 / mpp``
pixels per degree, ``R = 6378137`` m. The grid starts at the area's north-west corner; tile
``(col, row)`` covers pixels ``[col*size, (col+1)*size) x [row*size, (row+1)*size)``; x grows to
the east, y to the south.

Geometry waits on disk (:class:`GeometrySpill`), not in memory; each block of ``block`` x
``block`` tiles is drawn from the features whose bounds meet it, so memory stays flat however
large the area is. Pillow was chosen by measurement (docs/OSM.md): lines with a width and
filled polygons in one C call each.
"""

from __future__ import annotations

import ctypes
import math
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

EARTH_RADIUS_M = 6378137.0
SCALE = 1e-7  # OSM fixed-point coordinates
FLUSH_POINTS = 1 << 16  # the spill writes its buffer every this many points (~1 MB)


@dataclass(frozen=True)
class Grid:
    """The tile grid over an area (S, W, N, E in degrees)."""

    south: float
    west: float
    north: float
    east: float
    meters_per_pixel: float
    tile_size: int

    @property
    def px_per_deg_lat(self) -> float:
        return math.pi * EARTH_RADIUS_M / 180.0 / self.meters_per_pixel

    @property
    def px_per_deg_lon(self) -> float:
        mid = math.radians((self.south + self.north) / 2.0)
        return self.px_per_deg_lat * math.cos(mid)

    @property
    def cols(self) -> int:
        return max(1, math.ceil((self.east - self.west) * self.px_per_deg_lon / self.tile_size))

    @property
    def rows(self) -> int:
        return max(1, math.ceil((self.north - self.south) * self.px_per_deg_lat / self.tile_size))

    def to_pixels(self, fixed: np.ndarray) -> np.ndarray:
        """float64 (n, 2) pixel coordinates of int (n, 2) (lon, lat) in 1e-7 degrees."""
        out = np.empty(fixed.shape, np.float64)
        out[:, 0] = (fixed[:, 0] * SCALE - self.west) * self.px_per_deg_lon
        out[:, 1] = (self.north - fixed[:, 1] * SCALE) * self.px_per_deg_lat
        return out

    def tile_center(self, col: int, row: int) -> tuple[float, float]:
        """(lon, lat) of a tile's centre."""
        c = (col + 0.5) * self.tile_size
        r = (row + 0.5) * self.tile_size
        return self.west + c / self.px_per_deg_lon, self.north - r / self.px_per_deg_lat

    def to_dict(self) -> dict[str, float]:
        return {"south": self.south, "west": self.west, "north": self.north, "east": self.east,
                "meters_per_pixel": self.meters_per_pixel, "tile_size": self.tile_size,
                "cols": self.cols, "rows": self.rows, "px_per_deg_lon": self.px_per_deg_lon,
                "px_per_deg_lat": self.px_per_deg_lat, "earth_radius_m": EARTH_RADIUS_M,
                "projection": "equirectangular at the middle latitude, origin north-west"}


_ITEM = np.dtype([("bounds", "<i4", (4,)), ("layer", "i1"), ("label", "<u2"),
                  ("width", "<f4"), ("points", "<i4"), ("rings", "<i4")])


def _scratch_fd(folder: Path | None, what: str) -> int:
    fd, name = tempfile.mkstemp(prefix=f".osm-{what}-", suffix=".bin", dir=folder)
    os.unlink(name)  # anonymous: gone when closed, even after a crash
    return fd


class GeometrySpill:
    """Append-only store of feature rings (int32 lon/lat in 1e-7 degrees) in an unlinked
    temporary file. While features are added (libosmium reading, its memory at its peak), the
    per-item records go to disk too, a buffer at a time; :meth:`finish` loads them back as
    arrays (about 45 bytes per item) once the read is over.

    Item ``i`` has: ``layer`` (channel, -1: none), ``label`` (class id for the label raster,
    0: none), ``width`` (line width in metres, 0 for areas), ``bounds`` and its rings. Bounds
    are computed for a whole buffer of items at once when it is flushed.
    """

    def __init__(self, folder: Path | None = None) -> None:
        self.fd = _scratch_fd(folder, "geom")
        self._items_fd = _scratch_fd(folder, "items")
        self._rings_fd = _scratch_fd(folder, "rings")
        self.pos = 0
        self.n = 0
        self._items_pos = self._rings_pos = 0
        self._buf: list[np.ndarray] = []
        self._meta: list[tuple[int, int, float, int, int]] = []
        self._ring_lens: list[int] = []
        self._buffered = 0
        empty = np.zeros(0, np.int64)
        self.bounds = np.zeros(0, np.int32)  # 4 per item
        self.start = np.zeros(1, np.int64)  # item i's points: bytes start[i]:start[i + 1]
        self.ring_lens = np.zeros(0, np.int32)  # ring lengths, negative for inner rings
        self.ring_start = np.zeros(1, np.int64)  # item i's rings: ring_lens[ring_start[i]:...]
        self.layer, self.label = empty.astype(np.int8), empty.astype(np.uint16)
        self.width = empty.astype(np.float32)

    def __len__(self) -> int:
        return self.n

    def add(self, rings: list[np.ndarray], outer: list[bool], *, layer: int, label: int,
            width: float) -> None:
        pts = rings[0] if len(rings) == 1 else np.concatenate(rings)
        self._ring_lens.extend(len(r) if o else -len(r) for r, o in zip(rings, outer,
                                                                          strict=True))
        self._meta.append((layer, label, width, len(pts), len(rings)))
        self._buf.append(pts)
        self._buffered += len(pts)
        self.pos += 8 * len(pts)
        self.n += 1
        if self._buffered >= FLUSH_POINTS:
            self.flush()

    def flush(self) -> None:
        """Write the buffered points and their items' records (with their bounds)."""
        if not self._buf:
            return
        lens = [len(p) for p in self._buf]
        pts = np.concatenate(self._buf).astype(np.int32)
        firsts = np.cumsum([0] + lens[:-1])
        rec = np.zeros(len(lens), _ITEM)
        rec["bounds"][:, :2] = np.minimum.reduceat(pts, firsts)
        rec["bounds"][:, 2:] = np.maximum.reduceat(pts, firsts)
        meta = list(zip(*self._meta, strict=True))
        for field, values in zip(("layer", "label", "width", "points", "rings"), meta,
                                 strict=True):
            rec[field] = values
        data = pts.tobytes()
        os.pwrite(self.fd, data, self.pos - len(data))
        for fd, blob, at in ((self._items_fd, rec.tobytes(), "_items_pos"),
                             (self._rings_fd, np.asarray(self._ring_lens, np.int32).tobytes(),
                              "_rings_pos")):
            os.pwrite(fd, blob, getattr(self, at))
            setattr(self, at, getattr(self, at) + len(blob))
        self._buf.clear()
        self._meta.clear()
        self._ring_lens.clear()
        self._buffered = 0

    def finish(self) -> None:
        """After the last :meth:`add`: write what is buffered, then load the item records."""
        self.flush()
        rec = np.frombuffer(os.pread(self._items_fd, self._items_pos, 0), _ITEM)
        self.ring_lens = np.frombuffer(os.pread(self._rings_fd, self._rings_pos, 0), np.int32)
        self.bounds = np.ascontiguousarray(rec["bounds"]).ravel()
        self.layer = np.ascontiguousarray(rec["layer"])
        self.label = np.ascontiguousarray(rec["label"])
        self.width = np.ascontiguousarray(rec["width"])
        self.start = np.r_[0, np.cumsum(rec["points"].astype(np.int64) * 8)]
        self.ring_start = np.r_[0, np.cumsum(rec["rings"].astype(np.int64))]
        for fd in (self._items_fd, self._rings_fd):
            os.close(fd)
        self._items_fd = self._rings_fd = -1

    def bounds_array(self) -> np.ndarray:
        """int64 (n, 4): min lon, min lat, max lon, max lat (1e-7 degrees) of each item."""
        return np.frombuffer(self.bounds, np.int32).reshape(-1, 4).astype(np.int64)

    def points(self, i0: int, i1: int) -> np.ndarray:
        """int32 (n, 2) fixed-point (lon, lat) of items ``i0:i1``, all rings in order."""
        a, b = int(self.start[i0]), int(self.start[i1])
        return np.frombuffer(os.pread(self.fd, b - a, a), np.int32).reshape(-1, 2)

    def rings(self, i: int) -> list[tuple[np.ndarray, bool]]:
        """Item ``i``'s rings as int32 (n, 2) fixed-point (lon, lat), with outer flags."""
        lens = self.ring_lens[self.ring_start[i]:self.ring_start[i + 1]].tolist()
        pts = self.points(i, i + 1)
        out, at = [], 0
        for n in lens:
            k = abs(int(n))
            out.append((pts[at:at + k], bool(n > 0)))
            at += k
        return out

    def batches(self, max_points: int = 1 << 15) -> Iterator[tuple[int, int, np.ndarray]]:
        """(i0, i1, points of items i0:i1) in file order, about ``max_points`` at a time (an
        item with more points comes alone)."""
        starts = self.start // 8
        i0, n = 0, len(self)
        while i0 < n:
            i1 = int(np.searchsorted(starts, starts[i0] + max_points, side="right")) - 1
            i1 = min(n, max(i1, i0 + 1))
            yield i0, i1, self.points(i0, i1)
            i0 = i1

    def close(self) -> None:
        for name in ("fd", "_items_fd", "_rings_fd"):
            fd = getattr(self, name)
            if fd >= 0:
                os.close(fd)
                setattr(self, name, -1)


def pixel_rings(grid: Grid, spill: GeometrySpill, i: int) -> list[tuple[np.ndarray, bool]]:
    """Item ``i``'s rings as int64 (n, 2) whole-pixel grid coordinates, with outer flags.
    Points are rounded to whole pixels (Pillow would round polygon vertices, and truncate
    line ends), so a feature is drawn the same in every block it crosses, whatever the
    offset."""
    return [(np.rint(grid.to_pixels(pts)).astype(np.int64), is_outer)
            for pts, is_outer in spill.rings(i)]


def _flat(px: np.ndarray, ox: int, oy: int, size: tuple[int, int], margin: float
          ) -> list[int]:
    """Pillow's flat pixel coordinate list of whole-pixel points, shifted so the block starts
    at (0, 0). Runs of points beyond ``margin`` pixels on one side of the block are cut to
    their first and last point (:func:`outside_runs`): Pillow's polygon fill visits every edge
    on every row, so a large forest drawn into a small block otherwise costs rows x all its
    edges."""
    shifted = px - (ox, oy)
    w, h = size
    lo, hi = shifted.min(axis=0), shifted.max(axis=0)
    if lo[0] >= -margin and lo[1] >= -margin and hi[0] <= w + margin and hi[1] <= h + margin:
        return shifted.ravel().tolist()  # all near the block: nothing to cut
    return shifted[outside_runs(shifted, size, margin)].ravel().tolist()


def outside_runs(px: np.ndarray, size: tuple[int, int], margin: float) -> np.ndarray:
    """bool mask of the points of a path or ring (int (n, 2) pixels) worth drawing into a
    canvas of ``size`` (W, H): all but the inner points of runs that lie beyond ``margin``
    on one and the same side (above, below, left, right). Dropping them changes nothing
    inside the canvas: the shortcut between a run's ends stays on that side, crossing the
    canvas rows as often, modulo 2, as the run did (even-odd fill), and a line there (margin
    beyond half its width) draws no canvas pixel."""
    w, h = size
    x, y = px[:, 0], px[:, 1]
    side = np.where(y < -margin, 1, np.where(y > h + margin, 2, np.where(
        x < -margin, 3, np.where(x > w + margin, 4, 0))))
    keep = side == 0
    keep[1:] |= side[1:] != side[:-1]
    keep[:-1] |= side[:-1] != side[1:]
    keep[0] = keep[-1] = True
    return keep


class _ArrowArray(ctypes.Structure):
    """The Arrow C data interface's ``ArrowArray`` (what ``Image.__arrow_c_array__`` gives)."""


_ArrowArray._fields_ = [
    ("length", ctypes.c_int64), ("null_count", ctypes.c_int64), ("offset", ctypes.c_int64),
    ("n_buffers", ctypes.c_int64), ("n_children", ctypes.c_int64),
    ("buffers", ctypes.POINTER(ctypes.c_void_p)),
    ("children", ctypes.POINTER(ctypes.POINTER(_ArrowArray))),
    ("dictionary", ctypes.POINTER(_ArrowArray)), ("release", ctypes.c_void_p),
    ("private_data", ctypes.c_void_p)]
_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_pointer.restype = ctypes.c_void_p
_capsule_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]


def image_array(img: Image.Image) -> np.ndarray:
    """A read-only NumPy view of a Pillow ``L``, ``RGBA`` or ``I`` image's pixels, without
    the two copies of ``np.asarray(img)`` (``tobytes`` in chunks, then joined): through
    Pillow's Arrow export (Pillow >= 11.2), which lends the image's own memory. The view
    keeps the image and the export alive. Falls back to ``np.asarray`` where that fails
    (older Pillow, an image spread over several memory blocks)."""
    try:
        schema, arr = img.__arrow_c_array__()
        p = ctypes.cast(_capsule_pointer(arr, b"arrow_array"),
                        ctypes.POINTER(_ArrowArray)).contents
        if p.n_children:  # several bands: a fixed-size list over one uint8 child
            p = p.children[0].contents
        dtype = np.dtype(np.int32 if img.mode == "I" else np.uint8)
        bands = 1 if img.mode == "I" else len(img.getbands())
        w, h = img.size
        n = int(p.length) * dtype.itemsize
        if p.offset != 0 or n != w * h * bands * dtype.itemsize or not p.buffers[1]:
            raise ValueError("unexpected Arrow layout")
        buf = (ctypes.c_uint8 * n).from_address(p.buffers[1])
        buf._keep = (img, schema, arr)  # type: ignore[attr-defined]
    except (AttributeError, ValueError, TypeError, OSError):
        return np.asarray(img)
    view = np.frombuffer(buf, dtype)
    return view.reshape((h, w, bands) if bands > 1 else (h, w))


class BlockCanvas:
    """One block: a Pillow ``L`` image per layer (0/255) and a label image (``L`` when every
    label id is below 255, else 32-bit ``I``)."""

    def __init__(self, width: int, height: int, channels: int, label_mode: str = "I") -> None:
        self.size = (width, height)
        self.label_mode = label_mode
        self.layers = [Image.new("L", self.size) for _ in range(channels)]
        self.draws = [ImageDraw.Draw(img) for img in self.layers]
        self.label: Image.Image | None = None
        self.label_draw: ImageDraw.ImageDraw | None = None

    def label_canvas(self) -> ImageDraw.ImageDraw:
        if self.label_draw is None:
            self.label = Image.new(self.label_mode, self.size)
            self.label_draw = ImageDraw.Draw(self.label)
        return self.label_draw

    def arrays(self) -> tuple[np.ndarray, np.ndarray | None]:
        """uint8 (H, W, C) layers (channels interleaved by Pillow where it can) and the int32
        (H, W) label raster (None when nothing was labelled)."""
        merge = {1: "L", 4: "RGBA"}.get(len(self.layers))
        if merge == "L":
            stack = image_array(self.layers[0])[..., None]
        elif merge:
            stack = image_array(Image.merge(merge, self.layers))
        else:
            stack = np.stack([image_array(img) for img in self.layers], axis=-1)
        label = None if self.label is None else image_array(self.label)
        return stack, label


def render_block(grid: Grid, spill: GeometrySpill, items: np.ndarray, x0: int, y0: int,
                 width: int, height: int, channels: int,
                 cache: dict[int, list[tuple[np.ndarray, bool]]] | None = None,
                 label_mode: str = "I") -> tuple[np.ndarray, np.ndarray | None]:
    """Draw ``items`` of ``spill`` into a block whose top-left pixel is (x0, y0): uint8
    (H, W, C) layers (0 or 255) and an integer (H, W) label raster (None: no label drawn).
    Areas are filled with their holes cut out; lines get their width. ``cache`` keeps items'
    :func:`pixel_rings` for the next blocks (the caller empties it); ``label_mode`` ``L``
    (ids up to 254) keeps the label raster at one byte a pixel."""
    canvas = BlockCanvas(width, height, channels, label_mode)
    size = (width, height)
    for i in items.tolist():
        layer, label = int(spill.layer[i]), int(spill.label[i])
        line_w = float(spill.width[i])
        rings = cache.get(i) if cache is not None else None
        if rings is None:
            rings = pixel_rings(grid, spill, i)
            if cache is not None:
                cache[i] = rings
        if line_w > 0:  # a line
            px = max(1, int(round(line_w / grid.meters_per_pixel)))
            coords = _flat(rings[0][0], x0, y0, size, px / 2 + 2)
            canvas.draws[layer].line(coords, fill=255, width=px, joint="curve" if px > 2 else None)
            continue
        flat = [(_flat(pts, x0, y0, size, 2), is_outer) for pts, is_outer in rings]
        if all(is_outer for _, is_outer in flat):
            for coords, _ in flat:
                if len(coords) < 6:
                    continue
                if layer >= 0:
                    canvas.draws[layer].polygon(coords, fill=255)
                if label:
                    canvas.label_canvas().polygon(coords, fill=label)
            continue
        got = _area_mask(flat, width, height)
        if got is None:
            continue
        mask, (mx, my) = got
        if layer >= 0:
            canvas.layers[layer].paste(255, (mx, my), mask=mask)
        if label:
            canvas.label_canvas()
            assert canvas.label is not None
            canvas.label.paste(label, (mx, my), mask=mask)
    return canvas.arrays()


def _area_mask(flat: list[tuple[list[float], bool]], width: int, height: int
               ) -> tuple[Image.Image, tuple[int, int]] | None:
    """A 1-bit mask of one area with holes, cropped to its bounds within the block, and the
    mask's offset in the block; None when it lies outside."""
    xs = [min(coords[0::2]) for coords, outer in flat if outer] + \
        [max(coords[0::2]) for coords, outer in flat if outer]
    ys = [min(coords[1::2]) for coords, outer in flat if outer] + \
        [max(coords[1::2]) for coords, outer in flat if outer]
    mx, my = max(0, min(xs) - 1), max(0, min(ys) - 1)
    ex, ey = min(width, max(xs) + 2), min(height, max(ys) + 2)
    if ex <= mx or ey <= my:
        return None
    mask = Image.new("1", (ex - mx, ey - my))
    draw = ImageDraw.Draw(mask)
    for want, fill in ((True, 1), (False, 0)):
        for coords, is_outer in flat:
            if is_outer == want and len(coords) >= 6:
                shifted = (np.asarray(coords).reshape(-1, 2) - (mx, my)).ravel().tolist()
                draw.polygon(shifted, fill=fill)
    return mask, (mx, my)


def gather_tiles(stack: np.ndarray, size: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """uint8 (k, size, size, C): the tiles at (rows[i], cols[i]) of a (H, W, C) block."""
    h, w, c = stack.shape
    view = stack.reshape(h // size, size, w // size, size, c).transpose(0, 2, 1, 3, 4)
    return np.ascontiguousarray(view[rows, cols])


def tile_channel_counts(tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drawn (non-zero) pixels of uint8 (k, s, s, C) 0/255 tiles: per tile and channel, int64
    (k, C), and in any channel, int64 (k,). With four channels a pixel's bytes are counted
    together as one uint32 (0/1 byte lanes, at most ``s`` <= 255 per lane and row)."""
    k, s, _, c = tiles.shape
    if c != 4 or s > 255:
        flat = tiles.reshape(k, s * s, c)
        per = np.stack([np.count_nonzero(flat[..., j], axis=1) for j in range(c)], axis=-1)
        return per.astype(np.int64), np.count_nonzero(flat.any(axis=-1), axis=1)
    packed = tiles.view(np.uint32).reshape(k, s, s)
    union = np.count_nonzero(packed.reshape(k, -1), axis=1).astype(np.int64)
    lanes = ((packed >> np.uint32(7)) & np.uint32(0x01010101)).sum(axis=2, dtype=np.uint32)
    per = np.empty((k, 4), np.int64)
    for j in range(4):
        per[:, j] = ((lanes >> np.uint32(8 * j)) & np.uint32(0xFF)).sum(axis=1)
    return per, union


def tile_labels(labels: np.ndarray) -> np.ndarray:
    """Per tile of int (k, s, s) label tiles, the id covering most pixels (0 when none is
    labelled; ties go to the smaller id): int64 (k,)."""
    k = len(labels)
    flat = labels.reshape(k, -1)
    top = flat.max(axis=1).astype(np.int64)
    low = np.where(flat > 0, flat, np.iinfo(flat.dtype).max).min(axis=1)
    out = top.copy()  # one id (or none) in the tile: that id
    for t in np.flatnonzero((top > 0) & (low != top)).tolist():  # several ids: count them
        counts = np.bincount(flat[t])
        counts[0] = 0
        out[t] = int(np.argmax(counts))  # argmax takes the first (smallest) of equal counts
    return out

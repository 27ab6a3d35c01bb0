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

import math
import os
import tempfile
from array import array
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

EARTH_RADIUS_M = 6378137.0
SCALE = 1e-7  # OSM fixed-point coordinates


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


class GeometrySpill:
    """Append-only store of feature rings (int32 lon/lat in 1e-7 degrees) in an unlinked
    temporary file; per-item bounds and attributes stay in memory (a few dozen bytes each).

    Item ``i`` has: ``layer`` (channel, -1: none), ``label`` (class id for the label raster,
    0: none), ``width`` (line width in metres, 0 for areas) and its rings.
    """

    def __init__(self, folder: Path | None = None) -> None:
        fd, name = tempfile.mkstemp(prefix=".osm-geom-", suffix=".bin", dir=folder)
        self.fd = fd
        os.unlink(name)  # anonymous: gone when closed, even after a crash
        self.pos = 0
        self.bounds = array("q")
        self.start = array("q")
        self.ring_lens = array("i")  # ring lengths, negative for inner rings
        self.ring_start = array("q", [0])  # item i's rings: ring_lens[ring_start[i]:...[i+1]]
        self.layer = array("b")
        self.label = array("H")
        self.width = array("f")
        self._buf: list[bytes] = []
        self._buffered = 0

    def __len__(self) -> int:
        return len(self.start)

    def add(self, rings: list[np.ndarray], outer: list[bool], bounds: tuple[int, int, int, int],
            *, layer: int, label: int, width: float) -> None:
        pts = np.concatenate(rings).astype(np.int32)
        self.bounds.extend(bounds)
        self.start.append(self.pos)
        self.ring_lens.extend(len(r) if o else -len(r) for r, o in zip(rings, outer,
                                                                         strict=True))
        self.ring_start.append(len(self.ring_lens))
        self.layer.append(layer)
        self.label.append(label)
        self.width.append(width)
        data = pts.tobytes()
        self._buf.append(data)
        self._buffered += len(data)
        self.pos += len(data)
        if self._buffered >= 1 << 22:
            self.flush()

    def flush(self) -> None:
        if self._buf:
            data = b"".join(self._buf)
            os.pwrite(self.fd, data, self.pos - len(data))
            self._buf.clear()
            self._buffered = 0

    def bounds_array(self) -> np.ndarray:
        """int64 (n, 4): min lon, min lat, max lon, max lat (1e-7 degrees) of each item."""
        return np.frombuffer(self.bounds, np.int64).reshape(-1, 4)

    def rings(self, i: int) -> list[tuple[np.ndarray, bool]]:
        """Item ``i``'s rings as int32 (n, 2) fixed-point (lon, lat), with outer flags."""
        lens = self.ring_lens[self.ring_start[i]:self.ring_start[i + 1]]
        total = sum(abs(n) for n in lens)
        raw = os.pread(self.fd, total * 8, self.start[i])
        pts = np.frombuffer(raw, np.int32).reshape(-1, 2)
        out, at = [], 0
        for n in lens:
            k = abs(int(n))
            out.append((pts[at:at + k], bool(n > 0)))
            at += k
        return out

    def close(self) -> None:
        os.close(self.fd)


def _flat(grid: Grid, points: np.ndarray, ox: float, oy: float) -> list[float]:
    """Pillow's flat pixel coordinate list, shifted so the block starts at (0, 0)."""
    shifted = grid.to_pixels(points) - (ox, oy)
    return shifted.ravel().tolist()


class BlockCanvas:
    """One block: a Pillow ``L`` image per layer (0/255) and a 16-bit label image."""

    def __init__(self, width: int, height: int, channels: int) -> None:
        self.size = (width, height)
        self.layers = [Image.new("L", self.size) for _ in range(channels)]
        self.draws = [ImageDraw.Draw(img) for img in self.layers]
        self.label: Image.Image | None = None
        self.label_draw: ImageDraw.ImageDraw | None = None

    def label_canvas(self) -> ImageDraw.ImageDraw:
        if self.label_draw is None:
            self.label = Image.new("I", self.size)
            self.label_draw = ImageDraw.Draw(self.label)
        return self.label_draw

    def arrays(self) -> tuple[np.ndarray, np.ndarray | None]:
        """uint8 (H, W, C) layers (channels interleaved by Pillow where it can) and the int32
        (H, W) label raster (None when nothing was labelled)."""
        merge = {1: "L", 3: "RGB", 4: "RGBA"}.get(len(self.layers))
        if merge == "L":
            stack = np.asarray(self.layers[0])[..., None]
        elif merge:
            stack = np.asarray(Image.merge(merge, self.layers))
        else:
            stack = np.stack([np.asarray(img) for img in self.layers], axis=-1)
        label = None if self.label is None else np.asarray(self.label, dtype=np.int32)
        return stack, label


def render_block(grid: Grid, spill: GeometrySpill, items: np.ndarray, x0: int, y0: int,
                 width: int, height: int, channels: int
                 ) -> tuple[np.ndarray, np.ndarray | None]:
    """Draw ``items`` of ``spill`` into a block whose top-left pixel is (x0, y0): uint8
    (H, W, C) layers (0 or 255) and an int32 (H, W) label raster (None: no label drawn).
    Areas are filled with their holes cut out; lines get their width."""
    canvas = BlockCanvas(width, height, channels)
    for i in items:
        i = int(i)
        layer, label, line_w = spill.layer[i], spill.label[i], spill.width[i]
        rings = spill.rings(i)
        if line_w > 0:  # a line
            coords = _flat(grid, rings[0][0], x0, y0)
            px = max(1, int(round(line_w / grid.meters_per_pixel)))
            canvas.draws[layer].line(coords, fill=255, width=px, joint="curve" if px > 2 else None)
            continue
        flat = [(_flat(grid, pts, x0, y0), is_outer) for pts, is_outer in rings]
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
    xs = [v for coords, outer in flat if outer for v in coords[0::2]]
    ys = [v for coords, outer in flat if outer for v in coords[1::2]]
    mx, my = max(0, int(min(xs)) - 1), max(0, int(min(ys)) - 1)
    ex, ey = min(width, int(max(xs)) + 2), min(height, int(max(ys)) + 2)
    if ex <= mx or ey <= my:
        return None
    mask = Image.new("1", (ex - mx, ey - my))
    draw = ImageDraw.Draw(mask)
    for want, fill in ((True, 1), (False, 0)):
        for coords, is_outer in flat:
            if is_outer == want and len(coords) >= 6:
                shifted = [v - (mx if k % 2 == 0 else my) for k, v in enumerate(coords)]
                draw.polygon(shifted, fill=fill)
    return mask, (mx, my)


def tile_counts(mask: np.ndarray, size: int) -> np.ndarray:
    """Per tile, the number of true pixels of a bool (rows*size, cols*size) mask: int64
    (rows, cols)."""
    h, w = mask.shape
    per_row = mask.view(np.uint8).reshape(h // size, size, w).sum(axis=1, dtype=np.int32)
    return per_row.reshape(h // size, w // size, size).sum(axis=-1, dtype=np.int64)


def channel_counts(stack: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per tile, the drawn pixels of a 0/255 uint8 (rows*size, cols*size, C) block: per
    channel, int64 (rows, cols, C), and in any channel, int64 (rows, cols). With four
    channels a pixel's bytes are counted together as one uint32 (0/1 byte lanes)."""
    h, w, c = stack.shape
    rows, cols = h // size, w // size
    if c != 4 or size > 255:
        per = np.stack([tile_counts(stack[..., k] > 127, size) for k in range(c)], axis=-1)
        return per, tile_counts(stack.any(axis=-1), size)
    packed = stack.view(np.uint32)[..., 0]
    union = tile_counts(packed != 0, size)
    lanes = (packed >> np.uint32(7)) & np.uint32(0x01010101)  # one 0/1 byte per channel
    per_col = lanes.reshape(rows, size, w).sum(axis=1, dtype=np.uint32)  # lanes <= size
    out = np.empty((rows, cols, 4), np.int64)
    for k in range(4):
        part = ((per_col >> np.uint32(8 * k)) & np.uint32(0xFF)).astype(np.int32)
        out[..., k] = part.reshape(rows, cols, size).sum(axis=-1)
    return out, union


def gather_tiles(stack: np.ndarray, size: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """uint8 (k, size, size, C): the tiles at (rows[i], cols[i]) of a (H, W, C) block."""
    h, w, c = stack.shape
    view = stack.reshape(h // size, size, w // size, size, c).transpose(0, 2, 1, 3, 4)
    return np.ascontiguousarray(view[rows, cols])


def dominant_labels(labels: np.ndarray | None, size: int, shape: tuple[int, int]) -> np.ndarray:
    """Per tile, the label id covering most pixels (0 when no pixel is labelled); ties go to
    the smaller id. ``labels`` int (rows*size, cols*size) -> int64 ``shape`` (rows, cols)."""
    out = np.zeros(shape, np.int64)
    if labels is None:
        return out
    present = np.flatnonzero(np.bincount(labels.ravel()))
    best = np.zeros(shape, np.int64)
    for k in present[present > 0]:
        count = tile_counts(labels == k, size)
        better = count > best
        out[better] = k
        best[better] = count[better]
    return out

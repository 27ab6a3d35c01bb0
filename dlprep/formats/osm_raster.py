"""The tile grid of OSM map tiles and the on-disk geometry spill the tiles are drawn from.

Projection: equirectangular around the area's middle latitude (a local metric projection):
``x = (lon - west) * k * cos(lat_mid)``, ``y = (north - lat) * k`` with ``k = pi R / 180 / mpp``
pixels per degree, ``R = 6378137`` m. The grid starts at the area's north-west corner; tile
``(col, row)`` covers pixels ``[col*size, (col+1)*size) x [row*size, (row+1)*size)``; x grows to
the east, y to the south.

Geometry waits on disk (:class:`GeometrySpill`), not in memory; each block of ``block`` x
``block`` tiles is drawn from the features whose bounds meet it, so memory stays flat however
large the area is. The drawing itself is :mod:`dlprep.formats.osm_draw`.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

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
        self.folder = folder
        self.fd = _scratch_fd(folder, "geom")
        self.px_fd = -1  # whole-pixel points, once :meth:`project` wrote them
        self._items_fd = _scratch_fd(folder, "items")
        self._rings_fd = _scratch_fd(folder, "rings")
        self.pos = 0
        self.n = 0
        self._items_pos = self._rings_pos = 0
        self._buf: list[np.ndarray] = []  # points, then their items' records and rings
        self._recs: list[np.ndarray] = []
        self._ring_lens: list[np.ndarray] = []
        self._buffered = 0
        empty = np.zeros(0, np.int64)
        self.bounds = np.zeros(0, np.int32)  # 4 per item
        self.start = np.zeros(1, np.int64)  # item i's points: bytes start[i]:start[i + 1]
        self.ring_lens = np.zeros(0, np.int32)  # ring lengths, negative for inner rings
        self.ring_start = np.zeros(1, np.int64)  # item i's rings: ring_lens[ring_start[i]:...]
        self.layer, self.label = empty.astype(np.int8), empty.astype(np.uint16)
        self.width = empty.astype(np.float32)
        self._lists: tuple[list[int], list[int], list[float]] | None = None

    def __len__(self) -> int:
        return self.n

    def add(self, rings: list[np.ndarray], outer: list[bool], *, layer: int, label: int,
            width: float) -> None:
        """One item: its rings (int (n, 2) fixed-point lon/lat) and their outer flags."""
        pts = rings[0] if len(rings) == 1 else np.concatenate(rings)
        lens = np.array([len(r) if o else -len(r) for r, o in zip(rings, outer, strict=True)],
                        np.int32)
        self.add_items(pts, lens, [len(pts)], [len(rings)], [layer], [label], [width])

    def add_items(self, points: np.ndarray, ring_lens: np.ndarray, n_points: Sequence[int],
                  n_rings: Sequence[int], layer: Sequence[int], label: Sequence[int],
                  width: Sequence[float]) -> None:
        """Items back to back: ``points`` (int (P, 2)) and ``ring_lens`` (negative for inner
        rings) of them all; per item its number of points and of rings, layer, label and
        width. The same as :meth:`add` an item at a time."""
        rec = np.zeros(len(n_points), _ITEM)
        for name, values in (("layer", layer), ("label", label), ("width", width),
                             ("points", n_points), ("rings", n_rings)):
            rec[name] = values
        self._buf.append(points)
        self._recs.append(rec)
        self._ring_lens.append(np.asarray(ring_lens, np.int32))
        self._buffered += len(points)
        self.pos += 8 * len(points)
        self.n += len(rec)
        if self._buffered >= FLUSH_POINTS:
            self.flush()

    def flush(self) -> None:
        """Write the buffered points and their items' records (with their bounds)."""
        if not self._buf:
            return
        pts = np.concatenate(self._buf).astype(np.int32)
        rec = np.concatenate(self._recs)
        if len(rec):
            firsts = np.r_[0, np.cumsum(rec["points"][:-1], dtype=np.int64)]
            rec["bounds"][:, :2] = np.minimum.reduceat(pts, firsts)
            rec["bounds"][:, 2:] = np.maximum.reduceat(pts, firsts)
        data = pts.tobytes()
        os.pwrite(self.fd, data, self.pos - len(data))
        for fd, blob, at in ((self._items_fd, rec.tobytes(), "_items_pos"),
                             (self._rings_fd, np.concatenate(self._ring_lens).tobytes(),
                              "_rings_pos")):
            os.pwrite(fd, blob, getattr(self, at))
            setattr(self, at, getattr(self, at) + len(blob))
        self._buf.clear()
        self._recs.clear()
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

    def item_lists(self) -> tuple[list[int], list[int], list[float]]:
        """Every item's layer, label and width as Python lists (made once, after
        :meth:`finish`): the drawing loop reads them per item."""
        got = self._lists
        if got is None or len(got[0]) != len(self.layer):
            got = self._lists = (self.layer.tolist(), self.label.tolist(), self.width.tolist())
        return got

    def bounds_array(self) -> np.ndarray:
        """int64 (n, 4): min lon, min lat, max lon, max lat (1e-7 degrees) of each item."""
        return np.frombuffer(self.bounds, np.int32).reshape(-1, 4).astype(np.int64)

    def points(self, i0: int, i1: int) -> np.ndarray:
        """int32 (n, 2) fixed-point (lon, lat) of items ``i0:i1``, all rings in order."""
        a, b = int(self.start[i0]), int(self.start[i1])
        return np.frombuffer(os.pread(self.fd, b - a, a), np.int32).reshape(-1, 2)

    def project(self, grid: Grid, max_points: int = 1 << 16) -> None:
        """Write every point's whole-pixel position on ``grid`` (int32, rounded; clipped to
        +-2**30, far beyond any grid) to a second file, at the same offsets, for
        :meth:`rings` ``(i, pixels=True)``: one vectorised pass instead of one per item and
        block row."""
        if self.px_fd < 0:
            self.px_fd = _scratch_fd(self.folder, "px")
        for i0, _, pts in self.batches(max_points):
            px = np.clip(np.rint(grid.to_pixels(pts)), -(1 << 30), 1 << 30).astype(np.int32)
            os.pwrite(self.px_fd, px.tobytes(), int(self.start[i0]))

    def rings(self, i: int, pixels: bool = False) -> list[tuple[np.ndarray, bool]]:
        """Item ``i``'s rings as int32 (n, 2) fixed-point (lon, lat), with outer flags; or
        with ``pixels`` their whole-pixel (x, y) from :meth:`project`."""
        r0, r1 = self.ring_start[i:i + 2].tolist()
        a, b = self.start[i:i + 2].tolist()
        pts = np.frombuffer(os.pread(self.px_fd if pixels else self.fd, b - a, a),
                            np.int32).reshape(-1, 2)
        if r1 - r0 == 1:  # one ring (most items)
            return [(pts, bool(self.ring_lens[r0] > 0))]
        out, at = [], 0
        for n in self.ring_lens[r0:r1].tolist():
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
        for name in ("fd", "px_fd", "_items_fd", "_rings_fd"):
            fd = getattr(self, name)
            if fd >= 0:
                os.close(fd)
                setattr(self, name, -1)

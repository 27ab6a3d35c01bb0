"""Google QuickDraw drawings: ndjson (raw and simplified) and the binary format; stroke-3
conversion; a rasterizer.

* ndjson: one JSON object per line with ``word``, ``countrycode``, ``timestamp``,
  ``recognized``, ``key_id`` and ``drawing = [[x...], [y...](, [t...])]`` per stroke (raw:
  real-valued coordinates + times in ms; simplified: 0-255 integers).
* binary (simplified drawings), little-endian, records back to back, no count::

      key_id uint64 | countrycode char[2] | recognized int8 | timestamp uint32 | n_strokes uint16
      n_strokes x ( n_points uint16 | x uint8[n_points] | y uint8[n_points] )

* stroke-3 (Sketch-RNN): float32 ``(T, 3)`` rows ``(dx, dy, pen_lift)``; the first row is the
  offset of the first point from the origin, so ``cumsum`` restores absolute coordinates;
  ``pen_lift = 1`` on the last point of every stroke.
"""

from __future__ import annotations

import json
import mmap
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..errors import FormatError

_HEADER = struct.Struct("<Q2sbIH")
_U16 = struct.Struct("<H")


@dataclass
class Drawing:
    """One drawing: metadata and strokes, each a float64 ``(n_points, 2)`` array of (x, y)."""

    word: str
    key_id: str
    countrycode: str = ""
    recognized: bool = True
    timestamp: str = ""
    strokes: list[np.ndarray] = field(default_factory=list)


def _parse_strokes(raw: object, where: Path, offset: int) -> list[np.ndarray]:
    if not isinstance(raw, list) or not raw:
        raise FormatError(where, offset, "'drawing' must be a non-empty list of strokes")
    strokes = []
    for k, stroke in enumerate(raw):
        if not isinstance(stroke, list) or len(stroke) < 2:
            raise FormatError(where, offset, f"stroke {k}: expected [[x...], [y...](, [t...])]")
        try:
            xs = np.asarray(stroke[0], dtype=np.float64)
            ys = np.asarray(stroke[1], dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise FormatError(where, offset, f"stroke {k}: non-numeric coordinates") from exc
        if xs.ndim != 1 or xs.shape != ys.shape or not len(xs):
            raise FormatError(where, offset, f"stroke {k}: x and y lists differ or are empty")
        strokes.append(np.stack([xs, ys], axis=1))
    return strokes


def parse_ndjson_line(line: bytes | str, where: Path, offset: int) -> Drawing:
    """Parse one ndjson line (raw or simplified); FormatError naming file and byte offset."""
    try:
        obj = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FormatError(where, offset, f"invalid JSON line: {exc}") from exc
    if not isinstance(obj, dict) or "drawing" not in obj:
        raise FormatError(where, offset, "expected an object with a 'drawing' key")
    return Drawing(word=str(obj.get("word", "")), key_id=str(obj.get("key_id", "")),
                   countrycode=str(obj.get("countrycode", "")),
                   recognized=bool(obj.get("recognized", True)),
                   timestamp=str(obj.get("timestamp", "")),
                   strokes=_parse_strokes(obj["drawing"], where, offset))


def iter_ndjson(path: Path, limit: int | None = None) -> Iterator[Drawing]:
    """Stream drawings from a raw or simplified ``.ndjson`` file (at most ``limit``)."""
    count = 0
    offset = 0
    with open(path, "rb") as fh:
        for line in fh:
            start = offset
            offset += len(line)
            if not line.strip():
                continue
            if limit is not None and count >= limit:
                return
            yield parse_ndjson_line(line, path, start)
            count += 1


def iter_binary(path: Path, limit: int | None = None) -> Iterator[Drawing]:
    """Stream drawings from a QuickDraw ``.bin`` file (simplified drawings, little-endian)."""
    path = Path(path)
    if path.stat().st_size == 0:
        return
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        yield from _iter_binary_records(path, buf, limit)


def _iter_binary_records(path: Path, buf: mmap.mmap, limit: int | None) -> Iterator[Drawing]:
    pos, count, word = 0, 0, Path(path).stem
    while pos < len(buf):
        if limit is not None and count >= limit:
            return
        start = pos
        if pos + _HEADER.size > len(buf):
            raise FormatError(path, pos, f"truncated record header ({len(buf) - pos} bytes left)")
        key_id, country, recognized, timestamp, n_strokes = _HEADER.unpack_from(buf, pos)
        pos += _HEADER.size
        strokes = []
        for k in range(n_strokes):
            if pos + 2 > len(buf):
                raise FormatError(path, pos, f"record at {start}: truncated in stroke {k}")
            (n,) = _U16.unpack_from(buf, pos)
            pos += 2
            if pos + 2 * n > len(buf):
                raise FormatError(path, pos, f"record at {start}: stroke {k} needs {2 * n} "
                                             f"bytes, {len(buf) - pos} left")
            xs = np.frombuffer(buf, np.uint8, n, pos).astype(np.float64)
            ys = np.frombuffer(buf, np.uint8, n, pos + n).astype(np.float64)
            pos += 2 * n
            strokes.append(np.stack([xs, ys], axis=1))
        if not strokes or any(len(s) == 0 for s in strokes):
            raise FormatError(path, start, "record with an empty drawing")
        yield Drawing(word=word, key_id=str(key_id),
                      countrycode=country.decode("ascii", "replace").rstrip("\x00"),
                      recognized=bool(recognized), timestamp=str(timestamp), strokes=strokes)
        count += 1


def to_stroke3(strokes: list[np.ndarray]) -> np.ndarray:
    """Absolute strokes -> float32 ``(T, 3)`` rows ``(dx, dy, pen_lift)`` (see module doc)."""
    points = np.concatenate(strokes, axis=0)
    out = np.zeros((len(points), 3), np.float32)
    out[:, :2] = np.diff(points, axis=0, prepend=np.zeros((1, 2)))
    ends = np.cumsum([len(s) for s in strokes]) - 1
    out[ends, 2] = 1.0
    return out


def stroke3_to_strokes(values: np.ndarray) -> list[np.ndarray]:
    """Inverse of :func:`to_stroke3`: absolute float64 ``(n, 2)`` arrays, one per stroke."""
    values = np.asarray(values, dtype=np.float64)
    if not len(values):
        return []
    points = np.cumsum(values[:, :2], axis=0)
    ends = np.flatnonzero(values[:, 2] >= 0.5) + 1
    if not len(ends) or ends[-1] != len(values):
        ends = np.append(ends, len(values))
    starts = np.concatenate([[0], ends[:-1]])
    return [points[a:b] for a, b in zip(starts, ends, strict=True) if b > a]


def drawing_bbox(strokes: list[np.ndarray]) -> tuple[float, float, float, float]:
    """(min_x, min_y, max_x, max_y) of all points."""
    pts = np.concatenate(strokes, axis=0)
    return (float(pts[:, 0].min()), float(pts[:, 1].min()), float(pts[:, 0].max()),
            float(pts[:, 1].max()))


def fit_transform(bbox: tuple[float, float, float, float], size: int,
                  margin: int) -> tuple[float, float, float]:
    """(scale, shift_x, shift_y) that fits ``bbox`` centred into ``size`` px minus ``margin``."""
    x0, y0, x1, y1 = bbox
    span = max(x1 - x0, y1 - y0, 1e-9)
    scale = (size - 1 - 2 * margin) / span
    shift_x = (size - 1 - (x1 - x0) * scale) / 2 - x0 * scale
    shift_y = (size - 1 - (y1 - y0) * scale) / 2 - y0 * scale
    return scale, shift_x, shift_y


def render_strokes(strokes: list[np.ndarray], size: int = 64, *, margin: int = 2,
                   line_width: int = 1) -> np.ndarray:
    """Draw absolute strokes white-on-black into uint8 ``(size, size)``, the bounding box
    scaled (aspect kept) to fill the square minus ``margin`` and centred."""
    img = Image.new("L", (size, size), 0)
    if not strokes:
        return np.asarray(img)
    scale, sx, sy = fit_transform(drawing_bbox(strokes), size, margin)
    draw = ImageDraw.Draw(img)
    for stroke in strokes:
        pts = [(float(x * scale + sx), float(y * scale + sy)) for x, y in stroke]
        if len(pts) == 1:
            draw.point(pts, fill=255)
        else:
            draw.line(pts, fill=255, width=line_width, joint="curve" if line_width > 2 else None)
    return np.asarray(img)


def render_stroke3(values: np.ndarray, size: int = 64, **kwargs: int) -> np.ndarray:
    """Rasterize one stroke-3 sequence (see :func:`render_strokes`)."""
    return render_strokes(stroke3_to_strokes(values), size, **kwargs)

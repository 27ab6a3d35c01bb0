"""QuickDraw on shards (:mod:`dlprep.scale`): what one shard reads and writes.

Bitmaps: a shard is a row range ``[start, end)`` of one category's ``numpy_bitmap`` .npy
(at most :data:`SHARD_ROWS` rows); its part is those rows as a plain ``.npy``, then their
exact pixel sums and squared sums (the train mean/std are reduced from them). Strokes: a shard
is one category's ndjson or binary file read from the start (``--per-class`` and
``--recognized-only`` count the drawings in file order, so such a category is not cut), or,
without ``--per-class``, a byte range of an ndjson file cut at line starts; its part is
five ``.npy`` arrays back to back: the stroke-3 ``values`` of its drawings, their lengths,
``recognized``, ``key_id`` and ``countrycode``. Parts are read back with the header-checked
reader or ``np.load(allow_pickle=False)``: nothing is ever unpickled.
"""

from __future__ import annotations

import errno
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DlprepError
from ..formats.npy import read_npy_header, read_npy_rows
from ..formats.quickdraw import Drawing, iter_binary, iter_ndjson, parse_ndjson_line, to_stroke3
from ..pixelstats import image_sums
from ..scale.shards import ShardSpec

#: bitmap rows per shard (a multiple of the 16384-row write block; about 51 MB of pixels)
SHARD_ROWS = 65536
#: what a bitmap part holds (in the specs: parts of another format are not resumed)
PART_FORMAT = 2
#: ndjson bytes per strokes shard when a whole file is read (no --per-class)
RANGE_BYTES = 64 << 20


def run_quickdraw_shard(spec: ShardSpec, part: Path | None) -> dict[str, Any]:
    """A shard function (see :mod:`dlprep.scale`): a bitmap row range or a category's
    drawings -> the part; returns ``{"count": drawings}`` (and ``points`` for strokes)."""
    assert part is not None
    if spec.option("kind") == "bitmap":
        return _bitmap_shard(spec, part)
    return _strokes_shard(spec, part)


def _write_part(part: Path, buf: io.BytesIO) -> None:
    """Plain file writes (numpy's own lose errno: a full disk must stay ENOSPC)."""
    try:
        with open(part, "wb") as fh:
            fh.write(buf.getbuffer())
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DlprepError(f"{part.parent}: no space left on the device while writing "
                              f"QuickDraw shard parts ({exc.strerror}); free some space or "
                              f"use another --cache-dir") from None
        raise


def _bitmap_shard(spec: ShardSpec, part: Path) -> dict[str, Any]:
    path = Path(spec.paths[0])
    rows = read_npy_rows(path, spec.end - spec.start, spec.start, read_npy_header(path))
    rows = np.ascontiguousarray(rows)
    buf = io.BytesIO()
    np.save(buf, rows, allow_pickle=False)
    images = rows.reshape(-1, 28, 28, 1)
    np.save(buf, image_sums(images), allow_pickle=False)
    _write_part(part, buf)
    return {"count": len(rows)}


def read_bitmap_part(part: Path) -> tuple[np.ndarray, np.ndarray]:
    """A bitmap part's rows, uint8 (n, 784), and their exact pixel sums, uint64 (n, 2, 1)."""
    with open(part, "rb") as fh:
        return np.load(fh, allow_pickle=False), np.load(fh, allow_pickle=False)


def line_ranges(path: Path, size: int | None = None) -> list[tuple[int, int]]:
    """``[start, end)`` byte ranges of about ``size`` (:data:`RANGE_BYTES`) covering the
    ndjson file ``path``, each starting at a line start: the first line that starts at or
    after each multiple of ``size`` (a pure function of the file's bytes)."""
    size = max(1, size or RANGE_BYTES)
    total = path.stat().st_size
    starts = [0]
    with open(path, "rb") as fh:
        for cut in range(size, total, size):
            if cut <= starts[-1]:
                continue  # a line longer than ``size``: the next cut after its end
            fh.seek(cut - 1)
            pos = cut - 1
            while True:  # the byte after the next newline at or after cut - 1
                chunk = fh.read(1 << 16)
                if not chunk:
                    pos = total
                    break
                nl = chunk.find(b"\n")
                if nl >= 0:
                    pos += nl + 1
                    break
                pos += len(chunk)
            if starts[-1] < pos < total:
                starts.append(pos)
    return list(zip(starts, [*starts[1:], total], strict=True))


def iter_ndjson_range(path: Path, start: int, end: int) -> Iterator[Drawing]:
    """The drawings of the lines that start in ``[start, end)`` (``start`` a line start), with
    error offsets counted from the start of the file, as :func:`iter_ndjson` gives them."""
    with open(path, "rb") as fh:
        fh.seek(start)
        offset = start
        while offset < end:
            line = fh.readline()
            if not line:
                return
            at, offset = offset, offset + len(line)
            if line.strip():
                yield parse_ndjson_line(line, path, at)


def _strokes_shard(spec: ShardSpec, part: Path) -> dict[str, Any]:
    path = Path(spec.paths[0])
    if spec.end > spec.start:  # a byte range of an ndjson file
        drawings = iter_ndjson_range(path, spec.start, spec.end)
    else:
        drawings = (iter_binary if spec.option("layout") == "binary" else iter_ndjson)(path)
    limit = spec.option("limit") or None
    recognized_only = bool(spec.option("recognized_only"))
    values: list[np.ndarray] = []
    key_id: list[str] = []
    country: list[str] = []
    recognized: list[int] = []
    for drawing in drawings:
        if limit is not None and len(values) >= limit:
            break
        if recognized_only and not drawing.recognized:
            continue
        values.append(to_stroke3(drawing.strokes))
        key_id.append(drawing.key_id)
        country.append(drawing.countrycode)
        recognized.append(int(drawing.recognized))
    flat = np.concatenate(values) if values else np.zeros((0, 3), np.float32)
    buf = io.BytesIO()
    for arr in (np.asarray(flat, np.float32), np.array([len(v) for v in values], np.int64),
                np.asarray(recognized, np.int64), np.asarray(key_id, dtype=np.str_),
                np.asarray(country, dtype=np.str_)):
        np.save(buf, arr, allow_pickle=False)
    _write_part(part, buf)
    return {"count": len(values), "points": int(len(flat))}


@dataclass
class StrokesPart:
    """A strokes part read back: ``values`` float32 (T, 3), ``lengths`` (n,) and the meta."""

    values: np.ndarray
    lengths: np.ndarray
    recognized: np.ndarray
    key_id: np.ndarray
    countrycode: np.ndarray


def read_strokes_part(part: Path) -> StrokesPart:
    with open(part, "rb") as fh:
        arrays = [np.load(fh, allow_pickle=False) for _ in range(5)]
    return StrokesPart(*arrays)

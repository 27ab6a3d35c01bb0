"""QuickDraw on shards (:mod:`dlprep.scale`): what one shard reads and writes.

Bitmaps: a shard is a row range ``[start, end)`` of one category's ``numpy_bitmap`` .npy
(at most :data:`SHARD_ROWS` rows); its part is those rows as a plain ``.npy``, then their
exact pixel sums and squared sums (the train mean/std are reduced from them). Strokes: a shard
is one category's ndjson or binary file read from the start (``--per-class`` and
``--recognized-only`` count the drawings in file order, so a category is not cut); its part is
five ``.npy`` arrays back to back: the stroke-3 ``values`` of its drawings, their lengths,
``recognized``, ``key_id`` and ``countrycode``. Parts are read back with the header-checked
reader or ``np.load(allow_pickle=False)``: nothing is ever unpickled.
"""

from __future__ import annotations

import errno
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DlprepError
from ..formats.npy import read_npy_header, read_npy_rows
from ..formats.quickdraw import iter_binary, iter_ndjson, to_stroke3
from ..scale.shards import ShardSpec
from .image_shards import image_sums

#: bitmap rows per shard (a multiple of the 16384-row write block; about 51 MB of pixels)
SHARD_ROWS = 65536
#: what a bitmap part holds (in the specs: parts of another format are not resumed)
PART_FORMAT = 2
SUMS_ROWS = 4096  # image_sums counts with an int64 per pixel: in blocks of 25 MB


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
    sums = [image_sums(images[i:i + SUMS_ROWS]) for i in range(0, len(images), SUMS_ROWS)]
    np.save(buf, np.concatenate(sums) if sums else image_sums(images), allow_pickle=False)
    _write_part(part, buf)
    return {"count": len(rows)}


def read_bitmap_part(part: Path) -> tuple[np.ndarray, np.ndarray]:
    """A bitmap part's rows, uint8 (n, 784), and their exact pixel sums, uint64 (n, 2, 1)."""
    with open(part, "rb") as fh:
        return np.load(fh, allow_pickle=False), np.load(fh, allow_pickle=False)


def _strokes_shard(spec: ShardSpec, part: Path) -> dict[str, Any]:
    path = Path(spec.paths[0])
    reader = iter_binary if spec.option("layout") == "binary" else iter_ndjson
    limit = spec.option("limit") or None
    recognized_only = bool(spec.option("recognized_only"))
    values: list[np.ndarray] = []
    key_id: list[str] = []
    country: list[str] = []
    recognized: list[int] = []
    for drawing in reader(path):
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

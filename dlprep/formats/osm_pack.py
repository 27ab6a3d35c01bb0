"""Drawn block canvases -> the tiles that are written, in one pass over the dirty tiles.

A block's layers are drawn into one uint8 (C, H, W) canvas with a margin
(:func:`dlprep.formats.osm_draw.render_block`), each block with the next value of a cycle
(its pixels are those equal to that value). :func:`pack_tiles` takes the dirty tiles out of
such a canvas, already in the file's layout: 0/255 pixels, channels last (k, s, s, C), with
the drawn pixels per tile and channel and in any channel; :func:`pack_labels` gives each
tile's label id from the label raster. Where the package was built with a C compiler, both
are one compiled loop over the tiles' bytes (``dlprep/formats/_osmpack.c``: read once, written
once, the GIL released); otherwise the same results come from NumPy and OpenCV in several
passes (gather, compare, count, interleave). ``DLPREP_OSM_COMPILED=0`` forces the latter.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np

log = logging.getLogger("dlprep")

_LOADED: dict[str, Any] = {}


def compiled() -> Any:
    """The compiled kernels (the ``_osmpack`` extension module), or None: not built here, or
    ``DLPREP_OSM_COMPILED=0`` (read once, at the first call)."""
    if "lib" not in _LOADED:
        _LOADED["lib"] = None
        if os.environ.get("DLPREP_OSM_COMPILED", "1").strip().lower() not in (
                "0", "no", "false", "off"):
            try:
                from . import _osmpack  # type: ignore[attr-defined]

                _LOADED["lib"] = _osmpack
            except ImportError as exc:
                log.debug("osm tiles: no compiled kernels (%s); NumPy/OpenCV instead", exc)
    return _LOADED["lib"]


def pack_tiles(canvas: np.ndarray, margin: int, value: int, rows: np.ndarray,
               cols: np.ndarray, size: int, out: np.ndarray, per: np.ndarray,
               union: np.ndarray, need: int | None = None) -> None:
    """The tiles (rows[i], cols[i]) of a C-contiguous uint8 (C, H, W) ``canvas`` (tile (r, c)
    starts at pixel (margin + r * size, margin + c * size)) whose pixels equal ``value``:
    into ``out`` uint8 (k, size, size, C) as 0/255, channels last; ``per`` int64 (k, C) the
    drawn pixels per channel, ``union`` int64 (k,) in any channel (without the compiled
    kernels only exact where every channel has fewer than ``need``; at least ``need``
    elsewhere)."""
    lib = compiled()
    rows, cols = np.ascontiguousarray(rows, np.int64), np.ascontiguousarray(cols, np.int64)
    if lib is not None and canvas.dtype == np.uint8 and canvas.flags.c_contiguous and \
            out.flags.c_contiguous and _int64s(per, union):
        c, h, w = canvas.shape
        lib.pack(canvas, c, h, w, margin, int(value), rows, cols, size, out, per, union)
        return
    from .osm_draw import binarise, gather_planes, interleave, planar_counts

    tiles = binarise(gather_planes(canvas[:, margin:, margin:], size, rows, cols), value)
    p, u = planar_counts(tiles, need)
    out[...] = interleave(tiles)
    per[...] = p
    union[...] = u


def pack_labels(label: np.ndarray, margin: int, rows: np.ndarray, cols: np.ndarray,
                size: int, out: np.ndarray) -> None:
    """Per tile (rows[i], cols[i]) of a C-contiguous (H, W) label raster (unsigned ids; the
    tiles placed as in :func:`pack_tiles`): the id covering most of its pixels (0 when none
    is labelled; ties go to the smaller id), into int64 ``out`` (k,)."""
    lib = compiled()
    rows, cols = np.ascontiguousarray(rows, np.int64), np.ascontiguousarray(cols, np.int64)
    if lib is not None and label.dtype in (np.uint8, np.uint16) and \
            label.flags.c_contiguous and _int64s(out):
        h, w = label.shape
        lib.labels(label, label.dtype.itemsize, h, w, margin, rows, cols, size, out)
        return
    from .osm_draw import gather_labels, tile_labels

    out[...] = tile_labels(gather_labels(label[margin:, margin:], size, rows, cols))


def _int64s(*arrays: np.ndarray) -> bool:
    return all(a.dtype == np.int64 and a.flags.c_contiguous for a in arrays)

"""The tile writer of ``--format tiles``: ``images`` chunked and deflated, written once.

Map tiles are 0/255 masks, mostly runs of one value (forest interiors, empty land): deflate
shrinks them 20-50x. Each chunk of ``chunk_rows`` tiles is compressed here with ISA-L (zlib
format, what HDF5's gzip filter reads; about 6 GB/s on such data) and written with
``write_direct_chunk``, so HDF5's filter pipeline and a scratch copy are skipped; a chunk of
identical whole-tile values (the common case) is compressed once and reused. The number of
tiles is not known in advance: ``images`` grows as chunks arrive (``maxshape=None``). The
file layout is docs/FORMAT.md's "chunked + gzip" one; loaders read it chunk-wise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from isal import isal_zlib

from ..errors import StoreError
from ..formats.osm_pack import compiled
from ..pixelstats import mean_std
from ..store.checksum import CrcAppend, crc32, seal
from ..store.h5file import abandon_file, create_file
from ..store.layout import label_axes, write_common, write_provenance

LEVEL = 1  # ISA-L level 1: deflate at several GB/s; 0/255 tiles still shrink 20-50x


class ChunkEncoder:
    """Tiles into deflated chunks of ``chunk_rows``: uint8 (size, size, C) tiles appended with
    :meth:`add` (drawn tiles) and :meth:`add_uniform` (runs of tiles where every layer is 0
    or 255 over the whole tile), handed on in order to :meth:`_write_chunk`, with the CRC-32
    of all pixels so far (``crc``); :meth:`flush` hands on a last partial chunk."""

    def __init__(self, shape: tuple[int, int, int], chunk_rows: int = 16) -> None:
        self.shape = tuple(int(s) for s in shape)
        self.k = int(chunk_rows)
        self.tile_bytes = int(np.prod(self.shape))
        self.n = 0  # tiles handed on
        self.buf = np.zeros((self.k, *self.shape), np.uint8)
        self.fill = 0  # tiles in buf
        self.crc = 0  # CRC-32 of the pixels written so far (chunks are written in order)
        self._protos: dict[int, np.ndarray] = {}
        self._chunks: dict[int, tuple[bytes, int]] = {}  # bits -> deflated chunk, its CRC
        self._append = CrcAppend(self.k * self.tile_bytes)

    def _write_chunk(self, data: bytes, rows: int) -> None:
        raise NotImplementedError

    def proto(self, bits: int) -> np.ndarray:
        """The tile whose channel k is 255 where bit k of ``bits`` is set, else 0."""
        tile = self._protos.get(bits)
        if tile is None:
            on = [(bits >> c) & 1 for c in range(self.shape[2])]
            tile = np.broadcast_to(np.array(on, np.uint8) * np.uint8(255), self.shape).copy()
            self._protos[bits] = tile
        return tile

    def add(self, tiles: np.ndarray) -> None:
        """Append drawn tiles, uint8 (n, size, size, C). Whole chunks of a C-contiguous
        ``tiles`` are compressed from it directly (no copy into the chunk buffer)."""
        at = 0
        while at < len(tiles):
            if not self.fill and len(tiles) - at >= self.k and tiles.flags.c_contiguous:
                raw = memoryview(tiles[at:at + self.k]).cast("B")
                self.crc = crc32(raw, self.crc)
                self._write_chunk(isal_zlib.compress(raw, LEVEL), self.k)
                at += self.k
                continue
            take = min(self.k - self.fill, len(tiles) - at)
            self.buf[self.fill:self.fill + take] = tiles[at:at + take]
            self.fill += take
            at += take
            if self.fill == self.k:
                self._flush()

    def add_block(self, code: np.ndarray, at: np.ndarray, tiles: np.ndarray | None) -> None:
        """Append a block's kept tiles in order: ``code`` (int64) per tile, the layer bits of
        a whole-tile value (:meth:`proto`), or -1 for a drawn tile, ``tiles[at]``. The same
        chunks as :meth:`add` and :meth:`add_uniform` over its runs, assembled by the
        compiled kernels where they are built (one call per chunk, not per run)."""
        lib = compiled()
        code, at = np.ascontiguousarray(code, np.int64), np.ascontiguousarray(at, np.int64)
        if lib is None or (tiles is not None and not tiles.flags.c_contiguous):
            return self._add_runs(code, at, tiles)
        src = np.empty(0, np.uint8) if tiles is None else tiles
        k, n, i = self.k, len(code), 0
        while i < n:
            if not self.fill and n - i >= k:  # a whole chunk from here?
                c, last = int(code[i]), i + k - 1
                if c >= 0 and (code[i:i + k] == c).all():  # one whole-tile value
                    self.add_uniform(c, k)
                    i += k
                    continue
                if c < 0 and int(at[last]) - int(at[i]) == k - 1 and \
                        (code[i:i + k] < 0).all() and (np.diff(at[i:i + k]) == 1).all():
                    assert tiles is not None  # drawn neighbours: deflated in place
                    self.add(tiles[int(at[i]):int(at[i]) + k])
                    i += k
                    continue
            i, self.fill = lib.assemble(self.buf, self.fill, k, self.tile_bytes, self.shape[2],
                                        code, at, i, n, src)
            if self.fill == k:
                self._flush()

    def _add_runs(self, code: np.ndarray, at: np.ndarray, tiles: np.ndarray | None) -> None:
        """:meth:`add_block` a run at a time (:meth:`add`, :meth:`add_uniform`)."""
        # a run ends where the code changes, or between drawn tiles that are not neighbours
        # in ``tiles`` (a dropped one between them)
        cut = np.flatnonzero((code[1:] != code[:-1]) |
                             ((code[1:] < 0) & (at[1:] != at[:-1] + 1)))
        ends = (cut + 1).tolist()
        codes, ats = code[[0, *ends]].tolist(), at[[0, *ends]].tolist()
        for a, b, c, t in zip([0, *ends], [*ends, len(code)], codes, ats, strict=True):
            if c < 0:
                assert tiles is not None
                self.add(tiles[t:t + b - a])
            else:
                self.add_uniform(c, b - a)

    def add_uniform(self, bits: int, count: int) -> None:
        """Append ``count`` copies of :meth:`proto` ``(bits)``."""
        tile = self.proto(bits)
        if count and self.fill:  # complete the pending chunk first
            take = min(count, self.k - self.fill)
            self.buf[self.fill:self.fill + take] = tile
            self.fill += take
            count -= take
            if self.fill == self.k:
                self._flush()
        while count >= self.k:  # whole chunks of one value: compressed once
            got = self._chunks.get(bits)
            if got is None:
                self.buf[:] = tile
                raw = memoryview(self.buf).cast("B")
                got = self._chunks[bits] = (isal_zlib.compress(raw, LEVEL), crc32(raw))
            self.crc = self._append(self.crc, got[1])
            self._write_chunk(got[0], self.k)
            count -= self.k
        if count:
            self.buf[:count] = tile
            self.fill = count

    def _flush(self) -> None:
        if not self.fill:
            return
        if self.fill < self.k:  # the last chunk: rows past the end are stored but unused
            self.buf[self.fill:] = 0
        raw = memoryview(self.buf).cast("B")
        self.crc = crc32(raw[:self.fill * self.tile_bytes], self.crc)
        self._write_chunk(isal_zlib.compress(raw, LEVEL), self.fill)
        self.fill = 0

    def flush(self) -> None:
        """Hand on the tiles of a last, partial chunk."""
        self._flush()

    def __len__(self) -> int:
        return self.n + self.fill


class TileWriter(ChunkEncoder):
    """The ``images`` of a tile file, appended with :meth:`add` and :meth:`add_uniform` (or
    chunks deflated elsewhere, :meth:`store_chunk`); then :meth:`finish` (inside the
    builder's atomic output) with labels, splits and per-channel sums."""

    def __init__(self, path: Path, shape: tuple[int, int, int], chunk_rows: int = 16) -> None:
        super().__init__(shape, chunk_rows)
        self.path = Path(path)
        self.f = create_file(self.path)
        try:
            self.images = self.f.create_dataset(
                "images", shape=(0, *self.shape), maxshape=(None, *self.shape),
                chunks=(self.k, *self.shape), dtype=np.uint8, compression="gzip",
                compression_opts=LEVEL)
            label_axes(self.images, ("batch", "height", "width", "channel"))
        except BaseException:
            abandon_file(self.f, self.path)
            raise
        self.capacity = 0

    def _write_chunk(self, data: bytes, rows: int) -> None:
        self.store_chunk(data, rows)

    def store_chunk(self, data: bytes, rows: int) -> None:
        """Write the next chunk, deflated (``rows`` tiles; fewer than ``chunk_rows`` only for
        the last one). Chunks deflated by a :class:`ChunkEncoder` elsewhere leave ``crc`` to
        the caller."""
        start = self.n
        if start + self.k > self.capacity:
            self.capacity = max(2 * self.capacity, start + self.k, 64 * self.k)
            self.images.resize((self.capacity, *self.shape))
        self.images.id.write_direct_chunk((start, 0, 0, 0), data, 0)
        self.n += rows

    def finish(self, *, labels: np.ndarray, channel_counts: np.ndarray, train: np.ndarray,
               splits: Mapping[str, np.ndarray], classes: Sequence[str] | None,
               meta: Mapping[str, Sequence[Any]] | None, recipe: str, recipe_version: str,
               sources: Sequence[Mapping[str, Any]] = (), license: str = "",
               citation: str = "", config: Mapping[str, Any] | None = None,
               extra_attrs: Mapping[str, Any] | None = None) -> None:
        """Write everything but the pixels. ``channel_counts`` int (n, C): drawn pixels per
        tile and channel (pixels are 0 or 255, so mean/std of the ``train`` rows follow from
        them without reading tiles back)."""
        self._flush()
        n, c = self.n, self.shape[2]
        if len(labels) != n or len(channel_counts) != n:
            raise StoreError(f"{self.path}: {len(labels)} labels for {n} tiles")
        self.images.resize((n, *self.shape))
        lab = self.f.create_dataset("labels", data=np.asarray(labels, np.int64))
        label_axes(lab, ("batch",))
        write_common(self.f, splits, classes, meta, n)
        counts = np.asarray(channel_counts, np.uint64)[np.asarray(train, np.int64)].sum(axis=0)
        pixels = len(train) * self.shape[0] * self.shape[1]
        mean, std = mean_std(counts * 255, counts * 255 * 255, pixels, c)
        over = "train split" if "train" in splits else "all samples"
        for key, value in (("mean", mean), ("std", std)):
            self.f.create_dataset(key, data=value).attrs["computed_over"] = \
                f"{over}, pixels in [0, 1]"
        write_provenance(self.f, "image", recipe, recipe_version, sources, license, citation,
                         config or {}, extra_attrs)
        seal(self.f, {"images": self.crc})
        self.f.flush()
        self.f.close()

    def close(self) -> None:
        """Abandon an unfinished file (see :func:`dlprep.store.h5file.abandon_file`)."""
        abandon_file(self.f, self.path)

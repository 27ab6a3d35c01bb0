"""IDX (MNIST family): big-endian, magic ``0x00 0x00 <dtype> <ndim>``, then ndim uint32 sizes."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..errors import FormatError
from ..limits import DEFAULT_LIMITS, BoundedReader, ExtractLimits, check_declared
from ..store.osio import aligned_empty
from .compressed import STREAM_ERRORS, open_maybe_compressed

DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def parse_idx_header(data: bytes, source: object = "<bytes>"
                     ) -> tuple[tuple[int, ...], np.dtype, int]:
    """``(dims, dtype, header length)`` from the start of an IDX file (the magic number and
    the sizes; more bytes may follow)."""
    if len(data) < 4:
        raise FormatError(source, len(data), "truncated IDX header (need 4 magic bytes)")
    if data[0] != 0 or data[1] != 0:
        raise FormatError(source, 0, f"bad IDX magic {data[:4].hex()} (must start 0000)")
    code, ndim = data[2], data[3]
    if code not in DTYPES:
        raise FormatError(source, 2, f"unknown IDX dtype code 0x{code:02x}")
    if ndim == 0:
        raise FormatError(source, 3, "IDX with 0 dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise FormatError(source, len(data), f"truncated IDX header (need {header} bytes)")
    dims = tuple(int(d) for d in np.frombuffer(data, ">u4", ndim, 4))
    return dims, np.dtype(DTYPES[code]), header


def parse_idx_bytes(data: bytes, source: object = "<bytes>") -> np.ndarray:
    """Decode IDX bytes into a native-endian array; errors name ``source`` and the byte offset."""
    dims, dtype, header = parse_idx_header(data, source)
    expected = header + math.prod(dims) * dtype.itemsize
    if len(data) < expected:
        raise FormatError(source, len(data),
                          f"truncated IDX data: shape {dims} needs {expected} bytes")
    if len(data) > expected:
        raise FormatError(source, expected, f"{len(data) - expected} trailing bytes after IDX data")
    arr = np.frombuffer(data, dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=False)


class IdxStream:
    """An IDX file (possibly compressed) read front to back in blocks of whole items, so
    inflating overlaps with the consumer's work and memory stays small.

    The header is read and checked on opening, and the size it declares (N x H x W x item
    size) bounds everything after it: a compressed file whose declared size breaks
    ``limits`` (:mod:`dlprep.limits`: total size, ratio to the file's size) is refused before
    any data is inflated, and the stream refuses to inflate more than the declared size (+1
    byte to see trailing data). An uncompressed file must have exactly the declared size.
    :meth:`blocks` checks the length like :func:`parse_idx_bytes`."""

    def __init__(self, path: Path, limits: ExtractLimits | None = None) -> None:
        self.path = Path(path)
        self.fh = open_maybe_compressed(self.path, limits=limits)
        try:
            head = self._read(4)
            if len(head) == 4:
                head += self._read(4 * head[3])
            self.dims, self.dtype, self.header = parse_idx_header(head, self.path)
            self.item_bytes = math.prod(self.dims[1:]) * self.dtype.itemsize
            self.size = self.header + self.dims[0] * self.item_bytes
            self._check_declared_size(limits)
        except BaseException:
            self.fh.close()
            raise

    def _check_declared_size(self, limits: ExtractLimits | None) -> None:
        packed = os.fstat(self.fh.fileno()).st_size if not isinstance(self.fh, BoundedReader) \
            else self.fh.budget.packed
        if isinstance(self.fh, BoundedReader):
            check_declared(self.path, self.size, packed, limits or DEFAULT_LIMITS,
                           f"IDX header (shape {self.dims}, {self.dtype})")
            self.fh.max_bytes = self.size + 1  # one more byte shows trailing data
        elif packed < self.size:
            raise FormatError(self.path, packed, f"truncated IDX data: shape {self.dims} needs "
                                                 f"{self.size:,} bytes, the file has {packed:,}")
        elif packed > self.size:
            raise FormatError(self.path, self.size, f"{packed - self.size:,} trailing bytes "
                                                    f"after IDX data")

    def _read(self, n: int) -> bytes:
        try:
            return self.fh.read(n)
        except STREAM_ERRORS as exc:
            raise FormatError(self.path, -1, f"corrupt compressed stream: {exc}") from exc

    def _fill(self, k: int, done: int) -> np.ndarray:
        """The next ``k`` items (item ``done`` onwards) as a native-endian array."""
        buf = aligned_empty(k * self.item_bytes)  # page-aligned: written to disk without a copy
        view = memoryview(buf)
        got = 0
        while got < len(view):
            try:
                n = self.fh.readinto(view[got:])  # type: ignore[attr-defined]
            except STREAM_ERRORS as exc:
                raise FormatError(self.path, -1, f"corrupt compressed stream: {exc}") from exc
            if not n:
                raise FormatError(self.path, self.header + done * self.item_bytes + got,
                                  f"truncated IDX data: shape {self.dims} needs "
                                  f"{self.size} bytes")
            got += n
        arr = buf.view(self.dtype).reshape(k, *self.dims[1:])
        return arr.astype(self.dtype.newbyteorder("="), copy=False)

    def _check_end(self) -> None:
        if self._read(1):
            raise FormatError(self.path, self.size, "trailing bytes after IDX data")

    def blocks(self, target_bytes: int = 4 << 20, align: int = 1) -> Iterator[np.ndarray]:
        """Native-endian arrays of whole items, about ``target_bytes`` each; with ``align``,
        a block holds a multiple of ``align`` bytes when it can (a writer given page-aligned
        blocks sends them to disk without a copy)."""
        step = align // math.gcd(max(1, self.item_bytes), max(1, align))
        per = max(1, target_bytes // max(1, self.item_bytes))
        if per >= step:
            per -= per % step
        done = 0
        while done < self.dims[0]:
            k = min(per, self.dims[0] - done)
            yield self._fill(k, done)
            done += k
        self._check_end()

    def read_array(self) -> np.ndarray:
        """The whole array (one buffer of the declared size), length-checked."""
        arr = self._fill(self.dims[0], 0)
        self._check_end()
        return arr

    def close(self) -> None:
        self.fh.close()

    def __enter__(self) -> IdxStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_idx(path: Path, limits: ExtractLimits | None = None) -> np.ndarray:
    """Read a (possibly gzip/bz2/xz-compressed) IDX file, bounded as :class:`IdxStream` says."""
    with IdxStream(path, limits) as stream:
        return stream.read_array()


def read_idx_images(path: Path, limits: ExtractLimits | None = None) -> np.ndarray:
    """Images as uint8 (N, H, W, 1)."""
    with IdxStream(path, limits) as stream:
        if len(stream.dims) != 3 or stream.dtype != np.uint8:
            raise FormatError(path, 0, f"expected uint8 images (N, H, W), got {stream.dtype} "
                                       f"{stream.dims}")
        return stream.read_array()[..., None]


def read_idx_labels(path: Path, n_classes: int | None = None,
                    limits: ExtractLimits | None = None, *,
                    count: int | None = None) -> np.ndarray:
    """Labels as int64 (N,), optionally range-checked; ``count``: the N the header must declare
    (checked before any data is read)."""
    with IdxStream(path, limits) as stream:
        if len(stream.dims) != 1:
            raise FormatError(path, 0, f"expected 1-D labels, got shape {stream.dims}")
        if count is not None and stream.dims[0] != count:
            raise FormatError(path, 4, f"{stream.dims[0]} labels for {count} images")
        arr = stream.read_array()
    labels = arr.astype(np.int64)
    if n_classes is not None and labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        bad = int(np.flatnonzero((labels < 0) | (labels >= n_classes))[0])
        raise FormatError(path, 8 + bad, f"label {labels[bad]} outside [0, {n_classes})")
    return labels

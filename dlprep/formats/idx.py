"""IDX (MNIST family): big-endian, magic ``0x00 0x00 <dtype> <ndim>``, then ndim uint32 sizes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..errors import FormatError
from .compressed import DECOMPRESS_ERRORS, open_maybe_compressed, read_all

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
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(data) < expected:
        raise FormatError(source, len(data),
                          f"truncated IDX data: shape {dims} needs {expected} bytes")
    if len(data) > expected:
        raise FormatError(source, expected, f"{len(data) - expected} trailing bytes after IDX data")
    arr = np.frombuffer(data, dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=False)


class IdxStream:
    """An IDX file (possibly compressed) read front to back in blocks of whole items, so
    inflating overlaps with the consumer's work and memory stays small. The header is read
    and checked on opening; :meth:`blocks` checks the length like :func:`parse_idx_bytes`."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.fh = open_maybe_compressed(self.path)
        try:
            head = self._read(4)
            if len(head) == 4:
                head += self._read(4 * head[3])
            self.dims, self.dtype, self.header = parse_idx_header(head, self.path)
        except BaseException:
            self.fh.close()
            raise
        self.item_bytes = int(np.prod(self.dims[1:], dtype=np.int64)) * self.dtype.itemsize
        self.size = self.header + self.dims[0] * self.item_bytes

    def _read(self, n: int) -> bytes:
        try:
            return self.fh.read(n)
        except (OSError, EOFError, *DECOMPRESS_ERRORS) as exc:
            raise FormatError(self.path, -1, f"corrupt compressed stream: {exc}") from exc

    def blocks(self, target_bytes: int = 4 << 20) -> Iterator[np.ndarray]:
        """Native-endian arrays of whole items, about ``target_bytes`` each."""
        per = max(1, target_bytes // max(1, self.item_bytes))
        done = 0
        while done < self.dims[0]:
            k = min(per, self.dims[0] - done)
            buf = np.empty(k * self.item_bytes, np.uint8)
            view = memoryview(buf)
            got = 0
            while got < len(view):
                try:
                    n = self.fh.readinto(view[got:])  # type: ignore[attr-defined]
                except (OSError, EOFError, *DECOMPRESS_ERRORS) as exc:
                    raise FormatError(self.path, -1, f"corrupt compressed stream: {exc}") from exc
                if not n:
                    raise FormatError(self.path, self.header + done * self.item_bytes + got,
                                      f"truncated IDX data: shape {self.dims} needs "
                                      f"{self.size} bytes")
                got += n
            arr = buf.view(self.dtype).reshape(k, *self.dims[1:])
            yield arr.astype(self.dtype.newbyteorder("="), copy=False)
            done += k
        if self._read(1):
            raise FormatError(self.path, self.size, "trailing bytes after IDX data")

    def close(self) -> None:
        self.fh.close()

    def __enter__(self) -> IdxStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_idx(path: Path) -> np.ndarray:
    """Read a (possibly gzip/bz2/xz-compressed) IDX file."""
    return parse_idx_bytes(read_all(path), path)


def read_idx_images(path: Path) -> np.ndarray:
    """Images as uint8 (N, H, W, 1)."""
    arr = read_idx(path)
    if arr.ndim != 3 or arr.dtype != np.uint8:
        raise FormatError(path, 0, f"expected uint8 images (N, H, W), got {arr.dtype} {arr.shape}")
    return arr[..., None]


def read_idx_labels(path: Path, n_classes: int | None = None) -> np.ndarray:
    """Labels as int64 (N,), optionally range-checked."""
    arr = read_idx(path)
    if arr.ndim != 1:
        raise FormatError(path, 0, f"expected 1-D labels, got shape {arr.shape}")
    labels = arr.astype(np.int64)
    if n_classes is not None and labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        bad = int(np.flatnonzero((labels < 0) | (labels >= n_classes))[0])
        raise FormatError(path, 8 + bad, f"label {labels[bad]} outside [0, {n_classes})")
    return labels

"""NumPy ``.npy`` files, read with a checked header and never with pickle.

The header is read by :mod:`numpy.lib.format` (``read_magic``, ``read_array_header_1_0`` /
``_2_0``: a literal dict, never code) and refused unless the dtype is a plain numeric one:
object arrays (which need pickle) and structured dtypes are rejected, as ``np.load`` does with
``allow_pickle=False``. Rows are read after the header with a seek, so taking the first N rows
of a 100 MB file reads N rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format

from ..errors import FormatError

_ALLOWED_KINDS = "biuf"  # bool, signed, unsigned, float
_HEADER_READERS = {(1, 0): npy_format.read_array_header_1_0,
                   (2, 0): npy_format.read_array_header_2_0}


@dataclass(frozen=True)
class NpyHeader:
    """A validated header: dtype, shape, memory order and where the data starts (bytes)."""

    dtype: np.dtype
    shape: tuple[int, ...]
    fortran_order: bool
    data_offset: int

    @property
    def row_bytes(self) -> int:
        return int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize


def read_npy_header(path: Path) -> NpyHeader:
    """Parse and check the header of ``path``; FormatError (file, offset) when it is not safe."""
    with open(path, "rb") as fh:
        try:
            version = npy_format.read_magic(fh)
        except ValueError as exc:
            raise FormatError(path, 0, f"not a .npy file (magic \\x93NUMPY missing: {exc})") \
                from None
        reader = _HEADER_READERS.get(version)
        if reader is None:  # 3.0 only adds UTF-8 names of structured fields: refused anyway
            raise FormatError(path, 6, f"unsupported .npy version {version[0]}.{version[1]}")
        try:
            shape, fortran, dtype = reader(fh)
        except (ValueError, SyntaxError, TypeError, EOFError) as exc:
            raise FormatError(path, 8, f"unreadable .npy header dict: {exc}") from None
        data_offset = fh.tell()
    if dtype.names is not None or dtype.subdtype is not None:
        raise FormatError(path, 8, f"structured dtype {dtype.descr!r} refused (plain numeric only)")
    if dtype.hasobject or dtype.kind not in _ALLOWED_KINDS:
        raise FormatError(path, 8, f"dtype {dtype.str!r} refused: object/pickled .npy data is "
                                   f"never loaded (plain numeric dtypes only)")
    header = NpyHeader(dtype, tuple(shape), bool(fortran), data_offset)
    need = header.data_offset + math.prod(header.shape) * dtype.itemsize
    actual = path.stat().st_size
    if actual < need:
        raise FormatError(path, actual, f"truncated .npy data: {actual:,} bytes, header "
                                        f"{shape} {dtype} needs {need:,}")
    return header


def read_npy_rows(path: Path, max_rows: int | None = None, start: int = 0,
                  header: NpyHeader | None = None) -> np.ndarray:
    """Read rows ``start .. start + max_rows`` (to the end when None) of a C-order .npy file,
    header-checked; only those bytes are read.

    Returns an array of the header's dtype, shape ``(rows, *shape[1:])``.
    """
    header = header or read_npy_header(path)
    if header.fortran_order and len(header.shape) > 1:
        raise FormatError(path, header.data_offset, "Fortran-order .npy arrays are not supported")
    n = header.shape[0] if header.shape else 1
    start = min(max(start, 0), n)
    rows = n - start if max_rows is None else min(n - start, max_rows)
    row_bytes = header.row_bytes if header.shape else header.dtype.itemsize
    count = rows * row_bytes
    with open(path, "rb") as fh:
        fh.seek(header.data_offset + start * row_bytes)
        data = fh.read(count)
    if len(data) < count:
        raise FormatError(path, header.data_offset + len(data), "truncated .npy data")
    arr = np.frombuffer(data, dtype=header.dtype)
    return arr.reshape((rows, *header.shape[1:])) if header.shape else arr.reshape(())

"""NumPy ``.npy`` files, read with a checked header and never with pickle.

The header (magic ``\\x93NUMPY``, version, a Python-literal dict with ``descr``, ``fortran_order``
and ``shape``) is parsed with ``ast.literal_eval`` and refused unless ``descr`` is a plain
numeric dtype: object arrays (which need pickle) and structured dtypes are rejected. Rows are
read after the header with a seek, so taking the first N rows of a 100 MB file reads N rows.
"""

from __future__ import annotations

import ast
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import FormatError

MAGIC = b"\x93NUMPY"
_ALLOWED_KINDS = "biuf"  # bool, signed, unsigned, float


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
        head = fh.read(10)
        if len(head) < 10 or not head.startswith(MAGIC):
            raise FormatError(path, 0, "not a .npy file (magic \\x93NUMPY missing)")
        major = head[6]
        if major == 1:
            (hlen,) = struct.unpack("<H", head[8:10])
            start = 10
        elif major in (2, 3):
            fh.seek(8)
            raw = fh.read(4)
            if len(raw) < 4:
                raise FormatError(path, 8, "truncated .npy header length")
            (hlen,) = struct.unpack("<I", raw)
            start = 12
        else:
            raise FormatError(path, 6, f"unsupported .npy version {major}.{head[7]}")
        if hlen > 1 << 20:
            raise FormatError(path, start, f"implausible .npy header length {hlen}")
        fh.seek(start)
        text_bytes = fh.read(hlen)
    if len(text_bytes) < hlen:
        raise FormatError(path, start, "truncated .npy header")
    try:
        text = text_bytes.decode("utf-8" if major == 3 else "latin1")
        meta = ast.literal_eval(text)
    except (ValueError, SyntaxError, UnicodeDecodeError) as exc:
        raise FormatError(path, start, f"unreadable .npy header dict: {exc}") from exc
    if not isinstance(meta, dict) or set(meta) != {"descr", "fortran_order", "shape"}:
        raise FormatError(path, start, "the .npy header must hold exactly descr, fortran_order, "
                                       "shape")
    descr, shape, fortran = meta["descr"], meta["shape"], meta["fortran_order"]
    if not isinstance(descr, str):
        raise FormatError(path, start, f"structured dtype {descr!r} refused (plain numeric only)")
    try:
        dtype = np.dtype(descr)
    except TypeError as exc:
        raise FormatError(path, start, f"unknown dtype {descr!r}") from exc
    if dtype.hasobject or dtype.kind not in _ALLOWED_KINDS:
        raise FormatError(path, start, f"dtype {descr!r} refused: object/pickled .npy data is "
                                       f"never loaded (plain numeric dtypes only)")
    if not isinstance(shape, tuple) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise FormatError(path, start, f"bad shape {shape!r}")
    if not isinstance(fortran, bool):
        raise FormatError(path, start, f"bad fortran_order {fortran!r}")
    header = NpyHeader(dtype, shape, fortran, start + hlen)
    need = header.data_offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
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

"""Content checksums of every dataset in a prepared file, and their verification.

Each dataset carries the attribute ``checksum = "crc32:<8 hex digits>"``: the CRC-32 (the zlib
polynomial, as ``zlib.crc32``) of its elements' bytes in row-major order, little-endian as stored;
variable-length strings count as an 8-byte little-endian length followed by their UTF-8 bytes.
CRC-32 finds every burst of flipped bits up to 32 bits long and misses random damage with
probability 2**-32; it guards against bit rot, not against tampering (the raw downloads carry
sha256). The writers compute it while rows are written, in any order (CRCs of blocks combine,
:func:`crc32_combine`), so nothing is read back. Spec: docs/FORMAT.md.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Iterator, Mapping
from pathlib import Path

import h5py
import numpy as np

try:  # ISA-L (a dependency) computes CRC-32 about 3x faster than zlib; same values
    from isal.isal_zlib import crc32 as _crc32
except ImportError:  # pragma: no cover - isal is required; keep working without it
    from zlib import crc32 as _crc32

ATTR = "checksum"
ALGORITHM = "crc32"
_BLOCK_BYTES = 16 << 20
_POLY = 0xEDB88320


def crc32(data: bytes | memoryview | np.ndarray, value: int = 0) -> int:
    """CRC-32 of ``data``'s bytes (an array counts as its C-order bytes), continuing ``value``."""
    if isinstance(data, np.ndarray):
        data = memoryview(np.ascontiguousarray(data).reshape(-1)).cast("B")
    return _crc32(data, value) & 0xFFFFFFFF


def _gf2_times(mat: list[int], vec: int) -> int:
    out, i = 0, 0
    while vec:
        if vec & 1:
            out ^= mat[i]
        vec >>= 1
        i += 1
    return out


def _gf2_square(mat: list[int]) -> list[int]:
    return [_gf2_times(mat, mat[n]) for n in range(32)]


@functools.cache
def _zero_operators() -> list[list[int]]:
    """``ops[k]``: the GF(2) matrix that appends ``2**k`` zero bytes to a CRC-32 state."""
    one_bit = [_POLY] + [1 << n for n in range(31)]
    op = _gf2_square(_gf2_square(_gf2_square(one_bit)))  # 8 zero bits = one zero byte
    ops = [op]
    for _ in range(63):
        op = _gf2_square(op)
        ops.append(op)
    return ops


def crc32_combine(crc1: int, crc2: int, len2: int) -> int:
    """CRC-32 of ``A + B`` from ``crc32(A)``, ``crc32(B)`` and ``len(B)`` (zlib's method)."""
    ops, k = _zero_operators(), 0
    while len2 > 0:
        if len2 & 1:
            crc1 = _gf2_times(ops[k], crc1)
        len2 >>= 1
        k += 1
    return (crc1 ^ crc2) & 0xFFFFFFFF


class CrcAppend:
    """:func:`crc32_combine` for blocks B of one fixed ``length``, as four 256-entry tables:
    ``crc32(A + B)`` from ``crc32(A)`` and ``crc32(B)`` in a few table look-ups (the shift of
    ``crc32(A)`` by ``length`` zero bytes is linear, so it is tabled byte by byte once)."""

    def __init__(self, length: int) -> None:
        ops, k, n = _zero_operators(), 0, int(length)
        shift = [1 << i for i in range(32)]  # the identity: columns of the unit vectors
        while n:
            if n & 1:
                shift = [_gf2_times(ops[k], v) for v in shift]
            n >>= 1
            k += 1
        self.tables = [[_gf2_times(shift, b << (8 * j)) for b in range(256)] for j in range(4)]

    def __call__(self, crc_a: int, crc_b: int) -> int:
        t0, t1, t2, t3 = self.tables
        return (t0[crc_a & 255] ^ t1[(crc_a >> 8) & 255] ^ t2[(crc_a >> 16) & 255]
                ^ t3[crc_a >> 24] ^ crc_b)


def combine_blocks(blocks: list[tuple[int, int, int]], total: int) -> int | None:
    """CRC-32 of ``total`` bytes from ``(offset, length, crc)`` blocks, or None unless they
    tile ``[0, total)`` exactly (any order)."""
    value, pos = 0, 0
    for offset, length, crc in sorted(blocks):
        if offset != pos:
            return None
        value = crc32_combine(value, crc, length)
        pos += length
    return value if pos == total else None


def format_checksum(value: int) -> str:
    return f"{ALGORITHM}:{value:08x}"


def _is_vlen_str(dset: h5py.Dataset) -> bool:
    return h5py.check_string_dtype(dset.dtype) is not None and dset.dtype.kind == "O"


def _element_bytes(block: np.ndarray, vlen: bool) -> bytes | np.ndarray:
    if vlen:
        parts = []
        for v in block.reshape(-1):
            raw = v if isinstance(v, bytes) else str(v).encode("utf-8")
            parts.append(struct.pack("<Q", len(raw)) + raw)
        return b"".join(parts)
    if block.dtype.byteorder == ">":
        block = block.astype(block.dtype.newbyteorder("<"))
    return block


def _row_blocks(dset: h5py.Dataset) -> Iterator[np.ndarray]:
    if dset.shape == () or dset.shape is None:
        yield np.asarray(dset[()])
        return
    row = max(1, int(np.prod(dset.shape[1:], dtype=np.int64)) * dset.dtype.itemsize)
    step = max(1, _BLOCK_BYTES // row)
    if dset.chunks:
        step = max(dset.chunks[0], step // dset.chunks[0] * dset.chunks[0])
    for start in range(0, dset.shape[0], step):
        yield dset[start:start + step]


def dataset_crc32(dset: h5py.Dataset) -> int:
    """CRC-32 of a stored dataset as defined above, read in blocks of about 16 MB."""
    vlen = _is_vlen_str(dset)
    value = 0
    for block in _row_blocks(dset):
        value = crc32(_element_bytes(np.asarray(block), vlen), value)
    return value


def array_crc32(arr: np.ndarray) -> int:
    """CRC-32 of an in-memory array as it will be stored (numeric dtypes only)."""
    return crc32(_element_bytes(np.asarray(arr), False))


def _datasets(f: h5py.File) -> list[tuple[str, h5py.Dataset]]:
    found: list[tuple[str, h5py.Dataset]] = []

    def visit(name: str, obj: object) -> None:
        if isinstance(obj, h5py.Dataset):
            found.append((name, obj))

    f.visititems(visit)
    return found


def seal(f: h5py.File, known: Mapping[str, int] | None = None) -> None:
    """Write the ``checksum`` attribute of every dataset in ``f``: ``known`` CRCs (computed
    while writing) where given, else computed by reading the dataset back."""
    known = known or {}
    for name, dset in _datasets(f):
        value = known.get(name)
        dset.attrs[ATTR] = format_checksum(dataset_crc32(dset) if value is None else value)


def has_checksums(f: h5py.File) -> bool:
    """True when any dataset carries a checksum (files written before checksums existed have
    none)."""
    return any(ATTR in dset.attrs for _, dset in _datasets(f))


def verify_checksums(f: h5py.File, path: str | Path, *, quick: bool = False) -> list[str]:
    """Problems found in ``f`` (one line each, naming file and dataset): a dataset without a
    checksum, or (unless ``quick``) one whose bytes do not match it."""
    problems = []
    for name, dset in _datasets(f):
        stored = dset.attrs.get(ATTR)
        if isinstance(stored, bytes):
            stored = stored.decode()
        if not isinstance(stored, str) or not stored.startswith(f"{ALGORITHM}:"):
            problems.append(f"{path}: dataset {name!r} has no {ALGORITHM} checksum")
            continue
        if quick:
            continue
        try:
            actual = format_checksum(dataset_crc32(dset))
        except (OSError, ValueError, RuntimeError) as exc:
            problems.append(f"{path}: dataset {name!r} cannot be read ({exc})")
            continue
        if actual != stored:
            problems.append(f"{path}: dataset {name!r} is damaged (content {actual}, stored "
                            f"{stored})")
    return problems

"""Decompression limits on every reader that inflates: real gzip bombs, built small in the test."""

from __future__ import annotations

import gzip
import hashlib
import struct
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest

from dlprep.errors import ExtractionError, FormatError
from dlprep.formats.compressed import open_maybe_compressed
from dlprep.formats.idx import IdxStream, read_idx, read_idx_images, read_idx_labels
from dlprep.limits import BoundedReader, Budget, ExtractLimits, check_declared


def gzip_of_zeros(path: Path, head: bytes, zeros: int) -> Path:
    """A real gzip file: ``head`` then ``zeros`` zero bytes, compressed chunk by chunk."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = bytes(1 << 20)
    with open(path, "wb") as fh:
        fh.write(comp.compress(head))
        left = zeros
        while left:
            n = min(left, len(chunk))
            fh.write(comp.compress(chunk[:n]))
            left -= n
        fh.write(comp.flush())
    return path


def idx_header(code: int, dims: tuple[int, ...]) -> bytes:
    return bytes([0, 0, code, len(dims)]) + struct.pack(">" + "I" * len(dims), *dims)


def peak_bytes(fn) -> int:  # type: ignore[no-untyped-def]
    """Peak traced allocation (Python objects and NumPy buffers) while ``fn`` runs."""
    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def test_idx_labels_declaring_2_gib_are_refused_before_inflating(tmp_path: Path) -> None:
    # 2**31 labels (2 GiB) declared by a 16 MiB-of-zeros gzip of ~16 KB: ratio far above 200:1
    bomb = gzip_of_zeros(tmp_path / "labels-idx1-ubyte.gz", idx_header(0x08, (2**31,)), 16 << 20)
    assert bomb.stat().st_size < 100_000

    def read() -> None:
        with pytest.raises(ExtractionError, match=r"labels-idx1-ubyte.gz: IDX header.*declares "
                                                  r"2,147,483,656 bytes.*ratio"):
            read_idx_labels(bomb, 10)

    assert peak_bytes(read) < 4 << 20


def test_idx_images_declaring_10_gib_are_refused(tmp_path: Path) -> None:
    dims = (13_000_000, 28, 28)  # ~10 GiB of 28x28 images
    bomb = gzip_of_zeros(tmp_path / "images-idx3-ubyte.gz", idx_header(0x08, dims), 1 << 20)
    with pytest.raises(ExtractionError, match="declares 10,192,000,016 bytes"):
        IdxStream(bomb)
    with pytest.raises(ExtractionError, match="decompression bomb"):
        read_idx_images(bomb)


def test_declared_size_beyond_the_total_limit_is_refused_even_at_a_low_ratio(
        tmp_path: Path) -> None:
    path = gzip_of_zeros(tmp_path / "x.gz", idx_header(0x08, (4096, 1024)), 4 << 20)
    limits = ExtractLimits(max_total_bytes=1 << 20)
    with pytest.raises(ExtractionError, match="passes the limit of 1,048,576 bytes"):
        read_idx(path, limits)
    assert read_idx(path).shape == (4096, 1024)  # the same file under the default limits


def test_idx_with_a_small_header_and_a_zero_bomb_behind_it_stops_early(tmp_path: Path) -> None:
    # honest header (10 labels) followed by 64 MiB of zeros: never inflated, never held
    bomb = gzip_of_zeros(tmp_path / "trail.gz", idx_header(0x08, (10,)) + bytes(10), 64 << 20)

    def read() -> None:
        with pytest.raises(FormatError, match="trailing bytes after IDX data"):
            read_idx_labels(bomb)

    assert peak_bytes(read) < 8 << 20


def test_bounded_reader_stops_a_stream_at_ratio_and_size(tmp_path: Path) -> None:
    bomb = gzip_of_zeros(tmp_path / "z.gz", b"", 32 << 20)
    packed = bomb.stat().st_size
    limits = ExtractLimits(ratio_grace_bytes=1 << 20)
    with open_maybe_compressed(bomb, limits=limits) as fh:
        with pytest.raises(ExtractionError, match=r"z.gz: compression ratio above 200:1"):
            while fh.read(1 << 16):
                pass
        assert fh.budget.total <= 200 * packed + (1 << 16)  # one read past the ratio, no more
    with open_maybe_compressed(bomb, max_bytes=1000) as fh:
        with pytest.raises(ExtractionError, match="more than 1,000 decompressed bytes"):
            fh.read()
    with pytest.raises(ExtractionError, match="declares 33,554,432 bytes"):
        check_declared(bomb, 32 << 20, packed, limits)
    # what fits passes untouched
    small = tmp_path / "s.gz"
    small.write_bytes(gzip.compress(b"abc" * 1000))
    with BoundedReader(gzip.open(small), Budget.for_file(small)) as fh:
        assert hashlib.sha256(fh.read()).digest() == hashlib.sha256(b"abc" * 1000).digest()


def test_plain_idx_declaring_more_than_the_file_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "lie.idx"
    path.write_bytes(idx_header(0x08, (2**32 - 1, 2**32 - 1)) + bytes(100))
    with pytest.raises(FormatError, match="truncated IDX data"):
        read_idx(path)
    ok = tmp_path / "ok.idx"
    ok.write_bytes(idx_header(0x08, (3,)) + bytes([1, 2, 3]))
    np.testing.assert_array_equal(read_idx_labels(ok, 4), [1, 2, 3])


def test_gutenberg_catalog_bomb_is_stopped(tmp_path: Path) -> None:
    from dlprep.sources.gutenberg import read_catalog

    # 80 MiB of zeros in ~80 KB: stopped once 64 MiB came out at a ratio far above 200:1
    bomb = gzip_of_zeros(tmp_path / "pg_catalog.csv.gz", b"Text#,Type\n", 80 << 20)
    with pytest.raises(ExtractionError, match="pg_catalog.csv.gz: compression ratio above"):
        read_catalog(bomb)

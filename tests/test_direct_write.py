"""Direct (O_DIRECT) writes of image rows: the page-aligned middle goes straight to the disk,
the rest through the page cache; the file's bytes are the same either way."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import h5py
import numpy as np

from dlprep.store import ImageTensorWriter, atomic_output
from dlprep.store.osio import PAGE, aligned_empty, open_direct, pwrite_direct


def _counting_pwrite(monkeypatch) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """Count the bytes written through direct and through buffered descriptors."""
    counts = {"direct": 0, "buffered": 0}
    real = os.pwrite

    def pwrite(fd: int, data: object, offset: int) -> int:
        n = real(fd, data, offset)  # type: ignore[arg-type]
        direct = fcntl.fcntl(fd, fcntl.F_GETFL) & getattr(os, "O_DIRECT", 0)
        counts["direct" if direct else "buffered"] += n
        return n

    monkeypatch.setattr(os, "pwrite", pwrite)
    return counts


def test_pwrite_direct_same_bytes_at_any_offset_and_alignment(tmp_path: Path,
                                                              monkeypatch) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    path = tmp_path / "f.bin"
    path.write_bytes(bytes(10 * PAGE))
    fd = os.open(path, os.O_WRONLY)
    direct = open_direct(path)
    counts = _counting_pwrite(monkeypatch)
    try:
        expect = bytearray(10 * PAGE)
        aligned = aligned_empty(5 * PAGE + 300)
        aligned[:] = rng.integers(0, 256, aligned.size, dtype=np.uint8)
        # written at 100 bytes before a page boundary: the buffer starts 100 bytes before a
        # page too, so its middle lines up (a 100-byte buffered head, direct pages, a tail)
        shifted = aligned_empty(5 * PAGE + PAGE)[PAGE - 100:PAGE - 100 + 5 * PAGE + 300]
        shifted[:] = rng.integers(0, 256, shifted.size, dtype=np.uint8)
        cases = [(aligned, 0), (shifted, PAGE + (PAGE - 100)), (aligned[1:], 7)]
        for data, offset in cases:
            if direct is not None:
                pwrite_direct(direct, fd, data, offset)
            expect[offset:offset + data.size] = data.tobytes()
    finally:
        os.close(fd)
        if direct is not None:
            os.close(direct)
    assert path.read_bytes() == bytes(expect)
    if direct is not None:  # the aligned middles went direct, the unaligned buffer did not
        assert counts["direct"] >= 8 * PAGE
        assert counts["buffered"] >= aligned.size - 1


def test_image_writer_rows_go_direct_and_read_back(tmp_path: Path,
                                                   monkeypatch) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (3000, 32, 32, 3), dtype=np.uint8)
    counts = _counting_pwrite(monkeypatch)
    out = tmp_path / "x.h5"
    with atomic_output(out) as tmp:
        writer = ImageTensorWriter(tmp, len(images), (32, 32, 3))
        try:
            for start in range(0, len(images), 1000):  # 1000 rows = 750 pages: aligned
                block = aligned_empty(1000 * 3072).reshape(1000, 32, 32, 3)
                block[:] = images[start:start + 1000]
                writer.write_at(start, block, np.zeros(1000), split="train", background=True)
            writer.finish(recipe="r", recipe_version="1", splits={"train": np.arange(3000)},
                          classes=None)
        finally:
            writer.close()
    with h5py.File(out) as f:
        np.testing.assert_array_equal(f["images"][()], images)
        assert f["images"].id.get_offset() % PAGE == 0
    if open_direct(out) is not None:
        assert counts["direct"] == images.nbytes

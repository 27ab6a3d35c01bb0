"""Exact pixel statistics of uint8 data: the one home of the per-channel sums and mean/std.

A histogram of the 256 byte values gives the exact sum and squared sum of the values in one
pass. Pillow computes it in C over a zero-copy, row-strided view of the buffer (with the GIL
released), several times faster than NumPy's widening ``sum`` plus a squaring pass. Used by
the parsers (CIFAR planes) and by the HDF5 writer (mean/std of the train split).
:func:`pixel_sums` picks the histogram path where the layout allows and blocked NumPy sums
otherwise; :func:`mean_std` turns exact sums into the stored ``mean``/``std``.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

_VALUES = np.arange(256, dtype=np.uint64)
# Pillow counts in C ``long`` (32-bit on Windows): keep one call's pixels below 2**31
_MAX_PIXELS_PER_CALL = 1 << 28


def strided_histogram(buf: memoryview | bytes, offset: int, width: int, rows: int,
                      stride: int) -> np.ndarray:
    """Counts (256,) int64 of the byte values in ``rows`` runs of ``width`` bytes that start
    at ``offset``, ``offset + stride``, ... of the contiguous buffer ``buf``.

    When ``width`` is a multiple of 4 the runs are read as RGBA pixels: Pillow then keeps four
    independent counters per value, so long runs of one value (black MNIST backgrounds) do
    not serialise on one counter (3x faster on such data)."""
    view = memoryview(buf).cast("B")
    if rows < 0 or width < 0 or (rows and offset + (rows - 1) * stride + width > len(view)):
        raise ValueError(f"{rows} rows of {width} bytes every {stride} from {offset} exceed "
                         f"a {len(view)}-byte buffer")
    counts = np.zeros(256, np.int64)
    if not rows or not width:
        return counts
    mode, bands = ("RGBA", 4) if width % 4 == 0 else ("L", 1)
    # Pillow wants stride * rows bytes from the start: the last row goes through NumPy
    step = max(1, _MAX_PIXELS_PER_CALL // width)
    mapped = rows - 1
    for lo in range(0, mapped, step):
        n = min(step, mapped - lo)
        start = offset + lo * stride
        im = Image.frombuffer(mode, (width // bands, n), view[start:start + n * stride], "raw",
                              mode, stride, 1)
        counts += np.asarray(im.histogram(), np.int64).reshape(bands, 256).sum(0)
    last = offset + mapped * stride
    counts += np.bincount(np.frombuffer(view[last:last + width], np.uint8), minlength=256)
    return counts


def byte_histogram(buf: memoryview | bytes, row: int = 4096) -> np.ndarray:
    """Counts (256,) int64 of every byte value in the contiguous buffer ``buf``."""
    view = memoryview(buf).cast("B")
    rows = len(view) // row
    counts = strided_histogram(view, 0, row, rows, row) if rows else np.zeros(256, np.int64)
    tail = np.frombuffer(view[rows * row:], np.uint8)
    return counts + np.bincount(tail, minlength=256)


def histogram_sums(counts: np.ndarray) -> tuple[int, int]:
    """Exact (sum, squared sum) of the values a byte histogram counts."""
    c = np.asarray(counts, np.uint64)
    return int((c * _VALUES).sum()), int((c * _VALUES * _VALUES).sum())


def channel_sums(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, int] | None:
    """Per-channel (sums, squared sums, pixels per channel) of a C-contiguous grayscale
    uint8 array (last axis 1); None when the layout has no fast path (the caller falls back to
    NumPy)."""
    if x.dtype != np.uint8 or not x.flags.c_contiguous or x.ndim < 2 or x.shape[-1] != 1:
        return None
    s1, s2 = histogram_sums(byte_histogram(memoryview(x.reshape(-1))))
    return np.array([s1], np.uint64), np.array([s2], np.uint64), x.size


#: values counted per ``bincount`` pass in :func:`image_sums` (an int64 index each: 32 MB)
_IMAGE_SUMS_VALUES = 1 << 22


def image_sums(images: np.ndarray) -> np.ndarray:
    """Exact per-image, per-channel sums of the pixel values and of their squares of uint8
    (n, H, W, C): uint64 (n, 2, C), so that the sums of any subset of rows (a train split)
    are reduced without reading the pixels again. Counted as one histogram per image and
    channel (a ``bincount`` over a block of images at a time): integers, whatever the order
    they are added up in."""
    n, channels = len(images), images.shape[-1]
    out = np.zeros((n, 2, channels), np.uint64)
    if not n:
        return out
    flat = images.reshape(n, -1, channels)
    step = max(1, _IMAGE_SUMS_VALUES // flat.shape[1])
    for lo in range(0, n, step):
        block = flat[lo:lo + step]
        k = len(block)
        offset = (np.arange(k, dtype=np.int64) * 256)[:, None]
        for c in range(channels):
            counts = np.bincount((block[:, :, c] + offset).ravel(), minlength=k * 256)
            counts = counts.reshape(k, 256).astype(np.uint64)
            out[lo:lo + k, 0, c] = counts @ _VALUES
            out[lo:lo + k, 1, c] = counts @ (_VALUES * _VALUES)
    return out


def pixel_sums(x: np.ndarray, block: int = 1 << 18) -> tuple[np.ndarray, np.ndarray, int]:
    """Exact per-channel sums of pixel values and of their squares for uint8 (n, H, W, C), and
    the pixel count per channel.

    Grayscale goes through byte histograms (:func:`channel_sums`); other layouts work in
    cache-sized blocks (the squares go through one small uint16 buffer), about 2.5x faster than
    whole-array temporaries."""
    fast = channel_sums(x)
    if fast is not None:
        return fast
    c = x.shape[-1]
    flat = x.reshape(-1, c)
    total, total_sq = np.zeros(c, np.uint64), np.zeros(c, np.uint64)
    buf = np.empty(min(block, len(flat)), np.uint16)
    for start in range(0, len(flat), block):
        rows = flat[start:start + block]
        sq = buf[:len(rows)]
        for ch in range(c):
            plane = rows[:, ch]
            total[ch] += plane.sum(dtype=np.uint64)
            np.multiply(plane, plane, out=sq, dtype=np.uint16)  # 255**2 fits in uint16
            total_sq[ch] += sq.sum(dtype=np.uint64)
    return total, total_sq, len(flat)


def mean_std(total: np.ndarray, total_sq: np.ndarray, count: int,
             channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel float32 mean and standard deviation of pixels scaled to [0, 1], from exact
    sums (zeros and ones when there are no pixels)."""
    if count == 0:
        return np.zeros(channels, np.float32), np.ones(channels, np.float32)
    mean = total.astype(np.float64) / count
    var = total_sq.astype(np.float64) / count - mean * mean
    return ((mean / 255.0).astype(np.float32),
            (np.sqrt(np.maximum(var, 0.0)) / 255.0).astype(np.float32))

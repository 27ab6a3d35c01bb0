"""CIFAR binary records (never the pickle version).

CIFAR-10: 1 label byte + 3072 pixel bytes (R, G, B planes of 32x32, row-major) = 3073 bytes.
CIFAR-100: coarse label byte + fine label byte + 3072 pixel bytes = 3074 bytes.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..errors import FormatError
from ..pixelstats import histogram_sums, strided_histogram

PIXELS = 3 * 32 * 32


def _check_labels(raw: np.ndarray, label_bytes: int, source: object,
                  n_classes: tuple[int, ...]) -> np.ndarray:
    labels = raw[:, :label_bytes].astype(np.int64)
    for j, limit in enumerate(n_classes):
        bad = np.flatnonzero(labels[:, j] >= limit)
        if bad.size:
            i = int(bad[0])
            raise FormatError(source, i * raw.shape[1] + j,
                              f"label {labels[i, j]} outside [0, {limit})")
    return labels


def _records(data: bytes, label_bytes: int, source: object,
             n_classes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Whole records as uint8 (N, label_bytes + 3072) and range-checked int64 labels."""
    rec = label_bytes + PIXELS
    if len(data) % rec:
        whole = len(data) // rec
        raise FormatError(source, whole * rec,
                          f"truncated CIFAR record {whole} ({len(data) % rec} of {rec} bytes)")
    raw = np.frombuffer(data, np.uint8).reshape(-1, rec)
    return raw, _check_labels(raw, label_bytes, source, n_classes)


def parse_cifar_records(data: bytes, label_bytes: int, source: object = "<bytes>",
                        n_classes: tuple[int, ...] = (10,)) -> tuple[np.ndarray, np.ndarray]:
    """Return images uint8 (N, 32, 32, 3) and labels int64 (N, label_bytes)."""
    images, labels, _ = decode_cifar_member(data, label_bytes, source, n_classes)
    return images, labels


def interleave_with_sums(raw: np.ndarray, label_bytes: int, out: np.ndarray,
                         block: int = 1024, *, with_sums: bool = True
                         ) -> tuple[np.ndarray, np.ndarray, int]:
    """Interleave planar records ``raw`` (n, label_bytes + 3072) into ``out`` (n, 32, 32, 3),
    plane by plane (contiguous reads, ~2x faster than a 4-D transpose), and return exact
    per-channel pixel sums and squared sums from byte histograms of the planes, taken in the
    same cache-sized row blocks while they are hot. Thread-safe on disjoint row ranges (the
    GIL is released)."""
    counts = np.zeros((3, 256), np.int64)
    raw = np.ascontiguousarray(raw)
    view = memoryview(raw.reshape(-1))
    rec = raw.shape[1] if raw.ndim == 2 else 0
    for lo in range(0, len(raw), block):
        rows, dst = raw[lo:lo + block], out[lo:lo + block]
        for ch in range(3):
            start = label_bytes + ch * 1024
            dst[..., ch] = rows[:, start:start + 1024].reshape(-1, 32, 32)
            if with_sums:
                counts[ch] += strided_histogram(view, lo * rec + start, 1024, len(rows), rec)
    total, total_sq = np.zeros(3, np.uint64), np.zeros(3, np.uint64)
    for ch in range(3):
        total[ch], total_sq[ch] = histogram_sums(counts[ch])
    return total, total_sq, len(raw) * 1024


def decode_cifar_member(data: bytes, label_bytes: int, source: object,
                        n_classes: tuple[int, ...], pool: ThreadPoolExecutor | None = None,
                        *, with_sums: bool = True, out: np.ndarray | None = None
                        ) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray, int]]:
    """Like :func:`parse_cifar_records`, plus the images' pixel sums (zeros without
    ``with_sums``); with a ``pool`` the work is split across its threads. ``out``: a spare
    uint8 buffer to decode into when it is big enough (reusing memory saves page faults)."""
    raw, labels = _records(data, label_bytes, source, n_classes)
    need = len(raw) * PIXELS
    if out is not None and out.dtype == np.uint8 and out.flags.c_contiguous and \
            out.size >= need:
        images = out.reshape(-1)[:need].reshape(len(raw), 32, 32, 3)
    else:
        images = np.empty((len(raw), 32, 32, 3), np.uint8)
    if pool is None or len(raw) < 4096:
        sums = interleave_with_sums(raw, label_bytes, images, with_sums=with_sums)
    else:
        half = len(raw) // 2
        parts = [pool.submit(interleave_with_sums, raw[a:b], label_bytes, images[a:b],
                             with_sums=with_sums)
                 for a, b in ((0, half), (half, len(raw)))]
        results = [p.result() for p in parts]
        sums = (results[0][0] + results[1][0], results[0][1] + results[1][1],
                results[0][2] + results[1][2])
    return images, labels, sums


def read_cifar_file(path: Path, label_bytes: int,
                    n_classes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    return parse_cifar_records(Path(path).read_bytes(), label_bytes, path, n_classes)

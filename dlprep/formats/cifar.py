"""CIFAR binary records (never the pickle version).

CIFAR-10: 1 label byte + 3072 pixel bytes (R, G, B planes of 32x32, row-major) = 3073 bytes.
CIFAR-100: coarse label byte + fine label byte + 3072 pixel bytes = 3074 bytes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import FormatError

PIXELS = 3 * 32 * 32


def parse_cifar_records(data: bytes, label_bytes: int, source: object = "<bytes>",
                        n_classes: tuple[int, ...] = (10,)) -> tuple[np.ndarray, np.ndarray]:
    """Return images uint8 (N, 32, 32, 3) and labels int64 (N, label_bytes)."""
    rec = label_bytes + PIXELS
    if len(data) % rec:
        whole = len(data) // rec
        raise FormatError(source, whole * rec,
                          f"truncated CIFAR record {whole} ({len(data) % rec} of {rec} bytes)")
    raw = np.frombuffer(data, np.uint8).reshape(-1, rec)
    labels = raw[:, :label_bytes].astype(np.int64)
    for j, limit in enumerate(n_classes):
        bad = np.flatnonzero(labels[:, j] >= limit)
        if bad.size:
            i = int(bad[0])
            raise FormatError(source, i * rec + j, f"label {labels[i, j]} outside [0, {limit})")
    images = np.empty((len(raw), 32, 32, 3), np.uint8)
    for ch in range(3):  # plane by plane: contiguous reads, ~2x faster than a 4-D transpose
        start = label_bytes + ch * 1024
        images[..., ch] = raw[:, start:start + 1024].reshape(-1, 32, 32)
    return images, labels


def read_cifar_file(path: Path, label_bytes: int,
                    n_classes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    return parse_cifar_records(Path(path).read_bytes(), label_bytes, path, n_classes)

"""Deterministic, stratified train/test splits for sources that publish none."""

from __future__ import annotations

import numpy as np

from ..errors import DlprepError


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int,
                     names: tuple[str, str] = ("train", "test")) -> dict[str, np.ndarray]:
    """Split sample indices per class: ``round(n_k * test_fraction)`` of each class go to test.

    ``labels`` int (N,); returns ``{names[0]: idx, names[1]: idx}``, each sorted int64. The
    same labels, fraction and seed always give the same split (NumPy ``default_rng(seed)``,
    one permutation per class in class order). A class with one sample stays in train.
    """
    if not 0.0 <= test_fraction < 1.0:
        raise DlprepError(f"--test-fraction must be in [0, 1), got {test_fraction}")
    labels = np.asarray(labels, dtype=np.int64)
    rng = np.random.default_rng(seed)
    test_parts = []
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        k = int(round(len(idx) * test_fraction))
        if len(idx) > 1:
            k = min(max(k, 1 if test_fraction > 0 else 0), len(idx) - 1)
        else:
            k = 0
        test_parts.append(rng.permutation(idx)[:k])
    test = np.sort(np.concatenate(test_parts)) if test_parts else np.zeros(0, np.int64)
    mask = np.ones(len(labels), bool)
    mask[test] = False
    return {names[0]: np.flatnonzero(mask).astype(np.int64), names[1]: test.astype(np.int64)}

"""The one stratified split (dlprep.prepare.splits.stratified_split), tested once for its rule."""

from __future__ import annotations

import re

import numpy as np
import pytest

from dlprep.errors import DlprepError
from dlprep.prepare.splits import stratified_split


def _cases() -> list[tuple[np.ndarray, dict[str, float], int]]:
    rng = np.random.default_rng(2026)
    cases = [
        (np.repeat(np.arange(5), [10, 1, 7, 3, 20]), {"test": 0.25}, 7),
        (np.repeat(np.arange(4), [100, 50, 10, 3]), {"val": 0.2}, 0),
        (np.zeros(25, np.int64), {"test": 0.1, "val": 0.1}, 3),
        (np.arange(10), {"test": 0.2}, 1),  # every class a singleton
        (np.zeros(2, np.int64), {"test": 0.1, "val": 0.1}, 0),
        (np.zeros(0, np.int64), {"test": 0.2}, 0),
        (np.array([5, -1, 5, 9, 9, 9, -1]), {"test": 0.3, "val": 0.3}, 2),
    ]
    for _ in range(60):
        k = int(rng.integers(1, 12))
        labels = rng.integers(0, k, int(rng.integers(1, 400)))
        test = float(rng.choice([0.0, 0.05, 0.1, 0.2, 0.35]))
        val = float(rng.choice([0.0, 0.1, 0.15, 0.3]))
        cases.append((labels, {"test": test, "val": val}, int(rng.integers(0, 1000))))
    return cases


@pytest.mark.parametrize("labels,fractions,seed", _cases())
def test_stratified_split_rule(labels: np.ndarray, fractions: dict[str, float],
                               seed: int) -> None:
    got = stratified_split(labels, fractions, seed)
    n = len(labels)
    assert list(got) == ["train", *fractions]
    # no overlap, union = all, sorted int64
    joined = np.concatenate(list(got.values()))
    assert np.array_equal(np.sort(joined), np.arange(n))
    for idx in got.values():
        assert idx.dtype == np.int64 and np.array_equal(idx, np.sort(idx))
    # exact sizes (rule 1)
    want = [max(round(f * n), 1 if f > 0 else 0) for f in fractions.values()]
    for s in reversed(range(len(want))):
        while want[s] and sum(want) > n - 1:
            want[s] -= 1
    assert [len(got[name]) for name in fractions] == want
    # deterministic for a seed
    again = stratified_split(labels.copy(), dict(fractions), seed)
    assert all(np.array_equal(got[k], again[k]) for k in got)
    # every class represented where it has enough members
    classes, counts = np.unique(labels, return_counts=True)
    shrunk = [len(got[name]) < max(round(f * n), 1 if f > 0 else 0)
              for name, f in fractions.items()]
    for name, f, was_shrunk in zip(fractions, fractions.values(), shrunk, strict=True):
        present = set(labels[got[name]].tolist())
        for c, nk in zip(classes.tolist(), counts.tolist(), strict=True):
            if f * nk >= 1 and not was_shrunk:
                assert c in present, (name, c, nk)
    held_total = sum(len(got[name]) for name in fractions)
    if n - len(classes) >= held_total:
        assert set(labels[got["train"]].tolist()) == set(classes.tolist())
    # in proportion: each class within one place of its exact share (when nothing was forced)
    if n - len(classes) >= held_total and not any(shrunk):
        for name, f in fractions.items():
            per_class = np.array([np.sum(labels[got[name]] == c) for c in classes])
            assert np.all(np.abs(per_class - f * counts) < 1 + 1e-9), (name, per_class)


def test_stratified_split_known_answer_and_seed_changes_members() -> None:
    labels = np.repeat(np.arange(5), [10, 1, 7, 3, 20])
    a = stratified_split(labels, {"test": 0.25}, 7)
    # 41 * 0.25 = 10.25 -> 10 places: floors 2, 0, 1, 0, 5 = 8; remainders .75 (class 2, 3)
    np.testing.assert_array_equal(np.bincount(labels[a["test"]], minlength=5), [2, 0, 2, 1, 5])
    b = stratified_split(labels, {"test": 0.25}, 8)
    assert not np.array_equal(a["test"], b["test"])


def test_stratified_split_unlabelled_is_one_permutation() -> None:
    """One class: test is the first block of default_rng(seed).permutation(n), val the next."""
    got = stratified_split(np.zeros(50, np.int64), {"test": 0.2, "val": 0.1}, 5)
    perm = np.random.default_rng(5).permutation(50)
    np.testing.assert_array_equal(got["test"], np.sort(perm[:10]))
    np.testing.assert_array_equal(got["val"], np.sort(perm[10:15]))


@pytest.mark.parametrize("fractions,message", [
    ({"test": 1.0}, "--test-fraction: must be in [0, 1), got 1.0"),
    ({"val": -0.1}, "--val-fraction: must be in [0, 1), got -0.1"),
    ({"test": 0.5, "val": 0.5}, "--test-fraction + --val-fraction must be below 1"),
    ({"train": 0.5}, "'train' is the remainder"),
])
def test_stratified_split_rejects_bad_fractions(fractions: dict[str, float],
                                                message: str) -> None:
    with pytest.raises(DlprepError, match=re.escape(message)):
        stratified_split(np.zeros(10, np.int64), fractions, 0)

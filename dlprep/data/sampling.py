"""Samplers and label statistics: sharded epoch sampler, class-balanced sampler, class weights.
(The stratified train/val split is :func:`dlprep.prepare.splits.stratified_split`.)

The samplers are plain iterables of positions ``0..len(dataset)-1``; torch's ``DataLoader``
accepts them as ``sampler=`` (no torch import here).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from .order import distributed_rank_world, shard_positions


class ShardedSampler:
    """This rank's share of each epoch's order: every position once per epoch across ranks.

    Unlike torch's ``DistributedSampler`` nothing is padded or repeated (shards differ in length
    by at most one, or by chunk granularity when ``chunk_rows`` makes the order chunk-aware).
    ``rank``/``world_size`` default to ``torch.distributed`` when initialised. Call
    :meth:`set_epoch` before each epoch (or pass ``epoch``).
    """

    def __init__(self, n: int, *, shuffle: bool = True, seed: int = 0, epoch: int = 0,
                 rank: int | None = None, world_size: int | None = None,
                 rows: np.ndarray | None = None, chunk_rows: int | None = None,
                 buffer_chunks: int = 8) -> None:
        self.n = int(n)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.epoch = int(epoch)
        self.rank, self.world_size = distributed_rank_world(rank, world_size)
        self.rows = rows
        self.chunk_rows = chunk_rows
        self.buffer_chunks = buffer_chunks

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def positions(self) -> np.ndarray:
        return shard_positions(self.n, shuffle=self.shuffle, seed=self.seed, epoch=self.epoch,
                               shard=self.rank, num_shards=self.world_size, rows=self.rows,
                               chunk_rows=self.chunk_rows, buffer_chunks=self.buffer_chunks)

    def __iter__(self) -> Iterator[int]:
        return iter(self.positions().tolist())

    def __len__(self) -> int:
        if self.shuffle and self.chunk_rows and self.rows is not None:
            return len(self.positions())
        return len(range(self.rank, self.n, self.world_size))


def class_counts(labels: np.ndarray, num_classes: int | None = None) -> np.ndarray:
    """int64 ``(K,)`` count of each class in ``labels`` (negative labels are ignored)."""
    labels = np.asarray(labels, dtype=np.int64)
    labels = labels[labels >= 0]
    k = num_classes if num_classes is not None else (int(labels.max()) + 1 if len(labels) else 0)
    return np.bincount(labels, minlength=k)[:k].astype(np.int64)


def class_weights(labels: np.ndarray, num_classes: int | None = None) -> np.ndarray:
    """float32 ``(K,)`` weights ``n / (K_present * count)`` (sklearn "balanced"); 0 for absent
    classes.

    Pass them to ``torch.nn.CrossEntropyLoss(weight=torch.from_numpy(w))``.
    """
    counts = class_counts(labels, num_classes)
    present = max(1, int((counts > 0).sum()))
    total = counts.sum()
    with np.errstate(divide="ignore"):
        w = np.where(counts > 0, total / (present * np.maximum(counts, 1)), 0.0)
    return w.astype(np.float32)


class ClassBalancedSampler:
    """Draw ``num_samples`` positions per epoch so every class is equally likely.

    Sampling is with replacement (rare classes repeat); seeded by ``(seed, epoch)``, and
    sharded over ``(rank, world_size)`` like :class:`ShardedSampler`.
    """

    def __init__(self, labels: np.ndarray, num_samples: int | None = None, *, seed: int = 0,
                 epoch: int = 0, rank: int | None = None, world_size: int | None = None) -> None:
        self.labels = np.asarray(labels, dtype=np.int64)
        self.num_samples = int(num_samples if num_samples is not None else len(self.labels))
        self.seed = int(seed)
        self.epoch = int(epoch)
        self.rank, self.world_size = distributed_rank_world(rank, world_size)
        counts = np.bincount(self.labels[self.labels >= 0])
        w = np.where(self.labels >= 0, 1.0 / np.maximum(counts[np.maximum(self.labels, 0)], 1),
                     0.0)
        self.probabilities = w / w.sum()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def positions(self) -> np.ndarray:
        rng = np.random.default_rng([self.seed, self.epoch])
        drawn = rng.choice(len(self.labels), size=self.num_samples, p=self.probabilities)
        return drawn[self.rank::self.world_size].astype(np.int64)

    def __iter__(self) -> Iterator[int]:
        return iter(self.positions().tolist())

    def __len__(self) -> int:
        return len(range(self.rank, self.num_samples, self.world_size))

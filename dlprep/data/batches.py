"""``dlprep.batches``: shuffled ``(x, y)`` batches straight from the file, no per-sample overhead.

One epoch = one permutation from ``(seed, epoch)``, sharded over ``(rank, world_size)`` and, when
iterated inside a torch DataLoader worker, over the workers too, so each sample is seen exactly
once per epoch across all processes. Contiguous files are gathered from a memory map; chunked
(compressed) files are read chunk by chunk in a chunk-aware shuffled order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from .order import distributed_rank_world, shard_positions, worker_id_count
from .prepared import PreparedFile
from .transforms import prepare_transform, reseed_transform


class BatchStream:
    """Iterable of ``(x, y)`` batches over ``rows`` of a prepared image (or sequence-window) file.

    x: uint8 ``(B, H, W, C)`` (or the transform's output), y: int64 ``(B,)``; torch tensors when
    ``as_torch``. Iterating again replays the same epoch; use :meth:`set_epoch` (or ``epoch=``)
    for the next one. Also a torch ``IterableDataset`` when made through ``dlprep.batches`` with
    torch imported: ``DataLoader(stream, batch_size=None, num_workers=2)``.
    """

    def __init__(self, file: PreparedFile, rows: np.ndarray, *, batch_size: int = 256,
                 shuffle: bool = True, seed: int = 0, epoch: int = 0, drop_last: bool = False,
                 rank: int | None = None, world_size: int | None = None, as_torch: bool = False,
                 transform: Callable[[np.ndarray], Any] | None = None,
                 buffer_chunks: int = 8) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.file = file
        self.rows = np.asarray(rows, dtype=np.int64)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.epoch = int(epoch)
        self.drop_last = drop_last
        self.rank, self.world_size = distributed_rank_world(rank, world_size)
        self.as_torch = as_torch
        self.transform = transform
        self.buffer_chunks = int(buffer_chunks)
        prepare_transform(transform, file.mean, file.std)
        self._it: Iterator[tuple[Any, Any]] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order the next iteration yields."""
        self.epoch = int(epoch)

    def _chunked(self) -> int | None:
        return self.file.chunk_rows if self.file.compression else None

    def shard_positions(self) -> np.ndarray:
        """Positions into ``rows`` for this process (rank x DataLoader worker) and epoch."""
        wid, nw = worker_id_count()
        shard, nshards = self.rank * nw + wid, self.world_size * nw
        return shard_positions(len(self.rows), shuffle=self.shuffle, seed=self.seed,
                               epoch=self.epoch, shard=shard, num_shards=nshards, rows=self.rows,
                               chunk_rows=self._chunked(), buffer_chunks=self.buffer_chunks)

    def __len__(self) -> int:
        """Batches this process yields per epoch (outside DataLoader workers)."""
        n = len(self.shard_positions()) if self._chunked() else \
            len(range(self.rank, len(self.rows), self.world_size))
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        positions = self.shard_positions()
        wid, nw = worker_id_count()
        reseed_transform(self.transform, [self.seed, self.epoch, self.rank, wid])
        if self._chunked():
            self.file.cache_chunks = max(self.file.cache_chunks, self.buffer_chunks)
        labels = self.file.labels
        bs = self.batch_size
        torch = None
        if self.as_torch:
            from ..errors import require

            torch = require("torch", "torch")
        for start in range(0, len(positions), bs):
            pos = positions[start:start + bs]
            if len(pos) < bs and self.drop_last:
                break
            rows = self.rows[pos]
            x = self.file.take(rows)
            y = labels[rows] if labels is not None else np.full(len(rows), -1, np.int64)
            if self.transform is not None:
                x = self.transform(x)
            if torch is not None:
                yield torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y)
            else:
                yield x, y

    def __next__(self) -> tuple[Any, Any]:
        if self._it is None:
            self._it = iter(self)
        return next(self._it)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_it"] = None
        return state

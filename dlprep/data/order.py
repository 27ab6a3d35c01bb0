"""Epoch orders and sharding: every sample once per epoch across ranks and DataLoader workers.

An epoch order is a permutation of *positions* ``0..n-1`` within a split, drawn from
``(seed, epoch)`` only, so every process computes the same one and takes its own shard. Shards
are disjoint and cover the order exactly (sizes differ by at most one sample, or by chunk
granularity for the chunk-aware order): nothing is padded or repeated.
"""

from __future__ import annotations

import sys

import numpy as np


def distributed_rank_world(rank: int | None = None,
                           world_size: int | None = None) -> tuple[int, int]:
    """``(rank, world_size)``: the given values, else ``torch.distributed`` when initialised,
    else (0, 1).

    torch is consulted only if it was already imported by the caller. Raises ``ValueError`` for
    a rank outside ``[0, world_size)``.
    """
    if rank is None or world_size is None:
        r, w = 0, 1
        if "torch.distributed" in sys.modules:
            import torch.distributed as dist

            if dist.is_available() and dist.is_initialized():
                r, w = dist.get_rank(), dist.get_world_size()
        rank = r if rank is None else rank
        world_size = w if world_size is None else world_size
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside world_size {world_size}")
    return int(rank), int(world_size)


def worker_id_count() -> tuple[int, int]:
    """``(worker_id, num_workers)`` inside a torch DataLoader worker, else ``(0, 1)``."""
    if "torch" not in sys.modules:
        return 0, 1
    from torch.utils.data import get_worker_info

    info = get_worker_info()
    return (0, 1) if info is None else (int(info.id), int(info.num_workers))


def worker_seed() -> int | None:
    """The seed torch gave this DataLoader worker (None outside workers)."""
    if "torch" not in sys.modules:
        return None
    from torch.utils.data import get_worker_info

    info = get_worker_info()
    return None if info is None else int(info.seed)


def epoch_permutation(n: int, seed: int, epoch: int, shuffle: bool = True) -> np.ndarray:
    """Positions ``0..n-1`` in this epoch's order: a permutation seeded by ``(seed, epoch)``."""
    if not shuffle:
        return np.arange(n, dtype=np.int64)
    return np.random.default_rng([int(seed), int(epoch)]).permutation(n).astype(np.int64)


def chunk_aware_order(rows: np.ndarray, chunk_rows: int, seed: int, epoch: int, shard: int,
                      num_shards: int, buffer_chunks: int = 8) -> np.ndarray:
    """Positions into ``rows`` for one shard, reading whole HDF5 chunks in a shuffled order.

    The chunks that hold the split are shuffled (same order in every process) and dealt to
    shards round-robin; inside each shard, positions are shuffled within consecutive groups of
    ``buffer_chunks`` chunks, so a reader holds at most that many decompressed chunks at once.
    """
    rows = np.asarray(rows, dtype=np.int64)
    rng = np.random.default_rng([int(seed), int(epoch)])
    chunk_of = rows // max(1, int(chunk_rows))
    order = np.argsort(chunk_of, kind="stable")
    chunk_ids, starts = np.unique(chunk_of[order], return_index=True)
    bounds = np.append(starts, len(rows))
    mine = rng.permutation(len(chunk_ids))[shard::num_shards]
    local = np.random.default_rng([int(seed), int(epoch), int(shard), int(num_shards)])
    out = []
    step = max(1, int(buffer_chunks))
    for g in range(0, len(mine), step):
        group = np.concatenate([order[bounds[c]:bounds[c + 1]] for c in mine[g:g + step]])
        out.append(local.permutation(group))
    return np.concatenate(out).astype(np.int64) if out else np.empty(0, np.int64)


def shard_positions(n: int, *, shuffle: bool, seed: int, epoch: int, shard: int, num_shards: int,
                    rows: np.ndarray | None = None, chunk_rows: int | None = None,
                    buffer_chunks: int = 8) -> np.ndarray:
    """This shard's positions (``0..n-1``) for one epoch; chunk-aware when ``chunk_rows`` is set."""
    if not 0 <= shard < num_shards:
        raise ValueError(f"shard {shard} is outside {num_shards} shards")
    if shuffle and chunk_rows and rows is not None:
        return chunk_aware_order(rows, chunk_rows, seed, epoch, shard, num_shards, buffer_chunks)
    return epoch_permutation(n, seed, epoch, shuffle)[shard::num_shards]

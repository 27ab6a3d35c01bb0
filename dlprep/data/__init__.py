"""Loaders for prepared datasets: ``load`` (torch ``Dataset``), ``batches`` (fast batch iterator),
NumPy arrays, HF ``datasets`` export, transforms and samplers. User guide: docs/LOADERS.md.

Nothing here imports torch at module import; ``load`` imports it to return a real
``torch.utils.data.Dataset`` (and falls back to the same class without the torch base when torch
is not installed).
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import StoreError
from ..prepare.splits import stratified_split
from .batches import BatchStream
from .images import ImageDataset
from .prepared import PreparedFile, resolve_prepared
from .sampling import ClassBalancedSampler, ShardedSampler, class_weights
from .sequences import LMWindowDataset, SequenceDataset, collate_sequences, pad_batch

__all__ = [
    "BatchStream", "ClassBalancedSampler", "ImageDataset", "LMWindowDataset", "PreparedFile",
    "SequenceDataset", "ShardedSampler", "batches", "class_weights", "collate_sequences", "load",
    "open_file", "pad_batch", "split_indices", "stratified_split",
]

PathLike = str | os.PathLike[str]


def open_file(name_or_path: PathLike, *, cache_dir: PathLike | None = None, offline: bool = False,
              buffer_chunks: int = 8) -> PreparedFile:
    """Resolve a dataset name or ``.h5`` path to a :class:`PreparedFile` (prepared if needed)."""
    path = Path(resolve_prepared(name_or_path, cache_dir, offline)).resolve()
    st = path.stat()
    return _cached_file(str(path), st.st_ino, st.st_size, st.st_mtime_ns, int(buffer_chunks))


@functools.lru_cache(maxsize=16)
def _cached_file(path: str, inode: int, size: int, mtime_ns: int,
                 buffer_chunks: int) -> PreparedFile:
    """One :class:`PreparedFile` per file version and process (metadata read once, handles
    shared)."""
    del inode, size, mtime_ns  # part of the cache key: a re-prepared file is read afresh
    return PreparedFile(path, cache_chunks=buffer_chunks)


def split_indices(file: PreparedFile, split: str | None, val_fraction: float | None = None,
                  seed: int = 0) -> np.ndarray:
    """Sample rows of ``split``; with ``val_fraction`` and no stored ``val`` split, ``train`` and
    ``val`` are a deterministic stratified split of the stored train split (by ``seed``)."""
    if val_fraction and split in ("train", "val") and "val" not in file.splits:
        base = file.stored_split("train")
        labels = file.labels[base] if file.labels is not None else np.zeros(len(base), np.int64)
        return base[stratified_split(labels, {"val": float(val_fraction)}, seed)[split]]
    if split == "val" and "val" not in file.splits and "train" in file.splits:
        have = ", ".join(sorted(file.splits))
        raise StoreError(f"{file.path}: no split 'val' (have: {have}); pass val_fraction=0.1 to "
                         f"carve a stratified one out of train")
    return file.stored_split(split)


def _torch_flavour(plain: type) -> type:
    if importlib.util.find_spec("torch") is None:
        return plain
    from .torch_compat import torch_class

    return torch_class(plain)


def load(name_or_path: PathLike, split: str | None = "train",
         transform: Callable[[Any], Any] | None = None,
         target_transform: Callable[[Any], Any] | None = None, *,
         cache_dir: PathLike | None = None, offline: bool = False,
         val_fraction: float | None = None, seed: int = 0, buffer_chunks: int = 8) -> Any:
    """A map-style dataset over ``split`` of a prepared file (name through the cache, or a path).

    Image sets: :class:`ImageDataset` items ``(image, label)``, image uint8 ``(H, W, C)`` without
    a transform, float32 ``(C, H, W)`` after ``ToFloat``/``Normalize``. Sequence sets:
    :class:`SequenceDataset` items ``(ids or values, label or -1)``. Both subclass
    ``torch.utils.data.Dataset`` when torch is installed. ``split=None`` (or ``"all"``) is every
    sample; ``val_fraction`` carves a stratified ``val`` from ``train`` when the file has none.
    Raises ``StoreError`` for a missing split or a file of another format version.
    """
    file = open_file(name_or_path, cache_dir=cache_dir, offline=offline,
                     buffer_chunks=buffer_chunks)
    indices = split_indices(file, split, val_fraction, seed)
    if file.kind == "sequence" or file.offsets is not None:
        cls = _torch_flavour(SequenceDataset)
        return cls(file, indices, split=split, transform=transform,
                   target_transform=target_transform)
    cls = _torch_flavour(ImageDataset)
    return cls(file, indices, split=split, transform=transform, target_transform=target_transform,
               buffer_chunks=buffer_chunks)


def batches(name_or_path: PathLike, split: str | None = "train", *, batch_size: int = 256,
            shuffle: bool = True, seed: int = 0, epoch: int = 0, drop_last: bool = False,
            rank: int | None = None, world_size: int | None = None, as_torch: bool = False,
            transform: Callable[[np.ndarray], Any] | None = None,
            cache_dir: PathLike | None = None, offline: bool = False,
            val_fraction: float | None = None, buffer_chunks: int = 8) -> BatchStream:
    """Iterator of ``(x, y)`` batches of an image split: x uint8 ``(B, H, W, C)`` (or the
    transform's output), y int64 ``(B,)``; torch tensors when ``as_torch``.

    Shuffled by ``(seed, epoch)``; sharded by ``(rank, world_size)`` (default: torch.distributed
    when initialised, else 0/1) and by DataLoader worker, every sample once per epoch overall.
    Chunked/compressed files use a chunk-aware shuffle holding ``buffer_chunks`` chunks.
    """
    file = open_file(name_or_path, cache_dir=cache_dir, offline=offline,
                     buffer_chunks=buffer_chunks)
    if file.data_key != "images":
        raise StoreError(f"{file.path}: batches() reads image sets; for sequences use "
                         f"dlprep.load(...) with its collate or lm_windows()")
    rows = split_indices(file, split, val_fraction, seed)
    cls: type = BatchStream
    if as_torch or "torch" in sys.modules:
        cls = _torch_flavour(BatchStream)
    return cls(file, rows, batch_size=batch_size, shuffle=shuffle, seed=seed, epoch=epoch,
               drop_last=drop_last, rank=rank, world_size=world_size, as_torch=as_torch,
               transform=transform, buffer_chunks=buffer_chunks)

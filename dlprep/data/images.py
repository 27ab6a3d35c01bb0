"""Map-style image dataset over a prepared file: ``(image, label)`` items like torchvision.

With no transform an image is uint8 ``(H, W, C)``; the transforms of :mod:`dlprep.data.transforms`
give float32 ``(C, H, W)``. ``__getitems__`` reads a whole DataLoader batch with one gather.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from .order import worker_seed
from .prepared import PreparedFile, SplitView
from .sampling import ShardedSampler, class_weights
from .transforms import apply_batched, prepare_transform, reseed_transform


class ImageDataset(SplitView):
    """Samples ``indices`` (a split) of an image file; picklable, opens the file lazily per process.

    Attributes: ``classes`` (list[str]), ``mean``/``std`` float32 ``(C,)`` (train split, pixels
    in [0, 1]), ``info`` (``dataset_summary`` dict), ``indices`` int64 (sample rows of the
    split), ``labels`` int64 (labels of the split), ``kind`` (``"image"``), ``split``.
    """

    kind = "image"

    def __init__(self, file: PreparedFile, indices: np.ndarray, *, split: str | None = None,
                 transform: Callable[[Any], Any] | None = None,
                 target_transform: Callable[[int], Any] | None = None,
                 buffer_chunks: int = 8) -> None:
        super().__init__(file, indices, split, transform, target_transform)
        self.buffer_chunks = int(buffer_chunks)
        prepare_transform(transform, file.mean, file.std)
        self._seeded_pid: int | None = None

    # -- metadata ------------------------------------------------------------------------
    @property
    def mean(self) -> np.ndarray | None:
        return self.file.mean

    @property
    def std(self) -> np.ndarray | None:
        return self.file.std

    @property
    def path(self) -> str:
        return str(self.file.path)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.file.path.name}, split={self.split!r}, "
                f"n={len(self)}, shape={self.file.shape[1:]})")

    # -- items ---------------------------------------------------------------------------
    def _in_process(self) -> None:
        """Once per process: give random transforms a per-DataLoader-worker stream."""
        pid = os.getpid()
        if self._seeded_pid != pid:
            seed = worker_seed()
            if seed is not None:
                reseed_transform(self.transform, seed)
            self._seeded_pid = pid

    def _label(self, row: int) -> Any:
        y = -1 if self.file.labels is None else int(self.file.labels[row])
        return self.target_transform(y) if self.target_transform is not None else y

    def __getitem__(self, i: int) -> tuple[Any, Any]:
        n = len(self.indices)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for {n} samples")
        self._in_process()
        row = int(self.indices[i])
        x = self.file.take(np.array([row]))
        out = apply_batched(self.transform, x)
        return out[0], self._label(row)

    def __getitems__(self, positions: list[int]) -> list[tuple[Any, Any]]:
        """A batch of items with one gather (used by torch's DataLoader when batching)."""
        self._in_process()
        rows = self.indices[np.asarray(positions, dtype=np.int64)]
        images = apply_batched(self.transform, self.file.take(rows))
        if self.file.labels is None:
            labels = [-1] * len(rows)
        else:
            labels = self.file.labels[rows].tolist()
        if self.target_transform is not None:
            labels = [self.target_transform(y) for y in labels]
        return list(zip(images, labels, strict=True))

    def get_batch(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(x, y)`` NumPy arrays for ``positions`` (transform applied if batched)."""
        self._in_process()
        rows = self.indices[np.asarray(positions, dtype=np.int64)]
        x = apply_batched(self.transform, self.file.take(rows))
        return np.asarray(x), self.labels_of(rows)

    def labels_of(self, rows: np.ndarray) -> np.ndarray:
        if self.file.labels is None:
            return np.full(len(rows), -1, np.int64)
        return self.file.labels[rows]

    # -- whole-split access ----------------------------------------------------------------
    def as_numpy(self) -> tuple[np.ndarray, np.ndarray]:
        """The split as ``(x, y)``: x uint8 ``(n, H, W, C)``, y int64 ``(n,)`` (untransformed)."""
        idx = self.indices
        if len(idx) and idx[-1] - idx[0] + 1 == len(idx) and np.all(np.diff(idx) == 1):
            x = self.file.read_range(int(idx[0]), int(idx[-1]) + 1)
        else:
            x = self.file.take(idx)
        return x, self.labels.copy()

    def class_weights(self) -> np.ndarray:
        """float32 ``(K,)`` balanced class weights of this split (``sampling.class_weights``)."""
        return class_weights(self.labels, len(self.classes) or None)

    def sampler(self, *, shuffle: bool = True, seed: int = 0, rank: int | None = None,
                world_size: int | None = None) -> ShardedSampler:
        """A DataLoader sampler giving this rank its share of each epoch (chunk-aware when
        chunked)."""
        chunked = self.file.chunk_rows if self.file.compression else None
        return ShardedSampler(len(self), shuffle=shuffle, seed=seed, rank=rank,
                              world_size=world_size, rows=self.indices, chunk_rows=chunked,
                              buffer_chunks=self.buffer_chunks)

    def subset(self, positions: np.ndarray, split: str | None = None) -> ImageDataset:
        """A dataset over ``positions`` of this one (same file, transforms and class)."""
        new = type(self)(self.file, self.indices[np.asarray(positions, dtype=np.int64)],
                         split=split or self.split, transform=self.transform,
                         target_transform=self.target_transform,
                         buffer_chunks=self.buffer_chunks)
        return new

    def to_hf(self, image_feature: str = "image") -> Any:
        """This split as a ``datasets.Dataset`` (``image`` as ``Image`` or ``Array3D``, ``label``
        as ``ClassLabel``); see :func:`dlprep.data.hf_export.to_hf`."""
        from .hf_export import to_hf

        return to_hf(self, image_feature=image_feature)

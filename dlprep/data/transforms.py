"""Batched, seeded preprocessing on NumPy arrays (no torch needed).

Images stay uint8 ``(N, H, W, C)`` through the geometric transforms (:class:`RandomCrop`,
:class:`RandomHorizontalFlip`, :class:`Resize`); :class:`ToFloat` and :class:`Normalize` come
last and return float32 ``(N, C, H, W)``. Each transform also accepts one image ``(H, W, C)``.
Random transforms draw from their own ``numpy.random.Generator`` seeded by ``seed``; loaders
call :meth:`BatchTransform.reseed` per DataLoader worker / shard so workers do not repeat
each other and epochs are reproducible.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


def _as_batch(x: np.ndarray) -> tuple[np.ndarray, bool]:
    x = np.asarray(x)
    if x.ndim == 3:
        return x[None], True
    if x.ndim != 4:
        raise ValueError(f"expected images (N, H, W, C) or (H, W, C), got shape {x.shape}")
    return x, False


def _check_uint8_hwc(x: np.ndarray, name: str) -> None:
    if x.dtype != np.uint8:
        raise ValueError(f"{name} works on uint8 (N, H, W, C) images, got {x.dtype}; put it "
                         f"before ToFloat/Normalize")


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


class BatchTransform:
    """Base class: ``t(x)`` maps a batch (or one image) to the transformed array."""

    batched = True

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed
        self._rng: np.random.Generator | None = None

    @property
    def rng(self) -> np.random.Generator:
        if self._rng is None:
            self._rng = np.random.default_rng(self.seed)
        return self._rng

    def reseed(self, seed: int | Sequence[int]) -> None:
        """Restart the random stream from ``(self.seed, seed)``."""
        base = [] if self.seed is None else [int(self.seed)]
        extra = [int(s) for s in seed] if isinstance(seed, (list, tuple)) else [int(seed)]
        self._rng = np.random.default_rng(base + extra)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        batch, single = _as_batch(x)
        out = self.apply(batch)
        return out[0] if single else out

    def apply(self, batch: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


class Compose(BatchTransform):
    """Apply transforms in order; ``reseed`` gives each child its own stream."""

    def __init__(self, transforms: Sequence[Callable[[np.ndarray], np.ndarray]]) -> None:
        super().__init__(None)
        self.transforms = list(transforms)

    def reseed(self, seed: int | Sequence[int]) -> None:
        extra = [int(s) for s in seed] if isinstance(seed, (list, tuple)) else [int(seed)]
        for i, t in enumerate(self.transforms):
            if hasattr(t, "reseed"):
                t.reseed([*extra, i])

    def use_stats(self, mean: np.ndarray | None, std: np.ndarray | None) -> None:
        for t in self.transforms:
            if hasattr(t, "use_stats"):
                t.use_stats(mean, std)

    def apply(self, batch: np.ndarray) -> np.ndarray:
        for t in self.transforms:
            batch = t(batch)
        return batch


class RandomCrop(BatchTransform):
    """Zero-pad by ``padding`` pixels then crop ``size`` at a random place per image (uint8)."""

    def __init__(self, size: int | Sequence[int], padding: int = 0,
                 seed: int | None = None) -> None:
        super().__init__(seed)
        self.size = _pair(size)
        self.padding = int(padding)

    def apply(self, batch: np.ndarray) -> np.ndarray:
        _check_uint8_hwc(batch, "RandomCrop")
        p = self.padding
        x = np.pad(batch, ((0, 0), (p, p), (p, p), (0, 0))) if p else batch
        n, h, w, _ = x.shape
        ch, cw = self.size
        if ch > h or cw > w:
            raise ValueError(f"crop {self.size} larger than padded image {(h, w)}")
        oy = self.rng.integers(0, h - ch + 1, size=n)
        ox = self.rng.integers(0, w - cw + 1, size=n)
        rows = oy[:, None] + np.arange(ch)
        cols = ox[:, None] + np.arange(cw)
        return x[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]


class RandomHorizontalFlip(BatchTransform):
    """Mirror each image left-right with probability ``p``."""

    def __init__(self, p: float = 0.5, seed: int | None = None) -> None:
        super().__init__(seed)
        self.p = float(p)

    def apply(self, batch: np.ndarray) -> np.ndarray:
        flip = self.rng.random(len(batch)) < self.p
        out = np.array(batch, copy=True)
        out[flip] = batch[flip, :, ::-1]
        return out


class Resize(BatchTransform):
    """Resize every image to ``size`` (H, W) with Pillow (bilinear by default); uint8 stays
    uint8."""

    def __init__(self, size: int | Sequence[int], resample: str = "bilinear") -> None:
        super().__init__(None)
        self.size = _pair(size)
        self.resample = resample

    def apply(self, batch: np.ndarray) -> np.ndarray:
        from PIL import Image

        _check_uint8_hwc(batch, "Resize")
        h, w = self.size
        if batch.shape[1:3] == (h, w):
            return batch
        mode = getattr(Image.Resampling, self.resample.upper())
        out = np.empty((len(batch), h, w, batch.shape[3]), np.uint8)
        for i, img in enumerate(batch):
            if img.shape[2] == 1:
                out[i, ..., 0] = np.asarray(Image.fromarray(img[..., 0]).resize((w, h), mode))
            elif img.shape[2] in (3, 4):
                out[i] = np.asarray(Image.fromarray(img).resize((w, h), mode))
            else:
                for c in range(img.shape[2]):
                    out[i, ..., c] = np.asarray(Image.fromarray(img[..., c]).resize((w, h), mode))
        return out


class ToFloat(BatchTransform):
    """uint8 ``(N, H, W, C)`` -> float32 ``(N, C, H, W)`` in [0, 1] (like torchvision ToTensor)."""

    def apply(self, batch: np.ndarray) -> np.ndarray:
        out = batch.astype(np.float32)
        out *= 1.0 / 255.0
        return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


class Normalize(BatchTransform):
    """uint8 ``(N, H, W, C)`` -> float32 ``(N, C, H, W)``: ``(x / 255 - mean) / std`` per channel.

    ``mean``/``std`` are of pixels in [0, 1]; when omitted, the dataset's stored ``mean``/``std``
    (train split) are used (a loader calls :meth:`use_stats`).
    """

    def __init__(self, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None) -> None:
        super().__init__(None)
        self.mean = None if mean is None else np.asarray(mean, np.float32)
        self.std = None if std is None else np.asarray(std, np.float32)

    def use_stats(self, mean: np.ndarray | None, std: np.ndarray | None) -> None:
        if self.mean is None and mean is not None:
            self.mean = np.asarray(mean, np.float32)
        if self.std is None and std is not None:
            self.std = np.asarray(std, np.float32)

    def apply(self, batch: np.ndarray) -> np.ndarray:
        if self.mean is None or self.std is None:
            raise ValueError("Normalize needs mean and std (or a dataset that stores them)")
        if batch.dtype != np.uint8:
            raise ValueError(f"Normalize expects uint8 (N, H, W, C) images, got {batch.dtype}")
        c = batch.shape[3]
        scale = (1.0 / (255.0 * np.maximum(self.std, 1e-12))).astype(np.float32)
        shift = (-self.mean / np.maximum(self.std, 1e-12)).astype(np.float32)
        if scale.shape[0] not in (1, c):
            raise ValueError(f"Normalize has {scale.shape[0]} channels, images have {c}")
        out = batch.astype(np.float32)
        out *= scale
        out += shift
        return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


def prepare_transform(transform: Any, mean: np.ndarray | None, std: np.ndarray | None) -> None:
    """Give a transform (or Compose) the dataset's stored mean/std where it asked for them."""
    if transform is not None and hasattr(transform, "use_stats"):
        transform.use_stats(mean, std)


def reseed_transform(transform: Any, seed: int | Sequence[int]) -> None:
    """Reseed a transform's random stream if it has one."""
    if transform is not None and hasattr(transform, "reseed"):
        transform.reseed(seed)


def apply_batched(transform: Any, batch: np.ndarray) -> list[Any] | np.ndarray:
    """Apply ``transform`` to a batch: at once if it is batched, else image by image (a list)."""
    if transform is None:
        return batch
    if getattr(transform, "batched", False):
        return transform(batch)
    return [transform(img) for img in batch]

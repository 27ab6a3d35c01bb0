"""Building blocks shared by the families: activations, the stage plan that scales conv nets
with the input shape, and the input pipelines (images and ragged sequences as batches)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from .data import BaselineData


def activation(name: str) -> nn.Module:
    """``relu`` | ``tanh`` | ``sigmoid`` as a module."""
    return {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}[name]()


def stage_plan(height: int, width: int, *, min_size: int = 4, max_stages: int = 4) -> int:
    """How many stride-2 stages take (H, W) down to a small grid (>= ``min_size`` per side,
    exact halvings only): 28x28 -> 2 (7x7), 32x32 -> 3 (4x4), 64x64 -> 4 (4x4)."""
    stages = 0
    h, w = height, width
    while (stages < max_stages and h % 2 == 0 and w % 2 == 0 and h // 2 >= min_size
           and w // 2 >= min_size):
        h, w, stages = h // 2, w // 2, stages + 1
    return stages


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


class ImageInputs:
    """Image splits kept as uint8 (n, C, H, W) tensors on the device; batches come out as float.

    ``scale``: ``norm`` (per-channel mean/std of train), ``unit`` ([0, 1]) or ``tanh`` ([-1, 1]).
    ``augment`` applies small random shifts/rotations/scales to training batches.
    """

    def __init__(self, data: BaselineData, device: Any, *, scale: str = "norm",
                 augment: bool = False) -> None:
        self.device = device
        self.scale = scale
        self.augment = augment
        self.x = {name: torch.from_numpy(np.ascontiguousarray(s.x.transpose(0, 3, 1, 2)))
                  .to(device) for name, s in data.splits.items()}
        self.y = {name: torch.from_numpy(s.y).to(device) for name, s in data.splits.items()}
        c = data.shape[2]
        mean = data.mean if data.mean is not None else np.full(c, 0.5, np.float32)
        std = data.std if data.std is not None else np.full(c, 0.5, np.float32)
        self.mean = torch.as_tensor(mean, dtype=torch.float32, device=device).view(1, c, 1, 1)
        self.std = torch.as_tensor(std, dtype=torch.float32, device=device).view(1, c, 1, 1)
        self.generator = torch.Generator(device=device)

    def seed(self, seed: int) -> None:
        self.generator.manual_seed(seed)

    def batch(self, split: str, index: np.ndarray | torch.Tensor, *, train: bool = False
              ) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        idx = torch.as_tensor(index, dtype=torch.long, device=self.device)
        x = self.x[split][idx].float().div_(255.0)
        if train and self.augment:
            x = random_affine(x, self.generator)
        if self.scale == "norm":
            x = (x - self.mean) / self.std
        elif self.scale == "tanh":
            x = x * 2.0 - 1.0
        return (x,), self.y[split][idx]


def random_affine(x: torch.Tensor, generator: torch.Generator, *, shift: float = 0.1,
                  degrees: float = 10.0, scale: float = 0.1) -> torch.Tensor:
    """Per-sample random shift (fraction of the side), rotation and zoom of (B, C, H, W) in
    [0, 1]."""
    import torch.nn.functional as F

    b = x.shape[0]
    r = torch.rand(b, 4, generator=generator, device=x.device) * 2 - 1
    angle = r[:, 0] * math.radians(degrees)
    zoom = 1 + r[:, 1] * scale
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([torch.stack([cos, -sin, r[:, 2] * shift * 2], 1),
                         torch.stack([sin, cos, r[:, 3] * shift * 2], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, padding_mode="zeros", align_corners=False)


class SequenceInputs:
    """Ragged sequences padded per batch: tokens -> int64 (B, T) with pad id 0; values ->
    float32 (B, T, F) standardised by the train std per feature. ``max_len`` truncates."""

    def __init__(self, data: BaselineData, device: Any, *, max_len: int) -> None:
        self.device = device
        self.max_len = max_len
        self.layout = data.layout
        self.seqs = {name: s.seqs or [] for name, s in data.splits.items()}
        self.y = {name: torch.from_numpy(s.y).to(device) for name, s in data.splits.items()}
        self.scale = None
        if data.layout == "values":
            train = np.concatenate(self.seqs["train"]) if self.seqs["train"] else np.ones((1, 3))
            std = train.std(axis=0)
            self.scale = np.where(std > 0, std, 1.0).astype(np.float32)
            if train.shape[1] == 3:  # stroke-3: keep the pen bit as it is
                self.scale[2] = 1.0

    def batch(self, split: str, index: np.ndarray | torch.Tensor, *, train: bool = False
              ) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        idx = np.asarray(index, dtype=np.int64)
        seqs = [self.seqs[split][i][:self.max_len] for i in idx]
        lengths = np.array([max(len(s), 1) for s in seqs], np.int64)
        t = int(lengths.max()) if len(lengths) else 1
        if self.layout == "values":
            f = seqs[0].shape[1] if seqs and seqs[0].ndim == 2 else 3
            out = np.zeros((len(seqs), t, f), np.float32)
            for i, s in enumerate(seqs):
                out[i, :len(s)] = s / self.scale
            x = torch.from_numpy(out)
        else:
            ids = np.zeros((len(seqs), t), np.int64)
            for i, s in enumerate(seqs):
                ids[i, :len(s)] = s
            x = torch.from_numpy(ids)
        y = self.y[split][torch.as_tensor(idx, device=self.device)]
        return (x.to(self.device), torch.from_numpy(lengths)), y

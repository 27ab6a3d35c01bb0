"""Convolutional baseline: [conv-BN-act x2, max-pool] stages scaled to the input size."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .classify import ClassifierTask
from .config import TrainConfig
from .data import BaselineData
from .nets import ImageInputs, activation, stage_plan
from .runtime import Runtime


class ConvNet(nn.Module):
    """(B, C, H, W) -> ``stages`` x [``convs`` x (conv3x3-BN-act), maxpool2] -> dense -> logits.

    Channels double per stage from ``width``; 28x28 gets 2 stages (7x7), 32x32 and 64x64 get
    3 and 4 (4x4)."""

    def __init__(self, shape: list[int], classes: int, act: str, width: int, stages: int,
                 convs: int = 1, dropout: float = 0.3) -> None:
        super().__init__()
        h, w, c = shape
        layers: list[nn.Module] = []
        for s in range(stages):
            out = width * 2 ** s
            for _ in range(convs):
                layers += [nn.Conv2d(c, out, 3, padding=1, bias=False), nn.BatchNorm2d(out),
                           activation(act)]
                c = out
            layers.append(nn.MaxPool2d(2))
            h, w = h // 2, w // 2
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(c * h * w, 128),
                                  activation(act), nn.Dropout(dropout), nn.Linear(128, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def build_modules(spec: dict[str, Any]) -> dict[str, nn.Module]:
    return {"model": ConvNet(spec["shape"], spec["classes"], spec["activation"], spec["width"],
                             spec["stages"], spec.get("convs", 1))}


def make_task(data: BaselineData, cfg: TrainConfig, rt: Runtime) -> ClassifierTask:
    h, w, c = data.shape
    spec = {"shape": [h, w, c], "classes": len(data.classes), "activation": cfg.activation,
            "width": cfg.hidden or 32, "stages": max(1, stage_plan(h, w, min_size=4)),
            "convs": int(cfg.extra.get("convs", 1))}
    inputs = ImageInputs(data, rt.device, augment=cfg.augment is not False)
    inputs.seed(cfg.seed + 1000 * rt.rank)
    return ClassifierTask(data, cfg, rt, model=build_modules(spec)["model"], inputs=inputs,
                          spec=spec)

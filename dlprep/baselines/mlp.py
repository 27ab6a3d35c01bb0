"""Fully connected baseline: flattened pixels (images) or bag-of-tokens (labelled token sets)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from .classify import ClassifierTask
from .config import TrainConfig
from .data import BaselineData
from .nets import ImageInputs, activation
from .runtime import Runtime


class MLP(nn.Module):
    """``input_dim`` -> hidden layers (activation, dropout) -> ``classes`` logits."""

    def __init__(self, input_dim: int, hidden: list[int], classes: int, act: str,
                 dropout: float) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = input_dim
        for h in hidden:
            layers += [nn.Linear(width, h), activation(act), nn.Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class BagOfTokens(nn.Module):
    """Token ids (B, T) + lengths -> log(1 + count) per vocabulary entry -> :class:`MLP`."""

    def __init__(self, vocab_size: int, hidden: list[int], classes: int, act: str,
                 dropout: float) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.mlp = MLP(vocab_size, hidden, classes, act, dropout)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        counts = torch.zeros(ids.shape[0], self.vocab_size, device=ids.device)
        counts.scatter_add_(1, ids.clamp(0, self.vocab_size - 1),
                            torch.ones_like(ids, dtype=torch.float32))
        counts[:, 0] = 0.0  # padding
        return self.mlp(torch.log1p(counts))


def build_modules(spec: dict[str, Any]) -> dict[str, nn.Module]:
    if spec["input"] == "bag_of_tokens":
        model: nn.Module = BagOfTokens(spec["vocab_size"], spec["hidden"], spec["classes"],
                                       spec["activation"], spec["dropout"])
    else:
        model = MLP(spec["input_dim"], spec["hidden"], spec["classes"], spec["activation"],
                    spec["dropout"])
    return {"model": model}


def make_task(data: BaselineData, cfg: TrainConfig, rt: Runtime) -> ClassifierTask:
    from .nets import SequenceInputs

    width = cfg.hidden or 512
    spec: dict[str, Any] = {"hidden": [width, width // 2], "classes": len(data.classes),
                            "activation": cfg.activation, "dropout": 0.2}
    if data.layout == "image":
        spec.update(input="pixels", input_dim=int(np.prod(data.shape)))
        inputs: Any = ImageInputs(data, rt.device, augment=cfg.augment is not False)
        inputs.seed(cfg.seed + 1000 * rt.rank)
    else:
        vocab = len(data.vocab or []) or int(max(int(s.max()) for s in data.splits["train"].seqs
                                                 if len(s)) + 1)
        spec.update(input="bag_of_tokens", vocab_size=vocab)
        inputs = SequenceInputs(data, rt.device, max_len=100_000)
    model = build_modules(spec)["model"]
    return ClassifierTask(data, cfg, rt, model=model, inputs=inputs, spec=spec)

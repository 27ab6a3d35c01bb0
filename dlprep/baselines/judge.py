"""Judge generated images with a trained classifier baseline: how confidently it labels them
and how spread its labels are (mode collapse shows as low label entropy)."""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import torch


@torch.no_grad()
def judge_samples(images: torch.Tensor, classifier: str | os.PathLike[str] | Any,
                  threshold: float = 0.9) -> dict[str, Any]:
    """``images`` float (N, C, H, W) in [0, 1]; ``classifier`` a checkpoint path (or loaded
    :class:`Checkpoint`) of an image classifier. Returns ``confident_fraction`` (max softmax >=
    ``threshold``), ``label_entropy_bits`` of the predicted labels, and the label counts."""
    from .checkpoint import Checkpoint, load_checkpoint

    ckpt = classifier if isinstance(classifier, Checkpoint) else load_checkpoint(classifier)
    info = ckpt.info
    c = images.shape[1]
    mean = torch.as_tensor(info.get("mean") or [0.5] * c, dtype=torch.float32).view(1, c, 1, 1)
    std = torch.as_tensor(info.get("std") or [0.5] * c, dtype=torch.float32).view(1, c, 1, 1)
    probs = []
    for start in range(0, len(images), 500):
        x = (images[start:start + 500].float() - mean) / std
        probs.append(torch.softmax(ckpt.model(x), 1))
    p = torch.cat(probs)
    conf, label = p.max(1)
    counts = np.bincount(label.numpy(), minlength=p.shape[1])
    freq = counts[counts > 0] / counts.sum()
    return {"samples": int(len(images)), "threshold": threshold,
            "confident_fraction": float((conf >= threshold).float().mean()),
            "label_entropy_bits": float(-(freq * np.log2(freq)).sum()),
            "max_entropy_bits": math.log2(p.shape[1]),
            "label_counts": counts.tolist(), "judge": ckpt.config.get("family", "?")}

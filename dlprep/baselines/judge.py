"""Judge generated images with a trained classifier baseline: how confidently it labels them
and how spread its labels are (mode collapse shows as low label entropy)."""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import torch

# DESIGN.md §2: samples a classifier labels with confidence >= 0.9 for >= 50 % of them, with a
# label entropy >= 2.5 bits for ten classes (scaled by log2 K / log2 10 for K classes)
CONFIDENT_SHARE = 0.5
ENTROPY_BITS_10 = 2.5


def sample_targets(classes: int) -> dict[str, dict[str, float]]:
    """The judged-sample targets for a dataset of ``classes`` classes (DESIGN.md §2)."""
    entropy = ENTROPY_BITS_10 * math.log2(max(classes, 2)) / math.log2(10)
    return {"confident_fraction": {"min": CONFIDENT_SHARE},
            "label_entropy_bits": {"min": round(entropy, 2)}}


def judged_met(judged: dict[str, Any], targets: dict[str, dict[str, float]]) -> dict[str, bool]:
    """Which :func:`sample_targets` the judged samples reach."""
    return {key: bool(judged[key] >= targets[key]["min"])
            for key in ("confident_fraction", "label_entropy_bits")}


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

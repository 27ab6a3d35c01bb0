"""The one line printed after a dataset is prepared (fetch, import-images, import-text,
prepare --from-hf): name, what the samples are, classes, splits."""

from __future__ import annotations

import os
from typing import Any

from ..store import dataset_summary


def describe_samples(s: dict[str, Any]) -> str:
    """``5,000 images of 28x28x1``, ``120 texts, 34,567 tokens, vocab 5,000`` or
    ``300 sequences, 9,000 steps of 3 values`` from a :func:`dlprep.store.dataset_summary`."""
    arrays = s.get("arrays", {})
    n = int(s.get("samples", 0))
    if "images" in arrays:
        dims = "x".join(str(d) for d in arrays["images"]["shape"][1:])
        return f"{n:,} images of {dims} pixels"
    if "tokens" in arrays:
        text = f"{n:,} texts, {arrays['tokens']['shape'][0]:,} tokens"
        if "vocab" in arrays:
            text += f", vocab {arrays['vocab']['shape'][0]:,}"
        return text
    if "values" in arrays:
        steps, features = arrays["values"]["shape"]
        return f"{n:,} sequences, {steps:,} steps of {features} values"
    return f"{n:,} samples"


def summary_line(path: str | os.PathLike[str]) -> str:
    """``NAME: <samples>, K classes, splits a=N, b=M`` for the prepared file at ``path``."""
    s = dataset_summary(path)
    parts = [describe_samples(s)]
    if s.get("classes"):
        parts.append(f"{len(s['classes']):,} classes")
    if s.get("splits"):
        parts.append("splits " + ", ".join(f"{k}={v:,}" for k, v in s["splits"].items()))
    return f"{s.get('recipe', os.fspath(path))}: " + ", ".join(parts)

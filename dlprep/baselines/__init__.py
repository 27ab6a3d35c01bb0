"""Baseline trainers that prove a prepared dataset trains: mlp, cnn, rnn, autoencoder, gan.

``train(family, dataset, **options)`` returns the metrics it writes to ``metrics.json``;
``load_checkpoint(path)`` rebuilds the trained model. torch is imported only when used.
"""

from __future__ import annotations

from typing import Any

from .config import FAMILIES

__all__ = ["FAMILIES", "compare", "load_checkpoint", "train", "train_run"]


def train(family: str, dataset: Any, **options: Any) -> dict[str, Any]:
    """See :func:`dlprep.baselines.run.train`."""
    from .run import train as _train

    return _train(family, dataset, **options)


def train_run(family: str, dataset: Any, **options: Any) -> Any:
    """See :func:`dlprep.baselines.run.train_run` (metrics and the trained modules)."""
    from .run import train_run as _train_run

    return _train_run(family, dataset, **options)


def compare(family: str, dataset: Any, axis: str, values: list[str], **options: Any
            ) -> dict[str, Any]:
    """See :func:`dlprep.baselines.comparison.compare_variants`."""
    from .comparison import compare_variants

    return compare_variants(family, dataset, axis, values, **options)


def load_checkpoint(path: Any, map_location: str = "cpu") -> Any:
    """See :func:`dlprep.baselines.checkpoint.load_checkpoint`."""
    from .checkpoint import load_checkpoint as _load

    return _load(path, map_location)

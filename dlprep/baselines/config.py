"""Options of a baseline run and their per-family, per-dataset defaults."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from ..errors import DlprepError
from ..recipes import FAMILIES

__all__ = ["ACTIVATIONS", "CELLS", "FAMILIES", "TrainConfig", "make_config", "with_defaults"]
ACTIVATIONS = ("relu", "tanh", "sigmoid")
CELLS = ("lstm", "gru", "rnn")

# (epochs, batch size, learning rate) when the user gives none; tuned on mnist-sample (CPU).
_DEFAULTS: dict[str, tuple[int, int, float]] = {
    "mlp": (30, 128, 1e-3),
    "cnn": (12, 64, 2e-3),
    "rnn": (15, 64, 2e-3),
    "autoencoder": (15, 64, 2e-3),
    "gan": (30, 16, 2e-4),
}
_LM_DEFAULTS = (20, 32, 3e-3)
# a language model with no --epochs/--max-minutes stops after this long (CPU-sized default)
_LM_DEFAULT_MINUTES = 5.0
_VAE_EPOCHS = 30


@dataclass
class TrainConfig:
    """Everything that determines a run (stored in metrics.json and the checkpoint).

    ``None`` means "the default for this family and dataset" (see :func:`with_defaults`).
    ``max_minutes`` stops training early (the run still evaluates and writes its outputs);
    ``max_batches`` caps the batches per epoch (quick checks and tests); ``judge`` is a classifier
    checkpoint that labels 1,000 VAE/GAN samples (confidence and label entropy).
    """

    family: str
    dataset: str = ""
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    max_minutes: float | None = None
    split_val: float = 0.1
    activation: str = "relu"
    cell: str = "lstm"
    variational: bool = False
    hidden: int | None = None
    latent: int | None = None
    seq_len: int = 128
    max_batches: int | None = None
    augment: bool | None = None
    judge: str | None = None
    out: str | None = None
    cache_dir: str | None = None
    offline: bool = False
    progress: bool | None = None  # None: bars only on an interactive terminal, not in CI
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("progress")
        return d


def make_config(family: str, dataset: str, options: dict[str, Any]) -> TrainConfig:
    """A :class:`TrainConfig` from keyword options; unknown or bad options raise ``DlprepError``."""
    if family not in FAMILIES:
        raise DlprepError(f"unknown baseline family {family!r}; choose one of "
                          f"{', '.join(FAMILIES)}")
    names = {f.name for f in dataclasses.fields(TrainConfig)} - {"family", "dataset"}
    unknown = sorted(set(options) - names)
    if unknown:
        raise DlprepError(f"unknown option(s) {', '.join(unknown)} for train; known: "
                          f"{', '.join(sorted(names))}")
    cfg = TrainConfig(family=family, dataset=dataset, **options)
    if cfg.activation not in ACTIVATIONS:
        raise DlprepError(f"--activation {cfg.activation!r}: choose one of "
                          f"{', '.join(ACTIVATIONS)}")
    if cfg.cell not in CELLS:
        raise DlprepError(f"--cell {cfg.cell!r}: choose one of {', '.join(CELLS)}")
    if cfg.variational and family != "autoencoder":
        raise DlprepError("--variational applies to the autoencoder family only")
    for key in ("epochs", "batch_size", "max_batches", "seq_len"):
        value = getattr(cfg, key)
        if value is not None and value < 1:
            raise DlprepError(f"--{key.replace('_', '-')} {value}: must be at least 1")
    if cfg.lr is not None and not (math.isfinite(cfg.lr) and cfg.lr > 0):
        raise DlprepError(f"--lr {cfg.lr}: must be a positive, finite number")
    if cfg.max_minutes is not None and not cfg.max_minutes > 0:  # inf: no limit; nan refused
        raise DlprepError(f"--max-minutes {cfg.max_minutes}: must be positive")
    if cfg.judge and not (family == "gan" or cfg.variational):
        raise DlprepError("--judge applies to gan and autoencoder --variational (they sample)")
    if not 0 <= cfg.split_val < 1:
        raise DlprepError(f"--split-val {cfg.split_val}: must be in [0, 1)")
    return cfg


def with_defaults(cfg: TrainConfig, *, language_model: bool = False) -> TrainConfig:
    """Fill ``None`` epochs/batch size/lr with the defaults of the family (or the char LM)."""
    epochs, batch, lr = _LM_DEFAULTS if language_model else _DEFAULTS[cfg.family]
    if cfg.variational:
        epochs = _VAE_EPOCHS
    max_minutes = cfg.max_minutes
    if language_model and cfg.epochs is None and max_minutes is None:
        max_minutes = _LM_DEFAULT_MINUTES
    return dataclasses.replace(cfg, epochs=cfg.epochs or epochs, max_minutes=max_minutes,
                               batch_size=cfg.batch_size or batch, lr=cfg.lr or lr)

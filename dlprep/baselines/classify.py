"""The classification task shared by mlp, cnn and rnn: cross-entropy, AdamW with a cosine
schedule, accuracy, and a confusion matrix of the test split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .config import TrainConfig
from .data import BaselineData
from .loop import Task
from .runtime import Runtime


class ClassifierTask(Task):
    """Train ``model`` (called as ``model(*inputs)`` -> logits (B, K)) with cross-entropy."""

    metric = "accuracy"
    higher_is_better = True

    def __init__(self, data: BaselineData, cfg: TrainConfig, rt: Runtime, *, model: nn.Module,
                 inputs: Any, spec: dict[str, Any], weight_decay: float = 1e-4,
                 label_smoothing: float = 0.0) -> None:
        super().__init__(data, cfg, rt)
        self.net = model
        self.model = self.wrap(model)
        self.inputs = inputs
        self._spec = spec
        self.loss_fn = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=float(cfg.lr or 1e-3),
                                     weight_decay=weight_decay)
        steps = max(1, int(cfg.epochs or 1) * self._steps_per_epoch())
        self.sched = torch.optim.lr_scheduler.OneCycleLR(
            self.opt, max_lr=float(cfg.lr or 1e-3), total_steps=steps, pct_start=0.15)
        self.test_pred: np.ndarray | None = None

    def _steps_per_epoch(self) -> int:
        n, b = self.n_train(), int(self.cfg.batch_size or 64)
        steps = max(1, n // b)
        return min(steps, self.cfg.max_batches) if self.cfg.max_batches else steps

    def modules(self) -> dict[str, Any]:
        return {"model": self.net}

    def spec(self) -> dict[str, Any]:
        return self._spec

    def train_step(self, index: np.ndarray) -> dict[str, float]:
        self.model.train()
        x, y = self.inputs.batch("train", index, train=True)
        loss = self.loss_fn(self.model(*x), y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.model.parameters(), 5.0)
        self.opt.step()
        if self.sched.last_epoch + 1 < self.sched.total_steps:
            self.sched.step()
        return {"loss": float(loss.item())}

    @torch.no_grad()
    def predict(self, split: str) -> tuple[np.ndarray, float]:
        """Predicted classes of a split and the mean cross-entropy."""
        self.net.eval()
        n = len(self.data.splits[split])
        preds, total = [], 0.0
        for start in range(0, n, 512):
            x, y = self.inputs.batch(split, np.arange(start, min(n, start + 512)))
            logits = self.net(*x)
            total += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
            preds.append(logits.argmax(1).cpu().numpy())
        return (np.concatenate(preds) if preds else np.zeros(0, np.int64)), total / max(n, 1)

    def evaluate(self, split: str) -> dict[str, float]:
        pred, loss = self.predict(split)
        y = self.data.splits[split].y
        if split == "test":
            self.test_pred = pred
        return {"loss": loss, "accuracy": float((pred == y).mean()) if len(y) else float("nan")}

    def write_plots(self, out_dir: Path) -> list[str]:
        from .plots import plot_confusion

        if self.test_pred is None:
            return []
        k = len(self.data.classes) or int(max(self.data.splits["test"].y.max(), 0)) + 1
        cm = confusion_matrix(self.data.splits["test"].y, self.test_pred, k)
        plot_confusion(cm, self.data.classes, out_dir / "confusion.png",
                       title=f"{self.cfg.family} on {self.data.name}: test confusion matrix")
        return ["confusion.png"]


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> np.ndarray:
    """int64 (K, K): rows are true classes, columns predictions."""
    cm = np.zeros((k, k), np.int64)
    np.add.at(cm, (np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)), 1)
    return cm

"""PNG plots of a run (matplotlib, Agg backend, imported lazily)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(plt: Any, fig: Any, out: Path) -> Path:
    """Lay out, write ``out`` as a PNG and free the figure."""
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def _curve_axes(ax: Any, history: Sequence[dict[str, Any]], eval_split: str, metric: str,
                label: str = "") -> Any:
    epochs = [r["epoch"] for r in history]
    prefix = f"{label} " if label else ""
    ax.plot(epochs, [r.get("train_loss", np.nan) for r in history], "o-", label=f"{prefix}train")
    key = f"{eval_split}_loss"
    if any(key in r for r in history):
        ax.plot(epochs, [r.get(key, np.nan) for r in history], "s--", label=f"{prefix}{eval_split}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax2 = None
    mkey = f"{eval_split}_{metric}"
    if any(mkey in r for r in history):
        ax2 = ax.twinx()
        ax2.plot(epochs, [r.get(mkey, np.nan) for r in history], "^:", color="tab:green",
                 label=f"{prefix}{eval_split} {metric}")
        ax2.set_ylabel(metric)
    return ax2


def plot_losses(history: Sequence[dict[str, Any]], out: Path, *, eval_split: str, metric: str,
                title: str) -> Path:
    """Train and evaluation loss per epoch (+ the family's metric on a second axis)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax2 = _curve_axes(ax, history, eval_split, metric)
    handles, labels = ax.get_legend_handles_labels()
    if ax2 is not None:
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    ax.legend(handles, labels, loc="best", fontsize=8)
    ax.set_title(title, fontsize=10)
    return _save(plt, fig, out)


def plot_compare(runs: Sequence[tuple[str, dict[str, Any]]], out: Path, *, title: str) -> Path:
    """Side-by-side panels (one per variant, shared y axis) of the loss and metric curves."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(runs), figsize=(4.5 * len(runs), 4), sharey=True,
                             squeeze=False)
    for ax, (name, m) in zip(axes[0], runs, strict=True):
        _curve_axes(ax, m["epochs"], m["eval_split"], m["metric"])
        final = m["test"].get(m["metric"])
        ax.set_title(f"{name}: test {m['metric']} {final:.4f}" if final is not None else name,
                     fontsize=10)
        ax.legend(loc="upper right", fontsize=8)
    fig.suptitle(title, fontsize=11)
    return _save(plt, fig, out)


def plot_confusion(cm: np.ndarray, classes: Sequence[str], out: Path, *, title: str) -> Path:
    """Confusion matrix (rows true, columns predicted) with counts in the cells (K <= 30)."""
    plt = _plt()
    k = cm.shape[0]
    size = min(12, 3 + 0.45 * k)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(cm, cmap="Blues")
    if k <= 30:
        names = list(classes) if len(classes) == k else [str(i) for i in range(k)]
        ax.set_xticks(range(k), names, rotation=90, fontsize=8)
        ax.set_yticks(range(k), names, fontsize=8)
        hi = cm.max() / 2 if cm.size else 0
        for i in range(k):
            for j in range(k):
                if cm[i, j]:
                    ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if cm[i, j] > hi else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    return _save(plt, fig, out)


def plot_grid(images: Any, out: Path, *, rows: int, title: str) -> Path:
    """A grid of images (N, C, H, W) float in [0, 1] (torch or numpy), ``rows`` rows."""
    plt = _plt()
    x = np.asarray(images.detach().cpu().numpy() if hasattr(images, "detach") else images)
    x = np.clip(x, 0, 1).transpose(0, 2, 3, 1)
    n, h, w, c = x.shape
    cols = int(np.ceil(n / rows))
    canvas = np.ones((rows * (h + 2), cols * (w + 2), c), np.float32)
    for i in range(n):
        r, q = divmod(i, cols)
        canvas[r * (h + 2) + 1:r * (h + 2) + 1 + h, q * (w + 2) + 1:q * (w + 2) + 1 + w] = x[i]
    fig, ax = plt.subplots(figsize=(max(4, cols * 0.6), max(2, rows * 0.6) + 0.5))
    ax.imshow(canvas[..., 0] if c == 1 else canvas, cmap="gray" if c == 1 else None,
              vmin=0, vmax=1)
    ax.axis("off")
    ax.set_title(title, fontsize=9)
    return _save(plt, fig, out)

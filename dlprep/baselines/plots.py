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
    """Lay out (unless the figure has its own layout engine), write ``out`` as a PNG, free it."""
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def _curve_axes(ax: Any, history: Sequence[dict[str, Any]], eval_split: str, metric: str
                ) -> Any:
    """Train/eval loss on ``ax`` and the eval metric on a twin axis (returned, or ``None``)."""
    from matplotlib.ticker import MaxNLocator

    epochs = [r["epoch"] for r in history]
    ax.plot(epochs, [r.get("train_loss", np.nan) for r in history], "o-", label="train loss")
    key = f"{eval_split}_loss"
    if any(key in r for r in history):
        ax.plot(epochs, [r.get(key, np.nan) for r in history], "s--",
                label=f"{eval_split} loss")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax2 = None
    mkey = f"{eval_split}_{metric}"
    if any(mkey in r for r in history):
        ax2 = ax.twinx()
        ax2.plot(epochs, [r.get(mkey, np.nan) for r in history], "^:", color="tab:green",
                 label=f"{eval_split} {metric} (right axis)")
        ax2.set_ylabel(metric)
    return ax2


def _outside_legend(fig: Any, axes: Sequence[Any]) -> Any:
    """One legend for the figure, below the panels (never over the curves)."""
    handles: list[Any] = []
    labels: list[str] = []
    for ax in axes:
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in labels:
                handles.append(h)
                labels.append(label)
    return fig.legend(handles, labels, loc="outside lower center", ncol=max(1, len(labels)),
                      fontsize=8, frameon=False)


def plot_losses(history: Sequence[dict[str, Any]], out: Path, *, eval_split: str, metric: str,
                title: str) -> Path:
    """Train and evaluation loss per epoch (+ the family's metric on a second axis)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
    ax2 = _curve_axes(ax, history, eval_split, metric)
    _outside_legend(fig, [ax] + ([ax2] if ax2 is not None else []))
    ax.set_title(title, fontsize=10)
    return _save(plt, fig, out)


def compare_figure(runs: Sequence[tuple[str, dict[str, Any]]], *, title: str) -> Any:
    """The ``--compare`` figure: one panel per variant, all loss axes on one scale and all
    metric axes on one scale, one legend below the panels. Returns the matplotlib figure."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(runs), figsize=(4.5 * len(runs), 4.3), sharey=True,
                             squeeze=False, layout="constrained")
    twins, values = [], []
    for ax, (name, m) in zip(axes[0], runs, strict=True):
        ax2 = _curve_axes(ax, m["epochs"], m["eval_split"], m["metric"])
        if ax2 is not None:
            twins.append(ax2)
            key = f"{m['eval_split']}_{m['metric']}"
            values += [float(r[key]) for r in m["epochs"] if r.get(key) is not None]
        final = m["test"].get(m["metric"])
        ax.set_title(f"{name}: test {m['metric']} {final:.4f}" if final is not None else name,
                     fontsize=10)
    for ax2 in twins[1:]:
        ax2.sharey(twins[0])
    finite = [v for v in values if np.isfinite(v)]
    if twins and finite:
        lo, hi = min(finite), max(finite)
        pad = 0.05 * (hi - lo) if hi > lo else 0.05 * max(abs(hi), 1e-3)
        twins[0].set_ylim(lo - pad, hi + pad)
        for ax2 in twins[:-1]:  # the metric scale is labelled once, on the right
            ax2.tick_params(labelright=False)
            ax2.set_ylabel("")
    _outside_legend(fig, [axes[0][0]] + twins[:1])
    fig.suptitle(title, fontsize=11)
    return fig


def plot_compare(runs: Sequence[tuple[str, dict[str, Any]]], out: Path, *, title: str) -> Path:
    """Write :func:`compare_figure` as a PNG."""
    return _save(_plt(), compare_figure(runs, title=title), out)


def _has_glyph() -> Any:
    """``has(char) -> bool`` for the font matplotlib draws tick labels with."""
    from matplotlib.font_manager import FontProperties, findfont
    from matplotlib.ft2font import FT2Font

    font = FT2Font(findfont(FontProperties()))
    return lambda ch: font.get_char_index(ord(ch)) != 0


def tick_label(name: str, has_glyph: Any = None) -> str:
    """``name`` as the plot font can draw it: a class name the font has no glyphs for (an
    emoji label, say) becomes its emoji name (``:France:``, with the ``emoji`` library) or
    its code points (``U+1F1EB``), instead of empty boxes; invisible joiners and variation
    selectors the font lacks are dropped."""
    import unicodedata

    has = has_glyph or _has_glyph()
    if all(has(ch) for ch in name):
        return name
    try:
        import emoji

        name = emoji.demojize(name)
    except ImportError:
        pass
    out = []
    for ch in name:
        if has(ch):
            out.append(ch)
        elif unicodedata.category(ch) not in ("Mn", "Cf"):
            out.append(f"U+{ord(ch):04X}")
    return "".join(out) or name

def plot_confusion(cm: np.ndarray, classes: Sequence[str], out: Path, *, title: str) -> Path:
    """Confusion matrix (rows true, columns predicted) with counts in the cells (K <= 30)."""
    plt = _plt()
    k = cm.shape[0]
    size = min(12, 3 + 0.45 * k)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(cm, cmap="Blues")
    if k <= 30:
        has = _has_glyph()  # the font is opened once, not once per class
        names = [tick_label(c, has) for c in classes] if len(classes) == k else \
            [str(i) for i in range(k)]
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

"""Previews for sequence datasets: stroke-3 sketches drawn as images, text excerpts as lines."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
from PIL import Image, ImageDraw


def _decode(v: object) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def render_strokes_grid(f: h5py.File, take: np.ndarray, offsets: np.ndarray,
                        size: int = 48) -> Image.Image:
    """Rasterize the stroke-3 ``values`` of samples ``take`` into a captioned grid."""
    from .formats.quickdraw import render_stroke3
    from .preview import image_grid

    tiles = np.zeros((len(take), size, size, 1), np.uint8)
    for k, i in enumerate(take):
        seq = f["values"][int(offsets[i]):int(offsets[i + 1])]
        tiles[k, :, :, 0] = 255 - render_stroke3(seq, size, margin=2, line_width=1)
    captions = None
    if "labels" in f:
        labels = f["labels"][()][take]
        classes = [_decode(c) for c in f["classes"][()]] if "classes" in f else None
        captions = [classes[c] if classes and 0 <= c < len(classes) else str(c) for c in labels]
    return image_grid(tiles, captions, scale=1)


def render(f: h5py.File, out: Path, *, split: str | None, count: int, seed: int) -> Path:
    """Render a few sequences: stroke-3 ``values`` (F=3) as drawings, else the first tokens
    (decoded with ``vocab`` when present)."""
    offsets = f["offsets"][()]
    n = len(offsets) - 1
    pool = f["splits"][split][()] if split else np.arange(n)
    rng = np.random.default_rng(seed)
    if "values" in f and f["values"].ndim == 2 and f["values"].shape[1] == 3:
        take = np.sort(rng.choice(pool, size=min(count, len(pool)), replace=False))
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        render_strokes_grid(f, take, offsets).save(out, format="PNG")
        return out
    take = np.sort(rng.choice(pool, size=min(count, len(pool), 20), replace=False))
    vocab = [v.decode() if isinstance(v, bytes) else v for v in f["vocab"][()]] if "vocab" in f \
        else None
    lines = []
    for i in take:
        start, end = int(offsets[i]), int(offsets[i + 1])
        if "tokens" in f and vocab:
            ids = f["tokens"][start:min(end, start + 80)]
            text = "".join(vocab[t] for t in ids).replace("\n", " ")
        else:
            key = "tokens" if "tokens" in f else "values"
            text = f"{key}[{start}:{end}] length {end - start}"
        lines.append(f"#{i}: {text[:100]}")
    img = Image.new("RGB", (800, 14 * len(lines) + 8), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    for k, line in enumerate(lines):
        draw.text((4, 4 + 14 * k), line, fill=(0, 0, 0))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    img.save(out, format="PNG")
    return out

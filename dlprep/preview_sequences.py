"""Previews for sequence datasets: text excerpts rendered as an image."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
from PIL import Image, ImageDraw


def render(f: h5py.File, out: Path, *, split: str | None, count: int, seed: int) -> Path:
    """Render the first tokens of a few sequences (decoded with ``vocab`` when present)."""
    offsets = f["offsets"][()]
    n = len(offsets) - 1
    pool = f["splits"][split][()] if split else np.arange(n)
    rng = np.random.default_rng(seed)
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

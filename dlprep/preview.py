"""PNG previews of prepared datasets (Pillow only): a labelled grid of samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .errors import StoreError
from .store import open_prepared


def _decode(v: object) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def image_grid(images: np.ndarray, captions: list[str] | None = None, cols: int = 10,
               scale: int = 2, pad: int = 2) -> Image.Image:
    """Tile uint8 (N, H, W, C) images into one RGB image, with an optional caption under each."""
    n, h, w, c = images.shape
    cols = max(1, min(cols, n))
    rows = (n + cols - 1) // cols
    cap_h = 12 if captions else 0
    cell_w, cell_h = w * scale + pad, h * scale + pad + cap_h
    canvas = Image.new("RGB", (cols * cell_w + pad, rows * cell_h + pad), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for i in range(n):
        arr = images[i]
        img = Image.fromarray(arr[..., 0] if c == 1 else arr[..., :3]).convert("RGB")
        img = img.resize((w * scale, h * scale), Image.NEAREST)
        x, y = pad + (i % cols) * cell_w, pad + (i // cols) * cell_h
        canvas.paste(img, (x, y))
        if captions:
            draw.text((x, y + h * scale), captions[i][: max(1, (w * scale) // 6)], fill=(0, 0, 0))
    return canvas


def render_preview(path: Path, out: Path, *, split: str | None = None, count: int = 100,
                   seed: int = 0) -> Path:
    """Write a PNG grid of ``count`` random samples of an image dataset to ``out``."""
    with open_prepared(path) as f:
        kind = _decode(f.attrs.get("kind"))
        if "osm_format" in f.attrs:  # OpenStreetMap tiles/ways: coloured layers, attribution
            from . import preview_osm

            return preview_osm.render(f, out, split=split, count=count, seed=seed)
        if kind != "image" or "images" not in f:
            from . import preview_sequences

            return preview_sequences.render(f, out, split=split, count=count, seed=seed)
        if split is not None:
            if "splits" not in f or split not in f["splits"]:
                have = ", ".join(f["splits"]) if "splits" in f else "none"
                raise StoreError(f"{path}: no split {split!r} (have: {have})")
            pool = f["splits"][split][()]
        else:
            pool = np.arange(f["images"].shape[0])
        rng = np.random.default_rng(seed)
        take = np.sort(rng.choice(pool, size=min(count, len(pool)), replace=False))
        images = f["images"][take]
        captions = None
        if "labels" in f:
            labels = f["labels"][take]
            classes = [_decode(c) for c in f["classes"][()]] if "classes" in f else None
            captions = [classes[k] if classes and 0 <= k < len(classes) else str(k) for k in labels]
    scale = 2 if images.shape[1] <= 64 else 1
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    image_grid(images, captions, scale=scale).save(out, format="PNG")
    return out

"""Previews of OpenStreetMap datasets: tiles with their layers coloured, ways as drawn lines,
and the attribution the licence asks for under the grid."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
from PIL import Image, ImageDraw


def _decode(v: object) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def is_osm(f: h5py.File) -> bool:
    return "osm_format" in f.attrs


def colorize(tiles: np.ndarray, colors: list[tuple[int, int, int]]) -> np.ndarray:
    """uint8 (n, H, W, C) layer tiles -> (n, H, W, 3) RGB: white background, each layer painted
    in its colour in channel order (later layers on top)."""
    rgb = np.full((*tiles.shape[:3], 3), 255, np.uint8)
    for c, color in enumerate(colors[: tiles.shape[-1]]):
        on = tiles[..., c] > 0
        rgb[on] = color
    return rgb


def _captions(f: h5py.File, take: np.ndarray) -> list[str] | None:
    if "labels" not in f:
        return None
    labels = f["labels"][()][take]
    classes = [_decode(c) for c in f["classes"][()]] if "classes" in f else None
    return [classes[k] if classes and 0 <= k < len(classes) else str(k) for k in labels]


def _with_footer(grid: Image.Image, text: str) -> Image.Image:
    out = Image.new("RGB", (max(grid.width, 6 * len(text) + 8), grid.height + 16),
                    (255, 255, 255))
    out.paste(grid, (0, 0))
    ImageDraw.Draw(out).text((4, grid.height + 2), text, fill=(0, 0, 0))
    return out


def _ways_tiles(f: h5py.File, take: np.ndarray, size: int = 64) -> np.ndarray:
    offsets = f["offsets"][()]
    tiles = np.full((len(take), size, size, 3), 255, np.uint8)
    for k, i in enumerate(take):
        xy = f["values"][int(offsets[i]):int(offsets[i + 1])].astype(np.float64)
        img = Image.new("RGB", (size, size), (255, 255, 255))
        if len(xy) >= 2:
            span = max(float(np.ptp(xy[:, 0])), float(np.ptp(xy[:, 1])), 1e-9)
            pts = (xy - xy.min(axis=0)) / span * (size - 8) + 4
            pts[:, 1] = size - pts[:, 1]  # north up
            ImageDraw.Draw(img).line([tuple(p) for p in pts.tolist()], fill=(40, 40, 40), width=1)
        tiles[k] = np.asarray(img)
    return tiles


def render(f: h5py.File, out: Path, *, split: str | None, count: int, seed: int) -> Path:
    """Write a PNG grid of OSM samples (tiles coloured by layer, or ways) with attribution."""
    from .preview import image_grid

    n = f["images"].shape[0] if "images" in f else f["offsets"].shape[0] - 1
    pool = f["splits"][split][()] if split else np.arange(n)
    rng = np.random.default_rng(seed)
    take = np.sort(rng.choice(pool, size=min(count, len(pool)), replace=False))
    if "images" in f:
        layers = json.loads(_decode(f.attrs.get("osm_layers", "{}")))
        colors = [tuple(v.get("color", (128, 128, 128))) for v in layers.values()]
        rgb = colorize(f["images"][take], colors)
        legend = "  ".join(layers)
    else:
        rgb = _ways_tiles(f, take)
        legend = f"ways by {_decode(f.attrs.get('osm_label_key', ''))}"
    scale = 2 if rgb.shape[1] <= 64 else 1
    grid = image_grid(rgb, _captions(f, take), scale=scale)
    text = f"{_decode(f.attrs.get('attribution', ''))}   layers: {legend}" if "images" in f \
        else f"{_decode(f.attrs.get('attribution', ''))}   {legend}"
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    _with_footer(grid, text).save(out, format="PNG")
    return out

"""Google QuickDraw: ``numpy_bitmap`` 28x28 renders -> image dataset, or simplified/raw ndjson
or binary drawings -> stroke-3 sequence dataset (``values`` float32 (T, 3)).

Files are chosen by ``--categories`` at run time: a category's file is taken from the recipe's
``files`` when listed there (with its published sha256), else built from the bucket URL pattern
(no published checksum). Category names are percent-encoded in URLs and cache file names
(``The Eiffel Tower`` -> ``The%20Eiffel%20Tower.npy``). Upstream has no split: a deterministic
stratified one is made (``--test-fraction``, ``--seed``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import numpy as np

from ..errors import DlprepError, FormatError
from ..fetch.download import FileSpec
from ..formats.npy import read_npy_header, read_npy_rows
from ..formats.quickdraw import iter_binary, iter_ndjson, to_stroke3
from ..store import ImageTensorWriter, SequenceWriter
from .core import PrepareContext
from .params import Param
from .splits import stratified_split

log = logging.getLogger("dlprep")

BUCKET = "https://storage.googleapis.com/quickdraw_dataset/full/"
# --source -> (bucket folder, cache file suffix); raw and simplified share upstream file names,
# so raw files are cached (and looked up on --mirror) as <category>.raw.ndjson
LAYOUT = {
    "numpy_bitmap": ("numpy_bitmap", ".npy", ".npy"),
    "simplified": ("simplified", ".ndjson", ".ndjson"),
    "raw": ("raw", ".ndjson", ".raw.ndjson"),
    "binary": ("binary", ".bin", ".bin"),
}
BLOCK_ROWS = 16384

PARAMS = (
    Param("categories", "list", ["cat", "dog"], "comma-separated QuickDraw categories"),
    Param("per_class", "int", 5000, "drawings per category (0 = all); reads only those rows"),
    Param("format", "str", "bitmap", "bitmap: 28x28 images; strokes: stroke-3 sequences",
          ("bitmap", "strokes")),
    Param("source", "str", "simplified", "strokes only: which drawings to read",
          ("simplified", "raw", "binary")),
    Param("recognized_only", "bool", False,
          "strokes only: keep only drawings the game recognized (--per-class counts those)"),
    Param("test_fraction", "float", 0.1, "share of each category in the test split"),
    Param("seed", "int", 0, "seed of the stratified split"),
)


def _check_category(name: str) -> str:
    name = name.strip()
    if not name or "/" in name or "\\" in name or name in {".", ".."} or name.startswith("."):
        raise DlprepError(f"--categories: invalid category {name!r}")
    return name


def category_spec(ctx: PrepareContext, category: str, layout: str) -> FileSpec:
    """The FileSpec of one category's file: the recipe's entry when listed, else the URL pattern."""
    folder, ext, suffix = LAYOUT[layout]
    encoded = quote(category, safe="")
    name = encoded + suffix
    for spec in ctx.recipe.files:
        if spec.name == name:
            return spec
    return FileSpec(name=name, urls=[f"{BUCKET}{folder}/{encoded}{ext}"],
                    note="no published checksum; sha256 recorded in the prepared file")


@dataclass
class Downloads:
    """What ``collect`` fetched: (category, cached file) in order, and the source layout."""

    paths: list[tuple[str, Path]]
    layout: str


def collect(ctx: PrepareContext) -> Downloads:
    categories = [_check_category(c) for c in ctx.options["categories"]]
    if not categories:
        raise DlprepError("--categories: give at least one QuickDraw category")
    if len(set(categories)) != len(categories):
        raise DlprepError(f"--categories: duplicates in {', '.join(categories)}")
    if ctx.options["per_class"] < 0:
        raise DlprepError(f"--per-class must be >= 0, got {ctx.options['per_class']}")
    layout = "numpy_bitmap" if ctx.options["format"] == "bitmap" else ctx.options["source"]
    paths = []
    for category in categories:
        spec = category_spec(ctx, category, layout)
        paths.append((category, ctx.fetch(spec)))  # cache names are unique per layout
    return Downloads(paths, layout)


def build(ctx: PrepareContext, out: Path) -> None:
    if ctx.options["format"] == "bitmap":
        _build_bitmaps(ctx, out)
    else:
        _build_strokes(ctx, out)


def _limit(ctx: PrepareContext) -> int | None:
    return ctx.options["per_class"] or None


def _build_bitmaps(ctx: PrepareContext, out: Path) -> None:
    paths = ctx.collected_as(Downloads).paths
    limit = _limit(ctx)
    plan = []
    for category, path in paths:
        header = read_npy_header(path)
        if header.dtype != np.uint8 or len(header.shape) != 2 or header.shape[1] != 784:
            raise FormatError(path, 0, f"expected a uint8 (N, 784) numpy_bitmap array, got "
                                       f"{header.dtype} {header.shape}")
        rows = header.shape[0] if limit is None else min(limit, header.shape[0])
        plan.append((category, path, header, rows))
    total = sum(p[3] for p in plan)
    writer = ImageTensorWriter(out, total, (28, 28, 1))
    try:
        labels = np.concatenate([np.full(p[3], k, np.int64) for k, p in enumerate(plan)])
        for k, (_category, path, header, rows) in enumerate(plan):
            for start in range(0, rows, BLOCK_ROWS):
                block = read_npy_rows(path, min(BLOCK_ROWS, rows - start), start, header)
                writer.write(block.reshape(-1, 28, 28, 1), np.full(len(block), k, np.int64))
        splits = stratified_split(labels, {"test": ctx.options["test_fraction"]},
                                  ctx.options["seed"])
        writer.finish(splits=splits, classes=[p[0] for p in plan], **ctx.finish_kwargs())
    finally:
        writer.close()


def _build_strokes(ctx: PrepareContext, out: Path) -> None:
    downloads = ctx.collected_as(Downloads)
    paths, layout = downloads.paths, downloads.layout
    limit = _limit(ctx)
    reader = iter_binary if layout == "binary" else iter_ndjson
    recognized_only = ctx.options["recognized_only"]
    writer = SequenceWriter(out, features=3)
    try:
        labels: list[int] = []
        meta: dict[str, list] = {"key_id": [], "countrycode": [], "recognized": []}
        for k, (category, path) in enumerate(paths):
            count = 0
            for drawing in reader(path):
                if limit is not None and count >= limit:
                    break
                if recognized_only and not drawing.recognized:
                    continue
                writer.append(to_stroke3(drawing.strokes))
                labels.append(k)
                meta["key_id"].append(drawing.key_id)
                meta["countrycode"].append(drawing.countrycode)
                meta["recognized"].append(int(drawing.recognized))
                count += 1
            if not count:
                raise FormatError(path, 0, f"no drawings for category {category!r}")
        lab = np.asarray(labels, np.int64)
        splits = stratified_split(lab, {"test": ctx.options["test_fraction"]},
                                  ctx.options["seed"])
        writer.finish(splits=splits, labels=lab, classes=[c for c, _ in paths],
                      meta={k: np.asarray(v) for k, v in meta.items()},
                      extra_attrs={"stroke_format": "stroke-3 (dx, dy, pen_lift); first row is "
                                                    "the offset of the first point from (0, 0)"},
                      **ctx.finish_kwargs())
    finally:
        writer.close()

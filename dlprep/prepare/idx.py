"""IDX datasets (MNIST, Fashion-MNIST): one images + one labels file per split.

Recipe: ``[splits.<name>] images = "<file>"`` and ``labels = "<file>"``; splits are written in
recipe order and samples keep upstream order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import FormatError, RecipeError
from ..formats.idx import read_idx_images, read_idx_labels
from ..store.hdf5 import ImageTensorWriter
from .core import PrepareContext

PARAMS = ()


def build(ctx: PrepareContext, out: Path) -> None:
    recipe = ctx.recipe
    if not recipe.splits:
        raise RecipeError(f"{recipe.path}: splits: an idx recipe needs [splits.<name>] tables")
    n_classes = len(recipe.classes) if recipe.classes else None
    parts = []
    for split, table in recipe.splits.items():
        if not isinstance(table, dict) or set(table) != {"images", "labels"}:
            raise RecipeError(f"{recipe.path}: splits.{split}: needs exactly 'images' and 'labels'")
        img_path, lab_path = ctx.files[table["images"]], ctx.files[table["labels"]]
        images = read_idx_images(img_path)
        labels = read_idx_labels(lab_path, n_classes)
        if len(images) != len(labels):
            raise FormatError(lab_path, 4, f"{len(labels)} labels for {len(images)} images in "
                                           f"{img_path.name}")
        parts.append((split, images, labels))
    shapes = {p[1].shape[1:] for p in parts}
    if len(shapes) != 1:
        raise FormatError(recipe.path, -1, f"splits have different image shapes: {sorted(shapes)}")
    total = sum(len(p[1]) for p in parts)
    writer = ImageTensorWriter(out, total, parts[0][1].shape[1:])
    try:
        splits = {}
        for split, images, labels in parts:
            splits[split] = np.arange(writer.pos, writer.pos + len(images), dtype=np.int64)
            writer.write(images, labels, split=split)
        classes = recipe.classes or [str(i) for i in range(int(max(p[2].max() for p in parts)) + 1)]
        writer.finish(splits=splits, classes=classes, **ctx.finish_kwargs())
    finally:
        writer.close()

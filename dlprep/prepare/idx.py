"""IDX datasets (MNIST, Fashion-MNIST): one images + one labels file per split.

Recipe: ``[splits.<name>] images = "<file>"`` and ``labels = "<file>"``; splits are written in
recipe order and samples keep upstream order.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from ..background import Prefetch
from ..errors import FormatError, RecipeError
from ..formats.idx import IdxStream, read_idx_labels
from ..recipes import Recipe
from ..store import ImageTensorWriter
from ..store.osio import PAGE
from .core import PrepareContext

PARAMS = ()


def check_recipe(recipe: Recipe) -> None:
    """``[splits.<name>]`` tables name exactly ``images`` and ``labels``, each a declared file
    (checked by ``recipes validate`` and before anything is fetched)."""
    if not recipe.splits:
        raise RecipeError(f"{recipe.path}: splits: an idx recipe needs [splits.<name>] tables")
    declared = {spec.name for spec in recipe.files}
    for split, table in recipe.splits.items():
        if not isinstance(table, dict) or set(table) != {"images", "labels"}:
            raise RecipeError(f"{recipe.path}: splits.{split}: needs exactly 'images' and "
                              f"'labels'")
        for key, name in table.items():
            if name not in declared:
                raise RecipeError(f"{recipe.path}: splits.{split}.{key}: {name!r} is not a "
                                  f"file of [[files]] (have: {', '.join(sorted(declared))})")


def build(ctx: PrepareContext, out: Path) -> None:
    recipe = ctx.recipe
    check_recipe(recipe)
    n_classes = len(recipe.classes) if recipe.classes else None
    with contextlib.ExitStack() as stack:
        parts = []
        for split, table in recipe.splits.items():
            img_path, lab_path = ctx.files[table["images"]], ctx.files[table["labels"]]
            # headers first: both declared sizes are checked (limits) before inflating data
            images = stack.enter_context(IdxStream(img_path))
            if len(images.dims) != 3 or images.dtype != np.uint8:
                raise FormatError(img_path, 0, f"expected uint8 images (N, H, W), got "
                                               f"{images.dtype} {images.dims}")
            labels = read_idx_labels(lab_path, n_classes, count=images.dims[0])
            parts.append((split, images, labels))
        shapes = {p[1].dims[1:] for p in parts}
        if len(shapes) != 1:
            raise FormatError(recipe.path, -1,
                              f"splits have different image shapes: {sorted(shapes)}")
        total = sum(len(p[2]) for p in parts)
        writer = ImageTensorWriter(out, total, (*parts[0][1].dims[1:], 1))
        try:
            splits = {}
            pos = 0
            for split, images, labels in parts:
                splits[split] = np.arange(pos, pos + len(labels), dtype=np.int64)
                # inflating the next block overlaps with writing this one and its statistics
                with Prefetch(images.blocks(align=PAGE), name="dlprep-idx-reader") as blocks:
                    for block in blocks:
                        end = pos + len(block)
                        writer.write_at(pos, block[..., None], labels[pos - splits[split][0]:
                                                                      end - splits[split][0]],
                                        split=split, background=True)
                        pos = end
            classes = recipe.classes or [str(i) for i in
                                         range(int(max(p[2].max() for p in parts)) + 1)]
            writer.finish(splits=splits, classes=classes, **ctx.finish_kwargs())
        finally:
            writer.close()

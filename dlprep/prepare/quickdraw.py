"""Google QuickDraw: ``numpy_bitmap`` 28x28 renders -> image dataset, or simplified/raw ndjson
or binary drawings -> stroke-3 sequence dataset (``values`` float32 (T, 3)).

Files are chosen by ``--categories`` at run time: a category's file is taken from the recipe's
``files`` when listed there (with its published sha256), else built from the bucket URL pattern
(no published checksum). Category names are percent-encoded in URLs and cache file names
(``The Eiffel Tower`` -> ``The%20Eiffel%20Tower.npy``). Upstream has no split: a deterministic
stratified one is made (``--test-fraction``, ``--seed``).

A sharded builder (:mod:`dlprep.scale`, :mod:`.quickdraw_shards`): bitmaps by category and row
range, strokes one shard per category; ``--workers N`` / ``--scheduler`` run them on Dask with
the same output bytes as one process.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import numpy as np

from ..errors import DlprepError, FormatError
from ..fetch.download import FileSpec
from ..formats.npy import read_npy_header
from ..scale.shards import ShardSpec, ranges
from ..store import ImageTensorWriter, SequenceWriter
from . import quickdraw_shards
from .core import PrepareContext
from .params import Param
from .splits import stratified_split

if TYPE_CHECKING:
    from ..scale import ShardJob

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
    Param("workers", "int", 1, "processes reading the category files: a Dask LocalCluster "
                               "when > 1 (output does not depend on it; see --scheduler)"),
)
RUNTIME_OPTIONS = ("workers",)


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


def _limit(ctx: PrepareContext) -> int | None:
    return ctx.options["per_class"] or None


# sharded (dlprep.scale): bitmaps by category and row range, strokes by category (and byte
# range of a whole ndjson file);
# ``prepare`` runs them in this process, on a Dask LocalCluster (--workers N) or on a cluster
# (--scheduler). The plan depends on the inputs and options only, never on the workers.


def plan_shards(ctx: PrepareContext) -> list[ShardSpec]:
    """Bitmaps: row ranges of :data:`~.quickdraw_shards.SHARD_ROWS` of each category (headers
    checked here); strokes: one shard per category file, or, for a whole ndjson file (no
    ``--per-class``), byte ranges of about :data:`~.quickdraw_shards.RANGE_BYTES` cut at line
    starts."""
    downloads = ctx.collected_as(Downloads)
    limit = _limit(ctx)
    specs = []
    for k, (_category, path) in enumerate(downloads.paths):
        if ctx.options["format"] == "bitmap":
            header = read_npy_header(path)
            if header.dtype != np.uint8 or len(header.shape) != 2 or header.shape[1] != 784:
                raise FormatError(path, 0, f"expected a uint8 (N, 784) numpy_bitmap array, "
                                           f"got {header.dtype} {header.shape}")
            rows = header.shape[0] if limit is None else min(limit, header.shape[0])
            specs += [ShardSpec.make(f"bitmap-{k:04d}-{j:06d}", [path.absolute()], a, b,
                                     {"kind": "bitmap", "label": k,
                                      "part_format": quickdraw_shards.PART_FORMAT})
                      for j, (a, b) in enumerate(ranges(rows, quickdraw_shards.SHARD_ROWS))]
        else:
            common = {"kind": "strokes", "label": k, "layout": downloads.layout,
                      "limit": limit or 0,
                      "recognized_only": bool(ctx.options["recognized_only"])}
            # a whole ndjson file (no --per-class) is cut into byte ranges at line starts;
            # otherwise the category is read from its start, counting drawings in file order
            cuts = quickdraw_shards.line_ranges(path) \
                if limit is None and downloads.layout != "binary" else [(0, 0)]
            specs += [ShardSpec.make(f"strokes-{k:04d}-{j:06d}", [path.absolute()], a, b,
                                     common) for j, (a, b) in enumerate(cuts)]
    return specs


run_shard = quickdraw_shards.run_quickdraw_shard
ASSEMBLY_MAPS = False  # assemble() runs nothing on the executor (dlprep.scale.build)


def assemble(ctx: PrepareContext, out: Path, job: ShardJob) -> None:
    """Join the parts, in plan order, into the one prepared file (the same bytes as one
    process reading the files in order)."""
    if ctx.options["format"] == "bitmap":
        _assemble_bitmaps(ctx, out, job)
    else:
        _assemble_strokes(ctx, out, job)


def _split(ctx: PrepareContext, labels: np.ndarray) -> dict[str, np.ndarray]:
    return stratified_split(labels, {"test": ctx.options["test_fraction"]}, ctx.options["seed"])


def _assemble_bitmaps(ctx: PrepareContext, out: Path, job: ShardJob) -> None:
    classes = [c for c, _ in ctx.collected_as(Downloads).paths]
    counts = [int(st["count"]) for st in job.stats]
    labels = np.concatenate([np.zeros(0, np.int64)] + [
        np.full(n, spec.option("label"), np.int64) for spec, n in zip(job.specs, counts,
                                                                      strict=True)])
    writer = ImageTensorWriter(out, len(labels), (28, 28, 1))
    try:
        done = 0
        sums = np.zeros((len(labels), 2, 1), np.uint64)
        for part, n in zip(job.parts, counts, strict=True):
            if not n:
                continue
            rows, part_sums = quickdraw_shards.read_bitmap_part(part)
            if len(rows) != n or len(part_sums) != n:
                raise DlprepError(f"{part}: {len(rows)} rows, the shard reported {n}")
            sums[done:done + n] = part_sums
            for start in range(0, n, BLOCK_ROWS):
                block = rows[start:start + BLOCK_ROWS]
                writer.write(block.reshape(-1, 28, 28, 1), labels[done:done + len(block)])
                done += len(block)
        writer.set_row_sums(sums)  # the train mean/std from the shards' sums
        writer.finish(splits=_split(ctx, labels), classes=classes, **ctx.finish_kwargs())
    finally:
        writer.close()


def _assemble_strokes(ctx: PrepareContext, out: Path, job: ShardJob) -> None:
    paths = ctx.collected_as(Downloads).paths
    counts = [0] * len(paths)
    for spec, st in zip(job.specs, job.stats, strict=True):
        counts[spec.option("label")] += int(st["count"])
    for (category, path), count in zip(paths, counts, strict=True):
        if not count:  # bad input: nothing of this run is worth resuming
            shutil.rmtree(job.parts_dir, ignore_errors=True)
            raise FormatError(path, 0, f"no drawings for category {category!r}")
    writer = SequenceWriter(out, features=3)
    try:
        labels: list[np.ndarray] = []
        meta: dict[str, list[np.ndarray]] = {"key_id": [], "countrycode": [], "recognized": []}
        for spec, part in zip(job.specs, job.parts, strict=True):
            got = quickdraw_shards.read_strokes_part(part)
            writer.extend_flat(got.values, got.lengths)
            labels.append(np.full(len(got.lengths), spec.option("label"), np.int64))
            for key in meta:
                meta[key].append(getattr(got, key))
        lab = np.concatenate(labels)
        writer.finish(splits=_split(ctx, lab), labels=lab, classes=[c for c, _ in paths],
                      meta={k: np.concatenate(v) for k, v in meta.items()},
                      extra_attrs={"stroke_format": "stroke-3 (dx, dy, pen_lift); first row is "
                                                    "the offset of the first point from (0, 0)"},
                      **ctx.finish_kwargs())
    finally:
        writer.close()

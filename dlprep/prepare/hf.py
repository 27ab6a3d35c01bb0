"""Builder ``hf``: a local Hugging Face ``datasets`` export -> dlprep HDF5 (no hub access).

Inputs: a folder written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``, or local
parquet files (one file, or a folder of ``<split>-*.parquet`` / ``<split>/*.parquet`` files).
Columns: ``Image`` / ``Array2D`` / ``Array3D`` -> ``images`` uint8 (N, H, W, C); ``ClassLabel``
(or an int/string ``label`` column) -> ``labels`` + ``classes``; other scalar columns ->
``meta/<column>``; the DatasetDict's splits -> ``splits/`` (``validation`` is stored as ``val``).
A string column (when there is no image column, or ``--text-column``) becomes a text
sequence set: cleaned and tokenized with ``dlprep.text`` (tokenizer fitted on ``train``).
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DlprepError, FormatError, require
from ..fetch.download import hash_file
from ..store import ImageTensorWriter
from .core import PrepareContext
from .params import Param
from .text import TEXT_PARAMS

_TEXT_KEYS = ("tokenizer", "lowercase", "min_freq", "max_vocab", "keep_whitespace", "normalize",
              "clean_control")
PARAMS = tuple(p for p in TEXT_PARAMS if p.name in _TEXT_KEYS) + (
    Param("path", "str", None, "save_to_disk folder, a .parquet file or a folder of parquet files"),
    Param("image_column", "str", "", "image column (default: the first Image/Array2D/Array3D)"),
    Param("label_column", "str", "", "label column (default: the first ClassLabel, else 'label')"),
    Param("text_column", "str", "", "string column for a text sequence set"),
    Param("size", "int", 0, "resize images to SIZE x SIZE (shorter side + centre crop); needed "
                            "when their sizes differ"),
)

SPLIT_ALIASES = {"validation": "val", "valid": "val", "dev": "val"}
_SPLIT_FROM_FILE = re.compile(r"^(train|test|validation|valid|val|dev)[-_.]")
_BLOCK = 1024


def _datasets() -> Any:
    ds_mod: Any = require("datasets", "hf")
    ds_mod.disable_progress_bars()
    return ds_mod


def input_files(root: Path) -> list[Path]:
    """The files whose bytes define the import (arrow/parquet data + HF json metadata), sorted."""
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise DlprepError(f"--from-hf {root}: no such file or folder")
    files = sorted(p for p in root.rglob("*") if p.is_file()
                   and p.suffix in {".arrow", ".parquet", ".json"} and not p.name.startswith("."))
    if not files:
        raise DlprepError(f"--from-hf {root}: no .arrow or .parquet files (expected a "
                          f"save_to_disk folder or parquet files)")
    return files


def _parquet_split(path: Path, root: Path) -> str:
    m = _SPLIT_FROM_FILE.match(path.name)
    if m:
        return m.group(1)
    for part in path.relative_to(root).parts[:-1] if root.is_dir() else ():
        if part in {"train", "test", "validation", "valid", "val", "dev"}:
            return part
    return "train"


def load_splits(root: Path) -> dict[str, Any]:
    """``{split: datasets.Dataset}`` read from a save_to_disk folder or parquet files."""
    ds_mod = _datasets()
    parquet = [root] if root.suffix == ".parquet" else (
        sorted(root.rglob("*.parquet")) if root.is_dir() else [])
    if root.is_dir() and ((root / "dataset_dict.json").is_file()
                          or (root / "state.json").is_file()):
        try:
            loaded = ds_mod.load_from_disk(str(root))
        except Exception as exc:  # datasets raises many types for corrupt folders
            raise FormatError(root, -1, f"not a readable save_to_disk folder: {exc}") from exc
        found = dict(loaded.items()) if isinstance(loaded, ds_mod.DatasetDict) else \
            {"train": loaded}
    elif parquet:
        import pyarrow.parquet as pq

        groups: dict[str, list[Any]] = {}
        for p in parquet:
            try:
                table = pq.read_table(p)
            except Exception as exc:  # pyarrow.ArrowInvalid and friends
                raise FormatError(p, -1, f"not a readable parquet file: {exc}") from exc
            groups.setdefault(_parquet_split(p, root), []).append(ds_mod.Dataset(table))
        found = {k: v[0] if len(v) == 1 else ds_mod.concatenate_datasets(v)
                 for k, v in groups.items()}
    else:
        raise DlprepError(f"--from-hf {root}: not a save_to_disk folder (no dataset_dict.json or "
                          f"state.json) and no .parquet files")
    out: dict[str, Any] = {}
    for name, dset in found.items():
        key = SPLIT_ALIASES.get(name, name)
        if key in out:
            raise DlprepError(f"--from-hf {root}: splits {name!r} and another both map to {key!r}")
        out[key] = dset
    return out


def _is_image_feature(feature: Any, ds_mod: Any) -> bool:
    return isinstance(feature, (ds_mod.Image, ds_mod.Array2D, ds_mod.Array3D))


def pick_columns(features: Any, options: dict[str, Any], where: str) -> tuple[str, str, str]:
    """``(image_column, label_column, text_column)``; '' where absent."""
    ds_mod = _datasets()
    names = list(features)

    def check(col: str, what: str) -> str:
        if col and col not in features:
            raise DlprepError(f"{where}: --{what}-column {col!r} not found; columns: "
                              f"{', '.join(names)}")
        return col

    image = check(options.get("image_column") or "", "image") or next(
        (c for c in names if _is_image_feature(features[c], ds_mod)), "")
    label = check(options.get("label_column") or "", "label") or next(
        (c for c in names if isinstance(features[c], ds_mod.ClassLabel)), "") or next(
        (c for c in ("label", "labels") if c in features), "")
    text = check(options.get("text_column") or "", "text")
    if not text and not image:
        text = next((c for c in names if getattr(features[c], "dtype", "") in
                     ("string", "large_string") and c != label), "")
    return image, label, text


def _mode_for(img: Any) -> str:
    if img.mode in {"L", "1", "I", "I;16", "F"}:
        return "L"
    if img.mode in {"RGBA", "LA", "PA"} or (img.mode == "P" and "transparency" in img.info):
        return "RGBA"
    return "RGB"


def _decode_images(column: Any, first_row: int, size: int, mode: str | None,
                   where: str) -> tuple[np.ndarray, str]:
    """Decode an arrow ``struct<bytes, path>`` block to uint8 (n, H, W, C)."""
    from PIL import Image, ImageOps

    arrays = []
    for i, item in enumerate(column.to_pylist()):
        data, path = (item or {}).get("bytes"), (item or {}).get("path")
        try:
            if data is not None:
                img = Image.open(io.BytesIO(data))
            elif path and Path(path).is_file():
                img = Image.open(path)
            else:
                raise OSError("no bytes and no readable path")
            img = ImageOps.exif_transpose(img)
            mode = mode or _mode_for(img)
            img = img.convert(mode)
            if size:
                img = ImageOps.fit(img, (size, size), Image.Resampling.BILINEAR)
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise FormatError(where, -1, f"row {first_row + i}: undecodable image ({exc})") \
                from exc
        arr = np.asarray(img, dtype=np.uint8)
        arrays.append(arr[..., None] if arr.ndim == 2 else arr)
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise FormatError(where, -1, f"rows {first_row}..{first_row + len(arrays) - 1}: images "
                                     f"differ in size {sorted(shapes)[:3]}; pass --size N")
    return np.stack(arrays), mode or "RGB"


def _array_block(values: Any, first_row: int, where: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype == object:
        try:
            arr = np.stack([np.asarray(v) for v in arr])
        except ValueError as exc:
            raise FormatError(where, -1, f"rows from {first_row}: arrays differ in shape") from exc
    if arr.ndim == 3:
        arr = arr[..., None]
    if arr.ndim != 4:
        raise FormatError(where, -1, f"rows from {first_row}: expected (H, W) or (H, W, C) "
                                     f"arrays, got shape {arr.shape[1:]}")
    if arr.dtype != np.uint8:
        if arr.dtype.kind not in "iub" or (arr.size and (arr.min() < 0 or arr.max() > 255)):
            raise FormatError(where, -1, f"rows from {first_row}: {arr.dtype} pixels; dlprep "
                                         f"stores uint8 0..255 (convert the column first)")
        arr = arr.astype(np.uint8)
    return arr


def _fit_block(block: np.ndarray, size: int) -> np.ndarray:
    """Shorter side to ``size`` then centre crop, per image (as for ``Image`` columns)."""
    from PIL import Image, ImageOps

    out = np.empty((len(block), size, size, block.shape[3]), np.uint8)
    for i, img in enumerate(block):
        for c in range(img.shape[2]):
            plane = Image.fromarray(np.ascontiguousarray(img[..., c]))
            out[i, ..., c] = np.asarray(ImageOps.fit(plane, (size, size),
                                                     Image.Resampling.BILINEAR))
    return out


def iter_image_blocks(dset: Any, column: str, size: int, where: str) -> Iterator[np.ndarray]:
    """uint8 (n, H, W, C) blocks of an image column, decoded in row order."""
    ds_mod = _datasets()
    feature = dset.features[column]
    mode = None
    for start in range(0, len(dset), _BLOCK):
        stop = min(start + _BLOCK, len(dset))
        if isinstance(feature, ds_mod.Image):
            col = dset.with_format("arrow")[start:stop][column].combine_chunks()
            block, mode = _decode_images(col, start, size, mode, where)
        else:
            block = _array_block(dset.with_format("numpy")[start:stop][column], start, where)
            if size and block.shape[1:3] != (size, size):
                block = _fit_block(block, size)
        yield block


def label_values(splits: dict[str, Any], column: str) -> tuple[dict[str, np.ndarray], list[str]]:
    """Integer labels per split and the class names (ClassLabel names, sorted strings, or
    0..K-1)."""
    ds_mod = _datasets()
    first = next(iter(splits.values()))
    feature = first.features[column]
    raw = {k: d.with_format("numpy")[column] for k, d in splits.items()}
    if isinstance(feature, ds_mod.ClassLabel):
        return {k: np.asarray(v, np.int64) for k, v in raw.items()}, list(feature.names)
    if all(np.asarray(v).dtype.kind in "iu" for v in raw.values()):
        ints = {k: np.asarray(v, np.int64) for k, v in raw.items()}
        top = max((int(v.max()) for v in ints.values() if len(v)), default=-1)
        if any(len(v) and v.min() < 0 for v in ints.values()):
            raise FormatError(column, -1, "negative labels")
        return ints, [str(i) for i in range(top + 1)]
    strs = {k: np.asarray(v).astype(str) for k, v in raw.items()}
    classes = sorted(set().union(*(set(v.tolist()) for v in strs.values())))
    index = {c: i for i, c in enumerate(classes)}
    return {k: np.array([index[s] for s in v], np.int64) for k, v in strs.items()}, classes


def meta_columns(splits: dict[str, Any], skip: set[str]) -> dict[str, np.ndarray]:
    """Scalar (Value) columns other than ``skip``, concatenated over splits in order."""
    ds_mod = _datasets()
    first = next(iter(splits.values()))
    out = {}
    for name, feature in first.features.items():
        if name in skip or not isinstance(feature, ds_mod.Value):
            continue
        if not re.match(r"^[A-Za-z0-9_.-]+$", name):
            continue
        parts = [np.asarray(d.with_format("numpy")[name]) for d in splits.values()]
        out[name] = np.concatenate(parts) if parts else np.empty(0)
    return out


def collect(ctx: PrepareContext) -> None:
    """Record the HF files (with their sha256) as sources so the config hash covers them."""
    path = ctx.options.get("path")
    if not path:
        raise DlprepError("prepare --from-hf: a PATH is required")
    root = Path(path).expanduser().resolve()
    for f in input_files(root):
        rel = f.name if root.is_file() else str(f.relative_to(root))
        ctx.sources.append({"name": rel, "url": f.as_uri(), "sha256": hash_file(f, "sha256")})
    ctx.files["root"] = root


def build(ctx: PrepareContext, out: Path) -> None:
    root = ctx.files["root"]
    where = str(root)
    splits = load_splits(root)
    features = next(iter(splits.values())).features
    for name, dset in splits.items():
        if dset.features != features:
            raise FormatError(root, -1, f"split {name!r} has other columns/features than the "
                                        f"first split")
    image, label, text = pick_columns(features, ctx.options, where)
    info = next(iter(splits.values())).info
    if info is not None:
        ctx.recipe.license = ctx.recipe.license or (info.license or "")
        ctx.recipe.citation = ctx.recipe.citation or (info.citation or "")
    if text and (ctx.options.get("text_column") or not image):
        _build_text(ctx, out, splits, text, label)
        return
    if not image:
        raise DlprepError(f"{where}: no image column (Image/Array2D/Array3D) among "
                          f"{', '.join(features)}; pass --image-column")
    _build_images(ctx, out, splits, image, label)


def _build_images(ctx: PrepareContext, out: Path, splits: dict[str, Any], image: str,
                  label: str) -> None:
    where = str(ctx.files["root"])
    size = int(ctx.options.get("size") or 0)
    total = sum(len(d) for d in splits.values())
    if total == 0:
        raise DlprepError(f"{where}: the dataset has no rows")
    labels, classes = label_values(splits, label) if label else ({}, None)
    first_block = next(iter_image_blocks(next(d for d in splits.values() if len(d)), image,
                                         size, where))
    writer = ImageTensorWriter(out, total, first_block.shape[1:])
    try:
        index: dict[str, np.ndarray] = {}
        for name, dset in splits.items():
            start = writer.pos
            done = 0
            for block in iter_image_blocks(dset, image, size, where):
                if block.shape[1:] != writer.shape:
                    raise FormatError(where, -1, f"split {name!r} row {done}: images are "
                                                 f"{block.shape[1:]}, first split has "
                                                 f"{writer.shape}; pass --size N")
                y = labels[name][done:done + len(block)] if label else \
                    np.full(len(block), -1, np.int64)
                writer.write(block, y)
                done += len(block)
            index[name] = np.arange(start, writer.pos, dtype=np.int64)
        meta = meta_columns(splits, {image, label})
        writer.finish(splits=index, classes=classes, meta=meta or None, **ctx.finish_kwargs())
    finally:
        writer.close()


def _build_text(ctx: PrepareContext, out: Path, splits: dict[str, Any], text: str,
                label: str) -> None:
    """String column -> ragged tokens; tokenizer fitted on the train split (else all rows)."""
    from ..store import SequenceWriter
    from ..text.clean import clean_text
    from ..text.tokenizers import fit_tokenizer

    o = ctx.options
    docs = {k: [clean_text(str(t or ""), normalize=o["normalize"], control=o["clean_control"])
                for t in d[text]] for k, d in splits.items()}
    fit_on = docs.get("train") or [t for v in docs.values() for t in v]
    tok = fit_tokenizer(o["tokenizer"], fit_on, lowercase=o["lowercase"], min_freq=o["min_freq"],
                        max_vocab=o["max_vocab"], keep_whitespace=o["keep_whitespace"])
    labels, classes = label_values(splits, label) if label else ({}, None)
    writer = SequenceWriter(out)
    try:
        index: dict[str, np.ndarray] = {}
        for name, split_docs in docs.items():
            start = writer.count
            for doc in split_docs:
                writer.append(tok.encode_array(doc))
            index[name] = np.arange(start, writer.count, dtype=np.int64)
        all_labels = np.concatenate([labels[k] for k in docs]) if label else None
        meta = meta_columns(splits, {text, label})
        writer.finish(splits=index, labels=all_labels, classes=classes, vocab=tok.vocab,
                      tokenizer=tok.config, meta=meta or None, **ctx.finish_kwargs())
    finally:
        writer.close()


def import_recipe(path: str | Path, name: str) -> Any:
    """A recipe for ``prepare --from-hf PATH --name NAME`` (no TOML file: the import is the
    data)."""
    from ..cache import safe_component
    from ..recipes import Recipe

    safe_component(name, "--name")
    return Recipe(name=name, title=f"{name} (imported from Hugging Face datasets at {path})",
                  version="1", kind="image", path=Path(path), connector="hf",
                  homepage="https://huggingface.co/docs/datasets")

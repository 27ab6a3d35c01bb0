"""Image sets -> HDF5: the shared decode-and-write step, and the ``image-folder`` builder.

``image-folder`` (used by ``dlprep import-images``) reads an ImageFolder tree (one sub-folder
per class), a CSV of ``path,label``, or a tar/zip holding such a tree. Classes are the folder
names (or CSV labels), sorted; a deterministic stratified train/test split is made (seed stored).
Files that do not decode are skipped and listed in the root attribute ``skipped``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DlprepError, FormatError
from ..formats.images import (
    POLICIES,
    DecodeJob,
    ImageRef,
    ImageSpec,
    decode_many,
    tar_refs,
    zip_refs,
)
from ..store import ImageTensorWriter
from .core import PrepareContext
from .params import Param
from .splits import stratified_split

log = logging.getLogger("dlprep")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm",
                    ".pgm", ".pbm", ".pnm", ".jfif")

IMAGE_PARAMS = (
    Param("size", "str", "64", "output size in pixels: N (square) or HxW"),
    Param("grayscale", "bool", False, "store 1 channel (L) instead of RGB"),
    Param("resize", "str", POLICIES[0], "resize policy", POLICIES),
    Param("max_pixels", "int", 89_478_485, "refuse images with more pixels (bomb guard)"),
    Param("dedupe", "str", "none", "drop duplicates: exact (file bytes) or perceptual (dHash)",
          ("none", "exact", "perceptual")),
    Param("workers", "int", 1, "decode processes (output bytes do not depend on it)"),
)
# options that change how, not what, is built: kept out of the config hash (prepare.core)
RUNTIME_OPTIONS = ("workers",)

PARAMS = (
    Param("source", "str", None, "folder, CSV (path,label), tar or zip to import"),
    *IMAGE_PARAMS,
    Param("test_fraction", "float", 0.2, "share of each class in the test split"),
    Param("seed", "int", 0, "seed of the stratified split"),
)


def parse_size(text: str | int) -> tuple[int, int]:
    """``64`` -> (64, 64); ``48x64`` -> (48, 64) as (height, width)."""
    try:
        if isinstance(text, int):
            return text, text
        h, sep, w = str(text).lower().partition("x")
        size = (int(h), int(w) if sep else int(h))
    except ValueError as exc:
        raise DlprepError(f"--size: expected N or HxW, got {text!r}") from exc
    if min(size) < 1 or max(size) > 4096:
        raise DlprepError(f"--size: {text!r} out of range 1..4096")
    return size


def image_spec(options: dict[str, Any]) -> ImageSpec:
    """The ImageSpec that the common image options describe."""
    h, w = parse_size(options["size"])
    return ImageSpec(h, w, 1 if options["grayscale"] else 3, options["resize"],
                     max_pixels=options["max_pixels"])


# ---------------------------------------------------------------------------------------------
# decode many images into a writer


@dataclass
class DecodedSet:
    """An ImageTensorWriter filled with the samples that decoded (``kept``: input indices)."""

    writer: ImageTensorWriter
    kept: np.ndarray
    skipped: list[dict[str, str]] = field(default_factory=list)
    duplicates: list[dict[str, str]] = field(default_factory=list)

    def report_attrs(self) -> dict[str, str]:
        """Root attributes recording what was left out (JSON lists, see docs/FORMAT.md)."""
        out = {"skipped": json.dumps(self.skipped)}
        if self.duplicates:
            out["duplicates"] = json.dumps(self.duplicates)
        return out


def decode_to_writer(out: Path, jobs: Sequence[DecodeJob], labels: np.ndarray, spec: ImageSpec,
                     *, workers: int = 1, dedupe: str = "none", mask_spec: ImageSpec | None = None,
                     mask_name: str = "trimaps", progress: bool | None = None) -> DecodedSet:
    """Decode ``jobs`` (in order, ``workers`` processes) and write the good ones to ``out``.

    Results are spooled to a memory-mapped temp file next to ``out`` (the count is known only
    after decoding), then copied into a contiguous ``images`` dataset; masks, when asked, go to
    ``mask_name`` uint8 (N, H, W, 1). Output bytes do not depend on ``workers``. ``progress``:
    a tqdm bar on stderr (None: only when stderr is a terminal).
    """
    n = len(jobs)
    spool_path = out.with_name(out.name + ".spool")
    mask_path = out.with_name(out.name + ".mask-spool")
    paths = [spool_path] + ([mask_path] if mask_spec else [])
    try:
        spool = np.lib.format.open_memmap(spool_path, "w+", np.uint8, (max(n, 1), *spec.shape))
        masks = np.lib.format.open_memmap(mask_path, "w+", np.uint8, (max(n, 1), *mask_spec.shape)) \
            if mask_spec else None
        kept: list[int] = []
        skipped: list[dict[str, str]] = []
        duplicates: list[dict[str, str]] = []
        seen: dict[str, str] = {}
        done = 0
        bar = _progress_bar(n, progress)
        results = decode_many(jobs, spec, mask_spec=mask_spec, workers=workers,
                              hash_mode=dedupe, progress=bar.update if bar else None)
        for i, res in enumerate(results):
            name = jobs[i].image.name
            if res.image is None:
                skipped.append({"name": name, "reason": res.error})
                log.warning("skipped %s: %s", name, res.error)
                continue
            if dedupe != "none":
                if res.content_hash in seen:
                    duplicates.append({"name": name, "same_as": seen[res.content_hash]})
                    continue
                seen[res.content_hash] = name
            spool[done] = res.image
            if masks is not None:
                masks[done] = res.mask
            kept.append(i)
            done += 1
        if bar:
            bar.close()
        if skipped:
            log.warning("skipped %d of %d images (listed in the 'skipped' attribute of the "
                        "prepared file)", len(skipped), n)
        if not done:
            raise DlprepError(f"no image could be decoded ({len(skipped)} skipped"
                              + (f", e.g. {skipped[0]['name']}: {skipped[0]['reason']}"
                                 if skipped else "") + ")")
        keep = np.asarray(kept, np.int64)
        writer = ImageTensorWriter(out, done, spec.shape)
        try:
            _copy_spools(writer, spool, masks, keep, np.asarray(labels, np.int64), mask_name)
        except BaseException:
            writer.close()
            raise
        del spool, masks
        return DecodedSet(writer, keep, skipped, duplicates)
    finally:
        for p in paths:
            p.unlink(missing_ok=True)


def _progress_bar(total: int, progress: bool | None):  # type: ignore[no-untyped-def]
    if progress is False or (progress is None and not sys.stderr.isatty()):
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="img", desc="decode", file=sys.stderr, leave=False)


def _copy_spools(writer: ImageTensorWriter, spool: np.ndarray, masks: np.ndarray | None,
                 keep: np.ndarray, labels: np.ndarray, mask_name: str) -> None:
    """Copy the first ``len(keep)`` spooled images (and masks) into the writer, 64 MB at a time."""
    done = len(keep)
    block = max(1, (64 << 20) // int(np.prod(spool.shape[1:])))
    for start in range(0, done, block):
        stop = min(done, start + block)
        writer.write(np.ascontiguousarray(spool[start:stop]), labels[keep[start:stop]])
    if masks is not None:
        dset = writer.f.create_dataset(mask_name, shape=(done, *masks.shape[1:]), dtype=np.uint8)
        for start in range(0, done, block):
            stop = min(done, start + block)
            dset[start:stop] = masks[start:stop]
        for k, label in enumerate(("batch", "height", "width", "channel")):
            dset.dims[k].label = label


# ---------------------------------------------------------------------------------------------
# the image-folder builder


def _is_image_name(name: str) -> bool:
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    return not base.startswith(".") and base.lower().endswith(IMAGE_EXTENSIONS)


def _strip_common_root(names: list[str]) -> int:
    """How many leading folders all names share while each keeps a class folder."""
    parts = [n.split("/") for n in names]
    depth = 0
    while parts and all(len(p) > depth + 2 for p in parts) and \
            len({p[depth] for p in parts}) == 1:
        depth += 1
    return depth


def _tree_samples(refs: dict[str, ImageRef], where: str) -> tuple[list[ImageRef], list[str]]:
    names = sorted(n for n in refs if _is_image_name(n))
    depth = _strip_common_root(names)
    samples, labels = [], []
    for name in names:
        parts = name.split("/")[depth:]
        if len(parts) < 2:
            log.warning("%s: %s is not inside a class folder; ignored", where, name)
            continue
        samples.append(refs[name])
        labels.append(parts[0])
    return samples, labels


def _folder_refs(root: Path) -> dict[str, ImageRef]:
    refs = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fn in filenames:
            full = Path(dirpath) / fn
            rel = full.relative_to(root).as_posix()
            refs[rel] = ImageRef(rel, str(full))
    return refs


def _csv_samples(path: Path) -> tuple[list[ImageRef], list[str]]:
    base = path.parent
    samples, labels = [], []
    with open(path, newline="", encoding="utf-8-sig") as fh:
        for lineno, row in enumerate(csv.reader(fh), 1):
            if not row or not "".join(row).strip():
                continue
            if len(row) < 2:
                raise FormatError(path, -1, f"line {lineno}: expected path,label")
            rel, label = row[0].strip(), row[1].strip()
            if lineno == 1 and rel.lower() in {"path", "file", "filename", "image"}:
                continue  # header row
            full = (base / rel) if not Path(rel).is_absolute() else Path(rel)
            samples.append(ImageRef(rel, str(full)))
            labels.append(label)
    return samples, labels


def list_image_source(source: Path) -> tuple[list[ImageRef], list[str]]:
    """Samples and their label names from a folder, a CSV, or a tar/zip of a class tree."""
    if source.is_dir():
        return _tree_samples(_folder_refs(source), str(source))
    if not source.is_file():
        raise DlprepError(f"{source}: no such folder or file")
    name = source.name.lower()
    if name.endswith(".csv"):
        return _csv_samples(source)
    if zipfile.is_zipfile(source):
        return _tree_samples(zip_refs(source), str(source))
    if name.endswith((".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")):
        return _tree_samples(tar_refs(source), str(source))
    raise DlprepError(f"{source}: expected a folder, a .csv, a tar or a zip")


def _fingerprint(source: Path, samples: list[ImageRef]) -> str:
    """Cheap identity of the input: archive/CSV sha256, or names + sizes + mtimes of files."""
    from .core import file_sha256

    h = hashlib.sha256()
    if source.is_file():
        h.update(file_sha256(source).encode())
    for ref in samples:
        if ref.path and ref.data is None and not ref.member and ref.offset < 0:
            try:
                st = os.stat(ref.path)
                h.update(f"{ref.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
            except OSError:
                h.update(f"{ref.name}\0missing\n".encode())
        else:
            h.update(f"{ref.name}\n".encode())
    return h.hexdigest()


@dataclass
class ImageListing:
    """What ``collect`` found: the samples and their class names, in order."""

    samples: list[ImageRef]
    label_names: list[str]


def collect(ctx: PrepareContext) -> ImageListing:
    if not ctx.options.get("source"):
        raise DlprepError("import-images: no source folder/CSV/archive given")
    source = Path(ctx.options["source"]).expanduser().resolve()
    ctx.options["source"] = str(source)
    samples, names = list_image_source(source)
    if not samples:
        raise DlprepError(f"{source}: no images found (expected one sub-folder per class, or a "
                          f"CSV of path,label)")
    digest = _fingerprint(source, samples)
    ctx.inputs["listing"] = digest
    ctx.sources.append({"name": source.name, "url": source.as_uri(), "sha256": digest})
    return ImageListing(samples, names)


def build(ctx: PrepareContext, out: Path) -> None:
    listing = ctx.collected_as(ImageListing)
    samples, names = listing.samples, listing.label_names
    classes = sorted(set(names))
    index = {c: i for i, c in enumerate(classes)}
    labels = np.array([index[n] for n in names], np.int64)
    spec = image_spec(ctx.options)
    result = decode_to_writer(out, [DecodeJob(s) for s in samples], labels, spec,
                              workers=ctx.workers,
                              dedupe=ctx.options["dedupe"], progress=ctx.progress)
    try:
        kept_labels = labels[result.kept]
        splits = stratified_split(kept_labels, {"test": ctx.options["test_fraction"]},
                                  ctx.options["seed"])
        result.writer.finish(splits=splits, classes=classes,
                             meta={"ids": [samples[i].name for i in result.kept]},
                             extra_attrs=result.report_attrs(), **ctx.finish_kwargs())
    finally:
        result.writer.close()

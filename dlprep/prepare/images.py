"""Image sets -> HDF5: the shared decode-and-write step, and the ``image-folder`` builder.

``image-folder`` (used by ``dlprep import-images``) reads an ImageFolder tree (one sub-folder
per class), a CSV of ``path,label``, or a tar/zip holding such a tree. Classes are the folder
names (or CSV labels), sorted; a deterministic stratified train/test split is made (seed stored).
Files that do not decode are skipped and listed in the root attribute ``skipped``.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import logging
import os
import shutil
import stat
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import DlprepError, FormatError
from ..formats.images import (
    POLICIES,
    DecodeJob,
    ImageRef,
    ImageSpec,
    display_name,
    file_kind,
    tar_refs,
    unpack_tar_refs,
    zip_refs,
)
from ..limits import ExtractLimits
from .core import PrepareContext
from .image_shards import DecodedSet, decode_plan, disk_error, run_decode, write_decoded
from .params import Param
from .splits import stratified_split

if TYPE_CHECKING:
    from ..scale import ShardJob, ShardSpec

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


def decode_to_writer(out: Path, jobs: Sequence[DecodeJob], labels: np.ndarray, spec: ImageSpec,
                     *, workers: int = 1, scheduler: str | None = None, dedupe: str = "none",
                     mask_spec: ImageSpec | None = None, mask_name: str = "trimaps",
                     progress: bool | None = None, skipped: Sequence[dict[str, str]] = (),
                     log_each_skip: bool = True) -> DecodedSet:
    """Decode ``jobs`` on shards (:mod:`.image_shards`: this process when ``workers`` is 1,
    else a Dask cluster of ``workers`` processes or the one at ``scheduler``) and write the
    good ones to ``out``, in input order; masks, when asked, go to ``mask_name`` uint8
    (N, H, W, 1). Output bytes do not depend on ``workers``. ``skipped``: entries already
    left out by the listing (reported first). ``log_each_skip``: warn per skipped file (off
    when the caller prints the report itself). ``progress``: a bar over the shards (None:
    only on a terminal). The part files (next to ``out``) are removed whatever happens.
    """
    from ..scale import Executor
    from ..scale.manifest import part_path

    plan = decode_plan(jobs, spec, mask_spec=mask_spec, hash_mode=dedupe)
    parts_dir = out.with_name(out.name + ".parts")
    try:
        with Executor(workers, scheduler, progress=progress) as ex:
            run = ex.run(plan, run_decode, parts_dir=parts_dir, desc="decode")
        parts = [part_path(parts_dir, s.id) for s in plan]
        return write_decoded(out, [j.image.name for j in jobs], labels, spec, plan, run.stats,
                             parts, dedupe=dedupe, mask_spec=mask_spec, mask_name=mask_name,
                             skipped=skipped, log_each_skip=log_each_skip)
    finally:
        shutil.rmtree(parts_dir, ignore_errors=True)


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


@dataclass
class ImageListing:
    """What a source holds: samples with their label names, and entries that are not read
    (``skipped``: ``{"name", "reason"}``, reported like undecodable files)."""

    samples: list[ImageRef]
    label_names: list[str]
    skipped: list[dict[str, str]] = field(default_factory=list)


def _tree_listing(refs: dict[str, ImageRef], where: str,
                  skipped: list[dict[str, str]] | None = None) -> ImageListing:
    names = sorted(n for n in refs if _is_image_name(n))
    depth = _strip_common_root(names)
    listing = ImageListing([], [], skipped or [])
    for name in names:
        parts = name.split("/")[depth:]
        if len(parts) < 2:
            log.warning("%s: %s is not inside a class folder; ignored", where, name)
            continue
        listing.samples.append(refs[name])
        listing.label_names.append(parts[0])
    return listing


LINKED_FOLDER = ("a link to a folder: not followed (links may loop or leave the tree); "
                 "copy the folder in, or import it on its own")


def _folder_refs(root: Path) -> tuple[dict[str, ImageRef], list[dict[str, str]]]:
    """Regular files under ``root`` (links to regular files included), by display name, and
    the entries that are not read: FIFOs, devices, sockets, broken links, links to folders.
    Hidden entries (``.name``) are ignored."""
    refs: dict[str, ImageRef] = {}
    skipped: list[dict[str, str]] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        keep = []
        for d in sorted(dirnames):
            if d.startswith("."):
                continue
            full = os.path.join(dirpath, d)
            if os.path.islink(full):
                skipped.append({"name": display_name(os.path.relpath(full, root)),
                                "reason": LINKED_FOLDER})
            else:
                keep.append(d)
        dirnames[:] = keep
        for fn in sorted(filenames):
            if fn.startswith("."):
                continue
            full = os.path.join(dirpath, fn)
            rel = display_name(Path(os.path.relpath(full, root)).as_posix())
            try:
                mode = os.stat(full).st_mode  # follows links: a link counts as its target
            except OSError as exc:
                why = "a broken link" if os.path.islink(full) else f"unreadable ({exc.strerror})"
                skipped.append({"name": rel, "reason": why})
                continue
            if stat.S_ISREG(mode):
                refs[rel] = ImageRef(rel, full)
            else:
                skipped.append({"name": rel, "reason": f"{file_kind(mode)}, not a regular "
                                                       f"file; not read"})
    return refs, skipped


def _csv_listing(path: Path) -> ImageListing:
    base = path.parent
    listing = ImageListing([], [])
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except UnicodeDecodeError as exc:
        raise FormatError(path, exc.start, "not UTF-8 text") from None
    for lineno, row in enumerate(rows, 1):
        if not row or not "".join(row).strip():
            continue
        if len(row) < 2:
            raise FormatError(path, -1, f"line {lineno}: expected path,label")
        rel, label = row[0].strip(), row[1].strip()
        if lineno == 1 and rel.lower() in {"path", "file", "filename", "image"}:
            continue  # header row
        full = (base / rel) if not Path(rel).is_absolute() else Path(rel)
        listing.samples.append(ImageRef(rel, str(full)))
        listing.label_names.append(label)
    return listing


def list_image_source(source: Path, limits: ExtractLimits | None = None) -> ImageListing:
    """Samples and their label names from a folder, a CSV, or a tar/zip of a class tree."""
    if source.is_dir():
        refs, skipped = _folder_refs(source)
        return _tree_listing(refs, str(source), skipped)
    if not source.is_file():
        raise DlprepError(f"{source}: no such folder or file")
    name = source.name.lower()
    if name.endswith(".csv"):
        return _csv_listing(source)
    if zipfile.is_zipfile(source):
        return _tree_listing(zip_refs(source), str(source))
    if name.endswith((".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")):
        return _tree_listing(tar_refs(source, limits=limits), str(source))
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


def collect(ctx: PrepareContext) -> ImageListing:
    if not ctx.options.get("source"):
        raise DlprepError("import-images: no source folder/CSV/archive given")
    source = Path(ctx.options["source"]).expanduser().resolve()
    ctx.options["source"] = str(source)
    listing = list_image_source(source)
    if not listing.samples:
        raise DlprepError(f"{source}: no images found (expected one sub-folder per class, or a "
                          f"CSV of path,label)")
    digest = _fingerprint(source, listing.samples)
    ctx.inputs["listing"] = digest
    ctx.sources.append({"name": source.name, "url": source.as_uri(), "sha256": digest})
    return listing


@contextlib.contextmanager
def readable_samples(samples: list[ImageRef], out: Path) -> Iterator[list[ImageRef]]:
    """``samples`` that worker processes can read: members of a compressed tar are unpacked
    once (within the decompression limits) into a scratch folder next to ``out``, removed on
    exit whatever happens."""
    if not any(s.packed_tar for s in samples):
        yield samples
        return
    scratch = out.with_name(out.name + ".unpacked")
    scratch.mkdir()
    try:
        try:
            refs = unpack_tar_refs(samples, scratch)
        except OSError as exc:
            raise disk_error(exc, scratch) from None
        yield refs
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _labels(listing: ImageListing) -> tuple[list[str], np.ndarray]:
    classes = sorted(set(listing.label_names))
    index = {c: i for i, c in enumerate(classes)}
    return classes, np.array([index[n] for n in listing.label_names], np.int64)


# sharded (dlprep.scale): shards are index ranges of the sorted listing; ``prepare`` runs them
# in this process, on a Dask LocalCluster (--workers N) or on a cluster (--scheduler)


def plan_shards(ctx: PrepareContext) -> list[ShardSpec]:
    """Decode shards over the sorted listing. Members of a compressed tar are unpacked first
    (within the decompression limits) into the parts folder, so that every worker can read
    them; it is removed with the parts."""
    from ..scale.build import parts_dir_of

    samples = ctx.collected_as(ImageListing).samples
    if any(s.packed_tar for s in samples):
        scratch = parts_dir_of(ctx) / "unpacked"
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)
        try:
            samples = unpack_tar_refs(samples, scratch)
        except OSError as exc:
            raise disk_error(exc, scratch) from None
    return decode_plan([DecodeJob(s) for s in samples], image_spec(ctx.options),
                       hash_mode=ctx.options["dedupe"])


run_shard = run_decode
ASSEMBLY_MAPS = False  # assemble() runs nothing on the executor (dlprep.scale.build)


def assemble(ctx: PrepareContext, out: Path, job: ShardJob) -> None:
    listing = ctx.collected_as(ImageListing)
    classes, labels = _labels(listing)
    names = [s.name for s in listing.samples]
    # import-images prints the skip report itself: no warning per file here
    result = write_decoded(out, names, labels, image_spec(ctx.options), job.specs, job.stats,
                           job.parts, dedupe=ctx.options["dedupe"], skipped=listing.skipped,
                           log_each_skip=False)
    try:
        splits = stratified_split(labels[result.kept], {"test": ctx.options["test_fraction"]},
                                  ctx.options["seed"])
        result.writer.finish(splits=splits, classes=classes,
                             meta={"ids": [names[i] for i in result.kept]},
                             extra_attrs=result.report_attrs(), **ctx.finish_kwargs())
    finally:
        result.writer.close()

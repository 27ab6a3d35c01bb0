"""CIFAR-10/100 from the *binary* archives, read member by member (nothing is extracted or
unpickled). Recipe: ``[splits] train = ["dir/data_batch_1.bin", ...]``, ``test = [...]``,
``classes_member = "dir/batches.meta.txt"`` optional (else ``classes`` from the recipe)."""

from __future__ import annotations

import io
import tarfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..errors import FormatError, RecipeError
from ..formats.cifar import PIXELS, decode_cifar_member
from ..formats.compressed import gunzip_bytes, is_compressed, is_gzip, map_file
from ..store.hdf5 import ImageTensorWriter
from .core import PrepareContext
from .params import Param

PARAMS = (Param("label", "str", "fine", "CIFAR-100 only: which label becomes `labels`",
                ("fine", "coarse")),)


MAX_MEMBER_BYTES = 1 << 30


def _read_members(archive: Path, wanted: set[str]) -> dict[str, bytes | memoryview]:
    """The wanted members' bytes. A plain (uncompressed) tar is memory-mapped and members are
    zero-copy views of it; a compressed one is streamed. Nothing is extracted to disk."""
    found: dict[str, bytes | memoryview] = {}
    try:
        plain = not is_compressed(archive)
        view: memoryview | None = None
        source: Path | io.BytesIO = archive
        if plain:
            view = memoryview(map_file(archive))
        elif is_gzip(archive) and archive.stat().st_size <= MAX_MEMBER_BYTES:
            # upstream's .tar.gz: one fast ISA-L pass, then members are views of the bytes
            raw = gunzip_bytes(archive)
            view, source, plain = memoryview(raw), io.BytesIO(raw), True
        with tarfile.open(fileobj=source, mode="r:") if isinstance(source, io.BytesIO) else \
                tarfile.open(archive, "r:" if plain else "r:*") as tar:
            for member in tar:
                if member.name not in wanted or not member.isfile():
                    continue
                if member.size > MAX_MEMBER_BYTES:  # real batches are 30.7-153.7 MB
                    raise FormatError(archive, member.offset_data,
                                      f"member {member.name} claims {member.size:,} bytes "
                                      f"(over {MAX_MEMBER_BYTES:,}); refusing to read it")
                if view is not None and not member.issparse():
                    end = member.offset_data + member.size
                    if end > len(view):
                        raise FormatError(archive, len(view), f"member {member.name} truncated")
                    found[member.name] = view[member.offset_data:end]
                else:
                    fh = tar.extractfile(member)
                    if fh is not None:
                        found[member.name] = fh.read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise FormatError(archive, -1, f"corrupt tar archive: {exc}") from exc
    missing = sorted(wanted - found.keys())
    if missing:
        raise FormatError(archive, -1, f"archive lacks member(s): {', '.join(missing)}")
    return found


def build(ctx: PrepareContext, out: Path) -> None:
    recipe = ctx.recipe
    cifar100 = recipe.parser == "cifar100-bin"
    label_bytes, limits = (2, (20, 100)) if cifar100 else (1, (10,))
    name_keys = ("classes_member", "coarse_classes_member")
    split_members = {k: v for k, v in recipe.splits.items() if k not in name_keys}
    if not split_members or not all(isinstance(v, list) for v in split_members.values()):
        raise RecipeError(f"{recipe.path}: splits: expected <split> = [member, ...] lists")
    (archive,) = ctx.files.values()
    wanted = {m for members in split_members.values() for m in members}
    wanted |= {recipe.splits[k] for k in name_keys if k in recipe.splits}
    data = _read_members(archive, wanted)
    rec = label_bytes + PIXELS
    column = 1 if cifar100 and ctx.options["label"] == "fine" else 0
    key = "coarse_classes_member" if cifar100 and column == 0 else "classes_member"
    if key in recipe.splits:
        text = bytes(data[recipe.splits[key]]).decode("utf-8")
        classes = [ln.strip() for ln in text.splitlines() if ln.strip()]
    else:
        classes = list(recipe.classes or []) or [str(i) for i in range(limits[column])]
    total = sum(len(data[m]) // rec for members in split_members.values() for m in members)
    writer = ImageTensorWriter(out, total, (32, 32, 3))
    pool = ThreadPoolExecutor(2)
    try:
        splits: dict[str, np.ndarray] = {}
        other = []
        for split, members in split_members.items():
            start = writer.pos
            for m in members:
                images, labels, sums = decode_cifar_member(data.pop(m), label_bytes,
                                                           f"{archive}:{m}", limits, pool)
                writer.write(images, labels[:, column], split=split, sums=sums)
                if cifar100:
                    other.append(labels[:, 1 - column])
            splits[split] = np.arange(start, writer.pos, dtype=np.int64)
        meta = {("coarse_labels" if column == 1 else "fine_labels"): np.concatenate(other)} \
            if cifar100 else None
        writer.finish(splits=splits, classes=classes, meta=meta, **ctx.finish_kwargs())
    finally:
        pool.shutdown()
        writer.close()

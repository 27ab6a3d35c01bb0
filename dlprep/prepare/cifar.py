"""CIFAR-10/100 from the *binary* archives, read member by member (nothing is extracted or
unpickled). Recipe: ``[splits] train = ["dir/data_batch_1.bin", ...]``, ``test = [...]``,
``classes_member = "dir/batches.meta.txt"`` optional (else ``classes`` from the recipe)."""

from __future__ import annotations

import collections
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from ..background import Prefetch
from ..errors import FormatError, RecipeError
from ..formats.cifar import PIXELS, decode_cifar_member
from ..formats.compressed import DECOMPRESS_ERRORS, is_compressed, open_maybe_compressed
from ..formats.tarstream import TarStream
from ..store import ImageTensorWriter
from .core import PrepareContext
from .params import Param

PARAMS = (Param("label", "str", "fine", "CIFAR-100 only: which label becomes `labels`",
                ("fine", "coarse")),)


MAX_MEMBER_BYTES = 1 << 30


def _wanted_members(archive: Path, wanted: set[str], free: collections.deque[np.ndarray],
                    headers: dict[str, int]) -> Iterator[tuple[str, np.ndarray]]:
    """One forward pass over the (possibly compressed) tar yielding ``(name, bytes)`` of the
    wanted members. Each one's size goes into ``headers`` as soon as its header is read (so
    the consumer learns the layout while still decoding earlier members). Data goes into
    buffers taken from ``free`` (the consumer recycles them) when one is big enough."""
    try:
        with open_maybe_compressed(archive) as fh:
            stream = TarStream(fh, archive)
            for member in stream:
                if member.name not in wanted:
                    continue
                if member.size > MAX_MEMBER_BYTES:  # real batches are 30.7-153.7 MB
                    raise FormatError(archive, member.offset_data,
                                      f"member {member.name} claims {member.size:,} bytes "
                                      f"(over {MAX_MEMBER_BYTES:,}); refusing to read it")
                headers[member.name] = member.size
                buf = None
                while free and buf is None:
                    spare = free.popleft()
                    buf = spare[:member.size] if len(spare) >= member.size else None
                if buf is None:
                    buf = np.empty(member.size, np.uint8)
                stream.read_into(memoryview(buf))
                yield member.name, buf
    except (OSError, EOFError, *DECOMPRESS_ERRORS) as exc:
        raise FormatError(archive, -1, f"corrupt archive: {exc}") from exc


def _member_sizes(archive: Path, wanted: set[str]) -> dict[str, int] | None:
    """Sizes of the wanted members from the headers alone, when the archive is a plain tar
    (seeking past the data); None for a compressed one, whose sizes come while streaming."""
    if is_compressed(archive):
        return None
    sizes: dict[str, int] = {}
    try:
        with open(archive, "rb") as fh:
            for member in TarStream(fh, archive, seek=True):
                if member.name in wanted:
                    sizes[member.name] = member.size
    except FormatError:
        return None  # the streaming pass reports it, with the member's name
    return sizes


def build(ctx: PrepareContext, out: Path) -> None:
    recipe = ctx.recipe
    cifar100 = recipe.parser == "cifar100-bin"
    label_bytes, limits = (2, (20, 100)) if cifar100 else (1, (10,))
    rec = label_bytes + PIXELS
    name_keys = ("classes_member", "coarse_classes_member")
    split_members = {k: v for k, v in recipe.splits.items() if k not in name_keys}
    if not split_members or not all(isinstance(v, list) for v in split_members.values()):
        raise RecipeError(f"{recipe.path}: splits: expected <split> = [member, ...] lists")
    (archive,) = ctx.files.values()
    texts = {recipe.splits[k] for k in name_keys if k in recipe.splits}
    image_members = {m for members in split_members.values() for m in members}
    wanted = image_members | texts
    column = 1 if cifar100 and ctx.options["label"] == "fine" else 0
    # member sizes: a plain tar is listed up front; a compressed one fills this in as the
    # reader meets the headers (so the layout is known before earlier members are decoded)
    sizes: dict[str, int] = _member_sizes(archive, image_members) or {}
    raw_text: dict[str, bytes] = {}
    held: dict[str, tuple[np.ndarray, np.ndarray, Any]] = {}
    labels_of: dict[str, np.ndarray] = {}
    writer: ImageTensorWriter | None = None
    places: dict[str, list[tuple[str, int]]] = {}
    splits: dict[str, np.ndarray] = {}

    def open_writer() -> ImageTensorWriter:
        """All image members' sizes are known: lay out the rows in recipe order."""
        pos = 0
        for split, members in split_members.items():
            start = pos
            for m in members:
                places.setdefault(m, []).append((split, pos))
                pos += sizes[m] // rec
            splits[split] = np.arange(start, pos, dtype=np.int64)
        return ImageTensorWriter(out, pos, (32, 32, 3))

    spare: collections.deque[tuple[Any, np.ndarray]] = collections.deque()

    def place(name: str) -> None:
        images, labels, sums = held.pop(name)
        assert writer is not None
        job = None
        for split, start in places[name]:
            job = writer.write_at(start, images, labels[:, column], split=split,
                                  sums=sums if split == "train" else None, background=True)
        if len(places[name]) == 1 and job is not None:
            # reusable once written (train rows come with their sums, so no statistics job
            # still reads them)
            spare.append((job, images))

    def spare_output() -> np.ndarray | None:
        """An output buffer whose rows are on disk already (two in flight at most)."""
        if len(spare) < 2 and not (spare and spare[0][0].done()):
            return None
        job, images = spare.popleft()
        job.result()
        return images

    train = set(split_members.get("train", ()))
    pool = ThreadPoolExecutor(2)
    free: collections.deque[np.ndarray] = collections.deque()
    # the reader inflates ahead (GIL released) while members are decoded; once every image
    # member's size is known the rows' places are known and writing overlaps too
    reader = Prefetch(_wanted_members(archive, wanted, free, sizes), depth=8,
                      name="dlprep-cifar-reader")

    def layout_known() -> bool:
        nonlocal writer
        if writer is None and image_members <= sizes.keys():
            writer = open_writer()
            for done in list(held):
                place(done)
        return writer is not None

    try:
        layout_known()
        for name, value in reader.items(idle=layout_known):
            if name in labels_of or name in raw_text:
                raise FormatError(archive, -1, f"archive holds member {name} twice")
            if name in texts:
                raw_text[name] = bytes(value)
            if name in image_members:
                # two threads when input is waiting; one when inflating is the bottleneck,
                # leaving the other core to the reader
                images, labels, sums = decode_cifar_member(
                    value, label_bytes, f"{archive}:{name}", limits,
                    pool if reader.ready() else None, with_sums=name in train,
                    out=spare_output())
                labels_of[name] = labels
                held[name] = (images, labels, sums)
                if layout_known() and name in held:
                    place(name)
            free.append(value.base if isinstance(value.base, np.ndarray) else value)
        missing = sorted(wanted - labels_of.keys() - raw_text.keys())
        if missing:
            raise FormatError(archive, -1, f"archive lacks member(s): {', '.join(missing)}")
        assert writer is not None
        key = "coarse_classes_member" if cifar100 and column == 0 else "classes_member"
        if key in recipe.splits:
            text = raw_text[recipe.splits[key]].decode("utf-8")
            classes = [ln.strip() for ln in text.splitlines() if ln.strip()]
        else:
            classes = list(recipe.classes or []) or [str(i) for i in range(limits[column])]
        meta = None
        if cifar100:
            other = [labels_of[m][:, 1 - column] for ms in split_members.values() for m in ms]
            meta = {("coarse_labels" if column == 1 else "fine_labels"): np.concatenate(other)}
        writer.finish(splits=splits, classes=classes, meta=meta, **ctx.finish_kwargs())
    finally:
        reader.close()
        pool.shutdown()
        if writer is not None:
            writer.close()

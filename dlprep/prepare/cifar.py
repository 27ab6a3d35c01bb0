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
from ..formats.compressed import STREAM_ERRORS, is_compressed, open_maybe_compressed
from ..formats.tarstream import TarStream
from ..store import ImageTensorWriter
from ..store.osio import aligned_empty
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
        plain = not is_compressed(archive)
        with open_maybe_compressed(archive) as fh:
            stream = TarStream(fh, archive, size=archive.stat().st_size if plain else None)
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
    except STREAM_ERRORS as exc:
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


class _CifarBuild:
    """One CIFAR preparation: members arrive from the reader in archive order, are decoded,
    and are written to their rows as soon as the row layout is known (every image member's
    size: up front for a plain tar, while streaming for a compressed one)."""

    def __init__(self, ctx: PrepareContext, out: Path) -> None:
        recipe = ctx.recipe
        self.out = out
        self.cifar100 = recipe.parser == "cifar100-bin"
        self.label_bytes, self.limits = (2, (20, 100)) if self.cifar100 else (1, (10,))
        name_keys = ("classes_member", "coarse_classes_member")
        self.split_members = {k: v for k, v in recipe.splits.items() if k not in name_keys}
        if not self.split_members or not all(isinstance(v, list)
                                             for v in self.split_members.values()):
            raise RecipeError(f"{recipe.path}: splits: expected <split> = [member, ...] lists")
        if len(ctx.files) != 1:
            raise RecipeError(f"{recipe.path}: files: a {recipe.parser} recipe takes exactly one "
                              f"archive (the binary tarball), got {len(ctx.files)}: "
                              f"{', '.join(ctx.files) or 'none'}")
        (self.archive,) = ctx.files.values()
        self.texts = {recipe.splits[k] for k in name_keys if k in recipe.splits}
        self.image_members = {m for members in self.split_members.values() for m in members}
        self.column = 1 if self.cifar100 and ctx.options["label"] == "fine" else 0
        self.train = set(self.split_members.get("train", ()))
        # member sizes: a plain tar is listed up front; a compressed one fills this in as the
        # reader meets the headers (so the layout is known before earlier members are decoded)
        self.sizes: dict[str, int] = _member_sizes(self.archive, self.image_members) or {}
        self.raw_text: dict[str, bytes] = {}
        self.decoded: dict[str, tuple[np.ndarray, np.ndarray, Any]] = {}  # not yet written
        self.labels_of: dict[str, np.ndarray] = {}
        self.writer: ImageTensorWriter | None = None
        self.rows: dict[str, list[tuple[str, int]]] = {}  # member -> (split, first row)
        self.splits: dict[str, np.ndarray] = {}
        self.written: collections.deque[tuple[Any, np.ndarray]] = collections.deque()
        self.free: collections.deque[np.ndarray] = collections.deque()

    def open_writer_when_layout_known(self) -> bool:
        """Once every image member's size is known, lay out the rows in recipe order, open
        the writer and write the members decoded so far; True when the writer is open."""
        if self.writer is None and self.image_members <= self.sizes.keys():
            rec = self.label_bytes + PIXELS
            pos = 0
            for split, members in self.split_members.items():
                start = pos
                for m in members:
                    self.rows.setdefault(m, []).append((split, pos))
                    pos += self.sizes[m] // rec
                self.splits[split] = np.arange(start, pos, dtype=np.int64)
            self.writer = ImageTensorWriter(self.out, pos, (32, 32, 3))
            for name in list(self.decoded):
                self.write_member(name)
        return self.writer is not None

    def write_member(self, name: str) -> None:
        """Queue a decoded member's rows for writing (in the background); its image buffer
        becomes reusable once written, when no other split needs it."""
        images, labels, sums = self.decoded.pop(name)
        assert self.writer is not None
        job = None
        for split, start in self.rows[name]:
            job = self.writer.write_at(start, images, labels[:, self.column], split=split,
                                       sums=sums if split == "train" else None, background=True)
        if len(self.rows[name]) == 1 and job is not None:
            # train rows come with their sums, so no statistics job still reads them
            self.written.append((job, images))

    def reusable_output(self) -> np.ndarray | None:
        """An output buffer whose rows are on disk already (two in flight at most)."""
        if len(self.written) < 2 and not (self.written and self.written[0][0].done()):
            return None
        job, images = self.written.popleft()
        job.result()
        return images

    def take_member(self, name: str, value: np.ndarray, pool: ThreadPoolExecutor | None) -> None:
        """Keep a class-name text member, or decode an image member (and write it when the
        layout is known); ``value``'s buffer goes back to the reader."""
        if name in self.labels_of or name in self.raw_text:
            raise FormatError(self.archive, -1, f"archive holds member {name} twice")
        if name in self.texts:
            self.raw_text[name] = bytes(value)
        if name in self.image_members:
            out = self.reusable_output()
            if out is None:  # page-aligned: the writer sends it to disk without a copy
                out = aligned_empty(len(value) // (self.label_bytes + PIXELS) * PIXELS)
            images, labels, sums = decode_cifar_member(
                value, self.label_bytes, f"{self.archive}:{name}", self.limits, pool,
                with_sums=name in self.train, out=out)
            self.labels_of[name] = labels
            self.decoded[name] = (images, labels, sums)
            if self.open_writer_when_layout_known() and name in self.decoded:
                self.write_member(name)
        self.free.append(value.base if isinstance(value.base, np.ndarray) else value)

    def class_names(self, recipe_splits: dict[str, Any], classes: list[str] | None) -> list[str]:
        key = "coarse_classes_member" if self.cifar100 and self.column == 0 else "classes_member"
        if key in recipe_splits:
            try:
                text = self.raw_text[recipe_splits[key]].decode("utf-8")
            except UnicodeDecodeError as exc:
                raise FormatError(f"{self.archive}:{recipe_splits[key]}", exc.start,
                                  "class names are not UTF-8 text") from None
            return [ln.strip() for ln in text.splitlines() if ln.strip()]
        return list(classes or []) or [str(i) for i in range(self.limits[self.column])]

    def run(self, ctx: PrepareContext) -> None:
        wanted = self.image_members | self.texts
        plain = not is_compressed(self.archive)
        pool = ThreadPoolExecutor(2)
        # the reader inflates ahead (GIL released) while members are decoded; once every image
        # member's size is known the rows' places are known and writing overlaps too
        reader = Prefetch(_wanted_members(self.archive, wanted, self.free, self.sizes), depth=8,
                          name="dlprep-cifar-reader")
        try:
            self.open_writer_when_layout_known()
            for name, value in reader.items(idle=self.open_writer_when_layout_known):
                # two threads when input is waiting (always for a plain tar, whose reader needs
                # no core: deciding by the queue made the first member's threads a matter of
                # timing); one when inflating is the bottleneck, leaving a core to the reader
                self.take_member(name, value, pool if plain or reader.ready() else None)
            missing = sorted(wanted - self.labels_of.keys() - self.raw_text.keys())
            if missing:
                raise FormatError(self.archive, -1,
                                  f"archive lacks member(s): {', '.join(missing)}")
            assert self.writer is not None
            meta = None
            if self.cifar100:
                other = [self.labels_of[m][:, 1 - self.column]
                         for ms in self.split_members.values() for m in ms]
                meta = {("coarse_labels" if self.column == 1 else "fine_labels"):
                        np.concatenate(other)}
            self.writer.finish(splits=self.splits,
                               classes=self.class_names(ctx.recipe.splits, ctx.recipe.classes),
                               meta=meta, **ctx.finish_kwargs())
        finally:
            reader.close()
            pool.shutdown()
            if self.writer is not None:
                self.writer.close()


def build(ctx: PrepareContext, out: Path) -> None:
    _CifarBuild(ctx, out).run(ctx)

"""Writers of prepared files (``dlprep-hdf5/1``; the spec is docs/FORMAT.md).

Write inside :func:`dlprep.store.atomic_output` so a reader never sees a half-written file.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..errors import StoreError
from ..pixelstats import mean_std, pixel_sums
from .checksum import combine_blocks, crc32, seal
from .h5file import abandon_file, check_free_space, create_file
from .layout import STR_DTYPE, label_axes, write_common, write_provenance
from .osio import HAVE_PWRITE, open_direct, pwrite_all, pwrite_direct


def _direct_dcpl() -> h5py.h5p.PropDCID:
    """Contiguous storage allocated at creation (so its file offset is known) and never
    pre-filled (every row is written by the caller)."""
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
    return dcpl



class ImageTensorWriter:
    """Stream images into ``images`` uint8 (N, H, W, C) + ``labels`` int64 (N,).

    ``n`` is known up front, so ``images`` is one contiguous, uncompressed block (loaders can
    memory-map it); pass ``compression="gzip"`` for a chunked, compressed layout instead.
    Call :meth:`write` with consecutive batches, then :meth:`finish` (inside
    :func:`atomic_output`) with the splits; ``mean``/``std`` of the train split are computed here.
    """

    def __init__(self, path: Path, n: int, shape: tuple[int, int, int], *, kind: str = "image",
                 compression: str | None = None, chunk_rows: int = 256) -> None:
        if len(shape) != 3:
            raise StoreError(f"image shape must be (H, W, C), got {shape}")
        self.path = Path(path)
        self.n = int(n)
        self.shape = tuple(int(s) for s in shape)
        self._row_bytes = int(np.prod(self.shape))
        if not compression:  # the pixel bytes are known now: refuse before writing any
            check_free_space(self.path.parent, self.n * (self._row_bytes + 8),
                             f"{self.n:,} images of {'x'.join(map(str, self.shape))}")
        self.f = create_file(self.path)
        try:
            self._create(compression, chunk_rows)
        except BaseException:
            abandon_file(self.f, self.path)
            raise

    def _create(self, compression: str | None, chunk_rows: int) -> None:
        kwargs: dict[str, Any]
        if compression:
            kwargs = {"chunks": (min(chunk_rows, max(self.n, 1)), *self.shape),
                      "compression": compression}
        else:  # allocated now and never filled: the pixel bytes are written exactly once
            kwargs = {"dcpl": _direct_dcpl()}
        self.images = self.f.create_dataset("images", shape=(self.n, *self.shape), dtype=np.uint8,
                                            **kwargs)
        label_axes(self.images, ("batch", "height", "width", "channel"))
        self.labels = self.f.create_dataset("labels", shape=(self.n,), dtype=np.int64)
        label_axes(self.labels, ("batch",))
        self.pos = 0
        self.written = 0
        self._all_tagged = True
        self._pool: ThreadPoolExecutor | None = None
        self._stats_jobs: list[Future[tuple[np.ndarray, np.ndarray, int]]] = []
        self._offset = None if compression else self.images.id.get_offset()
        self._fd: int | None = None
        self._io: ThreadPoolExecutor | None = None
        self._io_jobs: list[Future[None]] = []
        self._image_crcs: list[tuple[int, int, int]] = []  # (byte offset, length, CRC-32)
        self._direct_fd: int | None = None
        self._row_sums: np.ndarray | None = None
        if self._offset is not None and HAVE_PWRITE:
            self._fd = os.open(self.path, os.O_WRONLY | getattr(os, "O_CLOEXEC", 0))
            self._direct_fd = open_direct(self.path)

    def write(self, images: np.ndarray, labels: np.ndarray | None = None, *,
              split: str | None = None,
              sums: tuple[np.ndarray, np.ndarray, int] | None = None) -> None:
        """Append a batch. Tagging every batch with its ``split`` lets the train-split
        mean/std be computed on a background thread while writing, instead of re-reading;
        a caller that already has the batch's per-channel ``sums`` (value sums, squared-value
        sums, pixel count, as :func:`pixel_sums` returns) passes them to skip that work."""
        self.write_at(self.pos, images, labels, split=split, sums=sums)
        self.pos += len(images)

    def write_at(self, start: int, images: np.ndarray, labels: np.ndarray | None = None, *,
                 split: str | None = None,
                 sums: tuple[np.ndarray, np.ndarray, int] | None = None,
                 background: bool = False) -> Future[None] | None:
        """Write a batch at rows ``start:start + len(images)`` (batches may come in any order;
        together they must cover every row once). With ``background=True`` the pixel bytes
        are written by an I/O thread while the caller goes on; ``images`` must then stay
        unchanged until the returned future is done (:meth:`finish` waits for all)."""
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.shape[1:] != self.shape:
            raise StoreError(f"batch must be uint8 (*, {self.shape}); got {images.dtype} "
                             f"{images.shape}")
        end = start + len(images)
        if start < 0 or end > self.n:
            raise StoreError(f"rows {start}:{end} outside the announced {self.n}")
        if split is None:
            self._all_tagged = False
        elif split == "train" and sums is not None:
            done: Future[tuple[np.ndarray, np.ndarray, int]] = Future()
            done.set_result(sums)
            self._stats_jobs.append(done)
        elif split == "train":
            if self._pool is None:
                self._pool = ThreadPoolExecutor(1)
            self._stats_jobs.append(self._pool.submit(pixel_sums, images))
        if labels is not None:
            self.labels[start:end] = np.asarray(labels, dtype=np.int64)
        self.written += len(images)
        data = np.ascontiguousarray(images)
        if self._fd is None or self._offset is None:
            self.images[start:end] = data
            self._note_crc(start, data)
            return None
        if not background:
            self._write_rows(start, data)
            return None
        if self._io is None:
            self._io = ThreadPoolExecutor(1, thread_name_prefix="dlprep-write")
        job = self._io.submit(self._write_rows, start, data)
        self._io_jobs.append(job)
        return job

    def set_row_sums(self, sums: np.ndarray) -> None:
        """Give every row's exact per-channel pixel sums and squared sums, uint64 (n, 2, C)
        (as :func:`dlprep.prepare.image_shards.image_sums` makes them): :meth:`finish` then
        reduces the train split's mean/std from them instead of reading the rows back."""
        sums = np.asarray(sums)
        if sums.shape != (self.n, 2, self.shape[2]) or sums.dtype != np.uint64:
            raise StoreError(f"row sums must be uint64 ({self.n}, 2, {self.shape[2]}); got "
                             f"{sums.dtype} {sums.shape}")
        self._row_sums = sums

    def _note_crc(self, start: int, data: np.ndarray) -> None:
        """Remember the CRC-32 of rows written at ``start`` (combined in :meth:`finish`)."""
        self._image_crcs.append((start * self._row_bytes, data.nbytes, crc32(data)))

    def _write_rows(self, start: int, data: np.ndarray) -> None:
        """pwrite rows at their file offset, then checksum them while they are in cache."""
        assert self._fd is not None and self._offset is not None
        offset = self._offset + start * self._row_bytes
        if self._direct_fd is not None:
            pwrite_direct(self._direct_fd, self._fd, data, offset)
        else:
            pwrite_all(self._fd, data, offset)
        self._note_crc(start, data)

    def _drain_io(self) -> None:
        jobs, self._io_jobs = self._io_jobs, []
        for job in jobs:
            job.result()

    def _channel_stats(self, index: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel mean/std (pixels scaled to [0, 1]) of the rows in ``index``, read back."""
        c = self.shape[2]
        total, total_sq, count = np.zeros(c, np.uint64), np.zeros(c, np.uint64), 0
        block = max(1, (32 << 20) // max(1, int(np.prod(self.shape))))
        rows = np.arange(self.n) if index is None else np.sort(np.asarray(index, np.int64))
        for lo in range(0, self.n, block):  # spans of at most ``block`` rows
            sel = rows[np.searchsorted(rows, lo):np.searchsorted(rows, lo + block)]
            if not len(sel):
                continue
            # one contiguous read of the rows' span (h5py's point selection of scattered rows
            # is several times slower), then the rows picked in memory
            x = self.images[sel[0]:sel[-1] + 1]
            if len(sel) != len(x):
                x = x[sel - sel[0]]
            s1, s2, k = pixel_sums(x)
            total, total_sq, count = total + s1, total_sq + s2, count + k
        return mean_std(total, total_sq, count, c)

    def finish(self, *, recipe: str, recipe_version: str, splits: Mapping[str, np.ndarray],
               classes: Sequence[str] | None, sources: Sequence[Mapping[str, Any]] = (),
               license: str = "", citation: str = "", config: Mapping[str, Any] | None = None,
               meta: Mapping[str, Sequence[Any]] | None = None,
               extra_attrs: Mapping[str, Any] | None = None) -> None:
        self._drain_io()
        if self.written != self.n:
            raise StoreError(f"{self.path}: wrote {self.written} images, announced {self.n}")
        write_common(self.f, splits, classes, meta, self.n)
        train = splits.get("train")
        if self._row_sums is not None:
            rows = self._row_sums if train is None else self._row_sums[np.asarray(train)]
            total = rows.sum(axis=0, dtype=np.uint64)
            mean, std = mean_std(total[0], total[1],
                                 len(rows) * self.shape[0] * self.shape[1], self.shape[2])
        elif self._stats_jobs and self._all_tagged:
            parts = [job.result() for job in self._stats_jobs]
            mean, std = mean_std(sum(p[0] for p in parts), sum(p[1] for p in parts),
                                  sum(p[2] for p in parts), self.shape[2])
        else:
            mean, std = self._channel_stats(None if train is None else np.asarray(train))
        if self._pool is not None:
            self._pool.shutdown()
        over = "train split" if train is not None else "all samples"
        for key, value in (("mean", mean), ("std", std)):
            self.f.create_dataset(key, data=value).attrs["computed_over"] = \
                f"{over}, pixels in [0, 1]"
        write_provenance(self.f, "image", recipe, recipe_version, sources, license, citation,
                          config or {}, extra_attrs)
        images_crc = combine_blocks(self._image_crcs, self.n * self._row_bytes)
        seal(self.f, {} if images_crc is None else {"images": images_crc})
        self._close_fds()
        self.f.flush()  # a full disk fails here, with the file still safe to abandon
        self.f.close()

    def close(self) -> None:
        """Release everything; a file not yet finished is abandoned (see :func:`abandon_file`)."""
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
        if self._io is not None:
            self._io.shutdown(cancel_futures=True)  # waits for a write in progress
        with contextlib.suppress(OSError):
            self._close_fds()
        abandon_file(self.f, self.path)

    def _close_fds(self) -> None:
        fds = (self._fd, self._direct_fd)
        self._fd = self._direct_fd = None
        for fd in fds:
            if fd is not None:
                os.close(fd)


class SequenceWriter:
    """Ragged sequences: ``tokens`` int32 (T,) or ``values`` float32 (T, F) + ``offsets`` (N+1,).

    Append one sample at a time (or many with :meth:`extend`); storage grows in chunks, and
    ``finish`` trims and writes ``offsets``, optional ``labels``/``classes``, ``vocab`` and the
    tokenizer config (JSON attribute ``tokenizer``).
    """

    def __init__(self, path: Path, *, features: int | None = None, chunk: int = 1 << 16) -> None:
        self.path = Path(path)
        self.f = create_file(self.path)
        self.features = features
        try:
            self._create(features, chunk)
        except BaseException:
            abandon_file(self.f, self.path)
            raise

    def _create(self, features: int | None, chunk: int) -> None:
        if features is None:
            self.data = self.f.create_dataset("tokens", shape=(0,), maxshape=(None,),
                                              dtype=np.int32, chunks=(chunk,))
            label_axes(self.data, ("time",))
        else:
            self.data = self.f.create_dataset("values", shape=(0, features),
                                              maxshape=(None, features), dtype=np.float32,
                                              chunks=(chunk, features))
            label_axes(self.data, ("time", "feature"))
        self.offsets: list[int] = [0]
        self._buf: list[np.ndarray] = []
        self._buffered = 0
        self._flush_at = chunk * 16
        self._data_crc = 0

    def append(self, seq: np.ndarray) -> None:
        arr = np.asarray(seq, dtype=np.int32 if self.features is None else np.float32)
        if self.features is not None and (arr.ndim != 2 or arr.shape[1] != self.features):
            raise StoreError(f"values must be (T, {self.features}), got {arr.shape}")
        self._buf.append(arr)
        self._buffered += len(arr)
        self.offsets.append(self.offsets[-1] + len(arr))
        if self._buffered >= self._flush_at:
            self._flush()

    def extend(self, seqs: Sequence[np.ndarray]) -> None:
        for s in seqs:
            self.append(s)

    def extend_flat(self, data: np.ndarray, lengths: np.ndarray) -> None:
        """Append ``len(lengths)`` sequences stored back to back in ``data`` (what
        ``append`` of each would do, without a Python call per sequence)."""
        arr = np.asarray(data, dtype=np.int32 if self.features is None else np.float32)
        lengths = np.asarray(lengths, dtype=np.int64)
        if int(lengths.sum()) != len(arr) or (len(lengths) and int(lengths.min()) < 0):
            raise StoreError(f"extend_flat: lengths sum to {int(lengths.sum())}, data has "
                             f"{len(arr)} rows")
        if self.features is not None and (arr.ndim != 2 or arr.shape[1] != self.features):
            raise StoreError(f"values must be (T, {self.features}), got {arr.shape}")
        self._buf.append(arr)
        self._buffered += len(arr)
        self.offsets.extend((self.offsets[-1] + np.cumsum(lengths)).tolist())
        if self._buffered >= self._flush_at:
            self._flush()

    def _flush(self) -> None:
        if not self._buf:
            return
        block = np.concatenate(self._buf)
        start = self.data.shape[0]
        self.data.resize(start + len(block), axis=0)
        self.data[start:] = block
        self._data_crc = crc32(block, self._data_crc)
        self._buf.clear()
        self._buffered = 0

    @property
    def count(self) -> int:
        return len(self.offsets) - 1

    def finish(self, *, recipe: str, recipe_version: str, splits: Mapping[str, np.ndarray],
               labels: Sequence[int] | None = None, classes: Sequence[str] | None = None,
               vocab: Sequence[str] | None = None, tokenizer: Mapping[str, Any] | None = None,
               sources: Sequence[Mapping[str, Any]] = (), license: str = "", citation: str = "",
               config: Mapping[str, Any] | None = None,
               meta: Mapping[str, Sequence[Any]] | None = None,
               extra_attrs: Mapping[str, Any] | None = None) -> None:
        self._flush()
        n = self.count
        off = self.f.create_dataset("offsets", data=np.asarray(self.offsets, dtype=np.int64))
        label_axes(off, ("batch",))
        if labels is not None:
            if len(labels) != n:
                raise StoreError(f"{len(labels)} labels for {n} sequences")
            self.f.create_dataset("labels", data=np.asarray(labels, dtype=np.int64))
        if vocab is not None:
            self.f.create_dataset("vocab", data=np.array(list(vocab), dtype=object),
                                  dtype=STR_DTYPE)
        if tokenizer is not None:
            self.f.attrs["tokenizer"] = json.dumps(dict(tokenizer), sort_keys=True)
        write_common(self.f, splits, classes, meta, n)
        write_provenance(self.f, "sequence", recipe, recipe_version, sources, license, citation,
                          config or {}, extra_attrs)
        seal(self.f, {self.data.name.lstrip("/"): self._data_crc})
        self.f.flush()  # a full disk fails here, with the file still safe to abandon
        self.f.close()

    def close(self) -> None:
        """Release the file; one not yet finished is abandoned (see :func:`abandon_file`)."""
        abandon_file(self.f, self.path)

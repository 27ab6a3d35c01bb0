"""A prepared file seen from a loader: metadata read once, big arrays opened lazily per process.

The large array (``images``, ``tokens`` or ``values``) is memory-mapped straight from the HDF5
file when it is stored contiguous and unfiltered (the default layout); otherwise it is read with
h5py, sorting the requested rows and, for chunked sets, keeping a small cache of whole chunks.
Handles are dropped when pickled and reopened in the process that uses them (DataLoader workers,
spawn or fork), so a :class:`PreparedFile` is safe to send anywhere.
"""

from __future__ import annotations

import json
import logging
import os
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from ..errors import StoreError
from ..store import dataset_summary, open_prepared
from ..store.reader import check_index_arrays

if TYPE_CHECKING:
    from ..fetch.options import FetchOptions

DATA_KEYS = ("images", "tokens", "values")
log = logging.getLogger("dlprep")


def resolve_prepared(name_or_path: str | os.PathLike[str],
                     cache_dir: str | os.PathLike[str] | None = None,
                     offline: bool = False, *, fetch: FetchOptions | None = None) -> Path:
    """A prepared ``.h5`` path, or a dataset name resolved through the cache (prepared if needed).

    ``fetch``: how to download if it must be prepared (default: ``FetchOptions.from_env``,
    offline when ``offline`` is true or ``DLPREP_OFFLINE`` is set)."""
    p = Path(name_or_path)
    if p.suffix in {".h5", ".hdf5"} or p.is_file():
        if not p.is_file():
            raise StoreError(f"{p}: no such prepared file")
        return p
    from ..cache import Cache
    from ..fetch.options import FetchOptions
    from ..prepare.core import prepared_or_prepare

    if fetch is None:
        fetch = FetchOptions.from_env(offline=offline)
    elif offline and not fetch.offline:
        fetch = fetch.with_(offline=True)
    return prepared_or_prepare(str(name_or_path), Cache.open(cache_dir), fetch=fetch)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _strings(dset: h5py.Dataset) -> list[str]:
    return [_text(v) for v in dset[()]]


class PreparedFile:
    """Read-only view of one ``dlprep-hdf5/1`` file, picklable, with per-process lazy handles.

    Small arrays (splits, labels, offsets, classes, mean/std) are loaded into memory at
    construction; the big one (``data_key``) is opened on first access in each process.
    Raises ``StoreError`` for a missing file, a wrong format version, a missing dataset, or
    labels, split rows or offsets outside the data (a damaged file).
    """

    def __init__(self, path: str | os.PathLike[str], *, cache_chunks: int = 8) -> None:
        self.path = Path(path)
        self.cache_chunks = max(1, int(cache_chunks))
        with open_prepared(self.path) as f:
            self.kind = _text(f.attrs.get("kind", ""))
            self.attrs = {k: _text(v) if isinstance(v, (bytes, str)) else v
                          for k, v in f.attrs.items()}
            self.tokenizer: dict[str, Any] = json.loads(self.attrs["tokenizer"]) \
                if "tokenizer" in self.attrs else {}
            key = next((k for k in DATA_KEYS if k in f), None)
            if key is None:
                raise StoreError(f"{self.path}: has none of the datasets {', '.join(DATA_KEYS)}")
            self.data_key = key
            dset = f[key]
            self.shape: tuple[int, ...] = tuple(int(s) for s in dset.shape)
            self.dtype = np.dtype(dset.dtype)
            self.chunk_rows: int | None = int(dset.chunks[0]) if dset.chunks else None
            self.compression = dset.compression
            offset = dset.id.get_offset() if dset.chunks is None and not dset.compression else None
            self.byte_offset: int | None = None if offset is None else int(offset)
            self.offsets = f["offsets"][()].astype(np.int64) if "offsets" in f else None
            n = len(self.offsets) - 1 if self.offsets is not None else self.shape[0]
            self.num_samples = int(n)
            self.labels = f["labels"][()].astype(np.int64) if "labels" in f else None
            self.classes = _strings(f["classes"]) if "classes" in f else []
            self.vocab = _strings(f["vocab"]) if "vocab" in f else []
            self.mean = f["mean"][()].astype(np.float32) if "mean" in f else None
            self.std = f["std"][()].astype(np.float32) if "std" in f else None
            self.splits = {k: v[()].astype(np.int64) for k, v in f["splits"].items()} \
                if "splits" in f else {}
        steps = self.shape[0] if self.offsets is not None else None
        check_index_arrays(self.path, samples=self.num_samples, labels=self.labels,
                           classes=len(self.classes) if self.classes else None,
                           splits=self.splits, offsets=self.offsets, steps=steps)
        self._reset_handles()

    # -- per-process handles -------------------------------------------------------------
    def _reset_handles(self) -> None:
        self._pid: int | None = None
        self._h5: h5py.File | None = None
        self._array: np.ndarray | h5py.Dataset | None = None
        self._chunks: OrderedDict[int, np.ndarray] = OrderedDict()
        self._warned = False

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for key in ("_pid", "_h5", "_array", "_chunks", "_warned"):
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset_handles()

    @property
    def memory_mapped(self) -> bool:
        """True when the big array is read through ``np.memmap`` (contiguous, unfiltered)."""
        return self.byte_offset is not None and self.dtype.kind in "uif"

    def array(self) -> np.ndarray | h5py.Dataset:
        """The big array for this process: an ``np.ndarray`` over a memmap, or an h5py dataset."""
        pid = os.getpid()
        if self._array is None or self._pid != pid:
            self._reset_handles()
            if self.memory_mapped:
                mm = np.memmap(self.path, dtype=self.dtype, mode="r", offset=self.byte_offset,
                               shape=self.shape)
                self._array = np.asarray(mm)
            else:
                self._h5 = h5py.File(self.path, "r")
                self._array = self._h5[self.data_key]
            self._pid = pid
        return self._array

    def close(self) -> None:
        """Drop this process's handles (they reopen on next access)."""
        if self._h5 is not None:
            try:
                self._h5.close()
            except Exception:  # pragma: no cover - closing a dead handle
                pass
        self._reset_handles()

    # -- reads ---------------------------------------------------------------------------
    def take(self, rows: np.ndarray) -> np.ndarray:
        """Rows ``rows`` (any order, repeats allowed) of the big array as a new NumPy array."""
        rows = np.asarray(rows, dtype=np.int64)
        arr = self.array()
        if isinstance(arr, np.ndarray):
            return arr.take(rows, axis=0)
        if len(rows) == 0:
            return np.empty((0, *self.shape[1:]), self.dtype)
        if self.chunk_rows is not None and self.compression:
            return self._take_chunked(arr, rows)
        uniq, inverse = np.unique(rows, return_inverse=True)
        lo, hi = int(uniq[0]), int(uniq[-1]) + 1
        if hi - lo <= 4 * len(uniq) + 64:
            block = arr[lo:hi]
            return block[uniq - lo][inverse]
        return arr[uniq][inverse]

    def _take_chunked(self, arr: h5py.Dataset, rows: np.ndarray) -> np.ndarray:
        """Read whole chunks (each decompressed once while it stays in the small LRU cache)."""
        cr = int(self.chunk_rows or 1)
        out = np.empty((len(rows), *self.shape[1:]), self.dtype)
        chunk_ids = rows // cr
        needed = np.unique(chunk_ids)
        if len(needed) > self.cache_chunks and not self._warned:
            self._warned = True
            log.warning("%s: random reads from a compressed file decompress a whole chunk per "
                        "sample; use sampler=dataset.sampler() or dlprep.batches (chunk-aware "
                        "shuffle), or prepare it uncompressed", self.path)
        for cid in needed:
            block = self._chunks.get(int(cid))
            if block is None:
                block = arr[int(cid) * cr:min((int(cid) + 1) * cr, self.shape[0])]
                self._chunks[int(cid)] = block
                while len(self._chunks) > self.cache_chunks:
                    self._chunks.popitem(last=False)
            else:
                self._chunks.move_to_end(int(cid))
            sel = np.nonzero(chunk_ids == cid)[0]
            out[sel] = block[rows[sel] - int(cid) * cr]
        return out

    def read_range(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` of the big array (a copy)."""
        arr = self.array()
        return np.array(arr[start:stop])

    # -- splits --------------------------------------------------------------------------
    def stored_split(self, split: str | None) -> np.ndarray:
        """Sorted int64 sample rows of the split stored as ``splits/<split>`` (``None`` or
        ``"all"``: every sample). :func:`dlprep.data.split_indices` adds ``val_fraction``."""
        if split is None or (split == "all" and "all" not in self.splits):
            return np.arange(self.num_samples, dtype=np.int64)
        if split not in self.splits:
            have = ", ".join(sorted(self.splits)) or "none"
            raise StoreError(f"{self.path}: no split {split!r} (have: {have})")
        return self.splits[split]

    def summary(self) -> dict[str, Any]:
        """``store.dataset_summary`` of the file (shapes, splits, class counts, provenance)."""
        return dataset_summary(self.path)


class SplitView:
    """What every dataset over one split of a prepared file shares: ``file``, ``indices``
    (rows of the split), ``split``, ``transform``/``target_transform``; the file's ``classes``
    and ``info``; the split's ``labels`` (-1 when unlabelled) and its length."""

    def __init__(self, file: PreparedFile, indices: np.ndarray, split: str | None,
                 transform: Any, target_transform: Any) -> None:
        self.file = file
        self.indices = np.asarray(indices, dtype=np.int64)
        self.split = split
        self.transform = transform
        self.target_transform = target_transform

    @property
    def classes(self) -> list[str]:
        return self.file.classes

    @property
    def info(self) -> dict[str, Any]:
        return self.file.summary()

    @property
    def labels(self) -> np.ndarray:
        if self.file.labels is None:
            return np.full(len(self.indices), -1, np.int64)
        return self.file.labels[self.indices]

    def __len__(self) -> int:
        return len(self.indices)

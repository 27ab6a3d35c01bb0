"""Sequence datasets (ragged ``tokens``/``values`` + ``offsets``), LM windows and collate functions.

Item ``i`` of :class:`SequenceDataset` is ``(ids int64 (L,) or values float32 (L, F), label or
-1)``. :meth:`SequenceDataset.lm_windows` makes fixed windows over the split's documents
(concatenated in split order) at load time: item ``k`` is ``(x, y)`` int64 ``(seq_len,)`` with
``y`` = ``x`` shifted by one token. Token arrays up to ``in_memory_bytes`` are read into memory
once per process; bigger ones are read slice by slice.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..errors import StoreError
from .prepared import PreparedFile, SplitView
from .sampling import ShardedSampler, class_weights

IN_MEMORY_BYTES = 256 << 20
PAD_ID = 0


class _TokenReader:
    """Slices of the big ragged array, from memory when small enough, per process."""

    def __init__(self, file: PreparedFile, in_memory_bytes: int = IN_MEMORY_BYTES) -> None:
        self.file = file
        self.in_memory_bytes = in_memory_bytes
        self._cache: np.ndarray | None = None
        self._pid: int | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"file": self.file, "in_memory_bytes": self.in_memory_bytes}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._cache, self._pid = None, None

    def slice(self, start: int, stop: int) -> np.ndarray:
        nbytes = int(np.prod(self.file.shape)) * self.file.dtype.itemsize
        if nbytes <= self.in_memory_bytes:
            if self._cache is None or self._pid != os.getpid():
                self._cache = self.file.read_range(0, self.file.shape[0])
                self._pid = os.getpid()
            return self._cache[start:stop]
        return self.file.read_range(start, stop)


class SequenceDataset(SplitView):
    """Samples ``indices`` of a sequence file; picklable, lazy per process.

    Attributes: ``vocab`` (list[str]), ``classes``, ``tokenizer`` (config dict), ``indices``,
    ``lengths`` int64, ``labels`` int64 (-1 when unlabelled), ``kind`` (``"sequence"``),
    ``collate`` (padding collate for a DataLoader) and ``pack_collate``.
    """

    kind = "sequence"

    def __init__(self, file: PreparedFile, indices: np.ndarray, *, split: str | None = None,
                 transform: Callable[[np.ndarray], Any] | None = None,
                 target_transform: Callable[[int], Any] | None = None) -> None:
        if file.offsets is None:
            raise StoreError(f"{file.path}: sequence file lacks 'offsets'")
        super().__init__(file, indices, split, transform, target_transform)
        self.reader = _TokenReader(file)
        self.collate = functools.partial(collate_sequences, pad_id=PAD_ID, mode="pad")
        self.pack_collate = functools.partial(collate_sequences, pad_id=PAD_ID, mode="pack")

    @property
    def vocab(self) -> list[str]:
        return self.file.vocab

    @property
    def tokenizer(self) -> dict[str, Any]:
        return dict(self.file.tokenizer)

    @property
    def mean(self) -> None:
        return None

    std = mean

    @property
    def lengths(self) -> np.ndarray:
        off = self.file.offsets
        assert off is not None
        return (off[self.indices + 1] - off[self.indices]).astype(np.int64)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.file.path.name}, split={self.split!r}, n={len(self)})"

    def sequence(self, row: int) -> np.ndarray:
        """Sample ``row`` of the file: int64 ``(L,)`` ids or float32 ``(L, F)`` values."""
        off = self.file.offsets
        assert off is not None
        arr = self.reader.slice(int(off[row]), int(off[row + 1]))
        return arr.astype(np.int64) if self.file.data_key == "tokens" else np.array(arr)

    def __getitem__(self, i: int) -> tuple[Any, Any]:
        n = len(self.indices)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for {n} samples")
        row = int(self.indices[i])
        x = self.sequence(row)
        if self.transform is not None:
            x = self.transform(x)
        y = -1 if self.file.labels is None else int(self.file.labels[row])
        if self.target_transform is not None:
            y = self.target_transform(y)
        return x, y

    def __getitems__(self, positions: list[int]) -> list[tuple[Any, Any]]:
        return [self[int(p)] for p in positions]

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """Text of token ids, via the stored tokenizer (``dlprep.text.tokenizers``) when present."""
        ids = [int(i) for i in np.asarray(ids).ravel()]
        try:
            from ..text.tokenizers import from_prepared  # type: ignore[import-not-found]
        except ImportError:
            from_prepared = None
        if from_prepared is not None:
            return from_prepared(self.vocab, self.tokenizer).decode(ids)
        kind = self.tokenizer.get("type", "char")
        pieces = [self.vocab[i] for i in ids if 4 <= i < len(self.vocab)]
        return ("" if kind == "char" else " ").join(pieces)

    def class_weights(self) -> np.ndarray:
        return class_weights(self.labels, len(self.classes) or None)

    def sampler(self, *, shuffle: bool = True, seed: int = 0, rank: int | None = None,
                world_size: int | None = None) -> ShardedSampler:
        return ShardedSampler(len(self), shuffle=shuffle, seed=seed, rank=rank,
                              world_size=world_size)

    def as_numpy(self) -> tuple[list[np.ndarray], np.ndarray]:
        """``([sequence, ...], labels)`` of the split."""
        return [self.sequence(int(r)) for r in self.indices], self.labels.copy()

    def lm_windows(self, seq_len: int, stride: int | None = None, *,
                   cross_documents: bool = True) -> LMWindowDataset:
        """Language-model windows over this split (token sets only): :class:`LMWindowDataset`."""
        if self.file.data_key != "tokens":
            raise StoreError(f"{self.file.path}: lm_windows needs a 'tokens' dataset")
        cls: type = LMWindowDataset
        if isinstance(self, _torch_base()):
            from .torch_compat import torch_class

            cls = torch_class(LMWindowDataset)
        return cls(self.file, self.indices, seq_len, stride, cross_documents=cross_documents,
                   reader=self.reader)


def _torch_base() -> tuple[type, ...]:
    import sys

    if "torch" not in sys.modules:
        return ()
    from torch.utils.data import Dataset

    return (Dataset,)


class LMWindowDataset:
    """Fixed windows over the concatenated documents of a split: ``(x, y)`` int64 ``(seq_len,)``.

    Window ``k`` starts at token ``k * stride`` (default ``stride = seq_len``) of the split's
    token stream; ``y`` is ``x`` shifted left by one. With ``cross_documents=True`` (default)
    the stream is the split's documents concatenated in split order and windows may span two
    documents; with ``False`` windows are cut inside each document (documents shorter than
    ``seq_len + 1`` tokens and each document's tail give no window).
    """

    kind = "lm-windows"

    def __init__(self, file: PreparedFile, indices: np.ndarray, seq_len: int,
                 stride: int | None = None, *, cross_documents: bool = True,
                 reader: _TokenReader | None = None) -> None:
        if seq_len < 1:
            raise ValueError(f"seq_len must be >= 1, got {seq_len}")
        self.file = file
        self.seq_len = int(seq_len)
        self.stride = int(stride or seq_len)
        if self.stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        self.reader = reader or _TokenReader(file)
        off = file.offsets
        assert off is not None
        idx = np.asarray(indices, dtype=np.int64)
        starts, ends = off[idx], off[idx + 1]
        keep = ends > starts
        starts, ends = starts[keep], ends[keep]
        need = self.seq_len + 1
        self.cross_documents = cross_documents
        if not cross_documents:
            per_doc = np.where(ends - starts >= need, (ends - starts - need) // self.stride + 1, 0)
            self.doc_start = starts
            self.doc_cum = np.concatenate([[0], np.cumsum(per_doc)]).astype(np.int64)
            self.total_tokens = int((ends - starts).sum())
            self.count = int(self.doc_cum[-1])
            return
        # merge documents that are adjacent in the file into runs of one slice each
        if len(starts):
            new_run = np.ones(len(starts), bool)
            new_run[1:] = starts[1:] != ends[:-1]
            run_id = np.cumsum(new_run) - 1
            self.run_start = starts[new_run]
            self.run_end = np.zeros(int(run_id[-1]) + 1, np.int64)
            np.maximum.at(self.run_end, run_id, ends)
        else:
            self.run_start = self.run_end = np.empty(0, np.int64)
        self.run_cum = np.concatenate([[0], np.cumsum(self.run_end - self.run_start)])
        self.total_tokens = int(self.run_cum[-1])
        self.count = (0 if self.total_tokens < need
                      else (self.total_tokens - need) // self.stride + 1)

    def __len__(self) -> int:
        return self.count

    def stream(self, a: int, b: int) -> np.ndarray:
        """Tokens ``a:b`` of the split's concatenated stream as int64."""
        out = []
        r = int(np.searchsorted(self.run_cum, a, side="right") - 1)
        while a < b and r < len(self.run_start):
            base = int(self.run_start[r]) - int(self.run_cum[r])
            stop = min(b, int(self.run_cum[r + 1]))
            out.append(self.reader.slice(base + a, base + stop))
            a = stop
            r += 1
        return np.concatenate(out).astype(np.int64) if out else np.empty(0, np.int64)

    def __getitem__(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        if not -self.count <= k < self.count:
            raise IndexError(f"window {k} out of range for {self.count} windows")
        k %= max(self.count, 1)
        if self.cross_documents:
            s = k * self.stride
            w = self.stream(s, s + self.seq_len + 1).astype(np.int64)
        else:
            d = int(np.searchsorted(self.doc_cum, k, side="right") - 1)
            s = int(self.doc_start[d]) + (k - int(self.doc_cum[d])) * self.stride
            w = self.reader.slice(s, s + self.seq_len + 1).astype(np.int64)
        return w[:-1], w[1:]

    def __getitems__(self, positions: list[int]) -> list[tuple[np.ndarray, np.ndarray]]:
        return [self[int(k)] for k in positions]

    def sampler(self, *, shuffle: bool = True, seed: int = 0, rank: int | None = None,
                world_size: int | None = None) -> ShardedSampler:
        return ShardedSampler(len(self), shuffle=shuffle, seed=seed, rank=rank,
                              world_size=world_size)


def pad_batch(seqs: Sequence[np.ndarray], pad_id: float = PAD_ID) -> tuple[np.ndarray, np.ndarray]:
    """Pad ragged sequences to ``(B, L_max[, F])``; returns ``(padded, lengths int64 (B,))``."""
    lengths = np.array([len(s) for s in seqs], np.int64)
    lmax = int(lengths.max()) if len(lengths) else 0
    first = np.asarray(seqs[0]) if len(seqs) else np.empty(0, np.int64)
    out = np.full((len(seqs), lmax, *first.shape[1:]), pad_id, dtype=first.dtype)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = s
    return out, lengths


def collate_sequences(batch: Sequence[tuple[Any, Any]], pad_id: float = PAD_ID,
                      mode: str = "pad") -> tuple[Any, ...]:
    """DataLoader collate for ``(sequence, label)`` items.

    ``mode="pad"`` -> ``(x (B, L_max[, F]), lengths (B,), y (B,))`` torch tensors, padded with
    ``pad_id``; ``mode="pack"`` -> ``(PackedSequence, y)`` for torch RNNs (batch_first order).
    """
    import torch

    seqs = [np.asarray(x) for x, _ in batch]
    ys = torch.as_tensor(np.array([int(y) for _, y in batch], np.int64))
    padded, lengths = pad_batch(seqs, pad_id)
    x, lens = torch.from_numpy(padded), torch.from_numpy(lengths)
    if mode == "pad":
        return x, lens, ys
    if mode == "pack":
        from torch.nn.utils.rnn import pack_padded_sequence

        return pack_padded_sequence(x, lens.clamp(min=1), batch_first=True,
                                    enforce_sorted=False), ys
    raise ValueError(f"mode must be 'pad' or 'pack', got {mode!r}")

"""What a baseline trains on: the splits of one prepared dataset, as in-memory arrays.

Data comes only through the loader API (``dlprep.load``); a trainer never downloads or reads
HDF5 itself. :class:`BaselineData` can also be built from arrays (tests, notebooks).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import DlprepError

# the families that fit each data layout (DESIGN.md: image sets -> all five)
_FITS = {
    "image": ("mlp", "cnn", "rnn", "autoencoder", "gan"),
    "tokens+labels": ("rnn", "mlp"),
    "tokens": ("rnn",),
    "values+labels": ("rnn",),
    "values": (),
}


@dataclass
class Split:
    """One split. Images: ``x`` uint8 (n, H, W, C). Sequences: ``seqs`` list of int32 (T,) token
    ids or float32 (T, F) values. ``y`` int64 (n,) labels (-1 or absent: unlabelled)."""

    y: np.ndarray
    x: np.ndarray | None = None
    seqs: list[np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.y)

    def take(self, index: np.ndarray) -> Split:
        index = np.asarray(index, dtype=np.int64)
        if self.x is not None:
            return Split(y=self.y[index], x=self.x[index])
        return Split(y=self.y[index], seqs=[self.seqs[i] for i in index])  # type: ignore[index]


@dataclass
class BaselineData:
    """The train/val/test splits of a dataset plus what the models need to know about it.

    ``layout`` is ``image``, ``tokens`` or ``values``; ``mean``/``std`` are per-channel stats of
    train pixels in [0, 1]; ``vocab``/``tokenizer``/``decode`` exist for token sets.
    """

    name: str
    layout: str
    splits: dict[str, Split]
    classes: list[str] = field(default_factory=list)
    mean: np.ndarray | None = None
    std: np.ndarray | None = None
    vocab: list[str] | None = None
    tokenizer: str = ""
    decode: Callable[[Sequence[int]], str] | None = None
    source: str = ""
    loaded: dict[str, Any] = field(default_factory=dict, repr=False)

    def lm_windows(self, split: str, seq_len: int) -> np.ndarray:
        """int64 (n, seq_len + 1) language-model windows of a token split: from the loader's
        ``lm_windows`` when the data came through it, else cut from the in-memory sequences."""
        ds = self.loaded.get(split)
        if ds is not None and hasattr(ds, "lm_windows"):
            windows = ds.lm_windows(seq_len)
            if len(windows) == 0:
                return np.zeros((0, seq_len + 1), np.int64)
            pairs = windows.__getitems__(list(range(len(windows))))
            return np.stack([np.concatenate([x, y[-1:]]) for x, y in pairs]).astype(np.int64)
        return lm_windows(self.splits[split].seqs or [], seq_len)

    @property
    def labelled(self) -> bool:
        return bool(self.classes) and len(self.splits["train"]) > 0 and \
            bool((self.splits["train"].y >= 0).all())

    @property
    def shape(self) -> tuple[int, ...]:
        """Image (H, W, C); values (F,); tokens ()."""
        train = self.splits["train"]
        if self.layout == "image":
            return tuple(int(s) for s in train.x.shape[1:])  # type: ignore[union-attr]
        if self.layout == "values":
            return (int(train.seqs[0].shape[1]),) if train.seqs else (3,)  # type: ignore[index]
        return ()

    def fitting_families(self) -> tuple[str, ...]:
        plain = self.layout == "image" or not self.labelled
        key = self.layout if plain else f"{self.layout}+labels"
        return _FITS[key]

    def check_family(self, family: str) -> None:
        fits = self.fitting_families()
        if family not in fits:
            what = {"image": "an image dataset", "tokens": "a token sequence dataset",
                    "values": "a real-valued sequence dataset"}[self.layout]
            labels = "" if self.layout == "image" else (" with labels" if self.labelled
                                                        else " without labels")
            raise DlprepError(f"{self.name}: baseline {family!r} does not fit {what}{labels}; "
                              f"families that fit: {', '.join(fits) or 'none'}")


def from_arrays(name: str, train: tuple[np.ndarray, np.ndarray],
                test: tuple[np.ndarray, np.ndarray], *, classes: Sequence[str],
                val: tuple[np.ndarray, np.ndarray] | None = None) -> BaselineData:
    """Image data from arrays: ``x`` uint8 (n, H, W, C), ``y`` int64 (n,)."""
    splits = {"train": Split(y=np.asarray(train[1], np.int64), x=np.asarray(train[0], np.uint8)),
              "test": Split(y=np.asarray(test[1], np.int64), x=np.asarray(test[0], np.uint8))}
    if val is not None:
        splits["val"] = Split(y=np.asarray(val[1], np.int64), x=np.asarray(val[0], np.uint8))
    x = splits["train"].x.astype(np.float64) / 255.0  # type: ignore[union-attr]
    return BaselineData(name=name, layout="image", splits=splits, classes=list(classes),
                        mean=x.mean(axis=(0, 1, 2)).astype(np.float32),
                        std=np.maximum(x.std(axis=(0, 1, 2)), 1e-3).astype(np.float32))


def load_data(dataset: Any, *, cache_dir: str | None = None, offline: bool = False,
              split_val: float = 0.0, seed: int = 0) -> BaselineData:
    """Resolve ``dataset`` (a :class:`BaselineData`, a dataset name or an .h5 path) through the
    loader; when there is no ``val`` split, carve a stratified ``split_val`` share of train."""
    if isinstance(dataset, BaselineData):
        data = dataset
        if "val" not in data.splits and split_val > 0:
            data.splits.update(_carve_val(data.splits["train"], split_val, seed))
    else:
        data = _from_loader(str(dataset), cache_dir=cache_dir, offline=offline,
                            split_val=split_val, seed=seed)
    if len(data.splits["train"]) == 0:
        raise DlprepError(f"{data.name}: the train split is empty")
    if "test" not in data.splits or len(data.splits["test"]) == 0:
        raise DlprepError(f"{data.name}: no test split to evaluate on")
    return data


def _carve_val(train: Split, fraction: float, seed: int) -> dict[str, Split]:
    from ..data import stratified_split  # the loader API's one split rule

    labels = train.y if (train.y >= 0).all() else np.zeros(len(train), np.int64)
    pos = stratified_split(labels, {"val": float(fraction)}, seed)
    return {"train": train.take(pos["train"]), "val": train.take(pos["val"])}


def _from_loader(name: str, *, cache_dir: str | None, offline: bool, split_val: float,
                 seed: int) -> BaselineData:
    from ..data import load, open_file

    file = open_file(name, cache_dir=cache_dir, offline=offline)
    have = set(file.splits)
    if "train" not in have or "test" not in have:
        raise DlprepError(f"{file.path}: baselines need 'train' and 'test' splits (have: "
                          f"{', '.join(sorted(have)) or 'none'})")
    wanted = ["train", "test"]
    if "val" in have or split_val > 0:
        wanted.insert(1, "val")
    splits: dict[str, Split] = {}
    loaded: dict[str, Any] = {}
    for split in wanted:
        ds = load(file.path, split=split, offline=True, seed=seed,
                  val_fraction=split_val if "val" not in have and split_val > 0 else None)
        loaded[split] = ds
        x, y = ds.as_numpy()
        if ds.kind == "image":
            splits[split] = Split(y=np.asarray(y, np.int64), x=np.asarray(x, np.uint8))
        else:
            splits[split] = Split(y=np.asarray(y, np.int64), seqs=list(x))
    ds = loaded["train"]
    classes = [str(c) for c in (ds.classes or [])]
    recipe = str(ds.info.get("recipe") or name) if isinstance(ds.info, dict) else name
    if ds.kind == "image":
        return BaselineData(name=recipe, layout="image", splits=splits, classes=classes,
                            mean=None if ds.mean is None else np.asarray(ds.mean, np.float32),
                            std=None if ds.std is None else np.asarray(ds.std, np.float32),
                            source=str(file.path))
    layout = "tokens" if file.data_key == "tokens" else "values"
    tokenizer = ds.tokenizer.get("type", "") if layout == "tokens" else ""
    return BaselineData(name=recipe, layout=layout, splits=splits, classes=classes,
                        vocab=list(ds.vocab) or None if layout == "tokens" else None,
                        tokenizer=str(tokenizer), decode=ds.decode if layout == "tokens" else None,
                        source=str(file.path), loaded=loaded)


def lm_windows(seqs: Sequence[np.ndarray], seq_len: int, *, max_windows: int | None = None
               ) -> np.ndarray:
    """Non-overlapping language-model windows int64 (n, seq_len + 1) over the concatenated
    token ids (input = ``w[:, :-1]``, target = ``w[:, 1:]``)."""
    stream = np.concatenate([np.asarray(s, np.int64) for s in seqs]) if seqs else np.zeros(0)
    n = max(0, (len(stream) - 1) // seq_len)
    if max_windows is not None:
        n = min(n, max_windows)
    if n == 0:
        return np.zeros((0, seq_len + 1), np.int64)
    starts = np.arange(n) * seq_len
    return stream[starts[:, None] + np.arange(seq_len + 1)[None, :]].astype(np.int64)


def unigram_bits(seqs: Sequence[np.ndarray]) -> float:
    """Entropy in bits per token of the tokens' unigram distribution (the trivial baseline)."""
    counts = np.bincount(np.concatenate([np.asarray(s, np.int64) for s in seqs]))
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum()) if len(p) else math.nan
